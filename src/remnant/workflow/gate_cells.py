"""Step gate_cells: each cell's sort gate, index gate and transcriptomic state, and where they disagree.

:func:`write_gates` is the step (scripts/gate_cells.py hands it the rule's paths and params);
:func:`run_gates` computes its tables from the cohort's cell table with
:func:`remnant.tl.gates.gate_cells` and :func:`remnant.tl.gates.agreement_table`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.tl.gates import (
    DEFAULT_GATES,
    DEFAULT_SORT_GATES,
    DEFAULT_STATE_GATES,
    DEFAULT_THRESHOLDS,
    UNGATED,
    agreement_table,
    check_gates,
    gate_cells,
    gate_crosstab,
)
from remnant.workflow.persistence_config import GATE_KEYS, in_config

log = logging.getLogger(__name__)

__all__ = ["CROSSTAB_PAIRS", "run_gates", "write_gates"]

#: Pairs of assignments cross-tabulated by :func:`run_gates`.
CROSSTAB_PAIRS = (("population", "index_gate"), ("population", "hspc_state"), ("index_gate", "hspc_state"))
#: Columns of the sample sheet carried into the agreement table, in its order.
SHEET_COLUMNS = ("sample", "patient", "timepoint", "condition", "technology", "population", "hspc_state")


def write_gates(h5ad: str, *, gates: Mapping, cells: str, agreement: str, crosstab: str) -> None:
    """The step: gate the cohort's cells (its cell table only) and write the three tables.

    Parameters
    ----------
    h5ad
        The cohort file.
    gates
        The resolved ``gates`` config block (:func:`remnant.workflow.persistence_config.resolve_gate_config`).
    cells, agreement, crosstab
        Output paths (TSV; ``cells`` gzipped): :func:`run_gates`' ``cells``, ``agreement`` and ``crosstab``.
    """
    from remnant.io.store import TABLE_GZIP
    from remnant.workflow.analysed_cells import read_calls

    obs, _ = read_calls(h5ad, lesion=None)
    out = run_gates(
        obs,
        thresholds=gates["thresholds"],
        hierarchy=gates["hierarchy"],
        sort_gates=gates["sort_gates"],
        state_gates=gates["state_gates"],
        source=h5ad,
    )
    _log_agreement(out)
    out["cells"].to_csv(cells, sep="\t", index_label="cell", compression=TABLE_GZIP)
    out["agreement"].to_csv(agreement, sep="\t", index=False, float_format="%.6g")
    out["crosstab"].to_csv(crosstab, sep="\t", index=False)


def _log_agreement(out: Mapping) -> None:
    cohort = out["agreement"].set_index("sample").loc["all"]
    if out["index_sorted"]:
        log.info(
            "%d cells, %d index-sorted (%d ungated); index gates: %s",
            cohort["n_cells"],
            cohort["n_index_sorted"],
            cohort["n_ungated"],
            out["cells"]["index_gate"].value_counts().to_dict(),
        )
    else:
        log.warning(
            "no index-sort intensities in the cohort: index gates not computed; sort gate vs state compared only"
        )
    for cmp in ("sort_index", "index_state", "sort_state"):
        log.info(
            "%s: %d comparable cells, %d disagree (%.1f%%)",
            cmp,
            cohort[f"{cmp}_n"],
            cohort[f"{cmp}_disagree"],
            100 * cohort[f"{cmp}_disagree_fraction"] if cohort[f"{cmp}_n"] else float("nan"),
        )


def run_gates(
    obs: pd.DataFrame,
    *,
    thresholds: Mapping = DEFAULT_THRESHOLDS,
    hierarchy: Mapping[str, Mapping[str, str]] = DEFAULT_GATES,
    sort_gates: Mapping[str, Sequence[str] | None] = DEFAULT_SORT_GATES,
    state_gates: Mapping[str, str] = DEFAULT_STATE_GATES,
    prefix: str = "facs_",
    source: str = "cohort",
) -> dict[str, pd.DataFrame]:
    """Population identity of every cell three ways, and where the three disagree.

    Parameters
    ----------
    obs
        The cohort's per-cell table (``sample``, ``population`` (sort gate), ``hspc_state``,
        index-sort intensities ``{prefix}{marker}`` where any sample was index-sorted).
    thresholds, hierarchy, sort_gates, state_gates
        As in :func:`remnant.tl.gates.gate_cells` and :func:`remnant.tl.gates.agreement_table`
        (resolved by :func:`remnant.workflow.persistence_config.resolve_gate_config`).
    source
        File the cells came from, for messages.

    Returns
    -------
    dict
        ``cells``: per cell ``sample, patient, timepoint, condition, technology, population,
        index_gate`` (NaN without index-sort data), ``hspc_state``, ``state_gate`` (the gate of
        the state; NaN for states ``state_gates`` does not map) and ``{prefix}{marker}_pos``.
        ``agreement``: :func:`remnant.tl.gates.agreement_table` per sample (with its sheet columns)
        and one ``sample="all"`` row, with a ``note`` saying what could not be compared and why.
        ``crosstab``: cell counts of each pair in :data:`CROSSTAB_PAIRS` (long:
        ``assignment_1, value_1, assignment_2, value_2, n_cells``). ``index_sorted``: whether
        the cohort has index-sort intensities.

    Raises
    ------
    InputError
        The cohort has index-sort columns but not one a gate needs (names the marker and ``source``).
    """
    try:
        markers = check_gates(hierarchy)
    except InputError as err:
        raise in_config(err, GATE_KEYS) from None
    present = [c for c in obs.columns if c.startswith(prefix) and not c.endswith("_pos")]
    meta = [c for c in SHEET_COLUMNS if c in obs.columns]
    for col in ("sample", "population", "hspc_state"):
        if col not in obs.columns:
            raise InputError(f"the cohort has no cell column {col!r}; rerun cluster_cells.", path=source)
    cells = obs[meta].copy()
    has_index_sort = bool(present)
    if has_index_sort:
        _add_index_gates(
            cells, obs, markers, present, thresholds=thresholds, hierarchy=hierarchy, prefix=prefix, source=source
        )
    else:
        cells["index_gate"] = pd.Categorical([np.nan] * len(obs), categories=[*hierarchy, UNGATED])
    cells["state_gate"] = (
        obs["hspc_state"].astype(object).map(lambda s: state_gates.get(str(s), np.nan) if pd.notna(s) else np.nan)
    )
    return {
        "cells": cells,
        "agreement": _agreement(cells, meta, sort_gates, state_gates, has_index_sort),
        "crosstab": _crosstabs(cells),
        "index_sorted": has_index_sort,
    }


def _add_index_gates(
    cells: pd.DataFrame,
    obs: pd.DataFrame,
    markers: list[str],
    present: list[str],
    *,
    thresholds: Mapping,
    hierarchy: Mapping,
    prefix: str,
    source: str,
) -> None:
    """Write ``index_gate`` and ``{prefix}{marker}_pos`` of the index-sorted cells into ``cells`` (NaN for the others)."""
    absent = [m for m in markers if f"{prefix}{m}" not in obs.columns]
    if absent:
        raise InputError(
            f"gate marker {absent[0]!r} has no index-sort column {prefix + absent[0]!r} (the cohort has "
            f"{present}); list it in index_sort.markers so read_counts reads it from each index-sort table, "
            "or drop it from gates.hierarchy.",
            path=source,
        )
    values = obs[[f"{prefix}{m}" for m in markers]].apply(pd.to_numeric, errors="coerce")
    sorted_cells = values.notna().any(axis=1)
    try:
        gated = gate_cells(obs.loc[sorted_cells], thresholds=thresholds, gates=hierarchy, prefix=prefix)
    except InputError as err:
        raise in_config(err, GATE_KEYS) from None
    cells["index_gate"] = pd.Categorical(
        gated["index_gate"].reindex(obs.index).astype(object), categories=[*hierarchy, UNGATED]
    )
    for m in markers:
        cells[f"{prefix}{m}_pos"] = gated[f"{prefix}{m}_pos"].reindex(obs.index).astype("boolean")


def _agreement(
    cells: pd.DataFrame, meta: list[str], sort_gates: Mapping, state_gates: Mapping, has_index_sort: bool
) -> pd.DataFrame:
    """:func:`remnant.tl.gates.agreement_table` per sample (with its sheet columns) and for the cohort, with notes."""
    kwargs = {"sort_gates": sort_gates, "state_gates": state_gates}
    per_sample = agreement_table(cells, by=["sample"], **kwargs)
    info = cells.drop_duplicates("sample").set_index("sample")[[c for c in meta if c not in ("sample", "hspc_state")]]
    per_sample = per_sample.merge(info.reset_index(), on="sample", how="left")
    cohort = agreement_table(cells, by=(), **kwargs).assign(sample="all")
    agreement = pd.concat([per_sample, cohort], ignore_index=True)
    gated = cells["index_gate"].notna() & (cells["index_gate"].astype(object) != UNGATED)
    unmapped = (gated & cells["state_gate"].isna()).groupby(cells["sample"].astype(str)).sum()
    agreement["note"] = [_agreement_note(row, sort_gates, unmapped, has_index_sort) for _, row in agreement.iterrows()]
    front = [
        "sample",
        *[c for c in ("patient", "timepoint", "population", "condition", "technology") if c in agreement.columns],
    ]
    return agreement[front + [c for c in agreement.columns if c not in front]]


def _agreement_note(row: pd.Series, sort_gates: Mapping, unmapped: pd.Series, has_index_sort: bool) -> str:
    """What one agreement row could not compare, and why."""
    note = []
    if not has_index_sort:
        note.append(
            "no index-sort intensities in the cohort (no sample has an index_sort table): index gates not computed"
        )
    elif row["n_index_sorted"] == 0:
        note.append("sample not index-sorted: no index gate")
    pop = row.get("population")
    if isinstance(pop, str) and sort_gates.get(pop) is None:
        note.append(f"sort gate {pop!r} not compared with gates (gates.sort_gates maps it to none)")
    n_unmapped = int(unmapped.sum() if row["sample"] == "all" else unmapped.get(str(row["sample"]), 0))
    if n_unmapped:
        note.append(f"{n_unmapped} index-gated cell(s) in a state gates.state_gates does not map")
    return "; ".join(note)


def _crosstabs(cells: pd.DataFrame) -> pd.DataFrame:
    """Cell counts of each pair of :data:`CROSSTAB_PAIRS`, stacked long."""
    tabs = []
    for a, b in CROSSTAB_PAIRS:
        t = gate_crosstab(cells, a, b)
        tabs.append(
            pd.DataFrame(
                {"assignment_1": a, "value_1": t[a], "assignment_2": b, "value_2": t[b], "n_cells": t["n_cells"]}
            )
        )
    return pd.concat(tabs, ignore_index=True)
