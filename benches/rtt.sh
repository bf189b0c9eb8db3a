#!/usr/bin/env bash
# How much of the server's round trip does the cache hide?
#
#   benches/rtt.sh [OUT_DIR]        # default target/rtt; needs python3 (the chart)
#
# client (tablecache bench) -> proxy -> link -> server, with the link adding
# a one-way delay of 0, 0.1, 0.5 and 2.5 ms (a round trip of 0 to 5 ms). At
# each delay, one connection, one request at a time (latency, not
# throughput):
#   hit    GETs of 5 keys the proxy holds (after a warm-up)
#   miss   GETs spread over 100,000 keys: almost every one a miss
#   zipf   GETs of 100,000 keys, Zipf 0.99, through the proxy (capacity
#          1000) and straight to the server over the same link
# and what the hit ratio predicts for the Zipf mean: h * hit + (1 - h) * miss
# (means). Writes OUT_DIR/rtt.tsv and OUT_DIR/rtt.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/rtt}
mkdir -p "$out"
cargo build --release -q
bin=target/release/tablecache
pidfile=$(mktemp)
cleanup() { xargs -r kill < "$pidfile" 2>/dev/null || true; rm -f "$pidfile"; }
trap cleanup EXIT

# Starts a node; prints the address it announced (its pid goes to $pidfile:
# this runs in a subshell).
start() {
  local fifo
  fifo=$(mktemp -u)
  mkfifo "$fifo"
  "$bin" "$@" --log-level warn > "$fifo" 2>/dev/null &
  echo $! >> "$pidfile"
  local line
  read -r line < "$fifo"
  rm -f "$fifo"
  echo "${line#listening on }"
}

# bench FIELD... : runs tablecache bench with the given flags, prints its JSON line.
bench() { "$bin" bench -c 1 -P 1 --json "$@" 2>/dev/null | tail -1; }
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))' "$1" "$2"; }

server=$(start server --listen 127.0.0.1:0 --size 100000 --grace-ms 0)
printf 'delay_ms\thit_p50\thit_p99\tmiss_p50\tmiss_p99\thit_mean\tmiss_mean\tzipf_hit_ratio\tzipf_proxy_mean\tzipf_direct_mean\tpredicted_mean\n' > "$out/rtt.tsv"
for d in 0 0.1 0.5 2.5; do
  link=$(start link --listen 127.0.0.1:0 --upstream "$server" --delay-ms "$d")
  proxy=$(start proxy --listen 127.0.0.1:0 --upstream "$link" --capacity 1000)
  hit=$(bench --connect "$proxy" --keys 5 --warmup 1s --duration 3s)
  miss=$(bench --connect "$proxy" --keys 100000 --warmup 0 --duration 3s)
  zipf=$(bench --connect "$proxy" --keys 100000 --dist zipf:0.99 --warmup 3s --duration 5s)
  direct=$(bench --connect "$link" --keys 100000 --dist zipf:0.99 --warmup 1s --duration 5s)
  h=$(field "$zipf" 'hit_ratio')
  hm=$(field "$hit" 'latency_us["mean"]')
  mm=$(field "$miss" 'latency_us["mean"]')
  pred=$(python3 -c "print(round($h * $hm + (1 - $h) * $mm, 1))")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$d" \
    "$(field "$hit" 'latency_us["p50"]')" "$(field "$hit" 'latency_us["p99"]')" \
    "$(field "$miss" 'latency_us["p50"]')" "$(field "$miss" 'latency_us["p99"]')" \
    "$hm" "$mm" "$h" "$(field "$zipf" 'latency_us["mean"]')" "$(field "$direct" 'latency_us["mean"]')" "$pred" \
    | tee -a "$out/rtt.tsv"
  # This delay's link and proxy go (the last two started); the server stays.
  tail -n 2 "$pidfile" | xargs -r kill 2>/dev/null || true
  head -n -2 "$pidfile" > "$pidfile.keep" && mv "$pidfile.keep" "$pidfile"
done
column -t "$out/rtt.tsv"

# The chart: the Zipf mean through the proxy, straight to the server, and
# what the hit ratio predicts, per delay.
python3 - "$out/rtt.tsv" "$out/rtt.svg" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
series = [("zipf_direct_mean", "straight to the server", "#b03030"),
          ("zipf_proxy_mean", "through the proxy", "#1f5fbf"),
          ("predicted_mean", "predicted from the hit ratio", "#7a5c00")]
W, H, L, B, T = 760, 420, 70, 60, 50
top = max(float(r[k]) for r in rows for k, _, _ in series) * 1.1
gw = (W - L - 20) / len(rows)
bw = gw / (len(series) + 1)
y = lambda v: H - B - (H - B - T) * v / top
s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
     '<rect width="100%" height="100%" fill="white"/>',
     f'<text x="{L}" y="24" font-size="15" font-weight="bold">Mean GET latency, Zipf 0.99 over 100,000 keys, proxy capacity 1000</text>',
     f'<line x1="{L}" y1="{H-B}" x2="{W-20}" y2="{H-B}" stroke="#444"/>',
     f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="#444"/>']
for i in range(5):
    v = top * i / 4
    s.append(f'<text x="{L-8}" y="{y(v)+4:.0f}" text-anchor="end" fill="#555">{v/1000:.1f} ms</text>')
    s.append(f'<line x1="{L}" y1="{y(v):.0f}" x2="{W-20}" y2="{y(v):.0f}" stroke="#e3e6ec"/>')
for g, r in enumerate(rows):
    x0 = L + g * gw + bw / 2
    for j, (k, _, c) in enumerate(series):
        v = float(r[k])
        s.append(f'<rect x="{x0 + j*bw:.0f}" y="{y(v):.0f}" width="{bw*0.9:.0f}" height="{H-B-y(v):.0f}" fill="{c}"><title>{v:.0f} us</title></rect>')
    rtt = 2 * float(r["delay_ms"])
    s.append(f'<text x="{x0 + 1.5*bw:.0f}" y="{H-B+18}" text-anchor="middle">RTT {rtt:g} ms</text>')
    s.append(f'<text x="{x0 + 1.5*bw:.0f}" y="{H-B+34}" text-anchor="middle" fill="#555">hits {float(r["zipf_hit_ratio"])*100:.0f}%</text>')
for j, (_, name, c) in enumerate(series):
    s.append(f'<rect x="{L + 10 + j*220}" y="{T-18}" width="12" height="12" fill="{c}"/><text x="{L + 28 + j*220}" y="{T-8}">{name}</text>')
s.append('</svg>')
open(sys.argv[2], "w").write("\n".join(s) + "\n")
print("chart:", sys.argv[2])
PY
