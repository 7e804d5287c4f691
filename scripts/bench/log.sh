#!/usr/bin/env bash
# Prediction log benchmark against a real PostgreSQL this script starts (initdb in a temp
# dir, fsync on, as the non-root `postgres` user when run as root) and stops:
#   1. sink throughput, rows/s: per-row INSERT vs COPY batches vs the whole sink
#      (cargo bench --bench log_sink);
#   2. gateway req/s over HTTPS with the log off vs on (wrk, HTTP/1.1, /predict cached and
#      uncached), and the rows the table got.
#
#   scripts/bench/log.sh
#   ROWS=200000 DURATION=20 scripts/bench/log.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
ROWS=${ROWS:-100000}
IO_THREADS=${IO_THREADS:-2}
OUT=${OUT:-bench-results}
mkdir -p "$OUT"

need wrk curl psql=postgresql-client initdb=postgresql

workdir

# --- PostgreSQL ---------------------------------------------------------------------------
start_postgres "$WORK"

results="$OUT/bench-log-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# scripts/bench/log.sh $(date -u +%FT%TZ) on $(nproc) cores ($(uname -r)), $PG_VERSION, fsync on"
    echo
    echo "## Sink throughput (cargo bench --bench log_sink, ROWS=$ROWS)"
    echo
    echo '```'
    INFERGATE_BENCH_DATABASE_URL="$DB_URL" ROWS="$ROWS" cargo bench --locked --bench log_sink 2>/dev/null
    echo '```'
} | tee "$results"

# --- gateway, log off vs on ---------------------------------------------------------------
BIN=$(ensure_bin)
cat >"$WORK/cached.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"features":[5.1,3.5,1.4,0.2]}'
LUA
cat >"$WORK/uncached.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["cache-control"] = "no-cache"
wrk.body = '{"features":[5.1,3.5,1.4,0.2]}'
LUA

run_gateway() { # label, then extra env as NAME=value
    local label=$1
    shift
    local port
    port=$(free_port)
    env "$@" "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" \
        --io-threads "$IO_THREADS" --log-format json >"$WORK/gw-$label.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 3000); do curl -ksf "https://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.01; done
    for kind in cached uncached; do
        local line
        line=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/$kind.lua" \
            "https://127.0.0.1:$port/predict" |
            awk '/requests in/ {n=$1} /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
                 END {printf "%s | %s | %s | %s | %s", n, rps, p50, p99, (bad==""?0:bad)}')
        echo "| $label | $kind | $line |"
        echo "$line" | awk -F' [|] ' '{print $1}' >>"$WORK/answered-$label"
    done
    kill -TERM "$pid"
    wait "$pid" || true
}

{
    echo
    echo "## Gateway with the log off vs on (wrk -t2 -c$CONNS -d${DURATION}s, HTTP/1.1 over TLS, POST /predict)"
    echo
    echo "| log | request | requests | req/s | p50 | p99 | non-2xx |"
    echo "|---|---|---|---|---|---|---|"
    run_gateway off
    psql "$DB_URL" -qc 'TRUNCATE predictions' >/dev/null 2>&1 || true
    run_gateway on INFERGATE_DATABASE__URL="$DB_URL" \
        INFERGATE_PREDICTION_LOG__SPOOL_DIR="$WORK/spool"
    rows=$(psql "$DB_URL" -tAc 'select count(*) from predictions')
    answered=$(awk '{s+=$1} END {print s+0}' "$WORK/answered-on")
    dropped=$(grep -c 'ROWS LOST' "$WORK/gw-on.log" || true)
    spooled=$(find "$WORK/spool" -name '*.spool' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}')
    echo
    echo "With the log on, wrk counted $answered answers; \`predictions\` holds $rows rows after the"
    echo "gateway's SIGTERM drain (answers wrk had not yet counted when its time ran out are rows"
    echo "too); ROWS LOST log lines: $dropped; bytes left in the spool: ${spooled:-0}."
} | tee -a "$results"
echo "results: $results"
