# Shared by the bench/*.sh scripts: build the Caddy of this checkout, start it, and compare
# configurations with wrk in interleaved runs. Source it from a script that set
# `set -euo pipefail` and cd'd to the repository root.
#
# The machine may be shared and noisy, so every measured run of a configuration sits between two
# runs of its baseline (base, X, base, Y, base, ...) and is compared with the mean of those two.
# Besides req/s, the measured Caddy's CPU time per request (user + system, from
# /proc/<pid>/stat) is compared: other load disturbs it less. The CPU ratio is printed as
# baseline CPU / configuration CPU, i.e. the throughput ratio on an otherwise idle CPU; the p99
# ratio is configuration p99 / baseline p99 (wrk --latency).
# Medians over the rounds are printed at the end.
#
# Settings (environment): ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-16}
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

# measure <url> [wrk args...]: prints "<req/s> <CPU us per request> <p99 latency in us>" of the
# Caddy serving url: $measured_pid, or the pid a script's pid_for_url function returns (scripts
# that run one Caddy process per configuration define it).
measure() {
  local url=$1; shift
  local hz before out reqs after pid=${measured_pid:-}
  if declare -F pid_for_url >/dev/null; then pid=$(pid_for_url "$url"); fi
  hz=$(getconf CLK_TCK)
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" "$url")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk -v a="$after" -v b="$before" -v n="$reqs" -v hz="$hz" 'BEGIN {printf "%.2f", (a-b)/hz*1e6/n}') $(awk '$1 == "99%" {print to_us($2)} function to_us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1000000; return v }' <<<"$out")"
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

bench_header() {
  echo "$(go version | awk '{print $3}'), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores; wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds"
}

# interleave <baseline name> <baseline url> <name> <url> [<name> <url>...]: runs ROUNDS rounds
# of base, X, base, Y, base ... and prints each run and the median ratios to the baseline.
# wrk arguments can be given in WRK_ARGS (an array) before the call.
interleave() {
  local base=$1 base_url=$2; shift 2
  local -a names=() urls=()
  while [ $# -gt 0 ]; do names+=("$1"); urls+=("$2"); shift 2; done
  local -A ratios=() cpuratios=() p99ratios=()
  local prev prevcpu prevp99 x xcpu xp99 next nextcpu nextp99 ratio cpuratio p99ratio i r
  read -r prev prevcpu prevp99 < <(measure "$base_url" "${WRK_ARGS[@]}")
  for r in $(seq "$ROUNDS"); do
    for i in "${!names[@]}"; do
      read -r x xcpu xp99 < <(measure "${urls[$i]}" "${WRK_ARGS[@]}")
      read -r next nextcpu nextp99 < <(measure "$base_url" "${WRK_ARGS[@]}")
      ratio=$(awk -v x="$x" -v a="$prev" -v b="$next" 'BEGIN { printf "%.3f", x / ((a + b) / 2) }')
      cpuratio=$(awk -v x="$xcpu" -v a="$prevcpu" -v b="$nextcpu" 'BEGIN { printf "%.3f", ((a + b) / 2) / x }')
      p99ratio=$(awk -v x="$xp99" -v a="$prevp99" -v b="$nextp99" 'BEGIN { printf "%.3f", x / ((a + b) / 2) }')
      printf 'round %d  %-16s %8.0f req/s %6.1f us/req p99 %6.0f us   %s around it %8.0f %8.0f req/s   ratio req/s %s  cpu %s  p99 %s\n' \
        "$r" "${names[$i]}" "$x" "$xcpu" "$xp99" "$base" "$prev" "$next" "$ratio" "$cpuratio" "$p99ratio"
      ratios[${names[$i]}]+="$ratio "
      cpuratios[${names[$i]}]+="$cpuratio "
      p99ratios[${names[$i]}]+="$p99ratio "
      prev=$next prevcpu=$nextcpu prevp99=$nextp99
    done
  done
  echo
  for i in "${!names[@]}"; do
    printf '%-16s median ratio to %s: req/s %s, cpu per request %s, p99 latency %s (x/base)\n' "${names[$i]}" "$base" \
      "$(echo "${ratios[${names[$i]}]}" | median)" "$(echo "${cpuratios[${names[$i]}]}" | median)" "$(echo "${p99ratios[${names[$i]}]}" | median)"
  done
}
WRK_ARGS=()
