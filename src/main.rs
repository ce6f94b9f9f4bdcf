//! tapnet: a userspace virtual switch and router for containers.

mod datapath;
mod nshelper;
mod port;
mod sys;

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "__ns-helper") {
        nshelper::main();
    }
}
