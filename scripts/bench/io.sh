#!/usr/bin/env bash
# The I/O backends A/B, alternated: each round starts the gateway once per variant and
# drives it with h2load over TLS for a fixed number of requests per case (HTTP/1.1 and
# HTTP/2 /health, cached tabular /predict; HTTP/1.1 image upload), then prints, per case
# and variant, the median req/s (min, max) and the median server CPU per request (the
# gateway's utime + stime over the run, from /proc). On a shared, noisy machine,
# alternating and taking medians is what makes a 10 % difference visible; CPU per request
# is steadier than req/s.
#
#   scripts/bench/io.sh                                   # uring vs epoll, 6 rounds
#   ROUNDS=10 VARIANTS="uring:uring epoll:epoll" scripts/bench/io.sh
#   BIN=/tmp/other/infergate VARIANTS="a:uring" scripts/bench/io.sh
#
# VARIANTS: space-separated NAME:IO[:ENV=VALUE+ENV=VALUE...] (extra environment for that
# variant's gateway, `+`-separated). HEADER: one more request header every case sends to
# every variant (scripts/bench/edge.sh: an API key, which an open gateway ignores).
# CASES_SPEC: the cases instead of the built-in ones (see CASES below). BIN_<NAME>: another
# binary for the variant NAME, other characters than letters, digits and _ written _
# (BIN_old=/tmp/old/infergate VARIANTS="old:uring new:uring").
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

ROUNDS=${ROUNDS:-6}
VARIANTS=${VARIANTS:-uring:uring epoll:epoll}
CONNS=${CONNS:-64}
need h2load=nghttp2-client curl
BIN=$(ensure_bin)
workdir
printf '%s' '{"features":[5.1,3.5,1.4,0.2]}' >"$WORK/iris.json"
IMAGE=tests/fixtures/images/bike.jpg
# NAME|REQUESTS|H2LOAD FLAGS|PATH|BODY FILE:CONTENT TYPE
CASES=(
    "h1 /health|60000|--h1 -m1|/health|"
    "h2 /health|100000|-m10|/health|"
    "h1 /predict hit-l1|60000|--h1 -m1|/predict|$WORK/iris.json:application/json"
    "h2 /predict hit-l1|100000|-m10|/predict|$WORK/iris.json:application/json"
    "h1 image upload hit-l1|2000|--h1 -m1|/predict|$IMAGE:image/jpeg"
)
# CASES_SPEC (one case a line, the same fields) replaces them (scripts/bench/oip.sh).
if [ -n "${CASES_SPEC:-}" ]; then mapfile -t CASES <<<"$CASES_SPEC"; fi
tick=$(getconf CLK_TCK)
cpu_us() { awk -v t="$tick" '{print ($14 + $15) * 1000000 / t}' "/proc/$1/stat"; }

for round in $(seq 1 "$ROUNDS"); do
    for variant in $VARIANTS; do
        IFS=: read -r name io envs <<<"$variant"
        port=$(free_port)
        # BIN_<NAME>, when set, is that variant's binary (two builds A/B).
        bin_var="BIN_${name//[^A-Za-z0-9_]/_}"
        # shellcheck disable=SC2086 # the variant's environment, word-split on purpose
        env ${envs//+/ } "${!bin_var:-$BIN}" --config-dir "$WORK/none" --listen "127.0.0.1:$port" \
            --io-threads 2 --io "$io" --log-format json >"$WORK/$name.log" 2>&1 &
        GW=$!
        PIDS+=("$GW")
        wait_ready "$port"
        for case in "${CASES[@]}"; do
            IFS='|' read -r cname n flags path body <<<"$case"
            extra=()
            [ -n "$body" ] && extra=(-d "${body%%:*}" -H "content-type: ${body#*:}")
            [ -n "${HEADER:-}" ] && extra+=(-H "$HEADER")
            c0=$(cpu_us "$GW")
            # shellcheck disable=SC2086 # h2load's flags, word-split on purpose
            out=$(h2load -n "$n" -c "$CONNS" -t 2 $flags "${extra[@]}" "https://127.0.0.1:$port$path" 2>&1)
            c1=$(cpu_us "$GW")
            grep -q "status codes: $n 2xx" <<<"$out" ||
                echo "round $round, $name, $cname: $(grep 'status codes' <<<"$out")" >&2
            rps=$(awk '/^finished in/ {print int($4)}' <<<"$out")
            echo "$cname|$name|$rps|$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN {printf "%.2f", (b - a) / n}')" >>"$WORK/results"
        done
        stop "$GW"
    done
    echo "round $round of $ROUNDS done" >&2
done

echo "# scripts/bench/io.sh, $(date -u +%FT%TZ): $ROUNDS rounds, variants: $VARIANTS"
echo
echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), kernel $(uname -r)"
echo "- infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?'), io_threads=2; h2load -c$CONNS -t2 over TLS, a fixed request count per case"
echo
python3 - "$WORK/results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    case, name, rps, cpu = line.strip().split("|")
    if (case, name) not in runs:
        order.append((case, name))
    runs[(case, name)].append((int(rps), float(cpu)))
print("| case | variant | req/s median (min–max) | server CPU µs/request, median |")
print("|---|---|---:|---:|")
for case, name in sorted(order, key=lambda k: [c for c, _ in order].index(k[0])):
    v = runs[(case, name)]
    r = [x[0] for x in v]
    print(f"| {case} | {name} | {statistics.median(r):,.0f} ({min(r):,}–{max(r):,}) | {statistics.median(x[1] for x in v):.2f} |")
PY
