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
use tapnet_switch::{
    MacEntry, NetworkConfig, NetworkId, PortId, PortRole, Switch, SwitchConfig, Verdict,
};
use tapnet_wire::Instant;

use super::{PortIo, PortStats};

/// Where a command's answer goes.
pub(crate) type Reply<T> = crossbeam_channel::Sender<anyhow::Result<T>>;

/// A control-plane request, executed on the datapath thread.
#[derive(Debug)]
pub(crate) enum Command {
    AddNetwork(NetworkId, NetworkConfig, Reply<()>),
    RemoveNetwork(NetworkId, Reply<()>),
    AddPort {
        port: PortId,
        net: NetworkId,
        role: PortRole,
        io: PortIo,
        reply: Reply<()>,
    },
    /// Answered once the backend no longer uses the fd (possibly a few batches later).
    RemovePort(PortId, Reply<OwnedFd>),
    Macs(NetworkId, Reply<Vec<MacEntry>>),
    Stats(Reply<Vec<PortStats>>),
    Shutdown(Reply<()>),
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
}

impl<H> Pipeline<H> {
    pub(crate) fn new(config: SwitchConfig) -> Self {
        // A per-process random seed for the MAC table's hash, so that containers cannot
        // pick MAC addresses that collide in it (std seeds `RandomState` from the OS).
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        Self {
            switch: Switch::with_hash_seed(config, seed),
            ports: PortMap::default(),
        }
    }

    /// Runs one received frame through the switch and fills `egress` with the ports
    /// to send it to (every one of them attached here). Allocation-free.
    pub(crate) fn handle_rx(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        egress: &mut Egress,
    ) {
        egress.ports.clear();
        match self.switch.handle_frame(now, ingress, frame) {
            Verdict::Forward(port) => {
                if self.ports.contains_key(&port) {
                    egress.ports.push(port);
                }
            }
            Verdict::Flood(ports) => {
                let known = &self.ports;
                egress
                    .ports
                    .extend(ports.iter().copied().filter(|p| known.contains_key(p)));
            }
            Verdict::Drop(reason) => {
                tracing::trace!(?ingress, ?reason, "drop");
            }
        }
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
        self.switch.poll_timeout()
    }

    /// Runs the switch's timers if due. Call once per batch, after the frames.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.switch.poll_timeout().is_some_and(|t| t <= now) {
            self.switch.handle_timeout(now);
        }
    }

    /// Executes one control command.
    pub(crate) fn handle_command<B>(&mut self, now: Instant, cmd: Command, backend: &mut B) -> Flow
    where
        B: PortBackend<Port = H>,
    {
        match cmd {
            Command::AddNetwork(net, config, reply) => {
                let _ = reply.send(self.switch.add_network(net, config).map_err(Into::into));
            }
            Command::RemoveNetwork(net, reply) => {
                let _ = reply.send(self.switch.remove_network(net).map_err(Into::into));
            }
            Command::AddPort {
                port,
                net,
                role,
                io,
                reply,
            } => {
                let _ = reply.send(self.add_port(port, net, role, io, backend));
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

    fn add_port<B>(
        &mut self,
        port: PortId,
        net: NetworkId,
        role: PortRole,
        io: PortIo,
        backend: &mut B,
    ) -> anyhow::Result<()>
    where
        B: PortBackend<Port = H>,
    {
        if self.ports.contains_key(&port) {
            return Err(anyhow!("port {port:?} already exists"));
        }
        // The switch validates (unknown network, duplicate port) before the backend
        // allocates anything; a failed attach is rolled back.
        self.switch.add_port(port, net, role)?;
        match backend.attach(port, io) {
            Ok(io) => {
                self.ports.insert(
                    port,
                    PortEntry {
                        io,
                        rx_errors: 0,
                        tx_errors: 0,
                        tx_error_logged: false,
                    },
                );
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
