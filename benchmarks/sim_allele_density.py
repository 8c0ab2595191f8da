"""Allele reads per cell the simulator gives (remnant.sim.alleles, issue 18 item 6), by technology and depth.

Run:  .venv/bin/python benchmarks/sim_allele_density.py [--cells N] [--seed S]

One diagnosis patient (del(5q) clone ~95%) and one healthy donor per technology and depth, default
allele parameters (``alleles: {enabled: true}``), confounders on (the default). Printed per sample:
median expression UMIs (plate: reads) per cell, the median UMIs per cell on genes of del(5q)'s widest
range (65-160.5 Mb), the median allele reads (DP) per cell at the sites there and inside the
patient's own interval, the realised allele reads per expression UMI in the range (pooled over
cells), and the share of carriers' reads at in-lesion sites that show the lost allele (the
sequencing-error floor; healthy donors: the haplotype-A share, about 1/2).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from remnant.io.annotation import load_genes
from remnant.io.genesets import read_gene_sets
from remnant.pp.cluster import read_markers
from remnant.sim.cohort import DEFAULT_PARAMS, in_interval, simulate_cohort

ROOT = Path(__file__).resolve().parents[1]
DEPTHS = {"droplet": [500, 2000, 10000], "plate": [400000]}


def measure(cohort, sample: str, genes_sim: pd.DataFrame, lesion: dict) -> dict:
    """The row of one sample (module docstring)."""
    a, x = cohort.alleles[sample], cohort.counts[sample].X
    cells = cohort.cells[cohort.cells["sample"] == sample].set_index("barcode").loc[a.obs_names]
    patient = cells["patient"].iloc[0]
    t = cohort.allele_truth
    t = t[(t["patient"] == patient) & (t["lesion"] == lesion["name"])]
    cols = a.var_names.get_indexer(t["site_id"])
    own = cols[t["in_lesion"].to_numpy()]
    dp = a.layers["DP"]
    region = in_interval(genes_sim, lesion["chromosome"], lesion["proximal"][0], lesion["distal"][1])
    umi_region = np.asarray(x[:, region].sum(axis=1)).ravel()
    reads = np.asarray(dp[:, cols].sum(axis=1)).ravel()
    carrier = cells[f"lesion_{lesion['name']}"].to_numpy() & ~cells["doublet"].to_numpy()
    use = carrier if carrier.any() else np.ones(len(cells), bool)
    ad_c = np.asarray(a.layers["AD"][use][:, cols].sum(axis=0)).ravel()
    dp_c = np.asarray(dp[use][:, cols].sum(axis=0)).ravel()
    lost = np.where(t["lost_allele"].to_numpy() == "ALT", ad_c, dp_c - ad_c)
    keep = t["in_lesion"].to_numpy() if carrier.any() else np.ones(len(t), bool)
    return {
        "sample": sample,
        "cells": a.n_obs,
        "carriers": int(carrier.sum()),
        "umi/cell": float(np.median(np.asarray(x.sum(axis=1)).ravel())),
        "range umi/cell": float(np.median(umi_region)),
        "range reads/cell": float(np.median(reads)),
        "own-interval reads/cell": float(np.median(np.asarray(dp[:, own].sum(axis=1)).ravel())) if own.size else 0.0,
        "reads/umi": float(reads.sum() / max(umi_region.sum(), 1)),
        "lost-allele share": float(lost[keep].sum() / max(dp_c[keep].sum(), 1)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=300, help="droplet cells per sample (plate: 96)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    genes = load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz")
    markers = read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv")
    gene_sets = read_gene_sets(ROOT / "resources/gene_sets")
    lesion = DEFAULT_PARAMS["lesions"][0]
    rows = []
    for tech, depths in DEPTHS.items():
        for depth in depths:
            sheet = pd.DataFrame(
                [("P1_dx", "P1", "diagnosis", "CD34", "MDS", tech), ("H1", "H1", "", "CD34", "healthy", tech)],
                columns=["sample", "patient", "timepoint", "population", "condition", "technology"],
            )
            params = {
                "cells_per_sample": {"droplet": args.cells, "plate": 96},
                "library_size": {tech: {"median": float(depth)}},
                "alleles": {"enabled": True},
            }
            t0 = time.perf_counter()
            cohort = simulate_cohort(sheet, genes, markers, gene_sets, params=params, seed=args.seed)
            seconds = time.perf_counter() - t0
            ids = cohort.counts["P1_dx"].var["gene_ids"]
            genes_sim = genes.set_index("gene_id_version").loc[ids].reset_index()
            for sample in sheet["sample"]:
                rows.append({"technology": tech, "depth": depth, **measure(cohort, sample, genes_sim, lesion)})
            rows[-1]["seconds"] = rows[-2]["seconds"] = round(seconds, 1)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
