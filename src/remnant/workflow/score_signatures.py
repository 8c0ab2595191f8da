"""Step score_signatures: per-cell signature scores and cycling phase, their comparisons, figures.

:func:`write_signature_scores` is the step (scripts/score_signatures.py hands it the rule's paths
and params): the analysed cells scored block by block (:func:`remnant.tl.signatures.score_cohort`,
lesion genes left out of sets and controls), then :func:`run_comparisons` (carrier vs non-carrier
stem cells within each timepoint, and carrier stem cells after vs before, per score) and
:func:`run_cycling` (the cycling share the same ways), each contrast keeping a row with a note
where the config's design or the cohort cannot support it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.stats.multitest import bh_across_patients
from remnant.tl.signatures import UNCERTAIN, compare_groups, cycling_composition, cycling_contrast, select_cells
from remnant.workflow.design import levels_text, not_this_design, ordered_rows
from remnant.workflow.persistence_config import in_config

log = logging.getLogger(__name__)

__all__ = ["run_comparisons", "run_cycling", "write_signature_scores"]

#: Config keys of the scoring functions' messages (``where`` = the function).
SCORING_KEYS = {"score_signatures": "signatures.sets", "score_cell_cycle": "signatures.cell_cycle"}
#: Leading columns of :func:`run_comparisons`.
COMPARISON_COLUMNS = (
    "score",
    "variant",
    "question",
    "comparison",
    "scope",
    "patient",
    "test",
    "n_patients",
    "n_level",
    "n_reference",
    "median_level",
    "median_reference",
    "difference",
    "difference_low",
    "difference_high",
    "pvalue",
    "padj",
)


def write_signature_scores(
    h5ad: str,
    *,
    gates: str | None,
    gene_set_dir: str | Path,
    cytobands: str,
    signatures: Mapping,
    set_names: Sequence[str],
    cell_cycle: Sequence[str],
    persistence: Mapping,
    lesion: str,
    lesions: Sequence[Mapping],
    reference_conditions: Sequence[str],
    timepoints: Sequence[str],
    seed: int,
    scores: str,
    sets: str,
    comparisons: str,
    composition: str,
    cycling: str,
    scores_figure: str,
    cycling_figure: str,
    calibration: str,
    calibration_figure: str,
) -> None:
    """The step: score the analysed cells of the cohort file, compare the scores, write tables and figures.

    Parameters
    ----------
    h5ad, gates
        The cohort file (its counts are read block by block) and rule gate_cells' per-cell table
        (``population_key`` other than ``population``; else None).
    gene_set_dir, cytobands
        Directory of the gene sets and the cytoband table.
    signatures, persistence, lesions
        The config's ``signatures`` and ``persistence`` blocks and its ``lesions``.
    set_names, cell_cycle
        Gene sets scored, and the S and G2/M sets.
    lesion, reference_conditions, timepoints, seed
        The lesion analysed, the healthy donors' conditions, the timepoint order, the config's seed.
    scores, sets, comparisons, composition, cycling, calibration
        Output tables (TSV; ``scores`` gzipped): per-cell scores, set usage, comparisons, cycling
        composition and contrasts, cycling calibration.
    scores_figure, cycling_figure, calibration_figure
        Output figures (PNG).
    """
    from remnant.io import store
    from remnant.io.annotation import load_cytobands
    from remnant.tl.signatures import group_labels, read_signatures

    s, p = signatures, persistence
    # the design keys may be null (a cohort without that design): None, not "None"
    design = {k: (None if p[k] is None else str(p[k])) for k in ("stem", "before", "after")}
    timepoints = [str(t) for t in timepoints]
    cells, rows, var, counts_key = _analysed_cells(h5ad, gates, p["population_key"], reference_conditions)
    exclude = _excluded(lesions, s, load_cytobands(cytobands))
    gene_sets, cycle = read_signatures(set_names, gene_set_dir), read_signatures(cell_cycle, gene_set_dir)
    kept = s["also_with_lesion_genes"] and bool(exclude)
    scored, calibration_table = _score(
        h5ad, cells, rows, (gene_sets, cycle, cell_cycle), s, exclude=exclude, kept=kept, seed=seed, key=counts_key
    )
    _write_calibration(cells, calibration_table, calibration, calibration_figure, _batch_key(cells))
    described = _described(var, gene_sets, cycle, scored, exclude)
    group_key = f"{lesion}_group"
    cells[group_key] = group_labels(cells, lesion, low=s["group_low"], high=s["group_high"])
    fair, keys, variants = _score_keys(scored, cells, exclude=bool(exclude), kept=kept)
    common = dict(lesion=lesion, group_key=group_key, timepoints=timepoints, **design)
    comparison_table = run_comparisons(
        cells, keys, min_cells=s["min_cells"], alpha=p["alpha"], variants=variants, **common
    )
    composition_table, cycling_table = run_cycling(cells, alpha=p["alpha"], **common)
    _log_mixed(comparison_table)
    columns = [c for c in _cell_columns(lesion, group_key) if c in cells] + keys + ["cycle_phase", "cycling_posterior"]
    store.write_cell_table(cells[columns], scores)
    described.to_csv(sets, sep="\t", index=False)
    comparison_table.to_csv(comparisons, sep="\t", index=False, float_format="%.6g")
    composition_table.to_csv(composition, sep="\t", index=False, float_format="%.6g")
    cycling_table.to_csv(cycling, sep="\t", index=False, float_format="%.6g")
    _figures(
        cells,
        composition_table,
        fair,
        lesion=lesion,
        group_key=group_key,
        stem=design["stem"],
        timepoints=timepoints,
        scores_figure=scores_figure,
        cycling_figure=cycling_figure,
    )


def _batch_key(cells: pd.DataFrame) -> str | None:
    """The column the cycling phase is calibrated in (score noise differs with depth): the technology, if known."""
    return "technology" if "technology" in cells else None


def _analysed_cells(
    h5ad: str, gates: str | None, population_key: str, reference_conditions: Sequence[str]
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, str]:
    """The analysed cells, which rows of the file they are (boolean (n_obs,), the file's order, as
    the cells'), the file's var table and where its counts are."""
    from remnant.io import store
    from remnant.workflow.analysed_cells import read_analysed_cells

    # the cohort is never read whole (issue 8): its tables here, its counts block by block in score_cohort
    obs, cells, summary, counts_key = read_analysed_cells(
        h5ad, reference_conditions=reference_conditions, population_key=population_key, gates_path=gates
    )
    var = store.read_var(h5ad)
    log.info("cells: %s", summary)
    return cells, obs.index.isin(cells.index), var, counts_key


def _excluded(lesions: Sequence[Mapping], sig: Mapping, cytobands: pd.DataFrame) -> list:
    """The regions whose genes leave the sets and the control pool: the configured lesions (when
    ``signatures.exclude_lesion_genes``) and ``signatures.exclude_regions``."""
    from remnant.io.annotation import chromosome_arms
    from remnant.tl.lesions import parse_lesions
    from remnant.workflow.persistence_config import exclusion_regions

    exclude = parse_lesions(lesions, cytobands, chromosome_arms(cytobands)) if sig["exclude_lesion_genes"] else []
    exclude += exclusion_regions(sig["exclude_regions"], cytobands)
    log.info(
        "genes left out of sets and controls: %s",
        [f"{x.name} {x.chromosome}:{x.start}-{x.end}" for x in exclude] or "none",
    )
    return exclude


def _score(
    h5ad: str,
    cells: pd.DataFrame,
    rows: np.ndarray,
    sets: tuple[Mapping, Mapping, Sequence[str]],
    sig: Mapping,
    *,
    exclude: list,
    kept: bool,
    seed: int,
    key: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the analysed cells (:func:`remnant.tl.signatures.score_cohort`) and add the scores to
    ``cells``; ``sets``: the gene sets, the cell-cycle sets and the names of the S and G2/M ones.
    Returns the per-set summary and the cycling calibration table."""
    from remnant.tl.signatures import score_cohort

    gene_sets, cycle, (s_name, g2m_name) = sets
    batch_key = _batch_key(cells)
    batches = cells[batch_key].astype(str).to_numpy() if batch_key else None
    try:
        scores, scored, _ = score_cohort(
            h5ad,
            gene_sets,
            cycle[s_name].index,
            cycle[g2m_name].index,
            rows=rows,
            exclude=exclude or None,
            also_with_lesion_genes=kept,
            downsample_to=sig["downsample_to"],
            ctrl_size=sig["ctrl_size"],
            n_bins=sig["n_bins"],
            min_genes=sig["min_genes"],
            seed=seed,
            key=key,
            batches=batches,
        )
    except InputError as err:
        raise in_config(err, SCORING_KEYS) from None
    if not scores.index.equals(cells.index):  # score_cohort keeps the file's order, as prepare_cells
        raise RuntimeError("scores and analysed cells are out of order")
    log.info(
        "%d cells scored from %s (%s, block by block)%s",
        len(scores),
        h5ad,
        key,
        f"; counts thinned to {scores.attrs['downsampled_to']} per cell" if scores.attrs["downsampled_to"] else "",
    )
    for col in scores.columns:
        cells[col] = scores[col].to_numpy()
    calibration = scores.attrs.get(
        "cycling_calibration",
        pd.DataFrame(
            columns=["batch", "cells", "rule", "cycling_share", "called_share", "sign_rule_share", "separation"]
        ),
    )
    return scored, calibration


def _write_calibration(
    cells: pd.DataFrame, calibration: pd.DataFrame, path: str, figure: str, batch_key: str | None
) -> None:
    """Log, write and plot the cycling calibration."""
    from remnant.pl.persistence import plot_cycling_calibration

    for _, r in calibration.iterrows():
        log.info(
            "cycling calibration, %s (%d cells): %s; estimated cycling %.3f, called %.3f, sign rule %.3f, separation %.3f",
            r["batch"],
            r["cells"],
            r["rule"],
            r["cycling_share"],
            r["called_share"],
            r["sign_rule_share"],
            r["separation"],
        )
    calibration.to_csv(path, sep="\t", index=False, float_format="%.6g")
    plot_cycling_calibration(cells, calibration, figure, batch_key=batch_key)


def _described(var: pd.DataFrame, gene_sets: Mapping, cycle: Mapping, scored: pd.DataFrame, exclude: list):
    """Which genes of every set are used, left out or missing, whether it was scored, and its role."""
    from remnant.tl.signatures import describe_sets

    described = describe_sets(var, {**gene_sets, **cycle}, exclude=exclude or None)
    described = described.merge(scored[["signature", "weighted", "scored"]], on="signature", how="left")
    described["scored"] = described["scored"].fillna(True).astype(bool)  # the cell-cycle sets are always scored
    described["role"] = ["cell cycle" if n in cycle else "signature" for n in described["signature"]]
    return described


def _score_keys(
    scored: pd.DataFrame, cells: pd.DataFrame, *, exclude: bool, kept: bool
) -> tuple[list[str], list[str], dict[str, str]]:
    """The lesion-fair score columns, every score compared (in order), and each one's variant label."""
    fair = [f"sig_{n}" for n in scored.loc[scored["scored"], "signature"]]
    variant = "lesion genes excluded" if exclude else "all genes (signatures.exclude_lesion_genes: false)"
    variants = dict.fromkeys(fair, variant)
    variants.update(
        {
            f"{k}_with_lesion_genes": "all genes (conventional: carriers read lesion genes at half dose)"
            for k in fair
            if kept
        }
    )
    variants.update({"S_score": f"cell cycle, {variant}", "G2M_score": f"cell cycle, {variant}"})
    keys = [x for k in fair for x in ([k, f"{k}_with_lesion_genes"] if kept else [k])] + ["S_score", "G2M_score"]
    return fair, [k for k in keys if k in cells], variants


def _log_mixed(comparisons: pd.DataFrame) -> None:
    for _, r in comparisons[comparisons["test"].astype(str).str.startswith("linear mixed")].iterrows():
        log.info(
            "%s, %s: difference %.4f [%.4f, %.4f], p %.3g%s",
            r["score"],
            r["question"],
            r["difference"],
            r["difference_low"],
            r["difference_high"],
            r["pvalue"],
            f" ({r['note']})" if r["note"] else "",
        )


def _cell_columns(lesion: str, group_key: str) -> list[str]:
    """Columns of the per-cell table before the scores (those the cells have)."""
    return [
        "sample",
        "patient",
        "timepoint",
        "condition",
        "technology",
        "sort_gate",
        "population",
        "hspc_state",
        "total_counts",
        "n_genes_by_counts",
        f"{lesion}_posterior",
        f"{lesion}_call",
        group_key,
        "cnv_reference",
    ]


def _figures(
    cells: pd.DataFrame,
    composition: pd.DataFrame,
    fair: list[str],
    *,
    lesion: str,
    group_key: str,
    stem: str | None,
    timepoints: list[str],
    scores_figure: str,
    cycling_figure: str,
) -> None:
    """The stem cells' scores by timepoint and call, and their cycling composition (or a figure saying why not)."""
    from remnant.pl.cnv import plot_message
    from remnant.pl.persistence import plot_cycling_composition, plot_signature_distributions

    shown = cells[(cells["population"] == stem) & (cells[group_key] != UNCERTAIN)].copy()
    if stem is None:
        log.info("persistence.stem is null: no stem-cell figures")
        for figure in (scores_figure, cycling_figure):
            plot_message(
                figure,
                f"No stem-cell population named (persistence.stem is null: not a stem-cell design), "
                f"so no {lesion} vs non-del stem-cell comparison. Per-cell scores are in signature_scores.tsv.gz.",
            )
        return
    if shown.empty:
        log.warning("no %s cells called %s or non-del: no figures of their scores", stem, lesion)
        plot_message(scores_figure, f"No {stem} cells with a confident {lesion} call: nothing to compare.")
        plot_message(cycling_figure, f"No {stem} cells with a confident {lesion} call: nothing to compare.")
        return
    shown["group"] = shown["timepoint"].astype(str) + "\n" + shown[group_key].astype(str)
    order = [
        f"{tp}\n{g}"
        for tp in [*timepoints, *sorted(set(shown["timepoint"]) - set(timepoints))]
        for g in (lesion, "non-del")
    ]
    plot_signature_distributions(
        shown,
        fair + ["S_score", "G2M_score"],
        scores_figure,
        group_key="group",
        groups=order,
        ncols=4,
        title=f"{stem} cells by timepoint and {lesion} call (lesion genes excluded): cells (violins), "
        "per-patient medians (dots)",
    )
    comp = composition[(composition["population"] == stem) & (composition[group_key] != UNCERTAIN)]
    plot_cycling_composition(comp, cycling_figure, label_keys=["patient", "timepoint", group_key])


def run_comparisons(
    cells: pd.DataFrame,
    score_keys: Sequence[str],
    *,
    lesion: str = "del5q",
    group_key: str | None = None,
    stem: str | None = "HSC",
    before: str | None = "diagnosis",
    after: str | None = "remission",
    timepoints: Sequence[str] | None = None,
    min_cells: int = 5,
    alpha: float = 0.05,
    variants: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per score: ``lesion`` vs non-del ``stem`` cells within each timepoint, and ``lesion`` ``stem``
    cells ``after`` vs ``before``, each by :func:`remnant.tl.signatures.compare_groups` (per patient
    first, then across patients).

    Parameters
    ----------
    cells
        Per-cell table (``population``, ``timepoint``, ``patient``, ``group_key`` and the scores).
    group_key
        Column of :func:`remnant.tl.signatures.group_labels` (default ``f"{lesion}_group"``).
    timepoints
        Order of the timepoints compared (those without cells are skipped; one present but
        without ``stem`` cells gets a row saying so).
    stem, before, after
        The design (config ``persistence``); ``None`` (null) for a cohort without it: the
        comparisons that need it keep one row per score whose ``note`` names the null key.
    variants
        ``{score_key: label}`` written to the ``variant`` column (e.g. lesion genes excluded or kept).

    Returns
    -------
    pandas.DataFrame
        ``score, variant, question`` then the columns of :func:`remnant.tl.signatures.compare_groups`,
        ``padj`` (Benjamini-Hochberg over the across-patient rows of the same test in this table,
        :func:`remnant.stats.multitest.bh_across_patients`) and ``note``. Per-patient rows are
        cell-level tests labelled descriptive.
    """
    group_key = group_key or f"{lesion}_group"
    present = [str(t) for t in (timepoints or []) if str(t) in set(cells["timepoint"].astype(str))]
    present += [t for t in pd.unique(cells["timepoint"].astype(str)) if t not in present]
    plans = _stem_plans(
        cells, lesion=lesion, group_key=group_key, stem=stem, before=before, after=after, timepoints=present
    )
    parts = []
    for key in score_keys:
        for question, factor, level, reference, fixed, why in plans:
            meta = {"score": key, "variant": (variants or {}).get(key, ""), "question": question}
            if why:
                parts.append(
                    pd.DataFrame([{**meta, "scope": "across patients", "patient": "all", "n_patients": 0, "note": why}])
                )
                continue
            out = compare_groups(
                cells,
                key,
                factor=factor,
                level=str(level),
                reference=str(reference),
                fixed=fixed,
                min_cells=min_cells,
                alpha=alpha,
            )
            out["note"] = ""
            across = out["scope"] == "across patients"
            n = int(out.loc[across, "n_patients"].iloc[0])
            if n < 2:
                out.loc[across, "note"] = (
                    f"{n} patient(s) with >= {min_cells} cells in both groups (signatures.min_cells): "
                    "no across-patient test"
                )
            parts.append(out.assign(**meta))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["score", "scope", "test", "pvalue"])
    return _comparison_columns(table)


def _comparison_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``padj`` added, then :data:`COMPARISON_COLUMNS` first (NaN where missing), the others, ``note`` last."""
    for col in ("test", "pvalue"):
        if col not in table:
            table[col] = np.nan
    table["padj"] = bh_across_patients(table)
    table["note"] = table["note"].fillna("")
    front = list(COMPARISON_COLUMNS)
    for col in front:
        if col not in table:
            table[col] = np.nan
    return table[front + [c for c in table.columns if c not in front and c != "note"] + ["note"]]


def _stem_plans(
    cells: pd.DataFrame,
    *,
    lesion: str,
    group_key: str,
    stem: str | None,
    before: str | None,
    after: str | None,
    timepoints: Sequence[str],
    prefix: str = "",
) -> list[tuple]:
    """The stem-cell comparisons: (question, factor, level, reference, fixed, why not).

    ``lesion`` vs non-del ``stem`` cells at each of ``timepoints``, and ``lesion`` ``stem`` cells
    ``after`` vs ``before``. A design key that is ``None`` (config null) leaves one row whose
    ``why`` names it (factor ``None``); a timepoint without ``stem`` cells keeps its row with why.
    """
    populations = list(pd.unique(cells["population"].astype(str)))
    if stem is None:
        why = f"{not_this_design(['stem'], 'stem-cell')}; it has {levels_text(populations, 'population')}"
        return [(f"{prefix}{lesion} vs non-del stem cells", None, None, None, None, why)]
    stem_tps = set(cells.loc[cells["population"].astype(str) == str(stem), "timepoint"].astype(str))
    plans = [
        (
            f"{prefix}{lesion} vs non-del {stem} cells at {tp}",
            group_key,
            lesion,
            "non-del",
            {"population": stem, "timepoint": tp},
            "" if tp in stem_tps else f"no analysed {stem} cells at {tp}",
        )
        for tp in timepoints
    ]
    if before is None or after is None:
        null = [k for k, v in (("before", before), ("after", after)) if v is None]
        tps = list(pd.unique(cells["timepoint"].astype(str)))
        why = f"{not_this_design(null, 'before/after')}; it has {levels_text(tps, 'timepoint')}"
        plans.append((f"{prefix}{lesion} {stem} cells: after vs before treatment", None, None, None, None, why))
    else:
        missing = [t for t in (before, after) if str(t) not in stem_tps]
        plans.append(
            (
                f"{prefix}{lesion} {stem} cells: {after} vs {before}",
                "timepoint",
                after,
                before,
                {"population": stem, group_key: lesion},
                f"no analysed {stem} cells at {', '.join(map(str, missing))}" if missing else "",
            )
        )
    return plans


def run_cycling(
    cells: pd.DataFrame,
    *,
    lesion: str = "del5q",
    group_key: str | None = None,
    stem: str | None = "HSC",
    before: str | None = "diagnosis",
    after: str | None = "remission",
    timepoints: Sequence[str] | None = None,
    phase_key: str = "cycle_phase",
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cycling composition per patient x population x timepoint x group, and the cycling share
    (S + G2M) compared with patient as CMH stratum: ``lesion`` vs non-del ``stem`` cells per
    timepoint, and ``lesion`` ``stem`` cells ``after`` vs ``before``.

    Returns
    -------
    (composition, contrasts)
        :func:`remnant.tl.signatures.cycling_composition` rows, and
        :func:`remnant.tl.signatures.cycling_contrast` rows with ``question`` and ``note`` (a
        contrast without cells, or without its design key - ``stem``, ``before`` or ``after``
        ``None`` - still has its row, saying why).
    """
    group_key = group_key or f"{lesion}_group"
    composition = cycling_composition(cells, ["patient", "population", "timepoint", group_key], phase_key=phase_key)
    composition = ordered_rows(
        composition,
        {
            "patient": None,
            "population": [stem] if stem is not None else None,
            "timepoint": timepoints,
            group_key: [lesion, "non-del", UNCERTAIN],
        },
    )
    stem_cells = cells[cells["population"].astype(str) == str(stem)]
    stem_tps = [
        t
        for t in [*(timepoints or []), *pd.unique(stem_cells["timepoint"].astype(str))]
        if t in set(stem_cells["timepoint"].astype(str))
    ]
    plans = _stem_plans(
        cells,
        lesion=lesion,
        group_key=group_key,
        stem=stem,
        before=before,
        after=after,
        timepoints=list(dict.fromkeys(stem_tps)),
        prefix="cycling of ",
    )
    parts = [_cycling_contrast(cells, plan, stem=stem, phase_key=phase_key, alpha=alpha) for plan in plans]
    contrasts = pd.concat(parts, ignore_index=True)
    front = ["question", "contrast", "scope", "patient", "n_strata", "test"]
    for col in front:
        if col not in contrasts:
            contrasts[col] = np.nan
    contrasts["note"] = contrasts["note"].fillna("")
    return composition, contrasts[front + [c for c in contrasts.columns if c not in front and c != "note"] + ["note"]]


def _cycling_contrast(cells: pd.DataFrame, plan: tuple, *, stem: str | None, phase_key: str, alpha: float):
    """One planned cycling contrast's rows (:func:`remnant.tl.signatures.cycling_contrast`), or its
    one row saying why it was not made."""
    question, factor, level, reference, fixed, why = plan
    not_made = {"question": question, "scope": "across patients", "patient": "all", "n_strata": 0}
    if why and factor is None:  # not this design
        return pd.DataFrame([{**not_made, "note": why}])
    sub = select_cells(cells, fixed, "run_cycling")
    levels = set(sub[factor].astype(str))
    absent = [str(v) for v in (level, reference) if str(v) not in levels]
    if absent:
        return pd.DataFrame([{**not_made, "note": f"no {stem} cells with {factor} {absent}"}])
    out = cycling_contrast(
        cells, factor=factor, level=str(level), reference=str(reference), fixed=fixed, phase_key=phase_key, alpha=alpha
    )
    out["note"] = ""
    across = out["scope"] == "across patients"
    if int(out.loc[across, "n_strata"].iloc[0]) == 0:
        out.loc[across, "note"] = f"no patient has {stem} cells of both {level} and {reference}"
    elif pd.isna(out.loc[across, "pvalue"].iloc[0]):
        out.loc[across, "note"] = "no informative patient (all cells cycling, or none): no odds ratio"
    return out.assign(question=question)
