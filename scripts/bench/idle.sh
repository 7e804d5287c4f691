#!/usr/bin/env bash
# What an idle TLS keep-alive connection costs: resident memory per connection, held N at
# once, for infergate on each I/O backend and nginx `return 200` over TLS (2 workers), in one
# run. Each connection is served one request (`GET /health`, `/` for nginx), then held idle;
# RSS is read SETTLE_S seconds after the count is reached, the same for every server: the
# gateway's idle connections have parked (server.keepalive_park_after_ms, 1 s) and its
# allocator has given back what the handshakes freed (jemalloc returns freed pages after
# 10 s), so the figure is what holding the connections costs, not the handshakes'
# leftovers; compared with RSS before the first connection.
# A count the open-file limit cannot hold (server and client each need N descriptors) is
# reported as skipped.
#
#   scripts/bench/idle.sh                                # IDLE_COUNTS="10000 50000"
#   IDLE_COUNTS=1000 IO_BACKENDS=epoll scripts/bench/idle.sh
#   PARK_AFTER_MS=0 scripts/bench/idle.sh                # the gateway never parks
#   SETTLE_S=3 scripts/bench/idle.sh                     # read RSS sooner (before jemalloc's decay)
#   BIN=/tmp/old/infergate PARK_AFTER_MS= scripts/bench/idle.sh   # a build from before parking
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/load.sh
source scripts/lib/load.sh

IDLE_COUNTS=${IDLE_COUNTS:-10000 50000}
IO_THREADS=${IO_THREADS:-2}
IO_BACKENDS=${IO_BACKENDS:-uring epoll}
PARK_AFTER_MS=${PARK_AFTER_MS-1000}
SETTLE_S=${SETTLE_S:-20}

need nginx=nginx-light openssl curl
ulimit -n "$(ulimit -Hn)"
HARD=$(ulimit -Hn)

BIN=$(ensure_bin)
workdir

# per_conn BEFORE_KIB AFTER_KIB HELD: bytes per held connection, in KB (1000 bytes).
per_conn() { awk -v b="$1" -v a="$2" -v n="$3" 'BEGIN {if (n > 0) printf "%.1f", (a - b) * 1024 / n / 1000; else print "-"}'; }

# scrape PORT: the gateway's /metrics.
scrape() { curl -ks "https://127.0.0.1:$1/metrics"; }
# allocated_kib: the gateway's live allocations (jemalloc's) in the /metrics text on stdin,
# KiB; 0 from a build that does not export them.
allocated_kib() { awk '$1 == "infergate_allocator_allocated_bytes" {k = $2 / 1024} END {printf "%d", k}'; }

ROWS=()
for N in $IDLE_COUNTS; do
    # The server's N plus its own, and the client's N plus its own.
    if ((N + 512 > HARD)); then
        echo "==> $N connections: skipped, the hard open-file limit here is $HARD" >&2
        ROWS+=("| $N | skipped: hard open-file limit $HARD | | |")
        continue
    fi
    row="| $N"
    for IO in $IO_BACKENDS; do
        echo "==> infergate on $IO, $N idle TLS connections" >&2
        PORT=$(free_port)
        park=()
        # Empty: the gateway's own setting (a build from before parking knows no such key).
        [ -n "$PARK_AFTER_MS" ] && park=("INFERGATE_SERVER__KEEPALIVE_PARK_AFTER_MS=$PARK_AFTER_MS")
        env INFERGATE_SERVER__MAX_CONNECTIONS=$((N + 1000)) "${park[@]}" \
            "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$PORT" --io-threads "$IO_THREADS" \
            --io "$IO" --log-format json >"$WORK/gw-$IO-$N.log" 2>&1 &
        GW=$!
        PIDS+=("$GW")
        wait_for "https://127.0.0.1:$PORT/ready"
        sleep 1
        before=$(rss_kib "$GW")
        allocated_before=$(scrape "$PORT" | allocated_kib)
        hold "$PORT" "$N" /health 600
        sleep "$SETTLE_S"
        after=$(rss_kib "$GW")
        # One scrape for both readings.
        metrics=$(scrape "$PORT")
        allocated_after=$(allocated_kib <<<"$metrics")
        parked=$(awk '$1 == "infergate_connections_parked" {print $2}' <<<"$metrics")
        allocated=$(per_conn "$allocated_before" "$allocated_after" "$HELD")
        echo "  $IO: $HELD held, ${parked:-?} parked, RSS $before -> $after KiB: $(per_conn "$before" "$after" "$HELD") KB each ($allocated KB allocated)" >&2
        row+=" | $(per_conn "$before" "$after" "$HELD") KB ($HELD held, ${parked:-?} parked; $allocated KB allocated)"
        stop "$HOLD"
        stop "$GW"
    done

    echo "==> nginx, $N idle TLS connections" >&2
    start_nginx "$IO_THREADS" "$N"
    sleep 1
    before=$(tree_rss_kib "$NG")
    hold "$NPORT" "$N" / 600
    sleep "$SETTLE_S"
    after=$(tree_rss_kib "$NG")
    echo "  nginx: $HELD held, RSS $before -> $after KiB: $(per_conn "$before" "$after" "$HELD") KB each" >&2
    row+=" | $(per_conn "$before" "$after" "$HELD") KB ($HELD held) |"
    stop "$HOLD"
    stop "$NG"
    ROWS+=("$row")
done

header="| idle TLS keep-alive connections"
rule="|---:"
for IO in $IO_BACKENDS; do
    header+=" | infergate $IO"
    rule+="|---:"
done
echo
echo "RSS per idle connection (KB = 1000 bytes), $(nproc) cores, kernel $(uname -r)," \
    "infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?') io_threads=$IO_THREADS" \
    "keepalive_park_after_ms=${PARK_AFTER_MS:-its own}, $(nginx_version) worker_processes $IO_THREADS," \
    "RSS read ${SETTLE_S} s after the last connection:"
echo
echo "$header | nginx |"
echo "$rule|---:|"
printf '%s\n' "${ROWS[@]}"
