#!/usr/bin/env bash
# What coherence costs (docs/coherence.md), with tablecache's own bench as
# the one generator, every node at its default flags except where noted.
#
# Part 1, write latency by holders: a server, and N proxies (N = 0..3) that
# each keep index 0 cached (a reader per proxy, a small Python loop sending
# GET 0 every millisecond, so that after each invalidation 0 is fetched
# again; it sleeps between requests, leaving the cores to the nodes). A
# writer, tablecache bench in open loop at 200/s, PUTs index 0 straight to
# the server; its latency is what the invalidation round costs. Rounds
# rotate N; compare medians over rounds.
#
# Part 2, hits with coherence on vs off: one server (--lease-ms 1000, the
# default, vs --lease-ms 0: no leases, the single-proxy guarantee) and one
# proxy; hits at 1x1 and 50x16 and a mixed workload, ABBA-interleaved.
#
# Usage: benches/coherence.sh [BIN] [ROUNDS] [SECONDS]
# Prints one line per run; summarise with the medians printed at the end.
set -euo pipefail
BIN=${1:-target/release/tablecache}; R=${2:-3}; D=${3:-3}
tmp=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# shellcheck source=benches/nodes.sh
. "$(dirname "$0")/nodes.sh"
field() { tr ';' '\n' | sed -n "s/^$1=//p"; }
summary() { python3 -c '
import json,sys
j=json.loads(sys.stdin.read()); l=j["latency_us"]
print(round(j["throughput"]), l["p50"], l["p99"], l["max"], j["errors"])'; }

echo "# part 1: round holders writes/s p50_us p99_us max_us errors inv_sent writes_delayed"
for r in $(seq 1 "$R"); do
  for n in 0 1 2 3; do
    start "s$r$n" server --grace-ms 0; S=$addr
    readers=()
    for k in $(seq 1 "$n"); do
      start "p$r$n$k" proxy --upstream "$S"; P=$addr
      python3 -c '
import socket, sys, time
h, p = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((h, int(p))); f = s.makefile("rw")
end = time.time() + float(sys.argv[2])
while time.time() < end:
    f.write("OP=GET;IND=0\n"); f.flush(); f.readline(); time.sleep(0.001)
' "$P" $((D + 2)) &
      readers+=($!)
    done
    sleep 0.5
    w=$("$BIN" bench --connect "$S" --keys 1 --mix put=100 --rate 200 --duration "$D" --warmup 1 --json | tail -1 | summary)
    sts=$("$BIN" client --connect "$S" stats 2>/dev/null | tr '\n' ';')
    echo "$r $n $w $(echo "$sts" | field INV_SENT) $(echo "$sts" | field WRITES_DELAYED)"
    if [ "$n" -gt 0 ]; then wait "${readers[@]}" 2>/dev/null || true; fi
    stop_all
  done
done

echo "# part 2: round shape leases req/s p50_us p99_us max_us errors"
shapes=(
  "hits-1x1|--keys 5 --connections 1 --pipeline 1"
  "hits-50x16|--keys 5 --connections 50 --pipeline 16"
  "mixed-50x16|--keys 10 --mix get=80,put=15,add=5 --connections 50 --pipeline 16"
)
for r in $(seq 1 "$R"); do
  for shape in "${shapes[@]}"; do
    name=${shape%%|*}; args=${shape#*|}
    order="on off"; [ $((r % 2)) = 0 ] && order="off on"
    for side in $order; do
      lease=1000; [ "$side" = off ] && lease=0
      start "s$r$name$side" server --lease-ms "$lease" --grace-ms 0; S=$addr
      start "p$r$name$side" proxy --upstream "$S"; P=$addr
      # shellcheck disable=SC2086
      out=$("$BIN" bench --connect "$P" --duration "$D" --warmup 1 --json $args | tail -1 | summary)
      echo "$r $name $side $out"
      stop_all
    done
  done
done
