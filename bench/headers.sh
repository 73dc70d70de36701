#!/usr/bin/env bash
# security_headers against Caddy's own `header` directive with the same values, static and with
# {http.request.uuid} as the nonce, each of those against bare Caddy: bench/run.sh with the
# configurations sechdr, header and header_uuid (bench/configs/).
#
# Usage: bench/headers.sh [rounds] [seconds]   (default: 3 rounds of 5 s; or ROUNDS, DURATION,
#        CONNECTIONS, THREADS, OUT=file as in bench/run.sh)
if [ $# -ge 1 ]; then export ROUNDS=$1; fi
if [ $# -ge 2 ]; then export DURATION=${2}s; fi
CONFIGS=${CONFIGS:-header header_uuid sechdr} OUT=${OUT-} exec "$(dirname "$0")/run.sh"
