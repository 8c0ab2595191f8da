"""Automatic reference (remnant.tl.reference.find_reference) on simulated cohorts without healthy donors."""

import numpy as np
import pytest
import simulated as S
from test_lesions import auroc

from remnant.io.annotation import chromosome_arms
from remnant.tl.lesions import call_lesions, parse_lesions
from remnant.tl.reference import find_reference

ROWS = [
    ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
    ("P1_rem", "P1", "remission", "CD34", "MDS", "droplet"),
    ("P2_dx", "P2", "diagnosis", "CD34", "MDS", "droplet"),
    ("P2_rem", "P2", "remission", "CD34", "MDS", "droplet"),
]
PARAMS = {
    "cells_per_sample": {"droplet": 350},
    "library_size": {"droplet": {"median": 2000.0, "sdlog": 0.35}},
    "clone_fraction": {"diagnosis": {"CD34": 0.9}, "remission": {"CD34": 0.2}},
    "clone_sampling": "exact",
    "low_quality": {"fraction": 0.0},
    "doublets": {"rate": 0.0},
}


@pytest.fixture(scope="module")
def lesions(cytobands):
    return parse_lesions(None, cytobands, chromosome_arms(cytobands))


@pytest.fixture(scope="module")
def patients_only():
    return S.called_cohort(ROWS, PARAMS, seed=3)


@pytest.fixture(scope="module")
def chosen(patients_only, lesions):
    return find_reference(patients_only, lesions)


def test_chooses_normal_cells_and_says_so(patients_only, chosen):
    mask, report = chosen
    truth = patients_only.obs["truth"].to_numpy()
    assert mask.sum() >= 0.7 * (~truth).sum()  # most normal cells are found
    assert truth[mask].mean() < 0.05  # few carriers among them (the confidence bar)
    row = report.iloc[0]
    assert row["confident"], row["reason"]
    assert row["separation"] > 50
    assert row["n_chosen"] == mask.sum()
    assert row["contamination"] <= 0.05 * row["n_chosen"]


@pytest.mark.parametrize(
    "confounders",
    [
        # With the simulator's confounders (on by default) the estimate is 23.7 expected carriers
        # against 16 chosen since session 37 counts each cell's median depth on the whole genome
        # (21.7 / 13 before, outside the tolerance; 26.7 / 12 in session 26, 24.4 / 11 before session
        # 28's patient levels off all of a patient's cells). It passes partly because more carriers are
        # chosen. Without confounders 16.9 against 24 (18.7 / 17 before). The excess with them was
        # mostly one remission sample whose normal cells' LLRs reach further up than the model's; too
        # high is the safe side (the confidence bar is 5% of the chosen).
        True,
        False,
    ],
)
def test_reported_contamination_is_of_the_right_size(confounders, patients_only, chosen, lesions):
    """The reported contamination (expected carriers among the chosen cells) against the carriers chosen."""
    if confounders:
        adata, (mask, report) = patients_only, chosen
    else:
        adata = S.called_cohort(ROWS, {**PARAMS, **S.WITHOUT_CONFOUNDERS}, seed=3)
        mask, report = find_reference(adata, lesions)
    carriers = int(adata.obs["truth"].to_numpy()[mask].sum())
    assert abs(report.iloc[0]["contamination"] - carriers) <= max(5, 0.5 * carriers)


def test_calls_with_auto_reference_match_truth(patients_only, lesions, chosen):
    mask, _ = chosen
    adata = patients_only.copy()
    call_lesions(adata, lesions, reference=mask)
    obs = adata.obs
    truth = obs["truth"].to_numpy()
    post = obs["del5q_posterior"].to_numpy()
    assert auroc(post, truth) >= 0.99
    # over ALL normal cells (chosen or not), few are called
    assert (post[~truth] >= 0.9).mean() <= 0.02
    frac = obs.groupby("sample", observed=True).agg(est=("del5q_posterior", "mean"), true=("truth", "mean"))
    assert (frac["est"] - frac["true"]).abs().max() < 0.05


# all carriers, or all normal with the rescore rounds (the gene-level separation: 0.0, 7 cells in
# the carrier share). The mixture alone takes these normal cells for 55% carriers (separation 33.2)
# and is flagged only by its 29 expected carriers among the 315 chosen.
@pytest.mark.parametrize(("clone", "rescore_rounds"), [(1.0, 0), (1.0, 2), (0.0, 2)])
def test_one_population_is_flagged_not_guessed(lesions, clone, rescore_rounds):
    rows = [
        ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
        ("P2_dx", "P2", "diagnosis", "CD34", "MDS", "droplet"),
    ]
    params = {**PARAMS, "clone_fraction": {"diagnosis": {"CD34": clone}}}
    adata = S.called_cohort(rows, params, seed=4)
    mask, report = find_reference(adata, lesions, rescore_rounds=rescore_rounds)
    row = report.iloc[0]
    assert not row["confident"]
    assert "one population only" in row["reason"]


def test_llr_separation_is_the_mixture_likelihood_ratio():
    from remnant.tl.reference import _llr_separation

    rng = np.random.default_rng(0)
    normal = rng.normal(-4.0, 1.5, 300)  # cells whose genes favour a normal copy number
    assert _llr_separation(normal) < 1.0  # one population: no share of carriers raises the likelihood
    assert _llr_separation(np.array([])) == 0.0 and _llr_separation(np.full(5, -1.0)) == 0.0
    mixed = np.concatenate([normal, rng.normal(4.0, 1.5, 100)])
    # by hand on a grid: 2 max_pi sum log(1 - pi + pi e^llr)
    grid = np.linspace(0.001, 0.999, 999)
    by_hand = 2 * max(np.logaddexp(np.log1p(-p), np.log(p) + mixed).sum() for p in grid)
    assert _llr_separation(mixed) == pytest.approx(by_hand, rel=1e-4)
    assert _llr_separation(mixed) > 200


def test_candidates_restrict_the_choice(patients_only, lesions):
    rem = (patients_only.obs["timepoint"] == "remission").to_numpy()
    mask, report = find_reference(patients_only, lesions, candidates=rem, rescore_rounds=1)
    assert not mask[~rem].any()
    assert report.iloc[0]["n_candidates"] == rem.sum()


def test_bad_arguments_name_the_field(patients_only, lesions):
    from remnant.errors import InputError

    with pytest.raises(InputError, match="max_carrier_probability"):
        find_reference(patients_only, lesions, max_carrier_probability=1.5)
    with pytest.raises(InputError, match="candidate cells"):
        find_reference(patients_only, lesions, candidates=np.zeros(patients_only.n_obs, bool))


def test_a_choice_that_alternates_keeps_the_cells_common_to_the_cycle(monkeypatch):
    # the oligodendroglioma set through the workflow alternated between 42 cells and 30 of them
    # (docs/robust_evidence.md, session 35); here the mixture is replaced by one whose carrier
    # probabilities depend only on the current reference, so that it alternates between A and B
    import remnant.tl.reference as R

    n = 60
    a = np.zeros(n, bool)
    a[:40] = True  # A: cells 0-39
    b = np.zeros(n, bool)
    b[10:50] = True  # B: cells 10-49; A & B: cells 10-39 (30 cells)
    fitted = []

    def fake_round(ref, *args):
        fitted.append(ref.copy())
        target = b if np.array_equal(ref, a) else a
        return {"L": {"ref_size": int(ref.sum())}}, np.where(target, 0.1, 0.9)

    monkeypatch.setattr(R, "_fit_round", fake_round)
    keep = np.ones(n, bool)
    ref, fits, rounds, converged, prob_any, cycle = R._iterate_choice(
        {}, [], np.ones(n), np.zeros(n), keep, 0.5, 20, 10, 0.001, 20.0
    )
    assert cycle == 2 and converged
    assert np.array_equal(ref, a & b)
    assert fits["L"]["ref_size"] == 30  # the fits reported are against the kept cells
    assert rounds == 3  # all -> A, A -> B, B -> A: a repeat
    # fewer common cells than min_cells: filled with the least likely carriers of the last round
    ref, *_rest, cycle = R._iterate_choice({}, [], np.ones(n), np.zeros(n), keep, 0.5, 35, 10, 0.001, 20.0)
    assert cycle == 2 and ref.sum() == 35 and ref[a & b].all()
