#!/usr/bin/env bash
# Cold start to the first answered prediction, under socket activation: as systemd does
# with config/systemd/infergate.socket, systemd-socket-activate binds and listens, and
# starts the binary (the socket as fd 3) when the first connection arrives. curl's request
# waits in the backlog meanwhile; its total time is the cold start a client sees: process
# start, model load, TLS handshake, the prediction (the warm-up runs beside it).
#
# Three cases, RUNS times each, min/median/max in milliseconds:
#   tabular, image model off  POST /predict {"features":[...]} (INFERGATE_IMAGE__BUNDLED=false)
#   tabular                   the same, default config (the bundled EfficientNet-Lite0 loads too)
#   image upload              POST /predict -F file=@$PHOTO (decode, preprocess, forward)
#
#   scripts/bench/coldstart.sh [BINARY]        (default: BIN, else the release build,
#                                               built or brought up to date)
#   RUNS=20 PHOTO=tests/fixtures/images/flower.jpg scripts/bench/coldstart.sh
#
# Needs systemd-socket-activate (Debian: systemd), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

RUNS=${RUNS:-10}
IO_THREADS=${IO_THREADS:-2}
PHOTO=${PHOTO:-tests/fixtures/images/bike.jpg}
FEATURES='{"features":[5.1,3.5,1.4,0.2]}'

need systemd-socket-activate=systemd curl

BIN=${1:-$(ensure_bin)}
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }
[ -f "$PHOTO" ] || { echo "no photo at $PHOTO" >&2; exit 1; }

workdir

# one_run CASE: one cold start; appends the milliseconds to the first answer to RESULTS.
RESULTS=()
one_run() {
    local case=$1 port log env=() request=()
    port=$(free_port)
    log="$WORK/$case-$port.log"
    case $case in
    tabular-only)
        env=(-E INFERGATE_IMAGE__BUNDLED=false)
        request=(-H 'content-type: application/json' --data "$FEATURES")
        ;;
    tabular)
        request=(-H 'content-type: application/json' --data "$FEATURES")
        ;;
    image)
        request=(-F "file=@$PHOTO")
        ;;
    esac
    # systemd-socket-activate passes on only the variables named with -E.
    systemd-socket-activate -l "127.0.0.1:$port" --fdname=https \
        -E INFERGATE_SECRETS__DIR="$WORK/no-secrets" "${env[@]}" \
        "$BIN" serve --config-dir "$WORK/none" --io-threads "$IO_THREADS" \
        --log-format json >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    # The socket is up once the launcher says so; the binary is not started yet.
    for _ in $(seq 1 500); do
        grep -q "Listening on" "$log" 2>/dev/null && break
        sleep 0.01
    done
    grep -q "Listening on" "$log" || { echo "systemd-socket-activate did not listen:" >&2; cat "$log" >&2; exit 1; }
    local out status seconds
    out=$(curl -ksS -o "$WORK/body" -w '%{http_code} %{time_total}' --max-time 120 \
        "${request[@]}" "https://127.0.0.1:$port/predict")
    status=${out% *}
    seconds=${out#* }
    if [ "$status" != 200 ]; then
        echo "$case: answered $status: $(head -c 300 "$WORK/body")" >&2
        cat "$log" >&2
        exit 1
    fi
    # SIGTERM drains and exits 0; wait so the next run starts from nothing.
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    PIDS=() # the one process this run started is gone
    if [ "$rc" != 0 ]; then
        echo "$case: exit status $rc after SIGTERM" >&2
        cat "$log" >&2
        exit 1
    fi
    RESULTS+=("$(python3 -c "print(round($seconds * 1000, 1))")")
}

# summary LABEL MS...: one table row.
summary() {
    local label=$1
    shift
    python3 - "$label" "$@" <<'PY'
import statistics, sys
label, ms = sys.argv[1], sorted(float(x) for x in sys.argv[2:])
print(f"{label:<28} {len(ms):>4} {ms[0]:>9.1f} {statistics.median(ms):>9.1f} {ms[-1]:>9.1f}")
PY
}

echo "cold start to the first answered prediction: $BIN, $RUNS runs, $IO_THREADS I/O threads"
printf '%-28s %4s %9s %9s %9s\n' case runs min_ms median_ms max_ms
for case in tabular-only tabular image; do
    RESULTS=()
    for _ in $(seq 1 "$RUNS"); do
        one_run "$case"
    done
    case $case in
    tabular-only) label="tabular, image model off" ;;
    tabular) label="tabular" ;;
    image) label="image upload ($(basename "$PHOTO"))" ;;
    esac
    summary "$label" "${RESULTS[@]}"
done
