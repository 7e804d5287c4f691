#!/usr/bin/env python3
"""Vendor Swagger UI's release files into src/http/pages/vendor/swagger-ui/, for GET /docs.

Swagger UI 5.33.1 (swagger-ui-dist, the project's own release build) comes from the PyPI
package drf-spectacular-sidecar 2026.10.1, fetched with pip, without its Django dependency,
and checked against the wheel's sha256 below. The package swagger-ui-bundle (1.1.0, its
latest) carries Swagger UI 4.15.5, which cannot render an OpenAPI 3.1 document: ours is 3.1.

Writes:
  swagger-ui-bundle.js, swagger-ui.css                        as released
  LICENSE, swagger-ui-bundle.js.LICENSE.txt                   Swagger UI's and its bundled parts'
  *.js.gz, *.css.gz, *.js.br, *.css.br                       precompressed (gzip -9, brotli q11)
  README.md                                                   provenance, and how to redo this

--check fetches the wheel again and fails unless every released file is identical to the
wheel's, every .gz and .br decompresses to its file, and README.md is what this writes.

    scripts/lib/venv.sh scripts/requirements/pages.txt     # brotli, pinned
    target/pypages/bin/python scripts/pages/vendor-swagger-ui.py [--check]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import brotli

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "src/http/pages/vendor/swagger-ui"

PACKAGE = "drf-spectacular-sidecar"
PACKAGE_VERSION = "2026.10.1"
WHEEL = "drf_spectacular_sidecar-2026.10.1-py3-none-any.whl"
WHEEL_SHA256 = "fe1d005d8ac9b5d0472f2fe5deeb2e7d6dcffaa24118044f22578b4b8c4b31f2"
SWAGGER_UI_VERSION = "5.33.1"
DIST = "drf_spectacular_sidecar/static/drf_spectacular_sidecar/swagger-ui-dist/"

RELEASED = [
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "LICENSE",
    "swagger-ui-bundle.js.LICENSE.txt",
]
COMPRESSED = ["swagger-ui-bundle.js", "swagger-ui.css"]

README = f"""# Swagger UI {SWAGGER_UI_VERSION}, vendored

The release files of [Swagger UI](https://github.com/swagger-api/swagger-ui)
{SWAGGER_UI_VERSION} (`swagger-ui-dist`), served by `GET /docs` from the binary. Licence:
Apache-2.0 (`LICENSE`; the parts bundled into `swagger-ui-bundle.js` are listed in
`swagger-ui-bundle.js.LICENSE.txt`).

Taken from the PyPI package {PACKAGE} {PACKAGE_VERSION} (`{WHEEL}`, sha256
`{WHEEL_SHA256}`), which ships them unchanged under `swagger-ui-dist/`. The package
`swagger-ui-bundle` was the first choice, but its latest release (1.1.0) carries Swagger
UI 4.15.5, which cannot render an OpenAPI 3.1 document, and ours is 3.1.

`*.gz` (gzip -9) and `*.br` (brotli, quality 11) are the same files precompressed, so the
gateway sends them without compressing anything at run time.

Written by `scripts/pages/vendor-swagger-ui.py`; `--check` (run by `scripts/test.sh`)
fetches the wheel again and fails unless these files are what it holds. Do not edit them.
"""


def fetch_wheel(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "download",
         "--no-deps", "--only-binary=:all:", "--dest", str(into),
         f"{PACKAGE}=={PACKAGE_VERSION}"],
        check=True,
    )
    wheel = into / WHEEL
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"vendor-swagger-ui: {WHEEL} has sha256 {digest}, want {WHEEL_SHA256}")
    return wheel


def released(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {name: z.read(DIST + name) for name in RELEASED}


def write(files: dict[str, bytes]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (OUT / name).write_bytes(data)
    for name in COMPRESSED:
        data = files[name]
        (OUT / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        (OUT / f"{name}.br").write_bytes(brotli.compress(data, quality=11))
    (OUT / "README.md").write_text(README)


def check(files: dict[str, bytes]) -> list[str]:
    problems = []
    for name, data in files.items():
        path = OUT / name
        if not path.is_file() or path.read_bytes() != data:
            problems.append(f"{name} differs from the wheel's")
    for name in COMPRESSED:
        for suffix, decompress in ((".gz", gzip.decompress), (".br", brotli.decompress)):
            path = OUT / f"{name}{suffix}"
            try:
                ok = path.is_file() and decompress(path.read_bytes()) == files[name]
            except Exception as e:  # a corrupt stream is a failed check, said as such
                problems.append(f"{name}{suffix} does not decompress: {e}")
                continue
            if not ok:
                problems.append(f"{name}{suffix} does not decompress to {name}")
    readme = OUT / "README.md"
    if not readme.is_file() or readme.read_text() != README:
        problems.append("README.md is not what this script writes")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="verify the vendored files instead of writing them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = released(fetch_wheel(Path(tmp)))
    if args.check:
        problems = check(files)
        for p in problems:
            print(f"vendor-swagger-ui: {p}", file=sys.stderr)
        if problems:
            sys.exit(f"vendor-swagger-ui: {OUT.relative_to(REPO)} is not the pinned release; "
                     "rerun without --check")
        print(f"ok: {OUT.relative_to(REPO)} is Swagger UI {SWAGGER_UI_VERSION} from "
              f"{PACKAGE} {PACKAGE_VERSION}")
    else:
        write(files)
        print(f"wrote {OUT.relative_to(REPO)} (Swagger UI {SWAGGER_UI_VERSION})")


if __name__ == "__main__":
    main()
