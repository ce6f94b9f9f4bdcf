//! The backend-independent half of a datapath thread: the switch, the port table with
//! the shell's own counters, command handling and verdict-to-egress mapping.
//!
//! A backend (io_uring or epoll) is only I/O mechanics: it reads frames, hands each to
//! [`Pipeline::handle_rx`], writes the frame to the egress ports it gets back, and
//! reports failed writes with [`Pipeline::count_tx_error`]. `H` is the backend's
//! per-port state (its fd, buffers, ...), kept here so that one lookup by `PortId`
//! yields both the switch-side and the I/O-side of a port.
//!
//! There is no global state: a `Pipeline` is `Send`, owned by exactly one thread, and
//! several can run side by side (one per core, each with its own queues) once the
//! control side learns to shard ports.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::OwnedFd;

use anyhow::anyhow;
use tapnet_switch::router::{
    Router, RouterConfig, RouterNetwork, RouterVerdict, TransmitTo, UplinkVerdict,
};
use tapnet_switch::{
    MacEntry, NetworkConfig, NetworkId, PortGuard, PortId, PortRole, Switch, SwitchConfig, Verdict,
};
use tapnet_wire::{Instant, MacAddr};

use super::offload::{self, Offload};
use super::{PortIo, PortStats};
use crate::engine::PacketLink;

mod outside;
mod return_path;
pub(crate) use outside::{PacketUplink, PacketUplinkConfig, PacketUplinkStats, zone_of};

/// Room for an Ethernet header in front of an IP packet of up to 64 KiB.
const SCRATCH_LEN: usize = 14 + 65536 + 64;

/// Where a command's answer goes.
pub(crate) type Reply<T> = crossbeam_channel::Sender<anyhow::Result<T>>;

/// A control-plane request, executed on the datapath thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// A network; with a gateway, the router serves it behind a virtual port.
    AddNetwork(NetworkId, NetworkConfig, Option<Box<Gateway>>, Reply<()>),
    RemoveNetwork(NetworkId, Reply<()>),
    /// A port; with a guard, the guard is in place before the port is read.
    AddPort {
        port: PortId,
        net: NetworkId,
        role: PortRole,
        io: PortIo,
        guard: Option<Box<PortGuard>>,
        reply: Reply<()>,
    },
    /// Answered once the backend no longer uses the fd (possibly a few batches later).
    RemovePort(PortId, Reply<OwnedFd>),
    Macs(NetworkId, Reply<Vec<MacEntry>>),
    /// Binds `MacAddr` to an address in the network's DHCP server (`None`: unbinds).
    StaticLease(NetworkId, MacAddr, Option<std::net::Ipv4Addr>, Reply<()>),
    /// Makes `PortIo` the packet uplink (before any network is added).
    SetPacketUplink(Box<PacketUplinkConfig>, PortIo, Reply<()>),
    /// DNAT of a published port through the packet uplink.
    Publish(tapnet_nat::PublishRule, Reply<()>),
    Unpublish(tapnet_nat::PublishRule, Reply<()>),
    /// The packet uplink's tracked flows (empty without one).
    NatFlows(Reply<Vec<tapnet_nat::EntryInfo>>),
    /// The packet uplink's counters, if there is one.
    UplinkStats(Reply<Option<PacketUplinkStats>>),
    Stats(Reply<Vec<PortStats>>),
    /// This pipeline reads one queue of a multi-queue TAP; the others' pipelines.
    SetSiblings(Siblings, Reply<()>),
    /// Replaces [`Siblings::primary_udp_ports`].
    SetPrimaryUdpPorts(Vec<u16>, Reply<()>),
    /// A frame that a sibling pipeline read from `PortId` (another queue of the same
    /// device): handled as if read here.
    SharedFrame(PortId, Vec<u8>, Option<Offload>),
    Shutdown(Reply<()>),
}

/// The other pipelines of a multi-queue TAP, whose queues one device shares.
#[derive(Debug)]
pub(crate) struct Siblings {
    /// The TAP's port.
    pub(crate) port: PortId,
    /// Every other pipeline: frames that feed the router's state go to all of them.
    pub(crate) all: Vec<super::SiblingLink>,
    /// The pipeline whose engine serves the published ports, unless it is this one.
    /// Guest packets of flows this pipeline's engine does not hold go there (see
    /// [`crate::engine::InlineEngine::owns_guest_packet`]): the container's answers
    /// to published-port clients land on any queue (the TUN driver steers a flow to
    /// the queue it last came in on only once it has seen it, and forgets it after
    /// a few idle seconds).
    pub(crate) primary: Option<super::SiblingLink>,
    /// The guest UDP ports published through the primary pipeline's engine.
    pub(crate) primary_udp_ports: Vec<u16>,
}

/// Whether a frame from a container feeds state that every pipeline serving its
/// device must hold: ARP (the router's neighbour cache), NDP (RFC 4861 types 133-137)
/// and DHCP requests (the leases). Each queue of a multi-queue TAP has a pipeline of
/// its own, and the kernel picks the queue by a flow hash, so such a frame reaches
/// one of them only; the others get a copy. Data frames stay where they land.
pub(crate) fn feeds_router_state(frame: &[u8]) -> bool {
    const ICMPV6: u8 = 58;
    const UDP: u8 = 17;
    const DHCP_SERVER_PORT: u16 = 67;
    let byte = |at: usize| frame.get(at).copied();
    let ethertype = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match ethertype {
        Some(0x0806) => true,
        Some(0x86dd) => byte(20) == Some(ICMPV6) && matches!(byte(54), Some(133..=137)),
        Some(0x0800) => {
            let Some(ihl) = byte(14).map(|b| usize::from(b & 0x0f) * 4) else {
                return false;
            };
            byte(23) == Some(UDP)
                && frame
                    .get(14 + ihl + 2..14 + ihl + 4)
                    .is_some_and(|p| u16::from_be_bytes([p[0], p[1]]) == DHCP_SERVER_PORT)
        }
        _ => false,
    }
}

/// Whether IP packet `ip` of network `net` comes from one of the router's own
/// addresses there (the gateway's, the DNS address): host-socket flows at those
/// addresses reach the engine by their destination anyway.
fn is_router_address(router: &Router, net: NetworkId, ip: &[u8]) -> bool {
    let (Some(view), Some(n)) = (tapnet_wire::ip::IpView::parse(ip), router.network(net)) else {
        return false;
    };
    match view.src {
        std::net::IpAddr::V4(a) => {
            n.v4.as_ref()
                .is_some_and(|v4| v4.gateway == a || v4.extra.contains(&a))
        }
        std::net::IpAddr::V6(a) => {
            n.v6.as_ref()
                .is_some_and(|v6| v6.gateway == a || v6.extra.contains(&a))
        }
    }
}

/// A network's gateway: the router's leg on it, attached to the switch as a virtual
/// port (no fd) of role `Gateway`.
#[derive(Debug, Clone)]
pub(crate) struct Gateway {
    pub(crate) port: PortId,
    pub(crate) network: RouterNetwork,
    /// Masquerade its traffic on the packet uplink (else routed untranslated).
    pub(crate) masquerade: bool,
}

/// Writes a frame that the pipeline produced itself (a router answer, a packet from
/// the uplink) to a port at once, outside the backend's batched receive path.
pub(crate) trait DirectWrite<H> {
    /// Writes one whole frame, which the pipeline received with `offload` (`None`: it
    /// built the frame); the error is an errno. A port without offload gets a TSO
    /// frame as segments; a partial checksum must have been completed before.
    fn write_now(&self, port: &H, frame: &[u8], offload: Option<Offload>) -> Result<(), i32>;
    /// Whether the port takes frames with partial checksums and TSO frames as they are.
    fn takes_offload(&self, port: &H) -> bool;
}

/// What the backend does with ports' file descriptors.
pub(crate) trait PortBackend {
    /// Per-port I/O state.
    type Port;
    /// Takes ownership of the fd and starts reading it.
    fn attach(&mut self, port: PortId, io: PortIo) -> anyhow::Result<Self::Port>;
    /// Stops using the port; answers `reply` with the fd once nothing uses it any more.
    fn detach(&mut self, port: PortId, state: Self::Port, reply: Reply<OwnedFd>);
}

/// Whether the thread goes on after a command.
#[derive(Debug)]
pub(crate) enum Flow {
    Continue,
    /// Stop; answer this once every port fd is closed.
    Shutdown(Reply<()>),
}

/// A port as the shell sees it.
#[derive(Debug)]
pub(crate) struct PortEntry<H> {
    /// The backend's I/O state.
    pub(crate) io: H,
    /// Reads that failed (other than EAGAIN/EINTR).
    pub(crate) rx_errors: u64,
    /// Writes that failed or could not be queued.
    pub(crate) tx_errors: u64,
    /// The first failed write has been logged.
    tx_error_logged: bool,
}

impl<H> PortEntry<H> {
    fn new(io: H) -> Self {
        Self {
            io,
            rx_errors: 0,
            tx_errors: 0,
            tx_error_logged: false,
        }
    }
}

/// Egress ports of one frame, filled by [`Pipeline::handle_rx`]. Owned by the backend
/// and reused, so forwarding does not allocate once it has grown to the port count.
#[derive(Debug, Default)]
pub(crate) struct Egress {
    ports: Vec<PortId>,
}

impl Egress {
    pub(crate) fn ports(&self) -> &[PortId] {
        &self.ports
    }
}

/// A multiply-shift hasher for `PortId` (a `u32`): port lookups are per frame, and
/// the keys are chosen by us, so SipHash's DoS resistance buys nothing.
#[derive(Debug, Default)]
pub(crate) struct PortIdHasher(u64);

impl Hasher for PortIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PortMap<H> = HashMap<PortId, PortEntry<H>, BuildHasherDefault<PortIdHasher>>;

/// The switch plus the shell's view of its ports.
#[derive(Debug)]
pub(crate) struct Pipeline<H> {
    switch: Switch,
    ports: PortMap<H>,
    /// Created with the first network that has a gateway.
    router: Option<Router>,
    router_config: RouterConfig,
    /// The packet uplink (AF_PACKET port + NAT), if the daemon has one.
    packet_uplink: Option<Box<PacketUplink>>,
    /// With a packet uplink: the flows the host-socket engine started into the
    /// networks, whose answers go back to it (see [`return_path`]).
    engine_flows: Option<Box<return_path::EngineFlows>>,
    /// The virtual gateway port of each routed network (the switch knows the way
    /// back: a port's network and role).
    gateways: HashMap<NetworkId, PortId>,
    /// The way out: host-socket egress (rootless), if any.
    uplink: Option<PacketLink>,
    /// Work buffer for frames the router reads and rewrites (received frames may be
    /// shared by several in-flight writes, so the router never touches them).
    scratch: Box<[u8]>,
    /// Egress of a frame the pipeline produced.
    inject_egress: Egress,
    /// Packets for the uplink dropped because its queue was full or there is none.
    uplink_drops: u64,
    /// The host-socket engine, when it runs on this thread ([`Self::service`] steps it).
    inline_engine: Option<crate::engine::InlineEngine>,
    /// When the inline engine's next timer is due.
    engine_deadline: Option<Instant>,
    /// A port whose device has more queues, read by sibling pipelines; frames that
    /// feed the router's state go to them too (see [`feeds_router_state`]).
    siblings: Option<Siblings>,
}

impl<H> Pipeline<H> {
    pub(crate) fn new(config: SwitchConfig) -> Self {
        // A per-process random seed for the MAC table's hash, so that containers cannot
        // pick MAC addresses that collide in it (std seeds `RandomState` from the OS).
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        Self {
            switch: Switch::with_hash_seed(config, seed),
            ports: PortMap::default(),
            router: None,
            router_config: RouterConfig::default(),
            packet_uplink: None,
            engine_flows: None,
            gateways: HashMap::default(),
            uplink: None,
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
            inject_egress: Egress::default(),
            uplink_drops: 0,
            inline_engine: None,
            siblings: None,
            engine_deadline: None,
        }
    }

    /// Connects the uplink (host-socket egress).
    pub(crate) fn set_uplink(&mut self, uplink: PacketLink) {
        self.uplink = Some(uplink);
    }

    /// Runs the host-socket engine on this thread: the backend polls its fd (as the
    /// uplink's readiness fd) and every [`Self::service`] steps it.
    pub(crate) fn set_inline_engine(&mut self, engine: crate::engine::InlineEngine) {
        self.inline_engine = Some(engine);
    }

    /// The uplink's readiness fd, for the backend to poll.
    pub(crate) fn uplink_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        if let Some(engine) = &self.inline_engine {
            return Some(engine.poll_fd());
        }
        self.uplink.as_ref().map(PacketLink::readiness_fd)
    }

    /// Runs one received frame through the switch and fills `egress` with the ports
    /// to send it to (every one of them attached here). A frame for a network's
    /// gateway also goes through the router; what that produces is written at once
    /// with `writer`. Allocation-free.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_rx<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        offload: Option<Offload>,
        egress: &mut Egress,
        writer: &W,
    ) {
        egress.ports.clear();
        if self
            .packet_uplink
            .as_ref()
            .is_some_and(|up| up.port == ingress)
        {
            self.outside_rx(now, frame, offload, writer);
            return;
        }
        let mut gateway = None;
        let verdict = self.switch.handle_frame(now, ingress, frame);
        // What the port's guard refused reaches no pipeline's router (and is counted
        // once, here).
        let refused = matches!(verdict, Verdict::Drop(reason) if reason.is_spoofing());
        if !refused
            && let Some(siblings) = &self.siblings
            && siblings.port == ingress
            && feeds_router_state(frame)
        {
            for link in &siblings.all {
                link.share(ingress, frame, offload);
            }
        }
        match verdict {
            Verdict::Forward(port) => {
                if self.ports.contains_key(&port) {
                    egress.ports.push(port);
                } else {
                    // A port without an fd is a network's virtual gateway port.
                    gateway = Some(port);
                }
            }
            Verdict::Flood(ports) => {
                for &port in ports {
                    if self.ports.contains_key(&port) {
                        egress.ports.push(port);
                    } else {
                        gateway = Some(port);
                    }
                }
            }
            Verdict::Drop(reason) => {
                tracing::trace!(?ingress, ?reason, "drop");
            }
        }
        if let Some(port) = gateway {
            self.route(now, port, ingress, frame, offload, writer);
        }
    }

    /// A frame a sibling pipeline read from another queue of `port`'s device: through
    /// the switch (and router) as if read here, and to the ports that leaves, without
    /// sharing it again.
    fn handle_shared_frame<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &mut [u8],
        offload: Option<Offload>,
        writer: &W,
    ) {
        let siblings = self.siblings.take();
        let mut egress = Egress::default();
        self.handle_rx(now, port, frame, offload, &mut egress, writer);
        self.siblings = siblings;
        Self::write_now_to(&mut self.ports, &egress.ports, frame, offload, writer);
    }

    /// Hands a frame that reached gateway `port` from `ingress` to the router and acts
    /// on its verdict.
    fn route<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        port: PortId,
        ingress: PortId,
        frame: &[u8],
        offload: Option<Offload>,
        writer: &W,
    ) {
        let Some((net, PortRole::Gateway)) = self.switch.port_attachment(port) else {
            return;
        };
        let Some(router) = self.router.as_mut() else {
            return;
        };
        let Some(scratch) = self.scratch.get_mut(..frame.len()) else {
            return;
        };
        scratch.copy_from_slice(frame);
        match router.handle_frame_offloaded(now, net, scratch, Offload::for_router(offload)) {
            RouterVerdict::Uplink { packet } => {
                // The answer to a flow the engine started goes back to the engine.
                let to_engine = match (
                    self.engine_flows.as_deref_mut(),
                    self.scratch.get(packet.clone()),
                ) {
                    (Some(flows), Some(ip)) => flows.answers_engine_flow(now, net, ip),
                    _ => false,
                };
                if !to_engine && self.outbound(now, net, packet.clone(), offload, writer) {
                    self.service_queues(now, writer);
                    return;
                }
                if let Some(siblings) = &self.siblings
                    && let Some(primary) = &siblings.primary
                    && let (Some(engine), Some(pkt)) =
                        (&self.inline_engine, self.scratch.get(packet.clone()))
                    && !engine.owns_guest_packet(net, pkt, &siblings.primary_udp_ports)
                {
                    primary.share(siblings.port, frame, offload);
                    return;
                }
                // To the host-socket engine.
                if let Some(offload) = offload
                    && let Some(mtu) = self
                        .router
                        .as_ref()
                        .and_then(|r| r.network(net))
                        .map(|n| n.mtu)
                    && let Some(frame) = self.scratch.get_mut(packet.start - 14..packet.end)
                {
                    offload::raise_mss_towards_engine(frame, offload, mtu);
                }
                let sent = match (&self.uplink, self.scratch.get(packet)) {
                    (Some(link), Some(packet)) => link.send_from(net, ingress.0, packet),
                    _ => false,
                };
                if !sent {
                    self.uplink_drops += 1;
                }
            }
            RouterVerdict::Reply { len } => {
                let offload = offload.and_then(|o| o.still_fits(&self.scratch[..len]));
                self.inject(now, port, len, offload, writer);
            }
            RouterVerdict::Consumed => {}
            RouterVerdict::Drop(reason) => tracing::trace!(?net, ?reason, "router drop"),
        }
        self.service_queues(now, writer);
    }

    /// Sends the frame in `scratch[..len]` (received with `offload`) into the network
    /// from gateway `port`.
    fn inject<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        port: PortId,
        len: usize,
        offload: Option<Offload>,
        writer: &W,
    ) {
        let Some(frame) = self.scratch.get_mut(..len) else {
            return;
        };
        self.inject_egress.ports.clear();
        match self.switch.handle_frame(now, port, frame) {
            Verdict::Forward(out) => self.inject_egress.ports.push(out),
            Verdict::Flood(outs) => self.inject_egress.ports.extend_from_slice(outs),
            Verdict::Drop(reason) => tracing::trace!(?port, ?reason, "drop injected frame"),
        }
        Self::write_now_to(
            &mut self.ports,
            &self.inject_egress.ports,
            frame,
            offload,
            writer,
        );
    }

    /// Writes `frame` (with `offload`) to each of `egress` at once, completing a
    /// partial checksum first when one of them takes none.
    fn write_now_to<W: DirectWrite<H>>(
        ports: &mut PortMap<H>,
        egress: &[PortId],
        frame: &mut [u8],
        mut offload: Option<Offload>,
        writer: &W,
    ) {
        if offload.is_some_and(|o| o.csum.is_some())
            && Self::any_without_offload(ports, egress, writer)
        {
            offload = offload::finish_offload_checksum(frame, offload);
        }
        let frame = &*frame;
        for &out in egress {
            let Some(entry) = ports.get_mut(&out) else {
                continue;
            };
            if let Err(errno) = writer.write_now(&entry.io, frame, offload) {
                entry.tx_errors += 1;
                tracing::trace!(?out, errno, "direct write failed");
            }
        }
    }

    /// Whether one of `egress` takes no partial checksums (a plain port): a frame with
    /// one must have it completed before it is written to them all.
    fn any_without_offload<W: DirectWrite<H>>(
        ports: &PortMap<H>,
        egress: &[PortId],
        writer: &W,
    ) -> bool {
        egress
            .iter()
            .any(|out| ports.get(out).is_some_and(|e| !writer.takes_offload(&e.io)))
    }

    /// [`Self::any_without_offload`] for a received frame's egress ports.
    pub(crate) fn egress_without_offload<W: DirectWrite<H>>(
        &self,
        egress: &Egress,
        writer: &W,
    ) -> bool {
        Self::any_without_offload(&self.ports, &egress.ports, writer)
    }

    /// The uplink's fd was readable: resets it (the link's eventfd; an inline engine's
    /// epoll fd needs no reset) and moves what waits.
    pub(crate) fn uplink_ready<W: DirectWrite<H>>(&mut self, now: Instant, writer: &W) {
        if self.inline_engine.is_none()
            && let Some(link) = &self.uplink
        {
            super::drain_wake(link.readiness_fd());
        }
        self.step_engine(now, true);
        self.service_queues(now, writer);
    }

    /// Moves what waits outside the receive path: steps an inline engine, then moves
    /// packets from the uplink into the networks and frames the router generated.
    /// Call after every batch and when the uplink is readable.
    pub(crate) fn service<W: DirectWrite<H>>(&mut self, now: Instant, writer: &W) {
        self.step_engine(now, false);
        self.service_queues(now, writer);
    }

    /// Steps an inline engine; it collects host socket events only when its fd was
    /// seen readable (`host_events`), which saves an `epoll_wait` per batch.
    fn step_engine(&mut self, now: Instant, host_events: bool) {
        if let Some(engine) = self.inline_engine.as_mut() {
            engine.step(host_events);
            self.engine_deadline = engine.timeout().map(|d| now + d);
        }
    }

    /// [`Self::service`] without stepping the engine (once per frame is too often).
    fn service_queues<W: DirectWrite<H>>(&mut self, now: Instant, writer: &W) {
        if self.router.is_none() {
            return;
        }
        loop {
            let mut progress = false;
            let received = self
                .uplink
                .as_ref()
                .and_then(|l| l.recv(&mut self.scratch[14..]));
            if let Some((net, len)) = received {
                progress = true;
                if let Some(flows) = self.engine_flows.as_deref_mut()
                    && let Some(ip) = self.scratch.get(14..14 + len)
                    && !self
                        .router
                        .as_ref()
                        .is_some_and(|r| is_router_address(r, net, ip))
                {
                    flows.note_from_engine(now, net, ip);
                }
                let verdict = match self.router.as_mut() {
                    Some(router) => router.handle_uplink(now, net, &mut self.scratch[..14 + len]),
                    None => return,
                };
                if let (Some(port), UplinkVerdict::ToNetwork { len }) =
                    (self.gateway_of(net), verdict)
                {
                    self.inject(now, port, len, None, writer);
                }
            }
            let transmit = self
                .router
                .as_mut()
                .and_then(|r| r.poll_transmit(now, &mut self.scratch));
            if let Some(t) = transmit {
                progress = true;
                match t.to {
                    TransmitTo::Network => {
                        if let Some(port) = self.gateway_of(t.net) {
                            self.inject(now, port, t.len, None, writer);
                        }
                    }
                    TransmitTo::Uplink => {
                        // Bare IP: make room for an Ethernet header in front.
                        self.scratch.copy_within(..t.len, 14);
                        let packet = 14..14 + t.len;
                        if self.outbound(now, t.net, packet.clone(), None, writer) {
                            continue;
                        }
                        let sent = self
                            .uplink
                            .as_ref()
                            .is_some_and(|l| l.send(t.net, &self.scratch[packet]));
                        if !sent {
                            self.uplink_drops += 1;
                        }
                    }
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// The gateway port of a network.
    fn gateway_of(&self, net: NetworkId) -> Option<PortId> {
        self.gateways.get(&net).copied()
    }

    /// Counts a write to `port` that failed or could not be queued. `errno` (0 when
    /// the write was dropped before reaching the kernel) is logged once per port, at
    /// debug for a full queue (EAGAIN, ENOBUFS: normal under load) and warn otherwise.
    pub(crate) fn count_tx_error(&mut self, port: PortId, errno: i32) {
        if let Some(entry) = self.ports.get_mut(&port) {
            entry.tx_errors += 1;
            if !entry.tx_error_logged {
                entry.tx_error_logged = true;
                let err = std::io::Error::from_raw_os_error(errno);
                if matches!(errno, 0 | libc::EAGAIN | libc::ENOBUFS) {
                    tracing::debug!(
                        ?port,
                        "datapath: dropping frames to port: tx queue full ({err})"
                    );
                } else {
                    tracing::warn!(
                        ?port,
                        "datapath: write to port failed: {err} (counting further errors)"
                    );
                }
            }
        }
    }

    /// Counts a failed read on `port`. The backend stops reading the port after this
    /// (a vanished device keeps failing; retrying would spin), so it logs at warn.
    pub(crate) fn count_rx_error(&mut self, port: PortId, errno: i32) {
        if let Some(entry) = self.ports.get_mut(&port) {
            entry.rx_errors += 1;
            let err = if errno == 0 {
                "end of file".to_owned()
            } else {
                std::io::Error::from_raw_os_error(errno).to_string()
            };
            tracing::warn!(
                ?port,
                "datapath: read from port failed: {err}; no longer reading it"
            );
        }
    }

    pub(crate) fn port(&self, port: PortId) -> Option<&PortEntry<H>> {
        self.ports.get(&port)
    }

    pub(crate) fn port_mut(&mut self, port: PortId) -> Option<&mut PortEntry<H>> {
        self.ports.get_mut(&port)
    }

    /// Takes every port's I/O state out (at shutdown; the switch keeps its ports).
    pub(crate) fn take_ports(&mut self) -> Vec<(PortId, H)> {
        self.ports.drain().map(|(id, e)| (id, e.io)).collect()
    }

    /// When `handle_timeout` is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let router = self.router.as_ref().and_then(Router::poll_timeout);
        let uplink = self.packet_uplink.as_ref().and_then(|up| up.poll_timeout());
        let engine_flows = self
            .engine_flows
            .as_ref()
            .and_then(|flows| flows.poll_timeout());
        [
            self.switch.poll_timeout(),
            router,
            uplink,
            engine_flows,
            self.engine_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the switch's and the router's timers if due. Call once per batch, after
    /// the frames.
    pub(crate) fn handle_timeout<W: DirectWrite<H>>(&mut self, now: Instant, writer: &W) {
        if self.switch.poll_timeout().is_some_and(|t| t <= now) {
            self.switch.handle_timeout(now);
        }
        if let Some(router) = self.router.as_mut()
            && router.poll_timeout().is_some_and(|t| t <= now)
        {
            router.handle_timeout(now);
        }
        if let Some(up) = self.packet_uplink.as_deref_mut()
            && up.poll_timeout().is_some_and(|t| t <= now)
        {
            up.handle_timeout(now);
            self.flush_outside(writer);
        }
        if let Some(flows) = self.engine_flows.as_deref_mut()
            && flows.poll_timeout().is_some_and(|t| t <= now)
        {
            flows.handle_timeout(now);
        }
        self.service(now, writer);
    }

    /// Executes one control command.
    pub(crate) fn handle_command<B>(&mut self, now: Instant, cmd: Command, backend: &mut B) -> Flow
    where
        B: PortBackend<Port = H> + DirectWrite<H>,
    {
        match cmd {
            Command::AddNetwork(net, config, gateway, reply) => {
                let _ = reply.send(self.add_network(now, net, config, gateway));
            }
            Command::RemoveNetwork(net, reply) => {
                let _ = reply.send(self.remove_network(now, net));
            }
            Command::AddPort {
                port,
                net,
                role,
                io,
                guard,
                reply,
            } => {
                let attachment = (port, net, role);
                let _ = reply.send(self.add_port(now, attachment, io, guard, backend));
            }
            Command::RemovePort(port, reply) => {
                if let Err(e) = self.switch.remove_port(port) {
                    let _ = reply.send(Err(e.into()));
                } else if let Some(entry) = self.ports.remove(&port) {
                    backend.detach(port, entry.io, reply);
                } else {
                    let _ = reply.send(Err(anyhow!("port {port:?} has no I/O state")));
                }
            }
            Command::StaticLease(net, mac, ip, reply) => {
                let result = match (self.router.as_mut(), ip) {
                    (Some(router), Some(ip)) => {
                        router.set_static_lease(net, mac, ip).map_err(Into::into)
                    }
                    (Some(router), None) => {
                        router.remove_static_lease(net, mac);
                        Ok(())
                    }
                    (None, _) => Err(anyhow!("network {net:?} has no router")),
                };
                let _ = reply.send(result);
            }
            Command::SetSiblings(siblings, reply) => {
                self.siblings = Some(siblings);
                let _ = reply.send(Ok(()));
            }
            Command::SetPrimaryUdpPorts(ports, reply) => {
                if let Some(siblings) = self.siblings.as_mut() {
                    siblings.primary_udp_ports = ports;
                }
                let _ = reply.send(Ok(()));
            }
            Command::SharedFrame(port, mut frame, offload) => {
                self.handle_shared_frame(now, port, &mut frame, offload, backend);
            }
            Command::SetPacketUplink(config, io, reply) => {
                let _ = reply.send(self.set_packet_uplink(*config, io, backend));
            }
            Command::Publish(rule, reply) => {
                let result = match self.packet_uplink.as_deref_mut() {
                    Some(up) => up.publish(rule),
                    None => Err(anyhow!("no packet uplink")),
                };
                let _ = reply.send(result);
            }
            Command::Unpublish(rule, reply) => {
                if let Some(up) = self.packet_uplink.as_deref_mut() {
                    up.unpublish(&rule);
                }
                let _ = reply.send(Ok(()));
            }
            Command::NatFlows(reply) => {
                let flows = self
                    .packet_uplink
                    .as_ref()
                    .map(|up| up.flows(now))
                    .unwrap_or_default();
                let _ = reply.send(Ok(flows));
            }
            Command::UplinkStats(reply) => {
                let _ = reply.send(Ok(self.packet_uplink.as_ref().map(|up| up.stats())));
            }
            Command::Macs(net, reply) => {
                let _ = reply.send(Ok(self.switch.mac_entries(net, now)));
            }
            Command::Stats(reply) => {
                let _ = reply.send(Ok(self.stats()));
            }
            Command::Shutdown(reply) => return Flow::Shutdown(reply),
        }
        Flow::Continue
    }

    fn add_network(
        &mut self,
        now: Instant,
        net: NetworkId,
        config: NetworkConfig,
        gateway: Option<Box<Gateway>>,
    ) -> anyhow::Result<()> {
        self.switch.add_network(net, config)?;
        let Some(Gateway {
            port,
            network,
            masquerade,
        }) = gateway.map(|g| *g)
        else {
            return Ok(());
        };
        if let Some(up) = self.packet_uplink.as_deref_mut()
            && let Err(e) = up.add_network(net, &network, masquerade)
        {
            let _ = self.switch.remove_network(net);
            return Err(e);
        }
        let router_config = &self.router_config;
        let router = self
            .router
            .get_or_insert_with(|| Router::new(router_config.clone()));
        // The gateway's MAC is pinned to its port: no container can take it over.
        let gateway_mac = network.gateway_mac;
        let added = self
            .switch
            .add_port(port, net, PortRole::Gateway)
            .and_then(|()| self.switch.pin_mac(now, port, gateway_mac))
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                router
                    .add_network(net, network)
                    .map_err(anyhow::Error::from)
            });
        if let Err(e) = added {
            // Leave nothing behind: the command failed as a whole.
            if let Some(up) = self.packet_uplink.as_deref_mut() {
                up.remove_network(net);
            }
            let _ = self.switch.remove_port(port);
            let _ = self.switch.remove_network(net);
            return Err(e);
        }
        self.gateways.insert(net, port);
        Ok(())
    }

    fn remove_network(&mut self, now: Instant, net: NetworkId) -> anyhow::Result<()> {
        if let Some(port) = self.gateway_of(net) {
            self.switch.remove_port(port)?;
            if let Err(e) = self.switch.remove_network(net) {
                // Still in use by containers: put the gateway back, its MAC pinned.
                let _ = self.switch.add_port(port, net, PortRole::Gateway);
                if let Some(network) = self.router.as_ref().and_then(|r| r.network(net)) {
                    let _ = self.switch.pin_mac(now, port, network.gateway_mac);
                }
                return Err(e.into());
            }
            self.gateways.remove(&net);
            if let Some(router) = self.router.as_mut() {
                let _ = router.remove_network(net);
            }
            if let Some(up) = self.packet_uplink.as_deref_mut() {
                up.remove_network(net);
            }
            return Ok(());
        }
        Ok(self.switch.remove_network(net)?)
    }

    fn set_packet_uplink<B>(
        &mut self,
        config: PacketUplinkConfig,
        io: PortIo,
        backend: &mut B,
    ) -> anyhow::Result<()>
    where
        B: PortBackend<Port = H>,
    {
        if self.router.is_some() || self.packet_uplink.is_some() {
            return Err(anyhow!(
                "the packet uplink must be set once, before any network"
            ));
        }
        if self.ports.contains_key(&config.port) {
            return Err(anyhow!("port {:?} already exists", config.port));
        }
        self.router_config.uplink_mtu = config.mtu;
        let port = config.port;
        let io = backend.attach(port, io)?;
        self.ports.insert(port, PortEntry::new(io));
        self.packet_uplink = Some(Box::new(PacketUplink::new(config)));
        self.engine_flows = Some(Box::new(return_path::EngineFlows::new()));
        Ok(())
    }

    fn add_port<B>(
        &mut self,
        now: Instant,
        (port, net, role): (PortId, NetworkId, PortRole),
        io: PortIo,
        guard: Option<Box<PortGuard>>,
        backend: &mut B,
    ) -> anyhow::Result<()>
    where
        B: PortBackend<Port = H>,
    {
        if self.ports.contains_key(&port) {
            return Err(anyhow!("port {port:?} already exists"));
        }
        // The switch validates (unknown network, duplicate port, a MAC pinned
        // elsewhere) before the backend allocates anything; a failed attach is rolled
        // back. The guard is in place before the first frame is read.
        self.switch.add_port(port, net, role)?;
        if let Some(guard) = guard
            && let Err(e) = self.switch.set_port_guard(now, port, Some(*guard))
        {
            let _ = self.switch.remove_port(port);
            return Err(e.into());
        }
        // Its TCP segments from the uplink may be longer than the MTU (TSO).
        let tso = matches!(io, PortIo::TapOffload { .. } | PortIo::PacketOffload { .. });
        match backend.attach(port, io) {
            Ok(io) => {
                if tso && let Some(router) = self.router.as_mut() {
                    router.set_tcp_segmentation_offload(net, true);
                }
                self.ports.insert(port, PortEntry::new(io));
                Ok(())
            }
            Err(e) => {
                let _ = self.switch.remove_port(port);
                Err(e)
            }
        }
    }

    /// Counters of every attached port, sorted by port.
    pub(crate) fn stats(&self) -> Vec<PortStats> {
        let mut out: Vec<PortStats> = self
            .ports
            .iter()
            .map(|(&id, entry)| {
                let switch = self.switch.port_counters(id).unwrap_or_default();
                PortStats {
                    port: Some(id),
                    switch,
                    rx_errors: entry.rx_errors,
                    tx_errors: entry.tx_errors,
                    drops: super::drops_of(&switch),
                }
            })
            .collect();
        out.sort_by_key(|s| s.port);
        out
    }
}
