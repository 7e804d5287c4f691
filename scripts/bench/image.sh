#!/usr/bin/env bash
# End-to-end benchmark of image uploads: the release binary with the bundled
# EfficientNet-Lite0, over TLS, uploads of a real photo (bike.jpg, 800×556 JPEG) as the
# seed's clients send them (multipart field `file`, HTTP/1.1 with wrk) and as raw bodies
# (HTTP/2 with h2load); cached (the same bytes again: hit-l1) and uncached
# (Cache-Control: no-cache: decode, preprocess and forward every time). Also RSS with and
# without the image model loaded, and the per-stage times from the gateway's own metrics.
#
#   scripts/bench/image.sh
#   DURATION=30 scripts/bench/image.sh
#
# Load generator and server share this machine's cores: compare figures from one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
IO_THREADS=${IO_THREADS:-2}
OUT=${OUT:-bench-results}
PHOTO=${PHOTO:-tests/fixtures/images/bike.jpg}
mkdir -p "$OUT"

need wrk h2load=nghttp2-client curl

BIN=$(ensure_bin)

workdir

start() { # port [env...]: starts the gateway, prints its pid
    local port=$1
    shift
    env "$@" "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" \
        --io-threads "$IO_THREADS" --log-format json >>"$WORK/gateway.log" 2>&1 &
    echo $!
}

# RSS without the image model, for comparison.
PORT=$(free_port)
GW=$(start "$PORT" INFERGATE_IMAGE__BUNDLED=false)
PIDS+=("$GW")
wait_for "https://127.0.0.1:$PORT/ready" 60
sleep 1
rss_tabular=$(rss_kib "$GW")
stop "$GW"

PORT=$(free_port)
start_ns=$(date +%s%N)
GW=$(start "$PORT")
PIDS+=("$GW")
wait_for "https://127.0.0.1:$PORT/ready" 60
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
sleep 1
rss_image=$(rss_kib "$GW")
URL="https://127.0.0.1:$PORT/predict"

# The multipart body curl -F file=@photo sends, and wrk scripts that post it.
BOUNDARY=infergatebenchboundary
{
    printf -- '--%s\r\nContent-Disposition: form-data; name="file"; filename="photo"\r\n' "$BOUNDARY"
    printf 'Content-Type: application/octet-stream\r\n\r\n'
    cat "$PHOTO"
    printf '\r\n--%s--\r\n' "$BOUNDARY"
} >"$WORK/multipart.body"
for mode in cached nocache; do
    cat >"$WORK/upload-$mode.lua" <<LUA
local f = assert(io.open("$WORK/multipart.body", "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["content-type"] = "multipart/form-data; boundary=$BOUNDARY"
LUA
done
echo 'wrk.headers["cache-control"] = "no-cache"' >>"$WORK/upload-nocache.lua"

results="$OUT/bench-image-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# scripts/bench/image.sh $(date -u +%FT%TZ) on $(nproc) cores ($(uname -r))"
    echo
    echo "photo: $PHOTO ($(stat -c %s "$PHOTO") bytes); io_threads=$IO_THREADS; defaults otherwise"
    echo "binary: $(stat -c %s "$BIN") bytes; start to /ready (EfficientNet-Lite0 loaded, warmed up): ${ready_ms} ms"
    echo "idle RSS: ${rss_image} KiB with the image model, ${rss_tabular} KiB without (image.bundled=false)"
    echo
    echo "| upload | protocol | uploads/s | p50 | p99 | notes |"
    echo "|---|---|---|---|---|---|"
} | tee "$results"

wrk_run() { # name lua
    local out rps p50 p99 errs
    out=$(wrk -t2 "-c$CONNS" "-d${DURATION}s" --latency -s "$2" "$URL")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)
    echo "| $1 | h1 (wrk -t2 -c$CONNS -d${DURATION}s) | $rps | $p50 | $p99 | ${errs:-} |" | tee -a "$results"
}
h2_run() { # name requests [header]
    local args=(-n "$2" -c "$CONNS" -m 4 -t 2 -d "$PHOTO" -H 'content-type: image/jpeg')
    [ -n "${3:-}" ] && args+=(-H "$3")
    local out rps mean max status
    out=$(h2load "${args[@]}" "$URL")
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
    max=$(awk '/^time for request:/ {print $3}' <<<"$out")
    status=$(awk '/^status codes:/ {print $3, $4}' <<<"$out")
    echo "| $1 | h2 (h2load -n$2 -c$CONNS -m4 -t2, raw image/jpeg) | $rps | mean $mean | max $max | $status |" | tee -a "$results"
}

wrk_run "multipart, cached (hit-l1)" "$WORK/upload-cached.lua"
wrk_run "multipart, uncached (no-cache)" "$WORK/upload-nocache.lua"
h2_run "raw, cached (hit-l1)" 20000
h2_run "raw, uncached (no-cache)" 400 'cache-control: no-cache'

# Where an uncached upload's time goes, from the gateway's histograms (sum / count).
metrics=$(curl -ks "https://127.0.0.1:$PORT/metrics")
mean_of() { # name labels scale: scale × sum / count of the histogram name{labels}
    awk -v n="$1" -v l="$2" -v k="$3" 'index($0, n "_sum" l " ") == 1 {s = $2}
        index($0, n "_count" l " ") == 1 {c = $2}
        END {if (c > 0) printf "%.2f", k * s / c; else print "n/a"}' <<<"$metrics"
}
{
    echo
    echo "per uncached upload, mean over the run (gateway metrics):" \
        "decode $(mean_of infergate_image_prepare_duration_seconds '{stage="decode"}' 1000) ms," \
        "preprocess $(mean_of infergate_image_prepare_duration_seconds '{stage="preprocess"}' 1000) ms," \
        "forward $(mean_of infergate_inference_duration_seconds '{model="efficientnet-lite0"}' 1000) ms per batch," \
        "$(mean_of infergate_batch_size '{model="efficientnet-lite0"}' 1) images per batch on average"
    echo "loaded RSS (VmHWM after the runs): $(hwm_kib "$GW") KiB"
    echo
    echo "results written to $results"
} | tee -a "$results"
