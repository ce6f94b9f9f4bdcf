//! Rootless networking front ends: `tapnet run` and the slirp4netns-compatible command
//! line and API, around one [`stack::Stack`].

pub(crate) mod stack;
