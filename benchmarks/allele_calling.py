"""Allele evidence on simulated cohorts (issue 18): expression alone, alleles alone, joint, and the
same with the true phase (oracle), per depth, allele density and clone fraction.

Each run simulates three healthy donors (a reference sample and a held-out sample each) and two MDS
patients with one diagnosis sample each at the given clone fraction, with the simulator's allele
counts (``alleles`` block: het SNPs on expressed genes of 5q and a control region, bursting,
sequencing error) and its real-cell confounders (disease programme, other-type cells, ...). The
workflow's steps run in memory: :func:`remnant.tl.call_lesions` against the reference samples,
then :func:`remnant.tl.add_allele_evidence` phases each patient's sites from its own cells and adds
the allele LLR. The oracle is the same with each site's true lost allele given as the phase.

Columns: ``expr`` / ``allele`` / ``joint`` / ``oracle``: per-cell AUROC over the patients' cells and
the held-out healthy cells (expression LLR; allele LLR; joint posterior; joint posterior with the
true phase); ``informed``: the same with each site phased by the majority allele of the patient's true
carriers' reads, a carrier never by its own (:func:`informed_scores`: what phasing from the patient's own
cells can reach if it knew its carriers; where it falls short of the oracle, the cells do not carry the
phase); ``gain``,
``oracle_gain`` and ``informed_gain``: joint, oracle and informed minus expression; ``phase_acc``: share
of the phased sites (confidence >= 0.9, on a gene, with reads) whose allele is the true lost one,
and ``phased``: how many; ``phase_conf``: their mean confidence; ``lesion_sites``: the patients' heterozygous lesion sites with reads that
the genotype step kept and phased; ``acc_all`` / ``conf_all``: accuracy and mean
confidence over all phased sites on a gene with reads (calibrated: equal); ``acc_bound``: over the same
sites, the accuracy of phasing each by the majority allele of the patient's *true* carriers' reads (1/2
where no carrier read it: a normal cell reads either haplotype), what knowing every cell's truth
gives (a reference, not a strict ceiling: reads of one cell at several sites of a gene link their
phases); ``acc_readable``: remnant's accuracy on the sites at least one true carrier read; ``phase_temp``: the patients'
phase temperatures (split-half calibration of the site log odds, geometric mean); ``held_called``: held-out healthy cells called (joint); ``normal_expr`` /
``normal_joint``: the patients' non-carrier cells of their own type called, expression alone and
joint, and ``normal_oracle`` with the true phase and ``normal_informed`` with the informed phase (what the allele data can do for them at their priors);
``other_expr`` / ``other_joint`` / ``other_oracle``: the same for cells of another type; ``reads``: median
allele reads per patient cell on the lesion's sites; ``rho`` and ``temp``: the bursting overdispersion and the
temperature measured on the control region's sites (the simulator's bursting is ``1 / (2a + 1)``: 0.2 for
droplets); ``sec_expr`` / ``sec_alleles``: the time of
call_lesions and of add_allele_evidence, each the median of ``--timing-runs`` runs on fresh copies of the same
inputs (the first of them the run whose outputs the table shows), and ``ratio`` the median of the runs'
``(sec_expr + sec_alleles) / sec_expr`` (issue 18: at most 1.5): one run's clock moves by up to a third here.

``--imbalance F`` gives a share F of each person's genes allele-specific expression (the simulator's
``alleles.imbalanced_genes``: in every cell one haplotype expressed 2.3-9 times the other), which the model,
taking normal cells as balanced, does not know.

``--remission F`` gives each patient a remission sample at clone fraction F beside its diagnosis one.

``--noisy-sites SHARE MINOR`` makes a share of each patient's lesion sites read at ALT share MINOR by every
cell, carriers included (:func:`remnant.sim.alleles.with_noisy_sites`): RNA-editing and mismapped sites, which
discovery in the pooled reads keeps; each site's own error rate (:func:`remnant.tl.site_error_rates`) is what
answers them.

``--homozygous N`` adds N sites at which every person is homozygous beside each heterozygous one (the
same reads per cell on one allele): allele counts at a list of common SNPs rather than at the person's
heterozygotes (:mod:`remnant.tl.genotypes` tells them apart per person; the oracle's given phase names
only the heterozygous sites).

After the per-run table, a calibration table: per setting (seeds and patients pooled) and bin of reported
site confidence, the sites, their mean reported confidence and the share whose phase is right.

Run: ``python benchmarks/allele_calling.py`` (full grid, about 10 minutes on 2 cores) or
``--quick`` (2,000 UMI, default density, clone 50%).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lesion_calling import SHEET, auroc, cohort_inputs  # noqa: E402

from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.io.counts import map_genes  # noqa: E402
from remnant.sim.alleles import with_homozygous_sites, with_noisy_sites  # noqa: E402
from remnant.sim.cohort import simulate_cohort  # noqa: E402
from remnant.tl.allele_evidence import add_allele_evidence, concat_alleles  # noqa: E402
from remnant.tl.lesions import call_lesions, parse_lesions  # noqa: E402


def build(
    depth: float,
    density: float,
    clone: float,
    cells: int,
    seed: int,
    confounders: bool = True,
    remission=None,
    imbalance: float = 0.0,
):
    """The cohort (expression AnnData with truth columns) and its allele counts (one AnnData); with
    ``remission`` (a clone fraction) each patient also has a remission sample at that fraction; ``imbalance``:
    the simulator's ``alleles.imbalanced_genes`` (allele-specific expression)."""
    inputs = cohort_inputs(depth, clone, cells, confounders=confounders)
    if remission is not None:
        patients = inputs["samples"][inputs["samples"]["condition"] == "MDS"]
        extra = patients.assign(sample=patients["patient"] + "_rem", timepoint="remission")
        inputs["samples"] = pd.concat([inputs["samples"], extra], ignore_index=True)
        inputs["params"]["clone_fraction"]["remission"] = {"CD34": float(remission)}
    rows, genes = inputs["samples"], inputs["genes"]
    inputs["params"]["alleles"] = {
        "enabled": True,
        "reads_per_umi": {"droplet": float(density)},
        "imbalanced_genes": float(imbalance),
    }
    sim = simulate_cohort(
        rows,
        genes,
        inputs["markers"],
        inputs["gene_sets"],
        params=copy.deepcopy(inputs["params"]),
        seed=seed,
    )
    parts, allele_parts = [], []
    for _, row in rows.iterrows():
        a, _ = map_genes(sim.counts[row["sample"]], genes, source=row["sample"])
        for key in SHEET:
            a.obs[key] = row[key]
        a.obs_names = [f"{row['sample']}:{b}" for b in a.obs_names]
        parts.append(a)
        al = sim.alleles[row["sample"]].copy()
        al.obs_names = [f"{row['sample']}:{b}" for b in al.obs_names]
        allele_parts.append(al)
    adata = ad.concat(parts, merge="same")
    truth = sim.cells.set_index(sim.cells["sample"] + ":" + sim.cells["barcode"]).loc[adata.obs_names]
    adata.obs["hspc_state"] = truth["state"].to_numpy()
    adata.obs["truth"] = truth["lesion_del5q"].to_numpy(bool)
    adata.obs["other_type"] = truth["other_type"].to_numpy(bool)
    adata.layers["counts"] = adata.X.tocsr()
    return adata, concat_alleles(allele_parts), sim.allele_truth


def true_phase(allele_truth: pd.DataFrame) -> pd.DataFrame:
    """The oracle's phase table: each patient's sites with their true lost allele."""
    t = allele_truth[(allele_truth["lesion"] == "del5q") & allele_truth["in_lesion"].astype(bool)]
    return pd.DataFrame(
        {"patient": t["patient"], "site_id": t["site_id"], "lesion": "del5q", "allele": t["lost_allele"]}
    )


def carrier_phase(alleles, obs: pd.DataFrame, allele_truth: pd.DataFrame, carriers: np.ndarray) -> pd.DataFrame:
    """Each patient's lesion sites phased by the majority allele of the reads of ``carriers`` ((n_obs,)
    bool over ``obs``: true carriers; a carrier shows the retained allele, so the other one is lost);
    sites none of them read, or read equally on both alleles, are left out (no phase: no evidence)."""
    sites = true_phase(allele_truth).drop_duplicates(["patient", "site_id"]).reset_index(drop=True)
    n, alt = carrier_reads(sites, alleles, obs, carriers)
    told = alt * 2 != n
    return sites[told].assign(allele=np.where(alt[told] * 2 > n[told], "REF", "ALT")).reset_index(drop=True)


def carrier_reads(
    sites: pd.DataFrame, alleles, obs: pd.DataFrame, carriers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``sites`` (patient, site_id): the REF + ALT and the ALT reads of that patient's cells
    among ``carriers`` ((n_obs,) bool over ``obs``)."""
    cells = obs.assign(_carrier=carriers).reindex(alleles.obs_names)
    carrier = cells["_carrier"].fillna(False).to_numpy(bool)
    columns = alleles.var_names.get_indexer(sites["site_id"])
    ad, dp = alleles.layers["AD"].tocsr(), alleles.layers["DP"].tocsr()
    n, alt = np.zeros(len(sites)), np.zeros(len(sites))
    for patient in pd.unique(sites["patient"]):
        rows = np.flatnonzero(carrier & (cells["patient"] == patient).to_numpy())
        at = np.flatnonzero((sites["patient"] == patient).to_numpy())
        n[at] = np.asarray(dp[rows][:, columns[at]].sum(axis=0)).ravel()
        alt[at] = np.asarray(ad[rows][:, columns[at]].sum(axis=0)).ravel()
    return n, alt


#: Folds of the informed phaser: a carrier is scored with the phase of the other folds' carriers.
INFORMED_FOLDS = 10


def informed_scores(adata, alleles, lesions, ref, allele_truth, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The informed phaser (what phasing from a patient's own cells can reach if it knew which of them
    carry the lesion): joint LLR (expression + alleles) per cell and calls. Sites are phased by the true
    carriers' majority allele (:func:`carrier_phase`), cross-fitted: a carrier is scored with the phase
    of the carriers of the other :data:`INFORMED_FOLDS` folds, never its own reads (which would agree
    with any phase they made); every other cell with the phase of all carriers."""
    truth = adata.obs["truth"].to_numpy(bool)
    fold = np.random.default_rng([seed, 18]).integers(0, INFORMED_FOLDS, adata.n_obs)
    fit = adata.copy()
    add_allele_evidence(
        fit, alleles, lesions, reference=ref, phase=carrier_phase(alleles, adata.obs, allele_truth, truth)
    )
    llr = fit.obs["del5q_llr"].to_numpy() + fit.obs["del5q_allele_llr"].to_numpy()
    for f in range(INFORMED_FOLDS):
        held = truth & (fold == f)
        if not held.any():
            continue
        part = adata.copy()
        phase = carrier_phase(alleles, adata.obs, allele_truth, truth & ~held)
        add_allele_evidence(part, alleles, lesions, reference=ref, phase=phase)
        llr[held] = part.obs["del5q_llr"].to_numpy()[held] + part.obs["del5q_allele_llr"].to_numpy()[held]
    return llr, fit.obs["del5q_call"].to_numpy()


def _lost_allele(allele_truth: pd.DataFrame) -> pd.Series:
    """The true lost allele of the sites inside the lesion of patients who carry it, by (patient,
    site_id). A healthy donor's sites have a haplotype label but no lost allele, nor do a patient's sites
    outside its own interval: not counted."""
    t = allele_truth[(allele_truth["lesion"] == "del5q") & allele_truth["in_lesion"].astype(bool)]
    return t.drop_duplicates(["patient", "site_id"]).set_index(["patient", "site_id"])["lost_allele"]


def phase_accuracy(phase: pd.DataFrame, allele_truth: pd.DataFrame) -> tuple[float, int, float]:
    """Share of the sites phased with confidence >= 0.9 (on a gene, with reads) whose allele is the true
    lost one, how many, and their mean confidence (the accuracy a calibrated phasing should reach)."""
    sure = phase[(phase["confidence"] >= 0.9) & (phase["gene"] != "") & (phase["n_reads"] > 0)]
    truth = _lost_allele(allele_truth)
    got = truth.reindex(pd.MultiIndex.from_frame(sure[["patient", "site_id"]]))
    sure, got = sure[got.notna().to_numpy()], got[got.notna().to_numpy()]
    if not len(sure):
        return float("nan"), 0, float("nan")
    return float((got.to_numpy() == sure["allele"].to_numpy()).mean()), len(sure), float(sure["confidence"].mean())


#: Reported-confidence bins of the calibration table (the last one closed at 1).
CONFIDENCE_BINS = [0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0]


def site_outcomes(phase: pd.DataFrame, allele_truth: pd.DataFrame, alleles, obs: pd.DataFrame) -> pd.DataFrame:
    """Every phased site on a gene with reads: its reported confidence and whether its allele is the
    true lost one (the raw material of the calibration table); with the allele counts and the cells'
    truth (``obs``: patient, truth), also what a phaser told which cells carry the lesion could do:
    ``carrier_reads``, the reads of the patient's true carriers at the site, and ``bound``, 1 when most
    of them show the retained allele, 1/2 on a tie (none read it), else 0. A site read only by normal
    cells cannot be phased from the patient's cells, whatever the method: a normal cell reads either
    haplotype."""
    used = phase[(phase["gene"] != "") & (phase["n_reads"] > 0)]
    truth = _lost_allele(allele_truth)
    got = truth.reindex(pd.MultiIndex.from_frame(used[["patient", "site_id"]])).to_numpy()
    # only sites with a lost allele: a refined interval can reach past the patient's true one
    used, got = used[pd.notna(got)], got[pd.notna(got)]
    out = pd.DataFrame(
        {
            "patient": used["patient"].to_numpy(),
            "confidence": used["confidence"].to_numpy(float),
            "correct": got == used["allele"].to_numpy(),
        }
    )
    out["carrier_reads"], out["bound"] = _carrier_bound(used, got, alleles, obs)
    return out


def _carrier_bound(used: pd.DataFrame, lost: np.ndarray, alleles, obs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per site of ``used`` (patient, site_id) with true lost allele ``lost`` ("ALT"/"REF"): its true
    carriers' reads, and the outcome of phasing it by their majority allele (see site_outcomes)."""
    reads, alt = carrier_reads(used, alleles, obs, obs["truth"].fillna(False).to_numpy(bool))
    lost_reads = np.where(lost == "ALT", alt, reads - alt)
    kept = reads - lost_reads
    return reads, np.where(kept > lost_reads, 1.0, np.where(kept == lost_reads, 0.5, 0.0))


def calibration_table(sites: pd.DataFrame) -> pd.DataFrame:
    """Per setting and confidence bin: sites, mean reported confidence, actual accuracy."""
    sites = sites.assign(bin=pd.cut(sites["confidence"], CONFIDENCE_BINS, include_lowest=True, right=False))
    sites.loc[sites["confidence"] >= 1.0, "bin"] = sites["bin"].cat.categories[-1]
    keys = ["depth", "density", "clone", "bin"]
    out = sites.groupby(keys, observed=True).agg(
        sites=("correct", "size"), reported=("confidence", "mean"), actual=("correct", "mean")
    )
    return out.reset_index()


def _timed_calls(adata, alleles, lesions, ref) -> tuple[float, float, ad.AnnData]:
    """call_lesions then add_allele_evidence on ``adata`` in place: their seconds, and the expression-only
    calls (a copy taken between the two)."""
    t0 = time.perf_counter()
    call_lesions(adata, lesions, reference=ref)
    sec_expr = time.perf_counter() - t0
    expression_only = adata.copy()
    t0 = time.perf_counter()
    add_allele_evidence(adata, alleles, lesions, reference=ref)
    return sec_expr, time.perf_counter() - t0, expression_only


def run(
    depth,
    density,
    clone,
    cells,
    seed,
    confounders=True,
    homozygous=0,
    remission=None,
    imbalance=0.0,
    timing_runs=1,
    noisy=(0.0, 0.25),
) -> tuple[dict, pd.DataFrame]:
    adata, alleles, allele_truth = build(depth, density, clone, cells, seed, confounders, remission, imbalance)
    if noisy[0] > 0:  # before the homozygous copies, which copy each site's reads
        inside = allele_truth.loc[allele_truth["in_lesion"].astype(bool), "site_id"]
        alleles, _ = with_noisy_sites(alleles, inside, noisy[0], noisy[1], seed)
    alleles = with_homozygous_sites(alleles, homozygous, seed)
    cyto = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    lesions = parse_lesions([{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}], cyto, chromosome_arms(cyto))
    obs = adata.obs
    ref = obs["sample"].str.endswith("_ref").to_numpy()
    inputs = adata.copy()
    sec_expr, sec_alleles, oracle = _timed_calls(adata, alleles, lesions, ref)
    times = [(sec_expr, sec_alleles)]
    for _ in range(timing_runs - 1):  # the same calls again, timed only
        times.append(_timed_calls(inputs.copy(), alleles, lesions, ref)[:2])
    sec_expr, sec_alleles = (float(np.median(t)) for t in zip(*times))
    ratio = float(np.median([(e + a) / e for e, a in times]))
    add_allele_evidence(oracle, alleles, lesions, reference=ref, phase=true_phase(allele_truth))
    informed_llr, informed_call = informed_scores(adata, alleles, lesions, ref, allele_truth, seed)
    obs = adata.obs
    mds = (obs["condition"] == "MDS").to_numpy()
    held = obs["sample"].str.endswith("_held").to_numpy()
    truth, other = obs["truth"].to_numpy(bool), obs["other_type"].to_numpy(bool)
    scored = mds | held
    call, expr_call = obs["del5q_call"].to_numpy(), obs["del5q_expression_posterior"].to_numpy() >= 0.9
    joint_post = obs["del5q_posterior"].to_numpy()
    oracle_call = oracle.obs["del5q_call"].to_numpy()
    normal, other_mds = mds & ~truth & ~other, mds & other
    acc, n_phased, confidence = phase_accuracy(adata.uns["lesions"]["del5q"]["phase"], allele_truth)
    sites = site_outcomes(adata.uns["lesions"]["del5q"]["phase"], allele_truth, alleles, obs)
    out = {
        "depth": depth,
        "density": density,
        "clone": clone,
        "seed": seed,
        "homozygous": homozygous,
        "remission": np.nan if remission is None else float(remission),
        "imbalance": float(imbalance),
        "noisy": float(noisy[0]),
        "expr": auroc(obs["del5q_llr"].to_numpy()[scored], truth[scored]),
        "allele": auroc(obs["del5q_allele_llr"].to_numpy()[scored], truth[scored]),
        "joint": auroc(obs["del5q_llr"].to_numpy()[scored] + obs["del5q_allele_llr"].to_numpy()[scored], truth[scored]),
        "oracle": auroc(
            oracle.obs["del5q_llr"].to_numpy()[scored] + oracle.obs["del5q_allele_llr"].to_numpy()[scored],
            truth[scored],
        ),
        "informed": auroc(informed_llr[scored], truth[scored]),
        "joint_post": auroc(joint_post[mds], truth[mds]) if 0 < truth[mds].mean() < 1 else float("nan"),
        "phase_acc": acc,
        "phase_conf": confidence,
        "phased": n_phased,
        "lesion_sites": len(sites),
        "acc_all": float(sites["correct"].mean()) if len(sites) else float("nan"),
        "conf_all": float(sites["confidence"].mean()) if len(sites) else float("nan"),
        "acc_bound": float(sites["bound"].mean()) if len(sites) else float("nan"),
        "acc_readable": float(sites["correct"][sites["carrier_reads"] > 0].mean()) if len(sites) else float("nan"),
        "phase_temp": _phase_temperature(adata),
        "held_called": float(call[held].mean()),
        "normal_expr": float(expr_call[normal].mean()) if normal.any() else float("nan"),
        "normal_joint": float(call[normal].mean()) if normal.any() else float("nan"),
        "normal_oracle": float(oracle_call[normal].mean()) if normal.any() else float("nan"),
        "normal_informed": float(informed_call[normal].mean()) if normal.any() else float("nan"),
        "other_expr": float(expr_call[other_mds].mean()) if other_mds.any() else float("nan"),
        "other_joint": float(call[other_mds].mean()) if other_mds.any() else float("nan"),
        "other_oracle": float(oracle_call[other_mds].mean()) if other_mds.any() else float("nan"),
        "reads": float(np.median(obs["del5q_allele_reads"].to_numpy()[mds])),
        "rho": _calibration(adata, "overdispersion"),
        "temp": _calibration(adata, "del5q"),
        "sec_expr": sec_expr,
        "sec_alleles": sec_alleles,
        "ratio": ratio,
    }
    out["gain"] = out["joint"] - out["expr"]
    out["oracle_gain"] = out["oracle"] - out["expr"]
    out["informed_gain"] = out["informed"] - out["expr"]
    return out, sites.assign(depth=depth, density=density, clone=clone, seed=seed)


def _phase_temperature(adata) -> float:
    """The MDS patients' phase temperatures (split-half calibration), geometric mean; NaN before it existed."""
    temps = adata.uns["lesions"]["del5q"]["allele_params"].get("phase_temperature", {})
    temps = [t for patient, t in temps.items() if patient.startswith("P")]  # the MDS patients
    return float(np.exp(np.mean(np.log(temps)))) if temps else float("nan")


def _calibration(adata, column: str) -> float:
    """The control region's measure (one batch here: droplet); NaN when it was too sparse to measure."""
    table = adata.uns["lesions"]["del5q"]["allele_calibration"]
    return float(table[column].iloc[0]) if len(table) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depths", type=float, nargs="+", default=[500, 2000, 10000])
    ap.add_argument("--densities", type=float, nargs="+", default=[0.06, 0.25])
    ap.add_argument("--clones", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cells", type=int, default=300, help="cells per sample")
    ap.add_argument("--no-confounders", action="store_true")
    ap.add_argument(
        "--homozygous",
        type=int,
        default=0,
        help="add this many homozygous sites per heterozygous one (a common-SNP list; 3 ~ 1000 Genomes common SNPs)",
    )
    ap.add_argument(
        "--remission",
        type=float,
        default=None,
        help="each patient also has a remission sample at this clone fraction (its cells phase and genotype with the diagnosis')",
    )
    ap.add_argument(
        "--imbalance",
        type=float,
        default=0.0,
        help="share of genes with allele-specific expression in every cell (the simulator's alleles.imbalanced_genes)",
    )
    ap.add_argument(
        "--timing-runs",
        type=int,
        default=3,
        help="runs of call_lesions + add_allele_evidence timed per setting (medians printed)",
    )
    ap.add_argument(
        "--noisy-sites",
        type=float,
        nargs=2,
        default=[0.0, 0.25],
        metavar=("SHARE", "MINOR"),
        help="a SHARE of the lesion's sites read at ALT share MINOR by every cell, carriers too (RNA editing, "
        "mismapping: what discovery without a VCF keeps; remnant.sim.alleles.with_noisy_sites)",
    )
    ap.add_argument("--quick", action="store_true", help="2,000 UMI, density 0.06, clone 0.5")
    args = ap.parse_args()
    if args.quick:
        args.depths, args.densities, args.clones = [2000], [0.06], [0.5]
    rows, sites = [], []
    for depth in args.depths:
        for density in args.densities:
            for clone in args.clones:
                for seed in args.seeds:
                    row, outcome = run(
                        depth,
                        density,
                        clone,
                        args.cells,
                        seed,
                        not args.no_confounders,
                        args.homozygous,
                        args.remission,
                        args.imbalance,
                        args.timing_runs,
                        tuple(args.noisy_sites),
                    )
                    rows.append(row)
                    sites.append(outcome)
                    print(pd.DataFrame([rows[-1]]).to_string(index=False, float_format="%.4f"), flush=True)
    table = pd.DataFrame(rows)
    cols = [
        "depth",
        "density",
        "clone",
        "seed",
        "homozygous",
        "remission",
        "imbalance",
        "noisy",
        "expr",
        "allele",
        "joint",
        "oracle",
        "informed",
        "gain",
        "oracle_gain",
        "informed_gain",
    ]
    cols += [
        "phase_acc",
        "phase_conf",
        "phased",
        "lesion_sites",
        "acc_all",
        "conf_all",
        "acc_bound",
        "acc_readable",
        "phase_temp",
        "held_called",
        "normal_expr",
        "normal_joint",
        "normal_oracle",
        "normal_informed",
        "other_expr",
        "other_joint",
        "other_oracle",
    ]
    cols += ["reads", "rho", "temp", "sec_expr", "sec_alleles", "ratio"]
    print("\nphase calibration (all phased sites on a gene with reads, patients and seeds pooled):")
    print(calibration_table(pd.concat(sites, ignore_index=True)).to_string(index=False, float_format="%.3f"))
    print()
    print(table[cols].to_string(index=False, float_format="%.4f"))
    print(
        f"\njoint within 0.01 of the oracle: {int(((table['oracle'] - table['joint']) <= 0.01).sum())} of {len(table)};"
        f" gain >= oracle gain - 0.005: {int((table['gain'] >= table['oracle_gain'] - 0.005).sum())} of {len(table)};"
        f" informed phaser within 0.01 of the oracle: {int(((table['oracle'] - table['informed']) <= 0.01).sum())};"
        f" joint within 0.01 of the informed phaser: {int(((table['informed'] - table['joint']) <= 0.01).sum())};"
        f" informed gain >= oracle gain - 0.005: {int((table['informed_gain'] >= table['oracle_gain'] - 0.005).sum())};"
        f" gain >= informed gain - 0.005: {int((table['gain'] >= table['informed_gain'] - 0.005).sum())};"
        f" held-out called max {table['held_called'].max():.4f};"
        f" calling with alleles / without: {(table['sec_alleles'] + table['sec_expr']).sum() / table['sec_expr'].sum():.2f}x"
        f" over all settings, at most {table['ratio'].max():.2f}x in one (each the median of its timed runs)"
    )
    bound = table.groupby("clone")[["acc_all", "acc_bound", "acc_readable", "phase_acc"]].mean()
    print("\nsite phase accuracy by clone fraction (all sites with reads; the same phased by the true carriers'")
    print("majority allele; sites a true carrier read; sites of confidence >= 0.9), runs pooled:")
    print(bound.to_string(float_format="%.4f"))


if __name__ == "__main__":
    main()
