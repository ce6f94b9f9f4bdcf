//! The listing of entries: the `conntrack -L` text line and the `--json` form.
//!
//! Layer: sans-IO core (formatting only; allocation is fine here, off the packet path).
//!
//! The text follows conntrack-tools (libnetfilter_conntrack's default output, which
//! mirrors the kernel's `/proc/net/nf_conntrack` minus the layer-3 columns):
//!
//! ```text
//! tcp      6 431999 ESTABLISHED src=10.0.2.100 dst=10.0.2.2 sport=40000 dport=80 packets=5 bytes=300 src=127.0.0.1 dst=127.0.0.1 sport=80 dport=54321 packets=4 bytes=260 [ASSURED] mark=0 zone=1 use=1
//! ```
//!
//! - the layer-4 name padded to 8 columns (`%-8s`), its protocol number, the seconds
//!   left (rounded down, as `nf_ct_expires() / HZ`), and for TCP the state;
//! - the original tuple with its counters, `[UNREPLIED]` if no reply was seen, the
//!   reply tuple with its counters, `[ASSURED]`, `mark=0`;
//! - `zone=N` when the zone is not the default zone 0 (the kernel dumps `CTA_ZONE`
//!   only then); when the two tuples are in different zones, `zone-orig=N` and
//!   `zone-reply=N` after each tuple instead;
//! - ICMP tuples carry `type= code= id=` instead of ports: echo request 8 and reply 0
//!   (ICMPv6: 128 and 129, protocol `icmpv6 58`);
//! - `use=1` (one reference: the table's).
//!
//! `conntrack -L -o extended` (and `/proc/net/nf_conntrack`) prefix `ipv4     2` or
//! `ipv6     10`: see [`EntryInfo::to_conntrack_line_extended`].

use core::fmt::Write as _;

use serde::ser::SerializeStruct;

use crate::{Direction, EntryInfo, FlowKey, Proto};

/// The layer-4 name and number `conntrack -L` shows for an entry.
fn l4_name(proto: Proto, ipv6: bool) -> (&'static str, u8) {
    match (proto, ipv6) {
        (Proto::Tcp, _) => ("tcp", 6),
        (Proto::Udp, _) => ("udp", 17),
        (Proto::IcmpEcho, false) => ("icmp", 1),
        (Proto::IcmpEcho, true) => ("icmpv6", 58),
    }
}

/// Writes `src=.. dst=.. sport=.. dport=.. ` (or the ICMP form) of one tuple.
fn write_tuple(out: &mut String, key: &FlowKey, dir: Direction) {
    let _ = write!(out, "src={} dst={} ", key.src, key.dst);
    match key.proto {
        Proto::Tcp | Proto::Udp => {
            let _ = write!(out, "sport={} dport={} ", key.src_port, key.dst_port);
        }
        Proto::IcmpEcho => {
            // RFC 792: echo 8, echo reply 0; RFC 4443: 128 and 129.
            let kind = match (key.is_ipv6(), dir) {
                (false, Direction::Original) => 8,
                (false, Direction::Reply) => 0,
                (true, Direction::Original) => 128,
                (true, Direction::Reply) => 129,
            };
            let _ = write!(out, "type={kind} code=0 id={} ", key.src_port);
        }
    }
}

impl EntryInfo {
    /// The entry as one line of `conntrack -L` (see the module docs for the format).
    pub fn to_conntrack_line(&self) -> String {
        let mut out = String::with_capacity(256);
        let (name, number) = l4_name(self.proto, self.original.is_ipv6());
        let _ = write!(out, "{name:<8} {number} {} ", self.remaining.as_secs());
        if self.proto == Proto::Tcp {
            let _ = write!(out, "{} ", self.state);
        }
        let split_zones = self.original.zone != self.reply.zone;
        write_tuple(&mut out, &self.original, Direction::Original);
        if split_zones && self.original.zone.0 != 0 {
            let _ = write!(out, "zone-orig={} ", self.original.zone.0);
        }
        let c = self.original_counters;
        let _ = write!(out, "packets={} bytes={} ", c.packets, c.bytes);
        if self.is_unreplied() {
            out.push_str("[UNREPLIED] ");
        }
        write_tuple(&mut out, &self.reply, Direction::Reply);
        if split_zones && self.reply.zone.0 != 0 {
            let _ = write!(out, "zone-reply={} ", self.reply.zone.0);
        }
        let c = self.reply_counters;
        let _ = write!(out, "packets={} bytes={} ", c.packets, c.bytes);
        if self.assured {
            out.push_str("[ASSURED] ");
        }
        out.push_str("mark=0 ");
        if !split_zones && self.original.zone.0 != 0 {
            let _ = write!(out, "zone={} ", self.original.zone.0);
        }
        out.push_str("use=1");
        out
    }

    /// The line of `conntrack -L -o extended` (and `/proc/net/nf_conntrack`): the
    /// `conntrack -L` line prefixed with the layer-3 name and number.
    pub fn to_conntrack_line_extended(&self) -> String {
        let l3 = if self.original.is_ipv6() {
            "ipv6     10 "
        } else {
            "ipv4     2 "
        };
        let mut out = String::from(l3);
        out.push_str(&self.to_conntrack_line());
        out
    }
}

/// The JSON form (`tapnet conntrack --json`): readable names, the state as conntrack
/// names it, the time left in whole seconds.
///
/// ```json
/// {"id":4294967296,"family":"ipv4","proto":"tcp","protonum":6,"state":"ESTABLISHED",
///  "remaining_secs":431999,"assured":true,"unreplied":false,
///  "original":{"zone":1,"proto":"tcp","src":"10.0.2.100","src_port":40000,...},
///  "reply":{...},"original_counters":{"packets":5,"bytes":300},"reply_counters":{...}}
/// ```
impl serde::Serialize for EntryInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ipv6 = self.original.is_ipv6();
        let (name, number) = l4_name(self.proto, ipv6);
        let mut s = serializer.serialize_struct("EntryInfo", 12)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("family", if ipv6 { "ipv6" } else { "ipv4" })?;
        s.serialize_field("proto", name)?;
        s.serialize_field("protonum", &number)?;
        s.serialize_field("state", &self.state)?;
        s.serialize_field("remaining_secs", &self.remaining.as_secs())?;
        s.serialize_field("assured", &self.assured)?;
        s.serialize_field("unreplied", &self.is_unreplied())?;
        s.serialize_field("original", &self.original)?;
        s.serialize_field("reply", &self.reply)?;
        s.serialize_field("original_counters", &self.original_counters)?;
        s.serialize_field("reply_counters", &self.reply_counters)?;
        s.end()
    }
}
