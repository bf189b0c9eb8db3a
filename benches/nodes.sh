# Sourced by the bench scripts: start tablecache nodes in the background on
# free ports and stop them. Needs $BIN (the binary) and $tmp (a directory);
# leaves each node's address in $addr and its pid in the array pids.
pids=()
start() { # name args...
  local name=$1; shift
  "$BIN" "$@" --listen 127.0.0.1:0 --log-level warn >"$tmp/$name" 2>/dev/null &
  pids+=($!)
  until grep -qs listening "$tmp/$name"; do sleep 0.05; done
  addr=$(sed 's/listening on //' "$tmp/$name")
}
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
