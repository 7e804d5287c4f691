#!/usr/bin/env python3
"""Reference image preprocessing (Pillow + numpy), independent of the gateway's Rust code.

For each image, following the `preprocess` section of a model manifest:
  1. decode, apply the EXIF orientation, convert to RGB (Pillow's conversion rules);
  2. resize so the shorter side is `resize_shorter` (torchvision's rule for the other side)
     with Pillow's filter named by `interpolation`;
  3. centre crop to `crop` = [height, width] as torchvision's center_crop does, padding with
     zeros where the image is smaller;
  4. value = pixel / scale_divisor, then (value - mean[c]) / std[c], float32, C×H×W.
Writes DIR/<image file name>.npy (float32, 3×H×W) for each image, and with --decoded also
DIR/<image file name>.rgb.png, Pillow's decoded upright RGB (step 1).

    target/pyref/bin/python scripts/models/preprocess.py \\
        --manifest src/infer/demo/efficientnet-lite0/manifest.json --out /tmp/pre \\
        tests/fixtures/images/cat.png tests/fixtures/images/bike.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


class UserError(Exception):
    pass


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes `shorter`, the longer one
    int(shorter * long / short) (truncated, in float64 as Python computes it)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def center_crop(pixels: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """torchvision's center_crop on an H×W×C array: zero padding first when the crop is
    larger than the image (the odd pixel after), then the top-left corner at
    round((size - crop) / 2) with Python's round-half-even."""
    h, w = pixels.shape[:2]
    if crop_h > h or crop_w > w:
        pad_top = (crop_h - h) // 2 if crop_h > h else 0
        pad_bottom = (crop_h - h + 1) // 2 if crop_h > h else 0
        pad_left = (crop_w - w) // 2 if crop_w > w else 0
        pad_right = (crop_w - w + 1) // 2 if crop_w > w else 0
        pixels = np.pad(pixels, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
        h, w = pixels.shape[:2]
        if (h, w) == (crop_h, crop_w):
            return pixels
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    return pixels[top:top + crop_h, left:left + crop_w]


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: cannot decode ({e})") from e


def preprocess(path: Path, spec: dict, decoded_dir: Path | None = None) -> np.ndarray:
    img = load_rgb(path)
    if decoded_dir is not None:
        # Pillow's decoded, upright RGB, losslessly: lets a test tell a decoder's difference
        # (JPEG IDCTs differ by a level here and there) from a preprocessing one.
        img.save(decoded_dir / f"{path.name}.rgb.png")
    new_w, new_h = resized_size(img.width, img.height, int(spec["resize_shorter"]))
    img = img.resize((new_w, new_h), RESAMPLE[spec["interpolation"]])
    pixels = np.asarray(img, dtype=np.uint8)
    crop_h, crop_w = spec["crop"]
    pixels = center_crop(pixels, int(crop_h), int(crop_w))
    # float32 throughout, one operation at a time, like ToTensor + Normalize.
    values = pixels.astype(np.float32) / np.float32(spec["scale_divisor"])
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    values = (values - mean) / std
    return np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32)


def read_spec(manifest: Path) -> dict:
    try:
        spec = json.loads(manifest.read_text(encoding="utf-8"))["preprocess"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{manifest}: no readable `preprocess` section ({e})") from e
    required = ("resize_shorter", "interpolation", "crop", "scale_divisor", "mean", "std")
    missing = [k for k in required if k not in spec]
    if missing:
        raise UserError(f"{manifest}: preprocess lacks {missing}")
    if spec["interpolation"] not in RESAMPLE:
        raise UserError(f"{manifest}: unknown interpolation {spec['interpolation']!r} "
                        f"(one of {', '.join(RESAMPLE)})")
    if len(spec["crop"]) != 2 or len(spec["mean"]) != 3 or len(spec["std"]) != 3:
        raise UserError(f"{manifest}: crop needs [height, width], mean and std 3 values")
    return spec


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Preprocess images as a model manifest says (Pillow + numpy reference); "
        "writes one float32 3×H×W .npy per image, named after the image file.")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--manifest", type=Path, required=True, help="model manifest.json")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--decoded", action="store_true",
                        help="also write Pillow's decoded upright RGB as <image>.rgb.png")
    args = parser.parse_args(argv)
    try:
        spec = read_spec(args.manifest)
        args.out.mkdir(parents=True, exist_ok=True)
        for path in args.images:
            decoded = args.out if args.decoded else None
            np.save(args.out / f"{path.name}.npy", preprocess(path, spec, decoded))
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
