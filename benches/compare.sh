#!/usr/bin/env bash
# tablecache against what people would otherwise run, with ONE generator
# (`tablecache bench`, speaking each target's protocol) so the generator's
# own cost is the same on every side:
#
#   server      tablecache server alone               GET, 5 keys
#   proxy-hits  tablecache proxy, every GET a hit     GET, 5 keys, capacity 5
#   proxy-miss  tablecache proxy, every GET a miss    GET, 100000 keys, capacity 5
#   redis       redis-server, direct                  GET, 5 keys (preloaded)
#   twem-miss   twemproxy (nutcracker) -> redis       GET, 100000 keys (preloaded)
#   memcached   memcached, direct                     GET, 5 keys (preloaded)
#
# at 1x1, 50x1 and 50x16 (connections x pipeline), closed loop, every node
# at its default flags. Targets take turns within each round; compare the
# medians printed at the end. Installs nothing: needs redis-server,
# nutcracker and memcached (apt-get install redis-server nutcracker
# memcached), and skips an anchor that is missing, saying so.
# Usage: benches/compare.sh [BIN] [ROUNDS] [SECONDS]
# WRITE=docs/benchmarks.md puts the tables of medians and ratios in that
# file, between its compare:begin and compare:end markers.
# SHAPES="1x1 50x16" and ONLY="server redis" narrow a run (for more rounds
# of one comparison); each round then alternates the order of the targets
# (A B, B A) so a drift in the machine falls on both.
set -euo pipefail
BIN=${1:-target/release/tablecache}; R=${2:-3}; D=${3:-3}
tmp=$(mktemp -d)
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  redis-cli -p 6398 shutdown nosave >/dev/null 2>&1 || true
  [ -f "$tmp/nutcracker.pid" ] && kill "$(cat "$tmp/nutcracker.pid")" 2>/dev/null || true
  [ -f "$tmp/memcached.pid" ] && kill "$(cat "$tmp/memcached.pid")" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
pids=()
start() { # name args...
  local name=$1; shift
  "$BIN" "$@" --listen 127.0.0.1:0 >"$tmp/$name" 2>/dev/null &
  pids+=($!)
  until grep -qs listening "$tmp/$name"; do sleep 0.05; done
  addr=$(sed 's/listening on //' "$tmp/$name")
}
targets="server proxy-hits proxy-miss"
start server server --size 100000; S=$addr
start proxy proxy --upstream "$S" --capacity 5; P=$addr
if command -v redis-server >/dev/null; then
  redis-server --port 6398 --save "" --appendonly no --dir "$tmp" --daemonize yes --logfile "$tmp/redis.log" >/dev/null
  until redis-cli -p 6398 ping >/dev/null 2>&1; do sleep 0.05; done
  "$BIN" bench --connect 127.0.0.1:6398 --protocol resp --preload --keys 100000 -n 1 -q >/dev/null
  targets="$targets redis"
  if command -v nutcracker >/dev/null; then
    cat >"$tmp/nutcracker.yml" <<EOF
alpha:
  listen: 127.0.0.1:22198
  redis: true
  servers:
   - 127.0.0.1:6398:1
EOF
    nutcracker -c "$tmp/nutcracker.yml" -d -p "$tmp/nutcracker.pid" -o "$tmp/nutcracker.log"
    until "$BIN" bench --connect 127.0.0.1:22198 --protocol resp -n 1 -q >/dev/null 2>&1; do sleep 0.1; done
    targets="$targets twem-miss"
  else
    echo "# nutcracker (twemproxy) not installed: skipped (apt-get install nutcracker)"
  fi
else
  echo "# redis-server not installed: redis and twemproxy skipped (apt-get install redis-server nutcracker)"
fi
if command -v memcached >/dev/null; then
  memcached -p 11298 -U 0 -u "$(id -un)" -d -P "$tmp/memcached.pid"
  sleep 0.3
  "$BIN" bench --connect 127.0.0.1:11298 --protocol memcache --preload --keys 5 -n 1 -q >/dev/null
  targets="$targets memcached"
else
  echo "# memcached not installed: skipped (apt-get install memcached)"
fi
echo "# round target shape req/s p50_us p99_us errors gen_cpu"
if [ -n "${ONLY:-}" ]; then
  keep=""
  for t in $targets; do case " $ONLY " in *" $t "*) keep="$keep $t" ;; esac; done
  targets=$keep
fi
shapes=${SHAPES:-1x1 50x1 50x16}
for r in $(seq 1 "$R"); do
  order=$targets
  if [ -n "${ONLY:-}" ] && [ $((r % 2)) -eq 0 ]; then order=$(echo $targets | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for shape in $shapes; do
    set -- ${shape/x/ }
    for t in $order; do
      case $t in
        server) args=(--connect "$S" --keys 5) ;;
        proxy-hits) args=(--connect "$P" --keys 5) ;;
        proxy-miss) args=(--connect "$P" --keys 100000) ;;
        redis) args=(--connect 127.0.0.1:6398 --protocol resp --keys 5) ;;
        twem-miss) args=(--connect 127.0.0.1:22198 --protocol resp --keys 100000) ;;
        memcached) args=(--connect 127.0.0.1:11298 --protocol memcache --keys 5) ;;
      esac
      line=$("$BIN" bench "${args[@]}" -c "$1" -P "$2" --duration "$D" --warmup 1 --json | tail -1 |
        python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); l=j["latency_us"]; print(round(j["throughput"]), l["p50"], l["p99"], j["errors"], j.get("generator_cpu", "-"))')
      echo "$r $t ${1}x$2 $line"
    done
  done
done | tee "$tmp/runs"
echo "# medians: target shape req/s p99_us"
python3 - "$tmp/runs" "${WRITE:-}" "$R" "$D" <<'EOF'
import sys, statistics, collections, re
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("#"): continue
    f = line.split()
    runs[(f[1], f[2])].append((int(f[3]), int(f[5])))
med = {k: statistics.median(x for x, _ in v) for k, v in runs.items()}
p99 = {k: statistics.median(y for _, y in v) for k, v in runs.items()}
for (t, shape) in runs:
    print(f"{t:11} {shape:6} {med[(t, shape)]:>9.0f} {p99[(t, shape)]:>7.0f}")
shapes = sorted({s for _, s in runs}, key=lambda s: [int(x) for x in s.split("x")])
pairs = [("proxy hits / Redis", "proxy-hits", "redis"),
         ("proxy misses / twemproxy → Redis", "proxy-miss", "twem-miss"),
         ("server / Redis", "server", "redis"),
         ("server / memcached", "server", "memcached")]
def r(a, b, shape):
    return f"{med[(a, shape)] / med[(b, shape)]:.2f}" if (a, shape) in med and (b, shape) in med else "-"
print("# ratios (medians)")
for shape in shapes:
    print(f"{shape:6} " + "  ".join(f"{a}/{b} {r(a, b, shape)}" for _, a, b in pairs))
# The same as markdown tables; WRITE=FILE puts them between the
# "compare:begin" and "compare:end" markers of FILE (docs/benchmarks.md).
names = {"server": "tablecache server", "proxy-hits": "tablecache proxy, all hits",
         "proxy-miss": "tablecache proxy, all misses (→ server)", "redis": "Redis",
         "twem-miss": "twemproxy → Redis, 100,000 keys", "memcached": "memcached"}
targets = [t for t in names if any((t, s) in med for s in shapes)]
cols = [s.replace("x", " × ") for s in shapes]
md = [f"Medians of {sys.argv[3]} rounds of {sys.argv[4]} s:", "",
      "| target | " + " req/s | ".join(cols) + " req/s | p99 µs at " + cols[-1] + " |",
      "|---" * (len(cols) + 2) + "|"]
for t in targets:
    cells = [f"{med[(t, s)]:,.0f}" if (t, s) in med else "-" for s in shapes]
    last = f"{p99[(t, shapes[-1])]:,.0f}" if (t, shapes[-1]) in p99 else "-"
    md.append(f"| {names[t]} | " + " | ".join(cells) + f" | {last} |")
md += ["", "| ratio (medians) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
for label, a, b in pairs:
    md.append(f"| {label} | " + " | ".join(r(a, b, s) for s in shapes) + " |")
text = "\n".join(md)
print(text)
if sys.argv[2]:
    doc = open(sys.argv[2]).read()
    begin, end = "<!-- compare:begin -->", "<!-- compare:end -->"
    if begin not in doc or end not in doc:
        sys.exit(f"{sys.argv[2]}: no {begin} ... {end} markers")
    head, rest = doc.split(begin, 1)
    doc = head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1]
    open(sys.argv[2], "w").write(doc)
    print(f"# written to {sys.argv[2]}")
EOF
