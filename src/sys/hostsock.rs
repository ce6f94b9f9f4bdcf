//! What the host-socket engine (`crate::engine`) needs beyond std, rustix and socket2:
//! the addresses of a host interface (`getifaddrs`), and, for tests, a TUN device.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses of interface `name` of the given family, in the order `getifaddrs(3)`
/// lists them.
pub(crate) fn interface_addrs(name: &str, v6: bool) -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocated into `head`, which is a
    // live local; the list is freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&raw mut head) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, which stays
        // valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a non-null NUL-terminated string owned by the list.
        let ifname = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if ifname.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points to a sockaddr whose family field is
        // always readable.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match (family, v6) {
            (libc::AF_INET, false) => {
                // SAFETY: the family is AF_INET, so the sockaddr is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            }
            (libc::AF_INET6, true) => {
                // SAFETY: the family is AF_INET6, so the sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                found.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once; no reference into
    // the list outlives this point (addresses were copied out).
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// Opens a TUN device (`IFF_TUN | IFF_NO_PI`: one IP packet per read or write) named
/// `name` in the calling thread's network namespace, non-blocking and close-on-exec.
#[cfg(test)]
pub(crate) fn open_tun(name: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;

    use rustix::fs::{Mode, OFlags};

    const TUNSETIFF: u64 = 0x4004_54ca;
    const IFF_TUN: u16 = 0x0001;
    const IFF_NO_PI: u16 = 0x1000;
    #[repr(C)]
    struct IfReqFlags {
        name: [u8; 16],
        flags: u16,
        _pad: [u8; 22],
    }
    if name.is_empty() || name.len() >= 16 || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad name"));
    }
    let fd = rustix::fs::open(
        "/dev/net/tun",
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut ifr = IfReqFlags {
        name: [0; 16],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    ifr.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `fd` is an open /dev/net/tun; TUNSETIFF reads and writes a `struct ifreq`
    // (40 bytes), which `IfReqFlags` is in size and layout, and `ifr` outlives the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &raw mut ifr) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_127_0_0_1() {
        let addrs = interface_addrs("lo", false).unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
        assert!(interface_addrs("no-such-if0", false).unwrap().is_empty());
    }
}
