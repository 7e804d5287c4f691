#!/usr/bin/env bash
# tract (benches/onnx_forward.rs, criterion) against ONNX Runtime (scripts/bench/onnx-ort.py,
# CPU, one thread) on the same ONNX exports and rows: microseconds per row at batches of 1
# and 64 for the trees and pipelines, milliseconds per image at batches of 1 and 8 for the
# PyTorch image exports (scripts/models/export-torch.sh), and tract's time over ORT's. Both
# run one thread; nothing else should. THREADS=N gives both N threads for the image
# networks (tract: compute.intra_op_threads = N).
#
#   scripts/bench/onnx-vs-ort.sh
#   THREADS=2 scripts/bench/onnx-vs-ort.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
MODELS=(sklearn-iris-logreg sklearn-iris-forest xgboost-iris lightgbm-iris
    sklearn-diabetes-gbr xgboost-diabetes sklearn-diabetes-pipeline)
CNNS=(efficientnet-lite0-onnx resnet18 mobilenetv3-small-100 convnext-atto vit-tiny-patch16-224)
scripts/lib/venv.sh scripts/requirements/onnx.txt
scripts/models/export-torch.sh
workdir
step "tract: cargo bench --bench onnx_forward"
export THREADS="${THREADS:-1}" RAYON_NUM_THREADS="${THREADS:-1}"
cargo bench --locked --bench onnx_forward >"$WORK/criterion.txt" 2>&1 ||
    { cat "$WORK/criterion.txt"; exit 1; }
step "ONNX Runtime: scripts/bench/onnx-ort.py"
target/pyonnx/bin/python scripts/bench/onnx-ort.py tests/fixtures/onnx "${MODELS[@]}" >"$WORK/ort.json"
target/pyonnx/bin/python scripts/bench/onnx-ort.py --images target/onnx-torch "${CNNS[@]}" \
    >"$WORK/ort-cnn.json"
table() { # GROUP ORT_JSON UNIT SCALE BATCHES MODEL...
    target/pyonnx/bin/python - "$@" <<'PY'
import json, sys
from pathlib import Path
group, ort, unit, scale, batches, *models = sys.argv[1:]
ort, scale = json.load(open(ort)), float(scale)
print(f"| model | batch | tract {unit}/row | ORT {unit}/row | tract/ORT |")
print("|---|---:|---:|---:|---:|")
for name in models:
    for rows in map(int, batches.split(",")):
        est = Path("target/criterion", group, name, str(rows), "new/estimates.json")
        tract = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
        theirs = ort[name][str(rows)]
        print(f"| {name} | {rows} | {tract / rows * scale:.2f} | {theirs / rows * scale:.2f} | "
              f"{tract / theirs:.2f} |")
PY
}
table onnx_forward "$WORK/ort.json" µs 1e6 1,64 "${MODELS[@]}"
echo
table onnx_cnn_forward "$WORK/ort-cnn.json" ms 1e3 1,8 "${CNNS[@]}"
