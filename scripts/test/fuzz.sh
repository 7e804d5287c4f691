#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (coverage-guided, no sanitizer so stable Rust does),
# each from its corpus for SECONDS; exits non-zero on the first crash, whose input lands in
# fuzz/artifacts/<target>/ (turn it into a named regression test).
#
#   scripts/test/fuzz.sh                   every target, 20 s each
#   scripts/test/fuzz.sh cache_key 600     one target, 10 minutes
#   scripts/test/fuzz.sh build             only build every target
#   FUZZ_BUILD=smoke scripts/test/fuzz.sh  the build CI's smoke uses (see below)
#   FUZZ_JOBS=2 scripts/test/fuzz.sh       two targets at a time (one core each)
#
# Two builds:
# - cargo-fuzz's (the default, for long runs): every crate instrumented, one codegen unit at
#   opt-level 3, in target/<triple>/release. A build of every dependency of its own; installs
#   cargo-fuzz when it is missing; without a nightly toolchain, RUSTC_BOOTSTRAP=1 lets stable
#   rustc take its flags.
# - FUZZ_BUILD=smoke (scripts/test.sh, CI's 20 s per target): the test build's dev profile,
#   in target/debug, with only this workspace's crates instrumented (the gateway's library
#   and the targets; scripts/lib/fuzz-rustc). The fuzz crate resolves the crates it shares
#   with the test build with the same features (Cargo.toml, [workspace.dependencies]), so
#   after `cargo test --no-run` this builds libFuzzer, the library and the targets, nothing
#   else. Coverage then steers by the gateway's code alone, which is what the smoke has to
#   show: each target builds and survives its corpus and a few seconds of mutation.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

TARGET=${1:-all}
SECONDS_EACH=${2:-20}
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
smoke=
[ "${FUZZ_BUILD:-}" = smoke ] && smoke=1

# build_targets: builds every target, as the chosen build does.
build_targets() {
    if [ -n "$smoke" ]; then
        RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/lib/fuzz-rustc" \
            cargo build --locked -p infergate-fuzz --bins
        return
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        step "installing cargo-fuzz"
        cargo install --locked --version 0.13.2 cargo-fuzz
    fi
    rustup run nightly rustc --version >/dev/null 2>&1 || export RUSTC_BOOTSTRAP=1
    (cd fuzz && cargo fuzz build --sanitizer none)
}

# run_target TARGET LIBFUZZER-FLAG...: runs one target's binary of the chosen build on its
# corpus (cargo fuzz run builds again first when its build is stale).
run_target() {
    local t=$1
    shift
    if [ -n "$smoke" ]; then
        mkdir -p "fuzz/artifacts/$t"
        target/debug/"$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" "$@"
    else
        (cd fuzz && cargo fuzz run "$t" "corpus/$t" --sanitizer none -- "$@")
    fi
}

step "fuzz: building every target${smoke:+ (the smoke build)}"
build_targets
step "fuzz: built"
[ "$TARGET" = build ] && exit 0
targets=()
if [ "$TARGET" = all ]; then
    # Every [[bin]] of fuzz/Cargo.toml, named as its file (cargo fuzz list says the same).
    mapfile -t targets < <(sed -n 's|^path = "fuzz_targets/\(.*\)\.rs"$|\1|p' fuzz/Cargo.toml)
else
    targets=("$TARGET")
fi
workdir
# fuzz_one TARGET: runs it for SECONDS_EACH; on a crash prints the tail of its log and fails.
fuzz_one() {
    local t=$1 log=$WORK/$1.log
    mkdir -p "fuzz/corpus/$t"
    # Image decoding may legitimately take a few hundred MB on a large upload; one input
    # past 20 s is a hang (libFuzzer's own default is 20 minutes).
    if ! run_target "$t" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "FAIL: $t crashed; its input is in fuzz/artifacts/$t/" >&2
        return 1
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|DONE' "$log" | sed "s/^/    $t: /" || true
}
# FUZZ_JOBS targets at a time (each libFuzzer process is one core; default 1).
jobs=${FUZZ_JOBS:-1}
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    batch=("${targets[@]:i:jobs}")
    step "fuzz: ${batch[*]} for ${SECONDS_EACH}s"
    pids=()
    for t in "${batch[@]}"; do
        fuzz_one "$t" &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
done
echo "==> fuzz: ${#targets[@]} target(s), no crash"
