//! `tapnet run [-p ...] -- CMD ARGS...`: CMD in fresh user, network and mount
//! namespaces with networking, as an unprivileged user (or root), with CMD's exit
//! status.
//!
//! The parent spawns `/proc/self/exe __run-child FD DNS -- CMD...` with one end of a
//! socket pair as FD. The child (single-threaded) unshares user, network and mount
//! namespaces and says so on FD; it keeps every capability in its new user namespace
//! because it does not exec in between (an exec before the ID maps exist would drop
//! them). The parent maps root in the child's user namespace to the caller (as
//! `unshare -r`), starts the [`Stack`] against the child's network namespace (TAP
//! `tap0`, 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3, MTU 65520), publishes the
//! `-p` ports, and says "go". The child then bind-mounts a resolv.conf naming 10.0.2.3 over `/etc/resolv.conf` in its
//! own mount namespace, and execs CMD. The parent forwards SIGINT, SIGTERM and SIGHUP,
//! waits, shuts the stack down and exits with CMD's status (128 + signal if it was
//! killed). The namespaces die with the child, the TAP with the stack's fd, and the
//! child is killed if the parent dies (`PR_SET_PDEATHSIG`).
//!
//! Exit statuses of tapnet's own: 125 when the network cannot be set up, 126 when CMD
//! cannot be executed, 127 when it is not found (as shells and `docker run`).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command};

use anyhow::Context;
use ipnet::Ipv4Net;

use super::slirp::parse_cidr;
use super::stack::{Stack, StackConfig};
use crate::port::NetnsTarget;
use crate::portspec::PortSpec;
use crate::sys::userns;

/// The first argument that selects the child side in `main`.
pub(crate) const CHILD_ARG: &str = "__run-child";
/// The descriptor limit for the command, from the parent to the child.
const NOFILE_ENV: &str = "TAPNET_RUN_NOFILE";

/// Status when tapnet itself fails before CMD runs.
pub(crate) const EXIT_SETUP_FAILED: i32 = 125;
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

/// `tapnet run`'s arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The command runs as root of a new user namespace (the caller outside it), \
                  on tap0 with 10.0.2.100/24, gateway 10.0.2.2 and DNS 10.0.2.3 (as slirp4netns). \
                  Exit status: the command's; 125 if the network cannot be set up; \
                  126/127 if the command cannot be run / is not found."
)]
pub(crate) struct RunArgs {
    /// Publish a port: [HOSTIP:]HOST:CONTAINER[/tcp|/udp]; ranges HOST1-HOST2:C1-C2; IPv6 host addresses in brackets ([::1]:8080:80)
    #[arg(short = 'p', long = "publish", value_name = "SPEC", value_parser = PortSpec::parse)]
    pub(crate) publish: Vec<PortSpec>,
    /// MTU of tap0
    #[arg(long, default_value_t = 65520, value_parser = clap::value_parser!(u32).range(68..=65521))]
    pub(crate) mtu: u32,
    /// The network: the container is .100, the gateway .2, DNS .3
    #[arg(long, default_value = "10.0.2.0/24", value_parser = parse_cidr)]
    pub(crate) cidr: Ipv4Net,
    /// Enable IPv6
    #[arg(long)]
    pub(crate) ipv6: bool,
    /// Prohibit connecting to the host's 127.0.0.1 through the gateway address
    #[arg(long)]
    pub(crate) disable_host_loopback: bool,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub(crate) command: Vec<OsString>,
}

/// The stack configuration of `tapnet run`.
fn stack_config(args: &RunArgs, child: u32, pipelines: u8) -> StackConfig {
    StackConfig {
        netns: Some(NetnsTarget::Pid(child)),
        userns: None,
        tap_name: "tap0".to_owned(),
        configure: true,
        mtu: args.mtu,
        cidr: args.cidr,
        mac: None,
        ipv6: args.ipv6,
        host_loopback: !args.disable_host_loopback,
        dns: true,
        outbound_addr: None,
        outbound_addr6: None,
        offload: crate::datapath::offload_enabled(),
        pipelines,
        // Checked in `run` before anything starts.
        max_host_flows: super::stack::max_host_flows_from_env().ok().flatten(),
    }
}

/// Kills and reaps the child unless it was waited for.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `tapnet run`; returns the exit status.
pub(crate) fn main(args: &RunArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tapnet: {e:#}");
            EXIT_SETUP_FAILED
        }
    }
}

fn run(args: &RunArgs) -> anyhow::Result<i32> {
    let (mut sync, theirs) = UnixStream::pair().context("socketpair")?;
    let pipelines = super::stack::pipelines_from_env()?;
    super::stack::max_host_flows_from_env()?;
    let config = stack_config(args, 0, pipelines);
    let mut cmd = Command::new("/proc/self/exe");
    // The command gets the descriptor limit tapnet was started with, not the raised one.
    cmd.env(NOFILE_ENV, crate::sys::rlimit::started_with());
    cmd.arg0("tapnet")
        .arg(CHILD_ARG)
        .arg(theirs.as_raw_fd().to_string())
        .arg(config.dns_addr().to_string())
        .arg("--")
        .args(&args.command);
    let child = userns::spawn_tied(&mut cmd, &[theirs.as_fd()]).context("start the command")?;
    drop(theirs);
    let pid = child.id();
    let mut guard = ChildGuard(Some(child));
    // The child reports "u" once it has unshared, or why it could not.
    let mut report = Vec::new();
    let _ = BufReader::new((&sync).take(4096)).read_until(b'\n', &mut report);
    if report.first() != Some(&b'u') {
        let why = String::from_utf8_lossy(report.get(1..).unwrap_or_default());
        anyhow::bail!(
            "create user and network namespaces: {}",
            if why.trim().is_empty() {
                "the child exited"
            } else {
                why.trim()
            }
        );
    }
    userns::write_id_maps(pid).context("map root in the new user namespace")?;
    let stack = Stack::start(stack_config(args, pid, pipelines)).context("start the network")?;
    let config = stack_config(args, pid, pipelines);
    for spec in &args.publish {
        // An IPv6 host address goes to the guest's IPv6 address; a wildcard also
        // listens on [::] when IPv6 is on, as Docker publishes on both families.
        let mut targets = Vec::new();
        match (spec.host_addr, config.guest_addr6()) {
            (IpAddr::V6(_), Some(guest6)) => targets.push((spec.host_addr, IpAddr::V6(guest6))),
            (IpAddr::V6(_), None) => {
                stack.shutdown();
                anyhow::bail!("publish {spec}: an IPv6 host address needs --ipv6");
            }
            (IpAddr::V4(v4), guest6) => {
                targets.push((spec.host_addr, IpAddr::V4(config.guest_addr())));
                if let (true, Some(guest6)) = (v4.is_unspecified(), guest6) {
                    targets.push((
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                        IpAddr::V6(guest6),
                    ));
                }
            }
        }
        for (host_addr, guest) in targets {
            if let Err(e) = stack.add_forward(
                spec.proto,
                host_addr,
                spec.host_port,
                guest,
                spec.container_port,
                spec.count,
            ) {
                stack.shutdown();
                anyhow::bail!("publish {spec}: {e}");
            }
        }
    }
    // Forward signals to the child from a thread; the main thread waits.
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
            .context("signal handlers")?;
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(p) = i32::try_from(pid) {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(p).expect("a child's pid is positive"),
                    rustix::process::Signal::from_named_raw(sig)
                        .unwrap_or(rustix::process::Signal::TERM),
                );
            }
        }
    });
    let go = sync.write_all(b"g");
    drop(sync);
    let status = match go {
        Ok(()) => guard.0.as_mut().expect("not yet waited").wait(),
        Err(e) => Err(e),
    };
    handle.close();
    let _ = forwarder.join();
    stack.shutdown();
    let status = status.context("wait for the command")?;
    guard.0 = None;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => EXIT_SETUP_FAILED,
    })
}

/// The child side: `tapnet __run-child FD DNS -- CMD...` (argv[1] is `__run-child`).
pub(crate) fn child_main(args: &[OsString]) -> ! {
    let fail = |msg: String| -> ! {
        eprintln!("tapnet {CHILD_ARG}: {msg} (this command is internal to tapnet)");
        std::process::exit(EXIT_SETUP_FAILED)
    };
    let [_, _, fd, dns, dashdash, command @ ..] = args else {
        fail("expected FD DNS -- CMD...".to_owned());
    };
    if dashdash != "--" || command.is_empty() {
        fail("expected FD DNS -- CMD...".to_owned());
    }
    let fd: i32 = fd
        .to_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(format!("invalid fd {fd:?}")));
    let dns: IpAddr = dns
        .to_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(format!("invalid DNS address {dns:?}")));
    let sync = userns::adopt_fd(fd).unwrap_or_else(|e| fail(format!("fd {fd}: {e}")));
    let mut sync = UnixStream::from(sync);
    if let Err(e) = userns::unshare_user_net_mount() {
        let _ = writeln!(sync, "e{e}");
        std::process::exit(EXIT_SETUP_FAILED);
    }
    if sync.write_all(b"u\n").is_err() {
        std::process::exit(EXIT_SETUP_FAILED);
    }
    let mut byte = [0u8; 1];
    let go = sync.read(&mut byte);
    drop(sync);
    if !matches!(go, Ok(1)) {
        // The parent failed to set the network up and says why.
        std::process::exit(EXIT_SETUP_FAILED);
    }
    if let Err(e) = setup_resolv_conf(dns)
        && crate::knobs::Knobs::get().debug
    {
        eprintln!("tapnet: debug: /etc/resolv.conf not replaced: {e}");
    }
    if let Some(soft) = std::env::var(NOFILE_ENV)
        .ok()
        .and_then(|s| crate::sys::rlimit::parse_soft(&s))
    {
        crate::sys::rlimit::restore_nofile_soft(soft);
    }
    let program = &command[0];
    let name = program.to_string_lossy();
    let err = match resolve_command(program) {
        Some(path) => Command::new(path)
            .arg0(program)
            .args(&command[1..])
            .env_remove(NOFILE_ENV)
            .exec(),
        None => std::io::Error::from_raw_os_error(libc::ENOENT),
    };
    let (code, why) = match err.raw_os_error() {
        Some(libc::ENOENT) => (EXIT_NOT_FOUND, "No such file or directory".to_owned()),
        Some(libc::EACCES) => (EXIT_CANNOT_EXECUTE, "Permission denied".to_owned()),
        _ => (EXIT_CANNOT_EXECUTE, crate::nshelper::describe(&err)),
    };
    eprintln!("tapnet: {name}: {why}");
    std::process::exit(code)
}

/// Finds CMD as a shell does: a name with a '/' is used as it is; otherwise the first
/// executable file of that name in `$PATH`, skipping directories we may not search;
/// failing that, the first such file that is not executable (exec then reports
/// `EACCES`). `None` when there is no such file at all.
fn resolve_command(program: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') {
        return Some(program.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut fallback = None;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            ".".into()
        } else {
            dir
        };
        let candidate = dir.join(program);
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                return Some(candidate);
            }
            Ok(m) if m.is_file() => {
                fallback.get_or_insert(candidate);
            }
            _ => {}
        }
    }
    fallback
}

/// The resolv.conf of the container: our DNS address, and the host's search domains
/// and options.
fn resolv_conf(dns: IpAddr, host: &str) -> String {
    let mut text = format!("nameserver {dns}\n");
    for line in host.lines() {
        let t = line.trim_start();
        if t.starts_with("search") || t.starts_with("domain") || t.starts_with("options") {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// Bind-mounts a generated resolv.conf over `/etc/resolv.conf` in our own mount
/// namespace (made a slave first, so nothing propagates back to the host).
fn setup_resolv_conf(dns: IpAddr) -> std::io::Result<()> {
    let target = Path::new("/etc/resolv.conf");
    userns::set_propagation_recursive(Path::new("/"), false)?;
    let host = std::fs::read_to_string(target).unwrap_or_default();
    let file = std::env::temp_dir().join(format!(
        "tapnet-resolv.{}.{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::write(&file, resolv_conf(dns, &host))?;
    let result = userns::bind_mount(&file, target, false);
    // The mount holds the inode; the name is not needed any more.
    let _ = std::fs::remove_file(&file);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn resolv_conf_keeps_search_and_options() {
        let host = "# generated\nnameserver 127.0.0.53\nsearch example.org\noptions edns0\n";
        assert_eq!(
            resolv_conf(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)), host),
            "nameserver 10.0.2.3\nsearch example.org\noptions edns0\n"
        );
    }

    #[test]
    fn run_config_is_slirp4netns_like() {
        let args = RunArgs {
            publish: vec![],
            mtu: 65520,
            cidr: "10.0.2.0/24".parse().unwrap(),
            ipv6: false,
            disable_host_loopback: false,
            command: vec!["true".into()],
        };
        let c = stack_config(&args, 42, 1);
        assert_eq!(c.netns, Some(NetnsTarget::Pid(42)));
        assert_eq!(c.tap_name, "tap0");
        assert!(c.configure && c.host_loopback && c.dns);
        assert_eq!(c.guest_addr(), Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(c.dns_addr(), Ipv4Addr::new(10, 0, 2, 3));
    }
}
