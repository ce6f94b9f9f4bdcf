//! Fuzz harness placeholder.

/// Runs one input.
pub fn run(_data: &[u8]) {}
