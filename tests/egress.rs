//! The daemon's networks have a gateway (the router answers ARP and ping for it) and
//! leave through host sockets by default; `tapnet conntrack` lists the flows.
//!
//! The daemon runs in a host namespace of the test's own, where the servers it
//! reaches listen on loopback.

mod common;

use common::{Daemon, Netns, require_root, wait_for};
use std::time::Duration;

#[test]
fn daemon_network_reaches_host_loopback_and_lists_conntrack() {
    if !require_root("daemon_network_reaches_host_loopback_and_lists_conntrack") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let _server = host.spawn(&[
        "socat",
        "TCP-LISTEN:7100,bind=127.0.0.1,reuseaddr,fork",
        "SYSTEM:sleep 4; echo done",
    ]);
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.230.0.0/24"]);
    let container = Netns::new();
    daemon.cli_ok(&[
        "connect",
        "n",
        "--netns",
        &container.path(),
        "--name",
        "web",
    ]);

    assert!(
        container.ping("10.230.0.1"),
        "the gateway does not answer ping"
    );
    // The client keeps its side open (sleep | socat), so the flow stays established.
    let client = container.spawn(&["sh", "-c", "sleep 6 | socat -t 10 - TCP:10.230.0.1:7100"]);
    let mut listing = String::new();
    let shown = wait_for(Duration::from_secs(5), || {
        listing = daemon.cli_ok(&["conntrack"]);
        listing.contains("ESTABLISHED") && listing.contains("dport=7100")
    });
    assert!(shown, "no established flow listed:\n{listing}");
    let line = listing.lines().find(|l| l.contains("dport=7100")).unwrap();
    assert!(line.starts_with("tcp"), "{line}");
    assert!(line.contains("src=10.230.0.2 dst=10.230.0.1"), "{line}");
    assert!(line.contains("[ASSURED]"), "{line}");
    let json = daemon.json(&["conntrack", "--json"]);
    let entries = json.as_array().expect("a JSON array");
    assert!(!entries.is_empty(), "{json}");
    drop(client);
}

/// A UDP flow is listed while it lives and forgotten after its (settable) timeout.
#[test]
fn udp_flows_expire_after_their_timeout() {
    if !require_root("udp_flows_expire_after_their_timeout") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let _echo = host.spawn(&[
        "socat",
        "UDP-LISTEN:7200,bind=127.0.0.1,reuseaddr,fork",
        "PIPE",
    ]);
    let wrapper = ["ip", "netns", "exec", host.name.as_str()];
    let daemon = Daemon::start_full(
        "auto",
        None,
        &wrapper,
        &[
            "--conntrack-timeout",
            "udp=5",
            "--conntrack-timeout",
            "udp_stream=5",
        ],
    );
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.232.0.0/24"]);
    let container = Netns::new();
    daemon.cli_ok(&["connect", "n", "--netns", &container.path()]);
    let echoed = container.exec(&["sh", "-c", "echo ping | socat -t 1 - UDP:10.232.0.1:7200"]);
    assert_eq!(String::from_utf8_lossy(&echoed.stdout).trim(), "ping");
    let listing = daemon.cli_ok(&["conntrack"]);
    let line = listing
        .lines()
        .find(|l| l.contains("dport=7200"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.starts_with("udp"), "{line}");
    assert!(
        wait_for(Duration::from_secs(15), || !daemon
            .cli_ok(&["conntrack"])
            .contains("dport=7200")),
        "the flow did not expire"
    );
    // A bad timeout name is refused before anything starts.
    let out = std::process::Command::new(common::tapnet_bin())
        .args(["daemon", "--conntrack-timeout", "tcp_forever=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown timeout"));
}

/// An `--internal` network: its containers reach each other and the gateway, but
/// nothing leaves it (neither the host's services through the gateway nor any peer).
#[test]
fn internal_network_keeps_everything_in() {
    if !require_root("internal_network_keeps_everything_in") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let peer = Netns::new();
    common::link_namespaces(&host, "10.197.0.1", &peer, "10.197.0.2");
    let _server = host.spawn(&[
        "socat",
        "TCP-LISTEN:7300,bind=127.0.0.1,reuseaddr,fork",
        "SYSTEM:echo leaked",
    ]);
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&[
        "network",
        "create",
        "inner",
        "--subnet",
        "10.233.0.0/24",
        "--internal",
    ]);
    daemon.cli_ok(&["network", "create", "outer", "--subnet", "10.234.0.0/24"]);
    let (a, b, c) = (Netns::new(), Netns::new(), Netns::new());
    daemon.cli_ok(&[
        "connect",
        "inner",
        "--netns",
        &a.path(),
        "--ip",
        "10.233.0.2",
    ]);
    daemon.cli_ok(&[
        "connect",
        "inner",
        "--netns",
        &b.path(),
        "--ip",
        "10.233.0.3",
    ]);
    daemon.cli_ok(&[
        "connect",
        "outer",
        "--netns",
        &c.path(),
        "--ip",
        "10.234.0.2",
    ]);
    assert_eq!(
        daemon.json(&["network", "inspect", "inner"])["options"]["internal"],
        true
    );

    assert!(
        a.ping("10.233.0.3"),
        "containers of an internal network must reach each other"
    );
    assert!(
        a.ping("10.233.0.1"),
        "the gateway of an internal network answers ping"
    );
    let host_service = a.exec(&[
        "sh",
        "-c",
        "echo q | socat -t 2 - TCP:10.233.0.1:7300,connect-timeout=3",
    ]);
    assert!(
        !String::from_utf8_lossy(&host_service.stdout).contains("leaked"),
        "reached the host from an internal network"
    );
    let out = a.exec(&["ping", "-c", "2", "-W", "1", "10.197.0.2"]);
    assert!(
        !out.status.success(),
        "reached a peer from an internal network"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Packet filtered"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The same daemon's ordinary network does get out.
    assert!(c.ping("10.234.0.1"));
    let leaked = c.exec(&["sh", "-c", "echo q | socat -t 2 - TCP:10.234.0.1:7300"]);
    assert_eq!(String::from_utf8_lossy(&leaked.stdout).trim(), "leaked");
}

/// Published ports of a daemon network: reachable from the host's loopback and from a
/// peer through the host's address, with the peer's address kept; exclusive; withdrawn
/// by `unpublish` and by `disconnect`.
#[test]
fn published_ports_of_a_daemon_network() {
    if !require_root("published_ports_of_a_daemon_network") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let peer = Netns::new();
    common::link_namespaces(&host, "10.196.0.1", &peer, "10.196.0.2");
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&["network", "create", "web", "--subnet", "10.235.0.0/24"]);
    daemon.cli_ok(&[
        "network",
        "create",
        "inner",
        "--subnet",
        "10.236.0.0/24",
        "--internal",
    ]);
    let (a, b, c) = (Netns::new(), Netns::new(), Netns::new());
    daemon.cli_ok(&[
        "connect",
        "web",
        "--netns",
        &a.path(),
        "--name",
        "a",
        "-p",
        "18400:80",
        "-p",
        "127.0.0.1:18401:80",
    ]);
    daemon.cli_ok(&["connect", "web", "--netns", &b.path(), "--name", "b"]);
    daemon.cli_ok(&["connect", "inner", "--netns", &c.path(), "--name", "c"]);
    let _server = a.spawn(&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:echo $SOCAT_PEERADDR",
    ]);

    let ask = |from: &Netns, target: &str| {
        let mut answer = String::new();
        wait_for(Duration::from_secs(10), || {
            let out = from.exec(&[
                "sh",
                "-c",
                &format!("echo q | socat -t 2 - TCP:{target},connect-timeout=2"),
            ]);
            answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            !answer.is_empty()
        });
        answer
    };
    // From the host's loopback: the container sees the gateway; from a peer: the peer.
    assert_eq!(ask(&host, "127.0.0.1:18401"), "10.235.0.1");
    assert_eq!(ask(&peer, "10.196.0.1:18400"), "10.196.0.2");
    // Hairpin: another container of the network reaches the published port.
    assert_eq!(ask(&b, "10.235.0.1:18400"), "10.235.0.1");

    let listing = daemon.json(&["publish", "ls", "--json"]);
    assert_eq!(listing.as_array().unwrap().len(), 2, "{listing}");
    let err = daemon.cli_err(&["publish", "web", "b", "-p", "18400:8080"]);
    assert!(
        err.contains("already published by container \"a\""),
        "{err}"
    );
    let err = daemon.cli_err(&["publish", "inner", "c", "-p", "18500:80"]);
    assert!(err.contains("internal"), "{err}");
    // A failed connect --publish changes nothing.
    let d = Netns::new();
    let err = daemon.cli_err(&["connect", "web", "--netns", &d.path(), "-p", "18400:80"]);
    assert!(err.contains("already published"), "{err}");
    assert!(!d.has_link("eth0"));

    daemon.cli_ok(&["unpublish", "web", "a", "-p", "127.0.0.1:18401:80"]);
    let refused = host.exec(&[
        "sh",
        "-c",
        "echo q | socat -t 1 - TCP:127.0.0.1:18401,connect-timeout=1",
    ]);
    assert!(
        !refused.status.success(),
        "an unpublished port still answers"
    );
    daemon.cli_ok(&["disconnect", "web", "a"]);
    assert_eq!(
        daemon
            .json(&["publish", "ls", "--json"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let refused = host.exec(&[
        "sh",
        "-c",
        "echo q | socat -t 1 - TCP:127.0.0.1:18400,connect-timeout=1",
    ]);
    assert!(
        !refused.status.success(),
        "a disconnected container's port still answers"
    );
}

/// `--dhcp`: a DHCP client in a connected container gets the address tapnet gave it;
/// a client tapnet does not know gets one from the upper half of the subnet.
#[test]
fn dhcp_network_leases_known_and_unknown_clients() {
    if !require_root("dhcp_network_leases_known_and_unknown_clients") {
        return;
    }
    let daemon = Daemon::start("auto");
    daemon.cli_ok(&[
        "network",
        "create",
        "d",
        "--subnet",
        "10.237.0.0/24",
        "--dhcp",
    ]);
    assert_eq!(
        daemon.json(&["network", "inspect", "d"])["options"]["dhcp"],
        true
    );
    let (known, stranger) = (Netns::new(), Netns::new());
    daemon.cli_ok(&["connect", "d", "--netns", &known.path()]);
    // A port that carries other MACs than its own (a VM's) needs --allow-spoofing.
    daemon.cli_ok(&[
        "connect",
        "d",
        "--netns",
        &stranger.path(),
        "--allow-spoofing",
    ]);
    let lease = |ns: &Netns| {
        let out = ns.exec(&[
            "sh",
            "-c",
            "ip addr flush dev eth0 && busybox udhcpc -i eth0 -n -q -t 5 -T 1 -s /bin/true 2>&1",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let got = lease(&known);
    assert!(got.contains("lease of 10.237.0.2 obtained"), "{got}");
    // The stranger changes its MAC: tapnet does not know it, the pool serves it.
    stranger.exec_ok(&["ip", "link", "set", "eth0", "address", "02:00:00:00:00:99"]);
    let got = lease(&stranger);
    assert!(got.contains("lease of 10.237.0.128 obtained"), "{got}");
}

/// `--ipv6 --subnet6`: containers get an IPv6 address next to their IPv4 one, reach
/// each other and the gateway over IPv6, and the host's ::1 through the gateway.
#[test]
fn ipv6_daemon_network() {
    if !require_root("ipv6_daemon_network") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    host.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=0"]);
    let _server = host.spawn(&[
        "socat",
        "TCP6-LISTEN:7500,bind=[::1],reuseaddr,fork",
        "SYSTEM:read line; echo six",
    ]);
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&[
        "network",
        "create",
        "six",
        "--subnet",
        "10.238.0.0/24",
        "--ipv6",
        "--subnet6",
        "fd00:238::/64",
    ]);
    let (a, b) = (Netns::new(), Netns::new());
    for ns in [&a, &b] {
        // The harness turns IPv6 off in its namespaces; this test wants it.
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"]);
    }
    let json = daemon.json(&["connect", "six", "--netns", &a.path(), "--json"]);
    assert_eq!(json["ip6"], "fd00:238::2/64", "{json}");
    daemon.cli_ok(&["connect", "six", "--netns", &b.path(), "--name", "bee"]);
    let inspect = daemon.json(&["network", "inspect", "six"]);
    assert_eq!(inspect["gateway6"], "fd00:238::1", "{inspect}");
    let ping6 = |ns: &Netns, ip: &str| {
        ns.exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", "-q", ip])
            .status
            .success()
    };
    assert!(ping6(&a, "fd00:238::3"), "container to container over IPv6");
    assert!(ping6(&a, "fd00:238::1"), "container to the IPv6 gateway");
    let out = a.exec(&["sh", "-c", "echo q | socat -t 2 - TCP6:[fd00:238::1]:7500"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "six");
    // The embedded DNS answers at the IPv6 gateway address too.
    let out = a.exec(&[
        "dig",
        "+short",
        "+tries=2",
        "+time=2",
        "@fd00:238::1",
        "AAAA",
        "bee",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fd00:238::3");
}

/// Names and aliases resolve at 127.0.0.11 inside containers and at their network's
/// gateway address, only among containers that share a network; other names go to the
/// host's resolver; names go away with the container's connection.
#[test]
fn embedded_dns_at_127_0_0_11_and_the_gateway() {
    if !require_root("embedded_dns_at_127_0_0_11_and_the_gateway") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let _resolver = common::Resolver::start(&host);
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&["network", "create", "front", "--subnet", "10.239.0.0/24"]);
    daemon.cli_ok(&["network", "create", "back", "--subnet", "10.240.0.0/24"]);
    let (web, client, lonely) = (Netns::new(), Netns::new(), Netns::new());
    daemon.cli_ok(&[
        "connect",
        "front",
        "--netns",
        &web.path(),
        "--name",
        "web",
        "--alias",
        "www",
        "--ip",
        "10.239.0.5",
    ]);
    daemon.cli_ok(&[
        "connect",
        "back",
        "--netns",
        &web.path(),
        "--name",
        "web",
        "--ip",
        "10.240.0.5",
    ]);
    daemon.cli_ok(&[
        "connect",
        "front",
        "--netns",
        &client.path(),
        "--name",
        "client",
    ]);
    daemon.cli_ok(&[
        "connect",
        "back",
        "--netns",
        &lonely.path(),
        "--name",
        "lonely",
    ]);
    let dig_at = |ns: &Netns, server: &str, args: &str| {
        let out = ns.exec(&[
            "sh",
            "-c",
            &format!("dig +short +tries=2 +time=2 @{server} {args}"),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let dig = |ns: &Netns, args: &str| dig_at(ns, "127.0.0.11", args);
    // On the shared network, with the address on that network.
    assert_eq!(dig(&client, "web"), "10.239.0.5");
    assert_eq!(dig(&client, "www"), "10.239.0.5");
    assert_eq!(dig(&client, "+tcp WEB."), "10.239.0.5");
    assert_eq!(dig(&lonely, "web"), "10.240.0.5");
    // An alias of another network, and a container on no shared network: not ours.
    assert_ne!(dig(&lonely, "www"), "10.239.0.5");
    assert_ne!(dig(&lonely, "client"), dig(&client, "client"));
    // Other names go to the host's resolver.
    assert_eq!(dig(&client, "printer.tapnet.test"), "192.0.2.7");
    // The same at the gateway addresses (front 10.239.0.1, back 10.240.0.1).
    assert_eq!(dig_at(&client, "10.239.0.1", "web"), "10.239.0.5");
    assert_eq!(dig_at(&client, "10.239.0.1", "WWW."), "10.239.0.5");
    assert_eq!(dig_at(&client, "10.239.0.1", "+tcp www"), "10.239.0.5");
    assert_eq!(dig_at(&lonely, "10.240.0.1", "web"), "10.240.0.5");
    assert_ne!(dig_at(&lonely, "10.240.0.1", "www"), "10.239.0.5");
    assert_ne!(dig_at(&lonely, "10.240.0.1", "client"), "10.239.0.2");
    // The asker's scope is every network it is on, whichever gateway it asks.
    assert_eq!(dig(&web, "client"), "10.239.0.2");
    assert_eq!(dig_at(&web, "10.240.0.1", "client"), "10.239.0.2");
    assert_eq!(
        dig_at(&client, "10.239.0.1", "printer.tapnet.test"),
        "192.0.2.7"
    );
    assert_eq!(
        dig_at(&lonely, "10.240.0.1", "+tcp printer.tapnet.test"),
        "192.0.2.7"
    );
    // getent, through a resolv.conf that points at 127.0.0.11, as Docker writes it.
    let dir = common::TempDir::new();
    let resolv = dir.0.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.11\n").unwrap();
    let script = format!(
        "mount --bind {} /etc/resolv.conf && getent hosts www",
        resolv.display()
    );
    let getent = client.exec(&["unshare", "-m", "sh", "-c", &script]);
    assert!(
        String::from_utf8_lossy(&getent.stdout).starts_with("10.239.0.5"),
        "{}",
        String::from_utf8_lossy(&getent.stdout)
    );
    daemon.cli_ok(&["disconnect", "front", "web"]);
    assert_ne!(
        dig(&client, "web"),
        "10.239.0.5",
        "a name outlived its container's connection"
    );
    assert_ne!(
        dig_at(&client, "10.239.0.1", "web"),
        "10.239.0.5",
        "a name outlived its container's connection at the gateway"
    );
    assert_ne!(dig_at(&client, "10.239.0.1", "www"), "10.239.0.5");
    // Still connected to back.
    assert_eq!(dig_at(&lonely, "10.240.0.1", "web"), "10.240.0.5");
}

/// `--host-binding-ip`: publications that name no host address listen there only.
#[test]
fn host_binding_ip_is_the_default_publish_address() {
    if !require_root("host_binding_ip_is_the_default_publish_address") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let peer = Netns::new();
    common::link_namespaces(&host, "10.195.0.1", &peer, "10.195.0.2");
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&[
        "network",
        "create",
        "loop",
        "--subnet",
        "10.241.0.0/24",
        "--host-binding-ip",
        "127.0.0.1",
    ]);
    assert_eq!(
        daemon.json(&["network", "inspect", "loop"])["options"]["host_binding_ip"],
        "127.0.0.1"
    );
    let a = Netns::new();
    daemon.cli_ok(&[
        "connect",
        "loop",
        "--netns",
        &a.path(),
        "--name",
        "a",
        "-p",
        "18700:80",
    ]);
    let _server = a.spawn(&["socat", "TCP-LISTEN:80,reuseaddr,fork", "SYSTEM:echo hi"]);
    let listing = daemon.json(&["publish", "ls", "--json"]);
    assert_eq!(listing[0]["publish"], "127.0.0.1:18700:80/tcp", "{listing}");
    let answered = wait_for(Duration::from_secs(10), || {
        let out = host.exec(&["sh", "-c", "echo q | socat -t 2 - TCP:127.0.0.1:18700"]);
        String::from_utf8_lossy(&out.stdout).trim() == "hi"
    });
    assert!(
        answered,
        "the published port does not answer on the binding address"
    );
    let other = peer.exec(&[
        "sh",
        "-c",
        "echo q | socat -t 1 - TCP:10.195.0.1:18700,connect-timeout=1",
    ]);
    assert!(
        !other.status.success(),
        "a port bound to 127.0.0.1 answered on another address"
    );
}
