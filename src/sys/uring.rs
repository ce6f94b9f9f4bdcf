//! A small, safe io_uring wrapper for the datapath (one ring per pipeline thread).
//!
//! The unsafety of io_uring is that the kernel keeps using a buffer and a file
//! descriptor after the submission call returns, until the operation's completion
//! (CQE) is reaped. This module owns everything an in-flight operation points at, so
//! that safe code cannot break that contract:
//!
//! - **Buffers** ([`BufId`]) are heap allocations owned by the [`Ring`]. A buffer that a
//!   `Read` is filling cannot be borrowed at all; a buffer that `Write`s are sending can
//!   only be borrowed shared (and may be shared by several writes: a reference count).
//!   Freeing a busy buffer is deferred until its last operation completes.
//! - **Files** ([`FileId`]) are `OwnedFd`s handed to the ring. An operation names a
//!   file by id; the fd is given back ([`Ring::take_file`]) only once no operation on it
//!   is queued or in flight, so the kernel never sees a closed (or reused) fd number.
//! - **Operations** get their `user_data` from an internal table; the caller attaches
//!   its own `u64` tag and gets it back in the [`Completion`].
//! - **Dropping** the ring cancels everything and waits for the completions; whatever
//!   is still outstanding after a grace period is leaked rather than freed.
//!
//! Nothing here allocates per operation once the tables have grown to their working
//! size. Also here: [`monotonic_now`], the clock the ring's timeouts use.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use io_uring::{IoUring, Probe, opcode, squeue, types};

/// A buffer owned by a [`Ring`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BufId(u32);

/// A file descriptor owned by a [`Ring`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId(u32);

/// Why an operation could not be queued. Nothing was queued; the caller drops or retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PushError {
    /// The submission queue is full even after submitting what it held.
    #[error("submission queue full")]
    QueueFull,
    /// The operation table is at its limit (too many operations in flight).
    #[error("too many operations in flight")]
    TooManyOps,
    /// The buffer is being filled by a read (or, for a read, is in use at all).
    #[error("buffer busy")]
    BufferBusy,
    /// The file is being closed, or the id is stale.
    #[error("file closing or unknown")]
    FileClosing,
}

/// What finished. Buffer and file states have already been updated when this is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompletionKind {
    /// A read into `buf` finished; on success `buf[..result]` holds the data.
    Read { buf: BufId },
    /// A write from `buf` finished. `buf_idle` says no other operation uses the buffer
    /// any more (the owner may reuse it); `owner` is the tag given at [`Ring::alloc_buf`].
    Write {
        buf: BufId,
        buf_idle: bool,
        owner: u64,
    },
    /// A poll for readability finished; on success `result` is the event mask.
    PollIn,
}

/// One finished operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Completion {
    /// The tag given when the operation was pushed.
    pub(crate) tag: u64,
    /// The kernel's result: bytes or a poll mask if `>= 0`, `-errno` otherwise.
    pub(crate) result: i32,
    /// The file the operation was on.
    pub(crate) file: FileId,
    pub(crate) kind: CompletionKind,
}

/// How the ring was set up, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetupMode {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (6.1+).
    DeferTaskrun,
    /// `IORING_SETUP_COOP_TASKRUN` (5.19+).
    CoopTaskrun,
    /// No setup flags.
    Plain,
}

#[derive(Debug)]
struct Buf {
    /// Owned allocation (from `Box<[u8]>`); freed in `free_now` or leaked.
    mem: NonNull<[u8]>,
    /// A read is filling the buffer.
    reading: bool,
    /// Writes in flight from the buffer.
    writers: u32,
    /// `free_buf` was called; free when idle.
    orphaned: bool,
    owner: u64,
}

impl Buf {
    fn idle(&self) -> bool {
        !self.reading && self.writers == 0
    }
}

#[derive(Debug)]
struct File {
    fd: OwnedFd,
    /// Operations queued or in flight on this fd.
    inflight: u32,
    closing: bool,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Read {
        file: u32,
        buf: u32,
        tag: u64,
    },
    Write {
        file: u32,
        buf: u32,
        tag: u64,
    },
    PollIn {
        file: u32,
        tag: u64,
    },
    /// An internal cancel request; its completion is not reported.
    Cancel,
}

/// Opcodes the datapath needs; `Ring::new` fails if one is missing.
const REQUIRED_OPCODES: [(u8, &str); 4] = [
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
];

/// Upper bound on operations in flight at once (the op table never grows beyond it).
const MAX_OPS: usize = 1 << 16;

/// An io_uring instance with the buffers and files its operations use.
pub(crate) struct Ring {
    ring: IoUring,
    mode: SetupMode,
    ops: Vec<Option<Op>>,
    free_ops: Vec<u32>,
    bufs: Vec<Option<Buf>>,
    free_bufs: Vec<u32>,
    files: Vec<Option<File>>,
    free_files: Vec<u32>,
    inflight: usize,
    /// Raw CQEs of the current batch (reused, so reaping does not allocate).
    cqes: Vec<(u64, i32)>,
}

// SAFETY: the raw buffer pointers are owned allocations reachable only through the
// `Ring`; moving the whole `Ring` to another thread moves their ownership with it.
// (With `SINGLE_ISSUER` the ring must then only be used from that one thread; the
// datapath creates the ring on the thread that runs it.)
unsafe impl Send for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("mode", &self.mode)
            .field("inflight", &self.inflight)
            .field("bufs", &(self.bufs.len() - self.free_bufs.len()))
            .field("files", &(self.files.len() - self.free_files.len()))
            .finish_non_exhaustive()
    }
}

/// The result of an `io_uring_enter`, with what only says "try again later" (a wait
/// timed out, a signal, a full completion queue) taken as success: the loop comes
/// back anyway.
fn transient_ok(res: io::Result<usize>) -> io::Result<()> {
    match res {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl Ring {
    /// Creates a ring with `entries` submission slots, trying the cheapest task-run
    /// mode first. Fails if io_uring is unavailable (EPERM from seccomp or
    /// `kernel.io_uring_disabled`, ENOSYS, ENOMEM) or lacks an opcode or feature needed.
    pub(crate) fn new(entries: u32) -> io::Result<Self> {
        let cq = entries.saturating_mul(8);
        let attempts = [
            SetupMode::DeferTaskrun,
            SetupMode::CoopTaskrun,
            SetupMode::Plain,
        ];
        let mut last_err = None;
        let mut built = None;
        for mode in attempts {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq);
            match mode {
                SetupMode::DeferTaskrun => {
                    // TASKRUN_FLAG: the kernel flags pending task work in the SQ ring,
                    // so that polling need not enter the kernel when there is none.
                    b.setup_single_issuer()
                        .setup_defer_taskrun()
                        .setup_taskrun_flag();
                }
                SetupMode::CoopTaskrun => {
                    b.setup_coop_taskrun().setup_taskrun_flag();
                }
                SetupMode::Plain => {}
            }
            match b.build(entries) {
                Ok(ring) => {
                    built = Some((ring, mode));
                    break;
                }
                // EINVAL: flag unknown to this kernel; try the next mode. Anything
                // else (EPERM, ENOSYS, ENOMEM) will not improve without flags either,
                // but trying costs nothing.
                Err(e) => last_err = Some(e),
            }
        }
        let Some((ring, mode)) = built else {
            return Err(last_err.unwrap_or_else(|| io::Error::other("io_uring setup failed")));
        };
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_EXT_ARG (kernel < 5.11)",
            ));
        }
        if !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_NODROP (kernel < 5.5)",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in REQUIRED_OPCODES {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode IORING_OP_{name} not supported"),
                ));
            }
        }
        Ok(Self {
            ring,
            mode,
            ops: Vec::new(),
            free_ops: Vec::new(),
            bufs: Vec::new(),
            free_bufs: Vec::new(),
            files: Vec::new(),
            free_files: Vec::new(),
            inflight: 0,
            cqes: Vec::with_capacity(cq as usize),
        })
    }

    /// The task-run mode the ring was created with.
    pub(crate) fn setup_mode(&self) -> SetupMode {
        self.mode
    }

    /// Operations queued or in flight.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight
    }

    // ---- buffers ----

    /// Allocates a zeroed buffer of `len` bytes. `owner` is reported back when writes
    /// from the buffer finish (see [`CompletionKind::Write`]).
    pub(crate) fn alloc_buf(&mut self, len: usize, owner: u64) -> BufId {
        let mem = NonNull::from(Box::leak(vec![0u8; len].into_boxed_slice()));
        let buf = Buf {
            mem,
            reading: false,
            writers: 0,
            orphaned: false,
            owner,
        };
        BufId(insert(&mut self.bufs, &mut self.free_bufs, buf))
    }

    /// Frees a buffer now if no operation uses it, else when the last one completes.
    pub(crate) fn free_buf(&mut self, id: BufId) {
        let Some(buf) = self.bufs.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        buf.orphaned = true;
        if buf.idle() {
            self.free_now(id.0);
        }
    }

    fn free_now(&mut self, idx: u32) {
        if let Some(buf) = self.bufs[idx as usize].take() {
            // SAFETY: `mem` came from `Box::leak` of a `Box<[u8]>` in `alloc_buf`, is
            // freed only here (the slot is emptied by `take`), and no operation uses it
            // (callers check `idle`), so the kernel no longer accesses it.
            drop(unsafe { Box::from_raw(buf.mem.as_ptr()) });
            self.free_bufs.push(idx);
        }
    }

    /// The buffer's bytes, unless a read is filling it (or the id is stale).
    pub(crate) fn buf(&self, id: BufId) -> Option<&[u8]> {
        let buf = self.bufs.get(id.0 as usize)?.as_ref()?;
        if buf.reading {
            return None;
        }
        // SAFETY: the allocation is live (the slot holds it) and no read is in flight,
        // so the kernel does not write it; in-flight writes only read it, which is
        // compatible with a shared borrow. `&self` prevents a concurrent push of a read.
        Some(unsafe { buf.mem.as_ref() })
    }

    /// The buffer's bytes for writing, if no operation uses it (a completed read's
    /// buffer, before it is written anywhere).
    pub(crate) fn buf_mut(&mut self, id: BufId) -> Option<&mut [u8]> {
        let buf = self.bufs.get_mut(id.0 as usize)?.as_mut()?;
        if !buf.idle() {
            return None;
        }
        // SAFETY: the allocation is live and idle: the kernel neither reads nor writes
        // it, and `&mut self` makes this the only borrow.
        Some(unsafe { buf.mem.as_mut() })
    }

    // ---- files ----

    /// Hands a file descriptor to the ring.
    pub(crate) fn add_file(&mut self, fd: OwnedFd) -> FileId {
        FileId(insert(
            &mut self.files,
            &mut self.free_files,
            File {
                fd,
                inflight: 0,
                closing: false,
            },
        ))
    }

    /// Starts closing a file: no new operation is accepted on it, and every queued or
    /// in-flight one is cancelled (`IORING_OP_ASYNC_CANCEL` by fd, all matches). Call
    /// [`Ring::take_file`] after later completion batches until it returns the fd.
    pub(crate) fn close_file(&mut self, id: FileId) {
        let Some(file) = self.files.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        file.closing = true;
        if file.inflight == 0 {
            return;
        }
        let raw = file.fd.as_raw_fd();
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all()).build();
        // If the cancel cannot be queued now, ops still finish on their own (reads on
        // a closing port are not resubmitted) — but reads may wait for traffic, so
        // retry once after flushing.
        if self.push_entry(entry, Op::Cancel).is_err() {
            let _ = self.ring.submit();
            let _ = self.push_entry(
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all()).build(),
                Op::Cancel,
            );
        }
    }

    /// Gives the fd back once no operation on it is queued or in flight; otherwise
    /// returns `None` and keeps it.
    pub(crate) fn take_file(&mut self, id: FileId) -> Option<OwnedFd> {
        let slot = self.files.get_mut(id.0 as usize)?;
        if slot.as_ref()?.inflight != 0 {
            return None;
        }
        let file = slot.take()?;
        self.free_files.push(id.0);
        Some(file.fd)
    }

    /// Borrows the fd of a file (e.g. to drain an eventfd after a poll fired).
    pub(crate) fn file_fd(&self, id: FileId) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.files.get(id.0 as usize)?.as_ref()?.fd.as_fd())
    }

    fn live_file(&self, id: FileId) -> Result<i32, PushError> {
        match self.files.get(id.0 as usize).and_then(Option::as_ref) {
            Some(f) if !f.closing => Ok(f.fd.as_raw_fd()),
            _ => Err(PushError::FileClosing),
        }
    }

    // ---- operations ----

    /// Queues a read of one frame (one `read(2)`) from `file` into the whole of `buf`.
    /// `nowait` sets `RWF_NOWAIT`: the read fails with `-EAGAIN` instead of waiting.
    #[cfg(test)]
    pub(crate) fn push_read(
        &mut self,
        file: FileId,
        buf: BufId,
        tag: u64,
        nowait: bool,
    ) -> Result<(), PushError> {
        self.push_read_at(file, buf, 0, tag, nowait)
    }

    /// [`Ring::push_read`] into `buf[offset..]` (room for a header in front). The
    /// completion's result counts the bytes from `offset`.
    pub(crate) fn push_read_at(
        &mut self,
        file: FileId,
        buf: BufId,
        offset: usize,
        tag: u64,
        nowait: bool,
    ) -> Result<(), PushError> {
        let fd = self.live_file(file)?;
        let b = self
            .bufs
            .get(buf.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(PushError::BufferBusy)?;
        if !b.idle() || b.orphaned {
            return Err(PushError::BufferBusy);
        }
        let offset = offset.min(b.mem.len());
        let len = u32::try_from(b.mem.len() - offset).unwrap_or(u32::MAX);
        // Stays in the allocation: `offset <= b.mem.len()`.
        let ptr = b.mem.as_ptr().cast::<u8>().wrapping_add(offset);
        let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
        // Offset 0: TAP devices and sockets ignore it (verified on 6.18 for TAP,
        // AF_PACKET and AF_UNIX seqpacket fds).
        let entry = opcode::Read::new(types::Fd(fd), ptr, len)
            .rw_flags(flags)
            .build();
        self.push_entry(
            entry,
            Op::Read {
                file: file.0,
                buf: buf.0,
                tag,
            },
        )?;
        self.bufs[buf.0 as usize]
            .as_mut()
            .expect("checked above")
            .reading = true;
        self.files[file.0 as usize]
            .as_mut()
            .expect("checked above")
            .inflight += 1;
        Ok(())
    }

    /// Queues a write of `buf[..len]` to `file`, with `RWF_NOWAIT` if `nowait`
    /// (a full queue then fails with `-EAGAIN` instead of waiting). Several writes may
    /// share one buffer.
    #[cfg(test)]
    pub(crate) fn push_write(
        &mut self,
        file: FileId,
        buf: BufId,
        len: usize,
        tag: u64,
        nowait: bool,
    ) -> Result<(), PushError> {
        self.push_write_range(file, buf, 0..len, tag, nowait)
    }

    /// [`Ring::push_write`] of `buf[range]` (clamped to the buffer).
    pub(crate) fn push_write_range(
        &mut self,
        file: FileId,
        buf: BufId,
        range: std::ops::Range<usize>,
        tag: u64,
        nowait: bool,
    ) -> Result<(), PushError> {
        let fd = self.live_file(file)?;
        let b = self
            .bufs
            .get(buf.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(PushError::BufferBusy)?;
        if b.reading || b.orphaned {
            return Err(PushError::BufferBusy);
        }
        let start = range.start.min(b.mem.len());
        let end = range.end.clamp(start, b.mem.len());
        let len = u32::try_from(end - start).unwrap_or(u32::MAX);
        // Stays in the allocation: `start <= b.mem.len()`.
        let ptr = b.mem.as_ptr().cast::<u8>().cast_const().wrapping_add(start);
        let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
        let entry = opcode::Write::new(types::Fd(fd), ptr, len)
            .rw_flags(flags)
            .build();
        self.push_entry(
            entry,
            Op::Write {
                file: file.0,
                buf: buf.0,
                tag,
            },
        )?;
        self.bufs[buf.0 as usize]
            .as_mut()
            .expect("checked above")
            .writers += 1;
        self.files[file.0 as usize]
            .as_mut()
            .expect("checked above")
            .inflight += 1;
        Ok(())
    }

    /// Queues a one-shot poll for readability (`POLLIN`) of `file`.
    pub(crate) fn push_poll_in(&mut self, file: FileId, tag: u64) -> Result<(), PushError> {
        let fd = self.live_file(file)?;
        let mask = u32::try_from(libc::POLLIN).unwrap_or(1);
        let entry = opcode::PollAdd::new(types::Fd(fd), mask).build();
        self.push_entry(entry, Op::PollIn { file: file.0, tag })?;
        self.files[file.0 as usize]
            .as_mut()
            .expect("checked above")
            .inflight += 1;
        Ok(())
    }

    fn push_entry(&mut self, entry: squeue::Entry, op: Op) -> Result<(), PushError> {
        if self.free_ops.is_empty() && self.ops.len() >= MAX_OPS {
            return Err(PushError::TooManyOps);
        }
        if self.ring.submission().is_full() {
            // Flush what is queued; the kernel copies SQEs at submit time.
            let _ = self.ring.submit();
            if self.ring.submission().is_full() {
                return Err(PushError::QueueFull);
            }
        }
        let idx = insert(&mut self.ops, &mut self.free_ops, op);
        let entry = entry.user_data(u64::from(idx));
        // SAFETY: every pointer in `entry` stays valid until its completion is reaped:
        // buffers are marked busy (and their frees deferred) by the callers right after
        // this returns Ok, files are marked in flight (so `take_file` keeps the fd
        // open), and `Drop` waits for outstanding completions or leaks the memory.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            self.ops[idx as usize] = None;
            self.free_ops.push(idx);
            return Err(PushError::QueueFull);
        }
        self.inflight += 1;
        Ok(())
    }

    /// Submits everything queued and waits for at least one completion, or for
    /// `timeout` if given. Returns normally on timeout and on signals.
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let res = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        transient_ok(res)
    }

    /// Submits what is queued and gathers completions without sleeping. Enters the
    /// kernel only when there is something to submit, deferred task work to run (the
    /// kernel says so with IORING_SQ_TASKRUN) or an overflowed completion queue:
    /// polling an idle ring costs no system call.
    pub(crate) fn submit_and_poll(&mut self) -> io::Result<()> {
        let sq = self.ring.submission();
        let quiet = sq.is_empty() && !sq.taskrun() && !sq.cq_overflow();
        drop(sq);
        let res = match self.mode {
            // Without the flag, entering runs whatever task work is pending.
            SetupMode::Plain => self.ring.submit(),
            _ if quiet => return Ok(()),
            _ => self.ring.submitter().submit_and_wait(0),
        };
        transient_ok(res)
    }

    /// Submits everything queued without waiting.
    #[cfg(test)]
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        transient_ok(self.ring.submit())
    }

    /// Reaps every available completion into `out` (cleared first), updating buffer
    /// and file states. Internal completions (cancels) are not reported.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        self.cqes.clear();
        self.cqes
            .extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        for i in 0..self.cqes.len() {
            let (user_data, result) = self.cqes[i];
            if let Some(c) = self.complete(user_data, result) {
                out.push(c);
            }
        }
    }

    fn complete(&mut self, user_data: u64, result: i32) -> Option<Completion> {
        let idx = usize::try_from(user_data).ok()?;
        let op = self.ops.get_mut(idx)?.take()?;
        self.free_ops.push(u32::try_from(idx).ok()?);
        self.inflight -= 1;
        let (file, tag, kind) = match op {
            Op::Cancel => return None,
            Op::Read { file, buf, tag } => {
                let b = self.bufs[buf as usize]
                    .as_mut()
                    .expect("busy buffers are not freed");
                b.reading = false;
                if b.orphaned {
                    self.free_now(buf);
                }
                (file, tag, CompletionKind::Read { buf: BufId(buf) })
            }
            Op::Write { file, buf, tag } => {
                let b = self.bufs[buf as usize]
                    .as_mut()
                    .expect("busy buffers are not freed");
                b.writers -= 1;
                let (idle, owner) = (b.idle(), b.owner);
                if idle && b.orphaned {
                    self.free_now(buf);
                }
                (
                    file,
                    tag,
                    CompletionKind::Write {
                        buf: BufId(buf),
                        buf_idle: idle,
                        owner,
                    },
                )
            }
            Op::PollIn { file, tag } => (file, tag, CompletionKind::PollIn),
        };
        if let Some(f) = self.files[file as usize].as_mut() {
            f.inflight -= 1;
        }
        Some(Completion {
            tag,
            result,
            file: FileId(file),
            kind,
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.inflight > 0 {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any().all()).build();
            let _ = self.push_entry(cancel, Op::Cancel);
            let mut scratch = Vec::new();
            // Cancelled reads and polls complete at once; give stragglers a grace period.
            for _ in 0..100 {
                if self.inflight == 0 {
                    break;
                }
                let _ = self.submit_and_wait(Some(Duration::from_millis(10)));
                self.reap(&mut scratch);
            }
        }
        if self.inflight > 0 {
            // The kernel may still write into buffers: leak them rather than free.
            tracing::warn!(
                inflight = self.inflight,
                "io_uring: operations outstanding at exit; leaking their buffers"
            );
            self.bufs.clear();
            return;
        }
        for idx in 0..self.bufs.len() {
            if let Ok(idx) = u32::try_from(idx) {
                self.free_now(idx);
            }
        }
    }
}

/// Inserts into a slab (a `Vec` of slots plus a free list) and returns the index.
fn insert<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<u32>, value: T) -> u32 {
    if let Some(idx) = free.pop() {
        slots[idx as usize] = Some(value);
        idx
    } else {
        slots.push(Some(value));
        u32::try_from(slots.len() - 1).expect("slab index fits u32")
    }
}

/// Reads `CLOCK_MONOTONIC` (the clock of io_uring and epoll timeouts), in nanoseconds.
pub(crate) fn monotonic_now() -> tapnet_wire::Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists, so the
    // call cannot fail (it is a vDSO call, not a syscall).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    tapnet_wire::Instant::from_nanos(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};

    /// A non-blocking SEQPACKET socket pair: one read or write is one whole message.
    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK,
            None,
        )
        .unwrap()
    }

    fn ring_or_skip() -> Option<Ring> {
        match Ring::new(64) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("skipping: io_uring unavailable: {e}");
                None
            }
        }
    }

    fn wait_one(ring: &mut Ring, out: &mut Vec<Completion>) {
        for _ in 0..100 {
            ring.submit_and_wait(Some(Duration::from_millis(20)))
                .unwrap();
            ring.reap(out);
            if !out.is_empty() {
                return;
            }
        }
        panic!("no completion");
    }

    #[test]
    fn read_write_roundtrip_and_busy_buffers() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (a, b) = seqpacket_pair();
        let fa = ring.add_file(a);
        let fb = ring.add_file(b);
        let rx = ring.alloc_buf(2048, 1);
        let tx = ring.alloc_buf(2048, 2);
        ring.push_read(fb, rx, 10, false).unwrap();
        assert!(
            ring.buf(rx).is_none(),
            "a buffer being read into is not readable"
        );
        assert_eq!(
            ring.push_read(fb, rx, 10, false),
            Err(PushError::BufferBusy)
        );
        ring.buf_mut(tx).unwrap()[..5].copy_from_slice(b"hello");
        ring.push_write(fa, tx, 5, 20, true).unwrap();
        ring.push_write(fa, tx, 5, 21, true).unwrap();
        assert!(
            ring.buf_mut(tx).is_none(),
            "a buffer being written from is not mutable"
        );
        let mut out = Vec::new();
        let mut got = Vec::new();
        while got.len() < 3 {
            wait_one(&mut ring, &mut out);
            got.extend_from_slice(&out);
        }
        let read = got.iter().find(|c| c.tag == 10).unwrap();
        assert_eq!(read.result, 5);
        assert_eq!(&ring.buf(rx).unwrap()[..5], b"hello");
        let idle: Vec<bool> = got
            .iter()
            .filter_map(|c| match c.kind {
                CompletionKind::Write {
                    buf_idle, owner, ..
                } => {
                    assert_eq!(owner, 2);
                    Some(buf_idle)
                }
                _ => None,
            })
            .collect();
        assert_eq!(idle, [false, true]);
        assert!(ring.take_file(fa).is_some());
    }

    #[test]
    fn polling_gathers_a_completion_without_waiting() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (a, b) = seqpacket_pair();
        let fb = ring.add_file(b);
        let rx = ring.alloc_buf(64, 1);
        ring.push_read(fb, rx, 7, false).unwrap();
        let mut out = Vec::new();
        // Nothing to read yet: polling submits the read and returns at once.
        ring.submit_and_poll().unwrap();
        ring.reap(&mut out);
        assert!(out.is_empty());
        rustix::io::write(&a, b"ping").unwrap();
        // The read completes by the poll's task work; polling (never sleeping) runs
        // it. Bounded, so that a broken poll fails instead of hanging.
        for _ in 0..100_000 {
            ring.submit_and_poll().unwrap();
            ring.reap(&mut out);
            if !out.is_empty() {
                break;
            }
            std::hint::spin_loop();
        }
        assert_eq!(out.len(), 1, "no completion gathered by polling");
        assert_eq!((out[0].tag, out[0].result), (7, 4));
    }

    #[test]
    fn close_file_cancels_pending_reads_before_returning_fd() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (a, _b) = seqpacket_pair();
        let fa = ring.add_file(a);
        let bufs: Vec<BufId> = (0..4).map(|i| ring.alloc_buf(1024, i)).collect();
        for &b in &bufs {
            ring.push_read(fa, b, 0, false).unwrap();
        }
        ring.submit().unwrap();
        ring.close_file(fa);
        assert!(ring.take_file(fa).is_none(), "reads still in flight");
        let spare = ring.alloc_buf(8, 9);
        assert_eq!(
            ring.push_read(fa, spare, 0, false),
            Err(PushError::FileClosing)
        );
        let mut out = Vec::new();
        let mut n = 0;
        while n < 4 {
            wait_one(&mut ring, &mut out);
            assert!(out.iter().all(|c| c.result == -libc::ECANCELED));
            n += out.len();
        }
        assert!(ring.take_file(fa).is_some());
        for b in bufs {
            ring.free_buf(b);
        }
    }

    #[test]
    fn nowait_read_on_idle_socket_is_eagain() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (a, _b) = seqpacket_pair();
        let fa = ring.add_file(a);
        let buf = ring.alloc_buf(64, 0);
        ring.push_read(fa, buf, 0, true).unwrap();
        let mut out = Vec::new();
        wait_one(&mut ring, &mut out);
        assert_eq!(out[0].result, -libc::EAGAIN);
        // Poll fires once the peer writes.
        ring.push_poll_in(fa, 7).unwrap();
        rustix::io::write(&_b, b"x").unwrap();
        wait_one(&mut ring, &mut out);
        assert_eq!(out[0].kind, CompletionKind::PollIn);
        assert!(out[0].result & i32::from(libc::POLLIN) != 0);
    }

    #[test]
    fn drop_with_ops_in_flight_cancels_them() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (a, _b) = seqpacket_pair();
        let fa = ring.add_file(a);
        for i in 0..8 {
            let b = ring.alloc_buf(1024, i);
            ring.push_read(fa, b, 0, false).unwrap();
        }
        ring.submit().unwrap();
        drop(ring);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_now() > a);
    }
}
