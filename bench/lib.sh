# shellcheck shell=bash
# Shared by the bench scripts: settings, a temporary directory and the processes to stop on
# exit, free ports, one measured wrk run, statistics. Source it from a script that set
# `set -euo pipefail` and cd'd to the repository root.
#
# Settings (environment): ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1 WRK_CPUS= CADDY_CPUS=
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
# CPU lists (taskset -c) for wrk and for the measured Caddy processes; empty: not pinned.
WRK_CPUS=${WRK_CPUS:-}
CADDY_CPUS=${CADDY_CPUS:-}
# pinned <cpus> <command...>: runs the command on those CPUs, or unpinned when cpus is empty.
pinned() {
  local cpus=$1; shift
  if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
command -v wrk >/dev/null || { echo "wrk is not installed (Debian: apt-get install wrk)" >&2; exit 1; }

tmp=$(mktemp -d)
pids=() # every process a script starts, stopped on exit
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# free_cluster_port: a free port P with P+10000 free too (a Redis Cluster node's bus port), so
# P <= 55535.
free_cluster_port() {
  python3 -c '
import random, socket
while True:
    p = random.randint(20000, 55535)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p); break'
}

# wait_http <url> <log>: waits up to 10 s for any HTTP answer; prints the log and exits if none.
wait_http() {
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; cat "$2" >&2; exit 1
}

# measure <pid> <url>: one wrk run against url. Prints
#   <req/s> <CPU µs per request> <p99 µs> <requests> <non-2xx responses> <socket errors>
# where the CPU time (user + system, all threads) is the process pid's during the run.
measure() {
  local pid=$1 url=$2 hz before after out
  hz=$(getconf CLK_TCK)
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(pinned "$WRK_CPUS" wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$url")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  awk -v cpu="$((after - before))" -v hz="$hz" '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1000000; return v }
    /requests in/ { n = $1 }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "99%" { p99 = us($2) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(/,/, ""); errors = $4 + $6 + $8 + $10 }
    END { printf "%s %.2f %s %d %d %d\n", rps, cpu / hz * 1e6 / n, p99, n, non2xx, errors }' <<<"$out"
}

# stats: the numbers on standard input (any blank-separated layout) as "<median> <min> <max>".
stats() {
  tr -s ' \n' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    print m, a[1], a[NR] }'
}

# rss_mib <pid>: the resident set (VmRSS) of a process in MiB, then its anonymous part
# (RssAnon: heap, stacks; the rest is the binary's pages, shared page cache that a larger binary
# and a freshly written file inflate).
rss_mib() { awk '/^VmRSS:/ {t = $2} /^RssAnon:/ {a = $2} END {printf "%.1f (%.1f)", t / 1024, a / 1024}' "/proc/$1/status"; }

# machine: CPU model, cores, Go version.
machine() {
  echo "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores, $(go version | awk '{print $3}')"
}
