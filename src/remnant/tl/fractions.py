"""del(5q) fraction per patient x population x timepoint, corrected for calling errors, and its contrasts.

The founding study's question (Tehranchi et al., NEJM 2010): in remission, does the del(5q) clone
persist among CD34+CD38-/low CD90+ stem cells while the CD34+CD38+ progenitors are cleared?

Per group of cells (by default one patient x population x timepoint, i.e. one sorted sample):

- ``n_cells``, ``n_called`` (cells called carriers by :func:`remnant.tl.lesions.call_lesions`),
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
  or diagnosis vs remission within a population). The headline test is of the *corrected*
  fractions: per patient the difference of corrected fractions with a delta-method variance
  (``corrected_se`` of both groups: binomial sampling of the calls and the uncertainty of each
  group's own fpr and fnr), pooled by :func:`random_effects_test` (DerSimonian-Laird,
  Hartung-Knapp t with k - 1 degrees of freedom; one patient: its z test); ``significant`` is
  that test at ``alpha``. Descriptive, of the *called* cells: Cochran-Mantel-Haenszel
  (:class:`statsmodels.stats.contingency_tables.StratifiedTable`; pooled odds ratio with its
  interval, CMH test, Breslow-Day heterogeneity), per patient the difference of called fractions
  (Newcombe interval) and Fisher's exact test.
- :func:`binomial_mixed_contrast`: the same contrast as a binomial mixed model
  ``called ~ factor + (1 | patient)`` at the cell level
  (:class:`statsmodels.genmod.bayes_mixed_glm.BinomialBayesMixedGLM`, posterior mode with a
  Laplace covariance); descriptive, of the called cells.

Why the called cells are not the test: two populations can be called with different sensitivity
(quiescent stem cells carry fewer counts, so more of their carriers are missed). On simulated
cohorts at 500 UMI per cell with the same true fraction in stem and progenitor cells, CMH and
the mixed model rejected in 50-80% of cohorts and the corrected test in none
(benchmarks/contrast_calibration.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from remnant.errors import InputError

# statsmodels is imported where it is used: the workflow imports this module to check its config
# when the Snakefile is parsed, which should stay quick.

__all__ = [
    "CMH_TEST",
    "CONTRAST_STATISTICS",
    "CORRECTED_TESTS",
    "MIXED_TEST",
    "POPULATION_KEYS",
    "binomial_mixed_contrast",
    "check_config",
    "del_fraction_table",
    "not_this_design",
    "persistence_contrasts",
    "prepare_cells",
    "random_effects_test",
    "read_calls",
    "rogan_gladen",
    "run_contrasts",
    "run_fractions",
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
        One row per group: the ``by`` columns, ``n_samples``, ``n_cells``, ``n_called``,
        ``fraction``, ``fraction_low``, ``fraction_high`` (Wilson), ``fpr``, ``fnr``,
        ``youden`` (= 1 - fpr - fnr), ``corrected``, ``corrected_low``, ``corrected_high``,
        ``posterior_mean``. Fractions are 0-1 (not percent).
    """
    from statsmodels.stats.proportion import proportion_confint

    obs, per_sample, n_reference = _lesion_info(data, lesion, per_sample, n_reference)
    call_key = call_key or f"{lesion}_call"
    posterior_key = posterior_key or f"{lesion}_posterior"
    by = list(by)
    for col in [*by, call_key]:
        if col not in obs.columns:
            raise InputError(
                f"the cell table has no column {col!r}; run call_lesions first or fix `by`.", where="del_fraction_table"
            )
    if not 0 < alpha < 1:
        raise InputError(f"alpha {alpha} must be in (0, 1).", where="del_fraction_table(alpha=...)")
    frame = pd.DataFrame({k: obs[k].astype(object).fillna("NA").astype(str) for k in by}, index=obs.index)
    frame["_call"] = obs[call_key].astype(bool).to_numpy()
    frame["_post"] = obs[posterior_key].astype(float).to_numpy() if posterior_key in obs.columns else np.nan
    have_rates = per_sample is not None
    if have_rates:
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
        row = {
            **dict(zip(by, key)),
            "n_samples": part["_sample"].nunique(),
            "n_cells": n,
            "n_called": k,
            "fraction": q,
            "fraction_low": lo,
            "fraction_high": hi,
            "posterior_mean": float(part["_post"].mean()),
        }
        if have_rates:
            fpr, fnr = float(part["_fpr"].mean()), float(part["_fnr"].mean())
            row.update(_corrected(q, lo, hi, fpr, fnr, n, n_reference, z, min_youden))
        else:
            row.update(
                fpr=np.nan,
                fnr=np.nan,
                youden=np.nan,
                corrected=np.nan,
                corrected_low=np.nan,
                corrected_high=np.nan,
                corrected_se=np.nan,
            )
        rows.append(row)
    cols = [
        *by,
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
    ]
    return pd.DataFrame(rows, columns=cols)


def _corrected(q, lo, hi, fpr, fnr, n, n_reference, z, min_youden) -> dict:
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
    low = p - np.sqrt((p - lo_t) ** 2 + (z * se_rates) ** 2)
    high = p + np.sqrt((hi_t - p) ** 2 + (z * se_rates) ** 2)
    # The estimate is clipped to [0, 1]; the interval always contains it.
    return {
        **out,
        "corrected": p_c,
        "corrected_low": float(min(np.clip(low, 0, 1), p_c)),
        "corrected_high": float(max(np.clip(high, 0, 1), p_c)),
        "corrected_se": se,
    }


def _select(table: pd.DataFrame, fixed: Mapping[str, str] | None, where: str) -> pd.DataFrame:
    out = table
    for col, value in (fixed or {}).items():
        if col not in out.columns:
            raise InputError(f"the table has no column {col!r}.", where=where)
        out = out[out[col].astype(str) == str(value)]
    return out


#: ``corrected_test`` of the error-corrected tests (:func:`random_effects_test`): across patients, and
#: of one patient (the per-patient rows, and a contrast with one patient).
CORRECTED_TESTS = {
    "meta": "random-effects meta-analysis of per-patient corrected differences (DerSimonian-Laird, Hartung-Knapp t)",
    "one": "z test of the patient's corrected difference (delta-method variance)",
}
#: ``test`` of the tests of *called* cells: descriptive (biased where the compared levels are
#: called with different sensitivity); the corrected test is the headline.
CMH_TEST = "Cochran-Mantel-Haenszel (patient strata; called cells, descriptive)"
MIXED_TEST = (
    "binomial mixed model, random patient intercept (called cells, descriptive; posterior mode, Laplace "
    "covariance; Wald interval)"
)


def random_effects_test(estimates, variances, *, alpha: float = 0.05) -> dict:
    """Random-effects meta-analysis of per-patient differences: the headline across-patient test.

    DerSimonian-Laird between-patient variance ``tau2``, inverse-variance weights
    ``1 / (v_i + tau2)``, and the Hartung-Knapp-Sidik-Jonkman variance of the pooled mean (the
    weighted spread of the estimates around it, ``k - 1`` degrees of freedom; floored at the
    DerSimonian-Laird variance, so the interval is never narrower than the normal one, as Knapp
    and Hartung advise for few studies). One patient: its own z test.

    Parameters
    ----------
    estimates
        Per-patient differences (k,), e.g. of corrected carrier fractions (fraction units, 0-1 scale).
    variances
        Their sampling variances (k,), same units squared; patients with a non-finite estimate or
        variance, or a variance <= 0, are left out.
    alpha
        1 - confidence level.

    Returns
    -------
    dict
        ``estimate`` (pooled difference), ``low``, ``high`` (its 1 - alpha interval), ``se``,
        ``statistic`` (t, or z for one patient), ``df`` (k - 1; NaN for z), ``pvalue`` (two-sided),
        ``tau2`` (between-patient variance), ``k`` (patients used) and ``test``
        (:data:`CORRECTED_TESTS`); all NaN (``k = 0``, ``test`` empty) without any usable patient.
    """
    y, v = np.asarray(estimates, dtype=float), np.asarray(variances, dtype=float)
    ok = np.isfinite(y) & np.isfinite(v) & (v > 0)
    y, v, k = y[ok], v[ok], int(ok.sum())
    out = dict.fromkeys(("estimate", "low", "high", "se", "statistic", "df", "pvalue", "tau2"), np.nan)
    if k == 0:
        return {**out, "k": 0, "test": ""}
    if k == 1:
        se = float(np.sqrt(v[0]))
        z = stats.norm.ppf(1 - alpha / 2)
        return {
            **out,
            "estimate": float(y[0]),
            "low": float(y[0] - z * se),
            "high": float(y[0] + z * se),
            "se": se,
            "statistic": float(y[0] / se),
            "pvalue": float(2 * stats.norm.sf(abs(y[0]) / se)),
            "tau2": np.nan,
            "k": 1,
            "test": CORRECTED_TESTS["one"],
        }
    w = 1.0 / v
    mu_fixed = np.sum(w * y) / np.sum(w)
    q = float(np.sum(w * (y - mu_fixed) ** 2))
    tau2 = max(0.0, (q - (k - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    w = 1.0 / (v + tau2)
    mu = float(np.sum(w * y) / np.sum(w))
    var_hk = float(np.sum(w * (y - mu) ** 2) / ((k - 1) * np.sum(w)))
    se = float(np.sqrt(max(var_hk, 1.0 / np.sum(w))))
    t = stats.t.ppf(1 - alpha / 2, k - 1)
    return {
        "estimate": mu,
        "low": mu - t * se,
        "high": mu + t * se,
        "se": se,
        "statistic": mu / se,
        "df": float(k - 1),
        "pvalue": float(2 * stats.t.sf(abs(mu) / se, k - 1)),
        "tau2": float(tau2),
        "k": k,
        "test": CORRECTED_TESTS["meta"],
    }


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
        ``corrected_difference`` = corrected(level) - corrected(reference) with its z interval,
        ``corrected_se`` and ``corrected_pvalue`` from the ``corrected_se`` of both rows), then one
        pooled row (``scope="across patients"``): the headline test, of the error-corrected
        fractions, is ``corrected_difference`` with ``corrected_difference_low``/``_high``,
        ``corrected_se``, ``corrected_pvalue``, ``corrected_statistic``, ``corrected_df``,
        ``corrected_tau2``, ``corrected_n_strata`` (patients whose both levels could be
        corrected) and ``corrected_test`` from :func:`random_effects_test`; ``significant``
        (bool, every row) is True when that test's interval excludes 0 at ``alpha``. Descriptive,
        of the *called* cells (biased where the levels are called with different sensitivity):
        Mantel-Haenszel ``odds_ratio`` with its interval, CMH ``pvalue`` (with continuity
        correction), ``risk_ratio`` (MH pooled), Breslow-Day ``heterogeneity_pvalue``,
        ``difference`` = mean per-patient difference of called fractions with a t interval over
        patients; ``n_strata`` patients with both levels. Fractions are 0-1.
    """
    from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2
    from statsmodels.stats.proportion import confint_proportions_2indep

    where = "stratified_contrast"
    for col in (strata, factor, "n_cells", "n_called"):
        if col not in table.columns:
            raise InputError(f"the fraction table has no column {col!r}.", where=where)
    label = name or f"{factor}: {level} vs {reference}" + "".join(f" | {k}={v}" for k, v in (fixed or {}).items())
    sub = _select(table, fixed, where)
    sub = sub[sub[factor].astype(str).isin([str(level), str(reference)])]
    has_corr = "corrected" in sub.columns
    agg = {"n_cells": ("n_cells", "sum"), "n_called": ("n_called", "sum")}
    # Several rows of one patient and level: cell-weighted mean of the corrected fractions that exist
    ok = sub["corrected"].notna() if has_corr else pd.Series(False, index=sub.index)
    n_ok = sub["n_cells"].where(ok, 0)
    se = sub["corrected_se"] if "corrected_se" in sub.columns else pd.Series(np.nan, index=sub.index)
    grouped = sub.assign(_w=(sub["corrected"] * n_ok) if has_corr else 0.0, _n=n_ok, _v=(n_ok * se) ** 2)
    grouped = grouped.groupby([strata, factor], sort=False).agg(
        **agg, _w=("_w", "sum"), _n=("_n", "sum"), _v=("_v", lambda x: x.sum(min_count=1))
    )
    z = stats.norm.ppf(1 - alpha / 2)
    rows, tables, diffs, cdiffs, cvars = [], [], [], [], []
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
        ca = a["_w"] / a["_n"] if a["_n"] > 0 else np.nan
        cb = b["_w"] / b["_n"] if b["_n"] > 0 else np.nan
        c_se = np.sqrt(a["_v"] / a["_n"] ** 2 + b["_v"] / b["_n"] ** 2) if a["_n"] > 0 and b["_n"] > 0 else np.nan
        diffs.append(fa - fb)
        cdiffs.append(ca - cb)
        cvars.append(c_se**2)
        c_p = float(2 * stats.norm.sf(abs(ca - cb) / c_se)) if np.isfinite(c_se) and c_se > 0 else np.nan
        rows.append(
            {
                "contrast": label,
                "scope": "patient",
                strata: stratum,
                "n_cells_level": na,
                "n_called_level": ka,
                "n_cells_reference": nb,
                "n_called_reference": kb,
                "fraction_level": fa,
                "fraction_reference": fb,
                "difference": fa - fb,
                "difference_low": d_lo,
                "difference_high": d_hi,
                "corrected_level": ca,
                "corrected_reference": cb,
                "corrected_difference": ca - cb,
                "corrected_difference_low": ca - cb - z * c_se,
                "corrected_difference_high": ca - cb + z * c_se,
                "corrected_se": c_se,
                "corrected_pvalue": c_p,
                "corrected_test": CORRECTED_TESTS["one"] if np.isfinite(c_p) else "",
                "significant": bool(c_p < alpha),
                "odds_ratio": or_table.oddsratio,
                "odds_ratio_low": or_lo,
                "odds_ratio_high": or_hi,
                "pvalue": stats.fisher_exact(t)[1],
                "test": "Fisher exact (per patient; called cells, descriptive)",
            }
        )
    pooled = {
        "contrast": label,
        "scope": "across patients",
        strata: "all",
        "n_strata": len(tables),
        "n_cells_level": sum(int(t[0].sum()) for t in tables),
        "n_called_level": sum(int(t[0, 0]) for t in tables),
        "n_cells_reference": sum(int(t[1].sum()) for t in tables),
        "n_called_reference": sum(int(t[1, 0]) for t in tables),
        "test": CMH_TEST,
    }
    informative = [t for t in tables if t[:, 0].sum() > 0 and t[:, 1].sum() > 0]
    if informative:
        st = StratifiedTable(informative)
        lo, hi = st.oddsratio_pooled_confint(alpha=alpha)
        null = st.test_null_odds(correction=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # Breslow-Day on strata with an empty cell
            het = st.test_equal_odds() if len(informative) > 1 else None
        # statsmodels returns 1 - cdf, which is 0 for any statistic above ~75; the survival function keeps it
        pooled.update(
            odds_ratio=st.oddsratio_pooled,
            odds_ratio_low=lo,
            odds_ratio_high=hi,
            risk_ratio=st.riskratio_pooled,
            pvalue=float(stats.chi2.sf(null.statistic, 1)),
            statistic=float(null.statistic),
            heterogeneity_pvalue=float(het.pvalue) if het is not None else np.nan,
        )
    else:
        pooled.update(
            odds_ratio=np.nan,
            odds_ratio_low=np.nan,
            odds_ratio_high=np.nan,
            risk_ratio=np.nan,
            pvalue=np.nan,
            statistic=np.nan,
            heterogeneity_pvalue=np.nan,
        )
    v = np.asarray(diffs, dtype=float)
    pooled["difference"] = float(v.mean()) if v.size else np.nan
    if v.size >= 2:  # descriptive: the called fractions
        half = stats.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
        pooled["difference_low"], pooled["difference_high"] = pooled["difference"] - half, pooled["difference"] + half
    else:
        pooled["difference_low"] = pooled["difference_high"] = np.nan
    meta = random_effects_test(cdiffs, cvars, alpha=alpha)
    pooled.update(
        corrected_difference=meta["estimate"],
        corrected_difference_low=meta["low"],
        corrected_difference_high=meta["high"],
        corrected_se=meta["se"],
        corrected_pvalue=meta["pvalue"],
        corrected_statistic=meta["statistic"],
        corrected_df=meta["df"],
        corrected_tau2=meta["tau2"],
        corrected_n_strata=meta["k"],
        corrected_test=meta["test"],
        significant=bool(meta["low"] > 0 or meta["high"] < 0),
    )
    rows.append(pooled)
    out = pd.DataFrame(rows)
    front = [
        "contrast",
        "scope",
        strata,
        "n_strata",
        "test",
        "difference",
        "difference_low",
        "difference_high",
        "corrected_difference",
        "corrected_difference_low",
        "corrected_difference_high",
        "corrected_pvalue",
        "significant",
        "corrected_test",
        "odds_ratio",
        "odds_ratio_low",
        "odds_ratio_high",
        "risk_ratio",
        "pvalue",
        "statistic",
        "heterogeneity_pvalue",
    ]
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
    fe_prior_sd: float = 10.0,
) -> pd.DataFrame:
    """Cell-level binomial mixed model ``called ~ factor + (1 | patient)`` for one contrast.

    Fitted by :meth:`BinomialBayesMixedGLM.fit_map`: the posterior mode with a weakly informative
    normal prior on the fixed effects (sd ``fe_prior_sd`` on the log-odds scale), and the Laplace
    approximation of its covariance (the inverse Hessian). The interval and p-value are Wald's from
    that covariance. Not the mean-field variational fit (``fit_vb``): its fixed-effect sd ignores
    the correlation with the patient intercepts and came out 2-3x too small on the demo and test
    cohorts (interval far narrower than a fixed-effects GLM's, which a random effect can only widen).

    Returns
    -------
    pandas.DataFrame
        One row: ``contrast``, ``log_odds_ratio`` (level vs reference), ``sd``, ``odds_ratio``,
        ``odds_ratio_low``, ``odds_ratio_high``, ``pvalue`` (Wald), ``n_cells``, ``n_patients``,
        ``patient_sd`` (mode of the random-intercept sd), ``test``. NaN when a level is missing
        or every cell has the same call.
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
    row = {"contrast": label, "n_cells": len(sub), "n_patients": int(sub[group].nunique()), "test": MIXED_TEST}
    nan = {
        "log_odds_ratio": np.nan,
        "sd": np.nan,
        "odds_ratio": np.nan,
        "odds_ratio_low": np.nan,
        "odds_ratio_high": np.nan,
        "pvalue": np.nan,
        "patient_sd": np.nan,
    }
    if len(sub) == 0 or x.min() == x.max() or y.min() == y.max():
        return pd.DataFrame([{**row, **nan}])
    exog = np.column_stack([np.ones(len(sub)), x])
    groups = pd.get_dummies(sub[group].astype(str).to_numpy()).to_numpy(dtype=float)
    ident = np.zeros(groups.shape[1], dtype=int)
    model = BinomialBayesMixedGLM(y, exog, groups, ident, vcp_p=1.0, fe_p=fe_prior_sd)
    # BFGS from zero fixed effects and random-effect starts drawn by statsmodels: from fresh entropy
    # unless seeded (the 6th digit of the fit varied between runs)
    fit = model.fit_map(rng=0)
    est, sd = float(fit.params[1]), float(np.sqrt(fit.cov_params()[1, 1]))
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame(
        [
            {
                **row,
                "log_odds_ratio": est,
                "sd": sd,
                "odds_ratio": np.exp(est),
                "odds_ratio_low": np.exp(est - z * sd),
                "odds_ratio_high": np.exp(est + z * sd),
                "pvalue": float(2 * stats.norm.sf(abs(est) / sd)),
                "patient_sd": float(np.exp(fit.params[2])),
            }
        ]
    )


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


# ---------------------------------------------------------------------------------------------
# workflow glue: config checks, the analysed cells, fraction tables and the study's contrasts
# ---------------------------------------------------------------------------------------------
#: How a cell's population is assigned (config ``persistence.population_key``).
POPULATION_KEYS = {
    "population": "sort gate (sample sheet population)",
    "index_gate": "index gate (index-sort intensities, gates.hierarchy)",
    "state_gate": "transcriptomic state (hspc_state via gates.state_gates)",
}


def _did_you_mean(value, levels: Sequence[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``levels`` (case ignored), else empty."""
    import difflib

    lowered = {str(level).lower(): str(level) for level in levels}
    close = difflib.get_close_matches(str(value).lower(), list(lowered), n=1)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def check_config(
    config: Mapping,
    sheet: pd.DataFrame | None = None,
    *,
    gene_set_dir: str | None = None,
    cytobands: str | None = None,
    source: str = "config",
    check_files: bool = False,
    sheet_path: str = "samples",
) -> dict:
    """Cross-key checks of the persistence config blocks (``gates``, ``persistence``, ``signatures``,
    ``pseudobulk``); the schema has checked types and ranges.

    Parameters
    ----------
    config
        The validated config (defaults filled).
    sheet
        The validated sample sheet (per-sample gate thresholds and index-sort tables are checked against it).
    gene_set_dir
        Resolved ``signatures.directory`` (the configured sets must be there).
    cytobands
        Cytoband table path; ``signatures.exclude_regions`` (when set) must parse against it.
    check_files
        Also read every index-sort table of the sheet for the gate markers (real cohorts; a
        simulated cohort's tables do not exist yet).

    Returns
    -------
    dict
        ``gates``: the resolved gates block (:func:`remnant.tl.gates.resolve_gate_config`);
        ``lesion``: the lesion analysed (``persistence.lesion``, default the first configured);
        ``set_files``: ``{name: path}`` of the signature and cell-cycle sets (``gene_set_dir``
        given); ``planned``: ``[{patient, population, timepoint}]`` of the sheet's disease
        samples (empty unless ``population_key`` is ``population``: other assignments are only
        known from the cells).

    Raises
    ------
    InputError
        Naming ``source`` and the key: a gate marker that is not an index-sort column (or a table
        lacking it, naming the marker and the table), an unknown lesion, a design key
        (``persistence.stem/progenitor/before/after``) naming an undeclared timepoint or population
        (with the closest declared one), equal levels of a contrast, a missing gene set,
        ``group_low >= group_high``.

    Notes
    -----
    The design keys may be null: the cohort has no such design (no second population, no
    before/after). A key naming a declared level that the sheet lacks is not an error either: the
    contrasts that need it keep their rows with a note saying what the cohort has.
    """
    from remnant.tl.gates import _check_gates, check_gate_config, check_index_sort_markers

    populations = [str(p) for p in config["populations"]]
    gates = check_gate_config(
        config["gates"],
        index_sort_markers=config["index_sort"]["markers"],
        populations=populations,
        sheet=sheet,
        source=source,
    )
    if check_files and sheet is not None:
        check_index_sort_markers(sheet, _check_gates(gates["hierarchy"]), sheet_path=sheet_path)
    p = config["persistence"]
    names = [str(lesion["name"]) for lesion in config["lesions"]]
    lesion = p["lesion"] if p["lesion"] is not None else names[0]
    if lesion not in names:
        raise InputError(
            f"{lesion!r} is not a configured lesion (lesions: {names}).", path=source, where="persistence.lesion"
        )
    # The study's design keys are optional: null means the cohort has no such design (its contrasts
    # are then listed as not made, with the reason). A value that is not a declared level is a typo
    # or a misconfiguration: one line, with the closest declared level when there is one.
    timepoints = [str(t) for t in config["timepoints"]]
    for key in ("before", "after"):
        if p[key] is not None and str(p[key]) not in timepoints:
            raise InputError(
                f"{p[key]!r} is not a declared timepoint{_did_you_mean(p[key], timepoints)} (timepoints: "
                f"{timepoints}); set it to null if the cohort has no before/after design.",
                path=source,
                where=f"persistence.{key}",
            )
    if p["before"] is not None and str(p["before"]) == str(p["after"]):
        raise InputError(
            f"before and after are both {p['before']!r}; compare two timepoints.",
            path=source,
            where="persistence.after",
        )
    key = p["population_key"]
    levels, what = (
        (populations, "declared population (populations)")
        if key == "population"
        else (list(gates["hierarchy"]), "gate of gates.hierarchy (persistence.population_key is " + key + ")")
    )
    for name in ("stem", "progenitor"):
        if p[name] is not None and str(p[name]) not in levels:
            raise InputError(
                f"{p[name]!r} is not a {what}{_did_you_mean(p[name], levels)}: {levels}; set it to null if the "
                f"cohort has no {name} population.",
                path=source,
                where=f"persistence.{name}",
            )
    if p["stem"] is not None and str(p["stem"]) == str(p["progenitor"]):
        raise InputError(
            f"stem and progenitor are both {p['stem']!r}; name two populations.",
            path=source,
            where="persistence.progenitor",
        )
    from remnant.tl.signatures import check_signature_config

    bands = None
    if cytobands is not None and config["signatures"].get("exclude_regions"):
        from remnant.io.annotation import load_cytobands

        bands = load_cytobands(cytobands)
    check_signature_config(config["signatures"], gene_set_dir, source=source, cytobands=bands)
    set_files = {}
    if gene_set_dir is not None:
        from remnant.tl.signatures import signature_path

        sig = config["signatures"]
        for name in [*sig["sets"], sig["cell_cycle"]["s"], sig["cell_cycle"]["g2m"]]:
            set_files[str(name)] = str(signature_path(name, gene_set_dir))
    planned = []
    if sheet is not None and key == "population":
        reference = [str(c) for c in config["conditions"]["reference"]]
        disease = sheet[~sheet["condition"].astype(str).isin(reference)]
        planned = (
            disease[["patient", "population", "timepoint"]].astype(str).drop_duplicates().to_dict(orient="records")
        )
    return {"gates": gates, "lesion": lesion, "set_files": set_files, "planned": planned}


def read_calls(path: str, lesion: str | None = "del5q") -> tuple[pd.DataFrame, dict | None]:
    """The per-cell table and one lesion's ``uns["lesions"][lesion]`` of a cohort h5ad, without
    reading its matrices (``X`` and the count layer stay on disk). ``lesion=None``: the table only.

    Raises
    ------
    InputError
        The file has no calls for ``lesion`` (names the lesions it has).
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        obs = read_elem(f["obs"])
        if lesion is None:
            return obs, None
        lesions = f["uns"]["lesions"] if "uns" in f and "lesions" in f["uns"] else None
        if lesions is None or lesion not in lesions:
            have = sorted(lesions) if lesions is not None else []
            raise InputError(
                f"no calls for lesion {lesion!r} (it has {have}); rerun call_lesions with it configured.", path=path
            )
        info = read_elem(lesions[lesion])
    return obs, info


def read_analysed_cells(
    path: str, *, reference_conditions: Sequence[str], population_key: str = "population", gates_path: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict, str]:
    """A cohort file's cell table and its analysed cells, without reading its counts.

    The cohort is never read whole (issue 8): the steps that go on to its counts (signature scores,
    pseudobulks) read them block by block, in the file's order, which :func:`prepare_cells` keeps.

    Returns
    -------
    (obs, cells, summary, counts_key)
        The file's obs; :func:`prepare_cells` on it (with the gates table at ``gates_path``, rule
        gate_cells' ``gates.tsv.gz``, when given); where the raw counts are
        (:func:`remnant.io.store.counts_key`: ``layers/counts`` or ``X``).
    """
    from remnant.io import store

    obs = store.read_obs(path)
    if not obs.index.is_unique:
        raise InputError("cell names (obs index) repeat; rerun cluster_cells.", path=path)
    gates = pd.read_csv(gates_path, sep="\t", index_col="cell", low_memory=False) if gates_path else None
    cells, summary = prepare_cells(
        obs, reference_conditions=reference_conditions, population_key=population_key, gates=gates, source=path
    )
    return obs, cells, summary, store.counts_key(path)


def prepare_cells(
    obs: pd.DataFrame,
    *,
    reference_conditions: Sequence[str],
    population_key: str = "population",
    gates: pd.DataFrame | None = None,
    source: str = "cohort",
) -> tuple[pd.DataFrame, dict]:
    """The cells the persistence analysis is about, each with the population it is counted in.

    Left out: every cell of a donor whose ``condition`` is a reference condition (healthy donors),
    and, with ``population_key`` other than ``population``, cells that assignment does not place
    (no index-sort data, or a state no gate maps). Patients' cells that served as copy-number
    reference (a ``cnv.reference`` selection or ``auto``) stay: they carry cross-fitted calls, and
    leaving out cells chosen as normal would inflate the carrier fraction.

    Parameters
    ----------
    obs
        The cohort's per-cell table after call_lesions (``sample, patient, timepoint, population,
        condition, cnv_reference``).
    population_key
        ``population`` (sort gate), ``index_gate`` or ``state_gate`` (columns of ``gates``, the
        per-cell table of :func:`remnant.tl.gates.run_gates`, indexed by cell).

    Returns
    -------
    (cells, summary)
        ``cells``: the kept rows of ``obs`` with ``sort_gate`` (the sheet's population) and
        ``population`` (the assigned one), both str; ``summary``: cell counts per reason.

    Raises
    ------
    InputError
        A missing column, a gate table that does not cover the cohort, or no cell left.
    """
    for col in ("sample", "patient", "timepoint", "population", "condition", "cnv_reference"):
        if col not in obs.columns:
            raise InputError(f"the cohort has no cell column {col!r}; rerun call_lesions.", path=source)
    if population_key not in POPULATION_KEYS:
        raise InputError(
            f"population_key {population_key!r} must be one of {list(POPULATION_KEYS)}.",
            where="persistence.population_key",
        )
    reference = obs["cnv_reference"].astype(bool).to_numpy()
    healthy = obs["condition"].astype(str).isin([str(c) for c in reference_conditions]).to_numpy()
    cells = obs.copy()
    cells["sort_gate"] = obs["population"].astype(str)
    if population_key == "population":
        assigned = cells["sort_gate"]
    else:
        if gates is None or population_key not in gates.columns:
            raise InputError(
                f"population_key {population_key!r} needs the per-cell gate table (rule gate_cells).", path=source
            )
        missing = ~obs.index.isin(gates.index)
        if missing.any():
            raise InputError(
                f"the gate table lacks {int(missing.sum())} cell(s) of the cohort (e.g. {obs.index[missing][0]!r}); "
                "rerun gate_cells.",
                path=source,
            )
        assigned = gates.loc[obs.index, population_key].astype(object)
    unplaced = assigned.isna().to_numpy()
    keep = ~healthy & ~unplaced
    cells["population"] = assigned.astype(object).to_numpy()
    summary = {
        "cells": len(obs),
        "reference_condition_cells": int(healthy.sum()),
        f"not_placed_by_{population_key}": int((unplaced & ~healthy).sum()),
        "patient_reference_cells_kept": int((reference & keep).sum()),
        "analysed": int(keep.sum()),
    }
    if not keep.any():
        raise InputError(
            f"no cell to analyse: every cell is of a reference condition {list(reference_conditions)} or not placed "
            f"by {population_key} ({summary}).",
            path=source,
        )
    out = cells.loc[keep].copy()
    for col in ("population", "timepoint"):
        out[col] = out[col].astype(str)
    return out, summary


def _ordered(table: pd.DataFrame, columns: Mapping[str, Sequence[str] | None]) -> pd.DataFrame:
    """Rows sorted by the given columns, each in its given level order (others after, alphabetically)."""
    keys = []
    for col, order in columns.items():
        values = table[col].astype(str)
        levels = [str(v) for v in (order or [])]
        rank = {v: i for i, v in enumerate(levels + sorted(set(values) - set(levels)))}
        keys.append(values.map(rank))
    if not keys:
        return table
    idx = (
        pd.DataFrame({f"_k{i}": k for i, k in enumerate(keys)})
        .sort_values([f"_k{i}" for i in range(len(keys))], kind="stable")
        .index
    )
    return table.loc[idx].reset_index(drop=True)


def run_fractions(
    cells: pd.DataFrame,
    per_sample: pd.DataFrame,
    *,
    lesion: str = "del5q",
    n_reference: int | None = None,
    alpha: float = 0.05,
    min_youden: float = 0.1,
    planned: Sequence[Mapping[str, str]] | None = None,
    populations: Sequence[str] | None = None,
    timepoints: Sequence[str] | None = None,
    assigned_by: str = POPULATION_KEYS["population"],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`del_fraction_table` per patient x population x timepoint and pooled over patients, with notes.

    Parameters
    ----------
    cells
        :func:`prepare_cells` output.
    per_sample, n_reference
        The copy-number step's per-sample error rates (``fpr``, ``fnr``) and reference size.
    planned
        ``[{patient, population, timepoint}]`` the sample sheet promises; a combination with no
        analysed cell gets a row with ``n_cells = 0`` and a note, so nothing silently disappears.
    populations, timepoints
        Row order.
    assigned_by
        How ``population`` was assigned (a column of both tables).

    Returns
    -------
    (per_patient, pooled)
        Columns of :func:`del_fraction_table` after ``lesion`` and ``assigned_by``, then ``note``
        (why a value is missing). ``pooled`` sums cells over patients: descriptive only (the
        contrasts treat the patient as the unit).
    """
    out = []
    for by in (["patient", "population", "timepoint"], ["population", "timepoint"]):
        table = (
            del_fraction_table(
                cells, per_sample, lesion=lesion, by=by, n_reference=n_reference, alpha=alpha, min_youden=min_youden
            )
            if len(cells)
            else pd.DataFrame(columns=[*by, "n_cells"])
        )
        notes = []
        for _, row in table.iterrows():
            if pd.isna(row.get("corrected")) and pd.notna(row.get("youden")):
                notes.append(
                    f"not corrected: 1 - fpr - fnr = {row['youden']:.3f} < min_youden {min_youden} (the calls carry too "
                    "little information); the called fraction stands uncorrected"
                )
            else:
                notes.append("")
        table["note"] = notes
        if by[0] == "patient" and planned:
            have = set(map(tuple, table[by].astype(str).to_numpy())) if len(table) else set()
            extra = []
            for combo in planned:
                key = tuple(str(combo[k]) for k in by)
                if key not in have:
                    have.add(key)
                    extra.append(
                        {
                            **dict(zip(by, key)),
                            "n_samples": 0,
                            "n_cells": 0,
                            "n_called": 0,
                            "note": "no analysed cell: the sample sheet lists this sample but none of its cells is "
                            "in the cohort",
                        }
                    )
            if extra:
                table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
        table.insert(0, "assigned_by", assigned_by)
        table.insert(0, "lesion", lesion)
        order = {"population": populations, "timepoint": timepoints}
        table = _ordered(table, {c: order.get(c) for c in by})
        if "n_samples" in table:
            table[["n_samples", "n_cells", "n_called"]] = table[["n_samples", "n_cells", "n_called"]].astype(int)
        out.append(table)
    return out[0], out[1]


#: Statistic columns of the contrast table (:func:`stratified_contrast` and the mixed model).
CONTRAST_STATISTICS = (
    "difference",
    "difference_low",
    "difference_high",
    "corrected_difference",
    "corrected_difference_low",
    "corrected_difference_high",
    "corrected_pvalue",
    "significant",
    "corrected_test",
    "corrected_se",
    "corrected_statistic",
    "corrected_df",
    "corrected_tau2",
    "corrected_n_strata",
    "odds_ratio",
    "odds_ratio_low",
    "odds_ratio_high",
    "risk_ratio",
    "pvalue",
    "statistic",
    "heterogeneity_pvalue",
    "n_cells_level",
    "n_called_level",
    "n_cells_reference",
    "n_called_reference",
    "fraction_level",
    "fraction_reference",
    "corrected_level",
    "corrected_reference",
    "log_odds_ratio",
    "log_odds_ratio_sd",
    "patient_sd",
    "n_cells",
)


def _levels_text(values, what: str) -> str:
    """``"one population (HSC)"``, ``"2 timepoints (diagnosis, remission)"``, ``"no population"``."""
    values = [str(v) for v in values]
    if not values:
        return f"no {what}"
    return f"{'one' if len(values) == 1 else len(values)} {what}{'' if len(values) == 1 else 's'} ({', '.join(values)})"


def not_this_design(keys: Sequence[str], design: str) -> str:
    """The note of a contrast the config does not ask for: which design keys are null."""
    named = [f"persistence.{k}" for k in keys]
    named = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return f"{named} {'is' if len(keys) == 1 else 'are'} null (not a {design} design)"


def _contrast_note(
    contrast: pd.DataFrame, table: pd.DataFrame, factor: str, level: str, reference: str, fixed: Mapping[str, str]
) -> str:
    """The pooled row's note: what the tests could not use, and why ("" when nothing is missing)."""
    pooled = contrast[contrast["scope"] == "across patients"].iloc[0]
    n, k = int(pooled["n_strata"]), int(pooled["corrected_n_strata"])
    if n == 0:
        return f"no patient has cells of both {level} and {reference}"
    notes = []
    if pd.isna(pooled["pvalue"]):
        notes.append("no informative patient for the odds ratio (every cell called, or none, in both levels)")
    if k < n:
        sub = _select(table, fixed, "run_contrasts")
        missing = []
        for r in contrast[(contrast["scope"] == "patient") & contrast["corrected_difference"].isna()].itertuples():
            rows = sub[
                (sub["patient"].astype(str) == str(r.patient))
                & sub[factor].astype(str).isin([level, reference])
                & sub["corrected"].isna()
            ]
            levels = ", ".join(pd.unique(rows[factor].astype(str)))
            missing.append(f"{r.patient} ({levels})" if levels else str(r.patient))
        why = "1 - fpr - fnr below persistence.min_youden, or no error rates"
        notes.append(
            f"no corrected test: no patient's calls could be corrected at both levels ({why})"
            if k == 0
            else f"corrected test on {k} of {n} patients: not corrected in {', '.join(missing)} ({why})"
        )
    if k == 1:
        notes.append("one patient: the corrected test is that patient's z test")
    elif k == 2:
        notes.append(
            "two patients: the corrected test's t has 1 degree of freedom (only a large, consistent difference is "
            "significant); see each patient's corrected test"
        )
    return "; ".join(notes)


def run_contrasts(
    table: pd.DataFrame,
    cells: pd.DataFrame,
    *,
    stem: str | None = "HSC",
    progenitor: str | None = "PROG",
    before: str | None = "diagnosis",
    after: str | None = "remission",
    lesion: str = "del5q",
    alpha: float = 0.05,
    mixed_model: bool = True,
    timepoints: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The study's contrasts, each across patients by the corrected test (the headline), and by CMH
    and a binomial mixed model of the called cells (descriptive).

    Planned: ``stem`` vs ``progenitor`` at ``after`` and at ``before``; ``after`` vs ``before``
    within ``stem``, ``progenitor`` and every other population with cells. A contrast the data
    cannot support (a timepoint or population without cells, no patient with both levels) still
    gets its row, with NaN statistics and a ``note`` saying why and what the cohort has (e.g.
    ``"no analysed PROG cells at remission; the cohort has one population (HSC) there"``).

    The design keys may be ``None`` (config null: the cohort has no such design). Without
    ``stem`` or ``progenitor`` there is no stem vs progenitor contrast, and without ``before`` or
    ``after`` no after vs before contrast: each keeps one row whose note names the null keys.
    With ``stem`` and ``progenitor`` but neither timepoint, stem vs progenitor is compared at
    every timepoint with cells (in ``timepoints`` order).

    Parameters
    ----------
    table
        Per-patient :func:`run_fractions` table.
    cells
        :func:`prepare_cells` output (the mixed model is fitted on cells).
    timepoints
        Declared timepoint order (for the stem vs progenitor contrasts without a before/after design).

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`stratified_contrast` (``scope`` patient and across patients; the
        pooled row carries the corrected test: ``corrected_difference`` with ``_low``/``_high``,
        ``corrected_pvalue``, ``corrected_test``, ``significant``) and, per contrast, one
        ``binomial mixed model`` row (``odds_ratio`` with interval and Wald ``pvalue``,
        ``log_odds_ratio``, ``log_odds_ratio_sd``, ``patient_sd``; ``significant`` empty), each
        with ``question`` and ``note``. The pooled row's ``note`` names the patients left out of
        the corrected test (a group whose calls could not be corrected) and says when one or two
        patients carry it.
    """
    have = table[table["n_cells"] > 0] if "n_cells" in table else table
    cohort_pops = list(pd.unique(have["population"].astype(str)))
    cohort_tps = [str(t) for t in (timepoints or [])]
    cohort_tps = [t for t in cohort_tps if t in set(have["timepoint"].astype(str))] + [
        t for t in pd.unique(have["timepoint"].astype(str)) if t not in cohort_tps
    ]
    # (factor, level, reference, fixed, question, why not by design) in the order of the study
    planned = []
    if stem is None or progenitor is None:
        null = [k for k, v in (("stem", stem), ("progenitor", progenitor)) if v is None]
        planned.append(
            (
                "population",
                "stem",
                "progenitor",
                {},
                "stem vs progenitor",
                f"{not_this_design(null, 'stem vs progenitor')}; it has {_levels_text(cohort_pops, 'population')}",
            )
        )
    else:
        at = [t for t in (after, before) if t is not None] or cohort_tps
        planned += [
            (
                "population",
                stem,
                progenitor,
                {"timepoint": tp},
                f"{stem} vs {progenitor} at {tp}" + (" (persistence)" if tp == after else ""),
                "",
            )
            for tp in at
        ]
    if before is None or after is None:
        null = [k for k, v in (("before", before), ("after", after)) if v is None]
        planned.append(
            (
                "timepoint",
                "after",
                "before",
                {},
                "after vs before treatment",
                f"{not_this_design(null, 'before/after')}; it has {_levels_text(cohort_tps, 'timepoint')}",
            )
        )
    else:
        populations = [p for p in (stem, progenitor) if p is not None]
        populations += [p for p in cohort_pops if p not in populations]
        planned += [
            ("timepoint", after, before, {"population": pop}, f"{after} vs {before} in {pop}", "")
            for pop in populations
        ]
    parts = []
    for factor, level, reference, fixed, question, why in planned:
        label = f"{factor}: {level} vs {reference}" + "".join(f" | {k}={v}" for k, v in fixed.items())
        if not why:  # in the design: can the cohort support it?
            ((fcol, fval),) = fixed.items()
            sub = have[have[fcol].astype(str) == str(fval)]
            if not len(sub) and fcol == "timepoint":
                why = f"no analysed cells at {fval}; the cohort has {_levels_text(cohort_tps, 'timepoint')}"
            elif not len(sub):
                why = f"no analysed {fval} cells; the cohort has {_levels_text(cohort_pops, 'population')}"
            else:
                present = [str(v) for v in pd.unique(sub[factor].astype(str))]
                if factor == "timepoint":  # keep the declared order
                    present = [t for t in cohort_tps if t in present]
                for lev in (level, reference):
                    if not why and str(lev) not in present:
                        if factor == "population":
                            why = f"no analysed {lev} cells at {fval}; the cohort has {_levels_text(present, 'population')} there"
                        else:
                            why = f"no analysed {fval} cells at {lev}; {fval} cells are at {_levels_text(present, 'timepoint')}"
        if why:
            parts.append(
                pd.DataFrame(
                    [
                        {
                            "contrast": label,
                            "question": question,
                            "scope": "across patients",
                            "patient": "all",
                            "n_strata": 0,
                            "test": CMH_TEST,
                            "significant": False,
                            "note": why,
                        }
                    ]
                )
            )
            continue
        c = stratified_contrast(
            have, factor=factor, level=str(level), reference=str(reference), fixed=fixed, alpha=alpha
        )
        c["note"] = ""
        pooled = c["scope"] == "across patients"
        c.loc[pooled, "note"] = _contrast_note(c, have, factor, str(level), str(reference), fixed)
        parts.append(c.assign(question=question))
        if mixed_model:
            m = binomial_mixed_contrast(
                cells,
                factor=factor,
                level=str(level),
                reference=str(reference),
                fixed=fixed,
                lesion=lesion,
                alpha=alpha,
            ).iloc[0]
            note = ""
            if pd.isna(m["odds_ratio"]):
                note = "every cell has the same call, or a level has no cells: no model"
            elif m["n_patients"] < 2:
                note = "one patient: the random effect is not identified"
            parts.append(
                pd.DataFrame(
                    [
                        {
                            "contrast": label,
                            "question": question,
                            "scope": "across patients",
                            "patient": "all",
                            "n_strata": int(m["n_patients"]),
                            "test": m["test"],
                            "odds_ratio": m["odds_ratio"],
                            "odds_ratio_low": m["odds_ratio_low"],
                            "odds_ratio_high": m["odds_ratio_high"],
                            "pvalue": m["pvalue"],
                            "log_odds_ratio": m["log_odds_ratio"],
                            "log_odds_ratio_sd": m["sd"],
                            "patient_sd": m["patient_sd"],
                            "n_cells": int(m["n_cells"]),
                            "note": note,
                        }
                    ]
                )
            )
    out = pd.concat(parts, ignore_index=True)
    front = ["contrast", "question", "scope", "patient", "n_strata", "test"]
    for col in CONTRAST_STATISTICS:  # the same columns whether or not any contrast was made
        if col not in out.columns:
            out[col] = np.nan
    out = out[front + [c for c in out.columns if c not in front and c != "note"] + ["note"]]
    out["note"] = out["note"].fillna("")
    return out
