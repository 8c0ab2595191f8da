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
    "check_gates",
    "gate_cells",
    "gate_crosstab",
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


def check_gates(gates: Mapping[str, Mapping[str, str]], *, where: str = "gates") -> list[str]:
    """The markers a gate hierarchy uses (in order of first use), after checking its form.

    Raises :class:`InputError` with ``where`` naming the hierarchy (``where``, ``{where}.{gate}``
    or ``{where}.{gate}.{marker}``): not a non-empty mapping, a gate named :data:`UNGATED`, a gate
    without markers, a sign other than ``+`` or ``-``.
    """
    if not isinstance(gates, Mapping) or not gates:
        raise InputError("must be a non-empty mapping {gate: {marker: '+' or '-'}}.", where=where)
    markers: list[str] = []
    for gate, rule in gates.items():
        if gate == UNGATED:
            raise InputError(f"{UNGATED!r} is reserved for cells no gate matches; rename the gate.", where=where)
        if not isinstance(rule, Mapping) or not rule:
            raise InputError(
                f"gate {gate!r} must map markers to '+' or '-', e.g. {{CD34: '+', CD38: '-'}}.",
                where=f"{where}.{gate}",
            )
        for marker, sign in rule.items():
            if sign not in ("+", "-"):
                raise InputError(
                    f"marker {marker!r}: sign {sign!r} must be '+' or '-' (quote it in YAML).",
                    where=f"{where}.{gate}.{marker}",
                )
            if marker not in markers:
                markers.append(str(marker))
    return markers


def _threshold_frame(
    thresholds, markers: list[str], samples: pd.Series | None, where: str = "thresholds"
) -> pd.DataFrame:
    """Cells x markers thresholds from a global ``{marker: value}`` or per-sample ``{sample: {marker: value}}``."""
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise InputError("must be a mapping {marker: intensity} or {sample: {marker: intensity}}.", where=where)
    per_sample = all(isinstance(v, Mapping) for v in thresholds.values())
    n = len(samples) if samples is not None else 0
    out = {}
    for marker in markers:
        if per_sample:
            if samples is None:
                raise InputError("per-sample thresholds need a sample column.", where=where)
            missing = sorted(set(samples.astype(str)) - set(map(str, thresholds)))
            if missing:
                raise InputError(
                    f"no thresholds for sample(s) {missing[:5]}; give every index-sorted sample a block or use one "
                    "global {marker: intensity} mapping.",
                    where=where,
                )
            values = {str(s): t.get(marker) for s, t in thresholds.items()}
            col = samples.astype(str).map(values).to_numpy(dtype=object)
        else:
            col = np.full(n, thresholds.get(marker), dtype=object)
        if any(v is None for v in col):
            raise InputError(
                f"no threshold for marker {marker!r}, which the gate hierarchy uses; add {marker}: <intensity>.",
                where=where,
            )
        try:
            col = col.astype(float)
        except (TypeError, ValueError):
            raise InputError(
                f"threshold of {marker!r} must be a number (index-sort intensity units).", where=where
            ) from None
        if not np.all(np.isfinite(col)):
            raise InputError(f"threshold of {marker!r} must be finite.", where=where)
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
        AnnData (intensities in ``.obs[f"{prefix}{marker}"]``, as :func:`remnant.io.sample.read_sample`
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
        Malformed gates or thresholds, or no intensity column for a marker the gates use; ``where``
        names the argument (``gates...`` or ``thresholds``).
    """
    obs = _obs(data)
    markers = check_gates(gates)
    missing = [m for m in markers if f"{prefix}{m}" not in obs.columns]
    if missing:
        raise InputError(
            f"no index-sort column(s) {[prefix + m for m in missing]} in the cell table; read the markers' "
            "intensities with the counts or drop them from the gates.",
            where="gates",
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
