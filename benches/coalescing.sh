#!/usr/bin/env bash
# Upstream requests per client request through a proxy in front of a slow
# server (benches/slow_server.py, DELAY ms per reply), for each build given.
# Usage: benches/coalescing.sh [DELAY_MS] [SECONDS] BIN...
set -euo pipefail
cd "$(dirname "$0")/.."
DELAY=$1; D=$2; shift 2
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 benches/slow_server.py "$DELAY" 10 >"$tmp/s" &
pids+=($!)
until grep -qs listening "$tmp/s"; do sleep 0.05; done
S=$(sed 's/listening on //' "$tmp/s")
for bin in "$@"; do
  "$bin" proxy --listen 127.0.0.1:0 --upstream "$S" --capacity 0 --log-level warn >"$tmp/p" &
  p=$!
  until grep -qs listening "$tmp/p"; do sleep 0.05; done
  P=$(sed 's/listening on //' "$tmp/p")
  echo "\$ tablecache bench --connect PROXY --keys 5 --connections 50 --pipeline 1 --duration $D  ($bin, server delay $DELAY ms, --capacity 0)"
  "$bin" bench --connect "$P" --keys 5 --connections 50 --pipeline 1 --duration "$D" --warmup 1 | sed -n '3,5p'
  "$bin" client --connect "$P" raw OP=STS | tr ';' '\n' | grep -E '^(REQS|UP_REQS|COALESCED)=' | tr '\n' ' '
  echo; echo
  kill "$p"; wait "$p" 2>/dev/null || true
done
