//! The `TAPNET_*` environment settings, read once (by `main`, or on first use) into
//! one configuration that the rest of the shell asks, so that no module reads the
//! environment on its own. They are for comparisons and tuning; the command lines
//! are the interface.
//!
//! - `TAPNET_BACKEND=epoll|uring`: the rootless datapath's backend (else auto);
//! - `TAPNET_OFFLOAD=0|tap`: no checksum/segmentation offload at all, or only on TAPs;
//! - `TAPNET_BUSY_POLL_US=N`: the most the datapath polls before it sleeps (0: never);
//! - `TAPNET_PIPELINES=N`: rootless pipelines (TAP queues), 1 to 16;
//! - `TAPNET_ENGINE=thread`: the rootless host-socket engine on a thread of its own;
//! - `TAPNET_MAX_HOST_FLOWS=N`: the rootless bound on host-socket flows;
//! - `TAPNET_DEBUG`: `tapnet run`'s child says why it left /etc/resolv.conf alone.

use std::sync::OnceLock;
use std::time::Duration;

use crate::datapath::BackendChoice;

/// Most pipelines (TAP queues) of one rootless stack.
pub(crate) const MAX_PIPELINES: u8 = crate::nshelper::MAX_QUEUES;

/// How long the datapath polls, at most, before it sleeps, unless told otherwise.
const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(100);

/// The settings. Values that fail to parse keep their message, for the command that
/// needs them to report (a bad `TAPNET_PIPELINES` fails `tapnet run`, not `tapnet
/// daemon`).
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    pub(crate) backend: BackendChoice,
    /// Offload on every port (`false`: `TAPNET_OFFLOAD=0`).
    pub(crate) offload: bool,
    /// Offload on AF_PACKET ports too (`false` also with `TAPNET_OFFLOAD=tap`).
    pub(crate) packet_offload: bool,
    pub(crate) busy_poll: Duration,
    pipelines: Result<u8, String>,
    pub(crate) engine_thread: bool,
    max_host_flows: Result<Option<usize>, String>,
    pub(crate) debug: bool,
}

static KNOBS: OnceLock<Knobs> = OnceLock::new();

impl Knobs {
    /// Reads the environment (see the module documentation).
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        let offload = var("TAPNET_OFFLOAD");
        Self {
            backend: match var("TAPNET_BACKEND").as_deref() {
                Some("epoll") => BackendChoice::Epoll,
                Some("uring") => BackendChoice::Uring,
                _ => BackendChoice::Auto,
            },
            offload: offload.as_deref() != Some("0"),
            packet_offload: !matches!(offload.as_deref(), Some("0" | "tap")),
            busy_poll: var("TAPNET_BUSY_POLL_US")
                .and_then(|v| v.parse().ok())
                .map_or(DEFAULT_BUSY_POLL, Duration::from_micros),
            pipelines: match var("TAPNET_PIPELINES") {
                None => Ok(1),
                Some(v) => match v.parse::<u8>() {
                    Ok(n @ 1..=MAX_PIPELINES) => Ok(n),
                    _ => Err(format!(
                        "TAPNET_PIPELINES={v:?}: expected 1 to {MAX_PIPELINES}"
                    )),
                },
            },
            engine_thread: var("TAPNET_ENGINE").as_deref() == Some("thread"),
            max_host_flows: match var("TAPNET_MAX_HOST_FLOWS") {
                None => Ok(None),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(format!(
                        "TAPNET_MAX_HOST_FLOWS={v:?}: expected a positive number"
                    )),
                },
            },
            debug: var("TAPNET_DEBUG").is_some(),
        }
    }

    /// Reads the environment now (`main` does, before any thread starts).
    pub(crate) fn init() {
        let _ = KNOBS.get_or_init(Self::from_env);
    }

    /// The settings (read on first use if `main` did not).
    pub(crate) fn get() -> &'static Self {
        KNOBS.get_or_init(Self::from_env)
    }

    /// `TAPNET_PIPELINES` (1 when unset).
    pub(crate) fn pipelines(&self) -> anyhow::Result<u8> {
        self.pipelines.clone().map_err(anyhow::Error::msg)
    }

    /// `TAPNET_MAX_HOST_FLOWS` (`None` when unset).
    pub(crate) fn max_host_flows(&self) -> anyhow::Result<Option<usize>> {
        self.max_host_flows.clone().map_err(anyhow::Error::msg)
    }
}
