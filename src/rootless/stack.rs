//! One rootless network around one container: a TAP in the container's namespace, the
//! switch and router, and host-socket egress. What `tapnet run` and the slirp4netns
//! front end start. (API skeleton: bodies to be filled in.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::Ipv4Net;
use tapnet_wire::MacAddr;

use crate::engine::ForwardProto;
use crate::port::NetnsTarget;

/// Settings of a rootless stack, with slirp4netns's defaults.
#[derive(Clone, Debug)]
pub(crate) struct StackConfig {
    pub(crate) netns: NetnsTarget,
    /// Join this user namespace to open the TAP (slirp4netns `--userns-path`); by
    /// default the namespace's owner.
    pub(crate) userns: Option<PathBuf>,
    /// TAP name in the container (`tap0`).
    pub(crate) tap_name: String,
    /// Configure the TAP (address, MTU, up, default route), as slirp4netns `-c`.
    pub(crate) configure: bool,
    pub(crate) mtu: u32,
    /// 10.0.2.0/24: the guest is .100, the gateway .2, DNS .3.
    pub(crate) cidr: Ipv4Net,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) ipv6: bool,
    pub(crate) host_loopback: bool,
    pub(crate) dns: bool,
    pub(crate) outbound_addr: Option<Ipv4Addr>,
    pub(crate) outbound_addr6: Option<Ipv6Addr>,
}

impl StackConfig {
    /// The guest's address: the 100th of the CIDR (10.0.2.100), as slirp4netns and podman.
    pub(crate) fn guest_addr(&self) -> Ipv4Addr {
        nth(self.cidr, 100)
    }
    /// The gateway's address: the 2nd of the CIDR (10.0.2.2).
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        nth(self.cidr, 2)
    }
    /// The DNS address: the 3rd of the CIDR (10.0.2.3).
    pub(crate) fn dns_addr(&self) -> Ipv4Addr {
        nth(self.cidr, 3)
    }
}

fn nth(cidr: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(n))
}

/// One forward as listed by the API.
#[derive(Clone, Debug)]
pub(crate) struct ForwardInfo {
    pub(crate) id: u32,
    pub(crate) proto: ForwardProto,
    pub(crate) host_addr: IpAddr,
    pub(crate) host_port: u16,
    pub(crate) guest_addr: IpAddr,
    pub(crate) guest_port: u16,
}

/// A running rootless stack.
#[derive(Debug)]
pub(crate) struct Stack {}

impl Stack {
    /// Opens (and, with `configure`, configures) the TAP, then starts the datapath and
    /// the engine. Returns once frames flow.
    pub(crate) fn start(_config: StackConfig) -> anyhow::Result<Self> {
        todo!()
    }
    /// Publishes `host_addr:host_port` to `guest_addr:guest_port` (ranges: `count` ports).
    /// The error is one line fit for a user (and for the slirp4netns API's `desc`).
    pub(crate) fn add_forward(
        &self,
        _proto: ForwardProto,
        _host_addr: IpAddr,
        _host_port: u16,
        _guest_addr: IpAddr,
        _guest_port: u16,
        _count: u16,
    ) -> Result<u32, String> {
        todo!()
    }
    pub(crate) fn remove_forward(&self, _id: u32) -> Result<(), String> {
        todo!()
    }
    pub(crate) fn forwards(&self) -> Vec<ForwardInfo> {
        todo!()
    }
    /// Stops everything; the TAP disappears with its fd.
    pub(crate) fn shutdown(self) {
        todo!()
    }
}
