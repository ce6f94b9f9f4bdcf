//! The command line: `tapnet daemon`, the control-plane commands, `tapnet run` and the
//! front ends, parsed with clap and dispatched.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tapnet_conntrack::{ConntrackConfig, Timeouts};
use tapnet_switch::SwitchConfig;
use tapnet_wire::MacAddr;

use crate::control::client;
use crate::control::proto::{Connect, NetnsSpec, NetworkCreate, Publish, Request};
use crate::datapath::BackendChoice;
use crate::port::PortKind;
use crate::{control, nshelper, rootless};

/// A userspace virtual switch and router for containers.
#[derive(Debug, Parser)]
#[command(name = "tapnet", version, about, propagate_version = true)]
struct Cli {
    /// Control socket of the daemon [default: $XDG_RUNTIME_DIR/tapnet/control.sock, else /run/tapnet/control.sock]
    #[arg(long, global = true, value_name = "PATH")]
    control: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the switch and serve the control socket (stops on SIGINT/SIGTERM, removing every device it created)
    ///
    /// Networks and containers are kept in the state directory: a daemon started again
    /// with the same command line has the networks again, and after `kill -9` or a crash
    /// also every container, attached again where it is. An orderly stop removes every
    /// device and keeps the networks only.
    Daemon(DaemonArgs),
    /// Create, list, inspect and remove networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Attach a container (a network namespace) to a network
    Connect(ConnectArgs),
    /// Detach a container from a network and remove its interface
    Disconnect {
        /// Network name
        network: String,
        /// Container name
        name: String,
    },
    /// List the MAC addresses learned on a network
    Macs {
        /// Network name
        network: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Run CMD in new user and network namespaces, with networking (rootless; exits with CMD's status)
    Run(rootless::run::RunArgs),
    /// slirp4netns's command line and JSON API (also when tapnet is invoked as `slirp4netns`)
    #[command(disable_help_flag = true)]
    Slirp4netns {
        /// slirp4netns's arguments (see `tapnet slirp4netns --help`)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Create DIR/slirp4netns, a symbolic link to this executable, for podman and rootlesskit
    InstallSlirp4netnsLink {
        /// Directory for the link, such as ~/.local/bin or /usr/local/libexec/podman
        dir: PathBuf,
    },
    /// Show per-port counters: packets, bytes, errors, drops by reason
    Stats {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Publish ports of a container: `publish NETWORK CONTAINER -p [HOSTIP:]HOST:CONTAINER[/tcp|/udp]`,
    /// or list publications: `publish ls [--json]`
    Publish(PublishArgs),
    /// Withdraw published ports (all of the container's on that network without -p)
    Unpublish {
        /// Network name
        network: String,
        /// Container name
        container: String,
        /// A publication to withdraw, as it was published (repeatable)
        #[arg(short = 'p', long = "publish", value_name = "SPEC")]
        specs: Vec<String>,
    },
    /// List tracked connections, like `conntrack -L`
    Conntrack {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct PublishArgs {
    #[command(subcommand)]
    list: Option<PublishList>,
    /// Network name
    network: Option<String>,
    /// Container name
    container: Option<String>,
    /// [HOSTIP:]HOST:CONTAINER[/tcp|/udp], ranges as 8000-8010:80-90 (repeatable)
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    specs: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum PublishList {
    /// List published ports
    Ls {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct DaemonArgs {
    /// Where networks and containers are kept, so that a restarted daemon has them
    /// again (one file per entry, written atomically) [default: the control socket's
    /// path with `.state` appended, such as /run/tapnet/control.sock.state]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// I/O backend of the datapath: io_uring, epoll, or auto (io_uring when the kernel allows it)
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    datapath: BackendChoice,
    /// Most MAC addresses remembered at once, over all networks
    #[arg(long, default_value_t = SwitchConfig::default().mac_capacity)]
    mac_capacity: usize,
    /// Seconds after which an unused MAC address is forgotten (Linux bridge default: 300)
    #[arg(long, default_value_t = 300)]
    ageing_time: u64,
    /// Most connections tracked at once (as nf_conntrack_max); when full, unreplied
    /// flows are evicted first, and otherwise new flows are refused
    #[arg(long, default_value_t = ConntrackConfig::default().capacity)]
    conntrack_max: usize,
    /// A conntrack timeout in seconds, named as Linux's nf_conntrack_*_timeout sysctls:
    /// tcp_syn_sent, tcp_syn_recv, tcp_established, tcp_fin_wait, tcp_close_wait,
    /// tcp_last_ack, tcp_time_wait, tcp_close, udp, udp_stream, icmp (repeatable)
    #[arg(long = "conntrack-timeout", value_name = "NAME=SECS", value_parser = parse_timeout)]
    conntrack_timeouts: Vec<(String, u64)>,
    /// Most flows (UDP and ICMP flows, TCP connections) holding a host socket at once;
    /// beyond it a new flow takes the place of an unreplied one, else of the least
    /// recently used, never of an established TCP connection [default: the file
    /// descriptor limit (RLIMIT_NOFILE, raised to its hard limit) minus an eighth]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_host_flows: Option<u32>,
    /// Most host-socket flows of one container; a container at its bound evicts only
    /// its own flows [default: a quarter of --max-host-flows, at least 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_host_flows_per_container: Option<u32>,
    /// A host interface whose segment becomes the networks' way out (packet uplink):
    /// tapnet reads and writes it with AF_PACKET under an address and MAC of its own,
    /// masquerades the networks' traffic to that address and publishes ports on it.
    /// Without it, networks leave through host sockets (the rootless default)
    #[arg(long, value_name = "IFNAME", requires = "uplink_ip")]
    uplink: Option<String>,
    /// tapnet's own address and prefix on the uplink's network, such as
    /// 192.0.2.2/24 (not an address of the host: the host's kernel would answer for it)
    #[arg(long, value_name = "CIDR", requires = "uplink")]
    uplink_ip: Option<ipnet::Ipv4Net>,
    /// The next hop for destinations outside the uplink's subnet (without it, only
    /// on-link destinations are reachable)
    #[arg(long, value_name = "IP", requires = "uplink")]
    uplink_gw: Option<Ipv4Addr>,
    /// tapnet's own IPv6 address and prefix on the uplink's network, such as
    /// 2001:db8::2/64: networks' IPv6 prefixes are then routed through the uplink
    /// without translation (the outside must route them to this address)
    #[arg(long, value_name = "CIDR6", requires = "uplink")]
    uplink_ip6: Option<ipnet::Ipv6Net>,
    /// The IPv6 next hop for destinations outside the uplink's IPv6 prefix
    #[arg(long, value_name = "IP6", requires = "uplink_ip6")]
    uplink_gw6: Option<std::net::Ipv6Addr>,
}

/// `NAME=SECS` for `--conntrack-timeout`.
fn parse_timeout(spec: &str) -> Result<(String, u64), String> {
    let (name, secs) = spec
        .split_once('=')
        .ok_or("expected NAME=SECS, such as udp=60")?;
    if !Timeouts::NAMES.contains(&name) {
        return Err(format!(
            "unknown timeout {name:?} (one of {})",
            Timeouts::NAMES.join(", ")
        ));
    }
    let secs = secs
        .parse()
        .map_err(|_| format!("invalid number of seconds {secs:?}"))?;
    Ok((name.to_owned(), secs))
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create a network
    Create {
        /// Network name
        name: String,
        /// IPv4 subnet, such as 10.1.0.0/24
        #[arg(long)]
        subnet: String,
        /// Gateway address [default: the first address of the subnet]
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// MTU of the network's interfaces [default: 1500]
        #[arg(long)]
        mtu: Option<u32>,
        /// Block traffic between containers of this network (Docker's enable_icc=false)
        #[arg(long)]
        no_icc: bool,
        /// Nothing leaves the network and nothing from outside reaches it; its
        /// containers still reach each other (Docker's --internal)
        #[arg(long)]
        internal: bool,
        /// Route the network's traffic through the packet uplink without translation
        /// (Docker's enable_ip_masquerade=false); replies still come back, unsolicited
        /// traffic does not. Needs a daemon with --uplink
        #[arg(long)]
        no_masquerade: bool,
        /// Run a DHCP server: connected containers get their address, other clients
        /// one from the upper half of the subnet (which the allocator leaves free)
        #[arg(long)]
        dhcp: bool,
        /// Give the network an IPv6 prefix (with --subnet6): router advertisements,
        /// NDP, one address per container, egress through IPv6 host sockets
        #[arg(long, requires = "subnet6")]
        ipv6: bool,
        /// The IPv6 prefix of the network, such as fd00:1::/64
        #[arg(long, requires = "ipv6")]
        subnet6: Option<String>,
        /// The host address published ports listen on when they name none [default: 0.0.0.0]
        #[arg(long, value_name = "IP")]
        host_binding_ip: Option<Ipv4Addr>,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a network (it must have no containers)
    #[command(alias = "remove")]
    Rm {
        /// Network name
        name: String,
    },
    /// Show a network as JSON: subnet, gateway, MTU, options and attached containers
    Inspect {
        /// Network name
        name: String,
    },
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// Network name
    network: String,
    /// The container's process: its network namespace is /proc/PID/ns/net
    #[arg(long, conflicts_with = "netns", required_unless_present = "netns")]
    pid: Option<u32>,
    /// The container's network namespace file, such as /run/netns/NAME
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Container name [default: pidPID, or the namespace file's name]
    #[arg(long)]
    name: Option<String>,
    /// Interface name in the container [default: eth0, or the next free ethN]
    #[arg(long)]
    ifname: Option<String>,
    /// IPv4 address [default: the first free address of the subnet]
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// MAC address [default: 02:42 followed by the IPv4 address, as Docker]
    #[arg(long)]
    mac: Option<MacAddr>,
    /// Publish a port once connected: [HOSTIP:]HOST:CONTAINER[/tcp|/udp] (repeatable)
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Another name of the container on this network (repeatable; Docker's --network-alias)
    #[arg(long = "alias", value_name = "NAME")]
    aliases: Vec<String>,
    /// Let the port send from any MAC and address (a VM or router container); by default
    /// it may use only its own MAC and addresses
    #[arg(long)]
    allow_spoofing: bool,
    /// Port kind: a TAP device in the container, or a veth pair read with AF_PACKET
    #[arg(long, value_enum, default_value_t = KindArg::Tap)]
    kind: KindArg,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Tap,
    Veth,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let control = cli.control.unwrap_or_else(control::default_control_path);
    let call = |request: Request| client::call(&control, &request);
    match cli.command {
        Command::Daemon(args) => {
            init_logging();
            let options = control::daemon::DaemonOptions {
                state_dir: args
                    .state_dir
                    .unwrap_or_else(|| control::state::default_state_dir(&control)),
                control: control.clone(),
                backend: args.datapath,
                switch: SwitchConfig {
                    mac_capacity: args.mac_capacity,
                    ageing_time: Duration::from_secs(args.ageing_time),
                },
                conntrack: {
                    let mut config = ConntrackConfig {
                        capacity: args.conntrack_max,
                        ..ConntrackConfig::default()
                    };
                    for (name, secs) in &args.conntrack_timeouts {
                        config.timeouts.set(name, Duration::from_secs(*secs));
                    }
                    config
                },
                max_host_flows: args.max_host_flows.map(|n| n as usize),
                max_host_flows_per_container: args.max_host_flows_per_container.map(|n| n as usize),
                uplink: args.uplink.zip(args.uplink_ip).map(|(ifname, addr)| {
                    control::daemon::UplinkOptions {
                        ifname,
                        addr,
                        gateway: args.uplink_gw,
                        addr6: args.uplink_ip6,
                        gateway6: args.uplink_gw6,
                    }
                }),
            };
            control::daemon::run(&options)
        }
        Command::Network(NetworkCommand::Create {
            name,
            subnet,
            gateway,
            mtu,
            no_icc,
            internal,
            no_masquerade,
            dhcp,
            ipv6: _,
            subnet6,
            host_binding_ip,
        }) => {
            let value = call(Request::NetworkCreate(NetworkCreate {
                name,
                subnet,
                gateway,
                mtu,
                icc: !no_icc,
                internal,
                masquerade: !no_masquerade,
                dhcp,
                subnet6,
                host_binding_ip,
            }))?;
            println!("{}", value["name"].as_str().unwrap_or_default());
            Ok(())
        }
        Command::Network(NetworkCommand::Ls { json }) => {
            client::print_networks(call(Request::NetworkList)?, json)
        }
        Command::Network(NetworkCommand::Rm { name }) => {
            call(Request::NetworkRemove { name: name.clone() })?;
            println!("{name}");
            Ok(())
        }
        Command::Network(NetworkCommand::Inspect { name }) => {
            client::print_inspect(call(Request::NetworkInspect { name })?)
        }
        Command::Connect(args) => {
            let netns = match (args.pid, args.netns) {
                (Some(pid), _) => NetnsSpec::Pid(pid),
                (None, Some(path)) => NetnsSpec::Path(path.to_string_lossy().into_owned()),
                (None, None) => unreachable!("clap requires --pid or --netns"),
            };
            let kind = match args.kind {
                KindArg::Tap => PortKind::Tap,
                KindArg::Veth => PortKind::Veth,
            };
            let request = Connect {
                network: args.network,
                netns,
                name: args.name,
                ifname: args.ifname,
                ip: args.ip,
                mac: args.mac,
                kind,
                aliases: args.aliases,
                publish: args.publish,
                allow_spoofing: args.allow_spoofing,
            };
            client::print_connect(call(Request::Connect(request))?, args.json)
        }
        Command::Disconnect { network, name } => {
            call(Request::Disconnect {
                network,
                container: name.clone(),
            })?;
            println!("{name}");
            Ok(())
        }
        Command::Macs { network, json } => {
            client::print_macs(call(Request::Macs { network })?, json)
        }
        Command::Stats { json } => client::print_stats(call(Request::Stats)?, json),
        Command::Run(args) => std::process::exit(rootless::run::main(&args)),
        Command::Slirp4netns { args } => {
            std::process::exit(rootless::slirp::main("tapnet slirp4netns", &args))
        }
        Command::InstallSlirp4netnsLink { dir } => rootless::install_slirp4netns_link(&dir),
        Command::Conntrack { json } => client::print_conntrack(call(Request::Conntrack)?, json),
        Command::Publish(PublishArgs {
            list: Some(PublishList::Ls { json }),
            ..
        }) => client::print_publications(call(Request::PublishList)?, json),
        Command::Publish(args) => {
            let (Some(network), Some(container)) = (args.network, args.container) else {
                anyhow::bail!(
                    "usage: tapnet publish NETWORK CONTAINER -p [HOSTIP:]HOST:CONTAINER[/tcp|/udp]"
                );
            };
            let value = call(Request::Publish(Publish {
                network,
                container,
                specs: args.specs,
            }))?;
            client::print_publications(value, false)
        }
        Command::Unpublish {
            network,
            container,
            specs,
        } => {
            let value = call(Request::Unpublish(Publish {
                network,
                container,
                specs,
            }))?;
            for spec in value.as_array().into_iter().flatten() {
                println!("{}", spec.as_str().unwrap_or_default());
            }
            Ok(())
        }
    }
}

/// The executable's entry point: the namespace helper, the front ends chosen by argv[0]
/// (`slirp4netns`), or the `tapnet` command line.
pub fn main() -> ExitCode {
    // Every host-socket flow holds a descriptor: take all the system allows. A child
    // that tapnet starts (`tapnet run`'s command) gets the limit it had back.
    crate::sys::rlimit::raise_nofile_soft();
    crate::knobs::Knobs::init();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__ns-helper")
    {
        nshelper::main();
    }
    rootless::dispatch_early();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tapnet: {err:#}");
            ExitCode::FAILURE
        }
    }
}
