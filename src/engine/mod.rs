//! Host-socket egress, the rootless uplink: IP packets from containers leave through
//! ordinary host sockets opened by this unprivileged process, and what those sockets
//! receive comes back as IP packets.
//!
//! One engine thread runs an epoll loop ([`core`]) that owns every host socket, a TCP
//! terminator per network ([`tcp`], smoltcp for now), the UDP and ICMP echo flows, the
//! port-forward listeners and a connection table (`tapnet_conntrack`) that gives UDP
//! and ICMP flows their timeouts and `tapnet conntrack` its listing. The datapath
//! talks to it through a [`PacketLink`] of pooled buffers ([`link`]); the control side
//! through commands.

mod core;
mod link;
mod resolv;
mod tcp;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use anyhow::Context as _;
use crossbeam_channel::{Sender, bounded};
use tapnet_conntrack::{ConntrackConfig, EntryInfo};
use tapnet_switch::NetworkId;
use tapnet_switch::dns::DnsVerdict;

pub(crate) use link::PacketLink;
pub(crate) use resolv::{host_resolvers, interface_addr};

/// The addresses of one network that the engine serves.
#[derive(Clone, Debug)]
pub(crate) struct EngineNetwork {
    pub(crate) id: NetworkId,
    /// The network's gateway (10.0.2.2 in slirp4netns terms).
    pub(crate) gateway: Ipv4Addr,
    /// Traffic to the gateway's address goes to the host's 127.0.0.1 (and fd00::2 to ::1).
    pub(crate) host_loopback: bool,
    /// The DNS address (10.0.2.3): port 53 there goes to the host's resolvers.
    pub(crate) dns: Option<Ipv4Addr>,
    /// IPv6 gateway (fd00::2) and DNS (fd00::3) addresses, when IPv6 is on.
    pub(crate) gateway6: Option<Ipv6Addr>,
    pub(crate) dns6: Option<Ipv6Addr>,
    /// Largest IP packet the engine may send into this network.
    pub(crate) mtu: u32,
}

impl EngineNetwork {
    /// Is `ip` one of the network's DNS addresses?
    pub(crate) fn is_dns(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.dns == Some(a),
            IpAddr::V6(a) => self.dns6 == Some(a),
        }
    }
}

/// Names the engine answers itself at a network's DNS address instead of asking the
/// host's resolvers: the daemon's embedded DNS (the names of its containers). Asked
/// for UDP datagrams and TCP connections to port 53 of a DNS address, and for nothing
/// else, so an implementation may take a lock.
pub(crate) trait LocalNames: Send + Sync + std::fmt::Debug {
    /// Answers the DNS message `query` (a UDP payload) that `client` sent on network
    /// `net`, writing the response into `out` ([`DnsVerdict::Answer`]); or says it is
    /// to go to the host's resolvers ([`DnsVerdict::Forward`]) or be ignored.
    fn answer(&self, net: NetworkId, client: IpAddr, query: &[u8], out: &mut [u8]) -> DnsVerdict;

    /// Where TCP connections to port 53 of a DNS address go instead of the resolvers:
    /// a host server that answers with the same names (and forwards the rest). `None`:
    /// to the resolvers.
    fn tcp_server(&self) -> Option<SocketAddr> {
        None
    }

    /// The engine's host socket `local`, connecting to [`Self::tcp_server`], carries
    /// the queries of `client` on network `net` (called before any byte is sent).
    fn tcp_client(&self, local: SocketAddr, net: NetworkId, client: IpAddr) {
        let _ = (local, net, client);
    }
}

/// Bounds on the flows that hold a host socket (so a file descriptor): per container
/// and in total. A new flow beyond them takes the place of an unreplied flow, else of
/// the least recently used one, and never of an established TCP connection (see
/// `tapnet_conntrack::budget`); a container at its bound evicts only its own flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowLimits {
    pub(crate) total: usize,
    pub(crate) per_container: usize,
}

impl FlowLimits {
    /// Descriptors kept for everything but host-socket flows (ports, listeners,
    /// control clients, the DNS service, the namespace helper's sockets): an eighth of
    /// the limit, and at least this many.
    const MIN_RESERVE: u64 = 256;

    /// Derived from a descriptor limit (`RLIMIT_NOFILE`): all but the reserve, at most
    /// `ceiling` (the connection table's capacity: each such flow is tracked there
    /// too). One container may hold all of it (the rootless stack's one container).
    pub(crate) fn from_nofile(nofile: u64, ceiling: usize) -> Self {
        let reserve = (nofile / 8).max(Self::MIN_RESERVE);
        let total = usize::try_from(nofile.saturating_sub(reserve))
            .unwrap_or(usize::MAX)
            .min(ceiling)
            .max(16);
        Self {
            total,
            per_container: total,
        }
    }

    /// [`Self::from_nofile`] with the process's own soft `RLIMIT_NOFILE` (which `main`
    /// raised to the hard limit).
    pub(crate) fn for_this_process(ceiling: usize) -> Self {
        Self::from_nofile(crate::sys::rlimit::nofile_soft(), ceiling)
    }

    /// The daemon's default share of one container: a quarter of the total (at least
    /// 64), so that a few containers at their bound still leave room for the others.
    pub(crate) fn shared(self) -> Self {
        Self {
            per_container: (self.total / 4).max(64).min(self.total),
            ..self
        }
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub(crate) struct EngineConfig {
    pub(crate) networks: Vec<EngineNetwork>,
    /// Source address (or interface, resolved to its address) of host sockets.
    pub(crate) outbound_addr: Option<Ipv4Addr>,
    pub(crate) outbound_addr6: Option<Ipv6Addr>,
    /// The host's DNS servers (from /etc/resolv.conf unless given).
    pub(crate) resolvers: Vec<IpAddr>,
    pub(crate) conntrack: ConntrackConfig,
    /// Names answered at the DNS addresses before the resolvers are asked (`None`:
    /// every query goes to the resolvers, as slirp4netns does).
    pub(crate) local_names: Option<Arc<dyn LocalNames>>,
    /// Bounds on host-socket flows.
    pub(crate) limits: FlowLimits,
}

/// Transport protocol of a port forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ForwardProto {
    Tcp,
    Udp,
}

impl ForwardProto {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A published port range: `host_addr:host_port..+count` to `guest_addr:guest_port..+count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Forward {
    pub(crate) proto: ForwardProto,
    pub(crate) net: NetworkId,
    pub(crate) host_addr: IpAddr,
    pub(crate) host_port: u16,
    pub(crate) guest_addr: IpAddr,
    pub(crate) guest_port: u16,
    /// Number of consecutive ports (1 for a single port).
    pub(crate) count: u16,
}

/// Counters of the engine (totals since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct EngineStats {
    /// Packets and bytes from the containers (as handed in by the datapath).
    pub(crate) packets_in: u64,
    pub(crate) bytes_in: u64,
    /// Packets and bytes built for the containers.
    pub(crate) packets_out: u64,
    pub(crate) bytes_out: u64,
    /// Payload bytes written to and read from host sockets.
    pub(crate) host_tx_bytes: u64,
    pub(crate) host_rx_bytes: u64,
    /// Drops, by reason.
    pub(crate) drop_link_full_in: u64,
    /// Packets from a container that had more than its fair share of the queue into
    /// the engine waiting while the queue was half full (the others' still got in).
    pub(crate) drop_link_fair_share: u64,
    pub(crate) drop_link_full_out: u64,
    pub(crate) drop_malformed: u64,
    pub(crate) drop_unsupported: u64,
    pub(crate) drop_fragment: u64,
    pub(crate) drop_unknown_network: u64,
    pub(crate) drop_too_big: u64,
    pub(crate) drop_table_full: u64,
    pub(crate) drop_host_send: u64,
    /// New flows refused because their container (or the whole engine) holds its most
    /// host-socket flows and none of them may be evicted (all established TCP).
    pub(crate) drop_flow_limit: u64,
    /// New flows refused because the system had no file descriptor left (`EMFILE`,
    /// `ENFILE`) and no flow could be evicted for one.
    pub(crate) drop_no_fd: u64,
    /// Flows closed to make room for a new one: never answered (first), or the least
    /// recently used.
    pub(crate) evicted_unreplied: u64,
    pub(crate) evicted_lru: u64,
    /// Flows that hold a host socket now, and the bounds.
    pub(crate) host_sockets: u64,
    pub(crate) host_socket_limit: u64,
    pub(crate) host_socket_limit_per_container: u64,
    /// Flows open now.
    pub(crate) tcp_flows: u64,
    pub(crate) udp_flows: u64,
    pub(crate) icmp_flows: u64,
    /// Host connects refused (answered with RST) and unreachable (answered with ICMP).
    pub(crate) tcp_refused: u64,
    pub(crate) tcp_unreachable: u64,
}

/// The engine's loop, owned and stepped by the datapath thread
/// ([`Engine::spawn_inline`]). Dropping it closes every host socket.
pub(crate) struct InlineEngine {
    core: Box<core::EngineLoop>,
}

impl std::fmt::Debug for InlineEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineEngine").finish_non_exhaustive()
    }
}

impl InlineEngine {
    /// Readable when [`Self::step`] has work (host sockets, commands).
    pub(crate) fn poll_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.core.poll_fd()
    }

    /// One non-blocking round: host socket events (when `host_events`: the datapath
    /// saw [`Self::poll_fd`] readable), commands, the packets the datapath queued,
    /// timers. What it produces waits in the [`PacketLink`].
    pub(crate) fn step(&mut self, host_events: bool) {
        self.core.step(host_events);
    }

    /// See `EngineLoop::owns_guest_packet`.
    pub(crate) fn owns_guest_packet(
        &self,
        net: NetworkId,
        pkt: &[u8],
        foreign_udp_ports: &[u16],
    ) -> bool {
        self.core.owns_guest_packet(net, pkt, foreign_udp_ports)
    }

    /// How long until the engine's next deadline.
    pub(crate) fn timeout(&mut self) -> Option<std::time::Duration> {
        self.core.next_timeout()
    }

    /// The engine's counters, read on the thread that steps it (the fuzz harness;
    /// others ask through [`Engine::stats`], answered at the next step).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn stats(&self) -> EngineStats {
        self.core.stats()
    }
}

/// A request to the engine thread.
#[derive(Debug)]
enum Command {
    AddNetwork(EngineNetwork, Sender<Result<(), String>>),
    RemoveNetwork(NetworkId, Sender<Result<(), String>>),
    AddForward(Forward, Sender<Result<u32, String>>),
    RemoveForward(u32, Sender<Result<(), String>>),
    /// Charges the flows of these guest addresses of a network to one container
    /// (`None`: forgets them; unregistered addresses share one owner per network).
    SetOwner(NetworkId, Vec<IpAddr>, Option<u64>, Sender<()>),
    Conntrack(Sender<Vec<EntryInfo>>),
    Stats(Sender<EngineStats>),
    Stop,
}

/// Handle to the engine thread.
#[derive(Debug)]
pub(crate) struct Engine {
    commands: Sender<Command>,
    waker: link::Waker,
    thread: Option<JoinHandle<()>>,
    forwards: Arc<Mutex<BTreeMap<u32, Forward>>>,
}

impl Engine {
    /// Starts the engine thread. Its host sockets live in the network namespace of
    /// the calling thread.
    pub(crate) fn spawn(config: EngineConfig) -> anyhow::Result<(Self, PacketLink)> {
        let (link, engine_link) = link::pair(false).context("create the engine's eventfds")?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let forwards = Arc::new(Mutex::new(BTreeMap::new()));
        let waker = engine_link.waker();
        let mut lp = core::EngineLoop::new(config, engine_link, rx, Arc::clone(&forwards))?;
        let thread = std::thread::Builder::new()
            .name("tapnet-engine".into())
            .spawn(move || lp.run())
            .context("spawn the engine thread")?;
        Ok((
            Self {
                commands: tx,
                waker,
                thread: Some(thread),
                forwards,
            },
            link,
        ))
    }

    /// An engine that runs on the datapath thread rather than its own: the datapath
    /// polls [`InlineEngine::poll_fd`] and calls [`InlineEngine::step`] once per batch,
    /// so a packet crosses no thread (no wake-up, no cache line moving between cores)
    /// on its way between a container and a host socket, as in slirp4netns and pasta,
    /// at the price of one core for both. The handle works as for [`Self::spawn`].
    pub(crate) fn spawn_inline(
        config: EngineConfig,
    ) -> anyhow::Result<(Self, PacketLink, InlineEngine)> {
        let (link, engine_link) = link::pair(true).context("create the engine's eventfds")?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let forwards = Arc::new(Mutex::new(BTreeMap::new()));
        let waker = engine_link.waker();
        let core = core::EngineLoop::new(config, engine_link, rx, Arc::clone(&forwards))?;
        Ok((
            Self {
                commands: tx,
                waker,
                thread: None,
                forwards,
            },
            link,
            InlineEngine {
                core: Box::new(core),
            },
        ))
    }

    fn request<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = bounded(1);
        self.commands.send(make(tx)).ok()?;
        self.waker.wake();
        rx.recv().ok()
    }

    /// Serves one more network.
    pub(crate) fn add_network(&self, network: EngineNetwork) -> Result<(), String> {
        self.request(|r| Command::AddNetwork(network, r))
            .unwrap_or_else(|| Err("the host-socket engine has stopped".into()))
    }

    /// Stops serving a network: its forwards and flows are closed.
    pub(crate) fn remove_network(&self, id: NetworkId) -> Result<(), String> {
        self.request(|r| Command::RemoveNetwork(id, r))
            .unwrap_or_else(|| Err("the host-socket engine has stopped".into()))
    }

    /// Starts listening for a forward; the error is one line fit for a user.
    pub(crate) fn add_forward(&self, forward: Forward) -> Result<u32, String> {
        self.request(|r| Command::AddForward(forward, r))
            .unwrap_or_else(|| Err("the host-socket engine has stopped".into()))
    }

    /// Closes a forward's listeners (connections it accepted stay up).
    pub(crate) fn remove_forward(&self, id: u32) -> Result<(), String> {
        self.request(|r| Command::RemoveForward(id, r))
            .unwrap_or_else(|| Err("the host-socket engine has stopped".into()))
    }

    /// Charges the host-socket flows of `addrs` on `net` to container `owner` (for the
    /// per-container bound), or forgets them (`None`).
    pub(crate) fn set_owner(&self, net: NetworkId, addrs: Vec<IpAddr>, owner: Option<u64>) {
        let _ = self.request(|r| Command::SetOwner(net, addrs, owner, r));
    }

    /// The forwards, by id.
    pub(crate) fn forwards(&self) -> Vec<(u32, Forward)> {
        let map = self.forwards.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(id, f)| (*id, f.clone())).collect()
    }

    /// The tracked flows, for `tapnet conntrack`.
    pub(crate) fn conntrack(&self) -> Vec<EntryInfo> {
        self.request(Command::Conntrack).unwrap_or_default()
    }

    /// The engine's counters.
    pub(crate) fn stats(&self) -> EngineStats {
        self.request(Command::Stats).unwrap_or_default()
    }

    /// Stops the thread and closes every host socket.
    pub(crate) fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.commands.send(Command::Stop);
            self.waker.wake();
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
