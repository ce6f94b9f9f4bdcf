//! With a packet uplink, a published port reached at one of the host's own addresses
//! from another machine answers: the host-socket listener accepts, the connection into
//! the container keeps the client's address, and the container's answers go back to
//! the host-socket flow they belong to, not out of the uplink by the route to that
//! address. Docker users expect `-p 18088:80` to answer on every host address.

mod common;

use common::{Daemon, EtcNetns, Netns, require_root, unique};

/// One line to `target` (socat's address) and the answer, or "".
fn ask(ns: &Netns, target: &str) -> String {
    let script = format!("echo hello | socat -t 3 -T 3 - {target}");
    let out = ns.exec(&["sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ask_udp(ns: &Netns, target: &str) -> String {
    (0..3)
        .map(|_| ask(ns, target))
        .find(|a| !a.is_empty())
        .unwrap_or_default()
}

#[test]
fn published_ports_answer_on_every_host_address_with_a_packet_uplink() {
    if !require_root("published_ports_answer_on_every_host_address_with_a_packet_uplink") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let _etc = EtcNetns::resolv_conf(&host, "127.0.0.77");
    // The uplink's outside: 10.87.0.1, tapnet's address there 10.87.0.2.
    let outside = Netns::new();
    let (uplink, peer_end) = (unique("tu"), unique("tu"));
    host.exec_ok(&[
        "ip", "link", "add", &uplink, "type", "veth", "peer", "name", &peer_end,
    ]);
    host.exec_ok(&["ip", "link", "set", &peer_end, "netns", &outside.name]);
    outside.exec_ok(&["ip", "addr", "add", "10.87.0.1/24", "dev", &peer_end]);
    outside.exec_ok(&["ip", "link", "set", &peer_end, "up"]);
    // Another machine on another interface of the host: 10.88.0.2, the host 10.88.0.1.
    let machine = Netns::new();
    common::link_namespaces(&host, "10.88.0.1", &machine, "10.88.0.2");
    let daemon = Daemon::start_full(
        "auto",
        None,
        &["ip", "netns", "exec", &host.name],
        &[
            "--uplink",
            &uplink,
            "--uplink-ip",
            "10.87.0.2/24",
            "--uplink-gw",
            "10.87.0.1",
        ],
    );
    daemon.cli_ok(&["network", "create", "web", "--subnet", "10.229.0.0/24"]);
    let container = Netns::new();
    daemon.cli_ok(&[
        "connect",
        "web",
        "--netns",
        &container.path(),
        "--name",
        "c",
        "-p",
        "18088:80",
        "-p",
        "18089:81/udp",
    ]);
    let _tcp = container.spawn(&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:read line; echo c sees $SOCAT_PEERADDR",
    ]);
    let _udp = container.spawn(&[
        "socat",
        "UDP-RECVFROM:81,fork",
        "SYSTEM:echo c sees $SOCAT_PEERADDR",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));

    // The other machine, at the host's address on its interface: the client's address
    // is kept, and the answer comes back.
    assert_eq!(
        ask(&machine, "TCP:10.88.0.1:18088,connect-timeout=3"),
        "c sees 10.88.0.2"
    );
    assert_eq!(ask_udp(&machine, "UDP:10.88.0.1:18089"), "c sees 10.88.0.2");
    // The host's loopback (the client appears as the gateway) and the uplink address
    // (DNAT, the outside's address kept) as before.
    assert_eq!(
        ask(&host, "TCP:127.0.0.1:18088,connect-timeout=3"),
        "c sees 10.229.0.1"
    );
    assert_eq!(
        ask(&outside, "TCP:10.87.0.2:18088,connect-timeout=3"),
        "c sees 10.87.0.1"
    );
    // And several times over, from the other machine, with new connections each.
    for round in 0..5 {
        assert_eq!(
            ask(&machine, "TCP:10.88.0.1:18088,connect-timeout=3"),
            "c sees 10.88.0.2",
            "round {round}"
        );
    }
    // Nothing of it went out of the uplink masqueraded.
    let stats = daemon.json(&["stats", "--json"]);
    assert_eq!(stats["uplink"]["masqueraded_flows"], 0, "{stats}");
}
