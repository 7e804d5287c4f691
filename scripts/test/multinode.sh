#!/usr/bin/env bash
# The stack across hosts, on real Swarm: three Docker engines (Debian's docker.io, each in a
# container of its own on a network this script makes: three nodes with their own addresses,
# host networks and storage), deployed with scripts/deploy/swarm.sh exactly as the README
# tells an operator (GATEWAY_REPLICAS=global, DATA_CONSTRAINT, DATA_HOST), with HAProxy in
# front. Not part of scripts/test.sh (it does not fit the cold-CI budget beside the rest);
# runnable alone:
#
#   scripts/test/multinode.sh
#
# node1 is the manager, node2 and node3 workers; node3 holds Redis and PostgreSQL (labelled
# infergate.data=true). Each node publishes its gateway port on 127.0.0.1 only, and every
# check and load goes to those ports or to HAProxy's (never to a node's private address).
# Checked: every node answers, directly and through HAProxy; an answer computed on one node
# is hit-l2 on the others; N answers are N rows in the one PostgreSQL; Prometheus scrapes
# every node; a rolling update to a new image and an update that never turns ready (rolled
# back) under load, 0 failed; a worker killed under load (failures limited to what was in
# flight on it, counted), and back; Redis stopped for 30 s (answers go on, /ready
# degraded); PostgreSQL stopped for 30 s (every answer of the window a row once it is back).
#
# Everything it makes (nodes, their volumes, the network, HAProxy, Prometheus, the node and
# HAProxy images, the stack's images when it built them, the nodes' cgroups) is removed on
# exit, pass or fail; KEEP_IMAGES=1 keeps the stack's images for the next run, and
# KEEP_ON_FAILURE=1 leaves a failed run standing for inspection (it says how to reach it).
# Environment: GATEWAY_IMAGE (infergate:test), GATEWAY_BIN (as scripts/deploy/images.sh),
# OUTAGE_S (30).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/stack-checks.sh
source scripts/lib/stack-checks.sh

skip_without_docker "multi-node Swarm"
need curl wrk openssl
section() { step "multinode: $*"; }
STARTED=$SECONDS
OUTAGE_S=${OUTAGE_S:-30}

run="igtest-$$-mn"
work=$(mktemp -d /tmp/igtest-mn.XXXXXX)
NODES=(node1 node2 node3)
declare -A IP PORT
NODE_IMAGE=$run-node:local
LB_IMAGE=$run-haproxy:local
LB_PORT="" LB_STATS=""

# ---- cleanup: everything this run made, pass or fail --------------------------------------------
made_images=()
cleanup() {
    set +e # every step, whatever the one before did
    local pid
    for pid in "$work"/wrk-*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
    docker ps -aq --filter "label=igtest.run=$run" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    docker network rm "$run" >/dev/null 2>&1 || true
    # The nodes' engines made cgroups under their --cgroup-parent; empty now, removed deepest first.
    find /sys/fs/cgroup/ -mindepth 2 -maxdepth 2 -type d -name "$run-node*" 2>/dev/null |
        while read -r d; do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
    docker rmi "$NODE_IMAGE" "$LB_IMAGE" >/dev/null 2>&1 || true
    # Children before the base they were built from.
    local i
    for ((i = ${#made_images[@]} - 1; i >= 0; i--)); do docker rmi "${made_images[i]}" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap 'if [ -n "${KEEP_ON_FAILURE:-}" ]; then echo "kept for inspection: docker ps --filter label=igtest.run=$run; DOCKER_HOST=unix://$work/node1/docker.sock"; else cleanup; fi' EXIT

# ---- images -----------------------------------------------------------------------------------
export GATEWAY_IMAGE=${GATEWAY_IMAGE:-infergate:test}
eval "$(scripts/deploy/images.sh --print-env | sed 's/^/export /')"
BASE_IMAGE=${BASE_IMAGE:-infergate/debian:bookworm}
if [ -z "${KEEP_IMAGES:-}" ]; then
    for image in "$BASE_IMAGE" "$REDIS_IMAGE" "$POSTGRES_IMAGE" "$PROMETHEUS_IMAGE" "$GATEWAY_IMAGE"; do
        docker image inspect "$image" >/dev/null 2>&1 || made_images+=("$image")
    done
fi
scripts/deploy/images.sh base redis postgres prometheus gateway
section "images: a node (Debian's docker.io) and HAProxy, from $BASE_IMAGE"
for spec in "$NODE_IMAGE:node" "$LB_IMAGE:haproxy"; do
    docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "${spec%:*}" \
        -f "scripts/test/multinode/${spec##*:}.Dockerfile" scripts/test/multinode >/dev/null 2>"$work/build.log" ||
        { cat "$work/build.log"; die "docker build ${spec%:*}"; }
done

# ---- three engines ----------------------------------------------------------------------------
# dk NODE ARGS...: the docker CLI against NODE's engine (its socket, shared through $work).
dk() { local node=$1; shift; DOCKER_HOST="unix://$work/$node/docker.sock" docker "$@"; }

# A /24 of its own for the nodes: fixed addresses survive a node's restart.
make_network() {
    local i
    for i in $(seq 100 140); do
        if docker network create --subnet "10.213.$i.0/24" --label "igtest.run=$run" "$run" >/dev/null 2>&1; then
            SUBNET_PREFIX=10.213.$i
            return
        fi
    done
    die "no free 10.213.x.0/24 for the nodes' network"
}

# start_node NODE: a node container with its own engine. Not --privileged: that asks for
# every capability, and an engine that lacks one (CAP_SYS_RESOURCE here) refuses it; the
# node gets all the others, no seccomp or AppArmor confinement, every device and a writable
# cgroup tree, which is what an engine inside needs. Its gateway port is published on
# 127.0.0.1 only; net.ipv4.tcp_migrate_req is set in its network namespace, which is the
# node's host network.
start_node() {
    local node=$1
    mkdir -p "$work/$node"
    docker run -d --name "$run-$node" --hostname "$node" --label "igtest.run=$run" \
        --network "$run" --ip "${IP[$node]}" -p "127.0.0.1:${PORT[$node]}:8443" \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /tmp \
        --sysctl net.ipv4.tcp_migrate_req=1 -v "$work/$node:/run/igtest" \
        "$NODE_IMAGE" --host "unix:///run/igtest/docker.sock" --cgroup-parent "/$run-$node" \
        >/dev/null
}

wait_engine() { # NODE: until its engine answers
    eventually 60 dk "$1" info >/dev/null 2>&1 ||
        { docker logs --tail 30 "$run-$1" >&3 2>&1; die "$1: its engine did not start"; }
}

section "three Docker engines on network $run, a swarm of one manager and two workers"
make_network
n=11
for node in "${NODES[@]}"; do
    IP[$node]=$SUBNET_PREFIX.$n
    PORT[$node]=$(free_port)
    n=$((n + 1))
    start_node "$node"
done
for node in "${NODES[@]}"; do wait_engine "$node"; done
dk node1 swarm init --advertise-addr "${IP[node1]}" >/dev/null
token=$(dk node1 swarm join-token -q worker)
for node in node2 node3; do dk "$node" swarm join --token "$token" "${IP[node1]}:2377" >/dev/null; done
# The operator's step from the README: the node that keeps the data.
dk node1 node update --label-add infergate.data=true node3 >/dev/null
[ "$(dk node1 node ls --format '{{.Hostname}} {{.Status}}' | grep -c ' Ready$')" = 3 ] ||
    die "not three nodes ready: $(dk node1 node ls)"
ok "three engines (${IP[node1]}, ${IP[node2]}, ${IP[node3]}) in one swarm; node3 labelled infergate.data=true"

section "images into every node: docker save | docker load, no registry"
t0=$SECONDS
size=$(docker image inspect -f '{{.Size}}' "$GATEWAY_IMAGE" "$REDIS_IMAGE" "$POSTGRES_IMAGE" | awk '{ s += $1 } END { print s }')
docker save "$GATEWAY_IMAGE" "$REDIS_IMAGE" "$POSTGRES_IMAGE" >"$work/images.tar"
for node in "${NODES[@]}"; do dk "$node" load -q -i "$work/images.tar" >/dev/null; done
rm -f "$work/images.tar"
LOAD_S=$((SECONDS - t0))
ok "the gateway, Redis and PostgreSQL images ($(numfmt --to=iec "$size")) loaded into 3 engines in ${LOAD_S}s"

# ---- the stack, as the README deploys it --------------------------------------------------------
export STACK=$run SECRETS_DIR="$work/secrets" GATEWAY_REPLICAS=global UPDATE_TIMEOUT=240
export DATA_CONSTRAINT='node.labels.infergate.data == true' DATA_HOST=${IP[node3]}
export HTTPS_PORT=8443 REDIS_PORT=6379 POSTGRES_PORT=5432
scripts/deploy/gen-dev-secrets.sh "$SECRETS_DIR" >/dev/null
use_keys "$SECRETS_DIR"
ADMIN=(-H "authorization: Bearer $(cat "$SECRETS_DIR/api_key_prometheus")")
swarm_deploy() { DOCKER_HOST="unix://$work/node1/docker.sock" scripts/deploy/swarm.sh deploy; }

# node_containers NODE SERVICE: the running task containers of the stack's SERVICE on NODE.
node_containers() { dk "$1" ps -q --filter "label=com.docker.swarm.service.name=${STACK}_$2"; }
show_gateway_logs() {
    local node c
    for node in "${NODES[@]}"; do
        for c in $(node_containers "$node" gateway 2>/dev/null); do
            echo "--- $node: docker logs --tail 20 $c"
            dk "$node" logs --tail 20 "$c" 2>&1 || true
        done
    done
}
# rows_exactly N: predictions reaches N rows, and a moment later holds N, not more.
rows_exactly() {
    wait_rows "$1"
    sleep 3
    local got
    got=$(rows)
    [ "$got" = "$1" ] || die "$1 answers, $got rows"
}
rows() { # the predictions table's row count, from the data node's PostgreSQL
    local pg
    pg=$(node_containers node3 postgres | head -1)
    [ -n "$pg" ] && dk node3 exec "$pg" psql -U infergate -d infergate -tAc 'select count(*) from predictions' 2>/dev/null | tr -d '[:space:]'
}

section "deploy: scripts/deploy/swarm.sh, GATEWAY_REPLICAS=global, data on node3"
t0=$SECONDS
swarm_deploy >"$work/swarm.log" 2>&1 || { cat "$work/swarm.log"; show_gateway_logs; die "swarm.sh deploy"; }
for node in "${NODES[@]}"; do wait_https "https://127.0.0.1:${PORT[$node]}/ready" 120; done
DEPLOY_S=$((SECONDS - t0))
for node in node1 node2; do
    [ -z "$(node_containers "$node" redis)$(node_containers "$node" postgres)" ] || die "Redis or PostgreSQL runs on $node, not only on the data node"
done
if [ -z "$(node_containers node3 redis)" ] || [ -z "$(node_containers node3 postgres)" ]; then
    die "Redis and PostgreSQL are not on node3"
fi
sed 's/^/    /' "$work/swarm.log"
ok "deployed in ${DEPLOY_S}s: a gateway on every node, ready on 127.0.0.1:${PORT[node1]}, :${PORT[node2]}, :${PORT[node3]}; Redis and PostgreSQL on node3 only"

# ---- HAProxy in front: TCP pass-through, /ready checked over TLS ---------------------------------
LB_PORT=$(free_port)
LB_STATS=$(free_port)
# A check a second; after a failed one, the next comes sooner (fastinter): a dead node is
# down after at most inter + fastinter.
LB_INTER_MS=1000 LB_FASTINTER_MS=250 LB_FALL=2
cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    # A connection a node refuses (its port gone) is retried on another at once: only the
    # requests already on a node can fail with it.
    retries 3
    option redispatch 1
frontend gateways
    bind 127.0.0.1:$LB_PORT
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    default-server check check-ssl verify none inter ${LB_INTER_MS} fastinter ${LB_FASTINTER_MS} fall $LB_FALL rise 2
    server node1 127.0.0.1:${PORT[node1]}
    server node2 127.0.0.1:${PORT[node2]}
    server node3 127.0.0.1:${PORT[node3]}
frontend stats
    mode http
    bind 127.0.0.1:$LB_STATS
    stats enable
    stats uri /
CFG
docker run -d --name "$run-haproxy" --label "igtest.run=$run" --network host \
    -v "$work/haproxy.cfg:/etc/haproxy/haproxy.cfg:ro" "$LB_IMAGE" >/dev/null

lb_status() { # NODE -> HAProxy's view of it: "STATUS SESSIONS_NOW SESSIONS_EVER" (UP, DOWN, ...)
    curl -s "http://127.0.0.1:$LB_STATS/;csv" |
        awk -F, -v n="$1" '$1 == "nodes" && $2 == n { split($18, s, " "); print s[1], $5, $8 }'
}
lb_sees() { [ "$(lb_status "$1" | cut -d' ' -f1)" = "$2" ]; } # NODE STATUS
wait_lb() { # NODE STATUS [SECONDS]: until HAProxy reports NODE so
    eventually "${3:-60}" lb_sees "$1" "$2" || die "HAProxy never saw $1 $2 (it says: $(lb_status "$1"))"
}
for node in "${NODES[@]}"; do wait_lb "$node" UP; done
wait_https "https://127.0.0.1:$LB_PORT/ready" 30
ok "HAProxy on 127.0.0.1:$LB_PORT: all three nodes UP (/ready over TLS every ${LB_INTER_MS} ms, ${LB_FASTINTER_MS} ms after a failure)"

# ---- across hosts: one Redis, one PostgreSQL, every node scraped ---------------------------------
body='{"features": [6.3, 2.9, 5.6, 1.8]}'
[ "$(predict_json "${PORT[node1]}" "$body")" = "200 miss" ] || die "the first answer on node1 is not a miss"
for node in node2 node3; do
    got=$(predict_json "${PORT[$node]}" "$body")
    [ "$got" = "200 hit-l2" ] || die "the repeat on $node: '$got', not 200 hit-l2"
done
ok "computed on node1, hit-l2 on node2 and node3 (one Redis, on node3)"

expected=3
declare -A lb_before
for node in "${NODES[@]}"; do read -r _ _ "lb_before[$node]" < <(lb_status "$node"); done
for i in $(seq 1 10); do
    for node in "${NODES[@]}"; do
        got=$(predict_json "${PORT[$node]}" "{\"features\": [5.$i, 3.$i, 1.$i, 0.$((100 + i))]}")
        [ "${got%% *}" = 200 ] || die "a prediction on $node: $got"
    done
    got=$(predict_json "$LB_PORT" "{\"features\": [4.$i, 2.$i, 3.$i, 1.$i]}")
    [ "${got%% *}" = 200 ] || die "a prediction through HAProxy: $got"
done
expected=$((expected + 40))
for node in "${NODES[@]}"; do
    read -r _ _ total < <(lb_status "$node")
    ((total > lb_before[$node])) || die "HAProxy sent none of its 10 predictions to $node"
done
rows_exactly "$expected"
ok "$expected answers (10 on each node's port, 10 through HAProxy, which sent some to every node, the 3 above) -> $expected rows in the one PostgreSQL"

PROM_PORT=$(free_port)
install -m 0644 "$SECRETS_DIR/api_key_prometheus" "$work/prometheus-key"
cat >"$work/prometheus.yml" <<YML
global: { scrape_interval: 2s }
scrape_configs:
  - job_name: infergate
    scheme: https
    tls_config: { insecure_skip_verify: true }
    authorization: { credentials_file: /etc/prometheus/key }
    static_configs:
      - targets: ["127.0.0.1:${PORT[node1]}", "127.0.0.1:${PORT[node2]}", "127.0.0.1:${PORT[node3]}"]
YML
docker run -d --name "$run-prometheus" --label "igtest.run=$run" --network host \
    -v "$work/prometheus.yml:/etc/prometheus/prometheus.yml:ro" -v "$work/prometheus-key:/etc/prometheus/key:ro" \
    "$PROMETHEUS_IMAGE" --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus \
    "--web.listen-address=127.0.0.1:$PROM_PORT" >/dev/null
eventually 60 prometheus_up "$PROM_PORT" 3 ||
    { curl -s "http://127.0.0.1:$PROM_PORT/api/v1/targets" >&3; die "Prometheus does not scrape all three nodes"; }
series=$(curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode 'query=count by (instance) (infergate_build_info)' |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]["result"]))')
[ "$series" = 3 ] || die "infergate_build_info from $series instances, not 3"
ok "Prometheus scrapes every node's /metrics (admin key from api_key_prometheus): 3 targets up"

# ---- rolling updates under load through HAProxy ---------------------------------------------------
# node_images: "node:image" of every running gateway task, sorted.
node_images() {
    local node c
    for node in "${NODES[@]}"; do
        for c in $(node_containers "$node" gateway); do
            echo "$node:$(dk "$node" inspect -f '{{.Config.Image}}' "$c" | sed 's/@sha256:.*//')"
        done
    done | sort | tr '\n' ' '
}
section "rolling update to a new gateway image under load through HAProxy"
for node in "${NODES[@]}"; do dk "$node" tag "$GATEWAY_IMAGE" "$GATEWAY_IMAGE-v2"; done
STEP_LOG=$work/swarm.log
t0=$SECONDS
GATEWAY_IMAGE=$GATEWAY_IMAGE-v2 under_load "$LB_PORT" swarm_deploy >"$work/swarm.log" 2>&1
((DEPLOYED == 0)) || { cat "$work/swarm.log"; die "the rolling update to v2"; }
want="node1:$GATEWAY_IMAGE-v2 node2:$GATEWAY_IMAGE-v2 node3:$GATEWAY_IMAGE-v2 "
[ "$(node_images)" = "$want" ] || die "after the update the nodes run: $(node_images)"
sed 's/^/    /' "$work/swarm.log"
ok "rolling update of 3 nodes in $((SECONDS - t0))s under load: 0 failed of $KA keep-alive and $FRESH new-connection requests"

section "an update that never turns ready, under load: Swarm rolls it back"
under_load "$LB_PORT" dk node1 service update --detach=false --quiet \
    --env-add 'INFERGATE_READY__REQUIRE=["redis"]' --env-add INFERGATE_REDIS__URL=redis://127.0.0.1:1/0 \
    "${STACK}_gateway" >"$work/swarm.log" 2>&1
state=$(dk node1 service inspect -f '{{.UpdateStatus.State}}' "${STACK}_gateway")
[ "$state" = rollback_completed ] || { cat "$work/swarm.log"; die "the unready update ended '$state', not rolled back"; }
[ "$(node_images)" = "$want" ] || die "after the rollback the nodes run: $(node_images)"
for node in "${NODES[@]}"; do wait_https "https://127.0.0.1:${PORT[$node]}/ready" 30; done
ok "an update that never turns ready is rolled back by Swarm: 0 failed of $KA keep-alive and $FRESH new-connection requests"

# ---- a worker lost under load -------------------------------------------------------------------
section "node2 (a worker) killed under load through HAProxy, then restarted"
loads_start "$LB_PORT"
sleep 3
# What can fail: the sessions HAProxy holds on node2 when it dies (each carries at most one
# request at a time: the most of five readings), and those it sends there before its checks
# see it down. A real host's death leaves connections to it unanswered, and HAProxy sends
# them elsewhere after its connect timeout; here docker-proxy, in front of each node's
# loopback port, may accept one in the instant before it goes, and then close it.
on_node2=0
for _ in 1 2 3 4 5; do
    read -r _ s total_before < <(lb_status node2)
    ((s > on_node2)) && on_node2=$s
    sleep 0.1
done
t0=$(date +%s.%N)
docker kill "$run-node2" >/dev/null
wait_lb node2 DOWN 30
down_s=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
read -r _ _ total_after < <(lb_status node2)
sent_after=$((total_after - total_before))
sleep 8
for node in node1 node3; do
    [ "$(code "https://127.0.0.1:${PORT[$node]}/ready")" = 200 ] || die "$node stopped answering after node2 was lost"
done
load_count keepalive
KA=$REQUESTS KA_FAILED=$FAILED
load_count fresh
FRESH=$REQUESTS FRESH_FAILED=$FAILED
lost=$((KA_FAILED + FRESH_FAILED))
echo "    node2 held $on_node2 of HAProxy's sessions when it was killed; HAProxy sent it $sent_after more and marked it DOWN after ${down_s}s"
curl -s "http://127.0.0.1:$LB_STATS/;csv" | awk -F, '$1 == "nodes" && $2 == "node2"' | cut -d, -f1-20 | sed 's/^/    haproxy: /'
grep -hE 'Socket errors|Non-2xx' "$work"/wrk-keepalive.txt "$work"/wrk-fresh.txt | sed 's/^/    wrk: /' || true
echo "    keep-alive: $KA answered, $KA_FAILED failed; new connections: $FRESH answered, $FRESH_FAILED failed"
((lost <= on_node2 + sent_after)) || die "$lost requests failed, more than the $((on_node2 + sent_after)) sessions node2 held or was sent"
((KA > 0 && FRESH > 0)) || die "no answers while node2 was gone"
ok "node2 killed: HAProxy stopped sending to it after ${down_s}s (checks every ${LB_INTER_MS} ms, ${LB_FASTINTER_MS} ms after a failure, $LB_FALL to fail); nodes 1 and 3 answered $((KA + FRESH)); $lost failed, of the $on_node2 sessions on node2 and the $sent_after sent to it before it was DOWN"

t0=$SECONDS
docker start "$run-node2" >/dev/null
wait_engine node2
node_ready() { [ "$(dk node1 node inspect -f '{{.Status.State}}' "$1")" = ready ]; }
eventually 120 node_ready node2 || die "node2 did not rejoin the swarm"
wait_https "https://127.0.0.1:${PORT[node2]}/ready" 120
wait_lb node2 UP 30
ok "node2 restarted: back in the swarm, its gateway ready and UP in HAProxy after $((SECONDS - t0))s"

# ---- the data node's services stopped for a while -------------------------------------------------
scale() { # SERVICE N: the stack's SERVICE scaled to N tasks, until that many run (healthy)
    dk node1 service scale --detach=false "${STACK}_$1=$2" >"$work/scale.log" 2>&1 ||
        { cat "$work/scale.log" >&3; die "docker service scale ${STACK}_$1=$2"; }
    # Scaled to 0, the command returns once Swarm has decided; the task stops after that.
    eventually 30 runs_on_node3 "$1" "$2" || die "${STACK}_$1 does not run $2 tasks on node3"
}
runs_on_node3() { [ "$(node_containers node3 "$1" | wc -l)" = "$2" ]; } # SERVICE N
# stop_for_a_while SERVICE CLEAN_EXIT_LINE: the stack's SERVICE scaled to 0; its task's log
# (followed, since Swarm removes the container) must show it stopped on SIGTERM, cleanly.
stop_for_a_while() {
    local c
    c=$(node_containers node3 "$1" | head -1)
    dk node3 logs -f --since 1s "$c" >"$work/$1-stop.log" 2>&1 &
    scale "$1" 0
    wait $! || true
    grep -qiE "$2" "$work/$1-stop.log" ||
        { cat "$work/$1-stop.log" >&3; die "$1 did not stop on SIGTERM (is its server the container's PID 1?)"; }
}
ready_body() { curl -ks "https://127.0.0.1:${PORT[$1]}/ready"; }

# redis_away: Redis stopped for OUTAGE_S, every node probed meanwhile, then started again.
redis_away() {
    stop_for_a_while redis 'Received SIGTERM'
    local t0=$SECONDS i=0 node got
    while ((SECONDS - t0 < OUTAGE_S)); do
        # A new row on each node in turn: a miss everywhere, nothing shared while Redis is away.
        i=$((i + 1))
        for node in "${NODES[@]}"; do
            got=$(predict_json "${PORT[$node]}" "{\"features\": [7.1, 2.9, 6.0, 1.$((1000 + i))]}")
            [ "$got" = "200 miss" ] || die "without Redis, a row on $node that node1 answered: '$got', not 200 miss"
        done
        sleep 2
    done
    for node in "${NODES[@]}"; do
        [ "$(code "https://127.0.0.1:${PORT[$node]}/ready")" = 200 ] || die "$node turned unready without Redis"
        grep -q '"redis":"down"' <<<"$(ready_body "$node")" || die "$node's /ready does not say Redis is down: $(ready_body "$node")"
    done
    degraded=$(ready_body node1)
    scale redis 1
}
section "Redis stopped for ${OUTAGE_S}s under load: answers go on, /ready degraded"
under_load "$LB_PORT" redis_away
((DEPLOYED == 0)) || die "the Redis outage step ended $DEPLOYED"
deadline=$((SECONDS + 60)) i=0
while :; do # until an answer is shared through Redis again (a new row each try)
    i=$((i + 1))
    body="{\"features\": [6.6, 3.1, 5.4, 2.$((1000 + i))]}"
    predict_json "${PORT[node1]}" "$body" >/dev/null
    [ "$(predict_json "${PORT[node3]}" "$body")" = "200 hit-l2" ] && break
    ((SECONDS < deadline)) || die "Redis is back, but no answer is shared through it"
    sleep 1
done
ok "Redis away ${OUTAGE_S}s: 0 failed of $KA keep-alive and $FRESH new-connection requests, every row a miss on every node, /ready 200 and says $(grep -o '"redis":"down"' <<<"$degraded"); hit-l2 again once it is back"

# metric_sum NAME{ FILTER...: the sum of the series of NAME whose labels hold every FILTER,
# in the /metrics text on stdin.
metric_sum() {
    awk -v names="$*" 'BEGIN { n = split(names, f, " ") }
        index($0, f[1]) == 1 { for (i = 2; i <= n; i++) if (!index($0, f[i])) next; s += $NF }
        END { printf "%d\n", s }'
}
scrape() { curl -ks "${ADMIN[@]}" "https://127.0.0.1:${PORT[$1]}/metrics"; } # NODE
# log_totals: per node "answered spooled replayed" (the /predict answers it gave, and its
# prediction log's spooled and replayed rows), one /metrics read each.
declare -A ANSWERED SPOOLED REPLAYED
log_totals() {
    local node m
    for node in "${NODES[@]}"; do
        m=$(scrape "$node")
        ANSWERED[$node]=$(metric_sum 'infergate_requests_total{' 'route="/predict"' 'status="2' <<<"$m")
        SPOOLED[$node]=$(metric_sum 'infergate_log_rows_total{' 'outcome="spooled"' <<<"$m")
        REPLAYED[$node]=$(metric_sum 'infergate_log_rows_total{' 'outcome="replayed"' <<<"$m")
    done
}
postgres_away() { # PostgreSQL stopped for OUTAGE_S, then started again
    stop_for_a_while postgres 'fast shutdown request'
    sleep "$OUTAGE_S"
    scale postgres 1
}
section "PostgreSQL stopped for ${OUTAGE_S}s under load: every answer of the window a row once it is back"
sleep 3
log_totals
declare -A answered_before spooled_before replayed_before
for node in "${NODES[@]}"; do
    answered_before[$node]=${ANSWERED[$node]} spooled_before[$node]=${SPOOLED[$node]} replayed_before[$node]=${REPLAYED[$node]}
done
before_rows=$(rows)
under_load "$LB_PORT" postgres_away
((DEPLOYED == 0)) || die "the PostgreSQL outage step ended $DEPLOYED"
log_totals
window=0
for node in "${NODES[@]}"; do window=$((window + ANSWERED[$node] - answered_before[$node])); done
((window >= KA + FRESH)) || die "the gateways count $window answers, wrk $((KA + FRESH))"
ROWS_TIMEOUT=120 rows_exactly "$((before_rows + window))"
log_totals # again: the replays are over now
spools=""
for node in "${NODES[@]}"; do
    spooled=$((SPOOLED[$node] - spooled_before[$node]))
    replayed=$((REPLAYED[$node] - replayed_before[$node]))
    ((spooled > 0 && replayed == spooled)) || die "$node spooled $spooled rows and replayed $replayed"
    spools+="${spools:+, }$node $spooled"
done
ok "PostgreSQL away ${OUTAGE_S}s: 0 failed of $KA keep-alive and $FRESH new-connection requests; all $window answers are rows, 0 lost (rows spooled and replayed: $spools)"

# ---- done: nothing left behind -----------------------------------------------------------------
TOTAL_S=$((SECONDS - STARTED))
cleanup
trap - EXIT
left=$(
    docker ps -aq --filter "label=igtest.run=$run"
    docker network ls -q --filter "name=^$run\$"
    docker images -q "$NODE_IMAGE"
    docker images -q "$LB_IMAGE"
    find /sys/fs/cgroup/ -mindepth 2 -maxdepth 2 -name "$run-node*" 2>/dev/null
)
[ -z "$left" ] || die "left behind: $left"
ok "removed: 3 nodes and their engines' volumes, HAProxy, Prometheus, network $run, the node and HAProxy images${made_images[*]:+, and ${made_images[*]}}"
echo "==> multinode: $passed checks passed in ${TOTAL_S}s (images ready: ${LOAD_S}s to load them into the nodes, ${DEPLOY_S}s to deploy)"
