#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (cargo-fuzz, coverage-guided, no sanitizer so stable
# Rust does), each from its corpus for SECONDS; exits non-zero on the first crash, whose
# input lands in fuzz/artifacts/<target>/ (turn it into a named regression test).
#
#   scripts/test/fuzz.sh                   every target, 20 s each
#   scripts/test/fuzz.sh cache_key 600     one target, 10 minutes
#   scripts/test/fuzz.sh build             only build every target (scripts/test.sh does
#                                          this in the background while the tests run)
#   FUZZ_BUILD=smoke scripts/test/fuzz.sh  the cheaper build CI's smoke uses (see below)
#   FUZZ_JOBS=2 scripts/test/fuzz.sh       two targets at a time (one core each)
#
# Installs cargo-fuzz when it is missing. Without a nightly toolchain, RUSTC_BOOTSTRAP=1
# lets stable rustc take cargo-fuzz's flags.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

TARGET=${1:-all}
SECONDS_EACH=${2:-20}
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install --locked --version 0.13.2 cargo-fuzz
fi
rustup run nightly rustc --version >/dev/null 2>&1 || export RUSTC_BOOTSTRAP=1
# FUZZ_BUILD=smoke (scripts/test.sh, for CI's 20 s per target): cargo-fuzz's build gives
# every crate one codegen unit at opt-level 3, which the long runs want (sancov's counters
# block inlining across units) but which makes candle, image and our own crate each a
# minutes-long single-threaded step at the end of a cold CI run. The smoke only has to show
# that each target builds and survives its corpus. Flags in RUSTFLAGS come after
# cargo-fuzz's, so these win; a long run without FUZZ_BUILD builds as cargo-fuzz does.
if [ "${FUZZ_BUILD:-}" = smoke ]; then
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Copt-level=1 -Ccodegen-units=16"
fi

cd fuzz
if [ "$TARGET" = build ]; then
    step "fuzz: building every target"
    cargo fuzz build --sanitizer none
    step "fuzz: built"
    exit 0
fi
targets=()
if [ "$TARGET" = all ]; then
    mapfile -t targets < <(cargo fuzz list)
else
    targets=("$TARGET")
fi
workdir
# fuzz_one TARGET: runs it for SECONDS_EACH; on a crash prints the tail of its log and fails.
fuzz_one() {
    local t=$1 log=$WORK/$1.log
    mkdir -p "corpus/$t"
    # Image decoding may legitimately take a few hundred MB on a large upload; one input
    # past 20 s is a hang (libFuzzer's own default is 20 minutes).
    if ! cargo fuzz run "$t" "corpus/$t" --sanitizer none -- \
        -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
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
