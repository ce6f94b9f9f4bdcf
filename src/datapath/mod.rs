//! The datapath: one thread that moves batches of frames between the ports and the
//! sans-IO switch, on io_uring or, where that is unavailable, epoll.
//! (API skeleton: to be filled in.)

use std::os::fd::OwnedFd;

use tapnet_switch::{DropReason, MacEntry, NetworkConfig, NetworkId, PortCounters, PortId, PortRole, SwitchConfig};

/// Which I/O backend to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// io_uring if the kernel allows it, else epoll.
    #[default]
    Auto,
    Uring,
    Epoll,
}

/// A port's file descriptor (non-blocking; one read or write is one whole frame).
#[derive(Debug)]
pub enum PortIo {
    /// A TAP device opened with IFF_TAP | IFF_NO_PI.
    Tap(OwnedFd),
    /// An AF_PACKET socket bound to one interface, ignoring outgoing packets.
    Packet(OwnedFd),
}

/// Counters of one port: the switch's, plus what only the shell sees.
#[derive(Clone, Debug, Default)]
pub struct PortStats {
    pub port: Option<PortId>,
    pub switch: PortCounters,
    /// Reads that failed (other than EAGAIN).
    pub rx_errors: u64,
    /// Writes that failed or could not be queued.
    pub tx_errors: u64,
    /// Drops on ingress at this port, by reason.
    pub drops: Vec<(DropReason, u64)>,
}

/// Handle to the running datapath thread. Every call is a round trip to that thread.
#[derive(Debug)]
pub struct Datapath {}

impl Datapath {
    /// Starts the datapath thread; logs which backend it uses.
    pub fn spawn(_choice: BackendChoice, _config: SwitchConfig) -> anyhow::Result<Self> {
        todo!()
    }
    /// "io_uring" or "epoll".
    pub fn backend_name(&self) -> &'static str {
        todo!()
    }
    pub fn add_network(&self, _net: NetworkId, _config: NetworkConfig) -> anyhow::Result<()> {
        todo!()
    }
    pub fn remove_network(&self, _net: NetworkId) -> anyhow::Result<()> {
        todo!()
    }
    pub fn add_port(&self, _port: PortId, _net: NetworkId, _role: PortRole, _io: PortIo) -> anyhow::Result<()> {
        todo!()
    }
    /// Returns once the datapath no longer touches the port's fd; the fd is returned.
    pub fn remove_port(&self, _port: PortId) -> anyhow::Result<OwnedFd> {
        todo!()
    }
    pub fn macs(&self, _net: NetworkId) -> anyhow::Result<Vec<MacEntry>> {
        todo!()
    }
    pub fn stats(&self) -> anyhow::Result<Vec<PortStats>> {
        todo!()
    }
    /// Stops the thread; every port fd is closed when this returns.
    pub fn shutdown(self) -> anyhow::Result<()> {
        todo!()
    }
}
