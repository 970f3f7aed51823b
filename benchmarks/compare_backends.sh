#!/usr/bin/env bash
# benchmarks/compare_backends.sh — the runtime benchmarks on Zokio's io_uring
# backend, on its epoll backend (ZK_BACKEND=epoll) and on Tokio, interleaved in
# one run, and a markdown table of the medians. Run benchmarks/run once first:
# it builds zk-rt-bench and tokio-rt-bench in build-bench/.
#   benchmarks/compare_backends.sh [ROUNDS=3] [WORKERS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
workers=${2:-2}
zk=build-bench/benchmarks/zk-rt-bench
tk=build-bench/tokio-target/release/tokio-rt-bench
[ -x "$zk" ] && [ -x "$tk" ] || { echo "run benchmarks/run first (builds $zk and $tk)" >&2; exit 2; }
B=spawn_many_local,spawn_many_remote,chained_spawn,ping_pong,yield_many,timer_churn
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
	"$zk" --bench $B --iters 10 --workers "$workers" 2>/dev/null | sed 's/runtime=zokio/runtime=zokio-uring/' >>"$out"
	ZK_BACKEND=epoll "$zk" --bench $B --iters 10 --workers "$workers" 2>/dev/null |
		sed 's/runtime=zokio/runtime=zokio-epoll/' >>"$out"
	"$tk" --bench $B --iters 10 --workers "$workers" 2>/dev/null >>"$out"
done
python3 - "$out" "$workers" <<'PY'
import collections, re, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.search(r'bench=(\S+) runtime=(\S+) .*median_ns=(\d+)', line)
    if m:
        d[(m.group(1), m.group(2))].append(int(m.group(3)))
fmt = lambda x: f"{x/1e6:.2f} ms" if x > 1e6 else f"{x/1e3:.1f} µs"
print(f"| benchmark (W={sys.argv[2]}) | Zokio io_uring | Zokio epoll | Tokio | io_uring/Tokio | epoll/Tokio |")
print("|---|---|---|---|---|---|")
for b in sorted({k[0] for k in d}):
    u, e, t = (statistics.median(d[(b, r)]) for r in ("zokio-uring", "zokio-epoll", "tokio"))
    print(f"| {b} | {fmt(u)} | {fmt(e)} | {fmt(t)} | {t/u:.2f}× | {t/e:.2f}× |")
PY
