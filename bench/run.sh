#!/usr/bin/env bash
# The side-by-side benchmark: builds the Caddy of this checkout, a bare Caddy v2.11.9
# (bench/barecaddy) and one with mholt/caddy-ratelimit v0.1.0 (bench/caddyratelimit), each from
# its own Go module; starts what the configurations need (redis-server, a 3-master Redis Cluster,
# an upstream) on free loopback ports; runs wrk against every configuration interleaved with its
# baseline; prints a Markdown table. Everything started is stopped on exit.
#
#   bench/run.sh
#   ROUNDS=1 DURATION=1s CONFIGS="mem_admit mem_deny" OUT= bench/run.sh
#
# Settings (environment):
#   ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1   wrk runs (see bench/lib.sh)
#   WRK_CPUS= CADDY_CPUS=    CPU lists to pin wrk and the measured Caddy processes to
#                            (taskset -c); empty: not pinned
#   CONFIGS="..."            the configurations to measure (default: $DEFAULT_CONFIGS below;
#                            names in the catalogue); their baselines run with them
#   OUT=bench/results.md     where the table is written too (not committed); OUT= for none
#
# Every configuration is its own Caddy process serving bench/configs/<file>.caddyfile, so the
# CPU time per request and the RSS are its own. Each measured run sits between two runs of its
# baseline (base, X, base, Y, ...) and is compared with their mean; the table gives the median
# and the range over the rounds. Before measuring, every configuration must answer its expected
# status (the refusing ones 429) and show that its module acted (headers, Redis keys, a refused
# traversal); every wrk run must get only that status. Otherwise the script stops: figures of a
# configuration that did not do what it claims are worthless.
set -euo pipefail
cd "$(dirname "$0")/.."

# The catalogue: name, binary (ours = ./cmd/caddy, bare = bench/barecaddy, crl =
# bench/caddyratelimit), Caddyfile (bench/configs/<file>.caddyfile), baseline ("-": a baseline
# only), the status every request must get, and the label in the table. Measured in this order,
# which keeps configurations with the same baseline together.
catalogue() {
  cat <<'EOF'
bare           bare  bare           -            200  bare `respond` (Caddy v2.11.9)
proxy          bare  proxy          -            200  `reverse_proxy` alone (bare Caddy)
respond_503    bare  respond_503    -            503  bare `respond "…" 503`
ours_bare      ours  bare           bare         200  this checkout's build, bare `respond`
ours_proxy     ours  proxy          proxy        200  this checkout's build, `reverse_proxy` alone
ours_base      ours  bare           -            200  this checkout's build, bare `respond`
ours_proxy_base ours proxy          -            200  this checkout's build, `reverse_proxy` alone
ours_503_base  ours  respond_503    -            503  this checkout's build, bare `respond "…" 503`
path_guard     ours  path_guard     bare         200  `path_guard` + ip class (10,000 trusted addresses)
mem_admit      ours  mem_admit      bare         200  `policy_rate_limit` memory, admitting
mem_nohdr      ours  mem_nohdr      bare         200  `policy_rate_limit` memory, admitting, `headers off`
mem_deny       ours  mem_deny       bare         429  `policy_rate_limit` memory, denying
redis_admit    ours  redis_admit    bare         200  `policy_rate_limit` Redis, admitting (leases)
redis_exact    ours  redis_exact    bare         200  `policy_rate_limit` Redis, admitting, `leases off`
redis_deny     ours  redis_deny     bare         429  `policy_rate_limit` Redis, denying
cluster_admit  ours  cluster_admit  bare         200  `policy_rate_limit` Redis Cluster (3 masters), admitting (leases)
header         bare  header         bare         200  Caddy `header`, the 8 values of `security_headers`, static
header_uuid    bare  header_uuid    bare         200  Caddy `header`, the same with `{http.request.uuid}` as nonce
static_admit   bare  static_admit   bare         200  bare Caddy writing `mem_admit`'s response, static
static_deny    bare  static_deny    bare         429  bare Caddy writing `mem_deny`'s 429, static
static_open    bare  static_open    respond_503  503  bare Caddy writing the open breaker's 503, static
crl_bare       crl   bare           bare         200  caddy-ratelimit build, bare `respond`
crl_admit      crl   crl_admit      bare         200  caddy-ratelimit v0.1.0, admitting
crl_deny       crl   crl_deny       bare         429  caddy-ratelimit v0.1.0, denying
sechdr         ours  sechdr         header       200  `security_headers` (strict, fresh nonce)
sechdr_bare    ours  sechdr         bare         200  `security_headers` (strict, fresh nonce)
breaker_closed ours  breaker_closed proxy        200  `upstream_breaker` closed + `reverse_proxy`
full           ours  full           proxy        200  full stack: `path_guard`, `policy_rate_limit`, `security_headers`, `upstream_breaker` + `reverse_proxy`, `monitoring` mounted
breaker_open   ours  breaker_open   respond_503  503  `upstream_breaker` open: its 503 problem
mem_admit_own  ours  mem_admit      ours_base    200  `policy_rate_limit` memory, admitting (same build)
mem_deny_own   ours  mem_deny       ours_base    429  `policy_rate_limit` memory, denying (same build)
sechdr_own     ours  sechdr         ours_base    200  `security_headers` (strict, fresh nonce) (same build)
breaker_own    ours  breaker_closed ours_proxy_base 200  `upstream_breaker` closed + `reverse_proxy` (same build)
breaker_open_own ours breaker_open  ours_503_base 503  `upstream_breaker` open: its 503 problem (same build)
mem_admit_bytes ours mem_admit      static_admit 200  `policy_rate_limit` memory, admitting (over its bytes)
mem_deny_bytes ours  mem_deny       static_deny  429  `policy_rate_limit` memory, denying (over its bytes)
breaker_open_bytes ours breaker_open static_open 503  `upstream_breaker` open: its 503 problem (over its bytes)
EOF
}
DEFAULT_CONFIGS="path_guard mem_admit mem_deny redis_admit cluster_admit header crl_admit crl_deny sechdr sechdr_bare breaker_closed full breaker_open mem_admit_bytes mem_deny_bytes breaker_open_bytes"
case "${1:-}" in
  -h | --help)
    # The comment at the top of this file, then the catalogue.
    sed -n '2,/^set -euo pipefail$/p' bench/run.sh | sed -e '$d' -e 's/^# \{0,1\}//'
    echo
    echo "Configurations (CONFIGS=\"name ...\"; default: $DEFAULT_CONFIGS):"
    catalogue | awk '{ name = $1; $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); printf "  %-20s %s\n", name, $0 }'
    exit 0
    ;;
  "") ;;
  *)
    echo "bench/run.sh takes no arguments, only environment settings (ROUNDS=5 bench/run.sh); see bench/run.sh --help" >&2
    exit 2
    ;;
esac
. bench/lib.sh
CONFIGS=${CONFIGS:-$DEFAULT_CONFIGS}
OUT=${OUT-bench/results.md}
# Every configuration requests this path (path_guard checks it; the others ignore it).
URL_PATH=/api/v1/users/123

declare -A bin_of file_of base_of status_of label_of
order=()
while read -r name bin file base status label; do
  bin_of[$name]=$bin file_of[$name]=$file base_of[$name]=$base status_of[$name]=$status label_of[$name]=$label
  order+=("$name")
done < <(catalogue)

for name in $CONFIGS; do
  [ -n "${bin_of[$name]:-}" ] || { echo "unknown configuration $name; known: ${order[*]}" >&2; exit 1; }
done
# measured: the selected configurations in catalogue order; running: those and their baselines.
measured=() running=()
declare -A is_running
for name in "${order[@]}"; do
  [[ " $CONFIGS " == *" $name "* && ${base_of[$name]} != - ]] || continue
  measured+=("$name")
  for n in "$name" "${base_of[$name]}"; do
    [ -n "${is_running[$n]:-}" ] || { running+=("$n"); is_running[$n]=1; }
  done
done
[ ${#measured[@]} -gt 0 ] || { echo "no configuration to measure in CONFIGS=$CONFIGS" >&2; exit 1; }

# needs <VAR>: whether a running configuration's Caddyfile reads the environment variable VAR.
needs() {
  local n
  for n in "${running[@]}"; do grep -qF "{\$$1}" "bench/configs/${file_of[$n]}.caddyfile" && return 0; done
  return 1
}

# --- build --------------------------------------------------------------------------------------
declare -A built
# bare always: the header names its Caddy version, and the upstream is a bare Caddy.
for name in upstream "${running[@]}"; do
  bin=${bin_of[$name]:-bare}
  [ -z "${built[$bin]:-}" ] || continue
  built[$bin]=1
  case $bin in
  ours) echo "building ./cmd/caddy" >&2; go build -o "$tmp/ours" ./cmd/caddy ;;
  bare) echo "building bench/barecaddy" >&2; (cd bench/barecaddy && go build -o "$tmp/bare" .) ;;
  crl) echo "building bench/caddyratelimit" >&2; (cd bench/caddyratelimit && go build -o "$tmp/crl" .) ;;
  esac
done
# The baseline is Caddy itself: standard modules only, none of ours or caddy-ratelimit's.
if "$tmp/bare" list-modules | grep -q -e 'Non-standard modules' -e 'Unknown modules'; then
  echo "bench/barecaddy holds non-standard modules:" >&2; "$tmp/bare" list-modules >&2; exit 1
fi
caddy_version=$("$tmp/bare" version | awk '{print $1}')

# --- what the configurations need ---------------------------------------------------------------
# start_redis <port> [redis-server options...]: a redis-server on 127.0.0.1:port, ready.
start_redis() {
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no "$@" >"$tmp/redis-$port.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis-server did not start on $port" >&2; cat "$tmp/redis-$port.log" >&2; exit 1
}

# watch_redis <port>: records the commands a Redis server receives (redis-cli monitor) until
# the checks below have seen which policies reached it.
monitors=()
watch_redis() {
  redis-cli -p "$1" monitor >"$tmp/monitor-$1.log" 2>&1 &
  pids+=("$!")
  monitors+=("$!")
}

if needs REDIS || needs CLUSTER; then
  command -v redis-server >/dev/null || { echo "redis-server is not installed (Debian: apt-get install redis-server)" >&2; exit 1; }
fi
if needs REDIS; then
  redis_port=$(free_port)
  start_redis "$redis_port"
  watch_redis "$redis_port"
  export REDIS="redis://127.0.0.1:$redis_port"
fi
if needs CLUSTER; then
  cluster_ports=()
  for _ in 1 2 3; do
    port=$(free_cluster_port)
    mkdir -p "$tmp/cluster-$port"
    start_redis "$port" --cluster-enabled yes --dir "$tmp/cluster-$port" --cluster-config-file "$tmp/cluster-$port/nodes.conf"
    cluster_ports+=("$port")
  done
  CLUSTER=$(printf '127.0.0.1:%s ' "${cluster_ports[@]}")
  export CLUSTER=${CLUSTER% }
  # shellcheck disable=SC2086 # one argument per node
  redis-cli --cluster create $CLUSTER --cluster-replicas 0 --cluster-yes >"$tmp/cluster-create.log" 2>&1 ||
    { echo "redis-cli --cluster create failed" >&2; cat "$tmp/cluster-create.log" >&2; exit 1; }
  for port in "${cluster_ports[@]}"; do
    watch_redis "$port"
    for _ in $(seq 100); do redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' && break; sleep 0.1; done
    redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' || { echo "the cluster node on $port is not ok" >&2; exit 1; }
  done
fi
if needs BENCH_TRUSTED; then
  BENCH_TRUSTED=$(python3 -c 'print(" ".join("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(10000)))')
  export BENCH_TRUSTED
fi
export DEAD # a port where nothing listens
DEAD=$(free_port)

declare -A port_of pid_of
# serve <name> <binary> <caddyfile> [cpus]: runs a Caddy in the background on a free port,
# pinned to cpus when given.
serve() {
  local name=$1 port config="$PWD/bench/configs/$3.caddyfile"
  port=$(free_port)
  (cd "$tmp" && PORT=$port HOME="$tmp" XDG_DATA_HOME="$tmp/data-$name" XDG_CONFIG_HOME="$tmp/config-$name" \
    exec ${4:+taskset -c "$4"} "$tmp/$2" run --config "$config" --adapter caddyfile >"$tmp/$name.log" 2>&1) &
  pids+=("$!")
  port_of[$name]=$port pid_of[$name]=$!
}
if needs UPSTREAM; then
  serve upstream bare bare
  export UPSTREAM=${port_of[upstream]}
  wait_http "http://127.0.0.1:$UPSTREAM/" "$tmp/upstream.log"
fi
for name in "${running[@]}"; do serve "$name" "${bin_of[$name]}" "${file_of[$name]}" "$CADDY_CPUS"; done
url() { echo "http://127.0.0.1:${port_of[$1]}$URL_PATH"; }
for name in "${running[@]}"; do wait_http "$(url "$name")" "$tmp/$name.log"; done

# --- proof that each configuration does what it claims -----------------------------------------
fail() { echo "$1: $2" >&2; cat "$tmp/$1.log" >&2; exit 1; }
# The second request must get the configuration's status (the first one spends a refusing
# policy's burst or opens the breaker).
for name in "${running[@]}"; do
  curl -s -o /dev/null "$(url "$name")"
  code=$(curl -s -o /dev/null -w '%{http_code}' "$(url "$name")")
  [ "$code" = "${status_of[$name]}" ] || fail "$name" "answered $code, not ${status_of[$name]}"
done
header_of() { curl -s -D - -o /dev/null "$(url "$1")" | tr -d '\r' | awk -v h="$2" 'tolower($1) == tolower(h) ":" { sub(/^[^:]*: /, ""); print }'; }
# response_shape <name>: the response's header fields, sorted, without Date, and its body; every
# number as N (Retry-After and the RateLimit fields count down).
response_shape() { curl -s -D - "$(url "$1")" | tr -d '\r' | grep -v '^Date:' | sed -E 's/[0-9]+/N/g' | sort; }
for name in "${running[@]}"; do
  case $name in
  path_guard | full)
    code=$(curl -s --path-as-is -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port_of[$name]}/static/../../etc/passwd")
    [ "$code" = 400 ] || fail "$name" "a traversal answered $code, not 400" ;;&
  sechdr* | full)
    a=$(header_of "$name" Content-Security-Policy) b=$(header_of "$name" Content-Security-Policy)
    [[ $a == *"'nonce-"* && $a != "$b" ]] || fail "$name" "no fresh CSP nonce: '$a', then '$b'" ;;&
  header | header_uuid)
    [ -n "$(header_of "$name" Content-Security-Policy)" ] || fail "$name" "no Content-Security-Policy" ;;&
  mem_admit* | redis_admit | redis_exact | cluster_admit | full)
    [ -n "$(header_of "$name" RateLimit)" ] || fail "$name" "no RateLimit header field" ;;&
  redis_* | cluster_*) # its keys are `<prefix>{<policy>:<client>}`
    grep -qF "{$name:" "$tmp"/monitor-*.log || fail "$name" "no command for policy $name reached Redis" ;;&
  *_bytes) # the static baseline writes the same response: header fields and body, digits aside
    [ "$(response_shape "$name")" = "$(response_shape "${base_of[$name]}")" ] ||
      fail "$name" "${base_of[$name]} does not write the same response: $(diff <(response_shape "$name") <(response_shape "${base_of[$name]}"))" ;;&
  full)
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port_of[$name]}/api/monitoring/live")
    [ "$code" = 200 ] || fail "$name" "/api/monitoring/live answered $code" ;;&
  *) ;;
  esac
done

for p in "${monitors[@]}"; do kill "$p"; done

# --- measurement ---------------------------------------------------------------------------------
declare -A req_ratios cpu_ratios p99_ratios abs_req abs_cpu abs_p99
last="" # the configuration of the previous run, whose figures are in f_req f_cpu f_p99
# run <name>: one wrk run; its figures in f_req f_cpu f_p99. Stops unless every response had the
# configuration's status.
run() {
  local name=$1 n non2xx errors
  read -r f_req f_cpu f_p99 n non2xx errors < <(measure "${pid_of[$name]}" "$(url "$name")")
  if [ "${status_of[$name]}" = 200 ]; then
    [ "$non2xx" = 0 ] || fail "$name" "$non2xx of $n responses were not 2xx"
  else
    [ "$non2xx" = "$n" ] || fail "$name" "only $non2xx of $n responses were ${status_of[$name]}"
  fi
  [ "$errors" = 0 ] || echo "warning: $name: $errors socket errors" >&2
  abs_req[$name]+="$f_req " abs_cpu[$name]+="$f_cpu " abs_p99[$name]+="$f_p99 "
  last=$name
}
ratio() { awk -v x="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.3f", x / ((a + b) / 2) }'; }

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds: ${measured[*]}" >&2
started=$SECONDS
for r in $(seq "$ROUNDS"); do
  for x in "${measured[@]}"; do
    base=${base_of[$x]}
    [ "$last" = "$base" ] || run "$base"
    b_req=$f_req b_cpu=$f_cpu b_p99=$f_p99
    run "$x"
    x_req=$f_req x_cpu=$f_cpu x_p99=$f_p99
    run "$base"
    rr=$(ratio "$x_req" "$b_req" "$f_req") cr=$(ratio "$x_cpu" "$b_cpu" "$f_cpu") pr=$(ratio "$x_p99" "$b_p99" "$f_p99")
    req_ratios[$x]+="$rr " cpu_ratios[$x]+="$cr " p99_ratios[$x]+="$pr "
    printf 'round %d %-15s %7.0f req/s %6.1f µs/req p99 %7.0f µs | %s %7.0f %7.0f req/s | ratios req/s %s CPU/req %s p99 %s\n' \
      "$r" "$x" "$x_req" "$x_cpu" "$x_p99" "$base" "$b_req" "$f_req" "$rr" "$cr" "$pr" >&2
  done
done
echo "measured in $((SECONDS - started)) s" >&2

# --- table ---------------------------------------------------------------------------------------
# cell <numbers>: "median (min–max)" with the given printf format.
cell() {
  local m lo hi
  read -r m lo hi < <(echo "$2" | stats)
  # shellcheck disable=SC2059 # the format is the argument
  printf "$1 ($1–$1)" "$m" "$lo" "$hi"
}
table() {
  local name base
  echo "Machine: $(machine); Caddy $caddy_version. wrk -t$THREADS -c$CONNECTIONS -d$DURATION on loopback${WRK_CPUS:+, wrk on CPU $WRK_CPUS}${CADDY_CPUS:+, Caddy on CPU $CADDY_CPUS}; rounds: $ROUNDS, each run between two of its baseline. $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo
  echo "| configuration | compared with | req/s ratio median (min–max) | p99 ratio median (min–max) | CPU/request ratio median (min–max) | RSS MiB (anonymous) |"
  echo "|---|---|---|---|---|---|"
  for name in "${measured[@]}"; do
    base=${base_of[$name]}
    echo "| ${label_of[$name]} | ${label_of[$base]} | $(cell %.3f "${req_ratios[$name]}") | $(cell %.3f "${p99_ratios[$name]}") | $(cell %.3f "${cpu_ratios[$name]}") | $(rss_mib "${pid_of[$name]}") |"
  done
  echo
  echo "| baseline, all its runs | req/s median (min–max) | p99 µs median (min–max) | CPU µs/request median (min–max) | RSS MiB (anonymous) |"
  echo "|---|---|---|---|---|"
  for name in "${order[@]}"; do
    is_base "$name" || continue
    echo "| ${label_of[$name]} | $(cell %.0f "${abs_req[$name]}") | $(cell %.0f "${abs_p99[$name]}") | $(cell %.1f "${abs_cpu[$name]}") | $(rss_mib "${pid_of[$name]}") |"
  done
}
# is_base <name>: whether a measured configuration uses name as its baseline.
is_base() {
  local x
  for x in "${measured[@]}"; do [ "${base_of[$x]}" = "$1" ] && return 0; done
  return 1
}
table >"$tmp/table.md"
echo >&2
cat "$tmp/table.md"
if [ -n "$OUT" ]; then cp "$tmp/table.md" "$OUT" && echo "written to $OUT" >&2; fi
