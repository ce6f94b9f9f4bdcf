//! What survives a restart. After every command that changes them, networks and
//! endpoints are written to the state directory ([`crate::control::state`]); the
//! daemon's TAPs are persistent. A restarted daemon takes up what its state directory
//! holds: the networks (same
//! ids, subnets and options), then each endpoint a killed daemon left, in its own
//! network namespace (found again by its identity), with the same port id, names and
//! addresses: its persistent TAP or its veth's host end attached again, the embedded
//! DNS sockets bound again, names, publications and DHCP leases as before. The
//! container does nothing and notices a short outage.
//!
//! Every entry that cannot be restored is reported in one line and skipped; none stops
//! the daemon. An endpoint whose namespace, or whose device, is gone is dropped (its
//! file removed); one whose network was not restored keeps its file, for a daemon
//! started with options that allow the network.

use std::collections::BTreeSet;
use std::path::Path;

use tapnet_switch::{NetworkId, PortId};
use tracing::{info, warn};

use super::Daemon;
use crate::control::proto::NetnsSpec;
use crate::control::state::EndpointRecord;
use crate::port::{self, AttachedPort, DnsSockets, InterfaceConfig, NetnsId, NetnsTarget};
use crate::port::{PortError, PortKind};

/// Where `ip netns` keeps its namespaces, searched for a namespace that moved.
const IP_NETNS_DIR: &str = "/run/netns";

/// How a connect gets its port: a new device, or the one a killed daemon left.
#[derive(Debug)]
pub(super) enum Attach<'a> {
    New,
    /// Restoring `record`, whose namespace is at `target`.
    Again {
        record: &'a EndpointRecord,
        target: NetnsTarget,
    },
}

/// A 20-bit tag of the state directory for the veth host ends' names: the same for a
/// restarted daemon (whose names are in its state files anyway), and different, but
/// for chance, between daemons with their own state directories, so their names do
/// not meet on the host. FNV-1a of the path.
pub(super) fn veth_tag(state_dir: &Path) -> u32 {
    use std::os::unix::ffi::OsStrExt;
    let path = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    let hash = path
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    ((hash >> 44) ^ (hash & 0xf_ffff)) as u32 & 0xf_ffff
}

/// Attaches a port: a new device, or again the one `again` describes.
pub(super) fn attach_port(
    target: &NetnsTarget,
    kind: PortKind,
    config: &InterfaceConfig,
    host_ifname: &str,
    again: Option<&EndpointRecord>,
    dns: bool,
) -> Result<(AttachedPort, Option<DnsSockets>), PortError> {
    match (again, dns) {
        (Some(record), _) => {
            port::reattach(target, kind, config, record.host_ifname.as_deref(), dns)
        }
        (None, true) => port::attach_with_dns(target, kind, config, host_ifname)
            .map(|(port, sockets)| (port, Some(sockets))),
        (None, false) => port::attach(target, kind, config, host_ifname).map(|port| (port, None)),
    }
}

impl Daemon {
    /// Writes the endpoint's state file, with its publications as they are now.
    pub(super) fn save_endpoint(&mut self, port: PortId) {
        let Some(record) = self.records.get_mut(&port) else {
            return;
        };
        record.connect.publish = self
            .registry
            .publications()
            .iter()
            .filter(|p| p.port == port)
            .map(|p| p.spec.to_string())
            .collect();
        if let Err(e) = self.state.write_endpoint(record) {
            warn!("state: keep endpoint {}: {e}", record.container());
        }
    }

    /// Forgets the endpoint's state file.
    pub(super) fn forget_endpoint(&mut self, port: PortId) {
        self.records.remove(&port);
        if let Err(e) = self.state.remove_endpoint(port.0) {
            warn!("state: forget endpoint on port {}: {e}", port.0);
        }
    }

    /// Restores networks and endpoints from the state directory.
    pub(super) fn restore(&mut self) {
        let loaded = self.state.load();
        for problem in &loaded.problems {
            warn!("{problem}");
        }
        let mut networks = BTreeSet::new();
        for record in &loaded.networks {
            let name = &record.create.name;
            match self.network_create_as(&record.create, Some(NetworkId(record.id))) {
                Ok(_) => {
                    networks.insert(name.clone());
                }
                Err(e) => warn!(
                    "state: network {name}: {e}; not restored (its file is kept for a daemon whose options allow it)"
                ),
            }
        }
        let mut endpoints = 0;
        for (path, record) in &loaded.endpoints {
            let (container, network) = (record.container(), &record.connect.network);
            if !networks.contains(network) {
                warn!(
                    "state: endpoint {container} of network {network}: the network was not restored; skipped ({} kept)",
                    path.display()
                );
                continue;
            }
            match self.restore_endpoint(record) {
                Ok(()) => endpoints += 1,
                Err(e) => {
                    warn!(
                        "state: endpoint {container} of network {network}: {e} ({} removed)",
                        path.display()
                    );
                    if let Err(e) = self.state.remove_endpoint(record.port) {
                        warn!("state: {e}");
                    }
                }
            }
        }
        // The port ids of entries not restored are not handed out again while their
        // files exist (nor those of unreadable ones).
        if let Some(highest) = loaded.highest_port {
            self.registry.skip_port(PortId(highest));
        }
        if !loaded.networks.is_empty() || !loaded.endpoints.is_empty() {
            info!(
                networks = networks.len(),
                endpoints,
                state = %self.state.path().display(),
                "restored"
            );
        }
    }

    fn restore_endpoint(&mut self, record: &EndpointRecord) -> Result<(), String> {
        let (spec, target) = find_netns(&record.connect.netns, record.netns_id)
            .ok_or("its network namespace no longer exists")?;
        let mut req = record.connect.clone();
        req.netns = spec;
        self.connect_as(
            &req,
            &Attach::Again {
                record,
                target: target.clone(),
            },
        )?;
        Ok(())
    }
}

/// Finds the network namespace `id` again: where it was (`spec`), else in a process
/// (`/proc/PID/ns/net`; the stored PID may be gone or another process's now) or under
/// `/run/netns`. Returns where it is now.
fn find_netns(spec: &NetnsSpec, id: NetnsId) -> Option<(NetnsSpec, NetnsTarget)> {
    let stored = match spec {
        NetnsSpec::Pid(pid) => NetnsTarget::Pid(*pid),
        NetnsSpec::Path(path) => NetnsTarget::Path(path.into()),
    };
    if port::netns_id(&stored).is_ok_and(|found| found == id) {
        return Some((spec.clone(), stored));
    }
    let identity = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        // stat follows the nsfs link to the namespace itself.
        std::fs::metadata(path).ok().map(|m| NetnsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    };
    let pids = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    for pid in pids {
        if identity(Path::new(&format!("/proc/{pid}/ns/net"))) == Some(id) {
            return Some((NetnsSpec::Pid(pid), NetnsTarget::Pid(pid)));
        }
    }
    let named = std::fs::read_dir(IP_NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    for path in named {
        if identity(&path) == Some(id) {
            let text = path.to_string_lossy().into_owned();
            return Some((NetnsSpec::Path(text), NetnsTarget::Path(path)));
        }
    }
    None
}
