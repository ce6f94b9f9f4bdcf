//! `tapnet run` as an unprivileged user, end to end: the kernel's own stack inside the
//! container namespace talks through tapnet's router and host-socket egress to real
//! servers on the "host's" loopback.
//!
//! Each test's host is a fresh network namespace of its own (the tapnet process, its
//! servers and a real resolver, dnsmasq, live there), so nothing touches the machine's
//! real network and the per-namespace `net.ipv4.ping_group_range` can be set per test.
//! `ip netns exec` bind-mounts `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`,
//! which is how each host gets its own resolver configuration.

mod common;

use common::{ChildGuard, Netns, require_root, skipped, tapnet_bin, wait_for};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A test host: a network namespace with loopback up, its own resolv.conf, and the
/// processes it runs.
struct Host {
    ns: Netns,
    _resolver: Option<common::Resolver>,
    _etc: Option<common::EtcNetns>,
    children: Vec<ChildGuard>,
    /// `NAME=VALUE` settings in tapnet's environment.
    env: Vec<String>,
}

impl Host {
    /// A host whose ICMP echo sockets are allowed (`ping_group_range` covers everyone)
    /// or not, with a resolver on 127.0.0.77 when `dns` says so.
    fn new(ping_sockets: bool, dns: bool) -> Self {
        let ns = Netns::new();
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let range = if ping_sockets { "0 2147483647" } else { "1 0" };
        ns.exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.ping_group_range={range}"),
        ]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=0"]);
        let (resolver, etc) = if dns {
            (Some(common::Resolver::start(&ns)), None)
        } else {
            (
                None,
                Some(common::EtcNetns::resolv_conf(&ns, common::RESOLVER_IP)),
            )
        };
        Self {
            env: Vec::new(),
            ns,
            _resolver: resolver,
            _etc: etc,
            children: Vec::new(),
        }
    }

    /// Starts a server in the host namespace, stopped when the host is dropped.
    fn serve(&mut self, args: &[&str]) {
        self.children.push(self.ns.spawn(args));
    }

    /// `timeout 60 setpriv (as nobody) env ENV... tapnet run ARGS`.
    fn run_command(&self, args: &[&str]) -> Vec<String> {
        let nobody = common::NOBODY.to_string();
        let mut full: Vec<String> = [
            "timeout",
            "60",
            "setpriv",
            "--reuid",
            &nobody,
            "--regid",
            &nobody,
            "--clear-groups",
            "env",
        ]
        .map(str::to_owned)
        .to_vec();
        full.extend(self.env.iter().cloned());
        full.extend([tapnet_bin().to_owned(), "run".to_owned()]);
        full.extend(args.iter().map(|a| (*a).to_owned()));
        full
    }

    /// `tapnet run ARGS` as user nobody, inside this host; with a time limit.
    fn run(&self, args: &[&str]) -> Output {
        let command = self.run_command(args);
        Command::new("ip")
            .args(["netns", "exec", &self.ns.name])
            .args(&command)
            .stdin(Stdio::null())
            .output()
            .expect("run tapnet")
    }

    /// Starts `tapnet run ARGS` as [`Self::run`] does, in the background; it is
    /// killed when the guard drops.
    fn spawn_run(&self, args: &[&str]) -> ChildGuard {
        let command = self.run_command(args);
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        self.ns.spawn(&command)
    }

    /// `tapnet run ARGS -- sh -c SCRIPT`, which must succeed; returns its stdout.
    fn run_sh(&self, args: &[&str], script: &str) -> String {
        let mut full = args.to_vec();
        full.extend(["--", "sh", "-c", script]);
        let out = self.run(&full);
        assert!(
            out.status.success(),
            "tapnet run {full:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.children.clear();
    }
}

/// Whether unprivileged tests can run here; says loudly why not.
fn rootless_ready(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    let mode = std::fs::metadata("/dev/net/tun")
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o006 != 0o006 {
        skipped(&format!(
            "{test}: /dev/net/tun is not usable by users (scripts/test.sh makes it 0666)"
        ));
        return false;
    }
    true
}

#[test]
fn run_exits_with_the_commands_status() {
    if !rootless_ready("run_exits_with_the_commands_status") {
        return;
    }
    let host = Host::new(false, false);
    assert_eq!(host.run(&["--", "true"]).status.code(), Some(0));
    assert_eq!(
        host.run(&["--", "sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );
    let missing = host.run(&["--", "/nonexistent/command"]);
    assert_eq!(
        missing.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn run_configures_tap0_like_slirp4netns() {
    if !rootless_ready("run_configures_tap0_like_slirp4netns") {
        return;
    }
    let host = Host::new(false, false);
    let out = host.run_sh(
        &[],
        "ip -o addr show tap0; ip -o link show tap0; ip route show default; id -u",
    );
    assert!(out.contains("inet 10.0.2.100/24"), "{out}");
    assert!(out.contains("mtu 65520"), "{out}");
    assert!(out.contains("default via 10.0.2.2 dev tap0"), "{out}");
    // Root inside the namespace, mapped to nobody outside.
    assert!(out.lines().last() == Some("0"), "{out}");
}

#[test]
fn gateway_answers_ping_and_tcp_udp_reach_host_loopback() {
    if !rootless_ready("gateway_answers_ping_and_tcp_udp_reach_host_loopback") {
        return;
    }
    let mut host = Host::new(false, false);
    host.serve(&[
        "socat",
        "TCP-LISTEN:7001,bind=127.0.0.1,reuseaddr,fork",
        "SYSTEM:wc -c",
    ]);
    host.serve(&[
        "socat",
        "TCP-LISTEN:7002,bind=127.0.0.1,reuseaddr,fork",
        "SYSTEM:head -c 5000000 /dev/zero",
    ]);
    host.serve(&[
        "socat",
        "-b",
        "65507",
        "UDP-LISTEN:7003,bind=127.0.0.1,reuseaddr,fork",
        "PIPE",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let out = host.run_sh(
        &[],
        "ping -c 2 -W 2 10.0.2.2 >/dev/null && echo ping-ok; \
         head -c 3000000 /dev/urandom | socat -t 10 - TCP:10.0.2.2:7001; \
         socat -u TCP:10.0.2.2:7002 - | wc -c; \
         echo hello-udp | socat -t 3 - UDP:10.0.2.2:7003; \
         head -c 60000 /dev/zero | socat -b 65507 -t 3 - UDP:10.0.2.2:7003 | wc -c",
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["ping-ok", "3000000", "5000000", "hello-udp", "60000"],
        "{out}"
    );
}

/// The same traffic with the host-socket engine on a thread of its own
/// (`TAPNET_ENGINE=thread`; the default runs it on the datapath thread).
#[test]
fn engine_thread_carries_ping_tcp_and_udp() {
    if !rootless_ready("engine_thread_carries_ping_tcp_and_udp") {
        return;
    }
    let mut host = Host::new(false, false);
    host.env.push("TAPNET_ENGINE=thread".into());
    host.serve(&[
        "socat",
        "TCP-LISTEN:7011,bind=127.0.0.1,reuseaddr,fork",
        "SYSTEM:wc -c",
    ]);
    host.serve(&[
        "socat",
        "UDP-LISTEN:7013,bind=127.0.0.1,reuseaddr,fork",
        "PIPE",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    for mtu in ["65520", "1500"] {
        let out = host.run_sh(
            &["--mtu", mtu],
            "ping -c 2 -W 2 10.0.2.2 >/dev/null && echo ping-ok; \
             head -c 3000000 /dev/urandom | socat -t 10 - TCP:10.0.2.2:7011; \
             echo hello-udp | socat -t 3 - UDP:10.0.2.2:7013",
        );
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            ["ping-ok", "3000000", "hello-udp"],
            "MTU {mtu}: {out}"
        );
    }
}

/// At MTU 1500 the container's kernel fragments a 60000-byte datagram; tapnet puts it
/// back together for the host socket and fragments the answer on the way back.
#[test]
fn large_udp_datagrams_cross_at_mtu_1500() {
    if !rootless_ready("large_udp_datagrams_cross_at_mtu_1500") {
        return;
    }
    let mut host = Host::new(false, false);
    host.serve(&[
        "socat",
        "-b",
        "65507",
        "UDP-LISTEN:7004,bind=127.0.0.1,reuseaddr,fork",
        "PIPE",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let out = host.run_sh(
        &["--mtu", "1500"],
        "head -c 60000 /dev/zero | socat -b 65507 -t 3 - UDP:10.0.2.2:7004 | wc -c",
    );
    assert_eq!(out.trim(), "60000", "{out}");
}

#[test]
fn refused_tcp_is_refused_quickly() {
    if !rootless_ready("refused_tcp_is_refused_quickly") {
        return;
    }
    let host = Host::new(false, false);
    // Nothing listens on 7009: the guest must see a reset, not wait for a timeout.
    let started = std::time::Instant::now();
    let out = host.run_sh(
        &[],
        "socat -T 5 - TCP:10.0.2.2:7009,connect-timeout=5 </dev/null 2>&1; echo status=$?",
    );
    assert!(out.contains("Connection refused"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn dns_goes_to_the_hosts_resolver() {
    if !rootless_ready("dns_goes_to_the_hosts_resolver") {
        return;
    }
    let host = Host::new(false, true);
    std::thread::sleep(Duration::from_millis(300));
    let out = host.run_sh(
        &[],
        "dig +short +tries=2 +time=2 @10.0.2.3 printer.tapnet.test; \
         dig +short +tcp +tries=2 +time=2 @10.0.2.3 printer.tapnet.test; \
         getent hosts printer.tapnet.test",
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "192.0.2.7", "{out}");
    assert_eq!(lines[1], "192.0.2.7", "{out}");
    assert!(
        lines[2].starts_with("192.0.2.7"),
        "resolv.conf inside does not use 10.0.2.3: {out}"
    );
}

#[test]
fn icmp_echo_through_ping_sockets_or_unreachable() {
    if !rootless_ready("icmp_echo_through_ping_sockets_or_unreachable") {
        return;
    }
    // A peer namespace behind a veth on the host stands in for a remote machine.
    for allowed in [true, false] {
        let host = Host::new(allowed, false);
        let peer = Netns::new();
        common::link_namespaces(&host.ns, "10.199.0.1", &peer, "10.199.0.2");
        let out = host.run_sh(&[], "ping -c 2 -W 2 10.199.0.2 2>&1; echo status=$?");
        if allowed {
            assert!(
                out.contains("status=0"),
                "ping through a ping socket failed: {out}"
            );
        } else {
            assert!(!out.contains("status=0"), "{out}");
            assert!(
                out.contains("Unreachable") || out.contains("unreachable"),
                "{out}"
            );
        }
    }
}

/// Connects to `addr:port` from namespace `from` (retrying until the container's
/// server listens) and returns what the server said.
fn ask(from: &Netns, addr: &str, port: u16, udp: bool) -> String {
    let target = format!("{}:{addr}:{port}", if udp { "UDP" } else { "TCP" });
    let mut answer = String::new();
    let ok = wait_for(Duration::from_secs(15), || {
        let out = from.exec(&["sh", "-c", &format!("echo q | socat -t 2 - {target}")]);
        answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        out.status.success() && !answer.is_empty()
    });
    assert!(ok, "no answer from {target}");
    answer
}

#[test]
fn published_ports_keep_the_clients_address() {
    if !rootless_ready("published_ports_keep_the_clients_address") {
        return;
    }
    let host = Host::new(false, false);
    let remote = Netns::new();
    common::link_namespaces(&host.ns, "10.198.0.1", &remote, "10.198.0.2");

    // The container serves TCP 80 and UDP 81 (and 90-92 as a range), answering with the
    // peer address it sees, and stays up for the clients below.
    let script = "socat TCP-LISTEN:80,reuseaddr,fork 'SYSTEM:echo $SOCAT_PEERADDR' & \
                  socat UDP-RECVFROM:81,fork 'SYSTEM:echo $SOCAT_PEERADDR' & \
                  for p in 90 91 92; do socat TCP-LISTEN:$p,reuseaddr,fork \"SYSTEM:echo port-$p\" & done; \
                  sleep 1; \
                  echo hairpin=$(echo q | socat -t 2 - TCP:10.0.2.2:18080); \
                  sleep 25";
    let container = host.spawn_run(&[
        "-p",
        "18080:80",
        "-p",
        "18081:81/udp",
        "-p",
        "127.0.0.1:18090-18092:90-92",
        "--",
        "sh",
        "-c",
        script,
    ]);
    // From the host's loopback: slirp4netns presents such clients as the gateway.
    assert_eq!(ask(&host.ns, "127.0.0.1", 18080, false), "10.0.2.2");
    // From another machine: the client's real address.
    assert_eq!(ask(&remote, "10.198.0.1", 18080, false), "10.198.0.2");
    assert_eq!(ask(&remote, "10.198.0.1", 18081, true), "10.198.0.2");
    // A range, bound to 127.0.0.1 only.
    assert_eq!(ask(&host.ns, "127.0.0.1", 18091, false), "port-91");
    assert_eq!(ask(&host.ns, "127.0.0.1", 18092, false), "port-92");
    let refused = remote.exec(&[
        "sh",
        "-c",
        "echo q | socat -t 2 - TCP:10.198.0.1:18091,connect-timeout=2",
    ]);
    assert!(
        !refused.status.success(),
        "a port bound to 127.0.0.1 answered on another address"
    );
    drop(container);
}

#[test]
fn ipv6_to_host_loopback_and_gateway() {
    if !rootless_ready("ipv6_to_host_loopback_and_gateway") {
        return;
    }
    let mut host = Host::new(false, false);
    host.serve(&[
        "socat",
        "TCP6-LISTEN:7006,bind=[::1],reuseaddr,fork",
        "SYSTEM:wc -c",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let out = host.run_sh(
        &["--ipv6"],
        "ip -o -6 addr show tap0 scope global; \
         ping -6 -c 2 -W 2 fd00::2 >/dev/null && echo ping6-ok; \
         head -c 100000 /dev/urandom | socat -t 10 - TCP6:[fd00::2]:7006",
    );
    assert!(out.contains("fd00::100/64"), "{out}");
    assert!(out.contains("ping6-ok"), "{out}");
    assert!(out.lines().last().map(str::trim) == Some("100000"), "{out}");
}

/// The router's DHCP server leases an address to a real client (busybox udhcpc) on a
/// TAP that tapnet was asked not to configure (slirp4netns without `-c`).
#[test]
fn dhcp_leases_an_address_to_a_real_client() {
    if !require_root("dhcp_leases_an_address_to_a_real_client") {
        return;
    }
    let container = Netns::new();
    let slirp = ChildGuard::spawn(
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
    let out = container.exec(&[
        "sh",
        "-c",
        "ip link set tap0 up && busybox udhcpc -i tap0 -n -q -t 5 -T 1 -s /bin/true 2>&1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lease of 10.0.2.15 obtained"), "{text}");
    drop(slirp);
}

/// At MTU 1500 tap0 has checksum and segmentation offload (IFF_VNET_HDR): the
/// container's kernel sends 64 KiB TSO segments with partial checksums and receives
/// 64 KiB segments from tapnet. Several MB cross byte-exact both ways, over IPv4 and
/// IPv6, and ICMP, UDP (also fragmented) and small TCP still work; without offload
/// (`TAPNET_OFFLOAD=0`) tap0 has none.
#[test]
fn offloaded_tcp_is_byte_exact_at_mtu_1500() {
    let test = "offloaded_tcp_is_byte_exact_at_mtu_1500";
    if !rootless_ready(test) {
        return;
    }
    let data = common::DataFile::new(12_000_000);
    let (path, sum) = (data.path().to_owned(), data.sum.clone());

    let mut host = Host::new(true, false);
    host.serve(&[
        "socat",
        "TCP-LISTEN:7011,bind=127.0.0.1,reuseaddr,fork",
        "SYSTEM:sha256sum",
    ]);
    host.serve(&[
        "socat",
        "TCP-LISTEN:7012,bind=127.0.0.1,reuseaddr,fork",
        &format!("SYSTEM:cat {path}"),
    ]);
    host.serve(&[
        "socat",
        "TCP6-LISTEN:7013,bind=[::1],reuseaddr,fork",
        "SYSTEM:sha256sum",
    ]);
    host.serve(&[
        "socat",
        "TCP6-LISTEN:7014,bind=[::1],reuseaddr,fork",
        &format!("SYSTEM:cat {path}"),
    ]);
    host.serve(&[
        "socat",
        "-b",
        "65507",
        "UDP-LISTEN:7015,bind=127.0.0.1,reuseaddr,fork",
        "PIPE",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let script = format!(
        "ethtool -k tap0 | grep -E '^tcp-segmentation-offload:'; \
         ping -c 1 -W 2 10.0.2.2 >/dev/null && echo ping-ok; \
         echo up4: $(socat -t 20 - TCP:10.0.2.2:7011 < {path}); \
         echo down4: $(socat -u TCP:10.0.2.2:7012 - | sha256sum); \
         echo up6: $(socat -t 20 - TCP6:[fd00::2]:7013 < {path}); \
         echo down6: $(socat -u TCP6:[fd00::2]:7014 - | sha256sum); \
         echo small: $(echo hi | socat -t 20 - TCP:10.0.2.2:7011); \
         echo udp: $(echo hello-udp | socat -t 3 - UDP:10.0.2.2:7015); \
         echo udp-big: $(head -c 60000 /dev/zero | socat -b 65507 -t 3 - UDP:10.0.2.2:7015 | wc -c)"
    );
    let out = host.run_sh(&["--mtu", "1500", "--ipv6"], &script);
    let hi = "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4";
    for want in [
        "tcp-segmentation-offload: on".to_owned(),
        "ping-ok".to_owned(),
        format!("up4: {sum} -"),
        format!("down4: {sum} -"),
        format!("up6: {sum} -"),
        format!("down6: {sum} -"),
        format!("small: {hi} -"),
        "udp: hello-udp".to_owned(),
        "udp-big: 60000".to_owned(),
    ] {
        assert!(
            out.lines().any(|l| l.trim() == want),
            "want {want:?} in:\n{out}"
        );
    }

    // Switched off: a plain TAP.
    let mut full = vec!["netns", "exec", &host.ns.name, "env", "TAPNET_OFFLOAD=0"];
    full.extend([
        tapnet_bin(),
        "run",
        "--mtu",
        "1500",
        "--",
        "sh",
        "-c",
        "ethtool -k tap0 | grep -E '^tcp-segmentation-offload:'",
    ]);
    let out = Command::new("ip").args(&full).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tcp-segmentation-offload: off"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `TAPNET_PIPELINES=2`: tap0 has two queues, each read by a pipeline of its own. The
/// container's kernel spreads flows over them by a hash, so parallel flows use both;
/// every one stays byte-exact, ARP/NDP that only one pipeline sees reaches the other
/// too (or its flows could not be answered), and published ports (served by the
/// first pipeline; the TUN driver steers the container's answers back to the queue
/// their flow came in on) keep working, also for several clients at once.
#[test]
fn two_pipelines_share_tap0_and_keep_every_flow_byte_exact() {
    let test = "two_pipelines_share_tap0_and_keep_every_flow_byte_exact";
    if !rootless_ready(test) {
        return;
    }
    let data = common::DataFile::new(4_000_000);
    let (path, sum) = (data.path().to_owned(), data.sum.clone());
    let mut host = Host::new(true, false);
    host.env.push("TAPNET_PIPELINES=2".into());
    host.serve(&[
        "socat",
        "TCP-LISTEN:7031,bind=127.0.0.1,reuseaddr,fork",
        "SYSTEM:sha256sum",
    ]);
    host.serve(&[
        "socat",
        "TCP-LISTEN:7032,bind=127.0.0.1,reuseaddr,fork",
        &format!("SYSTEM:cat {path}"),
    ]);
    host.serve(&[
        "socat",
        "TCP6-LISTEN:7033,bind=[::1],reuseaddr,fork",
        "SYSTEM:sha256sum",
    ]);
    host.serve(&[
        "socat",
        // One child per datagram, answering its sender (UDP-LISTEN's fork would
        // hand datagrams of concurrent clients to the wrong child).
        "UDP-RECVFROM:7034,bind=127.0.0.1,fork",
        "PIPE",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let script = format!(
        "ip -d link show tap0 | grep -o 'numqueues [0-9]*'; \
         ping -c 2 -W 2 10.0.2.2 >/dev/null && echo ping-ok; \
         ping -6 -c 2 -W 2 fd00::2 >/dev/null && echo ping6-ok; \
         for i in 1 2 3 4 5 6; do \
           (echo up$i: $(socat -t 20 - TCP:10.0.2.2:7031 < {path})) & \
           (echo down$i: $(socat -u TCP:10.0.2.2:7032 - | sha256sum)) & \
         done; \
         for i in 1 2 3; do (echo up6-$i: $(socat -t 20 - TCP6:[fd00::2]:7033 < {path})) & done; \
         for i in 1 2 3 4; do (echo udp$i: $(echo hello-$i | socat -t 3 - UDP:10.0.2.2:7034)) & done; \
         wait"
    );
    let out = host.run_sh(&["--ipv6"], &script);
    let mut want = vec![
        "numqueues 2".to_owned(),
        "ping-ok".to_owned(),
        "ping6-ok".to_owned(),
    ];
    for i in 1..=6 {
        want.push(format!("up{i}: {sum} -"));
        want.push(format!("down{i}: {sum} -"));
    }
    for i in 1..=3 {
        want.push(format!("up6-{i}: {sum} -"));
    }
    for i in 1..=4 {
        want.push(format!("udp{i}: hello-{i}"));
    }
    for w in &want {
        assert!(out.lines().any(|l| l.trim() == w), "want {w:?} in:\n{out}");
    }

    // Published ports: several clients at once from the host, each byte-exact.
    let container = host.spawn_run(&[
        "-p",
        "18180:80",
        "-p",
        "18181:81",
        "-p",
        "18182:82/udp",
        "--",
        "sh",
        "-c",
        "socat TCP-LISTEN:80,reuseaddr,fork SYSTEM:sha256sum & \
         socat -t 10 TCP-LISTEN:81,reuseaddr,fork 'SYSTEM:sleep 4; echo late' & \
         socat -t 10 UDP-RECVFROM:82,fork 'SYSTEM:sleep 4; echo udp-late' & \
         sleep 40",
    ]);
    // "HASH  -": the container's server is up.
    assert_eq!(ask(&host.ns, "127.0.0.1", 18180, false).len(), 67);
    let clients = format!(
        "for i in 1 2 3 4 5 6; do \
           (echo in$i: $(socat -t 20 - TCP:127.0.0.1:18180 < {path})) & \
         done; wait"
    );
    let out = host.ns.exec(&["sh", "-c", &clients]);
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 1..=6 {
        let w = format!("in{i}: {sum} -");
        assert!(
            text.lines().any(|l| l.trim() == w),
            "want {w:?} in:\n{text}"
        );
    }
    // The container answers after 4 s of silence, when the TUN driver has forgotten
    // which queue the flow came in on: the answer may land on the other pipeline,
    // which hands it to the first instead of refusing it.
    let late = "for i in 1 2 3 4 5 6; do \
                  (echo tcp$i: $(echo q | socat -t 10 - TCP:127.0.0.1:18181)) & \
                  (echo udp$i: $(echo q | timeout 8 socat -t 6 - UDP:127.0.0.1:18182)) & \
                done; wait";
    let out = host.ns.exec(&["sh", "-c", late]);
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 1..=6 {
        for w in [format!("tcp{i}: late"), format!("udp{i}: udp-late")] {
            assert!(
                text.lines().any(|l| l.trim() == w),
                "want {w:?} in:\n{text}"
            );
        }
    }
    drop(container);
}
