//! The answer to a flow leaves the way the flow came in.
//!
//! A published port reached at one of the host's own addresses is served by the
//! host-socket engine, which connects into the container with the client's own
//! address as source (so the container sees who it talks to). With a packet uplink,
//! the container's answers to that address would otherwise follow the route to it,
//! out of the uplink and masqueraded, where no one expects them, and the client
//! would get nothing. So the flows the engine starts into a network are tracked
//! here (a connection table per network, Linux's timeouts: they live as long as the
//! flow does), and a packet of a container that belongs to one of them goes back to
//! the engine, whatever its destination.

use tapnet_conntrack::{Conntrack, ConntrackConfig, FlowKey, Proto, TcpFlags};
use tapnet_switch::NetworkId;
use tapnet_wire::Instant;
use tapnet_wire::ip::{self as packet, IpView, TcpView};

use super::zone_of;

/// Most flows remembered (published-port clients at a time); when full, the oldest
/// unanswered give way (conntrack's early drop), and an untracked flow's answers
/// take the route.
const CAPACITY: usize = 16_384;

/// The flows the host-socket engine started into the networks.
#[derive(Debug)]
pub(crate) struct EngineFlows {
    ct: Conntrack,
}

/// The flow key of IP packet `ip` of network `net`, with its TCP flags.
fn key_of(net: NetworkId, ip: &[u8]) -> Option<(FlowKey, Option<TcpFlags>)> {
    let view = IpView::parse(ip)?;
    if view.fragment {
        return None;
    }
    let l4 = view.l4(ip);
    let (proto, ports, flags) = match view.proto {
        packet::PROTO_TCP => {
            let t = TcpView::parse(l4)?;
            let flags = TcpFlags {
                syn: t.syn,
                ack: t.ack,
                fin: t.fin,
                rst: t.rst,
            };
            (Proto::Tcp, (t.src_port, t.dst_port), Some(flags))
        }
        packet::PROTO_UDP => {
            let (s, d, _) = packet::udp_ports(l4)?;
            (Proto::Udp, (s, d), None)
        }
        _ => return None,
    };
    let key = FlowKey {
        zone: zone_of(net)?,
        proto,
        src: view.src,
        src_port: ports.0,
        dst: view.dst,
        dst_port: ports.1,
    };
    Some((key, flags))
}

impl EngineFlows {
    pub(crate) fn new() -> Self {
        Self {
            ct: Conntrack::new(ConntrackConfig {
                capacity: CAPACITY,
                ..ConntrackConfig::default()
            }),
        }
    }

    /// The engine sends IP packet `ip` into network `net` on behalf of a remote
    /// address (not one of the gateway's: those flows go to the engine anyway). A flow
    /// the engine starts (a TCP SYN, a UDP datagram) becomes the engine's; a packet of
    /// a known one refreshes it.
    pub(crate) fn note_from_engine(&mut self, now: Instant, net: NetworkId, ip: &[u8]) {
        let Some((key, flags)) = key_of(net, ip) else {
            return;
        };
        if self.ct.track_known(now, &key, flags, ip.len()).is_some() {
            return;
        }
        let starts = flags.is_none_or(|f| f.syn && !f.ack && !f.rst);
        if starts {
            let _ = self.ct.track(now, &key, flags, ip.len());
        }
    }

    /// Whether IP packet `ip` from a container of `net` answers a flow the engine
    /// started (and then counts it for the flow's state).
    pub(crate) fn answers_engine_flow(&mut self, now: Instant, net: NetworkId, ip: &[u8]) -> bool {
        if self.ct.is_empty() {
            return false;
        }
        let Some((key, flags)) = key_of(net, ip) else {
            return false;
        };
        self.ct.track_known(now, &key, flags, ip.len()).is_some()
    }

    /// When [`Self::handle_timeout`] has flows to forget.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.ct.poll_timeout()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while self.ct.poll_expired(now).is_some() {}
    }
}
