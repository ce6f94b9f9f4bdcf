//! A seccomp allow-list for the running tapnet process (slirp4netns `--enable-seccomp`).
//!
//! slirp4netns installs a deny-list with libseccomp (the default action is "allow", a
//! few dozen dangerous system calls kill the process). tapnet installs an allow-list
//! instead, built here as a classic BPF program without a dependency:
//!
//! - a foreign architecture (such as i386 or x32 system calls on x86_64) kills the
//!   process;
//! - the system calls in [`allowed_syscalls`] are allowed; `clone` only without
//!   namespace flags (threads may still be created, namespaces may not);
//! - `clone3` fails with `ENOSYS`, whose flags live in memory that BPF cannot read, so
//!   that the C library falls back to `clone`;
//! - everything else fails with `EPERM`, the errno slirp4netns's documentation
//!   suggests, rather than killing the process: a call we did not foresee shows up as
//!   an error in a log, not as a dead network.
//!
//! The filter is installed with `SECCOMP_FILTER_FLAG_TSYNC`, so it covers the threads
//! that already run (datapath, engine), not only the calling thread.

use std::io;

// From `linux/seccomp.h`, `linux/filter.h`, `linux/audit.h`.
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_TSYNC: libc::c_uint = 1;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARG0_LO: u32 = 16;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// x32 system calls on x86_64 have this bit set in their number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `CLONE_NEW*` flags that a sandboxed `clone` may not use.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u32;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct SockFilter {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

const fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// What the filter answers for one system call (used by the tests' interpreter).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Errno(u32),
    KillProcess,
}

#[cfg(test)]
impl Action {
    pub(crate) fn from_ret(ret: u32) -> Self {
        match ret & 0xffff_0000 {
            SECCOMP_RET_ALLOW => Self::Allow,
            SECCOMP_RET_ERRNO => Self::Errno(ret & 0xffff),
            _ => Self::KillProcess,
        }
    }
}

/// Expands `SYS_read, SYS_write` to `[("read", libc::SYS_read), ...]`.
macro_rules! syscalls {
    ($($nr:ident),* $(,)?) => {
        [$((&stringify!($nr)[4..], libc::$nr)),*]
    };
}

/// The system calls tapnet's threads make once running: I/O on the TAP and sockets
/// (io_uring or epoll), host-socket egress and port forwarding, the API socket,
/// timers, memory, threads and signals, and reading `/etc/resolv.conf`.
pub(crate) fn allowed_syscalls() -> Vec<(&'static str, libc::c_long)> {
    let mut list: Vec<(&'static str, libc::c_long)> = syscalls![
        // I/O
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_close,
        SYS_lseek,
        SYS_ioctl,
        SYS_fcntl,
        SYS_dup,
        SYS_dup3,
        SYS_pipe2,
        SYS_splice,
        SYS_tee,
        SYS_sendfile,
        // event loops
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_eventfd2,
        SYS_ppoll,
        SYS_pselect6,
        SYS_timerfd_create,
        SYS_timerfd_settime,
        SYS_timerfd_gettime,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        // sockets
        SYS_socket,
        SYS_socketpair,
        SYS_connect,
        SYS_accept4,
        SYS_bind,
        SYS_listen,
        SYS_shutdown,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_sendmmsg,
        SYS_recvmmsg,
        SYS_getsockname,
        SYS_getpeername,
        SYS_setsockopt,
        SYS_getsockopt,
        // files: reading /etc/resolv.conf and /etc/hosts
        SYS_openat,
        SYS_newfstatat,
        SYS_fstat,
        SYS_statx,
        SYS_readlinkat,
        SYS_getdents64,
        SYS_faccessat,
        SYS_faccessat2,
        // removing the API socket file on exit
        SYS_unlinkat,
        // memory
        SYS_mmap,
        SYS_munmap,
        SYS_mprotect,
        SYS_madvise,
        SYS_mremap,
        SYS_brk,
        SYS_membarrier,
        // threads (clone is further restricted below), time, signals, process
        SYS_clone,
        SYS_futex,
        SYS_set_robust_list,
        SYS_get_robust_list,
        SYS_rseq,
        SYS_set_tid_address,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_sched_setaffinity,
        SYS_gettid,
        SYS_getpid,
        SYS_getppid,
        SYS_tgkill,
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_sigaltstack,
        SYS_restart_syscall,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_gettimeofday,
        SYS_getrandom,
        SYS_prctl,
        SYS_prlimit64,
        SYS_uname,
        SYS_getuid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getegid,
        SYS_wait4,
        SYS_waitid,
        SYS_exit,
        SYS_exit_group,
    ]
    .to_vec();
    #[cfg(target_arch = "x86_64")]
    list.extend(syscalls![
        SYS_poll,
        SYS_select,
        SYS_epoll_wait,
        SYS_epoll_create,
        SYS_accept,
        SYS_open,
        SYS_stat,
        SYS_lstat,
        SYS_readlink,
        SYS_access,
        SYS_pipe,
        SYS_dup2,
        SYS_arch_prctl,
        SYS_unlink,
    ]);
    list
}

/// Builds the filter program for the running architecture.
pub(crate) fn build_filter() -> Vec<SockFilter> {
    let allowed = allowed_syscalls();
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut prog = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        prog.push(jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
        prog.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    }
    // clone3: ENOSYS, so that the C library falls back to clone.
    prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr(libc::SYS_clone3), 0, 1));
    prog.push(stmt(
        BPF_RET | BPF_K,
        SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    ));
    // clone: allowed without namespace flags (argument 0 holds the flags).
    prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr(libc::SYS_clone), 0, 4));
    prog.push(stmt(BPF_LD | BPF_W | BPF_ABS, DATA_ARG0_LO));
    prog.push(jump(
        BPF_JMP | BPF_JSET | BPF_K,
        CLONE_NAMESPACE_FLAGS,
        0,
        1,
    ));
    prog.push(stmt(BPF_RET | BPF_K, deny));
    prog.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    // The allow-list: each match jumps over the remaining comparisons and the deny.
    let count = allowed.len();
    assert!(count < 255, "allow-list too long for 8-bit jumps");
    for (i, &(_, number)) in allowed.iter().enumerate() {
        let to_allow = u8::try_from(count - i).expect("checked above");
        prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr(number), to_allow, 0));
    }
    prog.push(stmt(BPF_RET | BPF_K, deny));
    prog.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    prog
}

fn nr(number: libc::c_long) -> u32 {
    u32::try_from(number).expect("system-call numbers are small")
}

/// Sets `no_new_privs` (required to install a filter without `CAP_SYS_ADMIN`) and
/// installs `prog` on every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`).
pub(crate) fn install(prog: &[SockFilter]) -> io::Result<()> {
    set_no_new_privs()?;
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?,
        filter: prog.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog.len()` valid instructions with the layout of
    // `struct sock_filter` (repr(C) u16, u8, u8, u32); the kernel copies the program
    // before returning. A positive return value is the id of a thread that could not
    // be synchronised.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            &raw const fprog,
        )
    };
    match ret {
        0 => Ok(()),
        r if r < 0 => Err(io::Error::last_os_error()),
        tid => Err(io::Error::other(format!(
            "thread {tid} could not be synchronised to the filter"
        ))),
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: this thread (and, with TSYNC, every thread) can
/// no longer gain privileges through execve.
pub(crate) fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `prog` over one system call as the kernel would: a tiny classic-BPF
/// interpreter covering the instructions [`build_filter`] emits. For tests.
#[cfg(test)]
pub(crate) fn evaluate(prog: &[SockFilter], arch: u32, number: u32, arg0: u64) -> Action {
    let load = |offset: u32| -> u32 {
        match offset {
            DATA_NR => number,
            DATA_ARCH => arch,
            DATA_ARG0_LO => arg0 as u32,
            other => panic!("unexpected load at {other}"),
        }
    };
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => acc = load(ins.k),
            c if c == BPF_RET | BPF_K => return Action::from_ret(ins.k),
            c => {
                let taken = match c {
                    c if c == BPF_JMP | BPF_JEQ | BPF_K => acc == ins.k,
                    c if c == BPF_JMP | BPF_JGE | BPF_K => acc >= ins.k,
                    c if c == BPF_JMP | BPF_JSET | BPF_K => acc & ins.k != 0,
                    other => panic!("unexpected instruction {other:#x}"),
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(number: libc::c_long, arg0: u64) -> Action {
        evaluate(&build_filter(), AUDIT_ARCH, nr(number), arg0)
    }

    #[test]
    fn allows_the_listed_calls() {
        for (name, number) in allowed_syscalls() {
            let arg0 = if number == libc::SYS_clone {
                (libc::CLONE_VM | libc::CLONE_THREAD) as u64
            } else {
                0
            };
            assert_eq!(eval(number, arg0), Action::Allow, "{name}");
        }
    }

    #[test]
    fn denies_the_rest_with_eperm() {
        for number in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_setns,
            libc::SYS_unshare,
            libc::SYS_execve,
            libc::SYS_ptrace,
            libc::SYS_bpf,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_keyctl,
            libc::SYS_setuid,
            libc::SYS_chroot,
        ] {
            assert_eq!(
                eval(number, 0),
                Action::Errno(libc::EPERM as u32),
                "{number}"
            );
        }
    }

    #[test]
    fn clone_may_make_threads_but_not_namespaces() {
        let thread = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_THREAD) as u64;
        assert_eq!(eval(libc::SYS_clone, thread), Action::Allow);
        for flag in [libc::CLONE_NEWUSER, libc::CLONE_NEWNET, libc::CLONE_NEWNS] {
            assert_eq!(
                eval(libc::SYS_clone, thread | flag as u64),
                Action::Errno(libc::EPERM as u32)
            );
        }
        assert_eq!(
            eval(libc::SYS_clone3, 0),
            Action::Errno(libc::ENOSYS as u32)
        );
    }

    #[test]
    fn foreign_architectures_are_killed() {
        let prog = build_filter();
        assert_eq!(
            evaluate(&prog, 0x4000_0003, nr(libc::SYS_read), 0),
            Action::KillProcess
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            evaluate(&prog, AUDIT_ARCH, X32_SYSCALL_BIT | 1, 0),
            Action::KillProcess
        );
    }

    #[test]
    fn no_duplicates_and_no_mount_family_in_the_list() {
        let list = allowed_syscalls();
        let mut numbers: Vec<_> = list.iter().map(|&(_, n)| n).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), list.len());
        assert!(list.iter().all(|(name, _)| !name.contains("mount")));
    }

    /// The kernel enforces the filter: a child that installs it cannot `execve`.
    #[test]
    fn kernel_enforces_the_filter_in_a_child() {
        use std::os::unix::process::CommandExt;
        let prog = build_filter();
        let mut cmd = std::process::Command::new("/bin/true");
        // SAFETY: the hook only calls prctl and seccomp (async-signal-safe) on a
        // program allocated before the fork.
        unsafe {
            cmd.pre_exec(move || install(&prog));
        }
        let err = cmd.spawn().expect_err("execve must be denied");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }
}
