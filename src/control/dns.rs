//! The daemon's embedded DNS at 127.0.0.11 inside each container, as Docker's: names
//! and aliases of the containers that share a network with the asker are answered from
//! the sans-IO [`NameTable`]; every other name goes to the host's resolver (the first
//! `nameserver` of /etc/resolv.conf), with the query ID rewritten so that answers from
//! upstream find their way back.
//!
//! One thread polls the sockets (a UDP socket and a TCP listener per container, bound
//! inside the container's namespace by the namespace helper) and one upstream socket.
//! The control thread changes the table and the socket set under a mutex; the poll
//! wakes every 200 ms to pick the changes up, which is plenty for a control-plane rate.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use tapnet_switch::NetworkId;
use tapnet_switch::dns::{DnsVerdict, NameTable};

use crate::port::DnsSockets;

/// How long a forwarded query waits for upstream.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest DNS message handled (EDNS0 answers over UDP stay well below).
const MAX_MESSAGE: usize = 4096;

/// One container's 127.0.0.11 sockets and the networks it is on (its lookup scope).
#[derive(Debug)]
struct Client {
    sockets: DnsSockets,
    scope: Vec<NetworkId>,
}

#[derive(Debug, Default)]
struct Shared {
    table: NameTable,
    clients: HashMap<String, Client>,
}

/// A query sent upstream on behalf of a container.
#[derive(Debug)]
struct Pending {
    container: String,
    client: SocketAddr,
    id: [u8; 2],
    deadline: Instant,
}

/// The names of one endpoint (a container on a network) and its addresses there.
#[derive(Clone, Debug)]
pub(crate) struct EndpointNames {
    pub(crate) container: String,
    pub(crate) network: NetworkId,
    pub(crate) port: tapnet_switch::PortId,
    /// The container's name, then its aliases on this network.
    pub(crate) names: Vec<String>,
    pub(crate) ip: std::net::Ipv4Addr,
    pub(crate) ip6: Option<std::net::Ipv6Addr>,
}

/// Handle to the DNS thread.
#[derive(Debug)]
pub(crate) struct DnsService {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsService {
    /// Starts the thread; `upstream` is the host resolver other names go to.
    pub(crate) fn spawn(upstream: Option<IpAddr>) -> anyhow::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream_socket = match upstream {
            Some(IpAddr::V4(_)) | None => UdpSocket::bind("0.0.0.0:0")?,
            Some(IpAddr::V6(_)) => UdpSocket::bind("[::]:0")?,
        };
        upstream_socket.set_nonblocking(true)?;
        let upstream = upstream.map(|ip| SocketAddr::new(ip, 53));
        let (thread_shared, thread_stop) = (Arc::clone(&shared), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("tapnet-dns".into())
            .spawn(move || run(&thread_shared, &thread_stop, &upstream_socket, upstream))?;
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves a container's 127.0.0.11 sockets.
    pub(crate) fn add_client(&self, container: &str, sockets: DnsSockets) {
        self.lock().clients.insert(
            container.to_owned(),
            Client {
                sockets,
                scope: Vec::new(),
            },
        );
    }

    /// Stops serving a container (its sockets close).
    pub(crate) fn remove_client(&self, container: &str) {
        self.lock().clients.remove(container);
    }

    /// Whether the container's sockets are served (they are bound once per namespace).
    pub(crate) fn has_client(&self, container: &str) -> bool {
        self.lock().clients.contains_key(container)
    }

    /// Records the names of an endpoint and sets its container's lookup scope.
    pub(crate) fn set_endpoint(
        &self,
        endpoint: &EndpointNames,
        scope: Vec<NetworkId>,
    ) -> Result<(), String> {
        let mut shared = self.lock();
        shared
            .table
            .add(
                endpoint.network,
                endpoint.port,
                &endpoint.names,
                Some(endpoint.ip),
                endpoint.ip6,
            )
            .map_err(|e| e.to_string())?;
        if let Some(client) = shared.clients.get_mut(&endpoint.container) {
            client.scope = scope;
        }
        Ok(())
    }

    /// Forgets an endpoint's names and updates the container's scope.
    pub(crate) fn remove_endpoint(
        &self,
        container: &str,
        scope: Vec<NetworkId>,
        port: tapnet_switch::PortId,
    ) {
        let mut shared = self.lock();
        shared.table.remove(port);
        if let Some(client) = shared.clients.get_mut(container) {
            client.scope = scope;
        }
    }

    /// Stops the thread and closes every socket.
    pub(crate) fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    upstream_socket: &UdpSocket,
    upstream: Option<SocketAddr>,
) {
    let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
    let mut pending: HashMap<u16, Pending> = HashMap::new();
    let mut next_id: u16 = 1;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut out = vec![0u8; MAX_MESSAGE];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    while !stop.load(Ordering::Relaxed) {
        // Poll duplicates of the sockets, so the control thread is never kept waiting
        // on the lock while this thread sleeps.
        let watched: Vec<OwnedFd> = lock()
            .clients
            .values()
            .flat_map(|c| [c.sockets.udp.as_fd(), c.sockets.tcp.as_fd()])
            .filter_map(|fd| fd.try_clone_to_owned().ok())
            .collect();
        let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(upstream_socket, PollFlags::IN))
            .chain(watched.iter().map(|fd| PollFd::new(fd, PollFlags::IN)))
            .collect();
        let _ = poll(&mut fds, Some(&timeout));
        drop(fds);
        drop(watched);

        let guard = lock();
        // Answers from upstream go back to the container that asked, with its ID.
        while let Ok((n, _)) = upstream_socket.recv_from(&mut buf) {
            let Some(p) = (n >= 12)
                .then(|| pending.remove(&u16::from_be_bytes([buf[0], buf[1]])))
                .flatten()
            else {
                continue;
            };
            buf[..2].copy_from_slice(&p.id);
            if let Some(c) = guard.clients.get(&p.container) {
                let _ = c.sockets.udp.send_to(&buf[..n], p.client);
            }
        }
        let now = Instant::now();
        pending.retain(|_, p| p.deadline > now);
        for (name, client) in &guard.clients {
            while let Ok((n, from)) = client.sockets.udp.recv_from(&mut buf) {
                match guard.table.answer(&buf[..n], &client.scope, &mut out) {
                    DnsVerdict::Answer { len } => {
                        let _ = client.sockets.udp.send_to(&out[..len], from);
                    }
                    DnsVerdict::Forward if n >= 12 => {
                        let Some(upstream) = upstream else { continue };
                        let id = next_id;
                        next_id = next_id.wrapping_add(1).max(1);
                        let deadline = now + UPSTREAM_TIMEOUT;
                        let original = [buf[0], buf[1]];
                        pending.insert(
                            id,
                            Pending {
                                container: name.clone(),
                                client: from,
                                id: original,
                                deadline,
                            },
                        );
                        buf[..2].copy_from_slice(&id.to_be_bytes());
                        let _ = upstream_socket.send_to(&buf[..n], upstream);
                    }
                    DnsVerdict::Forward | DnsVerdict::Drop => {}
                }
            }
            // TCP (RFC 7766): resolvers retry truncated answers over TCP with one
            // query per connection; answer it and close.
            while let Ok((mut stream, _)) = client.sockets.tcp.accept() {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).is_err() {
                    continue;
                }
                let n = usize::from(u16::from_be_bytes(len)).min(MAX_MESSAGE);
                if stream.read_exact(&mut buf[..n]).is_err() {
                    continue;
                }
                let reply = match guard.table.answer_tcp(&buf[..n], &client.scope, &mut out) {
                    DnsVerdict::Answer { len } => Some(out[..len].to_vec()),
                    DnsVerdict::Forward => upstream.and_then(|u| forward_tcp(u, &buf[..n])),
                    DnsVerdict::Drop => None,
                };
                if let Some(reply) = reply
                    && let Ok(len) = u16::try_from(reply.len())
                {
                    let _ = stream.write_all(&len.to_be_bytes());
                    let _ = stream.write_all(&reply);
                }
            }
        }
    }
}

/// Asks `upstream` over TCP and returns its answer (blocking, bounded by timeouts).
fn forward_tcp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&upstream, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    let len = u16::try_from(query.len()).ok()?;
    stream.write_all(&len.to_be_bytes()).ok()?;
    stream.write_all(query).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).ok()?;
    Some(reply)
}
