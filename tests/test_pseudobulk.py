"""Pseudobulk sums, paired PyDESeq2 DE, and signature enrichment in the ranking."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.tl.de import DE_COLUMNS, paired_de, pseudobulk, signature_enrichment


def cells(rng, *, patients=4, per_group=30, genes=400, de_genes=40, lfc=1.5):
    """Cells x genes NB counts: patient effects on every gene, the first ``de_genes`` up ``lfc`` (log2) at remission."""
    base = np.exp(rng.normal(0.0, 1.0, genes)) * 0.5
    blocks, obs = [], []
    for p in range(patients):
        patient_effect = np.exp(rng.normal(0, 0.3, genes))
        for tp in ("diagnosis", "remission"):
            mu = (
                base
                * patient_effect
                * (np.where(np.arange(genes) < de_genes, 2.0**lfc, 1.0) if tp == "remission" else 1.0)
            )
            lam = rng.gamma(5.0, mu / 5.0, size=(per_group, genes))
            blocks.append(rng.poisson(lam))
            obs += [{"patient": f"P{p}", "timepoint": tp, "carrier": True}] * per_group
    X = sp.csr_matrix(np.vstack(blocks).astype(np.float32))
    obs = pd.DataFrame(obs, index=[f"c{i}" for i in range(X.shape[0])])
    var = pd.DataFrame({"gene_name": [f"G{j}" for j in range(genes)]}, index=[f"ENSG{j:05d}" for j in range(genes)])
    adata = ad.AnnData(X=X.copy(), obs=obs, var=var)
    adata.layers["counts"] = X
    return adata


def test_pseudobulk_sums_counts_and_drops_small_groups():
    rng = np.random.default_rng(0)
    adata = cells(rng, patients=2, per_group=5, genes=20)
    mask = np.ones(adata.n_obs, bool)
    mask[:3] = False  # P0 diagnosis keeps 2 cells
    pb = pseudobulk(adata, mask=mask, min_cells=3)
    assert list(pb.obs_names) == ["P0|remission", "P1|diagnosis", "P1|remission"]
    assert pb.obs["n_cells"].tolist() == [5, 5, 5]
    want = np.asarray(adata.layers["counts"][5:10].sum(axis=0)).ravel()
    assert np.array_equal(pb.X[0], want) and pb.X.dtype == np.int64
    dropped = pb.uns["pseudobulk"]["dropped"]
    assert dropped.to_dict("records") == [{"patient": "P0", "timepoint": "diagnosis", "n_cells": 2}]
    by_column = pseudobulk(adata, mask="carrier", min_cells=1)
    assert by_column.n_obs == 4 and by_column.obs["n_cells"].sum() == adata.n_obs


def test_paired_de_finds_the_planted_genes():
    rng = np.random.default_rng(1)
    adata = cells(rng)
    pb = pseudobulk(adata, min_cells=10)
    res = paired_de(pb, min_total_count=10)
    assert list(res.columns) == DE_COLUMNS and res.attrs["n_pairs"] == 4
    planted = res["gene_name"].str[1:].astype(int) < 40
    hits = res["padj"] < 0.05
    assert (hits & planted).sum() >= 30  # power
    assert (hits & ~planted).sum() <= 0.05 * max(hits.sum(), 1) + 2  # false discoveries near the FDR
    up = res.loc[planted, "log2FoldChange"]
    assert up.median() == pytest.approx(1.5, abs=0.3)
    assert res["pvalue"].is_monotonic_increasing


def test_paired_de_needs_two_patients_with_both_timepoints():
    rng = np.random.default_rng(2)
    adata = cells(rng, patients=2, per_group=12, genes=50)
    keep = ~((adata.obs["patient"] == "P1") & (adata.obs["timepoint"] == "remission")).to_numpy()
    res = paired_de(pseudobulk(adata[keep].copy(), min_cells=10))
    assert res.empty and list(res.columns) == DE_COLUMNS and res.attrs["n_pairs"] == 1
    with pytest.raises(InputError, match="no column 'visit'"):
        paired_de(pseudobulk(adata, min_cells=1), condition="visit")


def test_signature_enrichment_ranks_sets():
    genes = [f"G{i}" for i in range(200)]
    results = pd.DataFrame({"gene_name": genes, "stat": np.linspace(5, -5, 200)})
    sets = {"TOP": pd.Series(1.0, index=genes[:20]), "BOTTOM": genes[-20:], "MIDDLE": genes[90:110], "TINY": genes[:2]}
    out = signature_enrichment(results, sets, min_genes=5).set_index("signature")
    assert out.loc["TOP", "direction"] == "up" and out.loc["TOP", "auc"] > 0.95 and out.loc["TOP", "padj"] < 1e-6
    assert out.loc["BOTTOM", "direction"] == "down" and out.loc["BOTTOM", "auc"] < 0.05
    assert out.loc["MIDDLE", "pvalue"] > 0.5
    assert np.isnan(out.loc["TINY", "pvalue"]) and out.loc["TINY", "n_genes"] == 2
    excluded = signature_enrichment(results, sets, exclude=genes[:15]).set_index("signature")
    assert excluded.loc["TOP", "n_genes"] == 5


def test_pseudobulk_input_errors():
    rng = np.random.default_rng(3)
    adata = cells(rng, patients=1, per_group=3, genes=5)
    with pytest.raises(InputError, match="no column 'donor'"):
        pseudobulk(adata, groupby=["donor"])
    with pytest.raises(InputError, match="no layer 'raw'"):
        pseudobulk(adata, layer="raw")
    with pytest.raises(InputError, match="one value per cell"):
        pseudobulk(adata, mask=np.ones(2, bool))
    adata.layers["counts"] = adata.layers["counts"] * 0.5
    with pytest.raises(InputError, match="not integers"):
        pseudobulk(adata, min_cells=1)


def test_quiescent_del_stem_cells_after_treatment_enrich_the_quiescence_signature():
    """Simulated cohort: del(5q) HSC cycle far less at remission (odds x 0.05). Their pseudobulk DE
    after vs before puts the quiescence set up and the S-phase set down."""
    import simulated

    from remnant.tl.signatures import read_signatures

    rows = [
        (f"P{i}_{tp}", f"P{i}", tp, "HSC", "MDS", "droplet") for i in (1, 2, 3) for tp in ("diagnosis", "remission")
    ]
    params = {
        "cells_per_sample": {"droplet": 150},
        "doublets": {"rate": 0.0},
        "low_quality": {"fraction": 0.0},
        "clone_fraction": {"diagnosis": {"HSC": 0.9}, "remission": {"HSC": 0.9}},
        "state_composition": {"HSC": {"HSC": 1.0}},
        "cell_cycle": {
            "cycling_probability": {"HSC": 0.5},
            "modifiers": [{"lesion": "del5q", "timepoint": "remission", "states": ["HSC"], "odds_ratio": 0.05}],
        },
    }
    mapped, truth = simulated.cohort(rows, params=params, seed=5)
    adata = ad.concat(list(mapped.values()), merge="same")
    adata.layers["counts"] = adata.X
    truth = truth.set_index(truth["sample"] + ":" + truth["barcode"]).loc[adata.obs_names]
    sets = read_signatures(
        ["GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP", "TIROSH2016_S", "EPPERT_PROGENITOR"],
        simulated.ROOT / "resources/gene_sets",
    )
    # keep the test fast: the 1,000 most expressed genes and the sets' genes
    total = np.asarray(adata.X.sum(axis=0)).ravel()
    keep = np.zeros(adata.n_vars, bool)
    keep[np.argsort(-total)[:1000]] = True
    keep |= adata.var["gene_name"].isin(set().union(*[s.index for s in sets.values()])).to_numpy()
    pb = pseudobulk(adata[:, keep].copy(), mask=truth["lesion_del5q"].to_numpy(), min_cells=20)
    res = paired_de(pb, level="remission", reference="diagnosis")
    assert res.attrs["n_pairs"] == 3
    out = signature_enrichment(res, sets).set_index("signature")
    assert out.loc["GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP", "direction"] == "up"
    assert out.loc["GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP", "pvalue"] < 1e-3
    assert out.loc["TIROSH2016_S", "direction"] == "down" and out.loc["TIROSH2016_S", "pvalue"] < 1e-3


def test_run_paired_de_reports_each_pseudobulk_and_why_it_is_not_used():
    from remnant.workflow.compare_pseudobulk import run_paired_de

    rng = np.random.default_rng(4)
    adata = cells(rng, patients=3, per_group=20, genes=120, de_genes=20)
    extra = cells(rng, patients=1, per_group=20, genes=120)[:20].copy()  # a relapse pseudobulk, not compared
    extra.obs["timepoint"] = "relapse"
    extra.obs_names = [f"r{i}" for i in range(extra.n_obs)]
    adata = ad.concat([adata, extra], merge="same")
    mask = np.ones(adata.n_obs, bool)
    mask[(adata.obs["patient"] == "P2").to_numpy() & (adata.obs["timepoint"] == "remission").to_numpy()] = False
    mask[
        np.flatnonzero((adata.obs["patient"] == "P1").to_numpy() & (adata.obs["timepoint"] == "diagnosis").to_numpy())[
            :15
        ]
    ] = False
    sets = {"PLANTED": [f"G{j}" for j in range(20)], "OTHER": [f"G{j}" for j in range(60, 80)]}
    samples, de, enrichment = run_paired_de(adata, mask=mask, signatures=sets, min_cells=10)
    reasons = samples.set_index(["patient", "timepoint"])["reason"]
    assert reasons[("P1", "diagnosis")] == "fewer than 10 cells (pseudobulk.min_cells)"
    assert reasons[("P1", "remission")] == "patient has no diagnosis pseudobulk to pair with"
    assert reasons[("P2", "diagnosis")] == "patient has no remission pseudobulk to pair with"
    assert reasons[("P0", "relapse")] == "timepoint not compared (remission vs diagnosis)"
    assert samples["used"].sum() == 2 and de.empty and de.attrs["n_pairs"] == 1
    assert enrichment["note"].str.startswith("no DE test: 1 patient").all() and enrichment["pvalue"].isna().all()
    samples, de, enrichment = run_paired_de(adata, mask=np.ones(adata.n_obs, bool), signatures=sets, min_cells=10)
    assert samples["used"].sum() == 6 and de.attrs["n_pairs"] == 3
    top = enrichment.set_index("signature")
    assert (
        top.loc["PLANTED", "direction"] == "up"
        and top.loc["PLANTED", "pvalue"] < 1e-3
        and (enrichment["note"] == "").all()
    )


def test_enrichment_allows_for_correlated_set_genes():
    """With no correlation the test is Mann-Whitney's; camera's preset correlation (0.01) widens the
    null of a 50-gene set (a co-regulated program is not 50 independent genes) but keeps a real shift."""
    from scipy import stats

    rng = np.random.default_rng(5)
    stat = rng.normal(size=2000)
    stat[:50] += 1.0
    results = pd.DataFrame({"gene_name": [f"G{i}" for i in range(2000)], "stat": stat})
    sets = {"SHIFTED": [f"G{i}" for i in range(50)], "NULL": [f"G{i}" for i in range(100, 150)]}
    plain = signature_enrichment(results, sets, inter_gene_cor=0).set_index("signature")
    camera = signature_enrichment(results, sets).set_index("signature")
    mw = stats.mannwhitneyu(stat[:50], stat[50:], alternative="two-sided")
    assert plain.loc["SHIFTED", "pvalue"] == pytest.approx(mw.pvalue, rel=1e-6)
    assert plain.loc["SHIFTED", "auc"] == pytest.approx(camera.loc["SHIFTED", "auc"])
    assert 10 * plain.loc["SHIFTED", "pvalue"] < camera.loc["SHIFTED", "pvalue"] < 1e-3
    assert camera.loc["NULL", "pvalue"] > 0.05 and camera["test"].str.contains("camera").all()


@pytest.mark.parametrize("key", ["X", "layers/counts"])
def test_pseudobulk_and_paired_de_of_a_file_equal_the_in_memory_path(tmp_path, key):
    """The workflow sums the cohort file block by block (store.group_sums): same pseudobulks, same DE."""
    from remnant.workflow.compare_pseudobulk import run_paired_de

    rng = np.random.default_rng(6)
    adata = cells(rng, patients=3, per_group=25, genes=150, de_genes=20)
    adata.obs["patient"] = pd.Categorical(adata.obs["patient"])
    mask = rng.random(adata.n_obs) < 0.8
    on_disk = adata.copy()
    if key == "X":
        on_disk.X = on_disk.layers.pop("counts")
    else:
        on_disk.X = sp.csr_matrix(on_disk.shape, dtype=np.float32)
    path = tmp_path / "cohort.h5ad"
    on_disk.write_h5ad(path)
    memory = pseudobulk(adata, mask=mask, min_cells=19)
    streamed = pseudobulk(path, mask=mask, key=key, min_cells=19, chunk_cells=17)
    assert np.array_equal(streamed.X, memory.X) and streamed.obs.equals(memory.obs) and streamed.var.equals(memory.var)
    pd.testing.assert_frame_equal(streamed.uns["pseudobulk"]["dropped"], memory.uns["pseudobulk"]["dropped"])
    sets = {"PLANTED": [f"G{j}" for j in range(20)], "OTHER": [f"G{j}" for j in range(60, 80)]}
    # the script's obs: labels only on the chosen cells
    labels = adata.obs[["patient", "timepoint"]].where(pd.Series(mask, index=adata.obs_names), axis=0)
    expected = run_paired_de(adata, mask=mask, signatures=sets, min_cells=19)
    for got, want in zip(run_paired_de(path, mask=mask, obs=labels, key=key, signatures=sets, min_cells=19), expected):
        pd.testing.assert_frame_equal(got, want)
    assert (
        expected[1].attrs["n_pairs"] == 2 and len(memory.uns["pseudobulk"]["dropped"]) == 1
    )  # one group under min_cells
