//! Docker's bridge semantics through a packet uplink, end to end: the daemon runs in a
//! host namespace of the test's own, its uplink is a veth whose peer sits in an
//! "outside" namespace (192.0.2.1, running servers), and containers are namespaces on
//! several networks. Every check goes through the kernel's own stack.

mod common;

use std::time::Duration;

use common::{Daemon, DataFile, EtcNetns, Netns, require_root, unique, wait_for};

/// tapnet's address on the outside network, and the outside peer's.
const UPLINK_IP: &str = "192.0.2.2";
const OUTSIDE_IP: &str = "192.0.2.1";

/// The outside: a namespace joined to the daemon's host namespace by a veth pair whose
/// host end (returned) becomes the uplink. The outside end keeps its offloads (TSO,
/// partial checksums), as a real uplink's peer would: tapnet reads such frames with a
/// virtio_net_hdr that describes them.
fn outside_behind(host: &Netns) -> (Netns, String) {
    let outside = Netns::new();
    let (uplink, peer) = (unique("tu"), unique("tu"));
    host.exec_ok(&[
        "ip", "link", "add", &uplink, "type", "veth", "peer", "name", &peer,
    ]);
    host.exec_ok(&["ip", "link", "set", &peer, "netns", &outside.name]);
    outside.exec_ok(&["ip", "link", "set", "lo", "up"]);
    outside.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{OUTSIDE_IP}/24"),
        "dev",
        &peer,
    ]);
    outside.exec_ok(&["ip", "link", "set", &peer, "up"]);
    (outside, uplink)
}

/// The answer of a TCP or UDP server (`target` as socat spells it) to one line, or ""
/// on failure. socat waits up to 3 s for the answer after sending.
fn ask(ns: &Netns, target: &str) -> String {
    let script = format!("echo hello | socat -t 3 -T 3 - {target}");
    let out = ns.exec(&["sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// [`ask`] over UDP, which may lose a datagram: up to three tries.
fn ask_udp(ns: &Netns, target: &str) -> String {
    let mut answer = String::new();
    for _ in 0..3 {
        answer = ask(ns, target);
        if !answer.is_empty() {
            break;
        }
    }
    answer
}

fn ask_tcp(ns: &Netns, ip: &str, port: u16) -> String {
    ask(ns, &format!("TCP:{ip}:{port},connect-timeout=2"))
}

/// A TCP server on `port` answering every connection with `NAME sees CLIENT`.
fn serve_tcp(ns: &Netns, port: u16, name: &str) -> common::ChildGuard {
    ns.spawn(&[
        "socat",
        &format!("TCP-LISTEN:{port},reuseaddr,fork"),
        &format!("SYSTEM:read line; echo {name} sees $SOCAT_PEERADDR"),
    ])
}

fn dig(ns: &Netns, server: &str, name: &str) -> String {
    let out = ns.exec(&[
        "dig",
        "+short",
        "+tries=2",
        "+time=2",
        &format!("@{server}"),
        name,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A daemon in `host` whose packet uplink is `uplink`, at [`UPLINK_IP`], with `extra`
/// options.
fn uplink_daemon(host: &Netns, uplink: &str, extra: &[&str]) -> Daemon {
    let addr = format!("{UPLINK_IP}/24");
    let mut args = vec!["--uplink", uplink, "--uplink-ip", &addr];
    args.extend_from_slice(extra);
    Daemon::start_full("auto", None, &["ip", "netns", "exec", &host.name], &args)
}

fn uplink_drops(daemon: &Daemon, reason: &str) -> u64 {
    let stats = daemon.json(&["stats", "--json"]);
    stats["uplink"]["drops"][reason].as_u64().unwrap_or(0)
}

/// The whole topology of Docker's bridge driver behind one uplink: masquerade, DNAT
/// with the client's address, hairpin, --internal, --no-icc, --no-masquerade,
/// isolation between networks except through a container on both, names at both DNS
/// addresses, conntrack listing and expiry.
#[test]
fn docker_bridge_topology_through_a_packet_uplink() {
    if !require_root("docker_bridge_topology_through_a_packet_uplink") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    // Names the daemon forwards go to 127.0.0.77 in the host namespace, where nothing
    // listens: nothing leaves the test's namespaces.
    let _host_etc = EtcNetns::resolv_conf(&host, "127.0.0.77");
    let (outside, uplink) = outside_behind(&host);
    let _tcp = serve_tcp(&outside, 8000, "outside");
    let _udp = outside.spawn(&[
        "socat",
        "UDP-RECVFROM:8001,fork",
        "SYSTEM:echo outside sees $SOCAT_PEERADDR",
    ]);
    // The outside routes the routed network, and (to try and fail) the others, to us.
    for subnet in ["10.241.0.0/24", "10.243.0.0/24", "10.245.0.0/24"] {
        outside.exec_ok(&["ip", "route", "add", subnet, "via", UPLINK_IP]);
    }
    let daemon = uplink_daemon(
        &host,
        &uplink,
        &["--uplink-gw", OUTSIDE_IP, "--conntrack-timeout", "udp=8"],
    );
    let create = |args: &[&str]| {
        let mut full = vec!["network", "create"];
        full.extend_from_slice(args);
        daemon.cli_ok(&full);
    };
    create(&["front", "--subnet", "10.241.0.0/24"]);
    create(&["back", "--subnet", "10.242.0.0/24"]);
    create(&["priv", "--subnet", "10.243.0.0/24", "--internal"]);
    create(&["quiet", "--subnet", "10.244.0.0/24", "--no-icc"]);
    create(&["routed", "--subnet", "10.245.0.0/24", "--no-masquerade"]);
    let connect = |ns: &Netns, network: &str, name: &str, extra: &[&str]| {
        let path = ns.path();
        let mut args = vec!["connect", network, "--netns", &path, "--name", name];
        args.extend_from_slice(extra);
        daemon.cli_ok(&args);
    };
    let (a1, a2, a3, b1) = (Netns::new(), Netns::new(), Netns::new(), Netns::new());
    let (i1, i2, q1, q2, r1) = (
        Netns::new(),
        Netns::new(),
        Netns::new(),
        Netns::new(),
        Netns::new(),
    );
    connect(&a1, "front", "a1", &[]); // 10.241.0.2
    connect(&a2, "front", "a2", &["--alias", "api", "-p", "8080:80"]); // 10.241.0.3
    connect(&a3, "front", "a3", &[]); // 10.241.0.4
    connect(&a3, "back", "a3", &[]); // 10.242.0.2, eth1
    connect(&b1, "back", "b1", &[]); // 10.242.0.3
    connect(&i1, "priv", "i1", &[]); // 10.243.0.2
    connect(&i2, "priv", "i2", &[]); // 10.243.0.3
    connect(&q1, "quiet", "q1", &[]); // 10.244.0.2
    connect(&q2, "quiet", "q2", &[]); // 10.244.0.3
    connect(&r1, "routed", "r1", &[]); // 10.245.0.2
    let _a2_server = serve_tcp(&a2, 80, "a2");
    let _i1_server = serve_tcp(&i1, 80, "i1");
    let _r1_server = serve_tcp(&r1, 80, "r1");
    let _a1_server = serve_tcp(&a1, 80, "a1");

    // tapnet's own address on the outside answers ping (ARP resolved on the way).
    assert!(
        outside.ping(UPLINK_IP),
        "the uplink address does not answer"
    );

    // Masquerade: the outside server sees the uplink address, for TCP, UDP and ping.
    assert_eq!(ask_tcp(&a1, OUTSIDE_IP, 8000), "outside sees 192.0.2.2");
    assert_eq!(
        ask_udp(&a1, &format!("UDP:{OUTSIDE_IP}:8001")),
        "outside sees 192.0.2.2"
    );
    assert!(a1.ping(OUTSIDE_IP), "a container cannot ping the outside");

    // Published port from outside: DNAT, and the container sees the real client.
    assert_eq!(ask_tcp(&outside, UPLINK_IP, 8080), "a2 sees 192.0.2.1");
    // Hairpin, from another container, from the target itself and from another
    // network: masqueraded to the target network's gateway so replies come back.
    assert_eq!(ask_tcp(&a1, UPLINK_IP, 8080), "a2 sees 10.241.0.1");
    assert_eq!(ask_tcp(&a2, UPLINK_IP, 8080), "a2 sees 10.241.0.1");
    assert_eq!(ask_tcp(&b1, UPLINK_IP, 8080), "a2 sees 10.241.0.1");

    // Unrelated inbound traffic is dropped and counted: a closed port of the uplink
    // address, and a masqueraded container's own address.
    let before = uplink_drops(&daemon, "no_mapping");
    assert_eq!(ask_tcp(&outside, UPLINK_IP, 22), "");
    assert_eq!(ask_tcp(&outside, "10.241.0.2", 80), "");
    assert!(uplink_drops(&daemon, "no_mapping") > before);

    // --internal: containers reach each other, nothing gets out, nothing gets in, and
    // its ports cannot be published.
    assert!(
        i1.ping("10.243.0.3"),
        "internal containers cannot reach each other"
    );
    assert!(
        !i2.ping(OUTSIDE_IP),
        "an internal container reached the outside"
    );
    assert_eq!(ask_tcp(&i2, OUTSIDE_IP, 8000), "");
    assert_eq!(ask_tcp(&outside, "10.243.0.2", 80), "");
    let err = daemon.cli_err(&["publish", "priv", "i1", "-p", "8081:80"]);
    assert!(err.contains("internal"), "{err}");

    // --no-icc: no container-to-container traffic, but the gateway and the way out.
    assert!(
        !q1.ping("10.244.0.3"),
        "--no-icc let a container reach another"
    );
    assert!(q1.ping("10.244.0.1"), "--no-icc blocked the gateway");
    assert_eq!(ask_tcp(&q2, OUTSIDE_IP, 8000), "outside sees 192.0.2.2");

    // --no-masquerade: routed with the container's own address; replies come back,
    // unsolicited traffic does not.
    assert_eq!(ask_tcp(&r1, OUTSIDE_IP, 8000), "outside sees 10.245.0.2");
    assert_eq!(ask_tcp(&outside, "10.245.0.2", 80), "");

    // Networks are isolated from each other, except through a container on both.
    assert!(!a1.ping("10.242.0.3"), "front reached back");
    assert!(!b1.ping("10.241.0.2"), "back reached front");
    assert!(a3.has_link("eth0") && a3.has_link("eth1"));
    assert!(a3.ping("10.241.0.2") && a3.ping("10.242.0.3"));
    assert_eq!(ask_tcp(&a3, "10.241.0.3", 80), "a2 sees 10.241.0.4");

    // Names and aliases at 127.0.0.11 and at the gateway, only among containers that
    // share a network; getent through a Docker-style resolv.conf.
    assert_eq!(dig(&a1, "127.0.0.11", "a2"), "10.241.0.3");
    assert_eq!(dig(&a1, "10.241.0.1", "api"), "10.241.0.3");
    assert_eq!(dig(&a3, "10.242.0.1", "b1"), "10.242.0.3");
    assert_eq!(dig(&b1, "127.0.0.11", "a3"), "10.242.0.2");
    assert_ne!(dig(&b1, "10.242.0.1", "a2"), "10.241.0.3");
    {
        let _a1_etc = EtcNetns::resolv_conf(&a1, "127.0.0.11");
        let out = a1.exec_ok(&["getent", "hosts", "api"]);
        assert!(out.starts_with("10.241.0.3"), "{out}");
    }

    // conntrack lists the uplink's flows with both tuples; a UDP flow expires after
    // its timeout (8 s here; socat itself lingers 3 s after the answer).
    let _long = a1.spawn(&[
        "sh",
        "-c",
        &format!("sleep 20 | socat -T 30 - TCP:{OUTSIDE_IP}:8000"),
    ]);
    // One datagram per source port: a retry on the same port would make the flow a
    // stream (replied and older than two seconds), which keeps the longer timeout.
    let (port, answer) = (40001..40004)
        .map(|port| {
            let target = format!("UDP:{OUTSIDE_IP}:8001,sourceport={port}");
            let answer = ask(&a1, &target);
            if answer.is_empty() {
                eprintln!(
                    "no UDP answer from source port {port}; stats:\n{}",
                    daemon.cli_ok(&["stats"])
                );
            }
            (port, answer)
        })
        .find(|(_, answer)| !answer.is_empty())
        .unwrap_or((0, String::new()));
    assert_eq!(
        answer,
        "outside sees 192.0.2.2",
        "{}\n{}",
        daemon.cli_ok(&["stats"]),
        daemon.cli_ok(&["conntrack"])
    );
    let mut listing = String::new();
    let listed = wait_for(Duration::from_secs(5), || {
        listing = daemon.cli_ok(&["conntrack"]);
        listing.contains("ESTABLISHED")
    });
    assert!(listed, "{listing}");
    let tcp = listing
        .lines()
        .find(|l| l.starts_with("tcp") && l.contains("ESTABLISHED") && l.contains("dport=8000"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        tcp.contains("src=10.241.0.2 dst=192.0.2.1") && tcp.contains("src=192.0.2.1 dst=192.0.2.2"),
        "{tcp}"
    );
    let sport = format!("sport={port} ");
    let udp = |l: &str| l.starts_with("udp") && l.contains(&sport);
    assert!(listing.lines().any(udp), "{listing}");
    let expired = wait_for(Duration::from_secs(15), || {
        !daemon.cli_ok(&["conntrack"]).lines().any(udp)
    });
    assert!(expired, "the UDP flow did not expire");

    // Names disappear when a container disconnects.
    daemon.cli_ok(&["disconnect", "front", "a2"]);
    assert_ne!(dig(&a1, "127.0.0.11", "api"), "10.241.0.3");
    assert_eq!(ask_tcp(&outside, UPLINK_IP, 8080), "");
    let stats = daemon.json(&["stats", "--json"]);
    let uplink_stats = &stats["uplink"];
    assert!(
        uplink_stats["masqueraded_flows"].as_u64().unwrap() >= 4,
        "{stats}"
    );
    assert!(
        uplink_stats["published_flows"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        uplink_stats["hairpin_flows"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    assert!(
        uplink_stats["routed_flows"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

/// Bad uplink settings are a one-line error at start; --no-masquerade needs an uplink.
#[test]
fn uplink_errors_are_clear() {
    if !require_root("uplink_errors_are_clear") {
        return;
    }
    let host = Netns::new();
    let dir = common::TempDir::new();
    let control = dir.0.join("control.sock");
    let start = |extra: &[&str]| {
        let mut args = vec![
            "netns",
            "exec",
            &host.name,
            common::tapnet_bin(),
            "daemon",
            "--control",
            control.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        common::run("ip", &args)
    };
    let out = start(&["--uplink", "nosuch0", "--uplink-ip", "192.0.2.2/24"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("nosuch0"), "{err}");
    let (_outside, uplink) = outside_behind(&host);
    let out = start(&[
        "--uplink",
        &uplink,
        "--uplink-ip",
        "192.0.2.2/24",
        "--uplink-gw",
        "198.51.100.1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--uplink-gw 198.51.100.1"), "{err}");
    let out = start(&["--uplink-ip", "192.0.2.2/24"]);
    assert!(!out.status.success());

    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    let err = daemon.cli_err(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.246.0.0/24",
        "--no-masquerade",
    ]);
    assert!(err.contains("--uplink"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.246.0.0/24"]);
}

/// With an IPv6 address on the uplink, a network's IPv6 prefix is routed through it
/// without translation: the outside sees the container's own address, replies come
/// back, unsolicited traffic does not, and tapnet's address answers NDP and ping.
#[test]
fn ipv6_is_routed_through_the_uplink() {
    if !require_root("ipv6_is_routed_through_the_uplink") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let _host_etc = EtcNetns::resolv_conf(&host, "127.0.0.77");
    let (outside, uplink) = outside_behind(&host);
    let container = Netns::new();
    for ns in [&outside, &container] {
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"]);
    }
    let peer = outside.exec_ok(&["sh", "-c", "ls /sys/class/net | grep -v lo"]);
    let peer = peer.trim();
    outside.exec_ok(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{peer}.disable_ipv6=0"),
    ]);
    outside.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:1::1/64",
        "dev",
        peer,
        "nodad",
    ]);
    outside.exec_ok(&[
        "ip",
        "-6",
        "route",
        "add",
        "fd00:77::/64",
        "via",
        "2001:db8:1::2",
    ]);
    let _server = outside.spawn(&[
        "socat",
        "TCP6-LISTEN:8600,reuseaddr,fork",
        "SYSTEM:read line; echo outside sees $SOCAT_PEERADDR",
    ]);
    let data = DataFile::new(12_000_000);
    let _sum = outside.spawn(&[
        "socat",
        "TCP6-LISTEN:8601,reuseaddr,fork",
        "SYSTEM:sha256sum",
    ]);
    let _cat = outside.spawn(&[
        "socat",
        "TCP6-LISTEN:8602,reuseaddr,fork",
        &format!("SYSTEM:cat {}", data.path()),
    ]);
    let daemon = uplink_daemon(&host, &uplink, &["--uplink-ip6", "2001:db8:1::2/64"]);
    daemon.cli_ok(&[
        "network",
        "create",
        "six",
        "--subnet",
        "10.247.0.0/24",
        "--ipv6",
        "--subnet6",
        "fd00:77::/64",
    ]);
    daemon.cli_ok(&[
        "connect",
        "six",
        "--netns",
        &container.path(),
        "--name",
        "c",
    ]);
    let _c_server = container.spawn(&[
        "socat",
        "TCP6-LISTEN:80,reuseaddr,fork",
        "SYSTEM:read line; echo c answers",
    ]);
    let ping6 = |ns: &Netns, ip: &str| {
        ns.exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", "-q", ip])
            .status
            .success()
    };
    assert!(
        ping6(&outside, "2001:db8:1::2"),
        "the uplink's IPv6 address"
    );
    assert!(
        ping6(&container, "2001:db8:1::1"),
        "container to the outside"
    );
    assert_eq!(
        ask(&container, "TCP6:[2001:db8:1::1]:8600,connect-timeout=2"),
        "outside sees [fd00:0077:0000:0000:0000:0000:0000:0002]"
    );
    // Bulk both ways: the container's TSO frames over IPv6 leave in one write each,
    // the outside's come in whole (offload on both sides), byte-exact.
    assert_eq!(
        send_for_sum(&container, &data, "2001:db8:1::1", 8601),
        data.sum,
        "container -> outside over IPv6"
    );
    let fetched = container.exec_ok(&[
        "sh",
        "-c",
        "socat -u TCP6:[2001:db8:1::1]:8602,connect-timeout=3 - | sha256sum",
    ]);
    assert_eq!(
        fetched.split_whitespace().next(),
        Some(data.sum.as_str()),
        "outside -> container over IPv6"
    );
    assert_eq!(ask(&outside, "TCP6:[fd00:77::2]:80,connect-timeout=2"), "");
    assert!(uplink_drops(&daemon, "unsolicited_ipv6") > 0);
    let listing = daemon.cli_ok(&["conntrack"]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("tcp") && l.contains("src=fd00:77::2 dst=2001:db8:1::1")),
        "{listing}"
    );
}

/// Sends `data` from `ns` to a `sha256sum` server at `ip:port` (IPv4 or IPv6) and
/// returns its answer.
fn send_for_sum(ns: &Netns, data: &DataFile, ip: &str, port: u16) -> String {
    let target = if ip.contains(':') {
        format!("TCP6:[{ip}]:{port}")
    } else {
        format!("TCP:{ip}:{port}")
    };
    let script = format!("socat -t 20 - {target},connect-timeout=3 < {}", data.path());
    let out = ns.exec(&["sh", "-c", &script]);
    let answer = String::from_utf8_lossy(&out.stdout);
    answer.split_whitespace().next().unwrap_or("").to_owned()
}

/// A TCP server on `port` that answers every connection with the SHA-256 of what it read.
fn serve_sum(ns: &Netns, port: u16) -> common::ChildGuard {
    ns.spawn(&[
        "socat",
        &format!("TCP-LISTEN:{port},reuseaddr,fork"),
        "SYSTEM:sha256sum",
    ])
}

/// A connection of `data` each way between a TAP container `t1` (serving
/// `sha256sum` on 9000) and a veth container `v1` on one network, byte-exact, and the
/// ports' counters: the TAP handed over TSO frames, no write to the veth port failed.
fn tap_and_veth_exchange(
    daemon: &Daemon,
    data: &DataFile,
    (tap, tap_ip): (&Netns, &str),
    (veth, veth_ip): (&Netns, &str),
) {
    let _v1_sum = serve_sum(veth, 9100);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        send_for_sum(tap, data, veth_ip, 9100),
        data.sum,
        "TAP -> veth port"
    );
    assert_eq!(
        send_for_sum(veth, data, tap_ip, 9000),
        data.sum,
        "veth port -> TAP"
    );
    let stats = daemon.json(&["stats", "--json"]);
    let ports = stats["ports"].as_array().unwrap();
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| p["endpoint"] == name)
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
            .clone()
    };
    let (t1, v1) = (port("t1/eth0"), port("v1/eth0"));
    let (bytes, frames) = (
        t1["rx_bytes"].as_u64().unwrap(),
        t1["rx_packets"].as_u64().unwrap(),
    );
    assert!(
        bytes / frames.max(1) > 1514,
        "the TAP handed over TSO frames: {bytes} bytes in {frames} frames"
    );
    assert_eq!(t1["tx_errors"], 0, "{t1}");
    assert_eq!(v1["tx_errors"], 0, "{v1}");
}

/// Checksum and segmentation offload end to end, byte-exact: a container's TAP hands
/// over 64 KiB TCP segments with partial checksums, which leave through the uplink's
/// socket in one write each (the kernel's GSO cuts them); the outside's own TSO frames
/// and partial checksums come in through it, to a masqueraded flow and to a published
/// port (NAT rewrites the partial checksums); and TSO frames go whole between a TAP
/// and a veth port (both with a virtio_net_hdr).
#[test]
fn offloaded_transfers_are_byte_exact_through_the_uplink_and_to_plain_ports() {
    if !require_root("offloaded_transfers_are_byte_exact_through_the_uplink_and_to_plain_ports") {
        return;
    }
    let data = DataFile::new(12_000_000);
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let _host_etc = EtcNetns::resolv_conf(&host, "127.0.0.77");
    let (outside, uplink) = outside_behind(&host);
    let _sum = serve_sum(&outside, 8100);
    let _cat = outside.spawn(&[
        "socat",
        "TCP-LISTEN:8101,reuseaddr,fork",
        &format!("SYSTEM:cat {}", data.path()),
    ]);
    let daemon = uplink_daemon(&host, &uplink, &["--uplink-gw", OUTSIDE_IP]);
    daemon.cli_ok(&["network", "create", "bulk", "--subnet", "10.246.0.0/24"]);
    let (tap, veth) = (Netns::new(), Netns::new());
    let (tap_path, veth_path) = (tap.path(), veth.path());
    daemon.cli_ok(&[
        "connect",
        "bulk",
        "--netns",
        &tap_path,
        "--name",
        "t1",
        "-p",
        "9000:9000",
    ]);
    daemon.cli_ok(&[
        "connect", "bulk", "--netns", &veth_path, "--name", "v1", "--kind", "veth",
    ]);
    let tso = tap.exec_ok(&["ethtool", "-k", "eth0"]);
    assert!(
        tso.contains("tcp-segmentation-offload: on"),
        "the container's TAP offers TSO:\n{tso}"
    );
    let _t1_sum = serve_sum(&tap, 9000);
    std::thread::sleep(Duration::from_millis(300));

    assert_eq!(
        send_for_sum(&tap, &data, OUTSIDE_IP, 8100),
        data.sum,
        "TAP -> uplink (masqueraded)"
    );
    let script = format!("socat -u TCP:{OUTSIDE_IP}:8101,connect-timeout=3 - | sha256sum");
    let fetched = tap.exec_ok(&["sh", "-c", &script]);
    assert_eq!(
        fetched.split_whitespace().next(),
        Some(data.sum.as_str()),
        "uplink -> TAP (replies of a masqueraded flow)"
    );
    assert_eq!(
        send_for_sum(&outside, &data, UPLINK_IP, 9000),
        data.sum,
        "outside -> published port on the TAP"
    );
    tap_and_veth_exchange(&daemon, &data, (&tap, "10.246.0.2"), (&veth, "10.246.0.3"));
    assert_eq!(
        uplink_drops(&daemon, "oversized"),
        0,
        "no frame from the outside was dropped as oversized"
    );
}

/// With offload on TAPs only (`TAPNET_OFFLOAD=tap`), a veth port's socket has no
/// virtio_net_hdr: a TAP's 64 KiB TSO frames reach it as segments that tapnet cuts
/// (and its whole frames reach the TAP), byte-exact.
#[test]
fn tso_frames_are_cut_into_segments_for_a_plain_port() {
    if !require_root("tso_frames_are_cut_into_segments_for_a_plain_port") {
        return;
    }
    let data = DataFile::new(12_000_000);
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let daemon = Daemon::start_full(
        "auto",
        None,
        &[
            "env",
            "TAPNET_OFFLOAD=tap",
            "ip",
            "netns",
            "exec",
            &host.name,
        ],
        &[],
    );
    daemon.cli_ok(&["network", "create", "mixed", "--subnet", "10.247.0.0/24"]);
    let (tap, veth) = (Netns::new(), Netns::new());
    let (tap_path, veth_path) = (tap.path(), veth.path());
    daemon.cli_ok(&["connect", "mixed", "--netns", &tap_path, "--name", "t1"]);
    daemon.cli_ok(&[
        "connect", "mixed", "--netns", &veth_path, "--name", "v1", "--kind", "veth",
    ]);
    let features = veth.exec_ok(&["ethtool", "-k", "eth0"]);
    assert!(
        features.contains("tx-tcp-segmentation: off") && features.contains("tx-checksumming: off"),
        "the plain port's container has TSO and checksum offload off:\n{features}"
    );
    let _t1_sum = serve_sum(&tap, 9000);
    tap_and_veth_exchange(&daemon, &data, (&tap, "10.247.0.2"), (&veth, "10.247.0.3"));
}
