//! The slirp4netns JSON API (`--api-socket`): one request per connection on a unix
//! stream socket (complete when the client shuts its write side down or the bytes
//! form one JSON value), requests are under 4096 bytes, every client is served at
//! once (none waits for another, each has 5 s to send its request), and the reply
//! is `{"return":...}` or `{"error":{"desc":"..."}}` with slirp4netns's
//! descriptions, byte for byte (see its `api.c`).
//!
//! Requests:
//! - `add_hostfwd` `{"proto":"tcp|udp|tcp4|udp4|tcp6|udp6","host_addr":"0.0.0.0",
//!   "host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}` → `{"return":{"id":N}}`.
//!   `host_addr` defaults to 0.0.0.0 and `guest_addr` to the configured guest address
//!   (empty strings count as absent, as podman sends `"guest_addr":""`). Unlike
//!   slirp4netns, IPv6 host and guest addresses are accepted without `--enable-ipv6`.
//! - `list_hostfwd` → the entries. slirp4netns's code replies `{"entries":[...]}`
//!   while its manual documents `{"return":{"entries":[...]}}`; tapnet sends both
//!   keys, so clients written against either read the same list.
//! - `remove_hostfwd` `{"id":N}` → `{"return":{}}`.
//!
//! The protocol runs against the [`ForwardTable`] trait, implemented by the rootless
//! [`Stack`] and, in the tests, by a fake.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::PollFlags;
use rustix::fs::{Mode, OFlags};
use serde::Serialize;
use serde_json::Value;

use super::stack::{ForwardInfo, Stack};
use crate::clientset::{ClientSet, ClientStats, Expired, Frame, Framing, Limits, Polled};
use crate::engine::ForwardProto;

/// Requests must be shorter than this, as in slirp4netns.
pub(crate) const MAX_REQUEST: usize = 4096;

/// How long one client may take to send its request (from its connect), and to read
/// its reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The forwards the API manages.
pub(crate) trait ForwardTable {
    /// Adds one forward; returns its id. The error is one line.
    fn add(
        &self,
        proto: ForwardProto,
        host_addr: IpAddr,
        host_port: u16,
        guest_addr: IpAddr,
        guest_port: u16,
    ) -> Result<u32, String>;
    fn remove(&self, id: u32) -> Result<(), String>;
    fn list(&self) -> Vec<ForwardInfo>;
}

impl ForwardTable for Stack {
    fn add(
        &self,
        proto: ForwardProto,
        host_addr: IpAddr,
        host_port: u16,
        guest_addr: IpAddr,
        guest_port: u16,
    ) -> Result<u32, String> {
        self.add_forward(proto, host_addr, host_port, guest_addr, guest_port, 1)
    }
    fn remove(&self, id: u32) -> Result<(), String> {
        self.remove_forward(id)
    }
    fn list(&self) -> Vec<ForwardInfo> {
        self.forwards()
    }
}

/// What the API needs to know about the network.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ApiConfig {
    /// The default `guest_addr` (cidr + 100).
    pub(crate) guest_addr: Ipv4Addr,
    /// The default `guest_addr` of IPv6 forwards (fd00::100), with `--enable-ipv6`.
    pub(crate) guest_addr6: Option<std::net::Ipv6Addr>,
    /// `--enable-ipv6`: `tcp6`/`udp6` are accepted.
    pub(crate) ipv6: bool,
}

fn error(desc: &str) -> String {
    serde_json::json!({ "error": { "desc": desc } }).to_string()
}

fn add_error(what: &str) -> String {
    error(&format!("bad request: add_hostfwd: bad arguments.{what}"))
}

/// Handles one request (the bytes the client sent) and returns the reply.
pub(crate) fn handle_request(
    table: &dyn ForwardTable,
    config: ApiConfig,
    request: &[u8],
) -> String {
    if request.len() >= MAX_REQUEST {
        return error("bad request: too large message");
    }
    // parson stops at the first NUL, as the C string ends there.
    let text = request.split(|&b| b == 0).next().unwrap_or_default();
    let Ok(value) = serde_json::from_slice::<Value>(text) else {
        return error("bad request: cannot parse JSON");
    };
    let Some(object) = value.as_object() else {
        return error("bad request: json_object() failed");
    };
    let Some(execute) = object.get("execute").and_then(Value::as_str) else {
        return error("bad request: no execute found");
    };
    let arguments = object.get("arguments");
    let arg = |key: &str| arguments.and_then(|a| a.get(key));
    match execute {
        "add_hostfwd" => add_hostfwd(table, config, &arg),
        "list_hostfwd" => list_hostfwd(table),
        "remove_hostfwd" => remove_hostfwd(table, &arg),
        _ => error("bad request: unknown execute"),
    }
}

/// Which address families a `proto` allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

fn add_hostfwd<'a>(
    table: &dyn ForwardTable,
    config: ApiConfig,
    arg: &dyn Fn(&str) -> Option<&'a Value>,
) -> String {
    let proto_s = arg("proto").and_then(Value::as_str).unwrap_or_default();
    let (proto, family) = match proto_s {
        "tcp" => (ForwardProto::Tcp, Family::Any),
        "udp" => (ForwardProto::Udp, Family::Any),
        "tcp4" => (ForwardProto::Tcp, Family::V4),
        "udp4" => (ForwardProto::Udp, Family::V4),
        "tcp6" if config.ipv6 => (ForwardProto::Tcp, Family::V6),
        "udp6" if config.ipv6 => (ForwardProto::Udp, Family::V6),
        _ => return add_error("proto"),
    };
    let non_empty = |key: &str| arg(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let host_addr = match non_empty("host_addr") {
        None | Some("0.0.0.0" | "::" | "::0") => match family {
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        },
        Some(s) => match s.parse::<IpAddr>() {
            Ok(a) if family_ok(family, a) => a,
            _ => return add_error("host_addr"),
        },
    };
    let Some(host_port) = port(arg("host_port")) else {
        return add_error("host_port");
    };
    let Some(guest_port) = port(arg("guest_port")) else {
        return add_error("guest_port");
    };
    let guest_addr = match non_empty("guest_addr") {
        None if family == Family::V6 => match config.guest_addr6 {
            Some(a) => IpAddr::V6(a),
            None => return add_error("guest_addr"),
        },
        None => IpAddr::V4(config.guest_addr),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => return add_error("guest_addr"),
        },
    };
    match table.add(proto, host_addr, host_port, guest_addr, guest_port) {
        Ok(id) => serde_json::json!({ "return": { "id": id } }).to_string(),
        Err(e) => error(&format!(
            "bad request: add_hostfwd: slirp_add_hostxfwd failed: {e}"
        )),
    }
}

fn family_ok(family: Family, addr: IpAddr) -> bool {
    match family {
        Family::Any => true,
        Family::V4 => addr.is_ipv4(),
        Family::V6 => addr.is_ipv6(),
    }
}

/// A port: a JSON number in 1..=65535 (slirp4netns treats 0 and absence alike).
fn port(value: Option<&Value>) -> Option<u16> {
    let n = value?.as_f64()?;
    if n.fract() != 0.0 || !(1.0..=65535.0).contains(&n) {
        return None;
    }
    u16::try_from(n as u32).ok()
}

/// One entry as slirp4netns lists it: `host_addr` or `host_addr6` (and likewise the
/// guest address) by family.
#[derive(Serialize)]
struct Entry {
    id: u32,
    proto: ForwardProto,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_addr6: Option<String>,
    host_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_addr6: Option<String>,
    guest_port: u16,
}

fn split(addr: IpAddr) -> (Option<String>, Option<String>) {
    match addr {
        IpAddr::V4(a) => (Some(a.to_string()), None),
        IpAddr::V6(a) => (None, Some(a.to_string())),
    }
}

#[derive(Serialize)]
struct Entries {
    entries: Vec<Entry>,
}

#[derive(Serialize)]
struct ListReply {
    #[serde(rename = "return")]
    ret: Entries,
    entries: Vec<Entry>,
}

fn entries(table: &dyn ForwardTable) -> Vec<Entry> {
    let mut list = table.list();
    list.sort_by_key(|f| f.id);
    list.into_iter()
        .map(|f| {
            let (host_addr, host_addr6) = split(f.host_addr);
            let (guest_addr, guest_addr6) = split(f.guest_addr);
            Entry {
                id: f.id,
                proto: f.proto,
                host_addr,
                host_addr6,
                host_port: f.host_port,
                guest_addr,
                guest_addr6,
                guest_port: f.guest_port,
            }
        })
        .collect()
}

fn list_hostfwd(table: &dyn ForwardTable) -> String {
    let reply = ListReply {
        ret: Entries {
            entries: entries(table),
        },
        entries: entries(table),
    };
    serde_json::to_string(&reply).unwrap_or_else(|_| error("internal error"))
}

fn remove_hostfwd<'a>(table: &dyn ForwardTable, arg: &dyn Fn(&str) -> Option<&'a Value>) -> String {
    let bad_id = || error("bad request: remove_hostfwd: bad arguments.id");
    let Some(id) = arg("id")
        .and_then(Value::as_f64)
        .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
        .map(|n| n as u32)
    else {
        return bad_id();
    };
    if !table.list().iter().any(|f| f.id == id) {
        return bad_id();
    }
    match table.remove(id) {
        Ok(()) => r#"{"return":{}}"#.to_owned(),
        Err(e) => error(&format!(
            "bad request: remove_hostfwd: slirp_remove_hostxfwd failed: {e}"
        )),
    }
}

/// A request ends at the client's end of input, at [`MAX_REQUEST`] bytes, or as soon
/// as the bytes so far are one complete JSON object, array or string: slirp4netns
/// answers what its one `read` got, so a client that writes its request and waits
/// without shutting its write side down is answered too. At the deadline, what
/// arrived is answered as a request (`cannot parse JSON` for a truncated one, as
/// slirp4netns answers a short read).
#[derive(Clone, Copy, Debug)]
struct ApiFraming;

/// Whether `input` is a whole request: everything up to a NUL (where parson stops),
/// or one JSON value that cannot go on (an object, an array or a string).
fn is_complete(input: &[u8]) -> bool {
    if input.contains(&0) {
        return true;
    }
    let text = input.trim_ascii_end();
    matches!(text.last(), Some(b'}' | b']' | b'"'))
        && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
}

impl Framing for ApiFraming {
    fn max_request(&self) -> usize {
        MAX_REQUEST
    }

    fn frame(&self, input: &[u8], eof: bool) -> Frame {
        if eof || input.len() >= MAX_REQUEST || is_complete(input) {
            Frame::Request {
                len: input.len().min(MAX_REQUEST),
                last: true,
            }
        } else {
            Frame::Incomplete
        }
    }

    fn expired(&self, _input: &[u8]) -> Expired {
        Expired::AsRequest
    }
}

/// The listening API socket and its clients, all served at once (see
/// [`crate::clientset`]); removes its file on drop.
#[derive(Debug)]
pub(crate) struct ApiServer {
    clients: RefCell<ClientSet<ApiFraming>>,
    path: PathBuf,
    /// The socket's directory, opened at bind: the file is removed through it, so
    /// that it goes even from inside the sandbox, whose root does not show it.
    dir: Option<OwnedFd>,
}

impl ApiServer {
    /// Removes a stale file at `path` (as slirp4netns does, to avoid `EADDRINUSE`),
    /// binds and listens. Errors are worded as slirp4netns's.
    pub(crate) fn bind(path: &Path) -> Result<Self, String> {
        // sizeof(sun_path) is 108 with a terminating NUL.
        const SUN_PATH: usize = 108;
        let _ = std::fs::remove_file(path);
        if path.as_os_str().len() >= SUN_PATH {
            return Err(format!(
                "the specified API socket path is too long (>= {SUN_PATH})"
            ));
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("api_bindlisten: bind: {}", crate::nshelper::describe(&e)))?;
        let limits = Limits {
            request_deadline: CLIENT_TIMEOUT,
            ..Limits::default()
        };
        let clients = ClientSet::new(listener, ApiFraming, limits)
            .map_err(|e| format!("api_bindlisten: listen: {e}"))?;
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = rustix::fs::open(
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok();
        Ok(Self {
            clients: RefCell::new(clients),
            path: path.to_owned(),
            dir,
        })
    }

    /// Waits for the API socket, its clients and `extra` (see [`ClientSet::poll`]).
    pub(crate) fn poll(
        &self,
        extra: &[(BorrowedFd<'_>, PollFlags)],
        wait: Option<Duration>,
    ) -> io::Result<Polled> {
        self.clients.borrow_mut().poll(extra, wait)
    }

    /// Answers every complete request, in the order they completed.
    pub(crate) fn serve_ready(&self, table: &dyn ForwardTable, config: ApiConfig) {
        let mut clients = self.clients.borrow_mut();
        while let Some((id, request)) = clients.next_request() {
            if request.len() >= MAX_REQUEST {
                eprintln!(
                    "api_handler: too large message (>= {} bytes)",
                    request.len()
                );
            } else {
                eprintln!(
                    "api_handler: got request: {}",
                    String::from_utf8_lossy(&request).trim_end()
                );
            }
            let reply = handle_request(table, config, &request);
            clients.respond(id, reply.into_bytes());
        }
    }

    /// Accepts and serves what is pending now, without waiting.
    #[cfg(test)]
    pub(crate) fn serve_pending(&self, table: &dyn ForwardTable, config: ApiConfig) {
        if let Err(e) = self.poll(&[], Some(Duration::ZERO)) {
            eprintln!("api_handler: poll: {e}");
            return;
        }
        self.serve_ready(table, config);
    }

    /// The socket's counters.
    pub(crate) fn stats(&self) -> ClientStats {
        self.clients.borrow().stats()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let removed = match (&self.dir, self.path.file_name()) {
            (Some(dir), Some(name)) => {
                rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()).is_ok()
            }
            _ => false,
        };
        if !removed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// An in-memory forward table with slirp4netns's id numbering.
    #[derive(Default)]
    struct Fake {
        forwards: RefCell<Vec<ForwardInfo>>,
        next: RefCell<u32>,
        fail_add: Option<String>,
    }

    impl ForwardTable for Fake {
        fn add(
            &self,
            proto: ForwardProto,
            host_addr: IpAddr,
            host_port: u16,
            guest_addr: IpAddr,
            guest_port: u16,
        ) -> Result<u32, String> {
            if let Some(e) = &self.fail_add {
                return Err(e.clone());
            }
            let mut next = self.next.borrow_mut();
            *next += 1;
            self.forwards.borrow_mut().push(ForwardInfo {
                id: *next,
                proto,
                host_addr,
                host_port,
                guest_addr,
                guest_port,
            });
            Ok(*next)
        }
        fn remove(&self, id: u32) -> Result<(), String> {
            let mut f = self.forwards.borrow_mut();
            let before = f.len();
            f.retain(|x| x.id != id);
            if f.len() == before {
                return Err("no such forward".into());
            }
            Ok(())
        }
        fn list(&self) -> Vec<ForwardInfo> {
            self.forwards.borrow().clone()
        }
    }

    const CONFIG: ApiConfig = ApiConfig {
        guest_addr: Ipv4Addr::new(10, 0, 2, 100),
        guest_addr6: None,
        ipv6: false,
    };

    fn call(table: &Fake, request: &str) -> String {
        handle_request(table, CONFIG, request.as_bytes())
    }

    #[test]
    fn errors_are_worded_as_slirp4netns() {
        let t = Fake::default();
        let cases = [
            ("badjson", "bad request: cannot parse JSON"),
            ("", "bad request: cannot parse JSON"),
            ("42", "bad request: json_object() failed"),
            (r#"{"unexpectedjson": 42}"#, "bad request: no execute found"),
            (r#"{"execute": 42}"#, "bad request: no execute found"),
            (r#"{"execute": "bad"}"#, "bad request: unknown execute"),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}"#,
                "bad request: add_hostfwd: bad arguments.proto",
            ),
            (
                r#"{"execute": "add_hostfwd"}"#,
                "bad request: add_hostfwd: bad arguments.proto",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "tcp6","host_port":1,"guest_port":1}}"#,
                "bad request: add_hostfwd: bad arguments.proto",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "tcp","guest_port":80}}"#,
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "tcp","host_port":0,"guest_port":80}}"#,
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "tcp","host_port":70000,"guest_port":80}}"#,
                "bad request: add_hostfwd: bad arguments.host_port",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "udp","host_port":8080}}"#,
                "bad request: add_hostfwd: bad arguments.guest_port",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "tcp","host_addr":"x","host_port":8080,"guest_port":80}}"#,
                "bad request: add_hostfwd: bad arguments.host_addr",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "tcp4","host_addr":"::1","host_port":8080,"guest_port":80}}"#,
                "bad request: add_hostfwd: bad arguments.host_addr",
            ),
            (
                r#"{"execute": "add_hostfwd", "arguments":{"proto": "tcp","host_port":8080,"guest_addr":"10.0.2","guest_port":80}}"#,
                "bad request: add_hostfwd: bad arguments.guest_addr",
            ),
            (
                r#"{"execute": "remove_hostfwd", "arguments":{"id": 1}}"#,
                "bad request: remove_hostfwd: bad arguments.id",
            ),
            (
                r#"{"execute": "remove_hostfwd"}"#,
                "bad request: remove_hostfwd: bad arguments.id",
            ),
        ];
        for (request, desc) in cases {
            let reply = call(&t, request);
            assert_eq!(
                reply,
                format!(r#"{{"error":{{"desc":"{desc}"}}}}"#),
                "{request}"
            );
        }
        let big = vec![b' '; MAX_REQUEST];
        assert_eq!(
            handle_request(&t, CONFIG, &big),
            r#"{"error":{"desc":"bad request: too large message"}}"#
        );
        assert!(t.list().is_empty());
    }

    #[test]
    fn add_list_remove_round_trip_with_defaults() {
        let t = Fake::default();
        // podman's request: guest_addr is present but empty, a newline follows.
        let reply = call(
            &t,
            "{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_addr\":\"\",\
             \"host_port\":8080,\"guest_addr\":\"\",\"guest_port\":80}}\n",
        );
        assert_eq!(reply, r#"{"return":{"id":1}}"#);
        let reply = call(
            &t,
            r#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"127.0.0.1","host_port":5353,"guest_addr":"10.0.2.50","guest_port":53}}"#,
        );
        assert_eq!(reply, r#"{"return":{"id":2}}"#);
        let entries = r#"[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80},{"id":2,"proto":"udp","host_addr":"127.0.0.1","host_port":5353,"guest_addr":"10.0.2.50","guest_port":53}]"#;
        assert_eq!(
            call(&t, r#"{"execute": "list_hostfwd"}"#),
            format!(r#"{{"return":{{"entries":{entries}}},"entries":{entries}}}"#)
        );
        assert_eq!(
            call(&t, r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#),
            r#"{"return":{}}"#
        );
        let list: Value = serde_json::from_str(&call(&t, r#"{"execute":"list_hostfwd"}"#)).unwrap();
        assert_eq!(list["entries"].as_array().unwrap().len(), 1);
        assert_eq!(list["return"]["entries"][0]["id"], 2);
    }

    #[test]
    fn ipv6_addresses_are_listed_under_the_6_keys() {
        let t = Fake::default();
        let reply = call(
            &t,
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":8080,"guest_port":80}}"#,
        );
        assert_eq!(reply, r#"{"return":{"id":1}}"#);
        let list: Value = serde_json::from_str(&call(&t, r#"{"execute":"list_hostfwd"}"#)).unwrap();
        let entry = &list["entries"][0];
        assert_eq!(entry["host_addr6"], "::1");
        assert_eq!(entry["guest_addr"], "10.0.2.100");
        assert!(entry.get("host_addr").is_none());
        // tcp6 needs --enable-ipv6, and then a guest address.
        let v6 = ApiConfig {
            ipv6: true,
            ..CONFIG
        };
        let reply = handle_request(
            &t,
            v6,
            br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_port":8081,"guest_port":80}}"#,
        );
        assert_eq!(
            reply,
            r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_addr"}}"#
        );
        let reply = handle_request(
            &t,
            v6,
            br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_addr":"0.0.0.0","host_port":8081,"guest_addr":"fd00::100","guest_port":80}}"#,
        );
        assert_eq!(reply, r#"{"return":{"id":2}}"#);
        let f = &t.list()[1];
        assert_eq!(f.host_addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn table_errors_are_reported_in_desc() {
        let t = Fake {
            fail_add: Some("address 0.0.0.0:8080 in use".into()),
            ..Fake::default()
        };
        let reply = call(
            &t,
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}}"#,
        );
        assert_eq!(
            reply,
            r#"{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostxfwd failed: address 0.0.0.0:8080 in use"}}"#
        );
    }

    #[test]
    fn serves_a_client_over_a_socket() {
        let dir = std::env::temp_dir().join(format!("tapnet-api-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let server = ApiServer::bind(&path).unwrap();
        let t = Fake::default();
        let mut client = UnixStream::connect(&path).unwrap();
        client
            .write_all(br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}}"#)
            .unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        server.serve_pending(&t, CONFIG);
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, r#"{"return":{"id":1}}"#);
        drop(server);
        assert!(!path.exists(), "the socket file is removed on drop");
        let long = dir.join("x".repeat(120));
        assert_eq!(
            ApiServer::bind(&long).unwrap_err(),
            "the specified API socket path is too long (>= 108)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_request_is_complete_at_one_json_value_a_nul_eof_or_4096_bytes() {
        let f = ApiFraming;
        let complete = |input: &[u8]| f.frame(input, false) != Frame::Incomplete;
        assert!(complete(br#"{"execute":"list_hostfwd"}"#));
        assert!(complete(b"{\"execute\":\"list_hostfwd\"}\n"));
        assert!(complete(br#"[1]"#) && complete(br#""text""#));
        assert!(complete(b"{\"exec\0more"), "parson stops at a NUL");
        for partial in [
            &b""[..],
            b"{",
            br#"{"execute":"list_hostfwd""#,
            b"42",
            b"badjson",
        ] {
            assert!(!complete(partial), "{partial:?}");
            assert_eq!(
                f.frame(partial, true),
                Frame::Request {
                    len: partial.len(),
                    last: true
                }
            );
        }
        // A closing brace that does not close the value.
        assert!(!complete(br#"{"a":"}"#));
        let big = vec![b' '; MAX_REQUEST + 10];
        assert_eq!(
            f.frame(&big, false),
            Frame::Request {
                len: MAX_REQUEST,
                last: true
            }
        );
        assert_eq!(f.expired(b"{\"exe"), Expired::AsRequest);
    }

    #[test]
    fn a_client_that_keeps_its_write_side_open_is_answered() {
        let dir = std::env::temp_dir().join(format!("tapnet-api-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let server = ApiServer::bind(&path).unwrap();
        let t = Fake::default();
        // A stalled client first: it must not hold up the next.
        let _stalled = UnixStream::connect(&path).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(br#"{"execute":"list_hostfwd"}"#).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for _ in 0..3 {
            server.poll(&[], Some(Duration::from_millis(20))).unwrap();
            server.serve_ready(&t, CONFIG);
        }
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, r#"{"return":{"entries":[]},"entries":[]}"#);
        let stats = server.stats();
        assert_eq!((stats.accepted, stats.requests, stats.connected), (2, 1, 2));
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
