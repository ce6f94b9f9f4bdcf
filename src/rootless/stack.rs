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
use tapnet_switch::router::link_local_from_mac;
use tapnet_switch::router::{DhcpConfig, RouterNetwork, RouterV4, RouterV6};
use tapnet_switch::{
    DropReason, NetworkConfig, NetworkId, PortGuard, PortId, PortRole, SwitchConfig,
};
use tapnet_wire::MacAddr;

use crate::datapath::{Datapath, Gateway, PortIo, Siblings};
use crate::engine::{Engine, EngineConfig, EngineNetwork, FlowLimits, Forward, ForwardProto};
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
    /// Pipelines: more than one opens the TAP with that many queues
    /// (`IFF_MULTI_QUEUE`), each read by a datapath thread of its own
    /// (`TAPNET_PIPELINES`, see [`pipelines_from_env`]).
    pub(crate) pipelines: u8,
    /// Most flows holding a host socket at once (`TAPNET_MAX_HOST_FLOWS`, see
    /// [`max_host_flows_from_env`]); `None`: derived from `RLIMIT_NOFILE`.
    pub(crate) max_host_flows: Option<usize>,
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

    /// What the container may send: its configured address and the ones the router's
    /// DHCP server acks to it (IPv4), any address of fd00::/64 and fe80::/64 but the
    /// gateway's and the DNS's (IPv6: its kernel picks its SLAAC and link-local
    /// addresses from a MAC of its own choosing), and its MAC only when `--macaddress`
    /// named one. ARP and NDP must name the frame's own source MAC, and the gateway's
    /// MAC is pinned to the gateway.
    fn source_guard(&self) -> PortGuard {
        let guard = match self.mac {
            Some(mac) => PortGuard::new(mac),
            None => PortGuard::any_mac(),
        };
        let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0);
        let mut guard = guard
            .with_ipv4(self.guest_addr())
            .with_dhcp_snooping()
            .with_ipv6_range(link_local, 64)
            .without_ipv6(link_local_from_mac(self.gateway_mac()));
        if self.ipv6 {
            guard = guard
                .with_ipv6_range(PREFIX6, 64)
                .without_ipv6(GATEWAY6)
                .without_ipv6(DNS6);
        }
        guard
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
            limits: self.flow_limits(),
        }
    }

    /// The container's bound on host-socket flows, shared by its pipelines (each has
    /// an engine of its own): all of the process's descriptors but a reserve, or
    /// `TAPNET_MAX_HOST_FLOWS`.
    fn flow_limits(&self) -> FlowLimits {
        let ceiling = ConntrackConfig::default().capacity;
        let whole = match self.max_host_flows {
            Some(n) => FlowLimits {
                total: n.min(ceiling),
                per_container: n.min(ceiling),
            },
            None => FlowLimits::for_this_process(ceiling),
        };
        let share = (whole.total / usize::from(self.pipelines.max(1))).max(1);
        FlowLimits {
            total: share,
            per_container: share,
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
        config.queues = self.pipelines;
        if self.ipv6 {
            config.ipv6 = Some((Ipv6Net::new(GUEST6, 64)?, GATEWAY6));
        }
        Ok(config)
    }
}

/// A running rootless stack.
#[derive(Debug)]
pub(crate) struct Stack {
    /// One datapath and host-socket engine per TAP queue; never empty. The container's
    /// kernel picks a queue per flow (a hash of the flow, then the queue the flow's
    /// frames last came in on, which the TUN driver records), so a flow stays on one
    /// pipeline; published ports are served by the first.
    pipelines: Vec<(Datapath, Engine)>,
}

/// `TAPNET_MAX_HOST_FLOWS=N`: the most flows (UDP and ICMP flows, TCP connections)
/// that hold a host socket at once; unset, all of `RLIMIT_NOFILE` but a reserve.
pub(crate) fn max_host_flows_from_env() -> anyhow::Result<Option<usize>> {
    crate::knobs::Knobs::get().max_host_flows()
}

/// The number of pipelines from `TAPNET_PIPELINES` (1 to 16; 1 when
/// unset). Each pipeline is a thread reading one queue of a multi-queue TAP.
pub(crate) fn pipelines_from_env() -> anyhow::Result<u8> {
    crate::knobs::Knobs::get().pipelines()
}

impl Stack {
    /// Opens (and, with `configure`, configures) the TAP, then starts the datapath and
    /// the engine. Returns once frames flow.
    pub(crate) fn start(config: StackConfig) -> anyhow::Result<Self> {
        let queues = Self::open_tap(&config)?;
        Self::start_with_tap(config, queues)
    }

    /// Opens the TAP in the container's namespace (and, with `configure`, configures
    /// it), through the namespace helper process: one fd, or one per queue with
    /// `pipelines` > 1 (fewer if the device cannot have more). The sandbox runs
    /// between this and [`Stack::start_with_tap`], so that the threads started there
    /// inherit dropped capabilities.
    pub(crate) fn open_tap(config: &StackConfig) -> anyhow::Result<Vec<OwnedFd>> {
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
        let queues = 1 + attached.queues.len();
        tracing::info!(
            tap = attached.ifname,
            configured = config.configure,
            guest = %config.guest_addr(),
            mtu = config.mtu,
            offload = config.offload,
            queues,
            "TAP attached"
        );
        if queues < usize::from(config.pipelines) {
            tracing::info!(
                asked = config.pipelines,
                "the TAP has one queue (it existed without IFF_MULTI_QUEUE): one pipeline"
            );
        }
        let mut fds = vec![attached.fd];
        fds.extend(attached.queues);
        Ok(fds)
    }

    /// Starts one datapath and engine per TAP queue in `queues` (the first serves
    /// published ports).
    pub(crate) fn start_with_tap(
        config: StackConfig,
        queues: Vec<OwnedFd>,
    ) -> anyhow::Result<Self> {
        let mut pipelines = Vec::with_capacity(queues.len());
        match start_pipelines(&config, queues, &mut pipelines) {
            Ok(()) if !pipelines.is_empty() => Ok(Self { pipelines }),
            result => {
                for (datapath, engine) in pipelines {
                    stop_pipeline(datapath, engine);
                }
                Err(result
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("no TAP queue")))
            }
        }
    }

    /// The first pipeline's engine: it serves the published ports.
    fn primary(&self) -> &Engine {
        &self.pipelines[0].1
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
        let id = self.primary().add_forward(Forward {
            proto,
            net: NET,
            host_addr,
            host_port,
            guest_addr,
            guest_port,
            count,
        })?;
        self.share_published_udp_ports();
        Ok(id)
    }

    pub(crate) fn remove_forward(&self, id: u32) -> Result<(), String> {
        self.primary().remove_forward(id)?;
        self.share_published_udp_ports();
        Ok(())
    }

    /// Tells the other pipelines which guest UDP ports the first one publishes (their
    /// datagrams of flows the others do not hold are answers to its clients).
    fn share_published_udp_ports(&self) {
        let others = &self.pipelines[1..];
        if others.is_empty() {
            return;
        }
        let mut ports: Vec<u16> = self
            .primary()
            .forwards()
            .into_iter()
            .filter(|(_, f)| f.proto == ForwardProto::Udp)
            .flat_map(|(_, f)| (0..f.count).map(move |i| f.guest_port.wrapping_add(i)))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        for (datapath, _) in others {
            if let Err(e) = datapath.set_primary_udp_ports(ports.clone()) {
                tracing::warn!("tell a pipeline the published UDP ports: {e:#}");
            }
        }
    }

    pub(crate) fn forwards(&self) -> Vec<ForwardInfo> {
        self.primary()
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

    /// The container's frames the switches dropped, by reason (over every pipeline;
    /// only reasons with a non-zero count).
    pub(crate) fn drops(&self) -> Vec<(DropReason, u64)> {
        let mut drops: Vec<(DropReason, u64)> = Vec::new();
        for (datapath, _) in &self.pipelines {
            let Ok(stats) = datapath.stats() else {
                continue;
            };
            for &(reason, n) in stats.iter().flat_map(|s| &s.drops) {
                match drops.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, total)) => *total += n,
                    None => drops.push((reason, n)),
                }
            }
        }
        drops
    }

    /// Stops everything; the TAP disappears with its fds. Says first, in one line,
    /// which of the container's frames were dropped (spoofed ones above all).
    pub(crate) fn shutdown(self) {
        let drops = self.drops();
        if !drops.is_empty() {
            let list: Vec<String> = drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
            tracing::info!(drops = %list.join(","), "frames from the container dropped");
        }
        for (datapath, engine) in self.pipelines {
            report_flow_bounds(&engine.stats());
            stop_pipeline(datapath, engine);
        }
    }
}

/// Says once, at the end, what the bounds on host-socket flows did (the rootless
/// stack has no `tapnet stats`).
fn report_flow_bounds(s: &crate::engine::EngineStats) {
    let evicted = s.evicted_unreplied + s.evicted_lru;
    let refused = s.drop_flow_limit + s.drop_no_fd;
    if evicted + refused > 0 {
        tracing::info!(
            evicted_unreplied = s.evicted_unreplied,
            evicted_lru = s.evicted_lru,
            refused_flow_limit = s.drop_flow_limit,
            refused_no_fd = s.drop_no_fd,
            limit = s.host_socket_limit,
            "host-socket flows: bound reached during the run"
        );
    }
}

/// Starts a pipeline per TAP queue into `pipelines` (the caller stops them on an
/// error), then tells each about the others.
fn start_pipelines(
    config: &StackConfig,
    queues: Vec<OwnedFd>,
    pipelines: &mut Vec<(Datapath, Engine)>,
) -> anyhow::Result<()> {
    for tap in queues {
        let (engine, datapath) = spawn_pipeline(config)?;
        let attached = attach(config, &datapath, tap);
        pipelines.push((datapath, engine));
        attached?;
    }
    if pipelines.len() < 2 {
        return Ok(());
    }
    let links: Vec<_> = pipelines.iter().map(|(d, _)| d.sibling_link()).collect();
    for (i, (datapath, _)) in pipelines.iter().enumerate() {
        let mut others = links.clone();
        others.remove(i);
        datapath.set_siblings(Siblings {
            port: TAP_PORT,
            all: others,
            primary: (i > 0).then(|| links[0].clone()),
            primary_udp_ports: Vec::new(),
        })?;
    }
    Ok(())
}

/// Starts a datapath with its host-socket engine.
fn spawn_pipeline(config: &StackConfig) -> anyhow::Result<(Engine, Datapath)> {
    // Host-socket egress runs on the datapath thread: no hand-off between threads
    // per packet. Measured side by side (benches/e2e.sh, 2 vCPUs) it moved as
    // much or more (peer namespace -> published port 16.3 vs 12.8 Gbit/s) with
    // 10-15% more request/response and 20-28% more connections per second than
    // an engine thread of its own, which TAPNET_ENGINE=thread still gives.
    let inline = !crate::knobs::Knobs::get().engine_thread;
    if !inline && config.pipelines > 1 {
        // A secondary pipeline asks its engine, on its own thread, whether it holds a
        // flow before handing the packet on.
        anyhow::bail!(
            "TAPNET_PIPELINES above 1 needs the engine on the datapath thread (unset TAPNET_ENGINE)"
        );
    }
    tracing::debug!(inline, "host-socket engine placement");
    let backend = crate::datapath::backend_from_env();
    let (engine, datapath) = if inline {
        let (engine, link, core) =
            Engine::spawn_inline(config.engine_config()).context("start host-socket egress")?;
        let datapath =
            Datapath::spawn_with_inline_engine(backend, SwitchConfig::default(), link, core);
        (engine, datapath)
    } else {
        let (engine, link) =
            Engine::spawn(config.engine_config()).context("start host-socket egress")?;
        let datapath = Datapath::spawn_with_uplink(backend, SwitchConfig::default(), link);
        (engine, datapath)
    };
    match datapath {
        Ok(datapath) => Ok((engine, datapath)),
        Err(e) => {
            engine.shutdown();
            Err(e.context("start the datapath"))
        }
    }
}

/// The routed network and the TAP queue `tap` as its port, on `datapath`.
fn attach(config: &StackConfig, datapath: &Datapath, tap: OwnedFd) -> anyhow::Result<()> {
    // With offload, frames on the network are up to 64 KiB TCP segments (TSO).
    let mtu = if config.offload {
        usize::from(u16::MAX)
    } else {
        config.mtu as usize
    };
    let network = NetworkConfig {
        icc: true,
        ..NetworkConfig::with_mtu(mtu)
    };
    let gateway = Gateway {
        masquerade: true,
        port: GATEWAY_PORT,
        network: config.router_network(),
    };
    datapath.add_routed_network(NET, network, gateway)?;
    let io = if config.offload {
        PortIo::TapOffload {
            fd: tap,
            mtu: config.mtu,
        }
    } else {
        PortIo::Tap(tap)
    };
    let guard = Some(config.source_guard());
    datapath.add_guarded_port(TAP_PORT, NET, PortRole::Container, io, guard)
}

fn stop_pipeline(datapath: Datapath, engine: Engine) {
    if let Err(e) = datapath.shutdown() {
        tracing::warn!("stop the datapath: {e:#}");
    }
    engine.shutdown();
}
