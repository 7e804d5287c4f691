#!/usr/bin/env python3
"""Time ONNX Runtime (CPU, one thread) on the ONNX test exports, as benches/onnx_forward.rs
times tract: each model at batches of 1 and 64 rows (its inputs.json rows, repeated; null
as NaN), `session.run` on a ready numpy array. Prints JSON {model: {rows: seconds per run}},
each the median of 20 samples of about 0.1 s.

    target/pyonnx/bin/python scripts/bench/onnx-ort.py tests/fixtures/onnx MODEL...
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def per_run(session: ort.InferenceSession, feed: dict) -> float:
    for _ in range(50):
        session.run(None, feed)
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < 0.1:
        session.run(None, feed)
        runs += 1
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        for _ in range(runs):
            session.run(None, feed)
        samples.append((time.perf_counter() - t0) / runs)
    return statistics.median(samples)


def main(root: str, *models: str) -> int:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    out = {}
    for name in models:
        path = Path(root) / name
        session = ort.InferenceSession(
            str(path / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        (inp,) = session.get_inputs()
        table = json.loads((path / "inputs.json").read_text())["rows"]
        table = [[np.nan if v is None else v for v in row] for row in table]
        out[name] = {}
        for rows in (1, 64):
            picked = [table[i % len(table)] for i in range(rows)]
            feed = {inp.name: np.array(picked, dtype=TYPES[inp.type])}
            out[name][rows] = per_run(session, feed)
    json.dump(out, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
