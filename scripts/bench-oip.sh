#!/usr/bin/env bash
# The Open Inference Protocol's infer beside /predict, for the same model and row, in one
# run (scripts/bench-io.sh: h2load over TLS, medians of alternated rounds): a cached answer
# both ways, so the figure is the cost of each route's decode and encode on top of the
# shared read-through.
#
#   scripts/bench-oip.sh                  # 6 rounds, io_uring
#   ROUNDS=10 IO=epoll scripts/bench-oip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IO=${IO:-uring}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '%s' '{"features":[5.1,3.5,1.4,0.2]}' >"$WORK/predict.json"
printf '%s' '{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' \
    >"$WORK/oip.json"
printf '%s' '{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"probabilities","parameters":{"classification":1}}]}' \
    >"$WORK/oip-top1.json"
oip=/v2/models/iris-mlp/infer
CASES_SPEC="h1 /predict hit-l1|60000|--h1 -m1|/predict|$WORK/predict.json:application/json
h1 OIP infer hit-l1|60000|--h1 -m1|$oip|$WORK/oip.json:application/json
h1 OIP infer top-1 hit-l1|60000|--h1 -m1|$oip|$WORK/oip-top1.json:application/json
h2 /predict hit-l1|100000|-m10|/predict|$WORK/predict.json:application/json
h2 OIP infer hit-l1|100000|-m10|$oip|$WORK/oip.json:application/json" \
    VARIANTS="gateway:$IO" scripts/bench-io.sh
