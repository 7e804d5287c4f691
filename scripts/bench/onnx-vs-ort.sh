#!/usr/bin/env bash
# tract (benches/onnx_forward.rs, criterion) against ONNX Runtime (scripts/bench/onnx-ort.py,
# CPU, one thread) on the same ONNX exports and rows: microseconds per row at batches of 1
# and 64, and tract's time over ORT's. Both run one thread; nothing else should.
#
#   scripts/bench/onnx-vs-ort.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
MODELS=(sklearn-iris-logreg sklearn-iris-forest xgboost-iris lightgbm-iris
    sklearn-diabetes-gbr xgboost-diabetes sklearn-diabetes-pipeline)
scripts/lib/venv.sh scripts/requirements/onnx.txt
workdir
step "tract: cargo bench --bench onnx_forward"
cargo bench --locked --bench onnx_forward >"$WORK/criterion.txt" 2>&1 ||
    { cat "$WORK/criterion.txt"; exit 1; }
step "ONNX Runtime: scripts/bench/onnx-ort.py"
target/pyonnx/bin/python scripts/bench/onnx-ort.py tests/fixtures/onnx "${MODELS[@]}" >"$WORK/ort.json"
target/pyonnx/bin/python - "$WORK/ort.json" "${MODELS[@]}" <<'PY'
import json, sys
from pathlib import Path
ort = json.load(open(sys.argv[1]))
print("| model | rows | tract µs/row | ORT µs/row | tract/ORT |")
print("|---|---:|---:|---:|---:|")
for name in sys.argv[2:]:
    for rows in (1, 64):
        est = Path("target/criterion/onnx_forward", name, str(rows), "new/estimates.json")
        tract = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
        theirs = ort[name][str(rows)]
        print(f"| {name} | {rows} | {tract / rows * 1e6:.2f} | {theirs / rows * 1e6:.2f} | "
              f"{tract / theirs:.2f} |")
PY
