//! The control protocol: one JSON request per line on a unix stream socket, answered
//! by one JSON response line, `{"ok": ...}` or `{"error": "one line"}`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tapnet_wire::MacAddr;

use crate::port::PortKind;

/// A request from a client command to the daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    NetworkCreate(NetworkCreate),
    NetworkList,
    NetworkRemove { name: String },
    NetworkInspect { name: String },
    Connect(Connect),
    Disconnect { network: String, container: String },
    Macs { network: String },
    Stats,
    Conntrack,
    Publish(Publish),
    Unpublish(Publish),
    PublishList,
}

/// `tapnet publish` / `tapnet unpublish`: ports of a container on a network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Publish {
    pub(crate) network: String,
    pub(crate) container: String,
    /// `[HOSTIP:]HOST:CONTAINER[/tcp|/udp]`, as typed; for unpublish, empty means all.
    pub(crate) specs: Vec<String>,
}

/// One published port (range), as `publish ls` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PublicationInfo {
    pub(crate) network: String,
    pub(crate) container: String,
    /// `HOSTIP:HOST:CONTAINER/PROTO`, normalised.
    pub(crate) publish: String,
    pub(crate) container_ip: Ipv4Addr,
}

/// `tapnet network create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NetworkCreate {
    pub(crate) name: String,
    /// As typed by the user; the daemon parses it so that every client gets the same errors.
    pub(crate) subnet: String,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) mtu: Option<u32>,
    pub(crate) icc: bool,
    /// Docker's `--internal`: nothing leaves the network, nothing outside reaches it.
    #[serde(default)]
    pub(crate) internal: bool,
    /// Masquerade on the packet uplink (Docker's enable_ip_masquerade, default on).
    #[serde(default = "yes")]
    pub(crate) masquerade: bool,
    /// A DHCP server on the network.
    #[serde(default)]
    pub(crate) dhcp: bool,
    /// An IPv6 prefix (`--ipv6 --subnet6`), as typed.
    #[serde(default)]
    pub(crate) subnet6: Option<String>,
    /// The host address of publications that name none (Docker's host_binding_ipv4).
    #[serde(default)]
    pub(crate) host_binding_ip: Option<Ipv4Addr>,
}

/// Where the container's network namespace is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NetnsSpec {
    Pid(u32),
    Path(String),
}

/// `tapnet connect`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Connect {
    pub(crate) network: String,
    pub(crate) netns: NetnsSpec,
    pub(crate) name: Option<String>,
    pub(crate) ifname: Option<String>,
    pub(crate) ip: Option<Ipv4Addr>,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) kind: PortKind,
    /// More names of the container on this network (Docker's `--network-alias`).
    #[serde(default)]
    pub(crate) aliases: Vec<String>,
    /// Ports to publish once connected (`--publish`); if one fails, the connect is undone.
    #[serde(default)]
    pub(crate) publish: Vec<String>,
    /// No source guard on the port (`--allow-spoofing`): it may send from any MAC and
    /// address, for a container that routes or carries other addresses.
    #[serde(default)]
    pub(crate) allow_spoofing: bool,
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Response {
    Ok(serde_json::Value),
    Error(String),
}

/// A network as `network ls` and `network inspect` show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NetworkInfo {
    pub(crate) name: String,
    pub(crate) subnet: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) subnet6: Option<ipnet::Ipv6Net>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) gateway6: Option<std::net::Ipv6Addr>,
    pub(crate) mtu: u32,
    pub(crate) options: NetworkOptions,
    pub(crate) containers: Vec<EndpointInfo>,
}

/// Options of a network, named as Docker's bridge driver names them where it has them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NetworkOptions {
    pub(crate) icc: bool,
    /// Docker's `--internal`: nothing leaves the network, nothing outside reaches it.
    #[serde(default)]
    pub(crate) internal: bool,
    /// Masquerade on the packet uplink (Docker's enable_ip_masquerade).
    #[serde(default = "yes")]
    pub(crate) masquerade: bool,
    /// A DHCP server on the network.
    #[serde(default)]
    pub(crate) dhcp: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) host_binding_ip: Option<Ipv4Addr>,
}

/// One attachment of a container to a network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EndpointInfo {
    pub(crate) name: String,
    pub(crate) network: String,
    pub(crate) interface: String,
    pub(crate) mac: MacAddr,
    pub(crate) ip: Ipv4Net,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) ip6: Option<ipnet::Ipv6Net>,
    pub(crate) kind: PortKind,
    pub(crate) port: u32,
    /// More names of the container on this network.
    pub(crate) aliases: Vec<String>,
    /// The veth's host end, for veth ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) host_interface: Option<String>,
    /// Connected with `--allow-spoofing` (no source guard).
    #[serde(default)]
    pub(crate) allow_spoofing: bool,
}

/// One row of `tapnet macs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MacInfo {
    pub(crate) mac: MacAddr,
    pub(crate) port: u32,
    /// `container/interface` behind the port.
    pub(crate) endpoint: String,
    pub(crate) age_secs: f64,
    /// A port's own MAC, pinned by its source guard (or a gateway's): it never ages
    /// and never moves to another port.
    #[serde(default)]
    pub(crate) pinned: bool,
}

/// One row of `tapnet stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PortStatsInfo {
    pub(crate) port: u32,
    pub(crate) endpoint: String,
    pub(crate) network: String,
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_packets: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) rx_errors: u64,
    pub(crate) tx_errors: u64,
    /// Drops on ingress at this port, by reason (only reasons with a non-zero count).
    pub(crate) drops: std::collections::BTreeMap<String, u64>,
}

/// The answer to `tapnet stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StatsInfo {
    pub(crate) datapath: String,
    pub(crate) ports: Vec<PortStatsInfo>,
    /// Host-socket egress: traffic, flows open, drops by reason.
    pub(crate) egress: crate::engine::EngineStats,
    /// The packet uplink, if the daemon has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uplink: Option<UplinkStatsInfo>,
    /// The control socket: clients now, requests, and clients cut off by its bounds.
    #[serde(default)]
    pub(crate) control: crate::clientset::ClientStats,
}

/// Counters of the packet uplink: its own traffic and the NAT's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UplinkStatsInfo {
    pub(crate) interface: String,
    pub(crate) address: ipnet::Ipv4Net,
    pub(crate) rx_frames: u64,
    pub(crate) tx_frames: u64,
    pub(crate) arp_answered: u64,
    pub(crate) arp_requests: u64,
    pub(crate) echo_answered: u64,
    /// Flows tracked now.
    pub(crate) flows: usize,
    pub(crate) translated: u64,
    pub(crate) masqueraded_flows: u64,
    pub(crate) published_flows: u64,
    pub(crate) hairpin_flows: u64,
    pub(crate) routed_flows: u64,
    pub(crate) ports_remapped: u64,
    pub(crate) icmp_errors: u64,
    /// Drops by reason (only reasons with a non-zero count): the outside port's, the
    /// NAT's (`no_mapping` is unrelated inbound traffic) and the uplink's own.
    pub(crate) drops: std::collections::BTreeMap<String, u64>,
}

impl UplinkStatsInfo {
    pub(crate) fn new(
        interface: &str,
        address: ipnet::Ipv4Net,
        s: &crate::datapath::PacketUplinkStats,
    ) -> Self {
        let (o, n) = (&s.outside, &s.nat);
        let outside = tapnet_switch::router::OutsideDrop::ALL
            .iter()
            .map(|r| (r.as_str(), o.dropped(*r)));
        let nat = tapnet_nat::DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), n.dropped(*r)));
        let own = [
            ("ttl_exceeded", s.ttl_exceeded),
            ("unserved_local", s.unserved_local),
            ("unsolicited_ipv6", s.unsolicited6),
            ("oversized", s.oversized),
        ];
        let mut drops = std::collections::BTreeMap::new();
        for (reason, count) in outside.chain(nat).chain(own) {
            if count > 0 {
                *drops.entry(reason.to_owned()).or_insert(0) += count;
            }
        }
        Self {
            interface: interface.to_owned(),
            address,
            rx_frames: o.rx_frames,
            tx_frames: o.tx_frames,
            arp_answered: o.arp_answered,
            arp_requests: o.arp_requests,
            echo_answered: o.echo_answered,
            flows: s.flows,
            translated: n.translated,
            masqueraded_flows: n.masqueraded_flows,
            published_flows: n.published_flows,
            hairpin_flows: n.hairpin_flows,
            routed_flows: n.routed_flows,
            ports_remapped: n.ports_remapped,
            icmp_errors: n.icmp_errors,
            drops,
        }
    }
}

fn yes() -> bool {
    true
}
