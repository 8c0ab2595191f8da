"""Reference honesty (issue 17, item 4): what the reference could not give a batch is said in
``uns["lesions"][name]["reference_notes"]``, as a WARNING, and in lesion_summary.tsv's
``reference_note`` column, in words a user can act on.

A small simulated cohort (two healthy donors, one MDS sample, ~200 cells each) called with
references that lack a second donor, a state, or a batch.
"""

from __future__ import annotations

import logging

import anndata
import numpy as np
import pandas as pd
import pytest
import simulated as S

from remnant.io.annotation import chromosome_arms
from remnant.tl.lesions import call_lesions, parse_lesions, write_calls
from remnant.workflow.lesions import _sample_notes, _write_summaries
from remnant.workflow.report import NOTE_SEPARATOR

ROWS = [
    ("H1_ref", "H1", "", "CD34", "healthy", "droplet"),
    ("H2_ref", "H2", "", "CD34", "healthy", "droplet"),
    ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
]
PARAMS = {
    "cells_per_sample": {"droplet": 200},
    "library_size": {"droplet": {"median": 2000.0, "sdlog": 0.35}},
    "clone_fraction": {"diagnosis": {"CD34": 0.5}},
    "clone_sampling": "exact",
    "low_quality": {"fraction": 0.0},
    "doublets": {"rate": 0.0},
    # every cell of an HSPC state, so that each test chooses which state the reference lacks; the
    # simulator's cells of another type (never in a healthy reference) are the last test's subject
    "confounders": {"other_type": {"fraction": 0.0}},
}


@pytest.fixture(scope="module")
def cohort():
    return S.called_cohort(ROWS, params=PARAMS, seed=3)


@pytest.fixture(scope="module")
def lesions(cytobands):
    return parse_lesions(None, cytobands, chromosome_arms(cytobands))


def _call(adata, lesions, ref, caplog, **kw):
    with caplog.at_level(logging.WARNING, logger="remnant.tl.lesions"):
        call_lesions(adata, lesions, reference=ref, refine=False, **kw)
    info = adata.uns["lesions"]["del5q"]
    return info, info["reference_notes"], [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_two_donors_one_batch_all_states_give_no_note(cohort, lesions, caplog, tmp_path):
    adata = cohort.copy()
    info, notes, warnings = _call(adata, lesions, adata.obs["condition"].eq("healthy").to_numpy(), caplog)
    assert notes.empty and list(notes.columns) == ["batch", "kind", "detail", "note"]
    assert not any("reference" in w for w in warnings)
    assert (info["batches"]["fold_mode"] == "donor").all() and (info["batches"]["n_reference_donors"] == 2).all()
    _round_trip(adata, tmp_path)


def _round_trip(adata, tmp_path):
    """The notes survive the calls' h5ad (empty or not)."""
    write_calls(adata, tmp_path / "calls.h5ad")
    back = anndata.read_h5ad(tmp_path / "calls.h5ad").uns["lesions"]["del5q"]["reference_notes"]
    pd.testing.assert_frame_equal(
        back.reset_index(drop=True), adata.uns["lesions"]["del5q"]["reference_notes"], check_dtype=False
    )


def test_one_reference_donor(cohort, lesions, caplog, tmp_path):
    adata = cohort.copy()
    info, notes, warnings = _call(adata, lesions, adata.obs["sample"].eq("H1_ref").to_numpy(), caplog)
    assert (info["batches"]["fold_mode"] == "cell").all() and (info["batches"]["n_reference_donors"] == 1).all()
    row = notes.set_index("kind").loc["cell_folds"]
    assert row["detail"] == "H1"
    for needle in ("only one reference donor (H1)", "random cell folds", "may be optimistic", "second healthy donor"):
        assert needle in row["note"], needle
    assert row["note"] in warnings
    # lesion_summary.tsv: the note (with the config key) on every row of the batch, last column
    _write_summaries(adata, lesions, tmp_path / "summary.tsv", tmp_path / "intervals.tsv")
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t", keep_default_na=False)
    assert summary.columns[-1] == "reference_note"
    assert summary["reference_note"].str.startswith("only one reference donor (H1)").all()
    assert summary["reference_note"].str.contains("cnv.reference").all()
    _round_trip(adata, tmp_path)


def test_no_donor_column_says_donors_unknown(cohort, lesions, caplog):
    adata = cohort.copy()
    _, notes, _ = _call(adata, lesions, adata.obs["condition"].eq("healthy").to_numpy(), caplog, donor_key=None)
    assert notes["kind"].tolist() == ["cell_folds"] and "donors are not known" in notes["note"].iloc[0]


def test_patients_own_normal_cells_are_cross_fitted_by_cells_without_a_note(cohort, lesions, caplog):
    """Reference cells whose sample holds scored cells (a patient's normal cells, here the healthy
    donors' samples split into reference and scored halves) are spread over cell folds: their
    sample-mates are scored against a reference holding them. Two donors: a choice, not a lack."""
    adata = cohort.copy()
    healthy = adata.obs["condition"].eq("healthy").to_numpy()
    half = np.random.default_rng(0).random(adata.n_obs) < 0.5
    info, notes, warnings = _call(adata, lesions, healthy & half, caplog)
    assert (info["batches"]["fold_mode"] == "cell").all() and (info["batches"]["n_reference_donors"] == 2).all()
    # no note on the folds; the small cohort's rarest states, with 11-17 reference cells in that half, are named
    # as scored against the pooled profile (cnv.min_state_reference 20)
    assert set(notes["kind"]) <= {"states_without_reference"} and not any("reference donor" in w for w in warnings)


def test_one_batch_with_few_reference_cells_is_scored_against_its_own(cohort, lesions, caplog):
    """One batch holding every reference cell is matched, however few they are (no note that it was
    scored against 'other batches')."""
    adata = cohort.copy()
    ref = adata.obs["condition"].eq("healthy").to_numpy() & (np.arange(adata.n_obs) % 10 == 0)
    info, notes, _ = _call(adata, lesions, ref, caplog)
    assert ref.sum() < 50 and info["batches"]["reference_matched"].all()
    assert "unmatched_batch" not in set(notes["kind"])


def test_state_without_reference_cells(cohort, lesions, caplog):
    adata = cohort.copy()
    state = adata.obs["hspc_state"].astype(str)
    patient = adata.obs["condition"].eq("MDS")
    lacking = state[patient].value_counts().index[0]
    ref = (adata.obs["condition"].eq("healthy") & state.ne(lacking)).to_numpy()
    _, notes, warnings = _call(adata, lesions, ref, caplog)
    row = notes.set_index("kind").loc["states_without_reference"]
    assert row["detail"] == lacking
    n = int((state == lacking).sum())  # one batch: every cell of the state, none of them reference
    assert f"{lacking} ({n} cells, 0 reference)" in row["note"] and "pooled profile" in row["note"]
    assert "add reference cells of these states" in row["note"] and row["note"] in warnings


def test_state_with_a_handful_of_reference_cells_is_scored_as_one_without(cohort, lesions, caplog):
    """A state with fewer reference cells than min_state_reference (20) has no profile of its own: its
    cells are scored against the pooled profile, as a state the reference lacks, and the note names it
    with its count; min_state_reference=0 gives it its own profile (and no note), as before session 33."""
    adata = cohort.copy()
    state = adata.obs["hspc_state"].astype(str)
    healthy = adata.obs["condition"].eq("healthy")
    thin = state[healthy].value_counts().index[0]
    keep = np.flatnonzero((healthy & state.eq(thin)).to_numpy())[:5]
    ref = (healthy & state.ne(thin)).to_numpy()
    ref[keep] = True
    info, notes, warnings = _call(adata, lesions, ref, caplog)
    row = notes.set_index("kind").loc["states_without_reference"]
    n = int((state == thin).sum())
    assert row["detail"] == thin and f"{thin} ({n} cells, 5 reference)" in row["note"], row["note"]
    assert "no reference cells, or fewer than 20, of state(s)" in row["note"] and row["note"] in warnings
    assert info["params"]["min_state_reference"] == 20
    own = cohort.copy()
    _, notes, _ = _call(own, lesions, ref, caplog, min_state_reference=5)
    assert "states_without_reference" not in set(notes["kind"])
    # the state's cells are scored differently: against the pooled profile with the unmatched terms
    cells = state.eq(thin).to_numpy() & ~ref
    assert not np.allclose(adata.obs["del5q_llr"].to_numpy()[cells], own.obs["del5q_llr"].to_numpy()[cells])


def test_batch_without_its_own_reference(cohort, lesions, caplog, tmp_path):
    adata = cohort.copy()
    # the patient's cells come from a second run with no healthy cells of its own
    adata.obs["technology"] = np.where(adata.obs["condition"].eq("MDS"), "run2", "run1")
    ref = adata.obs["condition"].eq("healthy").to_numpy()
    info, notes, warnings = _call(adata, lesions, ref, caplog, batch_key="technology")
    assert not info["batches"].loc["run2", "reference_matched"]
    row = notes.set_index("kind").loc["unmatched_batch"]
    assert row["batch"] == "run2" and row["detail"] == "0"
    for needle in ("batch run2: only 0 reference cells of its own (50 needed)", f"the {int(ref.sum())} reference"):
        assert needle in row["note"], needle
    assert "add reference cells of this batch" in row["note"] and row["note"] in warnings
    assert set(notes["batch"]) == {"run2"}
    _write_summaries(adata, lesions, tmp_path / "summary.tsv", tmp_path / "intervals.tsv")
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t", keep_default_na=False).set_index("sample")
    assert "cnv.min_batch_reference" in summary.loc["P1_dx", "reference_note"]
    assert summary.loc["H1_ref", "reference_note"] == ""


def test_summary_notes_per_sample():
    """A batch's notes reach each of its samples (config key appended, " | " between notes); a note on
    states without reference cells only the samples with cells of those states."""
    notes = pd.DataFrame(
        [
            ("b1", "cell_folds", "H1", "only one reference donor (H1): ..."),
            ("b1", "states_without_reference", "MEP, ERP", "no reference cells of state(s) MEP, ERP: ..."),
            ("b2", "unmatched_batch", "0", "batch b2: only 0 reference cells of its own: ..."),
        ],
        columns=["batch", "kind", "detail", "note"],
    )
    obs = pd.DataFrame({"s": ["A", "A", "B", "C"], "state": ["HSC", "ERP", "HSC", "HSC"]})
    summary = pd.DataFrame({"sample": ["A", "B", "C", "D"], "batch": ["b1", "b1", "b2", "b3"]})
    got = _sample_notes(summary, notes, obs, {"state_key": "state", "sample_key": "s"})
    assert got[0].split(NOTE_SEPARATOR)[0].startswith("only one reference donor (H1): ... The reference cells are cnv.")
    assert "MEP, ERP" in got[0].split(NOTE_SEPARATOR)[1]
    assert got[1].startswith("only one reference donor") and NOTE_SEPARATOR not in got[1]
    assert "cnv.min_batch_reference" in got[2] and got[3] == ""
    assert _sample_notes(summary, notes.iloc[:0], obs, {}) == [""] * 4


def test_cells_of_another_type_are_named_as_a_state_without_reference(lesions, caplog):
    """The simulator's default confounders put cells of another type (state OTHER) into patient
    samples only: the healthy reference has none, and the note says so."""
    params = {k: v for k, v in PARAMS.items() if k != "confounders"}
    adata = S.called_cohort(ROWS, params=params, seed=3)
    n = int((adata.obs["hspc_state"] == "OTHER").sum())
    assert n > 0 and not adata.obs.loc[adata.obs["condition"].eq("healthy"), "hspc_state"].eq("OTHER").any()
    _, notes, warnings = _call(adata, lesions, adata.obs["condition"].eq("healthy").to_numpy(), caplog)
    row = notes.set_index("kind").loc["states_without_reference"]
    assert row["detail"] == "OTHER" and f"OTHER ({n} cells, 0 reference)" in row["note"] and row["note"] in warnings
