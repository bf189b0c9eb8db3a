#!/usr/bin/env bash
# Screenshots of the demo's step-through player and of its SVG, for people
# (slides, docs, a quick look without a browser):
#
#   scripts/screenshots.sh [OUT_DIR]        # default: target/screenshots
#
# Needs headless Chromium (Debian: apt-get install chromium). Writes
# demo.html, demo.svg and the demo's trace (demo.txt), and four PNGs:
# the player at a GET miss whose request is in the kernel, at a PUT that
# waits for another proxy to confirm an invalidation, at the proxy's
# half-close, and the whole SVG.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/screenshots}
browser=${TABLECACHE_CHROMIUM:-chromium}
command -v "$browser" >/dev/null || { echo "screenshots: no $browser (apt-get install chromium)" >&2; exit 1; }
cargo build --release -q
mkdir -p "$out"
out=$(cd "$out" && pwd)
target/release/tablecache demo --trace --html "$out/demo.html" --svg "$out/demo.svg" > "$out/demo.txt"

# The player numbers events as the trace prints them, from 1.
grep -E '^ +[0-9]+\.[0-9]{3} ' "$out/demo.txt" > "$out/events.txt"
nth() { grep -n -m1 -E "$1" "$out/events.txt" | cut -d: -f1; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
shoot() { # NAME URL WIDTH HEIGHT
  "$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-quic \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size="$3,$4" \
    --screenshot="$out/$1.png" "$2" 2>/dev/null
  echo "$out/$1.png"
}

fetch=$(nth 'proxy +U +SEND +GET \(fetch\)')
shoot player-miss-in-flight "file://$out/demo.html#event=$((fetch + 1))" 1280 900
shoot player-put-waits-for-ack "file://$out/demo.html#event=$(nth 'server +1 +WAIT')" 1280 900
shoot player-half-close "file://$out/demo.html#event=$(nth 'proxy +0 +STATE +Open -> ReadClosed')" 1280 900
size=$(head -1 "$out/demo.svg" | grep -Eo 'width="[0-9]+" height="[0-9]+"' | grep -Eo '[0-9]+' | paste -sd' ')
read -r w h <<< "$size"
shoot demo-svg "file://$out/demo.svg" "$w" "$h"
