"""Benchmark of the genome-wide copy-number view (remnant.tl.profile, remnant.tl.breakpoints) on simulated cohorts.

Run by hand:
    .venv/bin/python benchmarks/cnv_profile.py breakpoints [--patients 10] [--cells 300] [--depth 2000]
    .venv/bin/python benchmarks/cnv_profile.py speed [--cells 20000]

``breakpoints``: one cohort of 3 healthy reference donors (CD34, ``--cells`` each) and
``--patients`` MDS patients (one CD34 diagnosis sample of ``--cells`` cells each, clone fraction
``--clone``), each with its own simulated del(5q) breakpoints (proximal 65-80 Mb, distal
140-160.5 Mb). Cells are called with remnant.tl.lesions.call_lesions (TRUE simulated states as the
annotation); breakpoints are estimated from the called cells and compared with the truth. Printed
per patient: truth, estimate, error (bp and in scanned genes between truth and estimate), whether
the bootstrap interval covers the truth; then a summary (median/90th percentile/max |error|,
coverage) per ``min_expected`` value.

``speed``: time and peak memory of ``infer_profile`` (from raw counts: gene filter, normalisation,
state-matched categories, infercnvpy, window table) against plain ``infercnvpy.tl.infercnv`` on
the same cells and genes, already normalised, with one reference category (``plain``) and with the
same state categories (``plain_states``; ``plain_states_cohort`` keeps the cohort's counts in
memory as a caller of infer_profile does), each in a fresh process;
peak memory is the largest resident set of the process tree (infercnvpy runs a worker process
even with n_jobs=1), sampled every 20 ms.

Measured on this machine (2 cores shared with other jobs, so times vary by +-40%):

breakpoints, 2,000 UMI/cell, 300 cells per sample, clone 0.6 (~120-160 called cells per patient),
default settings (min_expected 5, 200 replicates, 95% intervals); |error| over both breakpoints:

    seed  patients  median_Mb  p90_Mb  max_Mb  max_err_genes  interval_coverage  sec
       0        10       0.73    2.22    3.34              5               0.95  2.4
       1        20       0.52    1.68    2.54              5               1.00  1.9
    500 UMI (seed 2, 10 patients, 33-116 called cells):   median 1.8, p90 10.4, max 19.4 Mb
                                                          (max 2 genes; coverage 1.00)
    10,000 UMI (seed 2, 10 patients):                     median 0.11, p90 0.39, max 1.26 Mb (coverage 1.00)

The rows above predate the simulator's confounders (on by default since issue 17). With them, the
depth's genes matter (``--depth-genes``, both in one run; default = the calls' depth genes, plain =
every autosomal gene off the chromosome):

    seed  patients  depth_genes  median_Mb  p90_Mb  max_Mb  max_err_genes  interval_coverage
       0        10  default           0.28    2.12    5.48              6               0.85
       0        10  plain             0.55    5.64   10.20             12               0.85
       1        20  default           0.76    2.56    6.01             11               0.93
       1        20  plain             1.09    2.59   16.20             16               0.93

Errors in Mb are set by the gaps between genes with enough expected counts (the estimate is
rarely more than 1-2 such genes off); at 500 UMI few genes qualify and gaps are wide, and the
intervals widen with them. ``ratio`` is 0.42-0.50: called cells are selected for low 5q counts.

speed, 19,998 cells x 38,912 genes (9,594 used), window 100, step 10, n_jobs=1, two rounds
(after issue 8: infer_profile reads the counts in blocks of 10,000 cells and runs infercnvpy's
chunks in its own process):

    method               sec          peak_tree_MB
    plain                8.0-9.0      2,086-2,096 (one reference category, cohort freed)
    plain_states         10.0-12.5    2,284-2,293 (state categories, cohort freed)
    plain_states_cohort  9.6-11.9     2,651-2,657 (state categories, cohort counts kept)
    infer_profile        11.7-14.7    1,302-1,303

infer_profile takes ~20% longer than infercnvpy with the same categories (a pass over the
reference cells for the gene filter and the state means, and normalisation per block) at half
its memory: infercnvpy 0.6 forks a worker even with n_jobs=1 and slices the whole matrix into
chunks up front; the state categories themselves add ~200 MB (infercnvpy's bounded difference
builds extra dense blocks). Before issue 8 (one infercnvpy call on the whole matrix):
11.7-20.0 s, 2,635-2,656 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def cohort(n_patients: int, cells: int, depth: float, clone: float, seed: int):
    import anndata as ad
    import scipy.sparse as sp
    import simulated as S

    from remnant.io.counts import map_genes
    from remnant.sim.cohort import simulate_cohort

    rows = [(f"H{i}_CD34", f"H{i}", "", "CD34", "healthy", "droplet") for i in (1, 2, 3)]
    rows += [(f"P{i}_dx", f"P{i}", "diagnosis", "CD34", "MDS", "droplet") for i in range(1, n_patients + 1)]
    params = {
        "cells_per_sample": {"droplet": cells},
        "library_size": {"droplet": {"median": depth, "sdlog": 0.35}},
        "clone_fraction": {"diagnosis": {"CD34": clone}},
        "clone_sampling": "exact",
        "low_quality": {"fraction": 0.0},
        "doublets": {"rate": 0.0},
    }
    sheet = S.sheet(rows)
    sim = simulate_cohort(
        sheet, S.genes(), S.markers(), S.read_gene_sets(S.ROOT / "resources/gene_sets"), params=params, seed=seed
    )
    parts = []
    for sample, row in sheet.iterrows():
        a, _ = map_genes(sim.counts[sample], S.genes(), source=sample)
        for key in ("sample", "patient", "timepoint", "population", "condition"):
            a.obs[key] = row[key]
        a.obs_names = [f"{sample}:{b}" for b in a.obs_names]
        parts.append(a)
    adata = ad.concat(parts, merge="same")
    truth = sim.cells.set_index(sim.cells["sample"] + ":" + sim.cells["barcode"]).loc[adata.obs_names]
    adata.obs["hspc_state"] = truth["state"].to_numpy()
    adata.obs["truth"] = truth["lesion_del5q"].to_numpy(bool)
    adata.obs["reference"] = (adata.obs["condition"] == "healthy").to_numpy()
    adata.layers["counts"] = sp.csr_matrix(adata.X)
    adata.X = None
    return adata, sim.patients


def breakpoints(args) -> None:
    from remnant.io.annotation import load_cytobands
    from remnant.tl.breakpoints import lesion_sums
    from remnant.tl.depth import DepthGenes
    from remnant.tl.lesions import call_lesions, parse_lesions

    cytobands = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    (lesion,) = parse_lesions(None, cytobands)
    t = time.perf_counter()
    adata, patients = cohort(args.patients, args.cells, args.depth, args.clone, args.seed)
    print(f"simulated {adata.n_obs} cells in {time.perf_counter() - t:.1f} s", flush=True)
    call_lesions(adata, [lesion], reference="reference")
    truth = patients[patients["lesion"] == "del5q"].set_index("patient")
    summary = []
    for depth_name in args.depth_genes:
        # the depth's genes: the calls' (families and each group's top genes left out) or every gene
        genes = DepthGenes() if depth_name == "default" else DepthGenes.plain()
        sums = lesion_sums(adata, [lesion], reference="reference", depth_genes=genes)[lesion.name]
        summary += _breakpoint_runs(args, adata, lesion, sums, truth, cytobands, depth_name)
    print("\nsummary (both breakpoints of every patient)")
    print(pd.DataFrame(summary).round(3).to_string(index=False))


def _breakpoint_runs(args, adata, lesion, sums, truth, cytobands, depth_name) -> list[dict]:
    """One row of the summary per ``--min-expected`` value, breakpoints from ``sums``; prints the per-patient tables."""
    from remnant.tl.breakpoints import _Expectation, estimate_breakpoints

    ex = _Expectation(sums, 20.0)
    summary = []
    for min_expected in args.min_expected:
        t = time.perf_counter()
        bp = estimate_breakpoints(
            adata, lesion, sums=sums, cytobands=cytobands, min_expected=min_expected, n_boot=args.n_boot, seed=args.seed
        )
        sec = time.perf_counter() - t
        bp = bp.loc[bp.index.isin(truth.index)]
        rows = []
        for patient, r in bp.iterrows():
            called = adata.obs["del5q_call"].to_numpy() & (adata.obs["patient"] == patient).to_numpy()
            cells = np.flatnonzero(called)
            mid = ex.mid[ex.expected(cells) >= min_expected]  # the genes estimate_breakpoints scans
            out = {
                "patient": patient,
                "n_called": int(r["n_called"]),
                "precision": float(adata.obs["truth"].to_numpy()[cells].mean()) if cells.size else np.nan,
            }
            for side in ("start", "end"):
                true, est = float(truth.loc[patient, side]), float(r[side])
                out[f"{side}_true"], out[f"{side}_est"] = true, est
                out[f"{side}_err_mb"] = (est - true) / 1e6
                # scanned genes whose midpoint lies between truth and estimate (0: the best possible)
                out[f"{side}_err_genes"] = int(((mid >= min(true, est)) & (mid < max(true, est))).sum())
                out[f"{side}_covered"] = (
                    bool(r[f"{side}_lo"] <= true <= r[f"{side}_hi"]) if np.isfinite(r[f"{side}_lo"]) else False
                )
            out["ratio"] = r["ratio"]
            rows.append(out)
        table = pd.DataFrame(rows).set_index("patient")
        print(
            f"\ndepth genes {depth_name}, min_expected {min_expected}: {sec:.1f} s for {len(bp)} patients"
            f" ({args.n_boot} bootstrap replicates)"
        )
        print(table.round(3).to_string())
        errs_mb = np.abs(np.r_[table["start_err_mb"], table["end_err_mb"]])
        errs_g = np.abs(np.r_[table["start_err_genes"], table["end_err_genes"]])
        cover = np.r_[table["start_covered"], table["end_covered"]]
        summary.append(
            {
                "depth_genes": depth_name,
                "min_expected": min_expected,
                "median_abs_err_mb": np.median(errs_mb),
                "p90_abs_err_mb": np.quantile(errs_mb, 0.9),
                "max_abs_err_mb": errs_mb.max(),
                "median_err_genes": np.median(errs_g),
                "max_err_genes": errs_g.max(),
                "ci_coverage": cover.mean(),
                "sec": sec,
            }
        )
    return summary


# ------------------------------------------------------------------------------------------------
# speed and memory, each method in its own process
# ------------------------------------------------------------------------------------------------
def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0


def _worker(args) -> None:
    """One measurement in this process: prints a JSON line."""
    import anndata as ad
    import infercnvpy as cnv
    import scipy.sparse as sp

    from remnant.tl.profile import infer_profile

    adata = ad.read_h5ad(args.h5ad)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(os.getpid()))
            time.sleep(0.02)

    if args.method.startswith("plain"):
        # the same cells and genes, normalised outside the timing, one reference category
        genes = np.asarray(adata.uns["genes_used"], dtype=str)
        X = adata.layers["counts"]
        total = np.asarray(X.sum(axis=1)).ravel()
        light = ad.AnnData(
            X=sp.csr_matrix(
                sp.diags((1e4 / total).astype(np.float32))
                @ sp.csr_matrix(X[:, adata.var_names.get_indexer(genes)], dtype=np.float32)
            ),
            obs=adata.obs[["reference"]].astype(str),
            var=adata.var.loc[genes, ["chromosome", "start", "end"]].copy(),
        )
        states = list(adata.uns["states_used"])
        light.obs["category"] = np.where(
            adata.obs["reference"] & adata.obs["hspc_state"].isin(states), adata.obs["hspc_state"], "query"
        )
        np.log1p(light.X.data, out=light.X.data)
        if not args.method.endswith("_cohort"):  # "_cohort": the caller keeps its cohort (counts) in memory too
            del adata, X
        base = _tree_rss(os.getpid())
        threading.Thread(target=sample, daemon=True).start()
        t = time.perf_counter()
        if args.method == "plain":
            cnv.tl.infercnv(light, reference_key="reference", reference_cat="True", window_size=100, step=10, n_jobs=1)
        else:
            cnv.tl.infercnv(light, reference_key="category", reference_cat=states, window_size=100, step=10, n_jobs=1)
    else:
        base = _tree_rss(os.getpid())
        threading.Thread(target=sample, daemon=True).start()
        t = time.perf_counter()
        infer_profile(adata, "reference", n_jobs=1)
    sec = time.perf_counter() - t
    stop.set()
    time.sleep(0.05)
    print(json.dumps({"method": args.method, "sec": sec, "peak_tree_mb": peak[0] / 2**20, "baseline_mb": base / 2**20}))


def speed(args) -> None:
    from remnant.tl.profile import infer_profile

    n_patients = 3
    per_sample = args.cells // (n_patients + 3)
    t = time.perf_counter()
    adata, _ = cohort(n_patients, per_sample, args.depth, 0.6, args.seed)
    print(f"simulated {adata.n_obs} cells x {adata.n_vars} genes in {time.perf_counter() - t:.1f} s", flush=True)
    # the genes infer_profile uses, for the plain run (a small probe on the reference cells only)
    probe = adata[adata.obs["reference"].to_numpy()].copy()
    infer_profile(probe, "reference", n_jobs=1)
    adata.uns["genes_used"] = np.asarray(probe.uns["cnv"]["genes"], dtype=str)
    adata.uns["states_used"] = np.asarray(probe.uns["cnv"]["reference_states"], dtype=str)
    print(f"{len(adata.uns['genes_used'])} genes used")
    del probe
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cohort.h5ad"
        adata.write_h5ad(path)
        del adata
        for method in ("plain", "plain_states", "plain_states_cohort", "infer_profile") * args.repeats:
            out = subprocess.run(
                [sys.executable, __file__, "_worker", "--h5ad", str(path), "--method", method],
                capture_output=True,
                text=True,
                check=True,
            )
            print(out.stdout.strip().splitlines()[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("breakpoints")
    b.add_argument("--patients", type=int, default=10)
    b.add_argument("--cells", type=int, default=300)
    b.add_argument("--depth", type=float, default=2000.0)
    b.add_argument("--clone", type=float, default=0.6)
    b.add_argument("--n-boot", type=int, default=200)
    b.add_argument("--min-expected", type=float, nargs="+", default=[5.0])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--depth-genes",
        nargs="+",
        choices=["default", "plain"],
        default=["default", "plain"],
        help="the depth's genes: the calls' (default) and/or every autosomal gene off the chromosome (plain)",
    )
    s = sub.add_parser("speed")
    s.add_argument("--cells", type=int, default=20000)
    s.add_argument("--depth", type=float, default=2000.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--repeats", type=int, default=2)
    w = sub.add_parser("_worker")
    w.add_argument("--h5ad")
    w.add_argument("--method", choices=["plain", "plain_states", "plain_states_cohort", "infer_profile"])
    args = parser.parse_args()
    {"breakpoints": breakpoints, "speed": speed, "_worker": _worker}[args.what](args)


if __name__ == "__main__":
    main()
