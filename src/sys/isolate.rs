//! A thread of its own in a new, empty network namespace, for code that opens real
//! sockets wherever untrusted input says (the host-socket engine under a fuzzer):
//! whatever it connects to, nothing leaves that namespace, which has only a loopback
//! device (`connect` to anything else fails with `ENETUNREACH`).
//!
//! `unshare(CLONE_NEWNET)` moves only the calling thread (namespaces are per task), so
//! it works in a multi-threaded process; it needs `CAP_SYS_ADMIN`. The thread also
//! gets a private file descriptor table (`CLONE_FILES`) from which every inherited
//! descriptor but stdin, stdout and stderr is closed, so that `/proc/thread-self/fd`
//! lists exactly what the code run there holds (a leak check that other threads,
//! such as concurrent tests, cannot disturb), and so that it holds no other thread's
//! files open.
//!
//! The thread runs harnesses of the form `fn(&[u8])` on byte strings sent to it and
//! answers whether they panicked: only bytes and strings cross between it and the
//! rest of the process, so no descriptor of one table is ever used in the other.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};

use rustix::thread::UnshareFlags;

/// One input for a harness.
type Job = (fn(&[u8]), Vec<u8>);
/// How a harness ended: `Err` with its panic's message.
type Outcome = Result<(), String>;

/// The isolated thread's end of the process.
#[derive(Debug)]
pub(crate) struct IsolatedThread {
    channel: Mutex<(Sender<Job>, Receiver<Outcome>)>,
}

impl IsolatedThread {
    /// Starts the thread and isolates it; `setup` then runs there (bring `lo` up, set
    /// sysctls of the new namespace). An error (no `CAP_SYS_ADMIN`: `EPERM`) means no
    /// thread runs: nothing ever ran outside a new namespace.
    pub(crate) fn start(name: &str, setup: fn() -> io::Result<()>) -> io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (result_tx, results) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if let Err(e) = isolate_this_thread().and_then(|()| setup()) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                for (harness, data) in job_rx {
                    let outcome = std::panic::catch_unwind(|| harness(&data)).map_err(|p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_else(|| "a panic".to_owned())
                    });
                    if result_tx.send(outcome).is_err() {
                        return;
                    }
                }
            })?;
        ready
            .recv()
            .map_err(|_| io::Error::other("the isolated thread ended"))??;
        Ok(Self {
            channel: Mutex::new((jobs, results)),
        })
    }

    /// Runs `harness(data)` on the thread; `Err` with the panic's message if it
    /// panicked.
    pub(crate) fn run(&self, harness: fn(&[u8]), data: &[u8]) -> Outcome {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (jobs, results) = &*channel;
        jobs.send((harness, data.to_vec()))
            .map_err(|_| "the isolated thread ended".to_owned())?;
        results
            .recv()
            .map_err(|_| "the isolated thread ended".to_owned())?
    }
}

/// The identity of the calling thread's network namespace.
fn netns_inode() -> io::Result<(u64, u64)> {
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino()))
}

/// Moves the calling thread into a new network namespace with a private descriptor
/// table holding only descriptors 0 to 2. On error the thread may not run anything
/// that opens sockets.
fn isolate_this_thread() -> io::Result<()> {
    let before = netns_inode()?;
    // SAFETY: with CLONE_FILES this thread's descriptor table becomes a copy, so a
    // descriptor number means one file here and maybe another elsewhere. That is
    // sound as long as no descriptor crosses between this thread and the others
    // afterwards: the thread closes every inherited one but 0-2 (which every table
    // shares by convention) right below, and then runs only `fn(&[u8])` harnesses
    // whose inputs and outputs are bytes and strings (see `IsolatedThread`).
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET | UnshareFlags::FILES) }?;
    // SAFETY: close_range(2) on this thread's own table (private since the unshare
    // above): the descriptors it closes are copies that nothing in this thread owns
    // (the thread has opened none yet; the owners in other threads keep theirs).
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if closed != 0 {
        return Err(io::Error::last_os_error());
    }
    if netns_inode()? == before {
        return Err(io::Error::other("unshare(CLONE_NEWNET) left the namespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// Panics unless run in another network namespace than `data` (its identity,
    /// little-endian), with only `lo`, and with no inherited descriptor.
    fn isolated(data: &[u8]) {
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let here = netns_inode().expect("namespace identity");
        assert_ne!(here, (word(0), word(8)), "still in the caller's namespace");
        let links = std::fs::read_to_string("/proc/thread-self/net/dev").expect("net/dev");
        let names: Vec<&str> = links
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        assert_eq!(names, ["lo"]);
        // 0-2 at most, and the directory being read.
        let fds = std::fs::read_dir("/proc/thread-self/fd")
            .expect("fds")
            .count();
        assert!(fds <= 4, "{fds} descriptors");
    }

    fn fails(_: &[u8]) {
        panic!("as asked");
    }

    #[test]
    fn harnesses_run_in_a_namespace_of_their_own() {
        if !rustix::process::geteuid().is_root() {
            let _ = writeln!(
                io::stderr(),
                "SKIPPED (needs root): harnesses_run_in_a_namespace_of_their_own"
            );
            return;
        }
        // Descriptors open here are not the isolated thread's.
        let _held = std::fs::File::open("/proc/self/status").expect("a file");
        let thread = IsolatedThread::start("tapnet-isolate-test", || Ok(())).expect("start");
        let (dev, ino) = netns_inode().expect("namespace identity");
        let mut data = dev.to_le_bytes().to_vec();
        data.extend_from_slice(&ino.to_le_bytes());
        assert_eq!(thread.run(isolated, &data), Ok(()));
        assert_eq!(thread.run(fails, &[]), Err("as asked".to_owned()));
        // The thread goes on after a panic.
        assert_eq!(thread.run(isolated, &data), Ok(()));
        assert_eq!(
            netns_inode().expect("identity"),
            (dev, ino),
            "the caller moved"
        );
    }
}
