"""Config and sample-sheet validation with messages that name the file, the key or row, the value
and what is allowed (the YAML reader and the schema validator: :mod:`remnant._schema`).

The JSON schemas live in ``config/schemas/`` of the workflow; these functions take their paths so
that the package does not depend on where the workflow is installed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jsonschema
import pandas as pd

from remnant._schema import load_yaml, validate_against
from remnant.errors import InputError

#: Columns of the sample sheet that must be present.
REQUIRED_COLUMNS = ["sample", "patient", "timepoint", "population", "condition", "counts"]
#: Columns that may be present (empty cells mean "infer" or "none").
OPTIONAL_COLUMNS = ["format", "technology", "index_sort", "alleles", "bam", "sites"]
#: Columns a sheet for the simulator (``demo.simulate: true``) may not fill: the simulator writes
#: the counts (and index-sort tables, cellsnp-lite folders, BAMs) under the workflow's own ``results/``
#: folder, never at a path a sheet names, so that a user's files can never be overwritten by it (issue 19).
SIMULATED_COLUMNS = ["counts", "index_sort", "alleles", "bam", "sites"]
#: Name endings of the sheet's ``bam`` column: one BAM, or a plate's manifest of one BAM per cell.
BAM_SUFFIX = ".bam"
MANIFEST_SUFFIXES = (".tsv", ".txt")
#: Where a BAM's index may sit (``{bam}`` the BAM's path, ``{stem}`` without ``.bam``), as samtools writes it.
BAM_INDEXES = ("{bam}.bai", "{bam}.csi", "{stem}.bai", "{stem}.csi")
#: The config key of the sites counted in the sheet's BAMs, named in messages.
SITES_KEY = "alleles.sites"
#: The sheet column of a patient's own sites (a VCF of its heterozygous SNPs); it wins over :data:`SITES_KEY`.
SITES_COLUMN = "sites"
#: The config key of the minimums of site discovery (rule find_sites, when alleles.sites is null).
DISCOVERY_KEY = "alleles.discovery"
#: File name (or directory name) suffix of simulated counts per format.
SIMULATED_SUFFIX = {
    "10x_h5": ".h5",
    "10x_mtx": "",
    "h5ad": ".h5ad",
    "table": ".tsv.gz",
    "table_genes_x_cells": ".tsv.gz",
    "table_cells_x_genes": ".csv",
}
#: Free-text columns users may add start with this prefix.
NOTE_PREFIX = "note"

_FORMAT_TECHNOLOGY = {
    "10x_h5": "droplet",
    "10x_mtx": "droplet",
    "h5ad": "droplet",
    "table": "plate",
    "table_genes_x_cells": "plate",
    "table_cells_x_genes": "plate",
}


def check_config_files(paths) -> None:
    """Re-read every config file snakemake loaded (``workflow.configfiles``) with :func:`load_yaml`.

    Snakemake reads ``--configfile`` (and the Snakefile's ``configfile:``) with its own YAML loader
    before remnant runs, and that loader keeps the last of two equal keys without a word; this
    reads each file again and raises :class:`InputError` for a key given twice (naming the file,
    the key and both lines), as for any other problem with the file. Keys that one file sets and
    a later file sets again are fine: that is how ``--configfile`` overrides work.
    """
    for path in paths:
        if Path(path).is_dir():
            raise InputError("is a directory; give the config file.", path=path)
        load_yaml(path)


def validate_config(config: Mapping, schema_path: str | Path, *, source: str = "config/config.yaml") -> dict:
    """Validate the workflow config; returns it with schema defaults filled in.

    Beyond the schema: timepoint and population names must be unique, and the reference
    conditions must be among the declared conditions.
    """
    if not isinstance(config, Mapping):
        raise InputError("the config must be a YAML mapping of keys to values.", path=source)
    schema = load_yaml(schema_path)
    config = validate_against(dict(config), schema, source=source)
    for key in ("timepoints",):
        values = config[key]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise InputError(f"{key}: {dupes} listed more than once; each level once, in order.", path=source)
    conditions = config["conditions"]
    unknown = [c for c in conditions["reference"] if c not in conditions["all"]]
    if unknown:
        raise InputError(
            f"conditions.reference: {unknown} not in conditions.all {conditions['all']}; add them there.",
            path=source,
        )
    check_ranges(config, source=source)
    return config


#: Pairs of config keys whose values must not cross (low, high, why), checked by :func:`check_ranges`.
RANGE_PAIRS = [
    ("qc.min_counts", "qc.max_counts", "no cell could pass QC"),
    ("qc.min_genes", "qc.max_genes", "no cell could pass QC"),
    # every detected gene has at least one count: a cell with min_genes genes has at least that many counts
    (
        "qc.min_genes",
        "qc.max_counts",
        "a cell with that many genes detected has at least as many counts, so no cell could pass QC",
    ),
]


def check_ranges(config: Mapping, *, source: str = "config") -> None:
    """Lower and upper limits that cross (``qc.min_counts`` above ``qc.max_counts``, …: see
    :data:`RANGE_PAIRS`) raise :class:`InputError` naming the file and both keys; a null limit is
    no limit."""

    def value(dotted: str):
        node = config
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    for low_key, high_key, why in RANGE_PAIRS:
        low, high = value(low_key), value(high_key)
        if low is not None and high is not None and low > high:
            raise InputError(
                f"{low_key} ({low}) is above {high_key} ({high}): {why}; lower {low_key} or raise "
                f"{high_key} (null = no limit).",
                path=source,
            )


def infer_format(counts: str) -> str:
    """Format of a counts path from its name alone (the file may not exist yet).

    ``.h5ad`` -> ``h5ad``; ``.h5`` -> ``10x_h5``; ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``)
    -> ``table``; a path without a suffix or ending in ``/`` -> ``10x_mtx`` (a directory).
    """
    name = counts.rstrip("/")
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if counts.endswith("/") or last == "":
        return "10x_mtx"
    return {".h5ad": "h5ad", ".h5": "10x_h5", ".csv": "table", ".tsv": "table", ".txt": "table"}.get(last, "")


def read_sample_sheet(path: str | Path, schema_path: str | Path, config: Mapping) -> pd.DataFrame:
    """Read and validate the sample sheet (TSV, UTF-8; ``#`` starts a comment line).

    Returns a DataFrame indexed by ``sample`` with every column of :data:`REQUIRED_COLUMNS` and
    :data:`OPTIONAL_COLUMNS` (``format`` and ``technology`` filled where inferred, ``index_sort``
    and ``alleles`` empty strings where absent). Every error names the file, the row (line number and sample)
    and the column.
    """
    path = Path(path)
    body = _sheet_lines(_sheet_text(path), path)
    simulate = bool(config.get("demo", {}).get("simulate", False))
    columns = _sheet_columns(*body[0], path, simulate)
    records, line_numbers = _sheet_records(body[1:], columns, path)
    schema = load_yaml(schema_path)
    validator = jsonschema.validators.validator_for(schema)(schema)
    declared = _Declared(
        timepoints=list(config["timepoints"]),
        populations=list(config["populations"]),
        conditions=list(config["conditions"]["all"]),
        reference=set(config["conditions"]["reference"]),
    )
    seen: dict[str, int] = {}
    for record, number in zip(records, line_numbers):
        sample = record.get("sample", "")
        where = f"line {number} (sample {sample!r})" if sample else f"line {number}"
        _check_row_schema(record, validator, path, where)
        if simulate:
            _check_simulated_row(record, path, where)
        elif not record.get("counts", ""):
            raise InputError("column 'counts' is empty; every sample needs a counts file.", path=path, where=where)
        if sample in seen:
            raise InputError(
                f"sample ID {sample!r} also on line {seen[sample]}; sample IDs must be unique.", path=path, where=where
            )
        seen[sample] = number
        _check_row_alleles(record, path, where)
        _check_row_declared(record, declared, path, where)
        _fill_format(record, path, where)
    sheet = _sheet_table(records, line_numbers, declared.reference, path)
    _check_patient_sites(sheet, path)
    return sheet


@dataclass(frozen=True)
class _Declared:
    """What the config declares that sheet rows must use."""

    timepoints: list
    populations: list
    conditions: list
    reference: set


def _sheet_text(path: Path) -> str:
    """The sheet's text (an existing UTF-8 file; a byte-order mark is dropped)."""
    if not path.exists():
        raise InputError("sample sheet does not exist; set `samples:` in the config to its path.", path=path)
    if path.is_dir():
        raise InputError("is a directory; `samples:` must name the sample sheet file (TSV).", path=path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(
            f"not UTF-8 text (line {line}, byte {err.start}); save the sheet as UTF-8.", path=path
        ) from None


def _sheet_lines(text: str, path: Path) -> list[tuple[int, str]]:
    """(line number, line) of the lines that are neither blank nor comments; the first is the header."""
    # Windows line endings are fine: drop the \r so no value ends in one.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    body = [(i + 1, line) for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise InputError("sample sheet is empty; it needs a header line and one row per sample.", path=path)
    return body


def _sheet_columns(header_line: int, header: str, path: Path, simulate: bool) -> list[str]:
    """The header's column names: tab-separated, each once, the required ones present, no unknown one."""
    columns = [c.strip() for c in header.split("\t")]
    while len(columns) > 1 and columns[-1] == "":
        columns.pop()  # trailing tabs (spreadsheet exports) name no column
    if len(columns) == 1 and ("," in header or ";" in header):
        raise InputError(
            "the header has one column; the sheet must be tab-separated (it looks comma-separated).",
            path=path,
            where=f"line {header_line}",
        )
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputError(
            f"column(s) {dupes} appear more than once in the header.", path=path, where=f"line {header_line}"
        )
    required = [c for c in REQUIRED_COLUMNS if not (simulate and c in SIMULATED_COLUMNS)]
    missing = [c for c in required if c not in columns]
    unknown = [c for c in columns if c not in known and not c.startswith(NOTE_PREFIX)]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing required column(s) {missing}")
        for col in unknown:
            close = difflib.get_close_matches(col, known, n=1)
            parts.append(f"unknown column {col!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InputError(
            "; ".join(parts) + f". Columns: required {required}, optional {OPTIONAL_COLUMNS}, "
            f"free text in columns named {NOTE_PREFIX}*.",
            path=path,
            where=f"header (line {header_line})",
        )
    return columns


def _sheet_records(rows: list[tuple[int, str]], columns: list[str], path: Path) -> tuple[list[dict], list[int]]:
    """One dict (column -> stripped text) per sample row, and the rows' line numbers."""
    records, line_numbers = [], []
    for number, line in rows:
        values = [v.strip() for v in line.split("\t")]
        while len(values) > len(columns) and values[-1] == "":
            values.pop()  # trailing tabs (spreadsheet exports) hold no value
        if len(values) != len(columns):
            raise InputError(
                f"{len(values)} tab-separated fields but the header has {len(columns)}; check for spaces used instead of tabs or a missing value.",
                path=path,
                where=f"line {number}",
            )
        records.append(dict(zip(columns, values)))
        line_numbers.append(number)
    if not records:
        raise InputError("sample sheet has a header but no samples.", path=path)
    return records, line_numbers


def _check_row_schema(record: dict, validator, path: Path, where: str) -> None:
    """The row's filled values against the sheet schema; the first problem raises."""
    row = {k: v for k, v in record.items() if v != "" and not k.startswith(NOTE_PREFIX)}
    errors = sorted(validator.iter_errors(row), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    error = errors[0]
    column = error.absolute_path[0] if error.absolute_path else None
    if error.validator == "required":
        missing_col = error.message.split("'")[1]
        raise InputError(
            f"column {missing_col!r} is empty; every sample needs a {missing_col}.", path=path, where=where
        )
    detail = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    raise InputError(
        f"column {column!r}: {error.instance!r} is not allowed ({error.message}). {detail}".strip(),
        path=path,
        where=where,
    )


def _check_row_alleles(record: dict, path: Path, where: str) -> None:
    """A row gives its allele data once: a cellsnp-lite folder (``alleles``) or reads (``bam``), not both;
    a ``bam`` value names a BAM (``.bam``) or a manifest (``.tsv``/``.txt``)."""
    if record.get("alleles", "") and record.get("bam", ""):
        raise InputError(
            f"columns 'alleles' ({record['alleles']!r}) and 'bam' ({record['bam']!r}) are both filled; give the "
            "sample's allele data once: the cellsnp-lite folder or the BAM, and leave the other cell empty.",
            path=path,
            where=where,
        )
    bam = record.get("bam", "")
    if bam and bam_kind(bam) is None:
        raise InputError(
            f"column 'bam': {bam!r} ends in neither {BAM_SUFFIX} (an indexed BAM) nor "
            f"{' / '.join(MANIFEST_SUFFIXES)} (a plate's manifest: lines cell<TAB>path/to/cell.bam); rename it.",
            path=path,
            where=where,
        )


def _check_patient_sites(sheet: pd.DataFrame, path: Path) -> None:
    """Per patient, the rows that fill column ``sites`` name one VCF (compared as normalised paths), and
    the patient has a row naming reads (column ``bam``): its sites are only used to count its BAMs."""
    named = sheet[sheet[SITES_COLUMN] != ""]
    for patient, rows in named.groupby("patient", sort=False):
        first = rows.assign(file=rows[SITES_COLUMN].map(os.path.normpath)).drop_duplicates("file")
        if len(first) > 1:
            names = ", ".join(
                f"line {n} (sample {s!r}) names {v!r}" for s, n, v in first[["sample", "line", SITES_COLUMN]].values
            )
            raise InputError(
                f"column 'sites': the rows of patient {patient!r} name different VCFs ({names}); a patient's "
                "heterozygous SNPs are one file: give the same path on each of its rows, or on one and leave the "
                "others empty.",
                path=path,
                where=f"patient {patient!r}",
            )
        if not (sheet.loc[sheet["patient"] == patient, "bam"] != "").any():
            raise InputError(
                f"column 'sites': {rows[SITES_COLUMN].iloc[0]!r} is given for patient {patient!r}, but no row of the "
                "patient names reads (column 'bam'); sites are used only to count BAMs: fill the patient's bam "
                "cells, or leave its sites cells empty.",
                path=path,
                where=f"line {rows['line'].iloc[0]} (sample {rows.index[0]!r})",
            )


def patient_sites(sheet: pd.DataFrame) -> dict[str, str]:
    """Patient -> the VCF of its heterozygous SNPs that its sheet rows name (column ``sites``, as written
    on its first row that fills it), for the patients that name one; the rows agree
    (:func:`read_sample_sheet` checked it)."""
    if SITES_COLUMN not in sheet:
        return {}
    named = sheet.loc[sheet[SITES_COLUMN] != "", ["patient", SITES_COLUMN]].drop_duplicates("patient")
    return dict(zip(named["patient"].astype(str), named[SITES_COLUMN]))


def bam_kind(path: str) -> str | None:
    """``"bam"`` for a path ending in ``.bam``, ``"manifest"`` for ``.tsv``/``.txt``, else None (case-insensitive)."""
    name = path.rstrip("/").lower()
    if name.endswith(BAM_SUFFIX):
        return "bam"
    return "manifest" if name.endswith(MANIFEST_SUFFIXES) else None


def _check_row_declared(record: dict, declared: _Declared, path: Path, where: str) -> None:
    """Condition, population and timepoint are declared in the config (a reference donor's
    timepoint may be empty or NA, which becomes empty)."""
    if record["condition"] not in declared.conditions:
        raise InputError(
            f"column 'condition': {record['condition']!r} is not declared; config conditions.all lists {declared.conditions}.",
            path=path,
            where=where,
        )
    if record["population"] not in declared.populations:
        raise InputError(
            f"column 'population': {record['population']!r} is not a declared sort gate; config populations lists {declared.populations}.",
            path=path,
            where=where,
        )
    timepoint = record["timepoint"]
    if timepoint in ("", "NA") and record["condition"] in declared.reference:
        record["timepoint"] = ""
    elif timepoint not in declared.timepoints:
        allowed = f"{declared.timepoints}" + (" (or NA for reference donors)" if declared.reference else "")
        raise InputError(
            f"column 'timepoint': {timepoint!r} is not a declared timepoint; config timepoints lists {allowed}.",
            path=path,
            where=where,
        )


def _fill_format(record: dict, path: Path, where: str) -> None:
    """``format`` (given, else from the counts path's name), ``technology`` (given, else the
    format's) and ``index_sort`` (empty where absent), in place."""
    fmt = record.get("format", "") or infer_format(record.get("counts", ""))
    if not fmt:
        raise InputError(
            f"cannot tell the format of {record['counts']!r} from its name; set column 'format' to one of {sorted(_FORMAT_TECHNOLOGY)}.",
            path=path,
            where=where,
        )
    record["format"] = fmt
    record["technology"] = record.get("technology", "") or _FORMAT_TECHNOLOGY[fmt]
    record["index_sort"] = record.get("index_sort", "")


def _sheet_table(records: list[dict], line_numbers: list[int], reference: set, path: Path) -> pd.DataFrame:
    """The checked rows as the sheet table (every optional column, ``line``); a patient with both
    reference and disease samples raises."""
    sheet = pd.DataFrame.from_records(records)
    for column in OPTIONAL_COLUMNS + SIMULATED_COLUMNS:
        if column not in sheet:
            sheet[column] = ""
    sheet["line"] = line_numbers
    patients = sheet.groupby("patient")["condition"].agg(lambda c: sorted(set(c)))
    mixed = patients[patients.map(lambda c: bool(set(c) & reference) and bool(set(c) - reference))]
    if len(mixed):
        raise InputError(
            f"patient {mixed.index[0]!r} has both reference and disease samples ({mixed.iloc[0]}); "
            "a reference donor's cells must all be normal. Use a separate patient ID for each donor.",
            path=path,
        )
    return sheet.set_index("sample", drop=False).rename_axis(None)


def _check_simulated_row(record: dict, path: Path, where: str) -> None:
    """A sheet row for the simulator names no file: the simulator would otherwise write over it."""
    for column in SIMULATED_COLUMNS:
        if record.get(column, ""):
            raise InputError(
                f"column {column!r} names {record[column]!r} but the config sets demo.simulate: true, which simulates "
                "every sample (into results/demo/inputs/) and never reads your files; to analyse your files set "
                "demo.simulate: false, for the simulated demo leave the counts, index_sort, alleles, bam and sites "
                "columns empty (demo.params.alleles says which samples get simulated allele data).",
                path=path,
                where=where,
            )
    if not record.get("format", ""):
        raise InputError(
            f"column 'format' is empty; with demo.simulate: true every sample needs the format to simulate, one of "
            f"{sorted(_FORMAT_TECHNOLOGY)}.",
            path=path,
            where=where,
        )


def simulated_paths(
    sheet: pd.DataFrame,
    index_sorted_technologies,
    *,
    allele_samples=(),
    bam_samples=(),
    folder: str = "results/demo/inputs",
) -> pd.DataFrame:
    """The sheet with the paths the simulator writes filled in (``demo.simulate: true``).

    Counts go to ``{folder}/{sample}{suffix}`` (:data:`SIMULATED_SUFFIX` by format; a directory for
    ``10x_mtx``), index-sort tables, for samples of ``index_sorted_technologies``, to
    ``{folder}/{sample}.index_sort.csv``, the cellsnp-lite folders of ``allele_samples`` to
    ``{folder}/{sample}.cellsnp`` and, for those of them also in ``bam_samples``, reads instead
    (column ``bam``, no folder): a droplet sample's BAM to ``{folder}/{sample}.bam``, a plate sample's
    manifest to ``{folder}/{sample}.bams.tsv`` (its cells' BAMs in ``{folder}/{sample}.bams/``): all
    inside the workflow's own output folder.
    """
    sheet = sheet.copy()
    with_bam = set(bam_samples) & set(allele_samples)
    with_alleles = set(allele_samples) - with_bam
    sheet["alleles"] = [f"{folder}/{s}.cellsnp" if s in with_alleles else "" for s in sheet["sample"]]
    sheet["bam"] = [
        (f"{folder}/{s}.bams.tsv" if t == "plate" else f"{folder}/{s}.bam") if s in with_bam else ""
        for s, t in zip(sheet["sample"], sheet["technology"])
    ]
    sheet["counts"] = [f"{folder}/{s}{SIMULATED_SUFFIX[f]}" for s, f in zip(sheet["sample"], sheet["format"])]
    sheet["index_sort"] = [
        f"{folder}/{s}.index_sort.csv" if t in set(index_sorted_technologies) else ""
        for s, t in zip(sheet["sample"], sheet["technology"])
    ]
    return sheet


def check_input_paths(sheet: pd.DataFrame, sheet_path: str | Path, *, base: str | Path = ".") -> None:
    """Every counts path (and index-sort path) exists and is of the right kind (file vs directory)."""
    base = Path(base)
    for sample, row in sheet.iterrows():
        where = f"line {row['line']} (sample {sample!r})"
        counts = base / row["counts"]
        if not counts.exists():
            raise InputError(
                f"column 'counts': {row['counts']!r} does not exist; fix the path (relative paths are relative to the working directory {Path(base).resolve()}).",
                path=sheet_path,
                where=where,
            )
        if row["format"] == "10x_mtx" and not counts.is_dir():
            raise InputError(
                f"column 'counts': {row['counts']!r} is a file but format 10x_mtx needs the directory holding matrix.mtx(.gz), barcodes.tsv(.gz), features.tsv(.gz).",
                path=sheet_path,
                where=where,
            )
        if row["format"] != "10x_mtx" and counts.is_dir():
            raise InputError(
                f"column 'counts': {row['counts']!r} is a directory but format {row['format']} needs a file; for a 10x mtx directory set format to 10x_mtx.",
                path=sheet_path,
                where=where,
            )
        if row["index_sort"]:
            index = base / row["index_sort"]
            if not index.is_file():
                raise InputError(
                    f"column 'index_sort': {row['index_sort']!r} is not an existing file.", path=sheet_path, where=where
                )
        if row.get("alleles", ""):
            check_alleles_folder(row["alleles"], base, sheet_path, where)
        if row.get("bam", ""):
            check_bam_input(row["bam"], base, sheet_path, where)
        if row.get(SITES_COLUMN, ""):
            check_sites_file(row[SITES_COLUMN], base, sheet_path, where)


def check_sites_file(value: str, base: Path, sheet_path: str | Path, where: str) -> None:
    """A sheet's ``sites`` value names an existing file (the patient's VCF; only read, by rule
    ``count_alleles``); else an :class:`InputError` naming the row, the column and the path."""
    path = base / value
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(
            f"column 'sites': {value!r} {what}; give the VCF (plain or bgzipped) of the patient's heterozygous "
            f"SNPs (relative paths are relative to the working directory {base.resolve()}), or leave the cell "
            "empty to use alleles.sites or the sites found in the patient's reads.",
            path=sheet_path,
            where=where,
        )


def _bam_index(bam: Path) -> Path | None:
    """The BAM's index beside it (:data:`BAM_INDEXES`), or None."""
    stem = str(bam)[: -len(BAM_SUFFIX)] if str(bam).lower().endswith(BAM_SUFFIX) else str(bam)
    found = (Path(p.format(bam=bam, stem=stem)) for p in BAM_INDEXES)
    return next((p for p in found if p.is_file()), None)


def check_bam_input(value: str, base: Path, sheet_path: str | Path, where: str) -> None:
    """A sheet's ``bam`` value names an existing BAM with its index, or a readable plate manifest whose
    every BAM exists with its index; else an :class:`InputError` naming the row, the column (and the
    manifest's cell) and what to do. Only names and the manifest are read."""
    from remnant.io.bam import read_bam_manifest

    path = base / value
    empty = "or leave the cell empty for a sample without allele data"
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(
            f"column 'bam': {value!r} {what}; give the sample's BAM file or plate manifest (relative paths are "
            f"relative to the working directory {base.resolve()}), {empty}.",
            path=sheet_path,
            where=where,
        )
    if bam_kind(value) == "bam":
        bams = {None: path}
    else:
        try:
            bams = read_bam_manifest(path)
        except InputError as err:
            raise InputError(
                f"column 'bam': the manifest {value!r}: {err.detail.rstrip('.')}"
                + (f" ({err.where})" if err.where else "")
                + "; each line is cell<TAB>path/to/cell.bam.",
                path=sheet_path,
                where=where,
            ) from None
    for cell, bam in bams.items():
        of = f" (cell {cell!r} of the manifest {value!r})" if cell is not None else ""
        if not bam.is_file():
            raise InputError(
                f"column 'bam': {str(bam)!r}{of} does not exist; fix the path (a manifest's relative paths are "
                "relative to its folder).",
                path=sheet_path,
                where=where,
            )
        if _bam_index(bam) is None:
            raise InputError(
                f"column 'bam': {str(bam)!r}{of} has no index ({Path(bam).name}.bai or .csi beside it); index it "
                "with `samtools index` (sorted by coordinate first: `samtools sort`).",
                path=sheet_path,
                where=where,
            )


def check_bam_config(
    sheet: pd.DataFrame, sites: str | None, *, discovery: dict | None = None, source: str = "config"
) -> None:
    """With a sheet row naming a BAM (column ``bam``): ``alleles.sites``, when set, names an existing VCF
    file; when null, each patient without its own VCF (column ``sites``) has its sites found in its pooled
    reads (rule ``find_sites``) and the minimums ``alleles.discovery`` must be consistent. Else an
    :class:`InputError` naming the key."""
    own = patient_sites(sheet)
    rows = (
        [s for s in sheet.index if sheet.loc[s, "bam"] and str(sheet.loc[s, "patient"]) not in own]
        if "bam" in sheet
        else []
    )
    if sites:
        _named_file(sites, SITES_KEY, source, "VCF of the SNPs to count")
    elif rows and discovery:
        depth, minor = int(discovery["min_depth"]), int(discovery["min_minor_reads"])
        if minor > depth:
            raise InputError(
                f"min_minor_reads {minor} is above min_depth {depth}, so no site could pass (the sheet names BAMs, "
                f"e.g. sample {rows[0]!r}, and alleles.sites is null: sites are found in the reads); set "
                "min_minor_reads <= min_depth.",
                path=source,
                where=DISCOVERY_KEY,
            )


def check_alleles_folder(folder: str, base: Path, sheet_path: str | Path, where: str) -> None:
    """A sheet's ``alleles`` value names a cellsnp-lite output folder holding every part
    :func:`remnant.io.alleles.read_cellsnp` needs (:data:`remnant.io.alleles.REQUIRED`); else an
    :class:`InputError` naming the sheet row, the column and what to do. Only names are looked at."""
    from remnant.io.alleles import PARTS, REQUIRED

    path = base / folder
    empty = "or leave the cell empty for a sample without allele data"
    if not path.exists():
        raise InputError(
            f"column 'alleles': {folder!r} does not exist; give the folder cellsnp-lite wrote (--outDir; relative "
            f"paths are relative to the working directory {base.resolve()}), {empty}.",
            path=sheet_path,
            where=where,
        )
    if not path.is_dir():
        raise InputError(
            f"column 'alleles': {folder!r} is a file; give the folder cellsnp-lite wrote (--outDir), holding "
            f"cellSNP.base.vcf[.gz], cellSNP.tag.AD.mtx, cellSNP.tag.DP.mtx and cellSNP.samples.tsv, {empty}.",
            path=sheet_path,
            where=where,
        )
    missing = [
        " or ".join(PARTS[part][::-1]) for part in REQUIRED if not any((path / n).is_file() for n in PARTS[part])
    ]
    if missing:
        raise InputError(
            f"column 'alleles': the cellsnp-lite folder {folder!r} lacks {'; '.join(missing)}; copy the whole folder "
            f"cellsnp-lite wrote (all files of one run), {empty}.",
            path=sheet_path,
            where=where,
        )


#: Sample-sheet columns a ``cnv.reference`` selector may name.
REFERENCE_COLUMNS = ("sample", "patient", "condition", "population", "timepoint")


def reference_cells(
    table: pd.DataFrame,
    selector: Mapping | None,
    reference_conditions,
    *,
    source: str = "config",
    key: str = "cnv.reference",
) -> pd.Series:
    """Which rows (samples of a sheet, or cells with sheet columns in obs) are normal reference.

    Parameters
    ----------
    table
        The sample sheet (indexed by sample) or a cell table carrying its columns.
    selector
        ``cnv.reference``: ``None`` selects donors whose ``condition`` is in
        ``reference_conditions``; a mapping of columns (:data:`REFERENCE_COLUMNS`) to lists of values
        selects rows matching every listed column.
    reference_conditions
        ``conditions.reference`` of the config.
    source, key
        Where the selector comes from, for error messages (file, config key).

    Returns
    -------
    Boolean Series aligned to ``table``.

    Raises
    ------
    InputError
        A value that occurs nowhere in the table (a typo would silently select no cells), or a
        selection with no row.
    """
    if selector is None:
        mask = table["condition"].astype(str).isin([str(c) for c in reference_conditions])
        what = f"condition in {list(reference_conditions)} (conditions.reference)"
    else:
        mask = pd.Series(True, index=table.index)
        for column, values in selector.items():
            if column not in REFERENCE_COLUMNS or column not in table:
                raise InputError(
                    f"cannot select reference cells by {column!r}; use {', '.join(REFERENCE_COLUMNS)}.",
                    where=f"{source}: {key}.{column}",
                )
            present = table[column].astype(str)
            values = [str(v) for v in values]
            unknown = [v for v in values if v not in set(present)]
            if unknown:
                raise InputError(
                    f"{unknown} not in the sheet's {column} column (it has {sorted(set(present))}); "
                    "fix the value or the sheet.",
                    where=f"{source}: {key}.{column}",
                )
            mask &= present.isin(values)
        what = ", ".join(f"{c} in {list(v)}" for c, v in selector.items()) + f" ({key})"
    if not mask.any():
        raise InputError(
            f"no sample matches the reference selection {what}; the lesion calls need normal "
            "reference cells (healthy donors, or a selection of cleared populations).",
            where=f"{source}: {key}",
        )
    return mask


def _named_file(path, key: str, source: str, what: str) -> Path:
    """``path`` (a config value, resolved) as an existing file, else an InputError naming the key."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{str(path)!r} does not exist; set {key} to the {what}.", path=source, where=key)
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a directory; set {key} to the {what} file.", path=source, where=key)
    return path


def check_resources(
    config: Mapping,
    *,
    genes: str | None,
    gtf: str | None,
    cytobands: str,
    markers: str,
    gene_set_dir: str | None = None,
    source: str = "config",
) -> None:
    """Check, before any job runs, the files the config names and what is defined against them.

    The annotation (``annotation.genes``, or a quick look at ``annotation.gtf``) and the cytoband
    table exist and read; every lesion region parses against the cytobands (band names exist, the
    interval lies on the chromosome), and so does the allele control region (``alleles.control_region``,
    outside every lesion); every state of ``states.use`` is in the marker table; every
    configured gene set (``signatures.sets``, ``signatures.cell_cycle``) has at least one gene
    symbol of the annotation (skipped with a GTF, which the jobs read). Paths are as resolved by the
    workflow (a config path, else the workflow's shipped copy).

    Raises
    ------
    InputError
        Naming ``source`` (the config file) and the key, or the file at fault.
    """
    from remnant.io.annotation import check_gtf, gene_symbols, load_cytobands
    from remnant.io.genesets import check_known_genes, read_markers
    from remnant.tl.lesions import parse_lesions

    annotation = config["annotation"]
    if gtf:
        check_gtf(
            _named_file(gtf, "annotation.gtf", source, "GENCODE/Ensembl GTF"),
            instead="set annotation.gtf: null to use annotation.genes",
        )
        symbols = None
    else:
        symbols = gene_symbols(
            _named_file(genes, "annotation.genes", source, "gene table (resources/annotation layout)"),
            instead="use annotation.gtf",
        )
    bands = load_cytobands(
        _named_file(cytobands, "annotation.cytobands", source, "cytoband table (UCSC cytoBand layout)")
    )
    try:
        parse_lesions(config["lesions"], bands)
        if "alleles" in config:  # the allele control region, read against the same bands
            from remnant.workflow.alleles import allele_regions

            allele_regions(config["lesions"], config["alleles"]["control_region"], bands)
    except InputError as err:
        raise InputError(
            f"{err.detail.rstrip('.')} (cytobands from {cytobands}).", path=source, where=err.where
        ) from None
    table = read_markers(_named_file(markers, "states.markers", source, "marker table (population<TAB>markers)"))
    unknown = [s for s in (config["states"]["use"] or []) if s not in table]
    if unknown:
        raise InputError(
            f"{unknown} not in the marker table {markers} (it has {list(table)}); fix the names or add "
            "the states to the table.",
            path=source,
            where="states.use",
        )
    if symbols is not None and gene_set_dir is not None:
        from remnant.tl.signatures import read_signatures, signature_path

        signatures = config["signatures"]
        for key, names in (
            ("signatures.sets", list(signatures["sets"])),
            ("signatures.cell_cycle", [signatures["cell_cycle"]["s"], signatures["cell_cycle"]["g2m"]]),
        ):
            try:
                sets = read_signatures(names, gene_set_dir)
            except InputError:
                continue  # a missing or malformed set is reported by remnant.workflow.persistence_config.check_signature_config
            for name, weights in sets.items():
                check_known_genes(
                    weights.index,
                    symbols,
                    path=signature_path(name, gene_set_dir),
                    build=f"annotation {annotation['build']}",
                    where=f"{key} ({source})",
                )


def main(argv: list[str] | None = None) -> int:
    """``python -m remnant.workflow.config FILE ...``: read each config file as snakemake's ``--configfile``
    would and print one line per file. Snakemake itself reads --configfile before remnant runs, so a
    missing, non-UTF-8 or malformed file gets its traceback; this names the file, line and fix."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m remnant.workflow.config CONFIG.yaml [...]", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            if Path(path).is_dir():
                raise InputError("is a directory; give the config file.", path=path)
            if not isinstance(load_yaml(path), Mapping):
                raise InputError("the config must be a YAML mapping of keys to values.", path=path)
            print(f"{path}: reads as a YAML mapping (the workflow checks its keys when it starts).")
        except InputError as err:
            print(f"remnant: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
