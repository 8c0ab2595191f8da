"""The cells the persistence steps analyse, read from the cohort file without its counts.

Every step of the persistence analysis (estimate_fractions, score_signatures, compare_pseudobulk)
starts from the cohort's per-cell table after call_lesions: :func:`read_calls` reads it (and the
lesion's error rates) without the matrices, :func:`prepare_cells` leaves out the healthy donors'
cells and assigns each kept cell the population it is counted in (sort gate, index gate or
transcriptomic state, config ``persistence.population_key``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from remnant.errors import InputError

__all__ = ["POPULATION_KEYS", "prepare_cells", "read_analysed_cells", "read_calls"]

#: How a cell's population is assigned (config ``persistence.population_key``).
POPULATION_KEYS = {
    "population": "sort gate (sample sheet population)",
    "index_gate": "index gate (index-sort intensities, gates.hierarchy)",
    "state_gate": "transcriptomic state (hspc_state via gates.state_gates)",
}


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
        per-cell table of :func:`remnant.workflow.gate_cells.run_gates`, indexed by cell).

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
