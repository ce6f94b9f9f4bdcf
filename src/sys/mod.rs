//! The only module of tapnet that may use `unsafe`: thin, safe wrappers over the
//! system calls the shell needs. Every `unsafe` block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod fdpass;
pub mod netlink;
pub mod netns;
pub mod packet;
pub mod tap;
pub mod uring;
