"""A subclone with a known lesion planted in real tumour cells: are its non-carriers left uncalled (session 38)?

Run by hand:  .venv/bin/python benchmarks/subclone_spike.py [--keep 1 0.5 0.25] [--shares 0 0.1 0.5]
                  [--arm 1p] [--seed 5]

TNBC1 (benchmarks/_real_sets.py) carries its seven known lesions in every tumour cell and no change on 1p, where
its tumour cells still read a little low (0.87 of the tumour's genome against the normal cells: a lean, not copy
number; session 36's ``arm_levels.py``). Here a one-copy loss of that arm is planted in a random share of the tumour
cells (each of their counts on the arm's genes thinned binomially to one half, after the whole data set is thinned
to ``keep`` of its molecules), so the truth is known cell by cell: a subclone inside a tumour whose other cells
lean on the same arm, as a del(5q) subclone can sit among a patient's cells whose 5q genes a programme moves.
``call_lesions`` runs as benchmarks/real_data.py runs it (one shared sample, Leiden-cluster priors, the 74 normal
cells as the reference), on the seven lesions with the planted one, and once on the planted one alone.

``--no-cluster-null``: the calls with ``cluster_null=False``, the model's null everywhere (the default since
session 39 reads each cluster's null off its own cells where they show two populations: remnant.tl.cluster_null).

Printed per depth, planted share and run: the carriers called, the non-carriers (tumour cells without the plant)
called and their mean posterior, the planted lesion's fraction as the posteriors give it over the tumour cells
(their mean) against the true share, the LLR AUROC carriers vs non-carriers, and the normal cells called. A
calibrated caller calls few non-carriers and gives them a low mean posterior whatever the share beside them.
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
from real_depth import HARNESS, thinned  # noqa: E402


def planted(adata, genes: np.ndarray, cells: np.ndarray, seed: int):
    """A copy of ``adata`` whose counts of ``genes`` in ``cells`` (boolean masks) keep each molecule with
    probability 1/2."""
    counts = sp.csr_matrix(adata.layers["counts"], copy=True)
    rng = np.random.default_rng(seed)
    for i in np.flatnonzero(cells):
        lo, hi = counts.indptr[i], counts.indptr[i + 1]
        on = genes[counts.indices[lo:hi]]
        counts.data[lo:hi][on] = rng.binomial(counts.data[lo:hi][on].astype(np.int64), 0.5)
    counts.eliminate_zeros()
    out = adata.copy()
    out.layers["counts"], out.X = counts, counts.copy()
    return out


def run(keeps, shares, arm: str, seed: int, runs=("with the seven", "alone"), **options) -> pd.DataFrame:
    full = R.load_tnbc1()
    lesions, _ = R.tnbc1_sets()
    target = R._lesions([(f"del{arm}", "loss", arm)], *_annotation())[0]
    tumour, normal = full.obs["tumour"].to_numpy(), full.obs["normal"].to_numpy()
    genes = R._gene_in(full.var, target)
    rows = []
    for keep in keeps:
        a = thinned(full, keep, seed)
        for share in shares:
            rng = np.random.default_rng(seed)
            carrier = tumour & (rng.random(a.n_obs) < share)
            b = planted(a, genes, carrier, seed)
            rest = tumour & ~carrier
            for run_name, group in (("with the seven", [*lesions, target]), ("alone", [target])):
                if run_name not in runs:
                    continue
                c = R.call(b, group, normal, **(HARNESS | options))
                llr, post, call = (c.obs[f"{target.name}_{k}"].to_numpy() for k in ("llr", "posterior", "call"))
                rows.append(
                    {"keep": keep, "share": share, "run": run_name, "carriers": int(carrier.sum())}
                    | {"carriers_called": float(call[carrier].mean()) if carrier.any() else np.nan}
                    | {"noncarriers_called": float(call[rest].mean())}
                    | {"noncarriers_mean_post": float(post[rest].mean())}
                    | {"fraction": float(post[tumour].mean()), "true_fraction": float(carrier[tumour].mean())}
                    | {"auroc": R.auroc(llr[tumour], carrier[tumour])}
                    | {"normals_called": float(call[normal].mean())}
                )
            print(f"keep {keep} share {share}: done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def _annotation():
    import remnant as rm

    cyto = rm.io.load_cytobands(R.GRCH38_BANDS)
    return cyto, rm.io.chromosome_arms(cyto)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.1, 0.5])
    ap.add_argument("--arm", default="1p", help="an arm TNBC1's README calls unchanged: 1p, 18p or 22q")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--no-cluster-null",
        action="store_true",
        help="call_lesions(cluster_null=False): the model's null everywhere (cnv.cluster_null, on by default)",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    table = run(args.keep, args.shares, args.arm, args.seed, cluster_null=not args.no_cluster_null)
    with pd.option_context("display.width", 200):
        print(table.round(4).to_string(index=False))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
