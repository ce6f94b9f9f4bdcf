//! The few ethtool ioctls (`SIOCETHTOOL`, `linux/ethtool.h`) tapnet needs: switching
//! offloads off on a veth, so that frames read from its peer with AF_PACKET carry
//! finished checksums and are at most MTU + 14 bytes long.

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

/// A socket to issue ethtool ioctls on, in the calling thread's network namespace.
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
        if ifname.is_empty() || ifname.len() >= IFNAMSIZ || ifname.contains('\0') {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut value = EthtoolValue {
            cmd: offload as u32,
            data: u32::from(on),
        };
        let mut ifr = IfReqData {
            name: [0; IFNAMSIZ],
            data: &raw mut value,
            _pad: [0; 16],
        };
        ifr.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_kernel_size() {
        assert_eq!(size_of::<IfReqData>(), 40);
        assert_eq!(size_of::<EthtoolValue>(), 8);
    }
}
