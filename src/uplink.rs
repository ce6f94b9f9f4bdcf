//! The packet uplink of `tapnet daemon --uplink`: a host interface opened with an
//! AF_PACKET socket (promiscuous, with a `virtio_net_hdr` where the kernel offers it),
//! and the settings of the outside port and NAT that the datapath runs on it.

use anyhow::Context as _;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use tapnet_conntrack::ConntrackConfig;
use tapnet_nat::NatConfig;
use tapnet_switch::PortId;
use tapnet_switch::router::OutsideConfig;
use tapnet_wire::MacAddr;

use crate::datapath::{PacketUplinkConfig, PortIo};

/// `--uplink IFNAME --uplink-ip CIDR [--uplink-gw IP]`.
#[derive(Debug, Clone)]
pub(crate) struct UplinkOptions {
    pub(crate) ifname: String,
    pub(crate) addr: Ipv4Net,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) addr6: Option<ipnet::Ipv6Net>,
    pub(crate) gateway6: Option<std::net::Ipv6Addr>,
}

/// The packet uplink's port id: far from the container ports (counted up from 0) and
/// the gateway ports (counted down from the top).
pub(crate) const UPLINK_PORT: PortId = PortId(0x8000_0000);

/// Opens the uplink interface for the datapath: an AF_PACKET socket with the interface
/// in promiscuous mode (tapnet's MAC is its own, so that the host's kernel, which
/// drops frames for other MACs, never forwards or answers what is tapnet's).
pub(crate) fn open_packet_uplink(
    options: &UplinkOptions,
    conntrack: &ConntrackConfig,
) -> anyhow::Result<(PacketUplinkConfig, PortIo)> {
    use crate::sys::ethtool::{Ethtool, Offload};
    use crate::sys::{netlink, packet};
    let name = &options.ifname;
    let addr = options.addr.addr();
    if addr == options.addr.network() && options.addr.prefix_len() < 31
        || addr == options.addr.broadcast() && options.addr.prefix_len() < 31
    {
        anyhow::bail!(
            "--uplink-ip {}: not a host address of its subnet",
            options.addr
        );
    }
    if let Some(gw) = options.gateway
        && (!options.addr.contains(&gw) || gw == addr)
    {
        anyhow::bail!(
            "--uplink-gw {gw} is not another address of {}",
            options.addr.trunc()
        );
    }
    let mut rt = netlink::RouteSocket::open().context("open a netlink socket")?;
    let index = rt
        .existing_link_index(name)
        .with_context(|| format!("uplink interface {name}"))?;
    let up = netlink::LinkChange {
        up: Some(true),
        ..Default::default()
    };
    rt.set_link(index, &up)
        .with_context(|| format!("bring uplink {name} up"))?;
    let ethtool = Ethtool::open().context("open an interface ioctl socket")?;
    let mtu = ethtool
        .mtu(name)
        .with_context(|| format!("MTU of {name}"))?;
    let fd = packet::open_bound(index)
        .with_context(|| format!("open an AF_PACKET socket on {name} (needs CAP_NET_RAW)"))?;
    // With a virtio_net_hdr on the socket, frames come and go as the kernel holds them:
    // GRO-merged and TSO frames and partial checksums are described, and 64 KiB
    // segments leave in one write (the kernel's GSO cuts them).
    let vnet = crate::datapath::packet_offload_enabled()
        && match packet::set_vnet_hdr_size(&fd, crate::datapath::VNET_HDR_LEN) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!("{name}: no PACKET_VNET_HDR_SZ ({e}): one write per frame");
                false
            }
        };
    // Without it, GRO would hand the socket merged frames whose checksums are not the
    // merged packet's; tapnet must then see frames as they were on the wire.
    if !vnet && let Err(e) = ethtool.set(name, Offload::Gro, false) {
        tracing::debug!("{name}: switch GRO off: {e}");
    }
    packet::set_promiscuous(&fd, index)
        .with_context(|| format!("put {name} in promiscuous mode"))?;
    if let (Some(gw), Some(net6)) = (options.gateway6, options.addr6)
        && (gw == net6.addr() || gw.is_multicast())
    {
        anyhow::bail!("--uplink-gw6 {gw} is not a neighbour's address");
    }
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 1u8);
    let mut outside = OutsideConfig::new(
        MacAddr::from_ipv4_docker(addr.octets()),
        addr,
        options.addr.prefix_len(),
        options.gateway,
    );
    outside.addr6 = options.addr6.map(|n| (n.addr(), n.prefix_len()));
    outside.gateway6 = options.gateway6;
    let config = PacketUplinkConfig {
        port: UPLINK_PORT,
        outside,
        nat: NatConfig {
            uplink_addr: addr,
            conntrack: conntrack.clone(),
            hash_seed: seed,
            ..NatConfig::default()
        },
        mtu,
    };
    let io = if vnet {
        PortIo::PacketOffload { fd, mtu }
    } else {
        PortIo::Packet(fd)
    };
    Ok((config, io))
}
