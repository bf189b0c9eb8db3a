#!/usr/bin/env bash
# Mutation testing with cargo-mutants: each mutant of a file is built and
# tested, and the score is (caught + timed out) / viable. A habit before a
# big change lands, like `duplicates`; not in CI (it takes long).
#
# Usage: scripts/mutants.sh pure|nodes|FILE...
#   pure   the pure modules (framing, protocol, table, buffer, cache and
#          policies), on the library's unit tests: what they pin down.
#   nodes  every file under src/proxy and src/server, on the whole suite
#          (cargo-nextest, stopping at the first failure).
#   FILE   the files given (a pure module on the unit tests, any other on
#          the whole suite).
# One cargo-mutants run per group (the dependencies build once), then a
# score per file. Add --iterate after the group to retest only what was
# not caught last time (a run cut short resumes so).
# Needs `cargo install cargo-mutants` (and cargo-nextest for the nodes).
# Exclusions with their reasons: .cargo/mutants.toml. Results under
# target/mutants/<group>/mutants.out/ (missed.txt lists the survivors).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || { echo "needs: cargo install cargo-mutants" >&2; exit 2; }

pure=(src/framing.rs src/proto/mod.rs src/proto/parse.rs src/proto/fast.rs src/proto/encode.rs src/table.rs src/buffer.rs
      src/cache/mod.rs src/cache/list.rs src/cache/fifo.rs src/cache/lru.rs src/cache/clock.rs
      src/cache/sieve.rs src/cache/s3fifo.rs)
is_pure() {
  case "$1" in
    src/framing.rs|src/proto/*|src/table.rs|src/buffer.rs|src/cache/*|src/sim.rs|src/bench/wire.rs|src/bench/keys.rs|src/bench/plot.rs|src/store/record.rs|src/store/manifest.rs|src/store/snapshot.rs|src/trace/line.rs|src/trace/diagram.rs|src/trace/merge.rs|src/trace/svg.rs|src/trace/lanes.rs|src/trace/replay.rs|src/trace/place.rs|src/trace/emitters.rs|src/trace/html.rs|src/link/pipe.rs|src/link/control.rs|src/check/linear.rs|src/check/search.rs|src/check/lost.rs|src/check/mod.rs) return 0 ;;
    src/peer.rs|src/units.rs|src/client/command.rs|src/proxy/lease/mod.rs|src/proxy/lease/answer.rs|src/proxy/upstream/pace.rs|src/proxy/upstream/outbox.rs|src/proxy/counters.rs|src/proxy/reads/*|src/proxy/pool.rs|src/server/leases/mod.rs|src/server/leases/parking.rs|src/server/holder.rs|src/server/backlog.rs|src/server/departed.rs|src/frontend/fds.rs) return 0 ;;
    *) return 1 ;;
  esac
}

# Options (--iterate...) may come anywhere; the rest is the group or files.
extra=()
args_in=()
for a in "$@"; do
  case "$a" in --*) extra+=("$a") ;; *) args_in+=("$a") ;; esac
done
group=${args_in[0]:-pure}
case "$group" in
  pure) files=("${pure[@]}") ;;
  nodes) mapfile -t files < <(ls src/proxy/*.rs src/proxy/upstream/*.rs src/server/*.rs) ;;
  *) files=("${args_in[@]}"); group=$(echo "$group" | tr / _) ;;
esac

all_pure=1
for f in "${files[@]}"; do is_pure "$f" || all_pure=0; done
args=(--jobs 1 --output "target/mutants/$group")
for f in "${files[@]}"; do args+=(--file "$f"); done
if [ $all_pure -eq 1 ]; then
  # --lib for the build too: only the unit tests are built per mutant.
  args+=(--timeout 20 -C --lib "${extra[@]}")
else
  # The whole suite, stopping at the first failing test; a hung test is
  # ended by the `mutants` profile in .config/nextest.toml.
  command -v cargo-nextest >/dev/null || { echo "needs: cargo install cargo-nextest" >&2; exit 2; }
  args+=(--test-tool nextest --timeout 300 "${extra[@]}" -- --profile mutants)
  # The tests' bound on any wait (20 s by default): a mutant that hangs a
  # test fails it sooner. The baseline run checks the suite passes with it.
  export TABLECACHE_TEST_PATIENCE_MS=${TABLECACHE_TEST_PATIENCE_MS:-8000}
fi
mkdir -p "target/mutants/$group"
cargo mutants "${args[@]}" >"target/mutants/$group/run.log" 2>&1 || true

out="target/mutants/$group/mutants.out"
n() { if [ -f "$out/$1.txt" ]; then grep -c "^$2:" "$out/$1.txt" || true; else echo 0; fi; }
printf '%-30s %7s %8s %7s %9s %7s\n' file caught timeout missed unviable score
for f in "${files[@]}"; do
  # With --iterate, what earlier runs caught is listed apart (and not
  # retested): it counts as caught.
  c=$(( $(n caught "$f") + $(n previously_caught "$f") )); t=$(n timeout "$f"); m=$(n missed "$f"); u=$(n unviable "$f")
  v=$((c + t + m))
  score=$([ "$v" -gt 0 ] && echo "$(( 100 * (c + t) / v ))%" || echo "-")
  printf '%-30s %7s %8s %7s %9s %7s\n' "$f" "$c" "$t" "$m" "$u" "$score"
done
echo "survivors: $out/missed.txt"
