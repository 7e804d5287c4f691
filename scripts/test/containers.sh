#!/usr/bin/env bash
# The Compose stack on the real Docker engine: images, compose.yml, compose.prod.yml,
# secrets, hardening, monitoring, deploy.sh, and the same stack on Swarm. Called by
# scripts/test.sh; runnable alone:
#
#   scripts/test/containers.sh [stack|prod|monitoring|deploy|swarm]...   (default: all)
#
# Every part runs as its own Compose project or stack (igtest-<pid>-<part>) on free ports and
# removes its containers, networks and volumes on exit, pass or fail (the swarm part also
# leaves the swarm it made and restores the sysctl it set). Without a Docker engine it
# skips, loudly. Images come from scripts/deploy/images.sh (local base, Redis, PostgreSQL,
# Prometheus; the gateway from $GATEWAY_BIN, target/release/infergate by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/stack-checks.sh
source scripts/lib/stack-checks.sh

skip_without_docker "container tests"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
need curl wrk openssl sysctl=procps ip=iproute2 # sysctl: the Swarm part sets net.ipv4.tcp_migrate_req; ip: the LAN client

export GATEWAY_IMAGE=${GATEWAY_IMAGE:-infergate:test}
scripts/deploy/images.sh all
eval "$(scripts/deploy/images.sh --print-env | sed 's/^/export /')"
export EDGE_IMAGE=$GATEWAY_IMAGE

work=$(mktemp -d /tmp/igtest.XXXXXX)
projects=()
lan_ns=""
cleanup() {
    # By label, not through compose: this works whatever state the compose files are in.
    local p filter
    for p in "${projects[@]}"; do
        filter="label=com.docker.compose.project=$p"
        docker ps -aq --filter "$filter" | xargs -r docker rm -f >/dev/null 2>&1 || true
        docker network ls -q --filter "$filter" | xargs -r docker network rm >/dev/null 2>&1 || true
        docker volume ls -q --filter "$filter" | xargs -r docker volume rm >/dev/null 2>&1 || true
    done
    swarm_cleanup
    [ -z "$lan_ns" ] || as_root ip netns del "$lan_ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# project NAME FILES...: sets P (the project name) and DC (its compose command).
project() {
    P="igtest-$$-$1"
    projects+=("$P")
    shift
    DC=("${COMPOSE[@]}" -p "$P")
    local f
    for f in "$@"; do DC+=(-f "$f"); done
}

predict_image() { # PORT FILE -> "HTTP x-cache"
    curl -ks -o /dev/null -D - "${AUTH[@]}" -F "file=@$2" "https://127.0.0.1:$1/predict" | status_and_cache
}

rows() { # [CONTAINER]: the number of rows in predictions (default: the project's postgres)
    local pg=${1:-$(container postgres)}
    docker exec "$pg" psql -U infergate -d infergate -tAc 'select count(*) from predictions' 2>/dev/null | tr -d '[:space:]'
}

container() { "${DC[@]}" ps -q "$1" | head -1; }

# service_answers redis|postgres IP: whether the service's protocol answers at IP, from the host.
service_answers() {
    python3 - "$1" "$2" <<'PY'
import socket, sys
svc, ip = sys.argv[1], sys.argv[2]
port, probe = {"redis": (6379, b"PING\r\n"), "postgres": (5432, bytes.fromhex("0000000804d2162f"))}[svc]
try:
    with socket.create_connection((ip, port), timeout=3) as s:
        s.settimeout(3)
        s.sendall(probe)
        reply = s.recv(64)
except OSError:
    sys.exit(1)
ok = reply[:1] in (b"+", b"-") if svc == "redis" else reply[:1] in (b"S", b"N")
sys.exit(0 if ok else 1)
PY
}

# service_answers_inside redis|postgres: the service answers by name inside the edge's
# network namespace (the one the gateways share): a throwaway container of the service's
# own image, joined to it, runs the service's client.
service_answers_inside() {
    local ns="container:$(container edge)"
    case $1 in
    redis) docker run --rm --network "$ns" --entrypoint redis-cli "$REDIS_IMAGE" -h redis ping 2>&1 |
        grep -qE 'PONG|NOAUTH' ;;
    postgres) docker run --rm --network "$ns" --entrypoint pg_isready "$POSTGRES_IMAGE" -h postgres -q ;;
    esac
}

# lan_client: a network namespace joined to the host by a veth pair (10.254.255.0/30), so a
# client in it reaches the published port from an address of its own, as a machine on the
# LAN would (Docker forwards it with its source address; a connection from the host itself
# comes through docker-proxy from a stack network's gateway address). Sets LAN_HOST (the
# host's end, the address to connect to); `lan curl ARGS...` runs curl in it.
lan_client() {
    lan_ns="igtest-$$-lan"
    LAN_HOST=10.254.255.1
    as_root ip netns add "$lan_ns"
    as_root ip link add "igl$$h" type veth peer name "igl$$n" netns "$lan_ns"
    as_root ip addr add "$LAN_HOST/30" dev "igl$$h"
    as_root ip link set "igl$$h" up
    as_root ip -n "$lan_ns" addr add 10.254.255.2/30 dev "igl$$n"
    as_root ip -n "$lan_ns" link set "igl$$n" up
    as_root ip -n "$lan_ns" link set lo up
    as_root ip -n "$lan_ns" route add default via "$LAN_HOST"
}
lan() { as_root ip netns exec "$lan_ns" "$@"; }

# What test_swarm changed, undone on exit: its stack, the swarm when it made one, the sysctl.
swarm_stack="" swarm_inited="" swarm_gwbridge="" migrate_req_before=""
swarm_cleanup() {
    if [ -n "$swarm_stack" ]; then
        local filter="label=com.docker.stack.namespace=$swarm_stack" deadline=$((SECONDS + 60))
        docker stack rm "$swarm_stack" >/dev/null 2>&1 || true
        while [ -n "$(docker ps -aq --filter "$filter")" ] && ((SECONDS < deadline)); do sleep 1; done
        docker ps -aq --filter "$filter" | xargs -r docker rm -f >/dev/null 2>&1 || true
        docker volume ls -q --filter "$filter" | xargs -r docker volume rm >/dev/null 2>&1 || true
        swarm_stack=""
    fi
    if [ -n "$swarm_inited" ]; then
        docker swarm leave --force >/dev/null 2>&1 || true
        # Swarm makes this bridge on first use and leaves it behind.
        [ -n "$swarm_gwbridge" ] || docker network rm docker_gwbridge >/dev/null 2>&1 || true
        swarm_inited=""
    fi
    if [ -n "$migrate_req_before" ]; then
        as_root sysctl -qw "net.ipv4.tcp_migrate_req=$migrate_req_before" || true
        migrate_req_before=""
    fi
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

# ---- stack: compose.yml as a newcomer runs it --------------------------------------------------
test_stack() {
    section "compose.yml: up, predictions, the log, L1 then L2"
    project stack compose.yml
    export HTTPS_PORT
    HTTPS_PORT=$(free_port)
    "${DC[@]}" config -q
    "${DC[@]}" up -d >/dev/null 2>&1 || { "${DC[@]}" up -d; die "compose up"; }
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready"
    ok "compose up: redis and postgres healthy, gateway ready on :$HTTPS_PORT"
    local body='{"features": [6.7, 3.0, 5.2, 2.3]}'
    [ "$(predict_json "$HTTPS_PORT" "$body")" = "200 miss" ] || die "tabular predict"
    [ "$(predict_image "$HTTPS_PORT" tests/fixtures/images/bike.jpg)" = "200 miss" ] || die "image predict"
    ok "HTTPS /predict through the published port: tabular and image"
    wait_rows 2
    ok "both rows in PostgreSQL"
    [ "$(predict_json "$HTTPS_PORT" "$body")" = "200 hit-l1" ] || die "repeat is not hit-l1"
    ok "a repeat is hit-l1"
    # No API keys here: protected mode keeps the admin routes to the stack's own networks
    # (config/compose.toml), which the Docker host's curl comes from; a LAN client does not.
    local got
    [ "$(code "https://127.0.0.1:$HTTPS_PORT/stats")" = 200 ] || die "/stats from the Docker host is not 200"
    lan_client
    got=$(lan curl -ks -o "$work/lan-stats.json" -w '%{http_code}' "https://$LAN_HOST:$HTTPS_PORT/stats")
    [ "$got" = 403 ] && grep -q '"code":"protected_mode"' "$work/lan-stats.json" ||
        die "/stats from a LAN client: $got $(cat "$work/lan-stats.json"), not 403 protected_mode"
    got=$(lan curl -ks -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d "$body" \
        "https://$LAN_HOST:$HTTPS_PORT/predict")
    [ "$got" = 200 ] || die "/predict from a LAN client: $got, not 200"
    ok "no keys: /stats answers the Docker host and refuses a LAN client 403 protected_mode; /predict answers both"
    "${DC[@]}" restart gateway >/dev/null 2>&1
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready"
    got=$(predict_json "$HTTPS_PORT" "$body")
    [ "$got" = "200 hit-l2" ] || { "${DC[@]}" logs --tail 30 gateway; die "after a restart: $got, not hit-l2"; }
    [ "$(predict_image "$HTTPS_PORT" tests/fixtures/images/bike.jpg)" = "200 hit-l2" ] || die "image after restart"
    ok "after a gateway restart: hit-l2 (tabular and image)"

    # io_uring in containers. Docker >= 25's default seccomp profile refuses it (moby#46762);
    # an older engine's default allows it. So: the engine's own default as its version
    # says; then Docker >= 25's policy on any engine (the shipped profile without the three
    # io_uring syscalls): `auto` serves on epoll and says why once; then compose.uring.yml.
    local gw backend warns engine expect
    engine=$(docker version -f '{{.Server.Version}}')
    expect=uring
    [ "${engine%%.*}" -ge 25 ] && expect=epoll
    backend=$(io_backend "$HTTPS_PORT")
    [ "$backend" = "$expect" ] || die "under Docker $engine's default seccomp profile: io_backend '$backend', not $expect"
    ok "Docker $engine's own default seccomp profile: serves on $backend (io_uring is refused by default from 25.0)"
    python3 - config/seccomp/io_uring.json "$work/no-io-uring.json" <<'PY'
import json, sys
profile = json.load(open(sys.argv[1]))
for rule in profile["syscalls"]:
    rule["names"] = [n for n in rule["names"] if not n.startswith("io_uring_")]
json.dump(profile, open(sys.argv[2], "w"))
PY
    printf 'services:\n  gateway:\n    security_opt:\n      - seccomp=%s\n' "$work/no-io-uring.json" >"$work/no-io-uring.yml"
    "${DC[@]}" -f "$work/no-io-uring.yml" up -d gateway >/dev/null 2>&1 ||
        { "${DC[@]}" -f "$work/no-io-uring.yml" up -d gateway; die "compose up with Docker 25's policy"; }
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready"
    gw=$(container gateway)
    backend=$(io_backend "$HTTPS_PORT")
    [ "$backend" = epoll ] || die "under Docker >= 25's seccomp policy: io_backend '$backend', not epoll"
    warns=$(docker logs "$gw" 2>&1 | grep -c 'serving on epoll, because io_uring_setup failed with EPERM' || true)
    [ "$warns" = 1 ] || { docker logs "$gw" 2>&1 | tail -20; die "$warns fallback WARN lines, not 1"; }
    [ "$(predict_json "$HTTPS_PORT" "$body")" = "200 hit-l2" ] || die "predict on the epoll fallback"
    ok "Docker >= 25's seccomp policy (io_uring refused): server.io = auto serves on epoll, one WARN naming EPERM"
    # compose.uring.yml: the shipped profile (that policy + the io_uring syscalls).
    "${DC[@]}" -f compose.uring.yml config -q
    "${DC[@]}" -f compose.uring.yml up -d gateway >/dev/null 2>&1 ||
        { "${DC[@]}" -f compose.uring.yml up -d gateway; die "compose up with compose.uring.yml"; }
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready"
    backend=$(io_backend "$HTTPS_PORT")
    [ "$backend" = uring ] || { docker logs "$(container gateway)" 2>&1 | tail -20; die "with config/seccomp/io_uring.json: io_backend '$backend', not uring"; }
    [ "$(predict_json "$HTTPS_PORT" "$body")" = "200 hit-l2" ] || die "predict on io_uring"
    [ "$(predict_image "$HTTPS_PORT" tests/fixtures/images/bike.jpg)" = "200 hit-l2" ] || die "image predict on io_uring"
    ok "compose.uring.yml (config/seccomp/io_uring.json): serves on io_uring, tabular and image"
    # compose.gpu.yml: no GPU here to run it on; Compose must take it with the others
    # (scripts/gpu-check.sh is the check for a machine with one).
    "${DC[@]}" -f compose.gpu.yml config -q
    "${DC[@]}" -f compose.prod.yml -f compose.gpu.yml config -q
    ok "compose.gpu.yml: accepted beside compose.yml and compose.prod.yml (a GPU reservation, driver nvidia)"
    "${DC[@]}" down -v -t 5 >/dev/null 2>&1
}

io_backend() { # PORT -> the io_backend /stats reports
    curl -ks "https://127.0.0.1:$1/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("io_backend", "?"))'
}

# ---- prod: secrets, hardening, the internal network -----------------------------------------------
test_prod() {
    section "compose.prod.yml: secrets, hardening, internal backend"
    project prod compose.yml compose.prod.yml
    export SECRETS_DIR="$work/secrets" HTTPS_PORT PROMETHEUS_PORT
    HTTPS_PORT=$(free_port)
    PROMETHEUS_PORT=$(free_port)
    scripts/deploy/gen-dev-secrets.sh "$SECRETS_DIR" >/dev/null
    use_keys "$SECRETS_DIR"
    "${DC[@]}" config -q
    "${DC[@]}" up -d >/dev/null 2>&1 || { "${DC[@]}" up -d; die "compose up (prod)"; }
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready"
    local gw served want
    gw=$(container gateway)
    served=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256)
    want=$(openssl x509 -in "$SECRETS_DIR/tls_cert" -noout -fingerprint -sha256)
    [ "$served" = "$want" ] || die "served certificate is not the tls_cert secret"
    ok "TLS certificate and key from /run/secrets"
    # The log is read whole before it is searched: `docker logs | grep -q` fails under pipefail
    # whenever grep leaves before docker logs has written everything (SIGPIPE).
    local limit_line
    limit_line=$(grep -m1 'open-file limit' <<<"$(docker logs "$gw" 2>&1)" || true)
    [[ "$limit_line" == *"open-file limit 16384"* || "$limit_line" == *"raised to 16384"* ]] ||
        die "the gateway does not run with compose.yml's nofile limit (16384): ${limit_line:-no open-file line in its log}"
    ok "open-file limit 16384 (compose.yml ulimits), as the gateway's log says"
    [ "$(predict_json "$HTTPS_PORT" '{"features": [5.9, 3.0, 5.1, 1.8]}')" = "200 miss" ] || die "predict (prod)"
    wait_rows 1
    ok "database password from /run/secrets (the row reached PostgreSQL)"
    [ "$(predict_json "$HTTPS_PORT" '{"features": [5.9, 3.0, 5.1, 1.8]}')" = "200 hit-l1" ] || die "repeat (prod)"
    "${DC[@]}" restart gateway >/dev/null 2>&1
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready"
    [ "$(predict_json "$HTTPS_PORT" '{"features": [5.9, 3.0, 5.1, 1.8]}')" = "200 hit-l2" ] || die "hit-l2 (prod)"
    ok "redis password from /run/secrets (hit-l2 after a restart)"
    [ "$(code -H 'content-type: application/json' -d '{"features": [5.9, 3.0, 5.1, 1.8]}' \
        "https://127.0.0.1:$HTTPS_PORT/predict")" = 401 ] || die "/predict without a key is not 401 (prod)"
    [ "$(code "${AUTH[@]}" "https://127.0.0.1:$HTTPS_PORT/metrics")" = 403 ] ||
        die "/metrics with the client's predict key is not 403 (prod)"
    [ "$(code -H "authorization: Bearer $(cat "$SECRETS_DIR/api_key_prometheus")" \
        "https://127.0.0.1:$HTTPS_PORT/metrics")" = 200 ] || die "/metrics with the admin key is not 200 (prod)"
    [ "$(code "https://127.0.0.1:$HTTPS_PORT/ready")" = 200 ] || die "/ready is not open (prod)"
    ok "API keys from /run/secrets: /predict needs a key, /metrics the admin one, /ready is open"
    [ "$(code "https://127.0.0.1:$HTTPS_PORT/")" = 401 ] || die "the console without a key is not 401 (prod: ui.scope admin)"
    [ "$(code "${AUTH[@]}" "https://127.0.0.1:$HTTPS_PORT/docs")" = 403 ] ||
        die "/docs with the client's predict key is not 403 (prod)"
    [ "$(code -H "authorization: Bearer $(cat "$SECRETS_DIR/api_key_prometheus")" \
        "https://127.0.0.1:$HTTPS_PORT/")" = 200 ] || die "the console with the admin key is not 200 (prod)"
    ok "the pages (ui.scope admin): / and /docs need the admin key"
    "${DC[@]}" --profile monitoring up -d prometheus >/dev/null 2>&1 ||
        { "${DC[@]}" --profile monitoring up -d prometheus; die "compose up prometheus (prod)"; }
    eventually 60 prometheus_up "$PROMETHEUS_PORT" 1 ||
        { curl -s "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/targets" >&3; die "Prometheus never scraped the keyed gateway"; }
    ok "Prometheus scrapes /metrics with the admin key from the api_key_prometheus secret"
    gw=$(container gateway)
    local printed
    printed=$(docker exec "$gw" infergate print-config --profile compose)
    grep -q '^key = "\[redacted\]"' <<<"$printed" || die "print-config shows no redacted tls.key"
    grep -q '^password = "\[redacted\]"' <<<"$printed" || die "print-config shows no redacted password"
    if grep -qF "$(cat "$SECRETS_DIR/database_password")" <<<"$printed" ||
        grep -qF "$(cat "$SECRETS_DIR/redis_password")" <<<"$printed" ||
        grep -q 'PRIVATE KEY' <<<"$printed"; then
        die "print-config leaks a secret"
    fi
    ok "print-config inside the container redacts the secrets"
    local svc id user ro caps nnp
    for svc in gateway redis postgres edge; do
        id=$(container "$svc")
        read -r user ro caps nnp < <(docker inspect -f \
            '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{join .HostConfig.CapDrop ","}} {{join .HostConfig.SecurityOpt ","}}' "$id")
        [ "$ro" = true ] || die "$svc: root file system is writable"
        [ "$caps" = ALL ] || die "$svc: capabilities not all dropped ($caps)"
        [[ $nnp == *no-new-privileges* ]] || die "$svc: no-new-privileges missing"
        [ "$(docker top "$id" -eo pid,uid | awk 'NR > 1 && $2 == 0' | wc -l)" = 0 ] ||
            die "$svc: a process runs as root"
    done
    [ "$(docker top "$gw" -eo pid,uid | awk 'NR == 2 { print $2 }')" = 10001 ] || die "gateway is not uid 10001"
    ok "gateway, edge, redis, postgres: non-root, read-only root, cap_drop ALL, no-new-privileges"
    # "Answers" means the service's own protocol replies (a RESP reply to PING, Postgres's
    # S/N to an SSLRequest): a bare TCP connect can succeed against whatever sits behind
    # the default route.
    local ip svc
    for svc in redis postgres; do
        id=$(container "$svc")
        [ -z "$(docker port "$id")" ] || die "$svc publishes a port"
        for ip in $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id"); do
            if service_answers "$svc" "$ip"; then die "$svc answers the host at $ip"; fi
        done
    done
    # The probe itself works: from inside the edge's namespace (where the gateway lives) both answer.
    service_answers_inside redis || die "the probe cannot reach redis even from the gateway's namespace"
    service_answers_inside postgres || die "the probe cannot reach postgres even from the gateway's namespace"
    ok "redis and postgres unreachable from the host (no published port, internal network)"
    "${DC[@]}" --profile monitoring down -v -t 5 >/dev/null 2>&1
    no_keys
}

# ---- monitoring: Prometheus (Debian's, in a local image) and the dashboard's queries --------------
test_monitoring() {
    section "profile monitoring: Prometheus scrapes the gateway, every dashboard query has data"
    project monitoring compose.yml
    export HTTPS_PORT PROMETHEUS_PORT
    HTTPS_PORT=$(free_port)
    PROMETHEUS_PORT=$(free_port)
    python3 scripts/test/check-dashboard.py --structure-only >/dev/null || die "dashboard structure"
    # Grafana has no Debian package, so no local image: its JSON and queries are checked here.
    "${DC[@]}" --profile monitoring up -d edge gateway redis postgres prometheus >/dev/null 2>&1 ||
        { "${DC[@]}" --profile monitoring up -d edge gateway redis postgres prometheus; die "compose up (monitoring)"; }
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready"
    eventually 60 prometheus_up "$PROMETHEUS_PORT" 1 || die "Prometheus never scraped the gateway"
    ok "Prometheus scrapes the gateway through the edge (HTTPS)"
    # A short load touching every panel: new and repeated rows, images, identical concurrent
    # requests (coalescing), then a steady wrk load, all inside the queries' 1m windows.
    local round i img
    for round in 1 2 3; do
        for i in 1 2 3 4 5; do
            predict_json "$HTTPS_PORT" "{\"features\": [5.$round, 3.$i, 1.$round, 0.$i]}" >/dev/null
        done
        for img in bike.jpg cat.png flower.jpg; do
            curl -ks -o /dev/null -H 'cache-control: no-cache' -F "file=@tests/fixtures/images/$img" \
                "https://127.0.0.1:$HTTPS_PORT/predict"
        done
        for i in 1 2 3 4 5 6 7 8; do
            curl -ks -o /dev/null -H 'content-type: application/json' \
                -d "{\"features\": [7.$round, 3.1, 6.$round, 2.2]}" "https://127.0.0.1:$HTTPS_PORT/predict" &
        done
        wait
        sleep 4
    done
    load_start monitoring "$HTTPS_PORT"
    sleep 8
    load_stop monitoring
    sleep 11
    python3 scripts/test/check-dashboard.py --strict --prometheus "http://127.0.0.1:$PROMETHEUS_PORT" \
        >"$work/dashboard.txt" 2>&1 || { cat "$work/dashboard.txt"; die "dashboard queries without data"; }
    ok "every dashboard query returns data ($(tail -1 "$work/dashboard.txt"))"
    "${DC[@]}" --profile monitoring down -v -t 5 >/dev/null 2>&1
}

# ---- deploy.sh: preflight, rollout under load, automatic rollbacks --------------------------------
deploy() { # deploy.sh with this project's settings; output to $work/deploy.log
    STEP_LOG=$work/deploy.log
    scripts/deploy.sh "$@" >"$work/deploy.log" 2>&1
}

serving_image() { # the image of the gateway container serving now
    docker inspect -f '{{.Config.Image}}' "$("${DC[@]}" ps -q gateway | head -1)"
}

test_deploy() {
    section "deploy.sh: preflight, zero-downtime rollout, automatic rollbacks"
    project deploy compose.yml compose.prod.yml
    export SECRETS_DIR="$work/deploy-secrets" HTTPS_PORT COMPOSE_PROJECT_NAME=$P
    export DEPLOY_STATE="$work/deploy-state" READY_TIMEOUT=40 DRAIN_TIMEOUT=20
    HTTPS_PORT=$(free_port)
    scripts/deploy/gen-dev-secrets.sh "$SECRETS_DIR" >/dev/null
    use_keys "$SECRETS_DIR"

    mv "$SECRETS_DIR/redis_password" "$work/redis_password"
    if deploy --image "$GATEWAY_IMAGE"; then die "deploy.sh went on without a secret"; fi
    grep -q "FAILED: secret .*redis_password is missing" "$work/deploy.log" || { cat "$work/deploy.log"; die "no clear message for a missing secret"; }
    mv "$work/redis_password" "$SECRETS_DIR/redis_password"
    chmod 0644 "$SECRETS_DIR/tls_key"
    if deploy --image "$GATEWAY_IMAGE"; then die "deploy.sh went on with a world-readable key"; fi
    grep -q "FAILED: secret .*tls_key is readable by others" "$work/deploy.log" || { cat "$work/deploy.log"; die "no clear message for a world-readable secret"; }
    chmod 0640 "$SECRETS_DIR/tls_key"
    [ -z "$(docker ps -q --filter "label=com.docker.compose.project=$P")" ] || die "preflight failures started containers"
    ok "preflight stops on a missing and on a world-readable secret, before touching anything"

    deploy --image "$GATEWAY_IMAGE" || { cat "$work/deploy.log"; die "first deploy"; }
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready" 30
    ok "first deploy: $(tail -1 "$work/deploy.log" | sed 's/^.*deploy: //')"

    # v2: the same binary under another tag, so the rollout really replaces the container.
    docker tag "$GATEWAY_IMAGE" "$GATEWAY_IMAGE-v2"
    under_load "$HTTPS_PORT" deploy --image "$GATEWAY_IMAGE-v2"
    ((DEPLOYED == 0)) || { cat "$work/deploy.log"; die "rollout to v2"; }
    sed 's/^/    /' "$work/deploy.log"
    ok "rollout under load: 0 failed of $KA keep-alive and $FRESH new-connection requests; $(tail -1 "$work/deploy.log" | sed 's/^.*deploy: //')"

    # Broken versions: never ready; ready but every prediction refused.
    printf 'FROM %s\nENV INFERGATE_READY__REQUIRE=["redis"] INFERGATE_REDIS__URL=redis://127.0.0.1:1/0\n' \
        "$GATEWAY_IMAGE" | docker build -q -t "$GATEWAY_IMAGE-unready" - >/dev/null
    printf 'FROM %s\nENV INFERGATE_SERVER__MAX_BODY_BYTES=8\n' "$GATEWAY_IMAGE" |
        docker build -q -t "$GATEWAY_IMAGE-badsmoke" - >/dev/null
    local broken
    for broken in unready badsmoke; do
        under_load "$HTTPS_PORT" deploy --image "$GATEWAY_IMAGE-$broken"
        ((DEPLOYED != 0)) || { cat "$work/deploy.log"; die "deploy.sh accepted the $broken version"; }
        grep -q "rolled back" "$work/deploy.log" || { cat "$work/deploy.log"; die "no rollback reported for $broken"; }
        sed 's/^/    /' "$work/deploy.log"
        [ "$(serving_image)" = "$GATEWAY_IMAGE-v2" ] ||
            die "after the $broken version, v2 is not the one serving"
        [ "$("${DC[@]}" ps -q gateway | wc -l)" = 1 ] || die "the $broken container was left behind"
        ok "$broken version rolled back automatically: 0 failed of $KA keep-alive and $FRESH new-connection requests"
    done

    deploy --rollback || { cat "$work/deploy.log"; die "deploy.sh --rollback"; }
    [ "$(serving_image)" = "$GATEWAY_IMAGE" ] ||
        die "--rollback did not bring back the previous version"
    ok "--rollback returns to the previous version"
    "${DC[@]}" down -v -t 5 >/dev/null 2>&1
    docker rmi "$GATEWAY_IMAGE-v2" "$GATEWAY_IMAGE-unready" "$GATEWAY_IMAGE-badsmoke" >/dev/null 2>&1 || true
    no_keys
}

# ---- swarm: the same files on `docker stack deploy` -------------------------------------------
swarm_gateways() { # the running gateway task containers
    docker ps -q --filter "label=com.docker.swarm.service.name=${swarm_stack}_gateway"
}

show_gateway_logs() { # for a failed load: the gateways' last lines, Compose's and Swarm's
    local c
    for c in $(docker ps -aq --filter "label=com.docker.compose.project=$P" --filter name=gateway) \
        $(swarm_gateways 2>/dev/null); do
        echo "--- docker logs --tail 20 $c"
        docker logs --tail 20 "$c" 2>&1 || true
    done
}

swarm_images() { # the images the running gateway tasks run, sorted, unique
    local c
    for c in $(swarm_gateways); do docker inspect -f '{{.Config.Image}}' "$c" | sed 's/@sha256:.*//'; done | sort -u
}

test_swarm() {
    section "Swarm: docker stack deploy from the same files; replicas sharing Redis and PostgreSQL; rolling updates"
    case $(docker info -f '{{.Swarm.LocalNodeState}}') in
    inactive)
        docker network inspect docker_gwbridge >/dev/null 2>&1 && swarm_gwbridge=1
        # Loopback: a single-node swarm that reaches nothing outside this machine.
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null
        swarm_inited=1 ;;
    active)
        [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] ||
            die "this engine is a swarm worker: stacks are deployed from a manager" ;;
    *) die "the engine's swarm state is $(docker info -f '{{.Swarm.LocalNodeState}}')" ;;
    esac
    # Gateways on the host network: the drain's queued connections move to the other
    # gateway only with this host sysctl (Compose sets it in the edge's namespace).
    migrate_req_before=$(sysctl -n net.ipv4.tcp_migrate_req)
    as_root sysctl -qw net.ipv4.tcp_migrate_req=1 || die "cannot set net.ipv4.tcp_migrate_req=1 (needs root)"
    swarm_stack="igtest-$$-swarm"
    export STACK=$swarm_stack SECRETS_DIR="$work/swarm-secrets" GATEWAY_REPLICAS=2 UPDATE_TIMEOUT=180
    export HTTPS_PORT REDIS_PORT POSTGRES_PORT
    HTTPS_PORT=$(free_port) REDIS_PORT=$(free_port) POSTGRES_PORT=$(free_port)
    scripts/deploy/gen-dev-secrets.sh "$SECRETS_DIR" >/dev/null
    use_keys "$SECRETS_DIR"
    local stackfile="$work/stack.json"
    scripts/deploy/swarm.sh render >"$stackfile"
    docker stack config -c "$stackfile" >/dev/null || die "docker stack config refuses the rendered stack"
    ok "compose.yml + compose.prod.yml rendered into a stack file docker stack accepts"

    scripts/deploy/swarm.sh deploy >"$work/swarm.log" 2>&1 || { cat "$work/swarm.log"; die "swarm.sh deploy"; }
    wait_https "https://127.0.0.1:$HTTPS_PORT/ready" 60
    [ "$(swarm_gateways | wc -l)" = 2 ] || die "not 2 gateway tasks running"
    ok "first deploy: $(tail -1 "$work/swarm.log" | sed 's/^.*swarm: //'), 2 gateway replicas"

    # 40 new connections, one request each, the same row: SO_REUSEPORT spreads them over
    # both replicas; the one that did not compute the answer finds it in Redis (hit-l2).
    local body='{"features": [6.3, 2.5, 5.0, 1.9]}' i answers
    answers=$(for i in $(seq 40); do
        curl -ks -o /dev/null -D - "${AUTH[@]}" -H 'content-type: application/json' -H 'connection: close' \
            -d "$body" "https://127.0.0.1:$HTTPS_PORT/predict" | status_and_cache
    done | sort | uniq -c)
    grep -qE '^ +[0-9]+ 200 hit-l2$' <<<"$answers" || { echo "$answers"; die "no replica found the other's answer in Redis"; }
    grep -qvE ' 200 (miss|hit-l1|hit-l2)$' <<<"$answers" && { echo "$answers"; die "a request failed"; }
    ok "both replicas share Redis: $(tr -s ' \n' ' ' <<<"$answers")"
    wait_rows 40 "$(docker ps -q --filter "label=com.docker.swarm.service.name=${swarm_stack}_postgres" | head -1)"
    ok "both replicas log to the one PostgreSQL (40 rows; password and TLS key from Swarm secrets)"

    docker tag "$GATEWAY_IMAGE" "$GATEWAY_IMAGE-v2"
    STEP_LOG=$work/swarm.log
    GATEWAY_IMAGE=$GATEWAY_IMAGE-v2 under_load "$HTTPS_PORT" scripts/deploy/swarm.sh deploy >"$work/swarm.log" 2>&1
    ((DEPLOYED == 0)) || { cat "$work/swarm.log"; die "rolling update to v2"; }
    [ "$(swarm_images)" = "$GATEWAY_IMAGE-v2" ] || die "after the update the tasks run $(swarm_images)"
    sed 's/^/    /' "$work/swarm.log"
    ok "rolling update under load: 0 failed of $KA keep-alive and $FRESH new-connection requests"

    # A configuration that never turns ready: Swarm never counts the task healthy, and rolls back.
    under_load "$HTTPS_PORT" docker service update --detach=false --quiet \
        --env-add 'INFERGATE_READY__REQUIRE=["redis"]' --env-add INFERGATE_REDIS__URL=redis://127.0.0.1:1/0 \
        "${swarm_stack}_gateway" >"$work/swarm.log" 2>&1
    local state
    state=$(docker service inspect -f '{{.UpdateStatus.State}}' "${swarm_stack}_gateway")
    [ "$state" = rollback_completed ] || { cat "$work/swarm.log"; die "the unready update ended '$state', not rolled back"; }
    grep -q '^INFERGATE_REDIS__URL=redis://127.0.0.1:1/' <<<"$(docker service inspect \
        -f '{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}' "${swarm_stack}_gateway")" &&
        die "the unready configuration is still the service's"
    [ "$(swarm_gateways | wc -l)" = 2 ] || die "not 2 gateway tasks after the rollback"
    ok "an update that never turns ready is rolled back by Swarm: 0 failed of $KA keep-alive and $FRESH new-connection requests"
    swarm_cleanup
    docker rmi "$GATEWAY_IMAGE-v2" >/dev/null 2>&1 || true
    no_keys
}

parts=("$@")
((${#parts[@]})) || parts=(stack prod monitoring deploy swarm)
for part in "${parts[@]}"; do "test_$part"; done
echo "==> containers: $passed checks passed"
