# Sourced, never run: what a build of the `cuda` feature needs on a machine without CUDA.
#
#   source scripts/lib/cuda.sh
#   cuda_cargo test --features cuda --no-run ...
#
# 1. NVIDIA's compiler and headers from PyPI (scripts/requirements/cuda.txt, a pinned,
#    hash-checked venv: target/pycuda), on PATH and as CUDA_ROOT; CUDA_LIBRARY_DIR is where
#    its libcudart.so.13 is, the one CUDA library a binary built so needs to start
#    (LD_LIBRARY_PATH=$CUDA_LIBRARY_DIR target/debug/infergate).
# 2. cudarc, as candle pins it, loading the CUDA libraries at run time. candle-core turns on
#    cudarc's `dynamic-linking`, which makes libcuda.so.1 (the driver), cuBLAS, cuRAND and
#    NVRTC load-time dependencies of the binary: without a driver it would not start. cudarc's
#    own `dynamic-loading` mode (dlopen on first use) is chosen by its build script alone,
#    and Cargo features only add, so `cuda_cargo` builds against a copy of the very crate
#    Cargo.lock pins (its checksum checked) whose build script picks that mode instead
#    (target/cuda/cudarc-<version>, scripts/lib/cudarc-dynamic-loading.sed), given to cargo
#    as a `[patch]` on its command line; Cargo.lock is left as it was.
# Sourced from the repository root, with cargo on PATH.

cuda_root=$PWD
scripts/lib/venv.sh scripts/requirements/cuda.txt
CUDA_TOOLKIT=$(target/pycuda/bin/python -c \
    'import nvidia, pathlib; print(next(p for p in (pathlib.Path(d) / "cu13" for d in nvidia.__path__) if p.is_dir()))')
# The wheels record no execute bits for some of the tools nvcc runs.
chmod +x "$CUDA_TOOLKIT"/bin/* "$CUDA_TOOLKIT"/nvvm/bin/*
# candle's kernels link libcudart by its unversioned name, which the wheel does not carry.
mkdir -p target/cuda/lib
ln -sf "$CUDA_TOOLKIT/lib/libcudart.so.13" target/cuda/lib/libcudart.so
# cudarc's build asks `nvcc --version` which CUDA its bindings follow; candle's kernels'
# build (cudaforge) runs $NVCC with the headers under CUDA_ROOT, on CUDAFORGE_THREADS.
# LIBRARY_PATH is where the linker (through cc) finds libcudart; cargo does not count it in
# its fingerprints, so the other dependencies' builds stay shared with the CPU build's.
export PATH="$CUDA_TOOLKIT/bin:$PATH" CUDA_ROOT=$CUDA_TOOLKIT CUDA_PATH=$CUDA_TOOLKIT \
    NVCC=$CUDA_TOOLKIT/bin/nvcc CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)} \
    LIBRARY_PATH="$cuda_root/target/cuda/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_LIBRARY_DIR=$CUDA_TOOLKIT/lib

# The cudarc Cargo.lock pins, from cargo's cache, checked against the lock's checksum.
cudarc_version=$(awk '$0 == "name = \"cudarc\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
cudarc_sum=$(awk '$0 == "name = \"cudarc\"" { getline; getline; getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
CUDARC_PATCHED=$cuda_root/target/cuda/cudarc-$cudarc_version
if [ ! -f "$CUDARC_PATCHED/.patched" ]; then
    cargo fetch --locked >/dev/null
    crate=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "cudarc-$cudarc_version.crate" | head -1)
    if [ -z "$crate" ] || [ "$(sha256sum "$crate" | cut -d' ' -f1)" != "$cudarc_sum" ]; then
        echo "cuda.sh: cudarc $cudarc_version not in cargo's cache with Cargo.lock's checksum" >&2
        return 1
    fi
    rm -rf "$CUDARC_PATCHED"
    tar -xzf "$crate" -C target/cuda
    sed -i -f scripts/lib/cudarc-dynamic-loading.sed "$CUDARC_PATCHED/build.rs"
    if ! grep -q 'dynamic-loading for infergate' "$CUDARC_PATCHED/build.rs"; then
        echo "cuda.sh: cudarc's build.rs no longer reads as the patch expects" >&2
        return 1
    fi
    touch "$CUDARC_PATCHED/.patched"
fi

# cargo with the patched cudarc. The patch rewrites Cargo.lock's cudarc entry (a path
# package has no checksum); the file is put back as it was once cargo is done.
cuda_cargo() {
    local lock status=0
    lock=$(mktemp)
    cp Cargo.lock "$lock"
    cargo --config "patch.crates-io.cudarc.path=\"$CUDARC_PATCHED\"" "$@" || status=$?
    cp "$lock" Cargo.lock
    rm -f "$lock"
    return "$status"
}
