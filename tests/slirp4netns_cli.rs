//! tapnet as slirp4netns: the command line as podman and rootlesskit probe and call
//! it (`--help`, `--version`, errors and exit codes, argv[0] through a symlink), and,
//! as user nobody against a namespace of `unshare -Urn`, the ready fd, the JSON API,
//! the exit fd, and traffic under `--enable-sandbox --enable-seccomp`.
//!
//! Traffic goes only to the host's 127.0.0.1 and to the namespace the test creates.

mod common;

use common::{ChildGuard, TempDir, require_root, skipped, tapnet_bin, wait_for};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::NOBODY;

/// Spawns that hand inheritable fds to a child take this lock, so that no other test's
/// child inherits them too (which would keep the exit pipe open).
static SPAWN: Mutex<()> = Mutex::new(());

fn slirp(args: &[&str]) -> Output {
    Command::new(tapnet_bin())
        .arg("slirp4netns")
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn help_has_what_podman_and_rootlesskit_look_for() {
    let out = slirp(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    // podman and rootlesskit read stdout and stderr combined.
    let combined = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // containers/common checkSlirpFlags, then rootlesskit DetectFeatures.
    for flag in [
        "--disable-host-loopback",
        "--mtu",
        "--enable-sandbox",
        "--enable-seccomp",
        "--cidr",
        "--outbound-addr",
        "--enable-ipv6",
        "--netns-type",
        "--api-socket",
    ] {
        assert!(combined.contains(flag), "{flag} missing from --help");
    }
    assert!(combined.contains("tapnet"));
    assert_eq!(slirp(&["-h"]).stdout, out.stdout);
}

#[test]
fn version_is_slirp4netns_shaped() {
    let out = slirp(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap();
    assert!(first.starts_with("slirp4netns version 1."), "{first}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("SLIRP_CONFIG_VERSION_MAX: ")),
        "{stdout}"
    );
    assert_eq!(slirp(&["-v"]).stdout, out.stdout);
}

#[test]
fn bad_arguments_fail_as_slirp4netns() {
    for (args, stderr) in [
        (
            &["--mtu=70000", "1", "tap0"][..],
            "MTU must be a positive integer (< 65522)\n",
        ),
        (
            &["-r", "x", "1", "tap0"],
            "ready-fd must be a non-negative integer\n",
        ),
        (&["0", "tap0"], "PID must be a positive integer\n"),
        (&["1"], ""),
        (
            &["--macaddress=02:00:00:00:00:01", "1", "tap0"],
            "--macaddr cannot be specified when --configure or -c is not specified\n",
        ),
        (
            &["--target-type=x", "1", "tap0"],
            "--target-type must be either \"netns\" or \"bess\"\n",
        ),
    ] {
        let out = slirp(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), stderr, "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("Usage: "),
            "usage on stdout after an error: {}",
            text(&out)
        );
    }
    let out = slirp(&["--bogus", "1", "tap0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).ends_with(": unrecognized option '--bogus'\n"),
        "{}",
        text(&out)
    );
    // Configuration errors: a message, no usage.
    let out = slirp(&["--cidr=10.0.2.100/24", "1", "tap0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24\n"
    );
}

#[test]
fn invoked_as_slirp4netns_through_a_symlink() {
    let dir = TempDir::new();
    let out = Command::new(tapnet_bin())
        .args(["install-slirp4netns-link", dir.0.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let link = dir.0.join("slirp4netns");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    let out = Command::new(&link).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("slirp4netns version "),
        "{}",
        text(&out)
    );
    let out = Command::new(&link).arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("Usage: {} [OPTION]...", link.display())),
        "{}",
        text(&out)
    );
    // A second install is idempotent.
    let again = Command::new(tapnet_bin())
        .args(["install-slirp4netns-link", dir.0.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
}

// ---------------------------------------------------------------------------------
// As user nobody, against a rootless "container".

/// `unshare -Urn sleep` as nobody: a user and network namespace like a rootless
/// container's.
fn container() -> ChildGuard {
    common::rootless_container()
}

/// A running `tapnet slirp4netns` as nobody, with its ready and exit pipes.
struct Slirp {
    child: ChildGuard,
    ready: OwnedFd,
    exit: Option<OwnedFd>,
    log: std::path::PathBuf,
}

impl Slirp {
    fn start(dir: &Path, args: &[&str], pid: u32) -> Self {
        let _lock = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (exit_r, exit_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        // The child's ends are inherited under their own numbers.
        for fd in [&ready_w, &exit_r] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).unwrap();
        }
        let log = dir.join("slirp.log");
        let logfile = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            tapnet_bin(),
            "slirp4netns",
            "-r",
            &ready_w.as_raw_fd().to_string(),
            "-e",
            &exit_r.as_raw_fd().to_string(),
        ])
        .args(args)
        .arg(pid.to_string())
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().unwrap())
        .stderr(logfile);
        let child = ChildGuard::spawn(&mut cmd);
        drop(ready_w);
        drop(exit_r);
        Self {
            child,
            ready: ready_r,
            exit: Some(exit_w),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads the ready pipe: everything written before it was closed.
    fn wait_ready(&self) -> Option<String> {
        let mut fds = [rustix::event::PollFd::new(
            &self.ready,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 30,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut fds, Some(&timeout)).ok()? == 0 {
            return None;
        }
        let mut text = String::new();
        std::fs::File::from(self.ready.try_clone().ok()?)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }

    /// Closes the exit pipe; waits for the process to end; returns its status.
    fn close_exit_fd(&mut self) -> Option<i32> {
        self.exit = None;
        let child = &mut self.child.0;
        let mut status = None;
        wait_for(Duration::from_secs(10), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        status.and_then(|s| s.code())
    }
}

/// Sends one API request the way podman does; returns the reply.
fn api(socket: &Path, request: &str) -> String {
    let mut s = UnixStream::connect(socket).expect("connect to the API socket");
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn in_netns(pid: u32, script: &str) -> Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "sh", "-c", script])
        .output()
        .unwrap()
}

fn preconditions(test: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if !require_root(test) {
        return false;
    }
    match std::fs::metadata("/dev/net/tun") {
        Ok(m) if m.permissions().mode() & 0o006 == 0o006 => true,
        _ => {
            skipped(&format!("{test}: /dev/net/tun is not usable by users"));
            false
        }
    }
}

/// Starts slirp4netns against a fresh container and waits for its ready fd.
fn start(dir: &TempDir, args: &[&str]) -> (ChildGuard, Slirp) {
    // nobody must be able to create the API socket.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ctr = container();
    let slirp = Slirp::start(&dir.0, args, ctr.pid());
    let ready = slirp.wait_ready();
    let log = slirp.log_text();
    assert_eq!(ready.as_deref(), Some("1"), "ready fd; log:\n{log}");
    (ctr, slirp)
}

#[test]
fn ready_fd_api_and_exit_fd() {
    let test = "ready_fd_api_and_exit_fd";
    if !preconditions(test) {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.0.join("api.sock");
    let (ctr, mut slirp) = start(
        &dir,
        &["-c", "--mtu=65520", "--api-socket", sock.to_str().unwrap()],
    );
    let addr = in_netns(ctr.pid(), "ip -o addr show tap0; ip -o link show tap0");
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(addr.contains("inet 10.0.2.100/24"), "{addr}");
    assert!(addr.contains("mtu 65520"), "{addr}");

    assert_eq!(
        api(&sock, "badjson"),
        r#"{"error":{"desc":"bad request: cannot parse JSON"}}"#
    );
    assert_eq!(
        api(&sock, r#"{"execute": "bad"}"#),
        r#"{"error":{"desc":"bad request: unknown execute"}}"#
    );
    assert_eq!(
        api(
            &sock,
            r#"{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}"#
        ),
        r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.proto"}}"#
    );
    // A free port on the host's loopback.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reply = api(
        &sock,
        &format!(
            r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"127.0.0.1","host_port":{port},"guest_addr":"","guest_port":8080}}}}"#
        ),
    );
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let id = v["return"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{reply}"));
    let list: serde_json::Value =
        serde_json::from_str(&api(&sock, r#"{"execute":"list_hostfwd"}"#)).unwrap();
    for entries in [&list["entries"], &list["return"]["entries"]] {
        let e = &entries[0];
        assert_eq!(e["id"].as_u64(), Some(id));
        assert_eq!(e["proto"], "tcp");
        assert_eq!(e["host_addr"], "127.0.0.1");
        assert_eq!(e["host_port"].as_u64(), Some(u64::from(port)));
        assert_eq!(e["guest_addr"], "10.0.2.100");
        assert_eq!(e["guest_port"], 8080);
    }
    assert_eq!(
        api(
            &sock,
            &format!(r#"{{"execute":"remove_hostfwd","arguments":{{"id":{id}}}}}"#)
        ),
        r#"{"return":{}}"#
    );
    assert_eq!(
        api(
            &sock,
            &format!(r#"{{"execute":"remove_hostfwd","arguments":{{"id":{id}}}}}"#)
        ),
        r#"{"error":{"desc":"bad request: remove_hostfwd: bad arguments.id"}}"#
    );
    assert_eq!(slirp.close_exit_fd(), Some(0), "log:\n{}", slirp.log_text());
    assert!(slirp.log_text().contains("exitfd event"));
    assert!(!sock.exists(), "the API socket is removed on exit");
}

#[test]
fn sandbox_and_seccomp_still_pass_traffic() {
    let test = "sandbox_and_seccomp_still_pass_traffic";
    if !preconditions(test) {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.0.join("api.sock");
    // A server on the host's loopback, reached as 10.0.2.2 from the namespace.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let (ctr, mut slirp) = start(
        &dir,
        &[
            "-c",
            "--enable-sandbox",
            "--enable-seccomp",
            "--api-socket",
            sock.to_str().unwrap(),
        ],
    );
    let accepted = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    let ping = in_netns(ctr.pid(), "ping -c 1 -W 5 10.0.2.2");
    assert!(
        ping.status.success(),
        "ping the gateway: {}\nlog:\n{}",
        text(&ping),
        slirp.log_text()
    );
    let tcp = in_netns(
        ctr.pid(),
        &format!("echo through-the-sandbox | socat -T 10 - TCP:10.0.2.2:{port}"),
    );
    assert!(
        tcp.status.success(),
        "{}\nlog:\n{}",
        text(&tcp),
        slirp.log_text()
    );
    assert_eq!(accepted.join().unwrap(), "through-the-sandbox\n");
    // The API still works under the filter.
    let list = api(&sock, r#"{"execute":"list_hostfwd"}"#);
    assert!(list.contains(r#""entries":[]"#), "{list}");
    let log = slirp.log_text();
    assert!(log.contains("seccomp: an allow-list"), "{log}");
    assert!(
        !log.contains("Operation not permitted"),
        "a denied syscall: {log}"
    );
    assert_eq!(slirp.close_exit_fd(), Some(0), "log:\n{}", slirp.log_text());
}
