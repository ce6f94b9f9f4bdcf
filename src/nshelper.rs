//! The namespace helper: a short-lived child (`tapnet __ns-helper`) that joins a
//! container's user and network namespaces, which a multi-threaded process cannot do.
//! (To be written.)

/// Entry point when invoked as `tapnet __ns-helper ...`.
pub fn main() -> ! {
    std::process::exit(1)
}
