#!/usr/bin/env bash
# A coverage-guided fuzz campaign on one target, then a minimised corpus.
#
#   fuzz/campaign.sh TARGET SECONDS        # e.g. fuzz/campaign.sh router_frames 1800
#   fuzz/campaign.sh all SECONDS           # every target in turn, SECONDS each
#   fuzz/campaign.sh list                  # the targets
#
# It runs `cargo fuzz run` (libFuzzer, with the address sanitizer unless
# SANITIZER=none) on the stable toolchain through RUSTC_BOOTSTRAP=1, starting from the
# committed corpus `fuzz/corpus/TARGET` and growing a working corpus in
# `fuzz/work/TARGET` (not committed). When the time is up it merges both into a
# minimal set with libFuzzer's `-merge=1` and writes that back to `fuzz/corpus/TARGET`:
# files a person named (hand-made seeds, `crash_*` regression inputs: any name that is
# not a libFuzzer hash or `found_*`/`found-*`) are always kept; every other file is
# kept only if it adds coverage. Crashes, leaks, timeouts
# and out-of-memory inputs land in `fuzz/artifacts/TARGET/`; the script lists them and
# exits 1 if there are any. Fix the bug, then copy the input into the corpus as
# `crash_<what>.bin`: the corpus replay tests (`cargo test`) keep it as a regression.
#
# The summary line gives the wall and CPU seconds of the fuzzing processes (all jobs),
# executions, edge coverage (`cov`), features (`ft`) and the corpus size before and
# after minimisation. Environment: JOBS=N runs N fuzzing
# processes at once (default 1), SANITIZER=address|none, FUZZ_ARGS adds libFuzzer
# options (e.g. "-max_len=4096"), NICE=N runs at that niceness (default 10).
#
# The targets open no socket and send nothing, but for engine_packets: its engine opens
# real host sockets, on a thread moved into a new, empty network namespace of its own
# (needs root; without it every input does nothing), from which nothing can leave.
# CI does not run campaigns; it replays the committed corpora.
set -euo pipefail
cd "$(dirname "$0")"

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^tapnet-fuzz$'; }

usage() {
	echo "usage: fuzz/campaign.sh TARGET|all SECONDS | list" >&2
	exit 2
}

[ $# -ge 1 ] || usage
if [ "$1" = list ]; then
	targets
	exit 0
fi
[ $# -eq 2 ] || usage
TARGET=$1
SECONDS_EACH=$2
case $SECONDS_EACH in '' | *[!0-9]*) usage ;; esac

if ! command -v cargo-fuzz >/dev/null 2>&1; then
	echo "campaign: installing cargo-fuzz (cargo install cargo-fuzz)" >&2
	cargo install cargo-fuzz >&2
fi
export RUSTC_BOOTSTRAP=1
JOBS=${JOBS:-1}
SANITIZER=${SANITIZER:-address}
NICE=${NICE:-10}

# Whether a corpus file's name is a fuzzer's (a libFuzzer SHA-1, or found_*/found-*)
# rather than a person's.
generated() {
	case $1 in
	found_* | found-*) return 0 ;;
	esac
	[[ $1 =~ ^[0-9a-f]{40}$ ]]
}

campaign() {
	local t=$1 corpus=corpus/$1 work=work/$1 art=artifacts/$1 log=work/$1.log
	mkdir -p "$corpus" "$work" "$art"
	# Artifacts of an earlier campaign are that campaign's: set them aside.
	if [ -n "$(ls -A "$art")" ]; then
		mkdir -p "$work.artifacts"
		mv "$art"/* "$work.artifacts/"
	fi
	cargo fuzz build -s "$SANITIZER" "$t" >&2
	local bin
	bin=$(find target -path "*/release/$t" -type f -perm -u+x | head -n 1)
	[ -n "$bin" ] || { echo "campaign: no binary for $t" >&2; return 1; }
	local before
	before=$(find "$corpus" -type f | wc -l)
	echo "campaign: $t for ${SECONDS_EACH}s, $JOBS job(s), sanitizer $SANITIZER, corpus $before files" >&2
	local start=$SECONDS parallel=""
	[ "$JOBS" -gt 1 ] && parallel="-jobs=$JOBS -workers=$JOBS"
	# -timeout: an input that takes 10 s is a hang; -rss_limit_mb: a leak or blow-up.
	# shellcheck disable=SC2086
	local cpu=work/$t.cpu TIMEFORMAT='%U %S'
	{ time nice -n "$NICE" "$bin" "$work" "$corpus" -artifact_prefix="$art/" \
		-max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		$parallel ${FUZZ_ARGS:-} >"$log" 2>&1 || true; } 2>"$cpu"
	local cpu_s
	cpu_s=$(awk '{printf "%d", $1 + $2}' "$cpu")
	local elapsed=$((SECONDS - start))
	# With -jobs, each job writes fuzz-N.log; take them all.
	local logs=("$log")
	for f in fuzz-*.log; do [ -e "$f" ] && logs+=("$f"); done
	local execs cov ft
	execs=$(grep -h '^stat::number_of_executed_units' "${logs[@]}" | awk '{s += $2} END {print s + 0}')
	cov=$(grep -ho 'cov: [0-9]*' "${logs[@]}" | awk '{if ($2 > m) m = $2} END {print m + 0}')
	ft=$(grep -ho 'ft: [0-9]*' "${logs[@]}" | awk '{if ($2 > m) m = $2} END {print m + 0}')
	[ ${#logs[@]} -gt 1 ] && cat "${logs[@]:1}" >>"$log" && rm -f fuzz-*.log

	# Minimise: the kept seeds and regressions first (always kept), then whatever of the
	# old corpus and the working corpus adds coverage.
	local merged rest
	merged=$(mktemp -d) rest=$(mktemp -d)
	local f
	for f in "$corpus"/*; do
		[ -f "$f" ] || continue
		if generated "$(basename "$f")"; then cp "$f" "$rest/"; else cp "$f" "$merged/"; fi
	done
	nice -n "$NICE" "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 "$merged" "$rest" "$work" \
		>>"$log" 2>&1
	for f in "$corpus"/*; do
		[ -f "$f" ] && generated "$(basename "$f")" && rm -f "$f"
	done
	for f in "$merged"/*; do
		[ -f "$f" ] && generated "$(basename "$f")" && cp "$f" "$corpus/"
	done
	rm -rf "$merged" "$rest"
	local after found
	after=$(find "$corpus" -type f | wc -l)
	found=$(find "$art" -type f | wc -l)
	printf 'campaign: %s: %d s, %d CPU-s, %d executions (%d/s), cov %d, ft %d, corpus %d -> %d files, %d artifact(s)\n' \
		"$t" "$elapsed" "$cpu_s" "$execs" $((execs / (elapsed > 0 ? elapsed : 1))) "$cov" "$ft" "$before" "$after" "$found"
	if [ "$found" -gt 0 ]; then
		find "$art" -type f | sed 's/^/campaign:   /'
		return 1
	fi
}

status=0
if [ "$TARGET" = all ]; then
	for t in $(targets); do campaign "$t" || status=1; done
else
	targets | grep -qx "$TARGET" || { echo "campaign: no target $TARGET (fuzz/campaign.sh list)" >&2; exit 2; }
	campaign "$TARGET" || status=1
fi
exit $status
