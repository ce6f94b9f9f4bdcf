//! The daemon's state on disk, so that a restarted daemon (after `kill -9`, a crash or
//! an orderly stop) finds its networks and, after a crash, its containers again.
//!
//! One JSON file per entry, so that one bad entry never spoils the others:
//!
//! - `networks/NAME.json`: a network's `network create` request and the id it got
//!   ([`NetworkRecord`]);
//! - `endpoints/PORT.json`: one container on one network ([`EndpointRecord`]): the
//!   `connect` request as it was resolved (name, interface, address and MAC filled in,
//!   its publications now, normalised), the namespace's identity, the veth's host end,
//!   MTU and offload.
//!
//! Every file has `"version": 1`; fields added later have defaults, so older files
//! still read. Writes are atomic (`NAME.tmp` in the same directory, fsync, rename,
//! fsync of the directory): a file is either the old one or the new one, never half
//! written. A file that cannot be read or is not valid JSON is reported and renamed to
//! `NAME.bad` (kept for a look, never read again); a file of another version is
//! reported and left as it is (the tapnet that wrote it may read it again).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::proto::{Connect, NetworkCreate};
use crate::port::NetnsId;

/// The version of the files this tapnet writes and reads.
pub(crate) const STATE_VERSION: u32 = 1;

/// Files larger than this are not state files of ours.
const MAX_FILE_LEN: u64 = 1 << 20;

const NETWORKS: &str = "networks";
const ENDPOINTS: &str = "endpoints";

/// `networks/NAME.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NetworkRecord {
    pub(crate) version: u32,
    /// The network's id in the switch (so its zone and gateway port stay the same).
    pub(crate) id: u32,
    /// The request, as the user gave it (the subnet parsed again on restore).
    #[serde(flatten)]
    pub(crate) create: NetworkCreate,
}

/// `endpoints/PORT.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EndpointRecord {
    pub(crate) version: u32,
    /// The switch port id.
    pub(crate) port: u32,
    /// The `connect` request as resolved: `name`, `ifname`, `ip`, `mac` and `aliases`
    /// as the endpoint has them, `netns` where the namespace was last found, and
    /// `publish` the endpoint's publications now, normalised
    /// (`HOSTIP:HOST:CONTAINER/PROTO`). A per-port option added to `Connect` is
    /// kept with it.
    #[serde(flatten)]
    pub(crate) connect: Connect,
    /// The namespace's identity (nsfs device and inode) when it was connected: a
    /// restarted daemon attaches only to that namespace.
    pub(crate) netns_id: NetnsId,
    /// A veth's host end.
    #[serde(default)]
    pub(crate) host_ifname: Option<String>,
    /// The IPv6 address, for a look (it follows from the IPv4 address and the network).
    #[serde(default)]
    pub(crate) ip6: Option<Ipv6Net>,
    pub(crate) mtu: u32,
    /// The port carries a `virtio_net_hdr` (offload); applied again to the new fd.
    #[serde(default)]
    pub(crate) offload: bool,
}

impl EndpointRecord {
    /// The container's name (always set in a record).
    pub(crate) fn container(&self) -> &str {
        self.connect.name.as_deref().unwrap_or("?")
    }
}

/// What [`StateDir::load`] found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) networks: Vec<NetworkRecord>,
    pub(crate) endpoints: Vec<(PathBuf, EndpointRecord)>,
    /// The highest port number among the endpoint files, read or not, so that a new
    /// endpoint never takes the file of one that could not be read.
    pub(crate) highest_port: Option<u32>,
    /// One line per file that was skipped.
    pub(crate) problems: Vec<String>,
}

/// The state directory, locked for this daemon.
#[derive(Debug)]
pub(crate) struct StateDir {
    root: PathBuf,
    /// `lock`, held with `flock(LOCK_EX)` while the daemon runs, so that two daemons
    /// (with different control sockets) never share one state directory.
    _lock: File,
}

/// The default state directory of a daemon: beside its control socket, named after
/// it (`/run/tapnet/control.sock.state`), so that daemons with different sockets never
/// share state and one restarted with the same command line finds its own.
pub(crate) fn default_state_dir(control: &Path) -> PathBuf {
    let mut name = control.as_os_str().to_owned();
    name.push(".state");
    PathBuf::from(name)
}

/// Why a file was skipped.
enum Bad {
    /// Unreadable or not ours: renamed to `.bad`.
    Corrupt(String),
    /// Another version: left alone.
    Version(u64),
}

impl StateDir {
    /// Opens the directory, creating it and its subdirectories (0700) if needed, and
    /// locks it; fails if another daemon holds it.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        for dir in [root.to_owned(), root.join(NETWORKS), root.join(ENDPOINTS)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", lock_path.display())))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| match e {
                rustix::io::Errno::WOULDBLOCK => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is in use by another tapnet daemon", root.display()),
                ),
                e => io::Error::new(
                    io::Error::from(e).kind(),
                    format!("lock {}: {e}", lock_path.display()),
                ),
            },
        )?;
        Ok(Self {
            root: root.to_owned(),
            _lock: lock,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    fn network_path(&self, name: &str) -> PathBuf {
        self.root.join(NETWORKS).join(format!("{name}.json"))
    }

    fn endpoint_path(&self, port: u32) -> PathBuf {
        self.root.join(ENDPOINTS).join(format!("{port}.json"))
    }

    pub(crate) fn write_network(&self, record: &NetworkRecord) -> io::Result<()> {
        write_atomic(&self.network_path(&record.create.name), record)
    }

    pub(crate) fn remove_network(&self, name: &str) -> io::Result<()> {
        remove_durably(&self.network_path(name))
    }

    pub(crate) fn write_endpoint(&self, record: &EndpointRecord) -> io::Result<()> {
        write_atomic(&self.endpoint_path(record.port), record)
    }

    pub(crate) fn remove_endpoint(&self, port: u32) -> io::Result<()> {
        remove_durably(&self.endpoint_path(port))
    }

    /// Reads every entry. Files that cannot be used are reported in
    /// [`Loaded::problems`], one line each, and skipped; leftover `.tmp` files of an
    /// interrupted write are removed (the rename never happened, the old file stands).
    pub(crate) fn load(&self) -> Loaded {
        let mut loaded = Loaded::default();
        for path in self.entries(NETWORKS, &mut loaded.problems) {
            let stem = file_stem(&path);
            match read_record::<NetworkRecord>(&path) {
                Ok(r) if r.create.name == stem => loaded.networks.push(r),
                Ok(r) => self.skip(
                    &path,
                    Bad::Corrupt(format!("names network {:?}, not {stem:?}", r.create.name)),
                    &mut loaded.problems,
                ),
                Err(bad) => self.skip(&path, bad, &mut loaded.problems),
            }
        }
        for path in self.entries(ENDPOINTS, &mut loaded.problems) {
            let stem = file_stem(&path);
            let number = stem.parse::<u32>().ok();
            if let Some(n) = number {
                loaded.highest_port = loaded.highest_port.max(Some(n));
            }
            match read_record::<EndpointRecord>(&path) {
                Ok(r) if Some(r.port) == number && r.connect.name.is_some() => {
                    loaded.endpoints.push((path, r));
                }
                Ok(r) => self.skip(
                    &path,
                    Bad::Corrupt(format!(
                        "port {} without a container name, or not {stem}",
                        r.port
                    )),
                    &mut loaded.problems,
                ),
                Err(bad) => self.skip(&path, bad, &mut loaded.problems),
            }
        }
        loaded.networks.sort_by_key(|n| n.id);
        loaded.endpoints.sort_by_key(|(_, e)| e.port);
        loaded
    }

    /// The `*.json` files of a subdirectory, sorted; stale `*.tmp` files go.
    fn entries(&self, sub: &str, problems: &mut Vec<String>) -> Vec<PathBuf> {
        let dir = self.root.join(sub);
        let listing = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("state directory {}: {e}", dir.display()));
                return Vec::new();
            }
        };
        let mut files = Vec::new();
        for entry in listing.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => files.push(path),
                Some("tmp") => {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        files.sort();
        files
    }

    fn skip(&self, path: &Path, bad: Bad, problems: &mut Vec<String>) {
        match bad {
            Bad::Corrupt(why) => {
                let mut renamed = path.as_os_str().to_owned();
                renamed.push(".bad");
                let renamed = PathBuf::from(renamed);
                let fate = match fs::rename(path, &renamed) {
                    Ok(()) => format!("renamed to {}", renamed.display()),
                    Err(e) => format!("could not be renamed: {e}"),
                };
                problems.push(format!(
                    "state file {}: {why}; skipped ({fate})",
                    path.display()
                ));
            }
            Bad::Version(v) => problems.push(format!(
                "state file {}: version {v}, this tapnet reads version {STATE_VERSION}; skipped",
                path.display()
            )),
        }
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads one record: its version first (so that a newer file is told apart from a
/// broken one), then the whole of it.
fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Bad> {
    let one_line = |e: &dyn std::fmt::Display| e.to_string().replace('\n', " ");
    let file = File::open(path).map_err(|e| Bad::Corrupt(format!("cannot be read: {e}")))?;
    let mut text = String::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| Bad::Corrupt(format!("cannot be read: {e}")))?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(Bad::Corrupt(format!("longer than {MAX_FILE_LEN} bytes")));
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Bad::Corrupt(format!("not valid JSON ({})", one_line(&e))))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(STATE_VERSION) => {}
        Some(v) => return Err(Bad::Version(v)),
        None => return Err(Bad::Corrupt("no version".to_owned())),
    }
    serde_json::from_value(value)
        .map_err(|e| Bad::Corrupt(format!("not a state entry ({})", one_line(&e))))
}

/// Writes `value` as JSON to `path` atomically: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory (rename(2); without
/// the last fsync a crash could lose the rename).
fn write_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
    }
    sync_parent(path)
}

/// Removes `path` (a missing file is fine) and makes the removal durable.
fn remove_durably(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir).and_then(|d| d.sync_all()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::NetnsSpec;
    use crate::port::PortKind;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("tapnet-state-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn network(name: &str, id: u32) -> NetworkRecord {
        NetworkRecord {
            version: STATE_VERSION,
            id,
            create: NetworkCreate {
                name: name.into(),
                subnet: "10.1.0.0/24".into(),
                gateway: None,
                mtu: Some(1400),
                icc: false,
                internal: false,
                masquerade: true,
                dhcp: true,
                subnet6: None,
                host_binding_ip: None,
            },
        }
    }

    fn endpoint(port: u32) -> EndpointRecord {
        EndpointRecord {
            version: STATE_VERSION,
            port,
            connect: Connect {
                network: "web".into(),
                netns: NetnsSpec::Path("/run/netns/a".into()),
                name: Some("a".into()),
                ifname: Some("eth0".into()),
                ip: Some("10.1.0.2".parse().unwrap()),
                mac: Some("02:42:0a:01:00:02".parse().unwrap()),
                kind: PortKind::Veth,
                aliases: vec!["www".into()],
                publish: vec!["127.0.0.1:8080:80/tcp".into()],
                // Saved and restored with the rest (a guarded port stays guarded).
                allow_spoofing: true,
            },
            netns_id: NetnsId { dev: 4, ino: 4026 },
            host_ifname: Some("tn12345v3".into()),
            ip6: None,
            mtu: 1500,
            offload: true,
        }
    }

    #[test]
    fn default_is_beside_the_control_socket() {
        assert_eq!(
            default_state_dir(Path::new("/run/tapnet/control.sock")),
            Path::new("/run/tapnet/control.sock.state")
        );
    }

    #[test]
    fn records_round_trip_and_are_removed() {
        let dir = TempDir::new("round-trip");
        let state = StateDir::open(&dir.0).unwrap();
        state.write_network(&network("web", 3)).unwrap();
        state.write_endpoint(&endpoint(7)).unwrap();
        state.write_endpoint(&endpoint(7)).unwrap();
        let loaded = state.load();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.networks.len(), 1);
        assert_eq!(loaded.networks[0].id, 3);
        assert_eq!(loaded.networks[0].create.mtu, Some(1400));
        assert!(loaded.networks[0].create.dhcp);
        let (_, e) = &loaded.endpoints[0];
        assert_eq!((e.port, e.container()), (7, "a"));
        assert_eq!(e.connect.publish, ["127.0.0.1:8080:80/tcp"]);
        assert_eq!(e.netns_id, NetnsId { dev: 4, ino: 4026 });
        assert_eq!(loaded.highest_port, Some(7));
        // The flattened request reads as a plain object, version first among equals.
        let text = fs::read_to_string(dir.0.join("endpoints/7.json")).unwrap();
        assert!(text.contains("\"version\": 1") && text.contains("\"network\": \"web\""));
        state.remove_endpoint(7).unwrap();
        state.remove_endpoint(7).unwrap();
        state.remove_network("web").unwrap();
        let loaded = state.load();
        assert!(loaded.networks.is_empty() && loaded.endpoints.is_empty());
    }

    #[test]
    fn bad_files_are_reported_one_line_each_and_skipped() {
        let dir = TempDir::new("bad");
        let state = StateDir::open(&dir.0).unwrap();
        state.write_network(&network("good", 0)).unwrap();
        let nets = dir.0.join(NETWORKS);
        fs::write(nets.join("broken.json"), "{\"version\": 1, \"id\": ").unwrap();
        fs::write(nets.join("future.json"), "{\"version\": 99, \"id\": 4}").unwrap();
        fs::write(nets.join("other.json"), "{\"version\": 1, \"id\": 5}").unwrap();
        let mut misnamed = network("elsewhere", 6);
        misnamed.create.name = "elsewhere".into();
        fs::write(
            nets.join("wrong.json"),
            serde_json::to_vec(&misnamed).unwrap(),
        )
        .unwrap();
        fs::write(nets.join("half.json.tmp"), "{").unwrap();
        let eps = dir.0.join(ENDPOINTS);
        fs::write(eps.join("12.json"), [0xff, 0xfe, 0x00]).unwrap();
        let loaded = state.load();
        let names: Vec<_> = loaded
            .networks
            .iter()
            .map(|n| n.create.name.as_str())
            .collect();
        assert_eq!(names, ["good"]);
        assert_eq!(loaded.problems.len(), 5, "{:#?}", loaded.problems);
        assert!(loaded.problems.iter().all(|p| !p.contains('\n')));
        let about = |file: &str| {
            loaded
                .problems
                .iter()
                .find(|p| p.contains(file))
                .unwrap_or_else(|| panic!("nothing about {file}: {:?}", loaded.problems))
                .clone()
        };
        assert!(about("broken.json").contains("not valid JSON"));
        assert!(about("future.json").contains("version 99"));
        assert!(about("other.json").contains("not a state entry"));
        assert!(about("wrong.json").contains("names network \"elsewhere\""));
        assert!(about("12.json").contains("renamed to"));
        // Corrupt files are set aside; a newer version's file stays for its tapnet.
        assert!(nets.join("broken.json.bad").exists() && !nets.join("broken.json").exists());
        assert!(nets.join("future.json").exists());
        assert!(!nets.join("half.json.tmp").exists());
        // The unreadable endpoint's port is not handed out again.
        assert_eq!(loaded.highest_port, Some(12));
        // Reported once: the next load sees only the newer version's file.
        assert_eq!(state.load().problems.len(), 1);
    }

    #[test]
    fn one_daemon_at_a_time() {
        let dir = TempDir::new("lock");
        let first = StateDir::open(&dir.0).unwrap();
        let err = StateDir::open(&dir.0).unwrap_err();
        assert!(
            err.to_string().contains("in use by another tapnet daemon"),
            "{err}"
        );
        drop(first);
        StateDir::open(&dir.0).unwrap();
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("private");
        let state = StateDir::open(&dir.0.join("nested")).unwrap();
        state.write_network(&network("web", 0)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.0.join("nested")), 0o700);
        assert_eq!(mode(&dir.0.join("nested/networks/web.json")), 0o600);
    }
}
