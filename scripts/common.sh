# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/bench*.sh (sourced, not run).

# step MESSAGE: a "==> [mm:ss] MESSAGE" line, timed from the first script of this run that
# sourced this file (exported, so scripts/test.sh's children count from its start): a CI
# log then shows where a run's minutes went.
export STEP_EPOCH=${STEP_EPOCH:-$(date +%s)}
step() {
    local t=$(($(date +%s) - STEP_EPOCH))
    printf '==> [%02d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"
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

# wait_ready PORT: waits up to 30 s for the gateway on 127.0.0.1:PORT to answer /ready 200.
wait_ready() {
    for _ in $(seq 1 600); do
        curl -ksf "https://127.0.0.1:$1/ready" >/dev/null && return 0
        sleep 0.05
    done
}

# rss_mib PID: the process's resident memory, MiB.
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

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
# to the caller's PIDS array for its cleanup trap.
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
