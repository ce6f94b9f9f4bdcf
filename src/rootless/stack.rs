//! One rootless network around one container: a TAP in the container's namespace, the
//! switch and router, and host-socket egress. What `tapnet run` and the slirp4netns
//! front end start. (API skeleton: bodies to be filled in.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ipnet::{Ipv4Net, Ipv6Net};
use tapnet_conntrack::ConntrackConfig;
use tapnet_switch::router::{DhcpConfig, RouterNetwork, RouterV4, RouterV6};
use tapnet_switch::{NetworkConfig, NetworkId, PortId, PortRole, SwitchConfig};
use tapnet_wire::MacAddr;

use crate::datapath::{Datapath, Gateway, PortIo};
use crate::engine::{Engine, EngineConfig, EngineNetwork, Forward, ForwardProto};
use crate::port::{self, InterfaceConfig, NetnsTarget, PortKind};

/// Settings of a rootless stack, with slirp4netns's defaults.
#[derive(Clone, Debug)]
pub(crate) struct StackConfig {
    /// The container's network namespace; `None` when the caller hands over an open
    /// TAP fd instead (slirp4netns `--netns-type=tapfd`).
    pub(crate) netns: Option<NetnsTarget>,
    /// Join this user namespace to open the TAP (slirp4netns `--userns-path`); by
    /// default the namespace's owner.
    pub(crate) userns: Option<PathBuf>,
    /// TAP name in the container (`tap0`).
    pub(crate) tap_name: String,
    /// Configure the TAP (address, MTU, up, default route), as slirp4netns `-c`.
    pub(crate) configure: bool,
    pub(crate) mtu: u32,
    /// 10.0.2.0/24: the guest is .100, the gateway .2, DNS .3.
    pub(crate) cidr: Ipv4Net,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) ipv6: bool,
    pub(crate) host_loopback: bool,
    pub(crate) dns: bool,
    pub(crate) outbound_addr: Option<Ipv4Addr>,
    pub(crate) outbound_addr6: Option<Ipv6Addr>,
    /// Open the TAP with checksum and segmentation offload (IFF_VNET_HDR): the
    /// container's kernel and the stack exchange TCP segments of up to 64 KiB.
    /// Only for a TAP the stack opens itself (not `--netns-type=tapfd`).
    pub(crate) offload: bool,
}

impl StackConfig {
    /// The guest's address: the 100th of the CIDR (10.0.2.100), as slirp4netns and podman.
    pub(crate) fn guest_addr(&self) -> Ipv4Addr {
        nth(self.cidr, 100)
    }
    /// The gateway's address: the 2nd of the CIDR (10.0.2.2).
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        nth(self.cidr, 2)
    }
    /// The DNS address: the 3rd of the CIDR (10.0.2.3).
    pub(crate) fn dns_addr(&self) -> Ipv4Addr {
        nth(self.cidr, 3)
    }
}

fn nth(cidr: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(n))
}

/// One forward as listed by the API.
#[derive(Clone, Debug)]
pub(crate) struct ForwardInfo {
    pub(crate) id: u32,
    pub(crate) proto: ForwardProto,
    pub(crate) host_addr: IpAddr,
    pub(crate) host_port: u16,
    pub(crate) guest_addr: IpAddr,
    pub(crate) guest_port: u16,
}

/// The switch's ids for the one network and its two ports.
const NET: NetworkId = NetworkId(0);
const GATEWAY_PORT: PortId = PortId(0);
const TAP_PORT: PortId = PortId(1);

/// The IPv6 prefix, gateway, DNS and guest addresses slirp4netns uses (fd00::/64).
const PREFIX6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0);
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);

/// DHCP pool of slirp4netns (libslirp): the 15th to the 30th address of the CIDR.
const DHCP_POOL: (u32, u32) = (15, 30);

impl StackConfig {
    /// The guest's IPv6 address (fd00::100), when IPv6 is on.
    pub(crate) fn guest_addr6(&self) -> Option<Ipv6Addr> {
        self.ipv6.then_some(GUEST6)
    }

    /// The gateway's MAC: 52:55 and the gateway's IPv4 address, as libslirp.
    fn gateway_mac(&self) -> MacAddr {
        let [a, b, c, d] = self.gateway().octets();
        MacAddr([0x52, 0x55, a, b, c, d])
    }

    fn router_network(&self) -> RouterNetwork {
        let dns = self.dns_addr();
        RouterNetwork {
            gateway_mac: self.gateway_mac(),
            v4: Some(RouterV4 {
                network: self.cidr.network(),
                prefix_len: self.cidr.prefix_len(),
                gateway: self.gateway(),
                extra: if self.dns { vec![dns] } else { Vec::new() },
                dhcp: Some(DhcpConfig {
                    pool: (nth(self.cidr, DHCP_POOL.0), nth(self.cidr, DHCP_POOL.1)),
                    dns: if self.dns { vec![dns] } else { Vec::new() },
                    lease_time: Duration::from_secs(24 * 3600),
                }),
            }),
            v6: self.ipv6.then(|| RouterV6 {
                prefix: PREFIX6,
                prefix_len: 64,
                gateway: GATEWAY6,
                extra: if self.dns { vec![DNS6] } else { Vec::new() },
                dns: if self.dns { vec![DNS6] } else { Vec::new() },
            }),
            mtu: self.mtu,
            egress: true,
            // The gateway leads to the host's loopback and the DNS address to its
            // resolvers; the engine refuses what is disabled.
            own_addresses_to_uplink: true,
        }
    }

    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            networks: vec![EngineNetwork {
                id: NET,
                gateway: self.gateway(),
                host_loopback: self.host_loopback,
                dns: self.dns.then(|| self.dns_addr()),
                gateway6: self.ipv6.then_some(GATEWAY6),
                dns6: (self.ipv6 && self.dns).then_some(DNS6),
                mtu: self.mtu,
            }],
            outbound_addr: self.outbound_addr,
            outbound_addr6: self.outbound_addr6,
            resolvers: crate::engine::host_resolvers(),
            conntrack: ConntrackConfig::default(),
            local_names: None,
        }
    }

    fn interface_config(&self) -> anyhow::Result<InterfaceConfig> {
        let address = Ipv4Net::new(self.guest_addr(), self.cidr.prefix_len())?;
        let mac = self
            .mac
            .unwrap_or(MacAddr::from_ipv4_docker(self.guest_addr().octets()));
        let mut config = InterfaceConfig::ipv4(
            Some(self.tap_name.clone()),
            mac,
            address,
            self.gateway(),
            self.mtu,
        );
        config.configure = self.configure;
        config.attach_existing = true;
        config.offload = self.offload;
        if self.ipv6 {
            config.ipv6 = Some((Ipv6Net::new(GUEST6, 64)?, GATEWAY6));
        }
        Ok(config)
    }
}

/// A running rootless stack.
#[derive(Debug)]
pub(crate) struct Stack {
    datapath: Datapath,
    engine: Engine,
    config: StackConfig,
}

impl Stack {
    /// Opens (and, with `configure`, configures) the TAP, then starts the datapath and
    /// the engine. Returns once frames flow.
    pub(crate) fn start(config: StackConfig) -> anyhow::Result<Self> {
        let tap = Self::open_tap(&config)?;
        Self::start_with_tap(config, tap)
    }

    /// Opens the TAP in the container's namespace (and, with `configure`, configures
    /// it), through the namespace helper process. The sandbox runs between this and
    /// [`Stack::start_with_tap`], so that the threads started there inherit dropped
    /// capabilities.
    pub(crate) fn open_tap(config: &StackConfig) -> anyhow::Result<OwnedFd> {
        if config.cidr.prefix_len() > 25 {
            anyhow::bail!(
                "CIDR {} is too small: it must hold the guest at .100 (use /25 or larger)",
                config.cidr
            );
        }
        let Some(netns) = &config.netns else {
            anyhow::bail!("no network namespace to open the TAP in");
        };
        // The helper joins the user namespace that owns the network namespace (as
        // NS_GET_USERNS reports it): for `--userns-path` that is the same namespace, so
        // the path only has to exist.
        if let Some(userns) = &config.userns {
            std::fs::metadata(userns)
                .with_context(|| format!("user namespace {}", userns.display()))?;
        }
        let interface = config.interface_config()?;
        let attached = port::attach(netns, PortKind::Tap, &interface, "")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(
            tap = attached.ifname,
            configured = config.configure,
            guest = %config.guest_addr(),
            mtu = config.mtu,
            offload = config.offload,
            "TAP attached"
        );
        Ok(attached.fd)
    }

    /// Starts the datapath and the engine around an open TAP fd.
    pub(crate) fn start_with_tap(config: StackConfig, tap: OwnedFd) -> anyhow::Result<Self> {
        // Host-socket egress runs on the datapath thread: no hand-off between threads
        // per packet. Measured side by side (benches/e2e.sh, 2 vCPUs) it moved as
        // much or more (peer namespace -> published port 16.3 vs 12.8 Gbit/s) with
        // 10-15% more request/response and 20-28% more connections per second than
        // an engine thread of its own, which TAPNET_ENGINE=thread still gives.
        let inline = std::env::var_os("TAPNET_ENGINE").is_none_or(|v| v != "thread");
        tracing::debug!(inline, "host-socket engine placement");
        let started = if inline {
            Engine::spawn_inline(config.engine_config())
                .context("start host-socket egress")
                .map(|(engine, link, core)| {
                    let datapath = Datapath::spawn_with_inline_engine(
                        crate::datapath::backend_from_env(),
                        SwitchConfig::default(),
                        link,
                        core,
                    );
                    (engine, datapath)
                })
        } else {
            Engine::spawn(config.engine_config())
                .context("start host-socket egress")
                .map(|(engine, link)| {
                    let datapath = Datapath::spawn_with_uplink(
                        crate::datapath::backend_from_env(),
                        SwitchConfig::default(),
                        link,
                    );
                    (engine, datapath)
                })
        };
        let (engine, datapath) = started?;
        let datapath = match datapath {
            Ok(d) => d,
            Err(e) => {
                engine.shutdown();
                return Err(e.context("start the datapath"));
            }
        };
        let stack = Self {
            datapath,
            engine,
            config,
        };
        if let Err(e) = stack.attach(tap) {
            stack.shutdown();
            return Err(e);
        }
        Ok(stack)
    }

    fn attach(&self, tap: OwnedFd) -> anyhow::Result<()> {
        // With offload, frames on the network are up to 64 KiB TCP segments (TSO).
        let mtu = if self.config.offload {
            usize::from(u16::MAX)
        } else {
            self.config.mtu as usize
        };
        let network = NetworkConfig {
            icc: true,
            ..NetworkConfig::with_mtu(mtu)
        };
        let gateway = Gateway {
            masquerade: true,
            port: GATEWAY_PORT,
            network: self.config.router_network(),
        };
        self.datapath.add_routed_network(NET, network, gateway)?;
        let io = if self.config.offload {
            PortIo::TapOffload {
                fd: tap,
                mtu: self.config.mtu,
            }
        } else {
            PortIo::Tap(tap)
        };
        self.datapath
            .add_port(TAP_PORT, NET, PortRole::Container, io)
    }

    /// Publishes `host_addr:host_port` to `guest_addr:guest_port` (ranges: `count` ports).
    /// The error is one line fit for a user (and for the slirp4netns API's `desc`).
    pub(crate) fn add_forward(
        &self,
        proto: ForwardProto,
        host_addr: IpAddr,
        host_port: u16,
        guest_addr: IpAddr,
        guest_port: u16,
        count: u16,
    ) -> Result<u32, String> {
        self.engine.add_forward(Forward {
            proto,
            net: NET,
            host_addr,
            host_port,
            guest_addr,
            guest_port,
            count,
        })
    }

    pub(crate) fn remove_forward(&self, id: u32) -> Result<(), String> {
        self.engine.remove_forward(id)
    }

    pub(crate) fn forwards(&self) -> Vec<ForwardInfo> {
        self.engine
            .forwards()
            .into_iter()
            .map(|(id, f)| ForwardInfo {
                id,
                proto: f.proto,
                host_addr: f.host_addr,
                host_port: f.host_port,
                guest_addr: f.guest_addr,
                guest_port: f.guest_port,
            })
            .collect()
    }

    /// Stops everything; the TAP disappears with its fd.
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.datapath.shutdown() {
            tracing::warn!("stop the datapath: {e:#}");
        }
        self.engine.shutdown();
    }
}
