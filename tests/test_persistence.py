"""del(5q) fractions with Wilson and error-corrected intervals; CMH and mixed-model contrasts; figures."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.proportion import proportion_confint

from remnant.errors import InputError
from remnant.persistence import (
    binomial_mixed_contrast,
    del_fraction_table,
    persistence_contrasts,
    rogan_gladen,
    stratified_contrast,
)
from remnant.persistence_plots import plot_cycling_composition, plot_del_fraction, plot_signature_distributions, plot_volcano


def cohort(rng, fractions, *, n=200, fpr=0.02, fnr=0.3, patients=("P1", "P2", "P3", "P4")):
    """Cells with calls drawn from true carrier status with known error rates (the copy-number step's model).

    ``fractions``: {(population, timepoint): true carrier probability}. Returns (obs, per_sample, truth).
    """
    obs, rates = [], []
    for patient in patients:
        for (pop, tp), f in fractions.items():
            sample = f"{patient}_{tp}_{pop}"
            carrier = rng.random(n) < f
            called = np.where(carrier, rng.random(n) >= fnr, rng.random(n) < fpr)
            obs.append(pd.DataFrame({"sample": sample, "patient": patient, "population": pop, "timepoint": tp,
                                     "del5q_call": called, "del5q_posterior": called * 0.95 + 0.02, "truth": carrier}))
            rates.append({"sample": sample, "fpr": fpr, "fnr": fnr, "prior": f})
    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"c{i}" for i in range(len(obs))]
    return obs, pd.DataFrame(rates).set_index("sample")


STUDY = {("HSC", "diagnosis"): 0.95, ("PROG", "diagnosis"): 0.97, ("HSC", "remission"): 0.4, ("PROG", "remission"): 0.03}


def test_wilson_interval_and_counts():
    obs = pd.DataFrame({"patient": ["P1"] * 10, "population": "HSC", "timepoint": "remission", "sample": "S",
                        "del5q_call": [True] * 3 + [False] * 7})
    row = del_fraction_table(obs).iloc[0]
    assert (row["n_cells"], row["n_called"], row["fraction"]) == (10, 3, 0.3)
    assert (row["fraction_low"], row["fraction_high"]) == pytest.approx(proportion_confint(3, 10, method="wilson"))
    assert np.isnan(row["corrected"])  # no error rates given
    zero = del_fraction_table(obs.assign(del5q_call=False)).iloc[0]
    assert zero["fraction_low"] == 0 and 0 < zero["fraction_high"] < 0.35


def test_rogan_gladen_inverts_the_misclassification():
    p, fpr, fnr = 0.4, 0.05, 0.3
    observed = p * (1 - fnr) + (1 - p) * fpr
    assert rogan_gladen(observed, fpr, fnr) == pytest.approx(p)
    assert rogan_gladen(0.3, 0.0, 0.0) == pytest.approx(0.3)


def test_corrected_fraction_is_unbiased_and_its_interval_covers_truth():
    """200 simulated samples per cell type: mean error < 2 points, 95% interval covers the true probability >= 90%."""
    rng = np.random.default_rng(1)
    fractions = {("HSC", "remission"): 0.4, ("PROG", "remission"): 0.05, ("HSC", "diagnosis"): 0.95}
    obs, rates = cohort(rng, fractions, n=250, patients=[f"P{i}" for i in range(200)])
    table = del_fraction_table(obs, rates, n_reference=1000)
    for (pop, tp), f in fractions.items():
        part = table[(table["population"] == pop) & (table["timepoint"] == tp)]
        assert abs(part["corrected"].mean() - f) < 0.02, (pop, tp)
        covered = ((part["corrected_low"] <= f) & (f <= part["corrected_high"])).mean()
        assert covered >= 0.9, (pop, tp, covered)
        # the raw called fraction is biased by the calling errors; the correction is what fixes it
        if f > 0.3:
            assert part["fraction"].mean() < f - 0.05


def test_pooled_rows_and_per_sample_rates_from_anndata():
    rng = np.random.default_rng(2)
    obs, rates = cohort(rng, STUDY)
    adata = ad.AnnData(X=np.zeros((len(obs), 1), np.float32), obs=obs)
    adata.uns["lesions"] = {"del5q": {"per_sample": rates, "params": {"n_reference": 800}}}
    per_patient = del_fraction_table(adata)
    assert len(per_patient) == 16 and (per_patient["n_samples"] == 1).all()
    pooled = del_fraction_table(adata, by=["population", "timepoint"])
    assert len(pooled) == 4 and (pooled["n_cells"] == 800).all()
    row = pooled.set_index(["population", "timepoint"]).loc[("HSC", "remission")]
    assert abs(row["corrected"] - 0.4) < 0.05
    assert row["corrected_low"] <= row["corrected"] <= row["corrected_high"]


def test_correction_withheld_when_calls_carry_no_information():
    obs = pd.DataFrame({"patient": "P1", "population": "PROG", "timepoint": "remission", "sample": "S",
                        "del5q_call": [False] * 50})
    rates = pd.DataFrame({"fpr": [0.0], "fnr": [1.0]}, index=["S"])
    row = del_fraction_table(obs, rates).iloc[0]
    assert np.isnan(row["corrected"]) and row["youden"] == 0.0


def test_stratified_contrast_matches_statsmodels_and_detects_persistence():
    rng = np.random.default_rng(3)
    obs, rates = cohort(rng, STUDY)
    table = del_fraction_table(obs, rates)
    out = stratified_contrast(table, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "remission"})
    per = out[out["scope"] == "patient"]
    pooled = out[out["scope"] == "across patients"].iloc[0]
    assert len(per) == 4 and pooled["n_strata"] == 4
    tables = [np.array([[r.n_called_level, r.n_cells_level - r.n_called_level],
                        [r.n_called_reference, r.n_cells_reference - r.n_called_reference]], float) for r in per.itertuples()]
    st = StratifiedTable(tables)
    assert pooled["odds_ratio"] == pytest.approx(st.oddsratio_pooled)
    assert pooled["pvalue"] == pytest.approx(st.test_null_odds(correction=True).pvalue)
    assert pooled["pvalue"] < 1e-6 and pooled["odds_ratio_low"] > 1
    # effect sizes: raw difference is attenuated by fnr; the corrected one is near the truth (0.37)
    assert pooled["corrected_difference"] == pytest.approx(0.37, abs=0.06)
    assert pooled["corrected_difference_low"] < pooled["corrected_difference"] < pooled["corrected_difference_high"]
    assert (per["difference_low"] < per["difference"]).all() and (per["difference"] < per["difference_high"]).all()


def test_no_false_discovery_of_persistence_when_stem_and_progenitor_fractions_are_equal():
    rng = np.random.default_rng(4)
    null = {("HSC", "remission"): 0.05, ("PROG", "remission"): 0.05}
    pvalues = []
    for _ in range(100):
        obs, rates = cohort(rng, null)
        table = del_fraction_table(obs, rates)
        out = stratified_contrast(table, factor="population", level="HSC", reference="PROG")
        pvalues.append(out["pvalue"].iloc[-1])
    assert np.mean(np.array(pvalues) < 0.05) <= 0.1


def test_persistence_contrasts_lists_the_studys_comparisons():
    rng = np.random.default_rng(5)
    obs, rates = cohort(rng, STUDY)
    out = persistence_contrasts(del_fraction_table(obs, rates))
    pooled = out[out["scope"] == "across patients"].set_index("contrast")
    assert set(pooled.index) == {
        "population: HSC vs PROG | timepoint=remission", "population: HSC vs PROG | timepoint=diagnosis",
        "timepoint: remission vs diagnosis | population=HSC", "timepoint: remission vs diagnosis | population=PROG",
    }
    assert pooled.loc["timepoint: remission vs diagnosis | population=PROG", "odds_ratio"] < 0.05
    with pytest.raises(InputError, match="no timepoint"):
        persistence_contrasts(del_fraction_table(obs, rates), before="x", after="y")


def test_binomial_mixed_contrast_agrees_in_direction():
    rng = np.random.default_rng(6)
    obs, _ = cohort(rng, STUDY, n=120)
    row = binomial_mixed_contrast(obs, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "remission"}).iloc[0]
    assert row["odds_ratio_low"] > 1 and row["n_patients"] == 4
    empty = binomial_mixed_contrast(obs, factor="population", level="HSC", reference="MISSING").iloc[0]
    assert np.isnan(empty["odds_ratio"])


def test_bad_inputs_name_the_field():
    obs = pd.DataFrame({"patient": ["P1"], "population": ["HSC"], "timepoint": ["remission"], "sample": ["S"], "del5q_call": [True]})
    with pytest.raises(InputError, match="del5q_call"):
        del_fraction_table(obs.drop(columns="del5q_call"))
    with pytest.raises(InputError, match=r"no error rates for sample\(s\) \['S'\]"):
        del_fraction_table(obs, pd.DataFrame({"fpr": [0.0], "fnr": [0.1]}, index=["other"]))
    with pytest.raises(InputError, match="lacks column 'fnr'"):
        del_fraction_table(obs, pd.DataFrame({"fpr": [0.0]}, index=["S"]))
    with pytest.raises(InputError, match="n_called"):
        stratified_contrast(pd.DataFrame({"patient": ["P1"], "population": ["HSC"], "n_cells": [3]}),
                            factor="population", level="HSC", reference="PROG")


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(7)
    obs, rates = cohort(rng, STUDY, n=60, patients=("P1", "P2"))
    table = del_fraction_table(obs, rates)
    table.loc[0, "corrected"] = np.nan  # a not-correctable bar is drawn hatched
    plot_del_fraction(table, str(tmp_path / "fraction.png"), timepoints=["diagnosis", "remission"])
    obs["sig_Q"] = rng.normal(size=len(obs))
    plot_signature_distributions(obs, ["sig_Q"], str(tmp_path / "scores.png"), group_key="population")
    comp = pd.DataFrame({"patient": ["P1", "P2"], "n_cells": [10, 20], "fraction_G0_G1": [0.8, 0.5], "fraction_S": [0.1, 0.3],
                         "fraction_G2M": [0.1, 0.2]})
    plot_cycling_composition(comp, str(tmp_path / "cycling.png"), label_keys=["patient"])
    de = pd.DataFrame({"gene_name": list("ABCD"), "log2FoldChange": [2.0, -1.0, 0.1, 0.0], "pvalue": [1e-6, 1e-3, 0.5, 0.9],
                       "padj": [1e-5, 0.01, 0.8, 0.9]})
    plot_volcano(de, str(tmp_path / "volcano.png"))
    plot_volcano(de.iloc[:0], str(tmp_path / "volcano_empty.png"))
    for name in ("fraction", "scores", "cycling", "volcano", "volcano_empty"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
