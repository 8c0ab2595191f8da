"""Benchmark: does the stem-vs-progenitor contrast hold its level when the two populations are called
with different sensitivity (issue 20)?

Run by hand:  .venv/bin/python benchmarks/contrast_calibration.py [--seeds 20] [--processes 2]

Each seed simulates an independent cohort (remnant.sim.cohort defaults except as stated): 5 MDS
patients at diagnosis, each with an HSC and a PROG sorted sample of 320 droplet barcodes (~285
cells after the planted doublets and low-quality cells are dropped by truth), and 3 healthy donors
(HSC and PROG samples) as the copy-number reference. Stem cells are more quiescent than progenitors
as the simulator has them (quiescent cells carry 0.7x the counts), so HSC carriers are missed more
often. Library sizes: the droplet median is 500 or 2,000 UMI per cell. Scenarios (clone fraction at
diagnosis, HSC vs PROG):

- ``null 0.95``: 0.95 and 0.95 (the simulator's diagnosis level, no difference);
- ``null 0.50``: 0.50 and 0.50;
- ``diff 0.40``: 0.90 and 0.50 (a true difference of 0.40);
- ``diff 0.20``: 0.70 and 0.50 (0.20; the power the test keeps for a smaller difference).

Calls: :func:`remnant.tl.lesions.call_lesions` against the healthy donors with the TRUE HSPC state
(as benchmarks/persistence_coverage.py; QC and clustering are benchmarked elsewhere), then
:func:`remnant.tl.fractions.del_fraction_table` per patient x population x timepoint and the
contrast HSC vs PROG at diagnosis three ways: the corrected test (random-effects meta-analysis of
the per-patient corrected differences, :func:`remnant.stats.contrasts.random_effects_test`, the
headline of contrasts.tsv), and on called cells the Cochran-Mantel-Haenszel test and the binomial
mixed model. ``rejected``: p < 0.05 (in either direction); ``detected``: p < 0.05 in the right
direction (HSC higher). ``corrected`` and ``raw``: mean over seeds of the across-patient
corrected difference and of the mean per-patient difference of called fractions; ``truth``: the
realised difference (mean per patient of the true carrier shares of the analysed cells);
``coverage``: the corrected interval covers the design difference. Then the calibration of the
caller's per-sample error rates against the truth of each sample (``fnr``: share of true carriers
not called; ``fpr``: share of true non-carriers called) and of the corrected fraction's standard
error (``z`` = (corrected - realised) / corrected_se; sd near 1 when the se is right).

Measured on this machine (2 cores, shared with other jobs), 20 seeds (0-19), 2 processes, 197 s:

    # 20 seeds (0..19) per scenario and depth; 5 patients, HSC vs PROG at diagnosis; alpha 0.05; differences are fractions (0-1); 197 s

    ## share of seeds rejecting (null) or detecting in the right direction (difference); mean differences; median ORs
     scenario  UMI  seeds  corrected_rejected  CMH_rejected  mixed_rejected  truth  corrected    raw  coverage  cmh_or  mixed_or  corrected_detected  CMH_detected  mixed_detected
    null 0.95  500     20                 0.0          0.50            0.50 -0.002      0.001 -0.013       1.0   0.886     0.883                 NaN           NaN             NaN
    null 0.50  500     20                 0.0          0.80            0.80 -0.001     -0.013 -0.046       1.0   0.701     0.699                 NaN           NaN             NaN
    diff 0.40  500     20                 NaN           NaN             NaN  0.401      0.380  0.516       1.0  12.118    12.867                 1.0           1.0             1.0
    diff 0.20  500     20                 NaN           NaN             NaN  0.199      0.181  0.140       1.0   2.352     2.361                 0.6           1.0             1.0
    null 0.95 2000     20                 0.0          0.25            0.25 -0.002     -0.002 -0.010       1.0   0.913     0.913                 NaN           NaN             NaN
    null 0.50 2000     20                 0.0          0.40            0.45 -0.001     -0.003 -0.035       1.0   0.870     0.870                 NaN           NaN             NaN
    diff 0.40 2000     20                 NaN           NaN             NaN  0.401      0.401  0.436       1.0   8.055     8.084                 1.0           1.0             1.0
    diff 0.20 2000     20                 NaN           NaN             NaN  0.199      0.198  0.178       1.0   2.077     2.079                 1.0           1.0             1.0

    ## per-sample calibration: the caller's fnr/fpr vs the truth of the sample; z = (corrected - realised) / corrected_se
     UMI  scenario population  samples  true_fnr   fnr  fnr_error  fnr_error_sd  true_fpr   fpr  realised  corrected  z_mean  z_sd
     500 null 0.95        HSC      100     0.135 0.125     -0.010         0.020     0.384 0.342     0.949      0.938  -0.021 0.824
     500 null 0.95       PROG      100     0.121 0.112     -0.009         0.020     0.365 0.361     0.951      0.937  -0.077 0.902
     500 null 0.50        HSC      100     0.797 0.788     -0.009         0.023     0.014 0.013     0.497      0.468  -0.202 0.491
     500 null 0.50       PROG      100     0.713 0.703     -0.009         0.027     0.021 0.014     0.498      0.485  -0.098 0.574
     500 diff 0.40        HSC      100     0.274 0.256     -0.017         0.027     0.227 0.193     0.900      0.873  -0.246 0.821
     500 diff 0.40       PROG      100     0.702 0.698     -0.004         0.028     0.022 0.015     0.498      0.494  -0.002 0.596
     500 diff 0.20        HSC      100     0.602 0.588     -0.015         0.029     0.054 0.045     0.697      0.664  -0.270 0.670
     500 diff 0.20       PROG      100     0.714 0.703     -0.010         0.027     0.021 0.014     0.498      0.484  -0.100 0.581
    2000 null 0.95        HSC      100     0.041 0.040     -0.001         0.009     0.127 0.106     0.949      0.949   0.070 0.520
    2000 null 0.95       PROG      100     0.031 0.030     -0.001         0.008     0.105 0.110     0.951      0.951   0.018 0.488
    2000 null 0.50        HSC      100     0.261 0.260     -0.001         0.038     0.014 0.014     0.497      0.495  -0.025 0.625
    2000 null 0.50       PROG      100     0.191 0.192      0.001         0.035     0.014 0.014     0.498      0.498   0.007 0.625
    2000 diff 0.40        HSC      100     0.068 0.067     -0.001         0.014     0.082 0.069     0.900      0.900   0.061 0.611
    2000 diff 0.40       PROG      100     0.190 0.192      0.002         0.034     0.014 0.014     0.498      0.499   0.023 0.617
    2000 diff 0.20        HSC      100     0.169 0.167     -0.002         0.022     0.030 0.026     0.697      0.696   0.002 0.503
    2000 diff 0.20       PROG      100     0.190 0.192      0.002         0.034     0.014 0.014     0.498      0.499   0.025 0.610

Reading: at 500 UMI per cell, CMH and the mixed model on called cells reject a true null in 50-80%
of cohorts (25-45% at 2,000 UMI); the corrected test in none, and it detects the 0.40 difference
in every cohort at both depths (targets: false positives <= 0.1, power >= 0.9). A further 100
seeds (20-119; nulls and ``diff 0.20``; ``--seeds 100 --seed 20 --scenarios ...``, 828 s) gave
the same: corrected test 0/100 false positives in each null at both depths (CMH 20-69%), power
0.71 for a 0.20 difference at 500 UMI (CMH 0.99, but it rejects 61-69% of those nulls) and 1.00
at 2,000.
The test is conservative: the delta-method standard errors overstate the per-sample error
(``z_sd`` 0.49-0.90: the called share and the fnr estimate come from the same cells' posteriors,
and the delta method treats them as independent), and the pooled variance
is floored at the DerSimonian-Laird one. Without that floor (plain Hartung-Knapp, on the same
100 seeds' per-patient values, saved with ``--save``) power at 0.20 / 500 UMI was 0.99 but false
positives reached 0.09 in the null at 0.50 (0.04-0.06 in the others), where the calls carry little
information (1 - fpr - fnr ~0.2 in stem cells; in 40% of cohorts 1-3 patients were left out for
1 - fpr - fnr < 0.1) and small biases of the corrected fractions are not averaged away.

Calibration of the caller's fnr: at 2,000 UMI within 0.3 points of the truth in both populations;
at 500 UMI it is 0.4-1.7 points too low (posteriors slightly over-confident at low depth), alike in
HSC and PROG. Divided by 1 - fpr - fnr, that puts the corrected fractions 1-3 points low at 500 UMI
(up to 3 points where 1 - fpr - fnr ~0.2), again alike in both populations, so the corrected
difference stays within 2 points of the truth. The caller's fpr (measured on the whole reference)
is 4 points below the realised share of HSC non-carriers called at a prior of 0.95 (0.35 vs 0.40;
quiescent stem cells are called more readily than the pooled reference); it moves the corrected
fraction by < 0.5 points there (non-carriers are 5% of cells).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from persistence_coverage import simulate  # noqa: E402

from remnant.io.annotation import chromosome_arms, load_cytobands, load_genes  # noqa: E402
from remnant.io.genesets import read_gene_sets  # noqa: E402
from remnant.pp.cluster import read_markers  # noqa: E402
from remnant.stats.contrasts import binomial_mixed_contrast, stratified_contrast  # noqa: E402
from remnant.tl.fractions import del_fraction_table  # noqa: E402
from remnant.tl.lesions import call_lesions, parse_lesions  # noqa: E402

SCENARIOS = {"null 0.95": (0.95, 0.95), "null 0.50": (0.50, 0.50), "diff 0.40": (0.90, 0.50), "diff 0.20": (0.70, 0.50)}
DEPTHS = (500.0, 2000.0)
N_PATIENTS, N_HEALTHY, BARCODES = 5, 3, 320
ALPHA = 0.05
_RESOURCES: dict = {}


def sheet() -> pd.DataFrame:
    rows = [
        {
            "sample": f"P{i}_diagnosis_{pop}",
            "patient": f"P{i}",
            "timepoint": "diagnosis",
            "population": pop,
            "condition": "MDS",
            "technology": "droplet",
        }
        for i in range(1, N_PATIENTS + 1)
        for pop in ("HSC", "PROG")
    ]
    rows += [
        {
            "sample": f"H{i}_{pop}",
            "patient": f"H{i}",
            "timepoint": "",
            "population": pop,
            "condition": "healthy",
            "technology": "droplet",
        }
        for i in range(1, N_HEALTHY + 1)
        for pop in ("HSC", "PROG")
    ]
    return pd.DataFrame(rows)


def resources() -> dict:
    if not _RESOURCES:
        cyto = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
        _RESOURCES.update(
            genes=load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz"),
            markers=read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
            gene_sets=read_gene_sets(ROOT / "resources/gene_sets"),
            lesions=parse_lesions(None, cyto, chromosome_arms(cyto)),
        )
    return _RESOURCES


def replicate(task: tuple[int, float, tuple[str, ...]]) -> tuple[list[dict], list[pd.DataFrame]]:
    """One seed at one depth, the given scenarios: the contrast rows and the per-sample calibration rows."""
    seed, depth, scenarios = task
    warnings.simplefilter("ignore")
    res = resources()
    contrasts, samples = [], []
    for scenario in scenarios:
        f_hsc, f_prog = SCENARIOS[scenario]
        params = {
            "cells_per_sample": {"droplet": BARCODES},
            "library_size": {"droplet": {"median": depth}},
            "clone_fraction": {"diagnosis": {"HSC": f_hsc, "PROG": f_prog}},
        }
        adata = simulate(sheet(), res["genes"], res["markers"], res["gene_sets"], params, seed)
        ref = (adata.obs["condition"] == "healthy").to_numpy()
        call_lesions(adata, res["lesions"], reference=ref, batch_key="technology")
        info = adata.uns["lesions"]["del5q"]
        obs = adata.obs[~ref].copy()
        table = del_fraction_table(obs, info["per_sample"], n_reference=info["params"]["n_reference"])
        truth = obs.groupby(["patient", "population"], observed=True)["truth"].mean()
        table["realised"] = [truth[(p, q)] for p, q in zip(table["patient"], table["population"])]
        c = stratified_contrast(
            table, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "diagnosis"}
        )
        pooled = c[c["scope"] == "across patients"].iloc[0]
        mixed = binomial_mixed_contrast(
            obs, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "diagnosis"}
        ).iloc[0]
        realised = truth.unstack()
        contrasts.append(
            {
                "scenario": scenario,
                "depth": depth,
                "seed": seed,
                "design": f_hsc - f_prog,
                "truth": float((realised["HSC"] - realised["PROG"]).mean()),
                "corrected": pooled["corrected_difference"],
                "corrected_low": pooled["corrected_difference_low"],
                "corrected_high": pooled["corrected_difference_high"],
                "corrected_p": pooled["corrected_pvalue"],
                "raw": pooled["difference"],
                "cmh_or": pooled["odds_ratio"],
                "cmh_p": pooled["pvalue"],
                "mixed_or": mixed["odds_ratio"],
                "mixed_p": mixed["pvalue"],
                # per patient, for --save (other pooling rules can be tried on them)
                "patient_corrected": list(c.loc[c["scope"] == "patient", "corrected_difference"]),
                "patient_se": list(c.loc[c["scope"] == "patient", "corrected_se"]),
            }
        )
        per = obs.groupby("sample", observed=True).agg(carriers=("truth", "sum"), n=("truth", "size"))
        per["missed"] = obs[obs["truth"]].groupby("sample", observed=True)["del5q_call"].apply(lambda c: (~c).sum())
        per["false_calls"] = obs[~obs["truth"]].groupby("sample", observed=True)["del5q_call"].sum()
        per = per.fillna(0).join(info["per_sample"][["fpr", "fnr"]])
        per["population"] = [s.rsplit("_", 1)[1] for s in per.index]
        per = per.merge(
            table[["patient", "population", "corrected", "corrected_se", "realised"]]
            .assign(sample=lambda t: t["patient"] + "_diagnosis_" + t["population"])
            .drop(columns=["patient", "population"]),
            left_index=True,
            right_on="sample",
        )
        samples.append(per.assign(scenario=scenario, depth=depth, seed=seed))
    return contrasts, samples


def summarise(contrasts: pd.DataFrame) -> pd.DataFrame:
    c = contrasts.copy()
    right = np.sign(c["design"])
    c["corrected_sig"] = (c["corrected_low"] > 0) | (c["corrected_high"] < 0)
    out = []
    for (scenario, depth), g in c.groupby(["scenario", "depth"], sort=False):
        null = (g["design"] == 0).all()
        row = {"scenario": scenario, "UMI": int(depth), "seeds": len(g)}
        for name, sig, direction in (
            ("corrected", g["corrected_sig"], np.sign(g["corrected"])),
            ("CMH", g["cmh_p"] < ALPHA, np.sign(np.log(g["cmh_or"]))),
            ("mixed", g["mixed_p"] < ALPHA, np.sign(np.log(g["mixed_or"]))),
        ):
            rate = sig if null else sig & (direction == right[g.index])
            row[f"{name}_{'rejected' if null else 'detected'}"] = float(rate.mean())
        row.update(
            truth=g["truth"].mean(),
            corrected=g["corrected"].mean(),
            raw=g["raw"].mean(),
            coverage=float(((g["corrected_low"] <= g["design"]) & (g["design"] <= g["corrected_high"])).mean()),
            cmh_or=float(np.exp(np.log(g["cmh_or"]).median())),
            mixed_or=float(np.exp(np.log(g["mixed_or"]).median())),
        )
        out.append(row)
    return pd.DataFrame(out)


def calibration(samples: pd.DataFrame) -> pd.DataFrame:
    s = samples.copy()
    s["true_fnr"] = s["missed"] / s["carriers"].where(s["carriers"] > 0)
    s["true_fpr"] = s["false_calls"] / (s["n"] - s["carriers"]).where(s["n"] > s["carriers"])
    s["fnr_error"] = s["fnr"] - s["true_fnr"]
    s["z"] = (s["corrected"] - s["realised"]) / s["corrected_se"]
    g = s.groupby(["depth", "scenario", "population"], sort=False)
    out = g.agg(
        samples=("fnr", "size"),
        true_fnr=("true_fnr", "mean"),
        fnr=("fnr", "mean"),
        fnr_error=("fnr_error", "mean"),
        fnr_error_sd=("fnr_error", "std"),
        true_fpr=("true_fpr", "mean"),
        fpr=("fpr", "mean"),
        realised=("realised", "mean"),
        corrected=("corrected", "mean"),
        z_mean=("z", "mean"),
        z_sd=("z", "std"),
    )
    out = out.reset_index()
    out["depth"] = out["depth"].astype(int)
    return out.rename(columns={"depth": "UMI"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    ap.add_argument("--save", help="also write the per-seed rows to this prefix (_contrasts.tsv, _samples.tsv)")
    args = ap.parse_args()
    tasks = [(s, d, tuple(args.scenarios)) for d in DEPTHS for s in range(args.seed, args.seed + args.seeds)]
    t0 = time.perf_counter()
    results = []
    if args.processes > 1:
        from multiprocessing import get_context

        with get_context("fork").Pool(args.processes) as pool:
            for i, r in enumerate(pool.imap_unordered(replicate, tasks), 1):
                results.append(r)
                print(f"{i}/{len(tasks)} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    else:
        for i, task in enumerate(tasks, 1):
            results.append(replicate(task))
            print(f"{i}/{len(tasks)} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    contrasts = pd.DataFrame([row for r in results for row in r[0]])
    samples = pd.concat([df for r in results for df in r[1]], ignore_index=True)
    order = {s: i for i, s in enumerate(SCENARIOS)}
    contrasts = contrasts.sort_values(
        ["depth", "scenario", "seed"], key=lambda x: x.map(order) if x.name == "scenario" else x
    )
    if args.save:
        contrasts.to_csv(f"{args.save}_contrasts.tsv", sep="\t", index=False)
        samples.to_csv(f"{args.save}_samples.tsv", sep="\t", index=False)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 50)
    print(
        f"# {args.seeds} seeds ({args.seed}..{args.seed + args.seeds - 1}) per scenario and depth; {N_PATIENTS} patients, "
        f"HSC vs PROG at diagnosis; alpha {ALPHA}; differences are fractions (0-1); {time.perf_counter() - t0:.0f} s\n"
    )
    print(
        "## share of seeds rejecting (null) or detecting in the right direction (difference); mean differences; median ORs"
    )
    print(summarise(contrasts).round(3).to_string(index=False))
    print(
        "\n## per-sample calibration: the caller's fnr/fpr vs the truth of the sample; z = (corrected - realised) / corrected_se"
    )
    print(calibration(samples).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
