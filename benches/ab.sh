#!/usr/bin/env bash
# A/B comparison of two tablecache builds, interleaved, with ONE generator
# (the `bench` of build A) so the generator's own cost is the same on both
# sides. Each round starts a fresh server and proxy of each build at the
# default flags (--log-level warn) and runs every shape against both, in
# alternating order (A B, then B A). Compare medians over the rounds.
# Usage: benches/ab.sh BIN_A BIN_B [ROUNDS] [SECONDS] [SHAPE-FILTER]
# (SHAPE-FILTER: a regex over the shape names below, e.g. 'hits').
# Prints one line per run: round shape build req/s p50_us p99_us hit-ratio errors.
set -euo pipefail
A=$1; B=$2; R=${3:-3}; D=${4:-3}; F=${5:-.}
# shellcheck source=benches/nodes-lib.sh
. "$(dirname "$0")/nodes-lib.sh"
shapes=(
  "hits-1x1|--keys 5 --connections 1 --pipeline 1"
  "hits-50x16|--keys 5 --connections 50 --pipeline 16"
  "misses-1x1|--keys 1000 --connections 1 --pipeline 1"
  "misses-50x1|--keys 1000 --connections 50 --pipeline 1"
  "misses-50x16|--keys 100000 --connections 50 --pipeline 16"
  "mixed-50x16|--keys 10 --mix get=80,put=15,add=5 --connections 50 --pipeline 16"
)
for r in $(seq 1 "$R"); do
  for shape in "${shapes[@]}"; do
    name=${shape%%|*}; args=${shape#*|}
    [[ $name =~ $F ]] || continue
    # ABBA: the side that runs first in a round tends to win by a few per
    # cent on this machine, so the order alternates between rounds.
    order="A B"; [ $((r % 2)) = 0 ] && order="B A"
    for side in $order; do
      bin=$A; [ "$side" = B ] && bin=$B
      start "$bin" "s$side$r$name" server --size 100000; S=$addr
      start "$bin" "p$side$r$name" proxy --upstream "$S"; P=$addr
      # shellcheck disable=SC2086
      json=$("$A" bench --connect "$P" --duration "$D" --warmup 1 --json $args | tail -1)
      echo "$r $name $side $json" | python3 -c '
import json,sys
r,name,side,js=sys.stdin.read().split(" ",3)
j=json.loads(js)
l=j["latency_us"]; print(r,name,side,round(j["throughput"]),l["p50"],l["p99"],j["hit_ratio"],j["errors"])'
      kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=()
    done
  done
done
