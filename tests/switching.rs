//! End-to-end switching through real namespaces: the kernel's own stack in each
//! "container" pings and transfers over TCP through tapnet's switch.

mod common;

use common::{Daemon, Netns, require_root, tcp_transfer, wait_for};
use std::time::Duration;

/// Creates network `name` on `daemon` with the given extra options.
fn network(daemon: &Daemon, name: &str, subnet: &str, extra: &[&str]) {
    let mut args = vec!["network", "create", name, "--subnet", subnet];
    args.extend_from_slice(extra);
    daemon.cli_ok(&args);
}

/// Connects `ns` to `net` with a fixed address, returning the address.
fn connect(daemon: &Daemon, net: &str, ns: &Netns, ip: &str, kind: &str) -> String {
    daemon.cli_ok(&[
        "connect",
        net,
        "--netns",
        &ns.path(),
        "--ip",
        ip,
        "--kind",
        kind,
    ]);
    ip.to_owned()
}

fn two_containers_reach_each_other(backend: &str, kind_a: &str, kind_b: &str) {
    let daemon = Daemon::start(backend);
    network(&daemon, "n1", "10.201.0.0/24", &[]);
    let (a, b) = (Netns::new(), Netns::new());
    let ip_a = connect(&daemon, "n1", &a, "10.201.0.2", kind_a);
    let ip_b = connect(&daemon, "n1", &b, "10.201.0.3", kind_b);
    assert!(a.ping(&ip_b), "{kind_a} -> {kind_b} ping failed");
    assert!(b.ping(&ip_a), "{kind_b} -> {kind_a} ping failed");
    tcp_transfer(&a, &b, &ip_b, 4 << 20);
    tcp_transfer(&b, &a, &ip_a, 1 << 20);
    // The switch learned both stations on the network.
    let macs = daemon.json(&["macs", "n1", "--json"]);
    let learned: Vec<&str> = macs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mac"].as_str().unwrap())
        .collect();
    assert!(
        learned.contains(&"02:42:0a:c9:00:02") && learned.contains(&"02:42:0a:c9:00:03"),
        "{macs}"
    );
    let stats = daemon.json(&["stats", "--json"]);
    let total_rx: u64 = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rx_packets"].as_u64().unwrap())
        .sum();
    assert!(total_rx > 100, "{stats}");
}

#[test]
fn tap_tap_uring() {
    if require_root("tap_tap_uring") {
        two_containers_reach_each_other("uring", "tap", "tap");
    }
}

#[test]
fn tap_tap_epoll() {
    if require_root("tap_tap_epoll") {
        two_containers_reach_each_other("epoll", "tap", "tap");
    }
}

#[test]
fn veth_veth_uring() {
    if require_root("veth_veth_uring") {
        two_containers_reach_each_other("uring", "veth", "veth");
    }
}

#[test]
fn veth_veth_epoll() {
    if require_root("veth_veth_epoll") {
        two_containers_reach_each_other("epoll", "veth", "veth");
    }
}

#[test]
fn tap_veth_auto() {
    if require_root("tap_veth_auto") {
        two_containers_reach_each_other("auto", "tap", "veth");
    }
}

/// ARP requests from one network reach that network's containers and no others, and a
/// frame never crosses networks even when a container puts itself in the other subnet.
#[test]
fn networks_are_isolated() {
    if !require_root("networks_are_isolated") {
        return;
    }
    let daemon = Daemon::start("auto");
    network(&daemon, "red", "10.202.0.0/24", &[]);
    network(&daemon, "blue", "10.203.0.0/24", &[]);
    let (red1, red2, blue1) = (Netns::new(), Netns::new(), Netns::new());
    connect(&daemon, "red", &red1, "10.202.0.2", "tap");
    connect(&daemon, "red", &red2, "10.202.0.3", "veth");
    let blue_ip = connect(&daemon, "blue", &blue1, "10.203.0.2", "tap");

    // Capture ARP in red2 (same network) and blue1 (other network), then make red1
    // broadcast who-has for an address nobody holds.
    let capture = |ns: &Netns| {
        ns.spawn(&[
            "timeout",
            "6",
            "tcpdump",
            "-l",
            "-n",
            "-i",
            "eth0",
            "-c",
            "1",
            "arp and arp[24:4] = 0x0aca0063",
        ])
    };
    let mut same = capture(&red2);
    let mut other = capture(&blue1);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!red1.ping("10.202.0.99"));
    let exited = |g: &mut common::ChildGuard| matches!(g.0.try_wait(), Ok(Some(s)) if s.success());
    assert!(
        wait_for(Duration::from_secs(6), || exited(&mut same)),
        "ARP broadcast did not reach the same network"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !exited(&mut other),
        "ARP broadcast leaked into another network"
    );

    // red1 claims an address in blue's subnet: still no way across at L2.
    red1.exec_ok(&["ip", "addr", "add", "10.203.0.77/24", "dev", "eth0"]);
    assert!(
        !red1.ping(&blue_ip),
        "a frame crossed from network red to network blue"
    );
}

/// With ICC off, containers of one network cannot reach each other (the drops are
/// counted by reason) but still reach the gateway.
#[test]
fn no_icc_blocks_container_to_container() {
    if !require_root("no_icc_blocks_container_to_container") {
        return;
    }
    let daemon = Daemon::start("auto");
    network(&daemon, "quiet", "10.204.0.0/24", &["--no-icc"]);
    network(&daemon, "chatty", "10.205.0.0/24", &[]);
    let (a, b, c, d) = (Netns::new(), Netns::new(), Netns::new(), Netns::new());
    connect(&daemon, "quiet", &a, "10.204.0.2", "tap");
    let ip_b = connect(&daemon, "quiet", &b, "10.204.0.3", "veth");
    connect(&daemon, "chatty", &c, "10.205.0.2", "tap");
    let ip_d = connect(&daemon, "chatty", &d, "10.205.0.3", "tap");
    assert!(!a.ping(&ip_b), "ICC off, yet a container reached another");
    assert!(a.ping("10.204.0.1"), "ICC off must not block the gateway");
    assert!(c.ping(&ip_d), "ICC on, yet containers could not talk");
    // Even knowing b's MAC (ARP requests never reach b), a's unicast frames are dropped
    // once the switch knows where b is (b talked to the gateway).
    assert!(b.ping("10.204.0.1"));
    a.exec_ok(&[
        "ip",
        "neigh",
        "replace",
        &ip_b,
        "lladdr",
        "02:42:0a:cc:00:03",
        "dev",
        "eth0",
    ]);
    assert!(
        !a.ping(&ip_b),
        "ICC off, yet unicast reached another container"
    );
    let inspect = daemon.json(&["network", "inspect", "quiet"]);
    assert_eq!(inspect["options"]["icc"], false, "{inspect}");
    let stats = daemon.json(&["stats", "--json"]);
    let icc_drops: u64 = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["drops"]["icc_disabled"].as_u64())
        .sum();
    assert!(icc_drops > 0, "no ICC drops counted: {stats}");
}

/// `disconnect` removes the interface from the container (and the veth's host end).
#[test]
fn disconnect_removes_device() {
    if !require_root("disconnect_removes_device") {
        return;
    }
    let daemon = Daemon::start("auto");
    network(&daemon, "n", "10.206.0.0/24", &[]);
    let (a, b) = (Netns::new(), Netns::new());
    daemon.cli_ok(&[
        "connect",
        "n",
        "--netns",
        &a.path(),
        "--name",
        "alpha",
        "--kind",
        "tap",
    ]);
    let veth = daemon.json(&[
        "connect",
        "n",
        "--netns",
        &b.path(),
        "--name",
        "beta",
        "--kind",
        "veth",
        "--json",
    ]);
    let host_end = veth["host_interface"]
        .as_str()
        .expect("veth host interface")
        .to_owned();
    assert!(a.has_link("eth0") && b.has_link("eth0"));
    assert!(
        common::run("ip", &["link", "show", &host_end])
            .status
            .success()
    );

    daemon.cli_ok(&["disconnect", "n", "alpha"]);
    daemon.cli_ok(&["disconnect", "n", "beta"]);
    assert!(
        wait_for(Duration::from_secs(5), || !a.has_link("eth0")),
        "TAP still in the container"
    );
    assert!(
        wait_for(Duration::from_secs(5), || !b.has_link("eth0")),
        "veth still in the container"
    );
    assert!(
        !common::run("ip", &["link", "show", &host_end])
            .status
            .success(),
        "veth host end left behind"
    );
    let inspect = daemon.json(&["network", "inspect", "n"]);
    assert_eq!(inspect["containers"].as_array().unwrap().len(), 0);
    daemon.cli_ok(&["network", "rm", "n"]);
}

/// SIGTERM stops the daemon cleanly and every device it created is gone.
#[test]
fn stopping_the_daemon_removes_every_device() {
    if !require_root("stopping_the_daemon_removes_every_device") {
        return;
    }
    let mut daemon = Daemon::start("auto");
    network(&daemon, "n", "10.207.0.0/24", &[]);
    network(&daemon, "m", "10.208.0.0/24", &[]);
    let (a, b) = (Netns::new(), Netns::new());
    daemon.cli_ok(&["connect", "n", "--netns", &a.path(), "--kind", "tap"]);
    daemon.cli_ok(&["connect", "m", "--netns", &a.path(), "--kind", "veth"]);
    let veth = daemon.json(&[
        "connect",
        "n",
        "--netns",
        &b.path(),
        "--kind",
        "veth",
        "--json",
    ]);
    let host_end = veth["host_interface"].as_str().unwrap().to_owned();
    // One namespace on two networks: one container with eth0 and eth1.
    assert!(a.has_link("eth0") && a.has_link("eth1"));
    // Host ends are named tn{daemon's tag}v{port}: none of this daemon's may be left.
    let prefix = host_end[..=host_end.rfind('v').unwrap()].to_owned();
    assert!(daemon.stop(), "daemon did not exit cleanly");
    assert!(
        !a.has_link("eth0") && !a.has_link("eth1") && !b.has_link("eth0"),
        "devices left in containers"
    );
    assert!(
        !common::run("ip", &["link", "show", &host_end])
            .status
            .success(),
        "veth host end left behind"
    );
    let host_links = common::must("ip", &["-o", "link", "show"]);
    assert!(!host_links.contains(&prefix), "{host_links}");
}

/// A container connected to two networks gets an interface on each and reaches both,
/// while the networks themselves stay apart (Docker's isolation, `network connect`).
#[test]
fn container_on_two_networks_reaches_both() {
    if !require_root("container_on_two_networks_reaches_both") {
        return;
    }
    let daemon = Daemon::start("auto");
    network(&daemon, "left", "10.209.1.0/24", &[]);
    network(&daemon, "right", "10.209.2.0/24", &[]);
    let (both, l, r) = (Netns::new(), Netns::new(), Netns::new());
    daemon.cli_ok(&[
        "connect",
        "left",
        "--netns",
        &both.path(),
        "--name",
        "both",
        "--ip",
        "10.209.1.10",
    ]);
    daemon.cli_ok(&[
        "connect",
        "right",
        "--netns",
        &both.path(),
        "--name",
        "both",
        "--ip",
        "10.209.2.10",
    ]);
    connect(&daemon, "left", &l, "10.209.1.2", "tap");
    connect(&daemon, "right", &r, "10.209.2.2", "veth");
    assert!(both.has_link("eth0") && both.has_link("eth1"));
    assert!(
        both.ping("10.209.1.2") && both.ping("10.209.2.2"),
        "the two-network container must reach both"
    );
    assert!(l.ping("10.209.1.10") && r.ping("10.209.2.10"));
    // The left container cannot reach the right one (no route between networks).
    assert!(
        !l.ping("10.209.2.2"),
        "a packet crossed from one network to another"
    );
}
