"""The demo-cohort simulator: determinism, count properties, and that the planted truth shows in the counts.

Cohorts are small (a few hundred cells per sample) so that the whole file runs in well under a
minute; tolerances are set from the expected sampling noise at those sizes.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from simulated import sheet_table as sheet  # markers, gene_sets: conftest.py fixtures

from remnant.errors import InputError
from remnant.sim.cohort import DEFAULT_PARAMS, SimulatedCohort, in_interval, resolve_params, simulate_cohort
from remnant.sim.sample import _sample_nb_dense, _sample_nb_sparse  # the samplers' own checks

# ------------------------------------------------------------------------------------------------
# cohorts (fixtures markers and gene_sets: conftest.py)
# ------------------------------------------------------------------------------------------------
SMALL = sheet(
    [
        ("P1_dx_HSC", "P1", "diagnosis", "HSC", "MDS", "droplet"),
        ("P1_dx_PROG", "P1", "diagnosis", "PROG", "MDS", "droplet"),
        ("P1_rem_HSC", "P1", "remission", "HSC", "MDS", "plate"),
        ("P1_rem_PROG", "P1", "remission", "PROG", "MDS", "droplet"),
        ("H1_CD34", "H1", "", "CD34", "healthy", "droplet"),
        ("H1_HSC", "H1", "", "HSC", "healthy", "plate"),
    ]
)


@pytest.fixture(scope="module")
def small(genes, markers, gene_sets) -> SimulatedCohort:
    return simulate_cohort(SMALL, genes, markers, gene_sets, params={"cells_per_sample": {"droplet": 300}}, seed=3)


@pytest.fixture(scope="module")
def demo(root, genes, markers, gene_sets) -> SimulatedCohort:
    """The bundled demo sheet (29 samples, ~6,000 cells) with default parameters."""
    samples = pd.read_csv(root / "config/demo/samples.tsv", sep="\t", dtype=str, keep_default_na=False, comment="#")
    return simulate_cohort(samples, genes, markers, gene_sets, seed=1)


@pytest.fixture(scope="module")
def half_clone(genes, markers, gene_sets) -> SimulatedCohort:
    """One CD34 sample, half the cells in the clone, a second (subclonal gain) lesion, no artefacts."""
    params = {
        "cells_per_sample": {"droplet": 1200},
        "clone_fraction": {"diagnosis": {"CD34": 0.5}},
        "clone_sampling": "exact",
        "low_quality": {"fraction": 0.0},
        "doublets": {"rate": 0.0},
        "lesions": [
            copy.deepcopy(DEFAULT_PARAMS["lesions"][0]),
            {
                "name": "gain8",
                "chromosome": "chr8",
                "type": "gain",
                "copy_ratio": 1.5,
                "proximal": [0, 0],
                "distal": [145_138_636, 145_138_636],
                "fraction_of_clone": 0.5,
            },
        ],
    }
    samples = sheet([("P7_dx_CD34", "P7", "diagnosis", "CD34", "MDS", "droplet")])
    return simulate_cohort(samples, genes, markers, gene_sets, params=params, seed=11)


def cp10k(adata) -> sp.csr_matrix:
    X = adata.X.tocsr().astype(np.float64)
    return sp.diags(1e4 / np.asarray(X.sum(axis=1)).ravel()) @ X


def clean(cohort: SimulatedCohort, sample: str) -> tuple:
    """Counts and truth of a sample's singlets that are not low-quality (same row order)."""
    truth = cohort.cells[cohort.cells["sample"] == sample].reset_index(drop=True)
    keep = ~(truth["doublet"] | truth["low_quality"]).to_numpy()
    return cohort.counts[sample][keep], truth[keep].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# determinism and format
# ------------------------------------------------------------------------------------------------
def test_same_seed_identical_different_seed_differs(small, genes, markers, gene_sets):
    again = simulate_cohort(SMALL, genes, markers, gene_sets, params={"cells_per_sample": {"droplet": 300}}, seed=3)
    other = simulate_cohort(SMALL, genes, markers, gene_sets, params={"cells_per_sample": {"droplet": 300}}, seed=4)
    for sample in SMALL["sample"]:
        a, b, c = small.counts[sample], again.counts[sample], other.counts[sample]
        assert (a.X != b.X).nnz == 0 and list(a.obs_names) == list(b.obs_names)
        assert a.X.shape != c.X.shape or (a.X != c.X).nnz > 0
    pd.testing.assert_frame_equal(small.cells, again.cells)
    pd.testing.assert_frame_equal(small.patients, again.patients)
    pd.testing.assert_frame_equal(small.index_sort["P1_rem_HSC"], again.index_sort["P1_rem_HSC"])
    assert not small.cells["barcode"].equals(other.cells["barcode"])


def test_sample_does_not_depend_on_other_rows(small, genes, markers, gene_sets):
    """Each sample has its own random stream: dropping rows of the sheet leaves the rest identical."""
    subset = SMALL.iloc[[3, 0]]
    alone = simulate_cohort(subset, genes, markers, gene_sets, params={"cells_per_sample": {"droplet": 300}}, seed=3)
    for sample in subset["sample"]:
        assert (alone.counts[sample].X != small.counts[sample].X).nnz == 0


def test_counts_integer_nonnegative_csr_with_10x_like_names(small):
    for sample, adata in small.counts.items():
        X = adata.X
        assert sp.issparse(X) and X.format == "csr"
        assert X.dtype == np.float32
        assert np.all(X.data > 0) and np.array_equal(X.data, np.rint(X.data))
        assert adata.obs_names.is_unique
        assert adata.var["gene_ids"].is_unique
        assert adata.var["gene_ids"].str.match(r"^ENSG\d+\.\d+$").all()
        assert "CD34" in adata.var_names and "RPS14" in adata.var_names
        tech = SMALL.set_index("sample").loc[sample, "technology"]
        pattern = r"^[ACGT]{16}-1$" if tech == "droplet" else r"^plate\d+_[A-H]\d{2}$"
        assert adata.obs_names.str.match(pattern).all()
        truth = small.cells[small.cells["sample"] == sample]
        assert list(truth["barcode"]) == list(adata.obs_names)
        assert np.array_equal(truth["total_counts"].to_numpy(), np.asarray(X.sum(axis=1)).ravel().astype(int))


def test_gene_space_protein_coding_and_lncrna(small, genes):
    var = small.counts["P1_dx_HSC"].var
    ids = var["gene_ids"].str.replace(r"\.\d+$", "", regex=True)
    kinds = genes.loc[ids, "gene_type"].value_counts()
    assert set(kinds.index) == {"protein_coding", "lncRNA"}
    assert kinds["protein_coding"] == (genes["gene_type"] == "protein_coding").sum()


def test_cell_numbers(small, demo):
    counts = small.cells.groupby("sample").size()
    assert counts["P1_dx_HSC"] == 300 and counts["P1_rem_HSC"] == 96
    assert 5000 <= len(demo.cells) <= 7000


# ------------------------------------------------------------------------------------------------
# realism of the counts
# ------------------------------------------------------------------------------------------------
def test_library_mito_and_ribosomal_shares_realistic(demo):
    adata, truth = clean(demo, "P1_diagnosis_PROG")
    total = np.asarray(adata.X.sum(axis=1)).ravel()
    assert 1500 < np.median(total) < 6000
    mito = np.asarray(adata[:, adata.var_names.str.startswith("MT-")].X.sum(axis=1)).ravel() / total
    assert 0.02 < np.median(mito) < 0.08
    assert np.quantile(mito, 0.9) < 0.1
    ribo = np.asarray(adata[:, adata.var_names.str.match(r"^RP[LS]\d+A?$")].X.sum(axis=1)).ravel() / total
    assert 0.1 < np.median(ribo) < 0.35
    # heavy-tailed: most genes barely detected, a few very high
    mean = np.asarray(adata.X.mean(axis=0)).ravel()
    assert np.median(mean) < 0.05 and mean.max() > 5


def test_lncrna_lower_than_protein_coding(demo, genes):
    samples = demo.cells.loc[demo.cells["technology"] == "droplet", "sample"].unique()
    X = sp.vstack([clean(demo, s)[0].X for s in samples]).tocsr()
    ids = demo.counts[samples[0]].var["gene_ids"].str.replace(r"\.\d+$", "", regex=True)
    kind = genes.loc[ids, "gene_type"].to_numpy()
    mean = np.asarray(X.mean(axis=0)).ravel()
    assert np.median(mean[kind == "protein_coding"]) > 0.005
    assert np.median(mean[kind == "lncRNA"]) < 0.5 * np.median(mean[kind == "protein_coding"])


def test_plate_cells_detect_more_genes_than_droplet_cells(demo):
    detected = {}
    for tech in ("droplet", "plate"):
        samples = demo.cells.loc[demo.cells["technology"] == tech, "sample"].unique()
        detected[tech] = np.concatenate([np.diff(clean(demo, s)[0].X.indptr) for s in samples])
    assert 700 < np.median(detected["droplet"]) < 3000
    assert np.median(detected["plate"]) > 2 * np.median(detected["droplet"])
    plate_totals = demo.cells.loc[(demo.cells["technology"] == "plate") & ~demo.cells["low_quality"], "total_counts"]
    assert 1e5 < plate_totals.median() < 1e6


def test_sex_genes(demo):
    sex = demo.patients.drop_duplicates("patient").set_index("patient")["sex"]
    for patient in ("P1", "H2"):
        sample = demo.cells.loc[demo.cells["patient"] == patient, "sample"].iloc[0]
        adata = demo.counts[sample]
        xist = adata[:, "XIST"].X.sum()
        rps4y1 = adata[:, "RPS4Y1"].X.sum()
        if sex[patient] == "male":
            assert xist == 0 and rps4y1 > 0
        else:
            assert xist > 0 and rps4y1 == 0


@pytest.mark.parametrize("phi1", [0.0, 8.0])
def test_sparse_and_dense_samplers_give_the_same_negative_binomial(phi1):
    """Both samplers draw NB with var = mu + (d*mu + phi1)*mu, d the gene dispersion."""
    rng = np.random.default_rng(0)
    profile = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    dispersion = np.array([0.2, 0.5, 1.0, 0.1, 0.3])
    lib = np.full(20000, 20.0)
    c, g, v = _sample_nb_sparse(rng, profile, np.cumsum(profile), lib, dispersion, phi1)
    sparse = sp.coo_matrix((v, (c, g)), shape=(lib.size, profile.size)).toarray()
    dense = _sample_nb_dense(rng, lib[:, None] * profile[None, :], dispersion, phi1)
    mu = 20.0 * profile
    var = mu + (dispersion * mu + phi1) * mu
    for draws in (sparse, dense):
        assert np.allclose(draws.mean(axis=0), mu, rtol=0.03, atol=0.01)
        assert np.allclose(draws.var(axis=0), var, rtol=0.1, atol=0.01)
        assert draws[:, 4].sum() == 0  # a gene with zero expression is never drawn


# ------------------------------------------------------------------------------------------------
# HSPC states, cell cycle, index sort
# ------------------------------------------------------------------------------------------------
def test_marker_genes_higher_in_their_state(demo, markers):
    samples = demo.cells.loc[demo.cells["technology"] == "droplet", "sample"].unique()
    parts = [clean(demo, s) for s in samples]
    X = sp.vstack([cp10k(a) for a, _ in parts]).tocsc()
    state = pd.concat([t["state"] for _, t in parts], ignore_index=True).to_numpy()
    var_names = parts[0][0].var_names
    states = DEFAULT_PARAMS["states"]
    for name in states:
        cols = np.flatnonzero(var_names.isin(markers[name]))
        score = np.log1p(np.asarray(X[:, cols].mean(axis=1)).ravel())
        mine = score[state == name].mean()
        for other in states:
            if other != name:
                assert mine > score[state == other].mean() + 0.3, (name, other)


def test_state_composition_follows_the_gate(demo):
    # the gate's composition is that of its HSPC cells; cells of another type (confounders, patient
    # samples only) come on top, with their own label
    other = demo.cells["other_type"]
    assert (demo.cells.loc[other & ~demo.cells["doublet"], "state"] == "OTHER").all()
    assert not other[demo.cells["condition"] == "healthy"].any()
    truth = demo.cells[~demo.cells["doublet"] & ~other]
    hsc_gate = truth.loc[truth["population"] == "HSC", "state"].value_counts(normalize=True)
    assert 0.78 < hsc_gate["HSC"] < 0.92 and set(hsc_gate.index) <= {"HSC", "LMPP"}
    prog_gate = truth.loc[truth["population"] == "PROG", "state"].value_counts(normalize=True)
    assert "HSC" not in prog_gate.index and 0.25 < prog_gate["GMP"] < 0.35
    doublets = demo.cells[demo.cells["doublet"]]
    assert (doublets["state"].str.contains(r"\+")).mean() > 0.6


def test_cell_cycle_programs(demo, gene_sets):
    samples = demo.cells.loc[demo.cells["technology"] == "droplet", "sample"].unique()
    parts = [clean(demo, s) for s in samples]
    X = sp.vstack([cp10k(a) for a, _ in parts]).tocsc()
    truth = pd.concat([t for _, t in parts], ignore_index=True)
    var_names = parts[0][0].var_names

    def score(name):
        cols = np.flatnonzero(var_names.isin(gene_sets[name]))
        return np.log1p(np.asarray(X[:, cols].mean(axis=1)).ravel())

    s, g2m, q = score("TIROSH2016_S"), score("TIROSH2016_G2M"), score("GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP")
    phase, quiescent = truth["cell_cycle_phase"].to_numpy(), truth["quiescent"].to_numpy()
    assert s[phase == "S"].mean() > s[quiescent].mean() + 0.3
    assert g2m[phase == "G2M"].mean() > g2m[quiescent].mean() + 0.3
    assert q[quiescent].mean() > q[~quiescent].mean() + 0.2
    assert set(phase[quiescent]) == {"G1"}
    cycling = 1 - truth.groupby("state")["quiescent"].mean()
    assert cycling["HSC"] < 0.2 and 0.55 < cycling["GMP"] < 0.85
    # quiescent cells are smaller (fewer counts)
    total = truth["total_counts"].to_numpy()
    assert np.median(total[quiescent]) < 0.85 * np.median(total[~quiescent])


def test_cycling_modifier_makes_remission_del_hscs_quiescent(genes, markers, gene_sets):
    samples = sheet([("P5_rem_HSC", "P5", "remission", "HSC", "MDS", "droplet")])
    params = {
        "cells_per_sample": {"droplet": 2000},
        "clone_fraction": {"remission": {"HSC": 0.5}},
        "state_composition": {"HSC": {"HSC": 1.0}},
        "cell_cycle": {
            "cycling_probability": {"HSC": 0.5},
            "modifiers": [{"lesion": "del5q", "timepoint": "remission", "states": ["HSC"], "odds_ratio": 0.1}],
        },
    }
    cells = simulate_cohort(samples, genes, markers, gene_sets, params=params, seed=5).cells
    cells = cells[~cells["doublet"]]
    cycling = 1 - cells.groupby("lesion_del5q")["quiescent"].mean()
    assert 0.42 < cycling[False] < 0.58  # unchanged: 0.5
    assert 0.04 < cycling[True] < 0.15  # odds 1 x 0.1 -> p = 0.09


def test_index_sort_follows_the_gates(demo):
    plate = demo.cells.loc[demo.cells["technology"] == "plate", "sample"].unique()
    assert set(demo.index_sort) == set(plate)
    parts = []
    for sample in plate:
        facs = demo.index_sort[sample]
        assert list(facs.columns) == ["CD34", "CD38", "CD90", "CD45RA"]
        assert list(facs.index) == list(demo.counts[sample].obs_names)
        assert (facs.to_numpy() > 0).all()
        parts.append(facs.assign(state=demo.cells.loc[demo.cells["sample"] == sample, "state"].to_numpy()))
    facs = pd.concat(parts)
    med = np.log10(facs.groupby("state")[["CD34", "CD38", "CD90", "CD45RA"]].median())
    assert med.loc["HSC", "CD90"] > med.loc["LMPP", "CD90"] + 0.5
    assert med.loc["LMPP", "CD45RA"] > med.loc["HSC", "CD45RA"] + 0.5
    assert facs.loc[facs["state"] == "HSC", "CD38"].median() < 300  # CD38-/low
    assert med.loc["HSC", "CD34"] > 3.5  # CD34 bright
    # log-normal spread: the gates overlap a little, as in real FACS
    hsc_cd90 = np.log10(facs.loc[facs["state"] == "HSC", "CD90"])
    assert 0.1 < hsc_cd90.std() < 0.35 and (hsc_cd90 < 2.5).mean() < 0.1


def test_index_sort_for_droplet_sample_named_in_sheet_and_cd38_hsc_below_gmp(genes, markers, gene_sets):
    samples = sheet(
        [
            ("P6_dx_CD34", "P6", "diagnosis", "CD34", "MDS", "droplet"),
            ("P6_dx_PROG", "P6", "diagnosis", "PROG", "MDS", "droplet"),
        ]
    )
    samples["index_sort"] = ["P6_dx_CD34.index_sort.csv", ""]
    cohort = simulate_cohort(samples, genes, markers, gene_sets, params={"cells_per_sample": {"droplet": 600}}, seed=2)
    assert set(cohort.index_sort) == {"P6_dx_CD34"}
    facs = cohort.index_sort["P6_dx_CD34"]
    truth = cohort.cells[cohort.cells["sample"] == "P6_dx_CD34"].set_index("barcode").loc[facs.index]
    single = ~truth["doublet"].to_numpy()
    cd38 = np.log10(facs["CD38"].to_numpy())
    hsc, gmp = single & (truth["state"] == "HSC").to_numpy(), single & (truth["state"] == "GMP").to_numpy()
    assert cd38[hsc].mean() < cd38[gmp].mean() - 0.8


# ------------------------------------------------------------------------------------------------
# lesions and clone fractions
# ------------------------------------------------------------------------------------------------
def test_del_cells_half_expression_inside_interval(half_clone, genes):
    adata, truth = clean(half_clone, "P7_dx_CD34")
    row = half_clone.patients.set_index("lesion").loc["del5q"]
    genes_ = genes.loc[adata.var["gene_ids"].str.replace(r"\.\d+$", "", regex=True).to_numpy()]
    inside = in_interval(genes_, "chr5", int(row["start"]), int(row["end"]))
    assert inside.sum() == row["n_genes"] > 300
    gain = half_clone.patients.set_index("lesion").loc["gain8"]
    on8 = in_interval(genes_, "chr8", int(gain["start"]), int(gain["end"]))
    outside = ~inside & ~on8 & ~adata.var_names.str.startswith("MT-")
    X = adata.X.tocsc()
    del_ = truth["lesion_del5q"].to_numpy()
    assert 0.45 < del_.mean() < 0.55  # exact sampling of 50%, minus low-quality/doublets (none here)

    def ratio(mask, a, b):
        return X[a][:, mask].sum() / a.sum() / (X[b][:, mask].sum() / b.sum())

    plain = del_ & ~truth["lesion_gain8"].to_numpy()
    assert 0.9 < ratio(outside, plain, ~del_) < 1.1  # ~1 outside (library-size noise only)
    assert 0.46 < ratio(inside, plain, ~del_) / ratio(outside, plain, ~del_) < 0.54  # 0.5 inside
    assert 0.42 < ratio(inside, plain, ~del_) < 0.58
    # the subclonal gain: x1.5 on chr8 in carriers, about half of the clone
    gain8 = truth["lesion_gain8"].to_numpy()
    assert not (gain8 & ~del_).any() and 0.35 < gain8[del_].mean() < 0.65
    assert 1.35 < ratio(on8, gain8, ~del_) < 1.65


def test_patient_intervals_contain_the_cdr(demo):
    lesions = demo.patients[demo.patients["condition"] == "MDS"]
    assert len(lesions) == 4 and (lesions["lesion"] == "del5q").all()
    assert (lesions["chromosome"] == "chr5").all()
    assert lesions["start"].between(65_000_000, 80_000_000).all()
    assert lesions["end"].between(151_900_000, 160_500_000).all()
    assert (lesions["start"] <= 149_400_000).all() and (lesions["end"] >= 151_900_000).all()
    assert lesions["start"].nunique() == 4  # patient-specific breakpoints
    healthy = demo.patients[demo.patients["condition"] == "healthy"]
    assert len(healthy) == 3 and (healthy["lesion"] == "").all()


def test_clone_fractions_near_params_and_healthy_donors_clean(demo):
    # clone fractions are of the HSPC cells: cells of another type (confounders) never carry
    assert not demo.cells.loc[demo.cells["other_type"] & ~demo.cells["doublet"], "lesion_del5q"].any()
    cells = demo.cells[~demo.cells["doublet"] & ~demo.cells["other_type"]]
    assert not cells.loc[cells["condition"] == "healthy", "lesion_del5q"].any()
    observed = (
        cells[cells["condition"] == "MDS"].groupby(["timepoint", "population"])["lesion_del5q"].agg(["mean", "size"])
    )
    for (timepoint, population), row in observed.iterrows():
        expected = DEFAULT_PARAMS["clone_fraction"][timepoint][population]
        sd = np.sqrt(expected * (1 - expected) / row["size"])
        assert abs(row["mean"] - expected) < 4 * sd + 0.01, (timepoint, population)
    assert observed.loc[("remission", "HSC"), "mean"] > 5 * observed.loc[("remission", "PROG"), "mean"]


def test_exact_clone_sampling(genes, markers, gene_sets):
    samples = sheet([("P8_rem_PROG", "P8", "remission", "PROG", "MDS", "droplet")])
    params = {"clone_sampling": "exact", "cells_per_sample": {"droplet": 500}}
    cells = simulate_cohort(samples, genes, markers, gene_sets, params=params, seed=0).cells
    singlets = cells[~cells["doublet"]]
    assert singlets["lesion_del5q"].sum() == round(0.03 * len(singlets))


# ------------------------------------------------------------------------------------------------
# planted artefacts
# ------------------------------------------------------------------------------------------------
def test_low_quality_cells_high_mito_low_counts(demo):
    cells = demo.cells[~demo.cells["doublet"]]
    assert 0.03 < cells["low_quality"].mean() < 0.07
    for sample in ("P1_diagnosis_HSC", "P3_diagnosis_HSC", "H3_CD34"):
        adata = demo.counts[sample]
        truth = demo.cells[demo.cells["sample"] == sample].reset_index(drop=True)
        total = np.asarray(adata.X.sum(axis=1)).ravel()
        mito = np.asarray(adata[:, adata.var_names.str.startswith("MT-")].X.sum(axis=1)).ravel() / total
        low = truth["low_quality"].to_numpy()
        good = ~low & ~truth["doublet"].to_numpy()
        assert low.sum() >= 3
        assert np.median(mito[low]) > 0.18 and np.median(mito[good]) < 0.08
        assert np.median(total[low]) < 0.3 * np.median(total[good])


def test_doublets_droplet_only_with_about_twice_the_counts(demo):
    cells = demo.cells
    assert not cells.loc[cells["technology"] == "plate", "doublet"].any()
    droplet = cells[cells["technology"] == "droplet"]
    per_sample = droplet.groupby("sample")["doublet"].mean()
    assert np.allclose(per_sample, 0.06, atol=0.005)
    singlets = droplet[~droplet["doublet"] & ~droplet["low_quality"]]
    ratio = droplet.loc[droplet["doublet"], "total_counts"].median() / singlets["total_counts"].median()
    assert 1.6 < ratio < 2.5
    assert not droplet.loc[droplet["doublet"], "low_quality"].any()


# ------------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------------
def test_resolve_params_defaults_and_merge():
    assert resolve_params(None) == DEFAULT_PARAMS
    merged = resolve_params({"clone_fraction": {"remission": {"HSC": 0.6}}, "state_composition": {"HSC": {"HSC": 1.0}}})
    assert merged["clone_fraction"]["remission"] == {"HSC": 0.6, "PROG": 0.03, "CD34": 0.08}
    assert merged["clone_fraction"]["diagnosis"] == DEFAULT_PARAMS["clone_fraction"]["diagnosis"]
    assert merged["state_composition"]["HSC"] == {"HSC": 1.0}  # replaced, not merged
    assert DEFAULT_PARAMS["clone_fraction"]["remission"]["HSC"] == 0.40  # defaults untouched


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"clone_fraction": {"remission": {"HSC": 1.4}}},
            "params.clone_fraction.remission.HSC: 1.4 is out of range; it must be at most 1.",
        ),
        ({"cell_cyle": {}}, "params: unknown key(s) 'cell_cyle' (did you mean 'cell_cycle'?); allowed keys:"),
        ({"doublets": {"rates": 0.1}}, "params.doublets: unknown key(s) 'rates' (did you mean 'rate'?)"),
        (
            {"state_composition": {"HSC": {"HSC": 0.5, "LMPP": 0.2}}},
            "params.state_composition.HSC: fractions sum to 0.7",
        ),
        (
            {"state_composition": {"HSC": {"HSC": 0.5, "NK": 0.5}}},
            "params.state_composition.HSC: 'NK' is not allowed",
        ),
        ({"cells_per_sample": {"droplet": 0}}, "params.cells_per_sample.droplet: 0 is out of range"),
        ({"cells_per_sample": {"droplet": 2.5}}, "params.cells_per_sample.droplet: 2.5 is of the wrong type"),
        (
            {"library_size": {"plate": {"median": "many"}}},
            "params.library_size.plate.median: 'many' is of the wrong type",
        ),
        (
            {"clone_sampling": "random"},
            "params.clone_sampling: 'random' is not allowed; choose one of 'bernoulli', 'exact'.",
        ),
        (
            {"lesions": [dict(DEFAULT_PARAMS["lesions"][0], copy_ratio=1.5)]},
            "params.lesions[0].copy_ratio: 1.5 is not below 1",
        ),
        ({"lesions": [dict(DEFAULT_PARAMS["lesions"][0], contains=[10, 20])]}, "params.lesions[0].contains"),
        (
            {"lesions": [dict(DEFAULT_PARAMS["lesions"][0], chromosome="5")]},
            "params.lesions[0].chromosome: '5' is not allowed",
        ),
        (
            {"cell_cycle": {"modifiers": [{"lesion": "del7q", "odds_ratio": 0.5}]}},
            "params.cell_cycle.modifiers[0].lesion: 'del7q'",
        ),
        (
            {"cell_cycle": {"cycling_probability": {"HSC": -0.1}}},
            "params.cell_cycle.cycling_probability.HSC: -0.1 is out of range; it must be at least 0.",
        ),
        (
            {"low_quality": {"count_factor": [0.5, 0.1]}},
            "params.low_quality.count_factor: low 0.5 is above high 0.1",
        ),
        (
            {"index_sort": {"levels": {"NK": {"CD34": 3.0}}}},
            "params.index_sort.levels.NK: has no level for marker 'CD38'",
        ),
        (
            {"states": [*DEFAULT_PARAMS["states"], "NK"]},
            "params.cell_cycle.cycling_probability: has no entry for state 'NK'",
        ),
        ("fast", "params: must be a mapping"),
        ({"expression": {"sdlog": float("nan")}}, "params.expression.sdlog: nan is of the wrong type"),
        ({"states": ["HSC", ""]}, "params.states[1]: '' should be non-empty"),
        ({"lesions": [dict(DEFAULT_PARAMS["lesions"][0], name="del 5q")]}, "params.lesions[0].name: 'del 5q'"),
        (
            {"cell_cycle": {"modifiers": [{"lesion": "del5q", "states": ["NK"], "odds_ratio": 0.5}]}},
            "params.cell_cycle.modifiers[0].states[0]: 'NK' is not allowed",
        ),
        ({"cell_cycle": {"phase_fractions": {}}}, "params.cell_cycle.phase_fractions: {} should be non-empty"),
        (
            {"expression": {"ribosomal_fraction": 0.9, "housekeeping_fraction": 0.08}},
            "params.expression: ribosomal_fraction + housekeeping_fraction must stay below 0.95",
        ),
    ],
)
def test_bad_params_name_the_key(params, message):
    with pytest.raises(InputError) as err:
        resolve_params(params)
    assert str(err.value).startswith(message) or (message in str(err.value) and str(err.value).startswith("params"))


def test_params_root_names_where_they_come_from():
    """The workflow passes its config key; every message then starts with it."""
    with pytest.raises(InputError, match=r"^demo\.params\.clone_sampling: 'random' is not allowed"):
        resolve_params({"clone_sampling": "random"}, root="demo.params")
    with pytest.raises(InputError, match=r"^demo\.params\.state_composition\.HSC: fractions sum to 0\.7"):
        resolve_params({"state_composition": {"HSC": {"HSC": 0.7}}}, root="demo.params")


def test_params_numpy_numbers_and_optional_keys():
    """numpy scalars pass as the numbers they are; a lesion's and a modifier's optional keys get defaults."""
    lesion = {k: v for k, v in DEFAULT_PARAMS["lesions"][0].items() if k not in ("contains", "fraction_of_clone")}
    p = resolve_params(
        {
            "cells_per_sample": {"droplet": np.int64(300)},
            "sample_library_sdlog": np.float64(0.1),
            "lesions": [lesion],
            "cell_cycle": {"modifiers": [{"lesion": "del5q", "odds_ratio": 0.5}]},
        }
    )
    assert p["cells_per_sample"]["droplet"] == 300 and p["sample_library_sdlog"] == 0.1
    assert p["lesions"][0]["contains"] is None and p["lesions"][0]["fraction_of_clone"] == 1.0
    assert p["cell_cycle"]["modifiers"] == [{"lesion": "del5q", "odds_ratio": 0.5, "timepoint": None, "states": None}]


def test_sheet_rows_need_composition_and_clone_fraction(genes, markers, gene_sets):
    bad_pop = sheet([("P1_dx_MPP", "P1", "diagnosis", "MPP", "MDS", "droplet")])
    with pytest.raises(InputError, match=r"sample 'P1_dx_MPP'.*add params\.state_composition\.MPP"):
        simulate_cohort(bad_pop, genes, markers, gene_sets)
    bad_tp = sheet([("P1_d90_HSC", "P1", "day90", "HSC", "MDS", "droplet")])
    with pytest.raises(InputError, match=r"row 1 \(sample 'P1_d90_HSC'\).*add params\.clone_fraction\.day90\.HSC"):
        simulate_cohort(bad_tp, genes, markers, gene_sets)
    no_tp = sheet([("P1_HSC", "P1", "", "HSC", "MDS", "droplet")])
    with pytest.raises(InputError, match="timepoint is empty"):
        simulate_cohort(no_tp, genes, markers, gene_sets)
    bad_tech = sheet([("P1_dx_HSC", "P1", "diagnosis", "HSC", "MDS", "nanopore")])
    with pytest.raises(InputError, match="technology 'nanopore'"):
        simulate_cohort(bad_tech, genes, markers, gene_sets)
    # healthy donors need no clone fraction, not even a timepoint
    ok = sheet([("H9_CD34", "H9", "", "CD34", "healthy", "droplet")])
    assert (
        not simulate_cohort(ok, genes, markers, gene_sets, params={"cells_per_sample": {"droplet": 20}})
        .cells["lesion_del5q"]
        .any()
    )


def test_missing_gene_set_or_markers_named(genes, markers, gene_sets):
    one = sheet([("H9_CD34", "H9", "", "CD34", "healthy", "droplet")])
    with pytest.raises(InputError, match=r"params\.cell_cycle\.s_genes: gene set 'TIROSH2016_S'"):
        simulate_cohort(one, genes, markers, {k: v for k, v in gene_sets.items() if k != "TIROSH2016_S"})
    with pytest.raises(InputError, match=r"state 'MK' has no marker genes"):
        simulate_cohort(one, genes, {k: v for k, v in markers.items() if k != "MK"}, gene_sets)


def test_schema_defaults_match_default_params(root):
    import jsonschema

    schema = yaml.safe_load((root / "config/schemas/demo.schema.yaml").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    defaults = {key: sub["default"] for key, sub in schema["properties"].items()}
    assert json.dumps(defaults, sort_keys=True) == json.dumps(DEFAULT_PARAMS, sort_keys=True)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(DEFAULT_PARAMS)
    for key, sub in schema["properties"].items():
        assert sub.get("description") or sub.get("$ref"), key
    bad = copy.deepcopy(DEFAULT_PARAMS)
    bad["clone_fraction"]["remission"]["HSC"] = 1.4
    assert not validator.is_valid(bad)
    bad = dict(DEFAULT_PARAMS, cell_cyle={})
    assert not validator.is_valid(bad)


def test_demo_sheet_timing(root, genes, markers, gene_sets):
    """The bundled demo (~6,000 cells) simulates well under 30 s (here: well under 20 s)."""
    import time

    samples = pd.read_csv(root / "config/demo/samples.tsv", sep="\t", dtype=str, keep_default_na=False, comment="#")
    start = time.perf_counter()
    simulate_cohort(samples.iloc[::3], genes, markers, gene_sets, seed=9)
    assert time.perf_counter() - start < 10  # a third of the demo


def test_written_samples_equal_kept_samples(small, genes, markers, gene_sets):
    """write= hands each sample over as soon as it is simulated (a large cohort needs the memory of
    one sample); the draws are the same as when the cohort is kept."""
    written = {}
    out = simulate_cohort(
        SMALL,
        genes,
        markers,
        gene_sets,
        params={"cells_per_sample": {"droplet": 300}},
        seed=3,
        write=lambda name, counts, facs: written.__setitem__(name, counts),
    )
    assert not out.counts and set(written) == set(small.counts)
    for name, counts in written.items():
        assert (counts.X != small.counts[name].X).nnz == 0
    pd.testing.assert_frame_equal(out.cells, small.cells)
