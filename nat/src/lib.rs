//! Sans-IO network address translation for tapnet (core pieces; masquerade, DNAT and
//! port allocation come with the Docker-bridge work).
//!
//! Rewriting an address or port must keep every checksum that covers it valid. The
//! Internet checksum (RFC 1071) can be updated for a changed field without reading the
//! rest of the packet: RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`.

#![forbid(unsafe_code)]

/// The Internet checksum and its incremental update, shared with the other crates.
pub use tapnet_wire::checksum;
