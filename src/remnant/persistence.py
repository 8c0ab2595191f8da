"""del(5q) fraction per patient x population x timepoint, corrected for calling errors, and its contrasts.

The founding study's question (Tehranchi et al., NEJM 2010): in remission, does the del(5q) clone
persist among CD34+CD38-/low CD90+ stem cells while the CD34+CD38+ progenitors are cleared?

Per group of cells (by default one patient x population x timepoint, i.e. one sorted sample):

- ``n_cells``, ``n_called`` (cells called carriers by :func:`remnant.lesions.call_lesions`),
  ``fraction = n_called / n_cells`` with a Wilson score interval
  (:func:`statsmodels.stats.proportion.proportion_confint`).
- ``corrected``: the Rogan-Gladen estimate of the true carrier fraction given the calling error
  rates of the copy-number step (``uns["lesions"][name]["per_sample"]``: ``fpr`` = share of
  non-carriers called, ``fnr`` = share of carriers missed):
  ``corrected = (fraction - fpr) / (1 - fpr - fnr)``, clipped to [0, 1]. Its interval maps the
  Wilson bounds through the same transform and widens each side in quadrature by the
  delta-method uncertainty of the error rates (``fpr`` binomial over the reference cells it was
  measured on, ``fnr`` binomial over the expected carriers). When ``1 - fpr - fnr`` is below
  ``min_youden`` the calls carry too little information to correct and ``corrected`` is NaN.
- ``posterior_mean``: the mean per-cell posterior (the mixture estimate of the fraction), a
  model-based cross-check.

Across patients (cells of one patient are not independent; patient is the stratum):

- :func:`stratified_contrast` compares two levels of a factor (stem vs progenitor at remission,
  or diagnosis vs remission within a population) with Cochran-Mantel-Haenszel
  (:class:`statsmodels.stats.contingency_tables.StratifiedTable`): pooled odds ratio with its
  interval, CMH test, Breslow-Day heterogeneity; per patient the difference of fractions
  (Newcombe interval) and Fisher's exact test; across patients the mean per-patient difference
  of corrected fractions with a t interval.
- :func:`binomial_mixed_contrast`: the same contrast as a binomial mixed model
  ``called ~ factor + (1 | patient)`` at the cell level
  (:class:`statsmodels.genmod.bayes_mixed_glm.BinomialBayesMixedGLM`, variational Bayes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats
from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from .errors import InputError

__all__ = [
    "binomial_mixed_contrast",
    "del_fraction_table",
    "persistence_contrasts",
    "rogan_gladen",
    "stratified_contrast",
]


def rogan_gladen(fraction, fpr, fnr):
    """True-prevalence estimate ``(fraction - fpr) / (1 - fpr - fnr)`` (unclipped; arrays broadcast)."""
    fraction, fpr, fnr = (np.asarray(x, dtype=float) for x in (fraction, fpr, fnr))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (fraction - fpr) / (1.0 - fpr - fnr)


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
        raise InputError(f"expected an AnnData or a per-cell DataFrame; got {type(data).__name__}.", where="del_fraction_table")
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
        AnnData after :func:`remnant.lesions.call_lesions` (obs and ``uns["lesions"]`` are used),
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
        One row per group: the ``by`` columns, ``n_samples``, ``n_cells``, ``n_called``,
        ``fraction``, ``fraction_low``, ``fraction_high`` (Wilson), ``fpr``, ``fnr``,
        ``youden`` (= 1 - fpr - fnr), ``corrected``, ``corrected_low``, ``corrected_high``,
        ``posterior_mean``. Fractions are 0-1 (not percent).
    """
    obs, per_sample, n_reference = _lesion_info(data, lesion, per_sample, n_reference)
    call_key = call_key or f"{lesion}_call"
    posterior_key = posterior_key or f"{lesion}_posterior"
    by = list(by)
    for col in [*by, call_key]:
        if col not in obs.columns:
            raise InputError(f"the cell table has no column {col!r}; run call_lesions first or fix `by`.", where="del_fraction_table")
    if not 0 < alpha < 1:
        raise InputError(f"alpha {alpha} must be in (0, 1).", where="del_fraction_table(alpha=...)")
    frame = pd.DataFrame({k: obs[k].astype(object).fillna("NA").astype(str) for k in by}, index=obs.index)
    frame["_call"] = obs[call_key].astype(bool).to_numpy()
    frame["_post"] = obs[posterior_key].astype(float).to_numpy() if posterior_key in obs.columns else np.nan
    have_rates = per_sample is not None
    if have_rates:
        if sample_key not in obs.columns:
            raise InputError(f"the cell table has no column {sample_key!r} to look up per-sample error rates.", where="del_fraction_table")
        for col in ("fpr", "fnr"):
            if col not in per_sample.columns:
                raise InputError(f"per-sample table lacks column {col!r}; pass uns['lesions'][name]['per_sample'].",
                                 where="del_fraction_table(per_sample=...)")
        samples = obs[sample_key].astype(str)
        missing = sorted(set(samples) - set(per_sample.index.astype(str)))
        if missing:
            raise InputError(f"no error rates for sample(s) {missing[:5]}; use the per-sample table of the same lesion call.",
                             where="del_fraction_table(per_sample=...)")
        rates = per_sample.copy()
        rates.index = rates.index.astype(str)
        frame["_fpr"] = samples.map(rates["fpr"]).astype(float).to_numpy()
        frame["_fnr"] = samples.map(rates["fnr"]).astype(float).to_numpy()
    frame["_sample"] = obs[sample_key].astype(str).to_numpy() if sample_key in obs.columns else ""
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for key, part in frame.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        n, k = len(part), int(part["_call"].sum())
        q = k / n
        lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
        row = {**dict(zip(by, key)), "n_samples": part["_sample"].nunique(), "n_cells": n, "n_called": k,
               "fraction": q, "fraction_low": lo, "fraction_high": hi,
               "posterior_mean": float(part["_post"].mean())}
        if have_rates:
            fpr, fnr = float(part["_fpr"].mean()), float(part["_fnr"].mean())
            row.update(_corrected(q, lo, hi, fpr, fnr, n, n_reference, z, min_youden))
        else:
            row.update(fpr=np.nan, fnr=np.nan, youden=np.nan, corrected=np.nan, corrected_low=np.nan, corrected_high=np.nan)
        rows.append(row)
    cols = [*by, "n_samples", "n_cells", "n_called", "fraction", "fraction_low", "fraction_high", "fpr", "fnr", "youden",
            "corrected", "corrected_low", "corrected_high", "posterior_mean"]
    return pd.DataFrame(rows, columns=cols)


def _corrected(q, lo, hi, fpr, fnr, n, n_reference, z, min_youden) -> dict:
    youden = 1.0 - fpr - fnr
    out = {"fpr": fpr, "fnr": fnr, "youden": youden}
    if not np.isfinite(youden) or youden < min_youden:
        return {**out, "corrected": np.nan, "corrected_low": np.nan, "corrected_high": np.nan}
    p = float(rogan_gladen(q, fpr, fnr))
    p_c = min(max(p, 0.0), 1.0)
    # Uncertainty of the error rates (delta method): d p / d fpr = (p - 1) / J, d p / d fnr = p / J.
    var_fpr = fpr * (1 - fpr) / n_reference if n_reference else 0.0
    n_carriers = max(p_c * n, 1.0)
    var_fnr = fnr * (1 - fnr) / n_carriers
    se_rates = np.sqrt((1 - p_c) ** 2 * var_fpr + p_c**2 * var_fnr) / youden
    lo_t, hi_t = float(rogan_gladen(lo, fpr, fnr)), float(rogan_gladen(hi, fpr, fnr))
    low = p - np.sqrt((p - lo_t) ** 2 + (z * se_rates) ** 2)
    high = p + np.sqrt((hi_t - p) ** 2 + (z * se_rates) ** 2)
    # The estimate is clipped to [0, 1]; the interval always contains it.
    return {**out, "corrected": p_c, "corrected_low": float(min(np.clip(low, 0, 1), p_c)),
            "corrected_high": float(max(np.clip(high, 0, 1), p_c))}


def _select(table: pd.DataFrame, fixed: Mapping[str, str] | None, where: str) -> pd.DataFrame:
    out = table
    for col, value in (fixed or {}).items():
        if col not in out.columns:
            raise InputError(f"the table has no column {col!r}.", where=where)
        out = out[out[col].astype(str) == str(value)]
    return out


def stratified_contrast(
    table: pd.DataFrame,
    *,
    factor: str,
    level: str,
    reference: str,
    fixed: Mapping[str, str] | None = None,
    strata: str = "patient",
    alpha: float = 0.05,
    name: str | None = None,
) -> pd.DataFrame:
    """Compare the carrier fraction of ``level`` vs ``reference`` of ``factor`` with patient as stratum.

    Parameters
    ----------
    table
        :func:`del_fraction_table` output (needs ``strata``, ``factor``, ``n_cells``,
        ``n_called``; ``corrected`` is used when present).
    factor, level, reference
        E.g. ``factor="population", level="HSC", reference="PROG"`` (stem vs progenitor), or
        ``factor="timepoint", level="remission", reference="diagnosis"``.
    fixed
        Rows to keep first, e.g. ``{"timepoint": "remission"}``.
    strata
        Stratum column (patient). Rows of one stratum and level are summed.
    name
        Label of the contrast (default ``"{factor}: {level} vs {reference} | fixed"``).

    Returns
    -------
    pandas.DataFrame
        One row per patient (``scope="patient"``: cells and carriers per level, fractions,
        ``difference`` = fraction(level) - fraction(reference) with Newcombe interval,
        ``odds_ratio`` with interval (0.5 added to empty cells), Fisher's exact ``pvalue``,
        ``corrected_difference``), then one pooled row (``scope="across patients"``:
        Mantel-Haenszel ``odds_ratio`` with its interval, CMH ``pvalue`` (with continuity
        correction), ``risk_ratio`` (MH pooled), Breslow-Day ``heterogeneity_pvalue``,
        ``difference`` = mean per-patient difference of raw fractions and
        ``corrected_difference`` = mean per-patient difference of corrected fractions, each with
        a t interval over patients; ``n_strata`` patients with both levels). Fractions are 0-1.
    """
    where = "stratified_contrast"
    for col in (strata, factor, "n_cells", "n_called"):
        if col not in table.columns:
            raise InputError(f"the fraction table has no column {col!r}.", where=where)
    label = name or f"{factor}: {level} vs {reference}" + "".join(f" | {k}={v}" for k, v in (fixed or {}).items())
    sub = _select(table, fixed, where)
    sub = sub[sub[factor].astype(str).isin([str(level), str(reference)])]
    has_corr = "corrected" in sub.columns
    agg = {"n_cells": ("n_cells", "sum"), "n_called": ("n_called", "sum")}
    grouped = sub.assign(_w=sub["corrected"] * sub["n_cells"] if has_corr else np.nan)
    grouped = grouped.groupby([strata, factor], sort=False).agg(**agg, _w=("_w", "sum"), _wn=("_w", "count"))
    rows, tables, diffs, cdiffs = [], [], [], []
    for stratum in pd.unique(sub[strata]):
        try:
            a, b = grouped.loc[(stratum, str(level))], grouped.loc[(stratum, str(reference))]
        except KeyError:
            continue
        na, ka, nb, kb = int(a["n_cells"]), int(a["n_called"]), int(b["n_cells"]), int(b["n_called"])
        if na == 0 or nb == 0:
            continue
        t = np.array([[ka, na - ka], [kb, nb - kb]], dtype=float)
        tables.append(t)
        fa, fb = ka / na, kb / nb
        d_lo, d_hi = confint_proportions_2indep(ka, na, kb, nb, method="newcomb", compare="diff", alpha=alpha)
        or_table = Table2x2(t, shift_zeros=True)
        or_lo, or_hi = or_table.oddsratio_confint(alpha=alpha)
        ca = a["_w"] / na if has_corr and a["_wn"] > 0 else np.nan
        cb = b["_w"] / nb if has_corr and b["_wn"] > 0 else np.nan
        diffs.append(fa - fb)
        cdiffs.append(ca - cb)
        rows.append({"contrast": label, "scope": "patient", strata: stratum, "n_cells_level": na, "n_called_level": ka,
                     "n_cells_reference": nb, "n_called_reference": kb, "fraction_level": fa, "fraction_reference": fb,
                     "difference": fa - fb, "difference_low": d_lo, "difference_high": d_hi,
                     "corrected_level": ca, "corrected_reference": cb, "corrected_difference": ca - cb,
                     "odds_ratio": or_table.oddsratio, "odds_ratio_low": or_lo, "odds_ratio_high": or_hi,
                     "pvalue": stats.fisher_exact(t)[1], "test": "Fisher exact (per patient)"})
    pooled = {"contrast": label, "scope": "across patients", strata: "all", "n_strata": len(tables),
              "n_cells_level": sum(int(t[0].sum()) for t in tables), "n_called_level": sum(int(t[0, 0]) for t in tables),
              "n_cells_reference": sum(int(t[1].sum()) for t in tables), "n_called_reference": sum(int(t[1, 0]) for t in tables),
              "test": "Cochran-Mantel-Haenszel (patient strata)"}
    informative = [t for t in tables if t[:, 0].sum() > 0 and t[:, 1].sum() > 0]
    if informative:
        st = StratifiedTable(informative)
        lo, hi = st.oddsratio_pooled_confint(alpha=alpha)
        null = st.test_null_odds(correction=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # Breslow-Day on strata with an empty cell
            het = st.test_equal_odds() if len(informative) > 1 else None
        pooled.update(odds_ratio=st.oddsratio_pooled, odds_ratio_low=lo, odds_ratio_high=hi, risk_ratio=st.riskratio_pooled,
                      pvalue=float(null.pvalue), statistic=float(null.statistic),
                      heterogeneity_pvalue=float(het.pvalue) if het is not None else np.nan)
    else:
        pooled.update(odds_ratio=np.nan, odds_ratio_low=np.nan, odds_ratio_high=np.nan, risk_ratio=np.nan, pvalue=np.nan,
                      statistic=np.nan, heterogeneity_pvalue=np.nan)
    for key, values in (("difference", diffs), ("corrected_difference", cdiffs)):
        v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
        pooled[key] = float(v.mean()) if v.size else np.nan
        if v.size >= 2:
            half = stats.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
            pooled[f"{key}_low"], pooled[f"{key}_high"] = pooled[key] - half, pooled[key] + half
        else:
            pooled[f"{key}_low"] = pooled[f"{key}_high"] = np.nan
    rows.append(pooled)
    out = pd.DataFrame(rows)
    front = ["contrast", "scope", strata, "n_strata", "test", "difference", "difference_low", "difference_high",
             "corrected_difference", "corrected_difference_low", "corrected_difference_high", "odds_ratio", "odds_ratio_low",
             "odds_ratio_high", "risk_ratio", "pvalue", "statistic", "heterogeneity_pvalue"]
    for col in front:
        if col not in out.columns:
            out[col] = np.nan
    out["n_strata"] = out["n_strata"].fillna(1).astype(int)
    return out[front + [c for c in out.columns if c not in front]]


def binomial_mixed_contrast(
    obs: pd.DataFrame,
    *,
    factor: str,
    level: str,
    reference: str,
    fixed: Mapping[str, str] | None = None,
    lesion: str = "del5q",
    call_key: str | None = None,
    group: str = "patient",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Cell-level binomial mixed model ``called ~ factor + (1 | patient)`` for one contrast.

    Fitted by variational Bayes (:meth:`BinomialBayesMixedGLM.fit_vb`); the interval is the
    normal approximation of the posterior of the fixed effect.

    Returns
    -------
    pandas.DataFrame
        One row: ``contrast``, ``log_odds_ratio`` (level vs reference), ``sd``, ``odds_ratio``,
        ``odds_ratio_low``, ``odds_ratio_high``, ``n_cells``, ``n_patients``,
        ``patient_sd`` (posterior mean of the random-intercept sd), ``test``. NaN when a level is
        missing or every cell has the same call.
    """
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    call_key = call_key or f"{lesion}_call"
    where = "binomial_mixed_contrast"
    for col in (factor, group, call_key):
        if col not in obs.columns:
            raise InputError(f"the cell table has no column {col!r}.", where=where)
    label = f"{factor}: {level} vs {reference}" + "".join(f" | {k}={v}" for k, v in (fixed or {}).items())
    sub = _select(obs, fixed, where)
    sub = sub[sub[factor].astype(str).isin([str(level), str(reference)])]
    y = sub[call_key].astype(bool).to_numpy().astype(float)
    x = (sub[factor].astype(str) == str(level)).to_numpy().astype(float)
    row = {"contrast": label, "n_cells": len(sub), "n_patients": int(sub[group].nunique()),
           "test": "binomial mixed model, random patient intercept (variational Bayes)"}
    nan = {"log_odds_ratio": np.nan, "sd": np.nan, "odds_ratio": np.nan, "odds_ratio_low": np.nan,
           "odds_ratio_high": np.nan, "patient_sd": np.nan}
    if len(sub) == 0 or x.min() == x.max() or y.min() == y.max():
        return pd.DataFrame([{**row, **nan}])
    data = pd.DataFrame({"y": y, "x": x, "g": sub[group].astype(str).to_numpy()})
    exog = np.column_stack([np.ones(len(data)), data["x"].to_numpy()])
    groups = pd.get_dummies(data["g"]).to_numpy(dtype=float)
    ident = np.zeros(groups.shape[1], dtype=int)
    model = BinomialBayesMixedGLM(data["y"].to_numpy(), exog, groups, ident, vcp_p=1.0, fe_p=2.0)
    fit = model.fit_vb()  # deterministic: starts from zero, no random draws
    est, sd = float(fit.fe_mean[1]), float(fit.fe_sd[1])
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame([{**row, "log_odds_ratio": est, "sd": sd, "odds_ratio": np.exp(est),
                          "odds_ratio_low": np.exp(est - z * sd), "odds_ratio_high": np.exp(est + z * sd),
                          "patient_sd": float(np.exp(fit.vcp_mean[0]))}])


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

    Returns the rows of :func:`stratified_contrast` for each contrast, stacked.
    """
    parts = []
    timepoints = set(table["timepoint"].astype(str))
    populations = [p for p in pd.unique(table["population"].astype(str))]
    for tp in (after, before):
        if tp in timepoints:
            parts.append(stratified_contrast(table, factor="population", level=stem, reference=progenitor,
                                             fixed={"timepoint": tp}, strata=strata, alpha=alpha))
    if before in timepoints and after in timepoints:
        for pop in populations:
            parts.append(stratified_contrast(table, factor="timepoint", level=after, reference=before,
                                             fixed={"population": pop}, strata=strata, alpha=alpha))
    if not parts:
        raise InputError(f"no timepoint {after!r} or {before!r} in the table (it has {sorted(timepoints)}).",
                         where="persistence_contrasts")
    return pd.concat(parts, ignore_index=True)
