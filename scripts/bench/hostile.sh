#!/usr/bin/env bash
# Hostile clients against one gateway while a normal client keeps asking: the normal
# client's latency (open loop, benches/overload.rs: uncached predictions at RATE a second)
# alone, then during each attack of scripts/bench/hostile-clients.py (1,000 slowloris
# connections, 500 body trickles, an HTTP/2 rapid-reset flood, a CONTINUATION flood).
# Records the normal client's p50/p99 and failures, what the attack achieved, and RSS.
#
#   scripts/bench/hostile.sh
#   RATE=500 SECONDS_EACH=15 scripts/bench/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

RATE=${RATE:-200}
SECONDS_EACH=${SECONDS_EACH:-12}
ATTACKS=${ATTACKS:-"slowloris:1000 trickle:500 rapid-reset:4 continuation:4"}
RAMP_S=${RAMP_S:-8}
need curl
BIN=$(ensure_bin)
LOAD=$(overload_binary)

workdir
raise_fd_limit() { ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }
raise_fd_limit

port=$(free_port)
INFERGATE_IMAGE__BUNDLED=false INFERGATE_LOG__LEVEL=warn \
    "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" --io-threads 2 \
    --log-format json >"$WORK/gateway.log" 2>&1 &
GW=$!
PIDS+=("$GW")
wait_ready "$port"

normal() {
    OVERLOAD_URL="https://127.0.0.1:$port/predict" OVERLOAD_RATE=$RATE \
        OVERLOAD_SECONDS=$SECONDS_EACH OVERLOAD_SKIP_SECONDS=1 OVERLOAD_CONNECTIONS=2 "$LOAD"
}

echo "none|{}|$(rss_mib "$GW")|$(normal)" >>"$WORK/results"
for attack in $ATTACKS; do
    IFS=: read -r mode n <<<"$attack"
    python3 scripts/bench/hostile-clients.py "$mode" 127.0.0.1 "$port" "$n" >"$WORK/$mode.out" 2>"$WORK/$mode.err" &
    ATTACKER=$!
    PIDS+=("$ATTACKER")
    # Long enough for every attacking connection to be open (Python's handshakes are slow).
    sleep "$RAMP_S"
    out=$(normal)
    rss=$(rss_mib "$GW")
    stop -INT "$ATTACKER"
    kill -0 "$GW" || { echo "the gateway died under $mode" >&2; cat "$WORK/gateway.log" >&2; exit 1; }
    echo "$mode x$n|$(tail -1 "$WORK/$mode.out")|$rss|$out" >>"$WORK/results"
    sleep 2
done
metrics=$(curl -ks "https://127.0.0.1:$port/metrics")

echo "# scripts/bench/hostile.sh, $(date -u +%FT%TZ)"
echo
echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?'), io_threads=2, defaults otherwise"
echo "- normal client: open loop, $RATE uncached /predict a second over h2+TLS for ${SECONDS_EACH}s, once the attack has run ${RAMP_S}s"
echo
python3 - "$WORK/results" <<'PY'
import json, sys
print("| attack | normal client: answered / failed | p50 / p99 / max ms | what the attack got | RSS MiB |")
print("|---|---:|---:|---|---:|")
for line in open(sys.argv[1]):
    name, attack, rss, out = line.rstrip("\n").split("|", 3)
    a, r = json.loads(attack), json.loads(out)
    bad = r["counted"] - r["ok"]
    got = ", ".join(f"{k} {v:,}" for k, v in a.items() if k not in ("mode", "clients") and v)
    print(f"| {name} | {r['ok']:,} / {bad:,} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} | {got or '–'} | {rss} |")
PY
echo
echo "Server counters after the runs:"
echo
echo '```'
grep -E '^infergate_connection_timeouts_total|^infergate_requests_total\{route="/predict",status="408"' <<<"$metrics" || true
echo '```'
