#!/usr/bin/env bash
# policy_rate_limit cost, measured with wrk against bare `respond` of the Caddy built from this
# checkout, and compared with github.com/mholt/caddy-ratelimit v0.1.0 (built from the separate
# module bench/caddyratelimit, so caddy-hardening does not depend on it):
#
#   mem_admit    policy_rate_limit, memory store, a limit never reached
#   mem_nohdr    the same with `headers off` (the decision without the two header fields)
#   mem_deny     policy_rate_limit, memory store, every request but the first denied
#   redis_admit  policy_rate_limit, Redis store (a redis-server started here), never reached;
#                the key's burst is large, so it leases 1 % of it at a time (see README)
#   redis_exact  the same with `leases off`: one Redis decision per request
#   redis_deny   policy_rate_limit, Redis store, every request but the first denied
#   crl_bare     Caddy + caddy-ratelimit, bare `respond` (the RSS reference of that binary)
#   crl_admit    caddy-ratelimit's rate_limit, a zone never full
#   crl_deny     caddy-ratelimit's rate_limit, every request but the first denied
#
# Every configuration is its own Caddy process, so the CPU per request and the RSS printed after
# the runs are its own (target for policy_rate_limit: RSS <= bare + 10 MiB). All requests come
# from 127.0.0.1, i.e. one key: this measures the decision, not a growing key table. Runs are
# interleaved with the baseline (see bench/lib.sh). After the runs, a short wrk run per
# configuration checks that the admitting ones denied nothing and the denying ones denied.
#
# Usage: bench/ratelimit.sh     (ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1)
#        CONFIGS="crl_bare crl_admit crl_deny" bench/ratelimit.sh   runs a subset
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
CONFIGS=${CONFIGS:-mem_admit mem_nohdr mem_deny redis_admit redis_exact redis_deny crl_bare crl_admit crl_deny}
selected() { [[ " $CONFIGS " == *" $1 "* ]]; }

build_caddy
echo "building bench/caddyratelimit"
(cd bench/caddyratelimit && go build -o "$tmp/caddy-ratelimit" .)

# Each configuration has its own process: lib.sh's measure asks pid_for_url whose CPU to read.
declare -A port pid_of
pid_for_url() {
  local p=${1#http://127.0.0.1:}
  echo "${pid_of[${p%%/*}]}"
}

# serve <name> <binary>: runs the Caddyfile on standard input in its own process, which serves
# ${port[name]}.
serve() {
  local name=$1 bin=$2
  cat >"$tmp/$name.caddyfile"
  (cd "$tmp" && HOME="$tmp" XDG_DATA_HOME="$tmp/data-$name" XDG_CONFIG_HOME="$tmp/config-$name" \
    exec "$bin" run --config "$name.caddyfile" --adapter caddyfile >"$tmp/$name.log" 2>&1) &
  pid_of[${port[$name]}]=$!
  pids+=("$!")
}

# ours <name> <limit line> [redis URL] [directive block]: policy_rate_limit with one policy.
ours() {
  local redis="" block=""
  if [ -n "${3:-}" ]; then redis="redis $3"; fi
  if [ -n "${4:-}" ]; then block="$4"; fi
  serve "$1" "$tmp/caddy" <<EOF
{
	admin off
	persist_config off
	hardening {
		$redis
		policy $1 {
			$2
			key {client_ip}
		}
	}
}
http://127.0.0.1:${port[$1]} {
	bind 127.0.0.1
	policy_rate_limit $1 $block
	respond "ok"
}
EOF
}

# crl <name> <events> <window>: caddy-ratelimit with one zone keyed by the client address.
crl() {
  serve "$1" "$tmp/caddy-ratelimit" <<EOF
{
	admin off
	persist_config off
}
http://127.0.0.1:${port[$1]} {
	bind 127.0.0.1
	rate_limit {
		zone bench {
			key {remote_host}
			events $2
			window $3
		}
	}
	respond "ok"
}
EOF
}

names=(bare)
for name in mem_admit mem_nohdr mem_deny redis_admit redis_exact redis_deny crl_bare crl_admit crl_deny; do
  if selected "$name"; then names+=("$name"); fi
done
for name in "${names[@]}"; do port[$name]=$(free_port); done

serve bare "$tmp/caddy" <<EOF
{
	admin off
	persist_config off
}
http://127.0.0.1:${port[bare]} {
	bind 127.0.0.1
	respond "ok"
}
EOF
if selected mem_admit; then ours mem_admit "limit 1000000/1s burst 1000000"; fi
if selected mem_nohdr; then ours mem_nohdr "limit 1000000/1s burst 1000000" "" "{
		headers off
	}"; fi
if selected mem_deny; then ours mem_deny "limit 1/1h burst 1"; fi
if selected redis_admit || selected redis_exact || selected redis_deny; then
  command -v redis-server >/dev/null || { echo "redis-server is not installed (Debian: apt-get install redis-server)"; exit 1; }
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$tmp/redis.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$redis_port" ping >/dev/null || { echo "redis-server did not start"; cat "$tmp/redis.log"; exit 1; }
  if selected redis_admit; then ours redis_admit "limit 1000000/1s burst 1000000" "redis://127.0.0.1:$redis_port"; fi
  if selected redis_exact; then ours redis_exact "limit 1000000/1s burst 1000000" "redis://127.0.0.1:$redis_port
		rate_limit {
			leases off
		}"; fi
  if selected redis_deny; then ours redis_deny "limit 1/1h burst 1" "redis://127.0.0.1:$redis_port"; fi
fi
if selected crl_bare; then
  serve crl_bare "$tmp/caddy-ratelimit" <<EOF
{
	admin off
	persist_config off
}
http://127.0.0.1:${port[crl_bare]} {
	bind 127.0.0.1
	respond "ok"
}
EOF
fi
# caddy-ratelimit keeps a ring of <events> timestamps per key: 100,000 events per second is
# well above what wrk reaches here (the check after the runs proves it), at 2.4 MB for the key.
if selected crl_admit; then crl crl_admit 100000 1s; fi
if selected crl_deny; then crl crl_deny 1 1h; fi

status() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$1]}/"; }
for name in "${names[@]}"; do wait_http "http://127.0.0.1:${port[$name]}/"; done
for name in "${names[@]}"; do
  code=$(status "$name")
  case $name in
  *_deny) [ "$(status "$name")" = 429 ] || { echo "$name: the second request was not denied with 429"; cat "$tmp/$name.log"; exit 1; } ;;
  *) [ "$code" = 200 ] || { echo "$name answered $code"; cat "$tmp/$name.log"; exit 1; } ;;
  esac
done

rss_mib() { ps -o rss= -p "${pid_of[${port[$1]}]}" | awk '{printf "%.1f", $1 / 1024}'; }
declare -A rss_before
for name in "${names[@]}"; do rss_before[$name]=$(rss_mib "$name"); done

bench_header
args=()
for name in "${names[@]:1}"; do args+=("$name" "http://127.0.0.1:${port[$name]}/"); done
interleave bare "http://127.0.0.1:${port[bare]}/" "${args[@]}"

echo
echo "RSS after the runs (MiB; started at):"
for name in "${names[@]}"; do
  ref=bare
  if [[ $name == crl_* ]] && selected crl_bare; then ref=crl_bare; fi
  printf '%-12s %7s  (%s)  %+.1f vs %s\n' "$name" "$(rss_mib "$name")" "${rss_before[$name]}" \
    "$(awk -v a="$(rss_mib "$name")" -v b="$(rss_mib "$ref")" 'BEGIN {print a - b}')" "$ref"
done

# The figures mean something only if the admitting configurations admitted everything and the
# denying ones denied.
echo
bad=0
for name in "${names[@]:1}"; do
  [[ $name == *_bare ]] && continue
  denied=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d1s "http://127.0.0.1:${port[$name]}/" | awk '/Non-2xx/ {print $NF}')
  denied=${denied:-0}
  echo "check $name: $denied responses other than 2xx in 1 s"
  case $name in
  *_deny) [ "$denied" -gt 0 ] || bad=1 ;;
  *) [ "$denied" = 0 ] || bad=1 ;;
  esac
done
[ "$bad" = 0 ] || { echo "a configuration did not admit or deny as intended: its figures are invalid"; exit 1; }
