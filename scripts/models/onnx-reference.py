#!/usr/bin/env python3
"""Run an ONNX classifier or regressor with ONNX Runtime (CPU, one thread): the reference
the gateway's answers are checked against (tests/it/onnx_models.rs, onnx_images.rs).

    target/pyonnx/bin/python scripts/models/onnx-reference.py MODEL.onnx INPUTS.json
    target/pyonnx/bin/python scripts/models/onnx-reference.py MODEL.onnx --images PIXELS.f32

    target/pyonnx/bin/python scripts/models/onnx-reference.py MODEL.onnx --tensors REQUEST.json

REQUEST.json is {"inputs": [{"name", "shape", "data"}, ...]} (each cast to the input's
type): prints {"outputs": {name: {"shape": [...], "data": [...]}, ...}}, every output.
PIXELS.f32 is an image model's input, [N, 3, H, W] little-endian float32 with H and W the
graph's: prints {"rows": [{"probabilities": [p, ...]}, ...]}, the softmax of its logits in
class order.

INPUTS.json is {"rows": [[...], ...]}, a missing value null (NaN here). Prints one JSON object, rows in the order given:
{"rows": [{"label": ..., "probabilities": {label: p, ...}}, ...]} for a classifier (labels
as text, integer labels written out), {"rows": [{"value": v}, ...]} for a regressor (one
output, one value per row).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def class_labels(model: onnx.ModelProto) -> list[str] | None:
    for node in model.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type.endswith("Classifier"):
            for attr in node.attribute:
                if attr.name.startswith("classlabels_"):
                    values = onnx.helper.get_attribute_value(attr)
                    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    return None


def session_of(model_path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def images(model_path: str, pixels_path: str) -> int:
    session = session_of(model_path)
    (feed,) = session.get_inputs()
    _, channels, height, width = feed.shape
    pixels = np.fromfile(pixels_path, dtype="<f4").reshape(-1, channels, height, width)
    (logits,) = session.run(None, {feed.name: pixels})
    logits = logits.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    json.dump({"rows": [{"probabilities": [float(p) for p in row]} for row in probs]}, sys.stdout)
    return 0


def tensors(model_path: str, request_path: str) -> int:
    session = session_of(model_path)
    types = {i.name: TYPES[i.type] for i in session.get_inputs()}
    request = json.load(open(request_path))
    feed = {t["name"]: np.array(t["data"], dtype=types[t["name"]]).reshape(t["shape"])
            for t in request["inputs"]}
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feed)
    json.dump({"outputs": {n: {"shape": list(v.shape), "data": v.ravel().tolist()}
                           for n, v in zip(names, values)}}, sys.stdout)
    return 0


def main(model_path: str, inputs_path: str, *rest: str) -> int:
    if inputs_path == "--images":
        return images(model_path, *rest)
    if inputs_path == "--tensors":
        return tensors(model_path, *rest)
    model = onnx.load(model_path)
    labels = class_labels(model)
    session = session_of(model_path)
    (feed,) = session.get_inputs()
    rows = json.load(open(inputs_path))["rows"]
    rows = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=TYPES[feed.type])
    outputs = session.run(None, {feed.name: rows})
    if len(outputs) == 1:
        (values,) = outputs
        json.dump({"rows": [{"value": float(v)} for v in values.reshape(len(rows))]}, sys.stdout)
        return 0
    label_out, prob_out = outputs
    answers = []
    for label, probs in zip(label_out, prob_out):
        if isinstance(probs, dict):  # ZipMap: {label: p}
            by_label = {str(k): float(v) for k, v in probs.items()}
        else:
            by_label = {lab: float(p) for lab, p in zip(labels, probs)}
        label = label.decode() if isinstance(label, bytes) else str(label)
        answers.append({"label": label, "probabilities": by_label})
    json.dump({"rows": answers}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
