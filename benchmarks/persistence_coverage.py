"""Benchmark of the persistence statistics (remnant.tl.fractions, remnant.tl.signatures, remnant.stats) on seeded simulated cohorts.

Run by hand:  .venv/bin/python benchmarks/persistence_coverage.py [--replicates 50] [--seed 0]

Each replicate simulates the demo cohort (config/demo/samples.tsv: 4 MDS patients x HSC/PROG x
diagnosis/remission/relapse, 3 healthy donors; droplet 250 cells, plate 96 cells per sample) with
the simulator's defaults, twice:

- ``persistence``: the default clone fractions (remission: HSC 0.40, PROG 0.03);
- ``none``: no persistence (remission: HSC 0.03 = PROG 0.03).

Doublets and low-quality cells are dropped by truth and the annotated state is the TRUE simulated
state (QC and clustering are benchmarked elsewhere). Two kinds of calls are scored:

- ``cnv``: :func:`remnant.tl.lesions.call_lesions` against the healthy donors (the real chain), with
  its per-sample ``fpr``/``fnr`` feeding the Rogan-Gladen correction;
- ``oracle``: calls drawn from the true carrier status with known error rates (fpr 1%, fnr 25%),
  which isolates the statistics of this module from the quality of the copy-number caller.

Printed per calls x population x timepoint (pooled over patients, the demo's size; and per
patient x population x timepoint): mean error of the corrected fraction against the realised true
carrier fraction of the analysed cells and against the simulated probability, share of replicates
within +-3 points, 95% interval coverage of the simulated probability. Then the detection rate of
the stem-vs-progenitor contrast at remission (CMH p < 0.05 with OR > 1) with and without simulated
persistence. Then the dosage check: remission HSC-state cells of the ``persistence`` cohorts
(identical quiescence in del and non-del cells by construction), del vs non-del (truth) compared
with the linear mixed model, scores with lesion genes excluded vs the conventional score.

Measured on this machine (2 cores, shared), 50 replicates, seeds 0-49, 779 s, with
call_lesions(batch_key="technology") as the workflow calls it (lesions.py of commit 31b2af0).
``within3``: share of replicates (pooled rows) or patient-samples (patient rows) whose corrected
fraction is within 3 points of the realised truth; ``coverage``: 95% interval covers the simulated
probability; ``not_correctable``: 1 - fpr - fnr < 0.1 (nothing called), left out of the other columns.

    # 50 replicate cohorts, seeds 0..49; fractions 0-1

    ## del(5q) fraction: corrected estimate vs truth (pooled over the 4 patients, and per patient)
     calls   level    scenario population timepoint   n  truth   cells   raw  corrected  err_realised  mae_realised  within3  coverage  coverage_realised  not_correctable
       cnv patient        none        HSC diagnosis 200   0.95 157.070 0.938      0.950        -0.001         0.006    1.000     0.970              0.995            0.000
       cnv patient        none        HSC   relapse 200   0.90 157.315 0.881      0.900        -0.001         0.007    0.980     0.955              1.000            0.000
       cnv patient        none        HSC remission 189   0.03 158.243 0.024      0.033         0.001         0.004    1.000     0.989              1.000            0.055
       cnv patient        none       PROG diagnosis 200   0.97 223.260 0.961      0.970        -0.001         0.005    1.000     0.985              1.000            0.000
       cnv patient        none       PROG   relapse 200   0.90 223.375 0.877      0.899         0.001         0.008    0.980     0.990              1.000            0.000
       cnv patient        none       PROG remission 196   0.03 223.332 0.021      0.033         0.002         0.006    0.995     0.990              1.000            0.020
       cnv patient persistence        HSC diagnosis 200   0.95 157.070 0.938      0.950        -0.001         0.006    1.000     0.970              0.995            0.000
       cnv patient persistence        HSC   relapse 200   0.90 157.315 0.881      0.900        -0.000         0.007    0.980     0.955              1.000            0.000
       cnv patient persistence        HSC remission 200   0.40 157.210 0.363      0.398        -0.000         0.011    0.915     0.975              1.000            0.000
       cnv patient persistence       PROG diagnosis 200   0.97 223.260 0.961      0.970        -0.001         0.005    1.000     0.985              1.000            0.000
       cnv patient persistence       PROG   relapse 200   0.90 223.375 0.877      0.899         0.001         0.008    0.985     0.990              1.000            0.000
       cnv patient persistence       PROG remission 196   0.03 223.332 0.021      0.033         0.002         0.005    0.995     0.990              1.000            0.020
       cnv  pooled        none        HSC diagnosis  50   0.95 628.280 0.935      0.950        -0.001         0.004    1.000     0.980              1.000            0.000
       cnv  pooled        none        HSC   relapse  50   0.90 629.260 0.875      0.901         0.000         0.006    1.000     1.000              1.000            0.000
       cnv  pooled        none        HSC remission  50   0.03 628.840 0.020      0.033         0.002         0.004    1.000     1.000              1.000            0.000
       cnv  pooled        none       PROG diagnosis  50   0.97 893.040 0.961      0.970        -0.001         0.003    1.000     0.980              1.000            0.000
       cnv  pooled        none       PROG   relapse  50   0.90 893.500 0.877      0.899         0.001         0.005    1.000     0.980              1.000            0.000
       cnv  pooled        none       PROG remission  50   0.03 893.480 0.020      0.033         0.003         0.004    1.000     0.980              1.000            0.000
       cnv  pooled persistence        HSC diagnosis  50   0.95 628.280 0.935      0.950        -0.001         0.004    1.000     0.980              1.000            0.000
       cnv  pooled persistence        HSC   relapse  50   0.90 629.260 0.875      0.901         0.000         0.006    1.000     1.000              1.000            0.000
       cnv  pooled persistence        HSC remission  50   0.40 628.840 0.351      0.399         0.001         0.009    0.980     0.960              1.000            0.000
       cnv  pooled persistence       PROG diagnosis  50   0.97 893.040 0.961      0.970        -0.001         0.003    1.000     0.980              1.000            0.000
       cnv  pooled persistence       PROG   relapse  50   0.90 893.500 0.877      0.899         0.001         0.005    1.000     0.980              1.000            0.000
       cnv  pooled persistence       PROG remission  50   0.03 893.480 0.020      0.033         0.003         0.004    1.000     0.980              1.000            0.000
    oracle patient        none        HSC diagnosis 200   0.95 157.070 0.714      0.946        -0.005         0.037    0.475     0.985              0.985            0.000
    oracle patient        none        HSC   relapse 200   0.90 157.315 0.678      0.901         0.001         0.036    0.515     0.990              0.995            0.000
    oracle patient        none        HSC remission 200   0.03 157.210 0.033      0.031         0.001         0.011    0.970     0.995              0.995            0.000
    oracle patient        none       PROG diagnosis 200   0.97 223.260 0.727      0.964        -0.006         0.026    0.660     0.995              0.995            0.000
    oracle patient        none       PROG   relapse 200   0.90 223.375 0.679      0.904         0.006         0.030    0.560     1.000              0.995            0.000
    oracle patient        none       PROG remission 200   0.03 223.370 0.032      0.030        -0.000         0.009    1.000     0.975              1.000            0.000
    oracle patient persistence        HSC diagnosis 200   0.95 157.070 0.715      0.948        -0.002         0.034    0.525     0.995              1.000            0.000
    oracle patient persistence        HSC   relapse 200   0.90 157.315 0.676      0.899        -0.002         0.038    0.470     0.995              1.000            0.000
    oracle patient persistence        HSC remission 200   0.40 157.210 0.303      0.396        -0.002         0.024    0.705     0.985              1.000            0.000
    oracle patient persistence       PROG diagnosis 200   0.97 223.260 0.727      0.964        -0.006         0.024    0.685     0.995              0.995            0.000
    oracle patient persistence       PROG   relapse 200   0.90 223.375 0.672      0.894        -0.004         0.032    0.580     0.985              0.995            0.000
    oracle patient persistence       PROG remission 200   0.03 223.370 0.032      0.030         0.000         0.009    0.985     0.970              1.000            0.000
    oracle  pooled        none        HSC diagnosis  50   0.95 628.280 0.714      0.951         0.000         0.018    0.840     1.000              1.000            0.000
    oracle  pooled        none        HSC   relapse  50   0.90 629.260 0.677      0.901         0.000         0.020    0.780     0.980              1.000            0.000
    oracle  pooled        none        HSC remission  50   0.03 628.840 0.033      0.031         0.001         0.005    1.000     0.980              1.000            0.000
    oracle  pooled        none       PROG diagnosis  50   0.97 893.040 0.727      0.967        -0.003         0.015    0.900     1.000              1.000            0.000
    oracle  pooled        none       PROG   relapse  50   0.90 893.500 0.679      0.904         0.006         0.015    0.880     1.000              1.000            0.000
    oracle  pooled        none       PROG remission  50   0.03 893.480 0.032      0.030        -0.000         0.005    1.000     0.960              1.000            0.000
    oracle  pooled persistence        HSC diagnosis  50   0.95 628.280 0.715      0.953         0.002         0.018    0.860     1.000              1.000            0.000
    oracle  pooled persistence        HSC   relapse  50   0.90 629.260 0.674      0.898        -0.003         0.018    0.860     1.000              1.000            0.000
    oracle  pooled persistence        HSC remission  50   0.40 628.840 0.304      0.397        -0.001         0.010    0.980     1.000              1.000            0.000
    oracle  pooled persistence       PROG diagnosis  50   0.97 893.040 0.727      0.969        -0.002         0.016    0.920     0.980              1.000            0.000
    oracle  pooled persistence       PROG   relapse  50   0.90 893.500 0.672      0.894        -0.004         0.020    0.800     1.000              1.000            0.000
    oracle  pooled persistence       PROG remission  50   0.03 893.480 0.032      0.030         0.000         0.005    1.000     0.960              0.980            0.000

    ## stem vs progenitor at remission (CMH, patient strata): share of replicates detecting persistence
                         n  detected  median_or  corrected_difference
    calls  scenario
    cnv    none         50      0.00      1.071                -0.000
           persistence  50      1.00     26.988                 0.366
    oracle none         50      0.02      0.957                 0.001
           persistence  50      1.00     13.043                 0.366

    ## dosage: remission HSC, del vs non-del (truth) with identical quiescence; linear mixed model per replicate
                                                                          n  mean_difference      sd  mixed_p_lt_005  paired_p_lt_005
    signature                                     variant
    EPPERT_HSC_R                                  conventional           50          -0.0028  0.0026            0.08             0.08
                                                  lesion genes excluded  50          -0.0002  0.0029            0.02             0.08
    GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP conventional           50          -0.0023  0.0085            0.04             0.06
                                                  lesion genes excluded  50          -0.0007  0.0069            0.00             0.04
    JAATINEN_HEMATOPOIETIC_STEM_CELL_UP           conventional           50          -0.0015  0.0020            0.12             0.04
                                                  lesion genes excluded  50           0.0001  0.0020            0.04             0.06
    LSC17_NG2016                                  conventional           50          -0.0009  0.0060            0.06             0.14
                                                  lesion genes excluded  50           0.0004  0.0048            0.02             0.06
    TIROSH2016_G2M                                conventional           50           0.0023  0.0069            0.12             0.10
                                                  lesion genes excluded  50           0.0022  0.0061            0.06             0.04

Reading: with the copy-number calls, every population x timepoint pooled over the 4 patients is
within +-3 points of the realised truth in >= 98% of replicates (mean absolute error <= 0.9
points) and its 95% interval covers the simulated probability in 96-100% of replicates (patient
rows 95.5-99%). Persistence (HSC 0.40 vs PROG 0.03 at remission) is detected in 50/50 cohorts and
never (0/50) when absent (HSC = PROG = 0.03; oracle calls 1/50). The oracle's 25% miss rate is
harsher than the caller's: its corrected fractions stay unbiased and covered (>= 96%), but at
fractions near 0.9 misclassification noise puts only 78-92% of pooled estimates within 3 points.
Dosage: with identical quiescence, the conventional scores of sets holding 5q genes are lower in
del cells on average (EPPERT_HSC_R -0.0028, JAATINEN -0.0015, GRAHAM quiescence -0.0023 log1p
units; mixed-model p < 0.05 in 4-12% of replicates); with lesion genes excluded the mean
differences are 0.0002-0.0007 in size (p < 0.05 in 0-4%). The bias is small because
score_genes averages over many genes (1 of 64 quiescence genes is on 5q); TIROSH2016_G2M
shows +0.002 in both variants, so not from dosage.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.io.annotation import chromosome_arms, load_cytobands, load_genes  # noqa: E402
from remnant.io.counts import map_genes  # noqa: E402
from remnant.io.genesets import read_gene_sets  # noqa: E402
from remnant.pp.cluster import read_markers  # noqa: E402
from remnant.sim.cohort import DEFAULT_PARAMS, simulate_cohort  # noqa: E402
from remnant.stats.contrasts import stratified_contrast  # noqa: E402
from remnant.tl.fractions import del_fraction_table  # noqa: E402
from remnant.tl.lesions import call_lesions, parse_lesions  # noqa: E402
from remnant.tl.signatures import compare_groups, read_signatures, score_signatures  # noqa: E402

SIGNATURES = [
    "GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP",
    "EPPERT_HSC_R",
    "JAATINEN_HEMATOPOIETIC_STEM_CELL_UP",
    "LSC17_NG2016",
    "TIROSH2016_G2M",
]
ORACLE_FPR, ORACLE_FNR = 0.01, 0.25


def demo_sheet() -> pd.DataFrame:
    sheet = pd.read_csv(ROOT / "config/demo/samples.tsv", sep="\t", dtype=str, keep_default_na=False, comment="#")
    sheet["timepoint"] = sheet["timepoint"].replace("NA", "")
    return sheet


def simulate(sheet, genes, markers, gene_sets, params, seed):
    sim = simulate_cohort(sheet, genes, markers, gene_sets, params=params, seed=seed)
    parts = []
    for _, row in sheet.iterrows():
        a = sim.counts[row["sample"]].copy()
        a.var_names = a.var["gene_ids"].astype(str).to_numpy()  # unique (symbols repeat), mapped below
        for key in ("sample", "patient", "timepoint", "population", "condition", "technology"):
            a.obs[key] = row[key]
        a.obs_names = [f"{row['sample']}:{b}" for b in a.obs_names]
        parts.append(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.concat(parts, merge="same")
        adata, _ = map_genes(adata, genes, source="benchmark")
    truth = sim.cells.set_index(sim.cells["sample"] + ":" + sim.cells["barcode"]).loc[adata.obs_names]
    keep = ~(truth["doublet"] | truth["low_quality"]).to_numpy()
    adata = adata[keep].copy()
    truth = truth.loc[adata.obs_names]
    adata.obs["hspc_state"] = truth["state"].to_numpy()
    adata.obs["truth"] = truth["lesion_del5q"].to_numpy(bool)
    adata.layers["counts"] = adata.X.tocsr()
    return adata


def oracle_calls(obs: pd.DataFrame, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    truth = obs["truth"].to_numpy(bool)
    u = rng.random(len(obs))
    called = np.where(truth, u >= ORACLE_FNR, u < ORACLE_FPR)
    out = obs.assign(del5q_call=called, del5q_posterior=called.astype(float))
    rates = pd.DataFrame({"fpr": ORACLE_FPR, "fnr": ORACLE_FNR}, index=pd.Index(obs["sample"].unique()))
    return out, rates


def truth_of(obs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return obs.groupby(by, observed=True)["truth"].mean().rename("realised").reset_index()


def replicate(seed, sheet, genes, markers, gene_sets, lesions, sets):
    rows, contrasts, dosage = [], [], []
    rng = np.random.default_rng([seed, 99])
    for scenario in ("persistence", "none"):
        params = {}
        if scenario == "none":
            cf = {tp: dict(v) for tp, v in DEFAULT_PARAMS["clone_fraction"].items()}
            cf["remission"]["HSC"] = cf["remission"]["PROG"]
            params = {"clone_fraction": cf}
        adata = simulate(sheet, genes, markers, gene_sets, params, seed)
        ref = (adata.obs["condition"] == "healthy").to_numpy()
        call_lesions(adata, lesions, reference=ref, batch_key="technology")  # as the workflow (cnv.batch_key)
        mds = adata[~ref].copy()
        probability = DEFAULT_PARAMS["clone_fraction"] if scenario == "persistence" else params["clone_fraction"]
        for kind in ("cnv", "oracle"):
            if kind == "cnv":
                obs, rates = mds.obs, mds.uns["lesions"]["del5q"]["per_sample"]
                n_ref = mds.uns["lesions"]["del5q"]["params"]["n_reference"]
            else:
                obs, rates = oracle_calls(mds.obs, rng)
                n_ref = None
            for level, by in (
                ("pooled", ["population", "timepoint"]),
                ("patient", ["patient", "population", "timepoint"]),
            ):
                table = del_fraction_table(obs, rates, by=by, n_reference=n_ref).merge(truth_of(obs, by), on=by)
                table["probability"] = [probability[t][p] for p, t in zip(table["population"], table["timepoint"])]
                table = table.assign(scenario=scenario, calls=kind, level=level, seed=seed)
                rows.append(table)
            per_patient = del_fraction_table(obs, rates, n_reference=n_ref)
            c = stratified_contrast(
                per_patient, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "remission"}
            )
            pooled = c.iloc[-1]
            contrasts.append(
                {
                    "scenario": scenario,
                    "calls": kind,
                    "seed": seed,
                    "odds_ratio": pooled["odds_ratio"],
                    "pvalue": pooled["pvalue"],
                    "detected": bool(pooled["pvalue"] < 0.05 and pooled["odds_ratio"] > 1),
                    "corrected_difference": pooled["corrected_difference"],
                }
            )
        if scenario == "persistence":
            hsc = mds[
                (mds.obs["population"] == "HSC")
                & (mds.obs["timepoint"] == "remission")
                & (mds.obs["hspc_state"] == "HSC")
            ].copy()
            hsc.obs["group"] = np.where(hsc.obs["truth"], "del5q", "non-del")
            score_signatures(hsc, sets, exclude=lesions, also_with_lesion_genes=True, seed=seed)
            for name in sets:
                for variant, key in (
                    ("lesion genes excluded", f"sig_{name}"),
                    ("conventional", f"sig_{name}_with_lesion_genes"),
                ):
                    out = compare_groups(hsc.obs, key, factor="group", level="del5q", reference="non-del")
                    m = out[out["test"].str.startswith("linear mixed")].iloc[0]
                    p = out[out["test"].str.startswith("paired t")].iloc[0]
                    dosage.append(
                        {
                            "signature": name,
                            "variant": variant,
                            "seed": seed,
                            "difference": m["difference"],
                            "mixed_p": m["pvalue"],
                            "paired_p": p["pvalue"],
                        }
                    )
    return pd.concat(rows, ignore_index=True), pd.DataFrame(contrasts), pd.DataFrame(dosage)


def summarise(fractions: pd.DataFrame) -> pd.DataFrame:
    f = fractions.dropna(subset=["corrected"]).copy()
    f["err_realised"] = f["corrected"] - f["realised"]
    f["err_probability"] = f["corrected"] - f["probability"]
    f["within3"] = f["err_realised"].abs() <= 0.03
    f["covers"] = (f["corrected_low"] <= f["probability"]) & (f["probability"] <= f["corrected_high"])
    f["covers_realised"] = (f["corrected_low"] <= f["realised"]) & (f["realised"] <= f["corrected_high"])
    g = f.groupby(["calls", "level", "scenario", "population", "timepoint"], sort=True)
    out = g.agg(
        n=("corrected", "size"),
        truth=("probability", "first"),
        cells=("n_cells", "mean"),
        raw=("fraction", "mean"),
        corrected=("corrected", "mean"),
        err_realised=("err_realised", "mean"),
        mae_realised=("err_realised", lambda e: e.abs().mean()),
        within3=("within3", "mean"),
        coverage=("covers", "mean"),
        coverage_realised=("covers_realised", "mean"),
    )
    out["not_correctable"] = fractions.groupby(["calls", "level", "scenario", "population", "timepoint"])[
        "corrected"
    ].apply(lambda c: c.isna().mean())
    return out.reset_index()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicates", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    genes = load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz")
    markers = read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv")
    gene_sets = read_gene_sets(ROOT / "resources/gene_sets")
    cyto = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    lesions = parse_lesions(None, cyto, chromosome_arms(cyto))
    sets = read_signatures(SIGNATURES, ROOT / "resources/gene_sets")
    sheet = demo_sheet()
    fr, co, do = [], [], []
    t0 = time.perf_counter()
    for r in range(args.replicates):
        a, b, c = replicate(args.seed + r, sheet, genes, markers, gene_sets, lesions, sets)
        fr.append(a)
        co.append(b)
        do.append(c)
        print(
            f"replicate {r + 1}/{args.replicates} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True
        )
    fractions, contrasts, dosage = (pd.concat(x, ignore_index=True) for x in (fr, co, do))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 500)
    print(
        f"# {args.replicates} replicate cohorts, seeds {args.seed}..{args.seed + args.replicates - 1}; fractions 0-1\n"
    )
    print("## del(5q) fraction: corrected estimate vs truth (pooled over the 4 patients, and per patient)")
    print(summarise(fractions).round(3).to_string(index=False))
    print("\n## stem vs progenitor at remission (CMH, patient strata): share of replicates detecting persistence")
    print(
        contrasts.groupby(["calls", "scenario"])
        .agg(
            n=("detected", "size"),
            detected=("detected", "mean"),
            median_or=("odds_ratio", "median"),
            corrected_difference=("corrected_difference", "mean"),
        )
        .round(3)
        .to_string()
    )
    print(
        "\n## dosage: remission HSC, del vs non-del (truth) with identical quiescence; linear mixed model per replicate"
    )
    print(
        dosage.groupby(["signature", "variant"])
        .agg(
            n=("difference", "size"),
            mean_difference=("difference", "mean"),
            sd=("difference", "std"),
            mixed_p_lt_005=("mixed_p", lambda p: (p < 0.05).mean()),
            paired_p_lt_005=("paired_p", lambda p: (p < 0.05).mean()),
        )
        .round(4)
        .to_string()
    )


if __name__ == "__main__":
    main()
