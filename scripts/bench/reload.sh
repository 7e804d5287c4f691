#!/usr/bin/env bash
# Hot reload under load: h2load drives cached and uncached /predict for one repository
# model while a new version is dropped into the repository every INTERVAL seconds (each
# with other outputs; written beside it and renamed in, as an operator's deploy would).
# Prints h2load's own summary (0 failed, every status 2xx is the claim), how many reloads
# the gateway made, and which version served at the end.
#
#   scripts/bench/reload.sh                 # 5 new versions, one a second, h2 and h1
#   VERSIONS=10 INTERVAL=0.5 scripts/bench/reload.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

VERSIONS=${VERSIONS:-5}
INTERVAL=${INTERVAL:-1}
need h2load=nghttp2-client curl
BIN=$(ensure_bin)
workdir
# version N of the bundled Iris model: its first feature's mean moved by N / 4.
make_version() {
    python3 - "$WORK/models/r" "$1" <<'PY'
import json, os, shutil, sys
root, v = sys.argv[1], int(sys.argv[2])
tmp = os.path.join(root, f".new-{v}")
os.makedirs(tmp)
shutil.copy("src/infer/demo/model.safetensors", tmp)
m = json.load(open("src/infer/demo/manifest.json"))
m["normalization"]["mean"][0] += v / 4
json.dump(m, open(os.path.join(tmp, "manifest.json"), "w"))
os.rename(tmp, os.path.join(root, str(v)))
PY
}
mkdir -p "$WORK/models/r"
make_version 1
printf '%s' '{"features":[6.1,2.8,4.7,1.2]}' >"$WORK/body.json"
port=$(free_port)
INFERGATE_REPOSITORY__PATH="$WORK/models" INFERGATE_REPOSITORY__POLL_INTERVAL_MS=200 \
    INFERGATE_IMAGE__BUNDLED=false INFERGATE_LOG__LEVEL=warn \
    "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" --io-threads 2 \
    --log-format json >"$WORK/gw.log" 2>&1 &
PIDS+=($!)
wait_ready "$port"
url="https://127.0.0.1:$port/predict?model=r"
duration=$(python3 -c "print(int($VERSIONS * $INTERVAL + 2))")
for proto in h2 h1; do
    flags=(-m10)
    [ "$proto" = h1 ] && flags=(--h1 -m1)
    for cache in cached no-cache; do
        extra=()
        [ "$cache" = no-cache ] && extra=(-H "cache-control: no-cache")
        h2load -D "$duration" -c 32 -t 2 "${flags[@]}" -d "$WORK/body.json" \
            -H "content-type: application/json" "${extra[@]}" "$url" >"$WORK/h2load.out" 2>&1 &
        load=$!
        base=$(ls "$WORK/models/r" | sort -n | tail -1)
        for i in $(seq 1 "$VERSIONS"); do
            sleep "$INTERVAL"
            make_version $((base + i))
        done
        wait "$load"
        echo "## $proto, $cache: $VERSIONS new versions, one every ${INTERVAL}s, under h2load -D $duration -c 32 ${flags[*]}"
        grep -E "^(finished in|requests:|status codes:)" "$WORK/h2load.out"
        echo
    done
done
echo "served at the end: $(curl -ks "https://127.0.0.1:$port/v2/models/r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["versions"])')"
echo "reloads: $(curl -ks "https://127.0.0.1:$port/metrics" | awk '/^infergate_repository_reloads_total/ {s += $2} END {print s + 0}')"
