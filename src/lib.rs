//! tapnet: a userspace virtual switch and router for containers.
//!
//! This crate is the I/O shell around the sans-IO crates (`tapnet-switch`, ...): it
//! owns the file descriptors, threads, clock and control socket. It is a library only
//! so that the fuzz targets (`fuzz/`) can reach the shell's parsers through
//! [`fuzzing`]; the `tapnet` executable is `src/main.rs`, which calls [`main`].

mod cli;
mod clientset;
mod control;
mod datapath;
mod engine;
mod ifconfig;
mod knobs;
mod nshelper;
mod port;
mod portspec;
mod rootless;
mod sys;
mod uplink;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

pub use cli::main;
