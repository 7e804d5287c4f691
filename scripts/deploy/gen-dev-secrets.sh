#!/usr/bin/env bash
# Makes development secrets for compose.prod.yml in secrets/ (or DIR): a self-signed TLS
# certificate for localhost, random database and Redis passwords, and API keys: `api_keys`
# (the gateway's key file: digests only) with a `client` key (scope predict, the key itself
# in api_key_client, for your clients) and a `prometheus` key (scope admin, in
# api_key_prometheus, which Prometheus sends when it scrapes /metrics). Existing files are
# kept unless --force. Files are mode 0640, group 10001 (the gateway's group, which the Redis and
# PostgreSQL services join in compose.prod.yml): readable by the stack, not by the world.
# Changing the group needs root; without it the files keep your group and a note says how
# to fix it.
#
#   scripts/deploy/gen-dev-secrets.sh [--force] [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
force=""
if [ "${1:-}" = --force ]; then force=1; shift; fi
dir=${1:-secrets}
mkdir -p "$dir"
umask 027
command -v openssl >/dev/null || { echo "gen-dev-secrets: needs openssl" >&2; exit 1; }

write() { # NAME: stdin -> DIR/NAME unless it exists
    local path="$dir/$1"
    if [ -e "$path" ] && [ -z "$force" ]; then echo "kept    $path"; cat >/dev/null; return; fi
    cat >"$path.tmp" && chmod 0640 "$path.tmp" && mv "$path.tmp" "$path"
    echo "wrote   $path"
}

if [ ! -e "$dir/tls_cert" ] || [ ! -e "$dir/tls_key" ] || [ -n "$force" ]; then
    tmp=$(mktemp -d)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
        -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
    force=1 write tls_cert <"$tmp/cert.pem"
    force=1 write tls_key <"$tmp/key.pem"
    rm -rf "$tmp"
fi
openssl rand -hex 24 | write database_password
openssl rand -hex 24 | write redis_password

# The key file and the two keys it admits, made together: a digest must match its key.
if [ ! -e "$dir/api_keys" ] || [ -n "$force" ]; then
    client="ig_$(openssl rand -hex 32)"
    prometheus="ig_$(openssl rand -hex 32)"
    digest() { printf '%s' "$1" | openssl dgst -sha256 -r | cut -d' ' -f1; }
    printf 'client predict sha256:%s\nprometheus admin sha256:%s\n' \
        "$(digest "$client")" "$(digest "$prometheus")" | force=1 write api_keys
    printf '%s\n' "$client" | force=1 write api_key_client
    printf '%s\n' "$prometheus" | force=1 write api_key_prometheus
else
    echo "kept    $dir/api_keys"
fi

if [ "$(id -u)" = 0 ]; then
    chgrp 10001 "$dir"/tls_cert "$dir"/tls_key "$dir"/database_password "$dir"/redis_password \
        "$dir"/api_keys "$dir"/api_key_client "$dir"/api_key_prometheus
else
    echo "note: run 'sudo chgrp 10001 $dir/{tls_cert,tls_key,database_password,redis_password,api_keys,api_key_client,api_key_prometheus}'" \
        "so the containers can read them" >&2
fi
