"""TNBC1 at lower depth: remnant's calls on the same real cells with their counts thinned.

Run by hand:  .venv/bin/python benchmarks/real_depth.py [--keep 1 0.5 0.25] [--seeds 0 1] [--no-infercnv]
                  [--recluster]

TNBC1 (benchmarks/_real_sets.py; README in ../shared/data/real/tnbc1) has a median of 17,288 UMI per
cell, more than many droplet data sets. Each of its stored counts is thinned binomially (a share
``keep`` of the molecules kept, seeded), the benchmark's harness of benchmarks/real_data.py is run on
the thinned cells (one shared sample, carrier fractions per Leiden cluster of the full-depth cells, or
with ``--recluster`` of the thinned cells as the workflow would find them, the 74 normal cells as
reference, cross-fitted), and one table is printed: per depth and thinning
seed, each lesion and control arm, the LLR AUROC tumour vs normal, infercnvpy's on the same thinned
cells (``icnv``), the share of tumour cells called (on a control: cells called on an arm nothing
changed), and the share of normal cells called.

Each row is given twice: with each cell's depth as remnant counts it (``sum``: the counts on the
genes outside every configured lesion, ``rm.tl.call_lesions``' default) and with a prototype that is
not part of remnant (``arm``: the weighted median over chromosome arms of the cell's counts on an
arm's depth genes divided by the reference cells' share of the depth on that arm, a baseline a
minority of changed arms cannot move; :func:`arm_median_depth`). The issue's checks on TNBC1 are
those of benchmarks/real_data.py: lesions AUROC >= 0.95 and >= infercnvpy, control arms and normal
cells <= 2% called; the script prints how many hold at each depth.
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

from remnant.tl.depth import depth_mask, group_totals  # noqa: E402
from remnant.tl.lesions import genes_in, lesion_columns, obs_depth_groups  # noqa: E402

HARNESS = {
    "state_key": "state",
    "prior_key": "leiden",
    "donor_key": "patient",
    "batch_key": None,
    "layer": "counts",
    "sample_key": "sample_shared",
}


def thinned(adata, keep: float, seed: int, recluster: bool = False):
    """A copy of ``adata`` whose counts keep each molecule with probability ``keep`` (binomial thinning);
    ``recluster``: its ``leiden`` clusters found again on the thinned counts."""
    out = adata.copy()
    if keep >= 1:
        return out
    counts = sp.csr_matrix(out.layers["counts"], copy=True)
    rng = np.random.default_rng(seed)
    counts.data = rng.binomial(counts.data.astype(np.int64), keep).astype(np.float32)
    counts.eliminate_zeros()
    out.layers["counts"] = counts
    out.X = counts.copy()
    if recluster:
        out.obs["leiden"] = R.leiden_clusters(counts)
    return out


def arm_median_depth(adata, lesions, reference: np.ndarray, arms: pd.DataFrame) -> np.ndarray:
    """float64 (n_obs,): each cell's depth as the weighted median over chromosome arms of
    ``counts on the arm's depth genes / the reference cells' share of the depth on that arm`` (weights:
    those shares). The depth genes are remnant's (:func:`remnant.tl.depth.depth_mask`, default
    exclusions); a gene is on the row of ``arms`` (:func:`remnant.io.chromosome_arms`) that holds its
    midpoint, as a lesion's genes are found (:func:`remnant.tl.lesions.genes_in`)."""
    X = sp.csr_matrix(adata.layers["counts"])
    _, outside = lesion_columns(adata.var, lesions)
    codes, groups = obs_depth_groups(adata.obs, HARNESS["sample_key"], HARNESS["state_key"], reference, "arm")
    mask = depth_mask(adata.var, outside, group_totals(X, codes, len(groups)), groups, None, "arm")
    arm = np.full(adata.n_vars, -1)
    for k, row in enumerate(arms.itertuples()):
        arm[genes_in(adata.var, row)] = k
    use = mask & (arm >= 0)
    indicator = sp.csr_matrix((np.ones(use.sum()), (np.flatnonzero(use), arm[use])), shape=(adata.n_vars, len(arms)))
    per_arm = np.asarray((X @ indicator).todense())
    share = per_arm[reference].sum(0) / per_arm[reference].sum()
    on = share > 1e-4
    estimates, weights = per_arm[:, on] / share[on], share[on]
    order = np.argsort(estimates, axis=1)
    cum = np.cumsum(weights[order], axis=1)
    at = (cum < cum[:, -1:] / 2).sum(1)
    return np.take_along_axis(estimates, order, 1)[np.arange(adata.n_obs), at]


def run(keeps, seeds, do_icnv: bool, recluster: bool = False) -> pd.DataFrame:
    full = R.load_tnbc1()
    lesions, controls = R.tnbc1_sets()
    arms = R.rm.io.chromosome_arms(R.rm.io.load_cytobands(R.GRCH38_BANDS))
    tumour, normal = full.obs["tumour"].to_numpy(), full.obs["normal"].to_numpy()
    rows = []
    for keep in keeps:
        for seed in seeds if keep < 1 else seeds[:1]:
            a = thinned(full, keep, seed, recluster)
            umi = float(np.median(np.asarray(a.layers["counts"].sum(1)).ravel()))
            icnv = None
            if do_icnv:
                icnv = R.infercnv_scores(a, R.log_normalised(a), normal, np.full(a.n_obs, "normal"), lesions + controls)
            for kind, les in (("lesion", lesions), ("control", controls)):
                runs = {
                    "sum": R.call(a, les, normal, **HARNESS),
                    "arm": R.call(a, les, normal, **HARNESS, depth=arm_median_depth(a, les, normal, arms)),
                }
                for l in les:
                    row = {"keep": keep, "seed": seed, "median_umi": umi, "kind": kind, "lesion": l.name}
                    for name, b in runs.items():
                        llr, call = b.obs[f"{l.name}_llr"].to_numpy(), b.obs[f"{l.name}_call"].to_numpy()
                        row[f"auroc_{name}"] = R.auroc(llr, tumour)
                        row[f"tumour_called_{name}"] = float(call[tumour].mean())
                        row[f"normal_called_{name}"] = float(call[normal].mean())
                    row["icnv"] = R.auroc(icnv["insample"][l.name], tumour) if icnv is not None else np.nan
                    rows.append(row)
            print(f"keep {keep} seed {seed}: median {umi:.0f} UMI per cell", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> list[str]:
    """Per depth, seed and depth baseline: how many of the issue's TNBC1 checks hold."""
    lines = []
    for (keep, seed), t in table.groupby(["keep", "seed"], sort=False):
        les, ctl = t[t["kind"] == "lesion"], t[t["kind"] == "control"]
        for name in ("sum", "arm"):
            auroc = les[f"auroc_{name}"]
            versus = (
                f"{int((auroc >= les['icnv']).sum())}/{len(les)}"
                if les["icnv"].notna().all()
                else "n/a (--no-infercnv)"
            )
            lines.append(
                f"keep {keep:g} seed {seed} ({t['median_umi'].iloc[0]:.0f} UMI) depth {name}: "
                f"lesions AUROC >= 0.95 {int((auroc >= 0.95).sum())}/{len(les)}, "
                f">= infercnvpy {versus}; "
                f"controls <= 2% called {int((ctl[f'tumour_called_{name}'] <= 0.02).sum())}/{len(ctl)} "
                f"(max {ctl[f'tumour_called_{name}'].max():.3f}); "
                f"normal cells <= 2% called {int((t[f'normal_called_{name}'] <= 0.02).sum())}/{len(t)}"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--no-infercnv", action="store_true")
    ap.add_argument(
        "--recluster", action="store_true", help="Leiden clusters of the thinned cells (default: full depth's)"
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # the harness's one-donor notice, once per call
    t0 = time.perf_counter()
    table = run(args.keep, args.seeds, not args.no_infercnv, args.recluster)
    columns = ["keep", "seed", "kind", "lesion", "auroc_sum", "auroc_arm", "icnv"]
    columns += [f"{w}_called_{n}" for w in ("tumour", "normal") for n in ("sum", "arm")]
    with pd.option_context("display.width", 200):
        print(table[columns].round(4).to_string(index=False))
    print()
    print("\n".join(summary(table)))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
