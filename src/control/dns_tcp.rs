//! DNS over TCP (RFC 7766) for the embedded DNS: each connection is served on a short
//! worker thread of its own, so that a client that connects and sends nothing, or
//! trickles its query a byte at a time, holds up nobody else. A connection has a
//! deadline for the whole exchange (not per read), and the workers are bounded in
//! total and per container: beyond the bound a new connection is closed at once (the
//! client's resolver retries or falls back to UDP), never queued behind the others.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tapnet_switch::dns::DnsVerdict;

use super::dns::{UPSTREAM_TIMEOUT, lock};

/// How long one connection may take, from accept to answer.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(3);
/// Most connections served at once, in all and per container.
const MAX_CONNECTIONS: usize = 64;
const MAX_PER_OWNER: usize = 4;
/// Largest DNS message over TCP (the two-byte length's range).
const MAX_MESSAGE: usize = 65535;

/// The workers, by owner (a container name).
#[derive(Debug)]
pub(super) struct TcpQueries {
    upstream: Option<SocketAddr>,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl TcpQueries {
    pub(super) fn new(upstream: Option<SocketAddr>) -> Self {
        Self {
            upstream,
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Serves `stream` for `owner` on a worker: the query is answered with `answer`
    /// (which must not block) or forwarded upstream over TCP. Closes it at once when
    /// the owner, or everybody, has the most connections served.
    pub(super) fn serve(
        &mut self,
        owner: String,
        stream: TcpStream,
        answer: impl FnOnce(&[u8], &mut [u8]) -> DnsVerdict + Send + 'static,
    ) {
        {
            let mut running = lock(&self.running);
            let total: usize = running.values().sum();
            let mine = running.get(&owner).copied().unwrap_or(0);
            if total >= MAX_CONNECTIONS || mine >= MAX_PER_OWNER {
                tracing::debug!(owner, "DNS over TCP: too many connections; closed");
                return;
            }
            *running.entry(owner.clone()).or_insert(0) += 1;
        }
        let running = Arc::clone(&self.running);
        let upstream = self.upstream;
        let release = move |owner: &str| {
            let mut running = lock(&running);
            if let Some(n) = running.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    running.remove(owner);
                }
            }
        };
        let spawned = std::thread::Builder::new()
            .name("tapnet-dns-tcp".into())
            .spawn({
                let owner = owner.clone();
                let release = release.clone();
                move || {
                    let deadline = Instant::now() + CONNECTION_DEADLINE;
                    if let Err(e) = exchange(stream, deadline, upstream, answer) {
                        tracing::debug!(owner, "DNS over TCP: {e}");
                    }
                    release(&owner);
                }
            });
        if spawned.is_err() {
            release(&owner);
        }
    }
}

/// Reads exactly `buf.len()` bytes before `deadline`.
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(io::ErrorKind::TimedOut)?;
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One query and its answer on a connection (resolvers retry a truncated answer over
/// TCP with one query per connection), then the connection is closed.
fn exchange(
    mut stream: TcpStream,
    deadline: Instant,
    upstream: Option<SocketAddr>,
    answer: impl FnOnce(&[u8], &mut [u8]) -> DnsVerdict,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut len = [0u8; 2];
    read_by(&mut stream, &mut len, deadline)?;
    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_by(&mut stream, &mut query, deadline)?;
    let mut out = vec![0u8; MAX_MESSAGE];
    let reply = match answer(&query, &mut out) {
        DnsVerdict::Answer { len } => Some(out[..len].to_vec()),
        DnsVerdict::Forward => upstream.and_then(|u| forward(u, &query)),
        DnsVerdict::Drop => None,
    };
    if let Some(reply) = reply
        && let Ok(len) = u16::try_from(reply.len())
    {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or(Duration::from_millis(1))
            .max(Duration::from_millis(1));
        stream.set_write_timeout(Some(left))?;
        stream.write_all(&len.to_be_bytes())?;
        stream.write_all(&reply)?;
    }
    Ok(())
}

/// Asks `upstream` over TCP and returns its answer (bounded by timeouts).
fn forward(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)).ok()?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let len = u16::try_from(query.len()).ok()?;
    stream.set_write_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    stream.write_all(&len.to_be_bytes()).ok()?;
    stream.write_all(query).ok()?;
    let mut len = [0u8; 2];
    read_by(&mut stream, &mut len, deadline).ok()?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_by(&mut stream, &mut reply, deadline).ok()?;
    Some(reply)
}
