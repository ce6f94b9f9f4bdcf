//! slirp4netns's `--enable-sandbox` and `--enable-seccomp`, for a multi-threaded
//! process.
//!
//! The sandbox is slirp4netns's (`sandbox.c`): a new mount namespace whose root is a
//! read-only tmpfs holding only `/etc` and `/run` bind-mounted read-only (as slaves,
//! so that a regenerated `/etc/resolv.conf` still shows), `pivot_root` into it,
//! `no_new_privs`, and every capability dropped but `CAP_NET_BIND_SERVICE`. An
//! unprivileged caller first joins the container's user namespace and becomes root
//! there, as slirp4netns does, to be allowed to create the mount namespace.
//!
//! It runs in two halves, because tapnet is multi-threaded and namespaces are per
//! thread: [`Sandbox::prepare`] joins the user namespace and unshares the mount
//! namespace while the process is still single-threaded (before the stack starts),
//! so that every thread lives in that mount namespace; [`Sandbox::enter`] runs once
//! the TAP is attached and the API socket bound, and changes the namespace's mounts
//! and the shared root and working directory, which every thread sees. Capabilities
//! are per thread: dropping them affects the calling thread and the threads it starts
//! later, while the seccomp filter, installed on every thread, denies the system
//! calls that capabilities would unlock (mount, setns, unshare, ...).

use std::io;
use std::path::Path;

use crate::sys::{seccomp, userns};

/// `CAP_NET_BIND_SERVICE` from `linux/capability.h`.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// A sandbox whose first half is done.
#[derive(Debug)]
pub(crate) struct Sandbox(());

fn step(what: &str) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Sandbox {
    /// Joins `userns` (when not root) and unshares the mount namespace. Call while
    /// single-threaded.
    pub(crate) fn prepare(userns: Option<&Path>) -> Result<Self, String> {
        if userns::euid() != 0
            && let Some(path) = userns
        {
            userns::join_userns_as_root(path)
                .map_err(step(&format!("join user namespace {}", path.display())))?;
        }
        userns::unshare_mount_ns().map_err(step("cannot unshare new mount namespace"))?;
        userns::set_propagation_recursive(Path::new("/"), false)
            .map_err(step("cannot make mount propagation slave /"))?;
        Ok(Self(()))
    }

    /// Builds the new root, pivots into it and drops privileges.
    pub(crate) fn enter(self) -> Result<(), String> {
        let tmp = Path::new("/tmp");
        userns::mount_tmpfs(tmp, c"size=1k").map_err(step("cannot mount tmpfs on /tmp"))?;
        for dir in ["etc", "old", "run"] {
            std::fs::create_dir(tmp.join(dir)).map_err(step(&format!("cannot mkdir /{dir}")))?;
        }
        for dir in ["etc", "run"] {
            let from = Path::new("/").join(dir);
            userns::bind_mount_readonly_slave(&from, &tmp.join(dir)).map_err(step(&format!(
                "cannot bind mount {} to /tmp/{dir}",
                from.display()
            )))?;
        }
        std::env::set_current_dir(tmp).map_err(step("cannot chdir to /tmp"))?;
        userns::pivot_root(Path::new("."), Path::new("old"))
            .map_err(step("cannot pivot_root to /tmp"))?;
        std::env::set_current_dir("/").map_err(step("cannot chdir to /"))?;
        userns::umount_detach(Path::new("/old")).map_err(step("cannot umount /old"))?;
        std::fs::remove_dir("/old").map_err(step("cannot rmdir /old"))?;
        userns::remount_root_readonly().map_err(step("cannot remount / read-only"))?;
        seccomp::set_no_new_privs().map_err(step("prctl(PR_SET_NO_NEW_PRIVS)"))?;
        userns::drop_capabilities_except(CAP_NET_BIND_SERVICE)
            .map_err(step("drop capabilities"))?;
        tracing::debug!("sandbox: root is a read-only tmpfs with /etc and /run");
        Ok(())
    }
}

/// Installs the allow-list filter on every thread; logs what it allows.
pub(crate) fn enable_seccomp() -> Result<(), String> {
    let allowed = seccomp::allowed_syscalls();
    let names: Vec<&str> = allowed.iter().map(|&(name, _)| name).collect();
    tracing::debug!("seccomp: allowing {}", names.join(" "));
    seccomp::install(&seccomp::build_filter()).map_err(step("seccomp"))?;
    println!(
        "seccomp: an allow-list of {} syscalls is installed on every thread; \
         other syscalls fail with EPERM",
        allowed.len()
    );
    Ok(())
}
