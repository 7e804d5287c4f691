#!/usr/bin/env python3
"""Export the PyTorch image models as ONNX with torch.onnx.export, as their users do.

    scripts/models/export-torch.sh                  # the venv, then this, into target/onnx-torch
    target/pytorch/bin/python scripts/models/export-torch.py OUT [--fixture]

Each model lands as OUT/<name>/1/model.onnx (input `input`, [N, 3, H, W] float, the batch
dynamic; output `logits`, [N, classes]) with a manifest.json (kind image, outputs logits,
its preprocessing) and a labels.txt beside: OUT is a model repository as it is.

- efficientnet-lite0: the bundled demo model's own network with its real weights (the
  checkpoint scripts/models/setup.sh fetches, read by torch_pth.py), defined in
  bench_torch.py with lukemelas's names; its preprocessing is the demo's.
- resnet18: torchvision's, the replaced stack's model, seeded weights.
- mobilenetv3_small_100 (HardSwish, squeeze-excite), convnext_atto (LayerNorm, GELU, 7x7
  depthwise), vit_tiny_patch16_224 (attention, Softmax, MatMul): timm's, seeded weights.

The seeded networks have ImageNet's 1,000 classes; their last layer is scaled so that their
logits spread as a trained network's do (a top-5 that means something to compare).

--fixture instead writes the two small models committed in tests/fixtures/onnx (kilobytes),
which the tests and the fuzz corpus use without PyTorch: torch-tiny-cnn (a conv, a
BatchNorm, a ReLU, a pooling, a linear layer; 32 x 32 in, 4 classes) and torch-two-tower (a
tensor model: `user` [N, 8] float and `items` [N, 3] int64 in, through a GELU, a LayerNorm
and an Embedding, to `score` [N, 1] and `embedding` [N, 16]).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from bench_torch import DEFAULT_PTH, efficientnet_lite0  # noqa: E402

SEED = 20261205
OPSET = 17
IMAGENET_LABELS = REPO / "src/infer/demo/efficientnet-lite0/labels.txt"
DEMO_MANIFEST = REPO / "src/infer/demo/efficientnet-lite0/manifest.json"
TIMM = ("mobilenetv3_small_100", "convnext_atto", "vit_tiny_patch16_224")


def seeded(build):
    torch.manual_seed(SEED)
    model = build().eval()
    # Randomly initialised networks give logits a few thousandths apart (near-uniform
    # probabilities, a top-5 of near-ties); the last layer is scaled so that they spread
    # over a few units on a random image, as a trained network's do.
    head = model.get_classifier() if hasattr(model, "get_classifier") else model.fc
    with torch.inference_mode():
        spread = model(torch.randn(4, 3, 224, 224)).std(dim=1).mean()
    with torch.no_grad():
        head.weight.mul_(2.0 / spread)
        head.bias.mul_(2.0 / spread)
    return model


def resnet18():
    import torchvision

    return seeded(lambda: torchvision.models.resnet18(weights=None))


def timm_model(name: str):
    import timm

    return seeded(lambda: timm.create_model(name, pretrained=False))


class TinyCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class TwoTower(nn.Module):
    """A recommender's scorer: a user's features and the ids of three items they saw, to a
    score and the user's embedding (two inputs, one of int64; two outputs)."""

    def __init__(self):
        super().__init__()
        self.user = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16))
        self.items = nn.Embedding(50, 16)
        self.score = nn.Linear(32, 1)

    def forward(self, user, items):
        u = self.user(user)
        return self.score(torch.cat([u, self.items(items).mean(dim=1)], dim=1)), u


def two_tower():
    torch.manual_seed(SEED)
    return TwoTower()


def export_two_tower(path: Path) -> None:
    model = two_tower().eval()
    example = (torch.zeros(2, 8), torch.zeros(2, 3, dtype=torch.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(model, example, str(path), input_names=["user", "items"],
                          output_names=["score", "embedding"], opset_version=OPSET,
                          dynamo=False,
                          dynamic_axes={n: {0: "N"} for n in ("user", "items", "score",
                                                                "embedding")})


def tiny_cnn():
    torch.manual_seed(SEED)
    model = TinyCnn()
    with torch.no_grad():  # BatchNorm statistics other than the identity's
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model


def imagenet_preprocess(size: int) -> dict:
    return {"resize_shorter": size * 8 // 7, "interpolation": "bilinear", "crop": [size, size],
            "scale_divisor": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def export(model: nn.Module, size: int, path: Path) -> None:
    model.eval()
    example = torch.zeros(1, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(model, (example,), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})


def write_manifest(out: Path, preprocess: dict, labels: list[str] | None) -> None:
    manifest = {"kind": "image", "outputs": "logits", "preprocess": preprocess}
    if labels is None:
        shutil.copyfile(IMAGENET_LABELS, out / "labels.txt")
        manifest["labels_file"] = "labels.txt"
    else:
        manifest["labels"] = labels
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--fixture", action="store_true", help="the small committed models")
    parser.add_argument("--pth", type=Path, default=DEFAULT_PTH)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.fixture:
        out = args.out / "torch-tiny-cnn"
        export(tiny_cnn(), 32, out / "model.onnx")
        write_manifest(out, {**imagenet_preprocess(32), "resize_shorter": 36},
                       ["red", "green", "blue", "gray"])
        print(f"wrote {out}")
        out = args.out / "torch-two-tower"
        export_two_tower(out / "model.onnx")
        print(f"wrote {out}")
        return 0

    if not args.pth.is_file():
        print(f"error: {args.pth} is missing; run scripts/models/setup.sh", file=sys.stderr)
        return 1
    lite, how = efficientnet_lite0(args.pth)
    if "random" in how:
        print(f"error: the EfficientNet-Lite0 weights did not load ({how})", file=sys.stderr)
        return 1
    demo = json.loads(DEMO_MANIFEST.read_text())
    models = [("efficientnet-lite0-onnx", lite, demo["preprocess"]),
              ("resnet18", resnet18(), imagenet_preprocess(224))]
    models += [(name.replace("_", "-"), timm_model(name), imagenet_preprocess(224))
               for name in TIMM]
    for name, model, preprocess in models:
        out = args.out / name / "1"
        export(model, preprocess["crop"][0], out / "model.onnx")
        write_manifest(out, preprocess, None)
        print(f"wrote {out} ({(out / 'model.onnx').stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
