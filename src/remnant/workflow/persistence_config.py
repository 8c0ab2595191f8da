"""Cross-key checks of the persistence analysis' config blocks (``gates``, ``persistence``,
``signatures``, ``pseudobulk``), run when the Snakefile is parsed (rules/common.smk).

The schema has checked types and ranges; these check what one key says about another, the sample
sheet and the shipped files, and name the config file and the key. :func:`check_config` returns
what the rules derive from the config (the resolved gates, the lesion analysed, the gene-set files,
the sheet's planned samples).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from remnant.errors import InputError
from remnant.tl.gates import DEFAULT_GATES, DEFAULT_STATE_GATES, DEFAULT_THRESHOLDS, check_gates
from remnant.tl.signatures import read_signatures, signature_path

__all__ = [
    "check_config",
    "check_gate_config",
    "check_index_sort_markers",
    "check_signature_config",
    "exclusion_regions",
    "in_config",
    "resolve_gate_config",
]

#: The config keys of the gate functions' arguments (:func:`remnant.tl.gates.gate_cells`).
GATE_KEYS = {"gates": "gates.hierarchy", "thresholds": "gates.thresholds"}


def in_config(err: InputError, keys: Mapping[str, str], *, path: str | None = None) -> InputError:
    """``err`` with its ``where`` (an argument of a library function, e.g. ``gates.HSC``) named as
    the config key (``gates.hierarchy.HSC``) by ``keys`` (``{argument: key}``); ``path``: the file
    named (default the error's own)."""
    where = err.where or ""
    head, dot, rest = where.partition(".")
    if head in keys:
        where = keys[head] + dot + rest
    return InputError(err.detail, path=err.path if path is None else path, where=where or None)


def _did_you_mean(value, levels: Sequence[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``levels`` (case ignored), else empty."""
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
        ``gates``: the resolved gates block (:func:`resolve_gate_config`);
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
    populations = [str(p) for p in config["populations"]]
    gates = check_gate_config(
        config["gates"],
        index_sort_markers=config["index_sort"]["markers"],
        populations=populations,
        sheet=sheet,
        source=source,
    )
    if check_files and sheet is not None:
        check_index_sort_markers(sheet, check_gates(gates["hierarchy"]), sheet_path=sheet_path)
    p = config["persistence"]
    names = [str(lesion["name"]) for lesion in config["lesions"]]
    lesion = p["lesion"] if p["lesion"] is not None else names[0]
    if lesion not in names:
        raise InputError(
            f"{lesion!r} is not a configured lesion (lesions: {names}).", path=source, where="persistence.lesion"
        )
    _check_design(p, [str(t) for t in config["timepoints"]], populations, list(gates["hierarchy"]), source=source)
    bands = None
    if cytobands is not None and config["signatures"].get("exclude_regions"):
        from remnant.io.annotation import load_cytobands

        bands = load_cytobands(cytobands)
    check_signature_config(config["signatures"], gene_set_dir, source=source, cytobands=bands)
    set_files = {}
    if gene_set_dir is not None:
        sig = config["signatures"]
        for name in [*sig["sets"], sig["cell_cycle"]["s"], sig["cell_cycle"]["g2m"]]:
            set_files[str(name)] = str(signature_path(name, gene_set_dir))
    planned = []
    if sheet is not None and p["population_key"] == "population":
        reference = [str(c) for c in config["conditions"]["reference"]]
        disease = sheet[~sheet["condition"].astype(str).isin(reference)]
        planned = (
            disease[["patient", "population", "timepoint"]].astype(str).drop_duplicates().to_dict(orient="records")
        )
    return {"gates": gates, "lesion": lesion, "set_files": set_files, "planned": planned}


def _check_design(
    p: Mapping, timepoints: list[str], populations: list[str], gate_names: list[str], *, source: str
) -> None:
    """The design keys of the ``persistence`` block (``p``) name declared levels, two different ones per contrast."""
    # The study's design keys are optional: null means the cohort has no such design (its contrasts
    # are then listed as not made, with the reason). A value that is not a declared level is a typo
    # or a misconfiguration: one line, with the closest declared level when there is one.
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
        else (gate_names, "gate of gates.hierarchy (persistence.population_key is " + key + ")")
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


def exclusion_regions(regions: Sequence[str] | None, cytobands: pd.DataFrame) -> list:
    """``signatures.exclude_regions`` (coordinates, band range or arm each) as lesion objects for ``exclude``."""
    from remnant.io.annotation import chromosome_arms
    from remnant.tl.lesions import parse_region

    arms = chromosome_arms(cytobands)
    out = []
    for i, region in enumerate(regions or []):
        try:
            out.append(parse_region(region, cytobands, arms, name=f"exclude_{i}"))
        except InputError as err:
            raise InputError(f"{region!r}: {err.detail}", where=f"signatures.exclude_regions[{i}]") from None
    return out


def check_signature_config(
    sig: Mapping, directory: str | Path | None, *, source: str = "config", cytobands: pd.DataFrame | None = None
) -> None:
    """Cross-key checks of the ``signatures`` block: the gene-set directory and every configured set
    exist, no set is listed twice, ``group_low < group_high``; with ``cytobands``, every
    ``exclude_regions`` entry parses. Raises :class:`InputError` naming ``source`` and the key."""
    if directory is not None:
        if not Path(directory).is_dir():
            raise InputError(
                f"{str(directory)!r} is not a directory of gene sets.", path=source, where="signatures.directory"
            )
        dupes = sorted({s for s in sig["sets"] if list(sig["sets"]).count(s) > 1})
        if dupes:
            raise InputError(f"{dupes} listed more than once.", path=source, where="signatures.sets")
        for key, names in (
            ("signatures.sets", list(sig["sets"])),
            ("signatures.cell_cycle", [sig["cell_cycle"]["s"], sig["cell_cycle"]["g2m"]]),
        ):
            try:
                read_signatures(names, directory)
            except InputError as err:
                raise InputError(err.detail, path=source if err.path is None else err.path, where=key) from None
    if not sig["group_low"] < sig["group_high"]:
        raise InputError(
            f"group_low {sig['group_low']} must be below group_high {sig['group_high']} (cells in between are "
            "left out of del vs non-del comparisons).",
            path=source,
            where="signatures.group_low",
        )
    if cytobands is not None and sig.get("exclude_regions"):
        try:
            exclusion_regions(sig["exclude_regions"], cytobands)
        except InputError as err:
            raise InputError(err.detail, path=source, where=err.where) from None


def resolve_gate_config(gates_cfg: Mapping, populations: Sequence[str]) -> dict:
    """The ``gates`` config block with its derived defaults filled in.

    ``sort_gates: null`` maps each sort gate (sample-sheet population) named like a gate of the
    hierarchy to that gate, and any other (an unsorted ``CD34`` sample) to ``None`` (not compared).
    ``state_gates: null`` is :data:`remnant.tl.gates.DEFAULT_STATE_GATES` restricted to gates of the hierarchy.
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
        markers = check_gates(hierarchy)
    except InputError as err:
        raise in_config(err, GATE_KEYS, path=source) from None
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
    _check_thresholds(resolved["thresholds"], markers, sheet, source=source)
    _check_gate_maps(resolved, populations, source=source)
    return resolved


def _check_thresholds(thresholds: Mapping, markers: list[str], sheet: pd.DataFrame | None, *, source: str) -> None:
    """``gates.thresholds``: one form (global or per sample), per-sample blocks for exactly the
    sheet's index-sorted samples, and a threshold for every marker the gates use."""
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


def _check_gate_maps(resolved: Mapping, populations: Sequence[str], *, source: str) -> None:
    """``gates.sort_gates`` maps declared populations to gates of the hierarchy; ``gates.state_gates`` maps to gates."""
    gate_names = list(resolved["hierarchy"])
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


def check_index_sort_markers(sheet: pd.DataFrame, markers: Sequence[str], *, sheet_path: str, base: str = ".") -> None:
    """Every index-sort table of the sheet has a column for every gate marker.

    Raises :class:`InputError` naming the marker and the table (checked before any job runs; the
    tables are read again, with every configured marker, by rule read_counts).
    """
    from remnant.io.index_sort import read_index_sort

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
