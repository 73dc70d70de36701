#!/usr/bin/env bash
# policy_rate_limit in memory and in Redis (admitting, without the RateLimit fields, with and
# without leases, refusing), and github.com/mholt/caddy-ratelimit v0.1.0 (its binary with bare
# `respond`, admitting, refusing), each against bare Caddy: bench/run.sh with the configurations
# below (bench/configs/). All requests come from 127.0.0.1, i.e. one key: this measures the
# decision, not a growing key table. Target for policy_rate_limit: RSS <= bare + 10 MiB.
#
# Usage: bench/ratelimit.sh     (ROUNDS=3 DURATION=5s CONNECTIONS=16 THREADS=1, OUT=file)
#        CONFIGS="crl_bare crl_admit crl_deny" bench/ratelimit.sh   runs a subset
CONFIGS=${CONFIGS:-mem_admit mem_nohdr mem_deny redis_admit redis_exact redis_deny crl_bare crl_admit crl_deny} \
  OUT=${OUT-} exec "$(dirname "$0")/run.sh"
