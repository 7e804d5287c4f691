#!/usr/bin/env bash
# Sets up target/pyclients: a virtual environment with other people's inference clients,
# pinned, that the test suite drives infergate with (tests/it/oip_clients.rs runs
# scripts/oip-clients.py in it): NVIDIA's tritonclient[http] for the Open Inference
# Protocol, and tritonclient[grpc] for its gRPC side. Idempotent, and a fast no-op once done. Needs python3 with venv and PyPI.
#
#   scripts/pyclients.sh
#   target/pyclients/bin/python scripts/oip-clients.py 127.0.0.1:8443 tests/fixtures/images/cat.png
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# tritonclient[grpc,http] and everything it pulls in, pinned (a `pip freeze` of one install), so
# every run installs the same set.
REQUIREMENTS=(
    "tritonclient[grpc,http]==2.73.0" aiohappyeyeballs==2.7.1 aiohttp==3.14.5
    aiosignal==1.4.0 attrs==26.1.0 brotli==1.2.1 certifi==2026.10.19.post1 frozenlist==1.8.0
    gevent==26.9.0 geventhttpclient==2.6.1 greenlet==3.3.2 grpcio==1.85.3 idna==3.20
    ml_dtypes==0.5.4 multidict==7.2.1 numpy==2.4.6 packaging==26.4 propcache==0.5.4
    protobuf==6.33.6 python-rapidjson==1.25 typing_extensions==4.16.0 urllib3==2.8.0
    yarl==1.25.1 zope.event==6.2 zope.interface==8.7
)
VENV=target/pyclients
STAMP=$VENV/.pyclients-done
WANT="${REQUIREMENTS[*]}"

done_already() { [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }
done_already && exit 0
mkdir -p target
# Test processes may set up at once: one does it, the others wait and find it done.
if command -v flock >/dev/null; then
    exec 9>target/pyclients.lock
    flock 9
    done_already && exit 0
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "pyclients.sh: '$PYTHON -m venv' is not available; install python3-venv (Debian: apt-get install python3-venv)" >&2
    exit 1
fi
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip --disable-pip-version-check --quiet install --only-binary=:all: "${REQUIREMENTS[@]}"
echo "$WANT" >"$STAMP"
