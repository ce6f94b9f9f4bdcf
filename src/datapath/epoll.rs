//! The epoll backend, for systems where io_uring is disabled (container seccomp
//! profiles, `kernel.io_uring_disabled`): I/O mechanics of one pipeline thread.
//!
//! Level-triggered readiness on every port fd and on the wake-up eventfd. A readable
//! port is read until EAGAIN, but at most [`EPOLL_RX_BUDGET`] frames per round so one
//! busy port cannot starve the others (level triggering brings it back next round).
//! Each frame goes through the switch and is written at once to each egress port with
//! a non-blocking `write(2)`; EAGAIN or any error drops it and counts `tx_errors`.
//! One receive buffer serves the whole thread, since frames are handled one by one.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::Receiver;
use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;
use tapnet_switch::{PortId, SwitchConfig};
use tapnet_wire::Instant;

use super::offload::{self, Framing, HEADROOM, Offload};
use super::pipeline::{Command, DirectWrite, Egress, Flow, Pipeline, PortBackend, Reply};
use super::spin::AdaptiveSpin;
use super::{EPOLL_RX_BUDGET, PortIo, RX_BUF_LEN};
use crate::engine::PacketLink;
use crate::sys::uring::monotonic_now;

/// The epoll user data of the wake-up eventfd (ports use their generation and id).
const WAKE: u64 = u64::MAX;
/// The epoll user data of the uplink's readiness eventfd.
const UPLINK: u64 = u64::MAX - 1;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 256;

fn token(port: PortId, gen_: u32) -> u64 {
    (u64::from(gen_) << 32) | u64::from(port.0)
}

/// A port's epoll state.
#[derive(Debug)]
pub(crate) struct EpollPort {
    fd: OwnedFd,
    gen_: u32,
    /// A read failed for good; the fd is no longer in the epoll set.
    stopped: bool,
    /// Plain frames or a virtio_net_hdr before each.
    framing: Framing,
}

/// The I/O side of the loop.
#[derive(Debug)]
struct Io {
    epoll: OwnedFd,
    next_gen: u32,
}

impl PortBackend for Io {
    type Port = EpollPort;

    fn attach(&mut self, port: PortId, io: PortIo) -> anyhow::Result<EpollPort> {
        self.next_gen = self.next_gen.wrapping_add(1);
        let framing = Framing::of(&io);
        let fd = io.into_fd();
        epoll::add(
            &self.epoll,
            &fd,
            epoll::EventData::new_u64(token(port, self.next_gen)),
            epoll::EventFlags::IN,
        )
        .with_context(|| format!("add port {port:?} to the epoll set"))?;
        Ok(EpollPort {
            fd,
            gen_: self.next_gen,
            stopped: false,
            framing,
        })
    }

    fn detach(&mut self, _port: PortId, state: EpollPort, reply: Reply<OwnedFd>) {
        if !state.stopped {
            let _ = epoll::delete(&self.epoll, &state.fd);
        }
        let _ = reply.send(Ok(state.fd));
    }
}

impl DirectWrite<EpollPort> for Io {
    fn write_now(
        &self,
        port: &EpollPort,
        frame: &[u8],
        offload: Option<Offload>,
    ) -> Result<(), i32> {
        offload::write_frame(port.fd.as_fd(), port.framing, frame, offload)
    }

    fn takes_offload(&self, port: &EpollPort) -> bool {
        port.framing.takes_offload()
    }
}

/// One epoll pipeline thread.
pub(crate) struct EpollLoop {
    pipeline: Pipeline<EpollPort>,
    io: Io,
    wake: OwnedFd,
    rx_buf: Box<[u8]>,
    egress: Egress,
    events: Vec<epoll::Event>,
    shutdown: Option<Reply<()>>,
}

impl std::fmt::Debug for EpollLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollLoop")
            .field("pipeline", &self.pipeline)
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl EpollLoop {
    pub(crate) fn new(
        config: SwitchConfig,
        wake: OwnedFd,
        uplink: Option<PacketLink>,
        engine: Option<crate::engine::InlineEngine>,
    ) -> anyhow::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create")?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )
        .context("add the eventfd to the epoll set")?;
        let mut pipeline = Pipeline::new(config);
        if let Some(link) = uplink {
            pipeline.set_uplink(link);
            if let Some(engine) = engine {
                pipeline.set_inline_engine(engine);
            }
            if let Some(fd) = pipeline.uplink_fd() {
                epoll::add(
                    &epoll,
                    fd,
                    epoll::EventData::new_u64(UPLINK),
                    epoll::EventFlags::IN,
                )
                .context("add the uplink to the epoll set")?;
            }
        }
        Ok(Self {
            pipeline,
            io: Io { epoll, next_gen: 0 },
            wake,
            rx_buf: vec![0u8; HEADROOM + RX_BUF_LEN].into_boxed_slice(),
            egress: Egress::default(),
            events: Vec::with_capacity(EVENTS),
            shutdown: None,
        })
    }

    pub(crate) fn run(&mut self, commands: &Receiver<Command>) {
        let mut now = monotonic_now();
        let mut spin = AdaptiveSpin::from_env(now);
        self.handle_commands(now, commands);
        while self.shutdown.is_none() {
            // Poll for a short, adaptive window after traffic before sleeping (`spin`).
            let polling = spin.keep_polling(now);
            let timeout = if polling {
                Some(timespec(Duration::ZERO))
            } else {
                self.pipeline
                    .poll_timeout()
                    .map(|t| timespec(t.saturating_duration_since(now)))
            };
            self.events.clear();
            match epoll::wait(
                &self.io.epoll,
                spare_capacity(&mut self.events),
                timeout.as_ref(),
            ) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    tracing::error!("datapath: epoll_wait failed: {e}; stopping");
                    break;
                }
            }
            now = monotonic_now();
            if !self.events.is_empty() {
                spin.events_at(now, !polling);
            }
            for i in 0..self.events.len() {
                let data = self.events[i].data.u64();
                if data == WAKE {
                    super::drain_wake(self.wake.as_fd());
                    self.handle_commands(now, commands);
                } else if data == UPLINK {
                    self.pipeline.uplink_ready(now, &self.io);
                } else {
                    self.read_port(now, data);
                }
            }
            self.pipeline.handle_timeout(now, &self.io);
        }
        // Close every port fd, then answer.
        drop(self.pipeline.take_ports());
        if let Some(reply) = self.shutdown.take() {
            let _ = reply.send(Ok(()));
        }
    }

    fn handle_commands(&mut self, now: Instant, commands: &Receiver<Command>) {
        while self.shutdown.is_none() {
            let Ok(cmd) = commands.try_recv() else { break };
            if let Flow::Shutdown(reply) = self.pipeline.handle_command(now, cmd, &mut self.io) {
                self.shutdown = Some(reply);
            }
        }
    }

    /// Reads up to the budget of frames from a readable port and forwards each.
    fn read_port(&mut self, now: Instant, token: u64) {
        let port = PortId(u32::try_from(token & 0xffff_ffff).unwrap_or(u32::MAX));
        let gen_ = u32::try_from(token >> 32).unwrap_or(u32::MAX);
        for _ in 0..EPOLL_RX_BUDGET {
            // The port may have been removed by a command earlier in this batch.
            let Some(entry) = self.pipeline.port(port) else {
                return;
            };
            if entry.io.gen_ != gen_ || entry.io.stopped {
                return;
            }
            let framing = entry.io.framing;
            let at = framing.read_offset();
            let n = match rustix::io::read(&entry.io.fd, &mut self.rx_buf[at..]) {
                Ok(0) => {
                    self.stop_port(port, 0);
                    return;
                }
                Ok(n) => n,
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    self.stop_port(port, e.raw_os_error());
                    return;
                }
            };
            let Some(mut rx) = offload::rx_prepare(framing, &mut self.rx_buf, n) else {
                continue;
            };
            let frame = &self.rx_buf[HEADROOM..HEADROOM + rx.len];
            self.pipeline
                .handle_rx(now, port, frame, rx.offload, &mut self.egress, &self.io);
            if rx.has_partial_checksum()
                && self.pipeline.egress_without_offload(&self.egress, &self.io)
            {
                offload::finish_checksum(&mut self.rx_buf, &mut rx);
            }
            for &out in self.egress.ports() {
                let Some(target) = self.pipeline.port(out) else {
                    continue;
                };
                let written = match target.io.framing.tx_range(rx) {
                    Some(range) => rustix::io::write(&target.io.fd, &self.rx_buf[range])
                        .map(|_| ())
                        .map_err(|e| e.raw_os_error()),
                    // A TSO frame to a plain port: as segments.
                    None => {
                        let frame = &self.rx_buf[HEADROOM..HEADROOM + rx.len];
                        self.io.write_now(&target.io, frame, rx.offload)
                    }
                };
                if let Err(errno) = written {
                    self.pipeline.count_tx_error(out, errno);
                }
            }
        }
    }

    /// A read failed for good (or hit end of file): count, log, stop watching the fd.
    fn stop_port(&mut self, port: PortId, errno: i32) {
        self.pipeline.count_rx_error(port, errno);
        if let Some(entry) = self.pipeline.port_mut(port) {
            entry.io.stopped = true;
            let _ = epoll::delete(&self.io.epoll, &entry.io.fd);
        }
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}
