# shellcheck shell=bash
# The checks a running stack is put through, shared by scripts/test/containers.sh and
# scripts/test/multinode.sh (sourced after common.sh, with `work` made): pass and fail
# lines, HTTPS probes of a published port on 127.0.0.1, and wrk loads that count every
# failed request. The caller defines `rows` (the predictions table's row count) and
# `show_gateway_logs` (what a failed load prints of the gateways).
# shellcheck disable=SC2034,SC2154 # KA, FRESH, DEPLOYED are the caller's to read; work its own

# skip_without_docker WHAT: exits 0, loudly, where no Docker engine answers.
skip_without_docker() {
    docker info >/dev/null 2>&1 && return
    echo "#####################################################################"
    echo "## SKIPPED: $1: no Docker engine answers on this machine"
    echo "#####################################################################"
    exit 0
}

passed=0
ok() { echo "  ok: $*"; passed=$((passed + 1)); }
# fd 3 is the calling script's own stderr: a failure inside a step whose output goes to a
# log (under_load ... >"$work/swarm.log") still says what failed.
exec 3>&2
die() { echo "  FAIL: $*" >&3; exit 1; }
section() { step "containers: $*"; }

# eventually SECONDS CMD...: until CMD succeeds (tried every 0.2 s); 1 once SECONDS pass.
eventually() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

wait_https() { # URL [SECONDS]: until the URL answers 200
    eventually "${2:-120}" curl -ksf -o /dev/null "$1" || die "$1 did not answer 200 in ${2:-120}s"
}

# prometheus_up PORT N: whether the Prometheus on PORT has at least N targets up.
prometheus_up() {
    (($(curl -s "http://127.0.0.1:$1/api/v1/targets" | grep -o '"health":"up"' | wc -l) >= $2))
}

# AUTH: the curl arguments that present the client's key, where the stack has keys on
# (compose.prod.yml); set by use_keys, empty otherwise.
AUTH=()
CLIENT_KEY=
use_keys() { # SECRETS_DIR: requests present the client key gen-dev-secrets.sh made there
    CLIENT_KEY=$(cat "$1/api_key_client")
    AUTH=(-H "authorization: Bearer $CLIENT_KEY")
}
no_keys() { AUTH=(); CLIENT_KEY=; }

status_and_cache() { # response headers on stdin -> "STATUS x-cache"
    awk 'tolower($1) == "x-cache:" { c = $2 } NR == 1 { s = $2 } END { gsub("\r", "", c); print s, c }'
}

predict_json() { # PORT BODY -> prints "HTTP x-cache" of the answer
    curl -ks -o /dev/null -D - "${AUTH[@]}" -H 'content-type: application/json' -d "$2" \
        "https://127.0.0.1:$1/predict" | status_and_cache
}

code() { curl -ks -o /dev/null -w '%{http_code}' "$@"; } # curl ARGS -> the status only

has_rows() { # N [ARG]: whether predictions holds at least N rows (`rows ARG` counts them)
    local n
    n=$(rows "${2:-}") && [ -n "$n" ] && ((n >= $1))
}
wait_rows() { # N [ARG]: until predictions holds at least N rows
    eventually "${ROWS_TIMEOUT:-30}" has_rows "$@" || die "predictions has $(rows "${2:-}") rows, expected $1"
}

# A wrk load for the whole rollout: keep-alive connections and, separately, a new connection
# per request. Prints wrk's summary to $work/wrk-<name>.txt.
load_start() { # NAME PORT [extra wrk args]
    local name=$1 port=$2
    shift 2
    # A script per load: the next load_start must not rewrite a file the wrk started just
    # before may still be reading (a truncated script sends GET /predict: 405 for all).
    cat >"$work/predict-$name.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"features": [6.1, 2.8, 4.7, 1.2]}'
wrk.headers["Content-Type"] = "application/json"
LUA
    [ -z "$CLIENT_KEY" ] || printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$CLIENT_KEY" >>"$work/predict-$name.lua"
    # What fails the check is a refused, reset or non-2xx request, not a slow one: wrk's
    # 2 s default would count as failed a request that waited out a busy CI machine's
    # scheduler (two cores shared with the other test passes); a request stuck for 10 s
    # still counts.
    wrk -t1 -c8 -d600s --timeout 10s -s "$work/predict-$name.lua" "$@" "https://127.0.0.1:$port/predict" \
        >"$work/wrk-$name.txt" 2>&1 &
    echo $! >"$work/wrk-$name.pid"
    echo "$port" >"$work/wrk-$name.port"
}

# The log of the step under load, printed when it fails (deploy.sh's or swarm.sh's).
STEP_LOG=

# load_count NAME: stops the load; sets REQUESTS (answered 2xx) and FAILED (socket errors:
# connect, read, write, timeout; and non-2xx answers), as wrk's summary gives them.
load_count() {
    # Not in $(...): only this shell, wrk's parent, can wait for it to write its summary.
    local name=$1 pid
    pid=$(cat "$work/wrk-$name.pid")
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    LOAD_SUMMARY=$(cat "$work/wrk-$name.txt")
    local total
    total=$(awk '/requests in/ { print $1 }' <<<"$LOAD_SUMMARY")
    FAILED=$(awk '/Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' <<<"$LOAD_SUMMARY")
    local non2xx
    non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$LOAD_SUMMARY")
    REQUESTS=$((${total:-0} - ${non2xx:-0}))
}

load_stop() { # NAME: stops the load (sets REQUESTS), fails on any error or non-2xx answer.
    local name=$1
    load_count "$name"
    if ((FAILED > 0 || REQUESTS == 0)); then
        # What the gateways answered and logged, for a failure seen only in CI; wrk's own
        # summary last, and its error lines in the failure itself (CI shows the tail).
        curl -ks -D - -o - "${AUTH[@]}" -H 'content-type: application/json' -d '{"features": [5.1, 3.5, 1.4, 0.2]}' \
            "https://127.0.0.1:$(cat "$work/wrk-$name.port")/predict" >&3 2>&1 || true
        show_gateway_logs >&3 2>&1 || true
        [ -n "$STEP_LOG" ] && [ -f "$STEP_LOG" ] && sed "s/^/    $(basename "$STEP_LOG"): /" "$STEP_LOG" >&3
        echo "$LOAD_SUMMARY" >&3
        die "load '$name': requests failed during the rollout: $(grep -E 'Socket errors|Non-2xx' <<<"$LOAD_SUMMARY" | tr -s ' \n' ' ')"
    fi
}

# loads_start PORT: both loads against PORT, `keepalive` and `fresh` (a new connection per
# request).
loads_start() {
    load_start keepalive "$1"
    load_start fresh "$1" -H "Connection: close"
}

# under_load PORT CMD...: CMD while both loads run against PORT; sets DEPLOYED (its exit
# status), KA and FRESH (requests answered); fails on any failed request.
under_load() {
    local port=$1
    shift
    loads_start "$port"
    sleep 2
    DEPLOYED=0
    "$@" || DEPLOYED=$?
    sleep 2
    load_stop keepalive
    KA=$REQUESTS
    load_stop fresh
    FRESH=$REQUESTS
}
