"""A patient's interval from its carrier and normal pools (remnant.tl.intervals)."""

import numpy as np
import pytest
import scipy.sparse as sp

from remnant.tl.intervals import (
    Model,
    Pools,
    best_segment,
    contrast_gain,
    fit_interval,
    fit_model,
    pool_counts,
    pool_shares,
    trim_threshold,
)

RHO = 0.5


def poisson_term(x, mu, gene):
    """A Poisson gene's LLR term of copy ratio RHO (the per-cell evidence without outliers)."""
    return x * np.log(RHO) + (1 - RHO) * mu


def cells(n_cells=3000, n_genes=200, carriers=0.0, seed=0):
    """Cells of two profile rows and spread depths; the first ``carriers`` share lose every gene."""
    rng = np.random.default_rng(seed)
    mu_rows = rng.gamma(0.6, 1.0, (2, n_genes))
    mu_rows /= mu_rows.sum(1, keepdims=True) * 40.0  # ~2.5% of a cell's depth on the genes
    row = rng.integers(0, 2, n_cells)
    depth = rng.lognormal(np.log(600), 0.4, n_cells)
    carrier = np.arange(n_cells) < carriers * n_cells
    mu = depth[:, None] * mu_rows[row] * np.where(carrier, RHO, 1.0)[:, None]
    counts = rng.poisson(mu)
    return sp.csr_matrix(counts.astype(float)), mu_rows, row, depth, carrier


def posterior_logit(counts, mu_rows, row, depth, prior=0.1):
    """Each cell's logit posterior from all its genes (what the pools are weighted with)."""
    mu = depth[:, None] * mu_rows[row]
    llr = poisson_term(counts.toarray(), mu, None).sum(1)
    return llr + np.log(prior / (1 - prior))


def test_leave_gene_out_matches_the_exact_sum():
    counts, mu_rows, row, depth, _ = cells(n_cells=800, n_genes=60, carriers=0.2)
    z = posterior_logit(counts, mu_rows, row, depth)
    oc, ec, ot, et = pool_counts(counts, mu_rows, row, depth, z, poisson_term)
    mu = depth[:, None] * mu_rows[row]
    x = counts.toarray()
    w = 1 / (1 + np.exp(-(z[:, None] - poisson_term(x, mu, None))))
    np.testing.assert_allclose(oc, (w * x).sum(0), rtol=1e-9)
    np.testing.assert_allclose(ec, (w * mu).sum(0), rtol=0.02)  # zero counts by groups of cells
    np.testing.assert_allclose(ot, x.sum(0))
    np.testing.assert_allclose(et, mu.sum(0), rtol=1e-9)


def test_leave_gene_out_pool_of_normal_cells_is_not_lost():
    """Weights from the cells' own counts make a pool of normal cells look lost; left out, it is not."""
    counts, mu_rows, row, depth, _ = cells(carriers=0.0)
    z = posterior_logit(counts, mu_rows, row, depth)
    oc, ec, ot, et = pool_counts(counts, mu_rows, row, depth, z, poisson_term)
    w = 1 / (1 + np.exp(-z))
    mu = depth[:, None] * mu_rows[row]
    naive = (w @ counts.toarray()).sum() / (w @ mu).sum()
    assert naive < 0.8  # the selection the weights make
    assert abs(oc.sum() / ec.sum() - 1) < 0.03
    assert abs((ot - oc).sum() / (et - ec).sum() - 1) < 0.01


def test_pool_shares():
    w = np.array([1.0, 1.0, 0.0, 0.0, 0.5])
    s_c, s_n = pool_shares(w)
    assert s_c == pytest.approx(2.25 / 2.5) and s_n == pytest.approx(0.25 / 2.5)


def pools(ec, en, ratio_c, ratio_n, level=None, share=(0.8, 0.05), seed=0):
    """Pools drawn at the given ratios (arrays broadcast) and gene levels."""
    rng = np.random.default_rng(seed)
    level = np.ones_like(ec) if level is None else level
    oc = rng.poisson(level * ratio_c * ec).astype(float)
    on = rng.poisson(level * ratio_n * en).astype(float)
    return Pools(oc, ec, on, en, *share)


def test_a_programme_gene_says_little():
    """A programme moves a gene eight-fold in carriers and normal cells alike: far from both
    hypotheses, it says little whether the carriers lost it or not, with or without normal cells to
    measure its level; genes at their reference level say lost or kept, bounded at log(1/eps)."""
    ec, en = np.full(4, 40.0), np.full(4, 400.0)
    level = np.array([8.0, 8.0, 1.0, 1.0])
    lost = np.array([False, True, False, True])
    oc = level * ec * np.where(lost, 1 - 0.8 * 0.5, 1.0)
    on = level * en * np.where(lost, 1 - 0.05 * 0.5, 1.0)
    model = Model(0.8, 0.05, 0.3)
    for normal in (on, np.zeros(4)):
        p = Pools(oc, ec, normal, en * (normal > 0), 0.8, 0.05)
        g = contrast_gain(p, RHO, model, 0.05, clip=False)
        assert g[3] > 0.5 and g[2] < -0.5
        assert max(abs(g[0]), abs(g[1])) < 0.1
        assert np.all(np.abs(contrast_gain(p, RHO, model, 0.05)) <= np.log(1 / 0.05) + 1e-12)
    # the normal cells measure the level, so the carriers' deficit tells more with them
    with_normal = contrast_gain(Pools(oc, ec, on, en, 0.8, 0.05), RHO, model, 0.05, clip=False)
    without = contrast_gain(Pools(oc, ec, np.zeros(4), np.zeros(4), 0.8, 0.0), RHO, model, 0.05, clip=False)
    assert with_normal[3] > 2 * without[3]


def test_model_is_fitted():
    """The pools' carrier shares and the genes' level sd are measured, not taken from the weights."""
    rng = np.random.default_rng(0)
    ec, en = np.full(400, 40.0), np.full(400, 400.0)
    level = rng.gamma(1 / 0.2**2, 0.2**2, 400)
    # the weights said 0.5 / 0.3; the pools hold 0.8 / 0.05
    m = fit_model(pools(ec, en, 1 - 0.8 * 0.5, 1 - 0.05 * 0.5, level, share=(0.5, 0.3)), RHO, 0.05)
    assert m.carrier_share == pytest.approx(0.8, abs=0.1) and m.normal_share == pytest.approx(0.05, abs=0.05)
    assert m.gene_sd == pytest.approx(0.2, abs=0.05)
    # every cell a carrier (a clonal tumour): both pools lost
    clonal = fit_model(pools(ec, en, 0.5, 0.5, level), RHO, 0.05)
    assert clonal.carrier_share > 0.8 and clonal.normal_share > 0.8
    # the weights tell nothing: the pools alike, no contrast read
    alike = fit_model(pools(ec, en, 0.9, 0.9, level), RHO, 0.05)
    assert abs(alike.carrier_share - alike.normal_share) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_trim_is_taken_only_when_it_beats_chance(seed):
    rng = np.random.default_rng(seed)
    n = 400
    ec, en = rng.gamma(0.7, 30.0, n), rng.gamma(0.7, 300.0, n)
    level = rng.gamma(1 / 0.3**2, 0.3**2, n)
    # the whole region lost: whatever the best interval gains is chance
    whole = pools(ec, en, 1 - 0.8 * 0.5, 1 - 0.05 * 0.5, level, seed=seed)
    fit = fit_interval(whole, RHO, 0.05, 30)
    assert fit.trim <= trim_threshold(fit.region_terms, 30, seed)
    # only genes 100-300 lost: the trim beats chance and finds them, at the pools' shares
    inside = (np.arange(n) >= 100) & (np.arange(n) < 300)
    part = pools(ec, en, np.where(inside, 0.6, 1.0), np.where(inside, 0.975, 1.0), level, seed=seed)
    fit = fit_interval(part, RHO, 0.05, 30)
    assert fit.trim > trim_threshold(fit.region_terms, 30, seed)
    assert abs(fit.start - 100) <= 12 and abs(fit.end - 300) <= 12
    assert fit.model.carrier_share == pytest.approx(0.8, abs=0.15)
    assert fit.region_model.carrier_share < fit.model.carrier_share


def test_best_segment():
    gain = np.array([-1.0, 2.0, 2.0, -5.0, 1.0, 1.0, 1.0, -1.0])
    assert best_segment(gain, 2) == (1, 3, 4.0)
    assert best_segment(gain, 4) == (1, 7, 2.0)
    # against every interval, on random gains
    rng = np.random.default_rng(0)
    for _ in range(200):
        g = rng.normal(size=int(rng.integers(5, 40)))
        m = int(rng.integers(1, g.size + 1))
        c = np.concatenate([[0.0], np.cumsum(g)])
        brute = max(c[j] - c[i] for i in range(g.size + 1) for j in range(i + m, g.size + 1))
        i, j, best = best_segment(g, m)
        assert best == pytest.approx(brute) and j - i >= m and g[i:j].sum() == pytest.approx(best)


def test_pool_term_without_outliers_is_the_negative_binomial_the_cells_had():
    """At ``outlier_fraction`` 0 the leave-gene-out weights take out the cells' own (negative binomial)
    term of each count, not a Poisson one: a gene the reference finds dispersed (size 0.5) gives a
    high count far less than a Poisson gene would."""
    from scipy.stats import nbinom

    from remnant.tl.lesions import _gene_term

    size = np.array([0.5, 50.0])
    term = _gene_term(size, {"rho": RHO, "outlier_fraction": 0.0}, temperature=2.0)
    x, mu = np.array([0.0, 3.0, 40.0]), np.array([2.0, 2.0, 2.0])
    for gene in (0, 1):
        r = size[gene]
        nb = nbinom.logpmf(x, r, r / (r + RHO * mu)) - nbinom.logpmf(x, r, r / (r + mu))
        np.testing.assert_allclose(term(x, mu, np.full(3, gene)), nb / 2.0, rtol=1e-9, atol=1e-12)
    assert abs(term(x, mu, np.zeros(3, int))[2]) < 0.2 * abs(poisson_term(40.0, 2.0, 0))
