#!/usr/bin/env bash
# Cold loads on demand: the time to the first answer of a model that is not in memory, per
# model kind and size, over RUNS cold loads each (a model on demand with idle_unload_s = 1,
# asked again once the index says UNLOADED). The page cache is warm (the files were read at
# the look that listed them): what is measured is the load itself (read and build; the cold
# request's own pass is the model's first) and the first answer, as a cold request meets
# them.
#
# Models: the Iris MLP (tabular), EfficientNet-Lite0 (the bundled weights), ResNet-50
# (safetensors, seeded weights made by scripts/models/make_resnet_checkpoint.py), and the
# ResNet-18 ONNX export when scripts/models/export-torch.sh has made it.
#
#   scripts/bench/cold-loads.sh [BINARY]      (default: BIN, else the release build)
#   RUNS=20 scripts/bench/cold-loads.sh target/release/infergate
#
# Per model: the first answer (the gateway's Server-Timing total) and the load (its `load`
# phase), p50 / p99 in ms, and what the index says the model took.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

RUNS=${RUNS:-20}
PHOTO=${PHOTO:-tests/fixtures/images/cat.png}

need curl python3

BIN=${1:-$(ensure_bin)}
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

workdir
REPO=$WORK/repo

step "the models"
scripts/models/setup.sh >/dev/null
py=target/pyref/bin/python
on_demand='load = "on_demand"
idle_unload_s = 1'
mkdir -p "$REPO/iris/1" "$REPO/lite0/1"
cp src/infer/demo/model.safetensors src/infer/demo/manifest.json "$REPO/iris/1/"
cp src/infer/demo/efficientnet-lite0/{model.safetensors,manifest.json,labels.txt} "$REPO/lite0/1/"
$py scripts/models/make_resnet_checkpoint.py --depth 50 --seed 1 --out "$WORK/resnet50.pth"
$py scripts/models/convert-torchvision.py --arch resnet50 --pth "$WORK/resnet50.pth" \
    --out "$REPO/resnet50/1" --name resnet50 >/dev/null
MODELS=(iris lite0 resnet50)
if [ -f target/onnx-torch/resnet18/1/model.onnx ]; then
    mkdir -p "$REPO/resnet18-onnx"
    cp -r target/onnx-torch/resnet18/1 "$REPO/resnet18-onnx/1"
    MODELS+=(resnet18-onnx)
else
    echo "no target/onnx-torch/resnet18 (scripts/models/export-torch.sh makes it): left out" >&2
fi
for m in "${MODELS[@]}"; do echo "$on_demand" >"$REPO/$m/model.toml"; done

PORT=$(free_port)
INFERGATE_REPOSITORY__PATH=$REPO INFERGATE_REPOSITORY__POLL_INTERVAL_MS=0 \
    INFERGATE_REPOSITORY__MIN_RESIDENT_MS=0 INFERGATE_IMAGE__BUNDLED=false \
    INFERGATE_ADMISSION__ADAPTIVE=false \
    "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$PORT" --log-format json \
    >"$WORK/gateway.log" 2>&1 &
GW=$!
PIDS+=("$GW")
wait_for "https://127.0.0.1:$PORT/ready" 120
BASE=https://127.0.0.1:$PORT

state() { # model: its state in the repository index
    curl -ks -X POST "$BASE/v2/repository/index" |
        python3 -c "import json,sys; print(next(e['state'] for e in json.load(sys.stdin) if e['name']=='$1'))"
}

ask() { # model: one request, the cache bypassed; prints the Server-Timing header
    local args=(-ks -o /dev/null -D - -H 'cache-control: no-cache' "$BASE/predict?model=$1")
    if [ "$1" = iris ]; then
        args+=(-H 'content-type: application/json' -d '{"features":[5.1,3.5,1.4,0.2]}')
    else
        args+=(-H 'content-type: image/png' --data-binary "@$PHOTO")
    fi
    curl "${args[@]}" | tr -d '\r' | awk -F': ' 'tolower($1)=="server-timing" {print $2}'
}

step "$RUNS cold loads per model ($(nproc) cores)"
printf '| model | kept | first answer p50 / p99 | load p50 / p99 |\n|---|---:|---:|---:|\n'
for m in "${MODELS[@]}"; do
    : >"$WORK/$m.timing"
    for _ in $(seq 1 "$RUNS"); do
        for _ in $(seq 1 200); do
            [ "$(state "$m")" = UNLOADED ] && break
            sleep 0.05
        done
        ask "$m" >>"$WORK/$m.timing"
    done
    bytes=$(curl -ks -X POST "$BASE/v2/repository/index" |
        python3 -c "import json,sys; print(next(e.get('bytes',0) for e in json.load(sys.stdin) if e['name']=='$m'))")
    python3 - "$WORK/$m.timing" "$m" "$bytes" <<'EOF'
import re, sys
path, model, kept = sys.argv[1], sys.argv[2], int(sys.argv[3])
totals, loads = [], []
for line in open(path):
    phases = dict(re.findall(r"(\w+);dur=([\d.]+)", line))
    if "load" not in phases:
        sys.exit(f"{model}: an answer that did not load: {line.strip()}")
    totals.append(float(phases["total"]))
    loads.append(float(phases["load"]))
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]
size = f"{kept / 2**20:.1f} MiB" if kept >= 2**20 else f"{kept / 2**10:.1f} KiB"
print(f"| {model} | {size} | {pct(totals, 50):.1f} / {pct(totals, 99):.1f} ms "
      f"| {pct(loads, 50):.1f} / {pct(loads, 99):.1f} ms |")
EOF
done
