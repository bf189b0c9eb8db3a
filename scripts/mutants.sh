#!/usr/bin/env bash
# Mutation testing with cargo-mutants: each mutant of a file is built and
# tested, and the score is (caught + timed out) / viable. A habit before a
# big change lands, like `duplicates`; not in CI (it takes long).
#
# Usage: scripts/mutants.sh [FILE...]
#   default: the pure modules (framing, protocol, table, buffer, cache).
# A pure module's mutants run only the library's unit tests (seconds per
# mutant); any other file's run the whole suite (a minute or more each).
# Needs `cargo install cargo-mutants`. Exclusions with their reasons:
# .cargo/mutants.toml. Results per file under target/mutants/<file>/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || { echo "needs: cargo install cargo-mutants" >&2; exit 2; }
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(src/framing.rs src/proto/parse.rs src/proto/encode.rs src/table.rs src/buffer.rs
         src/cache/fifo.rs src/cache/lru.rs src/cache/clock.rs src/cache/sieve.rs src/cache/s3fifo.rs src/cache/list.rs)
fi
printf '%-28s %8s %8s %8s %8s %7s\n' file caught timeout missed unviable score
for f in "${files[@]}"; do
  out="target/mutants/$(echo "$f" | tr / _)"
  mkdir -p "$out"
  case "$f" in
    src/framing.rs|src/proto/*|src/table.rs|src/buffer.rs|src/cache/*|src/sim.rs|src/bench/wire.rs|src/bench/plot.rs|src/store/record.rs|src/trace/line.rs|src/trace/diagram.rs|src/trace/merge.rs|src/trace/svg.rs) extra=(-- --lib) ;;
    *) extra=() ;;
  esac
  cargo mutants --file "$f" --jobs 1 --timeout 120 --output "$out" "${extra[@]}" >/dev/null 2>&1 || true
  n() { if [ -f "$out/mutants.out/$1.txt" ]; then wc -l < "$out/mutants.out/$1.txt" | tr -d ' '; else echo 0; fi; }
  c=$(n caught); t=$(n timeout); m=$(n missed); u=$(n unviable)
  v=$((c + t + m))
  score=$([ "$v" -gt 0 ] && echo "$(( 100 * (c + t) / v ))%" || echo "-")
  printf '%-28s %8s %8s %8s %8s %7s\n' "$f" "$c" "$t" "$m" "$u" "$score"
done
echo "survivors: target/mutants/<file>/mutants.out/missed.txt"
