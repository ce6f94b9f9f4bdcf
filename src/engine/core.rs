//! The engine thread: one epoll loop over the link, the commands and every host socket.
//!
//! Each iteration: wait (bounded by the next smoltcp or conntrack deadline) → handle
//! host-socket events → drain the link in a bounded batch → move bytes between
//! smoltcp and the host sockets of the connections that saw activity → let smoltcp
//! transmit → expire flows → wake the datapath once. All sockets are edge-triggered;
//! each connection remembers whether its host socket is readable or writable, so
//! backpressure needs no `epoll_ctl` calls: when smoltcp's buffer toward the guest is
//! full the engine just stops reading (the host's window closes), and when the host
//! will not take more the engine stops taking from smoltcp (the guest's window closes).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::Receiver;
use rustix::event::epoll;
use smoltcp::iface::SocketHandle;
use socket2::{Domain, Protocol, Socket, Type};
use tapnet_conntrack::{Conntrack, FlowKey, Proto, TcpFlags, Zone};
use tapnet_switch::NetworkId;
use tapnet_switch::dns::DnsVerdict;
use tapnet_wire::Instant;

use super::link::EngineLink;
use super::tcp::{L4Terminator, SmolTerminator, TxSink};
use super::{Command, EngineConfig, EngineNetwork, EngineStats, Forward, ForwardProto, LocalNames};
use tapnet_wire::ip::{self as packet, IpView, TcpView, Unreachable};
use tapnet_wire::reassembly::Reassembler;

use tapnet_conntrack::budget::FlowKind;

use limits::{Charge, Pool};

mod limits;

const WAKE: u64 = 0;
const KIND_SHIFT: u32 = 56;
const KIND_TCP: u64 = 1;
const KIND_UDP: u64 = 2;
const KIND_PING: u64 = 3;
const KIND_TCP_LISTENER: u64 = 4;
const KIND_UDP_LISTENER: u64 = 5;

/// Packets taken from the link per iteration, so host sockets are not starved.
const LINK_BATCH: usize = 512;
/// How often every TCP connection is looked at (timer-driven smoltcp state changes).
const SWEEP: Duration = Duration::from_millis(500);
/// Largest UDP payload (65535 - 8 - 20).
const MAX_UDP: usize = 65507;
/// Ephemeral ports for connections the engine originates from the gateway address.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

fn kind(token: u64) -> u64 {
    token >> KIND_SHIFT
}

fn zone_of(net: NetworkId) -> Zone {
    Zone(u16::try_from(net.0).unwrap_or(u16::MAX))
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// One line for a user: the OS error text without " (os error N)".
fn one_line(e: &io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_owned()
}

#[derive(Debug)]
enum Phase {
    /// Host connect in progress; the guest's SYN is held (a copy, to answer a failure).
    Connecting {
        syn: Vec<u8>,
    },
    Open,
}

#[derive(Debug)]
struct TcpConn {
    net: NetworkId,
    handle: SocketHandle,
    stream: Option<TcpStream>,
    /// The guest's endpoint and the peer it sees (original destination, or the
    /// source the engine chose for a forwarded connection).
    guest: SocketAddr,
    remote: SocketAddr,
    phase: Phase,
    host_readable: bool,
    host_writable: bool,
    /// The host sent EOF (FIN queued toward the guest).
    host_eof: bool,
    /// The guest's FIN was passed on (`shutdown(SHUT_WR)`).
    host_shut: bool,
    /// Finished on both sides; released after the next transmit.
    done: bool,
    /// Its place in the host-socket budget.
    slot: Option<Charge>,
}

#[derive(Debug)]
enum UdpKind {
    /// A host socket `connect()`ed to the mapped destination.
    Egress(UdpSocket),
    /// A forwarded client: replies leave through the listener.
    Forward { listener: u64, client: SocketAddr },
}

#[derive(Debug)]
struct UdpFlow {
    net: NetworkId,
    guest: SocketAddr,
    remote: SocketAddr,
    kind: UdpKind,
    /// Its place in the host-socket budget (egress flows: forwarded ones answer
    /// through their listener's socket).
    slot: Option<Charge>,
    /// The host side has answered.
    replied: bool,
}

#[derive(Debug)]
struct PingFlow {
    net: NetworkId,
    guest: IpAddr,
    remote: IpAddr,
    id: u16,
    socket: Socket,
    slot: Option<Charge>,
    replied: bool,
}

#[derive(Debug)]
enum ListenerSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

#[derive(Debug)]
struct Listener {
    forward: u32,
    net: NetworkId,
    guest: SocketAddr,
    socket: ListenerSocket,
    /// UDP: the flow of each client.
    clients: HashMap<SocketAddr, u64>,
}

struct Net {
    cfg: EngineNetwork,
    term: SmolTerminator,
    tcp: HashMap<(SocketAddr, SocketAddr), u64>,
    udp: HashMap<(SocketAddr, SocketAddr), u64>,
    ping: HashMap<(IpAddr, IpAddr, u16), u64>,
    next_port: u16,
    /// Something may have been queued in the terminator.
    active: bool,
    /// Identification of the IPv4 fragments the engine builds.
    frag_id: u16,
}

impl Net {
    fn new(cfg: EngineNetwork, seed: u64) -> Self {
        let mut addrs = vec![IpAddr::V4(cfg.gateway)];
        addrs.extend(cfg.gateway6.map(IpAddr::V6));
        // smoltcp sizes its segments by the MSS the guest announces (from the guest's
        // interface MTU), capped by this MTU. 64 KiB lets them grow to the raised MSS
        // that an offload port announces for its guest (TSO: the datapath writes such
        // a segment as one packet that the guest's kernel takes whole).
        let term = SmolTerminator::new(65535, &addrs, seed.wrapping_add(u64::from(cfg.id.0)));
        Self {
            cfg,
            term,
            tcp: HashMap::new(),
            udp: HashMap::new(),
            ping: HashMap::new(),
            next_port: *EPHEMERAL.start(),
            active: false,
            frag_id: 1,
        }
    }
}

/// A terminator's output: packets to the link, TCP headers noted for conntrack.
struct Sink<'a> {
    link: &'a mut EngineLink,
    net: NetworkId,
    seen: &'a mut Vec<(FlowKey, TcpFlags, usize)>,
    stats: &'a mut EngineStats,
}

impl TxSink for Sink<'_> {
    fn ready(&self) -> bool {
        self.link.can_push()
    }
    fn buffer(&mut self) -> Vec<u8> {
        self.link.buffer()
    }
    fn push(&mut self, packet: Vec<u8>) {
        if let Some(ip) = IpView::parse(&packet)
            && let Some(t) = TcpView::parse(ip.l4(&packet))
        {
            let key = FlowKey {
                zone: zone_of(self.net),
                proto: Proto::Tcp,
                src: ip.src,
                src_port: t.src_port,
                dst: ip.dst,
                dst_port: t.dst_port,
            };
            self.seen.push((key, flags(&t), packet.len()));
        }
        let len = packet.len() as u64;
        if self.link.push(self.net, packet) {
            self.stats.packets_out += 1;
            self.stats.bytes_out += len;
        } else {
            self.stats.drop_link_full_out += 1;
        }
    }
}

/// Queues a copy of `packet` (a fragment) for network `net`, counted; false when the
/// link is full.
fn push_counted(
    link: &mut EngineLink,
    stats: &mut EngineStats,
    net: NetworkId,
    packet: &[u8],
) -> bool {
    let mut b = link.buffer();
    b.extend_from_slice(packet);
    if link.push(net, b) {
        stats.packets_out += 1;
        stats.bytes_out += packet.len() as u64;
        true
    } else {
        false
    }
}

fn flags(t: &TcpView) -> TcpFlags {
    TcpFlags {
        syn: t.syn,
        ack: t.ack,
        fin: t.fin,
        rst: t.rst,
    }
}

/// The engine thread's state.
pub(super) struct EngineLoop {
    epoll: OwnedFd,
    link: EngineLink,
    commands: Receiver<Command>,
    /// Seeds each network's TCP initial sequence numbers (mixed with its id).
    seed: u64,
    nets: HashMap<NetworkId, Net>,
    zones: HashMap<Zone, NetworkId>,
    ct: Conntrack,
    tcp: HashMap<u64, TcpConn>,
    udp: HashMap<u64, UdpFlow>,
    pings: HashMap<u64, PingFlow>,
    listeners: HashMap<u64, Listener>,
    forwards: BTreeMap<u32, (Forward, Vec<u64>)>,
    published: Arc<Mutex<BTreeMap<u32, Forward>>>,
    next_forward: u32,
    next_token: u64,
    outbound4: Option<Ipv4Addr>,
    outbound6: Option<Ipv6Addr>,
    resolvers: Vec<std::net::IpAddr>,
    /// Names answered at the DNS addresses before the resolvers are asked.
    local_names: Option<Arc<dyn LocalNames>>,
    dirty: Vec<u64>,
    seen: Vec<(FlowKey, TcpFlags, usize)>,
    stats: EngineStats,
    origin: std::time::Instant,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// IPv4 datagrams arriving in fragments.
    reassembly: Reassembler,
    /// Ping sockets refused by `ping_group_range` (IPv4, IPv6): warned once.
    ping_denied: [bool; 2],
    /// The bounds on flows that hold a host socket.
    budgets: limits::Budgets,
    /// The container each registered guest address belongs to (by network).
    owners: HashMap<(NetworkId, IpAddr), u64>,
    /// When a full budget was last reported in the log.
    limit_warned: Option<Duration>,
    /// TCP listeners whose `accept` ran out of descriptors: retried on every round
    /// (their readiness edge has passed).
    accept_retry: Vec<u64>,
    stop: bool,
    last_sweep: Duration,
}

impl EngineLoop {
    pub(super) fn new(
        config: EngineConfig,
        link: EngineLink,
        commands: Receiver<Command>,
        published: Arc<Mutex<BTreeMap<u32, Forward>>>,
    ) -> anyhow::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create")?;
        epoll::add(
            &epoll,
            link.wake_fd(),
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )
        .context("add the engine's eventfd to its epoll set")?;
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(u64::from(std::process::id()));
            h.finish()
        };
        let mut nets = HashMap::new();
        let mut zones = HashMap::new();
        for n in config.networks {
            anyhow::ensure!(
                zones.insert(zone_of(n.id), n.id).is_none(),
                "network {} is given twice",
                n.id.0
            );
            nets.insert(n.id, Net::new(n, seed));
        }
        Ok(Self {
            epoll,
            link,
            commands,
            seed,
            nets,
            zones,
            ct: Conntrack::new(config.conntrack),
            tcp: HashMap::new(),
            udp: HashMap::new(),
            pings: HashMap::new(),
            listeners: HashMap::new(),
            forwards: BTreeMap::new(),
            published,
            next_forward: 1,
            next_token: 1,
            outbound4: config.outbound_addr,
            outbound6: config.outbound_addr6,
            resolvers: config.resolvers,
            local_names: config.local_names,
            dirty: Vec::new(),
            seen: Vec::new(),
            stats: EngineStats::default(),
            origin: std::time::Instant::now(),
            buf: vec![0; 65536],
            scratch: Vec::with_capacity(65536),
            reassembly: Reassembler::default(),
            ping_denied: [false; 2],
            budgets: limits::Budgets::new(config.limits),
            owners: HashMap::new(),
            limit_warned: None,
            accept_retry: Vec::new(),
            stop: false,
            last_sweep: Duration::ZERO,
        })
    }

    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn token(&mut self, kind: u64) -> u64 {
        let t = (kind << KIND_SHIFT) | self.next_token;
        self.next_token += 1;
        t
    }

    fn register(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        use epoll::EventFlags as F;
        epoll::add(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(token),
            F::IN | F::OUT | F::RDHUP | F::ET,
        )?;
        Ok(())
    }

    /// Runs until told to stop (the engine's own thread).
    pub(super) fn run(&mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        while !self.stop {
            let timeout = self.timeout();
            let may_block = self.link.park();
            let timeout = if may_block {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            let r = self.wait(&mut events, timeout);
            self.link.unpark();
            if let Err(e) = r {
                tracing::error!("engine: epoll_wait failed: {e}; stopping");
                break;
            }
            self.process(&events);
        }
    }

    /// One round without blocking, for an engine run on the datapath thread: host
    /// socket events (only with `host_events`: the datapath saw [`Self::poll_fd`]
    /// readable; events not collected keep it readable), commands, packets from the
    /// datapath, timers.
    pub(super) fn step(&mut self, host_events: bool) {
        thread_local! {
            // epoll events hold a pointer-typed union, so they cannot live in the
            // (Send) engine; one buffer per thread that steps engines.
            static EVENTS: std::cell::RefCell<Vec<epoll::Event>> =
                std::cell::RefCell::new(Vec::with_capacity(256));
        }
        if self.stop {
            return;
        }
        if !host_events {
            self.process(&[]);
            return;
        }
        EVENTS.with_borrow_mut(|events| match self.wait(events, Some(Duration::ZERO)) {
            Ok(()) => self.process(events),
            Err(e) => tracing::error!("engine: epoll_wait failed: {e}"),
        });
    }

    /// Until the engine's next deadline (smoltcp, conntrack, sweeps).
    pub(super) fn next_timeout(&mut self) -> Option<Duration> {
        self.timeout()
    }

    /// The epoll fd of the host sockets and the wake-up eventfd: readable when
    /// [`Self::step`] has something to do.
    pub(super) fn poll_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }

    fn wait(&self, events: &mut Vec<epoll::Event>, timeout: Option<Duration>) -> io::Result<()> {
        let ts = timeout.map(|d| rustix::event::Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        events.clear();
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(events),
            ts.as_ref(),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn process(&mut self, events: &[epoll::Event]) {
        for ev in events {
            let token = ev.data.u64();
            if token == WAKE {
                self.link.clear_wake();
                continue;
            }
            self.host_event(token, ev.flags);
        }
        self.handle_commands();
        self.retry_accepts();
        self.drain_link();
        self.pump_dirty();
        self.transmit();
        self.expire();
        self.link.flush();
    }

    /// How long epoll may sleep: until smoltcp's next deadline, the next conntrack
    /// expiry or the next sweep.
    fn timeout(&mut self) -> Option<Duration> {
        let now = self.elapsed();
        let mut next = self.last_sweep + SWEEP;
        for net in self.nets.values_mut() {
            if let Some(t) = net.term.poll_timeout(now) {
                next = next.min(t);
            }
        }
        if let Some(t) = self.ct.poll_timeout() {
            next = next.min(Duration::from_nanos(t.as_nanos()));
        }
        if !self.link.can_push() {
            // The datapath is behind: retry soon rather than spin.
            next = next.max(now + Duration::from_millis(1));
        }
        Some(next.saturating_sub(now))
    }

    fn handle_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::AddForward(f, reply) => {
                    let r = self.add_forward(f);
                    let _ = reply.send(r);
                }
                Command::RemoveForward(id, reply) => {
                    let r = self.remove_forward(id);
                    let _ = reply.send(r);
                }
                Command::SetOwner(net, addrs, owner, reply) => {
                    self.set_owner(net, &addrs, owner);
                    let _ = reply.send(());
                }
                Command::Conntrack(reply) => {
                    let _ = reply.send(self.ct.entries(self.now()));
                }
                Command::Stats(reply) => {
                    let _ = reply.send(self.stats());
                }
                Command::AddNetwork(n, reply) => {
                    let r = self.add_network(n);
                    let _ = reply.send(r);
                }
                Command::RemoveNetwork(id, reply) => {
                    self.remove_network(id);
                    let _ = reply.send(Ok(()));
                }
                Command::Stop => self.stop = true,
            }
        }
    }

    /// The counters, with the flows open now and the bounds.
    pub(super) fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        s.drop_link_full_in = self.link.send_drops();
        s.drop_link_fair_share = self.link.fair_share_drops();
        s.tcp_flows = self.tcp.len() as u64;
        s.udp_flows = self.udp.len() as u64;
        s.icmp_flows = self.pings.len() as u64;
        self.fill_limit_stats(&mut s);
        s
    }

    fn add_network(&mut self, n: EngineNetwork) -> Result<(), String> {
        if self.nets.contains_key(&n.id) || self.zones.contains_key(&zone_of(n.id)) {
            return Err(format!("network {} already has egress", n.id.0));
        }
        self.zones.insert(zone_of(n.id), n.id);
        self.nets.insert(n.id, Net::new(n, self.seed));
        Ok(())
    }

    /// Forgets a network: its forwards' listeners and its flows' host sockets close.
    fn remove_network(&mut self, id: NetworkId) {
        let forwards: Vec<u32> = self
            .forwards
            .iter()
            .filter(|(_, (f, _))| f.net == id)
            .map(|(fid, _)| *fid)
            .collect();
        for fid in forwards {
            let _ = self.remove_forward(fid);
        }
        let budgets = &mut self.budgets;
        let mut release = |net: NetworkId, slot: Option<Charge>| {
            if net == id
                && let Some(slot) = slot
            {
                budgets.release(slot);
            }
            net != id
        };
        self.tcp.retain(|_, c| release(c.net, c.slot));
        self.udp.retain(|_, f| release(f.net, f.slot));
        self.pings.retain(|_, f| release(f.net, f.slot));
        self.owners.retain(|(net, _), _| *net != id);
        self.nets.remove(&id);
        self.zones.retain(|_, n| *n != id);
    }

    // ---- packets from the containers ----

    fn drain_link(&mut self) {
        for _ in 0..LINK_BATCH {
            let Some(p) = self.link.pop() else { break };
            self.stats.packets_in += 1;
            self.stats.bytes_in += p.data.len() as u64;
            self.guest_packet(p.net, &p.data);
            self.link.recycle(p.data);
        }
    }

    /// Whether a guest packet (IP) belongs to this engine: a flow it holds, the start
    /// of a new one, or anything but TCP and UDP. Not a segment of a TCP connection it
    /// does not hold (this engine would answer it with a RST), nor a datagram of a UDP
    /// flow it does not hold from one of `foreign_udp_ports` (the guest ports that
    /// another engine publishes). For the pipelines of a multi-queue TAP: such
    /// packets belong to the engine that serves the published ports.
    pub(super) fn owns_guest_packet(
        &self,
        net: NetworkId,
        pkt: &[u8],
        foreign_udp_ports: &[u16],
    ) -> bool {
        let (Some(n), Some(ip)) = (self.nets.get(&net), IpView::parse(pkt)) else {
            return true;
        };
        if ip.fragment {
            return true;
        }
        match ip.proto {
            packet::PROTO_TCP => {
                let Some(t) = TcpView::parse(ip.l4(pkt)) else {
                    return true;
                };
                let guest = SocketAddr::new(ip.src, t.src_port);
                let remote = SocketAddr::new(ip.dst, t.dst_port);
                (t.syn && !t.ack) || n.tcp.contains_key(&(guest, remote))
            }
            packet::PROTO_UDP => {
                let Some((sport, dport, _)) = packet::udp_ports(ip.l4(pkt)) else {
                    return true;
                };
                let guest = SocketAddr::new(ip.src, sport);
                let remote = SocketAddr::new(ip.dst, dport);
                !foreign_udp_ports.contains(&sport) || n.udp.contains_key(&(guest, remote))
            }
            _ => true,
        }
    }

    fn guest_packet(&mut self, net: NetworkId, pkt: &[u8]) {
        if !self.nets.contains_key(&net) {
            self.stats.drop_unknown_network += 1;
            return;
        }
        let Some(ip) = IpView::parse(pkt) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let pkt = &pkt[..ip.ip_len()];
        if ip.fragment {
            // IPv4 fragments are put back together (a datagram goes to a host socket
            // whole); IPv6 fragment headers are not walked yet.
            if ip.src.is_ipv6() {
                self.stats.drop_fragment += 1;
                return;
            }
            let now = self.elapsed();
            let dropped = self.reassembly.dropped;
            let whole = self.reassembly.add(now, u32::from(zone_of(net).0), pkt);
            self.stats.drop_fragment += self.reassembly.dropped - dropped;
            if let Some(whole) = whole {
                self.guest_packet(net, &whole);
            }
            return;
        }
        match (ip.proto, ip.src.is_ipv6()) {
            (packet::PROTO_TCP, _) => self.guest_tcp(net, pkt, &ip),
            (packet::PROTO_UDP, _) => self.guest_udp(net, pkt, &ip),
            (packet::PROTO_ICMP, false) | (packet::PROTO_ICMPV6, true) => {
                self.guest_icmp(net, pkt, &ip);
            }
            _ => self.stats.drop_unsupported += 1,
        }
    }

    /// Where a guest's destination goes on the host; `None` when nowhere.
    fn map_dst(&self, net: NetworkId, dst: IpAddr, port: Option<u16>) -> Option<IpAddr> {
        let cfg = &self.nets.get(&net)?.cfg;
        // Port 53 of the DNS address goes to the resolvers, even where the DNS address
        // is the gateway's (a daemon network); its other ports lead to the host's
        // loopback then.
        let is_dns = cfg.is_dns(dst);
        if is_dns && port == Some(53) {
            return self.resolvers.first().copied();
        }
        if dst == IpAddr::V4(cfg.gateway) {
            return cfg.host_loopback.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        if cfg.gateway6.is_some_and(|g| dst == IpAddr::V6(g)) {
            return cfg.host_loopback.then_some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
        if is_dns {
            return None;
        }
        let unusable = match dst {
            IpAddr::V4(a) => {
                a.is_loopback() || a.is_unspecified() || a.is_multicast() || a.is_broadcast()
            }
            IpAddr::V6(a) => a.is_loopback() || a.is_unspecified() || a.is_multicast(),
        };
        (!unusable).then_some(dst)
    }

    /// The source address for a host socket toward `target`.
    fn bind_addr(&self, target: IpAddr) -> Option<SocketAddr> {
        if target.is_loopback() {
            return None;
        }
        match target {
            IpAddr::V4(_) => self.outbound4.map(|a| SocketAddr::new(a.into(), 0)),
            IpAddr::V6(_) => self.outbound6.map(|a| SocketAddr::new(a.into(), 0)),
        }
    }

    fn emit(&mut self, net: NetworkId, build: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = self.link.buffer();
        build(&mut buf);
        let len = buf.len() as u64;
        if self.link.push(net, buf) {
            self.stats.packets_out += 1;
            self.stats.bytes_out += len;
        } else {
            self.stats.drop_link_full_out += 1;
        }
    }

    /// The gateway address of `net` in the family of `like`.
    fn gateway_for(&self, net: NetworkId, like: IpAddr) -> Option<IpAddr> {
        let cfg = &self.nets.get(&net)?.cfg;
        match like {
            IpAddr::V4(_) => Some(IpAddr::V4(cfg.gateway)),
            IpAddr::V6(_) => cfg.gateway6.map(IpAddr::V6),
        }
    }

    fn unreachable(&mut self, net: NetworkId, pkt: &[u8], ip: &IpView, why: Unreachable) {
        let from = self.gateway_for(net, ip.src).unwrap_or(ip.dst);
        self.emit(net, |b| packet::build_unreachable(b, from, pkt, ip, why));
    }

    fn track(&mut self, key: &FlowKey, tcp: Option<TcpFlags>, len: usize) -> bool {
        let now = self.now();
        match self.ct.track(now, key, tcp, len) {
            Ok(_) => true,
            Err(tapnet_conntrack::Refused::TableFull) => {
                self.stats.drop_table_full += 1;
                false
            }
            Err(_) => false,
        }
    }

    // ---- TCP ----

    fn guest_tcp(&mut self, net: NetworkId, pkt: &[u8], ip: &IpView) {
        let Some(t) = TcpView::parse(ip.l4(pkt)) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let guest = SocketAddr::new(ip.src, t.src_port);
        let remote = SocketAddr::new(ip.dst, t.dst_port);
        let key = FlowKey {
            zone: zone_of(net),
            proto: Proto::Tcp,
            src: ip.src,
            src_port: t.src_port,
            dst: ip.dst,
            dst_port: t.dst_port,
        };
        let elapsed = self.elapsed();
        let existing = self
            .nets
            .get(&net)
            .and_then(|n| n.tcp.get(&(guest, remote)).copied());
        if let Some(tok) = existing {
            let _ = self.track(&key, Some(flags(&t)), pkt.len());
            let Some(conn) = self.tcp.get(&tok) else {
                return;
            };
            match conn.phase {
                Phase::Connecting { .. } => {
                    if t.rst {
                        // The guest gave up: drop the attempt silently.
                        self.finish_tcp(tok, false);
                    }
                    // Retransmitted SYNs wait for the host connect.
                }
                Phase::Open => {
                    self.feed_segment(net, pkt, elapsed);
                    self.dirty.push(tok);
                }
            }
            return;
        }
        if t.syn && !t.ack && !t.rst {
            self.tcp_egress(net, pkt, ip, &t, key);
        } else {
            // Nobody owns it: smoltcp answers with RST (unless it is one).
            self.feed_segment(net, pkt, elapsed);
        }
    }

    fn feed_segment(&mut self, net: NetworkId, pkt: &[u8], now: Duration) {
        let Some(n) = self.nets.get_mut(&net) else {
            return;
        };
        n.active = true;
        let mut sink = Sink {
            link: &mut self.link,
            net,
            seen: &mut self.seen,
            stats: &mut self.stats,
        };
        n.term.handle_segment(now, pkt, &mut sink);
    }

    fn refuse_syn(&mut self, net: NetworkId, ip: &IpView, t: &TcpView) {
        self.emit(net, |b| packet::build_rst_for(b, ip, t));
    }

    /// The server of the local names for a TCP connection to `dst`, when `dst` is port
    /// 53 of the network's DNS address and there is one.
    fn local_dns_tcp(&self, net: NetworkId, dst: SocketAddr) -> Option<SocketAddr> {
        if dst.port() != 53 || !self.nets.get(&net)?.cfg.is_dns(dst.ip()) {
            return None;
        }
        self.local_names.as_deref()?.tcp_server()
    }

    fn tcp_egress(&mut self, net: NetworkId, pkt: &[u8], ip: &IpView, t: &TcpView, key: FlowKey) {
        let local_dns = self.local_dns_tcp(net, SocketAddr::new(ip.dst, t.dst_port));
        let target = match local_dns {
            Some(server) => server,
            None => {
                let Some(target_ip) = self.map_dst(net, ip.dst, Some(t.dst_port)) else {
                    self.stats.tcp_refused += 1;
                    self.refuse_syn(net, ip, t);
                    return;
                };
                SocketAddr::new(target_ip, t.dst_port)
            }
        };
        if !self.track(&key, Some(flags(t)), pkt.len()) {
            self.refuse_syn(net, ip, t);
            return;
        }
        let guest = SocketAddr::new(ip.src, t.src_port);
        let remote = SocketAddr::new(ip.dst, t.dst_port);
        let tok = self.token(KIND_TCP);
        // A container at its bound gets a RST, as a full conntrack table refuses.
        let Some(slot) = self.admit_flow(net, ip.src, tok, FlowKind::Connection, Pool::General)
        else {
            self.refuse_syn(net, ip, t);
            self.forget_ct(&key);
            return;
        };
        let stream = match self.with_fd(|this| this.start_connect(target)) {
            Ok(s) => s,
            Err(e) => {
                self.budgets.release(slot);
                if limits::out_of_fds(&e) {
                    self.refuse_syn(net, ip, t);
                } else {
                    self.connect_failed(net, pkt, ip, t, &e);
                }
                self.forget_ct(&key);
                return;
            }
        };
        if local_dns.is_some()
            && let Some(names) = self.local_names.as_deref()
            && let Ok(local) = stream.local_addr()
        {
            names.tcp_client(local, net, ip.src);
        }
        let elapsed = self.elapsed();
        let n = self.nets.get_mut(&net).expect("checked by the caller");
        let mut sink = Sink {
            link: &mut self.link,
            net,
            seen: &mut self.seen,
            stats: &mut self.stats,
        };
        let Some(handle) = n.term.accept(elapsed, pkt, remote, guest, &mut sink) else {
            self.stats.drop_malformed += 1;
            self.budgets.release(slot);
            self.forget_ct(&key);
            return;
        };
        if let Err(e) = self.register(&stream, tok) {
            tracing::warn!("engine: epoll add: {e}");
            if let Some(n) = self.nets.get_mut(&net) {
                n.term.release(handle);
            }
            self.budgets.release(slot);
            self.forget_ct(&key);
            return;
        }
        tracing::debug!("engine: tcp {guest} -> {remote} (host {target}) connecting");
        if let Some(n) = self.nets.get_mut(&net) {
            n.tcp.insert((guest, remote), tok);
        }
        self.tcp.insert(
            tok,
            TcpConn {
                net,
                handle,
                stream: Some(stream),
                guest,
                remote,
                phase: Phase::Connecting { syn: pkt.to_vec() },
                host_readable: false,
                host_writable: false,
                host_eof: false,
                host_shut: false,
                done: false,
                slot: Some(slot),
            },
        );
    }

    fn start_connect(&self, target: SocketAddr) -> io::Result<TcpStream> {
        let s = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        s.set_nonblocking(true)?;
        if let Some(b) = self.bind_addr(target.ip()) {
            s.bind(&b.into())?;
        }
        match s.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let _ = s.set_tcp_nodelay(true);
        Ok(s.into())
    }

    /// Answers a SYN whose host connect failed: RST when refused, ICMP otherwise.
    fn connect_failed(
        &mut self,
        net: NetworkId,
        syn: &[u8],
        ip: &IpView,
        t: &TcpView,
        e: &io::Error,
    ) {
        let why = match e.raw_os_error() {
            Some(libc::ENETUNREACH) => Some(Unreachable::Net),
            Some(libc::EHOSTUNREACH | libc::ETIMEDOUT | libc::EHOSTDOWN) => Some(Unreachable::Host),
            _ => None,
        };
        tracing::debug!(
            "engine: tcp connect for {}:{} failed: {e}",
            ip.dst,
            t.dst_port
        );
        match why {
            Some(why) => {
                self.stats.tcp_unreachable += 1;
                self.unreachable(net, syn, ip, why);
            }
            None => {
                self.stats.tcp_refused += 1;
                self.refuse_syn(net, ip, t);
            }
        }
    }

    fn forget_ct(&mut self, key: &FlowKey) {
        if let Some((id, _)) = self.ct.lookup(key) {
            self.ct.remove(id);
        }
    }

    fn host_event(&mut self, token: u64, ev: epoll::EventFlags) {
        use epoll::EventFlags as F;
        match kind(token) {
            KIND_TCP => {
                let Some(c) = self.tcp.get_mut(&token) else {
                    return;
                };
                if matches!(c.phase, Phase::Connecting { .. }) {
                    if ev.intersects(F::OUT | F::ERR | F::HUP) {
                        self.connect_done(token);
                    }
                    return;
                }
                if ev.intersects(F::IN | F::RDHUP | F::ERR | F::HUP) {
                    c.host_readable = true;
                }
                if ev.intersects(F::OUT | F::ERR) {
                    c.host_writable = true;
                }
                self.dirty.push(token);
            }
            KIND_UDP => self.udp_readable(token),
            KIND_PING => self.ping_readable(token),
            KIND_TCP_LISTENER => self.tcp_accept(token),
            KIND_UDP_LISTENER => self.udp_listener_readable(token),
            _ => {}
        }
    }

    fn connect_done(&mut self, token: u64) {
        let Some(c) = self.tcp.get_mut(&token) else {
            return;
        };
        let err = match c.stream.as_ref().map(TcpStream::take_error) {
            Some(Ok(None)) => None,
            Some(Ok(Some(e)) | Err(e)) => Some(e),
            None => Some(io::Error::from(io::ErrorKind::NotConnected)),
        };
        match err {
            None => {
                c.phase = Phase::Open;
                c.host_readable = true;
                c.host_writable = true;
                // Established: never evicted for another flow.
                if let Some(slot) = c.slot {
                    self.budgets.pin(slot);
                }
                let (net, handle) = (c.net, c.handle);
                if let Some(n) = self.nets.get_mut(&net) {
                    n.term.confirm(handle);
                    n.active = true;
                }
                self.dirty.push(token);
            }
            Some(e) => {
                let Phase::Connecting { syn } = std::mem::replace(&mut c.phase, Phase::Open) else {
                    return;
                };
                let net = c.net;
                if let Some(ip) = IpView::parse(&syn)
                    && let Some(t) = TcpView::parse(ip.l4(&syn))
                {
                    self.connect_failed(net, &syn, &ip, &t, &e);
                }
                self.finish_tcp(token, false);
            }
        }
    }

    fn pump_dirty(&mut self) {
        let now = self.elapsed();
        if now >= self.last_sweep + SWEEP {
            self.last_sweep = now;
            self.dirty.extend(self.tcp.keys().copied());
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &tok in &dirty {
            self.pump(tok);
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Moves bytes between a connection's smoltcp socket and its host socket, and
    /// passes on FINs and RSTs.
    fn pump(&mut self, tok: u64) {
        let Some(c) = self.tcp.get_mut(&tok) else {
            return;
        };
        if c.done || !matches!(c.phase, Phase::Open) {
            return;
        }
        let Some(n) = self.nets.get_mut(&c.net) else {
            return;
        };
        n.active = true;
        let term = &mut n.term;
        let h = c.handle;
        let mut reset = false;

        // Guest -> host.
        if c.host_writable
            && !c.host_shut
            && let Some(stream) = c.stream.as_mut()
        {
            loop {
                let mut err = None;
                let moved = term.recv_with(h, &mut |buf| {
                    if buf.is_empty() {
                        return 0;
                    }
                    match stream.write(buf) {
                        Ok(n) => n,
                        Err(e) => {
                            err = Some(e);
                            0
                        }
                    }
                });
                self.stats.host_tx_bytes += moved as u64;
                if let Some(e) = err {
                    if would_block(&e) {
                        c.host_writable = false;
                    } else {
                        reset = true;
                    }
                    break;
                }
                if moved == 0 {
                    break;
                }
            }
        }
        let st = term.status(h);
        if !reset && st.peer_fin && st.recv_queue == 0 && !c.host_shut {
            if let Some(s) = c.stream.as_ref() {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            c.host_shut = true;
        }

        // Host -> guest.
        if !reset
            && c.host_readable
            && !c.host_eof
            && st.established
            && let Some(stream) = c.stream.as_mut()
        {
            loop {
                let mut result: Option<io::Result<usize>> = None;
                let moved = term.send_with(h, &mut |buf| {
                    if buf.is_empty() {
                        return 0;
                    }
                    let r = stream.read(buf);
                    let n = *r.as_ref().unwrap_or(&0);
                    result = Some(r);
                    n
                });
                self.stats.host_rx_bytes += moved as u64;
                match result {
                    // No room toward the guest: stay readable, resume on its ACKs.
                    None => break,
                    Some(Ok(0)) => {
                        c.host_eof = true;
                        term.close(h);
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) if would_block(&e) => {
                        c.host_readable = false;
                        break;
                    }
                    Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Some(Err(_)) => {
                        reset = true;
                        break;
                    }
                }
            }
        }
        if reset {
            term.abort(h);
            self.finish_tcp(tok, false);
            return;
        }
        let st = term.status(h);
        if st.finished {
            let graceful = c.host_eof && c.host_shut;
            self.finish_tcp(tok, graceful);
        }
    }

    /// Ends a connection: closes the host socket (with RST unless `graceful`) now;
    /// the smoltcp socket goes after the next transmit, so a queued RST still leaves.
    fn finish_tcp(&mut self, tok: u64, graceful: bool) {
        let Some(c) = self.tcp.get_mut(&tok) else {
            return;
        };
        if c.done {
            return;
        }
        c.done = true;
        if let Some(slot) = c.slot.take() {
            self.budgets.release(slot);
        }
        if let Some(s) = c.stream.take() {
            if !graceful {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            drop(s);
        }
        if let Some(n) = self.nets.get_mut(&c.net) {
            n.active = true;
        }
    }

    fn transmit(&mut self) {
        let elapsed = self.elapsed();
        for (&net, n) in &mut self.nets {
            if !n.active && n.term.poll_timeout(elapsed).is_none_or(|t| t > elapsed) {
                continue;
            }
            n.active = false;
            let mut sink = Sink {
                link: &mut self.link,
                net,
                seen: &mut self.seen,
                stats: &mut self.stats,
            };
            n.term.poll_transmit(elapsed, &mut sink);
        }
        // Conntrack follows what the terminators sent.
        let now = self.now();
        for (key, f, len) in self.seen.drain(..) {
            let _ = self.ct.track(now, &key, Some(f), len);
        }
        // Release finished connections.
        let done: Vec<u64> = self
            .tcp
            .iter()
            .filter_map(|(t, c)| c.done.then_some(*t))
            .collect();
        for tok in done {
            let Some(c) = self.tcp.remove(&tok) else {
                continue;
            };
            if let Some(n) = self.nets.get_mut(&c.net) {
                n.term.release(c.handle);
                n.tcp.remove(&(c.guest, c.remote));
            }
            let key = FlowKey {
                zone: zone_of(c.net),
                proto: Proto::Tcp,
                src: c.guest.ip(),
                src_port: c.guest.port(),
                dst: c.remote.ip(),
                dst_port: c.remote.port(),
            };
            self.forget_ct(&key);
            tracing::debug!("engine: tcp {} <-> {} closed", c.guest, c.remote);
        }
    }

    // ---- UDP ----

    fn guest_udp(&mut self, net: NetworkId, pkt: &[u8], ip: &IpView) {
        let Some((sport, dport, payload)) = packet::udp_ports(ip.l4(pkt)) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let guest = SocketAddr::new(ip.src, sport);
        let remote = SocketAddr::new(ip.dst, dport);
        if dport == 53 && self.local_dns(net, guest, remote, payload) {
            return;
        }
        let key = FlowKey {
            zone: zone_of(net),
            proto: Proto::Udp,
            src: ip.src,
            src_port: sport,
            dst: ip.dst,
            dst_port: dport,
        };
        let existing = self
            .nets
            .get(&net)
            .and_then(|n| n.udp.get(&(guest, remote)).copied());
        let tok = match existing {
            Some(t) => t,
            None => {
                let Some(target_ip) = self.map_dst(net, ip.dst, Some(dport)) else {
                    self.unreachable(net, pkt, ip, Unreachable::Port);
                    return;
                };
                let target = SocketAddr::new(target_ip, dport);
                let tok = self.token(KIND_UDP);
                // Queries to the DNS address have room of their own, so that a flood
                // of other datagrams does not evict them before their answer.
                let pool =
                    if dport == 53 && self.nets.get(&net).is_some_and(|n| n.cfg.is_dns(ip.dst)) {
                        Pool::Dns
                    } else {
                        Pool::General
                    };
                // Beyond the container's bound the datagram is dropped (counted).
                let Some(slot) = self.admit_flow(net, ip.src, tok, FlowKind::Datagram, pool) else {
                    return;
                };
                let sock = match self.with_fd(|this| this.udp_connect(target)) {
                    Ok(s) => s,
                    Err(e) => {
                        self.budgets.release(slot);
                        if limits::out_of_fds(&e) {
                            return;
                        }
                        tracing::debug!("engine: udp socket to {target}: {e}");
                        let why = if e.raw_os_error() == Some(libc::ENETUNREACH) {
                            Unreachable::Net
                        } else {
                            Unreachable::Host
                        };
                        self.unreachable(net, pkt, ip, why);
                        return;
                    }
                };
                if !self.track(&key, None, pkt.len()) {
                    self.budgets.release(slot);
                    return;
                }
                if self.register(&sock, tok).is_err() {
                    self.budgets.release(slot);
                    self.forget_ct(&key);
                    return;
                }
                tracing::debug!("engine: udp {guest} -> {remote} (host {target})");
                if let Some(n) = self.nets.get_mut(&net) {
                    n.udp.insert((guest, remote), tok);
                }
                self.udp.insert(
                    tok,
                    UdpFlow {
                        net,
                        guest,
                        remote,
                        kind: UdpKind::Egress(sock),
                        slot: Some(slot),
                        replied: false,
                    },
                );
                tok
            }
        };
        if existing.is_some() {
            let _ = self.track(&key, None, pkt.len());
        }
        let Some(flow) = self.udp.get(&tok) else {
            return;
        };
        if let Some(slot) = flow.slot {
            self.budgets.touch(slot, flow.replied);
        }
        let sent = match &flow.kind {
            UdpKind::Egress(s) => s.send(payload),
            UdpKind::Forward { listener, client } => match self.listeners.get(listener) {
                Some(Listener {
                    socket: ListenerSocket::Udp(s),
                    ..
                }) => s.send_to(payload, client),
                _ => Err(io::ErrorKind::NotConnected.into()),
            },
        };
        match sent {
            Ok(n) => self.stats.host_tx_bytes += n as u64,
            Err(_) => self.stats.drop_host_send += 1,
        }
    }

    /// A DNS query to the network's DNS address that the local names answer (or
    /// drop): the response goes back from that address. Returns whether the query was
    /// taken; if not, it goes on to the resolvers.
    fn local_dns(
        &mut self,
        net: NetworkId,
        guest: SocketAddr,
        dns: SocketAddr,
        query: &[u8],
    ) -> bool {
        let Some(names) = self.local_names.as_deref() else {
            return false;
        };
        if !self.nets.get(&net).is_some_and(|n| n.cfg.is_dns(dns.ip())) {
            return false;
        }
        match names.answer(net, guest.ip(), query, &mut self.buf[..MAX_UDP]) {
            DnsVerdict::Answer { len } => {
                self.udp_to_guest(net, dns, guest, len);
                true
            }
            DnsVerdict::Drop => true,
            DnsVerdict::Forward => false,
        }
    }

    fn udp_connect(&self, target: SocketAddr) -> io::Result<UdpSocket> {
        let s = Socket::new(
            Domain::for_address(target),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        s.set_nonblocking(true)?;
        if let Some(b) = self.bind_addr(target.ip()) {
            s.bind(&b.into())?;
        }
        s.connect(&target.into())?;
        Ok(s.into())
    }

    /// Sends a UDP datagram into a network (fragmenting IPv4 beyond the MTU).
    fn udp_to_guest(&mut self, net: NetworkId, from: SocketAddr, to: SocketAddr, len: usize) {
        let Some(n) = self.nets.get_mut(&net) else {
            return;
        };
        let mtu = usize::try_from(n.cfg.mtu).unwrap_or(65535).min(65535);
        let payload = &self.buf[..len];
        let mut out = self.link.buffer();
        if packet::build_udp(
            &mut out,
            (from.ip(), from.port()),
            (to.ip(), to.port()),
            payload,
            mtu,
        ) {
            let l = out.len() as u64;
            if self.link.push(net, out) {
                self.stats.packets_out += 1;
                self.stats.bytes_out += l;
            } else {
                self.stats.drop_link_full_out += 1;
            }
            return;
        }
        self.link.recycle(out);
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (from.ip(), to.ip()) else {
            self.stats.drop_too_big += 1;
            return;
        };
        n.frag_id = n.frag_id.wrapping_add(1);
        let link = &mut self.link;
        let stats = &mut self.stats;
        let ok = packet::udp_fragments(
            (src, from.port()),
            (dst, to.port()),
            payload,
            mtu,
            n.frag_id,
            &mut self.scratch,
            |frag| push_counted(link, stats, net, frag),
        );
        if !ok {
            self.stats.drop_link_full_out += 1;
        }
    }

    fn udp_readable(&mut self, tok: u64) {
        loop {
            let Some(flow) = self.udp.get(&tok) else {
                return;
            };
            let UdpKind::Egress(sock) = &flow.kind else {
                return;
            };
            let n = match sock.recv(&mut self.buf[..MAX_UDP]) {
                Ok(n) => n,
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from the host side (ECONNREFUSED...): nothing to deliver.
                Err(_) => continue,
            };
            let (net, guest, remote) = (flow.net, flow.guest, flow.remote);
            if let Some(slot) = flow.slot {
                self.budgets.touch(slot, true);
            }
            if let Some(flow) = self.udp.get_mut(&tok) {
                flow.replied = true;
            }
            self.stats.host_rx_bytes += n as u64;
            let key = FlowKey {
                zone: zone_of(net),
                proto: Proto::Udp,
                src: remote.ip(),
                src_port: remote.port(),
                dst: guest.ip(),
                dst_port: guest.port(),
            };
            let _ = self.track(&key, None, n + 8);
            self.udp_to_guest(net, remote, guest, n);
        }
    }

    // ---- ICMP echo ----

    fn guest_icmp(&mut self, net: NetworkId, pkt: &[u8], ip: &IpView) {
        let l4 = ip.l4(pkt);
        let v6 = ip.src.is_ipv6();
        let echo_request = if v6 { 128 } else { 8 };
        if l4.len() < 8 || l4[0] != echo_request {
            self.stats.drop_unsupported += 1;
            return;
        }
        let id = u16::from_be_bytes([l4[4], l4[5]]);
        let key = FlowKey {
            zone: zone_of(net),
            proto: Proto::IcmpEcho,
            src: ip.src,
            src_port: id,
            dst: ip.dst,
            dst_port: id,
        };
        let existing = self
            .nets
            .get(&net)
            .and_then(|n| n.ping.get(&(ip.src, ip.dst, id)).copied());
        let tok = match existing {
            Some(t) => {
                let _ = self.track(&key, None, pkt.len());
                if let Some(flow) = self.pings.get(&t)
                    && let Some(slot) = flow.slot
                {
                    self.budgets.touch(slot, flow.replied);
                }
                t
            }
            None => {
                let Some(target) = self.map_dst(net, ip.dst, None) else {
                    self.unreachable(net, pkt, ip, Unreachable::Host);
                    return;
                };
                let tok = self.token(KIND_PING);
                let Some(slot) =
                    self.admit_flow(net, ip.src, tok, FlowKind::Datagram, Pool::General)
                else {
                    return;
                };
                let socket = match self.with_fd(|this| this.ping_socket(target)) {
                    Ok(s) => s,
                    Err(e) => {
                        self.budgets.release(slot);
                        if limits::out_of_fds(&e) {
                            return;
                        }
                        tracing::debug!("engine: ping socket to {target}: {e}");
                        self.unreachable(net, pkt, ip, Unreachable::Host);
                        return;
                    }
                };
                if !self.track(&key, None, pkt.len()) {
                    self.budgets.release(slot);
                    return;
                }
                if self.register(&socket, tok).is_err() {
                    self.budgets.release(slot);
                    self.forget_ct(&key);
                    return;
                }
                if let Some(n) = self.nets.get_mut(&net) {
                    n.ping.insert((ip.src, ip.dst, id), tok);
                }
                self.pings.insert(
                    tok,
                    PingFlow {
                        net,
                        guest: ip.src,
                        remote: ip.dst,
                        id,
                        socket,
                        slot: Some(slot),
                        replied: false,
                    },
                );
                tok
            }
        };
        let Some(flow) = self.pings.get(&tok) else {
            return;
        };
        // The kernel sets the identifier (the socket's "port") and the checksum.
        match flow.socket.send(l4) {
            Ok(n) => self.stats.host_tx_bytes += n as u64,
            Err(_) => self.stats.drop_host_send += 1,
        }
    }

    fn ping_socket(&mut self, target: IpAddr) -> io::Result<Socket> {
        let (domain, proto, fam) = match target {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 0),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 1),
        };
        let s = match Socket::new(domain, Type::DGRAM, Some(proto)) {
            Ok(s) => s,
            Err(e) => {
                if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
                    && !self.ping_denied[fam]
                {
                    self.ping_denied[fam] = true;
                    let gid = rustix::process::getegid().as_raw();
                    tracing::warn!(
                        "ICMP echo disabled: net.ipv4.ping_group_range does not include gid {gid}; \
                         pings from containers fail as unreachable"
                    );
                }
                return Err(e);
            }
        };
        s.set_nonblocking(true)?;
        if let Some(b) = self.bind_addr(target) {
            s.bind(&b.into())?;
        }
        s.connect(&SocketAddr::new(target, 0).into())?;
        Ok(s)
    }

    fn ping_readable(&mut self, tok: u64) {
        loop {
            let Some(flow) = self.pings.get(&tok) else {
                return;
            };
            let n = match (&flow.socket).read(&mut self.buf[..]) {
                Ok(n) => n,
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => continue,
            };
            let (net, guest, remote, id) = (flow.net, flow.guest, flow.remote, flow.id);
            let reply = if guest.is_ipv6() { 129 } else { 0 };
            if n < 8 || self.buf[0] != reply {
                continue;
            }
            if let Some(slot) = flow.slot {
                self.budgets.touch(slot, true);
            }
            if let Some(flow) = self.pings.get_mut(&tok) {
                flow.replied = true;
            }
            self.stats.host_rx_bytes += n as u64;
            let key = FlowKey {
                zone: zone_of(net),
                proto: Proto::IcmpEcho,
                src: remote,
                src_port: id,
                dst: guest,
                dst_port: id,
            };
            let _ = self.track(&key, None, n);
            let proto = if guest.is_ipv6() {
                packet::PROTO_ICMPV6
            } else {
                packet::PROTO_ICMP
            };
            let msg = &self.buf[..n];
            let mut out = self.link.buffer();
            packet::push_ip_header(&mut out, remote, guest, proto, n);
            let l4 = out.len();
            out.extend_from_slice(msg);
            out[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
            packet::fill_icmp_checksum(&mut out, l4, remote, guest);
            self.echo_to_guest(net, out, (remote, guest));
        }
    }

    /// Sends an echo reply (`out`, from `remote` to `guest`) into a network: in
    /// fragments if it is longer than the MTU (the request came in fragments too),
    /// dropped as too big if IPv6 (whose fragments the engine does not take either).
    fn echo_to_guest(&mut self, net: NetworkId, out: Vec<u8>, (remote, guest): (IpAddr, IpAddr)) {
        let Some(n) = self.nets.get_mut(&net) else {
            self.link.recycle(out);
            return;
        };
        let mtu = usize::try_from(n.cfg.mtu).unwrap_or(65535).min(65535);
        if out.len() <= mtu {
            let len = out.len() as u64;
            if self.link.push(net, out) {
                self.stats.packets_out += 1;
                self.stats.bytes_out += len;
            } else {
                self.stats.drop_link_full_out += 1;
            }
            return;
        }
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (remote, guest) else {
            self.stats.drop_too_big += 1;
            self.link.recycle(out);
            return;
        };
        n.frag_id = n.frag_id.wrapping_add(1);
        let (link, stats) = (&mut self.link, &mut self.stats);
        let ok = packet::ipv4_fragments(
            src,
            dst,
            packet::PROTO_ICMP,
            &out[20..],
            mtu,
            n.frag_id,
            |frag| push_counted(link, stats, net, frag),
        );
        if !ok {
            self.stats.drop_link_full_out += 1;
        }
        self.link.recycle(out);
    }

    // ---- flow expiry ----

    fn expire(&mut self) {
        let now = self.now();
        while let Some(e) = self.ct.poll_expired(now) {
            let Some(&net) = self.zones.get(&e.original.zone) else {
                continue;
            };
            let k = e.original;
            let (a, b) = (
                SocketAddr::new(k.src, k.src_port),
                SocketAddr::new(k.dst, k.dst_port),
            );
            let Some(n) = self.nets.get_mut(&net) else {
                continue;
            };
            match k.proto {
                Proto::Udp => {
                    // Egress flows are keyed guest -> remote; forwarded ones began on
                    // the engine's side (remote -> guest).
                    let tok = n.udp.remove(&(a, b)).or_else(|| n.udp.remove(&(b, a)));
                    if let Some(tok) = tok
                        && let Some(flow) = self.udp.remove(&tok)
                    {
                        if let Some(slot) = flow.slot {
                            self.budgets.release(slot);
                        }
                        if let UdpKind::Forward { listener, client } = flow.kind
                            && let Some(l) = self.listeners.get_mut(&listener)
                        {
                            l.clients.remove(&client);
                        }
                        tracing::debug!("engine: udp {} <-> {} expired", flow.guest, flow.remote);
                    }
                }
                Proto::IcmpEcho => {
                    if let Some(tok) = n.ping.remove(&(k.src, k.dst, k.src_port))
                        && let Some(flow) = self.pings.remove(&tok)
                        && let Some(slot) = flow.slot
                    {
                        self.budgets.release(slot);
                    }
                }
                Proto::Tcp => {
                    let tok = n.tcp.get(&(a, b)).or_else(|| n.tcp.get(&(b, a))).copied();
                    if let Some(tok) = tok
                        && let Some(c) = self.tcp.get(&tok)
                    {
                        n.term.abort(c.handle);
                        self.finish_tcp(tok, false);
                    }
                }
            }
        }
    }

    // ---- port forwarding ----

    fn add_forward(&mut self, f: Forward) -> Result<u32, String> {
        let proto = f.proto.name();
        if !self.nets.contains_key(&f.net) {
            return Err(format!(
                "network {} is not served by the host-socket engine",
                f.net.0
            ));
        }
        if f.count == 0 || f.host_port == 0 || f.guest_port == 0 {
            return Err("ports and the port count must not be 0".into());
        }
        let last = |p: u16| u32::from(p) + u32::from(f.count) - 1;
        if last(f.host_port) > 65535 || last(f.guest_port) > 65535 {
            return Err("the port range goes beyond 65535".into());
        }
        let mut bound = Vec::new();
        for i in 0..f.count {
            let host = SocketAddr::new(f.host_addr, f.host_port + i);
            let guest = SocketAddr::new(f.guest_addr, f.guest_port + i);
            let socket = match bind_listener(f.proto, host) {
                Ok(s) => s,
                Err(e) => return Err(format!("bind {host}/{proto}: {}", one_line(&e))),
            };
            bound.push((guest, socket));
        }
        let id = self.next_forward;
        self.next_forward += 1;
        let mut tokens = Vec::new();
        for (guest, socket) in bound {
            let tok = self.token(match f.proto {
                ForwardProto::Tcp => KIND_TCP_LISTENER,
                ForwardProto::Udp => KIND_UDP_LISTENER,
            });
            let reg = match &socket {
                ListenerSocket::Tcp(s) => self.register(s, tok),
                ListenerSocket::Udp(s) => self.register(s, tok),
            };
            if let Err(e) = reg {
                for t in tokens {
                    self.listeners.remove(&t);
                }
                return Err(format!("epoll: {}", one_line(&e)));
            }
            self.listeners.insert(
                tok,
                Listener {
                    forward: id,
                    net: f.net,
                    guest,
                    socket,
                    clients: HashMap::new(),
                },
            );
            tokens.push(tok);
        }
        tracing::debug!(
            "engine: forward {id}: {}:{}+{}/{proto} -> {}:{}",
            f.host_addr,
            f.host_port,
            f.count,
            f.guest_addr,
            f.guest_port
        );
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, f.clone());
        self.forwards.insert(id, (f, tokens));
        Ok(id)
    }

    fn remove_forward(&mut self, id: u32) -> Result<(), String> {
        let Some((_, tokens)) = self.forwards.remove(&id) else {
            return Err(format!("no forward with id {id}"));
        };
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        for tok in tokens {
            let Some(l) = self.listeners.remove(&tok) else {
                continue;
            };
            debug_assert_eq!(l.forward, id);
            // UDP flows answer through the listener: they go with it.
            for flow_tok in l.clients.values() {
                if let Some(flow) = self.udp.remove(flow_tok) {
                    if let Some(n) = self.nets.get_mut(&flow.net) {
                        n.udp.remove(&(flow.guest, flow.remote));
                    }
                    let key = FlowKey {
                        zone: zone_of(flow.net),
                        proto: Proto::Udp,
                        src: flow.remote.ip(),
                        src_port: flow.remote.port(),
                        dst: flow.guest.ip(),
                        dst_port: flow.guest.port(),
                    };
                    self.forget_ct(&key);
                }
            }
        }
        Ok(())
    }

    /// The source address a forwarded client appears from inside the network: its own
    /// when that can be routed back (not loopback, same family), else the gateway with
    /// an ephemeral port.
    fn forward_source(
        &mut self,
        net: NetworkId,
        client: SocketAddr,
        guest: SocketAddr,
    ) -> Option<SocketAddr> {
        let keep = !client.ip().is_loopback()
            && !client.ip().is_unspecified()
            && client.is_ipv4() == guest.is_ipv4();
        if keep {
            return Some(client);
        }
        let gw = self.gateway_for(net, guest.ip())?;
        let n = self.nets.get_mut(&net)?;
        for _ in EPHEMERAL {
            let port = n.next_port;
            n.next_port = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            let src = SocketAddr::new(gw, port);
            if !n.tcp.contains_key(&(guest, src)) && !n.udp.contains_key(&(guest, src)) {
                return Some(src);
            }
        }
        None
    }

    fn tcp_accept(&mut self, tok: u64) {
        loop {
            let Some(l) = self.listeners.get(&tok) else {
                return;
            };
            let ListenerSocket::Tcp(listener) = &l.socket else {
                return;
            };
            let (stream, client) = match listener.accept() {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if limits::out_of_fds(&e) => {
                    // The client waits in the backlog: free a descriptor and accept it,
                    // or try again next round (its readiness edge has passed).
                    if self.shed_for_fd() {
                        continue;
                    }
                    self.stats.drop_no_fd += 1;
                    if !self.accept_retry.contains(&tok) {
                        self.accept_retry.push(tok);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!("engine: accept: {e}");
                    return;
                }
            };
            let (net, guest) = (l.net, l.guest);
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let Some(src) = self.forward_source(net, client, guest) else {
                continue;
            };
            let Some(n) = self.nets.get_mut(&net) else {
                continue;
            };
            if n.tcp.contains_key(&(guest, src)) {
                continue;
            }
            // Charged to the container it reaches; refused (closed) beyond its bound.
            let ctok = self.token(KIND_TCP);
            let Some(slot) =
                self.admit_flow(net, guest.ip(), ctok, FlowKind::Connection, Pool::General)
            else {
                continue;
            };
            let Some(n) = self.nets.get_mut(&net) else {
                self.budgets.release(slot);
                continue;
            };
            let Some(handle) = n.term.connect(src, guest) else {
                self.budgets.release(slot);
                continue;
            };
            n.active = true;
            if self.register(&stream, ctok).is_err() {
                if let Some(n) = self.nets.get_mut(&net) {
                    n.term.release(handle);
                }
                self.budgets.release(slot);
                continue;
            }
            self.budgets.pin(slot);
            tracing::debug!("engine: forward tcp {client} -> {guest} (as {src})");
            if let Some(n) = self.nets.get_mut(&net) {
                n.tcp.insert((guest, src), ctok);
            }
            self.tcp.insert(
                ctok,
                TcpConn {
                    net,
                    handle,
                    stream: Some(stream),
                    guest,
                    remote: src,
                    phase: Phase::Open,
                    host_readable: true,
                    host_writable: true,
                    host_eof: false,
                    host_shut: false,
                    done: false,
                    slot: Some(slot),
                },
            );
        }
    }

    fn udp_listener_readable(&mut self, tok: u64) {
        loop {
            let Some(l) = self.listeners.get(&tok) else {
                return;
            };
            let ListenerSocket::Udp(sock) = &l.socket else {
                return;
            };
            let (n, client) = match sock.recv_from(&mut self.buf[..MAX_UDP]) {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => continue,
            };
            let (net, guest) = (l.net, l.guest);
            let existing = l.clients.get(&client).copied();
            self.stats.host_rx_bytes += n as u64;
            let src = match existing.and_then(|t| self.udp.get(&t)) {
                Some(flow) => flow.remote,
                None => {
                    let Some(src) = self.forward_source(net, client, guest) else {
                        continue;
                    };
                    let ftok = self.token(KIND_UDP);
                    if let Some(nn) = self.nets.get_mut(&net) {
                        nn.udp.insert((guest, src), ftok);
                    }
                    if let Some(l) = self.listeners.get_mut(&tok) {
                        l.clients.insert(client, ftok);
                    }
                    self.udp.insert(
                        ftok,
                        UdpFlow {
                            net,
                            guest,
                            remote: src,
                            kind: UdpKind::Forward {
                                listener: tok,
                                client,
                            },
                            slot: None,
                            replied: true,
                        },
                    );
                    tracing::debug!("engine: forward udp {client} -> {guest} (as {src})");
                    src
                }
            };
            let key = FlowKey {
                zone: zone_of(net),
                proto: Proto::Udp,
                src: src.ip(),
                src_port: src.port(),
                dst: guest.ip(),
                dst_port: guest.port(),
            };
            let _ = self.track(&key, None, n + 8);
            self.udp_to_guest(net, src, guest, n);
        }
    }
}

fn bind_listener(proto: ForwardProto, addr: SocketAddr) -> io::Result<ListenerSocket> {
    let (ty, p) = match proto {
        ForwardProto::Tcp => (Type::STREAM, Protocol::TCP),
        ForwardProto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let s = Socket::new(Domain::for_address(addr), ty, Some(p))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if proto == ForwardProto::Tcp {
        s.set_reuse_address(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(match proto {
        ForwardProto::Tcp => {
            s.listen(1024)?;
            ListenerSocket::Tcp(s.into())
        }
        ForwardProto::Udp => ListenerSocket::Udp(s.into()),
    })
}
