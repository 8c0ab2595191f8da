"""TNBC1 at lower depth: remnant's calls on the same real cells with their counts thinned.

Run by hand:  .venv/bin/python benchmarks/real_depth.py [--keep 1 0.5 0.25] [--seeds 0 1] [--no-infercnv]
                  [--recluster] [--versus sum|no_cluster_null] [--set YAML]

TNBC1 (benchmarks/_real_sets.py; README in ../shared/data/real/tnbc1) has a median of 17,288 UMI per
cell, more than many droplet data sets. Each of its stored counts is thinned binomially (a share
``keep`` of the molecules kept, seeded), the benchmark's harness of benchmarks/real_data.py is run on
the thinned cells (one shared sample, carrier fractions per Leiden cluster of the full-depth cells, or
with ``--recluster`` of the thinned cells as the workflow would find them, the 74 normal cells as
reference, cross-fitted), and one table is printed: per depth and thinning
seed, each lesion and control arm, the LLR AUROC tumour vs normal, infercnvpy's on the same thinned
cells (``icnv``), the share of tumour cells called (on a control: cells called on an arm nothing
changed), the tumour cells' mean posterior (``tumour_post``: the carrier share a fraction is read from),
and the share of normal cells called. ``--set YAML`` thins any real set with known truth described by a YAML
(benchmarks/sets/README.md; its own samples, states and Leiden clusters) instead of TNBC1.

Each row is given twice, once for each depth baseline of ``rm.tl.call_lesions`` (``cnv.depth.baseline``):
``median`` (since session 33 the default, opt-in from session 31: the weighted median over blocks of the
genome of a cell's counts per block against the reference's block shares, which a minority of changed
arms cannot move) and ``sum`` (the counts on the depth genes, the default before);
with ``--versus no_cluster_null`` the second is ``median`` with ``cnv.cluster_null`` off (the default since session
39 reads each cluster's null off its own cells where they show two populations, remnant.tl.cluster_null). Session 27's prototype of the median over
chromosome arms (the ``arm`` column then) became the first. The issue's checks on TNBC1 are
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

from remnant.tl.depth import DepthGenes  # noqa: E402

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


def draws(full, keeps, seeds, recluster: bool = False):
    """Each run's ``(keep, seed, thinned copy of full)``: one at full depth (keep 1, the first seed), each seed
    below it."""
    for keep in keeps:
        for seed in seeds if keep < 1 else seeds[:1]:
            yield keep, seed, thinned(full, keep, seed, recluster)


#: The second setting of each row (``--versus``), beside the default caller (``median``).
VERSUS = {
    "sum": {"depth_genes": DepthGenes(baseline="sum")},
    "no_cluster_null": {"depth_genes": DepthGenes(baseline="median"), "cluster_null": False},
}


def run(keeps, seeds, do_icnv: bool, recluster: bool = False, versus: str = "sum", truth_set=None) -> pd.DataFrame:
    """The table; ``truth_set``: a truth set's YAML (benchmarks/sets/README.md) thinned instead of TNBC1."""
    if truth_set is None:
        full, (lesions, controls), harness = R.load_tnbc1(), R.tnbc1_sets(), HARNESS
    else:
        full, lesions, controls, harness = R.load_truth_set(truth_set)
    tumour, normal = full.obs["tumour"].to_numpy(), full.obs["normal"].to_numpy()
    scored = tumour | normal  # a truth set's cells of neither kind are called, not ranked
    labels = R.state_labels(full.obs)
    rows = []
    for keep, seed, a in draws(full, keeps, seeds, recluster):
        umi = float(np.median(np.asarray(a.layers["counts"].sum(1)).ravel()))
        icnv = None
        if do_icnv:
            icnv = R.infercnv_scores(a, R.log_normalised(a), normal, labels, lesions + controls)
        for kind, les in (("lesion", lesions), ("control", controls)):
            if not les:
                continue
            runs = {
                "median": R.call(a, les, normal, **harness, depth_genes=DepthGenes(baseline="median")),
                versus: R.call(a, les, normal, **harness, **VERSUS[versus]),
            }
            for l in les:
                row = {"keep": keep, "seed": seed, "median_umi": umi, "kind": kind, "lesion": l.name}
                for name, b in runs.items():
                    llr, call = b.obs[f"{l.name}_llr"].to_numpy(), b.obs[f"{l.name}_call"].to_numpy()
                    row[f"auroc_{name}"] = R.auroc(llr[scored], tumour[scored])
                    row[f"tumour_called_{name}"] = float(call[tumour].mean())
                    row[f"tumour_post_{name}"] = float(b.obs[f"{l.name}_posterior"].to_numpy()[tumour].mean())
                    row[f"normal_called_{name}"] = float(call[normal].mean())
                row["icnv"] = R.auroc(icnv["insample"][l.name][scored], tumour[scored]) if icnv is not None else np.nan
                rows.append(row)
        print(f"keep {keep} seed {seed}: median {umi:.0f} UMI per cell", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, versus: str = "sum") -> list[str]:
    """Per depth, seed and setting: how many of the issue's TNBC1 checks hold."""
    lines = []
    for (keep, seed), t in table.groupby(["keep", "seed"], sort=False):
        les, ctl = t[t["kind"] == "lesion"], t[t["kind"] == "control"]
        for name in ("median", versus):
            auroc = les[f"auroc_{name}"]
            beats = (
                f"{int((auroc >= les['icnv']).sum())}/{len(les)}"
                if les["icnv"].notna().all()
                else "n/a (--no-infercnv)"
            )
            lines.append(
                f"keep {keep:g} seed {seed} ({t['median_umi'].iloc[0]:.0f} UMI) depth {name}: "
                f"lesions AUROC >= 0.95 {int((auroc >= 0.95).sum())}/{len(les)}, "
                f">= infercnvpy {beats}; "
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
    ap.add_argument(
        "--versus",
        choices=sorted(VERSUS),
        default="sum",
        help="the setting beside the default caller: the sum depth baseline (default), or cnv.cluster_null off",
    )
    ap.add_argument(
        "--set",
        type=Path,
        metavar="YAML",
        help="thin a real set with known truth described by this YAML instead of TNBC1 (benchmarks/sets/README.md)",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # the harness's one-donor notice, once per call
    t0 = time.perf_counter()
    try:
        table = run(args.keep, args.seeds, not args.no_infercnv, args.recluster, args.versus, args.set)
    except R.SetError as err:
        sys.exit(f"real_depth.py: {err}")
    columns = ["keep", "seed", "kind", "lesion", "auroc_median", f"auroc_{args.versus}", "icnv"]
    columns += [f"{w}_{n}" for w in ("tumour_called", "tumour_post", "normal_called") for n in ("median", args.versus)]
    with pd.option_context("display.width", 200):
        print(table[columns].round(4).to_string(index=False))
    print()
    print("\n".join(summary(table, args.versus)))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
