//! The messages of the DHCP harness: client requests as bytes and frames, and the
//! parsing and shape checks of the server's answers.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::GATEWAY;
use crate::MacAddr;
use crate::router::fuzzing::{SLIRP_GW_MAC, check_emitted_frame, ipv4_packet};

/// A client message, as the harness built it (the model reads these fields).
#[derive(Clone, Copy, Debug)]
pub(super) struct Msg {
    /// Option 53 (0: none, plain BOOTP).
    pub(super) msg_type: u8,
    pub(super) xid: u32,
    pub(super) chaddr: MacAddr,
    pub(super) eth_src: MacAddr,
    pub(super) broadcast_flag: bool,
    /// Sent to the gateway's MAC and address (renewing) rather than broadcast.
    pub(super) unicast: bool,
    pub(super) ciaddr: Ipv4Addr,
    pub(super) giaddr: Ipv4Addr,
    pub(super) requested: Option<Ipv4Addr>,
    pub(super) server_id: Option<Ipv4Addr>,
}

/// The BOOTREQUEST bytes of `m`: options 53, 50 and 54, then `extras`, then `end`.
pub(super) fn encode(m: &Msg, extras: &[u8], end: bool) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0..4].copy_from_slice(&[1, 1, 6, 0]);
    b[4..8].copy_from_slice(&m.xid.to_be_bytes());
    if m.broadcast_flag {
        b[10] = 0x80;
    }
    b[12..16].copy_from_slice(&m.ciaddr.octets());
    b[24..28].copy_from_slice(&m.giaddr.octets());
    b[28..34].copy_from_slice(&m.chaddr.0);
    b[236..240].copy_from_slice(&[99, 130, 83, 99]);
    if m.msg_type != 0 {
        b.extend_from_slice(&[53, 1, m.msg_type]);
    }
    for (code, ip) in [(50, m.requested), (54, m.server_id)] {
        if let Some(ip) = ip {
            b.extend_from_slice(&[code, 4]);
            b.extend_from_slice(&ip.octets());
        }
    }
    b.extend_from_slice(extras);
    if end {
        b.push(255);
    }
    b
}

/// The Ethernet/IPv4/UDP 68 -> 67 frame of message bytes `payload`.
pub(super) fn frame(m: &Msg, payload: &[u8]) -> Vec<u8> {
    let (dst_mac, dst_ip) = if m.unicast {
        (SLIRP_GW_MAC, GATEWAY)
    } else {
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
    };
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&68u16.to_be_bytes());
    udp.extend_from_slice(&67u16.to_be_bytes());
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut f = Vec::with_capacity(14 + 20 + udp.len());
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&m.eth_src.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ipv4_packet(m.ciaddr, dst_ip, 17, 64, false, &udp));
    f
}

/// What the harness reads from an answer.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) msg_type: u8,
    pub(super) yiaddr: Ipv4Addr,
    pub(super) lease: Option<u32>,
    pub(super) dst_ip: Ipv4Addr,
    pub(super) dst_mac: MacAddr,
}

/// Parses and checks the shape of an answer to request bytes `req`.
pub(super) fn parse_reply(f: &[u8], req: &[u8]) -> Result<Reply, String> {
    check_emitted_frame(f, SLIRP_GW_MAC)?;
    let ip = f.get(14..).ok_or("short")?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let udp = ip.get(ihl..total).ok_or("IP length")?;
    if ip[9] != 17 || ip[12..16] != GATEWAY.octets() || udp.get(..4) != Some(&[0, 67, 0, 68]) {
        return Err("not UDP 67 -> 68 from the gateway".into());
    }
    let m = &udp[8..];
    if m.len() < 300 || m[..4] != [2, 1, 6, 0] || m[236..240] != [99, 130, 83, 99] {
        return Err(format!("not a BOOTREPLY of 300 bytes: {:?}", m.get(..4)));
    }
    if m[4..8] != req[4..8] || m[10..12] != req[10..12] || m[28..44] != req[28..44] {
        return Err("xid, flags or chaddr differ from the request".into());
    }
    let addr = |at: usize| Ipv4Addr::new(m[at], m[at + 1], m[at + 2], m[at + 3]);
    let mut options: HashMap<u8, &[u8]> = HashMap::new();
    let mut i = 240;
    loop {
        match *m.get(i).ok_or("options without end")? {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(*m.get(i + 1).ok_or("option overruns")?);
                let data = m.get(i + 2..i + 2 + len).ok_or("option overruns")?;
                if options.insert(code, data).is_some() {
                    return Err(format!("option {code} twice"));
                }
                i += 2 + len;
            }
        }
    }
    let word = |code: u8| {
        options
            .get(&code)
            .map(|&d| <[u8; 4]>::try_from(d).map(u32::from_be_bytes))
    };
    let msg_type = match options.get(&53) {
        Some(&&[t]) => t,
        other => return Err(format!("message type {other:?}")),
    };
    if options.get(&54).copied() != Some(&GATEWAY.octets()[..]) {
        return Err("server identifier is not the gateway".into());
    }
    let lease = word(51).transpose().map_err(|_| "lease time length")?;
    if let Some(lease) = lease {
        let (t1, t2) = (word(58), word(59));
        let (Some(Ok(t1)), Some(Ok(t2))) = (t1, t2) else {
            return Err("lease without T1/T2".into());
        };
        if !(t1 <= t2 && t2 <= lease) {
            return Err(format!("T1 {t1} T2 {t2} lease {lease}"));
        }
    }
    Ok(Reply {
        msg_type,
        yiaddr: addr(16),
        lease,
        dst_ip: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        dst_mac: MacAddr([f[0], f[1], f[2], f[3], f[4], f[5]]),
    })
}

/// Where the server's walk over a run of options ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Walk {
    /// At an `end` option: the rest is not read.
    Ended,
    /// At the end of the bytes, after whole options.
    Open,
    /// In an option longer than the bytes left.
    Truncated,
}

pub(super) fn walk(options: &[u8]) -> Walk {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => i += 1,
            255 => return Walk::Ended,
            _ => match options.get(i + 1) {
                Some(&len) if i + 2 + usize::from(len) <= options.len() => {
                    i += 2 + usize::from(len);
                }
                _ => return Walk::Truncated,
            },
        }
    }
    Walk::Open
}
