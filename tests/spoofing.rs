//! Hostile containers: a container of a daemon network forges source addresses, ARP
//! and NDP and other containers' MACs from an AF_PACKET socket inside its namespace;
//! its neighbours, the gateway and the host must not notice, and `tapnet stats` counts
//! every forged frame on its port. `--allow-spoofing` lifts the address rules for one
//! port (not the pinned MACs), and the rootless stack applies the same rules to its
//! one container (its own and its DHCP-leased addresses).
//!
//! Everything stays in namespaces the tests create: the daemon runs in a "host"
//! namespace of its own, whose loopback stands for the host's; floods are bounded
//! (a few thousand frames at most).

mod common;

use common::{ChildGuard, Daemon, Netns, TempDir, require_root, skipped, tapnet_bin, wait_for};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Sends frames from an AF_PACKET socket on an interface:
/// `IFNAME HEX[,HEX...] COUNT GAP_SECONDS`.
const SEND_PY: &str = "
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
frames = [bytes.fromhex(h) for h in sys.argv[2].split(',')]
for _ in range(int(sys.argv[3])):
    for f in frames:
        s.send(f)
    if float(sys.argv[4]) > 0:
        time.sleep(float(sys.argv[4]))
";

/// The system's python3 (readable by every user, unlike a per-user install), or
/// `None` (the test says loudly that it is skipped).
fn python(test: &str) -> Option<&'static str> {
    for path in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if std::path::Path::new(path).exists() {
            return Some(path);
        }
    }
    skipped(&format!("{test}: no python3 for the AF_PACKET sender"));
    None
}

fn mac(text: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (byte, part) in out.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ones_complement(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A UDP/IPv4 frame with valid checksums.
fn udp4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&u16::try_from(20 + udp_len).unwrap().to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let checksum = ones_complement(&ip, 0);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let checksum = ones_complement(&pseudo, 0);
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    ip.extend_from_slice(&udp);
    ethernet(dst_mac, src_mac, 0x0800, &ip)
}

/// A gratuitous ARP (request or reply) from `sha` claiming `claimed`.
fn gratuitous_arp(op: u16, sha: [u8; 6], claimed: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4];
    arp.extend_from_slice(&op.to_be_bytes());
    arp.extend_from_slice(&sha);
    arp.extend_from_slice(&claimed.octets());
    arp.extend_from_slice(&[0xff; 6]);
    arp.extend_from_slice(&claimed.octets());
    ethernet([0xff; 6], sha, 0x0806, &arp)
}

/// An ICMPv6 frame (hop limit 255, valid checksum) to all-nodes.
fn icmpv6_to_all_nodes(src_mac: [u8; 6], src: Ipv6Addr, message: &[u8]) -> Vec<u8> {
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut message = message.to_vec();
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&message);
    let checksum = ones_complement(&pseudo, 0);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&u16::try_from(message.len()).unwrap().to_be_bytes());
    ip.extend_from_slice(&[58, 255]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&message);
    ethernet([0x33, 0x33, 0, 0, 0, 1], src_mac, 0x86dd, &ip)
}

/// An unsolicited neighbour advertisement (override) for `target` at `lladdr`.
fn neighbour_advertisement(target: Ipv6Addr, lladdr: [u8; 6]) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&lladdr);
    m
}

/// A router advertisement: default router for 1800 s, source link-layer `lladdr`.
fn router_advertisement(lladdr: [u8; 6]) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&lladdr);
    m
}

/// The EUI-64 link-local address of a MAC (RFC 4291 appendix A).
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    let iid = u64::from_be_bytes([m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from((0xfe80u128 << 112) | u128::from(iid))
}

/// Sends `frames` `count` times from `ifname` in `ns`, `gap` seconds apart.
fn send(py: &str, ns: &Netns, ifname: &str, frames: &[Vec<u8>], count: u32, gap: f64) {
    let list: Vec<String> = frames.iter().map(|f| hex(f)).collect();
    ns.exec_ok(&[
        py,
        "-c",
        SEND_PY,
        ifname,
        &list.join(","),
        &count.to_string(),
        &gap.to_string(),
    ]);
}

/// Drops by reason on the port of endpoint `container/eth0`.
fn port_drops(daemon: &Daemon, container: &str) -> serde_json::Value {
    let stats = daemon.json(&["stats", "--json"]);
    let endpoint = format!("{container}/eth0");
    stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["endpoint"] == endpoint.as_str())
        .unwrap_or_else(|| panic!("no port {endpoint}: {stats}"))["drops"]
        .clone()
}

fn drop_count(drops: &serde_json::Value, reason: &str) -> u64 {
    drops[reason].as_u64().unwrap_or(0)
}

fn no_spoofing_drops(drops: &serde_json::Value) -> bool {
    drops
        .as_object()
        .is_none_or(|map| map.keys().all(|k| !k.starts_with("spoofed_")))
}

/// A UDP listener in `ns` appending what it receives on `port` to a file.
fn udp_listener(ns: &Netns, bind: &str, port: u16, file: &std::path::Path) -> ChildGuard {
    let listen = format!("UDP4-RECV:{port}{bind}");
    let out = format!("OPEN:{},creat,append", file.display());
    let guard = ns.spawn(&["socat", "-u", &listen, &out]);
    std::thread::sleep(Duration::from_millis(300));
    guard
}

fn received(file: &std::path::Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}

fn enable_ipv6(ns: &Netns) {
    ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
    ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"]);
}

/// The lladdr of `ip`'s neighbour entry in `ns` (empty if none).
fn neighbour_mac(ns: &Netns, ip: &str) -> String {
    let out = ns.exec_ok(&["ip", "neigh", "show", ip, "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Network n (10.211.0.0/24, fd00:211::/64) with victims A and B and hostile H, all
/// TAPs; A publishes 127.0.0.1:18611 -> 80 on the host (the daemon's namespace).
#[test]
fn a_hostile_container_cannot_spoof_its_neighbours() {
    let test = "a_hostile_container_cannot_spoof_its_neighbours";
    if !require_root(test) {
        return;
    }
    let Some(py) = python(test) else { return };
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.211.0.0/24",
        "--ipv6",
        "--subnet6",
        "fd00:211::/64",
    ]);
    let (a, b, h) = (Netns::new(), Netns::new(), Netns::new());
    for ns in [&a, &b, &h] {
        enable_ipv6(ns);
    }
    for (ns, name, ip, extra) in [
        (&a, "a", "10.211.0.2", Some("127.0.0.1:18611:80")),
        (&b, "b", "10.211.0.3", None),
        (&h, "h", "10.211.0.4", None),
    ] {
        let path = ns.path();
        let mut args = vec!["connect", "n", "--netns", &path, "--name", name, "--ip", ip];
        if let Some(publish) = extra {
            args.extend(["-p", publish]);
        }
        daemon.cli_ok(&args);
    }
    let (mac_a, mac_h) = (mac("02:42:0a:d3:00:02"), mac("02:42:0a:d3:00:04"));
    let (mac_b, mac_gw) = (mac("02:42:0a:d3:00:03"), mac("02:42:0a:d3:00:01"));
    let ip = |last: u8| Ipv4Addr::new(10, 211, 0, last);
    // The servers read the request before they answer: one that answers and closes
    // first gets a reset for the request's late bytes, which may discard its answer.
    let _server_a = a.spawn(&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:read line; echo from-a",
    ]);
    let _server_h = h.spawn(&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:read line; echo from-h",
    ]);
    let published = || {
        let mut answer = String::new();
        wait_for(Duration::from_secs(10), || {
            let out = host.exec(&[
                "sh",
                "-c",
                "echo q | socat -t 2 - TCP:127.0.0.1:18611,connect-timeout=2",
            ]);
            answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            !answer.is_empty()
        });
        answer
    };
    assert_eq!(published(), "from-a");
    assert!(b.ping("10.211.0.2") && a.ping("10.211.0.1"));
    assert!(h.ping("10.211.0.3"), "the hostile container's own traffic");

    // 1. Forged IPv4 sources to B: A's, the gateway's, another network's. The same
    //    datagram from H's own address arrives (so the listener works).
    let dir = TempDir::new();
    let b_file = dir.0.join("b.txt");
    let _b_listener = udp_listener(&b, "", 9999, &b_file);
    let to_b = |src: Ipv4Addr, text: &str| udp4(mac_b, mac_h, src, ip(3), 9999, text.as_bytes());
    send(py, &h, "eth0", &[to_b(ip(4), "honest\n")], 1, 0.0);
    assert!(
        wait_for(Duration::from_secs(5), || received(&b_file)
            .contains("honest")),
        "B did not get H's honest datagram"
    );
    let forged_to_b = [
        to_b(ip(2), "forged-a\n"),
        to_b(ip(1), "forged-gw\n"),
        to_b(Ipv4Addr::new(10, 212, 0, 2), "forged-other\n"),
    ];
    send(py, &h, "eth0", &forged_to_b, 5, 0.01);
    // ...and to a host service through the gateway, which masquerading would carry out.
    let host_file = dir.0.join("host.txt");
    let _host_listener = udp_listener(&host, ",bind=127.0.0.1", 18612, &host_file);
    let to_host =
        |src: Ipv4Addr, text: &str| udp4(mac_gw, mac_h, src, ip(1), 18612, text.as_bytes());
    send(py, &h, "eth0", &[to_host(ip(4), "honest\n")], 1, 0.0);
    assert!(
        wait_for(Duration::from_secs(5), || received(&host_file)
            .contains("honest")),
        "the host did not get H's honest datagram"
    );
    send(py, &h, "eth0", &[to_host(ip(2), "forged\n")], 5, 0.01);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !received(&b_file).contains("forged"),
        "{}",
        received(&b_file)
    );
    assert!(!received(&host_file).contains("forged"));

    // 2. Gratuitous ARP claiming A's address: the published port still reaches A, B
    //    still knows A at A's MAC, A and the gateway still ping each other.
    let garp = [
        gratuitous_arp(1, mac_h, ip(2)),
        gratuitous_arp(2, mac_h, ip(2)),
    ];
    send(py, &h, "eth0", &garp, 5, 0.05);
    // At once, before A's own traffic could set a poisoned cache right again.
    let out = host.exec(&[
        "sh",
        "-c",
        "echo q | socat -t 3 - TCP:127.0.0.1:18611,connect-timeout=3",
    ]);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(answer, "from-a", "the published port was hijacked");
    assert_eq!(neighbour_mac(&b, "10.211.0.2"), "02:42:0a:d3:00:02");
    assert!(a.ping("10.211.0.1") && b.ping("10.211.0.2"));

    // 3. Frames with A's (and the gateway's) source MAC while a TCP transfer to A runs:
    //    A keeps its traffic.
    let stolen = [
        udp4([0xff; 6], mac_a, ip(4), ip(3), 9, b"x"),
        udp4([0xff; 6], mac_gw, ip(4), ip(3), 9, b"x"),
    ];
    let list: Vec<String> = stolen.iter().map(|f| hex(f)).collect();
    let list = list.join(",");
    let mut flood = h.spawn(&[py, "-c", SEND_PY, "eth0", &list, "990", "0.002"]);
    common::tcp_transfer(&b, &a, "10.211.0.2", 2 << 20);
    assert!(
        wait_for(Duration::from_secs(30), || matches!(
            flood.0.try_wait(),
            Ok(Some(_))
        )),
        "the flood did not finish"
    );
    // A last burst, then the table at once: A's MAC is still on A's port.
    send(py, &h, "eth0", &stolen, 10, 0.0);
    let macs = daemon.json(&["macs", "n", "--json"]);
    let row = |m: &str| {
        macs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["mac"] == m)
            .map(|r| r["endpoint"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        row("02:42:0a:d3:00:02").as_deref(),
        Some("a/eth0"),
        "{macs}"
    );
    let gateway = row("02:42:0a:d3:00:01");
    assert!(
        gateway.as_deref().is_some_and(|e| e.starts_with("port")),
        "{macs}"
    );
    assert!(a.ping("10.211.0.1"));

    // 4. NDP: an advertisement of A's IPv6 address at H's MAC, one of H's own address at
    //    A's MAC, and a router advertisement.
    let a6 = "fd00:211::2";
    assert!(
        wait_for(Duration::from_secs(10), || b
            .exec(&["ping", "-6", "-c", "1", "-W", "1", a6])
            .status
            .success()),
        "B cannot reach A over IPv6"
    );
    let h6: Ipv6Addr = "fd00:211::4".parse().unwrap();
    let ndp = [
        icmpv6_to_all_nodes(
            mac_h,
            h6,
            &neighbour_advertisement(a6.parse().unwrap(), mac_h),
        ),
        icmpv6_to_all_nodes(mac_h, h6, &neighbour_advertisement(h6, mac_a)),
        icmpv6_to_all_nodes(mac_h, link_local(mac_h), &router_advertisement(mac_h)),
    ];
    send(py, &h, "eth0", &ndp, 5, 0.05);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(neighbour_mac(&b, a6), "02:42:0a:d3:00:02");
    let routes = b.exec_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(!routes.contains(&link_local(mac_h).to_string()), "{routes}");
    assert!(
        b.exec(&["ping", "-6", "-c", "2", "-W", "1", a6])
            .status
            .success()
    );

    // Every forged frame was counted on H's port; A and B had none refused.
    let drops = port_drops(&daemon, "h");
    assert_eq!(drop_count(&drops, "spoofed_ip"), 15 + 5, "{drops}");
    assert_eq!(drop_count(&drops, "spoofed_arp"), 10, "{drops}");
    assert_eq!(drop_count(&drops, "spoofed_mac"), 2000, "{drops}");
    assert_eq!(drop_count(&drops, "spoofed_nd"), 15, "{drops}");
    for victim in ["a", "b"] {
        let drops = port_drops(&daemon, victim);
        assert!(no_spoofing_drops(&drops), "{victim}: {drops}");
    }
    let inspect = daemon.json(&["network", "inspect", "n"]);
    assert!(
        inspect["containers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["allow_spoofing"] == false),
        "{inspect}"
    );
}

/// A port connected with `--allow-spoofing` may send from another address (a second
/// address in the container), which a guarded port may not; the pinned MACs of its
/// neighbours and of the gateway stay out of its reach.
#[test]
fn allow_spoofing_lifts_the_address_rules_but_not_the_pinned_macs() {
    let test = "allow_spoofing_lifts_the_address_rules_but_not_the_pinned_macs";
    if !require_root(test) {
        return;
    }
    let Some(py) = python(test) else { return };
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let daemon = Daemon::start_wrapped("auto", None, &["ip", "netns", "exec", &host.name]);
    daemon.cli_ok(&["network", "create", "r", "--subnet", "10.214.0.0/24"]);
    let (a, free, guarded) = (Netns::new(), Netns::new(), Netns::new());
    let connect = |ns: &Netns, name: &str, ip: &str, extra: &[&str]| {
        let path = ns.path();
        let mut args = vec!["connect", "r", "--netns", &path, "--name", name, "--ip", ip];
        args.extend_from_slice(extra);
        daemon.json(&[args, vec!["--json"]].concat())
    };
    connect(&a, "a", "10.214.0.2", &[]);
    let shown = connect(&free, "free", "10.214.0.3", &["--allow-spoofing"]);
    assert_eq!(shown["allow_spoofing"], true, "{shown}");
    connect(&guarded, "g", "10.214.0.4", &[]);
    let inspect = daemon.json(&["network", "inspect", "r"]);
    let flag = |name: &str| {
        inspect["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["allow_spoofing"].clone())
    };
    assert_eq!(flag("free"), Some(serde_json::json!(true)), "{inspect}");
    assert_eq!(flag("g"), Some(serde_json::json!(false)), "{inspect}");

    // A second address: carried for the free port, refused for the guarded one.
    free.exec_ok(&["ip", "addr", "add", "10.214.0.50/24", "dev", "eth0"]);
    guarded.exec_ok(&["ip", "addr", "add", "10.214.0.60/24", "dev", "eth0"]);
    let ping_from = |ns: &Netns, src: &str| {
        ns.exec(&[
            "ping",
            "-I",
            src,
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-q",
            "10.214.0.2",
        ])
        .status
        .success()
    };
    assert!(ping_from(&free, "10.214.0.50"), "--allow-spoofing port");
    assert!(
        !ping_from(&guarded, "10.214.0.60"),
        "a guarded port's extra address"
    );
    assert!(drop_count(&port_drops(&daemon, "g"), "spoofed_arp") > 0);

    // The free port still cannot take A's or the gateway's MAC.
    let mac_a = mac("02:42:0a:d6:00:02");
    let mac_gw = mac("02:42:0a:d6:00:01");
    let stolen = [
        udp4(
            [0xff; 6],
            mac_a,
            Ipv4Addr::new(10, 214, 0, 3),
            Ipv4Addr::new(10, 214, 0, 4),
            9,
            b"x",
        ),
        udp4(
            [0xff; 6],
            mac_gw,
            Ipv4Addr::new(10, 214, 0, 3),
            Ipv4Addr::new(10, 214, 0, 4),
            9,
            b"x",
        ),
    ];
    send(py, &free, "eth0", &stolen, 50, 0.0);
    assert_eq!(drop_count(&port_drops(&daemon, "free"), "spoofed_mac"), 100);
    assert!(a.ping("10.214.0.1") && free.ping("10.214.0.2"));
    let macs = daemon.json(&["macs", "r", "--json"]);
    let endpoint = |m: &str| {
        macs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["mac"] == m)
            .map(|r| r["endpoint"].clone())
    };
    assert_eq!(
        endpoint("02:42:0a:d6:00:02"),
        Some(serde_json::json!("a/eth0"))
    );
    assert!(no_spoofing_drops(&port_drops(&daemon, "a")));
}

/// `tapnet run ARGS` as user nobody inside `host`, with `env` set; its output.
fn rootless_run(host: &Netns, env: &[&str], args: &[&str]) -> std::process::Output {
    let nobody = common::NOBODY.to_string();
    Command::new("ip")
        .args(["netns", "exec", &host.name, "timeout", "60", "setpriv"])
        .args([
            "--reuid",
            &nobody,
            "--regid",
            &nobody,
            "--clear-groups",
            "env",
        ])
        .args(env)
        .arg(tapnet_bin())
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tapnet")
}

/// Builds and sends from tap0, with tap0's MAC, UDP to 10.0.2.2:PORT from each source
/// address given: `MAC PORT COUNT SRC:TEXT...` (`COUNT` copies each).
const ROOTLESS_PY: &str = "
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
mac = bytes.fromhex(sys.argv[1].replace(':', ''))
gw_mac = bytes.fromhex('52550a000202')
port, count = int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('tap0', 0))
for arg in sys.argv[4:]:
    src, text = arg.split(':')
    data = text.encode() + b'\\n'
    udp = struct.pack('!HHHH', 40000, port, 8 + len(data), 0) + data
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 28 + len(data), 1, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton('10.0.2.2'))
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    for _ in range(count):
        s.send(gw_mac + mac + b'\\x08\\x00' + ip + udp)
";

/// The container's side of the rootless tests: a datagram to the host service at
/// 10.0.2.2:`port` through a socket, then five raw copies each from its own address
/// and from three it was not given, then a ping of the gateway. Needs `SENDER`.
fn forging_script(py: &str, port: u16) -> String {
    format!(
        "set -e; echo honest-socket | socat -u - UDP4-SENDTO:10.0.2.2:{port}; \
         set -- $(ip -br link show tap0); mac=$3; \
         {py} -c \"$SENDER\" $mac {port} 5 10.0.2.100:honest-raw 10.0.2.77:forged \
         10.0.2.2:forged-gw 192.0.2.1:forged-out; \
         sleep 0.5; ping -c 1 -W 2 10.0.2.2 >/dev/null && echo ping-ok"
    )
}

/// What the host service at `file` got: both honest datagrams, no forged one.
fn assert_only_honest_arrived(file: &std::path::Path) {
    assert!(
        wait_for(Duration::from_secs(5), || {
            let got = received(file);
            got.contains("honest-socket") && got.contains("honest-raw")
        }),
        "honest datagrams did not arrive: {}",
        received(file)
    );
    assert!(!received(file).contains("forged"), "{}", received(file));
}

fn tun_usable_by_users(test: &str) -> bool {
    let mode = std::fs::metadata("/dev/net/tun")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap_or(0);
    if mode & 0o006 != 0o006 {
        skipped(&format!("{test}: /dev/net/tun is not usable by users"));
        return false;
    }
    true
}

/// In a `tapnet run` container (as user nobody), datagrams with a forged source to a
/// host service are not delivered, while the container's own traffic keeps flowing.
#[test]
fn rootless_run_drops_forged_sources() {
    let test = "rootless_run_drops_forged_sources";
    if !require_root(test) || !tun_usable_by_users(test) {
        return;
    }
    let Some(py) = python(test) else { return };
    let host = Netns::new();
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let dir = TempDir::new();
    let file = dir.0.join("host.txt");
    let _listener = udp_listener(&host, ",bind=127.0.0.1", 18621, &file);
    let sender = format!("SENDER={ROOTLESS_PY}");
    let script = forging_script(py, 18621);
    let out = rootless_run(&host, &[&sender], &["--", "sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ping-ok"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_only_honest_arrived(&file);
}

/// `tapnet slirp4netns --configure` (with `pipelines` pipelines): the forged datagrams
/// are dropped and counted once each, in the line it logs when it stops.
fn slirp4netns_counts_forged_sources(test: &str, pipelines: &str, port: u16) {
    if !require_root(test) {
        return;
    }
    let Some(py) = python(test) else { return };
    let (host, container) = (Netns::new(), Netns::new());
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let dir = TempDir::new();
    let file = dir.0.join("host.txt");
    let _listener = udp_listener(&host, ",bind=127.0.0.1", port, &file);
    let log = dir.0.join("slirp.log");
    let mut slirp = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &host.name, tapnet_bin(), "slirp4netns"])
            .args([
                "--configure",
                "--netns-type=path",
                &container.path(),
                "tap0",
            ])
            .env("TAPNET_PIPELINES", pipelines)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    assert!(
        wait_for(Duration::from_secs(10), || container
            .exec(&["ip", "-4", "addr", "show", "tap0"])
            .stdout
            .windows(10)
            .any(|w| w == b"10.0.2.100")),
        "tap0 was not configured"
    );
    let sender = format!("SENDER={ROOTLESS_PY}");
    let out = container.exec(&["env", &sender, "sh", "-c", &forging_script(py, port)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ping-ok"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_only_honest_arrived(&file);
    // SIGTERM ends it cleanly (it logs its drops); the guard reaps it either way.
    let pid = rustix::process::Pid::from_raw(slirp.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || matches!(
            slirp.0.try_wait(),
            Ok(Some(_))
        )),
        "slirp4netns did not stop on SIGTERM"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("spoofed_ip=15"), "{text}");
}

#[test]
fn slirp4netns_counts_forged_sources_once() {
    slirp4netns_counts_forged_sources("slirp4netns_counts_forged_sources_once", "1", 18622);
}

/// Every pipeline of a multi-queue TAP applies the guard, and a refused frame is
/// counted once (refused frames are not handed to the sibling pipelines).
#[test]
fn slirp4netns_guard_holds_on_every_pipeline() {
    slirp4netns_counts_forged_sources("slirp4netns_guard_holds_on_every_pipeline", "2", 18623);
}

/// A DHCP-leased address is usable (the stack learns it from its own DHCP server's
/// acknowledgement), an address that was neither configured nor leased is not.
#[test]
fn rootless_dhcp_lease_is_usable() {
    let test = "rootless_dhcp_lease_is_usable";
    if !require_root(test) {
        return;
    }
    let container = Netns::new();
    let _slirp = ChildGuard::spawn(
        Command::new(tapnet_bin())
            .args([
                "slirp4netns",
                "--netns-type=path",
                &container.path(),
                "tap0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(
        wait_for(Duration::from_secs(10), || container.has_link("tap0")),
        "no tap0"
    );
    let dir = TempDir::new();
    let hook = dir.0.join("udhcpc.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    common::must("chmod", &["0755", hook.to_str().unwrap()]);
    let out = container.exec(&[
        "sh",
        "-c",
        &format!(
            "ip link set tap0 up && busybox udhcpc -i tap0 -n -q -t 5 -T 1 -s {} 2>&1",
            hook.display()
        ),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lease of 10.0.2.15 obtained"), "{text}");
    let addrs = container.exec_ok(&["ip", "-4", "addr", "show", "tap0"]);
    assert!(addrs.contains("10.0.2.15/"), "{addrs}");
    assert!(container.ping("10.0.2.2"), "the leased address is refused");
    container.exec_ok(&["ip", "addr", "add", "10.0.2.16/24", "dev", "tap0"]);
    let other = container.exec(&[
        "ping",
        "-I",
        "10.0.2.16",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "1",
        "-q",
        "10.0.2.2",
    ]);
    assert!(
        !other.status.success(),
        "an address never leased was carried"
    );
}
