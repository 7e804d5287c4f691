#!/usr/bin/env python3
"""Generate the image-preprocessing fixtures in tests/fixtures/images/ from the photos there.

The photos (cat.png, bike.jpg, flower.jpg, china.jpg) are copied in once from the packages
that ship them (pass their paths; see README.md there). Every other file is derived from them
here, each exercising one decoding or conversion case: grayscale, alpha, palette with a
transparent index, 16-bit samples, EXIF orientation, lossless WebP, tiny and very wide images.
The same Pillow and zlib give the same bytes; README.md is written too.

    target/pyref/bin/python scripts/models/make_fixtures.py
    target/pyref/bin/python scripts/models/make_fixtures.py \\
        --chelsea .../skimage/data/chelsea.png --bike .../yolo-v8/assets/bike.jpg \\
        --flower .../sklearn/datasets/images/flower.jpg --china .../images/china.jpg
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests/fixtures/images"
LANCZOS = Image.Resampling.LANCZOS

# name -> (how to pass it, where it comes from, licence, attribution)
PHOTOS = {
    "cat.png": (
        "chelsea",
        "`skimage/data/chelsea.png` from the scikit-image 0.25.2 wheel (PyPI): Chelsea the cat, "
        "451×300 RGB, unchanged.",
        "CC0",
        "CC0 by the photographer, Stefan van der Walt: \"No copyright restrictions\" (the "
        "docstring of `skimage.data.chelsea`).",
    ),
    "bike.jpg": (
        "bike",
        "`examples/yolo-v8/assets/bike.jpg` from the candle-examples 0.11.1 crate (crates.io), "
        "800×556 RGB JPEG, unchanged. Its EXIF names it \"2021 Giro d'Italia Stage 15 leading "
        "group\", photographer Petar Milošević; a Wikimedia Commons photo.",
        "CC BY-SA 4.0",
        "© Petar Milošević, \"2021 Giro d'Italia Stage 15 leading group\" (Wikimedia "
        "Commons), <https://creativecommons.org/licenses/by-sa/4.0/>.",
    ),
    "flower.jpg": (
        "flower",
        "`sklearn/datasets/images/flower.jpg` from the scikit-learn 1.7.2 wheel (PyPI), a dahlia, "
        "640×427 RGB JPEG, unchanged.",
        "CC BY 2.0",
        "Flickr user vultilion, <https://www.flickr.com/photos/vultilion/6056698931/>, "
        "<https://creativecommons.org/licenses/by/2.0/> (scikit-learn's "
        "`datasets/images/README.txt`; it names danielbuechele in the attribution line but links "
        "vultilion's photostream).",
    ),
    "china.jpg": (
        "china",
        "`sklearn/datasets/images/china.jpg` from the scikit-learn 1.7.2 wheel (PyPI), a "
        "Chinese temple, 640×427 RGB JPEG, unchanged.",
        "CC BY 2.0",
        "danielbuechele, <https://www.flickr.com/photos/danielbuechele/6061409035/>, "
        "<https://creativecommons.org/licenses/by/2.0/> (scikit-learn's "
        "`datasets/images/README.txt`).",
    ),
}

LICENCE_OF = {name: licence for name, (_, _, licence, _) in PHOTOS.items()}


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def resized(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img.resize(size, LANCZOS)


def center_box(img: Image.Image, aspect: float) -> tuple[int, int, int, int]:
    """The largest centred box of the given width/height ratio."""
    w, h = img.size
    if w / h > aspect:
        cw = round(h * aspect)
        return ((w - cw) // 2, 0, (w - cw) // 2 + cw, h)
    ch = round(w / aspect)
    return (0, (h - ch) // 2, w, (h - ch) // 2 + ch)


def save_png(img: Image.Image, path: Path, **params):
    # Fixed compression level; Pillow writes no timestamp, so the bytes are reproducible.
    img.save(path, format="PNG", compress_level=9, **params)


def png_16bit_rgb(pixels: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (Pillow can read but not write one): IHDR with bit depth 16 and
    colour type 2, one IDAT of zlib-compressed rows (filter 0), big-endian samples."""
    height, width, channels = pixels.shape
    assert channels == 3 and pixels.dtype == np.uint16
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


# --- the derived fixtures: each returns (file name, what it is, made from) -------------------


def gray_odd(src: Path, out: Path):
    img = resized(open_rgb(src / "cat.png"), (333, 221)).convert("L")
    save_png(img, out / "gray-odd.png")
    return ("gray-odd.png", "8-bit grayscale (mode L), 333×221 (odd sizes)", "cat.png")


def rgba_portrait(src: Path, out: Path):
    flower = open_rgb(src / "flower.jpg")
    img = resized(flower.crop(center_box(flower, 3 / 4)), (240, 320)).convert("RGBA")
    # Alpha rises top to bottom; a fully transparent square top-left keeps its colours, so
    # a decoder that premultiplies or composites (rather than dropping alpha) shows.
    y = np.arange(320, dtype=np.float64)[:, None]
    x = np.arange(240, dtype=np.float64)[None, :]
    alpha = np.round(255.0 * y / 319.0 * (0.5 + 0.5 * x / 239.0)).astype(np.uint8)
    alpha[:40, :40] = 0
    img.putalpha(Image.fromarray(alpha, mode="L"))
    save_png(img, out / "rgba-portrait.png")
    return ("rgba-portrait.png", "RGBA, 240×320 (portrait), alpha varying from 0 to 255 with "
            "a fully transparent 40×40 corner whose colours are kept", "flower.jpg")


def palette_transparent(src: Path, out: Path):
    bike = resized(open_rgb(src / "bike.jpg"), (256, 178))
    img = bike.quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    save_png(img, out / "palette-transparent.png", transparency=0)
    return ("palette-transparent.png", "palette (mode P), 32 colours, 256×178, palette index 0 "
            "marked transparent (tRNS)", "bike.jpg")


def rgb_16bit(src: Path, out: Path):
    base = np.asarray(resized(open_rgb(src / "china.jpg"), (200, 133)), dtype=np.uint16)
    # High byte = the 8-bit image; low byte a fixed pattern, so keeping the high byte
    # (Pillow) and rounding v / 257 give different results on many pixels.
    yy, xx, cc = np.indices(base.shape)
    low = ((xx * 7 + yy * 13 + cc * 101) % 256).astype(np.uint16)
    (out / "rgb16.png").write_bytes(png_16bit_rgb((base << 8) | low))
    return ("rgb16.png", "16-bit RGB (48 bits per pixel), 200×133, written by hand (Pillow "
            "cannot write it); high byte = the 8-bit image, low byte a fixed pattern",
            "china.jpg")


def gray_16bit(src: Path, out: Path):
    base = np.asarray(resized(open_rgb(src / "cat.png"), (160, 106)).convert("L"), dtype=np.uint16)
    img = Image.fromarray(base * 257)  # full 16-bit range; Pillow keeps it as mode I;16
    save_png(img, out / "gray16.png")
    return ("gray16.png", "16-bit grayscale (Pillow mode I;16), 160×106, full range "
            "(8-bit value × 257)", "cat.png")


def exif_rotated(src: Path, out: Path):
    upright = resized(open_rgb(src / "bike.jpg"), (400, 278))
    # Orientation 6 means "rotate 90° clockwise to display": store it turned the other way.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(out / "exif-rotated.jpg", format="JPEG", quality=90, subsampling=2,
                exif=exif.tobytes())
    return ("exif-rotated.jpg", "JPEG stored sideways (278×400) with EXIF Orientation 6: "
            "displays upright as 400×278", "bike.jpg")


def lossless_webp(src: Path, out: Path):
    china = open_rgb(src / "china.jpg")
    img = resized(china.crop(center_box(china, 3 / 2)), (300, 200))
    img.save(out / "lossless.webp", format="WEBP", lossless=True, quality=80, method=4, exact=True)
    return ("lossless.webp", "lossless WebP, RGB, 300×200", "china.jpg")


def tiny(src: Path, out: Path):
    save_png(resized(open_rgb(src / "cat.png"), (23, 17)), out / "tiny.png")
    return ("tiny.png", "RGB, 23×17: smaller than any crop, upscaled by the resize",
            "cat.png")


def wide(src: Path, out: Path):
    bike = open_rgb(src / "bike.jpg")
    strip = bike.crop((0, 250, 800, 374))  # 800×124 across the riders
    save_png(resized(strip, (900, 140)), out / "wide.png")
    return ("wide.png", "RGB, 900×140 (aspect 6.4)", "bike.jpg")


DERIVED = [gray_odd, rgba_portrait, palette_transparent, rgb_16bit, gray_16bit, exif_rotated,
           lossless_webp, tiny, wide]


def readme(derived: list[tuple[str, str, str]]) -> str:
    lines = [
        "# Image fixtures",
        "",
        "Inputs for the image preprocessing and classification tests. The photos are copied",
        "unchanged from the packages named below; every other file is derived from them by",
        "`scripts/models/make_fixtures.py` (rerun it to regenerate them and this file).",
        "Expected tensors come from `scripts/models/preprocess.py` (Pillow + numpy).",
        "",
        "JPEG decoders may differ by a few levels per pixel (IDCT, chroma upsampling), so",
        "pixel-exact comparisons use the PNG and WebP files; JPEGs need a tolerance.",
        "",
        "## Photos",
        "",
        "| file | origin | licence | attribution |",
        "|---|---|---|---|",
    ]
    for name, (_, origin, licence, attribution) in PHOTOS.items():
        lines.append(f"| `{name}` | {origin} | {licence} | {attribution} |")
    lines += [
        "",
        "## Derived fixtures",
        "",
        "Each is a modified (resized, cropped, converted) version of the photo it names and is",
        "under that photo's licence, with its attribution above.",
        "",
        "| file | what | made from | licence |",
        "|---|---|---|---|",
    ]
    for name, what, source in derived:
        lines.append(f"| `{name}` | {what} | `{source}` | {LICENCE_OF[source]} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate the derived image fixtures (and README.md) from the photos in "
        "the fixtures directory; with --chelsea/--bike/--flower/--china, copy those photos in "
        "first.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="fixtures directory (default: tests/fixtures/images)")
    for name, (option, origin, _, _) in PHOTOS.items():
        parser.add_argument(f"--{option}", type=Path,
                            help=f"copy in as {name}: {origin.split(',')[0]}")
    args = parser.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, (option, _, _, _) in PHOTOS.items():
            given = getattr(args, option)
            if given is not None:
                shutil.copyfile(given, args.out / name)
        missing = [n for n in PHOTOS if not (args.out / n).is_file()]
        if missing:
            raise OSError(f"{args.out} lacks {', '.join(missing)}: pass their paths "
                          "(--chelsea, --bike, --flower, --china) once")
        derived = [make(args.out, args.out) for make in DERIVED]
        (args.out / "README.md").write_text(readme(derived), encoding="utf-8")
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"wrote {len(derived)} fixtures and README.md in {args.out} "
          f"({total / 1e6:.2f} MB in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
