"""The BentoML peer of scripts/bench/vs-peers.sh: torchvision's ResNet-18, exported as ONNX by
scripts/models/export-torch.sh, behind a BentoML service as its users write one: an uploaded
photo, torchvision's ImageNet evaluation transform in Pillow and numpy, ONNX Runtime on the
CPU, the top-5 with labels.

    BENCH_RESNET_DIR=target/onnx-torch/resnet18/1 \
        target/pypeers-bentoml/bin/bentoml serve bento_resnet:ResNet18 \
        --working-dir scripts/bench/peers --host 127.0.0.1 --port 3000
    curl -F file=@tests/fixtures/images/bike.jpg http://127.0.0.1:3000/predict

The upload is the multipart field `file`, as infergate's `/predict` takes it, so one request
body serves both. BENCH_RESNET_DIR holds model.onnx and labels.txt (one ImageNet class a
line); BENTO_WORKERS (1, BentoML's default) sets the service's worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL_DIR = Path(os.environ.get("BENCH_RESNET_DIR", "target/onnx-torch/resnet18/1"))
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(image: Image.Image) -> np.ndarray:
    """torchvision's Resize(256) (shorter side, bilinear) → CenterCrop(224) → ToTensor →
    Normalize(ImageNet), on a PIL image as torchvision does it: [1, 3, 224, 224] float32."""
    image = image.convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = 256, int(256 * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    image = image.crop((left, top, left + 224, top + 224))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis])


@bentoml.service(workers=int(os.environ.get("BENTO_WORKERS", "1")), traffic={"timeout": 60})
class ResNet18:
    def __init__(self) -> None:
        self.session = ort.InferenceSession(
            str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self.labels = (MODEL_DIR / "labels.txt").read_text().splitlines()

    @bentoml.api
    def predict(self, file: Image.Image) -> dict:
        logits = self.session.run(None, {self.input: preprocess(file)})[0][0]
        e = np.exp(logits - logits.max())
        probs = e / e.sum()
        top = np.argsort(-probs)[:5]
        return {
            "predictions": [
                {"class_id": int(i), "label": self.labels[i], "confidence": float(probs[i])}
                for i in top
            ]
        }
