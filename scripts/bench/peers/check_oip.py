#!/usr/bin/env python3
"""Before scripts/bench/vs-peers.sh times anything: both servers answer the same rows alike.

    check_oip.py MODEL INPUTS_JSON INFERGATE_URL PEER_URL

Sends every row of INPUTS_JSON ({"rows": [[...], ...]}, as scripts/models/export-onnx.py
writes them) as one [N, F] FP32 Open Inference Protocol request to each: infergate's
`.../infer` (TLS, its self-signed certificate not checked; the input `features`, its output
`probabilities`) and MLServer's (plain HTTP; the same input, `outputs: predict_proba`, what
MLServer's scikit-learn and XGBoost runtimes call the probabilities). Exits 1 unless both
answer 200 with the same top class for every row; prints the largest probability difference.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request


def infer(url: str, body: dict) -> list[list[float]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    context = ssl._create_unverified_context()  # infergate's self-signed development cert
    try:
        with urllib.request.urlopen(req, context=context, timeout=30) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as e:
        sys.exit(f"FAIL: {url} answered {e.code}: {e.read()[:300]!r}")
    out = answer["outputs"][0]
    rows, cols = out["shape"]
    data = out["data"]
    return [data[r * cols:(r + 1) * cols] for r in range(rows)]


def main() -> int:
    model, inputs, ig_url, peer_url = sys.argv[1:]
    rows = json.load(open(inputs))["rows"]
    tensor = {"name": "features", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
              "data": [v for row in rows for v in row]}
    ig = infer(ig_url, {"inputs": [tensor]})
    peer = infer(peer_url, {"inputs": [tensor], "outputs": [{"name": "predict_proba"}]})
    argmax = lambda p: max(range(len(p)), key=p.__getitem__)  # noqa: E731
    differ = [i for i, (a, b) in enumerate(zip(ig, peer)) if argmax(a) != argmax(b)]
    delta = max(abs(x - y) for a, b in zip(ig, peer) for x, y in zip(a, b))
    if len(ig) != len(rows) or len(peer) != len(rows) or differ:
        print(f"FAIL: {model}: the top class differs on rows {differ}", file=sys.stderr)
        return 1
    print(f"{model}: {len(rows)} rows, the same top class on both, "
          f"largest probability difference {delta:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
