#!/usr/bin/env python3
"""The state-dict layout of torchvision's ResNet-18/34/50 (v1.5): every tensor name, in the
order torchvision's state_dict() lists them, and its shape. Used by
scripts/models/convert-torchvision.py (to check a user's checkpoint) and
scripts/models/make_resnet_checkpoint.py (to make one).

    scripts/models/torchvision_resnet.py 50        # print names and shapes of ResNet-50
"""

from __future__ import annotations

import argparse
import math
import sys

# depth -> (bottleneck blocks?, blocks in layer1..layer4)
DEPTHS = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3))}
WIDTHS = (64, 128, 256, 512)  # planes of layer1..layer4
BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


def _bn(shapes: dict, prefix: str, channels: int):
    for p in BN_PARAMS:
        shapes[f"{prefix}.{p}"] = (channels,)


def resnet_shapes(depth: int, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Names -> shapes of a torchvision ResNet's state dict, without the BatchNorm
    `num_batches_tracked` counters (they follow each `running_var` in a real state dict)."""
    if depth not in DEPTHS:
        raise ValueError(f"ResNet depth {depth} not supported (one of {sorted(DEPTHS)})")
    bottleneck, blocks = DEPTHS[depth]
    expansion = 4 if bottleneck else 1
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    _bn(shapes, "bn1", 64)
    inplanes = 64
    for layer, (planes, count) in enumerate(zip(WIDTHS, blocks, strict=True), start=1):
        for block in range(count):
            p = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            out = planes * expansion
            if bottleneck:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                _bn(shapes, f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                _bn(shapes, f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (out, planes, 1, 1)
                _bn(shapes, f"{p}.bn3", out)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                _bn(shapes, f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                _bn(shapes, f"{p}.bn2", planes)
            # A projection shortcut wherever the identity would not fit.
            if stride != 1 or inplanes != out:
                shapes[f"{p}.downsample.0.weight"] = (out, inplanes, 1, 1)
                _bn(shapes, f"{p}.downsample.1", out)
            inplanes = out
    shapes["fc.weight"] = (classes, inplanes)
    shapes["fc.bias"] = (classes,)
    return shapes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print the state-dict names and shapes of a "
                                     "torchvision ResNet.")
    parser.add_argument("depth", type=int, choices=sorted(DEPTHS))
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args(argv)
    shapes = resnet_shapes(args.depth, args.classes)
    for name, shape in shapes.items():
        print(f"{name}  {list(shape)}")
    total = sum(math.prod(s) for s in shapes.values())
    print(f"{len(shapes)} tensors, {total} elements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
