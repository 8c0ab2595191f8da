"""A carrier fraction and its error correction: Wilson interval, Rogan-Gladen estimate, delta-method interval.

The copy-number step calls some non-carriers carriers (false positive rate ``fpr``) and misses some
carriers (false negative rate ``fnr``), so the called share ``q`` of a group is biased. Rogan and
Gladen (Am J Epidemiol 1978) invert ``q = p (1 - fnr) + (1 - p) fpr`` for the true fraction ``p``;
:func:`corrected_fraction` adds the uncertainty of the error rates themselves.
"""

from __future__ import annotations

import numpy as np

# statsmodels is imported where it is used: the workflow's config checks import the library when
# the Snakefile is parsed, which should stay quick.

__all__ = ["corrected_fraction", "rogan_gladen", "wilson_interval"]


def wilson_interval(k: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials (fractions 0-1).

    :func:`statsmodels.stats.proportion.proportion_confint` with ``method="wilson"``; ``alpha`` is
    1 - confidence level.
    """
    from statsmodels.stats.proportion import proportion_confint

    return proportion_confint(k, n, alpha=alpha, method="wilson")


def rogan_gladen(fraction, fpr, fnr):
    """True-prevalence estimate ``(fraction - fpr) / (1 - fpr - fnr)`` (unclipped; arrays broadcast)."""
    fraction, fpr, fnr = (np.asarray(x, dtype=float) for x in (fraction, fpr, fnr))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (fraction - fpr) / (1.0 - fpr - fnr)


def corrected_fraction(
    fraction: float,
    low: float,
    high: float,
    fpr: float,
    fnr: float,
    *,
    n_cells: int,
    n_reference: int | None,
    z: float,
    min_youden: float,
) -> dict:
    """The error-corrected fraction of one group, its interval and standard error.

    The estimate is :func:`rogan_gladen` clipped to [0, 1]. Its interval maps the Wilson bounds
    (``low``, ``high``) through the same transform and widens each side in quadrature by the
    delta-method uncertainty of the error rates: ``fpr`` binomial over the ``n_reference`` cells it
    was measured on (exact when ``n_reference`` is None or 0), ``fnr`` binomial over the expected
    carriers (``corrected * n_cells``, at least 1).

    Parameters
    ----------
    fraction, low, high
        Called share of the group and its Wilson interval (0-1).
    fpr, fnr
        Calling error rates of the group (0-1).
    n_cells
        Cells of the group.
    z
        Normal quantile of the interval (1.96 for 95%).
    min_youden
        Smallest ``1 - fpr - fnr`` for which a corrected fraction is given.

    Returns
    -------
    dict
        ``fpr``, ``fnr``, ``youden`` (= 1 - fpr - fnr), ``corrected``, ``corrected_low``,
        ``corrected_high`` (0-1) and ``corrected_se`` (for tests across groups: the called share's
        binomial variance and the rates', both through the transform); NaN but the first three when
        ``youden`` is below ``min_youden`` or not finite.
    """
    q, lo, hi, n = fraction, low, high, n_cells
    youden = 1.0 - fpr - fnr
    out = {"fpr": fpr, "fnr": fnr, "youden": youden}
    if not np.isfinite(youden) or youden < min_youden:
        return {**out, "corrected": np.nan, "corrected_low": np.nan, "corrected_high": np.nan, "corrected_se": np.nan}
    p = float(rogan_gladen(q, fpr, fnr))
    p_c = min(max(p, 0.0), 1.0)
    # Uncertainty of the error rates (delta method): d p / d fpr = (p - 1) / J, d p / d fnr = p / J.
    var_fpr = fpr * (1 - fpr) / n_reference if n_reference else 0.0
    n_carriers = max(p_c * n, 1.0)
    var_fnr = fnr * (1 - fnr) / n_carriers
    se_rates = np.sqrt((1 - p_c) ** 2 * var_fpr + p_c**2 * var_fnr) / youden
    # Standard error for the across-patient test: the called share's binomial variance (half a cell
    # added to each side, so that none or all called still carries sampling error) and the rates'.
    q_s = (q * n + 0.5) / (n + 1.0)
    se = float(np.sqrt(q_s * (1 - q_s) / n / youden**2 + se_rates**2))
    lo_t, hi_t = float(rogan_gladen(lo, fpr, fnr)), float(rogan_gladen(hi, fpr, fnr))
    c_low = p - np.sqrt((p - lo_t) ** 2 + (z * se_rates) ** 2)
    c_high = p + np.sqrt((hi_t - p) ** 2 + (z * se_rates) ** 2)
    # The estimate is clipped to [0, 1]; the interval always contains it.
    return {
        **out,
        "corrected": p_c,
        "corrected_low": float(min(np.clip(c_low, 0, 1), p_c)),
        "corrected_high": float(max(np.clip(c_high, 0, 1), p_c)),
        "corrected_se": se,
    }
