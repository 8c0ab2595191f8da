"""How far each lesion and control arm of the real sets sits from the normal cells, read off pooled counts.

Run by hand:  .venv/bin/python benchmarks/arm_levels.py [--keep 1 0.25 0.125] [--seed 1] [--boot 1000]

Issue 17 asks, on TNBC1, for the losses called in the tumour cells and the unchanged arms 1p, 18p and
22q called in at most 2% of them. This script measures what the cells allow, with no caller in
between (benchmarks/_real_sets.py loads both real sets):

1. **Pooled levels** (one table per set): the tumour cells' counts of each gene summed, against the
   normal cells' profile (each gene's share of their autosomal counts) times the tumour cells' summed
   autosomal counts; genes with at least 20 expected counts; each ratio divided by the median ratio
   over all such autosomal genes (the tumour's own baseline, infercnv's centring). Per arm:
   ``median`` the median gene ratio, with a 95% interval from resampling the arm's genes
   (``--boot``); ``expressed`` the same over the genes the tumour expresses at >= 1/20 of expected
   (no copy state short of both copies lost reads below that); ``sum`` the arm's summed counts over
   its summed expectation (what a likelihood of counts weighs most: a few highly expressed genes);
   ``off`` the share of the arm's genes read below 1/20. The oligodendroglioma set: each tumour
   pooled on its own, against the normal cells of all five.
2. **Per cell, TNBC1 thinned** (``--keep``, binomial thinning as benchmarks/real_depth.py, seed
   ``--seed``): each tumour cell's counts on each arm over its expectation (the profile times the cell's
   autosomal counts), divided by the cell's median over all arms of 30 genes or more. Per lesion, the
   share of tumour cells a threshold on that level calls when it calls at most 2% of them on every
   control arm of the same direction (a loss: below the lowest of the controls' 2% quantiles; a
   gain: above the highest 98% quantile). Not a bound on every caller: the most a threshold on the
   arm's level can do at that depth.

What it showed (session 36; docs/robust_evidence.md, section "Session 36"): TNBC1's control 1p reads
at 0.87 (0.82-0.92) of the tumour's baseline gene and its lesion del14q at 0.82 (0.73-0.89); even
pooled over all 228 tumour cells the two are not told apart by their genes' levels, only by the sums,
which a handful of genes the tumour does not express carry.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_sets as R  # noqa: E402
import real_depth as D  # noqa: E402

MIN_EXPECTED = 20  # pooled expected counts for a gene's ratio to count
OFF = 1 / 20  # below this a gene is off, not lost
MIN_ARM_GENES = 30  # arms in a cell's median baseline


def _autosomal(var: pd.DataFrame) -> np.ndarray:
    return ~var["chromosome"].astype(str).isin(["chrX", "chrY", "chrM"]).to_numpy()


def profile(X: sp.csr_matrix, normal: np.ndarray, auto: np.ndarray) -> np.ndarray:
    """float64 (n_genes,): each gene's share of the normal cells' autosomal counts."""
    return np.asarray(X[normal].sum(0)).ravel() / float(X[normal][:, auto].sum())


def pooled_levels(X, cells, p, auto, var, items, rng, n_boot: int) -> list[dict]:
    """Per (lesion, kind) of ``items``: the pooled levels of the cells of ``cells`` (see the module doc)."""
    observed = np.asarray(X[cells].sum(0)).ravel()
    expected = p * float(X[cells][:, auto].sum())
    ok = auto & (expected >= MIN_EXPECTED)
    log_ratio = np.log((observed + 0.5) / (expected + 0.5))
    centre = np.median(log_ratio[ok])
    rows = []
    for lesion, kind in items:
        genes = np.flatnonzero(ok & R._gene_in(var, lesion))
        lr = log_ratio[genes] - centre
        boot = np.median(lr[rng.integers(0, genes.size, (n_boot, genes.size))], axis=1)
        on = observed[genes] >= OFF * expected[genes]
        rows.append(
            {
                "lesion": lesion.name,
                "kind": kind,
                "genes": genes.size,
                "median": np.exp(np.median(lr)),
                "ci_low": np.exp(np.quantile(boot, 0.025)),
                "ci_high": np.exp(np.quantile(boot, 0.975)),
                "expressed": np.exp(np.median(lr[on])),
                "sum": np.exp(np.log(observed[genes].sum() / expected[genes].sum()) - centre),
                "off": 1 - on.mean(),
            }
        )
    return rows


def cell_levels(X, p, auto, var) -> pd.DataFrame:
    """Tumour cells x arms (>= MIN_ARM_GENES genes): each arm's counts over expected, over the cell's median arm."""
    arm = (var["chromosome"].astype(str) + var["arm"].astype(str)).to_numpy()
    depth = np.asarray(X[:, auto].sum(1)).ravel()
    out = {}
    for a in pd.unique(arm[auto]):
        genes = auto & (arm == a)
        if genes.sum() >= MIN_ARM_GENES:
            out[a] = np.asarray(X[:, genes].sum(1)).ravel() / (depth * p[genes].sum())
    table = pd.DataFrame(out)
    return table.div(table.median(axis=1), axis=0)


def threshold_shares(levels: pd.DataFrame, lesions, controls) -> dict:
    """Per lesion: the share of cells a threshold on its arm's level calls at <= 2% on every control of its direction."""
    arm_of = {l.name: f"{l.chromosome}{l.region[-1]}" for l in lesions + controls}  # whole arms: "1q" -> "chr1q"
    out = {}
    for lesion in lesions:
        same = [c for c in controls if c.type == lesion.type]
        x = levels[arm_of[lesion.name]]
        if lesion.type == "loss":
            t = min(np.quantile(levels[arm_of[c.name]], 0.02) for c in same)
            out[lesion.name] = float((x < t).mean())
        else:
            t = max(np.quantile(levels[arm_of[c.name]], 0.98) for c in same)
            out[lesion.name] = float((x > t).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.25, 0.125])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    pd.set_option("display.width", 200)

    tnbc1 = R.load_tnbc1()
    lesions, controls = R.tnbc1_sets()
    X, var = sp.csr_matrix(tnbc1.layers["counts"]), tnbc1.var
    tumour, normal = tnbc1.obs["tumour"].to_numpy(), tnbc1.obs["normal"].to_numpy()
    auto = _autosomal(var)
    p = profile(X, normal, auto)
    items = [(l, "lesion") for l in lesions] + [(c, "control") for c in controls if c.type == "loss"]
    rows = [{"set": "TNBC1", **r} for r in pooled_levels(X, tumour, p, auto, var, items, rng, args.boot)]

    oligo = R.load_oligo()
    o_lesions, o_controls = R.oligo_sets()
    Xo, vo = sp.csr_matrix(oligo.layers["counts"]), oligo.var
    auto_o = _autosomal(vo)
    po = profile(Xo, oligo.obs["normal"].to_numpy(), auto_o)
    o_items = [(l, "lesion") for l in o_lesions] + [(c, "control") for c in o_controls]
    for patient in sorted(pd.unique(oligo.obs["patient"][oligo.obs["tumour"]])):
        cells = oligo.obs["tumour"].to_numpy() & (oligo.obs["patient"] == patient).to_numpy()
        for r in pooled_levels(Xo, cells, po, auto_o, vo, o_items, rng, args.boot):
            rows.append({"set": f"oligodendroglioma {patient} ({int(cells.sum())} cells)", **r})
    print("Pooled levels of the tumour cells against the normal cells (tumour's median gene = 1)")
    print(pd.DataFrame(rows).round(3).to_string(index=False))

    shares = []
    for keep in args.keep:
        a = D.thinned(tnbc1, keep, args.seed)
        Xa = sp.csr_matrix(a.layers["counts"])
        umi = float(np.median(np.asarray(Xa.sum(1)).ravel()))
        levels = cell_levels(Xa[tumour], profile(Xa, normal, auto), auto, var)
        shares.append({"UMI per cell": round(umi), **threshold_shares(levels, lesions, controls)})
    print(
        "\nTNBC1 tumour cells a threshold on the arm's level calls, at <= 2% on every control arm of the same direction"
    )
    print(pd.DataFrame(shares).round(3).to_string(index=False))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
