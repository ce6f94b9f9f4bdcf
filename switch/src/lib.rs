//! Sans-IO learning Ethernet bridge for tapnet.
//!
//! Frames and the current time go in; forwarding decisions come out. No syscalls, no
//! threads, no clock reads, no allocation per frame: the I/O shell in `src/` owns the
//! ports and the clock, calls [`Switch::handle_frame`] for every received frame and
//! acts on the returned [`Verdict`], and arms a timer from [`Switch::poll_timeout`].
//!
//! ```
//! use tapnet_switch::{Instant, NetworkConfig, NetworkId, PortId, PortRole, Switch, SwitchConfig, Verdict};
//!
//! let mut switch = Switch::new(SwitchConfig::default());
//! switch.add_network(NetworkId(1), NetworkConfig::default()).unwrap();
//! switch.add_port(PortId(1), NetworkId(1), PortRole::Gateway).unwrap();
//! switch.add_port(PortId(2), NetworkId(1), PortRole::Container).unwrap();
//!
//! // A broadcast from the container floods to the gateway...
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&[0xff; 6]);
//! frame[6..12].copy_from_slice(&[2, 0x42, 10, 0, 0, 2]);
//! let now = Instant::from_secs(1);
//! assert_eq!(switch.handle_frame(now, PortId(2), &frame), Verdict::Flood(&[PortId(1)]));
//! // ...and the container's address is learned, so the reply is unicast.
//! frame[..6].copy_from_slice(&[2, 0x42, 10, 0, 0, 2]);
//! frame[6..12].copy_from_slice(&[2, 0x42, 10, 0, 0, 1]);
//! assert_eq!(switch.handle_frame(now, PortId(1), &frame), Verdict::Forward(PortId(2)));
//! ```
//!
//! Modules: `bridge` (topology and the per-frame decision), `mac_table` (learning,
//! ageing, capacity, pinned entries), `guard` (per-port source guards: anti-spoofing),
//! `counters` (drop reasons and counters), and the hidden `fuzzing`
//! harness shared by the cargo-fuzz target and the corpus replay test.

#![forbid(unsafe_code)]

mod bridge;
mod counters;
pub mod dns;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod mac_table;
pub mod router;

pub use bridge::{
    ConfigError, MacEntry, NetworkConfig, NetworkId, PortId, PortRole, Switch, SwitchConfig,
    Verdict,
};
pub use counters::{DropCounters, DropReason, PortCounters, SwitchCounters};
pub use guard::{MAX_SNOOPED_LEASES, PortGuard};
pub use tapnet_wire::{Instant, MacAddr};
