#!/usr/bin/env bash
# path_guard + IP class cost (traversal check, class lookup against 10,000 trusted addresses,
# probe path match, status capture for the detector; target >= 0.98 of bare throughput):
# bench/run.sh with the configuration bench/configs/path_guard.caddyfile.
#
# Usage: bench/pathguard.sh     (ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1, OUT=file)
CONFIGS=${CONFIGS:-path_guard} OUT=${OUT-} exec "$(dirname "$0")/run.sh"
