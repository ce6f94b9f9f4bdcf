//! The packet link between the datapath and the engine thread: two bounded queues of
//! pooled buffers and an eventfd for each direction.
//!
//! Buffers are recycled through a free list, so the steady state allocates nothing per
//! packet. Wake-ups are cheap: the datapath writes the engine's eventfd only when the
//! engine is parked in `epoll_wait` (the `parked` flag, a Dekker-style handshake), and
//! the engine writes the datapath's eventfd once per batch, not once per packet.
//!
//! The queue into the engine is shared by every container of the datapath, so a
//! container that floods it must not crowd the others out: each packet carries its
//! source (the container's port, hashed to one of [`SOURCES`] buckets), and once the
//! queue is half full a source that has more packets waiting than its fair share has
//! its new packets dropped and counted, while the others' still get in. The share is
//! the waiting packets over the sources that have some, plus one: room is always kept
//! for a source that has none waiting yet, so that a flood alone never fills the
//! queue against a newcomer.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use rustix::event::{EventfdFlags, eventfd};
use tapnet_switch::NetworkId;

/// Depth of each queue, in packets.
pub(super) const QUEUE_DEPTH: usize = 2048;
/// Most idle buffers kept for reuse.
const FREE_DEPTH: usize = 2 * QUEUE_DEPTH;
/// Buckets of packet sources for the fair share of the queue into the engine.
const SOURCES: usize = 64;

/// One IP packet in flight and the network it belongs to.
#[derive(Debug)]
pub(super) struct Packet {
    pub(super) net: NetworkId,
    pub(super) data: Vec<u8>,
    /// The source's bucket (packets into the engine; 0 for those out of it).
    source: u8,
}

#[derive(Debug)]
struct Shared {
    to_engine: (Sender<Packet>, Receiver<Packet>),
    to_guest: (Sender<Packet>, Receiver<Packet>),
    free: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    /// Readable when the engine should look at `to_engine` (or at its commands).
    engine_wake: OwnedFd,
    /// The engine is (about to be) blocked in `epoll_wait`.
    engine_parked: AtomicBool,
    /// Readable when `to_guest` may hold packets.
    guest_ready: OwnedFd,
    /// Packets the datapath handed in that did not fit in the queue.
    send_drops: AtomicU64,
    /// Packets waiting in the queue into the engine, by source bucket, and how many
    /// buckets have some.
    waiting: [AtomicU32; SOURCES],
    active_sources: AtomicU32,
    /// Packets dropped because their source had more than its fair share waiting.
    fair_share_drops: AtomicU64,
    /// The engine runs on the datapath thread, which drains `to_guest` right after each
    /// step: `guest_ready` is neither signalled nor read.
    inline: bool,
}

impl Shared {
    fn take_buffer(&self) -> Vec<u8> {
        match self.free.1.try_recv() {
            Ok(mut buf) => {
                buf.clear();
                buf
            }
            Err(_) => Vec::with_capacity(2048),
        }
    }

    /// A packet of source bucket `source` left the queue into the engine.
    fn left_queue(&self, source: u8) {
        if self.waiting[usize::from(source)].fetch_sub(1, Ordering::Relaxed) == 1 {
            self.active_sources.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn recycle(&self, buf: Vec<u8>) {
        // A full free list drops the buffer: memory returns to the allocator.
        let _ = self.free.0.try_send(buf);
    }
}

/// The datapath's end of the packet link to the engine.
#[derive(Debug, Clone)]
pub(crate) struct PacketLink {
    shared: Arc<Shared>,
}

/// The engine's end.
#[derive(Debug)]
pub(super) struct EngineLink {
    shared: Arc<Shared>,
    /// Packets were queued for the datapath since the last `flush`.
    pending_wake: bool,
}

/// A connected pair of link ends; `inline` when the engine runs on the datapath thread.
pub(super) fn pair(inline: bool) -> std::io::Result<(PacketLink, EngineLink)> {
    let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
    let shared = Arc::new(Shared {
        to_engine: crossbeam_channel::bounded(QUEUE_DEPTH),
        to_guest: crossbeam_channel::bounded(QUEUE_DEPTH),
        free: crossbeam_channel::bounded(FREE_DEPTH),
        engine_wake: eventfd(0, flags)?,
        engine_parked: AtomicBool::new(false),
        guest_ready: eventfd(0, flags)?,
        send_drops: AtomicU64::new(0),
        waiting: std::array::from_fn(|_| AtomicU32::new(0)),
        active_sources: AtomicU32::new(0),
        fair_share_drops: AtomicU64::new(0),
        inline,
    });
    Ok((
        PacketLink {
            shared: Arc::clone(&shared),
        },
        EngineLink {
            shared,
            pending_wake: false,
        },
    ))
}

fn signal(fd: BorrowedFd<'_>) {
    // EAGAIN means the counter is saturated: the reader is awake anyway.
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}

impl PacketLink {
    /// Hands an IP packet from a container of `net` to the engine (copied). Returns
    /// false, and the packet is dropped, when the queue is full.
    pub(crate) fn send(&self, net: NetworkId, packet: &[u8]) -> bool {
        self.enqueue(net, 0, false, packet)
    }

    /// [`Self::send`] for a packet from `source` (the container's port id): dropped,
    /// and counted, too when the queue is half full and `source` has more than its
    /// fair share of it waiting.
    pub(crate) fn send_from(&self, net: NetworkId, source: u32, packet: &[u8]) -> bool {
        self.enqueue(net, source, true, packet)
    }

    fn enqueue(&self, net: NetworkId, source: u32, fair: bool, packet: &[u8]) -> bool {
        let shared = &*self.shared;
        let bucket = (source as usize % SOURCES) as u8;
        let waiting = &shared.waiting[usize::from(bucket)];
        let queued = shared.to_engine.0.len();
        if fair && queued >= QUEUE_DEPTH / 2 {
            let active = shared.active_sources.load(Ordering::Relaxed) as usize;
            if waiting.load(Ordering::Relaxed) as usize > queued / (active + 1) {
                shared.fair_share_drops.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let mut data = shared.take_buffer();
        data.extend_from_slice(packet);
        if waiting.fetch_add(1, Ordering::Relaxed) == 0 {
            shared.active_sources.fetch_add(1, Ordering::Relaxed);
        }
        let packet = Packet {
            net,
            data,
            source: bucket,
        };
        match shared.to_engine.0.try_send(packet) {
            Ok(()) => {
                // Pairs with the engine's store of `true` before its final queue check.
                if shared.engine_parked.swap(false, Ordering::SeqCst) {
                    signal(shared.engine_wake.as_fd());
                }
                true
            }
            Err(TrySendError::Full(p) | TrySendError::Disconnected(p)) => {
                shared.send_drops.fetch_add(1, Ordering::Relaxed);
                shared.left_queue(p.source);
                shared.recycle(p.data);
                false
            }
        }
    }

    /// Takes the next IP packet the engine has for a container, copied into `buf`.
    /// A packet longer than `buf` is dropped (the engine never builds one longer than
    /// the network's MTU).
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Option<(NetworkId, usize)> {
        let shared = &*self.shared;
        loop {
            let packet = match shared.to_guest.1.try_recv() {
                Ok(p) => p,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) if shared.inline => {
                    // Nothing signalled the eventfd: no read (a syscall per frame).
                    return None;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                    // Reset the level, then look again: a packet queued between the
                    // failed pop and the reset must not be stranded.
                    drain(shared.guest_ready.as_fd());
                    shared.to_guest.1.try_recv().ok()?
                }
            };
            let len = packet.data.len();
            let fits = len <= buf.len();
            if fits {
                buf[..len].copy_from_slice(&packet.data);
            }
            let net = packet.net;
            shared.recycle(packet.data);
            if fits {
                return Some((net, len));
            }
        }
    }

    /// Readable when `recv` may return a packet (level: drain with `recv` until `None`).
    pub(crate) fn readiness_fd(&self) -> BorrowedFd<'_> {
        self.shared.guest_ready.as_fd()
    }
}

impl EngineLink {
    /// The fd the engine polls: packets from the datapath, or a command.
    pub(super) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.shared.engine_wake.as_fd()
    }

    /// A handle that can wake the engine from another thread.
    pub(super) fn waker(&self) -> Waker {
        Waker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Resets the wake fd's level.
    pub(super) fn clear_wake(&self) {
        drain(self.shared.engine_wake.as_fd());
    }

    /// Announces that the engine is going to block; returns false (and withdraws the
    /// announcement) if packets are already waiting, in which case it must not block.
    pub(super) fn park(&self) -> bool {
        self.shared.engine_parked.store(true, Ordering::SeqCst);
        if self.shared.to_engine.1.is_empty() {
            true
        } else {
            self.shared.engine_parked.store(false, Ordering::SeqCst);
            false
        }
    }

    pub(super) fn unpark(&self) {
        self.shared.engine_parked.store(false, Ordering::SeqCst);
    }

    /// The next packet from the datapath.
    pub(super) fn pop(&self) -> Option<Packet> {
        let p = self.shared.to_engine.1.try_recv().ok()?;
        self.shared.left_queue(p.source);
        Some(p)
    }

    /// Returns a packet's buffer to the pool.
    pub(super) fn recycle(&self, buf: Vec<u8>) {
        self.shared.recycle(buf);
    }

    /// An empty buffer from the pool, for building a packet in.
    pub(super) fn buffer(&self) -> Vec<u8> {
        self.shared.take_buffer()
    }

    /// Whether the queue to the datapath has room.
    pub(super) fn can_push(&self) -> bool {
        !self.shared.to_guest.0.is_full()
    }

    /// Queues a packet for the datapath; false (and the buffer is recycled) when full.
    pub(super) fn push(&mut self, net: NetworkId, data: Vec<u8>) -> bool {
        let packet = Packet {
            net,
            data,
            source: 0,
        };
        match self.shared.to_guest.0.try_send(packet) {
            Ok(()) => {
                self.pending_wake = true;
                true
            }
            Err(TrySendError::Full(p) | TrySendError::Disconnected(p)) => {
                self.shared.recycle(p.data);
                false
            }
        }
    }

    /// Wakes the datapath if packets were queued since the last call.
    pub(super) fn flush(&mut self) {
        // An engine on the datapath thread is drained right after it ran: no wake-up.
        if std::mem::take(&mut self.pending_wake) && !self.shared.inline {
            signal(self.shared.guest_ready.as_fd());
        }
    }

    /// Packets the datapath could not queue.
    pub(super) fn send_drops(&self) -> u64 {
        self.shared.send_drops.load(Ordering::Relaxed)
    }

    /// Packets into the engine dropped for going beyond their source's fair share.
    pub(super) fn fair_share_drops(&self) -> u64 {
        self.shared.fair_share_drops.load(Ordering::Relaxed)
    }
}

/// Wakes the engine thread from elsewhere (the control side).
#[derive(Debug, Clone)]
pub(super) struct Waker {
    shared: Arc<Shared>,
}

impl Waker {
    pub(super) fn wake(&self) {
        signal(self.shared.engine_wake.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_cross_both_ways_and_buffers_are_recycled() {
        let (link, mut engine) = pair(false).unwrap();
        assert!(link.send(NetworkId(3), b"hello"));
        let p = engine.pop().unwrap();
        assert_eq!((p.net, &p.data[..]), (NetworkId(3), &b"hello"[..]));
        engine.recycle(p.data);
        let mut out = engine.buffer();
        assert!(out.capacity() >= 5, "a recycled buffer is reused");
        out.extend_from_slice(b"reply");
        assert!(engine.push(NetworkId(3), out));
        engine.flush();
        let mut buf = [0u8; 64];
        assert_eq!(link.recv(&mut buf), Some((NetworkId(3), 5)));
        assert_eq!(&buf[..5], b"reply");
        assert_eq!(link.recv(&mut buf), None);
    }

    #[test]
    fn full_queue_refuses_and_counts() {
        let (link, engine) = pair(false).unwrap();
        for _ in 0..QUEUE_DEPTH {
            assert!(link.send(NetworkId(1), &[0; 20]));
        }
        assert!(!link.send(NetworkId(1), &[0; 20]));
        assert_eq!(engine.send_drops(), 1);
    }

    #[test]
    fn parked_engine_is_woken_once() {
        let (link, engine) = pair(false).unwrap();
        assert!(engine.park());
        assert!(link.send(NetworkId(1), b"x"));
        let mut n = [0u8; 8];
        assert_eq!(rustix::io::read(engine.wake_fd(), &mut n).unwrap(), 8);
        assert!(!engine.park(), "a queued packet forbids blocking");
    }

    #[test]
    fn a_flooding_source_gets_its_fair_share_and_a_newcomer_always_gets_in() {
        let (link, engine) = pair(true).unwrap();
        let net = NetworkId(1);
        // Alone, a source may fill half the queue, then half of what it holds.
        let mut sent = 0;
        while link.send_from(net, 7, b"flood") {
            sent += 1;
            assert!(sent <= QUEUE_DEPTH, "never more than the queue");
        }
        assert!((QUEUE_DEPTH / 2..QUEUE_DEPTH).contains(&sent), "{sent}");
        assert!(link.shared.fair_share_drops.load(Ordering::Relaxed) > 0);
        // Another source still gets in, and so does the flood once the engine took
        // some of it.
        assert!(link.send_from(net, 8, b"victim"));
        for _ in 0..QUEUE_DEPTH / 4 {
            assert!(engine.pop().is_some());
        }
        assert!(link.send_from(net, 7, b"flood"));
        // Packets without a source (the rootless stack's one container) never count.
        while link.send(net, b"lone") {}
        assert_eq!(link.shared.to_engine.0.len(), QUEUE_DEPTH);
    }
}
