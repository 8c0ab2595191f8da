"""Doublet scoring (remnant.pp.qc.score_doublets, Scrublet) with and without the gene families it leaves
out (``DOUBLET_EXCLUDED_FAMILIES``: haemoglobin, immediate-early genes), on the same simulated cells.

Each run simulates one droplet sample of ``--cells`` cells with planted doublets (``--rate``), with the
simulator's confounders (on by default: ambient haemoglobin, immediate-early genes varying by sample,
cells of another type, disease programmes) or without them, and a doublet-free sample of the same
size. Printed per run and gene set: AUROC of the doublet score for the planted doublets, the rule
Scrublet's threshold ended in, cells called, precision and recall; and cells called in the
doublet-free sample (ideally 0).

Run: ``python benchmarks/doublets.py [--cells 300 3000] [--seeds 0 1 2]`` (about a minute per 3,000-cell run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from simulated import WITHOUT_CONFOUNDERS, cohort  # noqa: E402

from remnant.pp.qc import DOUBLET_EXCLUDED_FAMILIES, score_doublets  # noqa: E402
from remnant.sim.evaluate import precision_recall  # noqa: E402

GENE_SETS = {"excluded families": DOUBLET_EXCLUDED_FAMILIES, "all genes": ()}


def auroc(score: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import rankdata

    pos, neg = truth.sum(), (~truth).sum()
    if not pos or not neg:
        return float("nan")
    return float((rankdata(score)[truth].sum() - pos * (pos + 1) / 2) / (pos * neg))


def sample(cells: int, rate: float, confounders: bool, seed: int):
    params = {"cells_per_sample": {"droplet": cells, "plate": 96}, "doublets": {"rate": rate}}
    params |= {} if confounders else WITHOUT_CONFOUNDERS
    mapped, truth = cohort([("S1", "P1", "diagnosis", "PROG", "MDS", "droplet")], params=params, seed=seed)
    return mapped["S1"], truth["doublet"].to_numpy(bool)


def run(cells: int, rate: float, confounders: bool, seed: int) -> list[dict]:
    planted, truth = sample(cells, rate, confounders, seed)
    clean, _ = sample(cells, 0.0, confounders, seed + 1000)
    rows = []
    for name, families in GENE_SETS.items():
        a = score_doublets(planted.copy(), seed=seed, exclude_families=families)
        b = score_doublets(clean.copy(), seed=seed, exclude_families=families)
        called = a.obs["predicted_doublet"].to_numpy(bool)
        p, r = precision_recall(called, truth)
        rows.append(
            {
                "cells": cells,
                "confounders": confounders,
                "seed": seed,
                "genes": name,
                "auroc": auroc(a.obs["doublet_score"].to_numpy(), truth),
                "rule": a.uns["remnant"]["doublets"]["rule"],
                "called": int(called.sum()),
                "doublets": int(truth.sum()),
                "precision": p,
                "recall": r,
                "clean_called": int(b.obs["predicted_doublet"].sum()),
                "clean_rule": b.uns["remnant"]["doublets"]["rule"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[300, 3000])
    ap.add_argument("--rate", type=float, default=0.06)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    rows = []
    for cells in args.cells:
        for confounders in (True, False):
            for seed in args.seeds:
                rows += run(cells, args.rate, confounders, seed)
                print(pd.DataFrame(rows[-2:]).to_string(index=False, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format="%.3f"))
    print("\nmeans per setting:")
    keys = ["cells", "confounders", "genes"]
    print(
        table.groupby(keys)[["auroc", "called", "precision", "recall", "clean_called"]]
        .mean()
        .to_string(float_format="%.3f")
    )


if __name__ == "__main__":
    main()
