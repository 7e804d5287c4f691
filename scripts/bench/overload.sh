#!/usr/bin/env bash
# Overload: an open-loop load of uncached predictions (benches/overload.rs) against a model
# of known speed (model.forward_delay_ms on the Iris model, one compute thread, up to BATCH
# rows a forward pass gathered for up to MAX_WAIT_MS while the thread is busy: a capacity
# of BATCH x 1000/DELAY_MS a second): first well under its capacity (the unloaded
# figures), then above it, with adaptive admission on (the default) and off. Records the accepted answers' latency
# percentiles, what was shed (503 + Retry-After), the gateway's RSS, and /ready during the
# overload.
#
#   scripts/bench/overload.sh
#   DELAY_MS=50 BATCH=1 LOW=5 HIGH="40 80" scripts/bench/overload.sh   # no batching
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

DELAY_MS=${DELAY_MS:-50}
BATCH=${BATCH:-32}
MAX_WAIT_MS=${MAX_WAIT_MS:-$DELAY_MS}
LOW=${LOW:-50}
HIGH=${HIGH:-1300 2600}
SECONDS_EACH=${SECONDS_EACH:-30}
SKIP=${SKIP:-5}
need curl
BIN=$(ensure_bin)
LOAD=$(overload_binary)

workdir

run() { # name rate adaptive
    local name=$1 rate=$2 adaptive=$3 port
    port=$(free_port)
    INFERGATE_MODEL__FORWARD_DELAY_MS=$DELAY_MS INFERGATE_COMPUTE__THREADS=1 INFERGATE_BATCH__MAX_SIZE=$BATCH \
        INFERGATE_BATCH__MAX_WAIT_MS=$MAX_WAIT_MS \
        INFERGATE_IMAGE__BUNDLED=false INFERGATE_ADMISSION__ADAPTIVE=$adaptive INFERGATE_LOG__LEVEL=warn \
        "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" --io-threads 1 \
        --log-format json >"$WORK/$name.log" 2>&1 &
    GW=$!
    PIDS+=("$GW")
    wait_ready "$port"
    local rss0 ready
    rss0=$(rss_mib "$GW")
    ( sleep $((SECONDS_EACH / 2)); curl -ks -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/ready" >"$WORK/ready" ) &
    local probe=$! out
    out=$(OVERLOAD_URL="https://127.0.0.1:$port/predict" OVERLOAD_RATE=$rate \
        OVERLOAD_SECONDS=$SECONDS_EACH OVERLOAD_SKIP_SECONDS=$SKIP "$LOAD")
    wait "$probe"
    ready=$(cat "$WORK/ready")
    local limit
    limit=$(curl -ks "https://127.0.0.1:$port/metrics" | awk '/^infergate_admission_limit/ {print $2}' | head -1)
    echo "$name|$rate|$adaptive|$ready|$rss0|$(rss_mib "$GW")|${limit:-off}|$out" >>"$WORK/results"
    kill -0 "$GW" || { echo "the gateway died under $name" >&2; exit 1; }
    stop "$GW"
}

run unloaded "$LOW" true
for rate in $HIGH; do
    run overload "$rate" true
    run overload "$rate" false
done

echo "# scripts/bench/overload.sh, $(date -u +%FT%TZ)"
echo
echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?'), io_threads=1"
echo "- model: Iris + forward_delay_ms=$DELAY_MS, 1 compute thread, batch.max_size $BATCH, batch.max_wait_ms $MAX_WAIT_MS: a capacity of $((BATCH * 1000 / DELAY_MS)) predictions/s"
echo "- load: open loop over h2+TLS (4 connections), ${SECONDS_EACH}s a run, the first ${SKIP}s not counted"
echo
python3 - "$WORK/results" <<'PY'
import json, sys
print("| run | offered req/s | adaptive | accepted req/s | shed 503 (with Retry-After) | 504 | other/errors | accepted p50 / p99 / max ms | /ready | RSS MiB before → after | limit at end |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    name, rate, adaptive, ready, rss0, rss1, limit, out = line.rstrip("\n").split("|", 7)
    r = json.loads(out)
    print(f"| {name} | {int(float(rate)):,} | {adaptive} | {r['accepted_per_s']:,.0f} | {r['shed_503']:,} ({r['shed_with_retry_after']:,}) | {r['deadline_504']:,} | {r['other_status'] + r['errors']:,} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} | {ready} | {rss0} → {rss1} | {limit} |")
PY
