//! The host-socket egress engine's guest packet path (`crate::engine`): IP packets
//! from a container into an inline engine (`EngineLoop::guest_packet` and all below
//! it: TCP through smoltcp, UDP and ICMP echo flows, IPv4 reassembly, the flow budget,
//! DNS to the resolvers, `owns_guest_packet`), and what it sends back.
//!
//! The engine opens real host sockets wherever a guest packet says, so it runs only on
//! a thread of its own in a new, empty network namespace (`crate::sys::isolate`):
//! there only `lo` exists, a connect anywhere else fails with `ENETUNREACH`, and
//! nothing can leave. Without `CAP_SYS_ADMIN` that thread cannot be made, and the
//! harness does nothing at all ([`engine_packets_isolated`] says so). On `lo` the
//! harness serves what the engine reaches through the gateway address: UDP echo on
//! ports 53 (the resolver) and 7, TCP echo on port 80.
//!
//! Input: a configuration byte (MTU, flow bounds, conntrack capacity), then up to
//! [`MAX_PACKETS`] packets and steps: TCP SYNs and segments of the connections the
//! harness opened (acknowledging what the engine sent), UDP datagrams, echo requests,
//! IPv4 fragments, raw and mutated packets, over IPv4 and IPv6, to the gateway, the
//! DNS address, unreachable, loopback, broadcast and multicast destinations.
//! Invariants, after every step:
//!
//! - nothing panics; every packet the engine sends parses, fills its IP length,
//!   carries valid checksums, fits the MTU (TCP aside) and goes to an address that
//!   sent something;
//! - the counters agree: `packets_in` is what went in, `packets_out` what came out;
//!   `host_sockets` stays within the bound and is exactly the descriptors the
//!   engine's flows hold;
//! - `owns_guest_packet` disowns only stray TCP segments and foreign UDP datagrams;
//! - after the engine is dropped, the thread holds no more descriptors than before.

mod packets;
mod servers;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use tapnet_conntrack::ConntrackConfig;
use tapnet_switch::NetworkId;
use tapnet_wire::ip::{self, IpView, TcpView};

use crate::engine::{Engine, EngineConfig, EngineNetwork, FlowLimits, InlineEngine, PacketLink};
use crate::sys::isolate::IsolatedThread;
use crate::sys::netlink::{LinkChange, RouteSocket};
use packets::{Segment, check_emitted, destination, echo, fragments, port, source, tcp, udp};
use servers::Servers;

const NET: NetworkId = NetworkId(3);
/// Packets per input.
const MAX_PACKETS: usize = 64;
/// Guest UDP ports that another engine publishes, for `owns_guest_packet`.
const FOREIGN_UDP: [u16; 1] = [5353];

/// Runs one input on the isolated thread; does nothing where there is none.
pub fn engine_packets(data: &[u8]) {
    let Some(thread) = isolated() else {
        return;
    };
    if let Err(message) = thread.run(run, data) {
        panic!("engine_packets: {message}");
    }
}

/// Whether [`engine_packets`] runs here: its thread could be moved into a network
/// namespace of its own (root, or `CAP_SYS_ADMIN`).
pub fn engine_packets_isolated() -> bool {
    isolated().is_some()
}

fn isolated() -> Option<&'static IsolatedThread> {
    static THREAD: OnceLock<Option<IsolatedThread>> = OnceLock::new();
    THREAD
        .get_or_init(|| IsolatedThread::start("tapnet-fuzz-engine", setup).ok())
        .as_ref()
}

/// In the new namespace: `lo` up, ping sockets for every group (the sysctl is the
/// namespace's own).
fn setup() -> io::Result<()> {
    let mut route = RouteSocket::open()?;
    let lo = route.existing_link_index("lo")?;
    let up = LinkChange {
        up: Some(true),
        ..LinkChange::default()
    };
    route.set_link(lo, &up)?;
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
}

/// Descriptors of the calling thread (the isolated one has a table of its own).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/thread-self/fd").map_or(0, Iterator::count)
}

thread_local! {
    static SERVERS: RefCell<Option<Servers>> = const { RefCell::new(None) };
}

/// One input, on the isolated thread.
fn run(data: &[u8]) {
    SERVERS.with_borrow_mut(|servers| {
        if servers.is_none() {
            *servers = Some(Servers::new().expect("loopback servers in the namespace"));
        }
        let servers = servers.as_mut().expect("just made");
        let before = open_fds();
        Run::start(data, servers).go();
        servers.accepted.clear();
        assert_eq!(open_fds(), before, "descriptors left after the engine");
    });
}

/// A connection the harness opened: what it sends next, what the engine sent so far.
#[derive(Clone, Copy, Debug)]
struct Flow {
    next_seq: u32,
    peer_next: u32,
}

/// A cursor over the fuzzer's bytes that yields zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

struct Run<'a> {
    input: Bytes<'a>,
    servers: &'a mut Servers,
    link: PacketLink,
    engine: InlineEngine,
    _handle: Engine,
    mtu: usize,
    limit: u64,
    /// Sources of the packets sent: the only destinations the engine may answer.
    senders: HashSet<IpAddr>,
    packets: usize,
    sent: u64,
    received: u64,
    /// Keyed by (guest, remote).
    flows: BTreeMap<(SocketAddr, SocketAddr), Flow>,
    fds_engine: usize,
    buf: Vec<u8>,
}

/// A payload of `len` bytes.
fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect()
}

impl<'a> Run<'a> {
    /// Byte 0: bits 0-1 the MTU (1500, 576, 9000, 65520), bit 2 a bound of 4 flows
    /// (else 16), bit 3 half of it per container, bit 4 a conntrack table of 8.
    fn start(data: &'a [u8], servers: &'a mut Servers) -> Self {
        let mut input = Bytes(data);
        let b = input.byte();
        let mtu = [1500, 576, 9000, 65520][usize::from(b & 3)];
        let total = if b & 4 != 0 { 4 } else { 16 };
        let limits = FlowLimits {
            total,
            per_container: if b & 8 != 0 { total / 2 } else { total },
        };
        let config = EngineConfig {
            networks: vec![EngineNetwork {
                id: NET,
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                host_loopback: true,
                dns: Some(Ipv4Addr::new(10, 0, 2, 3)),
                gateway6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
                dns6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)),
                mtu: u32::try_from(mtu).unwrap_or(1500),
            }],
            outbound_addr: None,
            outbound_addr6: None,
            resolvers: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            conntrack: ConntrackConfig {
                capacity: if b & 0x10 != 0 { 8 } else { 1024 },
                ..ConntrackConfig::default()
            },
            local_names: None,
            limits,
        };
        let (handle, link, engine) = Engine::spawn_inline(config).expect("an inline engine");
        Self {
            input,
            servers,
            link,
            engine,
            _handle: handle,
            mtu,
            limit: u64::try_from(total).unwrap_or(0),
            senders: HashSet::new(),
            packets: 0,
            sent: 0,
            received: 0,
            flows: BTreeMap::new(),
            fds_engine: open_fds(),
            buf: vec![0; 65536],
        }
    }

    fn go(mut self) {
        while !self.input.0.is_empty() && self.packets < MAX_PACKETS {
            let op = self.input.byte();
            self.op(op);
            if op & 0x80 != 0 {
                self.step(true);
            }
        }
        for _ in 0..4 {
            self.step(true);
        }
    }

    /// Decodes and runs one operation, `op % 8`: a SYN, a segment of an open
    /// connection, a datagram, an echo request, fragments, a raw packet, a step, a
    /// mutated packet. The bytes each takes are read in [`Self::packet`].
    fn op(&mut self, op: u8) {
        match op % 8 {
            6 => {
                let events = op & 0x40 == 0;
                self.step(events);
            }
            7 => {
                let which = self.input.byte() % 5;
                for mut p in self.packet(which) {
                    for _ in 0..self.input.byte() % 4 {
                        let (at, value) = (usize::from(self.input.byte()), self.input.byte());
                        if !p.is_empty() {
                            let at = at * p.len() / 256;
                            p[at] = value;
                        }
                    }
                    self.send(&p);
                }
            }
            which => {
                for p in self.packet(which) {
                    self.send(&p);
                }
            }
        }
    }

    /// Packets of kind `which` (0 SYN, 1 segment, 2 UDP, 3 echo, 4 fragments, 5 raw).
    fn packet(&mut self, which: u8) -> Vec<Vec<u8>> {
        let input = &mut self.input;
        let s = input.byte();
        let v6 = s & 0x80 != 0 && which != 4;
        let (src, dst) = (source(input.byte(), v6), destination(s, v6));
        match which {
            0 => {
                let (dport, sport, m) = (port(input.byte()), input.byte(), input.byte());
                let sport = 40000 + u16::from(sport);
                let mss = [None, Some(1460), Some(8960), Some(65000)][usize::from(m % 4)];
                let seq = 0x1000_0000 ^ u32::from(sport);
                let seg = Segment {
                    src: (src, sport),
                    dst: (dst, dport),
                    seq,
                    ack: 0,
                    flags: 0x02,
                    mss,
                };
                let key = (SocketAddr::new(src, sport), SocketAddr::new(dst, dport));
                let flow = Flow {
                    next_seq: seq.wrapping_add(1),
                    peer_next: 0,
                };
                self.flows.insert(key, flow);
                vec![tcp(&seg, &[])]
            }
            1 => {
                let (pick, f, len) = (input.byte(), input.byte(), input.byte());
                let n = self.flows.len();
                let Some((&(guest, remote), flow)) =
                    self.flows.iter_mut().nth(usize::from(pick) % n.max(1))
                else {
                    return Vec::new();
                };
                // Bits 0-2 FIN RST PSH, bit 3 no ACK, bits 4-5 wrong ack / seq.
                let flags = (f & 1) | (f & 2) << 1 | (f & 4) << 1 | u8::from(f & 8 == 0) << 4;
                let data = payload(usize::from(len) * 8);
                let seg = Segment {
                    src: (guest.ip(), guest.port()),
                    dst: (remote.ip(), remote.port()),
                    seq: flow.next_seq ^ u32::from(f & 0x20) << 20,
                    ack: flow.peer_next ^ u32::from(f & 0x10) << 20,
                    flags,
                    mss: None,
                };
                let used = u32::try_from(data.len()).unwrap_or(0) + u32::from(f & 1);
                flow.next_seq = flow.next_seq.wrapping_add(used);
                vec![tcp(&seg, &data)]
            }
            2 => {
                let (dport, sport, len) = (port(input.byte()), input.byte(), input.byte());
                let sport = if sport == 0 {
                    5353
                } else {
                    1024 + u16::from(sport)
                };
                let data = payload(usize::from(len) * 16);
                vec![udp((src, sport), (dst, dport), &data)]
            }
            3 => {
                let (id, len) = (input.byte(), input.byte());
                vec![echo(
                    src,
                    dst,
                    u16::from(id),
                    &payload(usize::from(len) * 16),
                )]
            }
            4 => {
                let (dport, len, parts) = (port(input.byte()), input.byte(), input.byte());
                let data = payload(usize::from(len) * 16 + 8);
                let whole = udp((src, 1024 + u16::from(len)), (dst, dport), &data);
                let count = usize::from(parts % 4) + 2;
                fragments(&whole, count, parts & 0x10 != 0, parts & 0x20 != 0)
            }
            _ => {
                let len = usize::from(input.byte()) * 2;
                vec![input.take(len).to_vec()]
            }
        }
    }

    fn send(&mut self, p: &[u8]) {
        if self.packets >= MAX_PACKETS {
            return;
        }
        self.packets += 1;
        let view = IpView::parse(p);
        if let Some(v) = &view {
            self.senders.insert(v.src);
        }
        if !self.engine.owns_guest_packet(NET, p, &FOREIGN_UDP) {
            let v = view.expect("an unparsable packet is the engine's");
            assert!(!v.fragment, "a fragment disowned");
            let l4 = v.l4(p);
            let stray_tcp =
                v.proto == ip::PROTO_TCP && TcpView::parse(l4).is_some_and(|t| !t.syn || t.ack);
            let foreign_udp = v.proto == ip::PROTO_UDP
                && ip::udp_ports(l4).is_some_and(|(sport, _, _)| FOREIGN_UDP.contains(&sport));
            assert!(stray_tcp || foreign_udp, "disowned {v:?}");
        }
        if self.link.send(NET, p) {
            self.sent += 1;
        }
    }

    /// One round of the engine, the servers' answers, and what came back.
    fn step(&mut self, host_events: bool) {
        self.engine.step(host_events);
        self.servers.serve();
        while let Some((net, len)) = self.link.recv(&mut self.buf) {
            assert_eq!(net, NET);
            self.received += 1;
            let p = &self.buf[..len];
            let v = check_emitted(p, self.mtu)
                .unwrap_or_else(|e| panic!("engine sent {e}: {:02x?}", &p[..len.min(64)]));
            assert!(
                self.senders.contains(&v.dst),
                "sent to {}, a silent address",
                v.dst
            );
            if v.proto == ip::PROTO_TCP
                && !v.fragment
                && let Some(t) = TcpView::parse(v.l4(p))
            {
                let key = (
                    SocketAddr::new(v.dst, t.dst_port),
                    SocketAddr::new(v.src, t.src_port),
                );
                if let Some(flow) = self.flows.get_mut(&key) {
                    flow.peer_next = t.seq.wrapping_add(t.seg_len);
                }
            }
        }
        self.check_stats();
    }

    fn check_stats(&self) {
        let s = self.engine.stats();
        assert_eq!(s.packets_in, self.sent, "packets_in");
        assert_eq!(s.packets_out, self.received, "packets_out");
        assert_eq!(s.host_socket_limit, self.limit);
        assert!(s.host_sockets <= s.host_socket_limit, "{s:?}");
        assert!(
            s.host_sockets <= s.tcp_flows + s.udp_flows + s.icmp_flows,
            "{s:?}"
        );
        let held = open_fds() - self.fds_engine - self.servers.accepted.len();
        assert_eq!(
            held as u64, s.host_sockets,
            "descriptors held by flows: {s:?}"
        );
    }
}
