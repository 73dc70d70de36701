#!/usr/bin/env bash
# Throughput of security_headers against bare Caddy and Caddy's own `header` directive.
#
#   bench/headers.sh [rounds] [seconds]      (default: 3 rounds of 5 s per configuration)
#
# Builds ./cmd/caddy, runs one Caddy with four loopback sites, and runs wrk against them
# interleaved with bare Caddy (bench/lib.sh says how runs are compared). Needs wrk.
#
#   bare        respond "ok"
#   sechdr      security_headers (strict preset: per-request nonce, CSP + 7 headers)
#   header      Caddy's header directive with the same 8 values, static (no nonce)
#   header_uuid Caddy's header directive with {http.request.uuid} as the nonce
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then ROUNDS=$1; fi
if [ $# -ge 2 ]; then DURATION=${2}s; fi
. bench/lib.sh
build_caddy

declare -A port
for name in bare sechdr header header_uuid; do port[$name]=$(free_port); done

csp_static="default-src 'self'; script-src 'nonce-AAAAAAAAAAAAAAAAAAAAAA==' 'strict-dynamic'; style-src 'self' 'nonce-AAAAAAAAAAAAAAAAAAAAAA=='; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; upgrade-insecure-requests"
csp_uuid="default-src 'self'; script-src 'nonce-{http.request.uuid}' 'strict-dynamic'; style-src 'self' 'nonce-{http.request.uuid}'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; upgrade-insecure-requests"
static_headers() {
  cat <<HDR
		X-Frame-Options DENY
		X-Content-Type-Options nosniff
		Referrer-Policy strict-origin-when-cross-origin
		Permissions-Policy "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
		Cross-Origin-Opener-Policy same-origin
		Cross-Origin-Resource-Policy same-origin
		-Server
HDR
}
cat >"$tmp/Caddyfile" <<CF
{
	admin off
	persist_config off
}
http://127.0.0.1:${port[bare]} {
	bind 127.0.0.1
	respond "ok"
}
http://127.0.0.1:${port[sechdr]} {
	bind 127.0.0.1
	security_headers
	respond "ok"
}
http://127.0.0.1:${port[header]} {
	bind 127.0.0.1
	header {
		Content-Security-Policy "$csp_static"
$(static_headers)
	}
	respond "ok"
}
http://127.0.0.1:${port[header_uuid]} {
	bind 127.0.0.1
	header {
		Content-Security-Policy "$csp_uuid"
$(static_headers)
	}
	respond "ok"
}
CF
"$tmp/caddy" fmt --overwrite "$tmp/Caddyfile" >/dev/null 2>&1 || true
start_caddy caddy Caddyfile
measured_pid=$last_pid
for name in "${!port[@]}"; do wait_http "http://127.0.0.1:${port[$name]}/"; done
curl -sI "http://127.0.0.1:${port[sechdr]}/" | grep -i '^content-security-policy:' >/dev/null || { echo "security_headers sent no CSP"; cat "$tmp/caddy.log"; exit 1; }

bench_header
interleave bare "http://127.0.0.1:${port[bare]}/" \
  sechdr "http://127.0.0.1:${port[sechdr]}/" \
  header "http://127.0.0.1:${port[header]}/" \
  header_uuid "http://127.0.0.1:${port[header_uuid]}/"
