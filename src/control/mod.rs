//! The control plane: the daemon's request handling, the wire protocol of the control
//! socket, and the client side used by the CLI commands.

pub(crate) mod client;
pub(crate) mod daemon;
pub(crate) mod dns;
mod dns_tcp;
pub(crate) mod proto;
pub(crate) mod registry;
pub(crate) mod socket;
pub(crate) mod state;

use std::path::PathBuf;

/// Where the control socket lives unless `--control` says otherwise:
/// `$XDG_RUNTIME_DIR/tapnet/control.sock`, else `/run/tapnet/control.sock`.
pub(crate) fn default_control_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("tapnet").join("control.sock"),
        None => PathBuf::from("/run/tapnet/control.sock"),
    }
}
