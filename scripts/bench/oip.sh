#!/usr/bin/env bash
# The Open Inference Protocol's infer (REST and gRPC) beside /predict, for the same model
# and row, in one run (scripts/bench/io.sh: h2load over TLS, medians of alternated rounds):
# a cached answer every way, so the figure is the cost of each route's decode and encode on
# top of the shared read-through. The gRPC body is made by scripts/bench/grpc-body.py
# (target/pyclients: scripts/lib/venv.sh scripts/requirements/clients.txt); h2load counts its HTTP status only,
# so a check call first makes sure the answer's grpc-status is 0.
#
#   scripts/bench/oip.sh                  # 6 rounds, io_uring
#   ROUNDS=10 IO=epoll scripts/bench/oip.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
BIN=$(ensure_bin)
export BIN
IO=${IO:-uring}
workdir
printf '%s' '{"features":[5.1,3.5,1.4,0.2]}' >"$WORK/predict.json"
printf '%s' '{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' \
    >"$WORK/oip.json"
printf '%s' '{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"probabilities","parameters":{"classification":1}}]}' \
    >"$WORK/oip-top1.json"
oip=/v2/models/iris-mlp/infer
grpc=/inference.GRPCInferenceService/ModelInfer
scripts/lib/venv.sh scripts/requirements/clients.txt
target/pyclients/bin/python scripts/bench/grpc-body.py "$WORK/grpc.bin"
port=$(free_port)
"$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" --log-format json >"$WORK/check.log" 2>&1 &
check=$!
PIDS+=("$check")
wait_ready "$port"
status=$(curl -sk --http2 -D - -o /dev/null -H 'content-type: application/grpc' \
    --data-binary @"$WORK/grpc.bin" "https://127.0.0.1:$port$grpc" | tr -d '\r' | awk '/^grpc-status:/ { print $2 }')
stop "$check"
[ "$status" = 0 ] || { echo "bench-oip: the gRPC body is answered grpc-status ${status:-none}, not 0" >&2; exit 1; }
CASES_SPEC="h1 /predict hit-l1|60000|--h1 -m1|/predict|$WORK/predict.json:application/json
h1 OIP infer hit-l1|60000|--h1 -m1|$oip|$WORK/oip.json:application/json
h1 OIP infer top-1 hit-l1|60000|--h1 -m1|$oip|$WORK/oip-top1.json:application/json
h2 /predict hit-l1|100000|-m10|/predict|$WORK/predict.json:application/json
h2 OIP infer hit-l1|100000|-m10|$oip|$WORK/oip.json:application/json
h2 gRPC ModelInfer hit-l1|100000|-m10|$grpc|$WORK/grpc.bin:application/grpc" \
    VARIANTS="gateway:$IO" scripts/bench/io.sh
