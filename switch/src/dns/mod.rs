//! Sans-IO embedded DNS: the per-network name service Docker runs at 127.0.0.11.
//!
//! A [`NameTable`] holds, per network, the names and aliases of the containers
//! attached to it and their addresses on that network. [`NameTable::answer`] takes one
//! DNS query (the UDP payload, RFC 1035 4.1) and the networks the asking container is
//! connected to, and either writes a complete response into the caller's buffer or
//! says the query must go to the host's resolvers ([`DnsVerdict::Forward`]), as Docker
//! forwards every name it does not own.
//!
//! Layer: sans-IO core. No syscall, no thread, no clock, no `unsafe`; answering a
//! query does not allocate. The shell owns the sockets (at the gateway address and at
//! 127.0.0.11 inside each container) and the upstream forwarding.
//!
//! Docker's rules, as implemented here:
//!
//! - a container resolves the names of the containers that share a network with it
//!   (the `scope`); the answer carries the address on the shared network. When the
//!   name exists on several networks of the scope, the first network in `scope` order
//!   wins (Docker walks the asking sandbox's endpoints in order);
//! - an alias may be shared by several containers of a network: every address is
//!   returned (Docker's DNS round robin);
//! - names are compared ASCII case-insensitively (RFC 4343), with or without the
//!   trailing dot; only the bare name is matched (no `name.network` and no search
//!   domain);
//! - a name that exists without an address of the asked type gets NOERROR with no
//!   records (NODATA, RFC 2308 2.2); a name that does not exist is forwarded;
//! - PTR queries for `in-addr.arpa`/`ip6.arpa` names of container addresses in scope
//!   are answered with the container's first name; others are forwarded;
//! - answers have a TTL of [`DEFAULT_TTL`] seconds (Docker's 600).
//!
//! Message handling:
//!
//! - responses (QR set) are dropped, never answered, so that two resolvers cannot loop;
//! - an opcode other than QUERY gets NOTIMP; a query with a question count other than
//!   one (RFC 9619), a bad name or a truncated section gets FORMERR; both are header-only
//!   responses. Input shorter than a header is dropped;
//! - EDNS(0) (RFC 6891): an OPT record in the query is echoed as a minimal OPT in the
//!   response (payload size [`EDNS_PAYLOAD`], no options); a second OPT is FORMERR
//!   (6.1.1); a version other than 0 is BADVERS (6.1.3);
//! - UDP responses are limited to 512 bytes (RFC 1035 4.2.1) or the client's EDNS
//!   payload size; a response whose records do not fit is sent with TC set and no
//!   records, so that the client retries over TCP (RFC 2181 9, RFC 7766).

pub mod forward;
mod message;
#[cfg(test)]
mod tests;

#[doc(hidden)]
pub mod forward_fuzzing;
#[doc(hidden)]
pub mod fuzzing;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use crate::{NetworkId, PortId};
use message::{Query, Rcode, ResponseWriter};

/// TTL of the records we answer, in seconds: Docker's embedded DNS uses 600.
pub const DEFAULT_TTL: u32 = 600;

/// The UDP payload size we advertise in our OPT record (the 2020 DNS flag day value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Longest name we store or answer, in presentation form without the trailing dot
/// (RFC 1035 2.3.4: 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 253;

/// Record types (RFC 1035 3.2.2, RFC 3596 2.1).
const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
/// Class IN (RFC 1035 3.2.4).
const CLASS_IN: u16 = 1;

/// What to do with a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum DnsVerdict {
    /// Send `out[..len]` back to the client: an answer, NODATA, or an error response
    /// (FORMERR, NOTIMP, BADVERS).
    Answer {
        /// Length of the response written at the start of the output buffer.
        len: usize,
    },
    /// Not one of our names: send the query, unchanged, to the host's resolvers and
    /// relay their answer.
    Forward,
    /// Ignore the datagram (a response, fewer bytes than a header, or an output
    /// buffer too small for a response).
    Drop,
}

/// Why [`NameTable::add`] refused a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// A name is not a DNS name we can serve: empty, longer than [`MAX_NAME_LEN`], an
    /// empty or longer than 63-byte label, or a character other than ASCII letters,
    /// digits, `-` and `_`.
    #[error("invalid DNS name {0:?}")]
    InvalidName(String),
}

/// One container's record on one network.
#[derive(Clone, Debug)]
struct Record {
    network: NetworkId,
    /// Normalised (lower case, no trailing dot), de-duplicated; the first is the
    /// container's name, used for PTR answers.
    names: Vec<Box<str>>,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

/// The names of one network.
#[derive(Clone, Debug, Default)]
struct NetworkNames {
    /// Name -> endpoints carrying it, in the order they were added.
    by_name: HashMap<Box<str>, Vec<PortId>>,
    /// Endpoints of this network, for reverse look-ups.
    ports: Vec<PortId>,
}

/// Addresses a name resolves to for a given scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The network whose records answered (the first of the scope that has the name).
    pub network: NetworkId,
    /// IPv4 addresses, in the order the endpoints were added.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses, in the order the endpoints were added.
    pub v6: Vec<Ipv6Addr>,
}

/// Names and aliases of the containers of every network, and the responder.
///
/// Records are keyed by the endpoint's [`PortId`] (one container attachment to one
/// network), so that a disconnect removes exactly that network's names.
#[derive(Clone, Debug)]
pub struct NameTable {
    records: HashMap<PortId, Record>,
    networks: HashMap<NetworkId, NetworkNames>,
    ttl: u32,
}

impl Default for NameTable {
    fn default() -> Self {
        Self::new()
    }
}

impl NameTable {
    /// An empty table answering with [`DEFAULT_TTL`].
    pub fn new() -> Self {
        Self::with_ttl(DEFAULT_TTL)
    }

    /// An empty table answering with the given TTL (seconds).
    pub fn with_ttl(ttl: u32) -> Self {
        Self {
            records: HashMap::new(),
            networks: HashMap::new(),
            ttl,
        }
    }

    /// Number of endpoint records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Is the table empty?
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Registers the endpoint `port` (a container attached to `network`) with its
    /// names (the container name first, then its aliases; the daemon may add the short
    /// container id and hostname as Docker does) and its addresses on that network.
    /// Replaces an earlier record of `port`. Names are matched case-insensitively and
    /// may carry a trailing dot. Nothing changes on error.
    pub fn add<S: AsRef<str>>(
        &mut self,
        network: NetworkId,
        port: PortId,
        names: &[S],
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<(), NameError> {
        let mut normalised: Vec<Box<str>> = Vec::with_capacity(names.len());
        for name in names {
            let n = normalise(name.as_ref())
                .ok_or_else(|| NameError::InvalidName(name.as_ref().to_owned()))?;
            if !normalised.contains(&n) {
                normalised.push(n);
            }
        }
        self.remove(port);
        let net = self.networks.entry(network).or_default();
        for name in &normalised {
            net.by_name.entry(name.clone()).or_default().push(port);
        }
        net.ports.push(port);
        self.records.insert(
            port,
            Record {
                network,
                names: normalised,
                v4,
                v6,
            },
        );
        Ok(())
    }

    /// Removes the record of `port` (the container left the network): its names stop
    /// resolving on that network. Returns whether there was one.
    pub fn remove(&mut self, port: PortId) -> bool {
        let Some(record) = self.records.remove(&port) else {
            return false;
        };
        if let Some(net) = self.networks.get_mut(&record.network) {
            for name in &record.names {
                if let Some(ports) = net.by_name.get_mut(name) {
                    ports.retain(|p| *p != port);
                    if ports.is_empty() {
                        net.by_name.remove(name);
                    }
                }
            }
            net.ports.retain(|p| *p != port);
            if net.ports.is_empty() {
                self.networks.remove(&record.network);
            }
        }
        true
    }

    /// Removes every record of `network` (the network was deleted).
    pub fn remove_network(&mut self, network: NetworkId) {
        if let Some(net) = self.networks.remove(&network) {
            for port in net.ports {
                self.records.remove(&port);
            }
        }
    }

    /// The endpoint of `network` that has address `ip`, if any: lets the shell find
    /// the asking container (and so its scope) from a query's source address.
    pub fn endpoint_at(&self, network: NetworkId, ip: IpAddr) -> Option<PortId> {
        let net = self.networks.get(&network)?;
        net.ports
            .iter()
            .copied()
            .find(|p| self.records.get(p).is_some_and(|r| r.has_address(ip)))
    }

    /// Resolves `name` for a container connected to the networks `scope`.
    pub fn resolve(&self, name: &str, scope: &[NetworkId]) -> Option<Resolved> {
        let name = normalise(name)?;
        let (network, ports) = self.find(&name, scope)?;
        let records = || ports.iter().filter_map(|p| self.records.get(p));
        Some(Resolved {
            network,
            v4: records().filter_map(|r| r.v4).collect(),
            v6: records().filter_map(|r| r.v6).collect(),
        })
    }

    /// The name of the container that has address `ip` on one of the networks of
    /// `scope` (its first name), as a PTR query gets it.
    pub fn reverse(&self, ip: IpAddr, scope: &[NetworkId]) -> Option<&str> {
        scope.iter().find_map(|network| {
            let net = self.networks.get(network)?;
            net.ports.iter().find_map(|p| {
                let record = self.records.get(p)?;
                if record.has_address(ip) {
                    record.names.first().map(|n| &**n)
                } else {
                    None
                }
            })
        })
    }

    /// The first network of `scope` that has `name` (normalised), and its endpoints.
    fn find(&self, name: &str, scope: &[NetworkId]) -> Option<(NetworkId, &[PortId])> {
        scope.iter().find_map(|network| {
            let ports = self.networks.get(network)?.by_name.get(name)?;
            Some((*network, ports.as_slice()))
        })
    }

    /// Answers a DNS query received over UDP (the datagram's payload): see the module
    /// documentation for the rules. `out` should hold at least 512 bytes; a response
    /// never exceeds 512 bytes, or the client's EDNS payload size, or `out.len()`.
    pub fn answer(&self, query: &[u8], scope: &[NetworkId], out: &mut [u8]) -> DnsVerdict {
        self.answer_with(query, scope, out, Transport::Udp)
    }

    /// Answers a DNS query received over TCP: `query` is one message without its
    /// two-byte length prefix (RFC 1035 4.2.2), and the response (at most 65535 bytes
    /// and `out.len()`) must be sent with one. There is no truncation to 512 bytes.
    pub fn answer_tcp(&self, query: &[u8], scope: &[NetworkId], out: &mut [u8]) -> DnsVerdict {
        self.answer_with(query, scope, out, Transport::Tcp)
    }

    fn answer_with(
        &self,
        query: &[u8],
        scope: &[NetworkId],
        out: &mut [u8],
        transport: Transport,
    ) -> DnsVerdict {
        let q = match Query::parse(query) {
            Ok(q) => q,
            Err(message::ParseError::Drop) => return DnsVerdict::Drop,
            Err(message::ParseError::Respond(header, rcode)) => {
                return error_response(&header, rcode, out);
            }
        };
        let limit = match transport {
            Transport::Tcp => out.len().min(usize::from(u16::MAX)),
            Transport::Udp => {
                let client = q.edns.map_or(512, |e| usize::from(e.payload.max(512)));
                out.len().min(client)
            }
        };
        if q.edns.is_some_and(|e| e.version != 0) {
            // RFC 6891 6.1.3: BADVERS (16) = extended rcode 1, header rcode 0.
            let Some(w) = ResponseWriter::start(&q, out, limit, Rcode::NoError) else {
                return DnsVerdict::Drop;
            };
            return w.finish_badvers();
        }
        if q.qclass != CLASS_IN {
            return DnsVerdict::Forward;
        }
        let Some(name) = q.name_text() else {
            return DnsVerdict::Forward;
        };
        if q.qtype == TYPE_PTR {
            return match message::reverse_address(name).and_then(|ip| self.reverse(ip, scope)) {
                Some(target) => {
                    let Some(mut w) = ResponseWriter::start(&q, out, limit, Rcode::NoError) else {
                        return DnsVerdict::Drop;
                    };
                    w.ptr(self.ttl, target);
                    w.finish()
                }
                None => DnsVerdict::Forward,
            };
        }
        let Some((_, ports)) = self.find(name, scope) else {
            return DnsVerdict::Forward;
        };
        let Some(mut w) = ResponseWriter::start(&q, out, limit, Rcode::NoError) else {
            return DnsVerdict::Drop;
        };
        let records = ports.iter().filter_map(|p| self.records.get(p));
        if matches!(q.qtype, TYPE_A | TYPE_ANY) {
            for v4 in records.clone().filter_map(|r| r.v4) {
                w.a(self.ttl, v4);
            }
        }
        if matches!(q.qtype, TYPE_AAAA | TYPE_ANY) {
            for v6 in records.filter_map(|r| r.v6) {
                w.aaaa(self.ttl, v6);
            }
        }
        // Any other type of an existing name: NODATA.
        w.finish()
    }
}

impl Record {
    fn has_address(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4 == Some(ip),
            IpAddr::V6(ip) => self.v6 == Some(ip),
        }
    }
}

/// How the query arrived; decides the response size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// A header-only error response (FORMERR, NOTIMP) to a query whose header parsed.
fn error_response(header: &message::Header, rcode: Rcode, out: &mut [u8]) -> DnsVerdict {
    match message::write_error(header, rcode, out) {
        Some(len) => DnsVerdict::Answer { len },
        None => DnsVerdict::Drop,
    }
}

/// Is `b` a character we serve in names (letters, digits, `-`, `_`)? Docker container
/// names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Lower case, trailing dot removed, validated; `None` if not a name we can serve.
fn normalise(name: &str) -> Option<Box<str>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.bytes().all(is_name_byte) {
            return None;
        }
    }
    Some(name.to_ascii_lowercase().into_boxed_str())
}
