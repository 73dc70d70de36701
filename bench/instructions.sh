#!/usr/bin/env bash
# Instructions per request: each configuration's Caddy runs under valgrind's callgrind, gets
# 1,000 requests to warm up, has its counters zeroed, serves N sequential requests over one
# keep-alive connection (bench/instrclient), and the user-space instructions it executed are
# divided by N. Counted instructions depend little on what else the machine is doing: two
# runs agree within 1-2 % (the garbage collector is paced by wall-clock time) where wrk's req/s
# on a shared VM spread by ±5-10 %; they leave
# out the kernel's work (the socket reads and writes), so a ratio here is larger than the
# same ratio in throughput. Use it to see what a change costs; use bench/run.sh for the
# throughput the issues' targets are about.
#
#   bench/instructions.sh
#   CONFIGS="bare mem_deny" N=20000 bench/instructions.sh
#
# Settings (environment): N=10000; CONFIGS (names of bench/configs/<name>.caddyfile, default
# below); each runs on this checkout's build, and `bare` and the static_* configurations also
# on bench/barecaddy's. Configurations that proxy (`proxy`, `breaker_closed`, `full`) get an
# upstream, a bare Caddy answering "ok" outside valgrind; compare them with `proxy`, which runs
# on this checkout's build: CONFIGS="proxy breaker_closed" bench/instructions.sh Needs valgrind (Debian: apt-get install valgrind). Go's asynchronous
# preemption is turned off (GODEBUG=asyncpreemptoff=1) and GOMAXPROCS=1: callgrind stops on
# the runtime's preemption signals otherwise. cpu.rdtscp=off keeps Go's runtime.cputicks off
# RDTSCP, which valgrind 3.19 does not know (SIGILL under lock contention).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (Debian: apt-get install valgrind)" >&2; exit 1; }
N=${N:-10000}
CONFIGS=${CONFIGS:-"bare mem_admit mem_deny static_deny sechdr header"}

tmp=$(mktemp -d)
pid=
upstream=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$upstream" ] && kill "$upstream" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "building ./cmd/caddy, bench/barecaddy and bench/instrclient" >&2
go build -o "$tmp/ours" ./cmd/caddy
(cd bench/barecaddy && go build -o "$tmp/bare" .)
go build -o "$tmp/client" ./bench/instrclient

# free_port: a free loopback port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Configurations that proxy (proxy, breaker_closed, full) need an upstream on {$UPSTREAM}: bare
# Caddy answering "ok", started once, outside valgrind (its instructions are not counted).
if grep -qF '{$UPSTREAM}' $(for c in $CONFIGS; do echo "bench/configs/$c.caddyfile"; done); then
  UPSTREAM=$(free_port)
  export UPSTREAM
  PORT=$UPSTREAM "$tmp/bare" run --config bench/configs/bare.caddyfile --adapter caddyfile >"$tmp/upstream.log" 2>&1 &
  upstream=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UPSTREAM/" && break; sleep 0.1; done
fi

# breaker_open's upstream is a port where nothing listens: the first refused dial opens it.
DEAD=$(free_port)
export DEAD

# status <config>: what every request to it must get.
status() {
  case $1 in
  *deny) echo 429 ;;
  *503 | *open) echo 503 ;;
  *) echo 200 ;;
  esac
}

# count <binary> <config>: instructions per request.
count() {
  local bin=$1 cfg=$2 port out st
  port=$(free_port)
  out="$tmp/callgrind.$cfg.$(basename "$bin")"
  st=$(status "$cfg")
  PORT=$port GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off${GODEBUG:+,$GODEBUG} GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$bin" run --config "bench/configs/$cfg.caddyfile" --adapter caddyfile >"$tmp/$cfg.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
  "$tmp/client" "http://127.0.0.1:$port/api/v1/users/123" 1000 "$st"
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$tmp/client" "http://127.0.0.1:$port/api/v1/users/123" "$N" "$st"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  callgrind_annotate "$out".1 2>/dev/null | awk -v n="$N" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%d\n", $1 / n }'
}

base=$(count "$tmp/bare" bare)
echo "| configuration | build | instructions per request | ratio to bare Caddy's \`respond\` |"
echo "|---|---|---|---|"
echo "| bare | bare Caddy | $base | 1.000 |"
for cfg in $CONFIGS; do
  builds="ours"
  case $cfg in bare) builds="ours" ;; static_* | header | header_uuid | respond_503) builds="bare" ;; esac
  for b in $builds; do
    n=$(count "$tmp/$b" "$cfg")
    label="this checkout"; [ "$b" = bare ] && label="bare Caddy"
    echo "| $cfg | $label | $n | $(python3 -c "print(f'{$n/$base:.3f}')") |"
  done
done
