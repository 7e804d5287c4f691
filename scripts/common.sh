# Shared by scripts/test.sh and scripts/bench*.sh (sourced, not run).

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
