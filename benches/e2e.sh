#!/usr/bin/env bash
# benches/e2e.sh - tapnet's end-to-end benchmark against slirp4netns, pasta and the
# kernel path (veth + bridge + iptables NAT), all in one run, as one markdown table.
#
# Usage (as root, from anywhere):
#   sudo benches/e2e.sh [-t SECS] [-T RR_SECS] [-r ROUNDS] [-o OUTDIR] [BACKEND...]
#     -t  seconds per iperf3 run (default 5, plus 1 s omitted warm-up)
#     -T  seconds per request/response and connection-rate run (default 5)
#     -r  rounds (default 3).  One round sets up every back end once and runs every
#         test once on it; rounds are interleaved so that a burst of load from
#         elsewhere on the machine does not hit only one back end.  Medians over rounds.
#     -o  output directory (default benches/out/e2e-<timestamp>)
#   BACKEND (default: all but tapnet-daemon, in this order):
#     kernel slirp1500 slirp65520 pasta tapnet65520 tapnet1500 tapnet-uplink [tapnet-daemon]
#   env TESTS="tcp_egress_host crr_egress_host mem ..." runs a subset of the tests;
#   env RR_PIN="taskset -c 0" pins the ping-pong ends (see ../shared/bench/RESULTS.md);
#   env TAPNET=/path/to/tapnet uses that binary instead of building one;
#   env SHARED_BENCH=DIR uses another copy of the shared harness (default ../shared/bench).
#
# It installs what is missing (apt-get: iperf3 slirp4netns passt socat iproute2 iptables
# gcc python3 procps), builds tapnet (`cargo build --release`), and then runs the tests
# of ../shared/bench/anchors.sh on every back end, plus the ones added here:
#   crr_egress_host  short TCP connections per second, container -> host service
#                    (connect, 1-byte request, 1-byte response, close; benches/tcp_crr.c)
#   crr_ingress_lo   the same, host 127.0.0.1 -> published port -> container
#   mem              resident memory of the forwarder process (VmRSS after setup and
#                    after the round's tests, VmHWM peak), for every user-space back end
# CPU: anchors.sh's accounting (/proc/stat busy time over each test = host cores,
# utime+stime of the forwarder PID = forwarder cores), reported per Gbit/s.
#
# How it builds on anchors.sh: it sources everything above anchors.sh's "main" section
# (options, guard chain, ext namespace, servers, tests, measure(), and the kernel,
# slirp and pasta back ends, unchanged), adds tapnet's back ends and the tests above,
# and runs its own main loop.  Results: OUTDIR/results.tsv (anchors.sh's format),
# OUTDIR/summary.md (anchors.sh's summarize.py: min..max, CPU, notes) and
# OUTDIR/table.md (benches/e2e-table.py: the table with ratios to each anchor).
#
# Traffic stays on loopback and in the namespaces/veths created here (see anchors.sh).
# Everything created is removed on exit; the guard counter printed at the end must be 0.

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$(cd "$REPO/../shared/bench" 2>/dev/null && pwd)}
ANCHORS=$SHARED/anchors.sh

SECS=5 RR_SECS=5 ROUNDS=3 OUTDIR=""
while getopts "t:T:r:o:h" o; do
	case $o in
	t) SECS=$OPTARG ;;
	T) RR_SECS=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	o) OUTDIR=$OPTARG ;;
	*) sed -n '2,40p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
BACKENDS=("$@")
[ ${#BACKENDS[@]} -eq 0 ] && BACKENDS=(kernel slirp1500 slirp65520 pasta tapnet65520 tapnet1500 tapnet-uplink)
[ "$(id -u)" = 0 ] || { echo "e2e.sh: run as root (sudo $0)" >&2; exit 1; }
[ -r "$ANCHORS" ] || { echo "e2e.sh: no harness at $ANCHORS (set SHARED_BENCH)" >&2; exit 1; }
OUTDIR=${OUTDIR:-$HERE/out/e2e-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

# ---------------------------------------------------------------- prerequisites
need=()
for c in iperf3:iperf3 slirp4netns:slirp4netns pasta:passt socat:socat ip:iproute2 ss:iproute2 \
	iptables:iptables cc:gcc python3:python3 ps:procps sysctl:procps flock:util-linux ethtool:ethtool; do
	command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "e2e.sh: installing ${need[*]}" >&2
	command -v apt-get >/dev/null || { echo "e2e.sh: no apt-get; install ${need[*]} yourself" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" libc6-dev >&2 ||
		{ echo "e2e.sh: apt-get install failed" >&2; exit 1; }
fi
[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
[ -c /dev/net/tun ] || { echo "e2e.sh: /dev/net/tun is missing" >&2; exit 1; }

if [ -z "${TAPNET:-}" ]; then
	# build as the user who ran sudo when root has no cargo (rustup installs per user)
	build=(cargo build --release --quiet --bin tapnet)
	if ! command -v cargo >/dev/null && [ -n "${SUDO_USER:-}" ] && sudo -u "$SUDO_USER" -i sh -c 'command -v cargo' >/dev/null 2>&1; then
		build=(sudo -u "$SUDO_USER" -i env ${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR} sh -c "cd '$REPO' && cargo build --release --quiet --bin tapnet")
	elif ! command -v cargo >/dev/null; then
		echo "e2e.sh: no cargo: install Rust 1.91 or later (https://rustup.rs), or set TAPNET=/path/to/tapnet" >&2
		exit 1
	fi
	echo "e2e.sh: building tapnet (release)" >&2
	(cd "$REPO" && "${build[@]}") || { echo "e2e.sh: cargo build failed" >&2; exit 1; }
	TAPNET=${CARGO_TARGET_DIR:-$REPO/target}/release/tapnet
fi
[ -x "$TAPNET" ] || { echo "e2e.sh: no tapnet binary at $TAPNET" >&2; exit 1; }
TAPNET=$(readlink -f "$TAPNET")
tapnet_has_uplink() { "$TAPNET" daemon --help 2>/dev/null | grep -q -- '--uplink'; }

# one benchmark at a time: anchors.sh's names (bench-ctr, bench-ext, bnx0) are fixed
exec 9>/run/bench-anchors.lock
flock -n 9 || { echo "e2e.sh: another benchmark holds /run/bench-anchors.lock" >&2; exit 1; }
trap 'rm -f /run/bench-anchors.lock' EXIT   # replaced by the full cleanup below
for n in bench-ctr bench-ext; do
	[ -e /run/netns/$n ] && { echo "e2e.sh: netns $n exists (another benchmark running?); not touching it" >&2; exit 1; }
done
for d in bnx0 bnbr0 bnup0; do
	[ -e /sys/class/net/$d ] && { echo "e2e.sh: device $d exists (another benchmark running?)" >&2; exit 1; }
done

# ---------------------------------------------------------------- the shared harness
# Everything above anchors.sh's main section: option parsing (our -t/-T, one repetition
# per round), guard chain, ext netns, helpers, measure(), run_tests(), back ends.
# One line is adapted on the way: BENCH_DIR points at the harness (for tcp_rr.c),
# since $0 is this script.  The back-end list it parses is ours, restored below.
grep -q '^# =* main$' "$ANCHORS" && grep -q '^BENCH_DIR=' "$ANCHORS" ||
	{ echo "e2e.sh: $ANCHORS no longer has the layout this script expects (BENCH_DIR=, '# === main')" >&2; exit 1; }
export EXTRA_GUARD_NETS="10.96.0.0/24 10.97.0.0/24"   # tapnet daemon network, packet uplink segment
E2E_BACKENDS=("${BACKENDS[@]}")
OPTIND=1
# shellcheck disable=SC1090
source <(sed -e "s|^BENCH_DIR=.*|BENCH_DIR='$SHARED'|" -e '/^# =* main$/,$d' "$ANCHORS") \
	-t "$SECS" -T "$RR_SECS" -r 1 -o "$OUTDIR" kernel
BACKENDS=("${E2E_BACKENDS[@]}")
BASE=$OUTDIR
CRR_BIN=$BASE/tcp_crr
cc -O2 -o "$CRR_BIN" "$HERE/tcp_crr.c" 2>>"$LOG" || { log "cannot compile tcp_crr.c"; exit 1; }
: >"$BASE/backends.txt"
: >"$BASE/skipped.txt"
BACKENDS_KNOWN="kernel slirp1500 slirp65520 pasta pasta1500 tapnet65520 tapnet1500 tapnet-uplink tapnet-daemon"
for b in "${BACKENDS[@]}"; do
	[[ " $BACKENDS_KNOWN " == *" $b "* ]] || { log "unknown back end $b (known: $BACKENDS_KNOWN)"; exit 2; }
done

# ================================================================ tapnet back ends
TAPNET_VER="$("$TAPNET" --version 2>/dev/null | head -1), commit $(git -c safe.directory='*' -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
TAPNET_API=/run/bench-tapnet-api.sock
TAPNET_CTL=/run/bench-tapnet/control.sock

publish_via_api() { # SOCKET: publish the three bench ports through the slirp4netns JSON API
	local sock=$1 p r
	for p in "127.0.0.1 15201 5202" "10.98.0.1 15202 5202" "127.0.0.1 15204 5204"; do
		set -- $p
		r=$(SLIRP_SOCK=$sock slirp_api "{\"execute\": \"add_hostfwd\", \"arguments\": {\"proto\": \"tcp\", \"host_addr\": \"$1\", \"host_port\": $2, \"guest_port\": $3}}")
		echo "add_hostfwd $1:$2 -> $3: $r" >>"$LOG"
		case $r in *'"return"'*) ;; *) log "WARN add_hostfwd $1:$2 -> $3 failed: $r"; return 1 ;; esac
	done
}

# ---- tapnet65520 / tapnet1500: the rootless path, through tapnet's slirp4netns front end
#      (the same command line and API as the slirp4netns anchors; host-socket egress).
#      Like slirp4netns and pasta in this bench, the process runs as root; it does
#      the same work as for an unprivileged user (no privileged code path is involved).
be_tapnet_rootless_setup() { # MTU
	local mtu=$1
	ip netns add $CTR_NS
	rm -f $TAPNET_API
	FWD_PID=$(bg "$OUT/tapnet.log" "$TAPNET" slirp4netns --configure --mtu="$mtu" --disable-dns \
		--api-socket $TAPNET_API --netns-type=path /run/netns/$CTR_NS tap0)
	wait_until 10 sh -c "ip -n $CTR_NS -4 addr show dev tap0 | grep -q 10.0.2.100" || { log "WARN tapnet: tap0 not configured"; return 1; }
	wait_until 10 test -S $TAPNET_API || { log "WARN tapnet: no API socket"; return 1; }
	publish_via_api $TAPNET_API || return 1
	HOST_GW=10.0.2.2
	HOST_BIND=127.0.0.1
	BE_NOTE="$TAPNET_VER; tapnet slirp4netns --configure --mtu=$mtu --disable-dns --netns-type=path (host-socket egress), ports via the slirp4netns API, tap0 MTU $(ip netns exec $CTR_NS cat /sys/class/net/tap0/mtu)"
}
be_tapnet_rootless_teardown() {
	kill_pid "$FWD_PID"
	rm -f $TAPNET_API
	ip netns del $CTR_NS 2>/dev/null
}
be_tapnet65520_setup() { be_tapnet_rootless_setup 65520; }
be_tapnet65520_teardown() { be_tapnet_rootless_teardown; }
be_tapnet1500_setup() { be_tapnet_rootless_setup 1500; }
be_tapnet1500_teardown() { be_tapnet_rootless_teardown; }

# ---- tapnet daemon: one network 10.96.0.0/24, the container attached by `tapnet connect`
#      (TAP port), the three ports published by `connect -p`.
tn() { "$TAPNET" --control "$TAPNET_CTL" "$@" >>"$LOG" 2>&1; }
tapnet_daemon_start() { # MTU [daemon options...]
	local mtu=$1; shift
	ip netns add $CTR_NS
	mkdir -p "${TAPNET_CTL%/*}"
	rm -f "$TAPNET_CTL"
	FWD_PID=$(bg "$OUT/tapnet-daemon.log" "$TAPNET" daemon --control "$TAPNET_CTL" "$@")
	wait_until 10 sh -c "test -S '$TAPNET_CTL' || ! kill -0 $FWD_PID"
	[ -S "$TAPNET_CTL" ] && kill -0 "$FWD_PID" 2>/dev/null ||
		{ log "WARN tapnet daemon did not start: $(tail -3 "$OUT/tapnet-daemon.log" | tr '\n' ' ')"; return 1; }
	tn network create bench --subnet 10.96.0.0/24 --mtu "$mtu" || { log "WARN tapnet network create failed"; return 1; }
	tn connect bench --netns /run/netns/$CTR_NS --name ctr \
		-p 127.0.0.1:15201:5202 -p "${PUBLISH_PEER:-10.98.0.1:15202:5202}" -p 127.0.0.1:15204:5204 ||
		{ log "WARN tapnet connect failed"; return 1; }
	wait_until 5 listening - 127.0.0.1:15201 || log "WARN tapnet daemon: 127.0.0.1:15201 not published"
}
tapnet_daemon_stop() {
	kill_pid "$FWD_PID"
	ip netns del $CTR_NS 2>/dev/null
	rm -f "$TAPNET_CTL"
	rmdir "${TAPNET_CTL%/*}" 2>/dev/null
}

# ---- tapnet-daemon: the daemon with its default uplink, host sockets (not in the default
#      list; the rootful twin of tapnet65520/1500 through the control plane).
be_tapnet_daemon_setup() {
	local mtu=${TAPNET_DAEMON_MTU:-1500}
	tapnet_daemon_start "$mtu" || return 1
	HOST_GW=10.96.0.1   # the gateway reaches the loopback of tapnet's namespace
	HOST_BIND=127.0.0.1
	BE_NOTE="$TAPNET_VER; tapnet daemon (host-socket uplink), network create --subnet 10.96.0.0/24 --mtu $mtu, connect --netns (TAP), connect -p, eth0 MTU $(ip netns exec $CTR_NS cat /sys/class/net/eth0/mtu 2>/dev/null)"
}
be_tapnet_daemon_teardown() { tapnet_daemon_stop; }

# ---- tapnet-uplink: the daemon with a packet uplink (AF_PACKET on a host interface,
#      packet-level NAT), `tapnet daemon --uplink IFNAME --uplink-ip CIDR --uplink-gw IP`.
#      Runs only when `tapnet daemon --help` lists --uplink; otherwise it is skipped
#      with a "not available" line.
#   Topology: veth bnup0 (root netns, 10.97.0.1/24: the upstream router, i.e. this host)
#   <-> bnup1 (root netns, no address, tapnet's uplink, tapnet is 10.97.0.2 on it).
#   The kernel is kept off bnup1 (raw PREROUTING drop, which AF_PACKET sees before;
#   no IPv6, arp_ignore=8), so only tapnet answers there.  Host services listen on
#   10.97.0.1; the peer namespace 10.98.0.2 is reached through this host's routing
#   (ip_forward=1, FORWARD accepted for bnup0<->bnx0, a route back to 10.97.0.0/24
#   in the peer namespace, no NAT by the kernel).  Published ports use the same -p
#   specs as tapnet-daemon.  TAPNET_UPLINK_ARGS overrides the daemon options,
#   TAPNET_UPLINK_MTU (default 1500) the MTU of the veth and of the network, and
#   TAPNET_UPLINK_FORCE=1 runs it even when --help lacks --uplink (with
#   TAPNET_UPLINK_ARGS="" that tests this topology with the host-socket uplink).
UPLINK_MTU=${TAPNET_UPLINK_MTU:-1500}
UPLINK_ARGS=${TAPNET_UPLINK_ARGS---uplink bnup1 --uplink-ip 10.97.0.2/24 --uplink-gw 10.97.0.1}
be_tapnet_uplink_setup() {
	ip link add bnup0 mtu "$UPLINK_MTU" type veth peer name bnup1 mtu "$UPLINK_MTU" || return 1
	ip addr add 10.97.0.1/24 dev bnup0
	sysctl -qw net.ipv6.conf.bnup1.disable_ipv6=1 net.ipv4.conf.bnup1.arp_ignore=8 net.ipv4.conf.bnup1.forwarding=0
	iptables -t raw -I PREROUTING -i bnup1 -j DROP
	# The host's side keeps its offloads (TSO, partial checksums), as a real uplink's
	# peer would: tapnet's socket reads them described by a virtio_net_hdr.  With
	# TAPNET_OFFLOAD=0 (no header) tapnet needs whole frames: offloads off.
	[ "${TAPNET_OFFLOAD:-1}" = 0 ] && ethtool -K bnup0 tx off tso off gso off >/dev/null 2>&1
	ip link set bnup0 up
	ip link set bnup1 up
	UPLINK_SAVED_FWD=$(cat /proc/sys/net/ipv4/ip_forward)
	echo 1 >/proc/sys/net/ipv4/ip_forward
	iptables -I FORWARD -i bnup0 -o bnx0 -j ACCEPT
	iptables -I FORWARD -i bnx0 -o bnup0 -j ACCEPT
	ip -n $EXT_NS route add 10.97.0.0/24 via 10.98.0.1
	# The peer's published port is the uplink's DNAT (client address kept): the host
	# forwards 10.98.0.1:15202 to tapnet's uplink address, as a router in front would.
	iptables -t nat -I PREROUTING -i bnx0 -d 10.98.0.1 -p tcp --dport 15202 -j DNAT --to-destination 10.97.0.2:15202
	# shellcheck disable=SC2086
	PUBLISH_PEER=10.97.0.2:15202:5202 tapnet_daemon_start "$UPLINK_MTU" $UPLINK_ARGS || return 1
	HOST_GW=10.97.0.1
	HOST_BIND=10.97.0.1
	BE_NOTE="$TAPNET_VER; tapnet daemon $UPLINK_ARGS (veth bnup0 10.97.0.1 <-> bnup1), network 10.96.0.0/24 MTU $UPLINK_MTU, connect --netns (TAP), connect -p"
}
be_tapnet_uplink_teardown() {
	tapnet_daemon_stop
	ip -n $EXT_NS route del 10.97.0.0/24 via 10.98.0.1 2>/dev/null
	iptables -D FORWARD -i bnup0 -o bnx0 -j ACCEPT 2>/dev/null
	iptables -D FORWARD -i bnx0 -o bnup0 -j ACCEPT 2>/dev/null
	iptables -t raw -D PREROUTING -i bnup1 -j DROP 2>/dev/null
	iptables -t nat -D PREROUTING -i bnx0 -d 10.98.0.1 -p tcp --dport 15202 -j DNAT --to-destination 10.97.0.2:15202 2>/dev/null
	ip link del bnup0 2>/dev/null
	[ -n "${UPLINK_SAVED_FWD:-}" ] && echo "$UPLINK_SAVED_FWD" >/proc/sys/net/ipv4/ip_forward
	UPLINK_SAVED_FWD=""
}
available() { # BACKEND: 0, or 1 with the reason on stdout
	case $1 in
	tapnet-uplink) [ -n "${TAPNET_UPLINK_FORCE:-}" ] || tapnet_has_uplink || { echo "\`tapnet daemon --help\` has no --uplink: the packet uplink is not in this build ($TAPNET_VER)"; return 1; } ;;
	esac
	return 0
}

# ================================================================ added tests
# measure_crr TEST CMD... : like anchors.sh's measure(), for tcp_crr's output
measure_crr() {
	local test=$1; shift
	local f="$OUT/raw/${BE_LABEL}_${test}_1.out" a b rc
	mkdir -p "$OUT/raw"
	a=$(cpu_snap)
	timeout $((RR_SECS + 30)) "$@" >"$f" 2>>"$f.err"
	rc=$?
	b=$(cpu_snap)
	python3 - "$BE_LABEL" "$test" "$ROUND" "$f" "$rc" "$(nproc)" $a $b >>"$RES" <<'PY'
import re, sys
be, test, rep, f, rc, ncpu = sys.argv[1:7]
b0, t0, f0, b1, t1, f1 = map(float, sys.argv[7:13])
dt = (t1 - t0) or 1
val, unit, extra = "NA", "conn/s", "rc=" + rc
try:
    m = dict(re.findall(r"(\w+)=([\d.]+)", open(f).read()))
    val = m["crr_per_s"]
    extra = "p50=%sus p99=%sus errors=%s" % (m["p50_us"], m["p99_us"], m["errors"])
except Exception as e:
    extra += " parse_error=%s" % type(e).__name__
print("\t".join([be, test, rep, val, unit, "%.2f" % ((b1 - b0) / dt * int(ncpu)),
                 "%.2f" % ((f1 - f0) / dt * int(ncpu)), extra]))
PY
	tail -1 "$RES" | tee -a "$LOG" >&2
}
run_extra_tests() { # needs the servers of run_tests (tcp_rr on host :5203 and ctr :5204)
	# client-side TIME_WAIT: the container may reuse its ports (the root netns, whose
	# loopback clients the ingress test uses, is left alone: tcp_tw_reuse=2 by default)
	ip netns exec $CTR_NS sysctl -qw net.ipv4.tcp_tw_reuse=1 "net.ipv4.ip_local_port_range=10000 65000"
	want crr_egress_host && measure_crr crr_egress_host "${IN_CTR[@]}" $RR_PIN "$CRR_BIN" "$HOST_GW" 5203 "$RR_SECS"
	want crr_ingress_lo && measure_crr crr_ingress_lo $RR_PIN "$CRR_BIN" 127.0.0.1 15204 "$RR_SECS"
	return 0
}
# mem_rows idle|after: resident memory of the forwarder process, into mem.tsv
mem_rows() {
	want mem || return 0
	[ -n "$FWD_PID" ] && [ -r "/proc/$FWD_PID/status" ] || return 0
	awk -v be="$BE_LABEL" -v phase="$1" -v rep="$ROUND" -v pid="$FWD_PID" '
		/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} /^Threads:/ {t = $2}
		END {
			x = sprintf("pid=%s threads=%s", pid, t)
			if (phase == "idle") printf "%s\tmem_rss_idle\t%s\t%.1f\tMiB\t0\t0\t%s VmHWM=%.1fMiB\n", be, rep, r / 1024, x, h / 1024
			else {
				printf "%s\tmem_rss_after\t%s\t%.1f\tMiB\t0\t0\t%s\n", be, rep, r / 1024, x
				printf "%s\tmem_hwm\t%s\t%.1f\tMiB\t0\t0\t%s\n", be, rep, h / 1024, x
			}
		}' "/proc/$FWD_PID/status" | tee -a "$BASE/mem.tsv" "$LOG" >&2
}

# ================================================================ main
cleanup_e2e() {
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	kill_bg
	[ -n "$CUR" ] && "be_${CUR}_teardown" 2>/dev/null
	OUT=$BASE
	ext_teardown
	guard_report
	guard_teardown
	rm -f /run/bench-anchors.lock
}
CLEANED=0
CUR=""
trap cleanup_e2e EXIT
trap 'exit 130' INT TERM
printf 'backend\ttest\trep\tvalue\tunit\tsys_cores\tfwd_cores\textra\n' >"$BASE/mem.tsv"

{
	echo "date: $(date -Is)"
	echo "kernel: $(uname -r)"
	echo "cpus: $(nproc) x$(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo)"
	echo "memory: $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "virtualization: $(systemd-detect-virt 2>/dev/null || echo unknown)"
	echo "tapnet: $TAPNET_VER ($TAPNET)"
	echo "iperf3: $(iperf3 --version | head -1)"
	echo "slirp4netns: $(slirp4netns --version | tr '\n' ' ')"
	echo "pasta: $(pasta_version)"
	echo "iptables: $(iptables --version)"
	echo "rr tool: $RR_TOOL; crr tool: benches/tcp_crr.c (cc -O2)"
	echo "secs=$SECS rr_secs=$RR_SECS rounds=$ROUNDS tests=${TESTS:-all} rr_pin=${RR_PIN:-none}"
	echo "backends: ${BACKENDS[*]}"
} >"$BASE/env.txt"
cat "$BASE/env.txt" >>"$LOG"

guard_setup
ext_setup
for ROUND in $(seq 1 "$ROUNDS"); do
	OUT=$BASE/round$ROUND
	mkdir -p "$OUT"
	for BE_LABEL in "${BACKENDS[@]}"; do
		if ! why=$(available "$BE_LABEL"); then
			[ "$ROUND" = 1 ] && { log "$BE_LABEL: not available: $why"; printf '%s\tnot available: %s\n' "$BE_LABEL" "$why" >>"$BASE/skipped.txt"; }
			continue
		fi
		fn=${BE_LABEL//-/_}
		ip netns del $CTR_NS 2>/dev/null
		log "=== round $ROUND/$ROUNDS $BE_LABEL: setup"
		FWD_PID="" HOST_GW="" HOST_BIND="" BE_NOTE=""
		CUR=$fn
		if ! "be_${fn}_setup"; then
			log "setup of $BE_LABEL failed"
			printf '%s\tsetup failed in round %s\n' "$BE_LABEL" "$ROUND" >>"$BASE/skipped.txt"
			kill_bg
			"be_${fn}_teardown"
			CUR=""
			continue
		fi
		log "$BE_LABEL: HOST_GW=$HOST_GW HOST_BIND=$HOST_BIND FWD_PID=${FWD_PID:-none} ($BE_NOTE)"
		[ "$ROUND" = 1 ] && printf '%s\t%s\n' "$BE_LABEL" "$BE_NOTE" >>"$BASE/backends.txt"
		sleep 1
		mem_rows idle
		n0=$(wc -l <"$RES")
		run_tests
		run_extra_tests
		# run_tests numbers its repetitions 1..REPS (here 1): record the round instead
		awk -F'\t' -v OFS='\t' -v n0="$n0" -v r="$ROUND" 'NR > n0 {$3 = r} 1' "$RES" >"$RES.tmp" && mv "$RES.tmp" "$RES"
		mem_rows after
		kill_bg
		log "=== $BE_LABEL: teardown"
		"be_${fn}_teardown"
		CUR=""
	done
done
cleanup_e2e
python3 "$SHARED/summarize.py" "$BASE" >"$BASE/summary.md"
python3 "$HERE/e2e-table.py" "$BASE" | tee "$BASE/table.md"
log "results in $BASE: table.md (the table), summary.md (min..max, CPU, notes), results.tsv, mem.tsv, raw/"
