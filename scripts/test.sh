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
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
step "scripts/test.sh on $(nproc) cores"

# Tests start their own Redis (tests/it/support/redis_server.rs) and PostgreSQL
# (tests/it/support/postgres_server.rs: initdb + postgres, run as the non-root `postgres`
# user the package creates when the tests run as root). The image parity tests run the
# Pillow + numpy reference (scripts/models/) from a venv. The pages' tests
# (tests/it/pages.rs) drive Debian's chromium, headless, through its chromedriver. The
# protected-mode tests make a network namespace with iproute2's `ip` (a client with an
# address that is not loopback).
need cc=build-essential pkg-config curl=curl,ca-certificates git redis-server \
    initdb=postgresql python3 python3-venv chromium chromedriver=chromium-driver ip=iproute2
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
    step "installing the Rust toolchain (rustup, stable, minimal + rustfmt + clippy)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

mkdir -p target
background=()
trap 'kill "${background[@]}" 2>/dev/null || true' EXIT

# The container checks' images but the gateway's (a Debian base by debootstrap, then Redis,
# PostgreSQL and Prometheus from Debian's packages): minutes of downloads and unpacking that
# need nothing built, so they start now and are ready when the gateway binary is. The lock
# makes the container checks' own call wait for this one (and retry, should it fail).
engine=
if docker info >/dev/null 2>&1; then
    engine=1
    # What the image builds and the container checks install, installed here: two apt-gets
    # at once fail on dpkg's lock.
    need debootstrap wrk openssl sysctl=procps
    step "container images (base, Redis, PostgreSQL, Prometheus): building in the background"
    nice -n 10 flock target/images.lock scripts/deploy/images.sh base redis postgres prometheus \
        >target/images.log 2>&1 &
    background+=("$!")
fi

step "reference environment (numpy, Pillow, the EfficientNet-Lite0 checkpoint)"
scripts/models/setup.sh
step "the bundled EfficientNet-Lite0 equals a fresh conversion of the checkpoint"
target/pyref/bin/python scripts/models/convert-efficientnet-lite0.py --check
step "the vendored Swagger UI (GET /docs) equals its pinned release"
scripts/lib/venv.sh scripts/requirements/pages.txt
target/pypages/bin/python scripts/pages/vendor-swagger-ui.py --check

# The PyTorch image models as ONNX (tests/it/onnx_images.rs): PyTorch's venv (about 4 GB of
# wheels, mostly its CUDA libraries) and five exports, a few minutes of downloads and
# unpacking that need nothing built; the test waits for them (the script's lock).
step "PyTorch image exports (target/onnx-torch): in the background"
nice -n 10 scripts/models/export-torch.sh >target/export-torch.log 2>&1 &
background+=("$!")
# NVIDIA's compiler for the cuda check (scripts/lib/cuda.sh; a few hundred MB of wheels),
# fetched while the test build runs.
step "NVIDIA's CUDA compiler from PyPI (target/pycuda): in the background"
nice -n 10 scripts/lib/venv.sh scripts/requirements/cuda.txt >target/pycuda-setup.log 2>&1 &
cuda_venv=$!
background+=("$cuda_venv")

step "cargo fmt --check"
cargo fmt --all -- --check
# Clippy's lints run inside the test build rather than in a `cargo clippy` of their own:
# `cargo clippy` is a `cargo check` (every dependency type-checked once more, ~7 min of a
# cold run here) whose output no build can reuse. clippy-driver, set as the wrapper for
# this package's crates only (dependencies stay plain rustc), is rustc with clippy's lints
# added, codegen included; CLIPPY_ARGS is how `cargo clippy -- -D warnings` hands it that
# flag. The same lints on the same targets: `--all-targets` lints the library, binaries,
# tests and benches either way.
lint_with_clippy
step "cargo test: building, with clippy's lints (-D warnings) on every target"
cargo test --locked --all-targets --no-run
# The fuzz targets, built as CI's smoke runs them (scripts/test/fuzz.sh, FUZZ_BUILD=smoke):
# on the dependencies the test build just compiled, so libFuzzer, the gateway's library
# (instrumented) and the targets are all it builds.
step "fuzz targets: the smoke build, on the test build's dependencies"
export FUZZ_BUILD=smoke
scripts/test/fuzz.sh build
# The cuda feature's build (scripts/test/cuda-check.sh: NVIDIA's compiler, candle's kernels,
# candle and this crate again, with clippy's lints) in a tree of its own, beside the test
# passes: at nice 19 it takes the CPU they leave, and it holds no lock they need. What is
# left of it when they end is the run's one wait for it (BENCHMARKS.md, CI time); then its
# photo test runs.
step "the cuda feature: building in the background, beside the tests"
if ! wait "$cuda_venv"; then
    tail -20 target/pycuda-setup.log >&2
    echo "FAIL: NVIDIA's wheels did not install (log: target/pycuda-setup.log)" >&2
    exit 1
fi
nice -n 19 ionice -c 3 scripts/test/cuda-check.sh build >target/cuda-check.log 2>&1 &
cuda_build=$!
background+=("$cuda_build")
# The integration suite once per I/O backend (tests/it/support: TEST_IO_BACKEND sets
# server.io for every gateway a test starts): all of it on io_uring, then again on epoll
# every test module that speaks to the server, which leaves out only the prediction log's
# and the model's (the same code above the listener, minutes of Postgres and pixels).
step "cargo test: running, on io_uring"
TEST_IO_BACKEND=uring cargo test --locked --all-targets
cargo test --locked --doc
# The image uploads on epoll before the container checks start: their batching test times
# its clients, and beside the Swarm step's gateways under load a slow runner let one
# upload wait past its client's timeout (the stop-34 CI failure).
step "cargo test: the image uploads again, on epoll, alone"
TEST_IO_BACKEND=epoll cargo test --locked --test it -- image_api::
# The container checks run beside the epoll, keys-on and otlp passes (which mostly wait on
# the servers they start; the first pass, with the model and image suites, runs alone), on
# the binary the test build made. Its dependencies are optimised (Cargo.toml's dev
# profile), and it passes the Swarm checks under load: a `--release` build, a second build
# of every dependency, would buy CI nothing but ten minutes.
containers=
if [ -n "$engine" ]; then
    step "containers: images, compose.yml, compose.prod.yml, monitoring, deploy.sh, Swarm (in the background)"
    # A copy, without its DWARF (line tables for backtraces; the image needs none): the
    # otlp step below rebuilds target/debug/infergate with that feature.
    mkdir -p target/containers
    strip --strip-debug -o target/containers/infergate target/debug/infergate
    {
        flock target/images.lock scripts/deploy/images.sh base redis postgres prometheus &&
            GATEWAY_BIN=target/containers/infergate scripts/test/containers.sh
    } >target/containers.log 2>&1 &
    containers=$!
    background+=("$containers")
fi
step "cargo test: the server's tests again, on epoll"
TEST_IO_BACKEND=epoll cargo test --locked --test it -- \
    auth:: bad_input:: cache:: check_socket:: cli:: http_api:: io_backend:: \
    redis_cache:: refusals:: request_logs:: shutdown:: socket_activation:: standby:: \
    timeouts:: rate_limit:: tls_reload:: hostile:: deadlines:: overload:: redirect:: mtls:: \
    fd_limits:: parking:: \
    oip:: repository::
step "cargo test: the HTTP API, bad-input, OIP and OpenAPI suites again, with API keys on"
# tests/it/support: TEST_API_KEYS gives every gateway a key file and every request its key
# (schemathesis sends it as a header).
TEST_API_KEYS=1 cargo test --locked --test it -- http_api:: bad_input:: oip:: oip_clients:: \
    openapi::
step "cargo test: the otlp feature, spans posted to a collector (linted too)"
# The library and binary once more with the feature (its dependencies are small), and the
# one suite that needs it; the rest of the code is the same with or without.
cargo test --locked --features otlp --test otlp
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

if [ -n "$containers" ]; then
    step "containers: waiting for them"
    status=0
    wait "$containers" || status=$?
    cat target/containers.log
    ((status == 0)) || { echo "FAIL: the container checks (log: target/containers.log)" >&2; exit 1; }
else
    scripts/test/containers.sh # says, loudly, that it skips
fi

step "the cuda feature: waiting for its build, then the photos without a GPU"
status=0
wait "$cuda_build" || status=$?
cat target/cuda-check.log
((status == 0)) || { echo "FAIL: the cuda build (log: target/cuda-check.log)" >&2; exit 1; }
scripts/test/cuda-check.sh test

step "fuzz smoke: every libFuzzer target for 20 s from its corpus (scripts/test/fuzz.sh)"
# A target that crashes at once fails here; the long runs are by hand.
FUZZ_JOBS=$(nproc) scripts/test/fuzz.sh all 20
step "all checks passed"
