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
//! They keep both as far as they can: to another offload port the received header goes
//! along (the receiving kernel, or the uplink's GSO, completes and segments), and the
//! router and NAT work on them with [`Offload`], which says what the header said. A
//! partial checksum is completed ([`finish_checksum`]) only before a write to a plain
//! port, and a TSO frame is cut into segments only there
//! ([`tapnet_wire::vnet::segment_tcp`]).
//!
//! A station's TCP SYN towards the host-socket engine behind the gateway gets a raised
//! MSS ([`raise_mss_towards_engine`]), so that the engine sends 64 KiB segments too;
//! frames that the pipeline builds get a TSO header from [`Framing::tx_header`].

use std::io::IoSlice;
use std::ops::Range;
use std::os::fd::BorrowedFd;

use tapnet_wire::vnet::{self, VnetHdr};

use super::PortIo;

/// Bytes in front of every frame in a receive buffer.
pub(crate) const HEADROOM: usize = vnet::HDR_LEN;

/// The MSS announced to the engine in place of the standard one by a station on an
/// offload port: the engine then sends segments of up to this many bytes, which the
/// port takes as one TSO frame each.
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
            PortIo::TapOffload { mtu, .. } | PortIo::PacketOffload { mtu, .. } => Self::Vnet {
                mtu: usize::try_from(*mtu).unwrap_or(1500),
            },
        }
    }

    /// Whether frames go with a `virtio_net_hdr`, so partial checksums and TSO frames
    /// can be written as they are.
    pub(crate) fn takes_offload(self) -> bool {
        matches!(self, Self::Vnet { .. })
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
            Self::Plain if rx.is_tso() => None,
            Self::Plain => Some(HEADROOM..HEADROOM + rx.len),
            Self::Vnet { .. } => Some(0..HEADROOM + rx.len),
        }
    }

    /// The header to write before a frame the pipeline wrote into its own buffer
    /// (`None`: no header): what `offload` says of a received frame, else the TSO
    /// header of a frame the pipeline built (the engine's long segments).
    pub(crate) fn tx_header(
        self,
        frame: &[u8],
        offload: Option<Offload>,
    ) -> Option<[u8; HEADROOM]> {
        match (self, offload) {
            (Self::Plain, _) => None,
            (Self::Vnet { .. }, Some(offload)) => Some(offload.header(frame).to_bytes()),
            (Self::Vnet { mtu, .. }, None) => Some(vnet::tx_header(frame, mtu).to_bytes()),
        }
    }
}

/// Writes one frame that the pipeline holds to a port's fd: with the header that
/// `framing` needs, or, for a TSO frame to a plain port, as its segments (one write
/// each). The frame's partial checksum, if any, must have been completed for a plain
/// port. The error is an errno.
pub(crate) fn write_frame(
    fd: BorrowedFd<'_>,
    framing: Framing,
    frame: &[u8],
    offload: Option<Offload>,
) -> Result<(), i32> {
    let written = match (
        framing.tx_header(frame, offload),
        offload.and_then(|o| o.gso),
    ) {
        (Some(hdr), _) => rustix::io::writev(fd, &[IoSlice::new(&hdr), IoSlice::new(frame)]),
        (None, Some((gso_type, gso_size))) => {
            return write_segments(fd, frame, gso_type, gso_size);
        }
        (None, None) => rustix::io::write(fd, frame),
    };
    written.map(|_| ()).map_err(|e| e.raw_os_error())
}

/// Writes a TSO frame as the segments that Linux's GSO would make of it (one write
/// each: headers and payload gathered), for a port that cannot take it whole. The
/// first failed write ends it (a full queue would refuse the rest too).
fn write_segments(
    fd: BorrowedFd<'_>,
    frame: &[u8],
    gso_type: u8,
    gso_size: u16,
) -> Result<(), i32> {
    if !matches!(gso_type & !vnet::GSO_ECN, vnet::GSO_TCPV4 | vnet::GSO_TCPV6) {
        return Err(libc::EMSGSIZE);
    }
    let mut result = Ok(());
    let segmented = vnet::segment_tcp(frame, usize::from(gso_size), |headers, payload| {
        if result.is_ok() {
            result = rustix::io::writev(fd, &[IoSlice::new(headers), IoSlice::new(payload)])
                .map(|_| ())
                .map_err(|e| e.raw_os_error());
        }
    });
    if !segmented {
        return Err(libc::EMSGSIZE);
    }
    result
}

/// What the `virtio_net_hdr` of a received frame said, for the pipeline to carry
/// along while it routes and rewrites the frame (always with a 14-byte Ethernet
/// header, which is what the offsets count from).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Offload {
    /// The TCP/UDP checksum is partial: (`csum_start`, `csum_offset`).
    pub(crate) csum: Option<(u16, u16)>,
    /// A TSO frame: (`gso_type`, `gso_size`).
    pub(crate) gso: Option<(u8, u16)>,
    /// The sender's kernel vouched for the checksums (`F_DATA_VALID`).
    pub(crate) data_valid: bool,
}

impl Offload {
    /// From a received header (a frame from a port without one has no `Offload`).
    pub(crate) fn of(hdr: &VnetHdr) -> Self {
        Self {
            csum: (hdr.flags & vnet::F_NEEDS_CSUM != 0)
                .then_some((hdr.csum_start, hdr.csum_offset)),
            gso: hdr.is_gso().then_some((hdr.gso_type, hdr.gso_size)),
            data_valid: hdr.flags & vnet::F_DATA_VALID != 0,
        }
    }

    /// `self` if `frame` is still a TCP or UDP packet whose checksum field lies where
    /// it says: a router reply built from a frame in place (an echo reply, an ARP
    /// answer) has nothing to do with the header the frame came with.
    pub(crate) fn still_fits(self, frame: &[u8]) -> Option<Self> {
        let proto = match frame.get(12..14)? {
            [0x08, 0x00] => *frame.get(14 + 9)?,
            [0x86, 0xdd] => *frame.get(14 + 6)?,
            _ => return None,
        };
        if proto != 6 && proto != 17 {
            return None;
        }
        if let Some((start, offset)) = self.csum {
            (usize::from(start) + usize::from(offset) + 2 <= frame.len()).then_some(())?;
        }
        Some(self)
    }

    /// The TSO segment size, for the router's MTU checks.
    pub(crate) fn segment(self) -> Option<u16> {
        self.gso.map(|(_, size)| size)
    }

    /// The offsets moved by `by` bytes of link header (a frame that arrived with a
    /// VLAN tag and leaves without one); `None` if the checksum range no longer fits.
    pub(crate) fn shifted_back(self, by: usize) -> Option<Self> {
        let Some((start, offset)) = self.csum else {
            return Some(self);
        };
        let start = usize::from(start).checked_sub(by).filter(|&s| s >= 14)?;
        Some(Self {
            csum: Some((u16::try_from(start).ok()?, offset)),
            ..self
        })
    }

    /// What the router needs to know of a frame received with `offload`: its segment
    /// size and its partial checksum.
    pub(crate) fn for_router(offload: Option<Self>) -> tapnet_switch::router::FrameOffload {
        tapnet_switch::router::FrameOffload {
            segment: offload.and_then(Self::segment),
            partial_checksum: offload
                .and_then(|o| o.csum)
                .map(|(start, at)| (usize::from(start), usize::from(at))),
        }
    }

    /// The partial checksum's field in the IP packet that starts 14 bytes into the
    /// frame: (transport header offset, checksum offset in it).
    pub(crate) fn l4_field(self) -> Option<(usize, usize)> {
        let (start, offset) = self.csum?;
        Some((usize::from(start).checked_sub(14)?, usize::from(offset)))
    }

    /// The header to write before `frame`.
    fn header(self, frame: &[u8]) -> VnetHdr {
        let mut hdr = VnetHdr::default();
        if let Some((start, offset)) = self.csum {
            hdr.flags = vnet::F_NEEDS_CSUM;
            hdr.csum_start = start;
            hdr.csum_offset = offset;
        } else if self.data_valid {
            hdr.flags = vnet::F_DATA_VALID;
        }
        if let Some((gso_type, gso_size)) = self.gso {
            hdr.gso_type = gso_type;
            hdr.gso_size = gso_size;
            // A hint of how much to copy into every segment: up to the TCP payload,
            // whose header starts at `csum_start` (0, no hint, when that is unknown).
            if let Some((tcp, _)) = self.csum {
                let tcp = usize::from(tcp);
                let doff = frame.get(tcp + 12).map_or(20, |b| usize::from(b >> 4) * 4);
                hdr.hdr_len = u16::try_from(tcp + doff).unwrap_or(0);
            }
        }
        hdr
    }

    /// A partial checksum completed: the field is final, the data as the sender made it.
    fn completed(self) -> Self {
        Self {
            csum: None,
            data_valid: true,
            ..self
        }
    }
}

/// For a frame from an offload port that goes to the host-socket engine: raises the
/// MSS of a TCP SYN (or SYN-ACK) that announces the standard one for the network's
/// `mtu`, so that the engine sends segments of up to 64 KiB, which the port takes as
/// TSO frames. A smaller MSS (chosen for a reason of the station's own) stays.
pub(crate) fn raise_mss_towards_engine(frame: &mut [u8], offload: Offload, mtu: u32) {
    let standard =
        |ip_and_tcp: u32| u16::try_from(mtu.saturating_sub(ip_and_tcp)).unwrap_or(u16::MAX);
    let (v4, v6) = (standard(40), standard(60));
    if offload.csum.is_some() {
        vnet::raise_syn_mss_partial(frame, v4, v6, RAISED_MSS);
    } else {
        vnet::raise_syn_mss(frame, v4, v6, RAISED_MSS);
    }
}

/// Completes the partial checksum of `frame` (the pipeline's copy) if `offload` has
/// one, for writing to a port without offload; returns what describes it afterwards.
pub(crate) fn finish_offload_checksum(
    frame: &mut [u8],
    offload: Option<Offload>,
) -> Option<Offload> {
    let offload = offload?;
    let Some((start, offset)) = offload.csum else {
        return Some(offload);
    };
    vnet::complete_checksum(frame, usize::from(start), usize::from(offset));
    Some(offload.completed())
}

/// A received frame at `buf[HEADROOM..HEADROOM + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxFrame {
    pub(crate) len: usize,
    /// What the header said (`None` on a plain port). A partial checksum (offsets
    /// checked to be in range) is completed by [`finish_checksum`] only before the
    /// frame is written to a plain port: the gateway's side (router, engine) does not
    /// verify TCP/UDP checksums, so frames for it skip that pass over the payload.
    pub(crate) offload: Option<Offload>,
}

impl RxFrame {
    /// A TSO frame (longer than one segment on the wire).
    pub(crate) fn is_tso(self) -> bool {
        self.offload.is_some_and(|o| o.gso.is_some())
    }

    /// Its checksum is partial.
    pub(crate) fn has_partial_checksum(self) -> bool {
        self.offload.is_some_and(|o| o.csum.is_some())
    }
}

/// Completes a partial checksum in a received buffer (see [`RxFrame::offload`])
/// and marks the header in front accordingly. Call before writing the buffer out.
pub(crate) fn finish_checksum(buf: &mut [u8], rx: &mut RxFrame) {
    if !rx.has_partial_checksum() {
        return;
    }
    let Some(frame) = buf.get_mut(HEADROOM..HEADROOM + rx.len) else {
        return;
    };
    rx.offload = finish_offload_checksum(frame, rx.offload);
    if let Some(mut hdr) = VnetHdr::parse(buf) {
        hdr.flags = vnet::F_DATA_VALID;
        hdr.csum_start = 0;
        hdr.csum_offset = 0;
        buf[..HEADROOM].copy_from_slice(&hdr.to_bytes());
    }
}

/// Prepares a buffer into which `n` bytes were read at `framing.read_offset()`: the
/// header in front is made valid for writing to an offload port; a partial checksum is
/// left for [`finish_checksum`]. `None`: drop the frame (malformed header).
pub(crate) fn rx_prepare(framing: Framing, buf: &mut [u8], n: usize) -> Option<RxFrame> {
    match framing {
        Framing::Plain => {
            buf.get_mut(..HEADROOM)?.fill(0);
            (n <= buf.len() - HEADROOM).then_some(RxFrame {
                len: n,
                offload: None,
            })
        }
        Framing::Vnet { .. } => {
            let len = n.checked_sub(HEADROOM)?;
            let mut hdr = VnetHdr::parse(buf)?;
            let frame = buf.get_mut(HEADROOM..HEADROOM + len)?;
            let field = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset);
            if hdr.flags & vnet::F_NEEDS_CSUM != 0 && field + 2 > frame.len() {
                return None;
            }
            hdr.num_buffers = 0;
            buf[..HEADROOM].copy_from_slice(&hdr.to_bytes());
            Some(RxFrame {
                len,
                offload: Some(Offload::of(&hdr)),
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
                offload: None,
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
                offload: Some(Offload {
                    gso: Some((vnet::GSO_TCPV4, 1448)),
                    ..Offload::default()
                }),
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
        assert_eq!(rx.offload.and_then(|o| o.csum), Some((34, 6)));
        finish_checksum(&mut buf, &mut rx);
        assert_eq!(rx.offload.and_then(|o| o.csum), None);
        let l4 = &buf[ip + 20..];
        assert_eq!(
            tapnet_wire::ip::l4_checksum([10, 0, 2, 100].into(), [10, 0, 2, 2].into(), 17, l4),
            0
        );
        assert_eq!(VnetHdr::parse(&buf).unwrap().flags, vnet::F_DATA_VALID);
    }

    /// An untagged IPv4 TCP frame of `payload` bytes (header checksum not needed here).
    fn tcp_frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[14 + 20 + 12] = 0x50;
        f
    }

    #[test]
    fn offload_state_follows_the_received_header() {
        assert_eq!(Offload::of(&VnetHdr::default()), Offload::default());
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let offload = Offload::of(&hdr);
        assert_eq!(offload.segment(), Some(1448));
        assert_eq!(offload.l4_field(), Some((20, 16)));
        // Written out again: the same checksum request, a header length hint up to
        // the TCP payload.
        let frame = tcp_frame(3000);
        let out = offload.header(&frame);
        assert_eq!(
            (
                out.flags,
                out.gso_type,
                out.gso_size,
                out.csum_start,
                out.csum_offset
            ),
            (vnet::F_NEEDS_CSUM, vnet::GSO_TCPV4, 1448, 34, 16)
        );
        assert_eq!(out.hdr_len, 54);
        let framing = Framing::Vnet { mtu: 1500 };
        assert_eq!(
            framing.tx_header(&frame, Some(offload)),
            Some(out.to_bytes())
        );
        assert_eq!(Framing::Plain.tx_header(&frame, Some(offload)), None);
        // Still a TCP frame with the field in range; not an ARP answer built in place.
        assert_eq!(offload.still_fits(&frame), Some(offload));
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(offload.still_fits(&arp), None);
        assert_eq!(offload.still_fits(&frame[..40]), None);
        // A VLAN tag (4 bytes) in front on the way in, none on the way out.
        let tagged = Offload {
            csum: Some((38, 16)),
            ..offload
        };
        assert_eq!(tagged.shifted_back(4), Some(offload));
        assert_eq!(offload.shifted_back(30), None);
    }

    #[test]
    fn a_partial_checksum_is_completed_for_a_plain_port() {
        let mut frame = tcp_frame(100);
        let offload = Offload {
            csum: Some((34, 16)),
            ..Offload::default()
        };
        let done = finish_offload_checksum(&mut frame, Some(offload)).unwrap();
        assert_eq!(done.csum, None);
        assert!(done.data_valid);
        assert_eq!(
            tapnet_wire::checksum::fold(tapnet_wire::checksum::add(0, &frame[34..])),
            0xffff
        );
        assert_eq!(finish_offload_checksum(&mut frame, None), None);
    }
}
