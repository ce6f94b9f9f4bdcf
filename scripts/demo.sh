#!/usr/bin/env bash
# tapnet's main job on its embedded defaults, as a short demo (needs root, for the
# demo's namespaces): builds tapnet, starts the daemon, creates a network, attaches two
# "containers" (network namespaces; one by TAP, one by veth) and pings across. Every
# namespace, device and process it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it creates network namespaces)" >&2; exit 1; }
command -v ping >/dev/null || { apt-get update -qq && apt-get install -y -qq iputils-ping iproute2 >/dev/null; }

cargo build --release --quiet
tapnet=$PWD/target/release/tapnet
work=$(mktemp -d)
control=$work/control.sock
ns1=tapnet-demo-a-$$ ns2=tapnet-demo-b-$$
daemon_pid=""

cleanup() {
	[ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	ip netns del "$ns1" 2>/dev/null || true
	ip netns del "$ns2" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

"$tapnet" daemon --control "$control" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$control" ] && break; sleep 0.05; done
t() { echo "+ tapnet $*" >&2; "$tapnet" --control "$control" "$@"; }

ip netns add "$ns1"
ip netns add "$ns2"
t network create demo --subnet 10.88.0.0/24
t connect demo --netns /run/netns/"$ns1" --name alpha --kind tap
t connect demo --netns /run/netns/"$ns2" --name beta --kind veth
t network ls
echo "+ ping from alpha to beta (10.88.0.3)" >&2
ip netns exec "$ns1" ping -c 3 -i 0.2 10.88.0.3
t macs demo
t stats
echo "demo: OK (daemon log: $(grep -c . "$work/daemon.log") lines; first: $(head -n1 "$work/daemon.log" | sed 's/\x1b\[[0-9;]*m//g'))"
