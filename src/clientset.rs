//! A non-blocking request server on a unix stream socket, for a single-threaded loop:
//! the daemon's control socket and the slirp4netns API socket.
//!
//! Every client is served at the same time and none can hold the others up: the set
//! accepts every pending connection, reads and writes without blocking, buffers each
//! connection's input and output, and hands complete requests to its owner in the
//! order they completed, one at a time, so the owner executes them on its own thread
//! against a consistent state. A [`Framing`] says where a request ends. Bounds:
//!
//! - a request must be complete within [`Limits::request_deadline`] of the connection's
//!   accept or of its previous response, and at most [`Framing::max_request`] bytes;
//! - a response must be taken by the client within [`Limits::response_deadline`];
//!   until then the connection reads nothing more (it cannot pile up answers);
//! - at most [`Limits::max_clients`] connections are open: a new one closes the
//!   connection that has waited longest (so stalled clients never lock others out);
//! - after its last response a connection shuts its write side and discards what the
//!   client still sends, for at most [`Limits::linger`], before closing: closing a
//!   unix socket with unread input would reset the client before it read its answer.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use serde::{Deserialize, Serialize};

/// How a protocol cuts its input into requests.
pub(crate) trait Framing {
    /// The most bytes of one request; more is [`Frame::Reject`]ed or cut by `frame`.
    fn max_request(&self) -> usize;
    /// Where the first request of `input` ends; `eof`: the client sends nothing more.
    /// Must not answer [`Frame::Incomplete`] once `input` holds `max_request` bytes.
    fn frame(&self, input: &[u8], eof: bool) -> Frame;
    /// What to do when the deadline passes with only `input` received.
    fn expired(&self, input: &[u8]) -> Expired;
    /// What to tell a client whose connection is closed to make room for another.
    fn evicted(&self) -> Option<Vec<u8>> {
        None
    }
}

/// The verdict of [`Framing::frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Wait for more bytes (at end of input: the client left without a request).
    Incomplete,
    /// The first `len` bytes are one request; `last`: no other follows on this
    /// connection, which closes once answered.
    Request { len: usize, last: bool },
    /// Answer this and close (a request over the size bound).
    Reject(Vec<u8>),
}

/// The verdict of [`Framing::expired`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Take what arrived as the connection's last request.
    AsRequest,
    /// Answer this and close.
    Reject(Vec<u8>),
}

/// The bounds of a [`ClientSet`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_clients: usize,
    pub(crate) request_deadline: Duration,
    pub(crate) response_deadline: Duration,
    pub(crate) linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_clients: 128,
            request_deadline: Duration::from_secs(5),
            response_deadline: Duration::from_secs(5),
            linger: Duration::from_secs(1),
        }
    }
}

/// Counters of a [`ClientSet`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ClientStats {
    /// Connections open now.
    pub(crate) connected: usize,
    pub(crate) accepted: u64,
    /// Requests handed to the owner.
    pub(crate) requests: u64,
    /// Connections whose request was not complete within the deadline.
    pub(crate) timed_out: u64,
    /// Requests over the size bound.
    pub(crate) too_long: u64,
    /// Connections closed to make room for a new one.
    pub(crate) evicted: u64,
    /// Connections closed because the client did not read its response in time.
    pub(crate) unread_responses: u64,
}

/// One connection of a [`ClientSet`], named in [`ClientSet::next_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientId(u64);

/// What a [`ClientSet::poll`] saw besides its own connections.
#[derive(Debug)]
pub(crate) struct Polled {
    /// The events of the caller's extra fds, in their order.
    pub(crate) extra: Vec<PollFlags>,
    /// Connections accepted.
    pub(crate) accepted: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request.
    Reading,
    /// A complete request is with the owner.
    Queued,
    /// The response is being written; `close` after it.
    Writing { close: bool },
    /// Answered, write side shut: discarding input until the client closes.
    Lingering,
}

#[derive(Debug)]
struct Conn {
    id: ClientId,
    stream: UnixStream,
    input: Vec<u8>,
    eof: bool,
    /// The request while it is with the owner.
    request: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    phase: Phase,
    /// When the current phase's deadline started.
    since: Instant,
    /// The queued request is the connection's last.
    last: bool,
    /// Answered: its input may hold the next request, looked at in the next poll (so
    /// that a client pipelining requests takes its turn with the others).
    reframe: bool,
    closed: bool,
}

/// How long accepting pauses after an error such as EMFILE, so that a listener that
/// stays readable does not spin the loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The connections of one listening socket; see the module documentation.
#[derive(Debug)]
pub(crate) struct ClientSet<F> {
    listener: UnixListener,
    framing: F,
    limits: Limits,
    conns: Vec<Conn>,
    ready: VecDeque<ClientId>,
    next_id: u64,
    accept_paused_until: Option<Instant>,
    stats: ClientStats,
}

impl<F: Framing> ClientSet<F> {
    /// Serves `listener` (made non-blocking here).
    pub(crate) fn new(listener: UnixListener, framing: F, limits: Limits) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            framing,
            limits,
            conns: Vec::new(),
            ready: VecDeque::new(),
            next_id: 0,
            accept_paused_until: None,
            stats: ClientStats::default(),
        })
    }

    pub(crate) fn stats(&self) -> ClientStats {
        ClientStats {
            connected: self.conns.iter().filter(|c| !c.closed).count(),
            ..self.stats
        }
    }

    /// Waits for the listener, the connections and the caller's `extra` fds, for at
    /// most `wait` (`None`: until something happens) and never past the nearest
    /// deadline; then accepts, reads, writes and expires what is due. Complete
    /// requests are then waiting in [`next_request`](Self::next_request).
    pub(crate) fn poll(
        &mut self,
        extra: &[(BorrowedFd<'_>, PollFlags)],
        wait: Option<Duration>,
    ) -> io::Result<Polled> {
        let now = Instant::now();
        let until_deadline = if self.conns.iter().any(|c| c.reframe && !c.closed) {
            Some(Duration::ZERO)
        } else {
            self.nearest_deadline()
                .map(|d| d.saturating_duration_since(now))
        };
        let timeout = match (until_deadline, wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = timeout.map(|t| {
            rustix::event::Timespec::try_from(t).unwrap_or(rustix::event::Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let accepting = self.accept_paused_until.is_none_or(|t| now >= t);
        let mut fds: Vec<PollFd<'_>> = extra
            .iter()
            .map(|&(fd, flags)| PollFd::from_borrowed_fd(fd, flags))
            .collect();
        let listen_flags = if accepting {
            PollFlags::IN
        } else {
            PollFlags::empty()
        };
        fds.push(PollFd::new(&self.listener, listen_flags));
        for conn in &self.conns {
            fds.push(PollFd::from_borrowed_fd(
                conn.stream.as_fd(),
                conn.interest(),
            ));
        }
        let revents: Vec<PollFlags> = match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => fds.iter().map(PollFd::revents).collect(),
            Err(rustix::io::Errno::INTR) => vec![PollFlags::empty(); fds.len()],
            Err(e) => return Err(e.into()),
        };
        drop(fds);
        let (extra_events, own) = revents.split_at(extra.len());
        let (listener_events, conn_events) = own.split_at(1);
        for (i, events) in conn_events.iter().enumerate() {
            if !events.is_empty() {
                self.service(i);
            }
            if std::mem::take(&mut self.conns[i].reframe) {
                self.frame(i);
            }
        }
        let accepted = if accepting && !listener_events[0].is_empty() {
            self.accept_pending()
        } else {
            0
        };
        self.expire(Instant::now());
        self.conns.retain(|c| !c.closed);
        Ok(Polled {
            extra: extra_events.to_vec(),
            accepted,
        })
    }

    /// The next complete request, in the order they completed.
    pub(crate) fn next_request(&mut self) -> Option<(ClientId, Vec<u8>)> {
        while let Some(id) = self.ready.pop_front() {
            let Some(conn) = self.conns.iter_mut().find(|c| c.id == id && !c.closed) else {
                continue;
            };
            if conn.phase != Phase::Queued {
                continue;
            }
            let request = self.take_request(id);
            self.stats.requests += 1;
            return Some((id, request));
        }
        None
    }

    /// Sends the response to the request of `id` (without blocking: what the socket
    /// does not take now is written as the client reads).
    pub(crate) fn respond(&mut self, id: ClientId, response: Vec<u8>) {
        let Some(i) = self.conns.iter().position(|c| c.id == id && !c.closed) else {
            return;
        };
        let close = self.conns[i].last;
        self.start_writing(i, response, close);
    }

    fn take_request(&mut self, id: ClientId) -> Vec<u8> {
        let conn = self
            .conns
            .iter_mut()
            .find(|c| c.id == id)
            .expect("queued connection exists");
        std::mem::take(&mut conn.request)
    }

    fn nearest_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter(|c| !c.closed)
            .filter_map(|c| c.deadline(&self.limits))
            .min()
    }

    /// Accepts what is pending (at most `max_clients` per call, so that a flood of
    /// connections cannot keep the loop here).
    fn accept_pending(&mut self) -> usize {
        let mut accepted = 0;
        while accepted < self.limits.max_clients {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    accepted += 1;
                    self.stats.accepted += 1;
                    if self.conns.iter().filter(|c| !c.closed).count() >= self.limits.max_clients {
                        self.evict_one();
                    }
                    self.conns.push(Conn {
                        id: ClientId(self.next_id),
                        stream,
                        input: Vec::new(),
                        eof: false,
                        request: Vec::new(),
                        output: Vec::new(),
                        written: 0,
                        phase: Phase::Reading,
                        since: Instant::now(),
                        last: false,
                        reframe: false,
                        closed: false,
                    });
                    self.next_id += 1;
                    // The request is often there already.
                    self.service(self.conns.len() - 1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: try again a little later.
                    tracing::warn!("accept: {e}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    break;
                }
            }
        }
        accepted
    }

    /// Closes the connection that has waited longest (one already answered first).
    fn evict_one(&mut self) {
        let victim = self
            .conns
            .iter_mut()
            .filter(|c| !c.closed && c.phase != Phase::Queued)
            .min_by_key(|c| (c.phase != Phase::Lingering, c.since));
        let Some(conn) = victim else {
            return;
        };
        if conn.phase != Phase::Lingering {
            self.stats.evicted += 1;
            tracing::debug!("client {}: closed to make room for a new one", conn.id.0);
            // One attempt, and only between responses: this client gets no more of
            // our time.
            if conn.phase == Phase::Reading
                && let Some(message) = self.framing.evicted()
            {
                let _ = conn.stream.write(&message);
            }
        }
        conn.closed = true;
    }

    /// Does what connection `i`'s phase wants after an event.
    fn service(&mut self, i: usize) {
        match self.conns[i].phase {
            Phase::Reading => {
                self.read_input(i);
                self.frame(i);
            }
            Phase::Writing { .. } => self.flush(i),
            Phase::Lingering => self.discard_input(i),
            Phase::Queued => {}
        }
    }

    fn read_input(&mut self, i: usize) {
        let max = self.framing.max_request();
        let conn = &mut self.conns[i];
        let mut chunk = [0u8; 4096];
        while !conn.eof {
            let room = max.saturating_sub(conn.input.len()).min(chunk.len());
            if room == 0 {
                break;
            }
            match conn.stream.read(&mut chunk[..room]) {
                Ok(0) => conn.eof = true,
                Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.closed = true;
                    return;
                }
            }
        }
    }

    /// Queues connection `i`'s next request if its input holds one.
    fn frame(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if conn.closed || conn.phase != Phase::Reading {
            return;
        }
        match self.framing.frame(&conn.input, conn.eof) {
            Frame::Incomplete if conn.eof => conn.closed = true,
            Frame::Incomplete => {}
            Frame::Request { len, last } => self.queue(i, len, last),
            Frame::Reject(answer) => {
                self.stats.too_long += 1;
                self.start_writing(i, answer, true);
            }
        }
    }

    /// Moves the first `len` bytes of connection `i`'s input into its request and
    /// queues it.
    fn queue(&mut self, i: usize, len: usize, last: bool) {
        let conn = &mut self.conns[i];
        let len = len.min(conn.input.len());
        conn.request = conn.input.drain(..len).collect();
        conn.last = last;
        conn.phase = Phase::Queued;
        self.ready.push_back(conn.id);
    }

    fn start_writing(&mut self, i: usize, response: Vec<u8>, close: bool) {
        let conn = &mut self.conns[i];
        conn.output = response;
        conn.written = 0;
        conn.phase = Phase::Writing { close };
        conn.since = Instant::now();
        self.flush(i);
    }

    /// Writes what the socket takes of connection `i`'s response; once all is sent,
    /// goes on to the next request or to closing.
    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Phase::Writing { close } = conn.phase else {
            return;
        };
        while conn.written < conn.output.len() {
            match conn.stream.write(&conn.output[conn.written..]) {
                Ok(0) => {
                    conn.closed = true;
                    return;
                }
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.closed = true;
                    return;
                }
            }
        }
        conn.output = Vec::new();
        conn.written = 0;
        conn.since = Instant::now();
        if close {
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            conn.phase = Phase::Lingering;
            conn.input = Vec::new();
            if conn.eof {
                conn.closed = true;
            } else {
                self.discard_input(i);
            }
        } else {
            conn.phase = Phase::Reading;
            // A pipelined request may be buffered already.
            conn.reframe = true;
        }
    }

    fn discard_input(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let mut chunk = [0u8; 4096];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    conn.closed = true;
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.closed = true;
                    return;
                }
            }
        }
    }

    /// Handles every deadline that has passed.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let conn = &mut self.conns[i];
            if conn.closed || conn.deadline(&self.limits).is_none_or(|d| now < d) {
                continue;
            }
            match conn.phase {
                Phase::Reading => {
                    self.stats.timed_out += 1;
                    tracing::debug!(
                        "client {}: no complete request within {:?} ({} bytes)",
                        conn.id.0,
                        self.limits.request_deadline,
                        conn.input.len()
                    );
                    match self.framing.expired(&conn.input) {
                        Expired::AsRequest => {
                            let len = conn.input.len();
                            self.queue(i, len, true);
                        }
                        Expired::Reject(answer) => self.start_writing(i, answer, true),
                    }
                }
                Phase::Writing { .. } => {
                    self.stats.unread_responses += 1;
                    tracing::debug!(
                        "client {}: response not read within {:?}",
                        conn.id.0,
                        self.limits.response_deadline
                    );
                    conn.closed = true;
                }
                Phase::Lingering | Phase::Queued => conn.closed = true,
            }
        }
    }
}

impl Conn {
    fn interest(&self) -> PollFlags {
        match self.phase {
            Phase::Reading | Phase::Lingering if !self.closed => PollFlags::IN,
            Phase::Writing { .. } if !self.closed => PollFlags::OUT,
            _ => PollFlags::empty(),
        }
    }

    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let bound = match self.phase {
            Phase::Reading => limits.request_deadline,
            Phase::Writing { .. } => limits.response_deadline,
            Phase::Lingering => limits.linger,
            Phase::Queued => return None,
        };
        Some(self.since + bound)
    }
}

/// Newline-delimited requests of at most `max` bytes each (the newline included); at
/// the end of input, what remains is the last request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lines {
    pub(crate) max: usize,
}

impl Lines {
    /// Where the first line of `input` ends: `Ok(Some(len))` for a request, `Ok(None)`
    /// to wait, `Err(())` when no newline comes within `max` bytes.
    pub(crate) fn cut(&self, input: &[u8], eof: bool) -> Result<Option<(usize, bool)>, ()> {
        let window = &input[..input.len().min(self.max)];
        if let Some(newline) = window.iter().position(|&b| b == b'\n') {
            return Ok(Some((newline + 1, false)));
        }
        if input.len() >= self.max {
            return Err(());
        }
        if eof && !input.is_empty() {
            return Ok(Some((input.len(), true)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines, with fixed answers for rejects and expiry.
    struct TestLines(Lines);

    impl Framing for TestLines {
        fn max_request(&self) -> usize {
            self.0.max
        }
        fn frame(&self, input: &[u8], eof: bool) -> Frame {
            match self.0.cut(input, eof) {
                Ok(Some((len, last))) => Frame::Request { len, last },
                Ok(None) => Frame::Incomplete,
                Err(()) => Frame::Reject(b"too long\n".to_vec()),
            }
        }
        fn expired(&self, _: &[u8]) -> Expired {
            Expired::Reject(b"late\n".to_vec())
        }
        fn evicted(&self) -> Option<Vec<u8>> {
            Some(b"evicted\n".to_vec())
        }
    }

    struct Fixture {
        set: ClientSet<TestLines>,
        path: std::path::PathBuf,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(name: &str, limits: Limits) -> Fixture {
        let dir =
            std::env::temp_dir().join(format!("tapnet-clientset-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let set = ClientSet::new(listener, TestLines(Lines { max: 64 }), limits).unwrap();
        Fixture { set, path, dir }
    }

    /// Polls briefly and answers every request with its own bytes upper-cased.
    fn turn(set: &mut ClientSet<TestLines>) -> Vec<Vec<u8>> {
        set.poll(&[], Some(Duration::from_millis(20))).unwrap();
        let mut seen = Vec::new();
        while let Some((id, request)) = set.next_request() {
            set.respond(id, request.to_ascii_uppercase());
            seen.push(request);
        }
        seen
    }

    /// One line, read a byte at a time so that the next line stays in the socket.
    fn read_line(mut stream: &UnixStream) -> String {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8];
        while line.last() != Some(&b'\n') && stream.read(&mut byte).unwrap() == 1 {
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn lines_are_cut_at_newlines_within_the_bound() {
        let lines = Lines { max: 8 };
        assert_eq!(lines.cut(b"", false), Ok(None));
        assert_eq!(lines.cut(b"", true), Ok(None));
        assert_eq!(lines.cut(b"ab", false), Ok(None));
        assert_eq!(lines.cut(b"ab", true), Ok(Some((2, true))));
        assert_eq!(lines.cut(b"ab\ncd", false), Ok(Some((3, false))));
        assert_eq!(lines.cut(b"1234567\n", false), Ok(Some((8, false))));
        assert_eq!(lines.cut(b"12345678", false), Err(()));
        assert_eq!(lines.cut(b"12345678\n", false), Err(()));
    }

    #[test]
    fn a_silent_client_does_not_hold_up_another() {
        let mut f = fixture("silent", Limits::default());
        let _silent = UnixStream::connect(&f.path).unwrap();
        let mut half = UnixStream::connect(&f.path).unwrap();
        half.write_all(b"half a li").unwrap();
        let mut client = UnixStream::connect(&f.path).unwrap();
        client.write_all(b"one\ntwo\n").unwrap();
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.extend(turn(&mut f.set));
        }
        assert_eq!(seen, vec![b"one\n".to_vec(), b"two\n".to_vec()]);
        assert_eq!(read_line(&client), "ONE\n");
        assert_eq!(read_line(&client), "TWO\n");
        let stats = f.set.stats();
        assert_eq!((stats.connected, stats.accepted, stats.requests), (3, 3, 2));
    }

    #[test]
    fn an_incomplete_request_expires_with_an_answer() {
        let limits = Limits {
            request_deadline: Duration::from_millis(100),
            ..Limits::default()
        };
        let mut f = fixture("expire", limits);
        let mut slow = UnixStream::connect(&f.path).unwrap();
        slow.write_all(b"partial").unwrap();
        let start = Instant::now();
        while f.set.stats().timed_out == 0 && start.elapsed() < Duration::from_secs(5) {
            assert!(turn(&mut f.set).is_empty());
        }
        assert_eq!(read_line(&slow), "late\n");
        // The server shut its side: the client reads the end.
        let mut rest = Vec::new();
        slow.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn an_over_long_request_is_rejected_and_closed() {
        let mut f = fixture("long", Limits::default());
        let mut client = UnixStream::connect(&f.path).unwrap();
        client.write_all(&[b'x'; 100]).unwrap();
        assert!(turn(&mut f.set).is_empty());
        assert_eq!(read_line(&client), "too long\n");
        assert_eq!(f.set.stats().too_long, 1);
    }

    #[test]
    fn a_request_at_end_of_input_is_answered_then_closed() {
        let mut f = fixture("eof", Limits::default());
        let mut client = UnixStream::connect(&f.path).unwrap();
        client.write_all(b"last").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(turn(&mut f.set), vec![b"last".to_vec()]);
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "LAST");
        turn(&mut f.set);
        assert_eq!(f.set.stats().connected, 0);
    }

    #[test]
    fn a_client_that_does_not_read_blocks_nothing_and_is_dropped() {
        let limits = Limits {
            response_deadline: Duration::from_millis(200),
            ..Limits::default()
        };
        let mut f = fixture("unread", limits);
        let mut hog = UnixStream::connect(&f.path).unwrap();
        hog.write_all(b"big\n").unwrap();
        f.set.poll(&[], Some(Duration::from_millis(20))).unwrap();
        let (id, _) = f.set.next_request().unwrap();
        // Far more than a socket buffer holds: the rest waits in the set.
        f.set.respond(id, vec![b'y'; 8 << 20]);
        let mut client = UnixStream::connect(&f.path).unwrap();
        client.write_all(b"small\n").unwrap();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend(turn(&mut f.set));
        }
        assert_eq!(seen, vec![b"small\n".to_vec()]);
        assert_eq!(read_line(&client), "SMALL\n");
        let start = Instant::now();
        while f.set.stats().unread_responses == 0 && start.elapsed() < Duration::from_secs(5) {
            turn(&mut f.set);
        }
        assert_eq!(f.set.stats().unread_responses, 1);
        assert_eq!(f.set.stats().connected, 1);
    }

    #[test]
    fn past_the_bound_the_longest_waiting_client_is_evicted() {
        let limits = Limits {
            max_clients: 3,
            ..Limits::default()
        };
        let mut f = fixture("evict", limits);
        let oldest = UnixStream::connect(&f.path).unwrap();
        turn(&mut f.set);
        let _stalled: Vec<UnixStream> = (0..2)
            .map(|_| UnixStream::connect(&f.path).unwrap())
            .collect();
        turn(&mut f.set);
        let mut client = UnixStream::connect(&f.path).unwrap();
        client.write_all(b"hello\n").unwrap();
        turn(&mut f.set);
        assert_eq!(read_line(&client), "HELLO\n");
        assert_eq!(read_line(&oldest), "evicted\n");
        let stats = f.set.stats();
        assert_eq!((stats.evicted, stats.connected), (1, 3));
    }
}
