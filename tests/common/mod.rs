//! Shared harness of the integration tests: real network namespaces, a real daemon
//! process, and the kernel's own stack (ping, socat) inside the namespaces.
//!
//! Every resource is held by a guard whose `Drop` removes it, so a failing test
//! still cleans up; processes are ended only by the PIDs these guards started.
//! Traffic stays inside namespaces the test created.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call, short enough for interface names.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}x{n}", std::process::id() % 0xfffff)
}

/// True when running as root; otherwise prints loudly that the test is skipped.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    skipped(&format!(
        "{test}: integration tests need root (run scripts/test.sh as root)"
    ));
    false
}

/// Says loudly that a test was skipped. Written straight to stderr, because the test
/// harness captures `eprintln!` of passing tests.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n******** SKIPPED {why} ********\n");
}

/// Runs a command, returning its output; panics only if it cannot be started.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command that must succeed.
pub fn must(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = unique("tnt");
        must("ip", &["netns", "add", &name]);
        let ns = Self { name };
        // IPv6 link-local chatter (router solicitations, MLD) would add noise to counters.
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Spawns a background command inside the namespace, killed on drop of the guard.
    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        ChildGuard::spawn(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    }

    /// Whether an interface of that name exists in the namespace.
    pub fn has_link(&self, ifname: &str) -> bool {
        self.exec(&["ip", "link", "show", ifname]).status.success()
    }

    /// `count` pings to `ip`, succeeding if any answer comes back.
    pub fn ping(&self, ip: &str) -> bool {
        ping_with(|args| self.exec(args), ip)
    }
}

/// Pings through an `exec` function, so both named namespaces and `nsenter` can use it.
pub fn ping_with(exec: impl Fn(&[&str]) -> Output, ip: &str) -> bool {
    // A few tries: the first ping can be lost while ARP resolves.
    exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", ip])
        .status
        .success()
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes started inside are ended by their own `ChildGuard`s.
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A child process killed (by its PID) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl ChildGuard {
    /// Spawns `command` as the leader of a new process group, so that the guard ends
    /// everything it starts (socat's forked children, the command inside `tapnet run`).
    pub fn spawn(command: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        Self(
            command
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {command:?}: {e}")),
        )
    }
}

/// Ends process group `leader` (the leader's own PID names it).
fn kill_group(leader: u32) {
    if let Some(pid) = i32::try_from(leader)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        kill_group(self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("tapnet-test-"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tapnet binary under test.
pub fn tapnet_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tapnet")
}

/// A running `tapnet daemon` with its own control socket; stopped with SIGTERM on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub control: PathBuf,
    pub log: PathBuf,
    /// The whole command line, for [`Daemon::restart`].
    argv: Vec<String>,
    _dir: TempDir,
}

impl Daemon {
    /// Starts a daemon with the given datapath backend ("uring", "epoll" or "auto").
    pub fn start(datapath: &str) -> Self {
        Self::start_as(datapath, None)
    }

    /// Starts a daemon, as another user (`setpriv`) when `uid` is given.
    pub fn start_as(datapath: &str, uid: Option<u32>) -> Self {
        Self::start_wrapped(datapath, uid, &[])
    }

    /// Starts a daemon through `wrapper` (a command that ends by exec'ing its
    /// arguments), as another user when `uid` is given.
    pub fn start_wrapped(datapath: &str, uid: Option<u32>, wrapper: &[&str]) -> Self {
        Self::start_full(datapath, uid, wrapper, &[])
    }

    /// Starts a daemon through `wrapper`, as `uid`, with extra daemon arguments.
    pub fn start_full(datapath: &str, uid: Option<u32>, wrapper: &[&str], extra: &[&str]) -> Self {
        let dir = TempDir::new();
        let control = dir.0.join("control.sock");
        let log = dir.0.join("daemon.log");
        // If this test process dies without running the guard, the kernel ends the
        // daemon too (parent-death signal), so no daemon outlives its test.
        let mut argv: Vec<String> = vec!["setpriv".into(), "--pdeathsig".into(), "KILL".into()];
        argv.extend(wrapper.iter().map(|a| a.to_string()));
        if let Some(uid) = uid {
            must("chown", &[&uid.to_string(), dir.0.to_str().unwrap()]);
            argv.extend([
                "setpriv".into(),
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
            ]);
        }
        argv.push(tapnet_bin().into());
        argv.extend(
            [
                "daemon",
                "--control",
                control.to_str().unwrap(),
                "--datapath",
                datapath,
            ]
            .map(String::from),
        );
        argv.extend(extra.iter().map(|a| a.to_string()));
        let child = Self::spawn(&argv, &log);
        let daemon = Self {
            child: Some(child),
            control,
            log,
            argv,
            _dir: dir,
        };
        daemon.wait_ready();
        daemon
    }

    /// Starts the daemon's command line, its stderr appended to `log`.
    fn spawn(argv: &[String], log: &Path) -> Child {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open daemon log");
        Command::new(&argv[0])
            .args(&argv[1..])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start tapnet daemon")
    }

    /// The default state directory of this daemon (beside its control socket).
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!("{}.state", self.control.display()))
    }

    /// Kills the daemon with SIGKILL (by its PID) and reaps it: nothing of its own
    /// clean-up runs.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the daemon again with the same command line (after [`Daemon::kill`] or
    /// [`Daemon::stop`]) and waits until it serves its control socket.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the daemon is still running");
        self.child = Some(Self::spawn(&self.argv, &self.log));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.control).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not become ready; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Runs a client command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(tapnet_bin())
            .args(args)
            .arg("--control")
            .arg(&self.control)
            .output()
            .expect("run tapnet client")
    }

    /// Runs a client command that must succeed, returning its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "tapnet {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a client command that must fail, returning its stderr (one line).
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "tapnet {args:?} unexpectedly succeeded"
        );
        String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
    }

    /// A client command's JSON output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(args)).expect("JSON output")
    }

    /// Sends SIGTERM and waits for the daemon to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                clean = status.success();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of its process group (a wrapper, a helper) goes too.
        kill_group(child.id());
        let _ = child.kill();
        let _ = child.wait();
        clean
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        self.stop();
    }
}

/// Waits until `predicate` holds, for at most `timeout`.
pub fn wait_for(timeout: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if predicate() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `bytes` random bytes over TCP from `client` to a socat listener in `server`
/// at `server_ip`, and checks that they arrive intact.
pub fn tcp_transfer(client: &Netns, server: &Netns, server_ip: &str, bytes: usize) {
    let dir = TempDir::new();
    let src = dir.0.join("src.bin");
    let dst = dir.0.join("dst.bin");
    let data: Vec<u8> = (0..bytes)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let port = 20000 + (COUNTER.fetch_add(1, Ordering::Relaxed) % 10000);
    let listen = format!("TCP-LISTEN:{port},reuseaddr");
    let create = format!("CREATE:{}", dst.display());
    let mut listener = server.spawn(&["socat", "-u", &listen, &create]);
    let connect = format!("TCP:{server_ip}:{port},connect-timeout=2");
    let from = format!("OPEN:{}", src.display());
    let sent = wait_for(Duration::from_secs(10), || {
        client
            .exec(&["socat", "-u", &from, &connect])
            .status
            .success()
    });
    assert!(sent, "TCP transfer to {server_ip}:{port} could not connect");
    let done = wait_for(Duration::from_secs(20), || {
        matches!(listener.0.try_wait(), Ok(Some(_)))
    });
    assert!(done, "TCP listener did not finish");
    let received = std::fs::read(&dst).unwrap_or_default();
    assert_eq!(received.len(), data.len(), "TCP transfer lost bytes");
    assert!(received == data, "TCP transfer corrupted data");
}

/// The directory of the test's temp files, for callers that need one.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The uid of `nobody`, whom the rootless tests run as.
pub const NOBODY: u32 = 65534;

/// A process of user `nobody` in its own user and network namespace, like a rootless
/// container (`unshare -Urn`); killed on drop.
pub fn rootless_container() -> ChildGuard {
    let guard = ChildGuard::spawn(
        Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .args([
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "sleep",
                "300",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let ns = format!("/proc/{}/ns/net", guard.pid());
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_link(&ns)
            .is_ok_and(|l| l != own)),
        "the container did not enter its own network namespace"
    );
    guard
}

/// Joins namespace `a` (address `addr_a`/24) and namespace `b` (`addr_b`/24) with a
/// veth pair, both ends up: a peer machine for `a` to reach.
pub fn link_namespaces(a: &Netns, addr_a: &str, b: &Netns, addr_b: &str) {
    let (end_a, end_b) = (unique("tv"), unique("tv"));
    a.exec_ok(&[
        "ip", "link", "add", &end_a, "type", "veth", "peer", "name", &end_b,
    ]);
    a.exec_ok(&["ip", "link", "set", &end_b, "netns", &b.name]);
    a.exec_ok(&["ip", "addr", "add", &format!("{addr_a}/24"), "dev", &end_a]);
    a.exec_ok(&["ip", "link", "set", &end_a, "up"]);
    b.exec_ok(&["ip", "addr", "add", &format!("{addr_b}/24"), "dev", &end_b]);
    b.exec_ok(&["ip", "link", "set", &end_b, "up"]);
    b.exec_ok(&["ip", "link", "set", "lo", "up"]);
}

/// A file of `len` incompressible bytes and its SHA-256, removed on drop.
pub struct DataFile {
    path: PathBuf,
    pub sum: String,
}

impl DataFile {
    pub fn new(len: usize) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(unique("tapnet-data"));
        let mut bytes = vec![0u8; len];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in &mut bytes {
            // xorshift: a lost or misplaced segment changes the sum.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = must("sha256sum", &[path.to_str().unwrap()]);
        let sum = out.split_whitespace().next().unwrap().to_owned();
        Self { path, sum }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `/etc/netns/NAME/` with a `resolv.conf` naming `nameserver` (what `ip netns exec`
/// bind-mounts over /etc for that namespace), removed on drop.
#[derive(Debug)]
pub struct EtcNetns(PathBuf);

impl EtcNetns {
    pub fn resolv_conf(ns: &Netns, nameserver: &str) -> Self {
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\n"),
        )
        .unwrap();
        Self(dir)
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The address of [`Resolver`] in its namespace, and a name it knows.
pub const RESOLVER_IP: &str = "127.0.0.77";
pub const PRINTER: (&str, &str) = ("printer.tapnet.test", "192.0.2.7");

/// A real resolver (dnsmasq) on 127.0.0.77 in a namespace, named in that namespace's
/// resolv.conf: it knows [`PRINTER`] and nothing else. Stopped, and the resolv.conf
/// removed, on drop.
#[derive(Debug)]
pub struct Resolver {
    _dnsmasq: ChildGuard,
    _etc: EtcNetns,
}

impl Resolver {
    pub fn start(ns: &Netns) -> Self {
        let etc = EtcNetns::resolv_conf(ns, RESOLVER_IP);
        let dnsmasq = ns.spawn(&[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={RESOLVER_IP}"),
            "--port=53",
            "--user=root",
            &format!("--address=/{}/{}", PRINTER.0, PRINTER.1),
        ]);
        Self {
            _dnsmasq: dnsmasq,
            _etc: etc,
        }
    }
}
