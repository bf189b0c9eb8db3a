#!/usr/bin/env bash
# All-hit throughput through the proxy with each eviction policy
# (docs/caching.md): a fresh server and proxy per run (default flags,
# --log-level warn, --grace-ms 0), tablecache's own bench, GET of one of 5
# keys through a 5-entry cache (every request a hit once warm), rounds
# rotating the order of the policies. Compare medians.
# Usage: benches/policies.sh [BIN] [ROUNDS] [SECONDS] [BENCH-ARGS...]
# Prints: round policy req/s p50_us p99_us hit-ratio
set -euo pipefail
BIN=${1:-target/release/tablecache}; R=${2:-3}; D=${3:-3}; shift $(( $# > 3 ? 3 : $# ))
ARGS=${*:---connections 50 --pipeline 16}
tmp=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# shellcheck source=benches/nodes.sh
. "$(dirname "$0")/nodes.sh"
policies=(fifo lru clock sieve s3fifo)
for r in $(seq 1 "$R"); do
  n=${#policies[@]}
  for k in $(seq 0 $((n - 1))); do
    p=${policies[$(( (k + r) % n ))]}
    start "s$r$p" server --grace-ms 0; S=$addr
    start "p$r$p" proxy --upstream "$S" --policy "$p"; P=$addr
    # shellcheck disable=SC2086
    "$BIN" bench --connect "$P" --keys 5 --duration "$D" --warmup 1 --json $ARGS | tail -1 | python3 -c '
import json,sys
j=json.loads(sys.stdin.read()); l=j["latency_us"]
print(sys.argv[1], sys.argv[2], round(j["throughput"]), l["p50"], l["p99"], j["hit_ratio"])' "$r" "$p"
    stop_all
  done
done
