#!/usr/bin/env bash
# upstream_breaker overhead, measured with wrk against one Caddy built from this checkout:
#   closed: reverse_proxy alone vs upstream_breaker + reverse_proxy (target >= 0.97)
#   open:   bare `respond` (503) vs an open upstream_breaker's 503 problem (target >= 1.0)
# Runs are interleaved (bare, breaker, bare, breaker, ...) against the same process, so both
# sides see the same machine noise. Besides req/s it prints the proxy's CPU time per request
# (from /proc/<pid>/stat), steadier than req/s on a shared machine.
#
# Usage: bench/breaker.sh            (DURATION=10s ROUNDS=4 CONNECTIONS=32 THREADS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-4}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
command -v wrk >/dev/null || { echo "wrk is not installed (Debian: apt-get install wrk)"; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

echo "building ./cmd/caddy"
go build -o "$tmp/caddy" ./cmd/caddy

up=$(free_port); dead=$(free_port); admin1=$(free_port); admin2=$(free_port)
proxy=$(free_port); guarded=$(free_port); bare=$(free_port); open=$(free_port)

# The upstream: a separate Caddy answering 200 "ok".
cat >"$tmp/upstream.caddyfile" <<EOF
{
	admin 127.0.0.1:$admin1
}
http://127.0.0.1:$up {
	bind 127.0.0.1
	respond "ok"
}
EOF

# The measured Caddy: one site per configuration.
cat >"$tmp/edge.caddyfile" <<EOF
{
	admin 127.0.0.1:$admin2
	hardening {
		environment development
	}
}
http://127.0.0.1:$proxy {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$up
}
http://127.0.0.1:$guarded {
	bind 127.0.0.1
	upstream_breaker bench_closed
	reverse_proxy 127.0.0.1:$up
}
http://127.0.0.1:$bare {
	bind 127.0.0.1
	respond "service unavailable" 503
}
http://127.0.0.1:$open {
	bind 127.0.0.1
	upstream_breaker bench_open {
		consecutive_failures 1
		open_for 1h
	}
	reverse_proxy 127.0.0.1:$dead
}
EOF

start() { # name caddyfile; the process id is appended to pids
  (cd "$tmp" && HOME="$tmp" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
    exec ./caddy run --config "$2" --adapter caddyfile >"$tmp/$1.log" 2>&1) &
  pids+=($!)
}
wait_http() {
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1"; cat "$tmp"/*.log; exit 1
}
start upstream upstream.caddyfile
start edge edge.caddyfile
wait_http "http://127.0.0.1:$up/"
wait_http "http://127.0.0.1:$proxy/"
edge_pid=${pids[1]}

# Trip the open breaker: one refused dial.
curl -s -o /dev/null "http://127.0.0.1:$open/"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$open/")
[ "$code" = 503 ] || { echo "the open breaker answered $code"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$edge_pid/stat"; }
hz=$(getconf CLK_TCK)

# run <label> <port>: appends "label rps us_cpu_per_request" to $tmp/results
run() {
  local before after out rps reqs
  before=$(cpu_ticks)
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$2/")
  after=$(cpu_ticks)
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  local cpu
  cpu=$(awk -v a="$after" -v b="$before" -v n="$reqs" -v hz="$hz" 'BEGIN {printf "%.2f", (a-b)/hz*1e6/n}')
  printf '%-16s %10s req/s  %6s us CPU/request\n' "$1" "$rps" "$cpu"
  echo "$1 $rps $cpu" >>"$tmp/results"
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds; $(nproc) cores, $(go version | awk '{print $3}')"
# ABBA order: each side runs first in half the rounds, so drift does not favour one.
for i in $(seq "$ROUNDS"); do
  if (( i % 2 )); then
    run proxy "$proxy"; run breaker_closed "$guarded"
    run respond_503 "$bare"; run breaker_open "$open"
  else
    run breaker_closed "$guarded"; run proxy "$proxy"
    run breaker_open "$open"; run respond_503 "$bare"
  fi
done

# Per-round ratios (each round's pair ran back to back), then their medians.
awk '
  { r[$1, ++k[$1]] = $2; c[$1, k[$1]] = $3 }
  END {
    for (i = 1; i <= k["proxy"]; i++) {
      printf "round %d: closed %.3f (CPU %.3f)  open %.3f (CPU %.3f)\n", i,
        r["breaker_closed", i] / r["proxy", i], c["breaker_closed", i] / c["proxy", i],
        r["breaker_open", i] / r["respond_503", i], c["breaker_open", i] / c["respond_503", i]
    }
  }' "$tmp/results"
awk '
  { rps[$1] += $2; cpu[$1] += $3; n[$1]++ }
  END {
    for (k in n) { rps[k] /= n[k]; cpu[k] /= n[k] }
    printf "\nmeans:\nclosed: breaker_closed / proxy      throughput %.3f (target >= 0.97), CPU/request %.3f\n", rps["breaker_closed"] / rps["proxy"], cpu["breaker_closed"] / cpu["proxy"]
    printf "open:   breaker_open / respond_503   throughput %.3f (target >= 1.0),  CPU/request %.3f\n", rps["breaker_open"] / rps["respond_503"], cpu["breaker_open"] / cpu["respond_503"]
  }' "$tmp/results"
