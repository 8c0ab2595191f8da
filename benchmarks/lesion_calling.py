"""Benchmark of per-cell lesion calls (remnant.lesions) on simulated cohorts with known truth.

Run by hand:  .venv/bin/python benchmarks/lesion_calling.py [--quick] [--infercnv] [--cells N]

For each droplet depth (median UMI/cell) and clone fraction it simulates one cohort:
- 3 healthy donors (2 CD34 samples each): one sample per donor is the reference, the other sample
  of each donor is held-out healthy cells NOT in the reference (false-positive rate);
- 2 MDS patients (a CD34 sample at the given clone fraction each), with patient-specific
  del(5q) breakpoints drawn by the simulator.
The annotated state is the TRUE simulated state (clustering is benchmarked elsewhere); doublets and
low-quality cells are left out (QC removes them upstream).

Printed per row: per-cell AUROC of the posterior on MDS cells (truth: lesion_del5q), FPR on
held-out healthy cells at the default cut-off with their own sample's learned prior, FPR of the
same cells at a fixed prior of 0.5 (a harsher check: LLR >= logit(0.9)), sensitivity on carriers,
precision, the estimated per-sample FPR/FNR, runtime of call_lesions; with --infercnv the AUROC of a
5q score from infercnvpy.tl.infercnv (mean smoothed CNV value over the del(5q) interval, negated) and
its runtime on the same cells.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.annotation import chromosome_arms, load_cytobands, load_genes  # noqa: E402
from remnant.cluster import read_markers  # noqa: E402
from remnant.genesets import read_gene_sets  # noqa: E402
from remnant.io import map_genes  # noqa: E402
from remnant.lesions import call_lesions, parse_lesions  # noqa: E402
from remnant.simulate import simulate_cohort  # noqa: E402


def auroc(score: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import rankdata

    truth = np.asarray(truth, bool)
    npos, nneg = truth.sum(), (~truth).sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[truth].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def build(depth: float, clone_fraction: float, cells: int, seed: int, n_mds: int = 2):
    genes = load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz")
    rows = []
    for h in range(1, 4):
        rows.append((f"H{h}_ref", f"H{h}", "", "CD34", "healthy", "droplet"))
        rows.append((f"H{h}_held", f"H{h}", "", "CD34", "healthy", "droplet"))
    for p in range(1, n_mds + 1):
        rows.append((f"P{p}_CD34", f"P{p}", "diagnosis", "CD34", "MDS", "droplet"))
    sheet = pd.DataFrame(rows, columns=["sample", "patient", "timepoint", "population", "condition", "technology"])
    params = {
        "cells_per_sample": {"droplet": cells},
        "library_size": {"droplet": {"median": float(depth), "sdlog": 0.35}},
        "clone_fraction": {"diagnosis": {"CD34": clone_fraction}},
        "clone_sampling": "exact",
        "low_quality": {"fraction": 0.0},
        "doublets": {"rate": 0.0},
    }
    sim = simulate_cohort(sheet, genes, read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
                          read_gene_sets(ROOT / "resources/gene_sets"), params=params, seed=seed)
    parts = []
    for _, row in sheet.iterrows():
        a, _ = map_genes(sim.counts[row["sample"]], genes, source=row["sample"])
        for key in ("sample", "patient", "timepoint", "population", "condition", "technology"):
            a.obs[key] = row[key]
        a.obs_names = [f"{row['sample']}:{b}" for b in a.obs_names]
        parts.append(a)
    adata = ad.concat(parts, merge="same")
    truth = sim.cells.set_index(sim.cells["sample"] + ":" + sim.cells["barcode"])
    truth = truth.loc[adata.obs_names]
    adata.obs["hspc_state"] = truth["state"].to_numpy()
    adata.obs["truth"] = truth["lesion_del5q"].to_numpy(bool)
    adata.layers["counts"] = adata.X.tocsr()
    adata.uns["truth_patients"] = sim.patients.astype(str)
    return adata


def run(depth, frac, cells, seed, lesions, do_infercnv):
    adata = build(depth, frac, cells, seed)
    ref = adata.obs["sample"].str.endswith("_ref").to_numpy()
    t0 = time.perf_counter()
    call_lesions(adata, lesions, reference_mask=ref)
    dt = time.perf_counter() - t0
    obs = adata.obs
    mds = (obs["condition"] == "MDS").to_numpy()
    held = obs["sample"].str.endswith("_held").to_numpy()
    truth = obs["truth"].to_numpy(bool)
    post, call, llr = obs["del5q_posterior"].to_numpy(), obs["del5q_call"].to_numpy(), obs["del5q_llr"].to_numpy()
    ps = adata.uns["lesions"]["del5q"]["per_sample"]
    mds_samples = ps.index[ps.index.str.startswith("P")]
    out = {
        "depth": depth, "clone": frac, "n_cells": adata.n_obs,
        "auroc": auroc(post[mds], truth[mds]) if 0 < truth[mds].mean() < 1 else float("nan"),
        "auroc_vs_held": auroc(llr[mds | held], truth[mds | held]),
        "fpr_held": float(call[held].mean()),
        "fpr_held_prior0.5": float(np.mean(llr[held] >= np.log(9))),
        "sens": float(call[mds & truth].mean()) if (mds & truth).any() else float("nan"),
        "precision": float(truth[mds & call].mean()) if (mds & call).any() else float("nan"),
        "prior_mds": float(ps.loc[mds_samples, "prior"].mean()),
        "true_frac": float(truth[mds].mean()),
        "est_fpr": float(ps.loc[mds_samples, "fpr"].mean()),
        "est_fnr": float(ps.loc[mds_samples, "fnr"].mean()),
        "T": adata.uns["lesions"]["del5q"]["temperature"],
        "sec": dt,
    }
    if do_infercnv:
        out.update(run_infercnv(adata, ref, mds, held, truth))
    return out


def run_infercnv(adata, ref, mds, held, truth):
    import infercnvpy as cnv
    import scanpy as sc

    b = ad.AnnData(adata.layers["counts"].copy(), obs=adata.obs[["sample", "hspc_state"]].copy(), var=adata.var.copy())
    b.obs["ref"] = np.where(ref, b.obs["hspc_state"].astype(str) + "_ref", "query")
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    t0 = time.perf_counter()
    cnv.tl.infercnv(b, reference_key="ref", reference_cat=sorted(set(b.obs["ref"]) - {"query"}), window_size=250, n_jobs=1)
    dt = time.perf_counter() - t0
    chr_pos = b.uns["cnv"]["chr_pos"]
    X = b.obsm["X_cnv"]
    # windows on chr5 between 67.4 and 160.5 Mb: infercnvpy windows follow gene order on the chromosome
    var5 = b.var[b.var["chromosome"] == "chr5"].sort_values("start")
    start = chr_pos["chr5"]
    keys = list(chr_pos)
    stop = chr_pos[keys[keys.index("chr5") + 1]] if keys.index("chr5") + 1 < len(keys) else X.shape[1]
    nwin = stop - start
    # approximate the window -> position map by spreading chr5 genes evenly over its windows
    pos = np.linspace(var5["start"].iloc[0], var5["start"].iloc[-1], nwin)
    sel = start + np.flatnonzero((pos >= 67_400_000) & (pos < 160_500_000))
    score = -np.asarray(X[:, sel].mean(axis=1)).ravel()
    return {"icnv_auroc": auroc(score[mds], truth[mds]) if 0 < truth[mds].mean() < 1 else float("nan"),
            "icnv_auroc_vs_held": auroc(score[mds | held], truth[mds | held]), "icnv_sec": dt}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 UMI only")
    ap.add_argument("--infercnv", action="store_true")
    ap.add_argument("--cells", type=int, default=600, help="cells per sample")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cyto = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    lesions = parse_lesions(None, cyto, chromosome_arms(cyto))
    depths = [2000] if args.quick else [500, 2000, 10000]
    rows = []
    for depth in depths:
        for frac in (0.01, 0.1, 0.5, 1.0):
            rows.append(run(depth, frac, args.cells, args.seed, lesions, args.infercnv))
            print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
