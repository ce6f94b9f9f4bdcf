#!/usr/bin/env bash
# tapnet as a back end of ../shared/bench/anchors.sh (its `custom` template): runs
# `tapnet slirp4netns` on the bench's container namespace, then publishes the three
# bench ports through the slirp4netns JSON API, as podman and rootlesskit would.
#
#   CUSTOM_NAME=tapnet65520 CUSTOM_GW=10.0.2.2 CUSTOM_PIDFILE=/tmp/tapnet-bench.pid \
#   CUSTOM_CMD="$PWD/benches/tapnet-slirp4netns.sh {NETNS_PATH} 65520" \
#     ../shared/bench/anchors.sh custom slirp65520 pasta
#
# Arguments: the namespace path and the MTU. Writes tapnet's PID to $CUSTOM_PIDFILE
# (for the harness's CPU accounting) and stays in the foreground until killed.
set -euo pipefail
netns=$1 mtu=${2:-65520}
here=$(cd "$(dirname "$0")/.." && pwd)
tapnet=${TAPNET:-$here/target/release/tapnet}
api=$(mktemp -u /tmp/tapnet-bench-api.XXXXXX)
"$tapnet" slirp4netns --configure --mtu="$mtu" --disable-dns --api-socket "$api" \
	--netns-type=path "$netns" tap0 &
pid=$!
[ -n "${CUSTOM_PIDFILE:-}" ] && echo "$pid" >"$CUSTOM_PIDFILE"
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$api"' EXIT TERM INT
for _ in $(seq 100); do [ -S "$api" ] && break; sleep 0.05; done
add() {
	printf '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"%s","host_port":%s,"guest_port":%s}}' "$1" "$2" "$3" |
		socat -t 2 - UNIX-CONNECT:"$api" >&2
}
add 127.0.0.1 15201 5202
add 10.98.0.1 15202 5202
add 127.0.0.1 15204 5204
wait $pid
