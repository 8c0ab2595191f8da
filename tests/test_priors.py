"""Carrier priors per sample and group (remnant.tl.lesion_model.group_posteriors): the pull of a
group's fraction towards its sample's is estimated from how much the sample's groups differ."""

from __future__ import annotations

import numpy as np
import pytest

from remnant.tl.lesion_model import MIN_POOLING, group_posteriors, pooling_strength, split_by


def cells(rng, n: int, fraction: float, separation: float = 3.0) -> np.ndarray:
    """LLRs of ``n`` cells of which ``fraction`` carry the lesion (normal around +-separation, sd 2)."""
    carrier = rng.random(n) < fraction
    return rng.normal(np.where(carrier, separation, -separation), 2.0)


def test_groups_that_agree_share_their_samples_fraction():
    assert pooling_strength(np.array([0.5, 0.52, 0.48]), np.array([100, 120, 90]), 0.5, 20.0) == 20.0


def test_a_tumour_and_its_normal_cells_are_pooled_weakly():
    kappa = pooling_strength(np.array([0.95, 0.95, 0.05]), np.array([200, 150, 70]), 0.8, 20.0)
    assert kappa == MIN_POOLING
    # moderately different groups: between the two
    kappa = pooling_strength(np.array([0.6, 0.4]), np.array([300, 300]), 0.5, 20.0)
    assert MIN_POOLING < kappa < 20.0


def test_normal_cluster_in_a_tumour_sample_keeps_a_low_prior():
    rng = np.random.default_rng(3)
    llr = np.concatenate([cells(rng, 230, 0.98), cells(rng, 70, 0.0)])
    samples = np.array(["T"] * 300)
    groups = np.array(["tumour"] * 230 + ["normal"] * 70)
    post, priors, table = group_posteriors(llr, samples, groups, 20.0)
    normal = table.set_index("group").loc["normal"]
    assert priors["T"] > 0.7
    assert normal["strength"] == MIN_POOLING and normal["prior"] < 0.1
    # with the fixed pull of 20 pseudo-cells the normal cluster's prior was far higher
    fixed = (post[230:].sum() + 20 * priors["T"]) / (70 + 20)
    assert normal["prior"] < fixed / 2
    assert (post[230:] >= 0.9).mean() <= 0.02


@pytest.mark.parametrize("strength", [np.inf, 0.0])
def test_strength_bounds_are_kept(strength):
    rng = np.random.default_rng(4)
    llr = np.concatenate([cells(rng, 100, 0.9), cells(rng, 100, 0.1)])
    groups = np.array(["a"] * 100 + ["b"] * 100)
    _, priors, table = group_posteriors(llr, np.array(["S"] * 200), groups, strength)
    if np.isinf(strength):
        assert np.allclose(table["prior"], priors["S"])  # one prior per sample
    else:
        assert (table["strength"] == 0.0).all()  # never more than asked for


def test_split_by_gives_each_value_s_positions_in_order_of_first_appearance():
    """The groups the priors are learned on: as ``labels == value`` per ``pd.unique`` value would give
    them (positions ascending), a missing label its own group, nothing for no cells."""
    labels = np.array(["P2", "P1", "P2", None, "P3", "P1", np.nan, "P2"], dtype=object)
    groups = split_by(labels)
    assert [g.tolist() for g in groups] == [[0, 2, 7], [1, 5], [3, 6], [4]]
    assert split_by(np.array([], dtype=object)) == []
    many = np.random.default_rng(0).integers(0, 50, 5000).astype(str).astype(object)
    for g, value in zip(split_by(many), dict.fromkeys(many), strict=True):
        assert np.array_equal(g, np.flatnonzero(many == value))
