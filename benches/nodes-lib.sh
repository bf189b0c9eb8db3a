# Sourced by benches/ab.sh and benches/cpu.sh: a scratch directory, the
# nodes started in it, and their cleanup at exit.
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# Starts a node in the background (default flags, --log-level warn, a free
# port); its address is left in $addr, its pid last in $pids.
start() { # bin name args...
  local bin=$1 name=$2; shift 2
  "$bin" "$@" --listen 127.0.0.1:0 --log-level warn >"$tmp/$name" 2>/dev/null &
  pids+=($!)
  until grep -qs listening "$tmp/$name"; do sleep 0.05; done
  addr=$(sed 's/listening on //' "$tmp/$name")
}
