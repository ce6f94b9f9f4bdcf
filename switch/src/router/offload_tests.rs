//! Frames described by an offload header: a frame with a partial checksum that the
//! router must hold while it resolves the next hop leaves complete, because it leaves
//! without the header that described it.

use std::net::Ipv4Addr;

use tapnet_wire::checksum;

use super::fuzzing::{NET_SLIRP, SLIRP_GW_MAC, ipv4_packet, slirp_network};
use super::*;

const PEER_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x02, 0x10]);
const PEER4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 16);
const GW4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const REMOTE4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// An uplink frame with a TCP segment whose checksum field holds only the
/// pseudo-header sum (`F_NEEDS_CSUM`), and where that field is.
fn partial_tcp_frame() -> (Vec<u8>, (usize, usize)) {
    let mut tcp = vec![0u8; 20 + 100];
    tcp[..4].copy_from_slice(&[0x1f, 0x90, 0xc0, 0x00]);
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    let ip = ipv4_packet(REMOTE4, PEER4, 6, 50, true, &tcp);
    let mut f = vec![0u8; 14];
    f.extend_from_slice(&ip);
    let pseudo = checksum::fold(checksum::pseudo_v4(REMOTE4, PEER4, 6, tcp.len()));
    f[34 + 16..34 + 18].copy_from_slice(&pseudo.to_be_bytes());
    (f, (34, 16))
}

fn tcp_checksum_verifies(frame: &[u8]) -> bool {
    let l4 = &frame[34..];
    checksum::fold(checksum::add(
        checksum::pseudo_v4(REMOTE4, PEER4, 6, l4.len()),
        l4,
    )) == 0xffff
}

#[test]
fn a_held_frame_with_a_partial_checksum_leaves_with_a_complete_one() {
    let mut r = Router::new(RouterConfig::default());
    r.add_network(NET_SLIRP, slirp_network()).unwrap();
    let mut buf = vec![0u8; 65536 + 14];
    let now = Instant::from_secs(1);
    while r.poll_transmit(now, &mut buf).is_some() {}
    let (mut frame, partial) = partial_tcp_frame();
    let offload = FrameOffload {
        segment: None,
        partial_checksum: Some(partial),
    };
    assert_eq!(
        r.handle_uplink_offloaded(now, NET_SLIRP, &mut frame, offload),
        UplinkVerdict::Queued
    );
    while r.poll_transmit(now, &mut buf).is_some() {} // the ARP request
    // The peer answers; the held frame leaves.
    let mut reply = Vec::new();
    reply.extend_from_slice(&SLIRP_GW_MAC.0);
    reply.extend_from_slice(&PEER_MAC.0);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&PEER_MAC.0);
    reply.extend_from_slice(&PEER4.octets());
    reply.extend_from_slice(&SLIRP_GW_MAC.0);
    reply.extend_from_slice(&GW4.octets());
    r.handle_frame(now, NET_SLIRP, &mut reply);
    let tx = r.poll_transmit(now, &mut buf).expect("the held frame");
    let out = &buf[..tx.len];
    assert_eq!(&out[..6], &PEER_MAC.0);
    assert!(tcp_checksum_verifies(out), "the held frame's checksum");

    // A resolved neighbour: the frame goes at once, its checksum still partial (the
    // offload header goes with it).
    let (mut frame, partial) = partial_tcp_frame();
    let offload = FrameOffload {
        segment: None,
        partial_checksum: Some(partial),
    };
    let len = frame.len();
    assert_eq!(
        r.handle_uplink_offloaded(now, NET_SLIRP, &mut frame, offload),
        UplinkVerdict::ToNetwork { len }
    );
    assert!(!tcp_checksum_verifies(&frame));
}
