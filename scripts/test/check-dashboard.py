#!/usr/bin/env python3
"""Checks the Grafana dashboard against a running Prometheus.

    scripts/test/check-dashboard.py [--prometheus URL] [--dashboard FILE] [--datasources FILE]
                                    [--strict] [--values] [--time UNIX_SECONDS]

1. Structure: valid JSON, a uid, a title and schemaVersion 39; every panel (rows' nested
   panels included) has a unique integer id, a type, a title and a gridPos inside the
   24-column grid; every target has a non-empty `expr`, a refId unique in its panel, and a
   datasource whose uid the provisioning file defines; no dashboard variables besides the
   built-in interval ones.
2. Queries: every `expr` runs as an instant query (GET /api/v1/query) after substituting
   `$__rate_interval` (and `$__interval`) with 1m and `$__range` with 5m. One line per
   query, with the number of series it returned. A query that errors, or returns nothing,
   fails the check. With --strict, so does one whose every value is NaN (a quantile or a
   ratio over a window without observations: run it within a minute of some load).

Exit 0 when everything passes, 1 listing what did not, 2 on a usage or connection error.
Python 3 standard library only.
"""

import argparse
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRID_WIDTH = 24
SCHEMA_VERSION = 39
# Grafana's built-in variables that a query may use, and what an instant query gets instead.
SUBSTITUTIONS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "5m",
}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+)|\[\[(\w+)\]\])")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090",
                    help="Prometheus base URL (default %(default)s)")
    ap.add_argument("--dashboard", type=Path,
                    default=ROOT / "config/grafana/dashboards/infergate.json")
    ap.add_argument("--datasources", type=Path,
                    default=ROOT / "config/grafana/provisioning/datasources/prometheus.yml",
                    help="Grafana datasource provisioning file (its `uid:` values)")
    ap.add_argument("--strict", action="store_true",
                    help="also fail a query whose every value is NaN")
    ap.add_argument("--time", type=float, default=None,
                    help="evaluation time (unix seconds; default: Prometheus' now)")
    ap.add_argument("--structure-only", action="store_true",
                    help="check the JSON's structure, run no query")
    ap.add_argument("--values", action="store_true",
                    help="also print each series' labels and value")
    return ap.parse_args()


def provisioned_uids(path):
    """The datasource uids a Grafana provisioning YAML defines (a line-level read: stdlib
    has no YAML parser, and these files are flat enough)."""
    uids = set()
    for line in path.read_text().splitlines():
        m = re.match(r"""^\s*(?:-\s+)?uid:\s*["']?([^"'\s#]+)["']?\s*(?:#.*)?$""", line)
        if m:
            uids.add(m.group(1))
    return uids


def walk_panels(panels, parent="dashboard"):
    """Every panel, the panels of rows (collapsed ones keep theirs inside) included."""
    for panel in panels or []:
        yield panel, parent
        if panel.get("type") == "row":
            yield from walk_panels(panel.get("panels"), f"row {panel.get('title')!r}")


def check_structure(dash, uids):
    problems = []
    queries = []  # (panel title, refId, expr)
    if not isinstance(dash, dict):
        return ["the dashboard is not a JSON object"], queries
    for key in ("uid", "title"):
        if not isinstance(dash.get(key), str) or not dash[key]:
            problems.append(f"dashboard: missing {key}")
    if dash.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"dashboard: schemaVersion is {dash.get('schemaVersion')!r}, "
                        f"expected {SCHEMA_VERSION}")
    variables = [v.get("name") for v in (dash.get("templating") or {}).get("list", [])]
    if not isinstance(dash.get("panels"), list) or not dash["panels"]:
        problems.append("dashboard: no panels")
        return problems, queries

    seen_ids = {}
    for panel, parent in walk_panels(dash["panels"]):
        title = panel.get("title")
        where = f"panel {panel.get('id')!r} {title!r} ({parent})"
        pid = panel.get("id")
        if not isinstance(pid, int) or isinstance(pid, bool):
            problems.append(f"{where}: id is not an integer")
        elif pid in seen_ids:
            problems.append(f"{where}: id {pid} already used by {seen_ids[pid]!r}")
        else:
            seen_ids[pid] = title
        if not panel.get("type"):
            problems.append(f"{where}: no type")
        if not isinstance(title, str) or not title:
            problems.append(f"{where}: no title")
        grid = panel.get("gridPos")
        if not isinstance(grid, dict) or not all(
                isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"{where}: gridPos needs integer x, y, w, h")
        elif grid["x"] < 0 or grid["w"] <= 0 or grid["h"] <= 0 or \
                grid["x"] + grid["w"] > GRID_WIDTH:
            problems.append(f"{where}: gridPos {grid} outside the {GRID_WIDTH}-column grid")
        if panel.get("type") == "row":
            if panel.get("targets"):
                problems.append(f"{where}: a row with targets")
            continue
        targets = panel.get("targets")
        if not isinstance(targets, list) or not targets:
            problems.append(f"{where}: no targets")
            continue
        pds = panel.get("datasource")
        if isinstance(pds, dict) and pds.get("uid") not in uids:
            problems.append(f"{where}: panel datasource uid {pds.get('uid')!r} "
                            f"not provisioned (have {sorted(uids)})")
        refs = set()
        for target in targets:
            ref = target.get("refId")
            twhere = f"{where} target {ref!r}"
            if not ref:
                problems.append(f"{twhere}: no refId")
            elif ref in refs:
                problems.append(f"{twhere}: refId repeated")
            refs.add(ref)
            ds = target.get("datasource")
            if not isinstance(ds, dict) or not ds.get("uid"):
                problems.append(f"{twhere}: no datasource uid (name it by uid, not by name)")
            elif ds["uid"] not in uids:
                problems.append(f"{twhere}: datasource uid {ds['uid']!r} not provisioned "
                                f"(have {sorted(uids)})")
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{twhere}: no expr")
                continue
            for m in VARIABLE.finditer(expr):
                name = m.group(1) or m.group(2) or m.group(3)
                if name not in SUBSTITUTIONS:
                    known = "a dashboard variable" if name in variables else "unknown"
                    problems.append(f"{twhere}: variable ${name} ({known}) has no "
                                    "substitution in this check")
            queries.append((title, ref, expr))
    return problems, queries


def substitute(expr):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return SUBSTITUTIONS.get(name, m.group(0))
    return VARIABLE.sub(repl, expr)


def instant_query(base, expr, at):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        # Prometheus answers 400/422 with a JSON error body.
        try:
            body = json.load(e)
        except ValueError:
            return None, f"HTTP {e.code}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType', 'error')}: {body.get('error', body)}"
    return body["data"], None


def values_of(data):
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector":
        return [float(s["value"][1]) for s in result]
    if kind == "scalar":
        return [float(result[1])]
    if kind == "matrix":
        return [float(v[1]) for s in result for v in s["values"]]
    return []


def describe_series(data):
    if data.get("resultType") == "scalar":
        return [f"scalar = {data['result'][1]}"]
    out = []
    for series in data.get("result", []):
        labels = ", ".join(f"{k}={v!r}" for k, v in sorted(series["metric"].items()))
        value = series["value"][1] if "value" in series else f"{len(series['values'])} points"
        out.append(f"{{{labels}}} = {value}")
    return out


def main():
    args = parse_args()
    try:
        dash = json.loads(args.dashboard.read_text())
    except (OSError, ValueError) as e:
        print(f"FAIL cannot read {args.dashboard}: {e}")
        return 1
    try:
        uids = provisioned_uids(args.datasources)
    except OSError as e:
        print(f"FAIL cannot read {args.datasources}: {e}")
        return 1
    if not uids:
        print(f"FAIL {args.datasources} defines no datasource uid")
        return 1

    problems, queries = check_structure(dash, uids)
    print(f"structure: {args.dashboard}: {len(queries)} queries, "
          f"datasource uids {sorted(uids)}: {'ok' if not problems else 'FAILED'}")
    for p in problems:
        print(f"  {p}")
    if args.structure_only:
        return 1 if problems else 0

    failed = []
    try:
        _, err = instant_query(args.prometheus, "vector(1)", args.time)
    except (urllib.error.URLError, OSError) as e:
        print(f"cannot reach Prometheus at {args.prometheus}: {e}")
        return 2
    if err:
        print(f"Prometheus at {args.prometheus} refused a trivial query: {err}")
        return 2

    for title, ref, expr in queries:
        q = substitute(expr)
        label = f"{title} [{ref}]"
        try:
            data, err = instant_query(args.prometheus, q, args.time)
        except (urllib.error.URLError, OSError) as e:
            data, err = None, str(e)
        if err:
            print(f"ERROR  {label}: {err}\n         {q}")
            failed.append((label, q, err))
            continue
        vals = values_of(data)
        n = len(data["result"]) if data.get("resultType") != "scalar" else 1
        nan = sum(1 for v in vals if math.isnan(v))
        if n == 0:
            print(f"EMPTY  {label}: 0 series\n         {q}")
            failed.append((label, q, "empty result"))
        elif vals and nan == len(vals):
            status = "NAN  " if args.strict else "ok   "
            print(f"{status}  {label}: {n} series, all NaN (no observations in the window)\n"
                  f"         {q}")
            if args.strict:
                failed.append((label, q, "every value NaN"))
        else:
            extra = f", {nan} NaN" if nan else ""
            print(f"ok     {label}: {n} series{extra}")
        if args.values and n:
            for line in describe_series(data):
                print(f"         {line}")

    if problems or failed:
        print(f"\nFAILED: {len(problems)} structure problem(s), "
              f"{len(failed)} of {len(queries)} queries:")
        for label, q, why in failed:
            print(f"  {label}: {why}\n    {q}")
        return 1
    print(f"\nall {len(queries)} queries returned data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
