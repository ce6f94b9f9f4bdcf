//! The few interface ioctls tapnet needs: ethtool's (`SIOCETHTOOL`, `linux/ethtool.h`)
//! to switch offloads off on a veth or an uplink, so that frames read with AF_PACKET
//! carry finished checksums and are at most MTU + 14 bytes long, and `SIOCGIFMTU`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::tap::IFNAMSIZ;

const SIOCETHTOOL: u64 = 0x8946;

/// Legacy ethtool commands that set one offload on (1) or off (0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Offload {
    /// `ETHTOOL_STXCSUM`: transmit checksum offload; without it the kernel also drops TSO.
    TxChecksum = 0x17,
    /// `ETHTOOL_STSO`: TCP segmentation offload.
    Tso = 0x1f,
    /// `ETHTOOL_SGSO`: generic segmentation offload.
    Gso = 0x24,
    /// `ETHTOOL_SGRO`: generic receive offload.
    Gro = 0x2c,
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` pointer member.
#[repr(C)]
struct IfReqData {
    name: [u8; IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

/// A socket to issue interface ioctls on, in the calling thread's network namespace.
#[derive(Debug)]
pub(crate) struct Ethtool {
    sock: OwnedFd,
}

impl Ethtool {
    pub(crate) fn open() -> io::Result<Self> {
        let sock = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(Self { sock })
    }

    /// Turns one offload of the interface `ifname` on or off.
    pub(crate) fn set(&self, ifname: &str, offload: Offload, on: bool) -> io::Result<()> {
        let mut value = EthtoolValue {
            cmd: offload as u32,
            data: u32::from(on),
        };
        let mut ifr = IfReqData {
            name: ifname_field(ifname)?,
            data: &raw mut value,
            _pad: [0; 16],
        };
        // SAFETY: SIOCETHTOOL reads a `struct ifreq` (40 bytes, the layout of `IfReqData`)
        // whose `ifr_data` points to an `ethtool_value`; both are live locals for the
        // whole call.
        let ret = unsafe { libc::ioctl(self.sock.as_raw_fd(), SIOCETHTOOL as _, &raw mut ifr) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Ethtool {
    /// The MTU of the interface `ifname` (`SIOCGIFMTU`).
    pub(crate) fn mtu(&self, ifname: &str) -> io::Result<u32> {
        let mut ifr = IfReqMtu {
            name: ifname_field(ifname)?,
            mtu: 0,
            _pad: [0; 20],
        };
        // SAFETY: SIOCGIFMTU reads the NUL-terminated name from and writes `ifr_mtu`
        // into a `struct ifreq` (40 bytes, the layout of `IfReqMtu`), a live local.
        let ret = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGIFMTU, &raw mut ifr) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        u32::try_from(ifr.mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }
}

/// `struct ifreq` with the `ifr_mtu` member.
#[repr(C)]
struct IfReqMtu {
    name: [u8; IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

/// `ifr_name`: the interface name, NUL-terminated.
fn ifname_field(ifname: &str) -> io::Result<[u8; IFNAMSIZ]> {
    if ifname.is_empty() || ifname.len() >= IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut name = [0; IFNAMSIZ];
    name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_kernel_size() {
        assert_eq!(size_of::<IfReqData>(), 40);
        assert_eq!(size_of::<IfReqMtu>(), 40);
        assert_eq!(size_of::<EthtoolValue>(), 8);
    }
}
