//! The main loop of the slirp4netns drop-in ([`super::slirp`]): it serves the API
//! socket's clients until the exit fd polls readable or hangs up, SIGINT or SIGTERM
//! arrives, or, without an exit fd, the container is gone ([`super::watch`]).

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use super::api::{ApiConfig, ApiServer};
use super::sandbox;
use super::stack::{Stack, StackConfig};
use super::watch::ContainerWatch;

/// The fds `serve` waits for, besides the API socket's.
struct Waited<'a> {
    signals: BorrowedFd<'a>,
    exit: Option<BorrowedFd<'a>>,
    pidfd: Option<BorrowedFd<'a>>,
}

/// What woke `serve`.
#[derive(Debug, Default)]
struct Woken {
    signalled: bool,
    exit_event: bool,
    pidfd_ready: bool,
    accepted: usize,
}

/// Polls `waited` and the API socket with its clients, for at most `wait`.
fn wait_for_events(
    api: Option<&ApiServer>,
    waited: &Waited<'_>,
    wait: Option<Duration>,
) -> Result<Woken, String> {
    let mut extra = vec![(waited.signals, PollFlags::IN)];
    let exit_at = waited.exit.map(|fd| {
        extra.push((fd, PollFlags::IN | PollFlags::HUP));
        extra.len() - 1
    });
    let pidfd_at = waited.pidfd.map(|fd| {
        extra.push((fd, PollFlags::IN));
        extra.len() - 1
    });
    let (events, accepted) = match api {
        Some(api) => {
            let polled = api.poll(&extra, wait).map_err(|e| format!("poll: {e}"))?;
            (polled.extra, polled.accepted)
        }
        None => {
            let mut fds: Vec<PollFd<'_>> = extra
                .iter()
                .map(|&(fd, flags)| PollFd::from_borrowed_fd(fd, flags))
                .collect();
            let timeout = wait.and_then(|w| rustix::event::Timespec::try_from(w).ok());
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => (fds.iter().map(PollFd::revents).collect(), 0),
                Err(rustix::io::Errno::INTR) => (vec![PollFlags::empty(); fds.len()], 0),
                Err(e) => return Err(format!("poll: {e}")),
            }
        }
    };
    let fired = |at: Option<usize>| at.is_some_and(|i| !events[i].is_empty());
    Ok(Woken {
        signalled: !events[0].is_empty(),
        exit_event: fired(exit_at),
        pidfd_ready: fired(pidfd_at),
        accepted,
    })
}

/// Installs the seccomp filter if asked, reports ready, and serves until the end.
#[allow(clippy::too_many_arguments)]
pub(super) fn serve(
    seccomp: bool,
    config: &StackConfig,
    stack: &Stack,
    api: Option<ApiServer>,
    ready_fd: Option<OwnedFd>,
    exit_fd: Option<OwnedFd>,
    signals: &std::os::unix::net::UnixStream,
    mut watch: Option<ContainerWatch>,
) -> Result<(), String> {
    if seccomp {
        sandbox::enable_seccomp().map_err(|e| format!("{e}\nenable_seccomp failed"))?;
    }
    if let Some(fd) = ready_fd {
        let mut f = std::fs::File::from(fd);
        let _ = f.write_all(b"1");
    }
    let api_config = ApiConfig {
        guest_addr: config.guest_addr(),
        guest_addr6: config.guest_addr6(),
        ipv6: config.ipv6,
    };
    loop {
        let waited = Waited {
            signals: signals.as_fd(),
            exit: exit_fd.as_ref().map(AsFd::as_fd),
            pidfd: watch.as_ref().and_then(ContainerWatch::pidfd),
        };
        let wait = watch.as_ref().and_then(|w| w.wait(Instant::now()));
        let woken = wait_for_events(api.as_ref(), &waited, wait)?;
        if woken.exit_event {
            eprintln!("exitfd event");
            break;
        }
        if woken.signalled {
            eprintln!("signal received, exiting");
            break;
        }
        if let Some(api) = &api {
            for _ in 0..woken.accepted {
                eprintln!("apifd event");
            }
            api.serve_ready(stack, api_config);
        }
        if let Some(gone) = watch
            .as_mut()
            .and_then(|w| w.check(woken.pidfd_ready, Instant::now()))
        {
            eprintln!("{gone}, exiting");
            break;
        }
    }
    eprintln!("do_slirp is exiting");
    if let Some(api) = &api {
        let s = api.stats();
        tracing::debug!(
            accepted = s.accepted,
            requests = s.requests,
            timed_out = s.timed_out,
            too_long = s.too_long,
            evicted = s.evicted,
            unread_responses = s.unread_responses,
            "API socket"
        );
    }
    drop(api);
    Ok(())
}
