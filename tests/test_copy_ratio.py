"""Each patient's copy ratio of a lesion, fitted among copy-number steps (``call_lesions(fit_copy_ratio=True)``).

Against an aneuploid tumour's own depth a lost arm reads at (n - 1) / n of its n copies: 2/3 in a near-triploid
tumour. Scored at the configured 1/2, such cells sit between the two components and the sample's carrier fraction
reads far too low (TNBC1: 49-75% of the tumour cells called on its losses). The simulator draws a patient whose
clone lost one copy of three (``copy_ratio`` 2/3) and one who lost one of two (1/2, the default).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import simulated as S
from test_lesions import PARAMS, ROWS

from remnant.io.annotation import chromosome_arms
from remnant.tl.depth import DepthGenes
from remnant.tl.lesions import RATIO_MIN_GAIN, call_lesions, parse_lesions

MEDIAN = DepthGenes(baseline="median")


def _del5q(ratio: float) -> dict:
    """The simulator's del(5q) at copy ratio ``ratio`` (its default breakpoints)."""
    return {
        "name": "del5q",
        "chromosome": "chr5",
        "type": "loss",
        "copy_ratio": ratio,
        "proximal": [65_000_000, 80_000_000],
        "distal": [140_000_000, 160_500_000],
        "contains": [149_400_000, 151_900_000],
        "fraction_of_clone": 1.0,
    }


def _called(cohort, lesions, fit: bool, **kw):
    adata = cohort.copy()
    ref = adata.obs["sample"].str.endswith("_ref").to_numpy()
    call_lesions(adata, lesions, reference=ref, fit_copy_ratio=fit, depth_genes=MEDIAN, **kw)
    return adata


@pytest.fixture(scope="module")
def lesions(cytobands):
    return parse_lesions(None, cytobands, chromosome_arms(cytobands))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_triploid_loss_is_scored_at_its_own_ratio(lesions, seed):
    """A 2/3 loss in half of P1's cells at 2,000 UMI: scored at 1/2 its sample's mean posterior is 0.234 / 0.213
    against 0.473 / 0.487 carriers (seeds 0 / 1); fitted, the ratio is 2/3 (17.5 / 45.3 nats over 1/2) and the
    mean posterior 0.414 / 0.476. No held-out healthy cell is called either way."""
    cohort = S.called_cohort(ROWS, params=PARAMS | {"lesions": [_del5q(2 / 3)]}, seed=seed)
    mds = (cohort.obs["condition"] == "MDS").to_numpy()
    held = cohort.obs["sample"].str.endswith("_held").to_numpy()
    truth = cohort.obs["truth"].to_numpy(bool)[mds].mean()
    fixed, fitted = (_called(cohort, lesions, fit) for fit in (False, True))
    intervals = fitted.uns["lesions"]["del5q"]["intervals"].set_index("donor")
    assert intervals.loc["P1", "copy_ratio"] == pytest.approx(2 / 3)
    assert intervals.loc["P1", "ratio_gain"] >= RATIO_MIN_GAIN
    assert np.isnan(fixed.uns["lesions"]["del5q"]["intervals"].set_index("donor").loc["P1", "copy_ratio"])
    before = fixed.obs["del5q_posterior"].to_numpy()[mds].mean()
    after = fitted.obs["del5q_posterior"].to_numpy()[mds].mean()
    assert truth - before > 0.2 and abs(after - truth) < 0.07
    for adata in (fixed, fitted):
        assert (adata.obs["del5q_posterior"].to_numpy()[held] >= 0.9).mean() <= 0.01
    assert fitted.uns["lesions"]["del5q"]["params"]["fit_copy_ratio"] is True


def test_a_diploid_loss_keeps_its_ratio(lesions):
    """A 1/2 loss: no step nearer 1 fits better by the margin, so the patient keeps 1/2 and every posterior is
    what it is without the fit, also where the patient's cells are not re-scored for anything else (no interval,
    no levels: its first-pass scores stay)."""
    cohort = S.called_cohort(ROWS, params=PARAMS, seed=0)
    for kw in ({}, {"refine": False, "patient_levels": False}):
        fixed, fitted = (_called(cohort, lesions, fit, **kw) for fit in (False, True))
        intervals = fitted.uns["lesions"]["del5q"]["intervals"].set_index("donor")
        assert intervals.loc["P1", "copy_ratio"] == 0.5
        assert intervals.loc["P1", "ratio_gain"] < RATIO_MIN_GAIN
        np.testing.assert_allclose(fitted.obs["del5q_posterior"], fixed.obs["del5q_posterior"])


def test_the_ratio_fit_on_a_summed_depth_is_warned_about(lesions, caplog):
    """Against a sum an aneuploid tumour's gains inflated, its unchanged arms read low enough for a ratio near 1
    to call them (TNBC1 at full depth: 18p in 34% of the tumour cells): the log says to take the median."""
    cohort = S.called_cohort(ROWS, params=PARAMS, seed=0)
    ref = cohort.obs["sample"].str.endswith("_ref").to_numpy()
    with caplog.at_level(logging.WARNING, logger="remnant.tl.lesions"):
        call_lesions(cohort, lesions, reference=ref, fit_copy_ratio=True, depth_genes=DepthGenes(baseline="sum"))
    assert any("fit_copy_ratio with the depth's sum baseline" in r.getMessage() for r in caplog.records)
