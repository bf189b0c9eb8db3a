#!/usr/bin/env bash
# What a miss costs the proxy in CPU, two builds taking turns: each round
# starts a fresh server and proxy of each build (default flags, --log-level
# warn; the server --size 100000, the proxy its default capacity), warms
# them for 1 s, then reads the proxy's CPU time (utime + stime in
# /proc/PID/stat, 10 ms ticks) around a run of the generator of build A
# (the same generator for both), GET of one index, every one a miss.
# The proxy's CPU per request is a steadier figure than its throughput on
# a shared machine: it does not depend on what else got the cores.
# Usage: benches/cpu.sh BIN_A BIN_B [ROUNDS] [SECONDS] [KEYS]
# Prints one line per run (round, build, req/s, proxy µs a request, proxy
# share of a core, proxy user-space µs a request), then the medians.
set -euo pipefail
A=$1; B=$2; R=${3:-5}; D=${4:-2}; KEYS=${5:-1000}
# shellcheck source=benches/nodes-lib.sh
. "$(dirname "$0")/nodes-lib.sh"
ticks() { awk '{print $14 + $15, $14}' "/proc/$1/stat"; }
load=(--keys "$KEYS" --connections 50 --pipeline 16 --warmup 0)
for r in $(seq 1 "$R"); do
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  for side in $order; do
    bin=$A; [ "$side" = B ] && bin=$B
    start "$bin" "s$side$r" server --size 100000; S=$addr
    start "$bin" "p$side$r" proxy --upstream "$S"; P=$addr
    proxy=${pids[-1]}
    "$A" bench --connect "$P" "${load[@]}" --duration 1 -q >/dev/null
    read -r all0 user0 < <(ticks "$proxy")
    json=$("$A" bench --connect "$P" "${load[@]}" --duration "$D" --json 2>/dev/null | tail -1)
    read -r all1 user1 < <(ticks "$proxy")
    n=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
    awk -v r="$r" -v s="$side" -v n="$n" -v a=$((all1 - all0)) -v u=$((user1 - user0)) -v d="$D" \
      'BEGIN { printf "%s %s %.0f %.3f %.2f %.3f\n", r, s, n / d, a * 10000 / n, a / d / 100, u * 10000 / n }'
    kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=()
  done
done | tee "$tmp/runs"
python3 - "$tmp/runs" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r, side, rate, us, core, user = line.split()
    runs[side].append((float(rate), float(us), float(user)))
for side in sorted(runs):
    v = runs[side]
    med = lambda k: statistics.median(x[k] for x in v)
    print(f"{side}: median {med(0):,.0f} req/s, proxy {med(1):.3f} µs a request ({med(2):.3f} µs in user space)")
EOF
