//! Hostile clients of the daemon's control socket: silent connections, a client that
//! trickles a byte at a time, one that sends half a line, one that asks and never
//! reads its answers, more connections than the daemon keeps, an over-long line.
//! Other clients are answered at once all the while, the datapath carries traffic,
//! and the control counters of `tapnet stats` move.

mod common;

use common::{Daemon, Netns, require_root, wait_for};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a command may take while hostile clients are connected: a liveness
/// bound well under the daemon's 5 s request deadline (a client blocked behind a
/// stalled one would wait for that deadline), not a speed measurement.
const ANSWERED_WITHIN: Duration = Duration::from_secs(2);

fn control_stats(daemon: &Daemon) -> serde_json::Value {
    daemon.json(&["stats", "--json"])["control"].clone()
}

fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// Reads what the daemon sends until it closes (at most 10 s).
fn read_to_close(mut stream: &UnixStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// Runs a client command that must succeed, within [`ANSWERED_WITHIN`].
fn answered(daemon: &Daemon, args: &[&str]) -> String {
    let start = Instant::now();
    let out = daemon.cli_ok(args);
    let took = start.elapsed();
    assert!(
        took < ANSWERED_WITHIN,
        "tapnet {args:?} took {took:?} with hostile clients connected"
    );
    out
}

#[test]
fn stalled_and_slow_clients_never_block_the_control_plane() {
    if !require_root("stalled_and_slow_clients_never_block_the_control_plane") {
        return;
    }
    let daemon = Daemon::start("auto");
    daemon.cli_ok(&["network", "create", "a", "--subnet", "10.230.0.0/24"]);
    let (one, two) = (Netns::new(), Netns::new());
    daemon.cli_ok(&["connect", "a", "--netns", &one.path(), "--name", "one"]);
    daemon.cli_ok(&["connect", "a", "--netns", &two.path(), "--name", "two"]);
    let before = control_stats(&daemon);

    // Twenty clients that connect and say nothing (`socat - UNIX-CONNECT:$SOCK &`).
    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&daemon.control).unwrap())
        .collect();
    // Half a line, then nothing.
    let mut half = UnixStream::connect(&daemon.control).unwrap();
    half.write_all(br#"{"network_inspect":{"name":"#).unwrap();
    // A space every 100 ms, never a newline (`while sleep 1; do printf ' '; done`).
    let trickler = UnixStream::connect(&daemon.control).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickling = {
        let (mut stream, stop) = (trickler.try_clone().unwrap(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && stream.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Thousands of requests whose answers it never reads: its answers fill the
    // socket, and the daemon must not wait for it to read them.
    let hog = UnixStream::connect(&daemon.control).unwrap();
    hog.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = (&hog).write_all(&b"\"stats\"\n".repeat(5000));

    for i in 0..5 {
        let list = answered(&daemon, &["network", "ls"]);
        assert!(list.contains("10.230.0.0/24"), "{list}");
        let name = format!("n{i}");
        let subnet = format!("10.231.{i}.0/24");
        answered(&daemon, &["network", "create", &name, "--subnet", &subnet]);
        answered(&daemon, &["network", "inspect", &name]);
    }
    // They were all still connected while the others were answered.
    let during = control_stats(&daemon);
    assert!(
        counter(&during, "connected") >= 23,
        "hostile clients still connected: {during}"
    );
    assert_eq!(
        counter(&during, "timed_out"),
        counter(&before, "timed_out"),
        "{during}"
    );
    // And the datapath does not notice.
    assert!(
        one.ping("10.230.0.3"),
        "ping between containers during the stall"
    );

    // Each stalled client is cut off at its deadline with one error line.
    for stream in silent.iter().take(3).chain([&half, &trickler]) {
        let text = read_to_close(stream);
        assert_eq!(text, "{\"error\":\"request not complete within 5 s\"}\n");
    }
    stop.store(true, Ordering::Relaxed);
    trickling.join().unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || {
            let s = control_stats(&daemon);
            // Cut off and closed: only this stats client (and the hog's socket, if
            // it is still being drained) remain.
            counter(&s, "timed_out") >= counter(&before, "timed_out") + 22
                && counter(&s, "unread_responses") > counter(&before, "unread_responses")
                && counter(&s, "connected") <= 1
        }),
        "counters: {}",
        control_stats(&daemon)
    );
    let after = control_stats(&daemon);
    assert!(counter(&after, "requests") > counter(&before, "requests") + 15);
    drop(hog);
    let list = daemon.cli_ok(&["network", "ls"]);
    assert_eq!(list.lines().count(), 7, "{list}");
    let text = daemon.cli_ok(&["stats"]);
    assert!(text.contains("control: "), "{text}");
}

#[test]
fn more_clients_than_the_bound_evict_the_longest_waiting() {
    if !require_root("more_clients_than_the_bound_evict_the_longest_waiting") {
        return;
    }
    let daemon = Daemon::start("epoll");
    let first = UnixStream::connect(&daemon.control).unwrap();
    // Let the daemon accept it before the crowd arrives.
    assert!(wait_for(Duration::from_secs(5), || counter(
        &control_stats(&daemon),
        "connected"
    ) >= 2));
    let crowd: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&daemon.control).unwrap())
        .collect();
    answered(&daemon, &["network", "ls"]);
    answered(
        &daemon,
        &["network", "create", "x", "--subnet", "10.232.0.0/24"],
    );
    let text = read_to_close(&first);
    assert_eq!(
        text,
        "{\"error\":\"connection closed: more than 128 clients at once, and this one waited \
         longest\"}\n"
    );
    let stats = control_stats(&daemon);
    assert!(counter(&stats, "evicted") >= 70, "{stats}");
    assert!(counter(&stats, "connected") <= 128, "{stats}");
    drop(crowd);
}

#[test]
fn an_over_long_request_gets_one_error_line() {
    if !require_root("an_over_long_request_gets_one_error_line") {
        return;
    }
    let daemon = Daemon::start("epoll");
    let mut stream = UnixStream::connect(&daemon.control).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(&vec![b' '; 100_000]);
    let text = read_to_close(&stream);
    assert_eq!(text, "{\"error\":\"request longer than 65536 bytes\"}\n");
    // Requests pipelined on one connection are answered in order, then the last one
    // without a newline at the end of input.
    let mut stream = UnixStream::connect(&daemon.control).unwrap();
    stream
        .write_all(b"\"network_list\"\n{\"bogus\":1}\n\"publish_list\"")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let text = read_to_close(&stream);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], r#"{"ok":[]}"#);
    assert!(lines[1].contains("invalid request"), "{text}");
    assert_eq!(lines[2], r#"{"ok":[]}"#);
    assert_eq!(counter(&control_stats(&daemon), "too_long"), 1);
}
