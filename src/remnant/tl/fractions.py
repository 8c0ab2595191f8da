"""del(5q) fraction per patient x population x timepoint, corrected for calling errors, and its contrasts.

The founding study's question (Tehranchi et al., NEJM 2010): in remission, does the del(5q) clone
persist among CD34+CD38-/low CD90+ stem cells while the CD34+CD38+ progenitors are cleared?

Per group of cells (by default one patient x population x timepoint, i.e. one sorted sample),
:func:`del_fraction_table` gives:

- ``n_cells``, ``n_called`` (cells called carriers by :func:`remnant.tl.lesions.call_lesions`),
  ``fraction = n_called / n_cells`` with a Wilson score interval
  (:func:`remnant.stats.proportions.wilson_interval`).
- ``corrected``: the Rogan-Gladen estimate of the true carrier fraction given the calling error
  rates of the copy-number step (``uns["lesions"][name]["per_sample"]``: ``fpr`` = share of
  non-carriers called, ``fnr`` = share of carriers missed):
  ``corrected = (fraction - fpr) / (1 - fpr - fnr)``, clipped to [0, 1]. Its interval maps the
  Wilson bounds through the same transform and widens each side in quadrature by the
  delta-method uncertainty of the error rates (``fpr`` binomial over the reference cells it was
  measured on, ``fnr`` binomial over the expected carriers;
  :func:`remnant.stats.proportions.corrected_fraction`). When ``1 - fpr - fnr`` is below
  ``min_youden`` the calls carry too little information to correct and ``corrected`` is NaN.
- ``posterior_mean``: the mean per-cell posterior (the mixture estimate of the fraction), a
  model-based cross-check.

Across patients (cells of one patient are not independent; patient is the stratum),
:func:`persistence_contrasts` compares two levels of a factor (stem vs progenitor at remission,
or diagnosis vs remission within a population) by
:func:`remnant.stats.contrasts.stratified_contrast`. The headline test is of the *corrected*
fractions: per patient the difference of corrected fractions with a delta-method variance
(``corrected_se`` of both groups: binomial sampling of the calls and the uncertainty of each
group's own fpr and fnr), pooled by :func:`remnant.stats.contrasts.random_effects_test`
(DerSimonian-Laird, Hartung-Knapp t with k - 1 degrees of freedom; one patient: its z test).
Descriptive, of the *called* cells: Cochran-Mantel-Haenszel, per patient the difference of called
fractions (Newcombe interval) and Fisher's exact test, and the binomial mixed model
``called ~ factor + (1 | patient)`` of :func:`remnant.stats.contrasts.binomial_mixed_contrast`.

Why the called cells are not the test: two populations can be called with different sensitivity
(quiescent stem cells carry fewer counts, so more of their carriers are missed). On simulated
cohorts at 500 UMI per cell with the same true fraction in stem and progenitor cells, CMH and
the mixed model rejected in 50-80% of cohorts and the corrected test in none
(benchmarks/contrast_calibration.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from remnant.errors import InputError
from remnant.stats.contrasts import stratified_contrast
from remnant.stats.proportions import corrected_fraction, wilson_interval

__all__ = ["FRACTION_COLUMNS", "del_fraction_table", "persistence_contrasts"]

#: Columns of :func:`del_fraction_table` after the ``by`` columns.
FRACTION_COLUMNS = (
    "n_samples",
    "n_cells",
    "n_called",
    "fraction",
    "fraction_low",
    "fraction_high",
    "fpr",
    "fnr",
    "youden",
    "corrected",
    "corrected_low",
    "corrected_high",
    "corrected_se",
    "posterior_mean",
)


def _lesion_info(data, lesion: str, per_sample, n_reference):
    """obs, per-sample error table and reference-cell count from an AnnData or explicit arguments."""
    if isinstance(data, AnnData):
        obs = data.obs
        info = data.uns.get("lesions", {}).get(lesion)
        if per_sample is None and info is not None:
            per_sample = info["per_sample"]
        if n_reference is None and info is not None:
            n_reference = info.get("params", {}).get("n_reference")
    elif isinstance(data, pd.DataFrame):
        obs = data
    else:
        raise InputError(
            f"expected an AnnData or a per-cell DataFrame; got {type(data).__name__}.", where="del_fraction_table"
        )
    return obs, per_sample, n_reference


def del_fraction_table(
    data: AnnData | pd.DataFrame,
    per_sample: pd.DataFrame | None = None,
    *,
    lesion: str = "del5q",
    by: Sequence[str] = ("patient", "population", "timepoint"),
    sample_key: str = "sample",
    call_key: str | None = None,
    posterior_key: str | None = None,
    n_reference: int | None = None,
    alpha: float = 0.05,
    min_youden: float = 0.1,
) -> pd.DataFrame:
    """Carrier fraction per group with Wilson and error-corrected intervals.

    Parameters
    ----------
    data
        AnnData after :func:`remnant.tl.lesions.call_lesions` (obs and ``uns["lesions"]`` are used),
        or its per-cell table (then give ``per_sample``). Cells to leave out (reference donors,
        other states) should be removed beforehand.
    per_sample
        Per-sample error rates indexed by sample with columns ``fpr`` and ``fnr`` (fractions
        0-1), as ``uns["lesions"][lesion]["per_sample"]``. ``None`` with a DataFrame: no
        correction (``corrected`` is NaN).
    lesion
        Lesion name; obs columns ``{lesion}_call`` (bool) and ``{lesion}_posterior`` (0-1).
    by
        Grouping columns; default one row per patient x population x timepoint. A group of
        several samples uses their cell-weighted mean error rates.
    call_key, posterior_key
        Override the obs column names.
    n_reference
        Reference cells the ``fpr`` was measured on (its binomial uncertainty); default from
        ``uns["lesions"][lesion]["params"]["n_reference"]``, else the fpr is taken as exact.
    alpha
        1 - confidence level of the intervals.
    min_youden
        Smallest ``1 - fpr - fnr`` for which a corrected fraction is reported.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, then :data:`FRACTION_COLUMNS`: ``n_samples``,
        ``n_cells``, ``n_called``, ``fraction``, ``fraction_low``, ``fraction_high`` (Wilson),
        ``fpr``, ``fnr``, ``youden`` (= 1 - fpr - fnr), ``corrected``, ``corrected_low``,
        ``corrected_high``, ``corrected_se``, ``posterior_mean``. Fractions are 0-1 (not percent).
    """
    obs, per_sample, n_reference = _lesion_info(data, lesion, per_sample, n_reference)
    call_key = call_key or f"{lesion}_call"
    by = list(by)
    for col in [*by, call_key]:
        if col not in obs.columns:
            raise InputError(
                f"the cell table has no column {col!r}; call the lesions first (remnant.tl.call_lesions) or fix `by`.",
                where="del_fraction_table",
            )
    if not 0 < alpha < 1:
        raise InputError(f"alpha {alpha} must be in (0, 1).", where="del_fraction_table(alpha=...)")
    frame = _cell_frame(
        obs,
        per_sample,
        by=by,
        sample_key=sample_key,
        call_key=call_key,
        posterior_key=posterior_key or f"{lesion}_posterior",
    )
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for key, part in frame.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(by, key)), **_group_fraction(part, alpha=alpha)}
        if per_sample is not None:
            fpr, fnr = float(part["_fpr"].mean()), float(part["_fnr"].mean())
            q, lo, hi = row["fraction"], row["fraction_low"], row["fraction_high"]
            row.update(
                corrected_fraction(
                    q, lo, hi, fpr, fnr, n_cells=len(part), n_reference=n_reference, z=z, min_youden=min_youden
                )
            )
        else:
            row.update(dict.fromkeys(FRACTION_COLUMNS[6:-1], np.nan))  # fpr ... corrected_se: no correction
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *FRACTION_COLUMNS])


def _cell_frame(
    obs: pd.DataFrame, per_sample: pd.DataFrame | None, *, by: list, sample_key: str, call_key: str, posterior_key: str
) -> pd.DataFrame:
    """Per cell: the ``by`` columns as str, ``_call``, ``_post``, ``_sample`` and (with ``per_sample``)
    its sample's ``_fpr`` and ``_fnr``."""
    frame = pd.DataFrame({k: obs[k].astype(object).fillna("NA").astype(str) for k in by}, index=obs.index)
    frame["_call"] = obs[call_key].astype(bool).to_numpy()
    frame["_post"] = obs[posterior_key].astype(float).to_numpy() if posterior_key in obs.columns else np.nan
    if per_sample is not None:
        rates = _sample_rates(obs, per_sample, sample_key)
        frame["_fpr"], frame["_fnr"] = rates["fpr"], rates["fnr"]
    frame["_sample"] = obs[sample_key].astype(str).to_numpy() if sample_key in obs.columns else ""
    return frame


def _sample_rates(obs: pd.DataFrame, per_sample: pd.DataFrame, sample_key: str) -> dict[str, np.ndarray]:
    """Per cell (``{"fpr": float (n_cells,), "fnr": ...}``): the error rates of its sample; checks that
    the cell table names samples and every sample has its rates."""
    if sample_key not in obs.columns:
        raise InputError(
            f"the cell table has no column {sample_key!r} to look up per-sample error rates.",
            where="del_fraction_table",
        )
    for col in ("fpr", "fnr"):
        if col not in per_sample.columns:
            raise InputError(
                f"per-sample table lacks column {col!r}; pass uns['lesions'][name]['per_sample'].",
                where="del_fraction_table(per_sample=...)",
            )
    samples = obs[sample_key].astype(str)
    missing = sorted(set(samples) - set(per_sample.index.astype(str)))
    if missing:
        raise InputError(
            f"no error rates for sample(s) {missing[:5]}; use the per-sample table of the same lesion call.",
            where="del_fraction_table(per_sample=...)",
        )
    rates = per_sample.copy()
    rates.index = rates.index.astype(str)
    return {col: samples.map(rates[col]).astype(float).to_numpy() for col in ("fpr", "fnr")}


def _group_fraction(part: pd.DataFrame, *, alpha: float) -> dict:
    """One group's cells of :func:`_cell_frame`: counts, called share with its Wilson interval, mean posterior."""
    n, k = len(part), int(part["_call"].sum())
    lo, hi = wilson_interval(k, n, alpha=alpha)
    return {
        "n_samples": part["_sample"].nunique(),
        "n_cells": n,
        "n_called": k,
        "fraction": k / n,
        "fraction_low": lo,
        "fraction_high": hi,
        "posterior_mean": float(part["_post"].mean()),
    }


def persistence_contrasts(
    table: pd.DataFrame,
    *,
    stem: str = "HSC",
    progenitor: str = "PROG",
    before: str = "diagnosis",
    after: str = "remission",
    strata: str = "patient",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The study's contrasts from a :func:`del_fraction_table`: stem vs progenitor at ``after``
    (and at ``before``), and ``after`` vs ``before`` within each population present.

    Returns the rows of :func:`remnant.stats.contrasts.stratified_contrast` for each contrast, stacked.
    """
    parts = []
    timepoints = set(table["timepoint"].astype(str))
    populations = list(pd.unique(table["population"].astype(str)))
    for tp in (after, before):
        if tp in timepoints:
            parts.append(
                stratified_contrast(
                    table,
                    factor="population",
                    level=stem,
                    reference=progenitor,
                    fixed={"timepoint": tp},
                    strata=strata,
                    alpha=alpha,
                )
            )
    if before in timepoints and after in timepoints:
        for pop in populations:
            parts.append(
                stratified_contrast(
                    table,
                    factor="timepoint",
                    level=after,
                    reference=before,
                    fixed={"population": pop},
                    strata=strata,
                    alpha=alpha,
                )
            )
    if not parts:
        raise InputError(
            f"no timepoint {after!r} or {before!r} in the table (it has {sorted(timepoints)}).",
            where="persistence_contrasts",
        )
    return pd.concat(parts, ignore_index=True)
