//! TAP ports in network namespaces owned by unprivileged user namespaces: the rootless
//! case, where only a single-threaded helper process can join the namespaces.

mod common;

use common::{Daemon, NOBODY, Netns, TempDir, require_root, rootless_container};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// Pings from inside the namespace of `pid` (root may enter it without its user namespace).
fn ping_from(pid: u32, ip: &str) -> bool {
    common::ping_with(
        |args| {
            let mut full = vec!["-t".to_owned(), pid.to_string(), "-n".to_owned()];
            full.extend(args.iter().map(|a| a.to_string()));
            Command::new("nsenter")
                .args(&full)
                .output()
                .expect("nsenter")
        },
        ip,
    )
}

fn link_in(pid: u32, ifname: &str) -> String {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-o",
            "addr",
            "show",
            ifname,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn root_daemon_opens_tap_in_unprivileged_userns() {
    if !require_root("root_daemon_opens_tap_in_unprivileged_userns") {
        return;
    }
    let daemon = Daemon::start("auto");
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.220.0.0/24"]);
    let container = rootless_container();
    let pid = container.pid().to_string();
    daemon.cli_ok(&[
        "connect",
        "n",
        "--pid",
        &pid,
        "--ip",
        "10.220.0.2",
        "--ifname",
        "tap0",
    ]);
    assert!(link_in(container.pid(), "tap0").contains("10.220.0.2/24"));
    let peer = Netns::new();
    daemon.cli_ok(&[
        "connect",
        "n",
        "--netns",
        &peer.path(),
        "--ip",
        "10.220.0.3",
    ]);
    assert!(
        peer.ping("10.220.0.2"),
        "no traffic into the rootless container"
    );
    assert!(
        ping_from(container.pid(), "10.220.0.3"),
        "no traffic out of the rootless container"
    );
}

#[test]
fn unprivileged_daemon_connects_rootless_containers() {
    if !require_root("unprivileged_daemon_connects_rootless_containers") {
        return;
    }
    let mode = std::fs::metadata("/dev/net/tun")
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o006 != 0o006 {
        common::skipped(&format!(
            "unprivileged_daemon_connects_rootless_containers: /dev/net/tun is mode {:o}, not usable by users \
             (scripts/test.sh makes it 0666, as common distributions ship it)",
            mode & 0o777
        ));
        return;
    }
    let daemon = Daemon::start_as("auto", Some(NOBODY));
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.221.0.0/24"]);
    let (one, two) = (rootless_container(), rootless_container());
    daemon.cli_ok(&[
        "connect",
        "n",
        "--pid",
        &one.pid().to_string(),
        "--ip",
        "10.221.0.2",
    ]);
    daemon.cli_ok(&[
        "connect",
        "n",
        "--pid",
        &two.pid().to_string(),
        "--ip",
        "10.221.0.3",
    ]);
    assert!(link_in(one.pid(), "eth0").contains("10.221.0.2/24"));
    assert!(
        ping_from(one.pid(), "10.221.0.3"),
        "rootless containers cannot reach each other"
    );
    // A veth needs privileges in the host namespace, which an unprivileged daemon lacks:
    // a clear error, and nothing changes.
    let three = rootless_container();
    let err = daemon.cli_err(&[
        "connect",
        "n",
        "--pid",
        &three.pid().to_string(),
        "--kind",
        "veth",
    ]);
    assert!(
        err.starts_with("tapnet: ") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        daemon.json(&["network", "inspect", "n"])["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// An unprivileged daemon that may not open /dev/net/tun says so in one line, and the
/// failed connect changes nothing. The daemon runs in a private mount namespace where
/// /dev/net/tun is replaced by a root-only file, so the host's device is left alone.
#[test]
fn no_permission_for_dev_net_tun_is_a_clear_error() {
    if !require_root("no_permission_for_dev_net_tun_is_a_clear_error") {
        return;
    }
    let dir = TempDir::new();
    let fake_tun = dir.0.join("tun");
    std::fs::write(&fake_tun, b"").unwrap();
    std::fs::set_permissions(&fake_tun, std::fs::Permissions::from_mode(0o600)).unwrap();
    let script = format!(
        "mount --bind {} /dev/net/tun && exec \"$@\"",
        fake_tun.display()
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ];
    let daemon = Daemon::start_wrapped("auto", Some(NOBODY), &wrapper);
    daemon.cli_ok(&["network", "create", "n", "--subnet", "10.222.0.0/24"]);
    let container = rootless_container();
    let err = daemon.cli_err(&["connect", "n", "--pid", &container.pid().to_string()]);
    assert!(err.contains("no permission to open /dev/net/tun"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        daemon.json(&["network", "inspect", "n"])["containers"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert!(
        link_in(container.pid(), "eth0").is_empty(),
        "a failed connect left a device behind"
    );
}
