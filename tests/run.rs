//! `tapnet run` as an unprivileged user (and as root): exit statuses, the TAP inside,
//! and the `-p` errors. The runs need root only to become user nobody (`setpriv`);
//! tapnet itself runs unprivileged and creates its own namespaces, which die with it.

mod common;

use common::{require_root, skipped, tapnet_bin};
use std::process::{Command, Output, Stdio};

use common::NOBODY;

/// Whether unprivileged users can open /dev/net/tun (scripts/test.sh makes it 0666).
fn tun_usable(test: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata("/dev/net/tun") {
        Ok(m) if m.permissions().mode() & 0o006 == 0o006 => true,
        _ => {
            skipped(&format!(
                "{test}: /dev/net/tun is not usable by users (run scripts/test.sh as root)"
            ));
            false
        }
    }
}

/// `tapnet run ARGS` as nobody (or as root with `as_root`), with a time limit.
fn tapnet_run(as_root: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("60");
    if !as_root {
        cmd.args([
            "setpriv",
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ]);
    }
    cmd.arg(tapnet_bin())
        .arg("run")
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run tapnet")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn exit_statuses_are_the_commands() {
    let test = "exit_statuses_are_the_commands";
    if !require_root(test) || !tun_usable(test) {
        return;
    }
    let out = tapnet_run(false, &["--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = tapnet_run(false, &["--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let out = tapnet_run(false, &["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15), "{}", text(&out));
    let out = tapnet_run(false, &["--", "/no/such/command-xyz", "arg"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("tapnet: /no/such/command-xyz: No such file or directory"),
        "{}",
        text(&out)
    );
    let out = tapnet_run(false, &["--", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out));
}

#[test]
fn the_command_sees_tap0_configured_like_slirp4netns() {
    let test = "the_command_sees_tap0_configured_like_slirp4netns";
    if !require_root(test) || !tun_usable(test) {
        return;
    }
    let out = tapnet_run(
        false,
        &[
            "--",
            "sh",
            "-c",
            "ip -o addr show tap0; ip -o link show tap0; ip route; id -u; cat /etc/resolv.conf",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("inet 10.0.2.100/24"), "{stdout}");
    assert!(stdout.contains("mtu 65520"), "{stdout}");
    assert!(stdout.contains("default via 10.0.2.2 dev tap0"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l == "0"),
        "root in the namespace: {stdout}"
    );
    assert!(stdout.contains("nameserver 10.0.2.3"), "{stdout}");
}

#[test]
fn options_change_the_network() {
    let test = "options_change_the_network";
    if !require_root(test) || !tun_usable(test) {
        return;
    }
    let out = tapnet_run(
        false,
        &[
            "--mtu",
            "1500",
            "--cidr",
            "10.8.0.0/24",
            "--",
            "ip",
            "-o",
            "addr",
            "show",
            "tap0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inet 10.8.0.100/24"),
        "{}",
        text(&out)
    );
}

#[test]
fn works_as_root_too() {
    let test = "works_as_root_too";
    if !require_root(test) {
        return;
    }
    let out = tapnet_run(true, &["--", "sh", "-c", "ip -o addr show tap0; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.0.2.100/24"));
}

#[test]
fn bad_publish_specs_are_refused_before_anything_starts() {
    for (spec, message) in [
        (
            "8000-8010:80-85",
            "host port range 8000-8010 and container port range 80-85 have different lengths",
        ),
        ("::1:8080:80", "write IPv6 host addresses in brackets"),
        ("8080:80/sctp", "unknown protocol \"sctp\""),
    ] {
        let out = Command::new(tapnet_bin())
            .args(["run", "-p", spec, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{spec}: {}",
            text(&out)
        );
    }
    let out = Command::new(tapnet_bin()).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a command is required");
}
