"""del(5q) fractions with Wilson and error-corrected intervals; CMH and mixed-model contrasts; figures."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.proportion import proportion_confint

from remnant.errors import InputError
from remnant.pl.persistence import (
    plot_cycling_composition,
    plot_del_fraction,
    plot_signature_distributions,
    plot_volcano,
)
from remnant.stats.contrasts import (
    CORRECTED_TESTS,
    binomial_mixed_contrast,
    linear_mixed_difference,
    random_effects_test,
    stratified_contrast,
)
from remnant.stats.proportions import rogan_gladen
from remnant.tl.fractions import del_fraction_table, persistence_contrasts


def cohort(rng, fractions, *, n=200, fpr=0.02, fnr=0.3, patients=("P1", "P2", "P3", "P4")):
    """Cells with calls drawn from true carrier status with known error rates (the copy-number step's model).

    ``fractions``: {(population, timepoint): true carrier probability}; ``fnr`` a rate or
    {population: rate} (quiescent stem cells are missed more often). Returns (obs, per_sample).
    """
    obs, rates = [], []
    for patient in patients:
        for (pop, tp), f in fractions.items():
            sample = f"{patient}_{tp}_{pop}"
            miss = fnr[pop] if isinstance(fnr, dict) else fnr
            carrier = rng.random(n) < f
            called = np.where(carrier, rng.random(n) >= miss, rng.random(n) < fpr)
            obs.append(
                pd.DataFrame(
                    {
                        "sample": sample,
                        "patient": patient,
                        "population": pop,
                        "timepoint": tp,
                        "del5q_call": called,
                        "del5q_posterior": called * 0.95 + 0.02,
                        "truth": carrier,
                    }
                )
            )
            rates.append({"sample": sample, "fpr": fpr, "fnr": miss, "prior": f})
    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"c{i}" for i in range(len(obs))]
    return obs, pd.DataFrame(rates).set_index("sample")


STUDY = {
    ("HSC", "diagnosis"): 0.95,
    ("PROG", "diagnosis"): 0.97,
    ("HSC", "remission"): 0.4,
    ("PROG", "remission"): 0.03,
}


def test_wilson_interval_and_counts():
    obs = pd.DataFrame(
        {
            "patient": ["P1"] * 10,
            "population": "HSC",
            "timepoint": "remission",
            "sample": "S",
            "del5q_call": [True] * 3 + [False] * 7,
        }
    )
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
    obs = pd.DataFrame(
        {"patient": "P1", "population": "PROG", "timepoint": "remission", "sample": "S", "del5q_call": [False] * 50}
    )
    rates = pd.DataFrame({"fpr": [0.0], "fnr": [1.0]}, index=["S"])
    row = del_fraction_table(obs, rates).iloc[0]
    assert np.isnan(row["corrected"]) and row["youden"] == 0.0


def test_stratified_contrast_matches_statsmodels_and_detects_persistence():
    rng = np.random.default_rng(3)
    obs, rates = cohort(rng, STUDY)
    table = del_fraction_table(obs, rates)
    out = stratified_contrast(
        table, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "remission"}
    )
    per = out[out["scope"] == "patient"]
    pooled = out[out["scope"] == "across patients"].iloc[0]
    assert len(per) == 4 and pooled["n_strata"] == 4
    tables = [
        np.array(
            [
                [r.n_called_level, r.n_cells_level - r.n_called_level],
                [r.n_called_reference, r.n_cells_reference - r.n_called_reference],
            ],
            float,
        )
        for r in per.itertuples()
    ]
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
    pvalues, significant = [], []
    for _ in range(100):
        obs, rates = cohort(rng, null)
        table = del_fraction_table(obs, rates)
        out = stratified_contrast(table, factor="population", level="HSC", reference="PROG")
        pvalues.append(out["pvalue"].iloc[-1])
        significant.append(out["significant"].iloc[-1])
    assert np.mean(np.array(pvalues) < 0.05) <= 0.1
    assert np.mean(significant) <= 0.1


def test_random_effects_test_matches_statsmodels_and_floors_its_variance():
    from scipy import stats
    from statsmodels.stats.meta_analysis import combine_effects

    y, v = np.array([0.1, 0.3, 0.2, 0.6]), np.array([0.01, 0.02, 0.005, 0.04])
    ref = combine_effects(y, v, method_re="chi2")  # DerSimonian-Laird
    out = random_effects_test(y, v)
    assert out["estimate"] == pytest.approx(ref.mean_effect_re) and out["tau2"] == pytest.approx(ref.tau2)
    assert out["se"] == pytest.approx(ref.sd_eff_w_re_hksj) and out["se"] > ref.sd_eff_w_re  # Hartung-Knapp
    half = stats.t.ppf(0.975, 3) * out["se"]
    assert (out["low"], out["high"]) == pytest.approx((out["estimate"] - half, out["estimate"] + half))
    assert out["pvalue"] == pytest.approx(2 * stats.t.sf(out["estimate"] / out["se"], 3))
    assert out["k"] == 4 and out["df"] == 3 and out["test"] == CORRECTED_TESTS["meta"]
    # estimates closer together than their variances allow: never narrower than DerSimonian-Laird's normal interval
    close = random_effects_test([0.2, 0.21, 0.19, 0.2], [0.01] * 4)
    assert close["tau2"] == 0 and close["se"] == pytest.approx(0.05)
    # one patient: its own z test; none usable: NaN
    one = random_effects_test([0.3, np.nan], [0.01, 0.02])
    assert one["k"] == 1 and one["test"] == CORRECTED_TESTS["one"] and np.isnan(one["df"])
    assert (one["low"], one["high"]) == pytest.approx((0.3 - 1.959964 * 0.1, 0.3 + 1.959964 * 0.1))
    assert one["pvalue"] == pytest.approx(2 * stats.norm.sf(3.0))
    none = random_effects_test([0.2, np.nan], [0.0, 0.01])
    assert none["k"] == 0 and np.isnan(none["estimate"]) and none["test"] == ""


def test_corrected_test_ignores_a_difference_in_calling_sensitivity():
    """Issue 20: stem cells (fewer counts) are missed more often than progenitors. With the same
    true fraction in both, CMH on called cells finds a difference; the corrected test does not,
    and it still finds a real one."""
    rng = np.random.default_rng(20)
    patients = [f"P{i}" for i in range(1, 6)]
    fnr = {"HSC": 0.45, "PROG": 0.15}
    null = {("HSC", "diagnosis"): 0.9, ("PROG", "diagnosis"): 0.9}
    obs, rates = cohort(rng, null, n=300, fnr=fnr, patients=patients)
    out = stratified_contrast(
        del_fraction_table(obs, rates, n_reference=1000), factor="population", level="HSC", reference="PROG"
    )
    pooled = out[out["scope"] == "across patients"].iloc[0]
    assert pooled["odds_ratio"] < 0.5 and pooled["pvalue"] < 1e-10  # called cells: a difference that is not there
    assert (
        abs(pooled["corrected_difference"]) < 0.04 and not pooled["significant"] and pooled["corrected_pvalue"] > 0.05
    )
    assert pooled["corrected_difference_low"] < 0 < pooled["corrected_difference_high"]
    assert pooled["corrected_n_strata"] == 5 and pooled["corrected_test"] == CORRECTED_TESTS["meta"]
    real = {("HSC", "diagnosis"): 0.9, ("PROG", "diagnosis"): 0.5}
    obs, rates = cohort(rng, real, n=300, fnr=fnr, patients=patients)
    out = stratified_contrast(
        del_fraction_table(obs, rates, n_reference=1000), factor="population", level="HSC", reference="PROG"
    )
    pooled = out[out["scope"] == "across patients"].iloc[0]
    assert pooled["significant"] and pooled["corrected_difference_low"] > 0 and pooled["corrected_pvalue"] < 0.001
    assert pooled["corrected_difference"] == pytest.approx(0.4, abs=0.05)
    per = out[out["scope"] == "patient"]  # per patient: z tests from the delta-method standard errors
    assert (per["corrected_difference_low"] < per["corrected_difference"]).all() and per["significant"].all()
    assert (per["corrected_difference"] == per["corrected_level"] - per["corrected_reference"]).all()


def test_persistence_contrasts_lists_the_studys_comparisons():
    rng = np.random.default_rng(5)
    obs, rates = cohort(rng, STUDY)
    out = persistence_contrasts(del_fraction_table(obs, rates))
    pooled = out[out["scope"] == "across patients"].set_index("contrast")
    assert set(pooled.index) == {
        "population: HSC vs PROG | timepoint=remission",
        "population: HSC vs PROG | timepoint=diagnosis",
        "timepoint: remission vs diagnosis | population=HSC",
        "timepoint: remission vs diagnosis | population=PROG",
    }
    assert pooled.loc["timepoint: remission vs diagnosis | population=PROG", "odds_ratio"] < 0.05
    with pytest.raises(InputError, match="no timepoint"):
        persistence_contrasts(del_fraction_table(obs, rates), before="x", after="y")


def test_binomial_mixed_contrast_agrees_in_direction():
    rng = np.random.default_rng(6)
    obs, _ = cohort(rng, STUDY, n=120)
    row = binomial_mixed_contrast(
        obs, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "remission"}
    ).iloc[0]
    assert row["odds_ratio_low"] > 1 and row["n_patients"] == 4
    empty = binomial_mixed_contrast(obs, factor="population", level="HSC", reference="MISSING").iloc[0]
    assert np.isnan(empty["odds_ratio"])


def test_linear_mixed_difference_survives_a_patient_variance_at_its_boundary():
    # Two patients of equal means: statsmodels' REML fit raised LinAlgError (singular matrix) for this
    # draw and stopped a plate-only cohort's workflow; the effect is then taken within patients.
    rng = np.random.default_rng(0)
    n = [73, 8, 61, 7]
    groups = np.repeat(["P1", "P1", "P2", "P2"], n)
    level = np.repeat([0, 1, 0, 1], n).astype(bool)
    values = rng.normal(0.045, 0.017, groups.size) + 0.012 * level
    got = linear_mixed_difference(values, level, groups)
    assert got["test"].startswith("linear model score ~ group + patient on cells (within patients")
    within = [values[(groups == p) & level].mean() - values[(groups == p) & ~level].mean() for p in ("P1", "P2")]
    assert min(within) <= got["difference"] <= max(within)  # a weighted mean of the patients' own differences
    assert got["difference_low"] < got["difference"] < got["difference_high"] and 0 < got["pvalue"] < 1
    # five patients that differ: the mixed model fits and is reported as such
    groups5 = np.repeat([f"P{i}" for i in range(5)], 40)
    level5 = np.tile(np.r_[np.zeros(30), np.ones(10)], 5).astype(bool)
    values5 = rng.normal(0, 1, 200) + np.repeat(rng.normal(0, 1, 5), 40) + 0.8 * level5
    mixed = linear_mixed_difference(values5, level5, groups5)
    assert mixed["test"] == "linear mixed model score ~ group + (1 | patient) on cells"
    assert mixed["difference_low"] < 0.8 < mixed["difference_high"]


def test_bad_inputs_name_the_field():
    obs = pd.DataFrame(
        {"patient": ["P1"], "population": ["HSC"], "timepoint": ["remission"], "sample": ["S"], "del5q_call": [True]}
    )
    with pytest.raises(InputError, match="del5q_call"):
        del_fraction_table(obs.drop(columns="del5q_call"))
    with pytest.raises(InputError, match=r"no error rates for sample\(s\) \['S'\]"):
        del_fraction_table(obs, pd.DataFrame({"fpr": [0.0], "fnr": [0.1]}, index=["other"]))
    with pytest.raises(InputError, match="lacks column 'fnr'"):
        del_fraction_table(obs, pd.DataFrame({"fpr": [0.0]}, index=["S"]))
    with pytest.raises(InputError, match="n_called"):
        stratified_contrast(
            pd.DataFrame({"patient": ["P1"], "population": ["HSC"], "n_cells": [3]}),
            factor="population",
            level="HSC",
            reference="PROG",
        )


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(7)
    obs, rates = cohort(rng, STUDY, n=60, patients=("P1", "P2"))
    table = del_fraction_table(obs, rates)
    table.loc[0, "corrected"] = np.nan  # a not-correctable bar is drawn hatched
    plot_del_fraction(table, str(tmp_path / "fraction.png"), timepoints=["diagnosis", "remission"])
    obs["sig_Q"] = rng.normal(size=len(obs))
    plot_signature_distributions(obs, ["sig_Q"], str(tmp_path / "scores.png"), group_key="population")
    comp = pd.DataFrame(
        {
            "patient": ["P1", "P2"],
            "n_cells": [10, 20],
            "fraction_G0_G1": [0.8, 0.5],
            "fraction_S": [0.1, 0.3],
            "fraction_G2M": [0.1, 0.2],
        }
    )
    plot_cycling_composition(comp, str(tmp_path / "cycling.png"), label_keys=["patient"])
    de = pd.DataFrame(
        {
            "gene_name": list("ABCD"),
            "log2FoldChange": [2.0, -1.0, 0.1, 0.0],
            "pvalue": [1e-6, 1e-3, 0.5, 0.9],
            "padj": [1e-5, 0.01, 0.8, 0.9],
        }
    )
    plot_volcano(de, str(tmp_path / "volcano.png"))
    plot_volcano(de.iloc[:0], str(tmp_path / "volcano_empty.png"))
    for name in ("fraction", "scores", "cycling", "volcano", "volcano_empty"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000


# ---------------------------------------------------------------------------------------------
# workflow glue: config checks, analysed cells, fraction tables with notes, the planned contrasts
# ---------------------------------------------------------------------------------------------
import copy  # noqa: E402
from pathlib import Path  # noqa: E402

import statsmodels.api as sm  # noqa: E402

from remnant.stats.contrasts import CMH_TEST  # noqa: E402
from remnant.workflow.analysed_cells import POPULATION_KEYS, prepare_cells  # noqa: E402
from remnant.workflow.config import load_yaml, validate_config  # noqa: E402
from remnant.workflow.estimate_fractions import CONTRAST_STATISTICS, run_contrasts, run_fractions  # noqa: E402
from remnant.workflow.persistence_config import check_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config():
    return validate_config(load_yaml(ROOT / "config/config.yaml"), ROOT / "config/schemas/config.schema.yaml")


def demo_sheet():
    from remnant.workflow.config import read_sample_sheet

    cfg = load_yaml(ROOT / "config/config.yaml")
    cfg.update(load_yaml(ROOT / "config/demo/config.yaml"))  # the demo overlay (bin/demo)
    cfg = validate_config(cfg, ROOT / "config/schemas/config.schema.yaml")
    return read_sample_sheet(ROOT / "config/demo/samples.tsv", ROOT / "config/schemas/samples.schema.yaml", cfg)


def test_shipped_config_passes_and_resolves(config):
    out = check_config(config, demo_sheet(), gene_set_dir=ROOT / "resources/gene_sets")
    assert out["lesion"] == "del5q"
    assert out["gates"]["sort_gates"] == {"HSC": ["HSC"], "PROG": ["PROG"], "CD34": None}
    assert Path(out["set_files"]["LSC17_NG2016"]).name == "LSC17_NG2016_weights.tsv" and len(out["set_files"]) == 8
    # 4 patients x 2 gates x 3 timepoints; the healthy donors are not planned
    assert len(out["planned"]) == 24 and {p["patient"] for p in out["planned"]} == {"P1", "P2", "P3", "P4"}


@pytest.mark.parametrize(
    "change, where, message",
    [
        (lambda c: c["persistence"].update(lesion="del7q"), "persistence.lesion", "'del7q' is not a configured lesion"),
        (lambda c: c["persistence"].update(after="diagnosis"), "persistence.after", "both 'diagnosis'"),
        (lambda c: c["persistence"].update(before="day0"), "persistence.before", "'day0' is not a declared timepoint"),
        (lambda c: c["persistence"].update(stem="LSC"), "persistence.stem", "'LSC' is not a declared population"),
        (lambda c: c["persistence"].update(progenitor="HSC"), "persistence.progenitor", "both 'HSC'"),
        (
            lambda c: c["persistence"].update(population_key="index_gate", progenitor="CD34"),
            "persistence.progenitor",
            "'CD34' is not a gate of gates.hierarchy",
        ),
        (lambda c: c["signatures"].update(sets=["EPPERT_HSC_R", "NOPE"]), "signatures.sets", "no gene set 'NOPE'"),
        (lambda c: c["signatures"].update(sets=["EPPERT_HSC_R", "EPPERT_HSC_R"]), "signatures.sets", "more than once"),
        (lambda c: c["signatures"]["cell_cycle"].update(s="S_PHASE"), "signatures.cell_cycle", "no gene set 'S_PHASE'"),
        (
            lambda c: c["signatures"].update(group_low=0.9, group_high=0.5),
            "signatures.group_low",
            "must be below group_high",
        ),
        (lambda c: c["signatures"].update(exclude_regions=["5x"]), "signatures.exclude_regions[0]", "'5x'"),
        (
            lambda c: c["index_sort"].update(markers=["CD34", "CD38"]),
            "gates.hierarchy.HSC",
            "marker 'CD90' is not an index-sort column",
        ),
    ],
)
def test_bad_persistence_config_names_the_key(config, change, where, message):
    bad = copy.deepcopy(config)
    change(bad)
    with pytest.raises(InputError) as err:
        check_config(
            bad,
            demo_sheet(),
            gene_set_dir=ROOT / "resources/gene_sets",
            cytobands=ROOT / "resources/annotation/GRCh38_cytobands.tsv",
            source="my.yaml",
        )
    text = str(err.value)
    assert text.startswith("my.yaml: ") and where in text and message in text, text


def test_design_keys_may_be_null_and_a_typo_names_the_closest_level(config):
    """Issue 19: a cohort without the study's design leaves persistence.stem/progenitor/before/after
    null (their default); a value that is not a declared level stays one line, naming the closest."""
    bare = validate_config({"populations": {"HSC": "stem"}}, ROOT / "config/schemas/config.schema.yaml")
    assert [bare["persistence"][k] for k in ("stem", "progenitor", "before", "after")] == [None] * 4
    null = copy.deepcopy(config)
    null["persistence"].update(stem=None, progenitor=None, before=None, after=None)
    assert check_config(null, demo_sheet(), gene_set_dir=ROOT / "resources/gene_sets")["lesion"] == "del5q"
    half = copy.deepcopy(config)
    half["persistence"].update(before=None)  # stem vs progenitor at remission, no before/after
    check_config(half, demo_sheet(), gene_set_dir=ROOT / "resources/gene_sets")
    for change, where, message in [
        (
            dict(before="remision"),
            "persistence.before",
            "'remision' is not a declared timepoint (did you mean 'remission'?)",
        ),
        (
            dict(stem="hsc"),
            "persistence.stem",
            "'hsc' is not a declared population (populations) (did you mean 'HSC'?)",
        ),
        (dict(after="CR"), "persistence.after", "set it to null if the cohort has no before/after design"),
        (dict(progenitor="GMP"), "persistence.progenitor", "set it to null if the cohort has no progenitor population"),
    ]:
        bad = copy.deepcopy(config)
        bad["persistence"].update(change)
        with pytest.raises(InputError) as err:
            check_config(bad, demo_sheet(), gene_set_dir=ROOT / "resources/gene_sets", source="my.yaml")
        text = str(err.value)
        assert text.startswith("my.yaml: ") and where in text and message in text and "\n" not in text, text


def test_schema_rejects_bad_values_naming_the_key(config):
    for change, expected in [
        (lambda c: c["pseudobulk"].update(min_cells=0), "pseudobulk.min_cells"),
        (lambda c: c["persistence"].update(population_key="clusters"), "persistence.population_key"),
        (lambda c: c["gates"]["thresholds"].update(CD34="bright"), "gates.thresholds.CD34"),
        (lambda c: c["gates"]["hierarchy"]["HSC"].update(CD34="pos"), "gates.hierarchy.HSC.CD34"),
        (lambda c: c["signatures"].update(downsample_to=0), "signatures.downsample_to"),
        (lambda c: c["persistence"].update(alpha=0.7), "persistence.alpha"),
    ]:
        bad = copy.deepcopy(config)
        change(bad)
        with pytest.raises(InputError, match=expected.replace(".", r"\.")):
            validate_config(bad, ROOT / "config/schemas/config.schema.yaml")


def study_obs(rng, fractions=STUDY, patients=("P1", "P2", "P3", "P4"), n=150):
    obs, rates = cohort(rng, fractions, n=n, patients=patients)
    obs["condition"] = "MDS"
    obs["cnv_reference"] = False
    healthy = pd.DataFrame(
        {
            "sample": "H_HSC",
            "patient": "H",
            "population": "HSC",
            "timepoint": "NA",
            "del5q_call": False,
            "del5q_posterior": 0.01,
            "truth": False,
            "condition": "healthy",
            "cnv_reference": True,
        },
        index=[f"h{i}" for i in range(50)],
    )
    rates.loc["H_HSC"] = {"fpr": 0.0, "fnr": 1.0, "prior": 0.0}
    return pd.concat([obs, healthy]), rates


def test_prepare_cells_keeps_patients_reference_cells_and_drops_healthy_donors():
    rng = np.random.default_rng(8)
    obs, _ = study_obs(rng)
    obs.loc[obs.index[:30], "cnv_reference"] = True  # a cnv.reference selection inside a patient
    cells, summary = prepare_cells(obs, reference_conditions=["healthy"])
    assert len(cells) == len(obs) - 50 and (cells["condition"] == "MDS").all()
    assert summary["patient_reference_cells_kept"] == 30 and summary["reference_condition_cells"] == 50
    assert (cells["sort_gate"] == cells["population"]).all()
    gates = pd.DataFrame({"index_gate": pd.Series("HSC", index=obs.index, dtype=object)})
    gates.iloc[::3, 0] = np.nan  # not index-sorted
    by_gate, summary = prepare_cells(obs, reference_conditions=["healthy"], population_key="index_gate", gates=gates)
    assert (by_gate["population"] == "HSC").all() and summary["not_placed_by_index_gate"] > 0
    assert summary["analysed"] == len(by_gate) < len(cells)
    with pytest.raises(InputError, match="lacks 2 cell"):
        prepare_cells(obs, reference_conditions=["healthy"], population_key="index_gate", gates=gates.iloc[2:])
    with pytest.raises(InputError, match="no cell to analyse"):
        prepare_cells(obs, reference_conditions=["healthy", "MDS"])
    assert set(POPULATION_KEYS) == {"population", "index_gate", "state_gate"}


def test_run_fractions_rows_order_notes_and_planned_gaps():
    rng = np.random.default_rng(9)
    obs, rates = study_obs(rng, patients=("P1", "P2"))
    cells, _ = prepare_cells(obs, reference_conditions=["healthy"])
    rates.loc["P2_remission_PROG", "fnr"] = 0.95  # calls carry no information: not corrected, said so
    planned = [
        {"patient": p, "population": pop, "timepoint": tp}
        for p in ("P1", "P2", "P3")
        for pop in ("HSC", "PROG")
        for tp in ("diagnosis", "remission")
    ]
    table, pooled = run_fractions(
        cells,
        rates,
        n_reference=500,
        planned=planned,
        populations=["HSC", "PROG"],
        timepoints=["diagnosis", "remission"],
    )
    assert len(table) == 12 and len(pooled) == 4
    assert table[["patient", "population", "timepoint"]].head(4).values.tolist() == [
        ["P1", "HSC", "diagnosis"],
        ["P1", "HSC", "remission"],
        ["P1", "PROG", "diagnosis"],
        ["P1", "PROG", "remission"],
    ]
    gap = table[table["patient"] == "P3"]
    assert (gap["n_cells"] == 0).all() and gap["note"].str.contains("none of its cells is in the cohort").all()
    row = table.set_index(["patient", "population", "timepoint"]).loc[("P2", "PROG", "remission")]
    assert np.isnan(row["corrected"]) and "not corrected" in row["note"]
    have = table[table["n_cells"] > 0].dropna(subset=["corrected"])
    assert (have["fraction"].between(have["fraction_low"], have["fraction_high"])).all()
    assert (have["corrected"].between(have["corrected_low"], have["corrected_high"])).all()
    assert set(table["assigned_by"]) == {POPULATION_KEYS["population"]} and set(table["lesion"]) == {"del5q"}
    assert pooled.set_index(["population", "timepoint"]).loc[("HSC", "remission"), "n_cells"] == 300


def test_run_contrasts_plans_every_contrast_and_says_why_one_is_missing():
    rng = np.random.default_rng(10)
    obs, rates = study_obs(rng)
    cells, _ = prepare_cells(obs, reference_conditions=["healthy"])
    table, _ = run_fractions(cells, rates, n_reference=500)
    out = run_contrasts(table, cells)
    across = out[out["scope"] == "across patients"]
    assert len(across) == 8 and set(across["question"]) == {
        "HSC vs PROG at remission (persistence)",
        "HSC vs PROG at diagnosis",
        "remission vs diagnosis in HSC",
        "remission vs diagnosis in PROG",
    }
    persist = across[across["question"].str.endswith("(persistence)")].set_index("test")
    cmh = persist.loc[CMH_TEST]
    mixed = persist.filter(like="binomial mixed", axis=0).iloc[0]
    assert cmh["odds_ratio_low"] > 1 and 0 < cmh["pvalue"] < 1e-10 and cmh["n_strata"] == 4
    assert mixed["odds_ratio_low"] > 1 and mixed["pvalue"] < 1e-6 and mixed["n_strata"] == 4
    assert "called cells, descriptive" in cmh.name and "called cells, descriptive" in mixed.name
    # the headline: the corrected test, its columns on the pooled row
    assert cmh["significant"] and cmh["corrected_difference_low"] > 0 and cmh["corrected_pvalue"] < 0.05
    assert cmh["corrected_n_strata"] == 4 and cmh["corrected_test"] == CORRECTED_TESTS["meta"]
    assert (out["note"] == "").all()
    # only diagnosis sampled: the remission contrasts keep their rows and say why
    diagnosis = cells[cells["timepoint"] == "diagnosis"]
    out = run_contrasts(table[table["timepoint"] == "diagnosis"], diagnosis)
    notes = out.set_index("question")["note"]
    assert (
        notes["HSC vs PROG at remission (persistence)"]
        == "no analysed cells at remission; the cohort has one timepoint (diagnosis)"
    )
    assert (
        notes["remission vs diagnosis in HSC"]
        == "no analysed HSC cells at remission; HSC cells are at one timepoint (diagnosis)"
    )
    assert (out.loc[out["question"] == "HSC vs PROG at diagnosis", "note"] == "").all()
    # a patient with only one level does not enter the stratified test
    one = table[~((table["patient"] != "P1") & (table["population"] == "PROG"))]
    out = run_contrasts(one, cells[(cells["patient"] == "P1") | (cells["population"] == "HSC")])
    row = out[
        (out["question"] == "HSC vs PROG at remission (persistence)") & out["test"].str.startswith("Cochran")
    ].iloc[-1]
    assert row["n_strata"] == 1 and "one patient" in row["note"]


def test_corrected_test_without_enough_information_says_which_patients_and_why():
    """A group whose calls carry too little information (1 - fpr - fnr < min_youden) has no corrected
    fraction: its patient leaves the corrected test, and the note says so; one patient left: its z test."""
    rng = np.random.default_rng(14)
    obs, rates = study_obs(rng)
    cells, _ = prepare_cells(obs, reference_conditions=["healthy"])
    rates.loc["P2_remission_PROG", "fnr"] = 0.95
    table, _ = run_fractions(cells, rates, n_reference=500)
    out = run_contrasts(table, cells, mixed_model=False)
    persist = out[out["question"] == "HSC vs PROG at remission (persistence)"].set_index("patient")
    row = persist.loc["all"]
    assert row["n_strata"] == 4 and row["corrected_n_strata"] == 3 and row["significant"]
    assert row["note"] == (
        "corrected test on 3 of 4 patients: not corrected in P2 (PROG) (1 - fpr - fnr below "
        "persistence.min_youden, or no error rates)"
    )
    assert np.isnan(persist.loc["P2", "corrected_difference"]) and not persist.loc["P2", "significant"]
    notes = out[out["patient"] == "all"].set_index("question")["note"]
    assert notes["remission vs diagnosis in PROG"].startswith(
        "corrected test on 3 of 4 patients: not corrected in P2 (remission)"
    )
    assert notes["HSC vs PROG at diagnosis"] == notes["remission vs diagnosis in HSC"] == ""
    # no patient correctable: no corrected value, not significant, and a note; CMH still describes the calls
    for patient in ("P1", "P3", "P4"):
        rates.loc[f"{patient}_remission_PROG", "fnr"] = 0.95
    table, _ = run_fractions(cells, rates, n_reference=500)
    row = (
        run_contrasts(table, cells, mixed_model=False)
        .set_index(["question", "patient"])
        .loc[("HSC vs PROG at remission (persistence)", "all")]
    )
    assert np.isnan(row["corrected_difference"]) and np.isnan(row["corrected_pvalue"]) and not row["significant"]
    assert row["corrected_n_strata"] == 0 and row["note"].startswith(
        "no corrected test: no patient's calls could be corrected"
    )
    assert row["pvalue"] < 1e-6
    # one patient: its own z test, the same numbers as its patient row
    one = run_contrasts(table[table["patient"] == "P1"], cells[cells["patient"] == "P1"], mixed_model=False)
    rows = one[one["question"] == "HSC vs PROG at diagnosis"].set_index("scope")
    pooled, patient = rows.loc["across patients"], rows.loc["patient"]
    assert pooled["corrected_test"] == CORRECTED_TESTS["one"] and np.isnan(pooled["corrected_df"])
    assert pooled["note"] == "one patient: the corrected test is that patient's z test"
    for col in ("corrected_difference", "corrected_difference_low", "corrected_difference_high", "corrected_pvalue"):
        assert pooled[col] == pytest.approx(patient[col]), col
    assert pooled["corrected_difference_low"] < pooled["corrected_difference"] < pooled["corrected_difference_high"]


def test_contrasts_of_a_cohort_without_the_design_keep_their_rows_and_say_why():
    """Issue 19: one population, one timepoint, or design keys null. Every planned contrast keeps a
    row whose note says why it was not made and what the cohort has; the statistic columns are there
    even when no contrast was made (the front page read `difference` and crashed without them)."""
    rng = np.random.default_rng(12)
    obs, rates = study_obs(rng)
    cells, _ = prepare_cells(obs, reference_conditions=["healthy"])
    table, _ = run_fractions(cells, rates, n_reference=500)
    # one population (HSC) at two timepoints; the template's design names PROG
    hsc = table["population"] == "HSC"
    out = run_contrasts(table[hsc], cells[cells["population"] == "HSC"])
    notes = out[out["scope"] == "across patients"].groupby("question", sort=False)["note"].first()
    assert notes.to_dict() == {
        "HSC vs PROG at remission (persistence)": "no analysed PROG cells at remission; the cohort has one population (HSC) there",
        "HSC vs PROG at diagnosis": "no analysed PROG cells at diagnosis; the cohort has one population (HSC) there",
        "remission vs diagnosis in HSC": "",
        "remission vs diagnosis in PROG": "no analysed PROG cells; the cohort has one population (HSC)",
    }
    # one sample (one population, one timepoint): nothing can be compared, the columns stay
    one = table[hsc & (table["timepoint"] == "diagnosis") & (table["patient"] == "P1")]
    none = run_contrasts(one, cells[cells["sample"] == "P1_diagnosis_HSC"])
    assert len(none) == 4 and (none["n_strata"] == 0).all() and (none["note"] != "").all()
    assert set(CONTRAST_STATISTICS) <= set(none.columns) and none["difference"].isna().all()
    assert (
        none.set_index("question").loc["remission vs diagnosis in HSC", "note"]
        == "no analysed HSC cells at remission; HSC cells are at one timepoint (diagnosis)"
    )
    # the design keys null: one row per design, naming the keys and what the cohort has
    null = run_contrasts(table, cells, stem=None, progenitor=None, before=None, after=None)
    assert null[["question", "note"]].values.tolist() == [
        [
            "stem vs progenitor",
            "persistence.stem and persistence.progenitor are null (not a stem vs progenitor design); "
            "it has 2 populations (HSC, PROG)",
        ],
        [
            "after vs before treatment",
            "persistence.before and persistence.after are null (not a before/after design); "
            "it has 2 timepoints (diagnosis, remission)",
        ],
    ]
    # stem and progenitor without a before/after design: compared at every timepoint with cells
    at_each = run_contrasts(table, cells, before=None, after=None, timepoints=["remission", "diagnosis"])
    across = at_each[at_each["test"].str.startswith("Cochran")].set_index("question")
    assert list(across.index) == ["HSC vs PROG at remission", "HSC vs PROG at diagnosis", "after vs before treatment"]
    assert (
        across.loc["HSC vs PROG at remission", "odds_ratio_low"] > 1
        and across.loc["HSC vs PROG at remission", "note"] == ""
    )
    assert across.loc["after vs before treatment", "note"].startswith(
        "persistence.before and persistence.after are null"
    )


def test_stem_cell_stages_without_the_design_keep_a_row_saying_why():
    """Signatures, cycling and pseudobulk DE after a contrast the cohort cannot support (issue 19):
    a null design key leaves rows (or header-only tables) whose note names it, never 'None' cells."""
    from remnant.tl.de import DE_COLUMNS
    from remnant.tl.signatures import PHASES
    from remnant.workflow.compare_pseudobulk import SAMPLE_COLUMNS, de_not_made
    from remnant.workflow.score_signatures import run_comparisons, run_cycling

    rng = np.random.default_rng(13)
    n = 240
    cells = pd.DataFrame(
        {
            "patient": np.repeat(["P1", "P2", "P3"], n // 3),
            "population": "HSC",
            "timepoint": "diagnosis",
            "del5q_group": rng.choice(["del5q", "non-del"], n),
            "S_score": rng.normal(size=n),
            "cycle_phase": pd.Categorical(rng.choice(PHASES, n), categories=PHASES),
        },
        index=[f"c{i}" for i in range(n)],
    )
    no_stem = run_comparisons(cells, ["S_score"], stem=None, before=None, after=None, timepoints=["diagnosis"])
    assert no_stem[["question", "note"]].values.tolist() == [
        [
            "del5q vs non-del stem cells",
            "persistence.stem is null (not a stem-cell design); it has one population (HSC)",
        ]
    ]
    one_tp = run_comparisons(cells, ["S_score"], stem="HSC", before=None, after="remission", timepoints=["diagnosis"])
    assert list(pd.unique(one_tp["question"])) == [
        "del5q vs non-del HSC cells at diagnosis",
        "del5q HSC cells: after vs before treatment",
    ]
    made = one_tp[
        (one_tp["question"] == "del5q vs non-del HSC cells at diagnosis") & (one_tp["scope"] == "across patients")
    ]
    assert made["pvalue"].notna().any() and (made["note"] == "").all()
    assert (
        one_tp["note"].iloc[-1]
        == "persistence.before is null (not a before/after design); it has one timepoint (diagnosis)"
    )
    composition, cycling = run_cycling(cells, stem=None, before=None, after=None, timepoints=["diagnosis"])
    assert composition["n_cells"].sum() == n
    assert cycling[["question", "note"]].values.tolist() == [
        [
            "cycling of del5q vs non-del stem cells",
            "persistence.stem is null (not a stem-cell design); it has one population (HSC)",
        ]
    ]
    _, cycling = run_cycling(cells, stem="HSC", before="diagnosis", after=None, timepoints=["diagnosis"])
    assert cycling["question"].iloc[-1] == "cycling of del5q HSC cells: after vs before treatment"
    assert cycling["note"].iloc[-1].startswith("persistence.after is null")
    samples, de, enrichment = de_not_made("persistence.stem is null (not a stem-cell design)", {"A": ["G1", "G2"]})
    assert list(samples.columns) == SAMPLE_COLUMNS and samples.empty and list(de.columns) == DE_COLUMNS and de.empty
    assert enrichment[["signature", "note"]].values.tolist() == [
        ["A", "no DE test: persistence.stem is null (not a stem-cell design)"]
    ]


def test_mixed_model_interval_is_not_narrower_than_a_fixed_effects_glm():
    """Regression: the variational fit's fixed-effect sd was 2-3x too small; a random patient intercept
    can only widen the interval of a GLM with patient as a fixed effect."""
    rng = np.random.default_rng(11)
    obs, _ = cohort(rng, STUDY, n=150, patients=("P1", "P2", "P3"))
    sub = obs[obs["timepoint"] == "remission"]
    row = binomial_mixed_contrast(
        obs, factor="population", level="HSC", reference="PROG", fixed={"timepoint": "remission"}
    ).iloc[0]
    X = pd.get_dummies(sub["patient"]).astype(float).assign(x=(sub["population"] == "HSC").astype(float))
    glm = sm.GLM(sub["del5q_call"].astype(float), X, family=sm.families.Binomial()).fit()
    glm_width = 2 * 1.96 * glm.bse["x"]
    width = np.log(row["odds_ratio_high"]) - np.log(row["odds_ratio_low"])
    assert width >= 0.8 * glm_width, (width, glm_width)
    assert abs(np.log(row["odds_ratio"]) - glm.params["x"]) < 0.25 * glm_width
    assert 0 < row["pvalue"] < 1e-6
