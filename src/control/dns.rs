//! The daemon's embedded DNS at 127.0.0.11 inside each container, as Docker's: names
//! and aliases of the containers that share a network with the asker are answered from
//! the sans-IO [`NameTable`]; every other name goes to the host's resolver (the first
//! `nameserver` of /etc/resolv.conf), with the query ID rewritten so that answers from
//! upstream find their way back.
//!
//! One thread polls the sockets (a UDP socket and a TCP listener per container, bound
//! inside the container's namespace by the namespace helper) and one upstream socket.
//! The control thread changes the names and the socket set under two mutexes; the poll
//! wakes every 200 ms to pick the changes up, which is plenty for a control-plane rate.
//!
//! The same names are answered at each network's gateway address: the host-socket
//! engine, which receives the containers' packets to the gateway, asks them through
//! [`GatewayNames`] (the asker is the container that has the query's source address
//! on the network it came from) and sends other names to the host's resolvers itself.
//! TCP connections to the gateway's port 53 the engine connects to a listener of this
//! thread on the host's loopback, after telling it which container the connection
//! carries. The names' mutex is never held across I/O, so the engine never waits on a
//! socket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use tapnet_switch::dns::forward::{Forwarder, ForwarderConfig};
use tapnet_switch::dns::{DnsVerdict, NameTable};
use tapnet_switch::{NetworkId, PortId};

use super::dns_tcp::TcpQueries;
use crate::engine::LocalNames;
use crate::port::DnsSockets;

/// How long a forwarded query waits for upstream.
pub(super) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest DNS message handled (EDNS0 answers over UDP stay well below).
const MAX_MESSAGE: usize = 4096;
/// Queries waiting for upstream at once, in all and per container: a container that
/// floods unknown names has its own queries refused, not the others' forgotten.
const FORWARDER: ForwarderConfig = ForwarderConfig {
    capacity: 4096,
    per_client: 256,
    timeout: UPSTREAM_TIMEOUT,
};
/// How long the engine's note of a TCP connection to the gateway server waits for it.
const TCP_ASKER_TIMEOUT: Duration = Duration::from_secs(30);

/// The names, and which containers see which.
#[derive(Debug, Default)]
pub(super) struct Names {
    table: NameTable,
    /// Each container's lookup scope: the networks it is on.
    scopes: HashMap<String, Vec<NetworkId>>,
    /// The container of each endpoint.
    containers: HashMap<PortId, String>,
    /// The engine's connections to the gateway TCP server (by their local address):
    /// the network and address of the container each one carries, and since when.
    tcp_askers: HashMap<SocketAddr, (NetworkId, IpAddr, Instant)>,
}

impl Names {
    pub(super) fn scope_of(&self, container: &str) -> &[NetworkId] {
        self.scopes.get(container).map_or(&[], Vec::as_slice)
    }

    /// The scope of the container that has address `ip` on `network` (none if no
    /// container has it: only other names, forwarded, then).
    pub(super) fn scope_at(&self, network: NetworkId, ip: IpAddr) -> &[NetworkId] {
        self.table
            .endpoint_at(network, ip)
            .and_then(|port| self.containers.get(&port))
            .map_or(&[], |c| self.scope_of(c))
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The embedded DNS names for the engine, which answers queries to the networks'
/// gateway addresses with them.
#[derive(Debug)]
pub(crate) struct GatewayNames {
    names: Arc<Mutex<Names>>,
    /// The DNS thread's TCP listener on the host's loopback.
    tcp: Option<SocketAddr>,
}

impl LocalNames for GatewayNames {
    fn answer(&self, net: NetworkId, client: IpAddr, query: &[u8], out: &mut [u8]) -> DnsVerdict {
        let names = lock(&self.names);
        names.table.answer(query, names.scope_at(net, client), out)
    }

    fn tcp_server(&self) -> Option<SocketAddr> {
        self.tcp
    }

    fn tcp_client(&self, local: SocketAddr, net: NetworkId, client: IpAddr) {
        let now = Instant::now();
        let mut names = lock(&self.names);
        // Connections that never arrived are forgotten.
        names
            .tcp_askers
            .retain(|_, (_, _, since)| now.duration_since(*since) < TCP_ASKER_TIMEOUT);
        names.tcp_askers.insert(local, (net, client, now));
    }
}

/// The names of one endpoint (a container on a network) and its addresses there.
#[derive(Clone, Debug)]
pub(crate) struct EndpointNames {
    pub(crate) container: String,
    pub(crate) network: NetworkId,
    pub(crate) port: PortId,
    /// The container's name, then its aliases on this network.
    pub(crate) names: Vec<String>,
    pub(crate) ip: std::net::Ipv4Addr,
    pub(crate) ip6: Option<std::net::Ipv6Addr>,
}

/// Handle to the DNS thread.
#[derive(Debug)]
pub(crate) struct DnsService {
    names: Arc<Mutex<Names>>,
    /// Each container's 127.0.0.11 sockets.
    clients: Arc<Mutex<HashMap<String, DnsSockets>>>,
    /// The address of the TCP listener for queries at the gateways.
    gateway_tcp: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsService {
    /// Starts the thread; `upstream` is the host resolver other names go to.
    pub(crate) fn spawn(upstream: Option<IpAddr>) -> anyhow::Result<Self> {
        let names = Arc::new(Mutex::new(Names::default()));
        let clients = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream_socket = match upstream {
            Some(IpAddr::V4(_)) | None => UdpSocket::bind("0.0.0.0:0")?,
            Some(IpAddr::V6(_)) => UdpSocket::bind("[::]:0")?,
        };
        upstream_socket.set_nonblocking(true)?;
        let upstream = upstream.map(|ip| SocketAddr::new(ip, 53));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.set_nonblocking(true).map(|()| l));
        let (listener, gateway_tcp) = match listener {
            Ok(l) => {
                let addr = l.local_addr().ok();
                (Some(l), addr)
            }
            Err(e) => {
                tracing::warn!("DNS over TCP at the gateways goes to the host's resolver: {e}");
                (None, None)
            }
        };
        let thread = {
            let (names, clients, stop) =
                (Arc::clone(&names), Arc::clone(&clients), Arc::clone(&stop));
            let sockets = Sockets {
                upstream_socket,
                upstream,
                gateway_tcp: listener,
            };
            std::thread::Builder::new()
                .name("tapnet-dns".into())
                .spawn(move || run(&names, &clients, &stop, &sockets))?
        };
        Ok(Self {
            names,
            clients,
            gateway_tcp,
            stop,
            thread: Some(thread),
        })
    }

    /// The names, for the engine to answer at the gateway addresses.
    pub(crate) fn gateway_names(&self) -> Arc<dyn LocalNames> {
        Arc::new(GatewayNames {
            names: Arc::clone(&self.names),
            tcp: self.gateway_tcp,
        })
    }

    /// Serves a container's 127.0.0.11 sockets.
    pub(crate) fn add_client(&self, container: &str, sockets: DnsSockets) {
        lock(&self.clients).insert(container.to_owned(), sockets);
    }

    /// Stops serving a container (its sockets close).
    pub(crate) fn remove_client(&self, container: &str) {
        lock(&self.clients).remove(container);
    }

    /// Whether the container's sockets are served (they are bound once per namespace).
    pub(crate) fn has_client(&self, container: &str) -> bool {
        lock(&self.clients).contains_key(container)
    }

    /// Records the names of an endpoint and sets its container's lookup scope.
    pub(crate) fn set_endpoint(
        &self,
        endpoint: &EndpointNames,
        scope: Vec<NetworkId>,
    ) -> Result<(), String> {
        let mut names = lock(&self.names);
        names.scopes.insert(endpoint.container.clone(), scope);
        names
            .table
            .add(
                endpoint.network,
                endpoint.port,
                &endpoint.names,
                Some(endpoint.ip),
                endpoint.ip6,
            )
            .map_err(|e| e.to_string())?;
        names
            .containers
            .insert(endpoint.port, endpoint.container.clone());
        Ok(())
    }

    /// Forgets an endpoint's names and updates the container's scope.
    pub(crate) fn remove_endpoint(&self, container: &str, scope: Vec<NetworkId>, port: PortId) {
        let mut names = lock(&self.names);
        names.table.remove(port);
        names.containers.remove(&port);
        if scope.is_empty() {
            names.scopes.remove(container);
        } else {
            names.scopes.insert(container.to_owned(), scope);
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

/// The DNS thread's own sockets.
struct Sockets {
    /// Where forwarded UDP queries leave, and answers come back.
    upstream_socket: UdpSocket,
    /// The host's resolver.
    upstream: Option<SocketAddr>,
    /// Queries over TCP at the gateway addresses, connected by the engine.
    gateway_tcp: Option<TcpListener>,
}

fn run(
    names: &Arc<Mutex<Names>>,
    clients: &Mutex<HashMap<String, DnsSockets>>,
    stop: &AtomicBool,
    sockets: &Sockets,
) {
    let Sockets {
        upstream_socket,
        upstream,
        gateway_tcp,
    } = sockets;
    let upstream = *upstream;
    let origin = Instant::now();
    let wire_now = || {
        tapnet_wire::Instant::from_nanos(
            u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
        )
    };
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 53u16);
    // Queries sent upstream: charged to their container, answered at its socket.
    let mut forwarder: Forwarder<String, (String, SocketAddr)> = Forwarder::new(FORWARDER, seed);
    let mut tcp = TcpQueries::new(upstream);
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut out = vec![0u8; MAX_MESSAGE];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    while !stop.load(Ordering::Relaxed) {
        // Poll duplicates of the sockets, so the control thread is never kept waiting
        // on the lock while this thread sleeps.
        let watched: Vec<OwnedFd> = lock(clients)
            .values()
            .flat_map(|c| [c.udp.as_fd(), c.tcp.as_fd()])
            .filter_map(|fd| fd.try_clone_to_owned().ok())
            .collect();
        let mut fds: Vec<PollFd<'_>> = std::iter::once(upstream_socket.as_fd())
            .chain(gateway_tcp.as_ref().map(AsFd::as_fd))
            .chain(watched.iter().map(AsFd::as_fd))
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        let _ = poll(&mut fds, Some(&timeout));
        drop(fds);
        drop(watched);

        // TCP at the gateways: the scope is that of the container the engine said the
        // connection carries (none for a connection it did not announce). Each
        // connection is served on a worker of its own, bounded per container. The
        // engine's note may come after the accept (the connect completes at once on
        // loopback), but always before the query, which the engine passes on only
        // after it: so it is looked up when the query is in.
        while let Some(Ok((stream, peer))) = gateway_tcp.as_ref().map(TcpListener::accept) {
            let owner = lock(names).tcp_askers.get(&peer).map_or_else(
                || format!("gateway {peer}"),
                |(net, ip, _)| format!("gateway {}/{ip}", net.0),
            );
            let names = Arc::clone(names);
            tcp.serve(owner, stream, move |query, out| {
                let mut names = lock(&names);
                let asker = names.tcp_askers.remove(&peer);
                let scope = asker.map_or(&[][..], |(net, ip, _)| names.scope_at(net, ip));
                names.table.answer_tcp(query, scope, out)
            });
        }

        let clients = lock(clients);
        // Answers from upstream go back to the container that asked, with its ID.
        let now = wire_now();
        while let Ok((n, _)) = upstream_socket.recv_from(&mut buf) {
            let Some((container, client)) = forwarder.answer(now, &mut buf[..n]) else {
                continue;
            };
            if let Some(c) = clients.get(&container) {
                let _ = c.udp.send_to(&buf[..n], client);
            }
        }
        forwarder.handle_timeout(now);
        for (name, client) in clients.iter() {
            while let Ok((n, from)) = client.udp.recv_from(&mut buf) {
                let verdict = {
                    let names = lock(names);
                    names
                        .table
                        .answer(&buf[..n], names.scope_of(name), &mut out)
                };
                match verdict {
                    DnsVerdict::Answer { len } => {
                        let _ = client.udp.send_to(&out[..len], from);
                    }
                    DnsVerdict::Forward => {
                        let Some(upstream) = upstream else { continue };
                        let query = &mut buf[..n];
                        if forwarder
                            .forward(now, name.clone(), (name.clone(), from), query)
                            .is_ok()
                        {
                            let _ = upstream_socket.send_to(query, upstream);
                        }
                    }
                    DnsVerdict::Drop => {}
                }
            }
            while let Ok((stream, _)) = client.tcp.accept() {
                let names = Arc::clone(names);
                let container = name.clone();
                tcp.serve(name.clone(), stream, move |query, out| {
                    let names = lock(&names);
                    names
                        .table
                        .answer_tcp(query, names.scope_of(&container), out)
                });
            }
        }
    }
}
