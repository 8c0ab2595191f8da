"""In-silico gates on index-sort intensities, and how they agree with the sort gate and the transcriptome.

A cell can be assigned to a population three ways: the **sort gate** of its sample (sample sheet
``population``), the **index gate** (its own recorded fluorescence intensities, gated in silico
with the thresholds below) and the **transcriptomic state** (``hspc_state`` from
:func:`remnant.pp.cluster.annotate_states`). The persistence analysis uses the sort gate by default;
this module makes the other two available and counts every disagreement instead of hiding it.

Gates follow the hierarchy used by the founding study (Tehranchi et al., NEJM 2010; Woll et al.,
Cancer Cell 2014): within Lin-CD34+ cells,

- ``HSC``  = CD34+ CD38-/low CD90+ CD45RA-
- ``MPP``  = CD34+ CD38-/low CD90- CD45RA-
- ``LMPP`` = CD34+ CD38-/low CD90- CD45RA+
- ``PROG`` = CD34+ CD38+ (progenitors: CMP/GMP/MEP/CLP)

A cell is *positive* for a marker when its intensity is at least the marker's threshold (same
units as the index-sort table, arbitrary fluorescence units); ``-`` in a gate means below it (the
study's "CD38-/low" is therefore "below the CD38 threshold"). Gates are tried in order; the first
whose every listed marker matches wins. Cells that match none are ``ungated``; cells without
index-sort intensities get no gate (NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from remnant.errors import InputError

__all__ = [
    "DEFAULT_GATES",
    "DEFAULT_SORT_GATES",
    "DEFAULT_STATE_GATES",
    "DEFAULT_THRESHOLDS",
    "UNGATED",
    "agreement_table",
    "check_gate_config",
    "check_index_sort_markers",
    "gate_cells",
    "gate_crosstab",
    "resolve_gate_config",
    "run_gates",
]

#: Thresholds (index-sort intensity units) at which a cell counts as positive. These suit the
#: simulated demo cohort (log10 levels: CD38 2.0 on stem cells vs >= 3.0 on progenitors, CD90 3.0
#: on HSC vs <= 2.0, CD45RA <= 1.8 vs >= 2.9); set your own from your cytometer's gates.
DEFAULT_THRESHOLDS: dict[str, float] = {"CD34": 300.0, "CD38": 350.0, "CD90": 300.0, "CD45RA": 250.0}

#: Gate hierarchy: ordered ``{gate: {marker: "+" | "-"}}``; the first matching gate wins.
DEFAULT_GATES: dict[str, dict[str, str]] = {
    "HSC": {"CD34": "+", "CD38": "-", "CD90": "+", "CD45RA": "-"},
    "MPP": {"CD34": "+", "CD38": "-", "CD90": "-", "CD45RA": "-"},
    "LMPP": {"CD34": "+", "CD38": "-", "CD90": "-", "CD45RA": "+"},
    "PROG": {"CD34": "+", "CD38": "+"},
}

#: Sort gate (sample-sheet population) -> index gates compatible with it. ``None``: any gate is
#: compatible (an unsorted CD34+ sample), so no disagreement is counted for it.
DEFAULT_SORT_GATES: dict[str, list[str] | None] = {"HSC": ["HSC"], "PROG": ["PROG"], "CD34": None}

#: Transcriptomic HSPC state -> the index gate it belongs to.
DEFAULT_STATE_GATES: dict[str, str] = {
    "HSC": "HSC",
    "MPP": "MPP",
    "LMPP": "LMPP",
    "GMP": "PROG",
    "MEP": "PROG",
    "CLP": "PROG",
    "MK": "PROG",
    "ERY_EARLY": "PROG",
    "ERY_LATE": "PROG",
    "MONOCYTE": "PROG",
    "DC": "PROG",
    "PRO_B": "PROG",
    "BASO": "PROG",
}

UNGATED = "ungated"


def _obs(data: AnnData | pd.DataFrame) -> pd.DataFrame:
    if isinstance(data, AnnData):
        return data.obs
    if isinstance(data, pd.DataFrame):
        return data
    raise InputError(f"expected an AnnData or a per-cell DataFrame; got {type(data).__name__}.", where="gates")


def _check_gates(gates: Mapping[str, Mapping[str, str]]) -> list[str]:
    if not isinstance(gates, Mapping) or not gates:
        raise InputError("must be a non-empty mapping {gate: {marker: '+' or '-'}}.", where="gates.hierarchy")
    markers: list[str] = []
    for gate, rule in gates.items():
        if gate == UNGATED:
            raise InputError(
                f"{UNGATED!r} is reserved for cells no gate matches; rename the gate.", where="gates.hierarchy"
            )
        if not isinstance(rule, Mapping) or not rule:
            raise InputError(
                f"gate {gate!r} must map markers to '+' or '-', e.g. {{CD34: '+', CD38: '-'}}.",
                where=f"gates.hierarchy.{gate}",
            )
        for marker, sign in rule.items():
            if sign not in ("+", "-"):
                raise InputError(
                    f"marker {marker!r}: sign {sign!r} must be '+' or '-' (quote it in YAML).",
                    where=f"gates.hierarchy.{gate}.{marker}",
                )
            if marker not in markers:
                markers.append(str(marker))
    return markers


def _threshold_frame(thresholds, markers: list[str], samples: pd.Series | None) -> pd.DataFrame:
    """Cells x markers thresholds from a global ``{marker: value}`` or per-sample ``{sample: {marker: value}}``."""
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise InputError(
            "must be a mapping {marker: intensity} or {sample: {marker: intensity}}.", where="gates.thresholds"
        )
    per_sample = all(isinstance(v, Mapping) for v in thresholds.values())
    n = len(samples) if samples is not None else 0
    out = {}
    for marker in markers:
        if per_sample:
            if samples is None:
                raise InputError("per-sample thresholds need a sample column.", where="gates.thresholds")
            missing = sorted(set(samples.astype(str)) - set(map(str, thresholds)))
            if missing:
                raise InputError(
                    f"no thresholds for sample(s) {missing[:5]}; give every index-sorted sample a block or use one "
                    "global {marker: intensity} mapping.",
                    where="gates.thresholds",
                )
            values = {str(s): t.get(marker) for s, t in thresholds.items()}
            col = samples.astype(str).map(values).to_numpy(dtype=object)
        else:
            col = np.full(n, thresholds.get(marker), dtype=object)
        if any(v is None for v in col):
            raise InputError(
                f"no threshold for marker {marker!r}, which the gate hierarchy uses; add {marker}: <intensity>.",
                where="gates.thresholds",
            )
        try:
            col = col.astype(float)
        except (TypeError, ValueError):
            raise InputError(
                f"threshold of {marker!r} must be a number (index-sort intensity units).", where="gates.thresholds"
            ) from None
        if not np.all(np.isfinite(col)):
            raise InputError(f"threshold of {marker!r} must be finite.", where="gates.thresholds")
        out[marker] = col
    return pd.DataFrame(out, index=samples.index if samples is not None else None)


def gate_cells(
    data: AnnData | pd.DataFrame,
    *,
    thresholds: Mapping = DEFAULT_THRESHOLDS,
    gates: Mapping[str, Mapping[str, str]] = DEFAULT_GATES,
    prefix: str = "facs_",
    sample_key: str = "sample",
    key_added: str = "index_gate",
) -> pd.DataFrame:
    """Assign each index-sorted cell to the first gate of ``gates`` it matches.

    Parameters
    ----------
    data
        AnnData (intensities in ``.obs[f"{prefix}{marker}"]``, as :func:`remnant.io.counts.read_sample`
        writes them) or a per-cell DataFrame with those columns. NaN intensities mean the cell was
        not index-sorted.
    thresholds
        ``{marker: intensity}`` (one set for every sample) or ``{sample: {marker: intensity}}``
        (per-sample gates, e.g. for different cytometer settings), in the index-sort table's units.
        A cell is positive when ``intensity >= threshold``.
    gates
        Ordered ``{gate: {marker: "+" | "-"}}``; see :data:`DEFAULT_GATES`.
    prefix
        Prefix of the intensity columns.
    sample_key
        Column naming the sample (only used with per-sample thresholds).
    key_added
        Name of the gate column.

    Returns
    -------
    pandas.DataFrame
        Indexed like the cells: ``key_added`` (categorical: the gates in order, then ``ungated``;
        NaN for cells missing an intensity a gate needs), and ``{prefix}{marker}_pos`` (boolean
        dtype with NA) per marker. For an AnnData the same columns are also written to ``.obs``.

    Raises
    ------
    InputError
        Malformed gates or thresholds, or no intensity column for a marker the gates use.
    """
    obs = _obs(data)
    markers = _check_gates(gates)
    missing = [m for m in markers if f"{prefix}{m}" not in obs.columns]
    if missing:
        raise InputError(
            f"no index-sort column(s) {[prefix + m for m in missing]} in the cell table; name the markers in "
            "index_sort.markers or drop them from the gate hierarchy.",
            where="gates.hierarchy",
        )
    samples = obs[sample_key] if sample_key in obs.columns else None
    if samples is None:
        samples = pd.Series("", index=obs.index)
    thr = _threshold_frame(thresholds, markers, samples)
    intens = obs[[f"{prefix}{m}" for m in markers]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    known = np.isfinite(intens)
    positive = intens >= thr.to_numpy(float)
    out = pd.DataFrame(index=obs.index)
    labels = np.full(len(obs), UNGATED, dtype=object)
    decided = np.zeros(len(obs), bool)
    unknown = np.zeros(len(obs), bool)
    for gate, rule in gates.items():
        cols = [markers.index(m) for m in rule]
        want = np.array([rule[m] == "+" for m in rule])
        agree = positive[:, cols] == want[None, :]
        have = known[:, cols]
        match = np.all(agree & have, axis=1)
        # A cell whose known intensities fit this gate but which lacks one it needs cannot be
        # placed at or past it (the hierarchy is ordered); a known mismatch rules the gate out.
        undecidable = ~np.all(have, axis=1) & ~np.any(have & ~agree, axis=1)
        open_ = ~decided & ~unknown
        labels[match & open_] = gate
        decided |= match & open_
        unknown |= undecidable & open_
    labels[unknown & ~decided] = np.nan
    out[key_added] = pd.Categorical(labels, categories=[*gates, UNGATED])
    for j, m in enumerate(markers):
        out[f"{prefix}{m}_pos"] = pd.array(np.where(known[:, j], positive[:, j], None), dtype="boolean")
    if isinstance(data, AnnData):
        for col in out.columns:
            data.obs[col] = out[col].to_numpy() if col != key_added else out[col]
    return out


def _compatible(pop: str, gate, sort_gates) -> float:
    """1.0 agree, 0.0 disagree, NaN not comparable."""
    if pd.isna(gate) or pop not in sort_gates or sort_gates[pop] is None:
        return np.nan
    return float(gate in sort_gates[pop])


def agreement_table(
    obs: pd.DataFrame,
    *,
    sort_key: str = "population",
    gate_key: str = "index_gate",
    state_key: str = "hspc_state",
    sort_gates: Mapping[str, Sequence[str] | None] = DEFAULT_SORT_GATES,
    state_gates: Mapping[str, str] = DEFAULT_STATE_GATES,
    by: Sequence[str] = ("sample",),
) -> pd.DataFrame:
    """Count agreements and disagreements between sort gate, index gate and transcriptomic state.

    Three comparisons, each only where both sides are defined:

    - ``sort_index``: is the cell's index gate among those compatible with its sort gate
      (``sort_gates``)? Not comparable for cells without index-sort data or sort gates mapped
      to ``None`` (unsorted CD34+).
    - ``index_state``: does the gate of its transcriptomic state (``state_gates``) equal its index gate?
    - ``sort_state``: is the gate of its state compatible with its sort gate?

    Parameters
    ----------
    obs
        Per-cell table with ``sort_key``, ``state_key`` and (optional) ``gate_key`` columns.
    sort_gates, state_gates
        See :data:`DEFAULT_SORT_GATES`, :data:`DEFAULT_STATE_GATES`. States missing from
        ``state_gates`` are not comparable.
    by
        Grouping columns (default: one row per sample; ``()`` for one cohort row).

    Returns
    -------
    pandas.DataFrame
        One row per group: ``n_cells``, ``n_index_sorted``, ``n_ungated``, and per comparison
        ``{cmp}_n`` (comparable cells), ``{cmp}_agree``, ``{cmp}_disagree``,
        ``{cmp}_disagree_fraction`` (of comparable cells; NaN when none).
    """
    for col in [sort_key, state_key, *by]:
        if col not in obs.columns:
            raise InputError(f"the cell table has no column {col!r}.", where="agreement_table")
    pop = obs[sort_key].astype(str)
    gate = obs[gate_key] if gate_key in obs.columns else pd.Series(np.nan, index=obs.index)
    gate = gate.astype(object).where(gate.notna(), np.nan)
    state = obs[state_key].astype(object)
    state_gate = state.map(lambda s: state_gates.get(str(s), np.nan) if pd.notna(s) else np.nan)
    cmp = pd.DataFrame(index=obs.index)
    cmp["sort_index"] = [_compatible(p, g, sort_gates) for p, g in zip(pop, gate)]
    idx_known = gate.notna() & (gate != UNGATED)
    cmp["index_state"] = np.where(idx_known & state_gate.notna(), (gate == state_gate).astype(float), np.nan)
    cmp["sort_state"] = [_compatible(p, g, sort_gates) for p, g in zip(pop, state_gate)]
    frame = cmp.assign(_sorted=gate.notna().to_numpy(), _ungated=(gate == UNGATED).to_numpy())
    keys = list(by)
    grouped = frame.groupby([obs[k] for k in keys], observed=True, sort=False) if keys else [((), frame)]
    rows = []
    for key, part in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row["n_cells"] = len(part)
        row["n_index_sorted"] = int(part["_sorted"].sum())
        row["n_ungated"] = int(part["_ungated"].sum())
        for c in ("sort_index", "index_state", "sort_state"):
            v = part[c].dropna()
            row[f"{c}_n"] = len(v)
            row[f"{c}_agree"] = int(v.sum())
            row[f"{c}_disagree"] = int(len(v) - v.sum())
            row[f"{c}_disagree_fraction"] = float(1 - v.mean()) if len(v) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def gate_crosstab(
    obs: pd.DataFrame, rows: str = "population", columns: str = "index_gate", *, by: Sequence[str] = ()
) -> pd.DataFrame:
    """Long table of cell counts for each combination of two assignments (e.g. sort gate x index gate).

    Returns
    -------
    pandas.DataFrame
        Columns ``*by, rows, columns, n_cells`` (only non-empty combinations; a missing
        assignment is shown as ``"NA"``), for a TSV or a heat map.
    """
    for col in [rows, columns, *by]:
        if col not in obs.columns:
            raise InputError(f"the cell table has no column {col!r}.", where="gate_crosstab")
    frame = obs[[*by, rows, columns]].astype(object).fillna("NA").astype(str)
    return frame.groupby([*by, rows, columns], sort=True).size().rename("n_cells").reset_index()


# ---------------------------------------------------------------------------------------------
# workflow glue: config checks and the gate_cells step
# ---------------------------------------------------------------------------------------------
#: Pairs of assignments cross-tabulated by :func:`run_gates`.
CROSSTAB_PAIRS = (("population", "index_gate"), ("population", "hspc_state"), ("index_gate", "hspc_state"))


def resolve_gate_config(gates_cfg: Mapping, populations: Sequence[str]) -> dict:
    """The ``gates`` config block with its derived defaults filled in.

    ``sort_gates: null`` maps each sort gate (sample-sheet population) named like a gate of the
    hierarchy to that gate, and any other (an unsorted ``CD34`` sample) to ``None`` (not compared).
    ``state_gates: null`` is :data:`DEFAULT_STATE_GATES` restricted to gates of the hierarchy.
    """
    hierarchy = dict(gates_cfg.get("hierarchy") or DEFAULT_GATES)
    sort_gates = gates_cfg.get("sort_gates")
    if sort_gates is None:
        sort_gates = {str(p): ([str(p)] if p in hierarchy else None) for p in populations}
    state_gates = gates_cfg.get("state_gates")
    if state_gates is None:
        state_gates = {s: g for s, g in DEFAULT_STATE_GATES.items() if g in hierarchy}
    thresholds = gates_cfg.get("thresholds") or DEFAULT_THRESHOLDS
    return {
        "thresholds": dict(thresholds),
        "hierarchy": hierarchy,
        "sort_gates": dict(sort_gates),
        "state_gates": dict(state_gates),
    }


def check_gate_config(
    gates_cfg: Mapping,
    *,
    index_sort_markers: Sequence[str],
    populations: Sequence[str],
    sheet: pd.DataFrame | None = None,
    source: str = "config",
) -> dict:
    """Check the ``gates`` config block against the rest of the config and the sample sheet.

    Beyond the schema (types): every marker a gate uses is an index-sort column
    (``index_sort.markers``) and has a threshold; per-sample thresholds name index-sorted samples
    of the sheet and every one of them; ``sort_gates`` keys are declared populations and its
    values gates of the hierarchy; ``state_gates`` values are gates of the hierarchy.

    Returns
    -------
    dict
        :func:`resolve_gate_config` of the block.

    Raises
    ------
    InputError
        Naming ``source``, the key and the offending marker, sample or gate.
    """
    resolved = resolve_gate_config(gates_cfg, populations)
    hierarchy = resolved["hierarchy"]
    try:
        markers = _check_gates(hierarchy)
    except InputError as err:
        raise InputError(err.detail, path=source, where=err.where) from None
    listed = [str(m) for m in index_sort_markers]
    for gate, rule in hierarchy.items():
        for marker in rule:
            if marker not in listed:
                raise InputError(
                    f"marker {marker!r} is not an index-sort column: index_sort.markers lists {listed}. Add it "
                    "there (every index-sort table then needs the column) or drop it from the gate.",
                    path=source,
                    where=f"gates.hierarchy.{gate}",
                )
    thresholds = resolved["thresholds"]
    nested = [isinstance(v, Mapping) for v in thresholds.values()]
    if any(nested) and not all(nested):
        raise InputError(
            "mixes global {marker: intensity} and per-sample {sample: {marker: intensity}} entries; use one form.",
            path=source,
            where="gates.thresholds",
        )
    if all(nested):
        indexed = [] if sheet is None else [str(s) for s in sheet.index[sheet["index_sort"].astype(str) != ""]]
        if sheet is not None:
            unknown = [s for s in thresholds if str(s) not in indexed]
            if unknown:
                raise InputError(
                    f"per-sample thresholds for {unknown}, which are not index-sorted samples of the sheet "
                    f"(those are {indexed}).",
                    path=source,
                    where="gates.thresholds",
                )
            missing = [s for s in indexed if s not in map(str, thresholds)]
            if missing:
                raise InputError(
                    f"no thresholds for index-sorted sample(s) {missing}; give each a block or use one global "
                    "{marker: intensity} mapping.",
                    path=source,
                    where="gates.thresholds",
                )
        blocks = {str(s): t for s, t in thresholds.items()}
    else:
        blocks = {"": thresholds}
    for sample, block in blocks.items():
        where = f"gates.thresholds.{sample}" if sample else "gates.thresholds"
        absent = [m for m in markers if m not in block]
        if absent:
            raise InputError(
                f"no threshold for marker(s) {absent}, which gates.hierarchy uses; add {absent[0]}: <intensity>.",
                path=source,
                where=where,
            )
    gate_names = list(hierarchy)
    for pop, gates in resolved["sort_gates"].items():
        if str(pop) not in [str(p) for p in populations]:
            raise InputError(
                f"{pop!r} is not a declared population (populations: {list(populations)}).",
                path=source,
                where="gates.sort_gates",
            )
        if gates is not None:
            bad = [g for g in gates if g not in gate_names]
            if bad:
                raise InputError(
                    f"{bad} not gates of gates.hierarchy {gate_names}.", path=source, where=f"gates.sort_gates.{pop}"
                )
    for state, gate in resolved["state_gates"].items():
        if gate not in gate_names:
            raise InputError(
                f"state {state!r} maps to {gate!r}, which is not a gate of gates.hierarchy {gate_names}.",
                path=source,
                where="gates.state_gates",
            )
    return resolved


def check_index_sort_markers(sheet: pd.DataFrame, markers: Sequence[str], *, sheet_path: str, base: str = ".") -> None:
    """Every index-sort table of the sheet has a column for every gate marker.

    Raises :class:`InputError` naming the marker and the table (checked before any job runs; the
    tables are read again, with every configured marker, by rule read_counts).
    """
    from pathlib import Path

    from remnant.io.counts import read_index_sort

    for sample, row in sheet.iterrows():
        path = str(row.get("index_sort", "") or "")
        if not path:
            continue
        try:
            read_index_sort(Path(base) / path, markers=list(markers))
        except InputError as err:
            raise InputError(
                f"{err.detail} (sample {sample!r} of {sheet_path}; gates.hierarchy gates on {list(markers)})",
                path=err.path,
                where=err.where,
            ) from None


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
        As in :func:`gate_cells` and :func:`agreement_table` (resolved by :func:`resolve_gate_config`).
    source
        File the cells came from, for messages.

    Returns
    -------
    dict
        ``cells``: per cell ``sample, patient, timepoint, condition, technology, population,
        index_gate`` (NaN without index-sort data), ``hspc_state``, ``state_gate`` (the gate of
        the state; NaN for states ``state_gates`` does not map) and ``{prefix}{marker}_pos``.
        ``agreement``: :func:`agreement_table` per sample (with its sheet columns) and one
        ``sample="all"`` row, with a ``note`` saying what could not be compared and why.
        ``crosstab``: cell counts of each pair in :data:`CROSSTAB_PAIRS` (long:
        ``assignment_1, value_1, assignment_2, value_2, n_cells``).

    Raises
    ------
    InputError
        The cohort has index-sort columns but not one a gate needs (names the marker and ``source``).
    """
    markers = _check_gates(hierarchy)
    present = [c for c in obs.columns if c.startswith(prefix) and not c.endswith("_pos")]
    meta = [
        c
        for c in ("sample", "patient", "timepoint", "condition", "technology", "population", "hspc_state")
        if c in obs.columns
    ]
    for col in ("sample", "population", "hspc_state"):
        if col not in obs.columns:
            raise InputError(f"the cohort has no cell column {col!r}; rerun cluster_cells.", path=source)
    cells = obs[meta].copy()
    has_index_sort = bool(present)
    if has_index_sort:
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
        gated = gate_cells(obs.loc[sorted_cells], thresholds=thresholds, gates=hierarchy, prefix=prefix)
        cells["index_gate"] = pd.Categorical(
            gated["index_gate"].reindex(obs.index).astype(object), categories=[*hierarchy, UNGATED]
        )
        for m in markers:
            cells[f"{prefix}{m}_pos"] = gated[f"{prefix}{m}_pos"].reindex(obs.index).astype("boolean")
    else:
        cells["index_gate"] = pd.Categorical([np.nan] * len(obs), categories=[*hierarchy, UNGATED])
    cells["state_gate"] = (
        obs["hspc_state"].astype(object).map(lambda s: state_gates.get(str(s), np.nan) if pd.notna(s) else np.nan)
    )
    kwargs = {"sort_gates": sort_gates, "state_gates": state_gates}
    per_sample = agreement_table(cells, by=["sample"], **kwargs)
    info = cells.drop_duplicates("sample").set_index("sample")[[c for c in meta if c not in ("sample", "hspc_state")]]
    per_sample = per_sample.merge(info.reset_index(), on="sample", how="left")
    cohort = agreement_table(cells, by=(), **kwargs).assign(sample="all")
    agreement = pd.concat([per_sample, cohort], ignore_index=True)
    gated = cells["index_gate"].notna() & (cells["index_gate"].astype(object) != UNGATED)
    unmapped = (gated & cells["state_gate"].isna()).groupby(cells["sample"].astype(str)).sum()
    notes = []
    for _, row in agreement.iterrows():
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
        notes.append("; ".join(note))
    agreement["note"] = notes
    front = [
        "sample",
        *[c for c in ("patient", "timepoint", "population", "condition", "technology") if c in agreement.columns],
    ]
    agreement = agreement[front + [c for c in agreement.columns if c not in front]]
    tabs = []
    for a, b in CROSSTAB_PAIRS:
        t = gate_crosstab(cells, a, b)
        tabs.append(
            pd.DataFrame(
                {"assignment_1": a, "value_1": t[a], "assignment_2": b, "value_2": t[b], "n_cells": t["n_cells"]}
            )
        )
    return {
        "cells": cells,
        "agreement": agreement,
        "crosstab": pd.concat(tabs, ignore_index=True),
        "index_sorted": has_index_sort,
    }
