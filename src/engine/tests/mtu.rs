//! What the engine sends into a network fits its MTU: an echo reply to a request that
//! came in fragments goes back in fragments.

use tapnet_wire::checksum;
use tapnet_wire::ip;
use tapnet_wire::reassembly::Reassembler;

use super::*;

/// Found by the `engine_packets` fuzz target: the reply went back whole, a 4028-byte
/// packet into a 1500-byte network.
#[test]
fn a_long_echo_reply_goes_back_in_fragments() {
    if skip_unless_root("a_long_echo_reply_goes_back_in_fragments") {
        return;
    }
    let host = Netns::new();
    host.sh(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ping_group_range=0 2147483647",
    ]);
    host.run(|| {
        let config = EngineConfig {
            networks: vec![EngineNetwork {
                id: NET,
                gateway: GW,
                host_loopback: true,
                dns: Some(DNS),
                gateway6: None,
                dns6: None,
                mtu: 1500,
            }],
            outbound_addr: None,
            outbound_addr6: None,
            resolvers: vec![IpAddr::V4(RESOLVER)],
            conntrack: ConntrackConfig::default(),
            local_names: None,
            limits: TEST_LIMITS,
        };
        let (_engine, link, mut inline) = Engine::spawn_inline(config).expect("inline engine");
        // A 4000-byte echo request to the gateway (the host's 127.0.0.1), in the
        // fragments the guest's kernel sends for it.
        let mut msg = vec![8, 0, 0, 0, 0, 7, 0, 1];
        msg.extend((0..4000u32).map(|i| u8::try_from(i % 251).unwrap()));
        let sum = checksum::checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
        let sent = ip::ipv4_fragments(GUEST, GW, ip::PROTO_ICMP, &msg, 1500, 0x77, |f| {
            link.send(NET, f)
        });
        assert!(sent);
        let mut reassembler = Reassembler::default();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = loop {
            assert!(Instant::now() < deadline, "no echo reply");
            inline.step(true);
            let mut whole = None;
            while let Some((_, len)) = link.recv(&mut buf) {
                assert!(len <= 1500, "a {len}-byte packet into a 1500-byte network");
                whole = whole.or(reassembler.add(Duration::ZERO, 0, &buf[..len]));
            }
            if let Some(whole) = whole {
                break whole;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // An echo reply (type 0) with the request's identifier and data.
        assert_eq!((reply[20], &reply[24..26]), (0, &[0u8, 7][..]));
        assert_eq!(&reply[28..], &msg[8..]);
        assert!(checksum::verifies(&reply[20..]));
    });
}
