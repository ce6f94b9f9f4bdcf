//! Attaching containers: a TAP opened inside the container's network namespace, or a
//! veth pair whose host end is read with AF_PACKET. (API skeleton: to be filled in.)

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use tapnet_wire::MacAddr;

/// How a container is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    Tap,
    Veth,
}

/// Which network namespace a container lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsTarget {
    /// The namespace of this process (`/proc/PID/ns/net`).
    Pid(u32),
    /// A namespace file, such as `/run/netns/NAME` or `/proc/PID/ns/net`.
    Path(PathBuf),
}

/// Identity of a namespace (device and inode of its nsfs file): equal for the same namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// How to configure the container's side of the port.
#[derive(Clone, Debug)]
pub struct InterfaceConfig {
    /// Interface name in the container; `None` picks the first free `ethN`.
    pub ifname: Option<String>,
    pub mac: MacAddr,
    pub address: Ipv4Net,
    /// Default route via this address, unless the namespace already has a default route.
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// An attached port: the fd the datapath reads and writes whole frames on (non-blocking).
#[derive(Debug)]
pub struct AttachedPort {
    pub kind: PortKind,
    pub fd: OwnedFd,
    /// The interface name inside the container.
    pub ifname: String,
    /// For veth: the host end's name.
    pub host_ifname: Option<String>,
}

/// A failed attach or detach. Display is one line, fit for a user.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{0}")]
    Failed(String),
}

/// Identity of the namespace behind `target`; fails with a clear message if it does not exist.
pub fn netns_id(_target: &NetnsTarget) -> Result<NetnsId, PortError> {
    todo!()
}

/// Creates and configures a port in the container's namespace.
/// `host_ifname` names the host end of a veth (unused for TAP).
pub fn attach(
    _target: &NetnsTarget,
    _kind: PortKind,
    _config: &InterfaceConfig,
    _host_ifname: &str,
) -> Result<AttachedPort, PortError> {
    todo!()
}

/// Removes the port's device: closes a TAP (the kernel deletes it), deletes a veth pair.
pub fn detach(_port: AttachedPort) -> Result<(), PortError> {
    todo!()
}
