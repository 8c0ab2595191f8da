"""The count model behind :func:`remnant.tl.lesions.call_lesions`: per-cell log-likelihood ratios of
one lesion for one batch's rows, their calibration, the per-sample carrier priors and the scan for
a patient's own deleted interval.

The model is described in :mod:`remnant.tl.lesions`; this module holds its arithmetic, on plain
arrays (no AnnData, no obs keys), so the calling code reads as the steps it takes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import gammaln

__all__ = [
    "assign_folds",
    "gene_spread",
    "group_posteriors",
    "level_information",
    "score_rows",
    "temperature",
]


def group_sums(X: sp.csr_matrix, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum rows of X by integer group (-1 = ignored) -> dense (n_groups, n_cols)."""
    keep = groups >= 0
    G = sp.csr_matrix((np.ones(keep.sum()), (groups[keep], np.flatnonzero(keep))), shape=(n_groups, X.shape[0]))
    return np.asarray((G @ X).toarray())


def em_prior(
    llr: np.ndarray, max_iter: int = 500, tol: float = 1e-8, *, centre: float = 0.5, strength: float = 1.0
) -> float:
    """Fraction of carriers by EM on a two-component mixture given per-cell LLRs.

    The fraction has a beta prior of ``strength`` pseudo-cells centred on ``centre`` (MAP by EM:
    ``pi = (sum of posteriors + strength * centre) / (n + strength)``); the default is the
    add-half prior of a sample on its own.
    """
    n = llr.size
    if n == 0:
        return float("nan")
    pi = 0.5
    for _ in range(max_iter):
        post = sigmoid(llr + np.log(pi / (1 - pi)))
        new = (post.sum() + strength * centre) / (n + strength)
        if abs(new - pi) < tol:
            pi = new
            break
        pi = new
    return float(pi)


def mixture_loglik(llr: np.ndarray, pi: float) -> float:
    """The log-likelihood (natural log, against all cells normal) of per-cell ``llr`` ((n,), nats)
    under a two-component mixture with carrier fraction ``pi`` (0 < pi < 1):
    ``sum_i log(1 - pi + pi exp(llr_i))``."""
    return float(np.logaddexp(np.log(pi) + llr, np.log1p(-pi)).sum())


def temperature(z_reference: np.ndarray, calibrate: bool) -> float:
    """Spread (sd, >= 1) of the standardised LLRs of cross-fitted reference cells (NaN: not measured)."""
    z = z_reference[np.isfinite(z_reference)]
    return float(max(1.0, np.std(z))) if calibrate and z.size > 1 else 1.0


def split_by(labels: np.ndarray) -> list[np.ndarray]:
    """The positions (ascending) of each distinct value of ``labels`` ((n,)), in order of first
    appearance (``pd.unique``'s); missing values form a group of their own. One sort, where a mask per
    value (``labels == value``) would compare every cell again for every value: cells x samples, both
    growing with the cohort (4.3 s a lesion at 1M cells in 200 samples)."""
    codes = pd.factorize(np.asarray(labels), use_na_sentinel=False)[0]
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2 if codes.size else 1))
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def group_posteriors(
    llr: np.ndarray, samples: np.ndarray, groups: np.ndarray, strength: float
) -> tuple[np.ndarray, dict, pd.DataFrame]:
    """Carrier priors per sample and per group of cells inside it, and the posterior of every cell.

    A sample's prior is learned from all its cells (:func:`em_prior`). Each group of the sample
    (its cells of one state or cluster, ``groups``: (n,) labels) then learns its own, pulled
    towards the sample's by at most ``strength`` pseudo-cells: by fewer where the sample's groups
    differ in carrier fraction more than their sizes explain (:func:`pooling_strength`, empirical
    Bayes), so a normal population inside a tumour's sample keeps a low carrier fraction of its own
    instead of being pulled towards the tumour's, while groups that do not differ share their
    sample's. ``strength=inf``: one prior per sample.

    Returns the (n,) posteriors, ``{sample: prior}`` and one row per (sample, group): ``sample``,
    ``group``, ``n_cells``, ``prior``, ``strength`` (the pseudo-cells used in that sample).
    """
    post = np.zeros(llr.size)
    priors, rows = {}, []
    for m in split_by(samples):
        smp = samples[m[0]]
        pi_s = em_prior(llr[m])
        priors[smp] = pi_s
        members = [m[g] for g in split_by(groups[m])]
        kappa = strength
        if np.isfinite(strength) and len(members) > 1:
            own = np.array([em_prior(llr[g], centre=pi_s) for g in members])
            kappa = pooling_strength(own, np.array([g.size for g in members]), pi_s, strength)
        for g in members:
            pi = pi_s if not np.isfinite(kappa) else em_prior(llr[g], centre=pi_s, strength=kappa)
            post[g] = sigmoid(llr[g] + np.log(pi / (1 - pi)))
            rows.append({"sample": smp, "group": groups[g[0]], "n_cells": int(g.size), "prior": pi, "strength": kappa})
    return post, priors, pd.DataFrame(rows, columns=["sample", "group", "n_cells", "prior", "strength"])


#: Fewest pseudo-cells :func:`pooling_strength` pulls a group with: a group never takes an extreme
#: fraction from its own cells alone, so a normal cell amid a tumour cluster is not called on a prior
#: near 1 (TNBC1: at one pseudo-cell a normal cell of LLR -2.6 was called +16p; at five none is).
MIN_POOLING = 5.0


def pooling_strength(fractions: np.ndarray, sizes: np.ndarray, centre: float, strength: float) -> float:
    """Pseudo-cells pulling each group's carrier fraction towards its sample's (empirical Bayes).

    The groups' true fractions are taken as Beta with mean ``centre`` and concentration ``kappa``
    (variance ``centre (1 - centre) / (kappa + 1)``); their spread beyond binomial sampling is
    estimated by moments from the groups' own fractions ``fractions`` (each of ``sizes`` cells):
    ``tau2 = [sum n (f - mu)^2 - mu (1 - mu) (G - 1)] / (N - sum n^2 / N)``. Groups that agree give
    ``kappa`` at ``strength`` (the most pooling); a tumour and a normal population in one sample give
    a few pseudo-cells. Clipped to [:data:`MIN_POOLING`, ``strength``].
    """
    n_total = float(sizes.sum())
    mu = float(np.clip(centre, 1e-6, 1 - 1e-6))
    spread = float(np.sum(sizes * (fractions - mu) ** 2)) - mu * (1 - mu) * (sizes.size - 1)
    denominator = n_total - float(np.sum(sizes.astype(float) ** 2)) / n_total
    if denominator <= 0 or spread <= 0:
        return float(strength)
    tau2 = spread / denominator
    kappa = mu * (1 - mu) / tau2 - 1.0
    return float(np.clip(kappa, MIN_POOLING, strength))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def assign_folds(
    ref_rows: np.ndarray, donors: np.ndarray | None, n_folds: int, seed: int, shared: np.ndarray | None = None
) -> tuple[np.ndarray, int, str]:
    """Cross-fitting folds of reference rows (their fold, the number of folds, the mode).

    A reference cell is scored as the cells it calibrates are. Healthy donors' reference samples
    calibrate other people's cells, so they are held out a donor at a time when there are at least
    two donors (mode ``"donor"``). A reference cell whose sample also holds cells that are scored
    (``shared``, (n_ref,) bool: the patients' normal cells as the reference, from an automatic
    reference or the normal cells of a tumour sample) calibrates its sample-mates, which are scored
    against a reference holding it and its donor: its donor held out would score it against other
    people only, so these cells are spread over random folds (``"cell"``; ``"donor+cell"`` beside
    donors held out). Without donors, or with one donor, random cell folds.
    """
    shared = np.zeros(ref_rows.size, bool) if shared is None else np.asarray(shared, bool)
    if donors is None:
        return _cell_folds(ref_rows.size, n_folds, seed), max(2, n_folds), "cell"
    ref_donors = donors[ref_rows]
    held_out = sorted(set(ref_donors[~shared]))
    if not shared.any() and len(held_out) < 2:
        return _cell_folds(ref_rows.size, n_folds, seed), max(2, n_folds), "cell"
    k = max(2, n_folds) if shared.any() else min(n_folds, len(held_out))
    fold = np.empty(ref_rows.size, dtype=np.int64)
    fold[shared] = _cell_folds(int(shared.sum()), n_folds, seed)
    dfold = {d: i % k for i, d in enumerate(held_out)}
    fold[~shared] = [dfold[d] for d in ref_donors[~shared]]
    mode = "donor" if not shared.any() else "donor+cell" if held_out else "cell"
    return fold, k, mode


def _cell_folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    """(n,) random folds, ``max(2, n_folds)`` of them, as even as ``n`` allows."""
    k = max(2, n_folds)
    return np.random.default_rng(seed).permutation(np.arange(n) % k).astype(np.int64)


def count_scale(num: np.ndarray, smu: np.ndarray, smu2: np.ndarray) -> float:
    """Poisson-level scale ``c`` of ``var = c*mu + phi*mu**2`` fitted over genes (>= 1).

    Read counts of plate protocols (no UMIs) vary more than a Poisson even for lowly expressed
    genes (amplification); UMI counts give ``c`` close to 1. Per gene, ``num/smu`` (excess second
    moment per unit mean) is linear in ``smu2/smu`` (the typical mean) with intercept ``c`` and
    slope ``phi``; weighted least squares over genes, weights falling with the mean.
    """
    ok = smu > 0
    if ok.sum() < 3:
        return 1.0
    y = num[ok] / smu[ok]
    x = smu2[ok] / smu[ok]
    w = smu[ok] / (1.0 + x) ** 2
    A = np.column_stack([np.ones_like(x), x]) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    return float(max(1.0, coef[0])) if np.isfinite(coef[0]) else 1.0


def score_rows(
    XL: sp.csr_matrix,
    depth: np.ndarray,
    s_idx: np.ndarray,
    n_states: int,
    fold: np.ndarray,
    k: int,
    *,
    rho: float,
    min_mean: float,
    shrinkage: float,
    chunk_size: int,
    outlier_fraction: float = 0.0,
    unmatched_level_sd: float = 0.0,
    groups: np.ndarray | None = None,
    levels: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    # long because: the docstring is the reference for every parameter and returned key (about 60
    # lines); the code (about 45) hands each step to the functions below.
    """Log-likelihood ratios of a set of rows (one batch's cells and its reference cells).

    Parameters
    ----------
    XL
        (n_rows, n_lesion_genes) counts of the lesion genes.
    depth
        (n_rows,) each row's depth (:func:`remnant.tl.lesions.lesion_counts`).
    s_idx
        (n_rows,) state code in ``0..n_states-1`` of the reference states, -1 = no matching state
        (scored against the pooled reference profile).
    fold
        (n_rows,) cross-fitting fold (0..k-1) of reference rows, -1 for the others.
    outlier_fraction
        Prior share of a cell's genes expressed off the copy-number model (by a programme, a
        cell type): each gene's count is a mixture of the model's negative binomial (weight
        ``1 - outlier_fraction``) and a broad one (:func:`_outlier_terms`), so a gene far from
        both hypotheses adds little evidence either way. 0: the plain negative binomial.
    unmatched_level_sd
        sd (natural log) of the level of the interval in a cell of a state the reference lacks
        (``s_idx == -1``), beyond counting noise: its LLR is divided by ``1 + sd**2 * I``
        (:func:`level_information`). 0: none.
    groups
        (n_rows,) integer group (e.g. cluster) of each row, or None. Rows of a state the reference
        lacks add, per group, the spread of the interval's genes around the borrowed profile
        (:func:`gene_spread`) to that level variance.
    levels
        ``(code, factors)``: (n_rows,) integer code (-1: none) and (n_codes, n_lesion_genes) factors
        (> 0) by which the expected counts of the rows of each code are multiplied, gene by gene (a
        patient's own level of each gene against the reference); or None. The profiles are
        estimated before the levels apply, so a reference row's code changes only its own evidence
        (a patient's normal cells in the reference are still that patient's cells).

    Returns
    -------
    dict with ``llr`` (n_rows,), ``z`` (n_rows,) LLR standardised by its model mean and sd under H0
    (with ``outlier_fraction`` > 0 measured on at most :data:`MAX_Z_ROWS` reference rows, NaN elsewhere),
    ``n_genes`` (n_rows,), ``use`` (n_lesion_genes,), ``count_scale``; with a gene kept also ``size`` (n_kept,)
    the genes' NB sizes, ``profiles`` ((n_states + 1, n_kept) in-sample, pooled last) and ``profile_row``.
    """
    n = XL.shape[0]
    ref = fold >= 0
    med_depth = float(np.median(depth[ref]))
    tot_ref = np.asarray(XL[np.flatnonzero(ref)].sum(axis=0)).ravel()
    p_all = tot_ref / max(depth[ref].sum(), 1.0)
    use = (p_all * med_depth >= min_mean) & (p_all > 0)
    XL, p_all, tot_ref = XL[:, use], p_all[use], tot_ref[use]
    if int(use.sum()) == 0:
        return {
            "llr": np.zeros(n),
            "z": np.zeros(n),
            "n_genes": np.zeros(n, dtype=np.int64),
            "use": use,
            "count_scale": 1.0,
        }
    in_sample, table, row = _profiles(XL, depth, s_idx, n_states, fold, k, p_all, tot_ref, shrinkage * med_depth)
    if levels is not None:
        table, row = _with_levels(table, row, levels[0], levels[1][:, use])
    phi, scale = _overdispersion(XL, depth, np.flatnonzero(ref), s_idx, n_states, in_sample, shrinkage * med_depth)
    # every cell is scored against profiles estimated from the reference: their error joins each gene's spread
    phi = _predictive_overdispersion(phi, tot_ref / scale, depth[ref])
    # counts and means divided by the scale follow var = mu + phi*mu**2 (quasi-likelihood)
    r = 1.0 / phi
    if outlier_fraction > 0:
        llr, z = _outlier_llr(XL, depth, row, table, r, phi, scale, rho, outlier_fraction, ref, chunk_size)
    else:
        llr, e0, v0 = _pair_terms(row, depth, table, r, phi, scale, rho, chunk_size)
        llr += _count_terms(XL, depth, row, table, r, scale, rho, chunk_size)
        z = (llr - e0) / np.sqrt(np.maximum(v0, 1e-12))
    unmatched = s_idx < 0
    spread = None
    if groups is not None and unmatched.any():
        spread = gene_spread(XL[np.flatnonzero(unmatched)], depth[unmatched], groups[unmatched], p_all, phi, scale)
    if (unmatched_level_sd > 0 or spread is not None) and unmatched.any():
        info, info2 = level_information(row[unmatched], depth[unmatched] / scale, table, phi, chunk_size, squares=True)
        var = np.full(info.size, unmatched_level_sd**2)
        if spread is not None:
            # a level averaged over genes that each sit off the borrowed profile by sd tau: the
            # average's variance is tau^2 * sum(w^2) / sum(w)^2 (w: each gene's information)
            share = np.divide(info2, info**2, out=np.zeros_like(info), where=info > 0)  # 1 / effective genes
            var += spread[groups[unmatched]] * share
        shrink = 1.0 + var * info
        llr[unmatched] /= shrink
        z[unmatched] /= np.sqrt(shrink)  # the LLR's null mean and sd shrink with it (z's sd by the root)
    return {
        "llr": llr,
        "z": z,
        "n_genes": (table > 0).sum(1)[row],  # genes a cell is scored on depend only on its profile row
        "use": use,
        "count_scale": scale,
        "size": r,
        "profiles": in_sample,
        "profile_row": np.where(s_idx >= 0, s_idx, n_states),
    }


def _profiles(
    XL: sp.csr_matrix,
    depth: np.ndarray,
    s_idx: np.ndarray,
    n_states: int,
    fold: np.ndarray,
    k: int,
    p_all: np.ndarray,
    tot_ref: np.ndarray,
    pseudo: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected counts per count of outside depth, (profiles, n_genes), and each row's profile.

    Returns the in-sample profiles (the ``n_states`` state profiles shrunk towards the pooled one
    ``p_all`` with ``pseudo`` counts of depth, then ``p_all``), the table every row is scored
    against (those, then the leave-fold-out state profiles per (state, fold), then the
    leave-fold-out pooled profile per fold) and the (n_rows,) row of each cell in that table:
    reference rows use their fold's leave-out profiles (cross-fitting), the others the in-sample
    ones; cells of a state the reference lacks use a pooled profile.
    """
    n, nL = XL.shape
    ref = fold >= 0
    # per (state, fold) sums over reference cells: rows = state*k + fold
    grp = np.full(n, -1, dtype=np.int64)
    has_state = ref & (s_idx >= 0)
    grp[has_state] = s_idx[has_state] * k + fold[has_state]
    S = group_sums(XL, grp, n_states * k).reshape(n_states, k, nL)
    Dsf = np.bincount(grp[grp >= 0], weights=depth[grp >= 0], minlength=n_states * k).reshape(n_states, k)
    F = group_sums(XL, np.where(ref, fold, -1), k)  # (k, nL) all states per fold
    Df = np.bincount(fold[ref], weights=depth[ref], minlength=k)

    def profile(state_sum, state_depth, pool):
        return (state_sum + pseudo * pool) / (state_depth + pseudo)

    # profiles: full (state), and leave-fold-out (state, fold); pooled rows for unseen states
    P_full = profile(S.sum(1), Dsf.sum(1)[:, None], p_all[None, :])  # (n_states, nL)
    P_pool_cf = (tot_ref[None, :] - F) / np.maximum(depth[ref].sum() - Df, 1.0)[:, None]  # (k, nL)
    P_cf = profile(
        S.sum(1)[:, None, :] - S, (Dsf.sum(1)[:, None] - Dsf)[:, :, None], P_pool_cf[None, :, :]
    )  # (n_states, k, nL)
    # table of profiles: [P_full (n_states); p_all (1); P_cf (n_states*k); P_pool_cf (k)]
    table = np.vstack([P_full, p_all[None, :], P_cf.reshape(-1, nL), P_pool_cf])
    row = np.where(s_idx >= 0, s_idx, n_states)
    row[ref] = np.where(
        s_idx[ref] >= 0, n_states + 1 + s_idx[ref] * k + fold[ref], n_states + 1 + n_states * k + fold[ref]
    )
    return np.vstack([P_full, p_all[None, :]]), table, row


def _with_levels(
    table: np.ndarray, row: np.ndarray, code: np.ndarray, factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``table`` with a row per (profile row, level code) pair in use, that profile times the code's
    factors (``factors``: (n_codes, n_genes)), and each row of code >= 0 moved onto its pair's row."""
    m = code >= 0
    if not m.any():
        return table, row
    pairs, inverse = np.unique(np.column_stack([row[m], code[m]]), axis=0, return_inverse=True)
    row = row.copy()
    row[m] = table.shape[0] + inverse.ravel()
    return np.vstack([table, table[pairs[:, 0]] * factors[pairs[:, 1]]]), row


def _overdispersion(
    XL: sp.csr_matrix,
    depth: np.ndarray,
    ref_idx: np.ndarray,
    s_idx: np.ndarray,
    n_states: int,
    Pr: np.ndarray,
    pseudo: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Per-gene overdispersion ``phi`` (n_genes,) and the count scale, from moments of the reference
    rows ``ref_idx`` against their in-sample profile (``Pr``: (n_states + 1, n_genes), pooled last;
    a state's profile shrunk towards the pooled one by ``pseudo`` counts of depth, :func:`_profiles`).

    A row's residual against a profile it is part of is smaller than against the truth: its expected
    square is the variance times ``1 - h``, ``h`` the row's share of its profile's depth (its
    leverage: its depth over its state's depth plus ``pseudo``, or over the whole reference's for
    the pooled profile). Each squared residual is divided by ``1 - h``, so that a small reference
    does not understate the spread (10 cells in one profile: the mean ``phi`` 0.19 for a true 0.3
    without it, 0.27 with it, tests/test_reference_noise.py); a row alone in its profile
    (``h = 1``) tells nothing and is left out."""
    ref_row = np.where(s_idx[ref_idx] >= 0, s_idx[ref_idx], n_states)
    XR = XL[ref_idx]
    Dr = depth[ref_idx]
    d1 = np.bincount(ref_row, weights=Dr, minlength=n_states + 1)
    own = np.append(d1[:n_states] + pseudo, Dr.sum())  # the depth behind each profile row
    h = Dr / np.maximum(own[ref_row], 1e-300)
    w = np.where(h < 1.0 - 1e-9, 1.0 / np.maximum(1.0 - h, 1e-9), 0.0)
    sx2 = np.asarray(XR.multiply(XR).T @ w).ravel()
    Gw = sp.csr_matrix((w * Dr, (ref_row, np.arange(ref_idx.size))), shape=(n_states + 1, ref_idx.size))
    sxmu = (np.asarray((Gw @ XR).todense()) * Pr).sum(0)
    d2 = np.bincount(ref_row, weights=Dr**2, minlength=n_states + 1)
    d2w = np.bincount(ref_row, weights=w * Dr**2, minlength=n_states + 1)
    smu = (d1[:, None] * Pr).sum(0)
    smu2 = (d2[:, None] * Pr**2).sum(0)
    # sum of squared residuals per gene, each row's over 1 - h: its expectation is sum(mu + phi mu^2)
    num = sx2 - 2 * sxmu + (d2w[:, None] * Pr**2).sum(0)
    scale = count_scale(num, smu, smu2)
    excess = num - scale * smu
    common = max(excess.sum() / max(smu2.sum(), 1e-12), 1e-3)
    tau = float(np.median(smu2))
    phi = np.clip((excess + tau * common) / (smu2 + tau), 1e-3, 10.0)
    return phi, scale


def _predictive_overdispersion(phi: np.ndarray, ref_totals: np.ndarray, ref_depth: np.ndarray) -> np.ndarray:
    """Each gene's overdispersion with its profile's estimation error added: (n_genes,).

    A cell is scored against a profile estimated from the reference cells, not against the truth.
    The profile of a gene, the reference's counts over their depths, has a relative variance of
    ``v = 1 / T + phi / n_eff`` (``T``: the gene's (scaled) reference counts, ``ref_totals``, taken as
    ``T + 1``; ``n_eff = sum(D)^2 / sum(D^2)`` over the reference cells' depths ``ref_depth``), so a count's
    variance about the estimated mean is ``mu + (phi + v) mu^2``. The error is the same for every
    cell scored against that profile: read as certain, a reference of ten cells of one type gave an
    unchanged arm's small offset to all of TNBC1's tumour cells, called in up to 36% of them
    (benchmarks/reference_size.py; 0.4% with 20 cells or more, and with this term at 10). With
    hundreds of reference cells the term is small against ``phi``."""
    d = np.asarray(ref_depth, dtype=np.float64)
    n_eff = d.sum() ** 2 / max(float((d**2).sum()), 1e-300)
    # 1 / (T + 1): 1 / T of the counts seen would overstate 1 / E[T] (for Poisson counts it is unbiased up to exp(-E[T]))
    v = 1.0 / (np.maximum(ref_totals, 0.0) + 1.0) + phi / max(n_eff, 1.0)
    return np.clip(phi + v, 1e-3, 10.0)


def _pair_terms(
    row: np.ndarray,
    depth: np.ndarray,
    table: np.ndarray,
    r: np.ndarray,
    phi: np.ndarray,
    scale: float,
    rho: float,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell (n_rows,): the LLR without its count term, and the LLR's mean and variance under H0.

    With mu = depth * P[row] / scale, l1 = log((r+mu)/(r+rho mu)), coef = l1 + log(rho):
    ``llr = sum_g r*l1 + x*coef``, ``e0 = sum_g r*l1 + mu*coef``, ``v0 = sum_g coef**2 * (mu + phi*mu**2)``.
    Everything but the x*coef term depends on the cell only through its profile row and depth,
    so it is computed once per distinct (row, depth) pair (counts are integers: at 91,335 cells
    there were 29,477 pairs, and their number grows far slower than the cohort), in dense blocks
    of pairs x lesion genes (:func:`_count_terms` adds x*coef at each stored count).
    """
    logrho = np.log(rho)
    pair, first = _pairs(row, depth)
    pair_row, pair_depth = row[first], depth[first]
    m = first.size
    r_l1, e0_pair, v0_pair = np.zeros(m), np.zeros(m), np.zeros(m)
    for a in range(0, m, chunk_size):
        b = min(a + chunk_size, m)
        mu = pair_depth[a:b, None] * table[pair_row[a:b]]
        if scale != 1.0:
            mu /= scale
        l1 = rho * mu
        l1 += r
        np.divide((1.0 - rho) * mu, l1, out=l1)
        np.log1p(l1, out=l1)  # log((r+mu)/(r+rho mu))
        coef = l1 + logrho  # per-count slope
        rl1 = np.multiply(r, l1, out=l1)
        r_l1[a:b] = rl1.sum(1)
        tmp = np.multiply(mu, coef)
        tmp += rl1
        e0_pair[a:b] = tmp.sum(1)
        np.multiply(mu, mu, out=tmp)
        tmp *= phi
        tmp += mu
        np.multiply(coef, coef, out=coef)
        tmp *= coef
        v0_pair[a:b] = tmp.sum(1)
    return r_l1[pair], e0_pair[pair], v0_pair[pair]


def _pairs(row: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (profile row, depth) pairs: each cell's pair index (n_rows,) and each pair's first cell."""
    n = row.size
    order = np.lexsort((depth, row))
    row_sorted, depth_sorted = row[order], depth[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (row_sorted[1:] != row_sorted[:-1]) | (depth_sorted[1:] != depth_sorted[:-1])
    pair = np.empty(n, dtype=np.int64)
    pair[order] = np.cumsum(new) - 1
    return pair, order[new]


def _count_terms(
    XL: sp.csr_matrix,
    depth: np.ndarray,
    row: np.ndarray,
    table: np.ndarray,
    r: np.ndarray,
    scale: float,
    rho: float,
    chunk_size: int,
) -> np.ndarray:
    """(n_rows,) sum over a cell's stored counts of x*coef (see :func:`_pair_terms`), in blocks of
    cells (nonzeros x float64 a few times over)."""
    n = XL.shape[0]
    logrho = np.log(rho)
    XL = XL.tocsr()
    XL.sum_duplicates()
    out = np.zeros(n)
    step = max(chunk_size * 256, 1)
    for a in range(0, n, step):
        b = min(a + step, n)
        lo, hi = XL.indptr[a], XL.indptr[b]
        ri = np.repeat(np.arange(a, b), np.diff(XL.indptr[a : b + 1]))
        ci = XL.indices[lo:hi]
        mu = depth[ri] * table[row[ri], ci]
        xv = XL.data[lo:hi].astype(np.float64)
        if scale != 1.0:
            mu /= scale
            xv /= scale
        coef = np.log1p((1.0 - rho) * mu / (r[ci] + rho * mu)) + logrho
        out[a:b] = np.bincount(ri - a, weights=xv * coef, minlength=b - a)
    return out


#: Size (1/dispersion) of the broad component of a gene's count under ``outlier_fraction``: 1 is a
#: gamma-Poisson with exponential mixing, a gene anywhere from a tenth to three times its expected
#: level (its log has sd 1.3), wide enough to hold a programme gene and carry no copy-number signal.
OUTLIER_SIZE = 1.0
#: Reference rows on which the moments of the outlier-robust LLR are computed for the temperature
#: (evenly spaced over the reference rows; the sd of 300 values is known to about 4%).
MAX_Z_ROWS = 300


def _outlier_terms(x: np.ndarray | float, mu: np.ndarray, r: np.ndarray, rho: float, eps: float) -> np.ndarray:
    """Per-gene LLR of copy ratio ``rho`` vs 1 at (scaled) count ``x`` with outlier genes.

    Under each hypothesis a gene's count is ``(1 - eps) * NB(mean, r) + eps * NB(mu, OUTLIER_SIZE)``,
    the mean ``rho * mu`` (H1) or ``mu`` (H0). The second, broad component is a gene whose level is
    set by something other than the interval's copy number (a programme, a cell type): it sits at
    the gene's reference level and is the same under both hypotheses, so a count far from both (a
    programme gene ten times off) has nearly the same likelihood under each and its evidence falls
    towards 0 instead of growing with the distance. No gene's evidence exceeds ``log(1/eps)``: the
    mixture keeps it near that bound for genes the reference finds less dispersed than the broad
    component (size ``r`` >= 1), and each gene's term is clipped there for the others, where a far-off
    count is better explained by the gene's own wide NB than by the broad part (on TNBC1 a gene of
    size 0.45 23-fold up in one tumour cluster took 3.9 nats per cell from del(5q); clipped, del19q's
    AUROC rose from 0.940 to 0.950). ``eps -> 0`` gives the plain negative-binomial LLR. Arrays
    broadcast; returns their shape.

    Centring the broad component at each hypothesis's mean instead (a programme on top of the
    copy number) keeps a far-off gene's evidence at the full copy ratio: on TNBC1 it left the
    losses where the plain model has them (del19q AUROC 0.893 vs 0.892), where this form reaches
    0.945 (``benchmarks/robust_evidence.md``).
    """
    return _term_at(np.asarray(x, dtype=float), r, _log_parts(mu, r, rho, eps), eps)


def _log_parts(mu: np.ndarray, r: np.ndarray, rho: float, eps: float) -> tuple[np.ndarray, ...]:
    """What a gene's outlier-model term shares across its counts (arrays broadcast): the log pmfs
    at 0 of the H1 model, H0 model and broad components with their mixture weights, and each one's
    slope per count (the log-gamma terms, which depend on the count, are :func:`_term_at`'s)."""
    s = OUTLIER_SIZE
    log_mu, log_r = np.log(mu), np.log(r)
    l1, l0, ls = np.log(r + rho * mu), np.log(r + mu), np.log(s + mu)
    keep, out = np.log1p(-eps), np.log(eps)
    zero = (keep - r * (l1 - log_r), keep - r * (l0 - log_r), out - s * (ls - np.log(s)))
    return (*zero, np.log(rho) + log_mu - l1, log_mu - l0, log_mu - ls)


def _term_at(
    x: np.ndarray | float,
    r: np.ndarray,
    parts: tuple[np.ndarray, ...],
    eps: float,
    lgamma: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`_outlier_terms` at counts ``x`` from :func:`_log_parts`; at a scalar 0 without the
    log-gamma ratio of the broad and model components (it vanishes there). ``lgamma``: that ratio
    at ``x``, computed beforehand (:func:`_count_lgamma`)."""
    a1, a0, ab, c1, c0, cb = parts
    b = ab + x * cb
    if lgamma is None and (np.ndim(x) or x != 0):
        lgamma = _lgamma_ratio(x, r)
    if lgamma is not None:
        b = b + lgamma
    out = np.log(eps)
    return np.clip(_logaddexp(a1 + x * c1, b) - _logaddexp(a0 + x * c0, b), out, -out)


def _lgamma_ratio(x: np.ndarray | float, r: np.ndarray) -> np.ndarray:
    """The log-gamma terms of the broad component's log pmf at ``x`` less the gene's NB's (size
    ``r``; arrays broadcast): the part of :func:`_term_at`'s terms that depends on the count."""
    return gammaln(x + OUTLIER_SIZE) - gammaln(OUTLIER_SIZE) - gammaln(x + r) + gammaln(r)


#: Counts below this are given :func:`_lgamma_ratio` from a table per (gene, count) built once per
#: call (integer counts only): a UMI cell's stored counts are nearly all small, and the log-gamma
#: function per stored count was a third of the outlier model's cost.
LGAMMA_COUNTS = 64


def _count_lgamma(data: np.ndarray, gene: np.ndarray, r: np.ndarray, scale: float) -> np.ndarray:
    """:func:`_lgamma_ratio` at the stored counts ``data`` (genes ``gene``, sizes ``r`` per gene)
    divided by ``scale``: the integer counts below :data:`LGAMMA_COUNTS` from a table, the same values
    the function gives them (the table is that function on the same arguments), the rest directly."""
    small = (data < LGAMMA_COUNTS) & (data >= 0) & (data == np.floor(data))
    out = np.empty(data.size)
    if small.any():
        grid = np.arange(LGAMMA_COUNTS, dtype=np.float64) / scale
        table = _lgamma_ratio(grid[None, :], r[:, None])
        out[small] = table[gene[small], data[small].astype(np.int64)]
    if not small.all():
        out[~small] = _lgamma_ratio(data[~small].astype(np.float64) / scale, r[gene[~small]])
    return out


def _logaddexp(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """``np.logaddexp(a, b)`` (arrays broadcast) by numpy's vectorised ``exp`` and ``log1p``, in place:
    the same formula (the larger plus ``log1p(exp(-|a - b|))``), where the ufunc calls the C library's
    scalar functions per element (0.064 s per 2.7M values against 0.038 s)."""
    top = np.maximum(a, b)
    with np.errstate(invalid="ignore"):
        out = np.asarray(np.subtract(a, b), dtype=np.float64)
    np.abs(out, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += top
    # both -inf (or both +inf): a - b is NaN where the ufunc gives the larger
    both = np.isnan(out) & ~np.isnan(top)
    if both.any():
        out[both] = np.broadcast_to(top, out.shape)[both]
    return out


def _outlier_llr(
    XL: sp.csr_matrix,
    depth: np.ndarray,
    row: np.ndarray,
    table: np.ndarray,
    r: np.ndarray,
    phi: np.ndarray,
    scale: float,
    rho: float,
    eps: float,
    ref: np.ndarray,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_rows,) LLRs under the outlier model (:func:`_outlier_terms`) and their standardised
    values on at most :data:`MAX_Z_ROWS` reference rows (NaN elsewhere).

    As for the plain model, the terms of a gene's zero count depend on a cell only through its
    (profile row, depth) pair (:func:`_zero_sums`); each stored count adds its term minus the
    zero-count one (:func:`_outlier_count_terms`)."""
    pair, first = _pairs(row, depth)
    llr = _zero_sums(row[first], depth[first] / scale, table, r, rho, eps, chunk_size)[pair]
    XL = XL.tocsr()
    XL.sum_duplicates()
    step = max(chunk_size * 256, 1)
    for a in range(0, XL.shape[0], step):
        b = min(a + step, XL.shape[0])
        lo, hi = XL.indptr[a], XL.indptr[b]
        ri = np.repeat(np.arange(a, b), np.diff(XL.indptr[a : b + 1]))
        ci = XL.indices[lo:hi]
        mu = np.maximum(depth[ri] * table[row[ri], ci] / scale, 1e-300)
        terms = _outlier_count_terms(XL.data[lo:hi], scale, mu, r, ci, rho, eps)
        llr[a:b] += np.bincount(ri - a, weights=terms, minlength=b - a)
    z = np.full(row.size, np.nan)
    ref_rows = np.flatnonzero(ref)
    pick = ref_rows[np.unique(np.linspace(0, ref_rows.size - 1, min(ref_rows.size, MAX_Z_ROWS)).astype(np.int64))]
    mu = np.maximum(depth[pick, None] * table[row[pick]] / scale, 1e-300)
    e0, v0 = _outlier_moments(mu, r, rho, eps)
    z[pick] = (llr[pick] - e0) / np.sqrt(np.maximum(v0, 1e-12))
    return llr, z


#: Depths per profile row at which :func:`_zero_sums` computes the zero-count sum exactly (log-spaced
#: over the row's depths; a cubic spline in log depth between them: the LLRs moved by at most 1e-5
#: on a simulated cohort and TNBC1, against the exact sum over every distinct depth).
ZERO_GRID = 64


def _zero_sums(
    pair_row: np.ndarray,
    pair_depth: np.ndarray,
    table: np.ndarray,
    r: np.ndarray,
    rho: float,
    eps: float,
    chunk_size: int,
) -> np.ndarray:
    """Per (profile row, depth) pair, the outlier-model LLR of a cell with no count on any gene.

    ``pair_depth`` is already divided by the count scale."""

    def exact(t: int, d: np.ndarray) -> np.ndarray:
        out = np.empty(d.size)
        for a in range(0, d.size, chunk_size):
            mu = np.maximum(d[a : a + chunk_size, None] * table[t], 1e-300)
            out[a : a + chunk_size] = _outlier_terms(0.0, mu, r, rho, eps).sum(1)
        return out

    return _smooth_in_depth(pair_row, pair_depth, exact)


def level_information(
    row: np.ndarray,
    depth: np.ndarray,
    table: np.ndarray,
    phi: np.ndarray,
    chunk_size: int = 256,
    squares: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(n_rows,) Fisher information of each cell on the log level of the lesion's genes:
    ``I = sum_g mu / (1 + phi_g * mu)``, ``mu = depth * table[row]`` (``depth`` already divided by
    the count scale; negative binomial of overdispersion ``phi``).

    ``1 / I`` is the variance of the interval's level measured from the counts. Where the level
    itself is uncertain by ``sd`` beyond counting (a cell type the reference lacks: its expected
    profile is borrowed from other types), a level test between ratio ``rho`` and 1 has, to a
    Gaussian approximation, the LLR of exact counts divided by ``1 + sd**2 * I``: deep cells no
    longer gain evidence without bound from an anchor that is only known to within ``sd``.

    ``squares``: also return ``sum_g w_g**2`` (``w_g`` each gene's term of ``I``): ``sum w^2 / I^2`` is
    how much of a per-gene spread survives in the level (1 / the effective number of genes)."""

    def exact(t: int, d: np.ndarray, power: int = 1) -> np.ndarray:
        out = np.empty(d.size)
        for a in range(0, d.size, chunk_size):
            mu = d[a : a + chunk_size, None] * table[t]
            out[a : a + chunk_size] = ((mu / (1.0 + phi * mu)) ** power).sum(1)
        return out

    pair, first = _pairs(row, depth)
    info = _smooth_in_depth(row[first], depth[first], exact)[pair]
    if not squares:
        return info
    return info, _smooth_in_depth(row[first], depth[first], lambda t, d: exact(t, d, 2))[pair]


#: genes a group needs, each with at least :data:`SPREAD_MIN_EXPECTED` expected counts summed over
#: the group's cells, for the spread of its genes to be measured (else none is added)
SPREAD_MIN_GENES = 10
SPREAD_MIN_EXPECTED = 10.0


def gene_spread(
    XL: sp.csr_matrix, depth: np.ndarray, groups: np.ndarray, p_all: np.ndarray, phi: np.ndarray, scale: float
) -> np.ndarray:
    """Per group, the variance (natural log squared) of the interval's genes around the borrowed profile.

    A cell type the reference lacks is scored against the pooled profile of other types; each of its
    genes sits off that profile by its own factor ``exp(e_g)``. A copy-number change moves every gene by
    one ratio (the median of the log ratios absorbs it); the spread around it is the type's.
    Per group: the pseudobulk's log ratio ``log(O / E)`` per gene with ``E`` (expected, ``depth * p_all``
    summed) >= :data:`SPREAD_MIN_EXPECTED`, its spread as ``(1.4826 MAD)^2`` (robust to the genes a
    programme moves far, which the outlier component already discounts), less the median sampling
    variance ``scale / E + phi * sum(d^2) / sum(d)^2``; 0 where fewer than :data:`SPREAD_MIN_GENES`
    genes qualify.

    Parameters
    ----------
    XL
        (n_rows, n_genes) counts of the rows to measure (a state the reference lacks).
    depth
        (n_rows,) each row's depth.
    groups
        (n_rows,) integer group codes >= 0 (others ignored).
    p_all
        (n_genes,) pooled reference profile (expected count per count of depth).

    Returns
    -------
    (max(groups) + 1,) variances; 0 for groups with too few genes (or none of the rows).
    """
    n_groups = int(groups.max()) + 1 if groups.size else 0
    out = np.zeros(n_groups)
    if n_groups == 0:
        return out
    O = group_sums(XL, groups, n_groups)
    keep = groups >= 0
    D = np.bincount(groups[keep], weights=depth[keep], minlength=n_groups)
    D2 = np.bincount(groups[keep], weights=depth[keep] ** 2, minlength=n_groups)
    for g in np.flatnonzero(D > 0):
        E = D[g] * p_all
        ok = E >= SPREAD_MIN_EXPECTED
        if ok.sum() < SPREAD_MIN_GENES:
            continue
        lr = np.log((O[g, ok] + 0.5) / (E[ok] + 0.5))
        mad = 1.4826 * np.median(np.abs(lr - np.median(lr)))
        noise = np.median(scale / E[ok] + phi[ok] * D2[g] / D[g] ** 2)
        out[g] = max(0.0, mad**2 - noise)
    return out


def _smooth_in_depth(pair_row: np.ndarray, pair_depth: np.ndarray, exact) -> np.ndarray:
    """``exact(t, depths)`` for every (profile row, depth) pair: a row's sum over genes is a smooth
    function of depth alone, so where a row has more than ``2 * ZERO_GRID`` distinct depths it is
    computed at :data:`ZERO_GRID` of them and interpolated (a cubic spline in log depth; the exact
    sum costs pairs x genes, and pairs grow with the cohort)."""
    from scipy.interpolate import CubicSpline

    out = np.empty(pair_row.size)
    for t in np.unique(pair_row):
        idx = np.flatnonzero(pair_row == t)
        d = pair_depth[idx]
        pos = d > 0
        lo, hi = (d[pos].min(), d[pos].max()) if pos.any() else (0.0, 0.0)
        if idx.size <= 2 * ZERO_GRID or hi <= lo * (1 + 1e-9):
            out[idx] = exact(t, d)
            continue
        grid = np.geomspace(lo, hi, ZERO_GRID)
        spline = CubicSpline(np.log(grid), exact(t, grid))
        out[idx[pos]] = spline(np.log(d[pos]))
        out[idx[~pos]] = exact(t, d[~pos])
    return out


def _outlier_count_terms(
    data: np.ndarray, scale: float, mu: np.ndarray, r: np.ndarray, gene: np.ndarray, rho: float, eps: float
) -> np.ndarray:
    """:func:`_outlier_terms` at the stored counts ``data / scale`` (of genes ``gene``, means ``mu``)
    minus its value at 0, sharing the logarithms of the two (the cost of every stored count)."""
    rg = r[gene]
    parts = _log_parts(mu, rg, rho, eps)
    x = data.astype(np.float64) / scale
    lgamma = _count_lgamma(data, gene, r, scale)
    return _term_at(x, rg, parts, eps, lgamma) - _term_at(0.0, rg, parts, eps)


#: Expected counts per gene at which :func:`_outlier_moments` computes a gene's moments exactly
#: (log-spaced over the gene's range among the rows; linear in log mean between them).
MOMENT_GRID = 64


def _outlier_moments(mu: np.ndarray, r: np.ndarray, rho: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance under H0 of the outlier model of each cell's LLR summed over genes
    (``mu``: (n_cells, n_genes) expected counts, ``r``: (n_genes,)) -> two (n_cells,) arrays.

    A gene's moments are a smooth function of its expected count: with more cells than
    :data:`MOMENT_GRID` they are computed exactly at that many expected counts per gene and
    interpolated (:func:`_gene_moments`, the costly part, then runs on 64 rows instead of up to
    :data:`MAX_Z_ROWS`; the standardised LLRs move by under 1e-3)."""
    n_cells, n_genes = mu.shape
    if n_cells <= MOMENT_GRID:
        mean, var = _gene_moments(mu, r, rho, eps)
        return mean.sum(1), var.sum(1)
    log_mu = np.log(mu)
    lo, hi = log_mu.min(0), log_mu.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    grid = lo + np.linspace(0.0, 1.0, MOMENT_GRID)[:, None] * (hi - lo)
    # per unit of expected count the moments vary slowly (both grow about linearly with a small
    # mean): that ratio is what is interpolated
    mean_grid, var_grid = _gene_moments(np.exp(grid), r, rho, eps)
    mean_grid, var_grid = mean_grid / np.exp(grid), var_grid / np.exp(grid)
    t = (log_mu - lo) / span * (MOMENT_GRID - 1)
    i = np.clip(np.floor(t).astype(np.int64), 0, MOMENT_GRID - 2)
    w = t - i
    gene = np.arange(n_genes)
    mean = ((1 - w) * mean_grid[i, gene] + w * mean_grid[i + 1, gene]) * mu
    var = ((1 - w) * var_grid[i, gene] + w * var_grid[i + 1, gene]) * mu
    return mean.sum(1), var.sum(1)


def _gene_moments(mu: np.ndarray, r: np.ndarray, rho: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance under H0 of each gene's outlier-model LLR term at expected counts ``mu``
    ((n_rows, n_genes), ``r``: (n_genes,)) -> two (n_rows, n_genes) arrays.

    A gene's count takes the integers up to 12 sd of the broad component above its mean (in
    buckets of 25, 60, 150 and 400 values, so a gene expected at 0.1 is summed over 25 values, not
    400), or 400 evenly spaced values over that range beyond; the probabilities are normalised over
    those values (the tail beyond carries under 1e-5)."""
    n_cells, n_genes = mu.shape
    top = mu + 12.0 * np.sqrt(mu + mu**2 / OUTLIER_SIZE) + 10.0
    mean, var = np.zeros((n_cells, n_genes)), np.zeros((n_cells, n_genes))
    keep, out = np.log1p(-eps), np.log(eps)
    lower = 0.0
    for span in (25, 60, 150, 400, None):
        cell, gene = np.nonzero((top > lower) & (top <= span) if span else top > lower)
        lower = span or lower
        if cell.size == 0:
            continue
        width = span or 400
        grid = np.arange(width, dtype=float)[None, :]
        if span:  # integer counts: the log-gamma terms depend on the gene and the count only
            shared_table = gammaln(grid + r[:, None]) - gammaln(r)[:, None] - gammaln(grid + 1)
            broad_table = gammaln(grid + OUTLIER_SIZE) - gammaln(OUTLIER_SIZE) - gammaln(grid + 1)
        for a in range(0, cell.size, 20_000):
            c, g = cell[a : a + 20_000], gene[a : a + 20_000]
            m, rr = mu[c, g, None], r[g, None]
            if span:
                k, shared, lb = grid, shared_table[g], broad_table
            else:  # far tails of strongly expressed genes: 400 evenly spaced values
                k = grid * (top[c, g, None] / (width - 1))
                shared = gammaln(k + rr) - gammaln(rr) - gammaln(k + 1)
                lb = gammaln(k + OUTLIER_SIZE) - gammaln(OUTLIER_SIZE) - gammaln(k + 1)
            lb = lb - OUTLIER_SIZE * np.log1p(m / OUTLIER_SIZE) + k * np.log(m / (OUTLIER_SIZE + m)) + out
            lp0 = shared - rr * np.log1p(m / rr) + k * np.log(m / (rr + m)) + keep
            lp1 = shared - rr * np.log1p(rho * m / rr) + k * np.log(rho * m / (rr + rho * m)) + keep
            h0 = _logaddexp(lp0, lb)
            prob = np.exp(h0)
            if span:
                prob *= k <= top[c, g, None]
            prob /= prob.sum(1, keepdims=True)
            terms = np.clip(_logaddexp(lp1, lb) - h0, out, -out)
            gene_mean = (prob * terms).sum(1)
            mean[c, g] = gene_mean
            var[c, g] = (prob * terms**2).sum(1) - gene_mean**2
    return mean, var
