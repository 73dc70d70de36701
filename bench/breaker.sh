#!/usr/bin/env bash
# upstream_breaker overhead, measured with wrk against one Caddy built from this checkout:
#   closed: reverse_proxy alone vs upstream_breaker + reverse_proxy (target >= 0.97)
#   open:   bare `respond` (503) vs an open upstream_breaker's 503 problem (target >= 1.0)
# Runs are interleaved with their baseline against the same process (see bench/lib.sh); the
# CPU per request is the edge's (the upstream is another process).
#
# Usage: bench/breaker.sh            (ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build_caddy

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

start_caddy upstream upstream.caddyfile
start_caddy edge edge.caddyfile
measured_pid=$last_pid
wait_http "http://127.0.0.1:$up/"
wait_http "http://127.0.0.1:$proxy/"

# Trip the open breaker: one refused dial.
curl -s -o /dev/null "http://127.0.0.1:$open/"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$open/")
[ "$code" = 503 ] || { echo "the open breaker answered $code"; exit 1; }

bench_header
echo "closed (target >= 0.97):"
interleave proxy "http://127.0.0.1:$proxy/" breaker_closed "http://127.0.0.1:$guarded/"
echo
echo "open (target >= 1.0):"
interleave respond_503 "http://127.0.0.1:$bare/" breaker_open "http://127.0.0.1:$open/"
