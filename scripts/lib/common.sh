# shellcheck shell=bash
# Shared by scripts/test.sh, scripts/test/ and scripts/bench/ (sourced, not run; the caller
# has cd'd to the repository's root).

# step MESSAGE: a "==> [mm:ss] MESSAGE" line, timed from the first script of this run that
# sourced this file (exported, so scripts/test.sh's children count from its start): a CI
# log then shows where a run's minutes went.
export STEP_EPOCH=${STEP_EPOCH:-$(date +%s)}
step() {
    local t=$(($(date +%s) - STEP_EPOCH))
    printf '==> [%02d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"
}

# lint_with_clippy: clippy-driver as the rustc of this workspace's own crates, with `-D
# warnings` (CLIPPY_ARGS is how `cargo clippy -- -D warnings` hands it that flag), exported.
# Cargo hashes that wrapper's path into the crates' file names, so every build meant to
# share the test build's (scripts/test.sh, scripts/test/cuda-check.sh) sets it this one way.
lint_with_clippy() {
    RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
    export RUSTC_WORKSPACE_WRAPPER
    export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
}

# apt_install PKG...: installs Debian packages (sudo when not root); nothing when given none.
apt_install() {
    (($#)) || return 0
    local sudo=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo=sudo; fi
    echo "==> installing: $*"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# has WHAT: whether WHAT is here: a command on PATH, or one of the few things no command on
# PATH tells: initdb (PostgreSQL's server, in Debian's /usr/lib/postgresql/<v>/bin), nginx
# (in /usr/sbin, off a non-root PATH) and python3-venv (python3's venv with ensurepip, which
# Debian's python3 lacks without that package: `python3 -m venv` then fails half-way).
has() {
    case $1 in
    initdb) [ -n "$(pg_bin_dir)" ] ;;
    nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ;;
    python3-venv) python3 -c 'import venv, ensurepip' 2>/dev/null ;;
    *) command -v "$1" >/dev/null ;;
    esac
}

# need WHAT[=PACKAGE[,PACKAGE...]]...: installs (apt_install) the Debian packages of every
# WHAT that is missing (has); PACKAGE defaults to WHAT.
#   need h2load=nghttp2-client curl initdb=postgresql
need() {
    local spec packages missing=()
    for spec in "$@"; do
        has "${spec%%=*}" && continue
        IFS=, read -ra packages <<<"${spec#*=}"
        missing+=("${packages[@]}")
    done
    apt_install "${missing[@]}"
}

# ensure_bin [release|dev]: the gateway binary a script runs: BIN when set (another build
# to measure), else target/release/infergate (or target/debug with dev) built now (cargo:
# a no-op when it is up to date). Prints its path; cargo's output goes to stderr. Export BIN
# to hand the one build to the scripts this one runs.
#   BIN=$(ensure_bin)
# shellcheck disable=SC2120 # the profile is optional: callers without one mean release
ensure_bin() {
    if [ -n "${BIN:-}" ]; then
        echo "$BIN"
        return
    fi
    case ${1:-release} in
    release)
        cargo build --release --locked --bin infergate >&2
        echo target/release/infergate
        ;;
    dev)
        cargo build --locked --bin infergate >&2
        echo target/debug/infergate
        ;;
    *)
        echo "ensure_bin: release or dev, not $1" >&2
        return 2
        ;;
    esac
}

# workdir: makes a temporary directory, WORK, and sets an EXIT trap (cleanup_workdir) that
# stops every process in PIDS (the servers and clients the script started: PIDS+=($!)) and
# removes WORK, pass or fail.
PIDS=()
workdir() {
    WORK=$(mktemp -d)
    WORK_OWNER=$BASHPID
    trap cleanup_workdir EXIT
}
cleanup_workdir() {
    # Only the shell that made WORK: bash also runs the trap in a background child that
    # fails before it execs (an expansion error in `cmd &`), which must not clean up for it.
    [ "$BASHPID" = "$WORK_OWNER" ] || return 0
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    # Up to 5 s for them to be gone: a server still writing into WORK (PostgreSQL, a log)
    # would race the rm.
    local i
    for ((i = 0; i < 50; i++)); do
        alive "${PIDS[@]}" || break
        sleep 0.1
    done
    rm -rf "$WORK"
}

# alive PID...: whether any of them still runs.
alive() {
    local pid
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done
    return 1
}

# stop [-SIGNAL] PID...: signals each (SIGTERM unless told), waits for it and drops it from
# PIDS, so the cleanup never signals a pid the system has given to another process since.
stop() {
    local signal=-TERM pid p kept
    if [[ ${1:-} == -* ]]; then
        signal=$1
        shift
    fi
    for pid in "$@"; do
        kill "$signal" "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        kept=()
        for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
        PIDS=("${kept[@]}")
    done
}

# wait_ready PORT: waits up to 30 s for the gateway on 127.0.0.1:PORT to answer /ready 200.
wait_ready() {
    for _ in $(seq 1 600); do
        curl -ksf "https://127.0.0.1:$1/ready" >/dev/null && return 0
        sleep 0.05
    done
}

# rss_mib PID: the process's resident memory, MiB.
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# rss_kib PID, hwm_kib PID: the process's resident memory now, and at its peak, KiB (a process
# gone meanwhile, as a recycled gunicorn worker, counts 0).
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# tree_rss_kib PID...: the resident memory of each and of its children (nginx's master and
# workers, gunicorn's), KiB.
tree_rss_kib() {
    local total=0 p
    for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
        total=$((total + $(rss_kib "$p")))
    done
    echo "$total"
}

# wait_for URL [SECONDS]: until URL answers 2xx, giving up (exit 1) after SECONDS (30) rather
# than loop forever on a server that never came up.
wait_for() {
    for _ in $(seq 1 $((${2:-30} * 100))); do
        curl -ksf "$1" >/dev/null && return 0
        sleep 0.01
    done
    echo "no answer from $1" >&2
    exit 1
}

# overload_binary: the open-loop load generator of benches/overload.rs (release), built
# when LOAD does not name one already; prints its path.
overload_binary() {
    if [ -n "${LOAD:-}" ]; then
        echo "$LOAD"
        return
    fi
    cargo build --release --locked --bench overload >&2
    find target/release/deps -maxdepth 1 -type f -executable -name 'overload-*' -printf '%T@ %p\n' |
        sort -n | tail -1 | cut -d' ' -f2
}

# free_port: a TCP port on 127.0.0.1 free right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# pg_bin_dir: the directory holding initdb and postgres (on PATH, else Debian's newest
# /usr/lib/postgresql/<v>/bin); prints nothing when PostgreSQL is not installed.
pg_bin_dir() {
    local initdb
    initdb=$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)
    [ -n "$initdb" ] && dirname "$initdb"
    return 0
}

# start_postgres DIR: initdb + postgres in DIR/pg on a free port (fsync on; as the non-root
# `postgres` user when run as root), waiting up to 30 s for it. Sets DB_URL (user `bench`,
# database `postgres`, trust auth on loopback) and PG_VERSION, and appends the server's pid
# to PIDS for the cleanup (workdir).
start_postgres() {
    local dir=$1 bin port
    bin=$(pg_bin_dir)
    local as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        as=(runuser -u postgres --)
    fi
    port=$(free_port)
    "${as[@]}" "$bin/initdb" -D "$dir/pg" -U bench --auth=trust -E UTF8 >/dev/null
    "${as[@]}" "$bin/postgres" -D "$dir/pg" -p "$port" -k "$dir" \
        -c listen_addresses=127.0.0.1 >"$dir/pg.log" 2>&1 &
    PIDS+=($!)
    DB_URL="postgres://bench@127.0.0.1:$port/postgres"
    # shellcheck disable=SC2034 # read by the scripts that source this
    PG_VERSION=$("$bin/postgres" --version)
    for _ in $(seq 1 300); do
        psql "$DB_URL" -c 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "PostgreSQL did not start; its log:" >&2
    cat "$dir/pg.log" >&2
    return 1
}
