"""A patient's own interval inside a configured lesion, from the contrast of its carriers with its normal cells.

:func:`remnant.tl.call_lesions` re-scores each patient on the part of the configured region its carriers
lost (``refine``). Which part is read off two pools of the patient's cells, each gene's counts summed
with the cells' carrier probabilities as weights (the *carrier pool*) and with their complements (the
*normal pool*), so that what every cell of the patient shares (its disease programme, its alleles'
expression, the sample's handling) sits in both and cancels, and only what the carriers lack is read:

- **Leave-gene-out weights** (:func:`pool_counts`): a cell's weight for a gene leaves out that gene's own
  evidence. A weight computed from the gene's counts favours, in the carrier pool, the cells whose count
  of that gene fell low by chance, so every gene the per-cell evidence counts in full looks lost in the
  pool (a simulated patient at 500 UMI with 10% carriers: its posterior-weighted pool read about 0.5 of
  the reference across the whole region, as its true carriers did only inside their deletion), and a gene
  the evidence discounts (a programme gene, :func:`~remnant.tl.lesion_model._outlier_terms`) looks kept:
  one up-regulated programme gene at the region's end then cut 6 Mb of the true deletion.
- **A patient's gene levels as a random effect, its pools' make-up fitted** (:func:`contrast_gain`,
  :func:`fit_model`): each gene's level in the patient is its reference level times ``lambda ~ Gamma``
  (sd ``gene_sd``), common to both pools and integrated out, with a small share of genes anywhere (a
  programme) that say nothing; the share of carriers in each pool and ``gene_sd`` are fitted to the
  region by maximum likelihood, not taken from the weights: a pool holds as many carriers as the
  posteriors are honest, and where every cell carries the lesion (a clonal tumour) the normal pool
  holds carriers too. Where the weights tell nothing the two pools come out alike and only their
  common level against the reference is read.
- **A trim must beat chance** (:func:`trim_threshold`): the best interval always beats the configured
  region by something (it is chosen among many); it is used only where it beats it by more than the
  95th percentile of the same statistic on the genes' gains resampled in blocks along the region,
  which keeps what neighbouring genes share beyond the model (on TNBC1, stretches of a lost arm that
  differ from the rest by hundreds of nats) and moves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, gammaln, logit

#: Size of the broad component of a gene's pooled counts (a gene set by something other than copy
#: number): its level anywhere from a tenth to three times the reference's, as in the per-cell evidence.
BROAD_SIZE = 1.0
#: Block-bootstrap resamples :func:`trim_threshold` draws, and the quantile of them a trim must beat.
N_NULL = 50
TRIM_LEVEL = 0.95


@dataclass(frozen=True)
class Pools:
    """One patient's pooled counts per lesion gene (n_genes,), genomic order, on the count scale of the
    cells' batches: ``carrier_observed`` / ``carrier_expected`` (cells weighted by their leave-gene-out
    carrier probability) and ``normal_observed`` / ``normal_expected`` (by its complement); ``carrier_share``
    and ``normal_share``: the expected share of carriers among each pool's cells by the weights."""

    carrier_observed: np.ndarray
    carrier_expected: np.ndarray
    normal_observed: np.ndarray
    normal_expected: np.ndarray
    carrier_share: float
    normal_share: float


def pool_shares(weights: np.ndarray) -> tuple[float, float]:
    """Expected share of carriers in the carrier pool and in the normal pool of cells with carrier
    probabilities ``weights`` (n,): ``sum(w^2) / sum(w)`` and ``sum(w (1 - w)) / sum(1 - w)``."""
    w = np.asarray(weights, float)
    sw, snw = w.sum(), (1.0 - w).sum()
    return (float((w * w).sum() / sw) if sw > 0 else 0.0, float((w * (1.0 - w)).sum() / snw) if snw > 0 else 0.0)


#: Bins of carrier probability and of depth (quantiles) per profile row in which :func:`pool_counts`
#: evaluates the leave-gene-out weight of a zero count (exactly per stored count).
WEIGHT_BINS = 24
DEPTH_BINS = 8


def pool_counts(
    counts,
    mu_rows: np.ndarray,
    profile_row: np.ndarray,
    depth: np.ndarray,
    logit_post: np.ndarray,
    gene_term,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Leave-gene-out carrier and total pools of one batch's cells of a patient.

    Parameters
    ----------
    counts
        (n_cells, n_genes) CSR counts on the count scale (divided by the batch's scale).
    mu_rows
        (n_profiles, n_genes) expected counts per unit of depth of each profile row (scaled).
    profile_row
        (n_cells,) each cell's row of ``mu_rows``; ``depth`` (n_cells,) its depth.
    logit_post
        (n_cells,) logit of each cell's carrier probability (all its evidence).
    gene_term
        Callable ``(x, mu, gene) -> array``: the LLR term (tempered) a count ``x`` of genes ``gene`` at
        expected counts ``mu`` adds to a cell's evidence (arrays broadcast); leave-gene-out takes it out
        of the cell's logit.

    Returns
    -------
    carrier_observed, carrier_expected, total_observed, total_expected, each (n_genes,).

    A stored count's weight is exact; a zero count's is the cell's own weight plus the change leaving the
    zero's term out makes, evaluated once per group of cells of one profile row, one of
    :data:`WEIGHT_BINS` bins of carrier probability and one of :data:`DEPTH_BINS` depth bins (at the
    group's mean logit and depth): groups x genes instead of cells x genes.
    """
    n_genes = counts.shape[1]
    w = expit(logit_post)
    group = _groups(profile_row, depth, w)
    n_groups = int(group.max()) + 1
    size = np.bincount(group, minlength=n_groups)
    g_row = np.zeros(n_groups, np.int64)
    g_row[group] = profile_row
    g_depth = np.bincount(group, weights=depth, minlength=n_groups)  # summed
    g_logit = np.bincount(group, weights=logit_post * depth, minlength=n_groups) / np.maximum(g_depth, 1e-300)
    g_mu = mu_rows[g_row]  # (groups, genes) per unit of depth
    mean_mu = (g_depth / np.maximum(size, 1))[:, None] * g_mu  # at the group's mean depth
    # each cell at its own weight (exact), plus the change leaving a zero count's term out makes, at
    # its group's mean (the change is small and smooth; the weights themselves are not)
    change = expit(g_logit[:, None] - gene_term(0.0, np.maximum(mean_mu, 1e-300), np.arange(n_genes)[None, :]))
    change -= expit(g_logit)[:, None]
    wd = np.bincount(profile_row, weights=w * depth, minlength=mu_rows.shape[0])
    carrier_expected = wd @ mu_rows + (change * g_depth[:, None] * g_mu).sum(0)
    total_expected = np.bincount(profile_row, weights=depth, minlength=mu_rows.shape[0]) @ mu_rows
    coo = counts.tocoo()
    ri, ci, x = coo.row, coo.col, coo.data.astype(float)
    mu = depth[ri] * mu_rows[profile_row[ri], ci]
    # a cell's stored count of a gene: its weight without that count's own term, exactly
    w_loo = expit(logit_post[ri] - gene_term(x, np.maximum(mu, 1e-300), ci))
    as_zero = w[ri] + change[group[ri], ci]
    carrier_expected += np.bincount(ci, weights=(w_loo - as_zero) * mu, minlength=n_genes)
    carrier_observed = np.bincount(ci, weights=w_loo * x, minlength=n_genes)
    total_observed = np.bincount(ci, weights=x, minlength=n_genes)
    return carrier_observed, np.clip(carrier_expected, 0.0, total_expected), total_observed, total_expected


def _groups(profile_row: np.ndarray, depth: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(n_cells,) dense code of each cell's (profile row, weight bin, depth bin)."""
    w_bin = np.minimum((w * WEIGHT_BINS).astype(np.int64), WEIGHT_BINS - 1)
    edges = np.quantile(depth, np.linspace(0, 1, DEPTH_BINS + 1)[1:-1]) if depth.size else np.array([])
    d_bin = np.searchsorted(edges, depth, side="right")
    key = (profile_row.astype(np.int64) * WEIGHT_BINS + w_bin) * DEPTH_BINS + d_bin
    return np.unique(key, return_inverse=True)[1].ravel()


def _marginal(oc, on, ac, an, k) -> np.ndarray:
    """log of the pools' counts ``oc``, ``on`` with means ``lambda * ac``, ``lambda * an`` and
    ``lambda ~ Gamma(k, k)`` integrated out, up to terms equal under every hypothesis and model."""
    total = oc + on
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (
            np.where(oc > 0, oc * np.log(np.maximum(ac, 1e-300)), 0.0)
            + np.where(on > 0, on * np.log(np.maximum(an, 1e-300)), 0.0)
            - (k + total) * np.log(k + ac + an)
            + k * np.log(k)
            + gammaln(k + total)
            - gammaln(k)
        )
    return out


#: Genes on each side of a gene whose pooled levels give its local baseline (:func:`local_baseline`),
#: and the expected count at which a gene's weight in the first, median pass stops growing.
BASELINE_HALF_WINDOW = 50
BASELINE_WEIGHT_CAP = 10.0


def local_baseline(
    observed: np.ndarray, expected: np.ndarray, gene_sd: float, eps: float, half_window: int = BASELINE_HALF_WINDOW
) -> np.ndarray:
    """(n_genes,) each gene's local baseline level in one pool: the level of the genes within
    ``half_window`` genes of it (genomic order) that no programme moved.

    A copy-number change is a step along the chromosome; a programme moves scattered genes. Two
    passes: a running weighted median of the log ratios ``log((observed + 0.5) / (expected + 0.5))``
    (weights: expected counts capped smoothly at :data:`BASELINE_WEIGHT_CAP`, so the few genes a
    programme raised most in the reference cannot set the median of their window) finds each
    gene's neighbourhood, and a gene likelier under the broad component than under the pools'
    ``Gamma(k, k)`` around it (:func:`level_posterior`'s mixture, ``k = 1 / gene_sd**2``, weight
    ``eps``) is left out of the second pass: the median times the window's mean of the other genes'
    ratios ``observed / expected`` to their own medians (weighted as in the first pass). The
    median keeps a step where it is (median filters preserve edges) and the mean of the ratios to
    it does not smear one; the mean is the level the genes' expected counts are scaled by (a
    median of log ratios sits ``gene_sd**2 / 2`` below it, and lower still on genes of few counts).
    """
    o, e = np.asarray(observed, float), np.asarray(expected, float)
    n = o.size
    if n == 0:
        return np.ones(0)
    width = 2 * half_window + 1
    capped = e / (1.0 + e / BASELINE_WEIGHT_CAP)
    ratio = np.pad(np.log((o + 0.5) / (e + 0.5)), half_window)
    weight = np.pad(capped, half_window)  # padding weighs nothing
    windows = np.lib.stride_tricks.sliding_window_view
    median = np.exp(weighted_median(windows(ratio, width), windows(weight, width)))
    ordinary = broad_share(o, e * median, gene_sd, eps) < 0.5
    # each ordinary gene's ratio to its own median, averaged over the window: a step is already in
    # the medians, so averaging these does not smear it across the window
    w = np.where(ordinary & (e > 0), capped, 0.0)
    resid = np.divide(o, e * median, out=np.zeros_like(o), where=w > 0)
    cs_wr = np.concatenate([[0.0], np.cumsum(w * resid)])
    cs_w = np.concatenate([[0.0], np.cumsum(w)])
    lo = np.maximum(np.arange(n) - half_window, 0)
    hi = np.minimum(np.arange(n) + half_window + 1, n)
    sum_wr, sum_w = cs_wr[hi] - cs_wr[lo], cs_w[hi] - cs_w[lo]
    return median * np.where(sum_w > 0, sum_wr / np.where(sum_w > 0, sum_w, 1.0), 1.0)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted median along the last axis (shape of ``values`` without it): the first value, in
    increasing order, at which the cumulative weight reaches half of the total."""
    order = np.argsort(values, axis=-1, kind="stable")
    cum = np.cumsum(np.take_along_axis(weights, order, axis=-1), axis=-1)
    first = np.argmax(cum >= 0.5 * cum[..., -1:], axis=-1)
    return np.take_along_axis(np.take_along_axis(values, order, axis=-1), first[..., None], axis=-1)[..., 0]


def broad_share(observed: np.ndarray, expected: np.ndarray, gene_sd: float, eps: float) -> np.ndarray:
    """(n_genes,) posterior probability that a gene pooled ``observed`` times where ``expected`` were
    is set by something else (the broad component, ``Gamma(BROAD_SIZE)``, prior weight ``eps``)
    rather than spread around the pool's level (``Gamma(k, k)``, ``k = 1 / gene_sd**2``); 0 at
    ``eps`` 0."""
    if eps <= 0:
        return np.zeros_like(np.asarray(observed, float))
    zero = np.zeros_like(observed)

    def log_marginal(size):
        return _marginal(observed, zero, expected, zero, size)

    k = 1.0 / gene_sd**2
    return expit(np.log(eps) - np.log1p(-eps) + log_marginal(BROAD_SIZE) - log_marginal(k))


def level_posterior(observed: np.ndarray, expected: np.ndarray, gene_sd: float, eps: float) -> np.ndarray:
    """(n_genes,) posterior mean level of genes pooled ``observed`` times where ``expected`` were (one
    pool, e.g. a patient's normal pool), under the pools' prior: ``Gamma(k, k)``, ``k = 1 / gene_sd**2``,
    with weight ``1 - eps``, and ``Gamma(BROAD_SIZE)`` (a gene set by something else, a programme) with
    weight ``eps``; the marginal likelihood of each is :func:`_marginal`'s."""
    k = 1.0 / gene_sd**2
    if eps <= 0:
        return (observed + k) / (expected + k)
    broad = broad_share(observed, expected, gene_sd, eps)
    return (1.0 - broad) * (observed + k) / (expected + k) + broad * (observed + BROAD_SIZE) / (expected + BROAD_SIZE)


@dataclass(frozen=True)
class Model:
    """What a patient's pools are read with: the share of carriers in the carrier pool and in the
    normal pool (``carrier_share``, ``normal_share``, 0-1: a pool of carriers only is at the lesion's
    ratio, one without carriers at 1) and ``gene_sd``, the sd (natural log) of a gene's level in the
    patient around the reference's (alleles, background, a cell type the reference lacks)."""

    carrier_share: float
    normal_share: float
    gene_sd: float


def _hypotheses(pools: Pools, rho: float, model: Model, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(n_genes,) log-likelihoods of each gene's pools with the lesion (``rho`` in the carriers) and
    without, the gene's level integrated out (:func:`contrast_gain`)."""
    oc, ec = pools.carrier_observed, pools.carrier_expected
    on, en = pools.normal_observed, pools.normal_expected
    k = 1.0 / model.gene_sd**2
    rc = 1.0 - model.carrier_share * (1.0 - rho)
    rn = 1.0 - model.normal_share * (1.0 - rho)
    h1 = _marginal(oc, on, rc * ec, rn * en, k)
    h0 = _marginal(oc, on, ec, en, k)
    if eps <= 0:
        return h1, h0
    keep, broad = np.log1p(-eps), np.log(eps) + _marginal(oc, on, ec, en, BROAD_SIZE)
    return np.logaddexp(keep + h1, broad), np.logaddexp(keep + h0, broad)


def contrast_gain(pools: Pools, rho: float, model: Model, eps: float, clip: bool = True) -> np.ndarray:
    """(n_genes,) log-likelihood ratio per gene of the patient's pools under the lesion (copy ratio
    ``rho`` in its carriers) against no change.

    The carrier pool's expected ratio is ``1 - a (1 - rho)``, the normal pool's ``1 - b (1 - rho)``
    (``a``, ``b``: the model's carrier shares). The gene's level in the patient, common to both pools,
    is integrated out: ``Gamma(k, k)`` around the reference (``k = 1 / gene_sd**2``) with weight
    ``1 - eps``; with weight ``eps`` the gene is set by something else (a programme): its level anywhere
    (``Gamma(BROAD_SIZE)``) and no copy change, the same under both hypotheses, so a gene far from both
    says little, as in the per-cell evidence. Each gene's term is clipped at ``log(1 / eps)`` either
    way, as the per-cell evidence's is; ``clip=False``: the model's own terms.
    """
    h1, h0 = _hypotheses(pools, rho, model, eps)
    gain = h1 - h0
    return np.clip(gain, np.log(eps), -np.log(eps)) if clip and eps > 0 else gain


#: Range of a gene's level sd :func:`fit_model` searches (natural log).
GENE_SD_RANGE = (0.02, 3.0)


def fit_model(pools: Pools, rho: float, eps: float, gene_sd: float | None = None) -> Model:
    """The :class:`Model` under which the pools (every gene lost) are likeliest: both pools' carrier
    shares (0-1) and, unless given, the genes' level sd, by maximum likelihood (L-BFGS-B from the
    weights' shares and 0.3).

    The shares are fitted rather than taken from the weights: a pool weighted by carrier
    probabilities holds as many carriers as those probabilities are honest, and where every cell of
    the patient carries the lesion (a clonal tumour) the normal pool holds carriers too. Where the
    weights tell carriers from normal cells no better than chance the two shares come out alike, and
    only the pools' common level against the reference (through ``gene_sd``) is read.
    """
    start = [
        logit(np.clip(pools.carrier_share, 0.02, 0.98)),
        logit(np.clip(pools.normal_share, 0.02, 0.98)),
        np.log(0.3 if gene_sd is None else gene_sd),
    ]
    lo, hi = np.log(GENE_SD_RANGE[0]), np.log(GENE_SD_RANGE[1])

    def model_of(x) -> Model:
        sd = gene_sd if gene_sd is not None else float(np.exp(np.clip(x[2], lo, hi)))
        return Model(float(expit(x[0])), float(expit(x[1])), sd)

    def nll(x) -> float:
        return -float(_hypotheses(pools, rho, model_of(x), eps)[0].sum())

    n_free = 2 if gene_sd is not None else 3
    bounds = [(-12.0, 12.0), (-12.0, 12.0), (lo, hi)][:n_free]
    res = minimize(nll, np.asarray(start[:n_free]), method="L-BFGS-B", bounds=bounds)
    return model_of(res.x)


def best_segment(gain: np.ndarray, min_genes: int) -> tuple[int, int, float]:
    """Gene-index interval ``[i, j)`` of at least ``min_genes`` genes maximising the summed ``gain``
    (n_genes,), and that sum: the largest ``c[j] - c[i]`` over prefix sums ``c`` with ``j - i >=
    min_genes``, each ``j`` against the smallest ``c[i]`` up to ``j - min_genes`` (linear time)."""
    n = gain.size
    if n < min_genes:
        return 0, n, -np.inf
    c = np.concatenate([[0.0], np.cumsum(gain)])
    # lowest prefix (and the latest start reaching it) among starts 0 .. j - min_genes, for every end j
    low = np.minimum.accumulate(c[: n - min_genes + 1])
    at = _latest_running_argmin(c[: n - min_genes + 1], low)
    total = c[min_genes:] - low
    k = int(np.argmax(total))
    return int(at[k]), k + min_genes, float(total[k])


def _latest_running_argmin(c: np.ndarray, low: np.ndarray) -> np.ndarray:
    """For each position, the latest index up to it at which ``c`` equals its running minimum ``low``."""
    idx = np.where(c == low, np.arange(c.size), 0)
    return np.maximum.accumulate(idx) if c.size else idx


@dataclass(frozen=True)
class Interval:
    """:func:`fit_interval`'s result: genes ``[start, end)`` of the pools, the model refitted on them and
    their summed gain (``model``, ``gain``); the whole region's model (``region_model``) and its genes'
    gains under it (``region_terms``, (n_genes,)); ``trim``, what the best interval under the region's
    model gains over the whole region (nats, the statistic :func:`trim_threshold` resamples)."""

    start: int
    end: int
    model: Model
    gain: float
    region_model: Model
    trim: float
    region_terms: np.ndarray


#: Rounds of :func:`fit_interval` (shares refitted on the interval, interval at the shares).
FIT_ROUNDS = 3


def fit_interval(pools: Pools, rho: float, eps: float, min_genes: int) -> Interval:
    """The interval of at least ``min_genes`` genes the carriers lost: the model fitted to the whole
    region (:func:`fit_model`), then in turn (:data:`FIT_ROUNDS`) the best interval under the model and
    the pools' shares refitted on it (the genes' level sd kept): shares fitted to a region part of which
    is not lost are too weak, which blurs the edges."""
    region = fit_model(pools, rho, eps)
    g_all = contrast_gain(pools, rho, region, eps)
    i, j, best = best_segment(g_all, min_genes)
    model = region
    for _ in range(FIT_ROUNDS):
        new = fit_model(_part(pools, i, j), rho, eps, gene_sd=region.gene_sd)
        moved = abs(new.carrier_share - model.carrier_share) + abs(new.normal_share - model.normal_share)
        model = new
        if moved < 1e-3:
            break
        i, j, _ = best_segment(contrast_gain(pools, rho, model, eps), min_genes)
    gain = float(contrast_gain(_part(pools, i, j), rho, model, eps).sum())
    return Interval(i, j, model, gain, region, best - float(g_all.sum()), g_all)


def _part(pools: Pools, i: int, j: int) -> Pools:
    return Pools(
        pools.carrier_observed[i:j],
        pools.carrier_expected[i:j],
        pools.normal_observed[i:j],
        pools.normal_expected[i:j],
        pools.carrier_share,
        pools.normal_share,
    )


def trim_threshold(gain: np.ndarray, min_genes: int, seed: int) -> float:
    """The :data:`TRIM_LEVEL` quantile of what the best interval gains over the whole region when no part
    of the region differs from the rest: the per-gene ``gain`` (n_genes,) resampled :data:`N_NULL` times
    by a circular block bootstrap in blocks of ``min_genes`` genes, each resample's best interval
    (:func:`best_segment`) against its sum.

    Blocks keep what neighbouring genes share beyond the model (co-regulated clusters, a cell type's
    programmes, a tumour's focal changes: on TNBC1 30-gene stretches of a lost arm differ from the
    rest by hundreds of nats, where genes drawn independently would allow 2-4) and move it along
    the region; a stretch the carriers kept is longer than a block and stays at its place only in
    the data.
    """
    n = gain.size
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // min_genes)
    excess = np.empty(N_NULL)
    for b in range(N_NULL):
        starts = rng.integers(0, n, n_blocks)
        idx = ((starts[:, None] + np.arange(min_genes)[None, :]) % n).ravel()[:n]
        sample = gain[idx]
        excess[b] = best_segment(sample, min_genes)[2] - float(sample.sum())
    return float(np.quantile(excess, TRIM_LEVEL))
