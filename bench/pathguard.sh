#!/usr/bin/env bash
# path_guard + IP class cost, measured with wrk against one Caddy built from this checkout:
# bare `respond` vs `path_guard` (traversal check, class lookup against 10,000 trusted
# addresses, probe path match, status capture for the detector) in front of the same
# `respond` (target >= 0.98 of bare throughput). Runs are interleaved against the same process
# (see bench/lib.sh).
#
# Usage: bench/pathguard.sh            (ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build_caddy

admin=$(free_port); bare=$(free_port); guarded=$(free_port)
BENCH_TRUSTED=$(python3 -c 'print(" ".join("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(10000)))')
export BENCH_TRUSTED
cat >"$tmp/edge.caddyfile" <<EOF
{
	admin 127.0.0.1:$admin
	hardening {
		ip_classes {
			trusted {\$BENCH_TRUSTED}
			suspicious 203.0.113.0/24
		}
	}
}
http://127.0.0.1:$bare {
	bind 127.0.0.1
	respond "ok"
}
http://127.0.0.1:$guarded {
	bind 127.0.0.1
	path_guard
	respond "ok"
}
EOF
start_caddy edge edge.caddyfile
measured_pid=$last_pid
wait_http "http://127.0.0.1:$guarded/"

bench_header
interleave bare "http://127.0.0.1:$bare/api/v1/users/123" path_guard "http://127.0.0.1:$guarded/api/v1/users/123"
