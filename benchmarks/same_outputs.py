"""Show that two runs of the workflow made the same outputs (issue 21: "no behaviour change").

Run by hand, on the demo cohort at two revisions:

    git worktree add /tmp/before REV_BEFORE && ln -s "$PWD/.venv" /tmp/before/.venv
    (cd /tmp/before && .venv/bin/snakemake --cores 2 --configfile config/config.yaml config/demo/config.yaml)
    bin/demo
    .venv/bin/python benchmarks/same_outputs.py /tmp/before/results results

Every table (``.tsv``, ``.csv``, ``.txt``; ``.gz`` ones compared decompressed, since gzip stamps a
time in its header) must be byte-identical, and every ``.h5ad`` must hold the same content: X, every
layer, obs, var, obsm, varm, obsp and uns, value for value and dtype for dtype. The one allowed
difference is the ``logger`` column of ``warnings.tsv``, which names each warning's module (so it
moves when a module does); it is reported as such. Figures, HTML and logs are listed but not compared (they carry timestamps, paths and renderer versions). Prints one table
and exits 1 when anything differs or is missing on one side.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

TABLES = (".tsv", ".csv", ".txt", ".tsv.gz", ".csv.gz")
SKIPPED = {"benchmarks", "logs"}  # timings and log lines differ from run to run by nature


def kind(path: Path) -> str:
    name = path.name
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(TABLES):
        return "table"
    return "other"


def table_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def same_but_logger(a: Path, b: Path) -> bool:
    """warnings.tsv names the logger (the module) of each warning: the same rows once that column is left out."""
    x, y = (pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in (a, b))
    if "logger" not in x or "logger" not in y:
        return False
    return x.drop(columns="logger").equals(y.drop(columns="logger"))


def same_value(a, b) -> str | None:
    """None when a and b are equal in value and type; else a few words on where they differ."""
    if sparse.issparse(a) or sparse.issparse(b):
        if not (sparse.issparse(a) and sparse.issparse(b)):
            return "sparse on one side only"
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        a, b = sparse.csr_matrix(a), sparse.csr_matrix(b)
        a.sort_indices()
        b.sort_indices()
        same = (
            np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data, equal_nan=a.dtype.kind == "f")
        )
        return None if same else "values differ"
    if isinstance(a, pd.DataFrame):
        if not isinstance(b, pd.DataFrame):
            return "data frame on one side only"
        try:
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        except AssertionError as err:
            return str(err).splitlines()[0]
        return None
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return f"keys {sorted(a)} vs {sorted(b) if isinstance(b, dict) else type(b).__name__}"
        for key in a:
            why = same_value(a[key], b[key])
            if why:
                return f"[{key}] {why}"
        return None
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.shape != b_arr.shape or a_arr.dtype != b_arr.dtype:
        return f"shape/dtype {a_arr.shape} {a_arr.dtype} vs {b_arr.shape} {b_arr.dtype}"
    equal_nan = a_arr.dtype.kind in "fc"
    return None if np.array_equal(a_arr, b_arr, equal_nan=equal_nan) else "values differ"


def compare_h5ad(a: Path, b: Path) -> str | None:
    with warnings.catch_warnings():  # clustered.h5ad has Ensembl IDs repeated by design: not news here
        warnings.simplefilter("ignore", UserWarning)
        x, y = ad.read_h5ad(a), ad.read_h5ad(b)
    parts = {"X": (x.X, y.X), "obs": (x.obs, y.obs), "var": (x.var, y.var)}
    for slot in ("layers", "obsm", "varm", "obsp", "uns"):
        parts[slot] = (dict(getattr(x, slot)), dict(getattr(y, slot)))
    for slot, (u, v) in parts.items():
        if u is None and v is None:
            continue
        why = same_value(u, v)
        if why:
            return f"{slot}: {why}"
    return None


def compare(before: Path, after: Path) -> pd.DataFrame:
    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root) for p in root.rglob("*") if p.is_file() and not SKIPPED & set(p.relative_to(root).parts)
        }

    left, right = files(before), files(after)
    rows = []
    for rel in sorted(left | right):
        what = kind(rel)
        if rel not in left or rel not in right:
            rows.append((str(rel), what, "missing " + ("before" if rel not in left else "after"), ""))
            continue
        if what == "table":
            same = table_bytes(before / rel) == table_bytes(after / rel)
            detail = "" if same else "bytes differ"
            if not same and rel.name == "warnings.tsv" and same_but_logger(before / rel, after / rel):
                same, detail = True, "identical but for the logger column (the modules' names moved)"
            rows.append((str(rel), what, "identical" if same else "DIFFERENT", detail))
        elif what == "h5ad":
            why = compare_h5ad(before / rel, after / rel)
            rows.append((str(rel), what, "identical" if why is None else "DIFFERENT", why or ""))
        else:
            rows.append((str(rel), what, "not compared", ""))
    return pd.DataFrame(rows, columns=["file", "kind", "result", "detail"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path, help="results/ folder of the run before the change")
    ap.add_argument("after", type=Path, help="results/ folder of the run after the change")
    ap.add_argument("--all", action="store_true", help="list every file, not only tables, h5ad and problems")
    args = ap.parse_args()
    table = compare(args.before, args.after)
    shown = table if args.all else table[table["kind"].ne("other") | table["result"].str.startswith("missing")]
    with pd.option_context("display.max_rows", None, "display.max_colwidth", 90, "display.width", 200):
        print(shown.to_string(index=False))
    counts = table.groupby(["kind", "result"]).size()
    print()
    print(counts.to_string())
    bad = table["result"].isin(["DIFFERENT"]) | table["result"].str.startswith("missing")
    bad &= table["kind"].ne("other") | table["result"].str.startswith("missing")
    print(f"\n{int(bad.sum())} table(s)/h5ad file(s) differ or are missing on one side.")
    return 1 if bad.any() else 0


if __name__ == "__main__":
    sys.exit(main())
