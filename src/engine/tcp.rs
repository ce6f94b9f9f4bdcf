//! TCP termination toward the guests, behind [`L4Terminator`].
//!
//! v1 terminates each guest connection in smoltcp ([`SmolTerminator`], one
//! `Interface` per network so overlapping container addresses never meet) and the
//! engine copies bytes between the smoltcp socket's buffers and the kernel socket with
//! no buffer of its own (`recv_with`/`send_with` lend smoltcp's ring buffers to
//! `read(2)`/`write(2)` directly). The trait is the seam for a passt-style translator,
//! which would keep data in the kernel socket and reflect windows and ACKs instead.

use std::net::SocketAddr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpCidr};

/// Where the terminator puts the packets it builds for the guests.
pub(super) trait TxSink {
    /// Whether a packet may be queued now.
    fn ready(&self) -> bool;
    /// An empty buffer to build a packet in.
    fn buffer(&mut self) -> Vec<u8>;
    /// Queues a built packet.
    fn push(&mut self, packet: Vec<u8>);
}

/// What the shell needs to know about one terminated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TermStatus {
    /// The handshake completed (data may flow).
    pub(super) established: bool,
    /// The guest sent its FIN.
    pub(super) peer_fin: bool,
    /// The connection is over on the guest side (closed, reset, or in TIME-WAIT).
    pub(super) finished: bool,
    /// Data from the guest waiting to be written to the host.
    pub(super) recv_queue: usize,
    /// Room for data toward the guest.
    pub(super) can_send: bool,
}

/// TCP termination of guest connections (the sans-IO part of TCP egress and port
/// forwarding). Time is a parameter; packets go out through a [`TxSink`].
pub(super) trait L4Terminator {
    type Conn: Copy + std::fmt::Debug;

    /// Takes a guest's SYN (a whole IP packet) for `local` (the address the guest
    /// connects to) from `remote` (the guest). No SYN-ACK leaves until [`confirm`].
    ///
    /// [`confirm`]: Self::confirm
    fn accept(
        &mut self,
        now: std::time::Duration,
        syn: &[u8],
        local: SocketAddr,
        remote: SocketAddr,
        out: &mut dyn TxSink,
    ) -> Option<Self::Conn>;
    /// The host side connected: answer the held SYN.
    fn confirm(&mut self, conn: Self::Conn);
    /// Opens a connection to the guest `remote` from `local` (port forwarding).
    fn connect(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<Self::Conn>;
    /// A guest segment (a whole IP packet) for a known connection, or one that no
    /// connection owns (answered with RST).
    fn handle_segment(&mut self, now: std::time::Duration, packet: &[u8], out: &mut dyn TxSink);
    /// Sends what the connections have to send.
    fn poll_transmit(&mut self, now: std::time::Duration, out: &mut dyn TxSink);
    /// When `poll_transmit` must run next (retransmissions, delayed ACKs).
    fn poll_timeout(&mut self, now: std::time::Duration) -> Option<std::time::Duration>;
    /// Hands data received from the guest to `f`, which returns how much it took.
    fn recv_with(&mut self, conn: Self::Conn, f: &mut dyn FnMut(&[u8]) -> usize) -> usize;
    /// Lets `f` fill room toward the guest; `f` returns how much it wrote.
    fn send_with(&mut self, conn: Self::Conn, f: &mut dyn FnMut(&mut [u8]) -> usize) -> usize;
    fn status(&self, conn: Self::Conn) -> TermStatus;
    /// Half-closes toward the guest (FIN after the queued data).
    fn close(&mut self, conn: Self::Conn);
    /// Resets the connection (RST to the guest).
    fn abort(&mut self, conn: Self::Conn);
    /// Forgets the connection.
    fn release(&mut self, conn: Self::Conn);
}

/// Receive and send buffer of each smoltcp socket: the window offered to the guest.
const SOCKET_BUFFER: usize = 1 << 20;

/// smoltcp's view of the engine's link: one injected packet in, packets out to a sink.
struct LinkDevice<'a> {
    rx: Option<&'a [u8]>,
    out: &'a mut dyn TxSink,
    mtu: usize,
}

struct RxTok<'a>(&'a [u8]);
struct TxTok<'a>(&'a mut dyn TxSink);

impl smoltcp::phy::RxToken for RxTok<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl smoltcp::phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.0.buffer();
        buf.resize(len, 0);
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for LinkDevice<'_> {
    type RxToken<'b>
        = RxTok<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxTok<'b>
    where
        Self: 'b;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let rx = self.rx.take()?;
        Some((RxTok(rx), TxTok(&mut *self.out)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        // Refusing (rather than dropping) keeps smoltcp from bursting into a full
        // queue (smoltcp#949): it retries at the next poll.
        self.out.ready().then_some(TxTok(&mut *self.out))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // Guests' packets come through the local kernel (TAP): their checksums were
        // verified or computed there. Compute ours, skip verifying theirs.
        let mut csum = ChecksumCapabilities::default();
        csum.ipv4 = Checksum::Tx;
        csum.tcp = Checksum::Tx;
        csum.udp = Checksum::Tx;
        csum.icmpv4 = Checksum::Tx;
        csum.icmpv6 = Checksum::Tx;
        caps.checksum = csum;
        caps
    }
}

fn smol_now(now: std::time::Duration) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX))
}

/// smoltcp-based [`L4Terminator`] for one network.
pub(super) struct SmolTerminator {
    iface: Interface,
    sockets: SocketSet<'static>,
    mtu: usize,
}

impl std::fmt::Debug for SmolTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolTerminator")
            .field("mtu", &self.mtu)
            .field("sockets", &self.sockets.iter().count())
            .finish()
    }
}

impl SmolTerminator {
    /// A terminator for a network whose packets may be `mtu` bytes long.
    pub(super) fn new(mtu: usize, addrs: &[std::net::IpAddr], seed: u64) -> Self {
        let mtu = mtu.clamp(1280, 65535);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut sink = NullSink;
        let mut dev = LinkDevice {
            rx: None,
            out: &mut sink,
            mtu,
        };
        let mut iface = Interface::new(config, &mut dev, smoltcp::time::Instant::from_micros(0));
        // AnyIP: accept segments for every destination (the guests' remote peers).
        iface.set_any_ip(true);
        iface.update_ip_addrs(|ips| {
            for a in addrs {
                let prefix = if a.is_ipv4() { 32 } else { 128 };
                let _ = ips.push(IpCidr::new((*a).into(), prefix));
            }
        });
        Self {
            iface,
            sockets: SocketSet::new(Vec::new()),
            mtu,
        }
    }

    fn new_socket() -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]);
        let tx = tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]);
        let mut s = tcp::Socket::new(rx, tx);
        // A proxy forwards whatever the host socket gave: no Nagle delays, and ACK
        // at once (one ACK per poll covers a whole batch anyway).
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        s
    }

    fn device<'a>(&self, rx: Option<&'a [u8]>, out: &'a mut dyn TxSink) -> LinkDevice<'a> {
        LinkDevice {
            rx,
            out,
            mtu: self.mtu,
        }
    }
}

struct NullSink;

impl TxSink for NullSink {
    fn ready(&self) -> bool {
        false
    }
    fn buffer(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn push(&mut self, _packet: Vec<u8>) {}
}

impl L4Terminator for SmolTerminator {
    type Conn = SocketHandle;

    fn accept(
        &mut self,
        now: std::time::Duration,
        syn: &[u8],
        local: SocketAddr,
        remote: SocketAddr,
        out: &mut dyn TxSink,
    ) -> Option<SocketHandle> {
        let mut s = Self::new_socket();
        s.pause_synack(true);
        s.listen(local).ok()?;
        let h = self.sockets.add(s);
        let mut dev = self.device(Some(syn), out);
        let _ = self
            .iface
            .poll_ingress_single(smol_now(now), &mut dev, &mut self.sockets);
        // The listening socket must have taken exactly this SYN.
        let s = self.sockets.get::<tcp::Socket>(h);
        if s.state() == tcp::State::SynReceived
            && s.remote_endpoint().map(SocketAddr::from) == Some(remote)
        {
            Some(h)
        } else {
            self.sockets.remove(h);
            None
        }
    }

    fn confirm(&mut self, conn: SocketHandle) {
        self.sockets
            .get_mut::<tcp::Socket>(conn)
            .pause_synack(false);
    }

    fn connect(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<SocketHandle> {
        let mut s = Self::new_socket();
        s.connect(self.iface.context(), remote, local).ok()?;
        Some(self.sockets.add(s))
    }

    fn handle_segment(&mut self, now: std::time::Duration, packet: &[u8], out: &mut dyn TxSink) {
        let mut dev = LinkDevice {
            rx: Some(packet),
            out,
            mtu: self.mtu,
        };
        let _ = self
            .iface
            .poll_ingress_single(smol_now(now), &mut dev, &mut self.sockets);
    }

    fn poll_transmit(&mut self, now: std::time::Duration, out: &mut dyn TxSink) {
        let mut dev = LinkDevice {
            rx: None,
            out,
            mtu: self.mtu,
        };
        let now = smol_now(now);
        // Each round sends at most one segment per socket; stop when nothing moved.
        for _ in 0..4096 {
            if self.iface.poll_egress(now, &mut dev, &mut self.sockets)
                == smoltcp::iface::PollResult::None
            {
                break;
            }
        }
    }

    fn poll_timeout(&mut self, now: std::time::Duration) -> Option<std::time::Duration> {
        let at = self.iface.poll_at(smol_now(now), &self.sockets)?;
        Some(std::time::Duration::from_micros(
            u64::try_from(at.total_micros()).unwrap_or(0),
        ))
    }

    fn recv_with(&mut self, conn: SocketHandle, f: &mut dyn FnMut(&[u8]) -> usize) -> usize {
        let s = self.sockets.get_mut::<tcp::Socket>(conn);
        s.recv(|buf| {
            let n = f(buf);
            (n, n)
        })
        .unwrap_or(0)
    }

    fn send_with(&mut self, conn: SocketHandle, f: &mut dyn FnMut(&mut [u8]) -> usize) -> usize {
        let s = self.sockets.get_mut::<tcp::Socket>(conn);
        s.send(|buf| {
            let n = f(buf);
            (n, n)
        })
        .unwrap_or(0)
    }

    fn status(&self, conn: SocketHandle) -> TermStatus {
        use tcp::State as S;
        let s = self.sockets.get::<tcp::Socket>(conn);
        let state = s.state();
        TermStatus {
            established: !matches!(state, S::Listen | S::SynSent | S::SynReceived | S::Closed),
            peer_fin: matches!(state, S::CloseWait | S::LastAck | S::Closing | S::TimeWait),
            // A reset in SYN-RECEIVED sends a passive socket back to LISTEN.
            finished: matches!(state, S::Closed | S::TimeWait | S::Listen),
            recv_queue: s.recv_queue(),
            can_send: s.can_send(),
        }
    }

    fn close(&mut self, conn: SocketHandle) {
        self.sockets.get_mut::<tcp::Socket>(conn).close();
    }

    fn abort(&mut self, conn: SocketHandle) {
        self.sockets.get_mut::<tcp::Socket>(conn).abort();
    }

    fn release(&mut self, conn: SocketHandle) {
        self.sockets.remove(conn);
    }
}
