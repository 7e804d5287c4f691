#!/usr/bin/env bash
# infergate against nginx on this machine, in one run: whether the gateway is at nginx's
# speed *here* (issue 29's goals). Alternated rounds: each round starts nginx `return 200`
# over TLS (worker_processes = IO_THREADS), then infergate on each I/O backend (release
# build, io_threads = IO_THREADS, prediction log off, bundled models), each fresh, and
# drives each with wrk (HTTP/1.1, -t2 -c64) and h2load (HTTP/2, -c64 -m10 -t2) for
# DURATION s per case: /health and cached /predict (hit-l1) for infergate, / for nginx.
# Reports per case and backend the median req/s (min–max) and the median p99 over the
# rounds, and the ratio of the medians to nginx's, against the goals:
#   default backend (uring, first in IO_BACKENDS): /health >= 1.0x, cached /predict >= 0.9x
#   the other backend:                             /health >= 0.8x, cached /predict >= 0.8x
#   p99 no worse than nginx's on the same protocol.
# Load generator and servers share this machine's cores, as in every run here: compare
# figures from one run only. Writes the table to bench-results/ as well.
#
#   scripts/bench.sh                              # ROUNDS=3 DURATION=8 IO_BACKENDS="uring epoll"
#   ROUNDS=5 DURATION=15 scripts/bench.sh
#   BIN=/tmp/other/infergate scripts/bench.sh     # another build
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/load.sh
source scripts/lib/load.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
IO_THREADS=${IO_THREADS:-2}
IO_BACKENDS=${IO_BACKENDS:-uring epoll}
OUT=${OUT:-bench-results}
mkdir -p "$OUT"

need wrk h2load=nghttp2-client nginx=nginx-light openssl curl
BIN=$(ensure_bin)
workdir
printf '%s' '{"features":[5.1,3.5,1.4,0.2]}' >"$WORK/iris.json"
wrk_post_lua iris application/json "$WORK/iris.json"

# result SERVER CASE "req/s p50 p99": one line of $WORK/results.
result() { echo "$1|$2|$3" >>"$WORK/results"; echo "  $1 $2: $3" >&2; }

for round in $(seq 1 "$ROUNDS"); do
    echo "==> round $round of $ROUNDS: nginx" >&2
    start_nginx "$IO_THREADS" "$CONNS"
    result nginx "h1 /health" "$(wrk_run "https://127.0.0.1:$NPORT/")"
    result nginx "h2 /health" "$(h2_run "https://127.0.0.1:$NPORT/")"
    # nginx has no /predict: its `return 200` is the ceiling for both routes.
    stop "$NG"
    for io in $IO_BACKENDS; do
        echo "==> round $round of $ROUNDS: infergate on $io" >&2
        port=$(free_port)
        "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" --io-threads "$IO_THREADS" \
            --io "$io" --log-format json >"$WORK/gw-$io.log" 2>&1 &
        GW=$!
        PIDS+=("$GW")
        wait_for "https://127.0.0.1:$port/ready"
        base="https://127.0.0.1:$port"
        result "$io" "h1 /health" "$(wrk_run "$base/health")"
        result "$io" "h2 /health" "$(h2_run "$base/health")"
        result "$io" "h1 /predict hit-l1" "$(wrk_run "$base/predict" "$WORK/iris.lua")"
        result "$io" "h2 /predict hit-l1" "$(h2_run "$base/predict" application/json "$WORK/iris.json")"
        stop "$GW"
    done
done

results="$OUT/bench-nginx-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# scripts/bench.sh, $(date -u +%FT%TZ): $ROUNDS alternated rounds"
    echo
    echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?') (release), io_threads=$IO_THREADS;" \
        "$(nginx_version) worker_processes $IO_THREADS, \`return 200\` over TLS"
    echo "- wrk -t2 -c$CONNS -d${DURATION}s (HTTP/1.1); h2load -c$CONNS -m10 -t2 -D$DURATION (HTTP/2);" \
        "medians over the rounds; load generator and servers share the cores"
    echo
    python3 - "$WORK/results" "$IO_BACKENDS" <<'PY'
import collections, re, statistics, sys

def ms(text):
    """wrk's and h2_run's latencies ("812.00us", "6.57ms", "1.02s") in ms."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return None
    return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]

runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    server, case, figures = line.rstrip("\n").split("|")
    rps, _, p99 = figures.split()
    runs[(server, case)].append((float(rps), ms(p99)))
backends = sys.argv[2].split()
default = backends[0]

def median(server, case, i):
    values = [r[i] for r in runs[(server, case)] if r[i] is not None]
    return statistics.median(values) if values else None

print("| case | server | req/s, median (min–max) | p99, median | ÷ nginx req/s | goal | p99 ≤ nginx's | met |")
print("|---|---|---:|---:|---:|---:|---|---|")
all_met = True
for proto in ("h1", "h2"):
    ceiling = median("nginx", f"{proto} /health", 0)
    ceiling_p99 = median("nginx", f"{proto} /health", 1)
    r = [x[0] for x in runs[("nginx", f"{proto} /health")]]
    print(f"| {proto} `return 200` | nginx | {ceiling:,.0f} ({min(r):,.0f}–{max(r):,.0f}) | {ceiling_p99:.2f} ms | 1.00 | | | |")
    for route in ("/health", "/predict hit-l1"):
        for io in backends:
            case = f"{proto} {route}"
            if (io, case) not in runs:
                continue
            rps, p99 = median(io, case, 0), median(io, case, 1)
            r = [x[0] for x in runs[(io, case)]]
            ratio = rps / ceiling
            want = (1.0 if route == "/health" else 0.9) if io == default else 0.8
            p99_ok = p99 is not None and p99 <= ceiling_p99
            met = ratio >= want and p99_ok
            all_met &= met
            label = f"infergate {io}" + (" (default)" if io == default else "")
            print(f"| {case} | {label} | {rps:,.0f} ({min(r):,.0f}–{max(r):,.0f}) | {p99:.2f} ms | {ratio:.2f} | {want:.1f} | {'yes' if p99_ok else 'no'} | {'yes' if met else 'no'} |")
print()
print(f"All goals met on this machine: {'yes' if all_met else 'no'}.")
PY
} | tee "$results"
echo
echo "results written to $results"
