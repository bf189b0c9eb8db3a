#!/usr/bin/env bash
# tablecache against what people would otherwise run, with ONE generator
# (`tablecache bench`, speaking each target's protocol) so the generator's
# own cost is the same on every side. Targets (GET unless said):
#
#   floor-line    benches/floor.c, line protocol: a fixed reply, no work
#   floor-resp    the same in RESP        floor-mc   the same in memcached's
#   server        tablecache server alone               5 keys
#   proxy-hits    tablecache proxy, every GET a hit     5 keys, capacity 5
#   proxy-miss    tablecache proxy, every GET a miss    $KEYS keys, capacity 5
#   redis         redis-server, direct                  5 keys (preloaded)
#   twem-miss-v1  twemproxy -v 1 (its fastest) -> redis $KEYS keys (preloaded)
#   twem-miss     twemproxy at its default log level    $KEYS keys
#   memcached     memcached, direct                     5 keys (preloaded)
#   put-proxy     PUT through a tablecache proxy        5 keys
#   put-held      the same, a second proxy holding the 5 indices (each PUT
#                 waits for its invalidation to be confirmed)
#   set-twem      SET through twemproxy -v 1 -> redis   5 keys
#   set-redis     SET on redis directly                 5 keys
#
# at 1x1, 50x1 and 50x16 (connections x pipeline), closed loop, every
# tablecache node at its default flags; each anchor at its defaults and,
# where it has faster settings, at those too (twemproxy: -v 1). Targets take
# turns within each round; compare the medians printed at the end. Installs
# nothing: needs gcc (the floor), redis-server, nutcracker and memcached
# (apt-get install gcc redis-server nutcracker memcached), and skips what
# is missing, saying so.
# Usage: benches/compare.sh [BIN] [ROUNDS] [SECONDS]
# KEYS=1000 (the miss targets' keys, the same on every side).
# WRITE=docs/benchmarks.md puts the tables of medians and ratios in that
# file, between its compare:begin and compare:end markers.
# SHAPES="1x1 50x16" and ONLY="server redis" narrow a run (for more rounds
# of one comparison); each round then alternates the order of the targets
# (A B, B A) so a drift in the machine falls on both.
set -euo pipefail
BIN=${1:-target/release/tablecache}; R=${2:-3}; D=${3:-3}; KEYS=${KEYS:-1000}
tmp=$(mktemp -d)
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  redis-cli -p 6398 shutdown nosave >/dev/null 2>&1 || true
  for f in "$tmp"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done || true
  rm -rf "$tmp"
}
trap cleanup EXIT
pids=()
start() { # name command...: waits for its "listening on ADDR" line
  local name=$1; shift
  "$@" >"$tmp/$name" 2>/dev/null &
  pids+=($!)
  until grep -qs listening "$tmp/$name"; do sleep 0.05; done
  addr=$(sed 's/listening on //' "$tmp/$name")
}
targets="server proxy-hits proxy-miss put-proxy put-held"
start server "$BIN" server --listen 127.0.0.1:0 --size 100000; S=$addr
start proxy "$BIN" proxy --listen 127.0.0.1:0 --upstream "$S" --capacity 5; P=$addr
start proxy2 "$BIN" proxy --listen 127.0.0.1:0 --upstream "$S" --capacity 5; P2=$addr
start holder "$BIN" proxy --listen 127.0.0.1:0 --upstream "$S" --capacity 5; H=$addr
if command -v gcc >/dev/null; then
  gcc -O2 -o "$tmp/floor" "$(dirname "$0")/floor.c"
  start floor-line "$tmp/floor" 0 line; FL=$addr
  start floor-resp "$tmp/floor" 0 resp; FR=$addr
  start floor-mc "$tmp/floor" 0 memcache; FM=$addr
  targets="floor-line floor-resp floor-mc $targets"
else
  echo "# gcc not installed: the floor servers skipped (apt-get install gcc)"
fi
if command -v redis-server >/dev/null; then
  redis-server --port 6398 --save "" --appendonly no --dir "$tmp" --daemonize yes --logfile "$tmp/redis.log" >/dev/null
  until redis-cli -p 6398 ping >/dev/null 2>&1; do sleep 0.05; done
  "$BIN" bench --connect 127.0.0.1:6398 --protocol resp --preload --keys "$KEYS" -n 1 -q >/dev/null
  targets="$targets redis set-redis"
  if command -v nutcracker >/dev/null; then
    for v in 1 default; do
      port=$([ $v = 1 ] && echo 22198 || echo 22199)
      printf 'alpha:\n  listen: 127.0.0.1:%s\n  redis: true\n  servers:\n   - 127.0.0.1:6398:1\n' "$port" >"$tmp/nut-$v.yml"
      # Each instance its own stats port; -v 1 logs least (its fastest).
      nutcracker -c "$tmp/nut-$v.yml" -d -p "$tmp/nut-$v.pid" -o "$tmp/nut-$v.log" -s $((port + 100)) \
        $([ $v = 1 ] && echo -v 1)
      until "$BIN" bench --connect 127.0.0.1:$port --protocol resp -n 1 -q >/dev/null 2>&1; do sleep 0.1; done
    done
    targets="$targets twem-miss-v1 twem-miss set-twem"
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
# The holder proxy keeps reading indices 0..4 (2,000 GETs a second, from a
# second generator, through the whole run of put-held): a PUT to one it
# holds waits for its invalidation to be confirmed (docs/coherence.md).
hold() { "$BIN" bench --connect "$H" --keys 5 --rate 2000 -c 1 --duration $((D + 2)) --warmup 0 -q >/dev/null & }
echo "# round target shape req/s p50_us p99_us errors gen_cpu gen_us_per_reply up_gets_per_fetch"
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
        floor-line) args=(--connect "$FL" --keys 5) ;;
        floor-resp) args=(--connect "$FR" --protocol resp --keys 5) ;;
        floor-mc) args=(--connect "$FM" --protocol memcache --keys 5) ;;
        server) args=(--connect "$S" --keys 5) ;;
        proxy-hits) args=(--connect "$P" --keys 5) ;;
        proxy-miss) args=(--connect "$P" --keys "$KEYS") ;;
        put-proxy) args=(--connect "$P" --keys 5 --mix put=1) ;;
        put-held) hold; sleep 0.5; args=(--connect "$P2" --keys 5 --mix put=1) ;;
        redis) args=(--connect 127.0.0.1:6398 --protocol resp --keys 5) ;;
        set-redis) args=(--connect 127.0.0.1:6398 --protocol resp --keys 5 --mix put=1) ;;
        twem-miss-v1) args=(--connect 127.0.0.1:22198 --protocol resp --keys "$KEYS") ;;
        twem-miss) args=(--connect 127.0.0.1:22199 --protocol resp --keys "$KEYS") ;;
        set-twem) args=(--connect 127.0.0.1:22198 --protocol resp --keys 5 --mix put=1) ;;
        memcached) args=(--connect 127.0.0.1:11298 --protocol memcache --keys 5) ;;
      esac
      line=$("$BIN" bench "${args[@]}" -c "$1" -P "$2" --duration "$D" --warmup 1 --json | tail -1 |
        python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); l=j["latency_us"]; g=lambda k, f: "-" if j.get(k) is None else f % j[k]; print(round(j["throughput"]), l["p50"], l["p99"], j["errors"], g("generator_cpu", "%.2f"), g("generator_us_per_reply", "%.2f"), g("up_gets_per_fetch", "%.3f"))')
      echo "$r $t ${1}x$2 $line"
    done
  done
done | tee "$tmp/runs"
echo "# medians: target shape req/s p99_us"
python3 - "$tmp/runs" "${WRITE:-}" "$R" "$D" "$KEYS" <<'EOF'
import sys, statistics, collections, re
runs = collections.defaultdict(list)
gen = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("#"): continue
    f = line.split()
    runs[(f[1], f[2])].append((int(f[3]), int(f[5])))
    if len(f) > 8 and f[8] != "-": gen[(f[1], f[2])].append(float(f[8]))
med = {k: statistics.median(x for x, _ in v) for k, v in runs.items()}
p99 = {k: statistics.median(y for _, y in v) for k, v in runs.items()}
for (t, shape) in runs:
    print(f"{t:11} {shape:6} {med[(t, shape)]:>9.0f} {p99[(t, shape)]:>7.0f}")
shapes = sorted({s for _, s in runs}, key=lambda s: [int(x) for x in s.split("x")])
pairs = [("proxy misses / twemproxy -v 1 → Redis (its fastest)", "proxy-miss", "twem-miss-v1"),
         ("proxy misses / twemproxy at its default log level → Redis", "proxy-miss", "twem-miss"),
         ("proxy hits / Redis", "proxy-hits", "redis"),
         ("server / Redis", "server", "redis"),
         ("server / memcached", "server", "memcached"),
         ("server / floor (line)", "server", "floor-line"),
         ("proxy hits / floor (line)", "proxy-hits", "floor-line"),
         ("Redis / floor (RESP)", "redis", "floor-resp"),
         ("memcached / floor (memcached)", "memcached", "floor-mc"),
         ("PUT via proxy / SET via twemproxy -v 1", "put-proxy", "set-twem"),
         ("PUT via proxy, indices held by another proxy / the same, not held", "put-held", "put-proxy"),
         ("SET via twemproxy -v 1 / SET on Redis", "set-twem", "set-redis")]
def r(a, b, shape):
    return f"{med[(a, shape)] / med[(b, shape)]:.2f}" if (a, shape) in med and (b, shape) in med else "-"
print("# ratios (medians)")
for shape in shapes:
    print(f"{shape:6} " + "  ".join(f"{a}/{b} {r(a, b, shape)}" for _, a, b in pairs))
# The same as markdown tables; WRITE=FILE puts them between the
# "compare:begin" and "compare:end" markers of FILE (docs/benchmarks.md).
keys = f"{int(sys.argv[5]):,}"
names = {"floor-line": "floor server, line protocol (benches/floor.c)",
         "floor-resp": "floor server, RESP", "floor-mc": "floor server, memcached text",
         "server": "tablecache server", "proxy-hits": "tablecache proxy, all hits",
         "proxy-miss": f"tablecache proxy, all misses (→ server), {keys} keys", "redis": "Redis",
         "twem-miss-v1": f"twemproxy -v 1 → Redis, {keys} keys", "twem-miss": f"twemproxy (default log level) → Redis, {keys} keys",
         "memcached": "memcached", "put-proxy": "PUT via tablecache proxy",
         "put-held": "PUT via tablecache proxy, indices held by another proxy",
         "set-twem": "SET via twemproxy -v 1 → Redis", "set-redis": "SET on Redis"}
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
floors = [(t, p) for t, p in (("floor-line", "line"), ("floor-resp", "RESP"), ("floor-mc", "memcached")) if any((t, s) in gen for s in shapes)]
if floors:
    md += ["", "Generator CPU per reply (µs, medians) against the floor of each protocol:", "",
           "| protocol | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t, proto in floors:
        md.append(f"| {proto} | " + " | ".join(f"{statistics.median(gen[(t, s)]):.2f}" if (t, s) in gen else "-" for s in shapes) + " |")
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
