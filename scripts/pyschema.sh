#!/usr/bin/env bash
# Sets up target/pyschema: a virtual environment with schemathesis, pinned, which
# tests/it/openapi.rs runs against a real gateway and its /openapi.json (no server errors, no
# answer outside the document). Idempotent, and a fast no-op once done. Needs python3 with
# venv and PyPI.
#
#   scripts/pyschema.sh
#   target/pyschema/bin/schemathesis run --tls-verify false https://127.0.0.1:8443/openapi.json
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# schemathesis and everything it pulls in, pinned (a `pip freeze` of one install), so every
# run installs the same set; all of them wheels.
REQUIREMENTS=(
    schemathesis==4.32.5 anyio==4.16.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3
    click==8.5.1 graphql-core==3.3.2 harfile==0.6.0 hypothesis==6.170.17
    hypothesis-graphql==0.13.5 idna==3.20 iniconfig==2.3.1 jsonschema_rs==0.60.3
    markdown-it-py==4.3.0 MarkupSafe==3.0.4 mdurl==0.1.2 packaging==26.4 pluggy==1.7.0
    Pygments==2.21.0 pyrate-limiter==4.5.1 pytest==9.2.0 PyYAML==6.0.4 requests==2.34.2
    rich==15.0.0 sortedcontainers==2.4.0 typing_extensions==4.16.0 urllib3==2.8.0
    Werkzeug==3.1.9
)
VENV=target/pyschema
STAMP=$VENV/.pyschema-done
WANT="${REQUIREMENTS[*]}"

done_already() { [ -x "$VENV/bin/schemathesis" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }
done_already && exit 0
mkdir -p target
# Test processes may set up at once: one does it, the others wait and find it done.
if command -v flock >/dev/null; then
    exec 9>target/pyschema.lock
    flock 9
    done_already && exit 0
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "pyschema.sh: '$PYTHON -m venv' is not available; install python3-venv (Debian: apt-get install python3-venv)" >&2
    exit 1
fi
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip --disable-pip-version-check --quiet install --only-binary=:all: "${REQUIREMENTS[@]}"
echo "$WANT" >"$STAMP"
