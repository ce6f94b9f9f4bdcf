//! User and mount namespaces for the rootless front ends: spawning a child tied to
//! us, fresh user, network and mount namespaces (`tapnet run`), writing ID maps, joining a
//! user namespace, the mount operations of the slirp4netns sandbox, dropping
//! capabilities, and a few small helpers (fd adoption, interface addresses).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Spawns `cmd` with `fds` inherited under their numbers, and with SIGKILL as its
/// parent-death signal (`PR_SET_PDEATHSIG`): the child, and the namespaces it
/// creates, never outlive the spawning thread.
pub(crate) fn spawn_tied(cmd: &mut Command, fds: &[BorrowedFd<'_>]) -> io::Result<Child> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let hook = move || {
        for &fd in &raw {
            // SAFETY: F_SETFD on an fd the forked child inherited (async-signal-safe).
            check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
        }
        // SAFETY: PR_SET_PDEATHSIG takes integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })
    };
    // SAFETY: the hook runs between fork and exec and only makes async-signal-safe
    // system calls on data moved in before the fork; it neither allocates nor locks
    // (its error path builds an io::Error from an errno, which does not allocate).
    unsafe { cmd.pre_exec(hook) };
    cmd.spawn()
}

/// `unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)`. The caller must be
/// single-threaded; it holds every capability in the new user namespace until it
/// execs (and keeps them across exec once its user id is mapped to root).
pub(crate) fn unshare_user_net_mount() -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWNS) })
}

/// Maps root in the user namespace of `pid` to the caller, as `unshare -r` does: for
/// an unprivileged caller `0 UID 1` with setgroups denied; for root the whole range.
pub(crate) fn write_id_maps(pid: u32) -> io::Result<()> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let write = |file: &str, text: &str| -> io::Result<()> {
        let path = format!("/proc/{pid}/{file}");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))?;
        f.write_all(text.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("write {path}: {e}")))
    };
    if uid == 0 {
        write("uid_map", "0 0 4294967295\n")?;
        write("gid_map", "0 0 4294967295\n")
    } else {
        write("setgroups", "deny\n")?;
        write("uid_map", &format!("0 {uid} 1\n"))?;
        write("gid_map", &format!("0 {gid} 1\n"))
    }
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Joins the user namespace at `path` (the caller must be single-threaded), then
/// becomes root in it if it is not already (as slirp4netns's sandbox does).
pub(crate) fn join_userns_as_root(path: &Path) -> io::Result<()> {
    let fd = File::open(path)?;
    move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::User))?;
    if euid() != 0 {
        // SAFETY: setegid/seteuid take integer arguments; after joining the user
        // namespace we hold CAP_SETUID and CAP_SETGID in it.
        check(unsafe { libc::setegid(0) })?;
        // SAFETY: as above.
        check(unsafe { libc::seteuid(0) })?;
    }
    Ok(())
}

/// `unshare(CLONE_NEWNS)`: a new mount namespace for the calling thread and every
/// thread it creates afterwards.
pub(crate) fn unshare_mount_ns() -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })
}

fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let source = source.map(cstring).transpose()?;
    let target = cstring(target)?;
    let ptr = |c: Option<&CStr>| c.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or points at a NUL-terminated string that lives
    // until the call returns.
    check(unsafe {
        libc::mount(
            source.as_deref().map_or(std::ptr::null(), CStr::as_ptr),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
}

/// Changes the propagation of the mount at `path` and below (`MS_SLAVE`, `MS_PRIVATE`).
pub(crate) fn set_propagation_recursive(path: &Path, private: bool) -> io::Result<()> {
    let kind = if private {
        libc::MS_PRIVATE
    } else {
        libc::MS_SLAVE
    };
    mount(None, path, None, kind | libc::MS_REC, None)
}

/// Bind-mounts `source` on `target` (recursively with `recursive`).
pub(crate) fn bind_mount(source: &Path, target: &Path, recursive: bool) -> io::Result<()> {
    let rec = if recursive { libc::MS_REC } else { 0 };
    mount(Some(source), target, None, libc::MS_BIND | rec, None)
}

/// Bind-mounts `source` on `target` read-only, nosuid, nodev, noexec, as a slave of
/// the source (so that changes on the host, such as a regenerated
/// `/etc/resolv.conf`, still show), like slirp4netns's `add_mount`.
pub(crate) fn bind_mount_readonly_slave(source: &Path, target: &Path) -> io::Result<()> {
    let hardening = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(
        Some(source),
        target,
        None,
        libc::MS_BIND | libc::MS_REC | hardening,
        None,
    )?;
    mount(None, target, None, libc::MS_SLAVE | libc::MS_REC, None)?;
    mount(
        Some(source),
        target,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | hardening,
        None,
    )
}

/// Mounts a small tmpfs on `target` (nosuid, nodev, noexec).
pub(crate) fn mount_tmpfs(target: &Path, size: &CStr) -> io::Result<()> {
    mount(
        Some(Path::new("tmpfs")),
        target,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(size),
    )
}

/// Remounts the tmpfs root read-only.
pub(crate) fn remount_root_readonly() -> io::Result<()> {
    mount(
        Some(Path::new("tmpfs")),
        Path::new("/"),
        Some(c"tmpfs"),
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"size=0k"),
    )
}

/// `pivot_root(new_root, put_old)`; both relative to the current directory or absolute.
pub(crate) fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cstring(new_root)?;
    let put_old = cstring(put_old)?;
    // SAFETY: both pointers are NUL-terminated strings alive across the call.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lazily unmounts `path` (`MNT_DETACH`).
pub(crate) fn umount_detach(path: &Path) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: a NUL-terminated path alive across the call.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) })
}

/// Drops every capability but `keep` from the calling thread (and the threads it
/// creates afterwards): clears the ambient set, drops the others from the bounding
/// set, and sets effective, permitted and inheritable to `keep` only.
pub(crate) fn drop_capabilities_except(keep: u32) -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    check(ret)?;
    for cap in 0..64u32 {
        if cap == keep {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes integer arguments only; EINVAL marks the
        // first capability the kernel does not know.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    let mut data = [empty; 2];
    let (word, bit) = ((keep / 32) as usize, 1u32 << (keep % 32));
    data[word] = CapData {
        effective: bit,
        permitted: bit,
        inheritable: bit,
    };
    // SAFETY: capset reads one header and two data structs (version 3) that live on
    // the stack across the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_mut_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of an fd inherited by number (any number, including 0-2, as
/// slirp4netns accepts), after checking that it is open.
pub(crate) fn adopt_fd(raw: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table; a closed fd gives EBADF.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open and was handed to this process to own; nothing else in
    // this process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopt_checks_the_fd_is_open() {
        assert_eq!(
            adopt_fd(1_000_000).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
