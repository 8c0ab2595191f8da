"""The reference profile's own noise in the lesion model (remnant.tl.lesion_model): the spread of a gene
is measured without the downward bias of in-sample residuals, and a cell scored against a profile
estimated from few reference cells is given that profile's error."""

import numpy as np
import pytest
import scipy.sparse as sp

from remnant.tl.lesion_model import _overdispersion, _predictive_overdispersion


def _reference(rng, n_cells: int, n_genes: int, phi: float, depth: float):
    """Counts of ``n_cells`` cells on genes of known shares and negative-binomial spread ``phi``."""
    p = rng.gamma(2.0, 1.0, n_genes)
    p /= p.sum() * 20  # the genes hold 5% of a cell's counts
    D = rng.uniform(0.7, 1.3, n_cells) * depth
    mu = D[:, None] * p[None, :]
    X = rng.negative_binomial(1.0 / phi, 1.0 / (1.0 + phi * mu))
    return sp.csr_matrix(X.astype(np.float64)), D, p


@pytest.mark.parametrize("n_cells", [10, 40])
def test_the_spread_of_a_small_reference_is_not_understated(n_cells):
    """Mean over genes and references of the estimated phi: 0.19 at 10 cells without dividing the
    residuals by 1 - h (0.27 at 40), 0.27 and 0.29 with it."""
    rng = np.random.default_rng(0)
    phi_true, estimates = 0.3, []
    for _ in range(40):
        X, D, _ = _reference(rng, n_cells, 200, phi_true, 4000.0)
        profile = np.asarray(X.sum(0)).ravel() / D.sum()  # the in-sample profile, one state
        phi, scale = _overdispersion(X, D, np.arange(n_cells), np.full(n_cells, -1), 0, profile[None, :])
        estimates.append(phi.mean())
        assert 0.8 < scale < 1.25  # counts as counted: no quasi-likelihood scale
    assert np.mean(estimates) == pytest.approx(phi_true, rel=0.1)


def test_a_cell_scored_against_an_estimated_profile_spreads_as_predicted():
    """The variance of a new cell's count around the profile of n reference cells is
    mu + phi_pred * mu^2, phi_pred from _predictive_overdispersion (measured over many references)."""
    rng = np.random.default_rng(1)
    phi_true, n_cells, n_genes, depth = 0.2, 10, 50, 3000.0
    resid, mus, preds = [], [], []
    for _ in range(2000):
        X, D, p = _reference(rng, n_cells + 1, n_genes, phi_true, depth)
        ref, new = X[:n_cells], np.asarray(X[n_cells].todense()).ravel()
        totals = np.asarray(ref.sum(0)).ravel()
        p_hat = totals / D[:n_cells].sum()
        resid.append((new - D[n_cells] * p_hat) ** 2)
        mus.append(D[n_cells] * p)
        preds.append(_predictive_overdispersion(np.full(n_genes, phi_true), totals, D[:n_cells]))
    resid, mus, preds = np.array(resid), np.array(mus), np.array(preds)
    observed = resid.mean(0)
    predicted = (mus + preds * mus**2).mean(0)
    plain = (mus + phi_true * mus**2).mean(0)
    ratio = observed.sum() / predicted.sum()
    assert ratio == pytest.approx(1.0, abs=0.03)
    # the plain model, the profile taken as exact, understates it
    assert observed.sum() / plain.sum() > 1.06


def test_the_term_shrinks_with_the_reference():
    phi = np.array([0.1, 0.5, 1.0])
    small = _predictive_overdispersion(phi, np.array([20.0, 20.0, 20.0]), np.full(10, 1e4))
    large = _predictive_overdispersion(phi, np.array([2000.0, 2000.0, 2000.0]), np.full(1000, 1e4))
    assert np.all(small > large) and np.all(large > phi)
    assert large - phi == pytest.approx(1 / 2001 + phi / 1000)
    # a gene the reference never saw is not divided by zero
    assert np.isfinite(_predictive_overdispersion(phi, np.zeros(3), np.full(10, 1e4))).all()
