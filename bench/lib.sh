# Shared by the bench/*.sh scripts: build the Caddy of this checkout, start it, run wrk against
# its sites in interleaved rounds and compare. Source it from a script that set `set -euo
# pipefail` and cd'd to the repository root.
#
# Settings (environment): DURATION=10s ROUNDS=3 CONNECTIONS=32 THREADS=1
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
command -v wrk >/dev/null || { echo "wrk is not installed (Debian: apt-get install wrk)"; exit 1; }

tmp=$(mktemp -d)
pids=()
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap bench_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

build_caddy() {
  echo "building ./cmd/caddy"
  go build -o "$tmp/caddy" ./cmd/caddy
}

# start_caddy <name> <caddyfile in $tmp>: runs Caddy in the background; its pid in $last_pid.
start_caddy() {
  (cd "$tmp" && HOME="$tmp" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
    exec ./caddy run --config "$2" --adapter caddyfile >"$tmp/$1.log" 2>&1) &
  last_pid=$!
  pids+=("$last_pid")
}

wait_http() {
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1"; cat "$tmp"/*.log; exit 1
}

# run <label> <url> [wrk args...]: one wrk run; appends "label req/s us-CPU/request" to
# $tmp/results, the CPU being that of the process $measured_pid (user + system time).
run() {
  local label=$1 url=$2; shift 2
  local hz before after out rps reqs cpu
  hz=$(getconf CLK_TCK)
  before=$(awk '{print $14 + $15}' "/proc/$measured_pid/stat")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" "$url")
  after=$(awk '{print $14 + $15}' "/proc/$measured_pid/stat")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v a="$after" -v b="$before" -v n="$reqs" -v hz="$hz" 'BEGIN {printf "%.2f", (a-b)/hz*1e6/n}')
  printf '%-20s %10s req/s  %6s us CPU/request\n' "$label" "$rps" "$cpu"
  echo "$label $rps $cpu" >>"$tmp/results"
}

# compare <label> <baseline label> <target>: mean throughput and CPU/request ratios.
compare() {
  awk -v x="$1" -v base="$2" -v target="$3" '
    { rps[$1] += $2; cpu[$1] += $3; n[$1]++ }
    END {
      printf "%-20s / %-12s throughput %.3f (target %s), CPU/request %.3f\n", x, base,
        (rps[x] / n[x]) / (rps[base] / n[base]), target, (cpu[x] / n[x]) / (cpu[base] / n[base])
    }' "$tmp/results"
}

bench_header() {
  echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds; $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(go version | awk '{print $3}')"
}
