#!/usr/bin/env bash
# The `cuda` feature on a machine without CUDA or a GPU: built with clippy's lints (-D
# warnings) on the library and the binaries, candle's CUDA kernels compiled by NVIDIA's own
# compiler from PyPI, cudarc loading the CUDA libraries at run time (scripts/lib/cuda.sh
# says how and why); then that binary, started here, must serve on the CPU with one WARN
# and classify the fixture photos exactly as the CPU build does (tests/it/cuda_build.rs).
#
#   scripts/test/cuda-check.sh                    # both phases, compute capability 80
#   scripts/test/cuda-check.sh build              # the build alone (scripts/test.sh runs it
#   scripts/test/cuda-check.sh test               # beside the tests, then the test)
#   CUDA_CAPS="80 90" scripts/test/cuda-check.sh  # each, one after the other
#
# Run it after the CPU test build (`cargo test --no-run`). The build is that build's, with
# the feature, in a tree of its own: target/cuda-tree holds a copy of the sources and, as
# hard links, the CPU build's target/debug. So it shares every dependency already compiled
# (only cudarc, candle's kernels, candle and this crate are built), and it holds neither
# this checkout's Cargo.lock (cuda_cargo rewrites the tree's while it runs) nor the lock
# on its target dir: cargo test runs here meanwhile. clippy-driver is the workspace's rustc,
# as in scripts/test.sh. There is no GPU to ask which architecture to build for, so each is
# named; candle's kernels are compiled for one at a time. Compute capability 80's PTX also
# runs on later GPUs (the driver compiles it); scripts/gpu-check.sh builds for the GPU at
# hand. The binary ends up in target/cuda/infergate.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
phase=${1:-all}
case $phase in all | build | test) ;; *) echo "usage: $0 [build|test]" >&2; exit 2 ;; esac
step "cuda: NVIDIA's compiler from PyPI (target/pycuda), cudarc loading at run time"
# shellcheck source=scripts/lib/cuda.sh
source scripts/lib/cuda.sh
# clippy-driver as the workspace's rustc in both phases, as scripts/test.sh has it: the
# test phase then reuses that build's test binary (the wrapper is part of its hash).
lint_with_clippy

if [ "$phase" != test ]; then
    nvcc --version | tail -1
    tree=target/cuda-tree
    step "cuda: the sources and the CPU build's target/debug (hard links) in $tree"
    mkdir -p "$tree/target"
    git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -C "$tree" -xf -
    # -n: what the tree has built already (the cuda units) stays; the rest is the CPU build's.
    cp -al -n target/debug "$tree/target/"
    # Its own lock file, not a link to this checkout's: cargo locks the file, and a shared
    # one would make every cargo here wait for the whole cuda build.
    rm -f "$tree/target/debug/.cargo-lock"
    for cap in ${CUDA_CAPS:-80}; do
        step "cuda: building --features cuda with clippy's lints, compute capability $cap"
        # `test --no-run`, as the CPU build: the dependencies resolve with the dev-dependencies'
        # features, so they are that build's. The bench needs the real binaries built too.
        (cd "$tree" && CUDA_COMPUTE_CAP=$cap cuda_cargo test --no-run --features cuda \
            --lib --bins --bench gpu_forward)
    done
    mkdir -p target/cuda
    cp "$tree/target/debug/infergate" target/cuda/infergate
    step "cuda: built, target/cuda/infergate"
fi
if [ "$phase" != build ]; then
    step "cuda: the build started without a GPU answers the photos as the CPU build (tests/it/cuda_build.rs)"
    TEST_CUDA_BIN=$PWD/target/cuda/infergate TEST_CUDA_LIBRARY_DIR=$CUDA_LIBRARY_DIR \
        cargo test --locked --test it -- --ignored cuda_build::
    step "cuda: the feature builds and serves"
fi
