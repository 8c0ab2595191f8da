"""Real data with known truth (issue 3): 1p/19q co-deletion in infercnvpy's oligodendroglioma set.

Every malignant cell of these tumours carries del(1p) and del(19q); the 42 normal cells are the
reference and are scored by cross-fitting (leave-their-tumour-out). Data preparation (Census
counts from the TPM-scale matrix, nearest reference state, hg19 arms) is that of
benchmarks/oligodendroglioma.py, which prints the full table. Measured there: AUROC 0.999 (del1p)
and 0.984 (del19q), 1 of 42 normal cells called per lesion; the floors below sit under those values
(the AUROC floor is the issue's target). The data set ships with infercnvpy, which is not a
dependency of remnant: the file is skipped where infercnvpy is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("infercnvpy", reason="the oligodendroglioma data set ships with infercnvpy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import oligodendroglioma as OG  # noqa: E402


@pytest.fixture(scope="module")
def sets():
    return OG.lesion_sets()


@pytest.fixture(scope="module")
def data():
    return OG.load()


@pytest.fixture(scope="module")
def called(data, sets):
    lesions, _, _ = sets
    return OG.run_remnant(data, lesions)


@pytest.fixture(scope="module")
def table(called, sets):
    return OG.summarize(called, sets[0])


def test_hg19_arms(sets):
    lesions, controls, _ = sets
    got = {l.name: (l.chromosome, l.start, l.end) for l in lesions + controls}
    assert got == {
        "del1p": ("chr1", 0, 125_000_000),
        "del19q": ("chr19", 26_500_000, 59_128_983),
        "del1q": ("chr1", 125_000_000, 249_250_621),
        "del19p": ("chr19", 0, 26_500_000),
    }


def test_data_and_count_layer(data):
    obs = data.obs
    assert data.n_obs == 184 and obs["malignant"].sum() == 142 and obs["normal"].sum() == 42
    assert set(obs.loc[obs["normal"], "tumour"]) == {"MGH36", "MGH53", "MGH54"}
    # Census: one captured molecule sits at t* = 6-42 on the TPM/10 scale of X
    assert 10 < np.median(obs["census_t"]) < 30
    # nearest reference state: nearly all malignant cells are closest to oligodendrocytes
    mal_states = obs.loc[obs["malignant"], "state"]
    assert (mal_states == "Oligodendrocytes (non-malignant)").mean() > 0.9


def test_auroc_each_lesion(table):
    # issue 3: AUROC >= 0.98 for each lesion, normals cross-fitted
    assert table.loc["del1p", "auroc"] >= 0.98
    assert table.loc["del19q", "auroc"] >= 0.98
    # without the per-tumour prior (the LLR alone)
    assert (table["auroc_llr"] >= 0.97).all()


def test_fpr_on_cross_fitted_normals(table, called):
    # at most 2 of the 42 normal cells called per lesion (measured: 1)
    assert (table["fpr_normals"] <= 0.05).all()
    assert (table["fpr_prior0.5"] <= 0.05).all()
    normal = called.obs["normal"].to_numpy()
    assert not (called.obs["del1p_call"].to_numpy() & called.obs["del19q_call"].to_numpy())[normal].any()


def test_sensitivity_and_per_tumour(table, called):
    assert table.loc["del1p", "sensitivity"] >= 0.9
    assert table.loc["del19q", "sensitivity"] >= 0.75
    obs = called.obs[called.obs["malignant"]]
    rates = obs.groupby("tumour", observed=True)["del1p_call"].mean()
    assert len(rates) == 4 and (rates >= 0.8).all()


def test_count_scale_near_poisson(table):
    # the caller's fitted Poisson-level scale on the Census counts is close to 1 (15-20 on X itself)
    assert (table["count_scale"] <= 2).all()
    assert (table["temperature"] >= 1).all() and (table["temperature"] < 3).all()


def test_control_arms_not_called(data, sets):
    # 1q and 19p are retained in 1p/19q-codeleted tumours: few malignant cells may be called there
    _, controls, _ = sets
    ctrl = OG.summarize(OG.run_remnant(data, controls), controls)
    assert (ctrl["auroc"] <= 0.6).all()
    assert (ctrl["sensitivity"] <= 0.1).all()
    assert (ctrl["fpr_normals"] <= 0.05).all()
