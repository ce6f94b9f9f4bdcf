//! Namespaces: opening a network namespace file, its identity, its owning user
//! namespace, joining both, and spawning the helper process with inherited fds.
//!
//! `setns(CLONE_NEWUSER)` is refused to a multi-threaded process, and the daemon is
//! multi-threaded; so joining a container's namespaces happens only in the short-lived
//! `__ns-helper` child (see `crate::nshelper`), which is single-threaded.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

// From `linux/nsfs.h`: _IO(0xb7, 1) and _IO(0xb7, 3).
const NS_GET_USERNS: u64 = 0xb701;
const NS_GET_NSTYPE: u64 = 0xb703;

/// Identity of a namespace: device and inode of its nsfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NsIdentity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// Opens a namespace file (`/proc/PID/ns/net`, `/run/netns/NAME`) read-only, close-on-exec.
pub(crate) fn open_ns(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Device and inode of a namespace fd.
pub(crate) fn ns_identity(fd: BorrowedFd<'_>) -> io::Result<NsIdentity> {
    let st = rustix::fs::fstat(fd)?;
    Ok(NsIdentity {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Whether `fd` refers to a network namespace (`NS_GET_NSTYPE`); `false` for any
/// other file, including ordinary files (`ENOTTY`).
pub(crate) fn is_netns(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns an int; a non-nsfs fd
    // fails with ENOTTY.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if err.raw_os_error() == Some(libc::ENOTTY) {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(ret == libc::CLONE_NEWNET)
}

/// The user namespace that owns the namespace `fd` (`NS_GET_USERNS`). Fails with
/// `EPERM` if that user namespace is outside the caller's.
pub(crate) fn owning_userns(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd (close-on-exec) or -1.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_USERNS as _) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the ioctl returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// Moves the calling process into the network namespace `netns`, joining its owning
/// user namespace first if that is not ours (for a container in a rootless user
/// namespace: this gives us `CAP_NET_ADMIN` there). The caller must be single-threaded.
pub(crate) fn enter_netns(netns: BorrowedFd<'_>) -> io::Result<()> {
    match owning_userns(netns) {
        Ok(userns) => {
            let own = File::open("/proc/self/ns/user")?;
            if ns_identity(userns.as_fd())? != ns_identity(own.as_fd())? {
                move_into_link_name_space(userns.as_fd(), Some(LinkNameSpaceType::User)).map_err(
                    |e| {
                        io::Error::new(
                            io::Error::from(e).kind(),
                            format!("join its user namespace: {e}"),
                        )
                    },
                )?;
            }
        }
        // The owner is an ancestor of our user namespace: we cannot (and need not) join it.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        Err(e) => return Err(e),
    }
    move_into_link_name_space(netns, Some(LinkNameSpaceType::Network))?;
    Ok(())
}

/// Spawns `cmd` with `fds` inherited: the child gets them under the same numbers
/// (without close-on-exec), so the caller can name them in the arguments. The parent's
/// fds keep their close-on-exec flag, so no other child inherits them.
pub(crate) fn spawn_with_fds(cmd: &mut Command, fds: &[BorrowedFd<'_>]) -> io::Result<Child> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let hook = move || {
        for &fd in &raw {
            // SAFETY: F_SETFD on an fd the forked child inherited; fcntl is
            // async-signal-safe, and this closure neither allocates nor locks.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec and only calls fcntl
    // (async-signal-safe) on fds it reads from a vector moved in before the fork.
    unsafe { cmd.pre_exec(hook) };
    cmd.spawn()
}

/// Takes ownership of an fd inherited from the parent by number, after checking that it
/// is open; marks it close-on-exec.
pub(crate) fn adopt_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to adopt fd {raw}"),
        ));
    }
    // SAFETY: F_GETFD only inspects the descriptor table; an unopened fd gives EBADF.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open, was passed to this process for it to own, and nothing
    // else in this process refers to it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}

/// In unit tests `/proc/self/exe` is the test harness, not tapnet; libtest would treat
/// `__ns-helper` as a filter. This hook runs before libtest's `main` (and before any
/// thread exists) and turns the test binary into the helper when asked to.
#[cfg(test)]
mod test_helper_entry {
    extern "C" fn run_helper_if_asked() {
        let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
            return;
        };
        let args: Vec<std::ffi::OsString> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| std::ffi::OsString::from_vec(a.to_vec()))
            .collect();
        if args.get(1).is_some_and(|a| a == "__ns-helper") {
            crate::nshelper::run(args);
        }
    }

    use std::os::unix::ffi::OsStringExt as _;

    // SAFETY: `.init_array` holds plain `extern "C" fn()` pointers that the C runtime
    // calls once at startup; the function is sound to call then (it uses only the
    // allocator and the file system) and exits the process only in the helper case.
    #[used]
    #[unsafe(link_section = ".init_array")]
    static HOOK: extern "C" fn() = run_helper_if_asked;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_own_netns() {
        let a = open_ns(Path::new("/proc/self/ns/net")).unwrap();
        let b = open_ns(Path::new("/proc/thread-self/ns/net")).unwrap();
        assert_eq!(
            ns_identity(a.as_fd()).unwrap(),
            ns_identity(b.as_fd()).unwrap()
        );
        assert!(is_netns(a.as_fd()).unwrap());
        let user = open_ns(Path::new("/proc/self/ns/user")).unwrap();
        assert!(!is_netns(user.as_fd()).unwrap());
        let file = open_ns(Path::new("/proc/self/cmdline")).unwrap();
        assert!(!is_netns(file.as_fd()).unwrap());
    }

    #[test]
    fn adopt_refuses_stdio_and_closed_fds() {
        assert!(adopt_inherited_fd(1).is_err());
        assert_eq!(
            adopt_inherited_fd(1_000_000).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
