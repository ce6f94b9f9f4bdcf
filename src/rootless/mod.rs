//! Rootless networking front ends: `tapnet run` and the slirp4netns-compatible command
//! line and API, around one [`stack::Stack`].

pub(crate) mod api;
pub(crate) mod getopt;
pub(crate) mod run;
pub(crate) mod sandbox;
pub(crate) mod slirp;
mod slirp_loop;
pub(crate) mod stack;
pub(crate) mod watch;

/// Creates `DIR/slirp4netns`, a symbolic link to the running executable, so that
/// podman (`helper_binaries_dir`, `network_cmd_path`) or rootlesskit
/// (`--slirp4netns-binary`, `$PATH`) start tapnet as slirp4netns.
pub(crate) fn install_slirp4netns_link(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("find the running executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let link = dir.join("slirp4netns");
    if let Ok(existing) = std::fs::read_link(&link) {
        if existing == exe {
            println!("{}", link.display());
            return Ok(());
        }
        anyhow::bail!(
            "{} already exists (a link to {}); remove it first",
            link.display(),
            existing.display()
        );
    }
    if link.symlink_metadata().is_ok() {
        anyhow::bail!("{} already exists; remove it first", link.display());
    }
    std::os::unix::fs::symlink(&exe, &link)
        .with_context(|| format!("create {} -> {}", link.display(), exe.display()))?;
    println!("{}", link.display());
    Ok(())
}

/// Handles, before clap parses anything, the command lines that are not clap's: tapnet
/// invoked as `slirp4netns` (argv[0], e.g. through a symlink), `tapnet slirp4netns
/// ...` (slirp4netns's getopt syntax and messages), and the internal `__run-child`.
/// Exits if it handled the command line; returns otherwise.
pub(crate) fn dispatch_early() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Some(argv0) = args.first() else { return };
    let is_slirp = std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "slirp4netns");
    let strings = |from: usize| -> Vec<String> {
        args[from..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    if is_slirp {
        let prog = argv0.to_string_lossy().into_owned();
        std::process::exit(slirp::main(&prog, &strings(1)));
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some("slirp4netns") => {
            let prog = format!("{} slirp4netns", argv0.to_string_lossy());
            std::process::exit(slirp::main(&prog, &strings(2)));
        }
        Some(run::CHILD_ARG) => run::child_main(&args),
        _ => {}
    }
}
