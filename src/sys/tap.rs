//! TAP devices on `/dev/net/tun`, with our own ioctls (modelled on cloud-hypervisor's
//! `net_util/src/tap.rs`). A TAP opened here lives in the network namespace of the
//! calling thread; it disappears when its last fd is closed, unless it is persistent
//! ([`set_persist`], the daemon's TAPs, which outlive a killed daemon and are
//! attached again by name; [`clear_persist`] before closing removes them).
//!
//! Each `read` on the fd returns one Ethernet frame, each `write` sends one
//! (`IFF_NO_PI`: no packet-information prefix). With `IFF_VNET_HDR` a `virtio_net_hdr`
//! comes before every frame, for checksum and segmentation offload (the rootless
//! stack's TAP, see [`Tap::enable_offload`]). `IFF_MULTI_QUEUE` (one fd per queue) is
//! prepared in [`TapOptions`] but not used by tapnet yet.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

/// The TUN/TAP character device.
pub(crate) const TUN_PATH: &str = "/dev/net/tun";

/// `IFNAMSIZ` from `linux/if.h`, including the terminating NUL.
pub(crate) const IFNAMSIZ: usize = 16;

// From `linux/if_tun.h`.
const TUNSETIFF: u64 = 0x4004_54ca; // _IOW('T', 202, int)
const TUNSETPERSIST: u64 = 0x4004_54cb; // _IOW('T', 203, int)
const TUNGETFEATURES: u64 = 0x8004_54cf; // _IOR('T', 207, unsigned int)
const TUNSETOFFLOAD: u64 = 0x4004_54d0; // _IOW('T', 208, unsigned int)
const TUNSETVNETHDRSZ: u64 = 0x4004_54d8; // _IOW('T', 216, int)

/// The `virtio_net_hdr` size tapnet uses (`tapnet_wire::vnet::HDR_LEN`).
const VNET_HDR_SIZE: i32 = 12;

const IFF_TAP: u16 = 0x0002;
const IFF_MULTI_QUEUE: u16 = 0x0100;
const IFF_NO_PI: u16 = 0x1000;
const IFF_VNET_HDR: u16 = 0x4000;
/// Fail with `EBUSY` instead of attaching to an existing device of that name.
const IFF_TUN_EXCL: u16 = 0x8000;

/// `TUNSETOFFLOAD` flags: which offloads the reader of a vnet_hdr TAP can handle.
#[allow(dead_code, reason = "TSO_ECN: not every user asks for it")]
pub(crate) mod offload {
    pub(crate) const CSUM: u32 = 0x01;
    pub(crate) const TSO4: u32 = 0x02;
    pub(crate) const TSO6: u32 = 0x04;
    pub(crate) const TSO_ECN: u32 = 0x08;
}

/// `struct ifreq` as TUNSETIFF uses it: a name and the `ifr_flags` member of the union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: u16,
    _pad: [u8; 22],
}

/// Options for opening a TAP. The defaults are what tapnet uses today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TapOptions {
    /// `IFF_TUN_EXCL`: fail if a device of that name exists, rather than attaching to
    /// it (a persistent TAP that rootlesskit created for slirp4netns, say).
    pub(crate) exclusive: bool,
    /// `IFF_VNET_HDR`: prefix every frame with a `virtio_net_hdr`.
    pub(crate) vnet_hdr: bool,
    /// `IFF_MULTI_QUEUE`: allow more fds (queues) on the same device; the second and
    /// later queues are opened with the same flags and `exclusive: false`.
    pub(crate) multi_queue: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        Self {
            exclusive: true,
            vnet_hdr: false,
            multi_queue: false,
        }
    }
}

impl TapOptions {
    fn flags(self) -> u16 {
        let mut flags = IFF_TAP | IFF_NO_PI;
        if self.exclusive {
            flags |= IFF_TUN_EXCL;
        }
        if self.vnet_hdr {
            flags |= IFF_VNET_HDR;
        }
        if self.multi_queue {
            flags |= IFF_MULTI_QUEUE;
        }
        flags
    }
}

/// Why a TAP could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TapError {
    #[error("invalid interface name {0:?}")]
    InvalidName(String),
    /// Opening `/dev/net/tun` failed (missing, or no permission).
    #[error("open {TUN_PATH}: {0}")]
    Open(#[source] io::Error),
    /// The kernel lacks a feature we asked for.
    #[error("the kernel's TUN driver does not support {0}")]
    Unsupported(&'static str),
    /// A device of that name exists already.
    #[error("interface {0} already exists")]
    NameTaken(String),
    /// `TUNSETIFF` failed otherwise (for example `EPERM` without `CAP_NET_ADMIN`).
    #[error("create TAP {name}: {source}")]
    SetIff {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// An open TAP device.
#[derive(Debug)]
pub(crate) struct Tap {
    fd: OwnedFd,
    name: String,
    multi_queue: bool,
}

impl Tap {
    /// Creates the TAP `name` in the calling thread's network namespace and opens it
    /// non-blocking and close-on-exec.
    pub(crate) fn open(name: &str, options: TapOptions) -> Result<Self, TapError> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(TapError::InvalidName(name.to_owned()));
        }
        let fd = rustix::fs::open(
            TUN_PATH,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TapError::Open(e.into()))?;

        let features = tun_features(fd.as_fd()).map_err(|source| TapError::SetIff {
            name: name.to_owned(),
            source,
        })?;
        if options.vnet_hdr && features & u32::from(IFF_VNET_HDR) == 0 {
            return Err(TapError::Unsupported("IFF_VNET_HDR"));
        }
        if options.multi_queue && features & u32::from(IFF_MULTI_QUEUE) == 0 {
            return Err(TapError::Unsupported("IFF_MULTI_QUEUE"));
        }

        let mut ifr = IfReqFlags {
            name: [0; IFNAMSIZ],
            flags: options.flags(),
            _pad: [0; 22],
        };
        ifr.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `fd` is an open /dev/net/tun; TUNSETIFF reads and writes a `struct ifreq`
        // (40 bytes), which `IfReqFlags` is in size and layout, and `ifr` outlives the call.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &raw mut ifr) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EBUSY) => TapError::NameTaken(name.to_owned()),
                _ => TapError::SetIff {
                    name: name.to_owned(),
                    source: err,
                },
            });
        }
        // The kernel writes back the final name (the same, as we gave no template).
        let len = ifr.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        let name = String::from_utf8_lossy(&ifr.name[..len]).into_owned();
        Ok(Self {
            fd,
            name,
            multi_queue: options.multi_queue,
        })
    }

    /// Whether it was opened as one queue of a multi-queue TAP (`IFF_MULTI_QUEUE`).
    pub(crate) fn is_multi_queue(&self) -> bool {
        self.multi_queue
    }

    /// The interface name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Tells the kernel which offloads the reader handles (`offload::*`; vnet_hdr TAPs).
    pub(crate) fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int); no memory
        // is passed.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                TUNSETOFFLOAD as _,
                libc::c_ulong::from(flags),
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sets the size of the `virtio_net_hdr` prefix (10, or 12 with `num_buffers`).
    pub(crate) fn set_vnet_hdr_size(&self, size: i32) -> io::Result<()> {
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points to a
        // live local.
        let ret =
            unsafe { libc::ioctl(self.fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &raw const size) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// On a TAP opened with `vnet_hdr`: a 12-byte `virtio_net_hdr_v1` before every
    /// frame, and the container's kernel may send (and receive) TCP segments of up to
    /// 64 KiB with partial checksums (checksum offload, TSO over IPv4 and IPv6, ECN).
    pub(crate) fn enable_offload(&self) -> io::Result<()> {
        self.set_vnet_hdr_size(VNET_HDR_SIZE)?;
        self.set_offload(offload::CSUM | offload::TSO4 | offload::TSO6 | offload::TSO_ECN)
    }

    /// The fd, for the datapath (or to send to another process).
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `TUNSETPERSIST` on an fd attached to a TAP: the device outlives its fds, or not.
pub(crate) fn set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value (0 or 1); no memory is passed.
    // On an fd that is not attached to a device the kernel answers EBADFD.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETPERSIST as _,
            libc::c_ulong::from(persist),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes a persistent TAP ordinary again through any fd attached to it, so that it is
/// deleted when its last fd closes. The tun driver checks no capability here
/// (`__tun_chr_ioctl` in drivers/net/tun.c: having the device attached is enough), so
/// the daemon can do it outside the container's user namespace.
pub(crate) fn clear_persist(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_persist(fd, false)
}

/// The `IFF_*` flags this kernel's TUN driver supports.
fn tun_features(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one `unsigned int` through the pointer, which points
    // to a live local.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETFEATURES as _, &raw mut features) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_kernel_size() {
        assert_eq!(size_of::<IfReqFlags>(), 40);
    }

    #[test]
    fn default_flags_are_plain_exclusive_tap() {
        assert_eq!(
            TapOptions::default().flags(),
            IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL
        );
        let all = TapOptions {
            vnet_hdr: true,
            multi_queue: true,
            ..TapOptions::default()
        }
        .flags();
        assert_eq!(
            all & (IFF_VNET_HDR | IFF_MULTI_QUEUE),
            IFF_VNET_HDR | IFF_MULTI_QUEUE
        );
    }

    #[test]
    fn opens_vnet_hdr_multi_queue_tap_in_a_private_netns() {
        if !rustix::process::geteuid().is_root() {
            // Straight to stderr: libtest's capture would swallow `eprintln!`.
            use std::io::Write as _;
            let _ = writeln!(
                io::stderr(),
                "SKIPPED (needs root): opens_vnet_hdr_multi_queue_tap_in_a_private_netns"
            );
            return;
        }
        // A thread of its own in a new network namespace, which goes away with the
        // thread and the TAP.
        std::thread::spawn(|| {
            // SAFETY: CLONE_NEWNET only changes this thread's network namespace; it does
            // not unshare the fd table or file-system state other threads rely on.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .unwrap();
            let options = TapOptions {
                vnet_hdr: true,
                multi_queue: true,
                ..TapOptions::default()
            };
            let tap = Tap::open("tn-vnet0", options).unwrap();
            assert_eq!(tap.name(), "tn-vnet0");
            tap.set_vnet_hdr_size(12).unwrap();
            tap.set_offload(offload::CSUM | offload::TSO4 | offload::TSO6 | offload::TSO_ECN)
                .unwrap();
            assert!(matches!(
                Tap::open("tn-vnet0", options),
                Err(TapError::NameTaken(_))
            ));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn persistent_tap_outlives_its_fd_until_cleared() {
        if !rustix::process::geteuid().is_root() {
            use std::io::Write as _;
            let _ = writeln!(
                io::stderr(),
                "SKIPPED (needs root): persistent_tap_outlives_its_fd_until_cleared"
            );
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: as above, only this thread's network namespace changes.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .unwrap();
            let exclusive = TapOptions::default();
            let tap = Tap::open("tn-keep0", exclusive).unwrap();
            set_persist(tap.as_fd(), true).unwrap();
            drop(tap);
            // Still there: an exclusive open of the name is refused.
            assert!(matches!(
                Tap::open("tn-keep0", exclusive),
                Err(TapError::NameTaken(_))
            ));
            let reattached = Tap::open(
                "tn-keep0",
                TapOptions {
                    exclusive: false,
                    ..TapOptions::default()
                },
            )
            .unwrap();
            clear_persist(reattached.as_fd()).unwrap();
            drop(reattached);
            // Gone: an exclusive open creates it afresh.
            let fresh = Tap::open("tn-keep0", exclusive).unwrap();
            drop(fresh);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn rejects_bad_names_before_any_syscall() {
        for bad in ["", "sixteen_chars_xx", "a\0b"] {
            assert!(
                matches!(
                    Tap::open(bad, TapOptions::default()),
                    Err(TapError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
    }
}
