//! AF_PACKET sockets bound to one interface: how the datapath reads and writes the host
//! end of a veth pair. One `recv` returns one whole Ethernet frame; one `send` transmits
//! one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// `ETH_P_ALL` from `linux/if_ether.h`: every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// `SOL_PACKET` and `PACKET_IGNORE_OUTGOING` from `linux/socket.h`, `linux/if_packet.h`.
const SOL_PACKET: libc::c_int = 263;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Opens a raw AF_PACKET socket (non-blocking, close-on-exec) that receives every frame
/// arriving on the interface `ifindex` and none that this host sends on it
/// (`PACKET_IGNORE_OUTGOING`, so the switch does not hear its own transmits).
pub(crate) fn open_bound(ifindex: u32) -> io::Result<OwnedFd> {
    // Protocol 0: the socket receives nothing until `bind` names a protocol and an
    // interface, so no frame from another interface slips in before that.
    let fd = rustix::net::socket_with(
        AddressFamily::PACKET,
        SocketType::RAW,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    set_packet_option(&fd, PACKET_IGNORE_OUTGOING, &(1 as libc::c_int))?;
    let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `sockaddr_ll` is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: bind reads `size_of::<sockaddr_ll>()` bytes from `addr`, a live local of
    // exactly that type.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// `PACKET_ADD_MEMBERSHIP` and `PACKET_MR_PROMISC` from `linux/if_packet.h`.
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;

/// Puts interface `ifindex` in promiscuous mode for as long as the socket `fd` lives
/// (the kernel counts memberships and drops this one when the socket closes), so that
/// frames for a MAC address other than the interface's own reach the socket.
pub(crate) fn set_promiscuous(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `packet_mreq` is plain old data; all-zero is a valid value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = PACKET_MR_PROMISC;
    set_packet_option(fd, PACKET_ADD_MEMBERSHIP, &mreq)
}

/// Sets the `SOL_PACKET` option `name` to `value` (the C type the option expects:
/// an `int`, a `packet_mreq`).
fn set_packet_option<T: Copy>(fd: &OwnedFd, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from `value`, a live reference
    // to a `T`; the callers pass the plain-old-data type that option `name` takes.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PACKET_VNET_HDR_SZ` from `linux/if_packet.h` (Linux 6.2).
const PACKET_VNET_HDR_SZ: libc::c_int = 24;

/// Puts a `virtio_net_hdr_v1` of `size` bytes (12: with `num_buffers`, the layout of
/// tapnet's TAPs) before every frame read from or written to the socket
/// (`PACKET_VNET_HDR_SZ`). The kernel then hands over TSO/GRO super-frames and
/// partial checksums described by the header instead of as they are, and takes
/// them in writes (its GSO segments them), as with a TAP opened with `IFF_VNET_HDR`.
/// Fails with ENOPROTOOPT on kernels before 6.2.
pub(crate) fn set_vnet_hdr_size(fd: &OwnedFd, size: usize) -> io::Result<()> {
    let size =
        libc::c_int::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    set_packet_option(fd, PACKET_VNET_HDR_SZ, &size)
}

/// Whether this kernel takes `PACKET_VNET_HDR_SZ` (tried on a socket that is bound to
/// nothing, so it receives nothing, and closed at once).
pub(crate) fn vnet_hdr_supported(size: usize) -> bool {
    rustix::net::socket_with(
        AddressFamily::PACKET,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )
    .is_ok_and(|fd| set_vnet_hdr_size(&fd, size).is_ok())
}
