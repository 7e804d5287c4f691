#!/usr/bin/env bash
# Builds the `cuda` feature on a machine without CUDA or a GPU, with clippy's lints (-D
# warnings) on the library, the binaries and the tests: candle's CUDA kernels compiled by
# NVIDIA's own compiler from PyPI, cudarc loading the CUDA libraries at run time
# (scripts/lib/cuda.sh says how and why).
#
#   scripts/test/cuda-check.sh                    # compute capability 80 (Ampere; PTX runs on later GPUs too)
#   CUDA_CAPS="80 90" scripts/test/cuda-check.sh  # each, one after the other
#
# The build is `cargo test --no-run`'s, with the same dependencies' features as the CPU test
# build, so only candle, cudarc and this crate are built again; clippy-driver is the
# workspace's rustc, as in scripts/test.sh. There is no GPU to ask which architecture to
# build for, so each is named; candle's kernels are compiled for one at a time.
# It leaves target/debug/infergate built with the feature (the next `cargo test` puts the CPU
# build's back); scripts/lib/cuda.sh says how to run it.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
step "cuda: NVIDIA's compiler from PyPI (target/pycuda), cudarc loading at run time"
# shellcheck source=scripts/lib/cuda.sh
source scripts/lib/cuda.sh
nvcc --version | tail -2

clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER=$clippy_driver
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
for cap in ${CUDA_CAPS:-80}; do
    step "cuda: building --features cuda with clippy's lints, compute capability $cap"
    CUDA_COMPUTE_CAP=$cap cuda_cargo test --features cuda --lib --bins --test it --no-run
done
step "cuda: the feature builds"
