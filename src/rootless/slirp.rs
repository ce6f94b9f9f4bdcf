//! The slirp4netns drop-in: `tapnet slirp4netns ...`, or tapnet invoked as
//! `slirp4netns` (a symlink). It accepts slirp4netns's command line (v1.2/v1.3) with
//! the same defaults, help option names, version format, error messages and exit
//! codes, the same ready-fd and exit-fd behaviour, and the same JSON API; behind it
//! runs tapnet's own [`Stack`], not libslirp.
//!
//! Lifecycle, as slirp4netns's: parse (errors print a message, then the usage on
//! stdout, and exit 1); build the configuration (errors exit 1); attach the TAP
//! (with `-c`, configure it); bind the API socket; enter the sandbox and install the
//! seccomp filter if asked; write `"1"` to the ready fd and close it; then serve the
//! API until the exit fd polls readable or hangs up, or SIGINT/SIGTERM arrives, or,
//! without an exit fd, the container is gone (see [`super::watch`]).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use tapnet_wire::MacAddr;

use super::api::ApiServer;
use super::getopt::{HasArg, LongOpt, ShortOpt, getopt_long};
use super::sandbox;
use super::stack::{Stack, StackConfig};
use super::watch::ContainerWatch;
use crate::port::NetnsTarget;
use crate::sys::userns;

/// The slirp4netns release whose command line this front end reproduces.
pub(crate) const COMPAT_VERSION: &str = "1.3.1";
/// libslirp's `SLIRP_CONFIG_VERSION_MAX` whose features we offer: outbound addresses
/// (2) and `--disable-dns` (3) need at least 3; scripts test this line.
pub(crate) const SLIRP_CONFIG_VERSION_MAX: u32 = 4;

const DEFAULT_MTU: u32 = 1500;
const DEFAULT_CIDR: &str = "10.0.2.0/24";
const NETWORK_PREFIX_MIN: u8 = 1;
/// >= 26 is not supported because the guest is the network address + 100.
const NETWORK_PREFIX_MAX: u8 = 25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Configure,
    ExitFd,
    ReadyFd,
    Mtu,
    Cidr,
    DisableHostLoopback,
    NoHostLoopback,
    NetnsType,
    UsernsPath,
    ApiSocket,
    EnableIpv6,
    EnableSandbox,
    CreateSandbox,
    EnableSeccomp,
    Help,
    Version,
    OutboundAddr,
    OutboundAddr6,
    DisableDns,
    MacAddress,
    TargetType,
}

const SHORT: &[ShortOpt<Opt>] = &[
    short('c', HasArg::No, Opt::Configure),
    short('e', HasArg::Required, Opt::ExitFd),
    short('r', HasArg::Required, Opt::ReadyFd),
    short('m', HasArg::Required, Opt::Mtu),
    short('a', HasArg::Required, Opt::ApiSocket),
    short('6', HasArg::No, Opt::EnableIpv6),
    short('h', HasArg::No, Opt::Help),
    short('v', HasArg::No, Opt::Version),
];

const LONG: &[LongOpt<Opt>] = &[
    long("configure", HasArg::No, Opt::Configure),
    long("exit-fd", HasArg::Required, Opt::ExitFd),
    long("ready-fd", HasArg::Required, Opt::ReadyFd),
    long("mtu", HasArg::Required, Opt::Mtu),
    long("cidr", HasArg::Required, Opt::Cidr),
    long(
        "disable-host-loopback",
        HasArg::No,
        Opt::DisableHostLoopback,
    ),
    long("no-host-loopback", HasArg::No, Opt::NoHostLoopback),
    long("netns-type", HasArg::Required, Opt::NetnsType),
    long("userns-path", HasArg::Required, Opt::UsernsPath),
    long("api-socket", HasArg::Required, Opt::ApiSocket),
    long("enable-ipv6", HasArg::No, Opt::EnableIpv6),
    long("enable-sandbox", HasArg::No, Opt::EnableSandbox),
    long("create-sandbox", HasArg::No, Opt::CreateSandbox),
    long("enable-seccomp", HasArg::No, Opt::EnableSeccomp),
    long("help", HasArg::No, Opt::Help),
    long("version", HasArg::No, Opt::Version),
    long("outbound-addr", HasArg::Required, Opt::OutboundAddr),
    long("outbound-addr6", HasArg::Required, Opt::OutboundAddr6),
    long("disable-dns", HasArg::No, Opt::DisableDns),
    long("macaddress", HasArg::Required, Opt::MacAddress),
    long("target-type", HasArg::Required, Opt::TargetType),
];

const fn short(letter: char, has_arg: HasArg, id: Opt) -> ShortOpt<Opt> {
    ShortOpt {
        letter,
        has_arg,
        id,
    }
}

const fn long(name: &'static str, has_arg: HasArg, id: Opt) -> LongOpt<Opt> {
    LongOpt { name, has_arg, id }
}

/// The help text: slirp4netns's option names and layout (podman and rootlesskit
/// detect features by searching it), described truthfully for tapnet.
pub(crate) fn usage(prog: &str) -> String {
    format!(
        "Usage: {prog} [OPTION]... PID|PATH [TAPNAME]\n\
User-mode networking for unprivileged network namespaces.\n\
(tapnet's implementation of the slirp4netns command line and API.)\n\
\n\
-c, --configure          bring up the interface\n\
-e, --exit-fd=FD         specify the FD for terminating slirp4netns\n\
-r, --ready-fd=FD        specify the FD to write to when the network is configured\n\
-m, --mtu=MTU            specify MTU (default={DEFAULT_MTU}, max=65521)\n\
-6, --enable-ipv6        enable IPv6\n\
-a, --api-socket=PATH    specify API socket path\n\
--cidr=CIDR              specify network address CIDR (default={DEFAULT_CIDR})\n\
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace\n\
--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)\n\
--userns-path=PATH       specify user namespace path\n\
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)\n\
--enable-seccomp         enable seccomp to limit syscalls (an allow-list)\n\
--outbound-addr=IPv4     sets outbound ipv4 address to bound to\n\
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to\n\
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect\n\
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)\n\
--target-type=TYPE       specify the target type ([netns|bess], default=netns; tapnet supports netns)\n\
-h, --help               show this help and exit\n\
-v, --version            show version and exit\n"
    )
}

/// The version text, runc-style and machine-parsable like slirp4netns's.
pub(crate) fn version() -> String {
    format!(
        "slirp4netns version {COMPAT_VERSION}+tapnet\n\
commit: {}\n\
libslirp: none (tapnet {} has its own stack)\n\
SLIRP_CONFIG_VERSION_MAX: {SLIRP_CONFIG_VERSION_MAX}\n",
        option_env!("TAPNET_GIT_COMMIT").unwrap_or("unknown"),
        env!("CARGO_PKG_VERSION"),
    )
}

/// Where the network namespace comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Pid(u32),
    Path(PathBuf),
    /// `--netns-type=tapfd`: an already open TAP fd, handed over by the caller.
    TapFd(i32),
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) target: Target,
    pub(crate) tap_name: String,
    pub(crate) configure: bool,
    pub(crate) exit_fd: Option<i32>,
    pub(crate) ready_fd: Option<i32>,
    pub(crate) mtu: u32,
    pub(crate) cidr: Option<String>,
    pub(crate) disable_host_loopback: bool,
    pub(crate) userns_path: Option<PathBuf>,
    pub(crate) api_socket: Option<PathBuf>,
    pub(crate) ipv6: bool,
    pub(crate) sandbox: bool,
    pub(crate) seccomp: bool,
    pub(crate) outbound_addr: Option<String>,
    pub(crate) outbound_addr6: Option<String>,
    pub(crate) disable_dns: bool,
    pub(crate) macaddress: Option<String>,
    /// Lines slirp4netns prints on stdout while parsing (deprecations, extra operands).
    pub(crate) warnings: Vec<String>,
}

/// What parsing decided: run, or exit with this output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    Run(Box<Options>),
    Exit {
        stdout: String,
        stderr: String,
        code: i32,
    },
}

/// `strtol(s, &end, 10)` with `*end == '\0'` and no overflow of a C `long`.
fn strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() {
        // strtol converts nothing and leaves `end` at the start: an error only if
        // the string was not empty (then *end is not NUL).
        return s.is_empty().then_some(0);
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = digits.parse().ok()?;
    Some(if neg { -value } else { value })
}

/// Parses slirp4netns's arguments (without argv[0]).
pub(crate) fn parse_args(prog: &str, args: &[String]) -> Parse {
    let error = |stderr: String| Parse::Exit {
        stdout: usage(prog),
        stderr,
        code: 1,
    };
    let outcome = getopt_long(prog, args, SHORT, LONG);
    let mut o = Options {
        target: Target::Pid(0),
        tap_name: String::new(),
        configure: false,
        exit_fd: None,
        ready_fd: None,
        mtu: DEFAULT_MTU,
        cidr: None,
        disable_host_loopback: false,
        userns_path: None,
        api_socket: None,
        ipv6: false,
        sandbox: false,
        seccomp: false,
        outbound_addr: None,
        outbound_addr6: None,
        disable_dns: false,
        macaddress: None,
        warnings: Vec::new(),
    };
    let mut netns_type: Option<String> = None;
    let mut target_type: Option<String> = None;
    for item in outcome.options {
        let parsed = match item {
            Ok(p) => p,
            Err(message) => return error(format!("{message}\n")),
        };
        let arg = parsed.arg.unwrap_or_default();
        match parsed.id {
            Opt::Configure => o.configure = true,
            Opt::ExitFd | Opt::ReadyFd => {
                let is_exit = parsed.id == Opt::ExitFd;
                match strtol(&arg).and_then(|v| i32::try_from(v).ok()) {
                    Some(fd) if fd >= 0 => {
                        if is_exit {
                            o.exit_fd = Some(fd);
                        } else {
                            o.ready_fd = Some(fd);
                        }
                    }
                    _ => {
                        let which = if is_exit { "exit-fd" } else { "ready-fd" };
                        return error(format!("{which} must be a non-negative integer\n"));
                    }
                }
            }
            Opt::Mtu => match strtol(&arg) {
                Some(m @ 1..=65521) => o.mtu = u32::try_from(m).unwrap_or(DEFAULT_MTU),
                _ => return error("MTU must be a positive integer (< 65522)\n".to_owned()),
            },
            Opt::Cidr => o.cidr = Some(arg),
            Opt::NoHostLoopback => {
                o.warnings.push(
                    "WARNING: --no-host-loopback is deprecated and will be removed in future \
                     releases, please use --disable-host-loopback instead."
                        .to_owned(),
                );
                o.disable_host_loopback = true;
            }
            Opt::DisableHostLoopback => o.disable_host_loopback = true,
            Opt::CreateSandbox => {
                o.warnings.push(
                    "WARNING: --create-sandbox is deprecated and will be removed in future \
                     releases, please use --enable-sandbox instead."
                        .to_owned(),
                );
                o.sandbox = true;
            }
            Opt::EnableSandbox => o.sandbox = true,
            Opt::EnableSeccomp => o.seccomp = true,
            Opt::NetnsType => netns_type = Some(arg),
            Opt::UsernsPath => {
                if !Path::new(&arg).exists() {
                    return error(format!("userns path doesn't exist: {arg}\n"));
                }
                o.userns_path = Some(PathBuf::from(arg));
            }
            Opt::ApiSocket => o.api_socket = Some(PathBuf::from(arg)),
            Opt::EnableIpv6 => o.ipv6 = true,
            Opt::Help => {
                return Parse::Exit {
                    stdout: usage(prog),
                    stderr: String::new(),
                    code: 0,
                };
            }
            Opt::Version => {
                return Parse::Exit {
                    stdout: version(),
                    stderr: String::new(),
                    code: 0,
                };
            }
            Opt::OutboundAddr => o.outbound_addr = Some(arg),
            Opt::OutboundAddr6 => o.outbound_addr6 = Some(arg),
            Opt::DisableDns => o.disable_dns = true,
            Opt::MacAddress => o.macaddress = Some(arg),
            Opt::TargetType => target_type = Some(arg),
        }
    }
    if o.macaddress.is_some() && !o.configure {
        return error(
            "--macaddr cannot be specified when --configure or -c is not specified\n".to_owned(),
        );
    }
    match target_type.as_deref() {
        None | Some("netns") => {}
        Some("bess") => {
            return Parse::Exit {
                stdout: String::new(),
                stderr: "--target-type=bess is not supported by tapnet (only netns)\n".to_owned(),
                code: 1,
            };
        }
        Some(_) => {
            return error("--target-type must be either \"netns\" or \"bess\"\n".to_owned());
        }
    }
    let operands = outcome.operands;
    let tapfd = netns_type.as_deref() == Some("tapfd");
    let needed = if tapfd { 1 } else { 2 };
    if operands.len() < needed {
        return error(String::new());
    }
    if operands.len() > needed {
        // Not an error, for compatibility (slirp4netns prints this on stdout).
        o.warnings.push("WARNING: too many arguments".to_owned());
    }
    let first = &operands[0];
    o.target = match netns_type.as_deref() {
        None | Some("pid") => match strtol(first).and_then(|p| u32::try_from(p).ok()) {
            Some(pid) if pid > 0 && i32::try_from(pid).is_ok() => Target::Pid(pid),
            _ => return error("PID must be a positive integer\n".to_owned()),
        },
        Some("tapfd") => match strtol(first).and_then(|p| i32::try_from(p).ok()) {
            Some(fd) if fd >= 0 => Target::TapFd(fd),
            _ => return error("FD must be a non-negative integer\n".to_owned()),
        },
        // slirp4netns treats any other type as "path".
        Some(_) => {
            if let Err(e) = std::fs::metadata(first) {
                return error(format!(
                    "existing path expected when --netns-type=path: {}\n",
                    crate::nshelper::describe(&e)
                ));
            }
            Target::Path(PathBuf::from(first))
        }
    };
    if !tapfd {
        o.tap_name = operands[1].clone();
    }
    Parse::Run(Box::new(o))
}

/// Parses `--cidr` as slirp4netns does, with its messages.
pub(crate) fn parse_cidr(cidr: &str) -> Result<Ipv4Net, String> {
    let invalid = || format!("invalid CIDR: {cidr}");
    let (addr, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let octets: Vec<&str> = addr.split('.').collect();
    let shape_ok = octets.len() == 4
        && octets
            .iter()
            .all(|o| (1..=3).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_digit()))
        && (1..=2).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_digit());
    if !shape_ok {
        return Err(invalid());
    }
    let network: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("invalid network address: {addr}"))?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    if !(NETWORK_PREFIX_MIN..=NETWORK_PREFIX_MAX).contains(&prefix) {
        return Err(format!(
            "prefix length needs to be {NETWORK_PREFIX_MIN}-{NETWORK_PREFIX_MAX}"
        ));
    }
    let net = Ipv4Net::new(network, prefix).map_err(|_| invalid())?;
    if net.network() != network {
        return Err(
            "CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24"
                .to_owned(),
        );
    }
    Ok(net)
}

/// Turns the options into a stack configuration, with slirp4netns's messages.
pub(crate) fn stack_config(o: &Options) -> Result<StackConfig, String> {
    let cidr = parse_cidr(o.cidr.as_deref().unwrap_or(DEFAULT_CIDR))?;
    let outbound_addr = match &o.outbound_addr {
        None => None,
        Some(s) => Some(match s.parse::<Ipv4Addr>() {
            Ok(a) => a,
            Err(_) => match crate::engine::interface_addr(s, false) {
                Some(IpAddr::V4(a)) => a,
                _ => {
                    return Err(
                        "outbound-addr has to be valid ipv4 address or interface name.".to_owned(),
                    );
                }
            },
        }),
    };
    let outbound_addr6 = match &o.outbound_addr6 {
        None => None,
        Some(s) => Some(match s.parse::<Ipv6Addr>() {
            Ok(a) => a,
            Err(_) => match crate::engine::interface_addr(s, true) {
                Some(IpAddr::V6(a)) => a,
                _ => {
                    return Err(
                        "outbound-addr6 has to be valid ipv6 address or interface name.".to_owned(),
                    );
                }
            },
        }),
    };
    let mac = match &o.macaddress {
        None => None,
        Some(s) => Some(s.parse::<MacAddr>().map_err(|_| {
            format!(
                "\"{s}\" is an invalid MAC address.\nmacaddress has to be a valid MAC \
                 address (hex string, 6 bytes, each byte separated by a ':')."
            )
        })?),
    };
    let netns = match &o.target {
        Target::Pid(pid) => Some(NetnsTarget::Pid(*pid)),
        Target::Path(p) => Some(NetnsTarget::Path(p.clone())),
        // The TAP is handed over open: it lives in a namespace we never enter, so it
        // cannot be configured from here.
        Target::TapFd(_) if o.configure => {
            return Err("--configure cannot be used with --netns-type=tapfd".to_owned());
        }
        Target::TapFd(_) => None,
    };
    // A TAP handed over open was opened without IFF_VNET_HDR.
    let offload = netns.is_some() && crate::datapath::offload_enabled();
    // A TAP handed over open is one queue.
    let pipelines = match netns {
        Some(_) => super::stack::pipelines_from_env().map_err(|e| format!("{e}"))?,
        None => 1,
    };
    Ok(StackConfig {
        netns,
        userns: o.userns_path.clone(),
        tap_name: o.tap_name.clone(),
        configure: o.configure,
        mtu: o.mtu,
        cidr,
        mac,
        ipv6: o.ipv6,
        host_loopback: !o.disable_host_loopback,
        dns: !o.disable_dns,
        outbound_addr,
        outbound_addr6,
        offload,
        pipelines,
        max_host_flows: super::stack::max_host_flows_from_env().map_err(|e| format!("{e}"))?,
    })
}

/// The banner slirp4netns prints on stdout once the TAP is attached.
fn banner(config: &StackConfig, api: Option<&Path>) -> String {
    let mut s = String::from("Starting slirp (tapnet)\n");
    s += &format!("* MTU:             {}\n", config.mtu);
    s += &format!("* Network:         {}\n", config.cidr.network());
    s += &format!("* Netmask:         {}\n", config.cidr.netmask());
    s += &format!("* Gateway:         {}\n", config.gateway());
    s += &format!("* DNS:             {}\n", config.dns_addr());
    s += &format!("* Recommended IP:  {}\n", config.guest_addr());
    if let Some(api) = api {
        s += &format!("* API Socket:      {}\n", api.display());
    }
    if let Some(a) = config.outbound_addr {
        s += &format!("* Outbound IPv4:    {a}\n");
    }
    if let Some(a) = config.outbound_addr6 {
        s += &format!("* Outbound IPv6:    {a}\n");
    }
    if let Some(mac) = config.mac {
        s += &format!("* MAC address:     {mac}\n");
    }
    if config.host_loopback {
        s += &format!(
            "WARNING: 127.0.0.1:* on the host is accessible as {} (set \
             --disable-host-loopback to prohibit connecting to 127.0.0.1:*)\n",
            config.gateway()
        );
    }
    s
}

/// Entry point: `args[0]` is the program name as invoked (`slirp4netns`, or
/// `tapnet slirp4netns`). Returns the exit status.
pub(crate) fn main(prog: &str, args: &[String]) -> i32 {
    let options = match parse_args(prog, args) {
        Parse::Exit {
            stdout,
            stderr,
            code,
        } => {
            eprint!("{stderr}");
            print!("{stdout}");
            let _ = std::io::stdout().flush();
            return code;
        }
        Parse::Run(o) => o,
    };
    for w in &options.warnings {
        println!("{w}");
    }
    init_logging();
    match run(&options) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(o: &Options) -> Result<(), String> {
    let config = stack_config(o)?;
    // Adopt the fds first: a bad number fails before anything is set up.
    let adopt = |fd: Option<i32>, what: &str| -> Result<Option<OwnedFd>, String> {
        fd.map(|fd| userns::adopt_fd(fd).map_err(|e| format!("{what} {fd}: {e}")))
            .transpose()
    };
    let ready_fd = adopt(o.ready_fd, "ready-fd")?;
    let exit_fd = adopt(o.exit_fd, "exit-fd")?;
    // Signals: SIGINT and SIGTERM end the loop cleanly (registered before threads).
    let (sig_r, sig_w) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    sig_r
        .set_nonblocking(true)
        .map_err(|e| format!("socketpair: {e}"))?;
    let mut sig_ids = Vec::new();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let w = sig_w.try_clone().map_err(|e| format!("socketpair: {e}"))?;
        sig_ids.push(
            signal_hook::low_level::pipe::register(sig, w)
                .map_err(|e| format!("signal handler: {e}"))?,
        );
    }
    // The sandbox's first half (join the user namespace, new mount namespace) must
    // happen while we are single-threaded, so that every thread shares it.
    let sandbox = if o.sandbox {
        let userns_path = o.userns_path.clone().or(match o.target {
            Target::Pid(pid) => Some(PathBuf::from(format!("/proc/{pid}/ns/user"))),
            _ => None,
        });
        Some(
            sandbox::Sandbox::prepare(userns_path.as_deref())
                .map_err(|e| format!("{e}\ncreate_sandbox failed"))?,
        )
    } else {
        None
    };
    let tap = match o.target {
        Target::TapFd(fd) => vec![userns::adopt_fd(fd).map_err(|e| format!("tap fd {fd}: {e}"))?],
        _ => Stack::open_tap(&config).map_err(|e| format!("tapnet: {e:#}"))?,
    };
    // Bind the API socket while its directory is still visible, then enter the
    // sandbox while this is the only thread: the threads the stack starts inherit
    // its dropped capabilities (capabilities are per thread).
    let api = o.api_socket.as_deref().map(ApiServer::bind).transpose()?;
    // Without an exit fd, the container's end is noticed by watching it (opened
    // before the sandbox hides /proc and the namespace's directory).
    let watch = match &o.target {
        _ if o.exit_fd.is_some() => None,
        Target::Pid(pid) => Some(ContainerWatch::process(*pid)),
        Target::Path(path) => Some(ContainerWatch::path(path)?),
        Target::TapFd(_) => None,
    };
    if let Some(sandbox) = sandbox {
        sandbox
            .enter()
            .map_err(|e| format!("{e}\ncreate_sandbox failed"))?;
    }
    let stack = Stack::start_with_tap(config.clone(), tap).map_err(|e| format!("tapnet: {e:#}"))?;
    print!("{}", banner(&config, o.api_socket.as_deref()));
    let _ = std::io::stdout().flush();
    let result = super::slirp_loop::serve(
        o.seccomp, &config, &stack, api, ready_fd, exit_fd, &sig_r, watch,
    );
    for id in sig_ids {
        signal_hook::low_level::unregister(id);
    }
    stack.shutdown();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Parse {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        parse_args("slirp4netns", &args)
    }

    fn opts(args: &[&str]) -> Options {
        match parse(args) {
            Parse::Run(o) => *o,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    /// Asserts an error exit: this stderr, the usage on stdout, status 1.
    fn fails(args: &[&str], stderr: &str) {
        assert_eq!(
            parse(args),
            Parse::Exit {
                stdout: usage("slirp4netns"),
                stderr: stderr.to_owned(),
                code: 1
            },
            "{args:?}"
        );
    }

    #[test]
    fn podman_command_line() {
        let dir = std::env::temp_dir();
        let netns = dir.to_str().unwrap();
        let o = opts(&[
            "--disable-host-loopback",
            "--mtu=65520",
            "--enable-sandbox",
            "--enable-seccomp",
            "--enable-ipv6",
            "-c",
            "-r",
            "3",
            "-e",
            "4",
            "--api-socket",
            "/tmp/x.net",
            "--netns-type=path",
            netns,
            "tap0",
        ]);
        assert_eq!(o.target, Target::Path(dir.clone()));
        assert_eq!(o.tap_name, "tap0");
        assert!(o.configure && o.disable_host_loopback && o.sandbox && o.seccomp && o.ipv6);
        assert_eq!((o.ready_fd, o.exit_fd, o.mtu), (Some(3), Some(4), 65520));
        assert_eq!(o.api_socket, Some(PathBuf::from("/tmp/x.net")));
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn rootlesskit_command_line() {
        let o = opts(&[
            "--mtu",
            "65520",
            "-r",
            "3",
            "--disable-host-loopback",
            "--cidr",
            "10.0.3.0/24",
            "--api-socket",
            "/run/a.sock",
            "1234",
            "tap0",
        ]);
        assert_eq!(o.target, Target::Pid(1234));
        assert!(!o.configure);
        assert_eq!(o.cidr.as_deref(), Some("10.0.3.0/24"));
        let config = stack_config(&o).unwrap();
        assert_eq!(config.guest_addr(), Ipv4Addr::new(10, 0, 3, 100));
        assert!(!config.host_loopback && config.dns && !config.configure);
        assert_eq!(config.netns, Some(NetnsTarget::Pid(1234)));
    }

    #[test]
    fn defaults_are_slirp4netns_defaults() {
        let o = opts(&["42", "tap0"]);
        let c = stack_config(&o).unwrap();
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.cidr.to_string(), "10.0.2.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(c.dns_addr(), Ipv4Addr::new(10, 0, 2, 3));
        assert!(c.host_loopback && c.dns && !c.ipv6 && !c.configure);
        assert_eq!(c.tap_name, "tap0");
    }

    #[test]
    fn short_forms_clustered() {
        let o = opts(&["-cr3", "-m1500", "-e5", "-6", "7", "tap1"]);
        assert!(o.configure && o.ipv6);
        assert_eq!((o.ready_fd, o.exit_fd, o.mtu), (Some(3), Some(5), 1500));
    }

    #[test]
    fn help_and_version_exit_zero_in_order() {
        for args in [&["-h"][..], &["--help"], &["--he"], &["1", "tap0", "-h"]] {
            assert_eq!(
                parse(args),
                Parse::Exit {
                    stdout: usage("slirp4netns"),
                    stderr: String::new(),
                    code: 0
                }
            );
        }
        match parse(&["-v"]) {
            Parse::Exit {
                stdout, code: 0, ..
            } => assert_eq!(stdout, version()),
            other => panic!("{other:?}"),
        }
        // Options are processed in order: an error before -h wins.
        fails(
            &["--mtu=0", "-h"],
            "MTU must be a positive integer (< 65522)\n",
        );
    }

    #[test]
    fn help_contains_what_podman_and_rootlesskit_search() {
        let help = usage("slirp4netns");
        for needle in [
            // podman (containers/common checkSlirpFlags)
            "--disable-host-loopback",
            "--mtu",
            "--enable-sandbox",
            "--enable-seccomp",
            "--cidr",
            "--outbound-addr",
            "--enable-ipv6",
            // rootlesskit (DetectFeatures)
            "--netns-type",
            "--api-socket",
            // the rest of the command line
            "--configure",
            "--exit-fd",
            "--ready-fd",
            "--userns-path",
            "--outbound-addr6",
            "--disable-dns",
            "--macaddress",
            "--target-type",
            "--help",
            "--version",
        ] {
            assert!(help.contains(needle), "{needle}");
        }
        assert!(help.starts_with("Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]\n"));
        assert!(help.contains("tapnet"));
    }

    #[test]
    fn version_is_machine_parsable() {
        let v = version();
        let first = v.lines().next().unwrap();
        let ver = first.strip_prefix("slirp4netns version ").unwrap();
        let nums: Vec<u32> = ver
            .split(['.', '+'])
            .take(3)
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(nums.len(), 3);
        assert!(nums >= vec![1, 1, 0]);
        let max = v
            .lines()
            .find_map(|l| l.strip_prefix("SLIRP_CONFIG_VERSION_MAX: "))
            .unwrap();
        assert!(max.parse::<u32>().unwrap() >= 3);
        assert!(
            v.lines()
                .all(|l| l.contains(':') || l.starts_with("slirp4netns version"))
        );
    }

    #[test]
    fn argument_errors_match_slirp4netns() {
        fails(
            &["--mtu=0", "1", "t"],
            "MTU must be a positive integer (< 65522)\n",
        );
        fails(
            &["--mtu=65522", "1", "t"],
            "MTU must be a positive integer (< 65522)\n",
        );
        fails(
            &["--mtu=15x", "1", "t"],
            "MTU must be a positive integer (< 65522)\n",
        );
        fails(
            &["-m", "-1", "1", "t"],
            "MTU must be a positive integer (< 65522)\n",
        );
        fails(
            &["-e", "x", "1", "t"],
            "exit-fd must be a non-negative integer\n",
        );
        fails(
            &["-e", "-1", "1", "t"],
            "exit-fd must be a non-negative integer\n",
        );
        fails(
            &["--ready-fd=3a", "1", "t"],
            "ready-fd must be a non-negative integer\n",
        );
        fails(&["0", "tap0"], "PID must be a positive integer\n");
        fails(&["abc", "tap0"], "PID must be a positive integer\n");
        fails(&["-5", "tap0"], "slirp4netns: invalid option -- '5'\n");
        fails(&["--", "-5", "tap0"], "PID must be a positive integer\n");
        fails(&[], "");
        fails(&["1234"], "");
        fails(
            &["--bogus", "1", "t"],
            "slirp4netns: unrecognized option '--bogus'\n",
        );
        fails(&["-x", "1", "t"], "slirp4netns: invalid option -- 'x'\n");
        fails(
            &["1", "t", "-m"],
            "slirp4netns: option requires an argument -- 'm'\n",
        );
        fails(
            &["1", "t", "--mtu"],
            "slirp4netns: option '--mtu' requires an argument\n",
        );
        fails(
            &["--configure=1", "1", "t"],
            "slirp4netns: option '--configure' doesn't allow an argument\n",
        );
        fails(
            &["--enable-s", "1", "t"],
            "slirp4netns: option '--enable-s' is ambiguous; possibilities: \
             '--enable-sandbox' '--enable-seccomp'\n",
        );
        fails(
            &["--macaddress=02:00:00:00:00:01", "1", "t"],
            "--macaddr cannot be specified when --configure or -c is not specified\n",
        );
        fails(
            &["--userns-path=/nonexistent/user", "1", "t"],
            "userns path doesn't exist: /nonexistent/user\n",
        );
        fails(
            &["--netns-type=path", "/nonexistent/netns", "t"],
            "existing path expected when --netns-type=path: No such file or directory\n",
        );
        fails(
            &["--target-type=foo", "1", "t"],
            "--target-type must be either \"netns\" or \"bess\"\n",
        );
        assert_eq!(
            parse(&["--target-type=bess", "/tmp/sock"]),
            Parse::Exit {
                stdout: String::new(),
                stderr: "--target-type=bess is not supported by tapnet (only netns)\n".to_owned(),
                code: 1
            }
        );
    }

    #[test]
    fn warnings_for_deprecated_aliases_and_extra_operands() {
        let o = opts(&[
            "--no-host-loopback",
            "--create-sandbox",
            "1",
            "tap0",
            "extra",
        ]);
        assert!(o.disable_host_loopback && o.sandbox);
        assert_eq!(o.warnings.len(), 3);
        assert!(o.warnings[0].starts_with("WARNING: --no-host-loopback is deprecated"));
        assert!(o.warnings[1].starts_with("WARNING: --create-sandbox is deprecated"));
        assert_eq!(o.warnings[2], "WARNING: too many arguments");
        let o = opts(&["--target-type=netns", "--netns-type=pid", "9", "tap0"]);
        assert_eq!(o.target, Target::Pid(9));
    }

    #[test]
    fn tapfd_takes_one_operand_and_cannot_be_configured() {
        let o = opts(&["--netns-type=tapfd", "5"]);
        assert_eq!(o.target, Target::TapFd(5));
        assert!(stack_config(&o).unwrap().netns.is_none());
        let o = opts(&["-c", "--netns-type=tapfd", "5"]);
        assert_eq!(
            stack_config(&o).unwrap_err(),
            "--configure cannot be used with --netns-type=tapfd"
        );
    }

    #[test]
    fn cidr_errors_match_slirp4netns() {
        assert_eq!(
            parse_cidr("10.0.3.0/24").unwrap().to_string(),
            "10.0.3.0/24"
        );
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().prefix_len(), 8);
        for (cidr, message) in [
            ("10.0.2.0", "invalid CIDR: 10.0.2.0"),
            ("10.0.2/24", "invalid CIDR: 10.0.2/24"),
            ("10.0.2.0/123", "invalid CIDR: 10.0.2.0/123"),
            ("fd00::/64", "invalid CIDR: fd00::/64"),
            ("10.0.2.300/24", "invalid network address: 10.0.2.300"),
            ("10.0.2.0/26", "prefix length needs to be 1-25"),
            ("10.0.2.0/0", "prefix length needs to be 1-25"),
            (
                "10.0.2.100/24",
                "CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24",
            ),
        ] {
            assert_eq!(parse_cidr(cidr).unwrap_err(), message, "{cidr}");
        }
    }

    #[test]
    fn config_errors_match_slirp4netns() {
        let mut o = opts(&["-c", "--macaddress=zz:00:00:00:00:01", "1", "t"]);
        assert!(
            stack_config(&o).unwrap_err().starts_with(
                "\"zz:00:00:00:00:01\" is an invalid MAC address.\nmacaddress has to be"
            )
        );
        o.macaddress = Some("02:00:00:00:00:01".into());
        assert_eq!(
            stack_config(&o).unwrap().mac,
            Some(MacAddr([2, 0, 0, 0, 0, 1]))
        );
        o.outbound_addr = Some("no-such-if0".into());
        assert_eq!(
            stack_config(&o).unwrap_err(),
            "outbound-addr has to be valid ipv4 address or interface name."
        );
        o.outbound_addr = Some("lo".into());
        assert_eq!(
            stack_config(&o).unwrap().outbound_addr,
            Some(Ipv4Addr::LOCALHOST)
        );
        o.outbound_addr = Some("127.0.0.2".into());
        o.outbound_addr6 = Some("::1".into());
        let c = stack_config(&o).unwrap();
        assert_eq!(c.outbound_addr, Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(c.outbound_addr6, Some(Ipv6Addr::LOCALHOST));
        o.cidr = Some("10.0.2.0/30".into());
        assert_eq!(
            stack_config(&o).unwrap_err(),
            "prefix length needs to be 1-25"
        );
    }

    #[test]
    fn strtol_like_c() {
        assert_eq!(strtol("42"), Some(42));
        assert_eq!(strtol(" +7"), Some(7));
        assert_eq!(strtol("-3"), Some(-3));
        assert_eq!(strtol(""), Some(0));
        assert_eq!(strtol("4x"), None);
        assert_eq!(strtol("-"), None);
        assert_eq!(strtol("99999999999999999999"), None);
    }

    #[test]
    fn banner_mentions_the_addresses() {
        let o = opts(&["-a", "/tmp/s", "1", "tap0"]);
        let c = stack_config(&o).unwrap();
        let b = banner(&c, Some(Path::new("/tmp/s")));
        assert!(b.contains("* Recommended IP:  10.0.2.100\n"));
        assert!(b.contains("* API Socket:      /tmp/s\n"));
        assert!(b.contains("WARNING: 127.0.0.1:* on the host is accessible as 10.0.2.2"));
    }
}
