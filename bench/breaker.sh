#!/usr/bin/env bash
# upstream_breaker overhead: closed, around reverse_proxy, against reverse_proxy alone (target
# >= 0.97); open, its 503 problem+json, against bare `respond "..." 503` (target >= 1.0).
# bench/run.sh with the configurations breaker_closed and breaker_open (bench/configs/).
#
# Usage: bench/breaker.sh       (ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1, OUT=file)
CONFIGS=${CONFIGS:-breaker_closed breaker_open} OUT=${OUT-} exec "$(dirname "$0")/run.sh"
