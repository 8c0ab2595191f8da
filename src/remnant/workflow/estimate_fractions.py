"""Step estimate_fractions: the carrier fraction per patient x population x timepoint and the study's contrasts.

:func:`write_fractions` is the step (scripts/estimate_fractions.py hands it the rule's paths and
params): the analysed cells (:mod:`remnant.workflow.analysed_cells`), :func:`run_fractions`
(:func:`remnant.tl.fractions.del_fraction_table` with notes and the sheet's planned rows),
:func:`run_contrasts` (the contrasts the config's design asks for, each with a row and a note even
where the cohort cannot support it) and the figure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from remnant.stats.contrasts import CMH_TEST, binomial_mixed_contrast, select_rows, stratified_contrast
from remnant.tl.fractions import del_fraction_table
from remnant.workflow.analysed_cells import POPULATION_KEYS, prepare_cells, read_calls
from remnant.workflow.design import levels_text, not_this_design, ordered_rows

log = logging.getLogger(__name__)

__all__ = ["CONTRAST_STATISTICS", "run_contrasts", "run_fractions", "write_fractions"]

#: Statistic columns of the contrast table (:func:`remnant.stats.contrasts.stratified_contrast` and the mixed model).
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
#: Why a group has no corrected fraction (the pooled contrast row's note names it).
NOT_CORRECTED = "1 - fpr - fnr below persistence.min_youden, or no error rates"


def write_fractions(
    h5ad: str,
    *,
    gates: str | None,
    persistence: Mapping,
    lesion: str,
    reference_conditions: Sequence[str],
    planned: Sequence[Mapping[str, str]],
    populations: Sequence[str],
    timepoints: Sequence[str],
    fractions: str,
    pooled: str,
    contrasts: str,
    figure: str,
) -> None:
    """The step: read the cohort's calls, write the fraction tables, the contrasts and the figure.

    Parameters
    ----------
    h5ad
        The cohort file after call_lesions (only its cell table and ``uns["lesions"]`` are read).
    gates
        rule gate_cells' per-cell table (``population_key`` other than ``population``), or None.
    persistence
        The config's ``persistence`` block.
    lesion, reference_conditions, planned, populations, timepoints
        The lesion analysed, the healthy donors' conditions, the sheet's planned
        ``{patient, population, timepoint}`` and the display orders.
    fractions, pooled, contrasts, figure
        Output paths: per-patient and pooled fraction tables, contrast table (TSV), figure (PNG).
    """
    from remnant.pl.persistence import plot_del_fraction

    p = persistence
    obs, info = read_calls(h5ad, lesion)
    gate_table = pd.read_csv(gates, sep="\t", index_col="cell", low_memory=False) if gates else None
    cells, summary = prepare_cells(
        obs,
        reference_conditions=reference_conditions,
        population_key=p["population_key"],
        gates=gate_table,
        source=h5ad,
    )
    log.info("cells: %s", summary)
    table, pooled_table = run_fractions(
        cells,
        info["per_sample"],
        lesion=lesion,
        n_reference=info.get("params", {}).get("n_reference"),
        alpha=p["alpha"],
        min_youden=p["min_youden"],
        planned=planned,
        populations=populations,
        timepoints=timepoints,
        assigned_by=POPULATION_KEYS[p["population_key"]],
    )
    _log_pooled(pooled_table)
    contrast_table = run_contrasts(
        table,
        cells,
        stem=p["stem"],
        progenitor=p["progenitor"],
        before=p["before"],
        after=p["after"],
        lesion=lesion,
        alpha=p["alpha"],
        timepoints=timepoints,
    )
    _log_contrasts(contrast_table)
    table.to_csv(fractions, sep="\t", index=False, float_format="%.6g")
    pooled_table.assign(scope="cells pooled over patients (descriptive)").to_csv(
        pooled, sep="\t", index=False, float_format="%.6g"
    )
    contrast_table.to_csv(contrasts, sep="\t", index=False, float_format="%.6g")
    plot_del_fraction(
        table[table["n_cells"] > 0], figure, timepoints=timepoints, populations=populations, lesion_label=lesion
    )


def _log_pooled(pooled: pd.DataFrame) -> None:
    for _, r in pooled.iterrows():
        log.info(
            "%s %s (pooled over patients): %d/%d called (%.3f), corrected %.3f [%.3f, %.3f]",
            r["population"],
            r["timepoint"],
            r["n_called"],
            r["n_cells"],
            r["fraction"],
            r["corrected"],
            r["corrected_low"],
            r["corrected_high"],
        )


def _log_contrasts(contrasts: pd.DataFrame) -> None:
    for _, r in contrasts[contrasts["scope"] == "across patients"].iterrows():
        log.info(
            "%s [%s]: OR %.3g [%.3g, %.3g], p %.3g%s",
            r["question"],
            r["test"],
            r.get("odds_ratio", float("nan")),
            r.get("odds_ratio_low", float("nan")),
            r.get("odds_ratio_high", float("nan")),
            r.get("pvalue", float("nan")),
            f" ({r['note']})" if r["note"] else "",
        )


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
    """:func:`remnant.tl.fractions.del_fraction_table` per patient x population x timepoint and pooled
    over patients, with notes.

    Parameters
    ----------
    cells
        :func:`remnant.workflow.analysed_cells.prepare_cells` output.
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
        Columns of :func:`remnant.tl.fractions.del_fraction_table` after ``lesion`` and
        ``assigned_by``, then ``note`` (why a value is missing). ``pooled`` sums cells over
        patients: descriptive only (the contrasts treat the patient as the unit).
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
        table["note"] = _fraction_notes(table, min_youden)
        if by[0] == "patient" and planned:
            table = _with_planned(table, by, planned)
        table.insert(0, "assigned_by", assigned_by)
        table.insert(0, "lesion", lesion)
        order = {"population": populations, "timepoint": timepoints}
        table = ordered_rows(table, {c: order.get(c) for c in by})
        if "n_samples" in table:
            table[["n_samples", "n_cells", "n_called"]] = table[["n_samples", "n_cells", "n_called"]].astype(int)
        out.append(table)
    return out[0], out[1]


def _fraction_notes(table: pd.DataFrame, min_youden: float) -> list[str]:
    """Per row: why the corrected fraction is missing although there are error rates ("" otherwise)."""
    notes = []
    for _, row in table.iterrows():
        if pd.isna(row.get("corrected")) and pd.notna(row.get("youden")):
            notes.append(
                f"not corrected: 1 - fpr - fnr = {row['youden']:.3f} < min_youden {min_youden} (the calls carry too "
                "little information); the called fraction stands uncorrected"
            )
        else:
            notes.append("")
    return notes


def _with_planned(table: pd.DataFrame, by: list[str], planned: Sequence[Mapping[str, str]]) -> pd.DataFrame:
    """``table`` with a row (no cells, a note) for every planned combination it lacks."""
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
                    "note": "no analysed cell: the sample sheet lists this sample but none of its cells is in the cohort",
                }
            )
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True) if extra else table


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
        :func:`remnant.workflow.analysed_cells.prepare_cells` output (the mixed model is fitted on cells).
    timepoints
        Declared timepoint order (for the stem vs progenitor contrasts without a before/after design).

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`remnant.stats.contrasts.stratified_contrast` (``scope`` patient and
        across patients; the pooled row carries the corrected test: ``corrected_difference`` with
        ``_low``/``_high``, ``corrected_pvalue``, ``corrected_test``, ``significant``) and, per
        contrast, one ``binomial mixed model`` row (``odds_ratio`` with interval and Wald
        ``pvalue``, ``log_odds_ratio``, ``log_odds_ratio_sd``, ``patient_sd``; ``significant``
        empty), each with ``question`` and ``note``. The pooled row's ``note`` names the patients
        left out of the corrected test (a group whose calls could not be corrected) and says when
        one or two patients carry it.
    """
    have = table[table["n_cells"] > 0] if "n_cells" in table else table
    cohort_pops = list(pd.unique(have["population"].astype(str)))
    cohort_tps = [str(t) for t in (timepoints or [])]
    cohort_tps = [t for t in cohort_tps if t in set(have["timepoint"].astype(str))] + [
        t for t in pd.unique(have["timepoint"].astype(str)) if t not in cohort_tps
    ]
    planned = _planned_contrasts(
        stem=stem, progenitor=progenitor, before=before, after=after, populations=cohort_pops, timepoints=cohort_tps
    )
    parts = []
    for factor, level, reference, fixed, question, why in planned:
        label = f"{factor}: {level} vs {reference}" + "".join(f" | {k}={v}" for k, v in fixed.items())
        why = why or _unsupported(have, factor, level, reference, fixed, populations=cohort_pops, timepoints=cohort_tps)
        if why:
            parts.append(_not_made(label, question, why))
            continue
        c = stratified_contrast(
            have, factor=factor, level=str(level), reference=str(reference), fixed=fixed, alpha=alpha
        )
        c["note"] = ""
        pooled = c["scope"] == "across patients"
        c.loc[pooled, "note"] = _contrast_note(c, have, factor, str(level), str(reference), fixed)
        parts.append(c.assign(question=question))
        if mixed_model:
            parts.append(_mixed_row(cells, label, question, factor, level, reference, fixed, lesion, alpha))
    out = pd.concat(parts, ignore_index=True)
    front = ["contrast", "question", "scope", "patient", "n_strata", "test"]
    for col in CONTRAST_STATISTICS:  # the same columns whether or not any contrast was made
        if col not in out.columns:
            out[col] = np.nan
    out = out[front + [c for c in out.columns if c not in front and c != "note"] + ["note"]]
    out["note"] = out["note"].fillna("")
    return out


def _planned_contrasts(
    *,
    stem: str | None,
    progenitor: str | None,
    before: str | None,
    after: str | None,
    populations: Sequence[str],
    timepoints: Sequence[str],
) -> list[tuple]:
    """(factor, level, reference, fixed, question, why not by design) in the order of the study."""
    planned = []
    if stem is None or progenitor is None:
        null = [k for k, v in (("stem", stem), ("progenitor", progenitor)) if v is None]
        why = f"{not_this_design(null, 'stem vs progenitor')}; it has {levels_text(populations, 'population')}"
        planned.append(("population", "stem", "progenitor", {}, "stem vs progenitor", why))
    else:
        at = [t for t in (after, before) if t is not None] or timepoints
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
        why = f"{not_this_design(null, 'before/after')}; it has {levels_text(timepoints, 'timepoint')}"
        planned.append(("timepoint", "after", "before", {}, "after vs before treatment", why))
    else:
        in_order = [p for p in (stem, progenitor) if p is not None]
        in_order += [p for p in populations if p not in in_order]
        planned += [
            ("timepoint", after, before, {"population": pop}, f"{after} vs {before} in {pop}", "") for pop in in_order
        ]
    return planned


def _unsupported(
    have: pd.DataFrame,
    factor: str,
    level,
    reference,
    fixed: Mapping[str, str],
    *,
    populations: Sequence[str],
    timepoints: Sequence[str],
) -> str:
    """Why the cohort cannot support a contrast of the design (no cells at the fixed level, or of a compared level); "" if it can."""
    ((fcol, fval),) = fixed.items()
    sub = have[have[fcol].astype(str) == str(fval)]
    if not len(sub) and fcol == "timepoint":
        return f"no analysed cells at {fval}; the cohort has {levels_text(timepoints, 'timepoint')}"
    if not len(sub):
        return f"no analysed {fval} cells; the cohort has {levels_text(populations, 'population')}"
    present = [str(v) for v in pd.unique(sub[factor].astype(str))]
    if factor == "timepoint":  # keep the declared order
        present = [t for t in timepoints if t in present]
    for lev in (level, reference):
        if str(lev) not in present:
            if factor == "population":
                return f"no analysed {lev} cells at {fval}; the cohort has {levels_text(present, 'population')} there"
            return f"no analysed {fval} cells at {lev}; {fval} cells are at {levels_text(present, 'timepoint')}"
    return ""


def _not_made(label: str, question: str, why: str) -> pd.DataFrame:
    """The one row of a contrast that was not made, with its reason."""
    row = {
        "contrast": label,
        "question": question,
        "scope": "across patients",
        "patient": "all",
        "n_strata": 0,
        "test": CMH_TEST,
        "significant": False,
        "note": why,
    }
    return pd.DataFrame([row])


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
        sub = select_rows(table, fixed, "run_contrasts")
        missing = []
        for r in contrast[(contrast["scope"] == "patient") & contrast["corrected_difference"].isna()].itertuples():
            rows = sub[
                (sub["patient"].astype(str) == str(r.patient))
                & sub[factor].astype(str).isin([level, reference])
                & sub["corrected"].isna()
            ]
            levels = ", ".join(pd.unique(rows[factor].astype(str)))
            missing.append(f"{r.patient} ({levels})" if levels else str(r.patient))
        notes.append(
            f"no corrected test: no patient's calls could be corrected at both levels ({NOT_CORRECTED})"
            if k == 0
            else f"corrected test on {k} of {n} patients: not corrected in {', '.join(missing)} ({NOT_CORRECTED})"
        )
    if k == 1:
        notes.append("one patient: the corrected test is that patient's z test")
    elif k == 2:
        notes.append(
            "two patients: the corrected test's t has 1 degree of freedom (only a large, consistent difference is "
            "significant); see each patient's corrected test"
        )
    return "; ".join(notes)


def _mixed_row(
    cells: pd.DataFrame, label: str, question: str, factor: str, level, reference, fixed, lesion: str, alpha: float
) -> pd.DataFrame:
    """The contrast's binomial mixed model row (:func:`remnant.stats.contrasts.binomial_mixed_contrast`), with its note."""
    m = binomial_mixed_contrast(
        cells, factor=factor, level=str(level), reference=str(reference), fixed=fixed, lesion=lesion, alpha=alpha
    ).iloc[0]
    note = ""
    if pd.isna(m["odds_ratio"]):
        note = "every cell has the same call, or a level has no cells: no model"
    elif m["n_patients"] < 2:
        note = "one patient: the random effect is not identified"
    row = {
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
    return pd.DataFrame([row])
