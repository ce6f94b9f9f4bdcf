#!/usr/bin/env bash
# Runs tapnet's whole test suite: unit, property and fuzz-corpus tests of the sans-IO
# crates, and (as root) the integration tests in real network namespaces.
#
# As root it first installs the tools the integration tests drive inside the
# namespaces (iproute2, ping, socat, tcpdump, util-linux, dnsmasq, dig, busybox, ethtool, python3) when they are
# missing, and makes /dev/net/tun usable by users (mode 0666, as common distributions
# ship it) so that the unprivileged (rootless) tests can run. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
	missing=()
	for pair in ip:iproute2 ping:iputils-ping socat:socat tcpdump:tcpdump nsenter:util-linux setpriv:util-linux unshare:util-linux dnsmasq:dnsmasq-base dig:dnsutils busybox:busybox ethtool:ethtool python3:python3; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "test.sh: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	if [ -e /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
		echo "test.sh: chmod 0666 /dev/net/tun (usable by users, as on common distributions)"
		chmod 0666 /dev/net/tun
	fi
else
	echo "test.sh: ******** not root: the integration tests will be SKIPPED (run as root to run them) ********"
fi

cargo test --workspace "$@"
