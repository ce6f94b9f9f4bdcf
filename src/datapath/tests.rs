//! End-to-end tests of the datapath thread with the real switch, on both backends.
//!
//! Ports are `socketpair(AF_UNIX, SOCK_SEQPACKET)` ends: like a TAP fd, one read or
//! write is one whole frame, and the fd is pollable and non-blocking. The datapath
//! gets one end; the test plays the container on the other.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant as StdInstant};

use etherparse::PacketBuilder;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
use tapnet_switch::{NetworkConfig, NetworkId, PortId, PortRole, SwitchConfig};

use super::{BackendChoice, Datapath, PortIo, Tuning};

const NET1: NetworkId = NetworkId(1);
const NET2: NetworkId = NetworkId(2);
const BCAST: [u8; 6] = [0xff; 6];

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// The backends every test runs on: io_uring (plain, and forced through the
/// EAGAIN-then-poll read path) and epoll.
fn backends() -> Vec<(&'static str, BackendChoice, Tuning)> {
    let mut v = vec![("epoll", BackendChoice::Epoll, Tuning::default())];
    if crate::sys::uring::Ring::new(8).is_ok() {
        v.push(("io_uring", BackendChoice::Uring, Tuning::default()));
        v.push((
            "io_uring+nowait",
            BackendChoice::Uring,
            Tuning {
                uring_rx_nowait: true,
            },
        ));
    } else {
        eprintln!("io_uring unavailable here: testing epoll only");
    }
    v
}

fn spawn(choice: BackendChoice, tuning: Tuning, config: SwitchConfig) -> Datapath {
    let dp = Datapath::spawn_tuned(choice, config, tuning, None, None).expect("spawn datapath");
    let expect = if choice == BackendChoice::Epoll {
        "epoll"
    } else {
        "io_uring"
    };
    assert_eq!(dp.backend_name(), expect);
    dp
}

/// A test port: the datapath's end is attached, the test keeps the peer.
fn attach(dp: &Datapath, port: u32, net: NetworkId) -> OwnedFd {
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    dp.add_port(PortId(port), net, PortRole::Container, PortIo::Tap(ours))
        .unwrap();
    theirs
}

fn frame(src: [u8; 6], dst: [u8; 6], tag: u16) -> Vec<u8> {
    let payload = tag.to_be_bytes();
    let builder = PacketBuilder::ethernet2(src, dst)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(4000, tag);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).unwrap();
    out
}

fn send(fd: &OwnedFd, frame: &[u8]) {
    assert_eq!(rustix::io::write(fd, frame).unwrap(), frame.len());
}

/// The next frame on `fd`, waiting up to `ms` milliseconds.
fn recv_within(fd: &OwnedFd, ms: u64) -> Option<Vec<u8>> {
    let deadline = StdInstant::now() + Duration::from_millis(ms);
    let mut buf = vec![0u8; 70_000];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(n) => return Some(buf[..n].to_vec()),
            Err(Errno::AGAIN) => {}
            Err(e) => panic!("read: {e}"),
        }
        let left = deadline.saturating_duration_since(StdInstant::now());
        if left.is_zero() {
            return None;
        }
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(left.subsec_nanos()).max(1_000_000),
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let _ = poll(&mut fds, Some(&ts));
    }
}

fn recv(fd: &OwnedFd) -> Vec<u8> {
    recv_within(fd, 2000).expect("expected a frame")
}

fn assert_silent(fd: &OwnedFd) {
    if let Some(f) = recv_within(fd, 100) {
        panic!("unexpected frame of {} bytes", f.len());
    }
}

fn drain(fd: &OwnedFd) -> usize {
    let mut n = 0;
    while recv_within(fd, 50).is_some() {
        n += 1;
    }
    n
}

fn stats_of(dp: &Datapath, port: u32) -> super::PortStats {
    dp.stats()
        .unwrap()
        .into_iter()
        .find(|s| s.port == Some(PortId(port)))
        .expect("port in stats")
}

#[test]
fn floods_broadcast_then_unicasts_learned_mac() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        let c = attach(&dp, 3, NET1);

        let hello = frame(mac(1), BCAST, 1);
        send(&a, &hello);
        assert_eq!(recv(&b), hello);
        assert_eq!(recv(&c), hello);
        assert_silent(&a);

        // B answers A: A's MAC was learned on port 1, so only A gets it.
        let reply = frame(mac(2), mac(1), 2);
        send(&b, &reply);
        assert_eq!(recv(&a), reply);
        assert_silent(&c);

        // And now B's MAC is known too.
        let to_b = frame(mac(1), mac(2), 3);
        send(&a, &to_b);
        assert_eq!(recv(&b), to_b);
        assert_silent(&c);

        let macs = dp.macs(NET1).unwrap();
        let learned: Vec<(u32, [u8; 6])> = macs.iter().map(|e| (e.port.0, e.mac.0)).collect();
        assert!(
            learned.contains(&(1, mac(1))) && learned.contains(&(2, mac(2))),
            "{learned:?}"
        );

        let sa = stats_of(&dp, 1);
        assert_eq!(
            (sa.switch.rx_packets, sa.rx_errors, sa.tx_errors),
            (2, 0, 0)
        );
        assert_eq!(sa.switch.tx_packets, 1);
        dp.shutdown().unwrap();
    }
}

#[test]
fn networks_do_not_leak_into_each_other() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        dp.add_network(NET2, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        let c = attach(&dp, 3, NET2);
        let d = attach(&dp, 4, NET2);

        let f = frame(mac(1), BCAST, 1);
        send(&a, &f);
        assert_eq!(recv(&b), f);
        // Unicast to a MAC that lives on the other network floods within net 1 only.
        let g = frame(mac(3), BCAST, 2);
        send(&c, &g);
        assert_eq!(recv(&d), g);
        let h = frame(mac(1), mac(3), 3);
        send(&a, &h);
        assert_eq!(recv(&b), h);
        assert_silent(&c);
        assert_silent(&d);
        dp.shutdown().unwrap();
    }
}

#[test]
fn drops_are_counted_by_reason() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        send(&a, &[0u8; 10]); // runt
        send(&a, &frame(BCAST, BCAST, 1)); // broadcast source
        send(&a, &frame(mac(1), BCAST, 2)); // fine
        assert_eq!(recv(&b), frame(mac(1), BCAST, 2));
        let s = stats_of(&dp, 1);
        assert_eq!(
            s.drops.iter().map(|&(_, n)| n).sum::<u64>(),
            2,
            "{:?}",
            s.drops
        );
        dp.shutdown().unwrap();
    }
}

#[test]
fn carries_jumbo_frames_whole() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::with_mtu(65520))
            .unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        let mut big = frame(mac(1), BCAST, 1);
        big.resize(65520 + 14, 0xab);
        send(&a, &big);
        assert_eq!(recv(&b), big);
        dp.shutdown().unwrap();
    }
}

#[test]
fn remove_port_while_traffic_flows() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        let c = attach(&dp, 3, NET1);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // A floods continuously; B and C are drained by the test.
            s.spawn(|| {
                let f = frame(mac(1), BCAST, 1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = rustix::io::write(&a, &f);
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            // C also sends, so its own read slots are busy when it is removed.
            s.spawn(|| {
                let f = frame(mac(3), BCAST, 3);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = rustix::io::write(&c, &f);
                    std::thread::sleep(Duration::from_micros(300));
                }
            });
            assert!(recv_within(&b, 2000).is_some());
            let b_fd = dp.remove_port(PortId(2)).unwrap();
            // The fd is ours again: after draining what was written before removal,
            // nothing more arrives on B.
            drain(&b);
            assert_silent(&b);
            drop(b_fd);
            // Removing a busy sender works too, and C's fd is handed back.
            let c_fd = dp.remove_port(PortId(3)).unwrap();
            drop(c_fd);
            // The port id can be reused at once.
            let b2 = attach(&dp, 2, NET1);
            assert!(recv_within(&b2, 2000).is_some());
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(dp.remove_port(PortId(3)).is_err(), "already removed");
        dp.shutdown().unwrap();
    }
}

#[test]
fn shutdown_closes_port_fds() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        send(&a, &frame(mac(1), BCAST, 1));
        assert!(recv_within(&b, 2000).is_some());
        dp.shutdown().unwrap();
        // The peers see end-of-file: the datapath's ends are closed.
        for peer in [&a, &b] {
            let mut buf = [0u8; 64];
            assert_eq!(rustix::io::read(peer, &mut buf), Ok(0));
        }
    }
}

#[test]
fn full_egress_queue_drops_and_counts_without_stalling() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::with_mtu(9000)).unwrap();
        let a = attach(&dp, 1, NET1);
        let stuck = attach(&dp, 2, NET1); // never read until the end
        let live = attach(&dp, 3, NET1);
        let mut f = frame(mac(1), BCAST, 1);
        f.resize(8000, 0);
        // Far more than a socket buffer holds.
        let mut delivered = 0;
        for _ in 0..200 {
            send(&a, &f);
            // Pace on the live port so A's own socket buffer never fills.
            if recv_within(&live, 2000).is_some() {
                delivered += 1;
            }
        }
        assert_eq!(delivered, 200, "the live port got every frame");
        let s = stats_of(&dp, 2);
        assert!(s.tx_errors > 0, "drops to the stuck port are counted");
        assert!(drain(&stuck) > 0);
        assert_eq!(stats_of(&dp, 3).tx_errors, 0);
        dp.shutdown().unwrap();
    }
}

#[test]
fn dead_port_counts_one_rx_error_and_stops_reading() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        drop(a); // the "container" is gone: reads see end-of-file
        std::thread::sleep(Duration::from_millis(100));
        let s = stats_of(&dp, 1);
        assert_eq!(s.rx_errors, 1, "{s:?}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(stats_of(&dp, 1).rx_errors, 1, "no retry loop");
        // Writes to the dead port fail and are counted; the datapath lives on.
        send(&b, &frame(mac(2), BCAST, 1));
        std::thread::sleep(Duration::from_millis(100));
        assert!(stats_of(&dp, 1).tx_errors >= 1);
        assert!(dp.remove_port(PortId(1)).is_ok());
        dp.shutdown().unwrap();
    }
}

#[test]
fn forgets_macs_after_ageing() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let config = SwitchConfig {
            ageing_time: Duration::from_millis(200),
            ..SwitchConfig::default()
        };
        let dp = spawn(choice, tuning, config);
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        let c = attach(&dp, 3, NET1);
        send(&b, &frame(mac(2), BCAST, 1));
        recv(&a);
        recv(&c);
        assert_eq!(dp.macs(NET1).unwrap().len(), 1);
        std::thread::sleep(Duration::from_millis(400));
        assert!(dp.macs(NET1).unwrap().is_empty());
        // Unknown again, so unicast to B floods.
        send(&a, &frame(mac(1), mac(2), 2));
        recv(&b);
        recv(&c);
        dp.shutdown().unwrap();
    }
}

#[test]
fn control_errors_are_reported() {
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        assert!(dp.add_network(NET1, NetworkConfig::default()).is_err());
        let (x, _peer) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        assert!(
            dp.add_port(PortId(1), NET2, PortRole::Container, PortIo::Packet(x))
                .is_err()
        );
        let _a = attach(&dp, 1, NET1);
        let (y, _peer2) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        assert!(
            dp.add_port(PortId(1), NET1, PortRole::Container, PortIo::Packet(y))
                .is_err()
        );
        assert!(dp.remove_network(NET1).is_err(), "network in use");
        assert!(dp.remove_port(PortId(9)).is_err());
        let fd = dp.remove_port(PortId(1)).unwrap();
        assert!(fd.as_fd().try_clone_to_owned().is_ok());
        dp.remove_network(NET1).unwrap();
        dp.shutdown().unwrap();
    }
}

#[test]
fn auto_picks_a_backend_and_drop_stops_the_thread() {
    let dp = Datapath::spawn(BackendChoice::Auto, SwitchConfig::default()).unwrap();
    assert!(["io_uring", "epoll"].contains(&dp.backend_name()));
    dp.add_network(NET1, NetworkConfig::default()).unwrap();
    let a = attach(&dp, 1, NET1);
    drop(dp);
    let mut buf = [0u8; 8];
    assert_eq!(rustix::io::read(&a, &mut buf), Ok(0));
}

/// Rough throughput of one pipeline thread (not a benchmark of record: seqpacket
/// sockets and the test's own threads share the two cores). Run with
/// `cargo test --release --bin tapnet datapath::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn throughput() {
    const N: usize = 200_000;
    for (name, choice, tuning) in backends() {
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let a = attach(&dp, 1, NET1);
        let b = attach(&dp, 2, NET1);
        send(&b, &frame(mac(2), BCAST, 0));
        recv(&a);
        let f = frame(mac(1), mac(2), 1);
        let start = StdInstant::now();
        let received = std::thread::scope(|s| {
            s.spawn(|| {
                let mut sent = 0;
                while sent < N {
                    match rustix::io::write(&a, &f) {
                        Ok(_) => sent += 1,
                        Err(Errno::AGAIN) => {
                            let mut fds = [PollFd::new(&a, PollFlags::OUT)];
                            let _ = poll(&mut fds, None);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            let (mut got, mut buf) = (0, vec![0u8; 2048]);
            let idle = Timespec {
                tv_sec: 0,
                tv_nsec: 500_000_000,
            };
            while got < N {
                match rustix::io::read(&b, &mut buf) {
                    Ok(_) => got += 1,
                    Err(Errno::AGAIN) => {
                        let mut fds = [PollFd::new(&b, PollFlags::IN)];
                        if poll(&mut fds, Some(&idle)) == Ok(0) {
                            break;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        let secs = start.elapsed().as_secs_f64();
        let s = stats_of(&dp, 2);
        eprintln!(
            "{name}: {received}/{N} frames in {secs:.2}s = {:.0} kframes/s (tx_errors {})",
            received as f64 / secs / 1000.0,
            s.tx_errors
        );
        dp.shutdown().unwrap();
    }
}

/// Real TAP devices (root only), in a network namespace the test creates: the
/// datapath gets the TAP fds; the test plays the containers with AF_PACKET sockets on
/// the TAP netdevs. A frame sent on tap0's netdev is read from tap0's fd, switched,
/// written to tap1's fd and received on tap1's netdev.
#[test]
fn real_taps_in_a_private_netns() {
    use crate::sys::{netlink::RouteSocket, packet, tap};
    use std::process::{Command, Stdio};

    if !rustix::process::geteuid().is_root() || !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipping: needs root and /dev/net/tun");
        return;
    }
    let Ok(mut holder) = Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
    else {
        eprintln!("skipping: cannot run unshare -n");
        return;
    };
    std::thread::sleep(Duration::from_millis(100));
    let ns_path = format!("/proc/{}/ns/net", holder.id());
    let result = std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).expect("open the test netns");
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        let taps: Vec<tap::Tap> = ["tdp0", "tdp1"]
            .iter()
            .map(|n| tap::Tap::open(n, Default::default()).unwrap())
            .collect();
        let mut route = RouteSocket::open().unwrap();
        let mut sockets = Vec::new();
        for t in &taps {
            let ok = Command::new("ip")
                .args(["link", "set", t.name(), "up"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip link set up");
            let index = route.existing_link_index(t.name()).unwrap();
            sockets.push(packet::open_bound(index).unwrap());
        }
        for (name, choice, tuning) in backends() {
            eprintln!("backend {name}");
            let dp = spawn(choice, tuning, SwitchConfig::default());
            dp.add_network(NET1, NetworkConfig::default()).unwrap();
            for (i, t) in taps.iter().enumerate() {
                let fd = t.as_fd().try_clone_to_owned().unwrap();
                dp.add_port(
                    PortId(u32::try_from(i).unwrap()),
                    NET1,
                    PortRole::Container,
                    PortIo::Tap(fd),
                )
                .unwrap();
            }
            let f = frame(mac(10), BCAST, 77);
            rustix::io::write(&sockets[0], &f).unwrap();
            // Skip whatever else the kernel sends on the link.
            let deadline = StdInstant::now() + Duration::from_secs(2);
            let mut seen = false;
            while !seen && StdInstant::now() < deadline {
                seen = recv_within(&sockets[1], 200).is_some_and(|g| g == f);
            }
            assert!(seen, "frame crossed the switch between two TAPs");
            for i in 0..2 {
                drop(dp.remove_port(PortId(i)).unwrap());
            }
            dp.shutdown().unwrap();
        }
    })
    .join();
    let _ = holder.kill();
    let _ = holder.wait();
    result.unwrap();
}

/// ARP, NDP and DHCP requests from a container reach every pipeline of a multi-queue
/// TAP; data stays where it lands.
#[test]
fn router_state_frames_are_told_from_data() {
    use super::pipeline::feeds_router_state;
    let eth = |ethertype: u16, rest: &[u8]| {
        let mut f = [mac(1).as_slice(), mac(2).as_slice()].concat();
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(rest);
        f
    };
    let udp4 = |dst_port: u16| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(mac(1), mac(2))
            .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
            .udp(68, dst_port)
            .write(&mut f, &[0; 8])
            .unwrap();
        f
    };
    let icmp6 = |type_u8: u8| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(mac(1), mac(2))
            .ipv6([0xfe; 16], [0xff; 16], 255)
            .icmpv6_raw(type_u8, 0, [0; 4])
            .write(&mut f, &[])
            .unwrap();
        f
    };
    let tcp4 = {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(mac(1), mac(2))
            .ipv4([10, 0, 2, 100], [10, 0, 2, 2], 64)
            .tcp(40000, 67, 1, 1000)
            .write(&mut f, b"data")
            .unwrap();
        f
    };
    assert!(feeds_router_state(&eth(0x0806, &[0; 28])), "ARP");
    assert!(feeds_router_state(&udp4(67)), "DHCP request");
    for ndp in 133..=137 {
        assert!(feeds_router_state(&icmp6(ndp)), "NDP type {ndp}");
    }
    assert!(!feeds_router_state(&udp4(53)), "DNS");
    assert!(!feeds_router_state(&icmp6(128)), "echo request");
    assert!(!feeds_router_state(&tcp4), "TCP to port 67");
    assert!(!feeds_router_state(&eth(0x0806, &[])[..12]), "truncated");
    assert!(!feeds_router_state(&eth(0x0800, &[0x45])), "truncated IPv4");
    assert!(!feeds_router_state(&[]), "empty");
}

/// A guarded port's forged frames are dropped and counted in its stats; its honest
/// ones cross. A second port may not be guarded with a pinned MAC: that add fails and
/// leaves no port behind.
#[test]
fn guarded_ports_drop_forged_sources() {
    use tapnet_switch::{DropReason, MacAddr, PortGuard};
    for (name, choice, tuning) in backends() {
        eprintln!("backend {name}");
        let dp = spawn(choice, tuning, SwitchConfig::default());
        dp.add_network(NET1, NetworkConfig::default()).unwrap();
        let (ours, guarded) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let guard = PortGuard::new(MacAddr(mac(1))).with_ipv4([10, 0, 0, 1].into());
        dp.add_guarded_port(
            PortId(1),
            NET1,
            PortRole::Container,
            PortIo::Tap(ours),
            Some(guard.clone()),
        )
        .unwrap();
        let b = attach(&dp, 2, NET1);
        // `frame` sends from 10.0.0.1: honest from mac(1), a stolen MAC otherwise.
        send(&guarded, &frame(mac(1), BCAST, 1));
        assert_eq!(recv(&b), frame(mac(1), BCAST, 1));
        send(&guarded, &frame(mac(9), BCAST, 2));
        let forged_ip = PacketBuilder::ethernet2(mac(1), BCAST)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .udp(4000, 3);
        let mut forged = Vec::new();
        forged_ip.write(&mut forged, &[0; 2]).unwrap();
        send(&guarded, &forged);
        // The unguarded port cannot send from the pinned MAC either.
        send(&b, &frame(mac(1), BCAST, 4));
        assert_silent(&b);
        assert_silent(&guarded);
        let drops = |port| {
            let stats = stats_of(&dp, port);
            let get = |reason| {
                stats
                    .drops
                    .iter()
                    .find(|&&(r, _)| r == reason)
                    .map_or(0, |&(_, n)| n)
            };
            (get(DropReason::SpoofedMac), get(DropReason::SpoofedIp))
        };
        assert_eq!(drops(1), (1, 1));
        assert_eq!(drops(2), (1, 0));
        let (ours, _theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let err = dp
            .add_guarded_port(
                PortId(3),
                NET1,
                PortRole::Container,
                PortIo::Tap(ours),
                Some(guard),
            )
            .unwrap_err();
        assert!(err.to_string().contains("already pinned"), "{err:#}");
        assert!(
            dp.stats()
                .unwrap()
                .iter()
                .all(|s| s.port != Some(PortId(3)))
        );
        dp.shutdown().unwrap();
    }
}

/// A network's gateway MAC is pinned to the gateway: a container cannot send from it,
/// also after a `network rm` that failed because containers were still attached.
#[test]
fn gateway_macs_stay_pinned() {
    use tapnet_switch::router::{RouterNetwork, RouterV4};
    use tapnet_switch::{DropReason, MacAddr};
    let gateway_mac = MacAddr(mac(0x10));
    let dp = spawn(
        BackendChoice::Epoll,
        Tuning::default(),
        SwitchConfig::default(),
    );
    let gateway = super::Gateway {
        port: PortId(1000),
        masquerade: true,
        network: RouterNetwork {
            gateway_mac,
            v4: Some(RouterV4 {
                network: [10, 0, 0, 0].into(),
                prefix_len: 24,
                gateway: [10, 0, 0, 254].into(),
                extra: Vec::new(),
                dhcp: None,
            }),
            v6: None,
            mtu: 1500,
            egress: false,
            own_addresses_to_uplink: false,
        },
    };
    dp.add_routed_network(NET1, NetworkConfig::default(), gateway)
        .unwrap();
    let a = attach(&dp, 1, NET1);
    let spoofed = |dp: &Datapath| {
        stats_of(dp, 1)
            .drops
            .iter()
            .find(|&&(r, _)| r == DropReason::SpoofedMac)
            .map_or(0, |&(_, n)| n)
    };
    send(&a, &frame(gateway_mac.0, BCAST, 1));
    assert!(
        wait_for_stats(|| spoofed(&dp) == 1),
        "the gateway's MAC was not refused"
    );
    assert!(dp.remove_network(NET1).is_err(), "a port is still attached");
    send(&a, &frame(gateway_mac.0, BCAST, 2));
    assert!(
        wait_for_stats(|| spoofed(&dp) == 2),
        "the pin went with the failed network rm"
    );
    let macs = dp.macs(NET1).unwrap();
    assert!(
        macs.iter()
            .any(|e| e.mac == gateway_mac && e.port == PortId(1000) && e.pinned),
        "{macs:?}"
    );
    dp.shutdown().unwrap();
}

/// Polls the datapath's counters (a frame is handled a little after it is written).
fn wait_for_stats(mut done: impl FnMut() -> bool) -> bool {
    let deadline = StdInstant::now() + Duration::from_secs(2);
    while StdInstant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
