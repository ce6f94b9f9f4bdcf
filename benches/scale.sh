#!/usr/bin/env bash
# benches/scale.sh - aggregate TCP egress with 1 and 2 rootless tapnet datapaths.
#
# Usage (as root): sudo benches/scale.sh [-t SECS] [-r ROUNDS] [-m MTU]
#
# Rootless tapnet runs one datapath pipeline per container (one process each, as
# slirp4netns and pasta do), so the cores of the machine are used by running
# containers side by side.  This measures that: N = 1 and N = 2 containers, each
# with its own `tapnet slirp4netns --configure --mtu=MTU`, each running one iperf3
# stream to its own iperf3 server on the host's loopback (through 10.0.2.2) at the
# same time; the aggregate Gbit/s per N is printed (median over rounds), with the
# ratio N=2 / N=1.  Traffic stays on loopback and in the namespaces created here;
# everything is removed on exit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SECS=5 ROUNDS=3 MTU=65520
while getopts "t:r:m:h" o; do
	case $o in
	t) SECS=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	m) MTU=$OPTARG ;;
	*) sed -n '2,14p' "$0"; exit 2 ;;
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

declare -a ONE TWO
for r in $(seq 1 "$ROUNDS"); do
	ONE+=("$(run_n 1)")
	TWO+=("$(run_n 2)")
	echo "round $r: 1 datapath ${ONE[-1]} Gbit/s, 2 datapaths ${TWO[-1]} Gbit/s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(median "${ONE[@]}") m2=$(median "${TWO[@]}")
echo "| datapaths (containers) | aggregate TCP container → host, MTU $MTU, Gbit/s |"
echo "|---:|---:|"
echo "| 1 | $m1 |"
echo "| 2 | $m2 ($(python3 -c "print(f'{$m2/$m1:.2f}')")×) |"
