#!/usr/bin/env bash
# benches/scale.sh - TCP egress with 1 and 2 rootless tapnet pipelines.
#
# Usage (as root): sudo benches/scale.sh [-t SECS] [-r ROUNDS] [-m MTU]
#
# Two ways to use the cores, each measured with N = 1 and N = 2:
# - pipelines in one process: one container whose tap0 has N queues
#   (TAPNET_PIPELINES=N: a multi-queue TAP, one datapath thread per queue), running
#   `iperf3 -P 4` (four streams, which the container's kernel spreads over the
#   queues by a flow hash) to a server on the host's loopback (through 10.0.2.2);
# - datapaths side by side: N containers, each with its own tapnet process, each
#   running one iperf3 stream to its own server at the same time.
# Each container is `tapnet slirp4netns --configure --mtu=MTU`.  The aggregate
# Gbit/s per N is printed (median over rounds), with the ratio N=2 / N=1.  Traffic
# stays on loopback and in the namespaces created here; everything is removed on exit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SECS=5 ROUNDS=3 MTU=65520
while getopts "t:r:m:h" o; do
	case $o in
	t) SECS=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	m) MTU=$OPTARG ;;
	*) sed -n '2,16p' "$0"; exit 2 ;;
	esac
done
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }
TAPNET=${TAPNET:-}
if [ -z "$TAPNET" ]; then
	(cd "$REPO" && cargo build --release -q) || exit 1
	TAPNET=$REPO/target/release/tapnet
fi
PIDS=() NSS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
}
trap cleanup EXIT INT TERM

for i in 1 2; do
	iperf3 -s -B 127.0.0.1 -p $((5310 + i)) >/dev/null 2>&1 &
	PIDS+=($!)
done
sleep 0.5

run_n() { # N: prints the aggregate Gbit/s of N simultaneous streams
	local n=$1 i outs=() ns
	local started=()
	for i in $(seq 1 "$n"); do
		ns=tnscale$$-$i
		ip netns add "$ns"; NSS+=("$ns")
		"$TAPNET" slirp4netns --configure --mtu="$MTU" --disable-dns --netns-type=path "/run/netns/$ns" tap0 >/dev/null 2>&1 &
		started+=($!)
	done
	sleep 1
	for i in $(seq 1 "$n"); do
		ip netns exec "tnscale$$-$i" iperf3 -J -c 10.0.2.2 -p $((5310 + i)) -t "$SECS" -O 1 >"/tmp/tnscale$$-$i.json" 2>/dev/null &
		outs+=($!)
	done
	wait "${outs[@]}"
	for p in "${started[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	for i in $(seq 1 "$n"); do ip netns del "tnscale$$-$i"; done
	NSS=()
	python3 - "$n" <<PY
import json, sys
n = int(sys.argv[1]); total = 0.0
for i in range(1, n + 1):
    with open(f"/tmp/tnscale$$-{i}.json") as f:
        total += json.load(f)["end"]["sum_received"]["bits_per_second"] / 1e9
print(f"{total:.2f}")
PY
	rm -f /tmp/tnscale$$-*.json
}

run_pipelines() { # N: prints the Gbit/s of 4 streams from one container with N pipelines
	local n=$1 ns=tnscale$$-p pid
	ip netns add "$ns"; NSS+=("$ns")
	TAPNET_PIPELINES=$n "$TAPNET" slirp4netns --configure --mtu="$MTU" --disable-dns --netns-type=path "/run/netns/$ns" tap0 >/dev/null 2>&1 &
	pid=$!
	sleep 1
	ip netns exec "$ns" iperf3 -J -c 10.0.2.2 -p 5311 -P 4 -t "$SECS" -O 1 >"/tmp/tnscale$$-p.json" 2>/dev/null
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	ip netns del "$ns"
	NSS=()
	python3 -c "import json; print(f\"{json.load(open('/tmp/tnscale$$-p.json'))['end']['sum_received']['bits_per_second'] / 1e9:.2f}\")"
	rm -f /tmp/tnscale$$-p.json
}

declare -a ONE TWO P1 P2
for r in $(seq 1 "$ROUNDS"); do
	P1+=("$(run_pipelines 1)")
	P2+=("$(run_pipelines 2)")
	ONE+=("$(run_n 1)")
	TWO+=("$(run_n 2)")
	echo "round $r: one process, 1 pipeline ${P1[-1]}, 2 pipelines ${P2[-1]}; 1 datapath ${ONE[-1]}, 2 datapaths ${TWO[-1]} Gbit/s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(median "${ONE[@]}") m2=$(median "${TWO[@]}")
p1=$(median "${P1[@]}") p2=$(median "${P2[@]}")
ratio() { python3 -c "print(f'{$2/$1:.2f}')"; }
echo "| N | one container, N pipelines (TAP queues), 4 streams, Gbit/s | N containers side by side, 1 stream each, Gbit/s |"
echo "|---:|---:|---:|"
echo "| 1 | $p1 | $m1 |"
echo "| 2 | $p2 ($(ratio "$p1" "$p2")×) | $m2 ($(ratio "$m1" "$m2")×) |"
echo "(MTU $MTU, TCP container → host service, medians of $ROUNDS rounds of $SECS s)"
