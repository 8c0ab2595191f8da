"""Speed and peak memory of per-cell lesion calling vs infercnvpy on the same cells.

Run by hand:  .venv/bin/python benchmarks/lesion_speed.py [--cells 50000] [--genes 15000]

Simulates one droplet cohort (3 healthy donors as reference, MDS patients with del(5q); ~2,500
UMI/cell), keeps the ``--genes`` most expressed genes, writes it to a temporary h5ad, then runs each
method in a fresh Python process that loads the file and runs one step:

- ``remnant.call_lesions`` (del(5q) posterior per cell; state-matched reference, cross-fitting,
  per-patient interval re-scoring: the workflow's defaults);
- ``infercnvpy.tl.infercnv`` (window 100, state-matched reference categories; n_jobs=1 and 2) on
  log-normalised counts, as infercnvpy's tutorial does.

Printed per step: wall seconds of the step alone; ``loaded_mb``, the resident memory after loading
the cohort; ``peak_mb``, the process's high-water mark during the step (VmHWM, reset through
/proc/self/clear_refs after loading, so it includes the loaded cohort but not the peak of reading
the file); ``children_peak_mb``, the largest worker process (RUSAGE_CHILDREN; infercnvpy's
joblib workers); ``step_mb`` = peak_mb - loaded_mb.

Measured on this machine (2 cores), seed 0, 50,000 cells x 15,000 genes, the simulator's confounders on;
session 36 (the sums into bins compiled by numba, remnant._sums; each gene's spread with the reference
profile's error):

    step                              sec  loaded_mb  peak_mb  children_peak_mb  step_mb
    remnant.call_lesions              3.0     1115.4   1494.6              33.5    379.2
    infercnvpy.tl.infercnv n_jobs=1  39.4     1115.9   2564.9            3186.5   1449.0
    infercnvpy.tl.infercnv n_jobs=2  22.0     1115.9   2550.9            3190.9   1435.0

13.0x (n_jobs=1) and 7.2x (n_jobs=2) faster, the peak 0.47 of infercnvpy's largest process. The step adds
98 MB more than in session 16: numba's compiled-code runtime, loaded at the first compiled call, the same
whatever the cohort's size (resident 141 -> 193 MB after the step's imports, 54 MB more at that call).

Session 16 (its default since issue 17):

    step                              sec  loaded_mb  peak_mb  children_peak_mb  step_mb
    remnant.call_lesions              3.1     1115.3   1396.0              33.5    280.7
    infercnvpy.tl.infercnv n_jobs=1  37.9     1116.1   2565.1            3191.1   1448.9
    infercnvpy.tl.infercnv n_jobs=2  19.4     1115.7   2534.7            3186.4   1419.0

call_lesions is 12x (n_jobs=1) and 6x (n_jobs=2) faster, and its peak is 0.44 of infercnvpy's largest
process (1,396 vs 3,191 MB; the step itself adds 281 vs 1,449 MB). Before the depth's per-group gene sums
went to blocks of 10,000 cells (session 16; 50,000 before, i.e. this whole cohort copied to float64 at
once) the step added 1,229 MB (peak 2,345 MB, 3.8-4.0 s, at the end of session 15 and after the clone
prior alike). An earlier version without the robust depth (no confounders in the simulator): 2.3 s, 122 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
import anndata as ad, numpy as np
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
import gc
adata = ad.read_h5ad({path!r})
gc.collect()
loaded = status("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:  # reset the high-water mark: measure the step, not the load
    fh.write("5")
method = {method!r}
t0 = time.perf_counter()
if method == "remnant":
    from remnant.io.annotation import load_cytobands
    from remnant.tl.lesions import call_lesions, parse_lesions
    lesions = parse_lesions(None, load_cytobands({cyto!r}))
    call_lesions(adata, lesions, reference=adata.obs["reference"].to_numpy(bool), batch_key="technology")
else:
    import infercnvpy as cnv, scanpy as sc
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    t0 = time.perf_counter()
    cats = sorted(set(adata.obs["ref_cat"]) - {{"query"}})
    cnv.tl.infercnv(adata, reference_key="ref_cat", reference_cat=cats, window_size=100, n_jobs={n_jobs})
dt = time.perf_counter() - t0
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({{"sec": dt, "loaded_mb": loaded, "peak_mb": status("VmHWM"), "children_peak_mb": children}}))
"""


def build(cells: int, genes: int, seed: int, path: Path) -> None:
    import anndata as ad

    from remnant.io.annotation import load_genes
    from remnant.io.counts import map_genes
    from remnant.io.genesets import read_gene_sets
    from remnant.pp.cluster import read_markers
    from remnant.sim.cohort import simulate_cohort

    annotation = load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz")
    n_samples = 10  # 3 healthy (reference), 7 MDS
    per = cells // n_samples
    rows = [(f"H{i}", f"H{i}", "", "CD34", "healthy", "droplet") for i in range(1, 4)]
    rows += [(f"P{i}", f"P{i}", "diagnosis", "CD34", "MDS", "droplet") for i in range(1, 8)]
    sheet = pd.DataFrame(rows, columns=["sample", "patient", "timepoint", "population", "condition", "technology"])
    params = {
        "cells_per_sample": {"droplet": per},
        "library_size": {"droplet": {"median": 2500.0, "sdlog": 0.35}},
        "clone_fraction": {"diagnosis": {"CD34": 0.5}},
        "low_quality": {"fraction": 0.0},
        "doublets": {"rate": 0.0},
    }
    sim = simulate_cohort(
        sheet,
        annotation,
        read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
        read_gene_sets(ROOT / "resources/gene_sets"),
        params=params,
        seed=seed,
    )
    parts = []
    for _, row in sheet.iterrows():
        a, _ = map_genes(sim.counts[row["sample"]], annotation, source=row["sample"])
        for key in ("sample", "patient", "condition", "technology"):
            a.obs[key] = row[key]
        a.obs_names = [f"{row['sample']}:{b}" for b in a.obs_names]
        parts.append(a)
    adata = ad.concat(parts, merge="same")
    truth = sim.cells.set_index(sim.cells["sample"] + ":" + sim.cells["barcode"]).loc[adata.obs_names]
    adata.obs["hspc_state"] = truth["state"].to_numpy()
    adata.obs["reference"] = (adata.obs["condition"] == "healthy").to_numpy()
    adata.obs["ref_cat"] = np.where(adata.obs["reference"], adata.obs["hspc_state"].astype(str), "query")
    total = np.asarray(adata.X.sum(axis=0)).ravel()
    keep = np.sort(np.argsort(-total)[:genes])
    adata = adata[:, keep].copy()
    adata.X = adata.X.tocsr().astype(np.float32)
    adata.layers["counts"] = adata.X.copy()
    adata.write_h5ad(path)
    print(
        f"cohort: {adata.n_obs} cells x {adata.n_vars} genes, {adata.X.nnz / adata.n_obs:.0f} nonzero per cell",
        flush=True,
    )


def run(method: str, path: Path, n_jobs: int = 1) -> dict:
    code = CHILD.format(
        src=str(ROOT / "src"),
        path=str(path),
        method=method,
        n_jobs=n_jobs,
        cyto=str(ROOT / "resources/annotation/GRCh38_cytobands.tsv"),
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=50_000)
    ap.add_argument("--genes", type=int, default=15_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cohort.h5ad"
        build(args.cells, args.genes, args.seed, path)
        rows = []
        for label, method, jobs in [
            ("remnant.call_lesions", "remnant", 1),
            ("infercnvpy.tl.infercnv n_jobs=1", "infercnv", 1),
            ("infercnvpy.tl.infercnv n_jobs=2", "infercnv", 2),
        ]:
            r = run(method, path, jobs)
            r = {"step": label, **r, "step_mb": r["peak_mb"] - r["loaded_mb"]}
            rows.append(r)
            print(pd.DataFrame([r]).round(1).to_string(index=False), flush=True)
    table = pd.DataFrame(rows).set_index("step")
    print()
    print(table.round(1).to_string())
    base = table.loc["remnant.call_lesions"]
    for other in table.index[1:]:
        o = table.loc[other]
        largest = max(o["peak_mb"], o["children_peak_mb"])
        print(
            f"{other}: remnant is {o['sec'] / base['sec']:.1f}x faster; its peak memory is {base['peak_mb'] / largest:.2f} "
            f"of infercnvpy's largest process ({base['peak_mb']:.0f} vs {largest:.0f} MB; step increments "
            f"{base['step_mb']:.0f} vs {o['step_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
