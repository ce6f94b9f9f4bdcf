//! The daemon's record of networks, containers and their endpoints, with address
//! management (IPAM). Pure logic: it validates requests into plans, and the daemon
//! commits a plan only once the ports and the datapath have accepted it, so that a
//! failed command changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use tapnet_switch::{NetworkId, PortId};
use tapnet_wire::MacAddr;

use super::proto::{Connect, EndpointInfo, NetworkCreate, NetworkInfo, NetworkOptions};
use crate::port::{NetnsId, PortKind};
use crate::portspec::PortSpec;

/// Default MTU of a network (Docker's bridge default).
pub(crate) const DEFAULT_MTU: u32 = 1500;
/// Smallest MTU an IPv4 network can have (RFC 791: every host must accept 68 octets).
pub(crate) const MIN_MTU: u32 = 68;
/// Largest MTU tapnet accepts (the tun driver's limit, 65535, minus headers, as slirp4netns).
pub(crate) const MAX_MTU: u32 = 65520;

/// A network as the daemon records it.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    pub(crate) id: NetworkId,
    pub(crate) name: String,
    pub(crate) subnet: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) mtu: u32,
    pub(crate) icc: bool,
    pub(crate) internal: bool,
    /// Masquerade on the packet uplink (else routed untranslated).
    pub(crate) masquerade: bool,
    /// The dynamic pool of the network's DHCP server, inclusive, when `--dhcp`.
    pub(crate) dhcp_pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// The IPv6 prefix, when `--ipv6`; its first address is the gateway.
    pub(crate) subnet6: Option<Ipv6Net>,
    /// Where publications that name no host address listen (default 0.0.0.0).
    pub(crate) host_binding_ip: Option<Ipv4Addr>,
}

impl Network {
    /// The IPv6 gateway: the first address of the prefix (`PREFIX::1`).
    pub(crate) fn gateway6(&self) -> Option<Ipv6Addr> {
        self.subnet6
            .map(|p| Ipv6Addr::from(u128::from(p.network()) + 1))
    }

    /// The IPv6 address that goes with an IPv4 address of the network: the prefix plus
    /// the IPv4 host number (10.1.0.7 in 10.1.0.0/24 → PREFIX::7), so it is unique
    /// whenever the IPv4 address is.
    pub(crate) fn ipv6_of(&self, ip: Ipv4Addr) -> Option<Ipv6Net> {
        let prefix = self.subnet6?;
        let host = u32::from(ip) - u32::from(self.subnet.network());
        Ipv6Net::new(
            Ipv6Addr::from(u128::from(prefix.network()) + u128::from(host)),
            prefix.prefix_len(),
        )
        .ok()
    }
}

/// One attachment of a container to a network.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) port: PortId,
    pub(crate) network: String,
    pub(crate) container: String,
    pub(crate) ifname: String,
    pub(crate) mac: MacAddr,
    pub(crate) ip: Ipv4Addr,
    pub(crate) kind: PortKind,
    pub(crate) host_ifname: Option<String>,
    pub(crate) aliases: Vec<String>,
    /// Connected with `--allow-spoofing`: the port has no source guard.
    pub(crate) allow_spoofing: bool,
}

/// A container: a network namespace with a name.
#[derive(Clone, Debug)]
struct Container {
    netns: NetnsId,
}

/// A validated `network create`, not yet committed.
#[derive(Clone, Debug)]
pub(crate) struct NetworkPlan {
    pub(crate) network: Network,
}

/// A validated `connect`, not yet committed.
#[derive(Clone, Debug)]
pub(crate) struct ConnectPlan {
    pub(crate) port: PortId,
    pub(crate) network_id: NetworkId,
    pub(crate) network: String,
    pub(crate) container: String,
    pub(crate) netns: NetnsId,
    pub(crate) ifname: Option<String>,
    pub(crate) mac: MacAddr,
    pub(crate) address: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) mtu: u32,
    pub(crate) kind: PortKind,
    pub(crate) aliases: Vec<String>,
    pub(crate) allow_spoofing: bool,
}

/// A published port range of a container: forwarded from host sockets by the engine
/// as `forward`, and DNATed on the packet uplink by `nat`.
#[derive(Clone, Debug)]
pub(crate) struct Publication {
    pub(crate) forward: Option<u32>,
    pub(crate) nat: Option<tapnet_nat::PublishRule>,
    pub(crate) port: PortId,
    pub(crate) spec: PortSpec,
}

/// Networks, containers and endpoints.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    networks: BTreeMap<String, Network>,
    containers: BTreeMap<String, Container>,
    endpoints: BTreeMap<PortId, Endpoint>,
    publications: Vec<Publication>,
    next_port_id: u32,
}

/// Docker's rule for network and container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(format!(
            "invalid {what} name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit (at most 64)"
        ));
    }
    Ok(())
}

/// The dynamic DHCP pool of a subnet: the upper half of its host addresses. The
/// address allocator hands out the lower half, so the two never meet.
fn dhcp_pool(subnet: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    let mid = first + (last - first).div_ceil(2);
    (Ipv4Addr::from(mid), Ipv4Addr::from(last))
}

fn parse_subnet(text: &str) -> Result<Ipv4Net, String> {
    let subnet: Ipv4Net = text.parse().map_err(|_| {
        format!("invalid subnet {text:?}: expected an IPv4 CIDR such as 10.1.0.0/24")
    })?;
    if subnet.addr() != subnet.network() {
        return Err(format!(
            "invalid subnet {text}: host bits are set (did you mean {}?)",
            subnet.trunc()
        ));
    }
    if subnet.prefix_len() > 30 {
        return Err(format!(
            "invalid subnet {text}: too small for a gateway and a container (use /30 or larger)"
        ));
    }
    Ok(subnet)
}

/// Whether `ip` can be given to a host in `subnet` (not the network or broadcast address).
fn is_host_address(subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
    subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast()
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Validates `network create`.
    pub(crate) fn plan_network_create(&self, req: &NetworkCreate) -> Result<NetworkPlan, String> {
        validate_name("network", &req.name)?;
        if self.networks.contains_key(&req.name) {
            return Err(format!("network {:?} already exists", req.name));
        }
        let subnet = parse_subnet(&req.subnet)?;
        if let Some(other) = self
            .networks
            .values()
            .find(|n| n.subnet.contains(&subnet.network()) || subnet.contains(&n.subnet.network()))
        {
            return Err(format!(
                "subnet {subnet} overlaps network {:?} ({})",
                other.name, other.subnet
            ));
        }
        let gateway = match req.gateway {
            Some(gw) if !is_host_address(subnet, gw) => {
                return Err(format!(
                    "gateway {gw} is not a host address of subnet {subnet}"
                ));
            }
            Some(gw) => gw,
            None => subnet
                .hosts()
                .next()
                .ok_or_else(|| format!("subnet {subnet} has no host addresses"))?,
        };
        let subnet6 = match &req.subnet6 {
            None => None,
            Some(text) => {
                let prefix: Ipv6Net = text.parse().map_err(|_| {
                    format!("invalid IPv6 subnet {text:?}: expected a prefix such as fd00:1::/64")
                })?;
                if prefix.addr() != prefix.network() {
                    return Err(format!(
                        "invalid IPv6 subnet {text}: host bits are set (did you mean {}?)",
                        prefix.trunc()
                    ));
                }
                if prefix.prefix_len() > 112 {
                    return Err(format!("invalid IPv6 subnet {text}: use /112 or larger"));
                }
                if let Some(other) = self.networks.values().find(|n| {
                    n.subnet6.is_some_and(|o| {
                        o.contains(&prefix.network()) || prefix.contains(&o.network())
                    })
                }) {
                    return Err(format!(
                        "IPv6 subnet {prefix} overlaps network {:?}",
                        other.name
                    ));
                }
                Some(prefix)
            }
        };
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        if subnet6.is_some() && mtu < 1280 {
            return Err(format!(
                "invalid MTU {mtu} for IPv6: must be at least 1280 (RFC 8200)"
            ));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(format!(
                "invalid MTU {mtu}: must be between {MIN_MTU} and {MAX_MTU}"
            ));
        }
        // The lowest id not in use: the switch keys networks by 16 bits, so ids are reused.
        let id = (0..=u32::MAX)
            .map(NetworkId)
            .find(|id| self.networks.values().all(|n| n.id != *id))
            .ok_or_else(|| "too many networks".to_owned())?;
        Ok(NetworkPlan {
            network: Network {
                id,
                name: req.name.clone(),
                subnet,
                gateway,
                mtu,
                icc: req.icc,
                internal: req.internal,
                masquerade: req.masquerade,
                dhcp_pool: req.dhcp.then(|| dhcp_pool(subnet)),
                subnet6,
                host_binding_ip: req.host_binding_ip,
            },
        })
    }

    /// Records a planned network.
    pub(crate) fn commit_network(&mut self, plan: NetworkPlan) {
        self.networks
            .insert(plan.network.name.clone(), plan.network);
    }

    /// Looks up a network by name.
    pub(crate) fn network(&self, name: &str) -> Result<&Network, String> {
        self.networks
            .get(name)
            .ok_or_else(|| format!("network {name:?} not found"))
    }

    /// Validates `network rm`: the network exists and has no containers.
    pub(crate) fn plan_network_remove(&self, name: &str) -> Result<NetworkId, String> {
        let network = self.network(name)?;
        let attached: Vec<&str> = self
            .endpoints
            .values()
            .filter(|e| e.network == name)
            .map(|e| e.container.as_str())
            .collect();
        if !attached.is_empty() {
            return Err(format!(
                "network {name:?} has active endpoints ({}); disconnect them first",
                attached.join(", ")
            ));
        }
        Ok(network.id)
    }

    /// Forgets a network (after `plan_network_remove`).
    pub(crate) fn commit_network_remove(&mut self, name: &str) {
        self.networks.remove(name);
    }

    /// The name under which the namespace `netns` is known, if it is.
    fn container_of(&self, netns: NetnsId) -> Option<&str> {
        self.containers
            .iter()
            .find(|(_, c)| c.netns == netns)
            .map(|(name, _)| name.as_str())
    }

    /// Validates `connect`. `default_name` is used when the request names no container
    /// and the namespace is not known yet.
    pub(crate) fn plan_connect(
        &self,
        req: &Connect,
        netns: NetnsId,
        default_name: &str,
    ) -> Result<ConnectPlan, String> {
        let network = self.network(&req.network)?;
        let known_as = self.container_of(netns);
        let container = match (&req.name, known_as) {
            (Some(name), Some(known)) if name != known => {
                return Err(format!(
                    "this network namespace is already connected as container {known:?}"
                ));
            }
            (Some(name), _) => name.clone(),
            (None, Some(known)) => known.to_owned(),
            (None, None) => default_name.to_owned(),
        };
        validate_name("container", &container)?;
        if let Some(existing) = self.containers.get(&container)
            && existing.netns != netns
        {
            return Err(format!(
                "container name {container:?} is already in use by another network namespace"
            ));
        }
        let own_endpoints = || self.endpoints.values().filter(|e| e.container == container);
        if own_endpoints().any(|e| e.network == network.name) {
            return Err(format!(
                "container {container:?} is already connected to network {:?}",
                network.name
            ));
        }
        if let Some(ifname) = &req.ifname {
            crate::port::validate_ifname(ifname).map_err(|e| e.to_string())?;
            if own_endpoints().any(|e| &e.ifname == ifname) {
                return Err(format!(
                    "container {container:?} already has an interface named {ifname}"
                ));
            }
        }
        let mut aliases: Vec<String> = Vec::new();
        for alias in &req.aliases {
            validate_name("alias", alias)?;
            if alias != &container && !aliases.contains(alias) {
                aliases.push(alias.clone());
            }
        }
        let used: BTreeSet<Ipv4Addr> = self
            .endpoints
            .values()
            .filter(|e| e.network == network.name)
            .map(|e| e.ip)
            .collect();
        let ip = match req.ip {
            Some(ip) if !network.subnet.contains(&ip) => {
                return Err(format!(
                    "address {ip} is outside the subnet {} of network {:?}",
                    network.subnet, network.name
                ));
            }
            Some(ip) if !is_host_address(network.subnet, ip) => {
                return Err(format!(
                    "address {ip} is the network or broadcast address of {}",
                    network.subnet
                ));
            }
            Some(ip) if ip == network.gateway => {
                return Err(format!(
                    "address {ip} is in use by the gateway of network {:?}",
                    network.name
                ));
            }
            Some(ip) if used.contains(&ip) => {
                return Err(format!(
                    "address {ip} is already in use on network {:?}",
                    network.name
                ));
            }
            Some(ip) => ip,
            None => network
                .subnet
                .hosts()
                .filter(|ip| network.dhcp_pool.is_none_or(|(lo, _)| *ip < lo))
                .find(|ip| *ip != network.gateway && !used.contains(ip))
                .ok_or_else(|| {
                    format!(
                        "no free address left in subnet {} of network {:?}",
                        network.subnet, network.name
                    )
                })?,
        };
        let mac = req.mac.unwrap_or(MacAddr::from_ipv4_docker(ip.octets()));
        if !mac.is_valid_source() {
            return Err(format!(
                "invalid MAC address {mac}: must be unicast and not all zeros"
            ));
        }
        // The gateway's MAC is pinned to the gateway (no container may take it over).
        if mac == MacAddr::from_ipv4_docker(network.gateway.octets()) {
            return Err(format!(
                "MAC address {mac} is the gateway's of network {:?}",
                network.name
            ));
        }
        if let Some(holder) = self
            .endpoints
            .values()
            .find(|e| e.network == network.name && e.mac == mac)
        {
            return Err(format!(
                "MAC address {mac} is already in use by container {:?}",
                holder.container
            ));
        }
        let address = Ipv4Net::new(ip, network.subnet.prefix_len()).map_err(|e| e.to_string())?;
        Ok(ConnectPlan {
            port: PortId(self.next_port_id),
            network_id: network.id,
            network: network.name.clone(),
            container,
            netns,
            ifname: req.ifname.clone(),
            mac,
            address,
            gateway: network.gateway,
            mtu: network.mtu,
            kind: req.kind,
            aliases,
            allow_spoofing: req.allow_spoofing,
        })
    }

    /// Records a planned connection, with the interface names the port actually got.
    pub(crate) fn commit_connect(
        &mut self,
        plan: ConnectPlan,
        ifname: String,
        host_ifname: Option<String>,
    ) {
        self.next_port_id = plan.port.0 + 1;
        self.containers
            .entry(plan.container.clone())
            .or_insert(Container { netns: plan.netns });
        self.endpoints.insert(
            plan.port,
            Endpoint {
                port: plan.port,
                network: plan.network,
                container: plan.container,
                ifname,
                mac: plan.mac,
                ip: plan.address.addr(),
                kind: plan.kind,
                host_ifname,
                aliases: plan.aliases,
                allow_spoofing: plan.allow_spoofing,
            },
        );
    }

    /// Reserves a port id that a failed connect consumed, so it is never reused
    /// while a half-removed device with its name might linger.
    pub(crate) fn skip_port(&mut self, port: PortId) {
        self.next_port_id = self.next_port_id.max(port.0 + 1);
    }

    /// Finds the endpoint of `container` on `network`.
    pub(crate) fn endpoint_of(&self, network: &str, container: &str) -> Result<&Endpoint, String> {
        self.network(network)?;
        if !self.containers.contains_key(container) {
            return Err(format!("container {container:?} not found"));
        }
        self.endpoints
            .values()
            .find(|e| e.network == network && e.container == container)
            .ok_or_else(|| {
                format!("container {container:?} is not connected to network {network:?}")
            })
    }

    /// Forgets an endpoint, and its container when that was its last one.
    pub(crate) fn commit_disconnect(&mut self, port: PortId) -> Option<Endpoint> {
        let endpoint = self.endpoints.remove(&port)?;
        if !self
            .endpoints
            .values()
            .any(|e| e.container == endpoint.container)
        {
            self.containers.remove(&endpoint.container);
        }
        Some(endpoint)
    }

    /// Validates publishing `spec` for the endpoint behind `port`: the network may be
    /// reached from outside, the address family is served, and no other publication
    /// holds any of the host ports on an overlapping address.
    pub(crate) fn plan_publish(&self, port: PortId, spec: &PortSpec) -> Result<(), String> {
        let endpoint = self.endpoint(port).ok_or("no such endpoint")?;
        let network = self.network(&endpoint.network)?;
        if network.internal {
            return Err(format!(
                "network {:?} is internal: its ports cannot be published",
                network.name
            ));
        }
        if spec.host_addr.is_ipv6() {
            return Err(format!("{spec}: network {:?} has no IPv6", network.name));
        }
        let overlaps = |other: &PortSpec| {
            let same_addr = other.host_addr == spec.host_addr
                || other.host_addr.is_unspecified()
                || spec.host_addr.is_unspecified();
            let (a0, a1) = (
                u32::from(spec.host_port),
                u32::from(spec.host_port) + u32::from(spec.count),
            );
            let (b0, b1) = (
                u32::from(other.host_port),
                u32::from(other.host_port) + u32::from(other.count),
            );
            other.proto == spec.proto && same_addr && a0 < b1 && b0 < a1
        };
        if let Some(holder) = self.publications.iter().find(|p| overlaps(&p.spec)) {
            let owner = self
                .endpoint(holder.port)
                .map_or("?", |e| e.container.as_str());
            return Err(format!(
                "{spec}: host port already published by container {owner:?} ({})",
                holder.spec
            ));
        }
        Ok(())
    }

    /// Records a publication the engine accepted.
    pub(crate) fn commit_publish(&mut self, publication: Publication) {
        self.publications.push(publication);
    }

    /// Removes and returns the publications of `port` matching `specs` (all if empty).
    pub(crate) fn take_publications(
        &mut self,
        port: PortId,
        specs: &[PortSpec],
    ) -> Vec<Publication> {
        let (taken, kept) = std::mem::take(&mut self.publications)
            .into_iter()
            .partition(|p| p.port == port && (specs.is_empty() || specs.contains(&p.spec)));
        self.publications = kept;
        taken
    }

    /// Every publication.
    pub(crate) fn publications(&self) -> &[Publication] {
        &self.publications
    }

    /// The networks a container is connected to (its name lookup scope), in the order
    /// it joined them.
    pub(crate) fn scope_of(&self, container: &str) -> Vec<NetworkId> {
        self.endpoints
            .values()
            .filter(|e| e.container == container)
            .filter_map(|e| self.networks.get(&e.network).map(|n| n.id))
            .collect()
    }

    /// Every endpoint.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// The endpoint behind a port.
    pub(crate) fn endpoint(&self, port: PortId) -> Option<&Endpoint> {
        self.endpoints.get(&port)
    }

    /// Every network, by name.
    pub(crate) fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.values()
    }

    /// A network as `network inspect` shows it.
    pub(crate) fn network_info(&self, network: &Network) -> NetworkInfo {
        NetworkInfo {
            name: network.name.clone(),
            subnet: network.subnet,
            gateway: network.gateway,
            subnet6: network.subnet6,
            gateway6: network.gateway6(),
            mtu: network.mtu,
            options: NetworkOptions {
                icc: network.icc,
                internal: network.internal,
                masquerade: network.masquerade,
                dhcp: network.dhcp_pool.is_some(),
                host_binding_ip: network.host_binding_ip,
            },
            containers: self
                .endpoints
                .values()
                .filter(|e| e.network == network.name)
                .map(|e| self.endpoint_info(e))
                .collect(),
        }
    }

    /// An endpoint as the CLI shows it.
    pub(crate) fn endpoint_info(&self, endpoint: &Endpoint) -> EndpointInfo {
        let prefix = self
            .networks
            .get(&endpoint.network)
            .map_or(32, |n| n.subnet.prefix_len());
        EndpointInfo {
            name: endpoint.container.clone(),
            network: endpoint.network.clone(),
            interface: endpoint.ifname.clone(),
            mac: endpoint.mac,
            ip: Ipv4Net::new(endpoint.ip, prefix).unwrap_or_else(|_| Ipv4Net::from(endpoint.ip)),
            ip6: self
                .networks
                .get(&endpoint.network)
                .and_then(|n| n.ipv6_of(endpoint.ip)),
            kind: endpoint.kind,
            port: endpoint.port.0,
            aliases: endpoint.aliases.clone(),
            host_interface: endpoint.host_ifname.clone(),
            allow_spoofing: endpoint.allow_spoofing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::NetnsSpec;

    const NS_A: NetnsId = NetnsId { dev: 4, ino: 100 };
    const NS_B: NetnsId = NetnsId { dev: 4, ino: 200 };

    fn create(name: &str, subnet: &str) -> NetworkCreate {
        NetworkCreate {
            name: name.into(),
            subnet: subnet.into(),
            gateway: None,
            mtu: None,
            icc: true,
            internal: false,
            masquerade: true,
            dhcp: false,
            subnet6: None,
            host_binding_ip: None,
        }
    }

    fn connect(network: &str) -> Connect {
        Connect {
            network: network.into(),
            netns: NetnsSpec::Pid(1),
            name: None,
            ifname: None,
            ip: None,
            mac: None,
            kind: PortKind::Tap,
            aliases: Vec::new(),
            publish: Vec::new(),
            allow_spoofing: false,
        }
    }

    fn registry_with(networks: &[(&str, &str)]) -> Registry {
        let mut registry = Registry::new();
        for (name, subnet) in networks {
            let plan = registry.plan_network_create(&create(name, subnet)).unwrap();
            registry.commit_network(plan);
        }
        registry
    }

    fn attach(
        registry: &mut Registry,
        req: &Connect,
        netns: NetnsId,
        default: &str,
    ) -> Result<Ipv4Addr, String> {
        let plan = registry.plan_connect(req, netns, default)?;
        let ip = plan.address.addr();
        let ifname = plan.ifname.clone().unwrap_or_else(|| "eth0".into());
        registry.commit_connect(plan, ifname, None);
        Ok(ip)
    }

    #[test]
    fn network_create_defaults_and_errors() {
        let registry = registry_with(&[("a", "10.1.0.0/24")]);
        let a = registry.network("a").unwrap();
        assert_eq!(
            (a.gateway, a.mtu),
            (Ipv4Addr::new(10, 1, 0, 1), DEFAULT_MTU)
        );
        let err = |req: NetworkCreate| registry.plan_network_create(&req).unwrap_err();
        assert!(err(create("a", "10.2.0.0/24")).contains("already exists"));
        assert!(err(create("b", "10.1.0.0/16")).contains("overlaps network \"a\""));
        assert!(err(create("b", "10.1.0.128/25")).contains("overlaps"));
        assert!(err(create("b", "10.2.0.5/24")).contains("did you mean 10.2.0.0/24"));
        assert!(err(create("b", "banana")).contains("invalid subnet"));
        assert!(err(create("b", "10.2.0.0/31")).contains("too small"));
        assert!(err(create("-b", "10.2.0.0/24")).contains("invalid network name"));
        let bad_gw = NetworkCreate {
            gateway: Some(Ipv4Addr::new(10, 3, 0, 1)),
            ..create("b", "10.2.0.0/24")
        };
        assert!(err(bad_gw).contains("not a host address"));
        let bad_mtu = NetworkCreate {
            mtu: Some(65521),
            ..create("b", "10.2.0.0/24")
        };
        assert!(err(bad_mtu).contains("invalid MTU"));
    }

    #[test]
    fn allocates_lowest_free_address_skipping_gateway() {
        let mut registry = registry_with(&[("a", "10.1.0.0/29")]);
        let mut ips = Vec::new();
        for (i, ns) in (1..=5).map(|i| (i, NetnsId { dev: 1, ino: i })) {
            ips.push(attach(&mut registry, &connect("a"), ns, &format!("c{i}")).unwrap());
        }
        let expected: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 1, 0, h)).collect();
        assert_eq!(ips, expected);
        let err = attach(
            &mut registry,
            &connect("a"),
            NetnsId { dev: 1, ino: 99 },
            "c99",
        )
        .unwrap_err();
        assert!(err.contains("no free address"), "{err}");
    }

    #[test]
    fn allow_spoofing_is_recorded_and_shown() {
        let mut registry = registry_with(&[("a", "10.1.0.0/24")]);
        let free = Connect {
            allow_spoofing: true,
            ..connect("a")
        };
        attach(&mut registry, &free, NS_A, "router").unwrap();
        attach(&mut registry, &connect("a"), NS_B, "plain").unwrap();
        let info = |name: &str| {
            let endpoint = registry.endpoint_of("a", name).unwrap();
            registry.endpoint_info(endpoint).allow_spoofing
        };
        assert!(info("router"));
        assert!(!info("plain"));
        // Old clients send no such field: guarded, as before.
        let old: Connect = serde_json::from_str(
            r#"{"network":"a","netns":{"pid":1},"name":null,"ifname":null,"ip":null,"mac":null,"kind":"tap"}"#,
        )
        .unwrap();
        assert!(!old.allow_spoofing);
    }

    #[test]
    fn explicit_address_is_validated() {
        let mut registry = registry_with(&[("a", "10.1.0.0/24")]);
        let with_ip = |ip: [u8; 4]| Connect {
            ip: Some(Ipv4Addr::from(ip)),
            ..connect("a")
        };
        attach(&mut registry, &with_ip([10, 1, 0, 7]), NS_A, "x").unwrap();
        let err = |req: Connect| registry.plan_connect(&req, NS_B, "y").unwrap_err();
        assert!(err(with_ip([10, 1, 0, 7])).contains("already in use"));
        assert!(err(with_ip([10, 2, 0, 7])).contains("outside the subnet"));
        assert!(err(with_ip([10, 1, 0, 1])).contains("gateway"));
        assert!(err(with_ip([10, 1, 0, 255])).contains("broadcast"));
        assert!(
            err(Connect {
                mac: Some(MacAddr::BROADCAST),
                ..connect("a")
            })
            .contains("invalid MAC")
        );
        assert!(
            err(Connect {
                mac: Some(MacAddr::from_ipv4_docker([10, 1, 0, 1])),
                ..connect("a")
            })
            .contains("the gateway's")
        );
        assert!(
            err(Connect {
                ifname: Some("x/y".into()),
                ..connect("a")
            })
            .contains("invalid interface name")
        );
        assert!(err(connect("nope")).contains("not found"));
    }

    #[test]
    fn one_namespace_is_one_container_across_networks() {
        let mut registry = registry_with(&[("a", "10.1.0.0/24"), ("b", "10.2.0.0/24")]);
        attach(
            &mut registry,
            &Connect {
                name: Some("web".into()),
                ..connect("a")
            },
            NS_A,
            "unused",
        )
        .unwrap();
        // The same namespace joins another network under the same name, without naming it.
        let plan = registry.plan_connect(&connect("b"), NS_A, "other").unwrap();
        assert_eq!(plan.container, "web");
        // Twice on the same network is refused; so is the name for another namespace.
        assert!(
            registry
                .plan_connect(&connect("a"), NS_A, "x")
                .unwrap_err()
                .contains("already connected")
        );
        let other = Connect {
            name: Some("web".into()),
            ..connect("b")
        };
        assert!(
            registry
                .plan_connect(&other, NS_B, "x")
                .unwrap_err()
                .contains("already in use")
        );
        let renamed = Connect {
            name: Some("db".into()),
            ..connect("b")
        };
        assert!(
            registry
                .plan_connect(&renamed, NS_A, "x")
                .unwrap_err()
                .contains("already connected as container")
        );
    }

    #[test]
    fn aliases_are_validated_and_deduplicated() {
        let mut registry = registry_with(&[("a", "10.1.0.0/24")]);
        let req = Connect {
            name: Some("web".into()),
            aliases: vec!["www".into(), "www".into(), "web".into(), "api.v2".into()],
            ..connect("a")
        };
        let plan = registry.plan_connect(&req, NS_A, "x").unwrap();
        assert_eq!(plan.aliases, ["www", "api.v2"]);
        let bad = Connect {
            aliases: vec!["no spaces".into()],
            ..connect("a")
        };
        assert!(
            registry
                .plan_connect(&bad, NS_B, "y")
                .unwrap_err()
                .contains("invalid alias name")
        );
        registry.commit_connect(plan, "eth0".into(), None);
        let info = registry.network_info(registry.network("a").unwrap());
        assert_eq!(info.containers[0].aliases, ["www", "api.v2"]);
    }

    #[test]
    fn dhcp_pool_is_the_upper_half_and_ipam_keeps_out() {
        let mut registry = Registry::new();
        let req = NetworkCreate {
            dhcp: true,
            ..create("d", "10.9.0.0/29")
        };
        let plan = registry.plan_network_create(&req).unwrap();
        // Hosts .1-.6: gateway .1; allocator .2-.3; pool .4-.6.
        assert_eq!(
            plan.network.dhcp_pool,
            Some((Ipv4Addr::new(10, 9, 0, 4), Ipv4Addr::new(10, 9, 0, 6)))
        );
        registry.commit_network(plan);
        let ns = |i| NetnsId { dev: 9, ino: i };
        assert_eq!(
            attach(&mut registry, &connect("d"), ns(1), "a").unwrap(),
            Ipv4Addr::new(10, 9, 0, 2)
        );
        assert_eq!(
            attach(&mut registry, &connect("d"), ns(2), "b").unwrap(),
            Ipv4Addr::new(10, 9, 0, 3)
        );
        assert!(
            attach(&mut registry, &connect("d"), ns(3), "c")
                .unwrap_err()
                .contains("no free address")
        );
    }

    #[test]
    fn ipv6_prefix_gives_gateway_and_addresses() {
        let mut registry = Registry::new();
        let req = NetworkCreate {
            subnet6: Some("fd00:1::/64".into()),
            ..create("six", "10.8.0.0/24")
        };
        let plan = registry.plan_network_create(&req).unwrap();
        assert_eq!(plan.network.gateway6(), Some("fd00:1::1".parse().unwrap()));
        assert_eq!(
            plan.network.ipv6_of(Ipv4Addr::new(10, 8, 0, 7)),
            Some("fd00:1::7/64".parse().unwrap())
        );
        registry.commit_network(plan);
        let err = |text: &str| {
            let req = NetworkCreate {
                subnet6: Some(text.into()),
                ..create("x", "10.9.0.0/24")
            };
            registry.plan_network_create(&req).unwrap_err()
        };
        assert!(err("fd00:1:0:0:8000::/65").contains("overlaps"));
        assert!(err("fd00:2::1/64").contains("host bits"));
        assert!(err("nonsense").contains("invalid IPv6 subnet"));
        assert!(err("fd00:3::/120").contains("/112 or larger"));
    }

    #[test]
    fn publications_may_not_overlap() {
        let mut registry = registry_with(&[("a", "10.1.0.0/24")]);
        attach(&mut registry, &connect("a"), NS_A, "one").unwrap();
        attach(&mut registry, &connect("a"), NS_B, "two").unwrap();
        let (one, two) = (PortId(0), PortId(1));
        let spec = |s: &str| PortSpec::parse(s).unwrap();
        registry
            .plan_publish(one, &spec("8000-8010:80-90"))
            .unwrap();
        registry.commit_publish(Publication {
            forward: Some(1),
            nat: None,
            port: one,
            spec: spec("8000-8010:80-90"),
        });
        let err = registry
            .plan_publish(two, &spec("127.0.0.1:8010:80"))
            .unwrap_err();
        assert!(
            err.contains("already published by container \"one\""),
            "{err}"
        );
        // Another protocol, or ports beyond the range, are free.
        registry.plan_publish(two, &spec("8010:80/udp")).unwrap();
        registry.plan_publish(two, &spec("8011:80")).unwrap();
        assert!(
            registry
                .plan_publish(two, &spec("[::1]:8080:80"))
                .unwrap_err()
                .contains("no IPv6")
        );
        assert_eq!(registry.take_publications(one, &[]).len(), 1);
        registry.plan_publish(two, &spec("8005:80")).unwrap();
    }

    #[test]
    fn disconnect_frees_address_and_name() {
        let mut registry = registry_with(&[("a", "10.1.0.0/24")]);
        let ip = attach(&mut registry, &connect("a"), NS_A, "one").unwrap();
        assert!(
            registry
                .plan_network_remove("a")
                .unwrap_err()
                .contains("active endpoints (one)")
        );
        let port = registry.endpoint_of("a", "one").unwrap().port;
        registry.commit_disconnect(port).unwrap();
        assert_eq!(
            attach(&mut registry, &connect("a"), NS_B, "one").unwrap(),
            ip
        );
        assert!(
            registry
                .endpoint_of("a", "ghost")
                .unwrap_err()
                .contains("not found")
        );
    }

    #[test]
    fn network_ids_are_reused() {
        let mut registry = registry_with(&[("a", "10.1.0.0/24"), ("b", "10.2.0.0/24")]);
        assert_eq!(registry.network("b").unwrap().id, NetworkId(1));
        registry.plan_network_remove("a").unwrap();
        registry.commit_network_remove("a");
        let plan = registry
            .plan_network_create(&create("c", "10.3.0.0/24"))
            .unwrap();
        assert_eq!(plan.network.id, NetworkId(0));
    }
}
