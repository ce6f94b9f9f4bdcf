//! A container that sends to many destinations cannot exhaust tapnet's descriptors:
//! host-socket flows are bounded (per container and in total), unreplied flows give
//! way first, and TCP connects, DNS and published ports keep working during a flood.
//!
//! tapnet runs in a host namespace of the test's own, whose only way out is a veth
//! pair with both ends in it: the flood's thousands of destinations (198.18.0.0/15,
//! RFC 2544's benchmarking range) get host sockets, and their datagrams are
//! discarded at the other end.

mod common;

use common::{ChildGuard, Daemon, NOBODY, Netns, TempDir, require_root, skipped, tapnet_bin};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A host namespace: loopback, a default route into a veth that discards, a resolver on 127.0.0.77 that
/// knows printer.tapnet.test, and a TCP echo server on 127.0.0.1:7777.
struct Host {
    ns: Netns,
    _resolver: common::Resolver,
    _servers: Vec<ChildGuard>,
}

impl Host {
    fn new() -> Self {
        let ns = Netns::new();
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        // The way out is a veth pair with both ends here: everything but loopback
        // goes to a static neighbour on d0 that nobody is, and d1 discards it.
        ns.exec_ok(&[
            "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ]);
        for dev in ["d0", "d1"] {
            ns.exec_ok(&["ip", "link", "set", dev, "up"]);
        }
        ns.exec_ok(&["ip", "addr", "add", "198.18.0.1/15", "dev", "d0"]);
        ns.exec_ok(&[
            "ip",
            "neigh",
            "add",
            "198.18.0.254",
            "lladdr",
            "02:00:00:00:00:fe",
            "dev",
            "d0",
        ]);
        ns.exec_ok(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "198.18.0.254",
            "dev",
            "d0",
        ]);
        let servers = vec![ns.spawn(&[
            "socat",
            "TCP-LISTEN:7777,bind=127.0.0.1,fork,reuseaddr",
            "EXEC:cat",
        ])];
        let resolver = common::Resolver::start(&ns);
        Self {
            ns,
            _resolver: resolver,
            _servers: servers,
        }
    }
}

/// Runs `script` with `sh` in the network namespace of process `pid`.
fn in_netns(pid: u32, script: &str) -> Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "sh", "-c", script])
        .output()
        .unwrap()
}

/// A shell command that sends `count` UDP datagrams from the namespace to distinct
/// destinations of 198.18.0.0/15 (address and port vary), paced so that the
/// interface's queue keeps them all.
fn flood_script(count: u32) -> String {
    format!(
        "python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range({count}):
    try:
        s.sendto(b\"x\", (\"198.19.%d.%d\" % (1 + i // 250 % 250, 1 + i % 250), 1024 + i % 60000))
    except OSError:
        pass
    if i % 200 == 0:
        time.sleep(0.002)
'"
    )
}

/// One line through the echo server on the host's 127.0.0.1:7777, from the namespace.
fn echo_through_gateway(pid: u32, gateway: &str) -> bool {
    let out = in_netns(
        pid,
        &format!("echo hello | timeout 5 socat -t 2 - TCP:{gateway}:7777"),
    );
    String::from_utf8_lossy(&out.stdout).trim() == "hello"
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The tests here flood: one at a time, so that neither starves the other's checks.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn preconditions(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    let usable =
        std::fs::metadata("/dev/net/tun").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006);
    if !usable {
        skipped(&format!("{test}: /dev/net/tun is not usable by users"));
    }
    usable
}

/// The issue's reproduction: `tapnet slirp4netns --configure` as nobody with a
/// descriptor limit of 1024, and 60,000 datagrams to distinct destinations from the
/// container; meanwhile and afterwards, TCP through 10.0.2.2, DNS through 10.0.2.3 and
/// a published port all work, and tapnet never holds more descriptors than its limit.
#[test]
fn a_udp_flood_from_a_rootless_container_locks_nobody_out() {
    if !preconditions("a_udp_flood_from_a_rootless_container_locks_nobody_out") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let host = Host::new();
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let api = dir.0.join("api.sock");
    let log = dir.0.join("slirp.log");
    let container = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &host.ns.name])
            .args([
                "setpriv",
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
            ])
            .args([
                "--clear-groups",
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
            ])
            .args(["sleep", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let pid = wait_for_child_netns(&container);
    let logfile = std::fs::File::create(&log).unwrap();
    let slirp = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &host.ns.name])
            .args(["prlimit", "--nofile=1024:1024"])
            .args([
                "setpriv",
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
            ])
            .args(["--clear-groups", tapnet_bin(), "slirp4netns", "--configure"])
            .args(["--api-socket", api.to_str().unwrap()])
            .arg(pid.to_string())
            .arg("tap0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile),
    );
    assert!(
        common::wait_for(Duration::from_secs(15), || api.exists()
            && in_netns(pid, "ip -4 addr show tap0 | grep -q 10.0.2.100")
                .status
                .success()),
        "slirp4netns did not come up: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let tapnet_pid = tapnet_pid_of(slirp.pid());
    // A published port, served inside the container.
    let _server = ChildGuard::spawn(
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n"])
            .args(["socat", "TCP-LISTEN:8080,fork,reuseaddr", "EXEC:cat"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let reply = api_call(
        &api,
        r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":18181,"guest_port":8080}}"#,
    );
    assert!(reply.contains("\"id\""), "add_hostfwd: {reply}");
    assert!(
        echo_through_gateway(pid, "10.0.2.2"),
        "TCP before the flood"
    );

    // The flood runs in the background while the others are tried.
    let flood = ChildGuard::spawn(
        Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "sh",
                "-c",
                &flood_script(60_000),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut peak = 0;
    for round in 0..5 {
        assert!(
            echo_through_gateway(pid, "10.0.2.2"),
            "TCP during the flood ({round})"
        );
        // The flood fills the container's own queue to tap0 too, so a query may be
        // lost there and retried, as on a saturated link.
        let dns = in_netns(
            pid,
            "dig +short +time=2 +tries=3 @10.0.2.3 printer.tapnet.test",
        );
        let answer = String::from_utf8_lossy(&dns.stdout);
        assert!(
            answer.lines().any(|l| l.trim() == "192.0.2.7"),
            "DNS during the flood ({round}): {answer}"
        );
        let published = host.ns.exec(&[
            "sh",
            "-c",
            "echo hi | timeout 5 socat -t 2 - TCP:127.0.0.1:18181",
        ]);
        assert_eq!(
            String::from_utf8_lossy(&published.stdout).trim(),
            "hi",
            "published port during the flood ({round})"
        );
        peak = peak.max(open_fds(tapnet_pid));
    }
    let mut flood = flood;
    let _ = flood.0.wait();
    peak = peak.max(open_fds(tapnet_pid));
    assert!(peak < 1024, "tapnet held {peak} descriptors");
    assert!(echo_through_gateway(pid, "10.0.2.2"), "TCP after the flood");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("bound reached"),
        "no warning in the log:\n{text}"
    );
    drop(container);
}

/// The daemon with two containers on one network: the flooder is held to its own
/// bound and evicts its own unreplied flows; the victim's replied flow keeps its host
/// socket, its connects work, and `tapnet stats` counts the evictions.
#[test]
fn the_daemon_holds_a_flooding_container_to_its_own_bound() {
    if !require_root("the_daemon_holds_a_flooding_container_to_its_own_bound") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let host = Host::new();
    let wrapper = ["ip", "netns", "exec", host.ns.name.as_str()];
    let daemon = Daemon::start_full(
        "auto",
        None,
        &wrapper,
        &[
            "--max-host-flows",
            "300",
            "--max-host-flows-per-container",
            "100",
        ],
    );
    daemon.cli_ok(&["network", "create", "flood", "--subnet", "10.203.0.0/24"]);
    let (flooder, victim) = (Netns::new(), Netns::new());
    for (ns, ip) in [(&flooder, "10.203.0.2"), (&victim, "10.203.0.3")] {
        daemon.cli_ok(&["connect", "flood", "--netns", &ns.path(), "--ip", ip]);
    }
    // A UDP echo on the host side, and one replied flow of the victim's, on one socket.
    let _echo = host
        .ns
        .spawn(&["socat", "UDP-RECVFROM:7778,bind=127.0.0.1,fork", "EXEC:cat"]);
    std::thread::sleep(Duration::from_millis(300));
    let stats: serde_json::Value = daemon.json(&["stats", "--json"]);
    let egress = &stats["egress"];
    assert_eq!(egress["host_socket_limit"], 300, "{egress}");
    assert_eq!(egress["host_socket_limit_per_container"], 100, "{egress}");
    // Run the victim's flow and the flood at the same time.
    let victim_ns = victim.name.clone();
    let check = std::thread::spawn(move || {
        Command::new("ip")
            .args(["netns", "exec", &victim_ns, "python3", "-c"])
            .arg(
                "
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('10.203.0.3', 40001))
s.settimeout(1)
first = False
for attempt in range(3):
    s.sendto(b'one', ('10.203.0.1', 7778))
    try:
        first = s.recvfrom(16)[0] == b'one'; break
    except socket.timeout:
        pass
print('first', first)
lost = sent = 0
end = time.time() + 5
while time.time() < end:
    s.sendto(b'x', ('10.203.0.1', 7778))
    sent += 1
    try:
        s.recvfrom(16)
    except socket.timeout:
        lost += 1
    time.sleep(0.05)
print('during', sent, lost)
",
            )
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_secs(1));
    let flood = flooder.exec(&["sh", "-c", &flood_script(20_000)]);
    assert!(flood.status.success());
    let out = check.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let stats: serde_json::Value = daemon.json(&["stats", "--json"]);
    let egress = &stats["egress"];
    eprintln!("victim: {report}egress: {egress}");
    let mut lines = report.lines();
    assert_eq!(lines.next(), Some("first True"), "{report}");
    let during: Vec<u64> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // Every exchange of the victim's during the flood was answered: its packets got
    // their share of the engine's queue, and its flow kept its host socket.
    assert!(
        during.len() == 2 && during[0] > 20 && during[1] == 0,
        "the victim's flow during the flood: {report} {}\n{egress}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The victim still connects.
    let tcp = victim.exec(&[
        "sh",
        "-c",
        "echo hello | timeout 5 socat -t 2 - TCP:10.203.0.1:7777",
    ]);
    assert_eq!(String::from_utf8_lossy(&tcp.stdout).trim(), "hello");
    let stats: serde_json::Value = daemon.json(&["stats", "--json"]);
    let egress = &stats["egress"];
    // The flooder's new flows beyond its bound evicted its own (thousands: some of the
    // 5,000 datagrams are lost on the way, in its queue or the engine's).
    let evicted = egress["evicted_unreplied"].as_u64().unwrap_or(0);
    assert!(evicted >= 1_000, "{egress}");
    assert!(
        egress["host_sockets"].as_u64().unwrap_or(999) <= 300,
        "{egress}"
    );
    assert_eq!(egress["evicted_lru"], 0, "{egress}");
}

/// Waits until the container process has a network namespace of its own; its pid.
fn wait_for_child_netns(container: &ChildGuard) -> u32 {
    // `ip netns exec` forks setpriv, which execs unshare, which execs sleep: the
    // sleep is the guard's process or its child.
    let leader = container.pid();
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut pid = None;
    common::wait_for(Duration::from_secs(5), || {
        pid = descendants(leader).into_iter().chain([leader]).find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
                && std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|l| l != own)
        });
        pid.is_some()
    });
    pid.expect("the container did not start")
}

/// The tapnet process under `ip netns exec ... prlimit ... setpriv ... tapnet`.
fn tapnet_pid_of(leader: u32) -> u32 {
    let mut pid = None;
    common::wait_for(Duration::from_secs(5), || {
        pid = descendants(leader).into_iter().chain([leader]).find(|p| {
            std::fs::read_link(format!("/proc/{p}/exe"))
                .is_ok_and(|e| e.to_string_lossy().ends_with("/tapnet"))
        });
        pid.is_some()
    });
    pid.expect("no tapnet process")
}

/// Every process below `pid`, from /proc/*/stat.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The parent is the second field after the parenthesised command.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            all.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &all {
            if pp == parent {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// One slirp4netns API request, as podman sends it.
fn api_call(socket: &Path, request: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect to the API");
    s.write_all(request.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}
