//! Framing of a port's fd: plain Ethernet frames, or a `virtio_net_hdr` before each
//! (a TAP with checksum and segmentation offload, [`PortIo::TapOffload`]).
//!
//! Every receive buffer keeps [`HEADROOM`] bytes in front of the frame: an offload
//! port reads its header into them, a plain port reads after them and the backend
//! writes the empty header there. So the frame always starts at `HEADROOM`, and one
//! buffer can be written, without a copy, to a plain port (the frame) and to an
//! offload port (header and frame) alike.
//!
//! An offload port's frames may be 64 KiB TCP segments (TSO) with partial checksums.
//! [`rx_prepare`] raises the MSS of TCP SYNs, so that the engine behind the gateway
//! sends 64 KiB segments too, and [`finish_checksum`] completes a partial checksum when
//! the frame is written to a port (the gateway's side does not need it); the backend writes those with a TSO header
//! ([`tx_header`]). Such a port is meant for a network whose only other member is the
//! gateway (the rootless stack): a TSO frame cannot go to a plain port and is dropped
//! there, and a raised MSS is only right towards the engine.

use std::ops::Range;

use tapnet_wire::vnet::{self, VnetHdr};

use super::PortIo;

/// Bytes in front of every frame in a receive buffer.
pub(crate) const HEADROOM: usize = vnet::HDR_LEN;

/// The MSS announced to the engine in place of the standard one on an offload port:
/// the engine then sends segments of up to this many bytes (one TSO packet each).
const RAISED_MSS: u16 = 65000;

/// How a port's fd frames packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One Ethernet frame per read or write.
    Plain,
    /// A 12-byte `virtio_net_hdr_v1` before every frame; the network's MTU (what the
    /// container's interface uses) sizes the segments of TSO frames.
    Vnet { mtu: usize },
}

impl Framing {
    pub(crate) fn of(io: &PortIo) -> Self {
        match io {
            PortIo::Tap(_) | PortIo::Packet(_) => Self::Plain,
            PortIo::TapOffload { mtu, .. } => Self::Vnet {
                mtu: usize::try_from(*mtu).unwrap_or(1500),
            },
        }
    }

    /// Where in a receive buffer a read goes.
    pub(crate) fn read_offset(self) -> usize {
        match self {
            Self::Plain => HEADROOM,
            Self::Vnet { .. } => 0,
        }
    }

    /// The bytes of a received buffer to write to a port of this framing, or `None`
    /// if the frame cannot go there (a TSO frame to a plain port).
    pub(crate) fn tx_range(self, rx: RxFrame) -> Option<Range<usize>> {
        match self {
            Self::Plain if rx.gso => None,
            Self::Plain => Some(HEADROOM..HEADROOM + rx.len),
            Self::Vnet { .. } => Some(0..HEADROOM + rx.len),
        }
    }

    /// The header to write before a frame the pipeline built (`None`: no header).
    pub(crate) fn tx_header(self, frame: &[u8]) -> Option<[u8; HEADROOM]> {
        match self {
            Self::Plain => None,
            Self::Vnet { mtu } => Some(vnet::tx_header(frame, mtu).to_bytes()),
        }
    }
}

/// A received frame at `buf[HEADROOM..HEADROOM + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxFrame {
    pub(crate) len: usize,
    /// A TSO frame (longer than one segment on the wire).
    pub(crate) gso: bool,
    /// The TCP/UDP checksum is partial (`F_NEEDS_CSUM`, the header's `csum_start` and
    /// `csum_offset`, checked to be in range): [`finish_checksum`] completes it before
    /// the frame is written to any port. The gateway's side (router, engine) does not
    /// verify TCP/UDP checksums, so frames for it skip that pass over the payload.
    pub(crate) partial_csum: Option<(u16, u16)>,
}

/// Completes a partial checksum in a received buffer (see [`RxFrame::partial_csum`])
/// and marks the header in front accordingly. Call before writing the buffer out.
pub(crate) fn finish_checksum(buf: &mut [u8], rx: &mut RxFrame) {
    let Some((start, offset)) = rx.partial_csum.take() else {
        return;
    };
    let Some(frame) = buf.get_mut(HEADROOM..HEADROOM + rx.len) else {
        return;
    };
    vnet::complete_checksum(frame, usize::from(start), usize::from(offset));
    if let Some(mut hdr) = VnetHdr::parse(buf) {
        hdr.flags = vnet::F_DATA_VALID;
        hdr.csum_start = 0;
        hdr.csum_offset = 0;
        buf[..HEADROOM].copy_from_slice(&hdr.to_bytes());
    }
}

/// Prepares a buffer into which `n` bytes were read at `framing.read_offset()`: the
/// header in front is made valid for writing to an offload port and a SYN's MSS is
/// raised; a partial checksum is left for [`finish_checksum`]. `None`: drop the frame
/// (malformed header).
pub(crate) fn rx_prepare(framing: Framing, buf: &mut [u8], n: usize) -> Option<RxFrame> {
    match framing {
        Framing::Plain => {
            buf.get_mut(..HEADROOM)?.fill(0);
            (n <= buf.len() - HEADROOM).then_some(RxFrame {
                len: n,
                gso: false,
                partial_csum: None,
            })
        }
        Framing::Vnet { mtu } => {
            let len = n.checked_sub(HEADROOM)?;
            let mut hdr = VnetHdr::parse(buf)?;
            let frame = buf.get_mut(HEADROOM..HEADROOM + len)?;
            let partial_csum = if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
                let field = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset);
                if field + 2 > frame.len() {
                    return None;
                }
                Some((hdr.csum_start, hdr.csum_offset))
            } else {
                None
            };
            let standard = |ip_and_tcp: usize| {
                u16::try_from(mtu.saturating_sub(ip_and_tcp)).unwrap_or(u16::MAX)
            };
            let (v4, v6) = (standard(40), standard(60));
            if partial_csum.is_some() {
                vnet::raise_syn_mss_partial(frame, v4, v6, RAISED_MSS);
            } else {
                vnet::raise_syn_mss(frame, v4, v6, RAISED_MSS);
            }
            hdr.num_buffers = 0;
            buf[..HEADROOM].copy_from_slice(&hdr.to_bytes());
            Some(RxFrame {
                len,
                gso: hdr.is_gso(),
                partial_csum,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_frames_get_an_empty_header_in_front() {
        let mut buf = [0xaau8; 64];
        let rx = rx_prepare(Framing::Plain, &mut buf, 40).unwrap();
        assert_eq!(
            rx,
            RxFrame {
                len: 40,
                gso: false,
                partial_csum: None,
            }
        );
        assert_eq!(&buf[..HEADROOM], &[0; HEADROOM]);
        assert_eq!(Framing::Plain.tx_range(rx), Some(HEADROOM..HEADROOM + 40));
        let vnet = Framing::Vnet { mtu: 1500 };
        assert_eq!(vnet.tx_range(rx), Some(0..HEADROOM + 40));
        assert_eq!(Framing::Plain.read_offset(), HEADROOM);
        assert_eq!(vnet.read_offset(), 0);
    }

    #[test]
    fn tso_frames_go_to_offload_ports_only() {
        let vnet = Framing::Vnet { mtu: 1500 };
        let mut buf = vec![0u8; 200];
        let hdr = VnetHdr {
            gso_type: vnet::GSO_TCPV4,
            gso_size: 1448,
            num_buffers: 1,
            ..VnetHdr::default()
        };
        buf[..HEADROOM].copy_from_slice(&hdr.to_bytes());
        let rx = rx_prepare(vnet, &mut buf, 150).unwrap();
        assert_eq!(
            rx,
            RxFrame {
                len: 138,
                gso: true,
                partial_csum: None,
            }
        );
        assert_eq!(Framing::Plain.tx_range(rx), None);
        assert_eq!(vnet.tx_range(rx), Some(0..150));
        assert_eq!(VnetHdr::parse(&buf).unwrap().num_buffers, 0);
        // Too short for a header; checksum offsets out of range.
        assert_eq!(rx_prepare(vnet, &mut buf, 5), None);
        let bad = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 100,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        buf[..HEADROOM].copy_from_slice(&bad.to_bytes());
        assert_eq!(rx_prepare(vnet, &mut buf, 60), None);
    }

    #[test]
    fn partial_checksums_are_finished_before_a_write() {
        let vnet = Framing::Vnet { mtu: 1500 };
        // A UDP datagram 10.0.2.100 -> 10.0.2.2 whose checksum field holds the
        // pseudo-header sum, as the container's kernel hands it over.
        let mut buf = vec![0u8; HEADROOM + 14 + 20 + 8 + 4];
        let f = HEADROOM;
        buf[f + 12..f + 14].copy_from_slice(&[0x08, 0x00]);
        let ip = f + 14;
        buf[ip..ip + 20].copy_from_slice(&[
            0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 100, 10, 0, 2, 2,
        ]);
        buf[ip + 20..ip + 28].copy_from_slice(&[0x9c, 0x40, 0, 53, 0, 12, 0, 0]);
        buf[ip + 28..].copy_from_slice(b"ping");
        let pseudo = tapnet_wire::checksum::fold(tapnet_wire::checksum::pseudo_v4(
            [10, 0, 2, 100].into(),
            [10, 0, 2, 2].into(),
            17,
            12,
        ));
        buf[ip + 26..ip + 28].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        buf[..HEADROOM].copy_from_slice(&hdr.to_bytes());
        let n = buf.len();
        let mut rx = rx_prepare(vnet, &mut buf, n).unwrap();
        assert_eq!(rx.partial_csum, Some((34, 6)));
        finish_checksum(&mut buf, &mut rx);
        assert_eq!(rx.partial_csum, None);
        let l4 = &buf[ip + 20..];
        assert_eq!(
            tapnet_wire::ip::l4_checksum([10, 0, 2, 100].into(), [10, 0, 2, 2].into(), 17, l4),
            0
        );
        assert_eq!(VnetHdr::parse(&buf).unwrap().flags, vnet::F_DATA_VALID);
    }
}
