#!/usr/bin/env bash
# End-to-end benchmark: infergate over TLS (HTTP/1.1 with wrk, HTTP/2 with h2load) on
# /health and /predict, and nginx `return 200` over TLS on the same machine as reference.
# Also: binary size, idle and loaded RSS, time from start to /ready.
#
#   scripts/bench.sh            # 10 s per wrk run
#   DURATION=30 scripts/bench.sh
#
# Load generator and servers share this machine's cores: compare figures from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
H2_REQUESTS=${H2_REQUESTS:-200000}
IO_THREADS=${IO_THREADS:-2}
OUT=${OUT:-bench-results}
mkdir -p "$OUT"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
apt_install "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --locked --bin infergate
BIN=target/release/infergate

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

echo '{"features":[5.1,3.5,1.4,0.2]}' >"$WORK/body.json"
cat >"$WORK/predict.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"features":[5.1,3.5,1.4,0.2]}'
LUA
# The same request with Cache-Control: no-cache: every one runs the model (and refills).
cat >"$WORK/predict-nocache.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["cache-control"] = "no-cache"
wrk.body = '{"features":[5.1,3.5,1.4,0.2]}'
LUA

# --- infergate -------------------------------------------------------------------------
PORT=$(free_port)
start_ns=$(date +%s%N)
"$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$PORT" --io-threads "$IO_THREADS" \
    --log-format json >"$WORK/gateway.log" 2>&1 &
GW=$!
PIDS+=("$GW")
wait_for() { # url: give up after 30 s rather than loop forever on a server that never came up
    for _ in $(seq 1 3000); do curl -ksf "$1" >/dev/null && return 0; sleep 0.01; done
    echo "no answer from $1" >&2
    exit 1
}
wait_for "https://127.0.0.1:$PORT/ready"
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
sleep 1
idle_rss=$(rss_kib "$GW")

results="$OUT/bench-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# scripts/bench.sh $(date -u +%FT%TZ) on $(nproc) cores ($(uname -r))"
    echo
    echo "binary: $(stat -c %s "$BIN") bytes ($(du -h "$BIN" | cut -f1)), io_threads=$IO_THREADS"
    echo "start to /ready: ${ready_ms} ms; idle RSS: ${idle_rss} KiB"
    echo
} | tee "$results"

wrk_run() { # name url [lua]
    local name=$1 url=$2 lua=${3:-}
    local args=(-t2 "-c$CONNS" "-d${DURATION}s" --latency)
    [ -n "$lua" ] && args+=(-s "$lua")
    local out
    out=$(wrk "${args[@]}" "$url")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local errs
    errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)
    echo "| $name | h1 (wrk -t2 -c$CONNS -d${DURATION}s) | $rps | $p50 | $p99 | ${errs:-} |" | tee -a "$results"
}
h2_run() { # name url [data] [extra header]
    local name=$1 url=$2 data=${3:-} header=${4:-}
    local args=(-n "$H2_REQUESTS" -c "$CONNS" -m 10 -t 2)
    [ -n "$data" ] && args+=(-d "$data" -H 'content-type: application/json')
    [ -n "$header" ] && args+=(-H "$header")
    local out
    out=$(h2load "${args[@]}" "$url")
    local rps mean p
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
    p=$(awk '/^requests:/ {print $0}' <<<"$out")
    echo "| $name | h2 (h2load -n$H2_REQUESTS -c$CONNS -m10 -t2) | $rps | mean $mean | – | $p |" | tee -a "$results"
}

{
    echo "| target | protocol | req/s | p50 | p99 | notes |"
    echo "|---|---|---|---|---|---|"
} | tee -a "$results"
wrk_run "infergate GET /health" "https://127.0.0.1:$PORT/health"
wrk_run "infergate POST /predict, cached (hit-l1)" "https://127.0.0.1:$PORT/predict" "$WORK/predict.lua"
wrk_run "infergate POST /predict, uncached (no-cache)" "https://127.0.0.1:$PORT/predict" "$WORK/predict-nocache.lua"
h2_run "infergate GET /health" "https://127.0.0.1:$PORT/health"
h2_run "infergate POST /predict, cached (hit-l1)" "https://127.0.0.1:$PORT/predict" "$WORK/body.json"
h2_run "infergate POST /predict, uncached (no-cache)" "https://127.0.0.1:$PORT/predict" "$WORK/body.json" 'cache-control: no-cache'

# Coalescing: N identical requests at once for an input never seen before.
# Summed over every series (one per model): the exporter lists them in no fixed order.
forwards() { curl -ks "https://127.0.0.1:$PORT/metrics" | awk '/^infergate_model_forwards_total/ {s += $2} END {print s + 0}'; }
coalesced() { curl -ks "https://127.0.0.1:$PORT/metrics" | awk '/^infergate_coalesced_total/ {print $2}'; }
echo '{"features":[6.3,2.5,4.9,1.5]}' >"$WORK/fresh.json"
f0=$(forwards); c0=$(coalesced)
h2load -n 500 -c 10 -m 50 -d "$WORK/fresh.json" -H 'content-type: application/json' \
    "https://127.0.0.1:$PORT/predict" >/dev/null
f1=$(forwards); c1=$(coalesced)
{
    echo
    echo "coalescing: 500 identical requests for a new input (h2load -n500 -c10 -m50):" \
        "$(awk "BEGIN {print $f1 - $f0}") model forward(s)," \
        "$(awk "BEGIN {print ${c1:-0} - ${c0:-0}}") answered as coalesced, the rest hit-l1"
} | tee -a "$results"
loaded_rss=$(hwm_kib "$GW")

# --- nginx reference: `return 200` over TLS -------------------------------------------
NPORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes $IO_THREADS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    keepalive_requests 1000000;
    server {
        # "listen … ssl http2" works on nginx 1.22 (Debian 12) and, deprecated, on newer.
        listen 127.0.0.1:$NPORT ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / { return 200 'ok'; }
    }
}
NGINX
"$NGINX" -c "$WORK/nginx.conf" &
PIDS+=("$!")
wait_for "https://127.0.0.1:$NPORT/"
wrk_run "nginx return 200" "https://127.0.0.1:$NPORT/"
h2_run "nginx return 200" "https://127.0.0.1:$NPORT/"

{
    echo
    echo "infergate loaded RSS (VmHWM after the runs): ${loaded_rss} KiB"
    echo
    echo "results written to $results"
} | tee -a "$results"
