#!/usr/bin/env python3
"""Time ONNX Runtime (CPU, one thread) on the ONNX test exports, as benches/onnx_forward.rs
times tract: each tabular model at batches of 1 and 64 rows (its inputs.json rows, repeated;
null as NaN), each image model (--images: ROOT/MODEL/1/model.onnx) at batches of 1 and 8
images of seeded random pixels; `session.run` on a ready numpy array. Prints JSON
{model: {rows: seconds per run}}, each the median of 20 samples of at least 0.1 s.

    target/pyonnx/bin/python scripts/bench/onnx-ort.py tests/fixtures/onnx MODEL...
    target/pyonnx/bin/python scripts/bench/onnx-ort.py --images target/onnx-torch MODEL...
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def per_run(session: ort.InferenceSession, feed: dict) -> float:
    start, warm = time.perf_counter(), 0
    while warm < 50 and time.perf_counter() - start < 0.5:
        session.run(None, feed)
        warm += 1
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


def session_of(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def images(root: str, *models: str) -> int:
    # THREADS (scripts/bench/onnx-vs-ort.sh): the image networks' threads, as tract's.
    threads = int(os.environ.get("THREADS", "1"))
    rng = np.random.default_rng(20261205)
    out = {}
    for name in models:
        session = session_of(Path(root) / name / "1" / "model.onnx", threads)
        (inp,) = session.get_inputs()
        _, channels, height, width = inp.shape
        out[name] = {}
        for rows in (1, 8):
            pixels = rng.uniform(-2, 2, size=(rows, channels, height, width)).astype(np.float32)
            out[name][rows] = per_run(session, {inp.name: pixels})
    json.dump(out, sys.stdout, indent=1)
    return 0


def main(root: str, *models: str) -> int:
    if root == "--images":
        return images(*models)
    out = {}
    for name in models:
        path = Path(root) / name
        session = session_of(path / "model.onnx")
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
