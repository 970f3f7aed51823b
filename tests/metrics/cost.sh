#!/usr/bin/env bash
# tests/metrics/cost.sh — what metrics cost: the runtime benchmarks
# (zk-rt-bench) of a build with metrics against one built with
# -Dmetrics=false, run interleaved in one session on the same machine.
#
#   [ITERS=N] tests/metrics/cost.sh ON_BUILD_DIR OFF_BUILD_DIR [ROUNDS] [WORKERS] [BENCHES]
#
# Prints, per benchmark, the median over rounds of off_ns/on_ns and the ratio
# of the two sides' fastest rounds (min_off/min_on: on a loaded machine noise
# only ever slows a round down, so the minimum is the steadier figure). 1.00:
# no cost; 0.97: metrics make it 3% slower. Not a test: timings are
# reported, never asserted.
set -euo pipefail
on=${1:?usage: cost.sh ON_BUILD_DIR OFF_BUILD_DIR [ROUNDS] [WORKERS] [BENCHES]}
off=${2:?usage: cost.sh ON_BUILD_DIR OFF_BUILD_DIR [ROUNDS] [WORKERS] [BENCHES]}
rounds=${3:-5}
workers=${4:-1}
benches=${5:-spawn_many_local,yield_many,ping_pong,chained_spawn}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
	for side in on off; do
		dir=$on
		[ "$side" = off ] && dir=$off
		"$dir/benchmarks/zk-rt-bench" --workers "$workers" --iters "${ITERS:-10}" --bench "$benches" 2>/dev/null |
			sed "s/^/side=$side round=$r /" >>"$out"
	done
done
python3 - "$out" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if "median_ns" not in kv:
        continue
    rows.setdefault((kv["bench"], kv["round"]), {})[kv["side"]] = float(kv["median_ns"])
by = {}
for (bench, rnd), v in rows.items():
    if "on" in v and "off" in v:
        by.setdefault(bench, []).append((v["off"] / v["on"], v["on"], v["off"]))
print("%-20s %12s %12s %10s %12s %s" % ("bench", "on_ns", "off_ns", "off/on", "min_off/on",
                                        "per-round off/on"))
for bench, xs in sorted(by.items()):
    ratios = [x[0] for x in xs]
    print("%-20s %12.0f %12.0f %10.3f %12.3f %s" % (
        bench, statistics.median(x[1] for x in xs), statistics.median(x[2] for x in xs),
        statistics.median(ratios), min(x[2] for x in xs) / min(x[1] for x in xs),
        " ".join("%.3f" % r for r in ratios)))
EOF
