//! What a container's interface is to be (address, MAC, MTU, offload, persistence)
//! and the sockets of its embedded DNS address: the terms in which the daemon and the
//! rootless stack ask for a port (`crate::port`) and in which the namespace helper
//! (`crate::nshelper`), which does the work inside the container's namespaces, is
//! told what to do. A leaf module, so that neither of the two imports the other's
//! types through it.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};

use ipnet::{Ipv4Net, Ipv6Net};
use tapnet_wire::MacAddr;

/// How to configure the container's side of the port.
#[derive(Clone, Debug)]
pub(crate) struct InterfaceConfig {
    /// Interface name in the container; `None` picks the first free `ethN`.
    pub(crate) ifname: Option<String>,
    pub(crate) mac: MacAddr,
    pub(crate) address: Ipv4Net,
    /// Default route via this address, unless the namespace already has a default route.
    pub(crate) gateway: Ipv4Addr,
    pub(crate) mtu: u32,
    /// Configure the interface at all. `false` only opens the TAP and leaves it to the
    /// caller (slirp4netns without `--configure`, as rootlesskit expects).
    pub(crate) configure: bool,
    /// Attach to an existing TAP of the requested name (one that rootlesskit created)
    /// instead of failing because the name is taken.
    pub(crate) attach_existing: bool,
    /// A TAP: open it with `IFF_VNET_HDR` and checksum/segmentation offload
    /// ([`crate::sys::tap::Tap::enable_offload`]); its datapath port must be a
    /// [`crate::datapath::PortIo::TapOffload`]. A veth: the host end's socket gets a
    /// `virtio_net_hdr` (`PACKET_VNET_HDR_SZ`, see
    /// [`crate::sys::packet::vnet_hdr_supported`]) and the container's end keeps its
    /// offloads; its port must be a [`crate::datapath::PortIo::PacketOffload`].
    pub(crate) offload: bool,
    /// An IPv6 address and default gateway, added without duplicate address detection.
    pub(crate) ipv6: Option<(Ipv6Net, Ipv6Addr)>,
    /// A TAP: open this many queues (`IFF_MULTI_QUEUE`, one fd each) when more than
    /// one; [`AttachedPort::queues`] holds the fds beyond the first. Falls back to one
    /// queue when the device cannot have more (an existing single-queue TAP).
    pub(crate) queues: u8,
    /// A TAP: make it persistent (`TUNSETPERSIST`), so that it outlives the fd; the
    /// daemon's TAPs, which survive a killed daemon. [`detach`] makes it ordinary again.
    pub(crate) persist: bool,
    /// Attach again to the port a killed daemon left (see [`reattach`]), not creating
    /// or configuring anything.
    pub(crate) reattach: bool,
}

impl InterfaceConfig {
    /// A configured interface with IPv4 only, the common case.
    pub(crate) fn ipv4(
        ifname: Option<String>,
        mac: MacAddr,
        address: Ipv4Net,
        gateway: Ipv4Addr,
        mtu: u32,
    ) -> Self {
        Self {
            ifname,
            mac,
            address,
            gateway,
            mtu,
            configure: true,
            attach_existing: false,
            offload: false,
            ipv6: None,
            queues: 1,
            persist: false,
            reattach: false,
        }
    }
}

/// The sockets of a container's embedded DNS address, 127.0.0.11:53, bound inside its
/// network namespace (non-blocking, close-on-exec). They belong to the namespace, not
/// to one port: a container has one pair whatever the number of its networks, and
/// closing them frees the address. A second bind in the same namespace fails with
/// "Address already in use".
#[derive(Debug)]
pub(crate) struct DnsSockets {
    /// Queries over UDP: answer each datagram to its source with `send_to`.
    pub(crate) udp: UdpSocket,
    /// Queries over TCP (RFC 7766): accept, then two-byte length-prefixed messages.
    pub(crate) tcp: TcpListener,
}
