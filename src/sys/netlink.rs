//! A small rtnetlink client: just the messages tapnet needs to create a veth pair and
//! configure a container's interface (link, address, default route).
//!
//! We encode and decode the messages ourselves (`nlmsghdr` + `ifinfomsg`/`ifaddrmsg`/
//! `rtmsg` + `rtattr` TLVs, RFC 3549 and `linux/rtnetlink.h`) rather than using
//! netlink-packet-route: we need about six message types, and that crate's API changes
//! with nearly every release. Every request carries `NLM_F_ACK`; the kernel's
//! `NLMSG_ERROR` answer is turned into an `io::Error` with the errno, so callers can
//! match `EEXIST` or `ENODEV`.
//!
//! All integers are in host byte order except addresses, which are in network order, as
//! the kernel expects. The socket works in the network namespace of the thread that
//! opened it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// Constants from `linux/netlink.h`, `linux/rtnetlink.h`, `linux/if_link.h`,
/// `linux/if_addr.h`, `linux/veth.h` and `linux/if.h`.
mod consts {
    pub(super) const NLMSG_HDRLEN: usize = 16;
    pub(super) const NLMSG_ERROR: u16 = 2;
    pub(super) const NLMSG_DONE: u16 = 3;

    pub(super) const NLM_F_REQUEST: u16 = 0x1;
    pub(super) const NLM_F_ACK: u16 = 0x4;
    pub(super) const NLM_F_EXCL: u16 = 0x200;
    pub(super) const NLM_F_CREATE: u16 = 0x400;

    pub(super) const RTM_NEWLINK: u16 = 16;
    pub(super) const RTM_DELLINK: u16 = 17;
    pub(super) const RTM_GETLINK: u16 = 18;
    pub(super) const RTM_SETLINK: u16 = 19;
    pub(super) const RTM_NEWADDR: u16 = 20;
    pub(super) const RTM_NEWROUTE: u16 = 24;

    pub(super) const NLA_F_NESTED: u16 = 0x8000;

    pub(super) const IFLA_ADDRESS: u16 = 1;
    pub(super) const IFLA_IFNAME: u16 = 3;
    pub(super) const IFLA_MTU: u16 = 4;
    pub(super) const IFLA_LINKINFO: u16 = 18;
    pub(super) const IFLA_AF_SPEC: u16 = 26;
    pub(super) const IFLA_NET_NS_FD: u16 = 28;
    pub(super) const IFLA_INFO_KIND: u16 = 1;
    pub(super) const IFLA_INFO_DATA: u16 = 2;
    pub(super) const VETH_INFO_PEER: u16 = 1;
    pub(super) const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
    pub(super) const IN6_ADDR_GEN_MODE_NONE: u8 = 1;

    pub(super) const IFA_ADDRESS: u16 = 1;
    pub(super) const IFA_LOCAL: u16 = 2;
    pub(super) const IFA_BROADCAST: u16 = 4;

    pub(super) const RTA_OIF: u16 = 4;
    pub(super) const RTA_GATEWAY: u16 = 5;

    pub(super) const RT_TABLE_MAIN: u8 = 254;
    pub(super) const RTPROT_BOOT: u8 = 3;
    pub(super) const RT_SCOPE_UNIVERSE: u8 = 0;
    pub(super) const RTN_UNICAST: u8 = 1;

    pub(super) const AF_UNSPEC: u8 = 0;
    pub(super) const AF_INET: u8 = 2;
    pub(super) const AF_INET6: u8 = 10;

    pub(super) const IFF_UP: u32 = 0x1;
    pub(super) const IFF_NOARP: u32 = 0x80;
}
use consts::*;

/// Rounds up to the 4-byte alignment of netlink messages and attributes.
const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds one netlink message: header, fixed family header, then attributes.
#[derive(Debug)]
pub(crate) struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    /// Starts a message of `ty` with `flags`; the length and sequence number are filled
    /// in by [`finish`](Self::finish).
    pub(crate) fn new(ty: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 = let the kernel fill it
        Self { buf }
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Appends a fixed header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`), padded to 4 bytes.
    pub(crate) fn header(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Appends one attribute (`struct rtattr` + payload + padding).
    pub(crate) fn attr(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + payload.len()).expect("netlink attribute too long");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    pub(crate) fn attr_u32(&mut self, ty: u16, value: u32) -> &mut Self {
        self.attr(ty, &value.to_ne_bytes())
    }

    /// A NUL-terminated string attribute (such as `IFLA_IFNAME`).
    pub(crate) fn attr_str(&mut self, ty: u16, value: &str) -> &mut Self {
        let mut payload = Vec::with_capacity(value.len() + 1);
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        self.attr(ty, &payload)
    }

    /// Opens a nested attribute; close it with [`end_nested`](Self::end_nested).
    pub(crate) fn begin_nested(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.attr(ty | NLA_F_NESTED, &[]);
        start
    }

    /// Closes the nested attribute that `begin_nested` opened at `start`.
    pub(crate) fn end_nested(&mut self, start: usize) -> &mut Self {
        let len = u16::try_from(self.buf.len() - start).expect("netlink attribute too long");
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The finished message with its length and sequence number.
    pub(crate) fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).expect("netlink message too long");
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg` (16 bytes).
fn ifinfomsg(family: u8, index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = family;
    // b[1] pad, b[2..4] ifi_type: 0
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// `struct ifaddrmsg` (8 bytes).
fn ifaddrmsg(family: u8, prefix_len: u8, index: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = family;
    b[1] = prefix_len;
    // b[2] flags, b[3] scope (RT_SCOPE_UNIVERSE): 0
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

/// `struct rtmsg` (12 bytes) for a unicast route in the main table.
fn rtmsg_unicast(family: u8, dst_len: u8) -> [u8; 12] {
    [
        family,
        dst_len,
        0, // rtm_src_len
        0, // rtm_tos
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
        0,
        0,
        0, // rtm_flags
    ]
}

/// What to change on a link with `RTM_SETLINK`; `None` leaves a setting alone.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkChange<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) mac: Option<[u8; 6]>,
    pub(crate) mtu: Option<u32>,
    pub(crate) up: Option<bool>,
    /// `IFF_NOARP`: the kernel neither answers nor sends ARP on the link.
    pub(crate) noarp: Option<bool>,
}

/// `RTM_SETLINK` for the link with `index`.
pub(crate) fn set_link_message(index: u32, change: &LinkChange<'_>) -> MessageBuilder {
    let (mut flags, mut mask) = (0, 0);
    for (bit, value) in [(IFF_UP, change.up), (IFF_NOARP, change.noarp)] {
        if let Some(on) = value {
            mask |= bit;
            if on {
                flags |= bit;
            }
        }
    }
    let mut m = MessageBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
    m.header(&ifinfomsg(AF_UNSPEC, index, flags, mask));
    if let Some(name) = change.name {
        m.attr_str(IFLA_IFNAME, name);
    }
    if let Some(mac) = change.mac {
        m.attr(IFLA_ADDRESS, &mac);
    }
    if let Some(mtu) = change.mtu {
        m.attr_u32(IFLA_MTU, mtu);
    }
    m
}

/// `RTM_NEWLINK` creating a veth pair: `host` here with `mtu`, its peer named `peer`
/// directly in the namespace `peer_netns` (an open nsfs file), with the same MTU.
pub(crate) fn new_veth_message(
    host: &str,
    peer: &str,
    peer_netns: i32,
    mtu: u32,
) -> MessageBuilder {
    let mut m = MessageBuilder::new(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    );
    m.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
    m.attr_str(IFLA_IFNAME, host).attr_u32(IFLA_MTU, mtu);
    let linkinfo = m.begin_nested(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "veth");
    let data = m.begin_nested(IFLA_INFO_DATA);
    // VETH_INFO_PEER holds a whole ifinfomsg followed by the peer's IFLA_* attributes.
    let peer_info = m.begin_nested(VETH_INFO_PEER);
    m.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
    m.attr_str(IFLA_IFNAME, peer).attr_u32(IFLA_MTU, mtu);
    m.attr(IFLA_NET_NS_FD, &peer_netns.to_ne_bytes());
    m.end_nested(peer_info)
        .end_nested(data)
        .end_nested(linkinfo);
    m
}

/// `RTM_NEWADDR` adding `address/prefix_len` (with `broadcast`, if any) to link `index`.
pub(crate) fn new_ipv4_address_message(
    index: u32,
    address: Ipv4Addr,
    prefix_len: u8,
    broadcast: Option<Ipv4Addr>,
) -> MessageBuilder {
    let mut m = MessageBuilder::new(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    );
    m.header(&ifaddrmsg(AF_INET, prefix_len, index));
    m.attr(IFA_LOCAL, &address.octets())
        .attr(IFA_ADDRESS, &address.octets());
    if let Some(brd) = broadcast {
        m.attr(IFA_BROADCAST, &brd.octets());
    }
    m
}

/// `RTM_NEWROUTE` for `0.0.0.0/0 via gateway dev index`, failing with `EEXIST` if the
/// main table already has a default route.
pub(crate) fn new_ipv4_default_route_message(index: u32, gateway: Ipv4Addr) -> MessageBuilder {
    let mut m = MessageBuilder::new(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    );
    m.header(&rtmsg_unicast(AF_INET, 0));
    m.attr(RTA_GATEWAY, &gateway.octets())
        .attr_u32(RTA_OIF, index);
    m
}

/// `IFA_F_NODAD` in `ifa_flags`: no duplicate address detection, so the address is
/// usable at once (the switch's network has no other owner of it).
const IFA_F_NODAD: u8 = 0x02;

/// `RTM_NEWADDR` adding the IPv6 `address/prefix_len` to link `index`, without DAD.
pub(crate) fn new_ipv6_address_message(
    index: u32,
    address: Ipv6Addr,
    prefix_len: u8,
) -> MessageBuilder {
    let mut m = MessageBuilder::new(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    );
    let mut header = ifaddrmsg(AF_INET6, prefix_len, index);
    header[2] = IFA_F_NODAD;
    m.header(&header);
    m.attr(IFA_LOCAL, &address.octets())
        .attr(IFA_ADDRESS, &address.octets());
    m
}

/// `RTM_NEWROUTE` for `::/0 via gateway dev index`, failing with `EEXIST` if the main
/// table already has one.
pub(crate) fn new_ipv6_default_route_message(index: u32, gateway: Ipv6Addr) -> MessageBuilder {
    let mut m = MessageBuilder::new(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    );
    m.header(&rtmsg_unicast(AF_INET6, 0));
    m.attr(RTA_GATEWAY, &gateway.octets())
        .attr_u32(RTA_OIF, index);
    m
}

/// A reply from the kernel, split into messages.
#[derive(Debug)]
struct Reply<'a> {
    ty: u16,
    seq: u32,
    payload: &'a [u8],
}

/// Splits a datagram into netlink messages; stops at the first malformed one.
fn parse_messages(mut buf: &[u8]) -> impl Iterator<Item = Reply<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let ty = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(buf[8..12].try_into().ok()?);
        let msg = Reply {
            ty,
            seq,
            payload: &buf[NLMSG_HDRLEN..len],
        };
        buf = &buf[align4(len).min(buf.len())..];
        Some(msg)
    })
}

/// The errno of an `NLMSG_ERROR` payload: `Ok(())` for an ACK (error 0).
fn error_payload_to_result(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink error message",
            )
        })?;
    match code {
        0 => Ok(()),
        neg => Err(io::Error::from_raw_os_error(-neg)),
    }
}

/// A `NETLINK_ROUTE` socket in the network namespace it was opened in.
#[derive(Debug)]
pub(crate) struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl RouteSocket {
    /// Opens a route socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            // NETLINK_ROUTE is protocol 0, which rustix spells `None`.
            None,
        )?;
        // The kernel answers synchronously; a timeout only guards against a lost reply.
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(10)),
        )?;
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    /// Sends `msg` and waits for the kernel's answer; returns the payload of the first
    /// non-error reply message (for `GET` requests) once the ACK or error arrives.
    fn transact(&mut self, msg: MessageBuilder) -> io::Result<Option<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        let sent = rustix::net::send(&self.fd, &bytes, SendFlags::empty())?;
        if sent != bytes.len() {
            return Err(io::Error::other("short write on netlink socket"));
        }
        let mut data = None;
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty())?;
            for reply in parse_messages(&self.buf[..n]) {
                if reply.seq != seq {
                    continue; // a late answer to an earlier request
                }
                match reply.ty {
                    NLMSG_ERROR => return error_payload_to_result(reply.payload).map(|()| data),
                    NLMSG_DONE => return Ok(data),
                    _ => {
                        if data.is_none() {
                            data = Some(reply.payload.to_vec());
                        }
                    }
                }
            }
        }
    }

    fn request(&mut self, msg: MessageBuilder) -> io::Result<()> {
        self.transact(msg).map(drop)
    }

    /// The index of the link called `name`, or `None` if there is none.
    pub(crate) fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut m = MessageBuilder::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK);
        m.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0))
            .attr_str(IFLA_IFNAME, name);
        match self.transact(m) {
            Ok(Some(payload)) if payload.len() >= 16 => Ok(Some(u32::from_ne_bytes(
                payload[4..8].try_into().expect("4 bytes"),
            ))),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "RTM_GETLINK: no link in reply",
            )),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`link_index`](Self::link_index), but a missing link is `ENODEV`.
    pub(crate) fn existing_link_index(&mut self, name: &str) -> io::Result<u32> {
        self.link_index(name)?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// Creates a veth pair; see [`new_veth_message`].
    pub(crate) fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        mtu: u32,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.request(new_veth_message(host, peer, peer_netns.as_raw_fd(), mtu))
    }

    /// Changes name, MAC, MTU or flags of a link.
    pub(crate) fn set_link(&mut self, index: u32, change: &LinkChange<'_>) -> io::Result<()> {
        self.request(set_link_message(index, change))
    }

    /// Stops the kernel from giving the link an IPv6 link-local address (so it sends no
    /// router solicitations or DAD probes). Fails with `EAFNOSUPPORT` without IPv6.
    pub(crate) fn disable_ipv6_addr_gen(&mut self, index: u32) -> io::Result<()> {
        let mut m = MessageBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
        m.header(&ifinfomsg(AF_UNSPEC, index, 0, 0));
        let spec = m.begin_nested(IFLA_AF_SPEC);
        let inet6 = m.begin_nested(u16::from(AF_INET6));
        m.attr(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE]);
        m.end_nested(inet6).end_nested(spec);
        self.request(m)
    }

    /// Deletes a link (for a veth, its peer goes too).
    pub(crate) fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = MessageBuilder::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK);
        m.header(&ifinfomsg(AF_UNSPEC, index, 0, 0));
        self.request(m)
    }

    /// Adds an IPv4 address to a link.
    pub(crate) fn add_ipv4_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
        broadcast: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        self.request(new_ipv4_address_message(
            index, address, prefix_len, broadcast,
        ))
    }

    /// Adds a default route via `gateway`; returns `false` (and changes nothing) if the
    /// namespace already has an IPv4 default route.
    pub(crate) fn add_ipv4_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
    ) -> io::Result<bool> {
        match self.request(new_ipv4_default_route_message(index, gateway)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl RouteSocket {
    /// Adds an IPv6 address (without duplicate address detection) to a link.
    pub(crate) fn add_ipv6_address(
        &mut self,
        index: u32,
        address: Ipv6Addr,
        prefix_len: u8,
    ) -> io::Result<()> {
        self.request(new_ipv6_address_message(index, address, prefix_len))
    }

    /// Adds an IPv6 default route via `gateway`; `false` if one exists already.
    pub(crate) fn add_ipv6_default_route(
        &mut self,
        index: u32,
        gateway: Ipv6Addr,
    ) -> io::Result<bool> {
        match self.request(new_ipv6_default_route_message(index, gateway)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for RouteSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    #[test]
    fn encodes_new_address_exactly() {
        let bytes = new_ipv4_address_message(
            7,
            Ipv4Addr::new(10, 88, 0, 2),
            16,
            Some(Ipv4Addr::new(10, 88, 255, 255)),
        )
        .finish(42);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            // nlmsghdr: len 48, RTM_NEWADDR (20), REQUEST|ACK|EXCL|CREATE (0x605), seq 42, pid 0
            48, 0, 0, 0,  20, 0,  0x05, 0x06,  42, 0, 0, 0,  0, 0, 0, 0,
            // ifaddrmsg: AF_INET, /16, flags 0, scope 0, index 7
            2, 16, 0, 0,  7, 0, 0, 0,
            // IFA_LOCAL 10.88.0.2
            8, 0, 2, 0,  10, 88, 0, 2,
            // IFA_ADDRESS 10.88.0.2
            8, 0, 1, 0,  10, 88, 0, 2,
            // IFA_BROADCAST 10.88.255.255
            8, 0, 4, 0,  10, 88, 255, 255,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn encodes_setlink_with_padded_name() {
        let change = LinkChange {
            name: Some("eth0"),
            mtu: Some(1500),
            up: Some(true),
            ..Default::default()
        };
        let bytes = set_link_message(3, &change).finish(1);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            // nlmsghdr: len 52, RTM_SETLINK (19), REQUEST|ACK, seq 1
            52, 0, 0, 0,  19, 0,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0,
            // ifinfomsg: AF_UNSPEC, pad, type 0, index 3, flags IFF_UP, change IFF_UP
            0, 0, 0, 0,  3, 0, 0, 0,  1, 0, 0, 0,  1, 0, 0, 0,
            // IFLA_IFNAME "eth0\0" (len 9, padded to 12)
            9, 0, 3, 0,  b'e', b't', b'h', b'0',  0, 0, 0, 0,
            // IFLA_MTU 1500
            8, 0, 4, 0,  0xdc, 0x05, 0, 0,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn encodes_default_route() {
        let bytes = new_ipv4_default_route_message(5, Ipv4Addr::new(172, 17, 0, 1)).finish(9);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            44, 0, 0, 0,  24, 0,  0x05, 0x06,  9, 0, 0, 0,  0, 0, 0, 0,
            // rtmsg: AF_INET, dst_len 0, src_len 0, tos 0, main table, boot, universe, unicast, flags 0
            2, 0, 0, 0,  254, 3, 0, 1,  0, 0, 0, 0,
            // RTA_GATEWAY 172.17.0.1
            8, 0, 5, 0,  172, 17, 0, 1,
            // RTA_OIF 5
            8, 0, 4, 0,  5, 0, 0, 0,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn nests_veth_peer_with_lengths() {
        let bytes = new_veth_message("tn0", "tmp1", 9, 1400).finish(2);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        // After nlmsghdr (16) + ifinfomsg (16) + IFLA_IFNAME "tn0\0" (8) + IFLA_MTU (8):
        let linkinfo = &bytes[48..];
        let len = u16::from_ne_bytes([linkinfo[0], linkinfo[1]]) as usize;
        assert_eq!(len, linkinfo.len(), "IFLA_LINKINFO spans the rest");
        assert_eq!(
            u16::from_ne_bytes([linkinfo[2], linkinfo[3]]),
            IFLA_LINKINFO | NLA_F_NESTED
        );
        // IFLA_INFO_KIND "veth\0": len 9, padded to 12.
        assert_eq!(&linkinfo[4..13], &[9, 0, 1, 0, b'v', b'e', b't', b'h', 0]);
        let data = &linkinfo[16..];
        assert_eq!(u16::from_ne_bytes([data[0], data[1]]) as usize, data.len());
        let peer = &data[4..];
        assert_eq!(u16::from_ne_bytes([peer[0], peer[1]]) as usize, peer.len());
        // The peer: ifinfomsg (16), IFLA_IFNAME "tmp1\0" (12), IFLA_MTU (8), IFLA_NET_NS_FD (8).
        assert_eq!(peer.len(), 4 + 16 + 12 + 8 + 8);
        assert_eq!(&peer[peer.len() - 8..], &[8, 0, 28, 0, 9, 0, 0, 0]);
    }

    #[test]
    fn decodes_ack_and_error() {
        #[rustfmt::skip]
        let ack: &[u8] = &[
            36, 0, 0, 0,  2, 0,  0, 1,  5, 0, 0, 0,  0, 0, 0, 0,
            0, 0, 0, 0, // error 0 = ACK
            16, 0, 0, 0,  19, 0, 5, 0,  5, 0, 0, 0,  0, 0, 0, 0, // the request's header
        ];
        let msgs: Vec<_> = parse_messages(ack).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].ty, msgs[0].seq), (NLMSG_ERROR, 5));
        assert!(error_payload_to_result(msgs[0].payload).is_ok());
        let eexist = (-libc::EEXIST).to_ne_bytes();
        let err = error_payload_to_result(&eexist).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert!(error_payload_to_result(&[0, 0]).is_err());
        // A truncated header ends the iteration instead of panicking.
        assert_eq!(parse_messages(&ack[..20]).count(), 0);
    }
}
