"""The automatic reference on real cells: what it chooses, and whether it says it is confident when it should.

Run by hand:  .venv/bin/python benchmarks/auto_reference.py

``rm.tl.find_reference`` (its defaults: ``min_cells`` 20, two rescore rounds) on the two real sets of
benchmarks/real_data.py (benchmarks/_real_sets.py; TNBC1: 228 CopyKAT-aneuploid and 74 diploid cells of one
10x sample, lesions +1q +8q +16p del19q del5q del10q del14q; the oligodendroglioma Smart-seq2 set: 142
malignant and 42 normal cells of five tumours, del1p and del19q), with the candidates restricted three ways:

- ``all``: every cell (two populations, the case the automatic reference is for: it should be confident);
- ``tumour``: the tumour cells only, and ``normal``: the normal cells only (one population each: expression
  cannot tell all-normal from all-carrier, so every lesion should be flagged "one population only").

One table, a row per set x candidates x lesion: the candidates, the cells chosen and the share of them the
set's truth calls normal, the separation of the two-component mixture on summed counts (``mixture``: the
choice with ``rescore_rounds=0``) and of the cells' gene-level log-likelihood ratios after the rescore
rounds (``gene_level``: what ``reference.tsv`` reports since session 35), the carrier share, ``cycle``
(selections the mixture alternated between; 0 when it settled), and ``confident`` for both. The last lines
count how many rows behave as they should. docs/robust_evidence.md, "Session 35", holds the figures.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_sets as R  # noqa: E402

import remnant as rm  # noqa: E402


def _choose(adata, lesions, candidates, kw: dict, rescore_rounds: int) -> tuple[np.ndarray, pd.DataFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rm.tl.find_reference(adata, lesions, candidates=candidates, rescore_rounds=rescore_rounds, **kw)


def run(name: str, adata, lesions, kw: dict) -> list[dict]:
    """The rows of one set: each restriction of the candidates, each lesion."""
    tumour, normal = adata.obs["tumour"].to_numpy(), adata.obs["normal"].to_numpy()
    rows = []
    for label, cand in (("all", tumour | normal), ("tumour", tumour), ("normal", normal)):
        _, mixture = _choose(adata, lesions, cand, kw, 0)
        mask, report = _choose(adata, lesions, cand, kw, 2)
        for (_, m), (_, g) in zip(mixture.iterrows(), report.iterrows(), strict=True):
            rows.append(
                {
                    "data": name,
                    "candidates": label,
                    "lesion": g["lesion"],
                    "n_candidates": int(g["n_candidates"]),
                    "n_chosen": int(g["n_chosen"]),
                    "chosen_normal": float(normal[mask].mean()),
                    "mixture": float(m["separation"]),
                    "gene_level": float(g["separation"]),
                    "carrier_share": float(g["carrier_fraction"]),
                    "cycle": int(m["cycle"]),
                    "confident_mixture": bool(m["confident"]),
                    "confident": bool(g["confident"]),
                }
            )
    return rows


def main() -> None:
    t0 = time.perf_counter()
    tnbc1 = R.load_tnbc1()
    kw = {"state_key": "state", "batch_key": None, "layer": "counts"}
    rows = run(
        "TNBC1",
        tnbc1,
        R.tnbc1_sets()[0],
        kw | {"sample_key": "sample_shared", "donor_key": "patient", "prior_key": "leiden"},
    )
    oligo = R.load_oligo()
    rows += run(
        "oligodendroglioma",
        oligo,
        R.oligo_sets()[0],
        kw | {"sample_key": "sample", "donor_key": "patient", "prior_key": "leiden"},
    )
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    two = table["candidates"] == "all"
    for col, label in (("confident_mixture", "mixture (rescore_rounds 0)"), ("confident", "gene level (the default)")):
        print(
            f"{label}: confident on both populations {int(table.loc[two, col].sum())}/{int(two.sum())}; "
            f"one population flagged {int((~table.loc[~two, col]).sum())}/{int((~two).sum())}"
        )
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
