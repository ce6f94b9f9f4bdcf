//! Sans-IO wire types shared by the core crates (`switch`, `conntrack`, `nat`).
//!
//! Nothing here reads a clock or makes a syscall: time is a plain number that the
//! I/O shell samples once per batch and passes in, and packet views are checked
//! windows over bytes the caller owns (the smoltcp `wire` contract: once `new_checked`
//! succeeds, no accessor panics).

#![forbid(unsafe_code)]

pub mod checksum;
mod ethernet;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod ip;
mod mac;
pub mod reassembly;
mod time;
pub mod vnet;

pub use ethernet::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame, TruncatedFrame};
pub use mac::{MacAddr, ParseMacError};
pub use time::Instant;
