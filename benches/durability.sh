#!/usr/bin/env bash
# What durability costs (docs/durability.md): writes through the server
# with --data-dir and each --fsync mode, against the in-memory server and
# Redis's AOF (appendfsync always / everysec), with tablecache's own bench
# as the one generator (`--protocol resp` for Redis), at 1x1 and 50x1
# (connections x pipeline), closed loop, PUT/SET of one key of 1000.
#
# Every run gets a fresh data directory (on the disk under $TMPDIR), and
# the targets take turns within each round, so the machine's noise falls
# on all of them alike; compare the medians printed at the end.
#
# Needs: redis-server (apt-get install redis-server); skipped, saying so,
# when missing.
# Usage: benches/durability.sh [BIN] [ROUNDS] [SECONDS]
set -euo pipefail
BIN=${1:-target/release/tablecache}; R=${2:-3}; D=${3:-4}
tmp=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; redis-cli -p 6399 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
# shellcheck source=benches/nodes.sh
. "$(dirname "$0")/nodes.sh"
summary() { python3 -c '
import json,sys
j=json.loads(sys.stdin.read()); l=j["latency_us"]
print(round(j["throughput"]), l["p50"], l["p99"], j["errors"])'; }
have_redis=1
command -v redis-server >/dev/null || { have_redis=0; echo "# redis-server not installed: Redis rows skipped (apt-get install redis-server)"; }

targets="memory always batch never"
[ $have_redis = 1 ] && targets="$targets redis-always redis-everysec"
echo "# round target shape writes/s p50_us p99_us errors"
for r in $(seq 1 "$R"); do
  for t in $targets; do
    for shape in "1 1" "50 1"; do
      set -- $shape; c=$1; p=$2
      dir="$tmp/data-$r-$t-$c"
      proto=line
      case $t in
        memory) start "$t-$r-$c" server --lease-ms 0 --size 1000; A=$addr ;;
        always|batch|never) start "$t-$r-$c" server --lease-ms 0 --size 1000 --data-dir "$dir" --fsync "$t"; A=$addr ;;
        redis-*)
          mkdir -p "$dir"
          redis-server --port 6399 --save "" --appendonly yes --appendfsync "${t#redis-}" \
            --dir "$dir" --daemonize yes --logfile "$dir/log" >/dev/null
          until redis-cli -p 6399 ping >/dev/null 2>&1; do sleep 0.05; done
          A=127.0.0.1:6399; proto=resp ;;
      esac
      line=$("$BIN" bench --connect "$A" --protocol $proto --keys 1000 --mix put=100 \
        -c "$c" -P "$p" --duration "$D" --warmup 1 --json | tail -1 | summary)
      echo "$r $t ${c}x$p $line"
      case $t in
        redis-*) redis-cli -p 6399 shutdown nosave >/dev/null 2>&1 || true; sleep 0.2 ;;
        *) stop_all ;;
      esac
      rm -rf "$dir"
    done
  done
done | tee "$tmp/runs"
echo "# medians: target shape writes/s p99_us"
python3 - "$tmp/runs" <<'EOF'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("#"): continue
    r, t, shape, tput, p50, p99, err = line.split()
    runs[(t, shape)].append((int(tput), int(p99)))
for (t, shape), v in runs.items():
    print(f"{t:15} {shape:5} {statistics.median(x for x, _ in v):>8.0f} {statistics.median(y for _, y in v):>7.0f}")
EOF
