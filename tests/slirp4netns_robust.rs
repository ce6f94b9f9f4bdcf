//! `tapnet slirp4netns` against hostile API clients and a container that goes away.
//!
//! As user nobody, against `unshare -Urn` namespaces (and, for `--netns-type=path`,
//! as root against a namespace of `ip netns add`): stalled, trickling and half-sent
//! clients of the API socket never hold up the others or the traffic; without an
//! exit fd, the forwarder exits cleanly once its target process and the namespace's
//! last process are gone, or once the namespace file is removed.
//!
//! Traffic goes only to the gateway of the namespace the test creates.

mod common;

use common::{ChildGuard, NOBODY, Netns, TempDir, require_root, skipped, tapnet_bin, wait_for};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Spawns that hand inheritable fds to a child take this lock, so that no other test's
/// child inherits them too (which would keep an exit pipe open).
static SPAWN: Mutex<()> = Mutex::new(());

/// A liveness bound for an API answer while hostile clients are connected: well under
/// the 5 s request deadline behind which a blocked client would wait.
const ANSWERED_WITHIN: Duration = Duration::from_secs(2);

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

/// A running `tapnet slirp4netns` (as `user`, root when `None`), with its ready pipe
/// and, if asked, its exit pipe.
struct Slirp {
    child: ChildGuard,
    exit: Option<OwnedFd>,
    log: PathBuf,
    api: PathBuf,
}

impl Slirp {
    /// Starts it with `args` before the operands `target tap0`, and waits until it is
    /// ready.
    fn start(dir: &TempDir, user: Option<u32>, exit_fd: bool, args: &[&str], target: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        // nobody must be able to create the API socket.
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        let api = dir.0.join("api.sock");
        let log = dir.0.join("slirp.log");
        let lock = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (exit_r, exit_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut inherited = vec![&ready_w];
        if exit_fd {
            inherited.push(&exit_r);
        }
        for fd in inherited {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).unwrap();
        }
        let mut cmd = Command::new("setpriv");
        if let Some(uid) = user {
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".to_owned(),
            ]);
        }
        cmd.args([tapnet_bin(), "slirp4netns", "-c", "-r"])
            .arg(ready_w.as_raw_fd().to_string());
        if exit_fd {
            cmd.arg("-e").arg(exit_r.as_raw_fd().to_string());
        }
        let logfile = std::fs::File::create(&log).unwrap();
        cmd.arg("--api-socket")
            .arg(&api)
            .args(args)
            .args([target, "tap0"])
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile);
        let child = ChildGuard::spawn(&mut cmd);
        drop((ready_w, exit_r, lock));
        let slirp = Self {
            child,
            exit: exit_fd.then_some(exit_w),
            log,
            api,
        };
        let mut ready = String::new();
        std::fs::File::from(ready_r)
            .read_to_string(&mut ready)
            .unwrap();
        assert_eq!(ready, "1", "ready fd; log:\n{}", slirp.log_text());
        slirp
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// Waits (at most `timeout`) for the process to exit; returns its status code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = &mut self.child.0;
        let mut status = None;
        wait_for(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        status.and_then(|s| s.code())
    }
}

/// One API request as podman sends it (write, shut the write side, read to the end),
/// answered within [`ANSWERED_WITHIN`].
fn api(socket: &Path, request: &str) -> String {
    let start = Instant::now();
    let mut s = UnixStream::connect(socket).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let took = start.elapsed();
    assert!(took < ANSWERED_WITHIN, "{request} took {took:?}");
    reply
}

/// What the server sends until it closes (at most 10 s).
fn read_to_close(mut stream: &UnixStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// The value of `name=N` in the forwarder's "API socket" summary log line.
fn api_counter(log: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains("API socket"))
        .unwrap_or_else(|| panic!("no API socket summary in\n{log}"));
    let needle = format!("{name}=");
    let at = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + needle.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn stalled_api_clients_never_block_the_others_or_the_traffic() {
    if !preconditions("stalled_api_clients_never_block_the_others_or_the_traffic") {
        return;
    }
    let dir = TempDir::new();
    let ctr = common::rootless_container();
    let mut slirp = Slirp::start(&dir, Some(NOBODY), true, &[], &ctr.pid().to_string());
    let sock = slirp.api.clone();

    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let mut half = UnixStream::connect(&sock).unwrap();
    half.write_all(br#"{"execute":"list_hostfwd""#).unwrap();
    let trickler = UnixStream::connect(&sock).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickling = {
        let mut stream = trickler.try_clone().unwrap();
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && stream.write_all(b" ").is_ok()
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Asks and never reads its answer.
    let mut deaf = UnixStream::connect(&sock).unwrap();
    deaf.write_all(br#"{"execute":"list_hostfwd"}"#).unwrap();

    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let reply = api(
            &sock,
            &format!(
                r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"127.0.0.1","host_port":{port},"guest_port":80}}}}"#
            ),
        );
        assert!(reply.starts_with(r#"{"return":{"id":"#), "{reply}");
        let list = api(&sock, r#"{"execute":"list_hostfwd"}"#);
        assert!(list.contains(&format!("\"host_port\":{port}")), "{list}");
        // A client that writes its request and waits, its write side open.
        let start = Instant::now();
        let mut open = UnixStream::connect(&sock).unwrap();
        open.write_all(br#"{"execute": "bad"}"#).unwrap();
        assert_eq!(
            read_to_close(&open),
            r#"{"error":{"desc":"bad request: unknown execute"}}"#
        );
        assert!(start.elapsed() < ANSWERED_WITHIN);
    }
    // The traffic does not notice.
    let ping = Command::new("nsenter")
        .args(["-t", &ctr.pid().to_string(), "-n"])
        .args(["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "10.0.2.2"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "ping the gateway during the stall");

    // At the deadline, what a stalled client sent is answered as slirp4netns answers
    // a short read.
    for stream in silent.iter().take(3).chain([&half, &trickler]) {
        assert_eq!(
            read_to_close(stream),
            r#"{"error":{"desc":"bad request: cannot parse JSON"}}"#
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickling.join().unwrap();
    drop(slirp.exit.take());
    assert_eq!(
        slirp.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        slirp.log_text()
    );
    let log = slirp.log_text();
    assert!(api_counter(&log, "timed_out") >= 22, "{log}");
    assert!(api_counter(&log, "requests") >= 15 + 22, "{log}");
    assert!(api_counter(&log, "accepted") >= 15 + 23, "{log}");
    drop(deaf);
}

#[test]
fn exits_when_the_target_process_is_gone() {
    if !preconditions("exits_when_the_target_process_is_gone") {
        return;
    }
    let dir = TempDir::new();
    let mut ctr = common::rootless_container();
    let pid = ctr.pid();
    let mut slirp = Slirp::start(&dir, Some(NOBODY), false, &[], &pid.to_string());
    assert!(api(&slirp.api, r#"{"execute":"list_hostfwd"}"#).contains("entries"));
    ctr.0.kill().unwrap();
    let _ = ctr.0.wait();
    assert_eq!(
        slirp.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        slirp.log_text()
    );
    let log = slirp.log_text();
    assert!(
        log.contains(&format!("the target process {pid} exited, exiting")),
        "{log}"
    );
    assert!(log.contains("do_slirp is exiting"), "{log}");
    assert!(!slirp.api.exists(), "the API socket is removed on exit");
}

#[test]
fn stays_while_another_process_is_in_the_namespace() {
    if !preconditions("stays_while_another_process_is_in_the_namespace") {
        return;
    }
    stays_until_the_last_process_is_gone(&[]);
}

/// In the sandbox, without /proc in its root and under the seccomp filter, it
/// watches through what it opened before.
#[test]
fn sandboxed_forwarder_watches_the_namespace_too() {
    if !preconditions("sandboxed_forwarder_watches_the_namespace_too") {
        return;
    }
    stays_until_the_last_process_is_gone(&["--enable-sandbox", "--enable-seccomp"]);
}

fn stays_until_the_last_process_is_gone(args: &[&str]) {
    let dir = TempDir::new();
    let mut ctr = common::rootless_container();
    let pid = ctr.pid();
    // A second process of the container, as the same user, in its namespaces.
    let mut second = ChildGuard::spawn(
        Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "nsenter",
                "--preserve-credentials",
                "-U",
                "-n",
                "-t",
                &pid.to_string(),
                "sleep",
                "300",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let second_ns = format!("/proc/{}/ns/net", second.pid());
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_link(&second_ns)
            .is_ok_and(|l| l == netns)),
        "the second process did not join the namespace"
    );
    let mut slirp = Slirp::start(&dir, Some(NOBODY), false, args, &pid.to_string());
    ctr.0.kill().unwrap();
    let _ = ctr.0.wait();
    // Three checks later it still runs and serves.
    std::thread::sleep(Duration::from_secs(3));
    assert!(slirp.running(), "{}", slirp.log_text());
    assert!(api(&slirp.api, r#"{"execute":"list_hostfwd"}"#).contains("entries"));
    second.0.kill().unwrap();
    let _ = second.0.wait();
    assert_eq!(
        slirp.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        slirp.log_text()
    );
    let log = slirp.log_text();
    assert!(
        log.contains(&format!(
            "no process is left in the network namespace of process {pid}, exiting"
        )),
        "{log}"
    );
    assert!(!slirp.api.exists());
    assert!(!log.contains("Operation not permitted"), "{log}");
}

#[test]
fn with_an_exit_fd_the_target_exit_changes_nothing() {
    if !preconditions("with_an_exit_fd_the_target_exit_changes_nothing") {
        return;
    }
    let dir = TempDir::new();
    let mut ctr = common::rootless_container();
    let mut slirp = Slirp::start(&dir, Some(NOBODY), true, &[], &ctr.pid().to_string());
    ctr.0.kill().unwrap();
    let _ = ctr.0.wait();
    std::thread::sleep(Duration::from_secs(2));
    assert!(slirp.running(), "{}", slirp.log_text());
    drop(slirp.exit.take());
    assert_eq!(slirp.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(slirp.log_text().contains("exitfd event"));
}

#[test]
fn path_mode_exits_when_the_namespace_file_is_removed() {
    if !preconditions("path_mode_exits_when_the_namespace_file_is_removed") {
        return;
    }
    let dir = TempDir::new();
    let ns = Netns::new();
    let path = ns.path();
    let mut slirp = Slirp::start(&dir, None, false, &["--netns-type=path"], &path);
    // A namespace without processes is no reason to go (podman starts slirp4netns
    // before the container's processes).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(slirp.running(), "{}", slirp.log_text());
    assert!(ns.has_link("tap0"));
    common::must("ip", &["netns", "del", &ns.name]);
    assert_eq!(
        slirp.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        slirp.log_text()
    );
    let log = slirp.log_text();
    assert!(
        log.contains(&format!(
            "the network namespace {path} was removed, exiting"
        )),
        "{log}"
    );
    assert!(!slirp.api.exists());
}
