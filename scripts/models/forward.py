#!/usr/bin/env python3
"""Reference forward pass in plain numpy (float64 math), independent of the gateway's Rust
code: EfficientNet-Lite0 (lukemelas EfficientNet-PyTorch names) and torchvision ResNet-18/34/50.

Inputs are preprocessed images as written by preprocess.py: .npy files of 3×H×W (or N×3×H×W)
float32. Output: float32 logits, N×classes, in input order.

    target/pyref/bin/python scripts/models/forward.py --arch efficientnet_lite0 \\
        --weights src/infer/demo/efficientnet-lite0/model.safetensors --out /tmp/logits.npy \\
        --labels src/infer/demo/efficientnet-lite0/labels.txt /tmp/pre/*.npy
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

# Beside this script (Python puts a script's own directory first on its path).
from torch_pth import CheckpointError, load_weights

# Images per pass: bounds the memory of im2col buffers.
CHUNK = 8


class UserError(Exception):
    pass


class Weights:
    """The state dict in float64, with clear errors for missing or misshapen tensors."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self.tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.tensors

    def __call__(self, name: str, ndim: int | None = None) -> np.ndarray:
        if name not in self.tensors:
            raise UserError(f"weights lack {name}")
        array = self.tensors[name]
        if ndim is not None and array.ndim != ndim:
            raise UserError(f"{name} has shape {array.shape}, expected {ndim} dimensions")
        self.used.add(name)
        return array.astype(np.float64)

    def unused(self) -> list[str]:
        return sorted(set(self.tensors) - self.used)


# --- layers (N×C×H×W float64) --------------------------------------------------------------


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME': output ceil(size / stride); the extra pixel of an odd total padding
    goes after (bottom/right)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad2d(x: np.ndarray, top: int, bottom: int, left: int, right: int, value=0.0) -> np.ndarray:
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def taps(x: np.ndarray, kh: int, kw: int, stride: int):
    """Yield (ky, kx, window) for each kernel tap: the input pixels that tap multiplies, as a
    strided slice of the (already padded) input."""
    oh = (x.shape[2] - kh) // stride + 1
    ow = (x.shape[3] - kw) // stride + 1
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, x[:, :, ky:ky + stride * (oh - 1) + 1:stride,
                            kx:kx + stride * (ow - 1) + 1:stride]


def conv2d(x: np.ndarray, w: np.ndarray, stride: int,
           pads: tuple[int, int, int, int]) -> np.ndarray:
    """Dense convolution as im2col + one matmul; pads = (top, bottom, left, right)."""
    x = pad2d(x, *pads)
    n, c = x.shape[:2]
    o, ci, kh, kw = w.shape
    if ci != c:
        raise UserError(f"convolution of {c} channels with weights for {ci}")
    windows = list(taps(x, kh, kw, stride))
    oh, ow = windows[0][2].shape[2:]
    cols = np.empty((n, c, kh * kw, oh, ow))
    for ky, kx, window in windows:
        cols[:, :, ky * kw + kx] = window
    # einsum with optimize runs one large GEMM (faster than matmul's per-image broadcast).
    out = np.einsum("ok,nkl->nol", w.reshape(o, c * kh * kw), cols.reshape(n, c * kh * kw, oh * ow),
                    optimize=True)
    return out.reshape(n, o, oh, ow)


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, stride: int,
                     pads: tuple[int, int, int, int]) -> np.ndarray:
    """One k×k filter per channel (groups = channels): a sum of shifted, scaled slices."""
    x = pad2d(x, *pads)
    if w.shape[0] != x.shape[1] or w.shape[1] != 1:
        raise UserError(f"depthwise weights {w.shape} for {x.shape[1]} channels")
    out = term = None
    for ky, kx, window in taps(x, w.shape[2], w.shape[3], stride):
        scale = w[:, 0, ky, kx][None, :, None, None]
        if out is None:
            out, term = window * scale, np.empty(window.shape)
        else:  # in place: no temporaries per tap
            np.multiply(window, scale, out=term)
            out += term
    return out


def batch_norm(x: np.ndarray, weights: Weights, prefix: str, eps: float) -> np.ndarray:
    gamma, beta = weights(f"{prefix}.weight", 1), weights(f"{prefix}.bias", 1)
    mean, var = weights(f"{prefix}.running_mean", 1), weights(f"{prefix}.running_var", 1)
    scale = gamma / np.sqrt(var + eps)
    return x * scale[None, :, None, None] + (beta - mean * scale)[None, :, None, None]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def linear(x: np.ndarray, weights: Weights, prefix: str) -> np.ndarray:
    return x @ weights(f"{prefix}.weight", 2).T + weights(f"{prefix}.bias", 1)


# --- EfficientNet-Lite0 ----------------------------------------------------------------------

# (repeats, kernel, stride of the first block, expansion, out channels)
LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
LITE_BN_EPS = 1e-3


def same_conv(x, w, stride, depthwise=False):
    pads = (same_padding(x.shape[2], w.shape[2], stride)
            + same_padding(x.shape[3], w.shape[3], stride))
    return (depthwise_conv2d if depthwise else conv2d)(x, w, stride, pads)


def efficientnet_lite0(x: np.ndarray, weights: Weights) -> np.ndarray:
    eps = LITE_BN_EPS
    x = relu6(batch_norm(same_conv(x, weights("_conv_stem.weight", 4), 2), weights, "_bn0", eps))
    block = 0
    for repeats, kernel, first_stride, expansion, out_channels in LITE0_STAGES:
        for repeat in range(repeats):
            p = f"_blocks.{block}"
            stride = first_stride if repeat == 0 else 1
            h = x
            if expansion != 1:
                h = same_conv(h, weights(f"{p}._expand_conv.weight", 4), 1)
                h = relu6(batch_norm(h, weights, f"{p}._bn0", eps))
            dw = weights(f"{p}._depthwise_conv.weight", 4)
            if dw.shape[2:] != (kernel, kernel):
                raise UserError(f"{p}._depthwise_conv.weight is {dw.shape[2]}×{dw.shape[3]}, "
                                f"expected {kernel}×{kernel}")
            h = same_conv(h, dw, stride, depthwise=True)
            h = relu6(batch_norm(h, weights, f"{p}._bn1", eps))
            # The projection is linear: no activation after its BatchNorm.
            h = batch_norm(same_conv(h, weights(f"{p}._project_conv.weight", 4), 1),
                           weights, f"{p}._bn2", eps)
            if h.shape[1] != out_channels:
                raise UserError(f"{p} outputs {h.shape[1]} channels, expected {out_channels}")
            if stride == 1 and x.shape[1] == out_channels:
                h = h + x
            x = h
            block += 1
    if weights.has(f"_blocks.{block}._depthwise_conv.weight"):
        raise UserError(f"weights have more than the {block} blocks of EfficientNet-Lite0")
    x = relu6(batch_norm(same_conv(x, weights("_conv_head.weight", 4), 1), weights, "_bn1", eps))
    return linear(x.mean(axis=(2, 3)), weights, "_fc")


# --- torchvision ResNet ----------------------------------------------------------------------

# depth -> (bottleneck?, blocks per layer)
RESNETS = {18: (False, [2, 2, 2, 2]), 34: (False, [3, 4, 6, 3]), 50: (True, [3, 4, 6, 3])}
RESNET_BN_EPS = 1e-5


def max_pool_3x3_s2_p1(x: np.ndarray) -> np.ndarray:
    x = pad2d(x, 1, 1, 1, 1, value=-np.inf)
    out = None
    for _, _, window in taps(x, 3, 3, 2):
        out = window if out is None else np.maximum(out, window)
    return out


def resnet_block(x: np.ndarray, weights: Weights, p: str, stride: int, bottleneck: bool):
    bn = lambda h, name: batch_norm(h, weights, f"{p}.{name}", RESNET_BN_EPS)  # noqa: E731
    if bottleneck:
        # torchvision v1.5: the stride sits on the 3×3 conv.
        h = relu(bn(conv2d(x, weights(f"{p}.conv1.weight", 4), 1, (0, 0, 0, 0)), "bn1"))
        h = relu(bn(conv2d(h, weights(f"{p}.conv2.weight", 4), stride, (1, 1, 1, 1)), "bn2"))
        h = bn(conv2d(h, weights(f"{p}.conv3.weight", 4), 1, (0, 0, 0, 0)), "bn3")
    else:
        h = relu(bn(conv2d(x, weights(f"{p}.conv1.weight", 4), stride, (1, 1, 1, 1)), "bn1"))
        h = bn(conv2d(h, weights(f"{p}.conv2.weight", 4), 1, (1, 1, 1, 1)), "bn2")
    if weights.has(f"{p}.downsample.0.weight"):
        shortcut = conv2d(x, weights(f"{p}.downsample.0.weight", 4), stride, (0, 0, 0, 0))
        shortcut = bn(shortcut, "downsample.1")
    else:
        shortcut = x
    if shortcut.shape != h.shape:
        raise UserError(f"{p}: shortcut {shortcut.shape} does not match {h.shape} "
                        "(downsample weights missing?)")
    return relu(h + shortcut)


def resnet(depth: int):
    bottleneck, layers = RESNETS[depth]

    def forward(x: np.ndarray, weights: Weights) -> np.ndarray:
        x = conv2d(x, weights("conv1.weight", 4), 2, (3, 3, 3, 3))
        x = max_pool_3x3_s2_p1(relu(batch_norm(x, weights, "bn1", RESNET_BN_EPS)))
        for layer, blocks in enumerate(layers, start=1):
            for block in range(blocks):
                stride = 2 if layer > 1 and block == 0 else 1
                x = resnet_block(x, weights, f"layer{layer}.{block}", stride, bottleneck)
        return linear(x.mean(axis=(2, 3)), weights, "fc")

    return forward


ARCHS = {
    "efficientnet_lite0": efficientnet_lite0,
    "resnet18": resnet(18),
    "resnet34": resnet(34),
    "resnet50": resnet(50),
}


# --- CLI --------------------------------------------------------------------------------------


def read_inputs(paths: list[Path]) -> np.ndarray:
    batches = []
    for path in paths:
        try:
            array = np.load(path)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable .npy ({e})") from e
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[1] != 3:
            raise UserError(f"{path}: shape {array.shape}, expected 3×H×W or N×3×H×W")
        batches.append(array.astype(np.float64))
    if len({b.shape[1:] for b in batches}) != 1:
        raise UserError(f"inputs differ in size: {sorted({b.shape[1:] for b in batches})}")
    return np.concatenate(batches)


def print_top(logits: np.ndarray, names: list[str], labels: list[str] | None, k: int):
    z = logits.astype(np.float64)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for name, row in zip(names, probs, strict=True):
        print(name)
        for cls in np.argsort(-row, kind="stable")[:k]:
            label = f"  {labels[cls]}" if labels and cls < len(labels) else ""
            print(f"  {cls:4d}  {row[cls]:.4f}{label}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Reference numpy forward pass (float64 math) of EfficientNet-Lite0 or a "
        "torchvision ResNet from a state dict; writes float32 logits N×classes.")
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="preprocessed images (.npy, 3×H×W or N×3×H×W)")
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS))
    parser.add_argument("--weights", required=True, type=Path,
                        help="torch checkpoint (.pth/.pt) or .safetensors")
    parser.add_argument("--out", required=True, type=Path, help="logits .npy to write")
    parser.add_argument("--labels", type=Path, help="labels.txt: print the top classes by name")
    parser.add_argument("--top", type=int, default=0,
                        help="print the top K classes per input (default 5 with --labels)")
    args = parser.parse_args(argv)
    try:
        weights = Weights(load_weights(args.weights))
        x = read_inputs(args.inputs)
        forward = ARCHS[args.arch]
        logits = np.concatenate([forward(x[i:i + CHUNK], weights) for i in range(0, len(x), CHUNK)])
        unused = weights.unused()
        if unused:
            raise UserError(f"weights not used by {args.arch}: {unused[:8]}")
        np.save(args.out, logits.astype(np.float32))
        labels = None
        if args.labels:
            labels = args.labels.read_text(encoding="utf-8").splitlines()
        top = args.top or (5 if labels else 0)
        if top:
            print_top(logits, [p.name for p in args.inputs], labels, top)
    except (UserError, CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
