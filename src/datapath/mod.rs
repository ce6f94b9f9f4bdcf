//! The datapath: one thread that moves batches of frames between the ports and the
//! sans-IO switch, on io_uring or, where that is unavailable, epoll.
//!
//! Layers:
//! - [`pipeline`]: the switch, the port table, shell-side counters, command handling.
//!   Backend-independent and `Send`; one per thread.
//! - [`uring`] / [`epoll`]: the I/O mechanics of one pipeline thread.
//! - [`Datapath`] (here): the handle the control plane holds. Every call is a command
//!   sent over a channel to the datapath thread, plus a wake-up through an eventfd the
//!   thread always listens to, and a reply channel.
//!
//! A [`Datapath`] is one pipeline thread. The rootless stack runs one per queue of a
//! multi-queue TAP (`TAPNET_PIPELINES`): each owns its ring (or epoll set), its
//! queue's fd, its own switch, router and host-socket engine, and no state is shared
//! on the per-packet path. Frames that feed the router's state (ARP, NDP, DHCP) are
//! copied to the sibling pipelines, and a secondary pipeline hands guest packets of
//! flows its engine does not hold to the first ([`Siblings`]). The daemon runs one
//! pipeline: sharding its bridge, NAT and packet uplink needs flow placement the
//! kernel's keyed fanout hash does not give (see the README).

mod epoll;
pub(crate) mod offload;
mod pipeline;
mod spin;
mod uring;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::engine::PacketLink;
use anyhow::{Context, anyhow};
use crossbeam_channel::{Receiver, Sender};
pub(crate) use offload::HEADROOM as VNET_HDR_LEN;
pub(crate) use pipeline::{Gateway, PacketUplinkConfig, PacketUplinkStats, Siblings, zone_of};
use rustix::event::{EventfdFlags, eventfd};
use tapnet_switch::{
    DropReason, MacEntry, NetworkConfig, NetworkId, PortCounters, PortGuard, PortId, PortRole,
    SwitchConfig,
};

use pipeline::{Command, Reply};

/// Which I/O backend to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum BackendChoice {
    /// io_uring if the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring, or fail.
    Uring,
    /// epoll.
    Epoll,
}

/// The backend the rootless stack asks for: `TAPNET_BACKEND=epoll|uring`, else
/// [`BackendChoice::Auto`].
pub(crate) fn backend_from_env() -> BackendChoice {
    crate::knobs::Knobs::get().backend
}

/// Whether ports use checksum and segmentation offload (TAPs opened with
/// `IFF_VNET_HDR`, AF_PACKET sockets with `PACKET_VNET_HDR_SZ`): yes, unless the
/// environment says `TAPNET_OFFLOAD=0` (for comparisons, or a kernel that fails).
pub(crate) fn offload_enabled() -> bool {
    crate::knobs::Knobs::get().offload
}

/// Whether AF_PACKET ports (containers' veths, the packet uplink) use a
/// `virtio_net_hdr` too: with [`offload_enabled`], unless `TAPNET_OFFLOAD=tap` keeps
/// offload to TAPs (TSO frames to the others are then cut by tapnet).
pub(crate) fn packet_offload_enabled() -> bool {
    crate::knobs::Knobs::get().packet_offload
}

/// A port's file descriptor (non-blocking; one read or write is one whole frame).
#[derive(Debug)]
pub(crate) enum PortIo {
    /// A TAP device opened with IFF_TAP | IFF_NO_PI.
    Tap(OwnedFd),
    /// An AF_PACKET socket bound to one interface, ignoring outgoing packets.
    Packet(OwnedFd),
    /// A TAP opened with IFF_VNET_HDR and checksum/segmentation offload
    /// (`Tap::enable_offload`), on a network of MTU `mtu` (see [`offload`]).
    TapOffload { fd: OwnedFd, mtu: u32 },
    /// An AF_PACKET socket as [`Self::Packet`], with a `virtio_net_hdr` before every
    /// frame (`PACKET_VNET_HDR_SZ`): frames come and go as the kernel holds them, TSO
    /// with partial checksums included. `mtu`: the interface's.
    PacketOffload { fd: OwnedFd, mtu: u32 },
}

impl PortIo {
    fn into_fd(self) -> OwnedFd {
        match self {
            Self::Tap(fd)
            | Self::Packet(fd)
            | Self::TapOffload { fd, .. }
            | Self::PacketOffload { fd, .. } => fd,
        }
    }
}

/// Counters of one port: the switch's, plus what only the shell sees.
#[derive(Clone, Debug, Default)]
pub(crate) struct PortStats {
    pub(crate) port: Option<PortId>,
    pub(crate) switch: PortCounters,
    /// Reads that failed (other than EAGAIN).
    pub(crate) rx_errors: u64,
    /// Writes that failed or could not be queued.
    pub(crate) tx_errors: u64,
    /// Drops on ingress at this port, by reason.
    pub(crate) drops: Vec<(DropReason, u64)>,
}

/// The non-zero per-reason ingress drops of a port.
fn drops_of(counters: &PortCounters) -> Vec<(DropReason, u64)> {
    counters.drops_by_reason().filter(|&(_, n)| n > 0).collect()
}

/// Frames in flight (reads queued) per port on io_uring; each holds one receive buffer.
pub(crate) const RX_SLOTS_PER_PORT: usize = 8;
/// Receive buffer size: a 65535-byte payload plus Ethernet and VLAN headers, rounded up.
pub(crate) const RX_BUF_LEN: usize = 65536 + 128;
/// Frames read from one port per epoll round before moving on (fairness).
pub(crate) const EPOLL_RX_BUDGET: usize = 64;

/// Knobs for tests.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tuning {
    /// io_uring: read with `RWF_NOWAIT`, so idle ports complete reads with `-EAGAIN`
    /// and go through the poll-then-retry path (which older kernels take for
    /// O_NONBLOCK fds).
    pub(crate) uring_rx_nowait: bool,
}

/// Another pipeline's command channel, to hand it frames it must see too (the
/// pipelines of a multi-queue TAP's queues).
#[derive(Clone, Debug)]
pub(crate) struct SiblingLink {
    commands: Sender<Command>,
    wake: Arc<OwnedFd>,
}

impl SiblingLink {
    /// Queues a copy of `frame`, read from `port`, for the sibling. An allocation, for
    /// the rare frames that feed the router's state only.
    fn share(&self, port: PortId, frame: &[u8], offload: Option<offload::Offload>) {
        let shared = Command::SharedFrame(port, frame.to_vec(), offload);
        if self.commands.send(shared).is_ok() {
            wake(self.wake.as_fd());
        }
    }
}

/// Handle to the running datapath thread. Every call is a round trip to that thread.
#[derive(Debug)]
pub(crate) struct Datapath {
    commands: Sender<Command>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    backend: &'static str,
}

impl Datapath {
    /// Starts the datapath thread without an uplink; logs which backend it uses.
    #[cfg(test)]
    pub(crate) fn spawn(choice: BackendChoice, config: SwitchConfig) -> anyhow::Result<Self> {
        Self::spawn_tuned(choice, config, Tuning::default(), None, None)
    }

    /// Starts the datapath thread with an uplink: packets the router routes out go to
    /// it, and what it sends back is routed into the networks.
    pub(crate) fn spawn_with_uplink(
        choice: BackendChoice,
        config: SwitchConfig,
        uplink: PacketLink,
    ) -> anyhow::Result<Self> {
        Self::spawn_tuned(choice, config, Tuning::default(), Some(uplink), None)
    }

    /// Like [`Self::spawn_with_uplink`], with the host-socket engine run on the
    /// datapath thread ([`crate::engine::Engine::spawn_inline`]).
    pub(crate) fn spawn_with_inline_engine(
        choice: BackendChoice,
        config: SwitchConfig,
        uplink: PacketLink,
        engine: crate::engine::InlineEngine,
    ) -> anyhow::Result<Self> {
        Self::spawn_tuned(
            choice,
            config,
            Tuning::default(),
            Some(uplink),
            Some(engine),
        )
    }

    pub(crate) fn spawn_tuned(
        choice: BackendChoice,
        config: SwitchConfig,
        tuning: Tuning,
        uplink: Option<PacketLink>,
        engine: Option<crate::engine::InlineEngine>,
    ) -> anyhow::Result<Self> {
        let wake = Arc::new(
            eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .context("create the datapath's eventfd")?,
        );
        let (commands, rx) = crossbeam_channel::unbounded();
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let thread_wake = Arc::clone(&wake);
        let thread = std::thread::Builder::new()
            .name("tapnet-datapath".into())
            .spawn(move || {
                run(
                    choice,
                    config,
                    tuning,
                    (uplink, engine),
                    &thread_wake,
                    &rx,
                    &started_tx,
                )
            })
            .context("spawn the datapath thread")?;
        match started_rx.recv() {
            Ok(Ok(backend)) => Ok(Self {
                commands,
                wake,
                thread: Some(thread),
                backend,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(anyhow!("the datapath thread exited during startup"))
            }
        }
    }

    /// "io_uring" or "epoll".
    pub(crate) fn backend_name(&self) -> &'static str {
        self.backend
    }

    /// Sends a command built around a fresh reply channel and waits for the answer.
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.commands
            .send(make(tx))
            .map_err(|_| anyhow!("the datapath thread has exited"))?;
        wake(self.wake.as_fd());
        rx.recv()
            .map_err(|_| anyhow!("the datapath thread exited without answering"))?
    }

    /// Adds a network without a gateway (a bare L2 segment).
    #[cfg(test)]
    pub(crate) fn add_network(&self, net: NetworkId, config: NetworkConfig) -> anyhow::Result<()> {
        self.call(|r| Command::AddNetwork(net, config, None, r))
    }

    /// Adds a network whose gateway the router serves, behind the virtual port
    /// `gateway.port`.
    pub(crate) fn add_routed_network(
        &self,
        net: NetworkId,
        config: NetworkConfig,
        gateway: Gateway,
    ) -> anyhow::Result<()> {
        self.call(|r| Command::AddNetwork(net, config, Some(Box::new(gateway)), r))
    }

    pub(crate) fn remove_network(&self, net: NetworkId) -> anyhow::Result<()> {
        self.call(|r| Command::RemoveNetwork(net, r))
    }

    /// Adds a port without a source guard.
    #[cfg(test)]
    pub(crate) fn add_port(
        &self,
        port: PortId,
        net: NetworkId,
        role: PortRole,
        io: PortIo,
    ) -> anyhow::Result<()> {
        self.add_guarded_port(port, net, role, io, None)
    }

    /// Adds a port that may send only what `guard` allows (`None`: anything), the
    /// guard in place before the port is read; it goes with the port.
    pub(crate) fn add_guarded_port(
        &self,
        port: PortId,
        net: NetworkId,
        role: PortRole,
        io: PortIo,
        guard: Option<PortGuard>,
    ) -> anyhow::Result<()> {
        self.call(|reply| Command::AddPort {
            port,
            net,
            role,
            io,
            guard: guard.map(Box::new),
            reply,
        })
    }

    /// Returns once the datapath no longer touches the port's fd; the fd is returned.
    pub(crate) fn remove_port(&self, port: PortId) -> anyhow::Result<OwnedFd> {
        self.call(|r| Command::RemovePort(port, r))
    }

    pub(crate) fn macs(&self, net: NetworkId) -> anyhow::Result<Vec<MacEntry>> {
        self.call(|r| Command::Macs(net, r))
    }

    /// Binds (or, with `None`, unbinds) a MAC address to an address in the DHCP server
    /// of a network.
    pub(crate) fn static_lease(
        &self,
        net: NetworkId,
        mac: tapnet_wire::MacAddr,
        ip: Option<std::net::Ipv4Addr>,
    ) -> anyhow::Result<()> {
        self.call(|r| Command::StaticLease(net, mac, ip, r))
    }

    /// Counters of every attached port, sorted by port.
    pub(crate) fn stats(&self) -> anyhow::Result<Vec<PortStats>> {
        self.call(Command::Stats)
    }

    /// Makes the AF_PACKET socket `io` the packet uplink; before any network.
    pub(crate) fn set_packet_uplink(
        &self,
        config: PacketUplinkConfig,
        io: PortIo,
    ) -> anyhow::Result<()> {
        self.call(|r| Command::SetPacketUplink(Box::new(config), io, r))
    }

    /// A link through which sibling pipelines hand this one frames.
    pub(crate) fn sibling_link(&self) -> SiblingLink {
        SiblingLink {
            commands: self.commands.clone(),
            wake: Arc::clone(&self.wake),
        }
    }

    /// Tells the pipeline about the pipelines of the other queues of its TAP.
    pub(crate) fn set_siblings(&self, siblings: Siblings) -> anyhow::Result<()> {
        self.call(|r| Command::SetSiblings(siblings, r))
    }

    /// Replaces the guest UDP ports published through the primary pipeline.
    pub(crate) fn set_primary_udp_ports(&self, ports: Vec<u16>) -> anyhow::Result<()> {
        self.call(|r| Command::SetPrimaryUdpPorts(ports, r))
    }

    /// DNAT of a published port through the packet uplink.
    pub(crate) fn publish(&self, rule: tapnet_nat::PublishRule) -> anyhow::Result<()> {
        self.call(|r| Command::Publish(rule, r))
    }

    pub(crate) fn unpublish(&self, rule: tapnet_nat::PublishRule) -> anyhow::Result<()> {
        self.call(|r| Command::Unpublish(rule, r))
    }

    /// The flows tracked by the packet uplink's NAT.
    pub(crate) fn nat_flows(&self) -> anyhow::Result<Vec<tapnet_nat::EntryInfo>> {
        self.call(Command::NatFlows)
    }

    /// The packet uplink's counters, if there is one.
    pub(crate) fn uplink_stats(&self) -> anyhow::Result<Option<PacketUplinkStats>> {
        self.call(Command::UplinkStats)
    }

    /// Stops the thread; every port fd is closed when this returns.
    pub(crate) fn shutdown(mut self) -> anyhow::Result<()> {
        let res = self.call(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow!("the datapath thread panicked"))?;
        }
        res
    }
}

impl Drop for Datapath {
    /// Dropping without `shutdown` still stops the thread (and closes the port fds).
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let (tx, _rx) = crossbeam_channel::bounded(1);
            if self.commands.send(Command::Shutdown(tx)).is_ok() {
                wake(self.wake.as_fd());
                let _ = t.join();
            }
        }
    }
}

/// Makes the eventfd readable (the datapath thread polls it).
fn wake(fd: std::os::fd::BorrowedFd<'_>) {
    // EAGAIN means the counter is saturated: the thread is already due to wake.
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Reads the eventfd's counter to zero (it is non-blocking).
pub(crate) fn drain_wake(fd: std::os::fd::BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}

/// The datapath thread: picks the backend, reports it, runs until shutdown.
fn run(
    choice: BackendChoice,
    config: SwitchConfig,
    tuning: Tuning,
    (mut uplink, mut engine): (Option<PacketLink>, Option<crate::engine::InlineEngine>),
    wake: &Arc<OwnedFd>,
    commands: &Receiver<Command>,
    started: &Sender<anyhow::Result<&'static str>>,
) {
    let wake_fd = match wake.try_clone() {
        Ok(fd) => fd,
        Err(e) => {
            let _ = started.send(Err(anyhow!("duplicate the datapath's eventfd: {e}")));
            return;
        }
    };
    if choice != BackendChoice::Epoll {
        // The ring is created on this thread: with IORING_SETUP_SINGLE_ISSUER only the
        // creating task may submit.
        match uring::UringLoop::new(config.clone(), wake_fd, tuning) {
            Ok(mut lp) => {
                if let Some(link) = uplink.take()
                    && let Err(e) = lp.set_uplink(link, engine.take())
                {
                    let _ = started.send(Err(anyhow!("connect the uplink to io_uring: {e}")));
                    return;
                }
                tracing::info!("datapath: io_uring");
                let _ = started.send(Ok("io_uring"));
                lp.run(commands);
                return;
            }
            Err(e) if choice == BackendChoice::Uring => {
                let _ = started.send(Err(anyhow!("io_uring unavailable: {e}")));
                return;
            }
            Err(e) => {
                tracing::info!("datapath: epoll (io_uring unavailable: {e})");
            }
        }
    } else {
        tracing::info!("datapath: epoll (chosen)");
    }
    let wake_fd = match wake.try_clone() {
        Ok(fd) => fd,
        Err(e) => {
            let _ = started.send(Err(anyhow!("duplicate the datapath's eventfd: {e}")));
            return;
        }
    };
    match epoll::EpollLoop::new(config, wake_fd, uplink, engine) {
        Ok(mut lp) => {
            let _ = started.send(Ok("epoll"));
            lp.run(commands);
        }
        Err(e) => {
            let _ = started.send(Err(e.context("set up the epoll datapath")));
        }
    }
}

#[cfg(test)]
mod tests;
