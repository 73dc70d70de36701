#!/usr/bin/env bash
# Throughput of security_headers against bare Caddy and Caddy's own `header` directive.
#
#   bench/headers.sh [rounds] [seconds]      (default: 3 rounds of 5 s per configuration)
#
# Builds ./cmd/caddy, runs one Caddy with four loopback sites, and runs wrk against them
# interleaved (bare, X, bare, Y, ...) so that a noisy, shared machine affects every
# configuration alike. Each configuration's req/s is compared with the mean of the bare runs
# just before and after it; so is Caddy's CPU time per request (from /proc/<pid>/stat), which
# other load on the machine disturbs less: its ratio is bare's CPU per request over the
# configuration's, i.e. the throughput ratio on an otherwise idle CPU. The script prints every
# run and the median ratios per configuration. Needs wrk (Debian: apt-get install wrk).
#
#   bare        respond "ok"
#   sechdr      security_headers (strict preset: per-request nonce, CSP + 7 headers)
#   header      Caddy's header directive with the same 8 values, static (no nonce)
#   header_uuid Caddy's header directive with {http.request.uuid} as the nonce
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-5}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

go build -o "$tmp/caddy" ./cmd/caddy

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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
"$tmp/caddy" run --config "$tmp/Caddyfile" >"$tmp/caddy.log" 2>&1 &
pid=$!
for name in "${!port[@]}"; do
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:${port[$name]}/" >/dev/null && break; sleep 0.1; done
done
curl -sI "http://127.0.0.1:${port[sechdr]}/" | grep -i '^content-security-policy:' >/dev/null || { echo "security_headers sent no CSP"; cat "$tmp/caddy.log"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
# run prints "<req/s> <Caddy CPU microseconds per request>".
run() {
  local t0 out reqs
  t0=$(cpu_ticks)
  out=$(wrk -t1 -c16 -d"${secs}s" "http://127.0.0.1:${port[$1]}/")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(awk -v d="$(( $(cpu_ticks) - t0 ))" -v n="$reqs" -v u="$tick_us" 'BEGIN { printf "%.2f", d * u / n }')"
}

echo "$(go version | cut -d' ' -f3), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; wrk -t1 -c16 -d${secs}s, $rounds rounds"
declare -A ratios cpuratios
read -r prev prevcpu < <(run bare)
for r in $(seq "$rounds"); do
  for name in sechdr header header_uuid; do
    read -r x xcpu < <(run "$name")
    read -r next nextcpu < <(run bare)
    ratio=$(awk -v x="$x" -v a="$prev" -v b="$next" 'BEGIN { printf "%.3f", x / ((a + b) / 2) }')
    cpuratio=$(awk -v x="$xcpu" -v a="$prevcpu" -v b="$nextcpu" 'BEGIN { printf "%.3f", ((a + b) / 2) / x }')
    printf 'round %d  %-12s %8.0f req/s %6.1f us/req   bare around it %8.0f %8.0f req/s   ratio req/s %s  cpu %s\n' \
      "$r" "$name" "$x" "$xcpu" "$prev" "$next" "$ratio" "$cpuratio"
    ratios[$name]+="$ratio "
    cpuratios[$name]+="$cpuratio "
    prev=$next prevcpu=$nextcpu
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
for name in sechdr header header_uuid; do
  printf '%-12s median ratio to bare: req/s %s, cpu per request %s\n' "$name" "$(echo "${ratios[$name]}" | median)" "$(echo "${cpuratios[$name]}" | median)"
done
