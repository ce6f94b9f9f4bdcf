//! Attaching containers: a TAP opened inside the container's network namespace, or a
//! veth pair whose host end is read with AF_PACKET.
//!
//! Work inside the container's namespaces happens in a short-lived helper process
//! (`crate::nshelper`), because the daemon is multi-threaded and the kernel refuses
//! `setns(CLONE_NEWUSER)` to a multi-threaded process. The daemon side only opens the
//! namespace file, creates the veth pair (host end here, peer directly in the
//! container), and opens the AF_PACKET socket on the host end.
//!
//! The container's interface is configured like Docker's: the given MAC, MTU, IPv4
//! address with broadcast, link and loopback up, and a default route via the gateway
//! unless the namespace already has one (the first network wins).
//!
//! [`attach_with_dns`] also opens Docker's embedded DNS address inside the container:
//! UDP and TCP sockets bound on 127.0.0.11:53 in its namespace, served by the daemon
//! (with `tapnet_switch::dns::NameTable`). The container's `/etc/resolv.conf` is not
//! ours to change: whoever builds the container (or `tapnet run`'s own resolv.conf)
//! points it at `nameserver 127.0.0.11`, as Docker does.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) use crate::ifconfig::{DnsSockets, InterfaceConfig};
use crate::nshelper::{self, NsFailure, NsOp, describe};
use crate::sys::ethtool::{Ethtool, Offload};
use crate::sys::netlink::{LinkChange, RouteSocket};
use crate::sys::{netns, packet};

/// How a container is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PortKind {
    Tap,
    Veth,
}

/// Which network namespace a container lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NetnsTarget {
    /// The namespace of this process (`/proc/PID/ns/net`).
    Pid(u32),
    /// A namespace file, such as `/run/netns/NAME` or `/proc/PID/ns/net`.
    Path(PathBuf),
}

impl NetnsTarget {
    fn path(&self) -> PathBuf {
        match self {
            Self::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            Self::Path(path) => path.clone(),
        }
    }

    /// For messages: "of pid 123" or "/run/netns/x".
    fn describe(&self) -> String {
        match self {
            Self::Pid(pid) => format!("of pid {pid}"),
            Self::Path(path) => path.display().to_string(),
        }
    }
}

/// Identity of a namespace (device and inode of its nsfs file): equal for the same namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct NetnsId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// An attached port: the fd the datapath reads and writes whole frames on (non-blocking).
#[derive(Debug)]
pub(crate) struct AttachedPort {
    pub(crate) kind: PortKind,
    pub(crate) fd: OwnedFd,
    /// The interface name inside the container.
    pub(crate) ifname: String,
    /// For veth: the host end's name.
    pub(crate) host_ifname: Option<String>,
    /// A multi-queue TAP's further queues (see [`InterfaceConfig::queues`]).
    pub(crate) queues: Vec<OwnedFd>,
}

/// A failed attach or detach. Display is one line, fit for a user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PortError {
    #[error("network namespace {0} not found")]
    NetnsNotFound(String),
    #[error("no permission to open network namespace {netns}: {message}")]
    NetnsPermission { netns: String, message: String },
    #[error("open network namespace {netns}: {message}")]
    NetnsOpen { netns: String, message: String },
    #[error("{0} is not a network namespace")]
    NotNetns(String),
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfname { name: String, reason: &'static str },
    #[error("invalid interface configuration: {0}")]
    InvalidConfig(String),
    #[error("enter network namespace {netns}: {message}")]
    EnterNetns { netns: String, message: String },
    #[error(
        "no permission to open /dev/net/tun: {0} (run as root or make /dev/net/tun accessible)"
    )]
    TunPermission(String),
    #[error("interface {ifname} already exists in network namespace {netns}")]
    IfnameTaken { ifname: String, netns: String },
    #[error("interface {0} already exists on the host")]
    HostIfnameTaken(String),
    #[error("interface {ifname} no longer exists in network namespace {netns}")]
    IfnameGone { ifname: String, netns: String },
    #[error("veth host end {0} no longer exists")]
    HostIfnameGone(String),
    /// Creating or configuring the container's interface failed.
    #[error("configure {ifname} in netns {netns}: {message}")]
    Configure {
        ifname: String,
        netns: String,
        message: String,
    },
    /// A step on the host side (veth creation, AF_PACKET socket, deletion) failed.
    #[error("{context}: {message}")]
    Host { context: String, message: String },
    /// The namespace helper could not do its work (did not start, crashed, timed out).
    #[error("attach to network namespace {netns}: {message}")]
    Helper { netns: String, message: String },
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub(crate) fn validate_ifname(name: &str) -> Result<(), PortError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 15 {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        "contains '/', ':', a NUL or whitespace"
    } else {
        return Ok(());
    };
    Err(PortError::InvalidIfname {
        name: name.to_owned(),
        reason,
    })
}

fn validate_config(config: &InterfaceConfig) -> Result<(), PortError> {
    if let Some(name) = &config.ifname {
        validate_ifname(name)?;
    }
    if !(68..=65535).contains(&config.mtu) {
        return Err(PortError::InvalidConfig(format!(
            "MTU {} is outside 68..=65535",
            config.mtu
        )));
    }
    if !config.mac.is_valid_source() {
        return Err(PortError::InvalidConfig(format!(
            "MAC {} is not a unicast address",
            config.mac
        )));
    }
    Ok(())
}

/// Opens the namespace file behind `target` and checks that it is a network namespace.
fn open_netns(target: &NetnsTarget) -> Result<OwnedFd, PortError> {
    let netns = target.describe();
    let fd = netns::open_ns(&target.path()).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH | libc::ENOTDIR) => PortError::NetnsNotFound(netns.clone()),
        Some(libc::EACCES | libc::EPERM) => PortError::NetnsPermission {
            netns: netns.clone(),
            message: describe(&e),
        },
        _ => PortError::NetnsOpen {
            netns: netns.clone(),
            message: describe(&e),
        },
    })?;
    match netns::is_netns(fd.as_fd()) {
        Ok(true) => Ok(fd),
        Ok(false) => Err(PortError::NotNetns(target.path().display().to_string())),
        Err(e) => Err(PortError::NetnsOpen {
            netns,
            message: describe(&e),
        }),
    }
}

/// Identity of the namespace behind `target`; fails with a clear message if it does not exist.
pub(crate) fn netns_id(target: &NetnsTarget) -> Result<NetnsId, PortError> {
    let fd = open_netns(target)?;
    let id = netns::ns_identity(fd.as_fd()).map_err(|e| PortError::NetnsOpen {
        netns: target.describe(),
        message: describe(&e),
    })?;
    Ok(NetnsId {
        dev: id.dev,
        ino: id.ino,
    })
}

/// Creates and configures a port in the container's namespace.
/// `host_ifname` names the host end of a veth (unused for TAP).
pub(crate) fn attach(
    target: &NetnsTarget,
    kind: PortKind,
    config: &InterfaceConfig,
    host_ifname: &str,
) -> Result<AttachedPort, PortError> {
    attach_inner(target, kind, config, host_ifname, false).map(|(port, _)| port)
}

/// [`attach`], and in the same visit to the namespace bind the embedded DNS sockets on
/// 127.0.0.11:53 (see [`DnsSockets`]). Ask for them once per container namespace (on
/// its first network); later attachments use [`attach`].
pub(crate) fn attach_with_dns(
    target: &NetnsTarget,
    kind: PortKind,
    config: &InterfaceConfig,
    host_ifname: &str,
) -> Result<(AttachedPort, DnsSockets), PortError> {
    let (port, dns) = attach_inner(target, kind, config, host_ifname, true)?;
    let dns = dns.ok_or_else(|| PortError::Helper {
        netns: target.describe(),
        message: "the namespace helper sent no DNS sockets".to_owned(),
    })?;
    Ok((port, dns))
}

fn attach_inner(
    target: &NetnsTarget,
    kind: PortKind,
    config: &InterfaceConfig,
    host_ifname: &str,
    dns_socket: bool,
) -> Result<(AttachedPort, Option<DnsSockets>), PortError> {
    validate_config(config)?;
    if kind == PortKind::Veth {
        validate_ifname(host_ifname)?;
    }
    let netns_fd = open_netns(target)?;
    match kind {
        PortKind::Tap => {
            let reply = nshelper::run_helper(netns_fd.as_fd(), NsOp::Tap, config, dns_socket)
                .map_err(|f| failure_to_error(f, target))?;
            let fd = reply.fd.ok_or_else(|| PortError::Helper {
                netns: target.describe(),
                message: "the namespace helper sent no TAP fd".to_owned(),
            })?;
            let port = AttachedPort {
                kind,
                fd,
                ifname: reply.ifname,
                host_ifname: None,
                queues: reply.queues,
            };
            Ok((port, reply.dns))
        }
        PortKind::Veth => attach_veth(target, netns_fd.as_fd(), config, host_ifname, dns_socket),
    }
}

fn failure_to_error(failure: NsFailure, target: &NetnsTarget) -> PortError {
    let netns = target.describe();
    match failure {
        NsFailure::Enter(message) => PortError::EnterNetns { netns, message },
        NsFailure::TunPermission(message) => PortError::TunPermission(message),
        NsFailure::NameTaken(ifname) => PortError::IfnameTaken { ifname, netns },
        NsFailure::Gone(ifname) => PortError::IfnameGone { ifname, netns },
        NsFailure::Configure { ifname, message } => PortError::Configure {
            ifname,
            netns,
            message,
        },
        NsFailure::Other(message) => PortError::Helper { netns, message },
    }
}

fn host_error(context: String, e: &io::Error) -> PortError {
    PortError::Host {
        context,
        message: describe(e),
    }
}

/// A name for the veth peer until the helper renames it inside the container:
/// `tp<pid>x<counter>`, at most 15 bytes, unique on this host for this process.
fn temp_peer_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xf_ffff;
    format!("tp{:x}x{n:x}", std::process::id() & 0x0fff_ffff)
}

fn attach_veth(
    target: &NetnsTarget,
    netns_fd: BorrowedFd<'_>,
    config: &InterfaceConfig,
    host_ifname: &str,
    dns_socket: bool,
) -> Result<(AttachedPort, Option<DnsSockets>), PortError> {
    let mut rt =
        RouteSocket::open().map_err(|e| host_error("open rtnetlink socket".to_owned(), &e))?;
    let exists = rt
        .link_index(host_ifname)
        .map_err(|e| host_error(format!("look up {host_ifname}"), &e))?;
    if exists.is_some() {
        return Err(PortError::HostIfnameTaken(host_ifname.to_owned()));
    }
    let peer = temp_peer_name();
    rt.create_veth(host_ifname, &peer, netns_fd, config.mtu)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => PortError::HostIfnameTaken(host_ifname.to_owned()),
            _ => host_error(
                format!("create veth {host_ifname} into netns {}", target.describe()),
                &e,
            ),
        })?;
    match finish_veth(
        &mut rt,
        target,
        netns_fd,
        config,
        host_ifname,
        &peer,
        dns_socket,
    ) {
        Ok(port) => Ok(port),
        Err(e) => {
            // Deleting the host end deletes the peer in the container too.
            if let Err(cleanup) = delete_host_end(&mut rt, host_ifname) {
                tracing::warn!("clean up veth {host_ifname} after failed attach: {cleanup}");
            }
            Err(e)
        }
    }
}

/// The rest of a veth attach, after the pair exists: host end up, AF_PACKET socket,
/// container end configured by the helper.
fn finish_veth(
    rt: &mut RouteSocket,
    target: &NetnsTarget,
    netns_fd: BorrowedFd<'_>,
    config: &InterfaceConfig,
    host_ifname: &str,
    peer: &str,
    dns_socket: bool,
) -> Result<(AttachedPort, Option<DnsSockets>), PortError> {
    let index = rt
        .existing_link_index(host_ifname)
        .map_err(|e| host_error(format!("look up {host_ifname}"), &e))?;
    // The host end is only a wire into the switch: no IPv6 link-local address (so no
    // router solicitations or DAD), no ARP answers from the host's own addresses.
    if let Err(e) = rt.disable_ipv6_addr_gen(index) {
        tracing::debug!("{host_ifname}: disable IPv6 address generation: {e}");
    }
    match Ethtool::open().and_then(|ethtool| ethtool.set(host_ifname, Offload::Gro, false)) {
        Ok(()) => {}
        Err(e) => tracing::debug!("{host_ifname}: switch GRO off: {e}"),
    }
    let change = LinkChange {
        up: Some(true),
        noarp: Some(true),
        ..Default::default()
    };
    rt.set_link(index, &change)
        .map_err(|e| host_error(format!("bring {host_ifname} up"), &e))?;
    // Open the socket before the container end comes up, so its first frames are seen.
    let fd = packet::open_bound(index)
        .map_err(|e| host_error(format!("open AF_PACKET socket on {host_ifname}"), &e))?;
    if config.offload {
        packet::set_vnet_hdr_size(&fd, crate::datapath::VNET_HDR_LEN)
            .map_err(|e| host_error(format!("PACKET_VNET_HDR_SZ on {host_ifname}"), &e))?;
    }
    let reply = nshelper::run_helper(
        netns_fd,
        NsOp::Veth {
            peer: peer.to_owned(),
        },
        config,
        dns_socket,
    )
    .map_err(|f| failure_to_error(f, target))?;
    let port = AttachedPort {
        kind: PortKind::Veth,
        fd,
        ifname: reply.ifname,
        host_ifname: Some(host_ifname.to_owned()),
        queues: Vec::new(),
    };
    Ok((port, reply.dns))
}

/// Deletes the veth whose host end is `host_ifname`; a missing link is fine.
fn delete_host_end(rt: &mut RouteSocket, host_ifname: &str) -> io::Result<()> {
    let Some(index) = rt.link_index(host_ifname)? else {
        return Ok(());
    };
    match rt.delete_link(index) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        other => other,
    }
}

/// Attaches again to the port that a killed daemon left in the container, by its
/// names: a persistent TAP through the namespace helper (`config.ifname` is its name;
/// its offload settings are applied to the new fd, nothing is configured), or a veth
/// whose host end `host_ifname` is opened with AF_PACKET again. With `dns_socket`
/// the embedded DNS sockets are bound in the namespace again too (the old ones closed
/// with the daemon). The interface keeps what the kernel holds: addresses, routes, MAC.
pub(crate) fn reattach(
    target: &NetnsTarget,
    kind: PortKind,
    config: &InterfaceConfig,
    host_ifname: Option<&str>,
    dns_socket: bool,
) -> Result<(AttachedPort, Option<DnsSockets>), PortError> {
    validate_config(config)?;
    let ifname = config
        .ifname
        .clone()
        .ok_or_else(|| PortError::InvalidConfig("reattach needs the interface name".into()))?;
    let netns_fd = open_netns(target)?;
    let config = InterfaceConfig {
        configure: false,
        attach_existing: true,
        reattach: true,
        persist: kind == PortKind::Tap,
        queues: 1,
        ..config.clone()
    };
    match kind {
        PortKind::Tap => {
            let reply = nshelper::run_helper(netns_fd.as_fd(), NsOp::Tap, &config, dns_socket)
                .map_err(|f| failure_to_error(f, target))?;
            let fd = reply.fd.ok_or_else(|| PortError::Helper {
                netns: target.describe(),
                message: "the namespace helper sent no TAP fd".to_owned(),
            })?;
            let port = AttachedPort {
                kind,
                fd,
                ifname: reply.ifname,
                host_ifname: None,
                queues: Vec::new(),
            };
            Ok((port, reply.dns))
        }
        PortKind::Veth => {
            let host = host_ifname.ok_or_else(|| {
                PortError::InvalidConfig("reattach of a veth needs its host end".into())
            })?;
            validate_ifname(host)?;
            let mut rt = RouteSocket::open()
                .map_err(|e| host_error("open rtnetlink socket".to_owned(), &e))?;
            let index = rt
                .link_index(host)
                .map_err(|e| host_error(format!("look up {host}"), &e))?
                .ok_or_else(|| PortError::HostIfnameGone(host.to_owned()))?;
            let change = LinkChange {
                up: Some(true),
                noarp: Some(true),
                ..Default::default()
            };
            rt.set_link(index, &change)
                .map_err(|e| host_error(format!("bring {host} up"), &e))?;
            let fd = packet::open_bound(index)
                .map_err(|e| host_error(format!("open AF_PACKET socket on {host}"), &e))?;
            if config.offload {
                packet::set_vnet_hdr_size(&fd, crate::datapath::VNET_HDR_LEN)
                    .map_err(|e| host_error(format!("PACKET_VNET_HDR_SZ on {host}"), &e))?;
            }
            let dns = if dns_socket {
                nshelper::run_helper(netns_fd.as_fd(), NsOp::Dns, &config, true)
                    .map_err(|f| failure_to_error(f, target))?
                    .dns
            } else {
                None
            };
            let port = AttachedPort {
                kind,
                fd,
                ifname,
                host_ifname: Some(host.to_owned()),
                queues: Vec::new(),
            };
            Ok((port, dns))
        }
    }
}

/// Removes the port's device: closes a TAP (the kernel deletes it; a persistent one is
/// made ordinary first), deletes a veth pair.
pub(crate) fn detach(port: AttachedPort) -> Result<(), PortError> {
    let AttachedPort {
        kind,
        fd,
        host_ifname,
        ..
    } = port;
    if kind == PortKind::Tap {
        let cleared = crate::sys::tap::clear_persist(fd.as_fd());
        drop(fd);
        return cleared.map_err(|e| host_error("make the TAP non-persistent".to_owned(), &e));
    }
    drop(fd);
    match (kind, host_ifname) {
        (PortKind::Veth, Some(host)) => {
            let mut rt = RouteSocket::open()
                .map_err(|e| host_error("open rtnetlink socket".to_owned(), &e))?;
            delete_host_end(&mut rt, &host)
                .map_err(|e| host_error(format!("delete veth {host}"), &e))
        }
        _ => Ok(()),
    }
}

/// Whether a veth port's AF_PACKET socket can carry a `virtio_net_hdr` of the
/// datapath's size (`PACKET_VNET_HDR_SZ`, Linux 6.2), so that the port takes
/// offloaded frames.
pub(crate) fn veth_offload_supported() -> bool {
    packet::vnet_hdr_supported(crate::datapath::VNET_HDR_LEN)
}

/// Makes a persistent TAP (the daemon's, which outlive a crash of the daemon)
/// ordinary again through one of its fds, so that it goes when its last fd closes.
pub(crate) fn release_persistent_tap(tap: BorrowedFd<'_>) -> io::Result<()> {
    crate::sys::tap::clear_persist(tap)
}

#[cfg(test)]
mod tests;
