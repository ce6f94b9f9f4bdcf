//! Tests of port attachment. The ones that create namespaces need root and print
//! "SKIPPED (needs root)" otherwise. Every namespace lives only as long as a `sleep`
//! process that the test started and kills (by its pid) when the guard drops; devices
//! die with their namespace or are removed by `detach`.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use tapnet_wire::MacAddr;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips a test that needs root, loudly: written straight to stderr, which libtest's
/// output capture does not swallow.
macro_rules! require_root {
    ($what:expr) => {
        if !is_root() {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED (needs root): {}", $what);
            return;
        }
    };
}

/// A process sitting in fresh namespaces; killed (by its own pid) and reaped on drop.
struct NamespaceProcess {
    child: Child,
}

impl NamespaceProcess {
    /// Runs `argv` (which must end up in `sleep`) and waits until its network
    /// namespace differs from ours.
    fn start(argv: &[&str]) -> Self {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let guard = Self { child };
        let own = std::fs::metadata("/proc/self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let theirs = std::fs::metadata(format!("/proc/{}/ns/net", guard.pid()))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if theirs.is_ok_and(|ino| ino != own) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{argv:?} did not enter a new network namespace"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        guard
    }

    /// `unshare -n sleep 30` (a network namespace owned by our user namespace).
    fn netns() -> Self {
        Self::start(&["unshare", "-n", "sleep", "30"])
    }

    /// A network namespace owned by a user namespace that uid 65534 created.
    fn rootless_netns() -> Self {
        Self::start(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "unshare",
            "-Urn",
            "sleep",
            "30",
        ])
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn target(&self) -> NetnsTarget {
        NetnsTarget::Pid(self.pid())
    }

    /// Runs `cmd...` inside the namespace (as root, via nsenter) and returns stdout.
    fn run(&self, cmd: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .args(cmd)
            .output()
            .expect("run nsenter");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `cmd...` inside the namespace, ignoring its exit status (a ping that gets
    /// no answer).
    fn run_unchecked(&self, cmd: &[&str]) {
        let _ = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn json(&self, cmd: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.run(cmd)).unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NamespaceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(ifname: Option<&str>, last: u8, net: u8) -> InterfaceConfig {
    InterfaceConfig::ipv4(
        ifname.map(str::to_owned),
        MacAddr::from_ipv4_docker([10, net, 0, last]),
        format!("10.{net}.0.{last}/16").parse().unwrap(),
        Ipv4Addr::new(10, net, 0, 1),
        1400,
    )
}

/// Checks the interface `ifname` in `ns` against `cfg`.
fn assert_configured(ns: &NamespaceProcess, ifname: &str, cfg: &InterfaceConfig) {
    let link = &ns.json(&["ip", "-j", "addr", "show", "dev", ifname])[0];
    assert_eq!(link["address"], cfg.mac.to_string(), "{link}");
    assert_eq!(link["mtu"], cfg.mtu, "{link}");
    let flags = link["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "UP"), "{link}");
    let inet: Vec<_> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .collect();
    assert_eq!(inet.len(), 1, "{link}");
    assert_eq!(inet[0]["local"], cfg.address.addr().to_string());
    assert_eq!(inet[0]["prefixlen"], cfg.address.prefix_len());
    assert_eq!(inet[0]["broadcast"], cfg.address.broadcast().to_string());
    let lo = &ns.json(&["ip", "-j", "link", "show", "dev", "lo"])[0];
    assert!(
        lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{lo}"
    );
}

fn default_routes(ns: &NamespaceProcess) -> Vec<(String, String)> {
    let routes = ns.json(&["ip", "-j", "-4", "route", "show", "default"]);
    routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["gateway"].as_str().unwrap_or("").to_owned(),
                r["dev"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn link_exists(ns: &NamespaceProcess, ifname: &str) -> bool {
    ns.json(&["ip", "-j", "link"])
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["ifname"] == ifname)
}

fn host_link(ifname: &str) -> Option<serde_json::Value> {
    let out = Command::new("ip")
        .args(["-j", "link", "show", "dev", ifname])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone())
}

/// Waits up to `timeout` for one frame on a non-blocking fd.
fn read_frame(fd: &OwnedFd, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match rustix::io::read(fd, &mut buf) {
            Ok(n) => return Some(buf[..n].to_vec()),
            Err(rustix::io::Errno::AGAIN) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("read: {e}"),
        }
    }
    None
}

// -------------------------------------------------------------------------------
// No privileges needed.

#[test]
fn validates_ifnames_like_the_kernel() {
    for good in ["eth0", "a", "tn-0123456789ab", "veth.1@x"] {
        assert!(validate_ifname(good).is_ok(), "{good}");
    }
    for (bad, reason) in [
        ("", "empty"),
        ("sixteen-chars-xx", "longer than 15 bytes"),
        ("..", "reserved"),
        ("a/b", "contains '/', ':', a NUL or whitespace"),
        ("eth0:1", "contains '/', ':', a NUL or whitespace"),
        ("a b", "contains '/', ':', a NUL or whitespace"),
    ] {
        let err = validate_ifname(bad).unwrap_err();
        assert!(
            matches!(&err, PortError::InvalidIfname { reason: r, .. } if *r == reason),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        validate_ifname("a/b").unwrap_err().to_string(),
        "invalid interface name \"a/b\": contains '/', ':', a NUL or whitespace"
    );
}

#[test]
fn temp_peer_names_fit_and_differ() {
    let (a, b) = (temp_peer_name(), temp_peer_name());
    assert_ne!(a, b);
    assert!(validate_ifname(&a).is_ok(), "{a}");
}

#[test]
fn missing_namespaces_have_clear_errors() {
    let err = netns_id(&NetnsTarget::Pid(999_999_999)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "network namespace of pid 999999999 not found"
    );
    let err = netns_id(&NetnsTarget::Path(
        "/run/netns/tapnet-does-not-exist".into(),
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "network namespace /run/netns/tapnet-does-not-exist not found"
    );
    let err = netns_id(&NetnsTarget::Path("/proc/self/cmdline".into())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/proc/self/cmdline is not a network namespace"
    );
    let err = attach(
        &NetnsTarget::Pid(999_999_999),
        PortKind::Tap,
        &config(None, 2, 88),
        "",
    )
    .unwrap_err();
    assert!(matches!(err, PortError::NetnsNotFound(_)), "{err}");
}

#[test]
fn netns_id_is_stable_for_one_namespace() {
    let own = netns_id(&NetnsTarget::Pid(std::process::id())).unwrap();
    assert_eq!(
        own,
        netns_id(&NetnsTarget::Path("/proc/self/ns/net".into())).unwrap()
    );
}

#[test]
fn rejects_bad_configs_before_touching_anything() {
    let target = NetnsTarget::Pid(std::process::id());
    let mut cfg = config(Some("eth0"), 2, 88);
    cfg.mtu = 60;
    assert_eq!(
        attach(&target, PortKind::Tap, &cfg, "")
            .unwrap_err()
            .to_string(),
        "invalid interface configuration: MTU 60 is outside 68..=65535"
    );
    let mut cfg = config(None, 2, 88);
    cfg.mac = MacAddr::BROADCAST;
    assert!(matches!(
        attach(&target, PortKind::Tap, &cfg, ""),
        Err(PortError::InvalidConfig(_))
    ));
    let err = attach(
        &target,
        PortKind::Veth,
        &config(None, 2, 88),
        "much-too-long-name",
    )
    .unwrap_err();
    assert!(matches!(err, PortError::InvalidIfname { .. }), "{err}");
}

// -------------------------------------------------------------------------------
// Root: real namespaces.

#[test]
fn tap_ports_get_eth0_then_eth1_and_keep_the_first_default_route() {
    require_root!("tap_ports_get_eth0_then_eth1_and_keep_the_first_default_route");
    let ns = NamespaceProcess::netns();
    let target = ns.target();

    let first = config(None, 2, 88);
    let port = attach(&target, PortKind::Tap, &first, "").unwrap();
    assert_eq!(
        (port.kind, port.ifname.as_str(), port.host_ifname.as_deref()),
        (PortKind::Tap, "eth0", None)
    );
    assert_configured(&ns, "eth0", &first);
    assert_eq!(
        default_routes(&ns),
        [("10.88.0.1".to_owned(), "eth0".to_owned())]
    );
    // The fd is non-blocking.
    let flags = rustix::fs::fcntl_getfl(&port.fd).unwrap();
    assert!(flags.contains(rustix::fs::OFlags::NONBLOCK));

    let second = config(None, 5, 99);
    let port2 = attach(&target, PortKind::Tap, &second, "").unwrap();
    assert_eq!(port2.ifname, "eth1");
    assert_configured(&ns, "eth1", &second);
    assert_eq!(
        default_routes(&ns),
        [("10.88.0.1".to_owned(), "eth0".to_owned())],
        "first network wins"
    );

    let taken = attach(&target, PortKind::Tap, &config(Some("eth0"), 3, 77), "").unwrap_err();
    assert!(matches!(taken, PortError::IfnameTaken { .. }), "{taken}");
    assert_eq!(
        taken.to_string(),
        format!(
            "interface eth0 already exists in network namespace of pid {}",
            ns.pid()
        )
    );

    // The kernel sees the device through our fd: a frame the container sends arrives.
    // (ARP for the gateway; it stays inside the namespace we created.)
    ns.run_unchecked(&["ping", "-c", "1", "-W", "1", "-I", "eth0", "10.88.0.1"]);
    let frame = read_frame(&port.fd, Duration::from_secs(2)).expect("a frame from the container");
    assert_eq!(&frame[6..12], &first.mac.0, "source MAC");

    detach(port).unwrap();
    detach(port2).unwrap();
    assert!(
        !link_exists(&ns, "eth0") && !link_exists(&ns, "eth1"),
        "TAPs are gone with their fds"
    );
}

#[test]
fn tap_port_with_explicit_name() {
    require_root!("tap_port_with_explicit_name");
    let ns = NamespaceProcess::netns();
    let cfg = config(Some("net7"), 9, 70);
    let port = attach(&ns.target(), PortKind::Tap, &cfg, "").unwrap();
    assert_eq!(port.ifname, "net7");
    assert_configured(&ns, "net7", &cfg);
    detach(port).unwrap();
}

#[test]
fn veth_port_is_configured_and_read_with_af_packet() {
    require_root!("veth_port_is_configured_and_read_with_af_packet");
    let ns = NamespaceProcess::netns();
    let host = format!("tnv{:x}a", std::process::id());
    let cfg = config(None, 2, 66);
    let port = attach(&ns.target(), PortKind::Veth, &cfg, &host).unwrap();
    assert_eq!((port.kind, port.ifname.as_str()), (PortKind::Veth, "eth0"));
    assert_eq!(port.host_ifname.as_deref(), Some(host.as_str()));
    assert_configured(&ns, "eth0", &cfg);
    assert_eq!(
        default_routes(&ns),
        [("10.66.0.1".to_owned(), "eth0".to_owned())]
    );

    // Host end: up, NOARP, same MTU.
    let link = host_link(&host).expect("host end exists");
    assert_eq!(link["mtu"], 1400);
    let flags = link["flags"].as_array().unwrap();
    assert!(
        flags.iter().any(|f| f == "UP") && flags.iter().any(|f| f == "NOARP"),
        "{link}"
    );

    // Container end: no checksum offload, no TCP segmentation offload, no GSO. (TSO
    // variants that still show "on", such as AccECN or tunnels, only apply to packets
    // that also need plain TSO, so the kernel segments those in software.)
    let features = ns.run(&["ethtool", "-k", "eth0"]);
    for feature in [
        "tx-checksumming: off",
        "tx-tcp-segmentation: off",
        "tx-tcp6-segmentation: off",
        "generic-segmentation-offload: off",
    ] {
        assert!(
            features.lines().any(|l| l.trim() == feature),
            "{feature} in\n{features}"
        );
    }

    // A frame from the container arrives on the AF_PACKET socket.
    ns.run_unchecked(&["ping", "-c", "1", "-W", "1", "10.66.0.1"]);
    let mut got_arp = false;
    while let Some(frame) = read_frame(&port.fd, Duration::from_secs(2)) {
        assert!(frame.len() <= 1400 + 14, "frame of {} bytes", frame.len());
        if frame[12..14] == [0x08, 0x06] && frame[6..12] == cfg.mac.0 {
            got_arp = true;
            break;
        }
    }
    assert!(got_arp, "ARP request from the container");

    let taken = attach(&ns.target(), PortKind::Veth, &config(None, 3, 67), &host).unwrap_err();
    assert_eq!(
        taken.to_string(),
        format!("interface {host} already exists on the host")
    );

    let raw = port.fd.as_raw_fd();
    detach(port).unwrap();
    assert!(host_link(&host).is_none(), "host end deleted");
    assert!(!link_exists(&ns, "eth0"), "peer deleted with it");
    assert!(raw >= 0);
}

#[test]
fn veth_second_port_and_taken_name_cleans_up() {
    require_root!("veth_second_port_and_taken_name_cleans_up");
    let mut ns = NamespaceProcess::netns();
    let (h1, h2, h3) = (
        format!("tnv{:x}b", std::process::id()),
        format!("tnv{:x}c", std::process::id()),
        format!("tnv{:x}d", std::process::id()),
    );
    let p1 = attach(&ns.target(), PortKind::Veth, &config(None, 2, 55), &h1).unwrap();
    let p2 = attach(&ns.target(), PortKind::Veth, &config(None, 2, 56), &h2).unwrap();
    assert_eq!((p1.ifname.as_str(), p2.ifname.as_str()), ("eth0", "eth1"));

    let err = attach(
        &ns.target(),
        PortKind::Veth,
        &config(Some("eth1"), 3, 57),
        &h3,
    )
    .unwrap_err();
    assert!(matches!(err, PortError::IfnameTaken { .. }), "{err}");
    assert!(host_link(&h3).is_none(), "failed attach removed its veth");
    let leftovers: Vec<_> = ns
        .json(&["ip", "-j", "link"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(leftovers.len(), 3, "lo, eth0, eth1 only: {leftovers:?}");

    // The namespace dies first: detach still succeeds (the pair went with it).
    ns.kill();
    std::thread::sleep(Duration::from_millis(200));
    detach(p1).unwrap();
    detach(p2).unwrap();
    assert!(host_link(&h1).is_none() && host_link(&h2).is_none());
}

#[test]
fn tap_port_in_a_rootless_user_namespace() {
    require_root!("tap_port_in_a_rootless_user_namespace");
    let ns = NamespaceProcess::rootless_netns();
    let cfg = config(None, 2, 44);
    let port = attach(&ns.target(), PortKind::Tap, &cfg, "").unwrap();
    assert_eq!(port.ifname, "eth0");
    assert_configured(&ns, "eth0", &cfg);
    assert_eq!(
        default_routes(&ns),
        [("10.44.0.1".to_owned(), "eth0".to_owned())]
    );
    detach(port).unwrap();
}

#[test]
fn veth_port_in_a_rootless_user_namespace() {
    require_root!("veth_port_in_a_rootless_user_namespace");
    let ns = NamespaceProcess::rootless_netns();
    let host = format!("tnv{:x}e", std::process::id());
    let cfg = config(None, 2, 45);
    let port = attach(&ns.target(), PortKind::Veth, &cfg, &host).unwrap();
    assert_configured(&ns, "eth0", &cfg);
    detach(port).unwrap();
    assert!(host_link(&host).is_none());
}

/// Set by the parent test for the child run of `unprivileged_daemon_child`.
const CHILD_ENV: &str = "TAPNET_TEST_UNPRIVILEGED_NETNS_PID";

/// The daemon side of `tap_port_from_an_unprivileged_daemon`: runs as uid 65534 in a
/// child test process; does nothing in a normal test run.
#[test]
fn unprivileged_daemon_child() {
    let Ok(pid) = std::env::var(CHILD_ENV) else {
        return;
    };
    let target = NetnsTarget::Pid(pid.parse().unwrap());
    match attach(&target, PortKind::Tap, &config(None, 2, 33), "") {
        Ok(port) => {
            println!("ATTACHED {}", port.ifname);
            // Keep the TAP until the parent has looked and closes our stdin.
            let _ = std::io::stdin().read_line(&mut String::new());
            detach(port).unwrap();
        }
        Err(e) => println!("FAILED {e}"),
    }
}

#[test]
fn tap_port_from_an_unprivileged_daemon() {
    require_root!("tap_port_from_an_unprivileged_daemon");
    let ns = NamespaceProcess::rootless_netns();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "port::tests::unprivileged_daemon_child",
            "--nocapture",
            "--test-threads=2",
        ])
        .env(CHILD_ENV, ns.pid().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut result = None;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("ATTACHED ") || line.starts_with("FAILED ") {
            result = Some(line);
            break;
        }
    }
    let result = result.expect("the child reported");
    let tun_open = std::fs::metadata("/dev/net/tun")
        .unwrap()
        .permissions()
        .mode()
        & 0o006
        == 0o006;
    if tun_open {
        assert_eq!(result, "ATTACHED eth0");
        assert_configured(&ns, "eth0", &config(None, 2, 33));
    } else {
        eprintln!(
            "note: /dev/net/tun is not world-accessible; checking the permission error instead"
        );
        assert_eq!(
            result,
            "FAILED no permission to open /dev/net/tun: Permission denied \
             (run as root or make /dev/net/tun accessible)"
        );
    }
    drop(child.stdin.take());
    lines.for_each(drop); // the child's test summary
    assert!(child.wait().unwrap().success());
}

/// Answers DNS queries on `dns` with `table` (scope: network 1) until `stop` is set:
/// the daemon's job once wired, done here by the test thread.
fn serve_dns(
    dns: &DnsSockets,
    table: &tapnet_switch::dns::NameTable,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read as _, Write as _};
    use tapnet_switch::dns::DnsVerdict;
    let scope = [tapnet_switch::NetworkId(1)];
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        if let Ok((n, from)) = dns.udp.recv_from(&mut buf) {
            idle = false;
            if let DnsVerdict::Answer { len } = table.answer(&buf[..n], &scope, &mut out) {
                dns.udp.send_to(&out[..len], from).unwrap();
            }
        }
        if let Ok((mut stream, _)) = dns.tcp.accept() {
            idle = false;
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            // RFC 1035 4.2.2: each message prefixed with its length.
            let mut len = [0u8; 2];
            while stream.read_exact(&mut len).is_ok() {
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut msg).unwrap();
                if let DnsVerdict::Answer { len } = table.answer_tcp(&msg, &scope, &mut out) {
                    let prefix = u16::try_from(len).unwrap().to_be_bytes();
                    stream.write_all(&prefix).unwrap();
                    stream.write_all(&out[..len]).unwrap();
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Attaches with the embedded DNS sockets and checks that `dig @127.0.0.11`, run in
/// the namespace, gets the responder's answers over UDP and TCP.
fn check_dig_at_127_0_0_11(ns: &NamespaceProcess, kind: PortKind, host: &str, net: u8) {
    let cfg = config(None, 2, net);
    let (port, dns) = attach_with_dns(&ns.target(), kind, &cfg, host).unwrap();
    assert_eq!(
        dns.udp.local_addr().unwrap(),
        crate::nshelper::DNS_SOCKET_ADDR
    );
    let mut table = tapnet_switch::dns::NameTable::new();
    table
        .add(
            tapnet_switch::NetworkId(1),
            tapnet_switch::PortId(1),
            &["web", "frontend"],
            Some(Ipv4Addr::new(10, net, 0, 2)),
            None,
        )
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| serve_dns(&dns, &table, &stop));
        // Stops the server even if a dig below panics, so that the scope can end.
        let _stop = StopOnDrop(&stop);
        let dig = |extra: &[&str], name: &str| {
            let mut cmd = vec![
                "dig",
                "+short",
                "+tries=1",
                "+time=3",
                "@127.0.0.11",
                "-p",
                "53",
            ];
            cmd.extend_from_slice(extra);
            cmd.push(name);
            let out = ns.run(&cmd);
            out.trim().to_owned()
        };
        let want = format!("10.{net}.0.2");
        let udp = dig(&[], "web");
        let tcp = dig(&["+tcp"], "FrontEnd.");
        let ptr = dig(&["-x"], &want);
        assert_eq!(udp, want, "dig over UDP");
        assert_eq!(tcp, want, "dig over TCP");
        assert_eq!(ptr, "web.", "dig -x");
    });
    // The address belongs to the namespace: a second bind there fails clearly.
    if kind == PortKind::Tap {
        let second = config(None, 2, net + 1);
        match attach_with_dns(&ns.target(), kind, &second, host) {
            Err(PortError::Configure {
                ifname, message, ..
            }) => {
                assert_eq!(ifname, "lo");
                assert!(message.contains("Address already in use"), "{message}");
            }
            other => panic!("second DNS bind: {other:?}"),
        }
    }
    drop(dns);
    detach(port).unwrap();
}

#[test]
fn tap_port_with_dns_sockets_answers_dig() {
    require_root!("tap_port_with_dns_sockets_answers_dig");
    if Command::new("dig").arg("-v").output().is_err() {
        let _ = writeln_skip("tap_port_with_dns_sockets_answers_dig: no dig");
        return;
    }
    let ns = NamespaceProcess::netns();
    check_dig_at_127_0_0_11(&ns, PortKind::Tap, "", 46);
}

#[test]
fn veth_port_with_dns_sockets_in_a_rootless_user_namespace() {
    require_root!("veth_port_with_dns_sockets_in_a_rootless_user_namespace");
    if Command::new("dig").arg("-v").output().is_err() {
        let _ = writeln_skip("veth_port_with_dns_sockets_in_a_rootless_user_namespace: no dig");
        return;
    }
    let ns = NamespaceProcess::rootless_netns();
    let host = format!("tnd{:x}e", std::process::id());
    check_dig_at_127_0_0_11(&ns, PortKind::Veth, &host, 48);
    assert!(host_link(&host).is_none());
}

/// Prints a skip reason straight to stderr (not captured by libtest).
fn writeln_skip(what: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stderr(), "SKIPPED: {what}")
}
