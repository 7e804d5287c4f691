#!/usr/bin/env bash
# Builds the images the Compose stack needs on an engine that cannot pull any (no registry,
# as on the CI machine): a Debian base made with debootstrap, Redis, PostgreSQL and
# Prometheus from Debian's packages, and the gateway from a binary built on this host.
# Anywhere images can be pulled, none of this is needed: the compose files default to the
# public images (redis:7-alpine, postgres:16-alpine, prom/prometheus) and the Dockerfile
# builds the gateway from source.
#
#   scripts/deploy/images.sh [base|redis|postgres|prometheus|gateway|all]...  (default: all)
#   scripts/deploy/images.sh gateway-gpu   # the GPU variant (compose.gpu.yml); not in `all`
#   scripts/deploy/images.sh --print-env   # the *_IMAGE variables that select the local images
#
# Environment: BASE_IMAGE (infergate/debian:bookworm), DEBIAN_MIRROR (deb.debian.org),
# GATEWAY_IMAGE (infergate:dev), GATEWAY_BIN (default: target/release/infergate, built or
# brought up to date), GATEWAY_GPU_IMAGE (infergate:gpu), GATEWAY_GPU_BIN (default: a
# release build of the `cuda` feature, scripts/lib/cuda.sh, for CUDA_COMPUTE_CAP, default
# 80), REBUILD=1 rebuilds images that exist already.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

BASE_IMAGE=${BASE_IMAGE:-infergate/debian:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
GATEWAY_IMAGE=${GATEWAY_IMAGE:-infergate:dev}
GATEWAY_GPU_IMAGE=${GATEWAY_GPU_IMAGE:-infergate:gpu}
LOCAL_TAG=local

# The variables compose.yml reads, pointing at the images this script builds.
print_env() {
    cat <<ENV
REDIS_IMAGE=infergate/redis:$LOCAL_TAG
POSTGRES_IMAGE=infergate/postgres:$LOCAL_TAG
PROMETHEUS_IMAGE=infergate/prometheus:$LOCAL_TAG
GATEWAY_IMAGE=$GATEWAY_IMAGE
ENV
}

have_image() { [ -z "${REBUILD:-}" ] && docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
    if have_image "$BASE_IMAGE"; then echo "==> $BASE_IMAGE: present"; return; fi
    need debootstrap
    local root
    root=$(mktemp -d /tmp/infergate-base.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" RETURN
    echo "==> $BASE_IMAGE: debootstrap --variant=minbase bookworm (a few minutes)"
    debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 ||
        { tail -20 "$root.log"; exit 1; }
    rm -f "$root.log"
    # Smaller and reproducible enough: no apt lists or caches, no docs.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/*
    tar -C "$root" -c . | docker import \
        --change 'CMD ["/bin/bash"]' \
        --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    echo "==> $BASE_IMAGE: imported ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec))"
}

build_local() { # NAME: scripts/deploy/images/NAME.Dockerfile -> infergate/NAME:local
    local name=$1 tag="infergate/$1:$LOCAL_TAG"
    if have_image "$tag"; then echo "==> $tag: present"; return; fi
    echo "==> $tag: building from $BASE_IMAGE"
    docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" \
        -f "scripts/deploy/images/$name.Dockerfile" scripts/deploy/images >/dev/null
}

# The legacy builder leaves the Dockerfile's build stage behind as a dangling image (the
# binary and the build context, some 400 MB a build): removed by its label.
prune_build_stage() { docker image prune -f --filter label=infergate.stage=build >/dev/null; }

build_gateway() {
    local bin
    bin=$(BIN=${GATEWAY_BIN:-} ensure_bin)
    # The Dockerfile's `host` builder copies prebuilt/infergate instead of compiling:
    # no Rust toolchain can be fetched inside a build here.
    mkdir -p prebuilt
    cp "$bin" prebuilt/infergate
    echo "==> $GATEWAY_IMAGE: docker build (BUILDER=host, from $BASE_IMAGE)"
    docker build -q --build-arg BUILDER=host --build-arg "BUILDER_IMAGE=$BASE_IMAGE" \
        -t "$GATEWAY_IMAGE" . >/dev/null
    prune_build_stage
    echo "==> $GATEWAY_IMAGE: $(docker image inspect -f '{{.Size}}' "$GATEWAY_IMAGE" | numfmt --to=iec)"
}

# The cuda build and the CUDA libraries it loads, from NVIDIA's wheels (cuda-runtime.txt),
# as prebuilt/cuda/{infergate,lib/}: the Dockerfile's host builder with CUDA_LIBS.
build_gateway_gpu() {
    local bin=${GATEWAY_GPU_BIN:-}
    if [ -z "$bin" ]; then
        # shellcheck source=scripts/lib/cuda.sh
        source scripts/lib/cuda.sh
        CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80} \
            cuda_cargo build --release --features cuda --bin infergate >&2
        # Its own place: the next CPU release build writes target/release/infergate again.
        mkdir -p target/cuda/release
        cp target/release/infergate target/cuda/release/infergate
        bin=target/cuda/release/infergate
    fi
    scripts/lib/venv.sh scripts/requirements/cuda-runtime.txt
    rm -rf prebuilt/cuda
    mkdir -p prebuilt/cuda/lib
    cp "$bin" prebuilt/cuda/infergate
    # Files, not the venv's links: a build context holds no link out of it.
    cp -L target/pycuda-runtime/lib/python3*/site-packages/nvidia/cu13/lib/lib{cudart,cublas,cublasLt,curand}.so.* \
        prebuilt/cuda/lib/
    echo "==> $GATEWAY_GPU_IMAGE: docker build (BUILDER=host, CUDA_LIBS, from $BASE_IMAGE)"
    docker build -q --build-arg BUILDER=host --build-arg "BUILDER_IMAGE=$BASE_IMAGE" \
        --build-arg PREBUILT=prebuilt/cuda/infergate --build-arg CUDA_LIBS=prebuilt/cuda/lib \
        -t "$GATEWAY_GPU_IMAGE" . >/dev/null
    prune_build_stage
    echo "==> $GATEWAY_GPU_IMAGE: $(docker image inspect -f '{{.Size}}' "$GATEWAY_GPU_IMAGE" | numfmt --to=iec)"
}

targets=("$@")
((${#targets[@]})) || targets=(all)
for t in "${targets[@]}"; do
    case $t in
    --print-env) print_env ;;
    base) build_base ;;
    redis | postgres | prometheus) build_base && build_local "$t" ;;
    gateway) build_base && build_gateway ;;
    gateway-gpu) build_base && build_gateway_gpu ;;
    all) build_base && build_local redis && build_local postgres && build_local prometheus && build_gateway ;;
    *) echo "usage: $0 [base|redis|postgres|prometheus|gateway|gateway-gpu|all|--print-env]..." >&2; exit 2 ;;
    esac
done
