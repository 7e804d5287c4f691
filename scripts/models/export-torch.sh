#!/usr/bin/env bash
# Makes target/onnx-torch: the PyTorch image models exported as ONNX by
# scripts/models/export-torch.py (torch.onnx.export; EfficientNet-Lite0 with its real
# weights, torchvision's ResNet-18, three timm models), each a version directory with its
# manifest.json and labels.txt. Tens of MB each, so made here rather than committed.
# Sets up target/pytorch first (PyTorch, torchvision, timm: scripts/requirements/torch.txt,
# pinned and hash-checked) and target/pyref (the EfficientNet-Lite0 checkpoint).
# Idempotent: a no-op until the pins or the export scripts change.
#
#   scripts/models/export-torch.sh       # then ls target/onnx-torch
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/onnx-torch
STAMP=$OUT/.inputs.sha256
WANT=$(cat scripts/requirements/torch.txt scripts/models/export-torch.py \
    scripts/models/bench_torch.py | sha256sum | cut -d' ' -f1)
done_already() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }
done_already && exit 0
mkdir -p target
# Test processes and scripts/test.sh's background start may ask at once: one exports, the
# others wait and find it done.
exec 9>target/onnx-torch.lock
flock 9
done_already && exit 0
scripts/models/setup.sh
scripts/lib/venv.sh scripts/requirements/torch.txt
rm -rf "$OUT" "$OUT.partial"
# The exporters' deprecation and tracer warnings are about code that is not ours.
target/pytorch/bin/python -W ignore scripts/models/export-torch.py "$OUT.partial"
mv "$OUT.partial" "$OUT"
echo "$WANT" >"$STAMP"
echo "export-torch.sh: $OUT ready"
