//! The few pieces of the DNS message format (RFC 1035 4.1) the responder needs: a
//! checked parse of a query (header, one question, EDNS(0) OPT in the additional
//! section) and a writer for the response into the caller's buffer.
//!
//! Parsing never panics and never reads past the input: every access is bounds-checked
//! with `get`. Writing never exceeds the limit given to [`ResponseWriter::start`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{CLASS_IN, DnsVerdict, EDNS_PAYLOAD, is_name_byte};

/// Length of the fixed header (RFC 1035 4.1.1).
pub(super) const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets included (RFC 1035 2.3.4).
const MAX_WIRE_NAME: usize = 255;
/// OPT pseudo-RR type (RFC 6891 6.1.1).
const TYPE_OPT: u16 = 41;
/// Length of an OPT RR without options: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;
/// A compression pointer to offset 12, where the question's name starts (RFC 1035 4.1.4).
const NAME_POINTER: [u8; 2] = [0xc0, 0x0c];

// Header flag bits (RFC 1035 4.1.1).
const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// Response codes we send (RFC 1035 4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rcode {
    NoError = 0,
    FormErr = 1,
    NotImp = 4,
}

/// The parts of the header a response echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) id: u16,
    pub(super) flags: u16,
}

/// The query's EDNS(0) OPT record (RFC 6891 6.1.2-6.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Edns {
    /// Requestor's UDP payload size (the OPT's CLASS).
    pub(super) payload: u16,
    pub(super) version: u8,
}

/// Why a query is not answered normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ParseError {
    /// Not answerable at all: shorter than a header, or a response.
    Drop,
    /// The header parsed; send a header-only response with this code.
    Respond(Header, Rcode),
}

/// A parsed query with exactly one question.
#[derive(Clone, Debug)]
pub(super) struct Query<'a> {
    pub(super) header: Header,
    /// The question section as received (name, QTYPE, QCLASS), echoed in the response
    /// byte for byte so that 0x20-randomised case survives.
    pub(super) question: &'a [u8],
    pub(super) qtype: u16,
    pub(super) qclass: u16,
    /// The name in presentation form, lower case, labels joined with '.', no trailing
    /// dot (empty for the root).
    name: [u8; MAX_WIRE_NAME],
    name_len: usize,
    /// Every byte of the name is one we serve (see [`is_name_byte`]) or a separator.
    plain: bool,
    pub(super) edns: Option<Edns>,
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    let b = msg.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(msg: &[u8], pos: usize) -> Option<u32> {
    let b = msg.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Skips a possibly compressed name starting at `pos`; returns the offset after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos = pos.checked_add(1 + usize::from(len))?,
            // A pointer ends the name (RFC 1035 4.1.4).
            0xc0 => {
                msg.get(pos + 1)?;
                return Some(pos + 2);
            }
            // 0x40 and 0x80 are the obsolete extended label types (RFC 6891 5).
            _ => return None,
        }
    }
}

impl<'a> Query<'a> {
    /// Parses a query message.
    pub(super) fn parse(msg: &'a [u8]) -> Result<Self, ParseError> {
        let (Some(id), Some(flags)) = (u16_at(msg, 0), u16_at(msg, 2)) else {
            return Err(ParseError::Drop);
        };
        let header = Header { id, flags };
        if msg.len() < HEADER_LEN || flags & FLAG_QR != 0 {
            return Err(ParseError::Drop);
        }
        if flags & OPCODE_MASK != 0 {
            return Err(ParseError::Respond(header, Rcode::NotImp));
        }
        let formerr = ParseError::Respond(header, Rcode::FormErr);
        let count = |pos| u16_at(msg, pos).unwrap_or(0);
        let (qdcount, ancount, nscount, arcount) = (count(4), count(6), count(8), count(10));
        // RFC 9619: a QUERY carries exactly one question.
        if qdcount != 1 {
            return Err(formerr);
        }

        // The question's name: uncompressed (a pointer could only point back into the
        // header), at most 255 octets.
        let mut name = [0u8; MAX_WIRE_NAME];
        let mut name_len = 0;
        let mut plain = true;
        let mut pos = HEADER_LEN;
        loop {
            let len = usize::from(*msg.get(pos).ok_or(formerr)?);
            if len == 0 {
                pos += 1;
                break;
            }
            if len > 63 {
                return Err(formerr);
            }
            let label = msg.get(pos + 1..pos + 1 + len).ok_or(formerr)?;
            // Wire length so far plus the final root octet.
            if pos + 1 + len - HEADER_LEN + 1 > MAX_WIRE_NAME {
                return Err(formerr);
            }
            if name_len > 0 {
                name[name_len] = b'.';
                name_len += 1;
            }
            for &b in label {
                plain &= is_name_byte(b);
                name[name_len] = b.to_ascii_lowercase();
                name_len += 1;
            }
            pos += 1 + len;
        }
        let qtype = u16_at(msg, pos).ok_or(formerr)?;
        let qclass = u16_at(msg, pos + 2).ok_or(formerr)?;
        pos += 4;
        let question = &msg[HEADER_LEN..pos];

        // Answer and authority sections (empty in a normal query): skipped. Additional
        // section: at most one OPT, owned by the root (RFC 6891 6.1.1).
        let mut edns = None;
        let records = u32::from(ancount) + u32::from(nscount) + u32::from(arcount);
        for i in 0..records {
            let start = pos;
            pos = skip_name(msg, pos).ok_or(formerr)?;
            let rtype = u16_at(msg, pos).ok_or(formerr)?;
            let rclass = u16_at(msg, pos + 2).ok_or(formerr)?;
            let ttl = u32_at(msg, pos + 4).ok_or(formerr)?;
            let rdlen = usize::from(u16_at(msg, pos + 8).ok_or(formerr)?);
            pos += 10;
            msg.get(pos..pos + rdlen).ok_or(formerr)?;
            pos += rdlen;
            let additional = i >= u32::from(ancount) + u32::from(nscount);
            if rtype == TYPE_OPT {
                if !additional || edns.is_some() || msg[start] != 0 {
                    return Err(formerr);
                }
                edns = Some(Edns {
                    payload: rclass,
                    version: ttl.to_be_bytes()[1],
                });
            }
        }
        Ok(Self {
            header,
            question,
            qtype,
            qclass,
            name,
            name_len,
            plain,
            edns,
        })
    }

    /// The question's name (lower case, no trailing dot), or `None` when it is the root
    /// or contains a byte no container name has.
    pub(super) fn name_text(&self) -> Option<&str> {
        if !self.plain || self.name_len == 0 {
            return None;
        }
        std::str::from_utf8(&self.name[..self.name_len]).ok()
    }
}

/// Writes a header-only response with `rcode`; returns its length, or `None` when
/// `out` cannot hold a header.
pub(super) fn write_error(header: &Header, rcode: Rcode, out: &mut [u8]) -> Option<usize> {
    let out = out.get_mut(..HEADER_LEN)?;
    out.fill(0);
    let flags = FLAG_QR | (header.flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | rcode as u16;
    out[0..2].copy_from_slice(&header.id.to_be_bytes());
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    Some(HEADER_LEN)
}

/// Builds a response in place: header, the echoed question, answer records (owned by
/// the question's name through a compression pointer), then the OPT record if the
/// query had one.
#[derive(Debug)]
pub(super) struct ResponseWriter<'o> {
    out: &'o mut [u8],
    /// Bytes we may use: never more than `out.len()`.
    limit: usize,
    /// End of the header and question.
    question_end: usize,
    pos: usize,
    ancount: u16,
    truncated: bool,
    opt: bool,
}

impl<'o> ResponseWriter<'o> {
    /// Writes the header and question; `None` if they (and the OPT) exceed `limit`.
    pub(super) fn start(
        q: &Query<'_>,
        out: &'o mut [u8],
        limit: usize,
        rcode: Rcode,
    ) -> Option<Self> {
        let limit = limit.min(out.len());
        let opt = q.edns.is_some();
        let question_end = HEADER_LEN + q.question.len();
        if question_end + if opt { OPT_LEN } else { 0 } > limit {
            return None;
        }
        let flags = FLAG_QR | FLAG_AA | (q.header.flags & FLAG_RD) | FLAG_RA | rcode as u16;
        out[..HEADER_LEN].fill(0);
        out[0..2].copy_from_slice(&q.header.id.to_be_bytes());
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        out[4..6].copy_from_slice(&1u16.to_be_bytes());
        out[HEADER_LEN..question_end].copy_from_slice(q.question);
        Some(Self {
            out,
            limit,
            question_end,
            pos: question_end,
            ancount: 0,
            truncated: false,
            opt,
        })
    }

    /// Bytes that must stay free for the OPT record.
    fn reserve(&self) -> usize {
        if self.opt { OPT_LEN } else { 0 }
    }

    /// Appends one answer record of class IN owned by the question's name; marks the
    /// response truncated instead if it does not fit.
    fn record(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) {
        let len = NAME_POINTER.len() + 10 + rdata.len();
        if self.truncated
            || self.pos + len + self.reserve() > self.limit
            || self.ancount == u16::MAX
        {
            self.truncated = true;
            return;
        }
        let rr = &mut self.out[self.pos..self.pos + len];
        rr[0..2].copy_from_slice(&NAME_POINTER);
        rr[2..4].copy_from_slice(&rtype.to_be_bytes());
        rr[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
        rr[6..10].copy_from_slice(&ttl.to_be_bytes());
        // rdata is at most 255 bytes (a name) here.
        rr[10..12].copy_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
        rr[12..].copy_from_slice(rdata);
        self.pos += len;
        self.ancount += 1;
    }

    /// An A record (RFC 1035 3.4.1).
    pub(super) fn a(&mut self, ttl: u32, addr: Ipv4Addr) {
        self.record(super::TYPE_A, ttl, &addr.octets());
    }

    /// An AAAA record (RFC 3596 2.2).
    pub(super) fn aaaa(&mut self, ttl: u32, addr: Ipv6Addr) {
        self.record(super::TYPE_AAAA, ttl, &addr.octets());
    }

    /// A PTR record (RFC 1035 3.3.12) pointing at `target`, a validated name.
    pub(super) fn ptr(&mut self, ttl: u32, target: &str) {
        let mut wire = [0u8; MAX_WIRE_NAME];
        let mut len = 0;
        for label in target.split('.') {
            let bytes = label.as_bytes();
            if len + 1 + bytes.len() + 1 > MAX_WIRE_NAME || bytes.len() > 63 {
                self.truncated = true;
                return;
            }
            wire[len] = bytes.len() as u8;
            wire[len + 1..len + 1 + bytes.len()].copy_from_slice(bytes);
            len += 1 + bytes.len();
        }
        wire[len] = 0;
        self.record(super::TYPE_PTR, ttl, &wire[..=len]);
    }

    /// Sets the counts, appends the OPT record, and returns the verdict. A response
    /// whose records did not all fit goes out with TC set and no records.
    pub(super) fn finish(self) -> DnsVerdict {
        self.finish_with(0)
    }

    /// Finishes as a BADVERS response (RFC 6891 6.1.3): no records; the OPT carries
    /// extended rcode 1 (16 >> 4), our version 0.
    pub(super) fn finish_badvers(mut self) -> DnsVerdict {
        self.pos = self.question_end;
        self.ancount = 0;
        self.finish_with(1)
    }

    fn finish_with(mut self, extended_rcode: u8) -> DnsVerdict {
        if self.truncated {
            self.pos = self.question_end;
            self.ancount = 0;
            self.out[2] |= (FLAG_TC >> 8) as u8;
        }
        self.out[6..8].copy_from_slice(&self.ancount.to_be_bytes());
        if self.opt {
            let opt = &mut self.out[self.pos..self.pos + OPT_LEN];
            opt[0] = 0; // root owner
            opt[1..3].copy_from_slice(&TYPE_OPT.to_be_bytes());
            opt[3..5].copy_from_slice(&EDNS_PAYLOAD.to_be_bytes());
            // TTL: extended rcode, version 0, flags (DO) 0.
            opt[5..9].copy_from_slice(&[extended_rcode, 0, 0, 0]);
            opt[9..11].copy_from_slice(&0u16.to_be_bytes());
            self.pos += OPT_LEN;
            self.out[10..12].copy_from_slice(&1u16.to_be_bytes());
        }
        DnsVerdict::Answer { len: self.pos }
    }
}

/// The address a reverse name (`d.c.b.a.in-addr.arpa`, RFC 1035 3.5, or 32 nibbles
/// `.ip6.arpa`, RFC 3596 2.5) stands for; `None` for any other name, including partial
/// reverse names.
pub(super) fn reverse_address(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let mut labels = rest.split('.');
        for slot in octets.iter_mut().rev() {
            let label = labels.next()?;
            if label.is_empty() || label.len() > 3 || !label.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = label.parse().ok()?;
        }
        return labels.next().is_none().then(|| IpAddr::from(octets));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let mut value: u128 = 0;
    let mut count = 0;
    for (i, label) in rest.split('.').enumerate() {
        if i >= 32 || label.len() != 1 {
            return None;
        }
        let nibble = char::from(label.as_bytes()[0]).to_digit(16)?;
        value |= u128::from(nibble) << (4 * i);
        count += 1;
    }
    (count == 32).then(|| IpAddr::from(Ipv6Addr::from(value)))
}
