"""Level uncertainty of cells of a state the reference lacks (``call_lesions(unmatched_level_sd=)``).

Such a cell is scored against the pooled profile of other cell types: its expected level on the
lesion's genes is borrowed, so its evidence is a level test whose anchor is known only to about
``unmatched_level_sd``; a deep cell must not gain evidence without bound from its counts alone.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from remnant.tl.lesion_model import level_information, score_rows


def _rows(seed: int = 0, n_ref: int = 200, n_query: int = 120, n_genes: int = 80):
    """Reference rows of state 0; query rows in increasing depth (500 to 50,000 counts), alternately
    of state 0 and of no reference state (-1), every other pair of them carrying a one-copy loss."""
    rng = np.random.default_rng(seed)
    mu = rng.lognormal(-1.0, 1.2, n_genes)
    depth = np.r_[rng.lognormal(np.log(3000), 0.3, n_ref), np.geomspace(500, 50_000, n_query)].round()
    carrier = (np.arange(n_query) // 2) % 2 == 0
    ratio = np.r_[np.ones(n_ref), np.where(carrier, 0.5, 1.0)]
    X = rng.poisson(rng.gamma(5.0, (depth * ratio)[:, None] / 3000 * mu[None, :] / 5.0))
    s_idx = np.r_[np.zeros(n_ref, np.int64), np.tile([0, -1], n_query // 2)]
    fold = np.r_[np.arange(n_ref) % 5, -np.ones(n_query, dtype=np.int64)]
    return sp.csr_matrix(X, dtype=np.float64), depth, s_idx, fold


KW = {"rho": 0.5, "min_mean": 0.001, "shrinkage": 20.0, "chunk_size": 64, "outlier_fraction": 0.05}


def test_only_cells_of_a_state_without_reference_are_tempered_by_their_information():
    X, depth, s_idx, fold = _rows()
    plain = score_rows(X, depth, s_idx, 1, fold, 5, **KW)
    sd = 0.1
    tempered = score_rows(X, depth, s_idx, 1, fold, 5, **KW, unmatched_level_sd=sd)
    matched = s_idx >= 0
    np.testing.assert_array_equal(tempered["llr"][matched], plain["llr"][matched])
    np.testing.assert_array_equal(tempered["z"][matched], plain["z"][matched])
    # the unmatched rows: divided by 1 + sd^2 I, I from the pooled profile (the last in-sample row)
    un = ~matched
    phi_free = plain["profiles"][-1]  # pooled profile, per count of depth
    info_poisson = depth[un] / plain["count_scale"] * phi_free.sum()
    shrink = plain["llr"][un] / tempered["llr"][un]
    assert (shrink > 1).all()
    # information grows with depth but saturates (overdispersion): below the Poisson information
    assert (shrink - 1 <= sd**2 * info_poisson * (1 + 1e-9)).all()
    assert np.all(np.diff(shrink) > 0)  # unmatched rows are in increasing depth
    # deep cells (> 25,000 counts) keep their sign but at most (log rho)^2 / (2 sd^2) = 24 nats of
    # a Gaussian level test, a third of what their counts alone give here
    deep = un & (depth > 25_000)
    carrier = np.r_[np.zeros(200, bool), (np.arange(120) // 2) % 2 == 0]
    assert np.all(np.sign(tempered["llr"][deep]) == np.where(carrier[deep], 1, -1))
    assert np.abs(plain["llr"][deep]).max() > 50
    assert np.abs(tempered["llr"][deep]).max() < 24
    assert np.all(np.abs(tempered["llr"][deep]) < np.abs(plain["llr"][deep]) / 2.5)


def test_level_information_is_the_negative_binomial_information_and_its_interpolation_exact():
    rng = np.random.default_rng(1)
    table = rng.lognormal(-6, 1.5, (3, 150))
    phi = rng.uniform(0.01, 2.0, 150)
    row = rng.integers(0, 3, 2000)
    depth = rng.lognormal(np.log(5000), 0.8, 2000).round()  # > 2 * ZERO_GRID depths per row: splined
    got = level_information(row, depth, table, phi)
    mu = depth[:, None] * table[row]
    exact = (mu / (1 + phi * mu)).sum(1)
    np.testing.assert_allclose(got, exact, rtol=1e-4)
    # a gene's information is bounded by its size 1/phi however deep the cell
    assert (level_information(np.zeros(1, np.int64), np.array([1e12]), table, phi) <= (1 / phi).sum()).all()
