#!/usr/bin/env bash
# The GPU check, for a machine with one NVIDIA GPU and its driver: builds the `cuda`
# feature for that GPU, runs the image suites with the gateway on cuda:0, measures forward
# passes (EfficientNet-Lite0 and ResNet-50, batches 1 to 128, f32 and f16) and uploads end
# to end over HTTPS (cached and uncached), and writes one Markdown report for
# BENCHMARKS.md (GPU). A few minutes once built.
#
#   scripts/gpu-check.sh                    # build here, then run
#   scripts/gpu-check.sh --dry-run          # print what it would run; runs nothing (any machine)
#   scripts/gpu-check.sh --build-only       # build into target/gpu-check/ (no GPU needed:
#                                           # NVIDIA's compiler from PyPI, scripts/lib/cuda.sh)
#   scripts/gpu-check.sh --prebuilt DIR     # run DIR's binaries (a --build-only), no cargo
#
# CUDA_COMPUTE_CAP: the architecture to build for; default: the GPU's (nvidia-smi), or 90
# (H100) where there is none to ask. The CUDA libraries the binaries load come from
# NVIDIA's wheels (scripts/requirements/cuda-runtime.txt); the driver is the machine's.
# OUT (bench-results/) receives gpu-check-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

mode=all prebuilt=
case ${1:-} in
"") ;;
--dry-run) mode=dry ;;
--build-only) mode=build ;;
--prebuilt) mode=run prebuilt=${2:?--prebuilt DIR} ;;
*) echo "usage: $0 [--dry-run | --build-only | --prebuilt DIR]" >&2; exit 2 ;;
esac
OUT=${OUT:-bench-results}
BUILT=${prebuilt:-target/gpu-check}

# run CMD...: runs it, or with --dry-run prints it.
run() {
    printf '+ %s\n' "$*"
    [ "$mode" = dry ] || "$@"
}

gpu=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)
if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
    cap=$(echo "$gpu" | awk -F', ' '{ print $2 }' | tr -d .)
    export CUDA_COMPUTE_CAP=${cap:-90}
fi
step "gpu-check: ${gpu:-no GPU here}; building for compute capability $CUDA_COMPUTE_CAP"
if [ "$mode" = all ] || [ "$mode" = run ]; then
    [ -n "$gpu" ] || { echo "gpu-check: nvidia-smi finds no GPU (--dry-run or --build-only work anywhere)" >&2; exit 1; }
fi

if [ "$mode" != run ]; then
    step "build: the release binary, the forward benchmark and the integration tests, --features cuda"
    if [ "$mode" = dry ]; then
        echo "+ source scripts/lib/cuda.sh   # NVIDIA's nvcc 13.4 from PyPI (target/pycuda), cudarc loading at run time"
    else
        # shellcheck source=scripts/lib/cuda.sh
        source scripts/lib/cuda.sh
    fi
    run mkdir -p "$BUILT"
    run cuda_cargo build --release --features cuda --bin infergate
    run cp target/release/infergate "$BUILT/infergate"
    # The bench's and the suite's binaries, as cargo reports it built them.
    for what in "bench gpu_forward" "test it"; do
        run cuda_cargo test --release --features cuda "--${what% *}" "${what#* }" --no-run
        [ "$mode" = dry ] && continue
        cuda_cargo test --release --features cuda "--${what% *}" "${what#* }" --no-run \
            --message-format=json 2>/dev/null |
            python3 -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["kind"] != ["bin"]][-1])' |
            xargs -I{} cp {} "$BUILT/${what#* }"
    done
    [ "$mode" = build ] && { step "built: $BUILT/{infergate,gpu_forward,it}"; exit 0; }
fi

step "the CUDA libraries (libcudart, cuBLAS, cuRAND) from NVIDIA's wheels"
run scripts/lib/venv.sh scripts/requirements/cuda-runtime.txt
libs=$(ls -d target/pycuda-runtime/lib/python3*/site-packages/nvidia/cu13/lib 2>/dev/null || echo target/pycuda-runtime/lib/python3.X/site-packages/nvidia/cu13/lib)
export LD_LIBRARY_PATH="$PWD/$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
export TEST_GATEWAY_BIN=$PWD/$BUILT/infergate TEST_REPO_DIR=$PWD

report="$OUT/gpu-check-$(date +%Y%m%d-%H%M%S).md"
WORK_LOG=${report%.md}-suites.log
run mkdir -p "$OUT"
step "the image suites, the gateway on cuda:0 (its /stats says image_device cuda:0)"
echo "+ $BUILT/it --test-threads 2 image_api:: precision:: --nocapture"
[ "$mode" = dry ] || "$BUILT/it" --test-threads 2 image_api:: precision:: --nocapture 2>&1 |
    tee "$WORK_LOG"
step "forward passes on cuda:0: batches 1-128, f32 and f16 (benches/gpu_forward.rs)"
echo "+ env GPU_FORWARD_DEVICE=cuda $BUILT/gpu_forward --bench"
[ "$mode" = dry ] || forward=$(GPU_FORWARD_DEVICE=cuda "$BUILT/gpu_forward" --bench | tee /dev/stderr)
step "uploads end to end over HTTPS, cached and uncached (scripts/bench/image.sh)"
run env BIN="$BUILT/infergate" DURATION=10 OUT="$OUT" scripts/bench/image.sh
[ "$mode" = dry ] && { step "dry run: nothing ran; the report would be $report"; exit 0; }
{
    echo "# scripts/gpu-check.sh at $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
    echo
    echo "GPU: $gpu; built for compute capability $CUDA_COMPUTE_CAP; $(nproc) CPU cores"
    echo
    echo "## The image suites on cuda:0"
    echo
    grep -E '^test result|^precision ' "$WORK_LOG" | sed 's/^/    /'
    echo
    echo "## Forward passes (random weights, 224×224)"
    echo
    echo "$forward"
    echo
    echo "## Uploads end to end"
    echo
    cat "$(ls -t "$OUT"/bench-image-*.md | head -1)"
} >"$report"
step "report: $report"
