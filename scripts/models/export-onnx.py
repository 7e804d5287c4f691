#!/usr/bin/env python3
"""Export the ONNX test models with the real exporters, into tests/fixtures/onnx/.

Each model is fitted here on a dataset scikit-learn ships (seeded, so the same packages give
the same files) and exported by the exporter its users use: skl2onnx for scikit-learn,
onnxmltools for XGBoost and LightGBM. The files are kilobytes and committed; rerun this after
changing a pin in scripts/requirements/onnx.in and commit what changes.

    scripts/lib/venv.sh scripts/requirements/onnx.txt
    target/pyonnx/bin/python scripts/models/export-onnx.py

Each model lands as <name>/model.onnx (copy it to <repo>/<name>/<version>/ to serve it), with
inputs.json beside: rows to ask it, the first ones from the dataset, then perturbed ones; a
missing value is null (as a client sends it).

    target/pyonnx/bin/python scripts/models/export-onnx.py --native DIR

also saves the fitted models as their own libraries save them, for the servers that load
those (scripts/bench/vs-peers.sh: MLServer): DIR/<name>/model.joblib for a scikit-learn
model, DIR/<name>/model.json (XGBoost's own format) for an XGBoost one, each beside a copy
of the same fit's model.onnx; the ONNX exports are the same bytes with it or without.
`--out DIR` writes the ONNX exports (and inputs.json) to DIR instead of tests/fixtures/onnx/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/fixtures/onnx"
SEED = 20261205
# ai.onnx 17 and ai.onnx.ml 3 for skl2onnx, 15 for onnxmltools (the newest it converts to):
# what ONNX Runtime and tract both read.
OPSETS = {"": 17, "ai.onnx.ml": 3}
ONNXMLTOOLS_OPSET = 15
# --native DIR: where the fitted models are also saved in their own formats (None: not saved).
NATIVE: Path | None = None


def rows_to_ask(x: np.ndarray, rng: np.random.Generator) -> list[list[float]]:
    """Every 10th dataset row, then as many again jittered by 10 % of each column's spread."""
    picked = x[::10]
    jitter = rng.normal(0.0, 0.1, size=picked.shape) * x.std(axis=0)
    rows = np.concatenate([picked, picked + jitter]).astype(np.float32)
    # float32 first: the rows are what a JSON client sends and the float input receives.
    return [[float(v) for v in row] for row in rows]


def write(name: str, onnx_model, rows: list[list[float]]) -> None:
    # The exporters name the graph with a random UUID (the directory's name instead keeps
    # the bytes the same from run to run)...
    onnx_model.graph.name = name
    # ...and may list the operator sets in set order, which varies with the hash seed.
    imports = sorted(onnx_model.opset_import, key=lambda o: o.domain)
    del onnx_model.opset_import[:]
    onnx_model.opset_import.extend(imports)
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(onnx_model.SerializeToString())
    rows = [[None if np.isnan(v) else v for v in row] for row in rows]
    (out / "inputs.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    print(f"{name}: {len(onnx_model.SerializeToString())} bytes, {len(rows)} rows to ask")


def save_native(name: str, model) -> None:
    """With --native: the fitted model as its library saves it, beside its ONNX export (the
    one write() just wrote). After write(), so the exported bytes never depend on it."""
    if NATIVE is None:
        return
    out = NATIVE / name
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_model"):  # XGBoost's scikit-learn interface
        path = out / "model.json"
        model.save_model(path)
    else:
        import joblib

        path = out / "model.joblib"
        joblib.dump(model, path)
    shutil.copyfile(OUT / name / "model.onnx", out / "model.onnx")
    print(f"{name}: native {path}")


def iris() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The features (float32), the class indices and the class names of each row."""
    data = load_iris()
    return data.data.astype(np.float32), data.target, data.target_names[data.target]


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """The diabetes set in its original units (age in years, sex coded 1 or 2, ...), float32,
    and the disease progression a year later."""
    data = load_diabetes(scaled=False)
    return data.data.astype(np.float32), data.target


def sklearn_iris_logreg(rng: np.random.Generator) -> None:
    """StandardScaler + LogisticRegression: Scaler, LinearClassifier, Normalizer, ZipMap."""
    x, _, y = iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    onnx_model = convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=OPSETS
    )
    write("sklearn-iris-logreg", onnx_model, rows_to_ask(x, rng))
    save_native("sklearn-iris-logreg", model)


def sklearn_iris_forest(rng: np.random.Generator) -> None:
    """RandomForestClassifier, integer labels: TreeEnsembleClassifier, ZipMap."""
    x, y, _ = iris()
    model = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=SEED).fit(x, y)
    onnx_model = convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=OPSETS
    )
    write("sklearn-iris-forest", onnx_model, rows_to_ask(x, rng))


def xgboost_iris(rng: np.random.Generator) -> None:
    """XGBClassifier through onnxmltools: TreeEnsembleClassifier (softmax post-transform)."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat
    from xgboost import XGBClassifier

    x, y, _ = iris()
    model = XGBClassifier(n_estimators=20, max_depth=3, random_state=SEED).fit(x, y)
    onnx_model = convert_xgboost(
        model, initial_types=[("input", MlFloat([None, 4]))], target_opset=ONNXMLTOOLS_OPSET
    )
    write("xgboost-iris", onnx_model, rows_to_ask(x, rng))
    save_native("xgboost-iris", model)


def lightgbm_iris(rng: np.random.Generator) -> None:
    """LGBMClassifier through onnxmltools: TreeEnsembleClassifier, ZipMap."""
    from lightgbm import LGBMClassifier
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat

    x, y, _ = iris()
    model = LGBMClassifier(n_estimators=20, num_leaves=8, random_state=SEED, verbose=-1)
    model.fit(x, y)
    onnx_model = convert_lightgbm(
        model, initial_types=[("input", MlFloat([None, 4]))], target_opset=ONNXMLTOOLS_OPSET
    )
    write("lightgbm-iris", onnx_model, rows_to_ask(x, rng))


def sklearn_diabetes_gbr(rng: np.random.Generator) -> None:
    """GradientBoostingRegressor: TreeEnsembleRegressor (SUM, a base value)."""
    x, y = diabetes()
    model = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=SEED).fit(x, y)
    onnx_model = convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 10]))], target_opset=OPSETS
    )
    write("sklearn-diabetes-gbr", onnx_model, rows_to_ask(x, rng))


def xgboost_diabetes(rng: np.random.Generator) -> None:
    """XGBRegressor through onnxmltools: TreeEnsembleRegressor (SUM, base_values)."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat
    from xgboost import XGBRegressor

    x, y = diabetes()
    model = XGBRegressor(n_estimators=30, max_depth=3, random_state=SEED).fit(x, y)
    onnx_model = convert_xgboost(
        model, initial_types=[("input", MlFloat([None, 10]))], target_opset=ONNXMLTOOLS_OPSET
    )
    write("xgboost-diabetes", onnx_model, rows_to_ask(x, rng))


def sklearn_diabetes_pipeline(rng: np.random.Generator) -> None:
    """A scikit-learn pipeline on a table with holes: SimpleImputer (median) + StandardScaler
    on the eight measurements, SimpleImputer (most frequent) + OneHotEncoder on the two
    numeric-coded columns (age in decades, sex), LogisticRegression (progression above the
    median: "high", else "low"). ArrayFeatureExtractor, Imputer, Scaler, Cast, OneHotEncoder
    (unseen categories refused: scikit-learn's default), Concat, LinearClassifier, ZipMap."""
    x, y = diabetes()
    x[:, 0] = np.floor(x[:, 0] / 10)
    x[rng.random(x.shape) < 0.05] = np.nan
    labels = np.where(y > np.median(y), "high", "low")
    measured, coded = list(range(2, 10)), [0, 1]
    columns = ColumnTransformer([
        ("measured", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), measured),
        ("coded", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), coded),
    ])
    model = make_pipeline(columns, LogisticRegression(max_iter=1000)).fit(x, labels)
    onnx_model = convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 10]))], target_opset=OPSETS
    )
    # The measurements jittered, the codes (and the holes) kept: a code the encoder never
    # saw is refused, by ONNX Runtime's run and by the gateway (a test of its own).
    picked = x[::10]
    jitter = rng.normal(0.0, 0.1, size=picked.shape) * np.nanstd(x, axis=0)
    jitter[:, coded] = 0.0
    rows = np.concatenate([picked, picked + jitter]).astype(np.float32)
    write("sklearn-diabetes-pipeline", onnx_model, [[float(v) for v in row] for row in rows])


EXPORTS = [
    sklearn_iris_logreg,
    sklearn_iris_forest,
    xgboost_iris,
    lightgbm_iris,
    sklearn_diabetes_gbr,
    xgboost_diabetes,
    sklearn_diabetes_pipeline,
]


def main() -> int:
    global NATIVE, OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--native",
        type=Path,
        metavar="DIR",
        help="also save the fitted models in their own formats into DIR/<name>/ "
        "(scikit-learn: model.joblib, XGBoost: model.json), beside a copy of model.onnx",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"write the ONNX exports to DIR/<name>/ instead of {OUT.relative_to(REPO)}/",
    )
    args = parser.parse_args()
    NATIVE = args.native
    if args.out is not None:
        OUT = args.out
    for export in EXPORTS:
        # One generator per model: adding a model never changes another's rows.
        export(np.random.default_rng(SEED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
