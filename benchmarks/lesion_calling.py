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

Measured on this machine (2 cores), seed 0, 600 cells per sample (4,800 cells: 1,800 reference,
1,800 held-out healthy, 1,200 MDS), ``--infercnv``. ``auroc``: posterior on MDS cells;
``auroc_vs_held``: LLR on MDS + held-out healthy cells; ``icnv_*``: infercnvpy 5q score (window 250,
state-matched reference categories), same cells. ``sec``: call_lesions only.

    depth  clone  n_cells  auroc  auroc_vs_held  fpr_held  fpr_held_prior0.5   sens  precision  prior_mds  true_frac  est_fpr  est_fnr      T    sec  icnv_auroc  icnv_auroc_vs_held  icnv_sec
       500   0.01     4800 0.7705         0.8144    0.0006             0.0206 0.0000        NaN     0.0131       0.01   0.0000   1.0000 1.0232 0.1261      0.6763              0.6649   15.1806
       500   0.10     4800 0.8251         0.8449    0.0006             0.0206 0.0083     1.0000     0.0630       0.10   0.0000   0.9913 1.0232 0.0848      0.7865              0.7810   21.5587
       500   0.50     4800 0.8491         0.8550    0.0006             0.0206 0.1750     0.9459     0.4185       0.50   0.0086   0.7911 1.0232 0.0797      0.7623              0.7565   12.6582
       500   1.00     4800    NaN         0.8611    0.0006             0.0206 0.7942     1.0000     0.9232       1.00   0.2581   0.1642 1.0232 0.0808         NaN              0.7544   13.4872
      2000   0.01     4800 0.9902         0.9895    0.0000             0.0122 0.0833     1.0000     0.0079       0.01   0.0006   0.9085 1.0127 0.1276      0.9230              0.9203   15.5095
      2000   0.10     4800 0.9713         0.9746    0.0000             0.0122 0.3417     0.9535     0.0762       0.10   0.0011   0.5350 1.0127 0.1133      0.9226              0.9179   15.5533
      2000   0.50     4800 0.9715         0.9756    0.0000             0.0122 0.5917     0.9807     0.4248       0.50   0.0100   0.3107 1.0127 0.1176      0.9283              0.9245   15.8086
      2000   1.00     4800    NaN         0.9743    0.0000             0.0122 0.8908     1.0000     0.9497       1.00   0.0947   0.0732 1.0127 0.1330         NaN              0.9196   16.6574
     10000   0.01     4800 1.0000         0.9999    0.0000             0.0011 0.9167     1.0000     0.0102       0.01   0.0000   0.0356 1.0450 0.2237      0.9996              0.9997   20.0110
     10000   0.10     4800 0.9997         0.9997    0.0000             0.0011 0.8417     1.0000     0.0940       0.10   0.0000   0.1043 1.0450 0.1817      0.9995              0.9996   17.8988
     10000   0.50     4800 0.9995         0.9994    0.0000             0.0011 0.9150     1.0000     0.4738       0.50   0.0000   0.0384 1.0450 0.2693      0.9983              0.9984   17.5631
     10000   1.00     4800    NaN         0.9994    0.0000             0.0011 0.9700     1.0000     0.9830       1.00   0.0058   0.0152 1.0450 0.2525         NaN              0.9990   19.2942

Reading: the issue's targets (AUROC >= 0.99 at 2,000 UMI, >= 0.95 at 500) are NOT met on this
simulator: 0.97 at 2,000 and 0.83-0.86 at 500 (0.99+ at 10,000). A diagnostic with each patient's
TRUE interval gave 0.983 (2,000) and 0.88 (500): a non-carrier has only ~41 counts in the lesion at
2,000 UMI, 28% of them on two ribosomal genes (RPS14, RPS23) with NB overdispersion, so the
per-cell information in this simulation is close to exhausted. FPR on held-out healthy cells at
the default cut-off is <= 0.06% everywhere (<= 2.1% even with a 50% prior). Sensitivity at the
0.9 cut-off is low at 500-2,000 UMI; the estimated FNR reports that honestly.
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
        "T": float(adata.uns["lesions"]["del5q"]["batches"]["temperature"].max()),
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
            print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
