#!/usr/bin/env python3
"""Convert a torchvision ResNet checkpoint (a user's fine-tuned or downloaded .pth) into a
model directory the gateway serves:

  DIR/model.safetensors  the state dict, torchvision names unchanged, BatchNorm
                         num_batches_tracked dropped, float32 (or float16 with --dtype f16)
  DIR/manifest.json      architecture {"kind": "resnet", "depth": N}, torchvision's ImageNet
                         preprocessing (resize 256 bilinear, centre crop 224, mean/std)
  DIR/labels.txt         --labels, else the 1000 ImageNet names of the bundled demo model

The checkpoint may be zip or legacy format, a plain state dict or one nested under
`state_dict` / `model` (a `module.` prefix from DataParallel is removed). It is read without
torch and checked against the architecture: the fc layer's size sets the number of classes,
which the labels must match.

    target/pyref/bin/python scripts/models/convert-torchvision.py --arch resnet50 \\
        --pth resnet50-finetuned.pth --out models/dogs --name dogs --labels dogs.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

# Beside this script (Python puts a script's own directory first on its path).
from torch_pth import CheckpointError, load_state_dict, save_safetensors
from torchvision_resnet import resnet_shapes

REPO = Path(__file__).resolve().parents[2]

ARCHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50}
IMAGENET_LABELS = REPO / "src/infer/demo/efficientnet-lite0/labels.txt"
DTYPES = {"f32": np.float32, "f16": np.float16}

# torchvision's ImageNet evaluation transform: Resize(256), CenterCrop(224), ToTensor,
# Normalize(mean, std).
TORCHVISION_PREPROCESS = {
    "resize_shorter": 256,
    "interpolation": "bilinear",
    "crop": [224, 224],
    "scale_divisor": 255.0,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


class UserError(Exception):
    """An expected failure, reported as one message without a traceback."""


def listing(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def read_checkpoint(pth: Path) -> dict[str, np.ndarray]:
    try:
        state = load_state_dict(pth)
    except CheckpointError as e:
        raise UserError(str(e)) from e
    # nn.DataParallel / DistributedDataParallel save every name under `module.`.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}


def check_architecture(state: dict[str, np.ndarray], arch: str) -> int:
    """Fail with everything that does not match; return the number of classes."""
    fc = state.get("fc.weight")
    if fc is None or fc.ndim != 2:
        raise UserError(f"no 2-D fc.weight: not a torchvision {arch} state dict "
                        f"(names start: {listing(sorted(state), 5)})")
    classes = int(fc.shape[0])
    expected = resnet_shapes(ARCHS[arch], classes)
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    wrong = [f"{k} {list(state[k].shape)} (expected {list(expected[k])})"
             for k in expected if k in state and state[k].shape != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing: {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected: {listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {listing(wrong)}")
    if problems:
        raise UserError(f"not a torchvision {arch} state dict ({classes} classes):\n  "
                        + "\n  ".join(problems))
    not_float = [k for k, v in state.items() if v.dtype.kind != "f"]
    if not_float:
        raise UserError(f"tensors that are not floating point: {listing(not_float)}")
    return classes


def cast(state: dict[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
    out = {}
    for name, array in state.items():
        converted = array.astype(dtype)
        if not np.all(np.isfinite(converted)):
            raise UserError(f"{name} has values that are not finite as {np.dtype(dtype).name}")
        out[name] = converted
    return out


def read_labels(path: Path, classes: int) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"labels {path}: {e}") from e
    labels = [line.rstrip("\r") for line in text.splitlines()]
    empty = [str(i + 1) for i, label in enumerate(labels) if not label.strip()]
    if empty:
        raise UserError(f"labels {path}: empty label on line {listing(empty)}")
    if len(labels) != classes:
        raise UserError(f"labels {path}: {len(labels)} labels, but the fc layer has {classes} "
                        "outputs (one label per line, in class-id order)")
    return labels


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(args, depth: int, pth_sha256: str) -> dict:
    return {
        "name": args.name,
        "version": args.version,
        "task": "classification",
        "architecture": {"kind": "resnet", "depth": depth},
        "labels_file": "labels.txt",
        "preprocess": dict(TORCHVISION_PREPROCESS),
        "source": {
            "weights": args.pth.name,
            "weights_sha256": pth_sha256,
            "license": args.license,
            "converted_by": "scripts/models/convert-torchvision.py",
            "arch": args.arch,
            "dtype": np.dtype(DTYPES[args.dtype]).name,
        },
    }


def convert(args) -> str:
    if not args.pth.is_file():
        raise UserError(f"{args.pth}: no such file")
    state = read_checkpoint(args.pth)
    classes = check_architecture(state, args.arch)
    labels = read_labels(args.labels or IMAGENET_LABELS, classes)
    tensors = cast(state, DTYPES[args.dtype])
    pth_sha256 = sha256_file(args.pth)
    args.out.mkdir(parents=True, exist_ok=True)
    save_safetensors(args.out / "model.safetensors", tensors,
                     {"format": "pt", "name": args.name, "arch": args.arch,
                      "source_sha256": pth_sha256,
                      "converted_by": "scripts/models/convert-torchvision.py"})
    (args.out / "manifest.json").write_text(
        json.dumps(manifest(args, ARCHS[args.arch], pth_sha256), indent=2) + "\n",
        encoding="utf-8")
    (args.out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return f"wrote {args.out}: {args.arch}, {classes} classes, {len(tensors)} tensors, {args.dtype}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert a torchvision ResNet checkpoint (.pth, read without torch) into a "
        "model directory: model.safetensors, manifest.json, labels.txt.")
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS))
    parser.add_argument("--pth", required=True, type=Path, help="the checkpoint")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--name", help="model name (default: the arch); letters, digits, "
                        "'.', '_' and '-'")
    parser.add_argument("--version", default="1.0.0", help="model version (default 1.0.0)")
    parser.add_argument("--labels", type=Path, help="class names, one per line, in class-id "
                        "order (default: the 1000 ImageNet classes)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f32",
                        help="weight type in model.safetensors (default f32)")
    parser.add_argument("--license", default="unspecified",
                        help="the weights' license, recorded in the manifest")
    args = parser.parse_args(argv)
    args.name = args.name or args.arch
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        parser.error(f"--name {args.name!r}: use letters, digits, '.', '_' and '-'")
    if not args.version.strip():
        parser.error("--version must not be empty")
    try:
        print(convert(args))
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
