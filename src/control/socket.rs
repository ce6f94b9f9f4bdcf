//! The daemon's control socket: binding it, and serving every client at once through
//! a [`ClientSet`] while the requests run one at a time on the daemon's thread.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::proto::{Request, Response};
use crate::clientset::{ClientSet, ClientStats, Expired, Frame, Framing, Limits, Lines};

/// Longest request line accepted; a longer one is answered with an error.
pub(crate) const MAX_REQUEST_LEN: usize = 64 * 1024;

/// How often the loop wakes, at the latest, to notice the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Creates the socket's directory (0700) and binds, replacing a stale socket but never
/// a live daemon's.
pub(crate) fn bind_control_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create control socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another tapnet daemon is already serving {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("bind control socket {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("set control socket non-blocking")?;
    Ok(listener)
}

/// One JSON request per line; errors about the framing itself are response lines.
#[derive(Debug)]
struct ControlFraming {
    lines: Lines,
    deadline: Duration,
    max_clients: usize,
}

/// `{"error": message}` and a newline.
fn error_line(message: String) -> Vec<u8> {
    response_line(&Response::Error(message))
}

fn response_line(response: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(response)
        .unwrap_or_else(|_| br#"{"error":"cannot encode the response"}"#.to_vec());
    line.push(b'\n');
    line
}

impl Framing for ControlFraming {
    fn max_request(&self) -> usize {
        self.lines.max
    }

    fn frame(&self, input: &[u8], eof: bool) -> Frame {
        match self.lines.cut(input, eof) {
            Ok(Some((len, last))) => Frame::Request { len, last },
            Ok(None) => Frame::Incomplete,
            Err(()) => Frame::Reject(error_line(format!(
                "request longer than {} bytes",
                self.lines.max
            ))),
        }
    }

    fn expired(&self, _input: &[u8]) -> Expired {
        Expired::Reject(error_line(format!(
            "request not complete within {} s",
            self.deadline.as_secs()
        )))
    }

    fn evicted(&self) -> Option<Vec<u8>> {
        Some(error_line(format!(
            "connection closed: more than {} clients at once, and this one waited longest",
            self.max_clients
        )))
    }
}

/// Serves the control socket until `stop` is set: `handle` executes each request
/// (with the socket's counters so far), one at a time, in the order they completed.
pub(crate) fn serve(
    listener: UnixListener,
    stop: &AtomicBool,
    mut handle: impl FnMut(Request, ClientStats) -> Result<Value, String>,
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let framing = ControlFraming {
        lines: Lines {
            max: MAX_REQUEST_LEN,
        },
        deadline: limits.request_deadline,
        max_clients: limits.max_clients,
    };
    let mut clients =
        ClientSet::new(listener, framing, limits).context("set control socket non-blocking")?;
    while !stop.load(Ordering::Relaxed) {
        clients
            .poll(&[], Some(STOP_CHECK))
            .context("poll control socket")?;
        while let Some((id, line)) = clients.next_request() {
            let response = match serde_json::from_slice::<Request>(&line) {
                Ok(request) => match handle(request, clients.stats()) {
                    Ok(value) => Response::Ok(value),
                    Err(message) => Response::Error(message),
                },
                Err(err) => Response::Error(format!("invalid request: {err}")),
            };
            clients.respond(id, response_line(&response));
        }
    }
    Ok(())
}
