//! Noticing that the container of `tapnet slirp4netns` is gone, when no exit fd says
//! so (slirp4netns itself keeps running then).
//!
//! - `PID`: the target process is watched through a pidfd (`pidfd_open(2)`, readable
//!   once it exits). When it exits, the forwarder goes on while other processes are
//!   still in the namespace it was in (`/proc/*/ns/net` names the same namespace),
//!   checking every second, and stops when none is left.
//! - `--netns-type=path`: the namespace file is checked every second, and the
//!   forwarder stops once it is gone or names another namespace (podman and
//!   `ip netns del` unmount it, then remove it). A namespace without processes is no
//!   reason to stop: podman starts slirp4netns before the container's processes.
//!
//! Everything it needs is opened at start, before the sandbox and the seccomp filter:
//! the pidfd, a directory fd of `/proc`, and one of the namespace file's directory;
//! later checks only `fstatat` and read directories through them.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// How often the namespace is looked at, when it is looked at.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A network namespace, as `stat` of an nsfs file names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NsId {
    dev: u64,
    ino: u64,
}

impl NsId {
    fn at(dir: BorrowedFd<'_>, path: &Path) -> Result<Self, Errno> {
        let st = rustix::fs::statat(dir, path, AtFlags::empty())?;
        Ok(Self {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// A process's network namespace as `/proc` shows it: its nsfs file `ns/net`
/// (namespaces(7)), and the inode of its `net/dev` (each namespace has its own). The
/// second tells when the first may not be read: `ns/net` needs ptrace access to the
/// process, which a sandboxed forwarder without capabilities lacks for the
/// container's root processes, while `net/dev` is readable by all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcNetns {
    nsfs: NsId,
    proc_net: Option<NsId>,
}

impl ProcNetns {
    fn of(proc: BorrowedFd<'_>, pid: u32) -> Result<Self, Errno> {
        Ok(Self {
            nsfs: NsId::at(proc, Path::new(&format!("{pid}/ns/net")))?,
            proc_net: NsId::at(proc, Path::new(&format!("{pid}/net/dev"))).ok(),
        })
    }

    /// Whether process `pid` is in this namespace; an error if it cannot be told
    /// (`ENOENT`: the process is gone or a zombie).
    fn holds(&self, proc: BorrowedFd<'_>, pid: u32) -> Result<bool, Errno> {
        match NsId::at(proc, Path::new(&format!("{pid}/ns/net"))) {
            Ok(ns) => Ok(ns == self.nsfs),
            Err(Errno::ACCESS | Errno::PERM) => match self.proc_net {
                Some(net) => NsId::at(proc, Path::new(&format!("{pid}/net/dev"))).map(|n| n == net),
                None => Err(Errno::ACCESS),
            },
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug)]
enum Target {
    Process {
        pid: u32,
        /// `None` once the process exited, or if the kernel has no pidfds.
        pidfd: Option<OwnedFd>,
        exited: bool,
        /// The namespace the process was in, if it could be read.
        netns: Option<ProcNetns>,
        proc: Option<OwnedFd>,
    },
    Path {
        dir: OwnedFd,
        name: OsString,
        shown: PathBuf,
        netns: NsId,
    },
}

/// The container of a forwarder without an exit fd; see the module documentation.
#[derive(Debug)]
pub(crate) struct ContainerWatch {
    target: Target,
    next_check: Instant,
}

fn open_dir(path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl ContainerWatch {
    /// Watches process `pid` and its network namespace.
    pub(crate) fn process(pid: u32) -> Self {
        let proc = open_dir(Path::new("/proc"), OFlags::RDONLY).ok();
        let netns = proc.as_ref().and_then(|p| {
            ProcNetns::of(p.as_fd(), pid)
                .inspect_err(|e| tracing::debug!("network namespace of process {pid}: {e}"))
                .ok()
        });
        let pidfd = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .map(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()));
        let (pidfd, exited) = match pidfd {
            Some(Ok(fd)) => (Some(fd), false),
            Some(Err(Errno::SRCH)) => (None, true),
            Some(Err(e)) => {
                tracing::debug!("pidfd_open({pid}): {e}: checking every second");
                (None, false)
            }
            None => (None, true),
        };
        Self {
            target: Target::Process {
                pid,
                pidfd,
                exited,
                netns,
                proc,
            },
            next_check: Instant::now() + CHECK_INTERVAL,
        }
    }

    /// Watches the namespace file at `path`.
    pub(crate) fn path(path: &Path) -> Result<Self, String> {
        let fail = |e: Errno| format!("{}: {e}", path.display());
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().ok_or_else(|| fail(Errno::INVAL))?;
        let dir = open_dir(parent, OFlags::PATH).map_err(fail)?;
        let netns = NsId::at(dir.as_fd(), Path::new(name)).map_err(fail)?;
        Ok(Self {
            target: Target::Path {
                dir,
                name: name.to_owned(),
                shown: path.to_owned(),
                netns,
            },
            next_check: Instant::now() + CHECK_INTERVAL,
        })
    }

    /// The pidfd to poll (readable once the target process exits), while it runs.
    pub(crate) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match &self.target {
            Target::Process {
                pidfd: Some(fd),
                exited: false,
                ..
            } => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// How long to wait at most before the next [`check`](Self::check); `None`: only
    /// the pidfd matters.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        self.pidfd()
            .is_none()
            .then(|| self.next_check.saturating_duration_since(now))
    }

    /// Looks at the container (`pidfd_ready`: the pidfd polled readable); returns why
    /// the forwarder should stop, if it should.
    pub(crate) fn check(&mut self, pidfd_ready: bool, now: Instant) -> Option<String> {
        let due = now >= self.next_check;
        if due {
            self.next_check = now + CHECK_INTERVAL;
        }
        match &mut self.target {
            Target::Process {
                pid,
                pidfd,
                exited,
                netns,
                proc,
            } => {
                let pid = *pid;
                let just_exited = !*exited
                    && (pidfd_ready
                        || (pidfd.is_none() && due && !process_in(proc.as_ref(), pid, *netns)));
                if just_exited {
                    *exited = true;
                    *pidfd = None;
                }
                if !*exited || !(due || just_exited) {
                    return None;
                }
                let (Some(proc), Some(ns)) = (proc.as_ref(), *netns) else {
                    return Some(format!("the target process {pid} exited"));
                };
                let left = processes_in(proc.as_fd(), ns);
                if left == 0 {
                    return Some(if just_exited {
                        format!("the target process {pid} exited")
                    } else {
                        format!("no process is left in the network namespace of process {pid}")
                    });
                }
                if just_exited {
                    tracing::info!(
                        "the target process {pid} exited; {left} other processes are still in \
                         its network namespace"
                    );
                }
                None
            }
            Target::Path {
                dir,
                name,
                shown,
                netns,
            } => {
                if !due {
                    return None;
                }
                match NsId::at(dir.as_fd(), Path::new(name.as_os_str())) {
                    Ok(now_there) if now_there == *netns => None,
                    Ok(_) => Some(format!(
                        "{} no longer names the network namespace",
                        shown.display()
                    )),
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::SRCH) => Some(format!(
                        "the network namespace {} was removed",
                        shown.display()
                    )),
                    Err(e) => {
                        tracing::debug!("{}: {e}", shown.display());
                        None
                    }
                }
            }
        }
    }
}

/// Whether process `pid` still runs in namespace `netns` (a reused PID elsewhere does
/// not count); when that cannot be told, it is taken to run.
fn process_in(proc: Option<&OwnedFd>, pid: u32, netns: Option<ProcNetns>) -> bool {
    let Some(proc) = proc else {
        return true;
    };
    let found = match netns {
        Some(netns) => netns.holds(proc.as_fd(), pid),
        None => {
            rustix::fs::statat(proc, Path::new(&pid.to_string()), AtFlags::empty()).map(|_| true)
        }
    };
    !matches!(found, Ok(false) | Err(Errno::NOENT | Errno::SRCH))
}

/// How many processes other than this one are in namespace `netns`.
fn processes_in(proc: BorrowedFd<'_>, netns: ProcNetns) -> usize {
    let own = std::process::id();
    let entries = match rustix::fs::Dir::read_from(proc) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::debug!("read /proc: {e}");
            return 0;
        }
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok()?.parse::<u32>().ok())
        .filter(|&pid| pid != own && netns.holds(proc, pid) == Ok(true))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_in_our_namespace_is_counted_and_its_exit_noticed() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut watch = ContainerWatch::process(child.id());
        assert!(watch.pidfd().is_some());
        assert_eq!(watch.wait(Instant::now()), None);
        assert_eq!(watch.check(false, Instant::now()), None);
        child.kill().unwrap();
        // The pidfd turns readable once the child exits.
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(
            watch.pidfd().unwrap(),
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut fds, Some(&timeout)).unwrap(), 1);
        // This test process is not counted, but its parent (cargo, a shell) shares
        // the namespace: the forwarder goes on.
        let Target::Process { netns, proc, .. } = &watch.target else {
            unreachable!()
        };
        assert!(processes_in(proc.as_ref().unwrap().as_fd(), netns.unwrap()) >= 1);
        assert_eq!(watch.check(true, Instant::now()), None);
        assert!(watch.pidfd().is_none());
        assert!(watch.wait(Instant::now()).is_some());
        let _ = child.wait();
    }

    #[test]
    fn a_process_already_gone_is_noticed() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let watch = ContainerWatch::process(pid);
        assert!(watch.pidfd().is_none());
        assert!(matches!(watch.target, Target::Process { exited: true, .. }));
    }

    #[test]
    fn a_removed_or_replaced_path_is_noticed() {
        let dir = std::env::temp_dir().join(format!("tapnet-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ns");
        std::fs::write(&file, b"").unwrap();
        let mut watch = ContainerWatch::path(&file).unwrap();
        let later = Instant::now() + CHECK_INTERVAL;
        assert_eq!(watch.check(false, Instant::now()), None, "not due yet");
        assert_eq!(watch.check(false, later), None, "still there");
        // Another file under the same name is another namespace (made while the
        // first exists, so that its inode number is another).
        std::fs::write(dir.join("other"), b"").unwrap();
        std::fs::rename(dir.join("other"), &file).unwrap();
        let reason = watch.check(false, later + CHECK_INTERVAL).unwrap();
        assert!(reason.contains("no longer names"), "{reason}");
        std::fs::remove_file(&file).unwrap();
        let reason = watch.check(false, later + CHECK_INTERVAL * 2).unwrap();
        assert!(reason.ends_with("was removed"), "{reason}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
