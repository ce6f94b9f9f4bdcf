//! The TCP state tracker: which conntrack state a segment moves a flow to.
//!
//! Layer: sans-IO core, private to the crate; [`crate::Conntrack`] applies the result.
//!
//! Modelled on Linux `net/netfilter/nf_conntrack_proto_tcp.c` (the `tcp_conntracks`
//! table), simplified: no sequence-number/window tracking, no SYN_SENT2 (simultaneous
//! open), no "unacknowledged data" timeout. A segment is classified by its flags into
//! one of six classes (as `get_conntrack_index()` does: RST first, then SYN with or
//! without ACK, then FIN, then ACK) and the class, the current state and the direction
//! give the next state:
//!
//! ```text
//! SYN_SENT --SYN+ACK (reply)--> SYN_RECV --ACK (original)--> ESTABLISHED
//! ESTABLISHED --FIN (either side)--> FIN_WAIT --ACK (other side)--> CLOSE_WAIT
//! FIN_WAIT / CLOSE_WAIT --FIN (the other side)--> LAST_ACK --ACK (other side)--> TIME_WAIT
//! any --RST--> CLOSE;  TIME_WAIT / CLOSE --SYN (original)--> restart as SYN_SENT
//! ```
//!
//! Unlike the kernel table, which keys FIN_WAIT -> CLOSE_WAIT and LAST_ACK -> TIME_WAIT
//! on any ACK and relies on window tracking to reject the FIN sender's own ACKs, this
//! tracker remembers which side sent each FIN, so that only the peer's ACK of a FIN
//! advances the close (RFC 9293 section 3.6: each side's FIN is acknowledged by the
//! other), and a retransmitted FIN from the same side does not count as the second FIN.

use crate::{Direction, State, TcpFlags};

/// The flag combinations the tracker distinguishes (Linux `enum tcp_bit_set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    /// SYN without ACK: a connection request (RFC 9293 section 3.5).
    Syn,
    /// SYN with ACK: the answer to a SYN.
    SynAck,
    /// FIN (with or without ACK): one side is done sending (RFC 9293 section 3.6).
    Fin,
    /// ACK only (data or pure acknowledgement).
    Ack,
    /// RST: the connection is aborted (RFC 9293 section 3.5.2).
    Rst,
    /// No flag the tracker cares about: invalid for every state (a TCP segment past
    /// the first SYN always carries ACK, RFC 9293 section 3.4).
    Bare,
}

impl Segment {
    /// Classifies `flags` in the kernel's order: RST, SYN(+ACK), FIN, ACK.
    pub(crate) fn classify(flags: TcpFlags) -> Self {
        if flags.rst {
            Self::Rst
        } else if flags.syn {
            if flags.ack { Self::SynAck } else { Self::Syn }
        } else if flags.fin {
            Self::Fin
        } else if flags.ack {
            Self::Ack
        } else {
            Self::Bare
        }
    }

    /// Whether a segment of this class may create an entry: a SYN without ACK only
    /// (no mid-stream pickup, unlike Linux's `nf_conntrack_tcp_loose=1`).
    pub(crate) fn may_start_flow(self) -> bool {
        self == Self::Syn
    }
}

/// Which side sent FINs so far (bits in the entry's flag byte).
pub(crate) mod fin {
    /// The original direction sent a FIN.
    pub(crate) const ORIGINAL: u8 = 1 << 0;
    /// The reply direction sent a FIN.
    pub(crate) const REPLY: u8 = 1 << 1;
    /// Both bits.
    pub(crate) const MASK: u8 = ORIGINAL | REPLY;
    /// The FIN that moved the flow to LAST_ACK came from the reply direction.
    pub(crate) const LAST_REPLY: u8 = 1 << 2;
    /// Every bit the tracker keeps (cleared when a flow restarts).
    pub(crate) const ALL: u8 = MASK | LAST_REPLY;

    /// The bit of `dir`.
    pub(crate) fn bit(dir: crate::Direction) -> u8 {
        match dir {
            crate::Direction::Original => ORIGINAL,
            crate::Direction::Reply => REPLY,
        }
    }
}

/// What a segment does to a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The flow is (or stays) in this state; its timeout is refreshed.
    To(State),
    /// A SYN reopened a closed or TIME_WAIT flow (port reuse): start over in SYN_SENT.
    Restart,
    /// Acceptable but meaningless here (Linux `sIG`, e.g. a retransmitted SYN+ACK):
    /// the state and the timeout are left alone.
    Ignore,
    /// Does not fit the state (Linux `sIV`): the state and the timeout are left alone.
    Invalid,
}

/// The step `seg` from `dir` takes in `state`. `fins` holds the [`fin`] bits of the
/// entry and is updated when a FIN is accepted.
pub(crate) fn step(state: State, fins: &mut u8, dir: Direction, seg: Segment) -> Step {
    use Direction::{Original, Reply};
    use State::{
        TcpClose as Cl, TcpCloseWait as Cw, TcpEstablished as Es, TcpFinWait as Fw,
        TcpLastAck as La, TcpSynRecv as Sr, TcpSynSent as Ss, TcpTimeWait as Tw,
    };
    let mine = fin::bit(dir);
    let other = *fins & fin::MASK & !mine;
    match (seg, state, dir) {
        // RFC 9293 3.5.2: a reset aborts the connection whatever the state. (Linux also
        // checks the sequence number against the window; we do not track windows.)
        (Segment::Rst, Ss | Sr | Es | Fw | Cw | La | Tw | Cl, _) => Step::To(Cl),

        // The opening handshake (RFC 9293 3.5, figure 6).
        (Segment::Syn, Ss, Original) => Step::To(Ss), // retransmitted SYN
        (Segment::Syn, Tw | Cl, Original) => Step::Restart, // port reuse
        (Segment::Syn, Ss, Reply) => Step::Ignore,    // simultaneous open (Linux: SYN_SENT2)
        (Segment::Syn, _, _) => Step::Invalid,
        (Segment::SynAck, Ss | Sr, Reply) => Step::To(Sr),
        (Segment::SynAck, Sr, Original) => Step::To(Sr), // simultaneous open
        (Segment::SynAck, Es | Fw | Cw | La | Tw | Cl, Reply) => Step::Ignore, // retransmit
        (Segment::SynAck, _, _) => Step::Invalid,
        (Segment::Ack, Sr, Original) => Step::To(Es), // the third segment of the handshake
        (Segment::Ack, Sr, Reply) => Step::To(Sr),
        (Segment::Ack, Ss, Reply) => Step::Ignore,
        (Segment::Ack, Ss, Original) => Step::Invalid,

        // The closing sequence (RFC 9293 3.6). FIN_WAIT: one FIN seen; CLOSE_WAIT: it
        // was acknowledged; LAST_ACK: both sides sent FIN; TIME_WAIT: the second FIN
        // was acknowledged.
        (Segment::Fin, Ss, _) => Step::Invalid,
        (Segment::Fin, Sr | Es, _) => {
            *fins |= mine;
            Step::To(Fw)
        }
        (Segment::Fin, Fw | Cw, _) => {
            if *fins & mine != 0 {
                // A retransmission of this side's FIN.
                Step::To(state)
            } else {
                *fins |= mine;
                if dir == Reply {
                    *fins |= fin::LAST_REPLY;
                }
                Step::To(La)
            }
        }
        (Segment::Fin, La | Tw | Cl, _) => {
            *fins |= mine;
            Step::To(state)
        }
        (Segment::Ack, Es, _) => Step::To(Es),
        // The peer of the FIN sender acknowledges it.
        (Segment::Ack, Fw, _) if other != 0 => Step::To(Cw),
        (Segment::Ack, Fw | Cw, _) => Step::To(state),
        // In LAST_ACK both sides sent FIN: the ACK that completes the close comes from
        // the side that did not send the second FIN (`LAST_REPLY` tells which).
        (Segment::Ack, La, _) if last_fin_dir(*fins) != dir => Step::To(Tw),
        (Segment::Ack, La, _) => Step::To(La),
        (Segment::Ack, Tw | Cl, _) => Step::To(state),

        (Segment::Bare, _, _) => Step::Invalid,
        // UDP/ICMP states never reach here (the caller only steps TCP entries).
        (_, State::Unreplied | State::Replied, _) => Step::Invalid,
    }
}

/// The direction of the FIN that moved the flow to LAST_ACK.
fn last_fin_dir(fins: u8) -> Direction {
    if fins & fin::LAST_REPLY != 0 {
        Direction::Reply
    } else {
        Direction::Original
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(syn: bool, ack: bool, fin: bool, rst: bool) -> TcpFlags {
        TcpFlags { syn, ack, fin, rst }
    }

    #[test]
    fn classifies_in_kernel_order() {
        assert_eq!(
            Segment::classify(flags(true, true, true, true)),
            Segment::Rst
        );
        assert_eq!(
            Segment::classify(flags(true, false, true, false)),
            Segment::Syn
        );
        assert_eq!(
            Segment::classify(flags(true, true, false, false)),
            Segment::SynAck
        );
        assert_eq!(
            Segment::classify(flags(false, true, true, false)),
            Segment::Fin
        );
        assert_eq!(
            Segment::classify(flags(false, true, false, false)),
            Segment::Ack
        );
        assert_eq!(Segment::classify(TcpFlags::default()), Segment::Bare);
        assert!(Segment::Syn.may_start_flow());
        assert!(!Segment::SynAck.may_start_flow());
    }
}
