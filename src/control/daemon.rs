//! `tapnet daemon`: owns the datapath and the registry, and serves the control socket.
//!
//! Requests are handled one at a time on the daemon's main thread, so every command
//! sees and leaves a consistent state; the datapath runs on its own thread and is
//! reached through [`Datapath`] calls.
//!
//! Networks and endpoints are kept in the state directory ([`super::state`]) after
//! every command that changes them; a restarted daemon restores them ([`restart`]).

mod restart;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tapnet_conntrack::ConntrackConfig;
use tapnet_nat::{PortRange, Proto, PublishRule};
use tapnet_switch::router::{DhcpConfig, RouterNetwork, RouterV4, RouterV6};
use tapnet_switch::{NetworkConfig, PortGuard, PortId, PortRole, SwitchConfig};
use tapnet_wire::MacAddr;
use tracing::{info, warn};

use super::dns::{DnsService, EndpointNames};
use super::proto::{
    Connect, MacInfo, NetnsSpec, NetworkCreate, PortStatsInfo, PublicationInfo, Publish, Request,
    StatsInfo, UplinkStatsInfo,
};
use super::registry::{ConnectPlan, Endpoint, Network, Publication, Registry};
use super::socket;
use super::state::{EndpointRecord, NetworkRecord, STATE_VERSION, StateDir};
use crate::clientset::ClientStats;
use crate::datapath::{BackendChoice, Datapath, Gateway, PortIo, zone_of};
use crate::engine::{Engine, EngineConfig, EngineNetwork, FlowLimits, Forward, ForwardProto};
use crate::port::{self, AttachedPort, InterfaceConfig, NetnsTarget, PortError, PortKind};
use crate::portspec::PortSpec;
pub(crate) use crate::uplink::UplinkOptions;
use crate::uplink::{UPLINK_PORT, open_packet_uplink};
use restart::{Attach, attach_port, veth_tag};

/// Settings of `tapnet daemon`.
#[derive(Debug, Clone)]
pub(crate) struct DaemonOptions {
    pub(crate) control: PathBuf,
    /// Where networks and endpoints are kept (`--state-dir`).
    pub(crate) state_dir: PathBuf,
    pub(crate) backend: BackendChoice,
    pub(crate) switch: SwitchConfig,
    pub(crate) conntrack: ConntrackConfig,
    pub(crate) uplink: Option<UplinkOptions>,
    /// `--max-host-flows`, `--max-host-flows-per-container` (`None`: derived from
    /// `RLIMIT_NOFILE`).
    pub(crate) max_host_flows: Option<usize>,
    pub(crate) max_host_flows_per_container: Option<usize>,
}

/// The bounds on host-socket flows: the options, else all descriptors but a reserve,
/// a quarter of them per container.
fn flow_limits(options: &DaemonOptions) -> FlowLimits {
    let ceiling = options.conntrack.capacity;
    let derived = FlowLimits::for_this_process(ceiling).shared();
    let total = options.max_host_flows.unwrap_or(derived.total);
    let per_container = options
        .max_host_flows_per_container
        .unwrap_or(if options.max_host_flows.is_some() {
            FlowLimits {
                total,
                per_container: total,
            }
            .shared()
            .per_container
        } else {
            derived.per_container
        })
        .min(total);
    FlowLimits {
        total,
        per_container,
    }
}

/// Runs the daemon until SIGINT or SIGTERM, then removes every device it created.
pub(crate) fn run(options: &DaemonOptions) -> anyhow::Result<()> {
    let listener = socket::bind_control_socket(&options.control)?;
    // After the control socket: a second daemon with the same socket stops there, so
    // one daemon at a time uses the state directory.
    let state = StateDir::open(&options.state_dir).context("open the state directory")?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("install signal handler")?;
    }
    let resolvers = crate::engine::host_resolvers();
    let dns = DnsService::spawn(resolvers.first().copied()).context("start the DNS service")?;
    // Host-socket egress is the uplink of every network (the rootless default). It
    // answers the embedded DNS names at the gateway addresses too.
    let engine = Engine::spawn(EngineConfig {
        networks: Vec::new(),
        outbound_addr: None,
        outbound_addr6: None,
        resolvers,
        conntrack: options.conntrack.clone(),
        local_names: Some(dns.gateway_names()),
        limits: flow_limits(options),
    });
    let (engine, link) = match engine {
        Ok(x) => x,
        Err(e) => {
            dns.shutdown();
            return Err(e.context("start host-socket egress"));
        }
    };
    let datapath = match Datapath::spawn_with_uplink(options.backend, options.switch.clone(), link)
    {
        Ok(d) => d,
        Err(e) => {
            engine.shutdown();
            dns.shutdown();
            return Err(e);
        }
    };
    if let Some(uplink) = &options.uplink {
        let opened = open_packet_uplink(uplink, &options.conntrack)
            .and_then(|(config, io)| datapath.set_packet_uplink(config, io));
        if let Err(e) = opened {
            let _ = datapath.shutdown();
            engine.shutdown();
            dns.shutdown();
            return Err(e.context(format!("packet uplink {}", uplink.ifname)));
        }
        info!(interface = %uplink.ifname, address = %uplink.addr, gateway = ?uplink.gateway, "packet uplink ready");
    }
    let veth_tag = veth_tag(state.path());
    let mut daemon = Daemon {
        uplink: options.uplink.clone(),
        registry: Registry::new(),
        datapath,
        engine,
        dns,
        control: ClientStats::default(),
        state,
        records: BTreeMap::new(),
        taps: HashMap::new(),
        veth_tag,
    };
    daemon.restore();
    info!(control = %options.control.display(), datapath = daemon.datapath.backend_name(), "tapnet daemon ready");

    let result = socket::serve(listener, &stop, |request, control| {
        daemon.control = control;
        daemon.handle(request)
    });
    info!("shutting down");
    daemon.shutdown();
    let _ = std::fs::remove_file(&options.control);
    result
}

struct Daemon {
    /// The packet uplink, if any.
    uplink: Option<UplinkOptions>,
    registry: Registry,
    datapath: Datapath,
    engine: Engine,
    dns: DnsService,
    /// The control socket's counters, as of the request being handled.
    control: ClientStats,
    state: StateDir,
    /// What is kept on disk of each endpoint (its publications are the registry's).
    records: BTreeMap<PortId, EndpointRecord>,
    /// A duplicate of each TAP port's fd: the daemon's TAPs are persistent, and
    /// whatever happens to the datapath, an orderly stop makes them ordinary again
    /// through these, so that they go when the daemon exits.
    taps: HashMap<PortId, OwnedFd>,
    /// Veth host ends are `tn{veth_tag}v{port}` (see [`veth_tag`]).
    veth_tag: u32,
}

/// What a connected container may send (unless `--allow-spoofing`): its MAC, its IPv4
/// address and, on an IPv6 network, its IPv6 address, and the link-local and SLAAC
/// addresses its MAC gives it (the router advertises the /64 with the A flag).
fn source_guard(plan: &ConnectPlan, network: &Network) -> PortGuard {
    let mut guard = PortGuard::new(plan.mac).with_ipv4(plan.address.addr());
    if let Some(address6) = network.ipv6_of(plan.address.addr()) {
        guard = guard.with_ipv6(address6.addr());
    }
    if let Some(prefix) = network.subnet6.filter(|p| p.prefix_len() == 64) {
        guard = guard.with_slaac_prefix(prefix.network());
    }
    guard
}

/// Whether a `[HOSTIP:]HOST:CONTAINER[/PROTO]` publication names its host address.
fn names_host_address(spec: &str) -> bool {
    let ports = spec.split('/').next().unwrap_or(spec);
    ports.starts_with('[') || ports.matches(':').count() >= 2
}

/// The virtual switch port of a network's gateway: counted down from the top, so it
/// never meets the container ports the registry counts up from zero.
fn gateway_port(net: tapnet_switch::NetworkId) -> PortId {
    PortId(u32::MAX - net.0)
}

impl Daemon {
    fn handle(&mut self, request: Request) -> Result<Value, String> {
        match request {
            Request::NetworkCreate(req) => self.network_create(&req),
            Request::NetworkList => {
                let list: Vec<_> = self
                    .registry
                    .networks()
                    .map(|n| self.registry.network_info(n))
                    .collect();
                Ok(json!(list))
            }
            Request::NetworkRemove { name } => self.network_remove(&name),
            Request::NetworkInspect { name } => {
                let network = self.registry.network(&name)?;
                Ok(json!(self.registry.network_info(network)))
            }
            Request::Connect(req) => self.connect(&req),
            Request::Disconnect { network, container } => self.disconnect(&network, &container),
            Request::Macs { network } => self.macs(&network),
            Request::Stats => self.stats(),
            Request::Publish(req) => self.publish(&req),
            Request::Unpublish(req) => self.unpublish(&req),
            Request::PublishList => Ok(json!(self.publication_infos())),
            Request::Conntrack => {
                let mut entries = self.engine.conntrack();
                entries.extend(self.datapath.nat_flows().map_err(|e| format!("{e:#}"))?);
                let lines: Vec<String> = entries.iter().map(|e| e.to_conntrack_line()).collect();
                Ok(json!({"entries": entries, "lines": lines}))
            }
        }
    }

    fn network_create(&mut self, req: &NetworkCreate) -> Result<Value, String> {
        self.network_create_as(req, None)
    }

    /// `network create`, with the given network id when restoring one.
    fn network_create_as(
        &mut self,
        req: &NetworkCreate,
        id: Option<tapnet_switch::NetworkId>,
    ) -> Result<Value, String> {
        let mut plan = self.registry.plan_network_create(req)?;
        if let Some(id) = id {
            if self.registry.networks().any(|n| n.id == id) {
                return Err(format!("network id {} is already in use", id.0));
            }
            plan.network.id = id;
        }
        let network = &plan.network;
        if !network.masquerade && self.uplink.is_none() {
            return Err(
                "--no-masquerade needs a daemon with a packet uplink (--uplink): \
                 host-socket egress always leaves with the host's own address"
                    .to_owned(),
            );
        }
        // With offload, the containers' TAPs hand over TCP segments of up to 64 KiB
        // (TSO): the switch takes frames of that size, and the router holds routed
        // ones to the MTU one segment at a time.
        let switch_mtu = if crate::datapath::offload_enabled() {
            usize::from(u16::MAX)
        } else {
            network.mtu as usize
        };
        let config = NetworkConfig {
            icc: network.icc,
            ..NetworkConfig::with_mtu(switch_mtu)
        };
        let gateway = Gateway {
            masquerade: network.masquerade,
            port: gateway_port(network.id),
            network: RouterNetwork {
                gateway_mac: MacAddr::from_ipv4_docker(network.gateway.octets()),
                v4: Some(RouterV4 {
                    network: network.subnet.network(),
                    prefix_len: network.subnet.prefix_len(),
                    gateway: network.gateway,
                    extra: Vec::new(),
                    dhcp: network.dhcp_pool.map(|pool| DhcpConfig {
                        pool,
                        dns: Vec::new(),
                        lease_time: Duration::from_secs(3600),
                    }),
                }),
                v6: network.subnet6.map(|prefix| RouterV6 {
                    prefix: prefix.network(),
                    prefix_len: prefix.prefix_len(),
                    gateway: network.gateway6().unwrap_or(prefix.network()),
                    extra: Vec::new(),
                    dns: Vec::new(),
                }),
                mtu: network.mtu,
                // An internal network has no way out: the router answers with ICMP
                // "administratively prohibited".
                egress: !network.internal,
                // As on Docker's bridge, the gateway address reaches services of the
                // host (here the loopback of tapnet's own namespace), unless internal.
                own_addresses_to_uplink: !network.internal,
            },
        };
        // The gateway leads to the host's loopback, except its port 53: the embedded
        // DNS answers there (the engine asks it), as at 127.0.0.11.
        let egress = EngineNetwork {
            id: network.id,
            gateway: network.gateway,
            host_loopback: true,
            dns: Some(network.gateway),
            gateway6: network.gateway6(),
            dns6: network.gateway6(),
            mtu: network.mtu,
        };
        self.engine.add_network(egress)?;
        if let Err(e) = self
            .datapath
            .add_routed_network(network.id, config, gateway)
        {
            let _ = self.engine.remove_network(network.id);
            return Err(format!("{e:#}"));
        }
        info!(name = %network.name, subnet = %network.subnet, gateway = %network.gateway, mtu = network.mtu, icc = network.icc, "network created");
        let info =
            json!({"name": network.name, "subnet": network.subnet, "gateway": network.gateway});
        let record = NetworkRecord {
            version: STATE_VERSION,
            id: network.id.0,
            create: req.clone(),
        };
        self.registry.commit_network(plan);
        if let Err(e) = self.state.write_network(&record) {
            warn!("state: keep network {}: {e}", req.name);
        }
        Ok(info)
    }

    fn network_remove(&mut self, name: &str) -> Result<Value, String> {
        let id = self.registry.plan_network_remove(name)?;
        self.datapath
            .remove_network(id)
            .map_err(|e| format!("{e:#}"))?;
        if let Err(e) = self.engine.remove_network(id) {
            warn!(name, "remove the network's egress: {e}");
        }
        self.registry.commit_network_remove(name);
        if let Err(e) = self.state.remove_network(name) {
            warn!("state: forget network {name}: {e}");
        }
        info!(name, "network removed");
        Ok(json!({"name": name}))
    }

    fn connect(&mut self, req: &Connect) -> Result<Value, String> {
        self.connect_as(req, &Attach::New)
    }

    /// `connect`; with [`Attach::Again`], the restore of an endpoint a killed daemon
    /// left: same port id, names and addresses, the device attached again instead of
    /// created, and its publications each published again or reported.
    fn connect_as(&mut self, req: &Connect, attach: &Attach<'_>) -> Result<Value, String> {
        let (target, default_name) = match &req.netns {
            NetnsSpec::Pid(pid) => (NetnsTarget::Pid(*pid), format!("pid{pid}")),
            NetnsSpec::Path(path) => {
                let name = Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (NetnsTarget::Path(path.into()), name)
            }
        };
        let (target, again) = match attach {
            Attach::New => (target, None),
            Attach::Again { record, target } => (target.clone(), Some(*record)),
        };
        let netns = port::netns_id(&target).map_err(|e| e.to_string())?;
        let default_name = if default_name.is_empty() || default_name == "net" {
            format!("ns{}", netns.ino)
        } else {
            default_name
        };
        let mut plan = self.registry.plan_connect(req, netns, &default_name)?;
        if let Some(record) = again {
            let port = PortId(record.port);
            if self.registry.endpoint(port).is_some() {
                return Err(format!("port {} is taken twice", record.port));
            }
            plan.port = port;
        }
        let host_ifname = match again {
            Some(record) => record.host_ifname.clone().unwrap_or_default(),
            None => format!("tn{:05x}v{:x}", self.veth_tag, plan.port.0),
        };
        let mut config = InterfaceConfig::ipv4(
            plan.ifname.clone(),
            plan.mac,
            plan.address,
            plan.gateway,
            plan.mtu,
        );
        // The daemon's TAPs outlive it if it is killed, for a restarted daemon.
        config.persist = true;
        // Ports take TSO frames and partial checksums both ways: TAPs with
        // IFF_VNET_HDR, veths' AF_PACKET sockets with PACKET_VNET_HDR_SZ. A restored
        // port keeps what the container's side was set up for.
        config.offload = match (again, plan.kind) {
            (Some(record), _) => record.offload,
            (None, PortKind::Tap) => crate::datapath::offload_enabled(),
            (None, PortKind::Veth) => {
                crate::datapath::packet_offload_enabled() && port::veth_offload_supported()
            }
        };
        let network = self.registry.network(&plan.network)?;
        let guard = (!plan.allow_spoofing).then(|| source_guard(&plan, network));
        if let (Some(address6), Some(gateway6)) =
            (network.ipv6_of(plan.address.addr()), network.gateway6())
        {
            config.ipv6 = Some((address6, gateway6));
        }
        self.registry.skip_port(plan.port);
        // The container's first interface also brings it the embedded DNS at
        // 127.0.0.11 (bound inside its namespace); a namespace where that address is
        // taken is still connected, without it.
        let (attached, dns_sockets) = if self.dns.has_client(&plan.container) {
            attach_port(&target, plan.kind, &config, &host_ifname, again, false)
                .map_err(|e| e.to_string())?
        } else {
            match attach_port(&target, plan.kind, &config, &host_ifname, again, true) {
                Ok(attached) => attached,
                Err(e @ (PortError::IfnameGone { .. } | PortError::HostIfnameGone(_))) => {
                    return Err(e.to_string());
                }
                Err(e) => {
                    warn!(container = %plan.container, "no DNS at 127.0.0.11: {e}");
                    attach_port(&target, plan.kind, &config, &host_ifname, again, false)
                        .map_err(|e| e.to_string())?
                }
            }
        };
        let AttachedPort {
            kind,
            fd,
            ifname,
            host_ifname,
            ..
        } = attached;
        // Keep a duplicate so that the device can be removed if the datapath refuses it
        // (and, for a TAP, made non-persistent at an orderly stop whatever happens).
        let cleanup_fd = fd
            .try_clone()
            .map_err(|e| format!("duplicate port fd: {e}"))?;
        let io = match kind {
            PortKind::Tap if config.offload => PortIo::TapOffload {
                fd,
                mtu: config.mtu,
            },
            PortKind::Tap => PortIo::Tap(fd),
            PortKind::Veth if config.offload => PortIo::PacketOffload {
                fd,
                mtu: config.mtu,
            },
            PortKind::Veth => PortIo::Packet(fd),
        };
        if let Err(err) = self.datapath.add_guarded_port(
            plan.port,
            plan.network_id,
            PortRole::Container,
            io,
            guard,
        ) {
            let leftover = AttachedPort {
                kind,
                fd: cleanup_fd,
                ifname,
                host_ifname,
                queues: Vec::new(),
            };
            if let Err(cleanup) = port::detach(leftover) {
                warn!("remove device after failed connect: {cleanup}");
            }
            return Err(format!("{err:#}"));
        }
        if kind == PortKind::Tap {
            self.taps.insert(plan.port, cleanup_fd);
        } else {
            drop(cleanup_fd);
        }
        let verb = if again.is_some() {
            "reattached"
        } else {
            "connected"
        };
        info!(container = %plan.container, network = %plan.network, ifname, kind = ?kind, address = %plan.address, "{verb}");
        let port = plan.port;
        let (network_name, container_name) = (plan.network.clone(), plan.container.clone());
        if self
            .registry
            .network(&plan.network)
            .is_ok_and(|n| n.dhcp_pool.is_some())
        {
            // A DHCP client in the container gets the address it was configured with.
            if let Err(e) =
                self.datapath
                    .static_lease(plan.network_id, plan.mac, Some(plan.address.addr()))
            {
                warn!("DHCP lease for {}: {e:#}", plan.container);
            }
        }
        let ip = plan.address.addr();
        let ip6 = self
            .registry
            .network(&plan.network)
            .ok()
            .and_then(|n| n.ipv6_of(ip));
        // Its host-socket flows are charged to it (the per-container bound).
        let owned: Vec<IpAddr> = std::iter::once(IpAddr::V4(ip))
            .chain(ip6.map(|n| IpAddr::V6(n.addr())))
            .collect();
        self.engine
            .set_owner(plan.network_id, owned, Some(u64::from(port.0)));
        let endpoint_names = EndpointNames {
            container: plan.container.clone(),
            network: plan.network_id,
            port,
            names: std::iter::once(plan.container.clone())
                .chain(plan.aliases.iter().cloned())
                .collect(),
            ip,
            ip6: ip6.map(|n| n.addr()),
        };
        let record = EndpointRecord {
            version: STATE_VERSION,
            port: port.0,
            connect: Connect {
                name: Some(plan.container.clone()),
                ifname: Some(ifname.clone()),
                ip: Some(ip),
                mac: Some(plan.mac),
                aliases: plan.aliases.clone(),
                publish: Vec::new(),
                ..req.clone()
            },
            netns_id: netns,
            host_ifname: host_ifname.clone(),
            ip6,
            mtu: config.mtu,
            offload: config.offload,
        };
        self.registry.commit_connect(plan, ifname, host_ifname);
        self.records.insert(port, record);
        if let Some(sockets) = dns_sockets {
            self.dns.add_client(&container_name, sockets);
        }
        let scope = self.registry.scope_of(&container_name);
        if let Err(e) = self.dns.set_endpoint(&endpoint_names, scope) {
            warn!(container = %container_name, "DNS names: {e}");
        }
        let publish = |specs: Vec<String>| Publish {
            network: network_name.clone(),
            container: container_name.clone(),
            specs,
        };
        if again.is_some() {
            // A host port that cannot be had again costs that publication only.
            for spec in &req.publish {
                if let Err(e) = self.publish(&publish(vec![spec.clone()])) {
                    warn!(
                        "state: endpoint {container_name} of network {network_name}: {e}; \
                         the publication is dropped"
                    );
                }
            }
        } else if !req.publish.is_empty()
            && let Err(e) = self.publish(&publish(req.publish.clone()))
        {
            // The connect fails as a whole.
            let _ = self.disconnect(&network_name, &container_name);
            return Err(e);
        }
        self.save_endpoint(port);
        let endpoint = self
            .registry
            .endpoint(port)
            .expect("endpoint was just committed");
        Ok(json!(self.registry.endpoint_info(endpoint)))
    }

    /// Parses publication specs the way `tapnet run -p` does.
    fn parse_specs(specs: &[String]) -> Result<Vec<PortSpec>, String> {
        specs
            .iter()
            .map(|s| PortSpec::parse(s).map_err(|e| format!("invalid publication {s:?}: {e}")))
            .collect()
    }

    fn publish(&mut self, req: &Publish) -> Result<Value, String> {
        let endpoint = self
            .registry
            .endpoint_of(&req.network, &req.container)?
            .clone();
        let mut specs = Self::parse_specs(&req.specs)?;
        if specs.is_empty() {
            return Err(
                "nothing to publish (give -p [HOSTIP:]HOST:CONTAINER[/tcp|/udp])".to_owned(),
            );
        }
        let network = self.registry.network(&req.network)?;
        let net = network.id;
        // A publication that names no host address listens on the network's binding
        // address (Docker's com.docker.network.bridge.host_binding_ipv4).
        if let Some(binding) = network.host_binding_ip {
            for (spec, text) in specs.iter_mut().zip(&req.specs) {
                if !names_host_address(text) {
                    spec.host_addr = IpAddr::V4(binding);
                }
            }
        }
        for spec in &specs {
            self.registry.plan_publish(endpoint.port, spec)?;
        }
        let mut done = Vec::new();
        for spec in &specs {
            match self.publish_one(net, &endpoint, spec) {
                Ok(publication) => {
                    self.registry.commit_publish(publication);
                    done.push(spec.clone());
                }
                Err(e) => {
                    // All or nothing: withdraw what this command published.
                    for p in self.registry.take_publications(endpoint.port, &done) {
                        self.withdraw(&p);
                    }
                    return Err(format!("publish {spec}: {e}"));
                }
            }
        }
        info!(container = %req.container, network = %req.network, ports = ?req.specs, "published");
        self.save_endpoint(endpoint.port);
        Ok(json!(
            self.publication_infos()
                .into_iter()
                .filter(|p| p.network == req.network && p.container == req.container)
                .collect::<Vec<_>>()
        ))
    }

    /// Publishes one port range: host-socket forward (unless it is bound to the packet
    /// uplink's own address, which is not the host's) and DNAT on the packet uplink.
    fn publish_one(
        &mut self,
        net: tapnet_switch::NetworkId,
        endpoint: &Endpoint,
        spec: &PortSpec,
    ) -> Result<Publication, String> {
        let nat = self.nat_rule(net, endpoint.ip, spec);
        let uplink_addr = self.uplink.as_ref().map(|u| IpAddr::V4(u.addr.addr()));
        let forward = if uplink_addr == Some(spec.host_addr) {
            None
        } else {
            let forward = Forward {
                proto: spec.proto,
                net,
                host_addr: spec.host_addr,
                host_port: spec.host_port,
                guest_addr: IpAddr::V4(endpoint.ip),
                guest_port: spec.container_port,
                count: spec.count,
            };
            Some(
                self.engine
                    .add_forward(forward)
                    .map_err(|e| e.to_string())?,
            )
        };
        if let Some(rule) = nat
            && let Err(e) = self.datapath.publish(rule)
        {
            if let Some(id) = forward {
                let _ = self.engine.remove_forward(id);
            }
            return Err(format!("{e:#}"));
        }
        Ok(Publication {
            forward,
            nat,
            port: endpoint.port,
            spec: spec.clone(),
        })
    }

    /// The DNAT rule of a publication on the packet uplink: for IPv4 host addresses
    /// that can be ours (any address, the uplink's, a gateway's), not loopback ones.
    fn nat_rule(
        &self,
        net: tapnet_switch::NetworkId,
        target: Ipv4Addr,
        spec: &PortSpec,
    ) -> Option<PublishRule> {
        self.uplink.as_ref()?;
        let IpAddr::V4(external_addr) = spec.host_addr else {
            return None;
        };
        if external_addr.is_loopback() {
            return None;
        }
        let last = spec.host_port.checked_add(spec.count.checked_sub(1)?)?;
        Some(PublishRule {
            proto: match spec.proto {
                ForwardProto::Tcp => Proto::Tcp,
                ForwardProto::Udp => Proto::Udp,
            },
            external_addr,
            external_ports: PortRange::new(spec.host_port, last),
            zone: zone_of(net)?,
            internal_addr: target,
            internal_port: spec.container_port,
        })
    }

    /// Undoes a publication (best effort: both halves are removed whatever happens).
    fn withdraw(&self, p: &Publication) {
        if let Some(id) = p.forward
            && let Err(e) = self.engine.remove_forward(id)
        {
            warn!("unpublish {}: {e}", p.spec);
        }
        if let Some(rule) = p.nat
            && let Err(e) = self.datapath.unpublish(rule)
        {
            warn!("unpublish {}: {e:#}", p.spec);
        }
    }

    fn unpublish(&mut self, req: &Publish) -> Result<Value, String> {
        let endpoint = self
            .registry
            .endpoint_of(&req.network, &req.container)?
            .clone();
        let specs = Self::parse_specs(&req.specs)?;
        let taken = self.registry.take_publications(endpoint.port, &specs);
        if taken.is_empty() {
            return Err(format!(
                "container {:?} has no such publication on network {:?}",
                req.container, req.network
            ));
        }
        for p in &taken {
            self.withdraw(p);
        }
        self.save_endpoint(endpoint.port);
        Ok(json!(
            taken.iter().map(|p| p.spec.to_string()).collect::<Vec<_>>()
        ))
    }

    fn publication_infos(&self) -> Vec<PublicationInfo> {
        self.registry
            .publications()
            .iter()
            .filter_map(|p| {
                let e = self.registry.endpoint(p.port)?;
                Some(PublicationInfo {
                    network: e.network.clone(),
                    container: e.container.clone(),
                    publish: p.spec.to_string(),
                    container_ip: e.ip,
                })
            })
            .collect()
    }

    fn disconnect(&mut self, network: &str, container: &str) -> Result<Value, String> {
        let endpoint = self.registry.endpoint_of(network, container)?.clone();
        let net = self.registry.network(network)?;
        let mut owned = vec![IpAddr::V4(endpoint.ip)];
        owned.extend(net.ipv6_of(endpoint.ip).map(|n| IpAddr::V6(n.addr())));
        let net_id = net.id;
        if net.dhcp_pool.is_some() {
            let _ = self.datapath.static_lease(net.id, endpoint.mac, None);
        }
        for p in self.registry.take_publications(endpoint.port, &[]) {
            self.withdraw(&p);
        }
        let fd = self
            .datapath
            .remove_port(endpoint.port)
            .map_err(|e| format!("{e:#}"))?;
        self.registry.commit_disconnect(endpoint.port);
        self.engine.set_owner(net_id, owned, None);
        self.forget_endpoint(endpoint.port);
        self.taps.remove(&endpoint.port);
        let attached = AttachedPort {
            kind: endpoint.kind,
            fd,
            ifname: endpoint.ifname.clone(),
            host_ifname: endpoint.host_ifname.clone(),
            queues: Vec::new(),
        };
        if let Err(err) = port::detach(attached) {
            warn!(container, network, "remove device: {err}");
        }
        let scope = self.registry.scope_of(container);
        self.dns
            .remove_endpoint(container, scope.clone(), endpoint.port);
        if scope.is_empty() {
            self.dns.remove_client(container);
        }
        info!(container, network, "disconnected");
        Ok(json!({"network": network, "container": container, "interface": endpoint.ifname}))
    }

    fn endpoint_label(&self, port: tapnet_switch::PortId) -> (String, String) {
        match self.registry.endpoint(port) {
            Some(e) => (format!("{}/{}", e.container, e.ifname), e.network.clone()),
            None => (format!("port{}", port.0), String::new()),
        }
    }

    fn macs(&self, network: &str) -> Result<Value, String> {
        let id = self.registry.network(network)?.id;
        let entries = self.datapath.macs(id).map_err(|e| format!("{e:#}"))?;
        let rows: Vec<MacInfo> = entries
            .iter()
            .map(|entry| MacInfo {
                mac: entry.mac,
                port: entry.port.0,
                endpoint: self.endpoint_label(entry.port).0,
                age_secs: entry.age.as_secs_f64(),
                pinned: entry.pinned,
            })
            .collect();
        Ok(json!(rows))
    }

    fn stats(&self) -> Result<Value, String> {
        let stats = self.datapath.stats().map_err(|e| format!("{e:#}"))?;
        let ports = stats
            .iter()
            .filter_map(|s| {
                let port = s.port.filter(|&p| p != UPLINK_PORT)?;
                let (endpoint, network) = self.endpoint_label(port);
                Some(PortStatsInfo {
                    port: port.0,
                    endpoint,
                    network,
                    rx_packets: s.switch.rx_packets,
                    rx_bytes: s.switch.rx_bytes,
                    tx_packets: s.switch.tx_packets,
                    tx_bytes: s.switch.tx_bytes,
                    rx_errors: s.rx_errors,
                    tx_errors: s.tx_errors,
                    drops: s
                        .drops
                        .iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(r, n)| (r.as_str().to_owned(), *n))
                        .collect(),
                })
            })
            .collect();
        let uplink = self
            .datapath
            .uplink_stats()
            .map_err(|e| format!("{e:#}"))?
            .zip(self.uplink.as_ref())
            .map(|(s, options)| UplinkStatsInfo::new(&options.ifname, options.addr, &s));
        Ok(json!(StatsInfo {
            datapath: self.datapath.backend_name().to_owned(),
            ports,
            egress: self.engine.stats(),
            uplink,
            control: self.control,
        }))
    }

    /// Removes every port (and so every device the daemon created) and its state file,
    /// keeping the networks' files, then stops the datapath.
    fn shutdown(self) {
        let Self {
            uplink: _,
            mut registry,
            datapath,
            engine,
            dns,
            control: _,
            state,
            records: _,
            mut taps,
            veth_tag: _,
        } = self;
        dns.shutdown();
        let ports: Vec<_> = registry.endpoints().map(|e| e.port).collect();
        for port in ports {
            let Some(endpoint) = registry.commit_disconnect(port) else {
                continue;
            };
            if let Err(e) = state.remove_endpoint(port.0) {
                warn!("state: forget endpoint {}: {e}", endpoint.container);
            }
            // Whatever becomes of the datapath's fd, the TAP goes when the daemon exits.
            if let Some(tap) = taps.remove(&port)
                && let Err(e) = port::release_persistent_tap(tap.as_fd())
            {
                warn!("make the TAP of {} non-persistent: {e}", endpoint.container);
            }
            match datapath.remove_port(port) {
                Ok(fd) => {
                    let attached = AttachedPort {
                        kind: endpoint.kind,
                        fd,
                        ifname: endpoint.ifname,
                        host_ifname: endpoint.host_ifname,
                        queues: Vec::new(),
                    };
                    if let Err(err) = port::detach(attached) {
                        warn!("remove device of {}: {err}", endpoint.container);
                    }
                }
                Err(err) => warn!("remove port of {}: {err:#}", endpoint.container),
            }
        }
        if let Err(err) = datapath.shutdown() {
            warn!("stop datapath: {err:#}");
        }
        engine.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::names_host_address;

    #[test]
    fn publications_that_name_a_host_address() {
        for named in [
            "127.0.0.1:8080:80",
            "0.0.0.0:8080:80/udp",
            "[::1]:8080:80",
            "10.0.0.1:8000-8010:80-90/tcp",
        ] {
            assert!(names_host_address(named), "{named}");
        }
        for bare in ["8080:80", "8080:80/udp", "8000-8010:80-90"] {
            assert!(!names_host_address(bare), "{bare}");
        }
    }
}
