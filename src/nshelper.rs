//! The namespace helper: a short-lived child (`tapnet __ns-helper ...`) that joins a
//! container's user and network namespaces, which a multi-threaded process cannot do,
//! and does there what the port needs: open the TAP, or rename the veth peer and switch
//! its offloads off, then configure the interface (MAC, MTU, address, link up, loopback
//! up, default route) over rtnetlink.
//!
//! Protocol: the daemon spawns `/proc/self/exe __ns-helper --netns-fd N --socket-fd M
//! ...` with the namespace fd and one end of a `SOCK_SEQPACKET` pair inherited (see
//! [`NsRequest::to_args`]). The helper answers with exactly one message on that socket,
//! `ok\t<ifname>` (with the TAP fd attached via `SCM_RIGHTS`) or
//! `err\t<kind>\t<fields...>`, and exits. The daemon waits for the answer (with a
//! timeout) and reaps the child.
//!
//! With `--dns-socket 1` the helper also binds, in the container's namespace, a UDP
//! socket and a TCP listener on 127.0.0.11:53 (Docker's embedded DNS address; `lo` is
//! brought up first, and every 127.0.0.0/8 address is local on it), and after an `ok`
//! sends two more messages, `dns-udp` and `dns-tcp`, each with its socket attached.
//! Both are non-blocking and close-on-exec. Binding port 53 needs CAP_NET_BIND_SERVICE
//! in the namespace's user namespace, which the helper has (root of the container's
//! user namespace once it joined it, or real root).
//!
//! The daemon's TAPs are persistent (`--persist 1`: `TUNSETPERSIST` once everything
//! else succeeded), so that they outlive a killed daemon; a restarted daemon attaches
//! to them again by name with `--reattach 1` (the device must exist; it is not
//! configured again: its addresses, routes and MAC are still in the kernel).
//! `--kind dns` does nothing but bind the DNS sockets (a restarted daemon's veth
//! ports, whose host end it opens itself).

use std::ffi::OsString;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use tapnet_wire::MacAddr;

use crate::ifconfig::{DnsSockets, InterfaceConfig};
use crate::sys::ethtool::{Ethtool, Offload};
use crate::sys::netlink::{LinkChange, RouteSocket};
use crate::sys::tap::{Tap, TapError, TapOptions};
use crate::sys::{fdpass, netns};

/// The first argument that selects the helper in `main`.
pub(crate) const HELPER_ARG: &str = "__ns-helper";

/// How long the daemon waits for the helper's answer before killing it.
const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// Docker's embedded DNS address inside each container, and its port.
pub(crate) const DNS_SOCKET_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

/// Tags of the follow-up messages that carry the DNS sockets.
const DNS_UDP_TAG: &str = "dns-udp";
const DNS_TCP_TAG: &str = "dns-tcp";

/// Default names tried in order when the caller names no interface: `eth0`, `eth1`, ...
const MAX_ETH_INDEX: u32 = 1024;

/// What the helper does in the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NsOp {
    /// Create and open a TAP, configure it, send its fd back.
    Tap,
    /// Rename the veth peer that the daemon created as `peer`, switch its offloads off,
    /// configure it.
    Veth { peer: String },
    /// No interface work: only the DNS sockets (`dns_socket` must be set).
    Dns,
}

/// Everything the helper needs, passed on its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NsRequest {
    pub(crate) netns_fd: RawFd,
    pub(crate) socket_fd: RawFd,
    pub(crate) op: NsOp,
    /// `None`: the first free `ethN`.
    pub(crate) ifname: Option<String>,
    pub(crate) mac: MacAddr,
    pub(crate) address: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) mtu: u32,
    /// See [`InterfaceConfig::configure`].
    pub(crate) configure: bool,
    /// See [`InterfaceConfig::attach_existing`].
    pub(crate) attach_existing: bool,
    /// See [`InterfaceConfig::offload`].
    pub(crate) offload: bool,
    pub(crate) ipv6: Option<(Ipv6Net, Ipv6Addr)>,
    /// Also bind UDP and TCP sockets on 127.0.0.11:53 and send them back.
    pub(crate) dns_socket: bool,
    /// See [`InterfaceConfig::queues`].
    pub(crate) queues: u8,
    /// See [`InterfaceConfig::persist`].
    pub(crate) persist: bool,
    /// See [`InterfaceConfig::reattach`].
    pub(crate) reattach: bool,
}

impl NsRequest {
    /// The arguments after `__ns-helper`.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--netns-fd".to_owned(),
            self.netns_fd.to_string(),
            "--socket-fd".to_owned(),
            self.socket_fd.to_string(),
        ];
        match &self.op {
            NsOp::Tap => args.extend(["--kind".to_owned(), "tap".to_owned()]),
            NsOp::Veth { peer } => {
                args.extend([
                    "--kind".to_owned(),
                    "veth".to_owned(),
                    "--peer".to_owned(),
                    peer.clone(),
                ]);
            }
            NsOp::Dns => args.extend(["--kind".to_owned(), "dns".to_owned()]),
        }
        if let Some(name) = &self.ifname {
            args.extend(["--ifname".to_owned(), name.clone()]);
        }
        args.extend([
            "--mac".to_owned(),
            self.mac.to_string(),
            "--address".to_owned(),
            self.address.to_string(),
            "--gateway".to_owned(),
            self.gateway.to_string(),
            "--mtu".to_owned(),
            self.mtu.to_string(),
            "--configure".to_owned(),
            u8::from(self.configure).to_string(),
            "--attach-existing".to_owned(),
            u8::from(self.attach_existing).to_string(),
        ]);
        if let Some((address6, gateway6)) = &self.ipv6 {
            args.extend([
                "--address6".to_owned(),
                address6.to_string(),
                "--gateway6".to_owned(),
                gateway6.to_string(),
            ]);
        }
        if self.dns_socket {
            args.extend(["--dns-socket".to_owned(), "1".to_owned()]);
        }
        if self.queues > 1 {
            args.extend(["--queues".to_owned(), self.queues.to_string()]);
        }
        if self.offload {
            args.extend(["--offload".to_owned(), "1".to_owned()]);
        }
        if self.persist {
            args.extend(["--persist".to_owned(), "1".to_owned()]);
        }
        if self.reattach {
            args.extend(["--reattach".to_owned(), "1".to_owned()]);
        }
        args
    }

    /// Parses the arguments after `__ns-helper`.
    pub(crate) fn from_args(args: &[OsString]) -> Result<Self, String> {
        let mut pairs = std::collections::HashMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let key = key.to_str().ok_or("non-UTF-8 argument")?;
            let value = it.next().ok_or_else(|| format!("{key} needs a value"))?;
            let value = value
                .to_str()
                .ok_or_else(|| format!("{key}: non-UTF-8 value"))?;
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {key:?}"))?;
            if pairs.insert(key, value).is_some() {
                return Err(format!("--{key} given twice"));
            }
        }
        let mut take = |key: &str| pairs.remove(key).ok_or_else(|| format!("missing --{key}"));
        fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
            value
                .parse()
                .map_err(|_| format!("invalid --{key} {value:?}"))
        }
        let netns_fd = parse("netns-fd", take("netns-fd")?)?;
        let socket_fd = parse("socket-fd", take("socket-fd")?)?;
        let op = match take("kind")? {
            "tap" => NsOp::Tap,
            "veth" => NsOp::Veth {
                peer: take("peer")?.to_owned(),
            },
            "dns" => NsOp::Dns,
            other => return Err(format!("invalid --kind {other:?}")),
        };
        let mac = parse("mac", take("mac")?)?;
        let address = parse("address", take("address")?)?;
        let gateway = parse("gateway", take("gateway")?)?;
        let mtu = parse("mtu", take("mtu")?)?;
        let flag = |key: &str, value: &str| match value {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(format!("invalid --{key} {value:?}")),
        };
        let configure = flag("configure", take("configure")?)?;
        let attach_existing = flag("attach-existing", take("attach-existing")?)?;
        let ipv6 = match (pairs.remove("address6"), pairs.remove("gateway6")) {
            (Some(a), Some(g)) => Some((parse("address6", a)?, parse("gateway6", g)?)),
            (None, None) => None,
            _ => return Err("--address6 and --gateway6 go together".to_owned()),
        };
        let ifname = pairs.remove("ifname").map(str::to_owned);
        let dns_socket = match pairs.remove("dns-socket") {
            Some(value) => flag("dns-socket", value)?,
            None => false,
        };
        let mut optional_flag = |key: &str| match pairs.remove(key) {
            Some(value) => flag(key, value),
            None => Ok(false),
        };
        let offload = optional_flag("offload")?;
        let persist = optional_flag("persist")?;
        let reattach = optional_flag("reattach")?;
        let queues = match pairs.remove("queues") {
            Some(value) => match value.parse::<u8>() {
                Ok(n @ 1..=MAX_QUEUES) => n,
                _ => return Err(format!("invalid --queues {value:?} (1-{MAX_QUEUES})")),
            },
            None => 1,
        };
        if let Some(extra) = pairs.keys().next() {
            return Err(format!("unknown argument --{extra}"));
        }
        Ok(Self {
            netns_fd,
            socket_fd,
            op,
            ifname,
            mac,
            address,
            gateway,
            mtu,
            configure,
            attach_existing,
            offload,
            ipv6,
            dns_socket,
            queues,
            persist,
            reattach,
        })
    }
}

/// Most queues of a multi-queue TAP that the helper opens.
pub(crate) const MAX_QUEUES: u8 = 16;

/// The tag of the follow-up messages that carry a multi-queue TAP's further queues.
const QUEUE_TAG: &str = "queue";

/// Why the helper failed, as reported to the daemon. Each message is one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NsFailure {
    /// Joining the user or network namespace failed.
    Enter(String),
    /// `/dev/net/tun` could not be opened for lack of permission.
    TunPermission(String),
    /// The interface name is taken in the container.
    NameTaken(String),
    /// The interface to attach to again is not in the container any more.
    Gone(String),
    /// A step of creating or configuring the interface failed.
    Configure { ifname: String, message: String },
    /// Anything else (the helper could not run, crashed, timed out, ...).
    Other(String),
}

/// The helper's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NsReply {
    Ok { ifname: String },
    Err(NsFailure),
}

/// Makes a message fit in one tab-separated field of one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r', '\t'], " ")
}

impl NsReply {
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Ok { ifname } => format!("ok\t{}", one_line(ifname)),
            Self::Err(NsFailure::Enter(m)) => format!("err\tenter\t{}", one_line(m)),
            Self::Err(NsFailure::TunPermission(m)) => {
                format!("err\ttun-permission\t{}", one_line(m))
            }
            Self::Err(NsFailure::NameTaken(n)) => format!("err\tname-taken\t{}", one_line(n)),
            Self::Err(NsFailure::Gone(n)) => format!("err\tgone\t{}", one_line(n)),
            Self::Err(NsFailure::Configure { ifname, message }) => {
                format!(
                    "err\tconfigure\t{}\t{}",
                    one_line(ifname),
                    one_line(message)
                )
            }
            Self::Err(NsFailure::Other(m)) => format!("err\tother\t{}", one_line(m)),
        }
    }

    pub(crate) fn decode(s: &str) -> Option<Self> {
        let fields: Vec<&str> = s.split('\t').collect();
        let failure = match fields.as_slice() {
            ["ok", ifname] => {
                return Some(Self::Ok {
                    ifname: (*ifname).to_owned(),
                });
            }
            ["err", "enter", m] => NsFailure::Enter((*m).to_owned()),
            ["err", "tun-permission", m] => NsFailure::TunPermission((*m).to_owned()),
            ["err", "name-taken", n] => NsFailure::NameTaken((*n).to_owned()),
            ["err", "gone", n] => NsFailure::Gone((*n).to_owned()),
            ["err", "configure", ifname, m] => NsFailure::Configure {
                ifname: (*ifname).to_owned(),
                message: (*m).to_owned(),
            },
            ["err", "other", m] => NsFailure::Other((*m).to_owned()),
            _ => return None,
        };
        Some(Self::Err(failure))
    }
}

/// An OS error as a short phrase: "File exists" rather than "File exists (os error 17)".
pub(crate) fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rsplit_once(" (os error ") {
        Some((text, _)) if e.raw_os_error().is_some() => text.to_owned(),
        _ => s,
    }
}

// ---------------------------------------------------------------------------------
// Daemon side.

/// What the helper hands back.
#[derive(Debug)]
pub(crate) struct HelperReply {
    /// The interface name chosen in the container.
    pub(crate) ifname: String,
    /// For a TAP: its fd.
    pub(crate) fd: Option<OwnedFd>,
    /// The sockets on 127.0.0.11:53, when asked for.
    pub(crate) dns: Option<DnsSockets>,
    /// A multi-queue TAP's further queues.
    pub(crate) queues: Vec<OwnedFd>,
}

/// Runs the helper for `op` in the namespace `netns` and waits for its answer: the
/// interface name chosen in the container, for a TAP its fd, and with `dns_socket` the
/// sockets bound on 127.0.0.11:53 in the container.
pub(crate) fn run_helper(
    netns: BorrowedFd<'_>,
    op: NsOp,
    config: &InterfaceConfig,
    dns_socket: bool,
) -> Result<HelperReply, NsFailure> {
    let other = |what: &str, e: io::Error| NsFailure::Other(format!("{what}: {}", describe(&e)));
    let op_is_tap = op == NsOp::Tap;
    let (ours, theirs) = fdpass::seqpacket_pair().map_err(|e| other("socketpair", e))?;
    let request = NsRequest {
        netns_fd: netns.as_raw_fd(),
        socket_fd: theirs.as_raw_fd(),
        op,
        ifname: config.ifname.clone(),
        mac: config.mac,
        address: config.address,
        gateway: config.gateway,
        mtu: config.mtu,
        configure: config.configure,
        attach_existing: config.attach_existing,
        offload: config.offload,
        ipv6: config.ipv6,
        dns_socket,
        queues: config.queues,
        persist: config.persist,
        reattach: config.reattach,
    };
    let mut cmd = Command::new("/proc/self/exe");
    // argv[0] "tapnet": the daemon may have been started as `slirp4netns`.
    cmd.arg0("tapnet")
        .arg(HELPER_ARG)
        .args(request.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = netns::spawn_with_fds(&mut cmd, &[netns, theirs.as_fd()])
        .map_err(|e| other("start the namespace helper", e))?;
    drop(theirs); // so that we see EOF if the helper dies without answering

    let mut buf = [0u8; 4096];
    let answer = fdpass::set_recv_timeout(ours.as_fd(), HELPER_TIMEOUT)
        .and_then(|()| fdpass::recv_with_fd(ours.as_fd(), &mut buf));
    let result = match answer {
        Ok((0, _)) => None,
        Ok((n, fd)) => Some(match NsReply::decode(&String::from_utf8_lossy(&buf[..n])) {
            Some(NsReply::Ok { ifname }) => match dns_socket {
                false => Ok(HelperReply {
                    ifname,
                    fd,
                    dns: None,
                    queues: Vec::new(),
                }),
                true => recv_dns_sockets(ours.as_fd()).map(|dns| HelperReply {
                    ifname,
                    fd,
                    dns: Some(dns),
                    queues: Vec::new(),
                }),
            }
            .map(|mut reply| {
                if op_is_tap && config.queues > 1 {
                    reply.queues = recv_queues(ours.as_fd());
                }
                reply
            }),
            Some(NsReply::Err(failure)) => Err(failure),
            None => Err(NsFailure::Other(
                "malformed answer from the namespace helper".to_owned(),
            )),
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            // Our own child, killed by its pid; then reaped below.
            let _ = child.kill();
            Some(Err(NsFailure::Other(format!(
                "the namespace helper did not answer within {}s",
                HELPER_TIMEOUT.as_secs()
            ))))
        }
        Err(e) => Some(Err(other("read the namespace helper's answer", e))),
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| other("wait for the namespace helper", e))?;
    match result {
        Some(r) => r,
        None => {
            let last = stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            Err(NsFailure::Other(format!(
                "the namespace helper failed ({status}): {}",
                last.trim()
            )))
        }
    }
}

/// Receives the two follow-up messages that carry the DNS sockets.
fn recv_dns_sockets(sock: BorrowedFd<'_>) -> Result<DnsSockets, NsFailure> {
    let recv = |tag: &str| {
        let mut buf = [0u8; 64];
        match fdpass::recv_with_fd(sock, &mut buf) {
            Ok((n, Some(fd))) if &buf[..n] == tag.as_bytes() => Ok(fd),
            Ok(_) => Err(NsFailure::Other(format!(
                "the namespace helper sent no {tag} socket"
            ))),
            Err(e) => Err(NsFailure::Other(format!(
                "read the namespace helper's {tag} socket: {}",
                describe(&e)
            ))),
        }
    };
    let udp = recv(DNS_UDP_TAG)?;
    let tcp = recv(DNS_TCP_TAG)?;
    Ok(DnsSockets {
        udp: UdpSocket::from(udp),
        tcp: TcpListener::from(tcp),
    })
}

// ---------------------------------------------------------------------------------
// Helper side.

/// Entry point when invoked as `tapnet __ns-helper ...`.
pub(crate) fn main() -> ! {
    run(std::env::args_os().collect())
}

/// Runs the helper with the full argument vector (`argv[1]` is `__ns-helper`); exits.
pub(crate) fn run(args: Vec<OsString>) -> ! {
    let request = match NsRequest::from_args(args.get(2..).unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapnet {HELPER_ARG}: {e} (this command is internal to tapnet)");
            std::process::exit(2);
        }
    };
    let sock = match netns::adopt_inherited_fd(request.socket_fd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tapnet {HELPER_ARG}: socket fd {}: {e}", request.socket_fd);
            std::process::exit(2);
        }
    };
    let (reply, fd, dns, queues) = match serve(&request) {
        Ok(HelperReply {
            ifname,
            fd,
            dns,
            queues,
        }) => (NsReply::Ok { ifname }, fd, dns, queues),
        Err(failure) => (NsReply::Err(failure), None, None, Vec::new()),
    };
    let ok = matches!(reply, NsReply::Ok { .. });
    if let Err(e) = fdpass::send_with_fd(
        sock.as_fd(),
        reply.encode().as_bytes(),
        fd.as_ref().map(AsFd::as_fd),
    ) {
        eprintln!("tapnet {HELPER_ARG}: send the answer: {e}");
        std::process::exit(1);
    }
    if let Some(dns) = dns {
        for (tag, fd) in [
            (DNS_UDP_TAG, dns.udp.as_fd()),
            (DNS_TCP_TAG, dns.tcp.as_fd()),
        ] {
            if let Err(e) = fdpass::send_with_fd(sock.as_fd(), tag.as_bytes(), Some(fd)) {
                eprintln!("tapnet {HELPER_ARG}: send the {tag} socket: {e}");
                std::process::exit(1);
            }
        }
    }
    for queue in &queues {
        if let Err(e) =
            fdpass::send_with_fd(sock.as_fd(), QUEUE_TAG.as_bytes(), Some(queue.as_fd()))
        {
            eprintln!("tapnet {HELPER_ARG}: send a TAP queue: {e}");
            std::process::exit(1);
        }
    }
    std::process::exit(if ok { 0 } else { 1 })
}

/// Does the work in the namespace; returns the interface name, for a TAP its fd, and
/// the DNS sockets if asked for.
fn serve(req: &NsRequest) -> Result<HelperReply, NsFailure> {
    let netns = netns::adopt_inherited_fd(req.netns_fd).map_err(|e| {
        NsFailure::Other(format!("namespace fd {}: {}", req.netns_fd, describe(&e)))
    })?;
    netns::enter_netns(netns.as_fd()).map_err(|e| NsFailure::Enter(describe(&e)))?;
    drop(netns);

    let mut rt = RouteSocket::open()
        .map_err(|e| NsFailure::Other(format!("open rtnetlink socket: {}", describe(&e))))?;
    let (ifname, fd, queues) = serve_op(&mut rt, req)?;
    let dns = if req.dns_socket {
        Some(open_dns_sockets(&mut rt)?)
    } else {
        None
    };
    // Last, once nothing else can fail: a helper that fails earlier leaves no device
    // behind (its fd closes when it exits).
    if req.persist
        && let Some(fd) = &fd
    {
        crate::sys::tap::set_persist(fd.as_fd(), true).map_err(|e| NsFailure::Configure {
            ifname: ifname.clone(),
            message: format!("make the TAP persistent: {}", describe(&e)),
        })?;
    }
    Ok(HelperReply {
        ifname,
        fd,
        dns,
        queues,
    })
}

/// Receives a multi-queue TAP's further queues: the follow-up messages after the
/// answer (and the DNS sockets), until the helper closes its end. None when the
/// device could have only one queue.
fn recv_queues(sock: BorrowedFd<'_>) -> Vec<OwnedFd> {
    let mut queues = Vec::new();
    let mut buf = [0u8; 16];
    while let Ok((n, Some(fd))) = fdpass::recv_with_fd(sock, &mut buf) {
        if &buf[..n] != QUEUE_TAG.as_bytes() {
            break;
        }
        queues.push(fd);
    }
    queues
}

/// Binds UDP and TCP sockets on 127.0.0.11:53, after bringing `lo` up (it is down in a
/// fresh namespace, and `configure` may not have run).
fn open_dns_sockets(rt: &mut RouteSocket) -> Result<DnsSockets, NsFailure> {
    let fail = |step: &str, e: io::Error| NsFailure::Configure {
        ifname: "lo".to_owned(),
        message: format!("{step}: {}", describe(&e)),
    };
    let lo = rt
        .existing_link_index("lo")
        .map_err(|e| fail("look up lo", e))?;
    rt.set_link(
        lo,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .map_err(|e| fail("bring lo up", e))?;
    let udp = UdpSocket::bind(DNS_SOCKET_ADDR)
        .map_err(|e| fail(&format!("bind UDP {DNS_SOCKET_ADDR}"), e))?;
    let tcp = TcpListener::bind(DNS_SOCKET_ADDR)
        .map_err(|e| fail(&format!("listen on TCP {DNS_SOCKET_ADDR}"), e))?;
    // O_NONBLOCK lives in the open file description, so it travels with the fds.
    udp.set_nonblocking(true)
        .and_then(|()| tcp.set_nonblocking(true))
        .map_err(|e| fail("make the DNS sockets non-blocking", e))?;
    Ok(DnsSockets { udp, tcp })
}

/// The interface part of the work: TAP or veth.
fn serve_op(
    rt: &mut RouteSocket,
    req: &NsRequest,
) -> Result<(String, Option<OwnedFd>, Vec<OwnedFd>), NsFailure> {
    match &req.op {
        NsOp::Tap => {
            let (tap, queues) = if req.reattach {
                (reattach_tap(rt, req)?, Vec::new())
            } else {
                open_tap(rt, req)?
            };
            let ifname = tap.name().to_owned();
            if req.configure && !req.reattach {
                configure(rt, &ifname, req)?;
            }
            Ok((ifname, Some(tap.into_fd()), queues))
        }
        NsOp::Dns => Ok((String::new(), None, Vec::new())),
        NsOp::Veth { peer } => {
            let ifname = rename_peer(rt, peer, req.ifname.as_deref())?;
            // Without a virtio_net_hdr on the host end's socket, the container's kernel
            // would hand the veth CHECKSUM_PARTIAL frames and 64 KB TSO/GSO
            // super-frames that AF_PACKET passes on undescribed: offloads off.
            if !req.offload {
                let fail = |step: &str, e: io::Error| NsFailure::Configure {
                    ifname: ifname.clone(),
                    message: format!("{step}: {}", describe(&e)),
                };
                let ethtool = Ethtool::open().map_err(|e| fail("open ethtool socket", e))?;
                for (offload, what) in [
                    (Offload::TxChecksum, "tx checksum offload"),
                    (Offload::Tso, "TSO"),
                    (Offload::Gso, "GSO"),
                ] {
                    ethtool
                        .set(&ifname, offload, false)
                        .map_err(|e| fail(&format!("switch {what} off"), e))?;
                }
            }
            configure(rt, &ifname, req)?;
            Ok((ifname, None, Vec::new()))
        }
    }
}

/// Names to try: the requested one only, or `eth0`, `eth1`, ...
fn candidates(requested: Option<&str>) -> Box<dyn Iterator<Item = String> + '_> {
    match requested {
        Some(name) => Box::new(std::iter::once(name.to_owned())),
        None => Box::new((0..MAX_ETH_INDEX).map(|n| format!("eth{n}"))),
    }
}

fn no_free_name() -> NsFailure {
    NsFailure::Other(format!(
        "no free interface name eth0..eth{}",
        MAX_ETH_INDEX - 1
    ))
}

/// Creates the TAP under the requested name or the first free `ethN`; with
/// `queues` > 1 a multi-queue TAP and its further queues (one queue when the device
/// cannot have more: an existing single-queue TAP).
fn open_tap(rt: &mut RouteSocket, req: &NsRequest) -> Result<(Tap, Vec<OwnedFd>), NsFailure> {
    let (requested, offload) = (req.ifname.as_deref(), req.offload);
    let multi_queue = req.queues > 1;
    let tap = match open_tap_plain(rt, requested, req.attach_existing, offload, multi_queue) {
        Err(_) if multi_queue && req.attach_existing => {
            open_tap_plain(rt, requested, req.attach_existing, offload, false)?
        }
        other => other?,
    };
    let enable_offload = |tap: &Tap| {
        if offload {
            tap.enable_offload().map_err(|e| NsFailure::Configure {
                ifname: tap.name().to_owned(),
                message: format!("enable checksum/segmentation offload: {}", describe(&e)),
            })?;
        }
        Ok(())
    };
    enable_offload(&tap)?;
    let mut queues = Vec::new();
    if multi_queue && tap.is_multi_queue() {
        let options = TapOptions {
            exclusive: false,
            vnet_hdr: offload,
            multi_queue: true,
        };
        for _ in 1..req.queues {
            let queue = Tap::open(tap.name(), options)
                .map_err(|e| tap_failure(tap.name().to_owned(), e))?;
            enable_offload(&queue)?;
            queues.push(queue.into_fd());
        }
    }
    Ok((tap, queues))
}

/// How long a reattach waits for a killed daemon's fd to be let go: the kernel closes a
/// dead process's files asynchronously (io_uring's requests are cancelled by a work
/// item), and a single-queue TAP takes one fd at a time (`EBUSY`).
const REATTACH_BUSY_TIMEOUT: Duration = Duration::from_secs(3);

/// Attaches again to the daemon's persistent TAP of the requested name, without
/// creating it: a device that is gone stays gone ([`NsFailure::Gone`]). Its offload
/// settings are applied again to the new fd; nothing else is touched.
fn reattach_tap(rt: &mut RouteSocket, req: &NsRequest) -> Result<Tap, NsFailure> {
    let name = req
        .ifname
        .as_deref()
        .ok_or_else(|| NsFailure::Other("--reattach needs --ifname".to_owned()))?;
    let options = TapOptions {
        exclusive: false,
        vnet_hdr: req.offload,
        multi_queue: false,
    };
    let deadline = std::time::Instant::now() + REATTACH_BUSY_TIMEOUT;
    let tap = loop {
        let exists = rt.link_index(name).map_err(|e| NsFailure::Configure {
            ifname: name.to_owned(),
            message: format!("look up link: {}", describe(&e)),
        })?;
        if exists.is_none() {
            return Err(NsFailure::Gone(name.to_owned()));
        }
        match Tap::open(name, options) {
            Ok(tap) => break tap,
            Err(TapError::NameTaken(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TapError::NameTaken(_)) => {
                return Err(NsFailure::Configure {
                    ifname: name.to_owned(),
                    message: "the TAP is held by another process".to_owned(),
                });
            }
            Err(e) => return Err(tap_failure(name.to_owned(), e)),
        }
    };
    if req.offload {
        tap.enable_offload().map_err(|e| NsFailure::Configure {
            ifname: name.to_owned(),
            message: format!("enable checksum/segmentation offload: {}", describe(&e)),
        })?;
    }
    Ok(tap)
}

/// Opens the TAP (with `IFF_VNET_HDR` if `vnet_hdr`) under the requested name or the
/// first free `ethN`.
fn open_tap_plain(
    rt: &mut RouteSocket,
    requested: Option<&str>,
    attach_existing: bool,
    vnet_hdr: bool,
    multi_queue: bool,
) -> Result<Tap, NsFailure> {
    if let (Some(name), true) = (requested, attach_existing) {
        // Create it, or attach to the device of that name if there is one.
        let options = TapOptions {
            exclusive: false,
            vnet_hdr,
            multi_queue,
        };
        return Tap::open(name, options).map_err(|e| tap_failure(name.to_owned(), e));
    }
    let options = TapOptions {
        vnet_hdr,
        multi_queue,
        ..TapOptions::default()
    };
    for name in candidates(requested) {
        let lookup = rt.link_index(&name).map_err(|e| NsFailure::Configure {
            ifname: name.clone(),
            message: format!("look up link: {}", describe(&e)),
        })?;
        if lookup.is_some() {
            if requested.is_some() {
                return Err(NsFailure::NameTaken(name));
            }
            continue;
        }
        match Tap::open(&name, options) {
            Ok(tap) => return Ok(tap),
            // Someone created it between our look-up and TUNSETIFF.
            Err(TapError::NameTaken(_)) if requested.is_none() => continue,
            Err(e) => return Err(tap_failure(name, e)),
        }
    }
    Err(no_free_name())
}

/// The failure to report for a TAP that could not be opened under `name`.
fn tap_failure(name: String, e: TapError) -> NsFailure {
    match e {
        TapError::NameTaken(n) => NsFailure::NameTaken(n),
        TapError::Open(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            NsFailure::TunPermission(describe(&e))
        }
        TapError::Open(e) => NsFailure::Other(format!(
            "open {}: {}",
            crate::sys::tap::TUN_PATH,
            describe(&e)
        )),
        TapError::SetIff { source, .. } => NsFailure::Configure {
            ifname: name,
            message: format!("create TAP: {}", describe(&source)),
        },
        e => NsFailure::Configure {
            ifname: name,
            message: e.to_string(),
        },
    }
}

/// Renames the veth peer `peer` to the requested name or the first free `ethN`.
fn rename_peer(
    rt: &mut RouteSocket,
    peer: &str,
    requested: Option<&str>,
) -> Result<String, NsFailure> {
    let index = rt
        .existing_link_index(peer)
        .map_err(|e| NsFailure::Configure {
            ifname: peer.to_owned(),
            message: format!("find the new veth peer: {}", describe(&e)),
        })?;
    for name in candidates(requested) {
        let change = LinkChange {
            name: Some(&name),
            ..Default::default()
        };
        match rt.set_link(index, &change) {
            Ok(()) => return Ok(name),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                if requested.is_some() {
                    return Err(NsFailure::NameTaken(name));
                }
            }
            Err(e) => {
                return Err(NsFailure::Configure {
                    ifname: name,
                    message: format!("rename veth peer {peer}: {}", describe(&e)),
                });
            }
        }
    }
    Err(no_free_name())
}

/// Sets MAC and MTU, brings the link and loopback up, adds the address and (unless the
/// namespace has one) the default route.
fn configure(rt: &mut RouteSocket, ifname: &str, req: &NsRequest) -> Result<(), NsFailure> {
    let fail = |step: String, e: io::Error| NsFailure::Configure {
        ifname: ifname.to_owned(),
        message: format!("{step}: {}", describe(&e)),
    };
    let index = rt
        .existing_link_index(ifname)
        .map_err(|e| fail("look up link".to_owned(), e))?;
    let lo = rt
        .existing_link_index("lo")
        .map_err(|e| fail("look up lo".to_owned(), e))?;
    rt.set_link(
        lo,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .map_err(|e| fail("bring lo up".to_owned(), e))?;
    rt.set_link(
        index,
        &LinkChange {
            mac: Some(req.mac.0),
            mtu: Some(req.mtu),
            ..Default::default()
        },
    )
    .map_err(|e| fail(format!("set MAC {} and MTU {}", req.mac, req.mtu), e))?;
    rt.set_link(
        index,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .map_err(|e| fail("bring up".to_owned(), e))?;
    let prefix = req.address.prefix_len();
    let broadcast = (prefix < 31).then(|| req.address.broadcast());
    rt.add_ipv4_address(index, req.address.addr(), prefix, broadcast)
        .map_err(|e| fail(format!("add address {}", req.address), e))?;
    if !req.gateway.is_unspecified() {
        rt.add_ipv4_default_route(index, req.gateway)
            .map_err(|e| fail(format!("add default route via {}", req.gateway), e))?;
    }
    if let Some((address6, gateway6)) = req.ipv6 {
        rt.add_ipv6_address(index, address6.addr(), address6.prefix_len())
            .map_err(|e| fail(format!("add address {address6}"), e))?;
        rt.add_ipv6_default_route(index, gateway6)
            .map_err(|e| fail(format!("add default route via {gateway6}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(op: NsOp, ifname: Option<&str>) -> NsRequest {
        NsRequest {
            netns_fd: 7,
            socket_fd: 9,
            op,
            ifname: ifname.map(str::to_owned),
            mac: MacAddr([2, 0x42, 10, 88, 0, 2]),
            address: "10.88.0.2/16".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            mtu: 1500,
            configure: true,
            attach_existing: false,
            offload: false,
            ipv6: None,
            dns_socket: false,
            queues: 1,
            persist: false,
            reattach: false,
        }
    }

    #[test]
    fn optional_arguments_round_trip() {
        let mut req = sample(NsOp::Tap, Some("tap0"));
        req.configure = false;
        req.attach_existing = true;
        req.dns_socket = true;
        assert!(req.to_args().join(" ").ends_with("--dns-socket 1"));
        req.offload = true;
        req.queues = 4;
        req.ipv6 = Some(("fd00::100/64".parse().unwrap(), "fd00::2".parse().unwrap()));
        assert_eq!(NsRequest::from_args(&os(&req.to_args())).unwrap(), req);
        req.persist = true;
        req.reattach = true;
        assert!(
            req.to_args()
                .join(" ")
                .ends_with("--persist 1 --reattach 1")
        );
        assert_eq!(NsRequest::from_args(&os(&req.to_args())).unwrap(), req);
        let mut dns = sample(NsOp::Dns, None);
        dns.dns_socket = true;
        assert_eq!(NsRequest::from_args(&os(&dns.to_args())).unwrap(), dns);
    }

    fn os(args: &[String]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn request_args_round_trip() {
        for req in [
            sample(NsOp::Tap, None),
            sample(
                NsOp::Veth {
                    peer: "tp1x2".to_owned(),
                },
                Some("eth3"),
            ),
        ] {
            let args = req.to_args();
            assert_eq!(NsRequest::from_args(&os(&args)).unwrap(), req, "{args:?}");
        }
    }

    #[test]
    fn request_args_are_readable() {
        assert_eq!(
            sample(NsOp::Tap, Some("eth1")).to_args().join(" "),
            "--netns-fd 7 --socket-fd 9 --kind tap --ifname eth1 --mac 02:42:0a:58:00:02 \
             --address 10.88.0.2/16 --gateway 10.88.0.1 --mtu 1500 --configure 1 --attach-existing 0"
        );
    }

    #[test]
    fn request_args_reject_garbage() {
        let good = sample(NsOp::Tap, None).to_args();
        let mut missing = good.clone();
        missing.truncate(missing.len() - 2);
        assert_eq!(
            NsRequest::from_args(&os(&missing)).unwrap_err(),
            "missing --attach-existing"
        );
        let mut extra = good.clone();
        extra.extend(["--bogus".to_owned(), "1".to_owned()]);
        assert_eq!(
            NsRequest::from_args(&os(&extra)).unwrap_err(),
            "unknown argument --bogus"
        );
        let mut odd = good.clone();
        odd.push("--mtu".to_owned());
        assert!(NsRequest::from_args(&os(&odd)).is_err());
        let bad_mac: Vec<String> = good
            .iter()
            .map(|a| {
                if a.starts_with("02:42") {
                    "xx".to_owned()
                } else {
                    a.clone()
                }
            })
            .collect();
        assert_eq!(
            NsRequest::from_args(&os(&bad_mac)).unwrap_err(),
            "invalid --mac \"xx\""
        );
        let veth_without_peer: Vec<String> = good
            .iter()
            .map(|a| {
                if a == "tap" {
                    "veth".to_owned()
                } else {
                    a.clone()
                }
            })
            .collect();
        assert_eq!(
            NsRequest::from_args(&os(&veth_without_peer)).unwrap_err(),
            "missing --peer"
        );
    }

    #[test]
    fn replies_round_trip_on_one_line() {
        for reply in [
            NsReply::Ok {
                ifname: "eth0".to_owned(),
            },
            NsReply::Err(NsFailure::Enter("Operation not permitted".to_owned())),
            NsReply::Err(NsFailure::TunPermission("Permission denied".to_owned())),
            NsReply::Err(NsFailure::NameTaken("eth0".to_owned())),
            NsReply::Err(NsFailure::Gone("eth0".to_owned())),
            NsReply::Err(NsFailure::Configure {
                ifname: "eth1".to_owned(),
                message: "add address: File exists".to_owned(),
            }),
            NsReply::Err(NsFailure::Other("boom".to_owned())),
        ] {
            let line = reply.encode();
            assert!(!line.contains('\n'));
            assert_eq!(NsReply::decode(&line), Some(reply));
        }
        let multi = NsReply::Err(NsFailure::Other("a\nb\tc".to_owned())).encode();
        assert_eq!(
            NsReply::decode(&multi),
            Some(NsReply::Err(NsFailure::Other("a b c".to_owned())))
        );
        assert_eq!(NsReply::decode("what"), None);
    }

    #[test]
    fn describes_os_errors_briefly() {
        assert_eq!(
            describe(&io::Error::from_raw_os_error(libc::EEXIST)),
            "File exists"
        );
        assert_eq!(describe(&io::Error::other("custom")), "custom");
    }
}
