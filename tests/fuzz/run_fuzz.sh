#!/bin/sh
# tests/fuzz/run_fuzz.sh — the fuzz test: replays every saved crash file and
# the seed corpus, then fuzzes for a bounded time.
#
#   run_fuzz.sh FUZZER SRCDIR SECONDS ARTIFACT_DIR
#
# SRCDIR holds corpus/ (seeds, read only) and crashes/ (inputs that once
# failed: replayed on every run). New corpus entries go to a temp dir, so
# the source tree is never written; a crash is saved in ARTIFACT_DIR, and
# printed, to be added to crashes/.
set -eu
fuzzer=$1
src=$2
secs=$3
art=$4
tmp=$(mktemp -d /tmp/zk-fuzz-XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "== replaying $src/crashes and $src/corpus"
"$fuzzer" -runs=0 "$src/crashes" "$src/corpus"
echo "== fuzzing for ${secs}s"
mkdir -p "$tmp/corpus" "$art"
if ! "$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
	-artifact_prefix="$art/" -print_final_stats=1 "$tmp/corpus" "$src/corpus"; then
	echo "== the fuzzer failed; inputs saved in $art (copy them to $src/crashes):"
	for f in "$art"/crash-* "$art"/timeout-* "$art"/oom-*; do
		[ -f "$f" ] && { echo "$f"; od -c "$f" | head -20; }
	done
	exit 1
fi
