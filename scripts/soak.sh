#!/usr/bin/env bash
# A long run under faults, every operation recorded and checked:
#
#   scripts/soak.sh [--ops N] [--seed S] [--proxies 3] [--faults F] [--out DIR]
#
# A durable server, proxies each behind a `tablecache link`, clients
# through the proxies and straight to the server; faults from the seed's
# schedule (kill -9 and restart of the server, SIGSTOP/SIGCONT of a proxy,
# a link blackholed, cut one way, slowed, reset). Then the history
# (DIR/history.jsonl, one operation a line) is checked: linearizable over
# the whole table, each connection in order, no acknowledged write lost.
# Exit 0 when it checks; docs/testing.md ("Soak") records long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
exec target/release/tablecache soak "$@"
