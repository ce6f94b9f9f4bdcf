//! The `tapnet` executable (and `slirp4netns`, when invoked by that name).

fn main() -> std::process::ExitCode {
    tapnet::main()
}
