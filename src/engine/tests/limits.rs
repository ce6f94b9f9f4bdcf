//! The bound on host-socket flows, with a real engine behind a TUN: a guest that
//! floods new UDP flows evicts its own unreplied flows, and its TCP connects, its
//! replied flows and the other containers' flows keep working.

use super::*;

/// Sends one datagram from `guest` to each port of `ports` on 10.0.2.2 (the host's
/// loopback, where nothing listens on them: no flow is ever answered).
fn flood_udp(rig: &Rig, from: IpAddr, ports: std::ops::Range<u16>) {
    rig.guest.run(move || {
        let s = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        for port in ports {
            // ECONNREFUSED from an earlier datagram's ICMP is no reason to stop.
            let _ = s.send_to(b"x", SocketAddr::new(IpAddr::V4(GW), port));
            // Paced, so that the TUN's queue (and the test's bridge) lose none.
            if port % 64 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    // Let the engine take the datagrams from its queue.
    std::thread::sleep(Duration::from_millis(300));
}

/// A UDP echo server on the host's loopback: answers each datagram, and reports the
/// source address of each (the engine's host socket for that flow).
fn udp_echo(rig: &Rig) -> (u16, Arc<std::sync::Mutex<Vec<SocketAddr>>>) {
    let s = rig
        .host
        .run(|| UdpSocket::bind("127.0.0.1:0"))
        .expect("bind echo");
    let port = s.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            log.lock().unwrap().push(from);
            let _ = s.send_to(&buf[..n], from);
        }
    });
    (port, seen)
}

/// One round trip on the guest's UDP socket `s` to 10.0.2.2:`port`.
fn echo_once(s: &UdpSocket, port: u16) -> bool {
    let _ = s.send_to(b"ping", SocketAddr::new(IpAddr::V4(GW), port));
    let mut buf = [0u8; 16];
    matches!(s.recv_from(&mut buf), Ok((4, _)))
}

fn guest_udp(rig: &Rig, from: IpAddr) -> UdpSocket {
    let s = rig
        .guest
        .run(move || UdpSocket::bind(SocketAddr::new(from, 0)))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

#[test]
fn a_udp_flood_evicts_the_flooders_unreplied_flows_and_connects_keep_working() {
    if skip_unless_root("a_udp_flood_evicts_the_flooders_unreplied_flows_and_connects_keep_working")
    {
        return;
    }
    let limits = FlowLimits {
        total: 32,
        per_container: 32,
    };
    let rig = Rig::build_with(1500, false, None, limits);
    let (echo_port, seen) = udp_echo(&rig);
    // A replied flow from before the flood.
    let kept = guest_udp(&rig, IpAddr::V4(GUEST));
    assert!(echo_once(&kept, echo_port), "echo before the flood");
    // 3000 flows, a hundred times the bound: each new one evicts an unreplied one.
    flood_udp(&rig, IpAddr::V4(GUEST), 20_000..23_000);
    let stats = rig.engine().stats();
    // 30 of the main budget, 2 for DNS queries.
    assert!(stats.host_sockets <= 30, "{stats:?}");
    assert_eq!(stats.host_socket_limit, 32);
    assert!(stats.evicted_unreplied >= 2900, "{stats:?}");
    assert_eq!(stats.evicted_lru, 0, "{stats:?}");
    assert_eq!(stats.drop_flow_limit, 0, "{stats:?}");
    // The replied flow survived on its host socket: same source as before.
    assert!(echo_once(&kept, echo_port), "echo after the flood");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "the replied flow kept its host socket");
    // New TCP connections work at once.
    tcp_round_trip(
        &rig,
        "127.0.0.1:0".parse().unwrap(),
        SocketAddr::new(IpAddr::V4(GW), 0),
        4096,
    );
}

#[test]
fn established_connections_are_never_evicted_and_new_flows_are_refused_past_them() {
    if skip_unless_root(
        "established_connections_are_never_evicted_and_new_flows_are_refused_past_them",
    ) {
        return;
    }
    // 9 = 8 for TCP connections (and other flows) + 1 for DNS queries.
    let limits = FlowLimits {
        total: 9,
        per_container: 9,
    };
    let rig = Rig::build_with(1500, false, None, limits);
    let listener = rig.host.run(|| TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = SocketAddr::new(IpAddr::V4(GW), port);
    // An echo server for every connection.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let conns: Vec<TcpStream> = rig.guest.run(move || {
        (0..8)
            .map(|_| {
                let s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            })
            .collect()
    });
    // A flood of new flows cannot push the connections out; it is refused.
    flood_udp(&rig, IpAddr::V4(GUEST), 30_000..30_100);
    let refused = rig
        .guest
        .run(move || TcpStream::connect_timeout(&target, Duration::from_secs(5)));
    assert!(refused.is_err(), "a ninth flow got a host socket");
    let stats = rig.engine().stats();
    assert!(stats.drop_flow_limit >= 101, "{stats:?}");
    assert_eq!(stats.evicted_unreplied + stats.evicted_lru, 0, "{stats:?}");
    for mut c in conns {
        c.write_all(b"still").unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"still");
    }
    // Closed connections give their room back.
    std::thread::sleep(Duration::from_millis(500));
    tcp_round_trip(&rig, "127.0.0.1:0".parse().unwrap(), target, 1024);
}

#[test]
fn a_container_at_its_bound_evicts_only_its_own_flows() {
    if skip_unless_root("a_container_at_its_bound_evicts_only_its_own_flows") {
        return;
    }
    let limits = FlowLimits {
        total: 40,
        per_container: 16,
    };
    let rig = Rig::build_with(1500, false, None, limits);
    let victim = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 101));
    rig.guest
        .sh(&["ip", "addr", "add", "10.0.2.101/24", "dev", "tun0"]);
    rig.engine()
        .set_owner(NET, vec![IpAddr::V4(GUEST)], Some(1));
    rig.engine().set_owner(NET, vec![victim], Some(2));
    let (echo_port, seen) = udp_echo(&rig);
    // The victim's unreplied flows: 10 of them, fresh, nobody answers them.
    flood_udp(&rig, victim, 40_000..40_010);
    let replied = guest_udp(&rig, victim);
    assert!(echo_once(&replied, echo_port));
    flood_udp(&rig, IpAddr::V4(GUEST), 20_000..22_000);
    let stats = rig.engine().stats();
    assert!(stats.evicted_unreplied >= 1980, "{stats:?}");
    // 40 = 38 + 2 for DNS; a container may hold 16 = 15 + 1 of the main budget's:
    // 15 of the flooder's, 11 of the victim's.
    assert_eq!(stats.host_sockets, 15 + 11, "{stats:?}");
    assert!(echo_once(&replied, echo_port));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], seen[1], "the victim's flow kept its host socket");
    // Forgetting an owner charges its addresses to the network again.
    rig.engine().set_owner(NET, vec![victim], None);
}
