//! The io_uring backend: I/O mechanics of one pipeline thread.
//!
//! Each port keeps [`RX_SLOTS_PER_PORT`] reads in flight, each into its own receive
//! buffer (allocated once at `add_port`). A completed read goes through the switch;
//! the frame is then written to every egress port straight from the receive buffer
//! (several writes share it; no copy), and the read is resubmitted once the last of
//! those writes has completed. Writes carry `RWF_NOWAIT`, so a full egress queue fails
//! at once with `-EAGAIN` (dropped, counted in `tx_errors`) instead of holding the
//! ingress buffer.
//!
//! One batch = one `io_uring_enter`: submit everything queued, wait for at least one
//! completion (or the switch's next timer), read the clock once, drain every CQE.
//!
//! EAGAIN on reads: on Linux 6.18 an `IORING_OP_READ` on an idle O_NONBLOCK TAP,
//! AF_PACKET or AF_UNIX fd does not fail; io_uring arms its internal poll and
//! completes the read when a frame arrives. Older kernels (and `RWF_NOWAIT` reads,
//! which the tests use to force this path) complete with `-EAGAIN` instead: the slot
//! is parked and one `POLL_ADD(POLLIN)` per port re-arms every parked slot when the
//! port becomes readable.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use crossbeam_channel::Receiver;
use tapnet_switch::{PortId, SwitchConfig};
use tapnet_wire::Instant;

use super::offload::{self, Framing, HEADROOM, Offload};
use super::pipeline::{Command, DirectWrite, Egress, Flow, Pipeline, PortBackend, Reply};
use super::spin::AdaptiveSpin;
use super::{PortIo, RX_BUF_LEN, RX_SLOTS_PER_PORT, Tuning};
use crate::engine::PacketLink;
use crate::sys::uring::{
    BufId, Completion, CompletionKind, FileId, Ring, SetupMode, monotonic_now,
};

/// Submission queue entries (completion queue: 8x that).
const RING_ENTRIES: u32 = 512;

/// What a tag (the `u64` carried by each operation) means: bits 61-63.
const KIND_READ: u64 = 0;
const KIND_WRITE: u64 = 1;
const KIND_POLL: u64 = 2;
const KIND_WAKE: u64 = 3;
const KIND_UPLINK: u64 = 4;

/// A tag: kind, port generation (so completions for a removed port, or an earlier
/// port with the same id, are recognised), slot, port id.
fn tag(kind: u64, port: PortId, gen_: u16, slot: u8) -> u64 {
    (kind << 61) | (u64::from(gen_) << 40) | (u64::from(slot) << 32) | u64::from(port.0)
}

fn untag(tag: u64) -> (u64, PortId, u16, u8) {
    let port = PortId(u32::try_from(tag & 0xffff_ffff).unwrap_or(u32::MAX));
    let slot = u8::try_from((tag >> 32) & 0xff).unwrap_or(u8::MAX);
    let gen_ = u16::try_from((tag >> 40) & 0xffff).unwrap_or(u16::MAX);
    (tag >> 61, port, gen_, slot)
}

/// A port's io_uring state.
#[derive(Debug)]
pub(crate) struct UringPort {
    file: FileId,
    gen_: u16,
    /// Receive buffers, one per slot.
    slots: Vec<BufId>,
    /// Slots whose read must be (re)submitted: after `-EAGAIN` (waiting for the poll)
    /// or when the queue was full.
    parked: u32,
    poll_armed: bool,
    /// A read failed for good: no more reads.
    stopped: bool,
    /// Writes use RWF_NOWAIT (cleared if the file rejects it with EOPNOTSUPP).
    tx_nowait: bool,
    /// Plain frames or a virtio_net_hdr before each.
    framing: Framing,
}

/// The I/O side of the loop, separate from the pipeline so both can be borrowed.
#[derive(Debug)]
struct Io {
    ring: Ring,
    tuning: Tuning,
    next_gen: u16,
    /// Ports being removed: answered once the ring gives their fd back.
    closing: Vec<(FileId, Reply<OwnedFd>)>,
    /// Ports with parked slots to resubmit at the next batch.
    retry: Vec<PortId>,
}

impl PortBackend for Io {
    type Port = UringPort;

    fn attach(&mut self, port: PortId, io: PortIo) -> anyhow::Result<UringPort> {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen_ = self.next_gen;
        let framing = Framing::of(&io);
        let file = self.ring.add_file(io.into_fd());
        let slots = (0..RX_SLOTS_PER_PORT)
            .map(|s| {
                self.ring.alloc_buf(
                    HEADROOM + RX_BUF_LEN,
                    tag(KIND_READ, port, gen_, slot_u8(s)),
                )
            })
            .collect();
        // Every slot starts parked; the retry pass submits the reads.
        let mut state = UringPort {
            file,
            gen_,
            slots,
            parked: all_slots(),
            poll_armed: false,
            stopped: false,
            tx_nowait: true,
            framing,
        };
        self.rearm(port, &mut state);
        Ok(state)
    }

    fn detach(&mut self, _port: PortId, state: UringPort, reply: Reply<OwnedFd>) {
        self.ring.close_file(state.file);
        for buf in state.slots {
            self.ring.free_buf(buf);
        }
        self.closing.push((state.file, reply));
        self.finish_closing();
    }
}

fn slot_u8(slot: usize) -> u8 {
    u8::try_from(slot).expect("RX_SLOTS_PER_PORT fits u8")
}

fn all_slots() -> u32 {
    (1u32 << RX_SLOTS_PER_PORT) - 1
}

impl Io {
    /// Submits reads for the port's parked slots, unless a poll is pending (the poll's
    /// completion will do it) or the port has stopped.
    fn rearm(&mut self, port: PortId, state: &mut UringPort) {
        if state.stopped || state.poll_armed {
            return;
        }
        while state.parked != 0 {
            let slot = state.parked.trailing_zeros() as usize;
            let t = tag(KIND_READ, port, state.gen_, slot_u8(slot));
            if self
                .ring
                .push_read_at(
                    state.file,
                    state.slots[slot],
                    state.framing.read_offset(),
                    t,
                    self.tuning.uring_rx_nowait,
                )
                .is_err()
            {
                // Queue full: try again next batch.
                self.retry.push(port);
                return;
            }
            state.parked &= !(1 << slot);
        }
    }

    /// Parks a slot after `-EAGAIN` and makes sure a readiness poll is pending.
    fn park(&mut self, port: PortId, state: &mut UringPort, slot: u8) {
        state.parked |= 1 << slot;
        if !state.poll_armed && !state.stopped {
            if self
                .ring
                .push_poll_in(state.file, tag(KIND_POLL, port, state.gen_, 0))
                .is_ok()
            {
                state.poll_armed = true;
            } else {
                self.retry.push(port);
            }
        }
    }

    /// Answers removals whose fd the ring has given back.
    fn finish_closing(&mut self) {
        let ring = &mut self.ring;
        self.closing
            .retain(|(file, reply)| match ring.take_file(*file) {
                Some(fd) => {
                    let _ = reply.send(Ok(fd));
                    false
                }
                None => true,
            });
    }
}

impl DirectWrite<UringPort> for Io {
    fn write_now(
        &self,
        port: &UringPort,
        frame: &[u8],
        offload: Option<Offload>,
    ) -> Result<(), i32> {
        let fd = self.ring.file_fd(port.file).ok_or(libc::EBADF)?;
        offload::write_frame(fd, port.framing, frame, offload)
    }

    fn takes_offload(&self, port: &UringPort) -> bool {
        port.framing.takes_offload()
    }
}

/// One io_uring pipeline thread.
#[derive(Debug)]
pub(crate) struct UringLoop {
    pipeline: Pipeline<UringPort>,
    io: Io,
    wake: FileId,
    /// The uplink's readiness eventfd, polled like `wake`.
    uplink: Option<FileId>,
    egress: Egress,
    completions: Vec<Completion>,
    shutdown: Option<Reply<()>>,
}

impl UringLoop {
    /// Creates the ring (on the calling thread, which must be the one to run it).
    pub(crate) fn new(config: SwitchConfig, wake_fd: OwnedFd, tuning: Tuning) -> io::Result<Self> {
        let mut ring = Ring::new(RING_ENTRIES)?;
        let pipeline = Pipeline::new(config);
        if ring.setup_mode() != SetupMode::DeferTaskrun {
            tracing::debug!(mode = ?ring.setup_mode(), "io_uring: DEFER_TASKRUN unavailable");
        }
        let wake = ring.add_file(wake_fd);
        ring.push_poll_in(wake, tag(KIND_WAKE, PortId(0), 0, 0))
            .map_err(io::Error::other)?;
        Ok(Self {
            pipeline,
            uplink: None,
            io: Io {
                ring,
                tuning,
                next_gen: 0,
                closing: Vec::new(),
                retry: Vec::new(),
            },
            wake,
            egress: Egress::default(),
            completions: Vec::new(),
            shutdown: None,
        })
    }

    /// Connects the uplink and starts polling its readiness eventfd.
    pub(crate) fn set_uplink(
        &mut self,
        link: PacketLink,
        engine: Option<crate::engine::InlineEngine>,
    ) -> io::Result<()> {
        self.pipeline.set_uplink(link);
        if let Some(engine) = engine {
            self.pipeline.set_inline_engine(engine);
        }
        let fd = self
            .pipeline
            .uplink_fd()
            .ok_or_else(|| io::Error::other("no uplink fd"))?
            .try_clone_to_owned()?;
        let file = self.io.ring.add_file(fd);
        self.io
            .ring
            .push_poll_in(file, tag(KIND_UPLINK, PortId(0), 0, 0))
            .map_err(io::Error::other)?;
        self.uplink = Some(file);
        Ok(())
    }

    pub(crate) fn run(&mut self, commands: &Receiver<Command>) {
        let mut now = monotonic_now();
        let mut spin = AdaptiveSpin::from_env(now);
        self.handle_commands(now, commands);
        while self.shutdown.is_none() {
            self.retry_parked();
            // Right after traffic, poll without sleeping for a short, adaptive window:
            // a packet that arrives then costs no wake-up of this thread (see `spin`).
            let polling = spin.keep_polling(now) || !self.io.retry.is_empty();
            let entered = if polling {
                self.io.ring.submit_and_poll()
            } else {
                let timeout = self
                    .pipeline
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(now));
                self.io.ring.submit_and_wait(timeout)
            };
            if let Err(e) = entered {
                tracing::error!("datapath: io_uring_enter failed: {e}; stopping");
                break;
            }
            now = monotonic_now();
            self.io.ring.reap(&mut self.completions);
            if !self.completions.is_empty() {
                spin.events_at(now, !polling);
            }
            let completions = std::mem::take(&mut self.completions);
            for c in &completions {
                self.handle_completion(now, c, commands);
            }
            self.completions = completions;
            self.pipeline.handle_timeout(now, &self.io);
            self.io.finish_closing();
        }
        self.teardown();
    }

    fn handle_commands(&mut self, now: Instant, commands: &Receiver<Command>) {
        while self.shutdown.is_none() {
            let Ok(cmd) = commands.try_recv() else { break };
            if let Flow::Shutdown(reply) = self.pipeline.handle_command(now, cmd, &mut self.io) {
                self.shutdown = Some(reply);
            }
        }
    }

    fn retry_parked(&mut self) {
        let mut retry = std::mem::take(&mut self.io.retry);
        retry.sort_unstable();
        retry.dedup();
        for port in retry.drain(..) {
            if let Some(entry) = self.pipeline.port_mut(port) {
                let state = &mut entry.io;
                if state.parked != 0 && !state.poll_armed {
                    self.io.rearm(port, state);
                }
            }
        }
        // Keep the allocation unless rearm queued new retries meanwhile.
        if self.io.retry.is_empty() {
            self.io.retry = retry;
        }
    }

    fn handle_completion(&mut self, now: Instant, c: &Completion, commands: &Receiver<Command>) {
        let (kind, port, gen_, slot) = untag(c.tag);
        match (kind, c.kind) {
            (KIND_WAKE, _) => {
                if let Some(fd) = self.io.ring.file_fd(self.wake) {
                    super::drain_wake(fd);
                }
                self.handle_commands(now, commands);
                if let Err(e) = self.io.ring.push_poll_in(self.wake, c.tag) {
                    tracing::error!("datapath: cannot re-arm the wake-up poll: {e}");
                }
            }
            (KIND_UPLINK, _) => {
                self.pipeline.uplink_ready(now, &self.io);
                if let Some(file) = self.uplink
                    && let Err(e) = self.io.ring.push_poll_in(file, c.tag)
                {
                    tracing::error!("datapath: cannot re-arm the uplink poll: {e}");
                }
            }
            (KIND_READ, CompletionKind::Read { buf }) => {
                self.handle_read(now, port, gen_, slot, buf, c.result)
            }
            (
                KIND_WRITE,
                CompletionKind::Write {
                    buf_idle, owner, ..
                },
            ) => {
                if c.result < 0 && self.pipeline.port(port).is_some_and(|e| e.io.gen_ == gen_) {
                    if c.result == -libc::EOPNOTSUPP
                        && let Some(e) = self.pipeline.port_mut(port)
                    {
                        // The file cannot do RWF_NOWAIT writes; write plainly from now on.
                        e.io.tx_nowait = false;
                    }
                    self.pipeline.count_tx_error(port, -c.result);
                }
                if buf_idle {
                    let (_, owner_port, owner_gen, owner_slot) = untag(owner);
                    self.rx_slot_free(owner_port, owner_gen, owner_slot);
                }
            }
            (KIND_POLL, CompletionKind::PollIn) => {
                let Some(entry) = self.pipeline.port_mut(port) else {
                    return;
                };
                if entry.io.gen_ != gen_ {
                    return;
                }
                entry.io.poll_armed = false;
                if entry.io.stopped {
                    return;
                }
                if c.result < 0 && c.result != -libc::EINTR && c.result != -libc::ECANCELED {
                    entry.io.stopped = true;
                    self.pipeline.count_rx_error(port, -c.result);
                    return;
                }
                // Readable (or an error/hang-up, which the reads will report).
                let state = &mut entry.io;
                self.io.rearm(port, state);
            }
            _ => tracing::error!(tag = c.tag, "datapath: completion of unexpected kind"),
        }
    }

    /// A read into `buf` (slot `slot` of `port`) finished with `result`.
    fn handle_read(
        &mut self,
        now: Instant,
        port: PortId,
        gen_: u16,
        slot: u8,
        buf: BufId,
        result: i32,
    ) {
        let Some(entry) = self.pipeline.port_mut(port) else {
            return;
        };
        if entry.io.gen_ != gen_ {
            return; // a removed port's buffer: the ring frees it
        }
        if entry.io.stopped {
            // The other in-flight reads of a failed port: count and log it once.
            return;
        }
        if result < 0 {
            match -result {
                libc::EAGAIN | libc::EINTR | libc::ECANCELED => {
                    let state = &mut entry.io;
                    self.io.park(port, state, slot);
                }
                errno => {
                    entry.io.stopped = true;
                    self.pipeline.count_rx_error(port, errno);
                }
            }
            return;
        }
        if result == 0 {
            // End of file (a socket whose peer is gone); a TAP never reads 0.
            entry.io.stopped = true;
            self.pipeline.count_rx_error(port, 0);
            return;
        }
        let n = usize::try_from(result).unwrap_or(0);
        let framing = entry.io.framing;
        let rx = self
            .io
            .ring
            .buf_mut(buf)
            .and_then(|b| offload::rx_prepare(framing, b, n));
        let Some((mut rx, frame)) = rx.and_then(|rx| {
            let frame = self.io.ring.buf(buf)?.get(HEADROOM..HEADROOM + rx.len)?;
            Some((rx, frame))
        }) else {
            self.rx_slot_free(port, gen_, slot);
            return;
        };
        self.pipeline
            .handle_rx(now, port, frame, rx.offload, &mut self.egress, &self.io);
        if rx.has_partial_checksum()
            && self.pipeline.egress_without_offload(&self.egress, &self.io)
            && let Some(b) = self.io.ring.buf_mut(buf)
        {
            offload::finish_checksum(b, &mut rx);
        }
        let mut queued = false;
        for &out in self.egress.ports() {
            let Some(target) = self.pipeline.port(out) else {
                continue;
            };
            let (file, out_gen, nowait) = (target.io.file, target.io.gen_, target.io.tx_nowait);
            let Some(range) = target.io.framing.tx_range(rx) else {
                // A TSO frame to a plain port: as segments, written at once.
                let frame = self
                    .io
                    .ring
                    .buf(buf)
                    .and_then(|b| b.get(HEADROOM..HEADROOM + rx.len));
                let written = frame.map_or(Err(libc::EINVAL), |frame| {
                    self.io.write_now(&target.io, frame, rx.offload)
                });
                if let Err(errno) = written {
                    self.pipeline.count_tx_error(out, errno);
                }
                continue;
            };
            let t = tag(KIND_WRITE, out, out_gen, 0);
            match self.io.ring.push_write_range(file, buf, range, t, nowait) {
                Ok(()) => queued = true,
                Err(_) => self.pipeline.count_tx_error(out, 0),
            }
        }
        if !queued {
            self.rx_slot_free(port, gen_, slot);
        }
    }

    /// A receive slot is free again (its frame was handled and written): read into it.
    fn rx_slot_free(&mut self, port: PortId, gen_: u16, slot: u8) {
        let Some(entry) = self.pipeline.port_mut(port) else {
            return;
        };
        if entry.io.gen_ != gen_ || usize::from(slot) >= RX_SLOTS_PER_PORT {
            return;
        }
        let state = &mut entry.io;
        state.parked |= 1 << slot;
        self.io.rearm(port, state);
    }

    /// Closes every port and waits until the ring gives their fds back, then answers
    /// the shutdown (the fds are closed by then).
    fn teardown(&mut self) {
        let mut files = Vec::new();
        for (_, state) in self.pipeline.take_ports() {
            self.io.ring.close_file(state.file);
            for b in state.slots {
                self.io.ring.free_buf(b);
            }
            files.push(state.file);
        }
        self.io.ring.close_file(self.wake);
        files.push(self.wake);
        for _ in 0..200 {
            files.retain(|f| self.io.ring.take_file(*f).is_none());
            self.io.finish_closing();
            if files.is_empty() && self.io.closing.is_empty() {
                break;
            }
            if self
                .io
                .ring
                .submit_and_wait(Some(Duration::from_millis(10)))
                .is_err()
            {
                break;
            }
            self.io.ring.reap(&mut self.completions);
        }
        if !files.is_empty() {
            tracing::warn!(
                files = files.len(),
                ops = self.io.ring.inflight(),
                "datapath: port operations still in flight at shutdown"
            );
        }
        // Pending removals are answered (with an error) by dropping their reply senders.
        self.io.closing.clear();
        if let Some(reply) = self.shutdown.take() {
            let _ = reply.send(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_roundtrip() {
        for (k, p, g, s) in [
            (KIND_READ, 0, 0, 0),
            (KIND_WRITE, u32::MAX, u16::MAX, 7),
            (KIND_WAKE, 12, 3, 255),
            (KIND_UPLINK, 0, u16::MAX, 255),
        ] {
            assert_eq!(untag(tag(k, PortId(p), g, s)), (k, PortId(p), g, s));
        }
    }
}
