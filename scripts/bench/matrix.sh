#!/usr/bin/env bash
# The end-to-end benchmark matrix, in one run on this machine, with nginx `return 200` over
# TLS as the same-run ceiling:
#   route (/health, tabular /predict, image /predict) × HTTP/1.1 (wrk) and HTTP/2 (h2load)
#   × cached (hit-l1) / uncached (Cache-Control: no-cache: every request runs the model)
#   × prediction log off / on (a PostgreSQL this script starts; /health is the same either way)
#   × I/O backend (io_uring, epoll)
# plus binary size, start to /ready, RSS idle / under load / holding 10,000 idle TLS
# keep-alive connections (and nginx's with the same), coalescing, and each figure's ratio to
# nginx against the goals (BENCHMARKS.md). Writes a dated markdown file with the machine's
# description to bench-results/.
#
#   scripts/bench/matrix.sh                 # DURATION=8 s per run, both backends
#   DURATION=20 IDLE_CONNS=10000 IO_BACKENDS=uring scripts/bench/matrix.sh
#
# Load generator and servers share this machine's cores: compare figures from one run only.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/load.sh
source scripts/lib/load.sh

DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
IO_THREADS=${IO_THREADS:-2}
IDLE_CONNS=${IDLE_CONNS:-10000}
IO_BACKENDS=${IO_BACKENDS:-uring epoll}
OUT=${OUT:-bench-results}
mkdir -p "$OUT"

need wrk h2load=nghttp2-client nginx=nginx-light openssl curl psql=postgresql-client \
    initdb=postgresql
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# 10,000 connections need as many descriptors in the server and in the client.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

BIN=$(ensure_bin)

workdir

# --- requests ---------------------------------------------------------------------------
IRIS='{"features":[5.1,3.5,1.4,0.2]}'
IMAGE=tests/fixtures/images/bike.jpg
printf '%s' "$IRIS" >"$WORK/iris.json"
wrk_post_lua iris application/json "$WORK/iris.json"
wrk_post_lua iris-nocache application/json "$WORK/iris.json" 'wrk.headers["cache-control"] = "no-cache"'
wrk_post_lua image image/jpeg "$IMAGE"

# --- the machine ------------------------------------------------------------------------
results="$OUT/bench-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# scripts/bench/matrix.sh, $(date -u +%FT%TZ)"
    echo
    echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM," \
        "$(sed -n 's/^PRETTY_NAME="\(.*\)"$/\1/p' /etc/os-release), kernel $(uname -r)"
    echo "- infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(rustc --version)," \
        "io_threads=$IO_THREADS, I/O backends: $IO_BACKENDS; $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') worker_processes $IO_THREADS"
    echo "- load: wrk -t2 -c$CONNS -d${DURATION}s (HTTP/1.1); h2load -c$CONNS -m10 -t2 -D$DURATION (HTTP/2; p50/p99 from its per-request log);" \
        "load generator and servers share the cores"
    echo "- uncached = \`Cache-Control: no-cache\` (the model runs for every request); image = $IMAGE ($(stat -c %s "$IMAGE") bytes, raw image/jpeg)"
    echo
} | tee "$results"

ROWS=()      # "route|proto|cache|log|io|rps p50 p99"
record() { ROWS+=("$1|$2|$3|$4|$IO|$5"); echo "  $IO $1 $2 $3 log=$4: $5" >&2; }
run_matrix() { # base-url log
    local base=$1 log=$2 r
    if [ "$log" = off ]; then
        r=$(wrk_run "$base/health"); record /health h1 - "$log" "$r"
        r=$(h2_run "$base/health"); record /health h2 - "$log" "$r"
    fi
    r=$(wrk_run "$base/predict" "$WORK/iris.lua"); record "/predict tabular" h1 cached "$log" "$r"
    r=$(h2_run "$base/predict" application/json "$WORK/iris.json"); record "/predict tabular" h2 cached "$log" "$r"
    r=$(wrk_run "$base/predict" "$WORK/iris-nocache.lua"); record "/predict tabular" h1 uncached "$log" "$r"
    r=$(h2_run "$base/predict" application/json "$WORK/iris.json" 'cache-control: no-cache')
    record "/predict tabular" h2 uncached "$log" "$r"
    r=$(wrk_run "$base/predict" "$WORK/image.lua"); record "/predict image" h1 cached "$log" "$r"
    r=$(h2_run "$base/predict" image/jpeg "$IMAGE"); record "/predict image" h2 cached "$log" "$r"
}

start_gateway() { # name [extra env...]: sets GW, PORT; waits for /ready; serves on $IO
    local name=$1
    shift
    PORT=$(free_port)
    env "$@" INFERGATE_SERVER__MAX_CONNECTIONS=$((IDLE_CONNS + 1000)) \
        "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$PORT" --io-threads "$IO_THREADS" \
        --io "$IO" --log-format json >"$WORK/$name-$IO.log" 2>&1 &
    GW=$!
    PIDS+=("$GW")
    wait_for "https://127.0.0.1:$PORT/ready"
}

declare -A IDLE_RSS LOADED_RSS READY_MS HELD HELD_RSS HELD_BEFORE COALESCING LOGGED
echo "==> PostgreSQL, for the log-on runs" >&2
chmod 755 "$WORK" # PostgreSQL runs as `postgres`: it must reach its directory
mkdir "$WORK/postgres"
start_postgres "$WORK/postgres"
for IO in $IO_BACKENDS; do
    # --- infergate, prediction log off (the embedded default) ---------------------------
    echo "==> infergate on $IO, log off" >&2
    start_ns=$(date +%s%N)
    start_gateway off
    READY_MS[$IO]=$(( ($(date +%s%N) - start_ns) / 1000000 ))
    sleep 1
    IDLE_RSS[$IO]=$(rss_kib "$GW")
    served=$(curl -ks "https://127.0.0.1:$PORT/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("io_backend","?"))')
    [ "$served" = "$IO" ] || { echo "asked for $IO, served on $served" >&2; exit 1; }
    run_matrix "https://127.0.0.1:$PORT" off
    # Coalescing: N identical requests at once for an input never seen before.
    # Summed over every series (one per model): the exporter lists them in no fixed order.
    forwards() { curl -ks "https://127.0.0.1:$PORT/metrics" | awk '/^infergate_model_forwards_total/ {s += $2} END {print s + 0}'; }
    coalesced() { curl -ks "https://127.0.0.1:$PORT/metrics" | awk '/^infergate_coalesced_total/ {s += $2} END {print s + 0}'; }
    echo '{"features":[6.3,2.5,4.9,1.5]}' >"$WORK/fresh.json"
    f0=$(forwards); c0=$(coalesced)
    h2load -n 500 -c 10 -m 50 -d "$WORK/fresh.json" -H 'content-type: application/json' \
        "https://127.0.0.1:$PORT/predict" >/dev/null
    f1=$(forwards); c1=$(coalesced)
    COALESCING[$IO]="$((f1 - f0)) model forward(s), $((c1 - c0)) answered as coalesced, the rest hit-l1"
    LOADED_RSS[$IO]=$(hwm_kib "$GW")
    stop "$GW"

    # --- infergate with 10,000 idle TLS connections -------------------------------------
    echo "==> infergate on $IO, $IDLE_CONNS idle TLS connections" >&2
    start_gateway idle
    sleep 1
    HELD_BEFORE[$IO]=$(rss_kib "$GW")
    hold "$PORT" "$IDLE_CONNS" /health 120
    sleep 2
    HELD[$IO]=$HELD
    HELD_RSS[$IO]=$(rss_kib "$GW")
    stop "$HOLD"
    stop "$GW"

    # --- infergate, prediction log on (PostgreSQL on this machine) ----------------------
    echo "==> infergate on $IO, log on" >&2
    psql -q "$DB_URL" -c 'truncate predictions' 2>/dev/null || true
    start_gateway on INFERGATE_DATABASE__URL="$DB_URL"
    run_matrix "https://127.0.0.1:$PORT" on
    sleep 2
    LOGGED[$IO]=$(psql -At "$DB_URL" -c 'select count(*) from predictions' 2>/dev/null || echo '?')
    stop "$GW"
done

# --- nginx reference: `return 200` over TLS ---------------------------------------------
echo "==> nginx return 200" >&2
start_nginx "$IO_THREADS" "$IDLE_CONNS"
sleep 1
nginx_idle_rss=$(tree_rss_kib "$NG")
read -r NGINX_H1 NGINX_P50 NGINX_P99 <<<"$(wrk_run "https://127.0.0.1:$NPORT/")"
read -r NGINX_H2 NGINX_H2_P50 NGINX_H2_P99 <<<"$(h2_run "https://127.0.0.1:$NPORT/")"
hold "$NPORT" "$IDLE_CONNS" / 120
sleep 2
nginx_held=$HELD
nginx_idle_conns_rss=$(tree_rss_kib "$NG")
stop "$HOLD"

# --- the table ----------------------------------------------------------------------------
goal() { # route proto cache: the ratio to reach (issue 12), or "-"
    case "$1|$3" in
        "/health|-") echo 1.0 ;;
        "/predict tabular|cached") echo 0.8 ;;
        "/predict tabular|uncached") echo 0.6 ;;
        *) echo - ;;
    esac
}
{
    echo "| route | protocol | cache | prediction log | I/O | req/s | p50 | p99 | ÷ nginx req/s | goal | met |"
    echo "|---|---|---|---|---|---:|---:|---:|---:|---:|---|"
    echo "| nginx \`return 200\` | h1 | - | - | epoll | $NGINX_H1 | $NGINX_P50 | $NGINX_P99 | 1.00 | | |"
    echo "| nginx \`return 200\` | h2 | - | - | epoll | $NGINX_H2 | $NGINX_H2_P50 | $NGINX_H2_P99 | 1.00 | | |"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r route proto cache log io rest <<<"$row"
        read -r rps p50 p99 <<<"$rest"
        ceiling=$NGINX_H1
        [ "$proto" = h2 ] && ceiling=$NGINX_H2
        ratio=$(awk "BEGIN {printf \"%.2f\", $rps / $ceiling}")
        want=$(goal "$route" "$proto" "$cache")
        met=""
        if [ "$want" != - ] && [ "$log" = off ]; then
            met=$(awk "BEGIN {print ($ratio >= $want) ? \"yes\" : \"no\"}")
        else
            want=""
        fi
        echo "| $route | $proto | $cache | $log | $io | $rps | $p50 | $p99 | $ratio | $want | $met |"
    done
    echo
    echo "p99: nginx $NGINX_P99 (h1), $NGINX_H2_P99 (h2); infergate's in the rows above (goal: no worse)."
    echo
    cells() { # printf format, one value per backend
        local fmt=$1 io
        shift
        for io in $IO_BACKENDS; do printf " $fmt |" "$("$@" "$io")"; done
    }
    mib() { echo $(( $1 / 1024 )); }
    idle_rss_of() { mib "${IDLE_RSS[$1]}"; }
    loaded_rss_of() { mib "${LOADED_RSS[$1]}"; }
    ready_of() { echo "${READY_MS[$1]}"; }
    held_of() {
        local h=${HELD[$1]}
        echo "$(mib "${HELD_RSS[$1]}") MiB ($h held; $(( (HELD_RSS[$1] - HELD_BEFORE[$1]) * 1024 / (h > 0 ? h : 1) )) B each over idle)"
    }
    echo "| memory and start |$(for io in $IO_BACKENDS; do printf ' infergate (%s) |' "$io"; done) nginx |"
    echo "|---|$(for _ in $IO_BACKENDS; do printf -- '---:|'; done)---:|"
    binary_of() { mib $(( $(stat -c %s "$BIN") / 1024 )); }
    echo "| binary |$(cells '%s MiB' binary_of) |"
    echo "| start to /ready |$(cells '%s ms' ready_of) |"
    echo "| RSS idle |$(cells '%s MiB' idle_rss_of) $((nginx_idle_rss / 1024)) MiB (master + workers) |"
    echo "| RSS peak under the log-off matrix |$(cells '%s MiB' loaded_rss_of) |"
    echo "| RSS holding $IDLE_CONNS idle TLS keep-alive connections |$(cells '%s' held_of) $((nginx_idle_conns_rss / 1024)) MiB ($nginx_held held) |"
    echo
    for io in $IO_BACKENDS; do
        echo "coalescing ($io), 500 identical requests for a new input (h2load -n500 -c10 -m50): ${COALESCING[$io]}"
        echo
        echo "prediction log on ($io): ${LOGGED[$io]} rows in PostgreSQL after its runs"
        echo
    done
} | tee -a "$results"
echo
echo "results written to $results"
