#!/usr/bin/env bash
# Shadow mirroring's cost to the client, same run: an open-loop load of uncached
# predictions (benches/overload.rs: distinct features, Cache-Control: no-cache, a fixed
# rate over h2+TLS, latency from each request's scheduled send) against a repository model
# `s` whose version 1 answers everything, with no shadow and with every request (SHARE)
# mirrored to version 2 — so the shadow doubles the model work. Rounds alternate the two;
# the table gives each run's accepted p50 / p90 / p99 and what the shadow compared.
#
#   scripts/bench/shadow.sh                          # 3 rounds of 15 s at 400 req/s
#   RATE=1000 ROUNDS=5 SHARE=0.5 scripts/bench/shadow.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

RATE=${RATE:-400}
ROUNDS=${ROUNDS:-3}
SHARE=${SHARE:-1.0}
SECONDS_EACH=${SECONDS_EACH:-15}
SKIP=${SKIP:-3}
need curl
BIN=$(ensure_bin)
LOAD=$(overload_binary)

workdir
# Two versions of the bundled Iris model whose outputs differ (another normalisation).
python3 - "$WORK/models/s" <<'PY'
import json, os, shutil, sys
root = sys.argv[1]
for version, shift in (("1", 0.0), ("2", 1.0)):
    d = os.path.join(root, version)
    os.makedirs(d)
    shutil.copy("src/infer/demo/model.safetensors", d)
    m = json.load(open("src/infer/demo/manifest.json"))
    m["normalization"]["mean"][0] += shift
    json.dump(m, open(os.path.join(d, "manifest.json"), "w"))
PY

run() { # name shadow(0|1)
    local name=$1 shadow=$2 port out compared
    {
        printf '[version_policy]\nall = true\n[traffic]\n"1" = 1\n'
        [ "$shadow" = 1 ] && printf '[shadow]\nversion = "2"\nshare = %s\n' "$SHARE"
    } >"$WORK/models/s/model.toml"
    port=$(free_port)
    INFERGATE_REPOSITORY__PATH="$WORK/models" INFERGATE_REPOSITORY__POLL_INTERVAL_MS=0 \
        INFERGATE_IMAGE__BUNDLED=false INFERGATE_LOG__LEVEL=warn \
        "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" --io-threads 1 \
        --log-format json >"$WORK/$name.log" 2>&1 &
    GW=$!
    PIDS+=("$GW")
    wait_ready "$port"
    out=$(OVERLOAD_URL="https://127.0.0.1:$port/predict?model=s" OVERLOAD_RATE=$RATE \
        OVERLOAD_SECONDS=$SECONDS_EACH OVERLOAD_SKIP_SECONDS=$SKIP "$LOAD")
    compared=$(curl -ks "https://127.0.0.1:$port/metrics" |
        awk '/^infergate_shadow_requests_total.*outcome="compared"/ {s += $2} END {print s + 0}')
    echo "$name|$compared|$out" >>"$WORK/results"
    stop "$GW"
}

for round in $(seq 1 "$ROUNDS"); do
    run "no shadow" 0
    run "shadow $SHARE" 1
    echo "round $round of $ROUNDS done" >&2
done

echo "# scripts/bench/shadow.sh, $(date -u +%FT%TZ): $ROUNDS rounds"
echo
echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?'), io_threads=1, default compute threads"
echo "- load: open loop, $RATE uncached predictions/s over h2+TLS (4 connections), ${SECONDS_EACH}s a run, the first ${SKIP}s not counted"
echo
python3 - "$WORK/results" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, compared, out = line.rstrip("\n").split("|", 2)
    runs[name].append((int(float(compared)), json.loads(out)))
print("| variant | runs | accepted req/s | non-200 | p50 ms (median of runs) | p90 ms | p99 ms | p99 min–max | shadow comparisons a run |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, rs in runs.items():
    med = lambda k: statistics.median(r[k] for _, r in rs)
    p99 = [r["p99_ms"] for _, r in rs]
    bad = sum(r["shed_503"] + r["deadline_504"] + r["other_status"] + r["errors"] for _, r in rs)
    print(f"| {name} | {len(rs)} | {med('accepted_per_s'):,.0f} | {bad} | {med('p50_ms'):.2f} | {med('p90_ms'):.2f} | {med('p99_ms'):.2f} | {min(p99):.2f}–{max(p99):.2f} | {statistics.median(c for c, _ in rs):,.0f} |")
PY
