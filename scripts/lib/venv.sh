#!/usr/bin/env bash
# Sets up target/py<NAME>, a Python virtual environment of exactly the packages a
# requirements file NAME.txt pins, each checked against the sha256 it lists (pip install
# --require-hashes, wheels only). Idempotent: a fast no-op until the file changes, and then
# installed again over it. Needs python3 with venv (Debian: python3-venv) and PyPI.
#
#   scripts/lib/venv.sh scripts/requirements/clients.txt   # target/pyclients: tritonclient
#   scripts/lib/venv.sh scripts/requirements/schema.txt    # target/pyschema: schemathesis
#   scripts/lib/venv.sh scripts/requirements/ref.txt       # target/pyref: numpy, Pillow
#   PYTHON=python3.12 scripts/lib/venv.sh ...              # another interpreter
#
# scripts/requirements/NAME.in says what each is for; NAME.txt is made from it by the
# pip-compile command at its top.
set -euo pipefail
if [ $# != 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 REQUIREMENTS_FILE (scripts/requirements/NAME.txt)" >&2
    exit 2
fi
REQUIREMENTS=$(realpath "$1")
NAME=$(basename "$REQUIREMENTS" .txt)
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=target/py$NAME
# Records the requirements a finished setup installed; another file means "install again".
STAMP=$VENV/.requirements.sha256
WANT=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)

done_already() { [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }
done_already && exit 0
mkdir -p target
# Test processes may set up at once: one does it, the others wait and find it done.
if command -v flock >/dev/null; then
    exec 9>"target/py$NAME.lock"
    flock 9
    done_already && exit 0
fi
if ! command -v "$PYTHON" >/dev/null; then
    echo "venv.sh: $PYTHON not found; install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi
# Debian's python3 has the venv module but not ensurepip without python3-venv, and then
# `python3 -m venv` fails half-way.
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "venv.sh: '$PYTHON -m venv' is not available; install python3-venv (Debian: apt-get install python3-venv)" >&2
    exit 1
fi
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip --disable-pip-version-check --quiet install --require-hashes \
    --only-binary=:all: -r "$REQUIREMENTS"
echo "$WANT" >"$STAMP"
echo "venv.sh: $VENV ready"
