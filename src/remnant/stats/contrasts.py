"""Two levels of a factor compared across patients, with the patient as the unit.

Cells of one patient are not independent, so every test here either summarises each patient first
or models the patient:

- :func:`random_effects_test`: a random-effects meta-analysis of per-patient differences
  (DerSimonian-Laird, Hartung-Knapp t); the headline test of the error-corrected carrier fractions.
- :func:`stratified_contrast`: per patient and pooled, of a table of cell counts per patient and
  level: the corrected fractions by :func:`random_effects_test`, and, descriptive, the called cells
  by Cochran-Mantel-Haenszel, Newcombe intervals and Fisher's exact test.
- :func:`binomial_mixed_contrast`: ``called ~ factor + (1 | patient)`` at the cell level.
- :func:`paired_difference_tests` and :func:`linear_mixed_difference`: a per-cell score between two
  levels, by per-patient differences and by a linear mixed model on cells.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from remnant.errors import InputError

# statsmodels is imported where it is used: the workflow's config checks import the library when
# the Snakefile is parsed, which should stay quick.

__all__ = [
    "CMH_TEST",
    "CORRECTED_TESTS",
    "MIXED_TEST",
    "binomial_mixed_contrast",
    "linear_mixed_difference",
    "paired_difference_tests",
    "random_effects_test",
    "select_rows",
    "stratified_contrast",
]

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
#: Leading columns of :func:`stratified_contrast` (``strata`` follows ``scope``).
_FRONT = (
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
)


def select_rows(table: pd.DataFrame, fixed: Mapping[str, str] | None, where: str) -> pd.DataFrame:
    """Rows of ``table`` whose ``fixed`` columns equal the given values (compared as str)."""
    out = table
    for col, value in (fixed or {}).items():
        if col not in out.columns:
            raise InputError(f"the table has no column {col!r}.", where=where)
        out = out[out[col].astype(str) == str(value)]
    return out


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
        :func:`remnant.tl.fractions.del_fraction_table` output (needs ``strata``, ``factor``,
        ``n_cells``, ``n_called``; ``corrected`` and ``corrected_se`` are used when present).
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
    where = "stratified_contrast"
    for col in (strata, factor, "n_cells", "n_called"):
        if col not in table.columns:
            raise InputError(f"the fraction table has no column {col!r}.", where=where)
    label = name or f"{factor}: {level} vs {reference}" + "".join(f" | {k}={v}" for k, v in (fixed or {}).items())
    sub = select_rows(table, fixed, where)
    sub = sub[sub[factor].astype(str).isin([str(level), str(reference)])]
    grouped = _level_sums(sub, strata, factor)
    z = stats.norm.ppf(1 - alpha / 2)
    rows, tables = [], []
    for stratum in pd.unique(sub[strata]):
        try:
            a, b = grouped.loc[(stratum, str(level))], grouped.loc[(stratum, str(reference))]
        except KeyError:
            continue
        if int(a["n_cells"]) == 0 or int(b["n_cells"]) == 0:
            continue
        row, t = _patient_row(a, b, alpha=alpha, z=z)
        rows.append({"contrast": label, "scope": "patient", strata: stratum, **row})
        tables.append(t)
    patients = rows.copy()
    rows.append(
        {
            "contrast": label,
            "scope": "across patients",
            strata: "all",
            **_pooled_row(
                tables,
                [r["difference"] for r in patients],
                [r["corrected_difference"] for r in patients],
                [r["corrected_se"] ** 2 for r in patients],
                alpha=alpha,
            ),
        }
    )
    out = pd.DataFrame(rows)
    front = ["contrast", "scope", strata, "n_strata", "test", *_FRONT]
    for col in front:
        if col not in out.columns:
            out[col] = np.nan
    out["n_strata"] = out["n_strata"].fillna(1).astype(int)
    return out[front + [c for c in out.columns if c not in front]]


def _level_sums(sub: pd.DataFrame, strata: str, factor: str) -> pd.DataFrame:
    """Per stratum and level: cells and called cells summed, and the sums behind the cell-weighted
    mean corrected fraction (``_w`` / ``_n``, over the rows that have one) and its variance (``_v`` / ``_n**2``)."""
    has_corr = "corrected" in sub.columns
    agg = {"n_cells": ("n_cells", "sum"), "n_called": ("n_called", "sum")}
    # Several rows of one patient and level: cell-weighted mean of the corrected fractions that exist
    ok = sub["corrected"].notna() if has_corr else pd.Series(False, index=sub.index)
    n_ok = sub["n_cells"].where(ok, 0)
    se = sub["corrected_se"] if "corrected_se" in sub.columns else pd.Series(np.nan, index=sub.index)
    grouped = sub.assign(_w=(sub["corrected"] * n_ok) if has_corr else 0.0, _n=n_ok, _v=(n_ok * se) ** 2)
    return grouped.groupby([strata, factor], sort=False).agg(
        **agg, _w=("_w", "sum"), _n=("_n", "sum"), _v=("_v", lambda x: x.sum(min_count=1))
    )


def _patient_row(a: pd.Series, b: pd.Series, *, alpha: float, z: float) -> tuple[dict, np.ndarray]:
    """One patient's comparison of level ``a`` vs reference ``b`` (rows of :func:`_level_sums`), and its 2x2 table."""
    from statsmodels.stats.contingency_tables import Table2x2
    from statsmodels.stats.proportion import confint_proportions_2indep

    na, ka, nb, kb = int(a["n_cells"]), int(a["n_called"]), int(b["n_cells"]), int(b["n_called"])
    t = np.array([[ka, na - ka], [kb, nb - kb]], dtype=float)
    fa, fb = ka / na, kb / nb
    d_lo, d_hi = confint_proportions_2indep(ka, na, kb, nb, method="newcomb", compare="diff", alpha=alpha)
    or_table = Table2x2(t, shift_zeros=True)
    or_lo, or_hi = or_table.oddsratio_confint(alpha=alpha)
    ca = a["_w"] / a["_n"] if a["_n"] > 0 else np.nan
    cb = b["_w"] / b["_n"] if b["_n"] > 0 else np.nan
    c_se = np.sqrt(a["_v"] / a["_n"] ** 2 + b["_v"] / b["_n"] ** 2) if a["_n"] > 0 and b["_n"] > 0 else np.nan
    c_p = float(2 * stats.norm.sf(abs(ca - cb) / c_se)) if np.isfinite(c_se) and c_se > 0 else np.nan
    row = {
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
    return row, t


def _pooled_row(tables: list[np.ndarray], diffs: list, cdiffs: list, cvars: list, *, alpha: float) -> dict:
    """The across-patient row: counts, CMH on the 2x2 tables, the mean called difference, the corrected test."""
    row = {
        "n_strata": len(tables),
        "n_cells_level": sum(int(t[0].sum()) for t in tables),
        "n_called_level": sum(int(t[0, 0]) for t in tables),
        "n_cells_reference": sum(int(t[1].sum()) for t in tables),
        "n_called_reference": sum(int(t[1, 0]) for t in tables),
        "test": CMH_TEST,
        **_cmh(tables, alpha=alpha),
    }
    v = np.asarray(diffs, dtype=float)
    row["difference"] = float(v.mean()) if v.size else np.nan
    if v.size >= 2:  # descriptive: the called fractions
        half = stats.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
        row["difference_low"], row["difference_high"] = row["difference"] - half, row["difference"] + half
    else:
        row["difference_low"] = row["difference_high"] = np.nan
    meta = random_effects_test(cdiffs, cvars, alpha=alpha)
    row.update(
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
    return row


def _cmh(tables: list[np.ndarray], *, alpha: float) -> dict:
    """Mantel-Haenszel pooled odds ratio with interval, risk ratio, CMH test and Breslow-Day
    heterogeneity over the 2x2 tables with a called and an uncalled cell (NaN without any)."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    informative = [t for t in tables if t[:, 0].sum() > 0 and t[:, 1].sum() > 0]
    if not informative:
        keys = ("odds_ratio", "odds_ratio_low", "odds_ratio_high", "risk_ratio", "pvalue", "statistic")
        return dict.fromkeys((*keys, "heterogeneity_pvalue"), np.nan)
    st = StratifiedTable(informative)
    lo, hi = st.oddsratio_pooled_confint(alpha=alpha)
    null = st.test_null_odds(correction=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # Breslow-Day on strata with an empty cell
        het = st.test_equal_odds() if len(informative) > 1 else None
    # statsmodels returns 1 - cdf, which is 0 for any statistic above ~75; the survival function keeps it
    return {
        "odds_ratio": st.oddsratio_pooled,
        "odds_ratio_low": lo,
        "odds_ratio_high": hi,
        "risk_ratio": st.riskratio_pooled,
        "pvalue": float(stats.chi2.sf(null.statistic, 1)),
        "statistic": float(null.statistic),
        "heterogeneity_pvalue": float(het.pvalue) if het is not None else np.nan,
    }


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

    Parameters
    ----------
    obs
        Per-cell table with ``factor``, ``group`` and the call column (``{lesion}_call`` unless
        ``call_key`` is given, bool).

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
    sub = select_rows(obs, fixed, where)
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


def paired_difference_tests(differences, *, alpha: float = 0.05) -> dict:
    """Tests of per-patient differences (one value per patient, e.g. of median scores) against 0.

    Returns
    -------
    dict
        ``mean`` with its t interval ``low``, ``high`` and the one-sample t-test ``t_pvalue``
        (NaN with fewer than 2 patients or no spread); ``median`` and the Wilcoxon signed-rank
        ``wilcoxon_pvalue`` (NaN with fewer than 2 patients or every difference 0). Units of the input.
    """
    d = np.asarray(differences, float)
    mean = float(d.mean()) if d.size else np.nan
    if d.size >= 2:
        se = d.std(ddof=1) / np.sqrt(d.size)
        half = stats.t.ppf(1 - alpha / 2, d.size - 1) * se
        p_t = stats.ttest_1samp(d, 0.0).pvalue if se > 0 else np.nan
        p_w = stats.wilcoxon(d).pvalue if np.any(d != 0) else np.nan
    else:
        half, p_t, p_w = np.nan, np.nan, np.nan
    return {
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "t_pvalue": p_t,
        "median": float(np.median(d)) if d.size else np.nan,
        "wilcoxon_pvalue": p_w,
    }


def linear_mixed_difference(values, is_level, groups, *, alpha: float = 0.05) -> dict:
    """Fixed effect of the level in ``value ~ level + (1 | group)`` on cells (REML,
    :func:`statsmodels.formula.api.mixedlm`).

    Where the patients' variance sits at its boundary (patients no more different than their cells
    say), statsmodels' REML fit can fail on a singular matrix: with two patients of equal means
    (73 + 8 and 61 + 7 cells) it raised in 17 of 40 random draws (and stopped a plate-only
    cohort's workflow). The effect is then estimated within patients, by ordinary least squares with each
    patient's own intercept (``value ~ level + patient``), which does not depend on the patients'
    variance; ``test`` says so.

    Parameters
    ----------
    values
        Per cell (n,), e.g. a signature score.
    is_level
        Boolean (n,): the cell is of the level (else of the reference).
    groups
        Per cell (n,): the patient.

    Returns
    -------
    dict
        ``test``, ``difference`` (level minus reference, units of ``values``), ``difference_low``,
        ``difference_high`` (Wald interval at ``alpha``), ``pvalue``; NaN without cells of both
        levels or of at least two groups.
    """
    out = {
        "test": "linear mixed model score ~ group + (1 | patient) on cells",
        "difference": np.nan,
        "difference_low": np.nan,
        "difference_high": np.nan,
        "pvalue": np.nan,
    }
    groups = pd.Series(groups)
    if len(groups) == 0 or is_level.all() or not is_level.any() or groups.nunique() < 2:
        return out
    data = pd.DataFrame(
        {"y": np.asarray(values, float), "x": is_level.astype(float), "g": groups.astype(str).to_numpy()}
    )
    fit = _mixed_fit(data)
    if fit is None:
        out["test"] = (
            "linear model score ~ group + patient on cells (within patients: the mixed model's patient "
            "variance was at its boundary and its fit failed)"
        )
        fit = _within_patient_fit(data)
    lo, hi = fit.conf_int(alpha=alpha).loc["x"]
    out.update(
        difference=float(fit.params["x"]),
        difference_low=float(lo),
        difference_high=float(hi),
        pvalue=float(fit.pvalues["x"]),
    )
    return out


def _mixed_fit(data: pd.DataFrame):
    """REML fit of ``y ~ x + (1 | g)``; ``None`` when it raises or gives no finite test of ``x``."""
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on near-zero patient variance
        try:
            fit = smf.mixedlm("y ~ x", data, groups=data["g"]).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError):
            return None
    # a fit that stops at the boundary (patients' variance 0) without declaring convergence still
    # gives the pooled estimate, which is what REML gives there; only a non-finite test is refused
    return fit if np.isfinite(fit.pvalues["x"]) and np.isfinite(fit.bse["x"]) else None


def _within_patient_fit(data: pd.DataFrame):
    """Ordinary least squares ``y ~ x + C(g)``: the level's effect within patients."""
    import statsmodels.formula.api as smf

    return smf.ols("y ~ x + C(g)", data).fit()
