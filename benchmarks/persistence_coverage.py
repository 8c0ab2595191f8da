"""Benchmark of the persistence statistics (remnant.persistence, remnant.signatures) on seeded simulated cohorts.

Run by hand:  .venv/bin/python benchmarks/persistence_coverage.py [--replicates 50] [--seed 0]

Each replicate simulates the demo cohort (config/samples.tsv: 4 MDS patients x HSC/PROG x
diagnosis/remission/relapse, 3 healthy donors; droplet 250 cells, plate 96 cells per sample) with
the simulator's defaults, twice:

- ``persistence``: the default clone fractions (remission: HSC 0.40, PROG 0.03);
- ``none``: no persistence (remission: HSC 0.03 = PROG 0.03).

Doublets and low-quality cells are dropped by truth and the annotated state is the TRUE simulated
state (QC and clustering are benchmarked elsewhere). Two kinds of calls are scored:

- ``cnv``: :func:`remnant.lesions.call_lesions` against the healthy donors (the real chain), with
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

from remnant.annotation import chromosome_arms, load_cytobands, load_genes  # noqa: E402
from remnant.cluster import read_markers  # noqa: E402
from remnant.genesets import read_gene_sets  # noqa: E402
from remnant.io import map_genes  # noqa: E402
from remnant.lesions import call_lesions, parse_lesions  # noqa: E402
from remnant.persistence import del_fraction_table, stratified_contrast  # noqa: E402
from remnant.signatures import compare_groups, read_signatures, score_signatures  # noqa: E402
from remnant.simulate import DEFAULT_PARAMS, simulate_cohort  # noqa: E402

SIGNATURES = ["GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP", "EPPERT_HSC_R", "JAATINEN_HEMATOPOIETIC_STEM_CELL_UP",
              "LSC17_NG2016", "TIROSH2016_G2M"]
ORACLE_FPR, ORACLE_FNR = 0.01, 0.25


def demo_sheet() -> pd.DataFrame:
    sheet = pd.read_csv(ROOT / "config/samples.tsv", sep="\t", dtype=str, keep_default_na=False)
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
        call_lesions(adata, lesions, reference_mask=ref, batch_key="technology")  # as the workflow (cnv.batch_key)
        mds = adata[~ref].copy()
        probability = (DEFAULT_PARAMS["clone_fraction"] if scenario == "persistence" else params["clone_fraction"])
        for kind in ("cnv", "oracle"):
            if kind == "cnv":
                obs, rates = mds.obs, mds.uns["lesions"]["del5q"]["per_sample"]
                n_ref = mds.uns["lesions"]["del5q"]["params"]["n_reference"]
            else:
                obs, rates = oracle_calls(mds.obs, rng)
                n_ref = None
            for level, by in (("pooled", ["population", "timepoint"]), ("patient", ["patient", "population", "timepoint"])):
                table = del_fraction_table(obs, rates, by=by, n_reference=n_ref).merge(truth_of(obs, by), on=by)
                table["probability"] = [probability[t][p] for p, t in zip(table["population"], table["timepoint"])]
                table = table.assign(scenario=scenario, calls=kind, level=level, seed=seed)
                rows.append(table)
            per_patient = del_fraction_table(obs, rates, n_reference=n_ref)
            c = stratified_contrast(per_patient, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "remission"})
            pooled = c.iloc[-1]
            contrasts.append({"scenario": scenario, "calls": kind, "seed": seed, "odds_ratio": pooled["odds_ratio"],
                              "pvalue": pooled["pvalue"], "detected": bool(pooled["pvalue"] < 0.05 and pooled["odds_ratio"] > 1),
                              "corrected_difference": pooled["corrected_difference"]})
        if scenario == "persistence":
            hsc = mds[(mds.obs["population"] == "HSC") & (mds.obs["timepoint"] == "remission") & (mds.obs["hspc_state"] == "HSC")].copy()
            hsc.obs["group"] = np.where(hsc.obs["truth"], "del5q", "non-del")
            score_signatures(hsc, sets, exclude=lesions, also_with_lesion_genes=True, seed=seed)
            for name in sets:
                for variant, key in (("lesion genes excluded", f"sig_{name}"), ("conventional", f"sig_{name}_with_lesion_genes")):
                    out = compare_groups(hsc.obs, key, factor="group", level="del5q", reference="non-del")
                    m = out[out["test"].str.startswith("linear mixed")].iloc[0]
                    p = out[out["test"].str.startswith("paired t")].iloc[0]
                    dosage.append({"signature": name, "variant": variant, "seed": seed, "difference": m["difference"],
                                   "mixed_p": m["pvalue"], "paired_p": p["pvalue"]})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(contrasts), pd.DataFrame(dosage)


def summarise(fractions: pd.DataFrame) -> pd.DataFrame:
    f = fractions.dropna(subset=["corrected"]).copy()
    f["err_realised"] = f["corrected"] - f["realised"]
    f["err_probability"] = f["corrected"] - f["probability"]
    f["within3"] = f["err_realised"].abs() <= 0.03
    f["covers"] = (f["corrected_low"] <= f["probability"]) & (f["probability"] <= f["corrected_high"])
    f["covers_realised"] = (f["corrected_low"] <= f["realised"]) & (f["realised"] <= f["corrected_high"])
    g = f.groupby(["calls", "level", "scenario", "population", "timepoint"], sort=True)
    out = g.agg(n=("corrected", "size"), truth=("probability", "first"), cells=("n_cells", "mean"),
                raw=("fraction", "mean"), corrected=("corrected", "mean"), err_realised=("err_realised", "mean"),
                mae_realised=("err_realised", lambda e: e.abs().mean()), within3=("within3", "mean"),
                coverage=("covers", "mean"), coverage_realised=("covers_realised", "mean"))
    out["not_correctable"] = fractions.groupby(["calls", "level", "scenario", "population", "timepoint"])["corrected"].apply(
        lambda c: c.isna().mean())
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
        print(f"replicate {r + 1}/{args.replicates} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    fractions, contrasts, dosage = (pd.concat(x, ignore_index=True) for x in (fr, co, do))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 500)
    print(f"# {args.replicates} replicate cohorts, seeds {args.seed}..{args.seed + args.replicates - 1}; fractions 0-1\n")
    print("## del(5q) fraction: corrected estimate vs truth (pooled over the 4 patients, and per patient)")
    print(summarise(fractions).round(3).to_string(index=False))
    print("\n## stem vs progenitor at remission (CMH, patient strata): share of replicates detecting persistence")
    print(contrasts.groupby(["calls", "scenario"]).agg(n=("detected", "size"), detected=("detected", "mean"),
                                                        median_or=("odds_ratio", "median"),
                                                        corrected_difference=("corrected_difference", "mean")).round(3).to_string())
    print("\n## dosage: remission HSC, del vs non-del (truth) with identical quiescence; linear mixed model per replicate")
    print(dosage.groupby(["signature", "variant"]).agg(n=("difference", "size"), mean_difference=("difference", "mean"),
                                                        sd=("difference", "std"),
                                                        mixed_p_lt_005=("mixed_p", lambda p: (p < 0.05).mean()),
                                                        paired_p_lt_005=("paired_p", lambda p: (p < 0.05).mean())).round(4).to_string())


if __name__ == "__main__":
    main()
