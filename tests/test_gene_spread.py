"""The spread of a borrowed profile's genes (``remnant.tl.lesion_model.gene_spread``).

A cell type the reference lacks is scored against the pooled profile of other types; each of its
genes sits off that profile by its own factor. A copy-number change moves every gene by one ratio, so
the spread of the genes around their common shift is the type's, whatever the lesion, and it is what
bounds the evidence a cell of that type can have on the interval's level.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from remnant.tl.lesion_model import gene_spread, level_information, score_rows

KW = {"rho": 0.5, "min_mean": 0.001, "shrinkage": 20.0, "chunk_size": 64, "outlier_fraction": 0.05}


def _type_cells(rng, mu, offsets, ratio, n, depth=3000.0, size=5.0):
    """(n, genes) counts of a cell type whose genes sit at ``mu * exp(offsets) * ratio``."""
    d = rng.lognormal(np.log(depth), 0.3, n).round()
    mean = d[:, None] / depth * (mu * np.exp(offsets) * ratio)[None, :]
    return rng.poisson(rng.gamma(size, mean / size)), d


def test_spread_is_the_types_not_the_lesions_and_none_for_the_reference_type():
    rng = np.random.default_rng(0)
    n_genes = 300
    mu = rng.lognormal(-0.5, 1.0, n_genes)
    p_all = mu / 3000.0
    phi = np.full(n_genes, 0.2)
    tau = 0.8
    off = rng.normal(0, tau, n_genes)
    blocks, depths, groups = [], [], []
    # group 0: the reference's own type; 1: another type; 2: the same other type carrying a loss
    for g, (offsets, ratio) in enumerate([(np.zeros(n_genes), 1.0), (off, 1.0), (off, 0.5)]):
        X, d = _type_cells(rng, mu, offsets, ratio, 60)
        blocks.append(X)
        depths.append(d)
        groups.append(np.full(60, g))
    X = sp.csr_matrix(np.vstack(blocks), dtype=np.float64)
    var = gene_spread(X, np.concatenate(depths), np.concatenate(groups), p_all, phi, 1.0)
    sd = np.sqrt(var)
    assert sd[0] < 0.15  # counting noise only (subtracted)
    assert abs(sd[1] - tau) < 0.15
    # the loss moves every gene by one ratio: the same spread
    assert abs(sd[2] - sd[1]) < 0.1


def test_too_few_measurable_genes_add_nothing():
    rng = np.random.default_rng(1)
    mu = np.full(30, 1e-3)  # ~3 counts per cell per gene at 3,000: a 2-cell group expects < 10
    X, d = _type_cells(rng, mu, rng.normal(0, 1.0, 30), 1.0, 2)
    var = gene_spread(sp.csr_matrix(X, dtype=np.float64), d, np.zeros(2, np.int64), mu / 3000.0, np.full(30, 0.2), 1.0)
    assert var.tolist() == [0.0]


def test_a_spread_type_loses_evidence_in_proportion_to_its_effective_genes():
    """Cells of a type the reference lacks, scored with their group: the LLR is divided by
    ``1 + (sd^2 + tau^2 sum(w^2)/I^2) I``; matched rows are untouched."""
    rng = np.random.default_rng(2)
    n_genes, n_ref, n_q = 120, 200, 80
    mu = rng.lognormal(-0.5, 1.0, n_genes)
    Xr, dr = _type_cells(rng, mu, np.zeros(n_genes), 1.0, n_ref)
    off = rng.normal(0, 0.7, n_genes)
    carrier = np.arange(n_q) % 2 == 0
    cells = [_type_cells(rng, mu, off, 0.5 if c else 1.0, 1) for c in carrier]
    Xq, dq = np.vstack([c[0] for c in cells]), np.concatenate([c[1] for c in cells])
    X = sp.csr_matrix(np.vstack([Xr, Xq]), dtype=np.float64)
    depth = np.r_[dr, dq]
    s_idx = np.r_[np.zeros(n_ref, np.int64), -np.ones(n_q, np.int64)]
    fold = np.r_[np.arange(n_ref) % 5, -np.ones(n_q, np.int64)]
    groups = np.r_[np.zeros(n_ref, np.int64), np.ones(n_q, np.int64)]
    level = score_rows(X, depth, s_idx, 1, fold, 5, **KW, unmatched_level_sd=0.1)
    spread = score_rows(X, depth, s_idx, 1, fold, 5, **KW, unmatched_level_sd=0.1, groups=groups)
    ref = s_idx >= 0
    np.testing.assert_array_equal(spread["llr"][ref], level["llr"][ref])
    un = ~ref
    tau2 = gene_spread(
        X[np.flatnonzero(un)], depth[un], groups[un], Xr.sum(0) / dr.sum(), level_phi(X, depth, ref), 1.0
    )
    assert 0.4 < np.sqrt(tau2[1]) < 1.0
    ratio = level["llr"][un] / spread["llr"][un]
    assert (ratio > 1.2).all()  # a gene spread of ~0.7 over ~100 genes is worth more than sd 0.1
    # the sign of each cell's evidence stands
    assert np.array_equal(np.sign(spread["llr"][un]), np.sign(level["llr"][un]))


def level_phi(X, depth, ref):
    """Per-gene overdispersion as the moments of the reference rows give it (for the expected spread)."""
    Xr = X[np.flatnonzero(ref)].toarray()
    p = Xr.sum(0) / depth[ref].sum()
    mu = depth[ref][:, None] * p
    return np.maximum(((Xr - mu) ** 2 - mu).sum(0) / np.maximum((mu**2).sum(0), 1e-12), 1e-3)


def test_level_information_squares_are_the_sum_of_squared_gene_terms():
    rng = np.random.default_rng(3)
    table = rng.lognormal(-6, 1.5, (2, 90))
    phi = rng.uniform(0.01, 1.0, 90)
    row = rng.integers(0, 2, 500)
    depth = rng.lognormal(np.log(4000), 0.6, 500).round()
    info, info2 = level_information(row, depth, table, phi, squares=True)
    w = depth[:, None] * table[row] / (1 + phi * depth[:, None] * table[row])
    np.testing.assert_allclose(info, w.sum(1), rtol=1e-4)
    np.testing.assert_allclose(info2, (w**2).sum(1), rtol=1e-4)
    assert (info2 <= info**2).all()


def test_a_cell_without_depth_keeps_a_finite_zero_evidence():
    """A cell with no counts outside the lesions has no information on the level: no evidence, not NaN."""
    rng = np.random.default_rng(4)
    mu = rng.lognormal(-0.5, 1.0, 60)
    Xr, dr = _type_cells(rng, mu, np.zeros(60), 1.0, 100)
    Xq, dq = _type_cells(rng, mu, rng.normal(0, 0.8, 60), 1.0, 30)
    Xq[0], dq[0] = 0, 0.0
    X = sp.csr_matrix(np.vstack([Xr, Xq]), dtype=np.float64)
    depth = np.r_[dr, dq]
    s_idx = np.r_[np.zeros(100, np.int64), -np.ones(30, np.int64)]
    fold = np.r_[np.arange(100) % 5, -np.ones(30, np.int64)]
    groups = np.r_[np.zeros(100, np.int64), np.ones(30, np.int64)]
    res = score_rows(X, depth, s_idx, 1, fold, 5, **KW, unmatched_level_sd=0.1, groups=groups)
    assert np.isfinite(res["llr"]).all() and res["llr"][100] == 0.0
