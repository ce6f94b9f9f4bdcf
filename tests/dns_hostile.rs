//! A hostile container cannot stall the embedded DNS for the others: TCP connections
//! to 127.0.0.11:53 that send nothing (or trickle) are served on bounded workers with
//! a deadline, and a flood of forwarded queries is held to the container's own bound
//! of waiting queries.

mod common;

use common::{ChildGuard, Daemon, Netns, require_root};
use std::time::{Duration, Instant};

#[test]
fn stalled_tcp_clients_and_a_query_flood_do_not_stall_the_embedded_dns() {
    if !require_root("stalled_tcp_clients_and_a_query_flood_do_not_stall_the_embedded_dns") {
        return;
    }
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let _resolver = common::Resolver::start(&host);
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&["network", "create", "names", "--subnet", "10.241.0.0/24"]);
    let (victim, hostile) = (Netns::new(), Netns::new());
    for (ns, name) in [(&victim, "victim"), (&hostile, "hostile")] {
        daemon.cli_ok(&["connect", "names", "--netns", &ns.path(), "--name", name]);
    }
    let dig = |args: &str| {
        let out = victim.exec(&[
            "sh",
            "-c",
            &format!("dig +short +tries=1 +time=2 @127.0.0.11 {args}"),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(dig("hostile"), "10.241.0.3");

    // 20 connections that send nothing, one that trickles a byte a second, held open
    // by socat processes in the hostile container.
    let mut stalled: Vec<ChildGuard> = (0..20)
        .map(|_| hostile.spawn(&["socat", "-u", "EXEC:sleep 60", "TCP:127.0.0.11:53"]))
        .collect();
    stalled.push(hostile.spawn(&[
        "sh",
        "-c",
        "(while sleep 1; do printf x; done) | socat -u - TCP:127.0.0.11:53",
    ]));
    // And a flood of queries for names only the host's resolver could answer.
    let flood = hostile.spawn(&[
        "python3",
        "-c",
        "
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + 8
i = 0
while time.time() < end:
    q = struct.pack('>HHHHHH', i & 0xffff, 0x0100, 1, 0, 0, 0)
    q += bytes([8]) + b'n%07d' % (i % 10000000) + bytes([7]) + b'invalid' + bytes([0]) + struct.pack('>HH', 1, 1)
    s.sendto(q, ('127.0.0.11', 53))
    i += 1
    if i % 100 == 0:
        time.sleep(0.005)
",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    for round in 0..5 {
        let start = Instant::now();
        assert_eq!(dig("hostile"), "10.241.0.3", "UDP, round {round}");
        assert_eq!(dig("+tcp hostile"), "10.241.0.3", "TCP, round {round}");
        assert_eq!(
            dig("printer.tapnet.test"),
            "192.0.2.7",
            "forwarded, round {round}"
        );
        assert_eq!(
            dig("+tcp printer.tapnet.test"),
            "192.0.2.7",
            "forwarded over TCP, round {round}"
        );
        // Liveness, not speed: each answer came on the first try (dig +tries=1).
        assert!(start.elapsed() < Duration::from_secs(8), "round {round}");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(flood);
    drop(stalled);
}
