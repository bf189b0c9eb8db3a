#!/usr/bin/env bash
# Reruns the record in docs/benchmarks.md: starts a server and a proxy from
# the release build on free ports, then runs `tablecache bench` against each.
# Usage: benches/run.sh [SECONDS]   (default 5 measured seconds per run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
T=target/release/tablecache
D=${1:-5}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
start() { # name args...
  local name=$1; shift
  "$T" "$@" --listen 127.0.0.1:0 --log-level warn >"$tmp/$name" &
  until grep -q listening "$tmp/$name"; do sleep 0.05; done
  sed 's/listening on //' "$tmp/$name"
}
S=$(start server server --size 100000)
P=$(start proxy proxy --upstream "$S" --capacity 5)
bench() { echo "\$ tablecache bench $*"; "$T" bench --duration "$D" --warmup 1 "$@" | sed -n '3,7p'; echo; }
for target in "$S" "$P"; do
  for c in 1 16 64; do
    for p in 1 16; do
      bench --connect "$target" --keys 5 --connections $c --pipeline $p
    done
  done
done
echo "## targets"
bench --connect "$P" --keys 5 --connections 1 --pipeline 1
bench --connect "$P" --keys 5 --connections 50 --pipeline 1
bench --connect "$P" --keys 5 --connections 50 --pipeline 16
bench --connect "$P" --keys 100000 --connections 50 --pipeline 16
bench --connect "$P" --keys 100000 --mix get=80,put=15,add=5 --connections 50 --pipeline 16
echo "## open loop at about half the closed-loop maximum through the proxy"
bench --connect "$P" --keys 5 --connections 50 --pipeline 16 --rate 700000
