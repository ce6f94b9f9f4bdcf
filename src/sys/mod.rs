//! The only module of tapnet that may use `unsafe`: thin, safe wrappers over the
//! system calls the shell needs. Every `unsafe` block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub(crate) mod ethtool;
pub(crate) mod fdpass;
pub(crate) mod hostsock;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod isolate;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod packet;
pub(crate) mod rlimit;
pub(crate) mod seccomp;
pub(crate) mod tap;
pub(crate) mod uring;
pub(crate) mod userns;
