#!/usr/bin/env python3
"""Make a seeded, random torchvision ResNet checkpoint, written without torch as a zip-format
.pth (what torch.save writes; `torch.load(path, weights_only=True)` accepts it).

Not a trained model: a stand-in for a user's fine-tuned ResNet in conversion and inference
tests. The weights are scaled so activations stay of order 1 through the network: convs
He-normal × 0.5, BatchNorm γ in [0.5, 1.5], small β and running means, running variances in
[0.5, 2], fc normal with std 1/sqrt(fan_in). The same seed always gives the same bytes.

    target/pyref/bin/python scripts/models/make_resnet_checkpoint.py --depth 18 --seed 1 \\
        --out /tmp/resnet18.pth
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Beside this script (Python puts a script's own directory first on its path).
from torch_pth import save_state_dict
from torchvision_resnet import DEPTHS, resnet_shapes


def random_tensor(rng: np.random.Generator, name: str, shape: tuple) -> np.ndarray:
    kind = name.rsplit(".", 1)[1]
    if name == "fc.weight":
        values = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), shape)
    elif name == "fc.bias":
        values = rng.normal(0.0, 0.01, shape)
    elif len(shape) == 4:  # conv: He-normal, halved
        fan_in = shape[1] * shape[2] * shape[3]
        values = rng.normal(0.0, 0.5 * np.sqrt(2.0 / fan_in), shape)
    elif kind == "weight":  # BatchNorm γ
        values = rng.uniform(0.5, 1.5, shape)
    elif kind == "bias":  # BatchNorm β
        values = rng.normal(0.0, 0.1, shape)
    elif kind == "running_mean":
        values = rng.normal(0.0, 0.1, shape)
    elif kind == "running_var":
        values = rng.uniform(0.5, 2.0, shape)
    else:
        raise AssertionError(f"no rule for {name}")
    return values.astype(np.float32)


def make_state_dict(depth: int, seed: int, classes: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in resnet_shapes(depth, classes).items():
        state[name] = random_tensor(rng, name, shape)
        if name.endswith(".running_var"):
            # As in a real torchvision state dict: the BatchNorm step counter, an int64 scalar.
            state[name[: -len("running_var")] + "num_batches_tracked"] = np.array(0, dtype=np.int64)
    return state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a seeded random torchvision ResNet state dict as a zip-format .pth "
        "(no torch needed).")
    parser.add_argument("--depth", type=int, required=True, choices=sorted(DEPTHS))
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--out", type=Path, required=True, help=".pth file to write")
    parser.add_argument("--classes", type=int, default=1000, help="fc outputs (default 1000)")
    args = parser.parse_args(argv)
    if args.classes < 1:
        parser.error("--classes must be at least 1")
    try:
        save_state_dict(args.out, make_state_dict(args.depth, args.seed, args.classes))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
