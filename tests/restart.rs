//! The daemon survives its own restart: after `kill -9` in the middle of traffic and a
//! restart with the same command line, every container keeps its interface and
//! address, its names resolve, its published ports answer and new connections work,
//! without the container doing anything. An orderly stop removes every device but
//! keeps the networks. Bad state entries are reported in one line each and skipped.
//!
//! The daemons run in a namespace of the test's own ("host"), so that their veth host
//! ends and published ports stay there.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, NOBODY, Netns, require_root, wait_for};

/// Reports a figure on stderr past the test harness's capture.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn host_namespace() -> Netns {
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    host
}

fn daemon_in(host: &Netns, extra: &[&str]) -> Daemon {
    Daemon::start_full("auto", None, &["ip", "netns", "exec", &host.name], extra)
}

/// One request through a published port from `from`: the server's answer, if any.
fn ask(from: &Netns, target: &str, timeout: &str) -> String {
    let out = from.exec(&[
        "sh",
        "-c",
        &format!("echo q | socat -t 1 - TCP:{target},connect-timeout={timeout}"),
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn dig(ns: &Netns, name: &str) -> String {
    let out = ns.exec(&["dig", "+short", "+tries=2", "+time=1", "@127.0.0.11", name]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The container's interfaces with their addresses and MACs, as the kernel has them.
fn interfaces(ns: &Netns) -> String {
    let addrs = ns.exec_ok(&["ip", "-o", "addr", "show"]);
    let links = ns.exec_ok(&["ip", "-o", "link", "show"]);
    let macs: Vec<&str> = links
        .split_whitespace()
        .filter(|w| w.len() == 17 && w.matches(':').count() == 5)
        .collect();
    let addrs: Vec<String> = addrs
        .lines()
        .filter(|l| !l.contains(" lo "))
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect();
    format!("{addrs:?} {macs:?}")
}

/// The daemon's log written since `offset` bytes.
fn log_since(daemon: &Daemon, offset: usize) -> String {
    daemon
        .log_text()
        .get(offset..)
        .unwrap_or_default()
        .to_owned()
}

fn json_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn killed_daemon_comes_back_with_its_containers_and_an_orderly_stop_keeps_only_networks() {
    if !require_root("killed_daemon_comes_back_with_its_containers") {
        return;
    }
    let host = host_namespace();
    let mut daemon = daemon_in(&host, &[]);
    daemon.cli_ok(&["network", "create", "front", "--subnet", "10.250.0.0/24"]);
    daemon.cli_ok(&["network", "create", "back", "--subnet", "10.251.0.0/24"]);
    let (a, b, c) = (Netns::new(), Netns::new(), Netns::new());
    // a: a TAP on front with an alias and a published port, and a veth on back;
    // b: a veth on front; c: a TAP on back.
    daemon.cli_ok(&[
        "connect",
        "front",
        "--netns",
        &a.path(),
        "--name",
        "alpha",
        "--alias",
        "www",
        "-p",
        "127.0.0.1:18801:80",
    ]);
    daemon.cli_ok(&["connect", "back", "--netns", &a.path(), "--kind", "veth"]);
    daemon.cli_ok(&[
        "connect",
        "front",
        "--netns",
        &b.path(),
        "--name",
        "bravo",
        "--kind",
        "veth",
    ]);
    daemon.cli_ok(&["connect", "back", "--netns", &c.path(), "--name", "charlie"]);
    let _server = a.spawn(&["socat", "TCP-LISTEN:80,reuseaddr,fork", "SYSTEM:echo ok"]);
    assert!(
        wait_for(Duration::from_secs(10), || ask(
            &host,
            "127.0.0.1:18801",
            "1"
        ) == "ok"),
        "the published port does not answer before the restart"
    );
    assert!(b.ping("10.250.0.2") && c.ping("10.251.0.2"));
    let before = [&a, &b, &c].map(interfaces);
    let inspect =
        |d: &Daemon| ["front", "back"].map(|n| d.json(&["network", "inspect", n]).to_string());
    let inspect_before = inspect(&daemon);
    let published_before = daemon.json(&["publish", "ls", "--json"]);
    let listed_before = daemon.json(&["network", "ls", "--json"]);
    let host_ends: Vec<String> = ["front", "back"]
        .iter()
        .flat_map(|n| {
            daemon.json(&["network", "inspect", n])["containers"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["host_interface"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(host_ends.len(), 2, "{host_ends:?}");

    // Traffic while the daemon is killed: requests through the published port from the
    // host, and pings from b to a (both bounded).
    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicU32::new(0), AtomicU32::new(0));
    let _pings = b.spawn(&[
        "ping",
        "-q",
        "-c",
        "300",
        "-i",
        "0.05",
        "-W",
        "1",
        "10.250.0.2",
    ]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if ask(&host, "127.0.0.1:18801", "1") == "ok" {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert!(wait_for(Duration::from_secs(10), || ok
            .load(Ordering::Relaxed)
            >= 5));
        let pid = daemon.pid();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "tapnet", "the PID is the daemon's own");
        daemon.kill();
        let ok_at_kill = ok.load(Ordering::Relaxed);

        // The devices outlive the daemon: the TAPs are persistent, veths need no one.
        assert_eq!(
            [&a, &b, &c].map(interfaces),
            before,
            "devices changed when killed"
        );
        let offset = daemon.log_text().len();
        let restarted = Instant::now();
        daemon.restart();
        let mut first = None;
        let answered = wait_for(Duration::from_secs(10), || {
            let answer = ask(&host, "127.0.0.1:18801", "0.5") == "ok";
            if answer {
                first = Some(restarted.elapsed());
            }
            answer
        });
        assert!(
            answered,
            "the published port does not answer after the restart"
        );
        report(&format!(
            "restart to the first connection through the published port: {} ms",
            first.unwrap().as_millis()
        ));
        // The traffic loop gets through again too.
        assert!(
            wait_for(Duration::from_secs(10), || ok.load(Ordering::Relaxed)
                > ok_at_kill + 3),
            "the traffic loop does not get through again"
        );
        stop.store(true, Ordering::Relaxed);
        report(&format!(
            "traffic loop: {} requests answered, {} not",
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        ));
        assert!(
            !log_since(&daemon, offset).contains("WARN"),
            "{}",
            log_since(&daemon, offset)
        );
    });

    // Everything as before: interfaces, addresses, MACs, names, publications, pings.
    assert_eq!([&a, &b, &c].map(interfaces), before);
    assert_eq!(inspect(&daemon), inspect_before);
    assert_eq!(daemon.json(&["publish", "ls", "--json"]), published_before);
    assert_eq!(daemon.json(&["network", "ls", "--json"]), listed_before);
    assert_eq!(dig(&b, "alpha"), "10.250.0.2");
    assert_eq!(dig(&b, "www"), "10.250.0.2");
    assert_eq!(dig(&c, "alpha"), "10.251.0.2");
    assert_eq!(dig(&a, "charlie"), "10.251.0.3");
    assert!(b.ping("10.250.0.2"), "b -> a");
    assert!(a.ping("10.250.0.3"), "a -> b");
    assert!(c.ping("10.251.0.2"), "c -> a on back");
    assert!(a.ping("10.250.0.1") && c.ping("10.251.0.1"), "gateways");
    // Address allocation goes on without collisions.
    let d = Netns::new();
    let joined = daemon.json(&[
        "connect",
        "front",
        "--netns",
        &d.path(),
        "--name",
        "delta",
        "--json",
    ]);
    assert_eq!(joined["ip"], "10.250.0.4/24", "{joined}");
    assert!(d.ping("10.250.0.2"));

    // An orderly stop removes every device and the endpoints' files, not the networks'.
    assert!(daemon.stop(), "the daemon did not stop cleanly");
    for ns in [&a, &b, &c, &d] {
        assert!(
            !ns.has_link("eth0") && !ns.has_link("eth1"),
            "a device is left in {}",
            ns.name
        );
    }
    for end in &host_ends {
        assert!(!host.has_link(end), "veth host end {end} is left");
    }
    let state = daemon.state_dir();
    assert_eq!(
        json_files(&state.join("networks")),
        ["back.json", "front.json"]
    );
    assert!(json_files(&state.join("endpoints")).is_empty());
    // A restarted daemon has the networks, with no containers, and creates nothing.
    daemon.restart();
    let networks = daemon.json(&["network", "ls", "--json"]);
    let listed: Vec<(&str, usize)> = networks
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap(),
                n["containers"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(listed, [("back", 0), ("front", 0)], "{networks}");
    assert!(!a.has_link("eth0"));
    // And it serves them: a container joins as before.
    daemon.cli_ok(&["connect", "front", "--netns", &a.path(), "--name", "alpha"]);
    assert!(a.ping("10.250.0.1"));
}

#[test]
fn bad_state_entries_are_reported_one_line_each_and_the_rest_is_served() {
    if !require_root("bad_state_entries_are_reported_one_line_each") {
        return;
    }
    let host = host_namespace();
    let mut daemon = daemon_in(&host, &[]);
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.252.0.0/24"]);
    let (x, y) = (Netns::new(), Netns::new());
    daemon.cli_ok(&["connect", "n", "--netns", &x.path(), "--name", "x"]);
    daemon.cli_ok(&[
        "connect",
        "n",
        "--netns",
        &y.path(),
        "--name",
        "y",
        "--kind",
        "veth",
    ]);
    let w = Netns::new();
    daemon.cli_ok(&["connect", "n", "--netns", &w.path(), "--name", "w"]);
    daemon.kill();
    // While it is down: y's namespace goes, w's TAP is deleted, and state files go bad.
    let y_port = 1;
    drop(y);
    w.exec_ok(&["ip", "link", "del", "eth0"]);
    let state = daemon.state_dir();
    let nets = state.join("networks");
    std::fs::write(nets.join("broken.json"), "{\"version\": 1, \"id\": 7, \"na").unwrap();
    std::fs::write(
        nets.join("future.json"),
        "{\"version\": 99, \"id\": 8, \"name\": \"future\", \"subnet\": \"10.99.0.0/24\"}",
    )
    .unwrap();
    // A network this daemon's options no longer allow (no packet uplink).
    std::fs::write(
        nets.join("routed.json"),
        "{\"version\": 1, \"id\": 9, \"name\": \"routed\", \"subnet\": \"10.98.0.0/24\", \
         \"gateway\": null, \"mtu\": null, \"icc\": true, \"masquerade\": false}",
    )
    .unwrap();
    let offset = daemon.log_text().len();
    daemon.restart();
    // The good network and container are served.
    let inspect = daemon.json(&["network", "inspect", "n"]);
    let names: Vec<&str> = inspect["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x"], "{inspect}");
    assert!(
        x.ping("10.252.0.1"),
        "the restored container does not reach its gateway"
    );
    let listed = daemon.json(&["network", "ls", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // One line each.
    let log = log_since(&daemon, offset);
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("broken.json: not valid JSON"), 1, "{log}");
    assert_eq!(lines("future.json: version 99"), 1, "{log}");
    assert_eq!(
        lines("network routed: --no-masquerade needs a daemon with a packet uplink"),
        1,
        "{log}"
    );
    assert_eq!(
        lines("endpoint y of network n: its network namespace no longer exists"),
        1,
        "{log}"
    );
    assert_eq!(
        lines("endpoint w of network n: interface eth0 no longer exists"),
        1,
        "{log}"
    );
    assert!(!w.has_link("eth0"), "a device was created again");
    // The corrupt file is set aside, the newer version's and the unusable network's
    // are kept, the gone endpoint's is removed.
    assert_eq!(
        json_files(&nets),
        ["broken.json.bad", "future.json", "n.json", "routed.json"]
    );
    assert_eq!(json_files(&state.join("endpoints")), ["0.json"]);
    assert!(!state.join(format!("endpoints/{y_port}.json")).exists());
    // A new container does not take the gone one's address twice over, and works.
    let z = Netns::new();
    daemon.cli_ok(&["connect", "n", "--netns", &z.path(), "--name", "z"]);
    assert!(z.ping("10.252.0.2"));
}

/// The rootless case: an unprivileged daemon's TAPs in rootless containers are
/// attached again by the same unprivileged user after `kill -9` (the namespace helper
/// has CAP_NET_ADMIN in the container's user namespace, so no TUNSETOWNER is needed).
#[test]
fn unprivileged_daemon_reattaches_rootless_containers() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root("unprivileged_daemon_reattaches_rootless_containers") {
        return;
    }
    let mode = std::fs::metadata("/dev/net/tun")
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o006 != 0o006 {
        common::skipped(&format!(
            "unprivileged_daemon_reattaches_rootless_containers: /dev/net/tun is mode {:o}",
            mode & 0o777
        ));
        return;
    }
    let mut daemon = Daemon::start_as("auto", Some(NOBODY));
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.253.0.0/24"]);
    let (one, two) = (common::rootless_container(), common::rootless_container());
    for c in [&one, &two] {
        daemon.cli_ok(&["connect", "n", "--pid", &c.pid().to_string()]);
    }
    let ping_from = |pid: u32, ip: &str| {
        common::ping_with(
            |args| {
                std::process::Command::new("nsenter")
                    .args(["-t", &pid.to_string(), "-n"])
                    .args(args)
                    .output()
                    .unwrap()
            },
            ip,
        )
    };
    assert!(ping_from(one.pid(), "10.253.0.3"));
    daemon.kill();
    daemon.restart();
    assert!(
        wait_for(Duration::from_secs(10), || ping_from(
            one.pid(),
            "10.253.0.3"
        )),
        "the rootless containers do not reach each other after the restart:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        daemon.json(&["network", "inspect", "n"])["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(daemon.stop());
    let links = std::process::Command::new("nsenter")
        .args(["-t", &one.pid().to_string(), "-n", "ip", "-o", "link"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("eth0"),
        "the TAP outlived an orderly stop"
    );
}

/// With a packet uplink: a killed daemon's publications are DNATed on the uplink
/// address again, and its networks leave masqueraded or routed as before.
#[test]
fn killed_uplink_daemon_publishes_and_routes_again() {
    if !require_root("killed_uplink_daemon_publishes_and_routes_again") {
        return;
    }
    const UPLINK_IP: &str = "192.0.2.2";
    const OUTSIDE_IP: &str = "192.0.2.1";
    let host = host_namespace();
    // The outside: a namespace behind a veth whose host end is the uplink.
    let outside = Netns::new();
    let (uplink, peer) = (common::unique("tu"), common::unique("tu"));
    host.exec_ok(&[
        "ip", "link", "add", &uplink, "type", "veth", "peer", "name", &peer,
    ]);
    host.exec_ok(&["ip", "link", "set", &peer, "netns", &outside.name]);
    outside.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{OUTSIDE_IP}/24"),
        "dev",
        &peer,
    ]);
    outside.exec_ok(&["ip", "link", "set", &peer, "up"]);
    outside.exec_ok(&["ip", "route", "add", "10.249.0.0/24", "via", UPLINK_IP]);
    let _outside_server = outside.spawn(&[
        "socat",
        "TCP-LISTEN:8000,reuseaddr,fork",
        "SYSTEM:echo outside sees $SOCAT_PEERADDR",
    ]);
    let uplink_ip = format!("{UPLINK_IP}/24");
    let mut daemon = daemon_in(&host, &["--uplink", &uplink, "--uplink-ip", &uplink_ip]);
    daemon.cli_ok(&["network", "create", "web", "--subnet", "10.248.0.0/24"]);
    daemon.cli_ok(&[
        "network",
        "create",
        "routed",
        "--subnet",
        "10.249.0.0/24",
        "--no-masquerade",
    ]);
    let (w, r) = (Netns::new(), Netns::new());
    daemon.cli_ok(&[
        "connect",
        "web",
        "--netns",
        &w.path(),
        "--name",
        "web1",
        "-p",
        "8080:80",
    ]);
    daemon.cli_ok(&[
        "connect",
        "routed",
        "--netns",
        &r.path(),
        "--name",
        "routed1",
    ]);
    let _server = w.spawn(&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:echo web1 sees $SOCAT_PEERADDR",
    ]);
    let check = |daemon: &Daemon, since: Instant, what: &str| {
        let published = format!("{UPLINK_IP}:8080");
        assert!(
            wait_for(Duration::from_secs(10), || {
                ask(&outside, &published, "3") == format!("web1 sees {OUTSIDE_IP}")
            }),
            "the published port is not DNATed on the uplink:\n{}",
            daemon.log_text()
        );
        report(&format!(
            "uplink: {what} to the first connection DNATed to a published port: {} ms",
            since.elapsed().as_millis()
        ));
        let outside_server = format!("{OUTSIDE_IP}:8000");
        let masqueraded = format!("outside sees {UPLINK_IP}");
        assert!(
            wait_for(Duration::from_secs(10), || ask(&w, &outside_server, "2")
                == masqueraded),
            "the network does not leave masqueraded"
        );
        assert!(
            wait_for(Duration::from_secs(10), || ask(&r, &outside_server, "2")
                == "outside sees 10.249.0.2"),
            "the routed network does not leave with its own address"
        );
    };
    check(&daemon, Instant::now(), "start");
    daemon.kill();
    let restarted = Instant::now();
    daemon.restart();
    check(&daemon, restarted, "restart");
}
