//! The control plane from the outside: every error is one clear line on stderr with a
//! non-zero exit, and a failed command changes nothing.

mod common;

use common::{Daemon, Netns, TempDir, require_root, tapnet_bin};
use std::process::Command;

/// Everything the daemon reports about its networks, to compare before and after.
fn snapshot(daemon: &Daemon) -> serde_json::Value {
    daemon.json(&["network", "ls", "--json"])
}

/// Runs each command, expecting it to fail with one line containing the given text and
/// to leave the daemon's state as it was.
fn assert_fail_unchanged(daemon: &Daemon, cases: &[(Vec<&str>, &str)]) {
    let before = snapshot(daemon);
    for (args, expected) in cases {
        let err = daemon.cli_err(args);
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
        assert_one_line(&err);
        assert_eq!(
            snapshot(daemon),
            before,
            "{args:?} changed the daemon's state"
        );
    }
}

fn assert_one_line(err: &str) {
    assert!(err.starts_with("tapnet: "), "{err}");
    assert_eq!(err.lines().count(), 1, "error is not one line: {err}");
}

#[test]
fn daemon_not_running_is_a_clear_error() {
    let dir = TempDir::new();
    let socket = dir.0.join("nothing.sock");
    let out = Command::new(tapnet_bin())
        .args(["network", "ls", "--control"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("daemon not running"), "{err}");
    assert_one_line(err.trim_end());
}

#[test]
fn network_errors_change_nothing() {
    if !require_root("network_errors_change_nothing") {
        return;
    }
    let daemon = Daemon::start("auto");
    daemon.cli_ok(&[
        "network",
        "create",
        "a",
        "--subnet",
        "10.210.0.0/24",
        "--mtu",
        "9000",
    ]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["network", "create", "a", "--subnet", "10.211.0.0/24"],
            "already exists",
        ),
        (
            vec!["network", "create", "b", "--subnet", "10.210.0.0/16"],
            "overlaps network \"a\"",
        ),
        (
            vec!["network", "create", "b", "--subnet", "10.211.0.0/33"],
            "invalid subnet",
        ),
        (
            vec!["network", "create", "b", "--subnet", "nonsense"],
            "invalid subnet",
        ),
        (
            vec!["network", "create", "b", "--subnet", "10.211.0.9/24"],
            "host bits",
        ),
        (
            vec![
                "network",
                "create",
                "b",
                "--subnet",
                "10.211.0.0/24",
                "--gateway",
                "10.9.9.9",
            ],
            "not a host address",
        ),
        (
            vec![
                "network",
                "create",
                "b",
                "--subnet",
                "10.211.0.0/24",
                "--mtu",
                "70000",
            ],
            "invalid MTU",
        ),
        (vec!["network", "rm", "nope"], "network \"nope\" not found"),
        (vec!["network", "inspect", "nope"], "not found"),
        (vec!["macs", "nope"], "not found"),
        (
            vec!["disconnect", "a", "ghost"],
            "container \"ghost\" not found",
        ),
    ];
    assert_fail_unchanged(&daemon, &cases);
    let inspect = daemon.json(&["network", "inspect", "a"]);
    assert_eq!(inspect["subnet"], "10.210.0.0/24");
    assert_eq!(inspect["gateway"], "10.210.0.1");
    assert_eq!(inspect["mtu"], 9000);
}

#[test]
fn connect_errors_change_nothing() {
    if !require_root("connect_errors_change_nothing") {
        return;
    }
    let daemon = Daemon::start("auto");
    daemon.cli_ok(&["network", "create", "a", "--subnet", "10.212.0.0/30"]);
    daemon.cli_ok(&["network", "create", "b", "--subnet", "10.213.0.0/24"]);
    let (one, two) = (Netns::new(), Netns::new());
    let connected = daemon.json(&[
        "connect",
        "a",
        "--netns",
        &one.path(),
        "--name",
        "one",
        "--alias",
        "uno",
        "--json",
    ]);
    // /30: .1 is the gateway, .2 the only container address.
    assert_eq!(connected["ip"], "10.212.0.2/30");
    assert_eq!(connected["aliases"][0], "uno");
    assert_eq!(connected["mac"], "02:42:0a:d4:00:02");
    assert_eq!(connected["interface"], "eth0");
    let two_path = two.path();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["connect", "nope", "--netns", &two_path],
            "network \"nope\" not found",
        ),
        (
            vec!["connect", "a", "--netns", &two_path],
            "no free address",
        ),
        (
            vec!["connect", "b", "--netns", &two_path, "--ip", "10.212.0.2"],
            "outside the subnet",
        ),
        (
            vec!["connect", "b", "--netns", &two_path, "--name", "one"],
            "already in use",
        ),
        (
            vec!["connect", "b", "--netns", "/run/netns/does-not-exist"],
            "not found",
        ),
        (vec!["connect", "b", "--pid", "999999999"], "not found"),
        (
            vec!["connect", "b", "--netns", &two_path, "--ifname", "bad/name"],
            "invalid interface name",
        ),
        (
            vec![
                "connect",
                "b",
                "--netns",
                &two_path,
                "--mac",
                "ff:ff:ff:ff:ff:ff",
            ],
            "invalid MAC",
        ),
        (vec!["network", "rm", "a"], "active endpoints"),
    ];
    assert_fail_unchanged(&daemon, &cases);
    assert!(
        !two.has_link("eth0"),
        "a failed connect left a device behind"
    );

    // Address in use: a second container asks for one's address on network b.
    daemon.cli_ok(&["connect", "b", "--netns", &one.path(), "--ip", "10.213.0.5"]);
    let err = daemon.cli_err(&["connect", "b", "--netns", &two_path, "--ip", "10.213.0.5"]);
    assert!(err.contains("already in use"), "{err}");
    // The same namespace joined b as the same container, on its next interface.
    let inspect = daemon.json(&["network", "inspect", "b"]);
    assert_eq!(inspect["containers"][0]["name"], "one");
    assert_eq!(inspect["containers"][0]["interface"], "eth1");
}

/// A client may not send garbage: the daemon answers with an error and keeps serving.
#[test]
fn malformed_request_gets_an_error() {
    if !require_root("malformed_request_gets_an_error") {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let daemon = Daemon::start("epoll");
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.control).unwrap();
    stream.write_all(b"{\"bogus\": 1}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    assert!(
        line.contains("\"error\"") && line.contains("invalid request"),
        "{line}"
    );
    daemon.cli_ok(&["network", "ls"]);
}
