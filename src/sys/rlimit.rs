//! `RLIMIT_NOFILE`: how many file descriptors tapnet may hold. Each host-socket flow
//! holds one, so the host-socket engine derives its flow bounds from this limit.

use std::sync::OnceLock;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft limit this process started with, before `raise_nofile_soft`.
static STARTED_WITH: OnceLock<Option<u64>> = OnceLock::new();

/// Raises the soft descriptor limit to the hard one, as a server that holds a socket
/// per flow must (systemd's and Docker's practice). Returns the soft limit before,
/// so that a child that tapnet starts can get it back (`restore_nofile_soft`).
pub(crate) fn raise_nofile_soft() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    let _ = STARTED_WITH.set(before);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("raise RLIMIT_NOFILE to the hard limit: {e}");
        }
    }
    before
}

/// The soft limit this process started with (`None`: unlimited), as text for a child
/// (see `parse_soft`).
pub(crate) fn started_with() -> String {
    match STARTED_WITH.get().copied().flatten() {
        Some(n) => n.to_string(),
        None => "unlimited".to_owned(),
    }
}

/// Parses what [`started_with`] wrote.
pub(crate) fn parse_soft(text: &str) -> Option<Option<u64>> {
    match text {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

/// The soft descriptor limit now (`u64::MAX` when unlimited).
pub(crate) fn nofile_soft() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Sets the soft descriptor limit back to `soft` (`None`: unlimited), for a child
/// that should not inherit a raised one.
pub(crate) fn restore_nofile_soft(soft: Option<u64>) {
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: soft,
            maximum: limit.maximum,
        },
    );
}
