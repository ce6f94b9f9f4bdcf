#!/usr/bin/env bash
# tapnet's main job on its embedded defaults: `tapnet run` gives a command its own
# user and network namespace with networking, like slirp4netns or pasta, without
# root. The demo builds tapnet, starts a small web server on this machine's loopback
# (the only "internet" it talks to), and runs, inside the sandbox, a command that
# pings the gateway, fetches a page from the host through 10.0.2.2, and serves a port
# published as 127.0.0.1:18080, which the demo then fetches from outside. Run it as a
# normal user (/dev/net/tun must be usable by users, as on common distributions) or
# as root; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in python3 ping socat ip; do
	command -v "$tool" >/dev/null || { echo "demo.sh: needs $tool (apt-get install python3 iputils-ping socat iproute2)" >&2; exit 1; }
done

cargo build --release --quiet
tapnet=$PWD/target/release/tapnet
work=$(mktemp -d)
server_pid="" run_pid=""
cleanup() {
	[ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

echo "hello from the host's loopback" >"$work/index.html"
python3 -m http.server 18081 --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
server_pid=$!
sleep 0.5

echo "+ tapnet run -p 127.0.0.1:18080:80 -- sh -c '...'" >&2
"$tapnet" run -p 127.0.0.1:18080:80 -- sh -c '
	ip -br addr show tap0
	ip route show default
	ping -c 2 -i 0.2 10.0.2.2 | tail -2
	echo "host page via 10.0.2.2: $(socat -t 2 - TCP:10.0.2.2:18081 <<REQ | tail -n 1
GET /index.html HTTP/1.0

REQ
)"
	socat TCP-LISTEN:80,reuseaddr "SYSTEM:echo hello from inside - you are \$SOCAT_PEERADDR" &
	sleep 3
' &
run_pid=$!
for _ in $(seq 50); do
	answer=$(socat -t 1 - TCP:127.0.0.1:18080 </dev/null 2>/dev/null) && [ -n "$answer" ] && break
	sleep 0.1
done
echo "published port 127.0.0.1:18080 answers: ${answer:-nothing}"
wait "$run_pid"
run_pid=""
[ -n "${answer:-}" ] || { echo "demo: FAILED (the published port did not answer)" >&2; exit 1; }
echo "demo: OK"
