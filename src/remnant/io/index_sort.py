"""FACS index-sort tables: one row per sorted cell (its well or barcode), one intensity column per
marker, as sorters export them next to plate-based counts."""

from __future__ import annotations

import logging
import re
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.io._common import describe, is_gzip, pandas_sep, sniff

logger = logging.getLogger(__name__)

_BARCODE_COLUMNS = ("cell", "barcode", "well", "cell_id")
#: Entries read as "not recorded" (NaN) in an intensity column.
_MISSING = ("", "NA", "NaN", "nan")


def read_index_sort(path: str | PathLike, *, markers: list[str] | None = None) -> pd.DataFrame:
    """Read a FACS index-sort table: one row per sorted cell, one intensity column per marker.

    Parameters
    ----------
    path
        CSV/TSV (delimiter sniffed, gzipped or not). The barcode column is the first column named
        ``cell``, ``barcode``, ``well`` or ``cell_id`` (case-insensitive), else the first column.
    markers
        Markers that must be present (e.g. ``["CD34", "CD38", "CD90", "CD45RA"]``); matched exactly,
        then case-insensitively (columns are renamed to the spelling given here).

    Returns
    -------
    pandas.DataFrame
        Indexed by barcode (str, index name ``barcode``); one ``float64`` column per numeric column
        of the file (fluorescence intensities, arbitrary units; may be negative after
        compensation; empty entries are NaN). Columns holding no numbers at all (e.g. a plate name)
        are dropped; with ``markers`` only those columns are returned, in that order.

    Raises
    ------
    InputError
        Missing file, no barcode column, duplicate barcodes, a non-numeric intensity (row and
        column named), a listed marker missing (the columns present are named).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("index-sort table does not exist; fix the `index_sort` path in the sample sheet.", path=path)
    if path.is_dir():
        raise InputError("is a directory, but the index-sort table must be a CSV/TSV file.", path=path)
    table, n_before = _read_text(path)
    barcode_col = _barcode_column(table, markers, path)
    barcodes = _barcodes(table, barcode_col, path, n_before)
    columns = _marker_columns([c for c in table.columns if c != barcode_col], markers, path)
    out = _intensities(table, columns, barcodes, strict=bool(markers), path=path, n_before=n_before)
    if out.shape[1] == 0:
        raise InputError(
            f"index-sort table has no numeric marker columns (columns: {list(table.columns)}).",
            path=path,
        )
    logger.info(
        "read index-sort table %s: %d cells x %d markers (%s)", path, out.shape[0], out.shape[1], ", ".join(out.columns)
    )
    return out


def _read_text(path: Path) -> tuple[pd.DataFrame, int]:
    """Every field as str (stripped column names) and the number of lines before the data rows."""
    delimiter, n_before, _, _ = sniff(path, "index-sort table")
    try:
        table = pd.read_csv(
            path,
            sep=pandas_sep(delimiter),
            skiprows=n_before - 1,
            header=0,
            dtype=str,
            compression="gzip" if is_gzip(path) else None,
            index_col=False,
            keep_default_na=False,
        )
    except Exception as exc:
        raise InputError(
            f"could not parse the index-sort table ({describe(exc)}); expected one row per cell with "
            "a barcode column and one numeric column per marker.",
            path=path,
        ) from exc
    table.columns = [str(c).strip() for c in table.columns]
    if table.shape[0] == 0:
        raise InputError("index-sort table has a header but no rows.", path=path)
    return table, n_before


def _barcode_column(table: pd.DataFrame, markers: list[str] | None, path: Path) -> str:
    """The column named like a barcode column, else the first column unless it looks like a marker."""
    lower = [c.lower() for c in table.columns]
    barcode_col = next((table.columns[lower.index(n)] for n in _BARCODE_COLUMNS if n in lower), None)
    if barcode_col is not None:
        return barcode_col
    marker_like = {m.lower() for m in (markers or [])}
    first_col = table.columns[0]
    # The first column is not a barcode when it is a marker (listed, or a CD antigen) or holds
    # decimal intensities; integer cell numbers are accepted as barcodes.
    values = table[first_col].str.strip()
    decimals = pd.to_numeric(values, errors="coerce").notna().all() and values.str.contains(".", regex=False).any()
    if first_col.lower() in marker_like or re.match(r"^CD\d+", first_col, re.I) or decimals:
        raise InputError(
            f"no barcode column: expected a column named one of {list(_BARCODE_COLUMNS)} (or cell "
            f"barcodes / well IDs in the first column), but the first column is {first_col!r} "
            f"(columns: {list(table.columns)}).",
            path=path,
            where="header",
        )
    return first_col


def _barcodes(table: pd.DataFrame, barcode_col: str, path: Path, n_before: int) -> pd.Series:
    """The barcodes (stripped str); InputError at an empty or repeated one."""
    barcodes = table[barcode_col].astype(str).str.strip()
    if (barcodes == "").any():
        i = int(np.flatnonzero((barcodes == "").to_numpy())[0])
        raise InputError(f"empty barcode in column {barcode_col!r}.", path=path, where=f"line {n_before + i + 1}")
    if not barcodes.is_unique:
        dups = barcodes[barcodes.duplicated()].unique()
        raise InputError(
            f"{len(dups)} barcode(s) appear more than once in column {barcode_col!r}, e.g. {list(dups[:5])}; "
            "each sorted cell needs one row.",
            path=path,
        )
    return barcodes


def _marker_columns(others: list[str], markers: list[str] | None, path: Path) -> dict[str, str]:
    """{name returned: column of the file}: each of ``markers`` (exact, else case-insensitive match),
    or every column but the barcodes."""
    if not markers:
        return {c: c for c in others}
    chosen = {}
    for m in markers:
        if m in others:
            chosen[m] = m
            continue
        match = [c for c in others if c.lower() == str(m).lower()]
        if not match:
            raise InputError(
                f"marker {m!r} (listed in the config) has no column; columns present: {others}. "
                "Rename the column or fix the marker list.",
                path=path,
                where="header",
            )
        chosen[m] = match[0]
    return chosen


def _intensities(
    table: pd.DataFrame, columns: dict[str, str], barcodes: pd.Series, *, strict: bool, path: Path, n_before: int
) -> pd.DataFrame:
    """float64 intensities per barcode. A non-numeric entry is an InputError, except that without
    ``strict`` (no marker list given) a column holding no number at all is left out."""
    out = pd.DataFrame(index=pd.Index(barcodes.to_numpy(), name="barcode"))
    for name, col in columns.items():
        raw = table[col].astype(str).str.strip()
        values = pd.to_numeric(raw.replace(dict.fromkeys(_MISSING, np.nan)), errors="coerce")
        offending = values.isna() & ~raw.isin(list(_MISSING))
        if offending.any():
            if not strict and offending.all():
                logger.info("%s: ignoring non-numeric column %r", path, col)
                continue
            i = int(np.flatnonzero(offending.to_numpy())[0])
            raise InputError(
                f"non-numeric intensity {raw.iloc[i]!r} (cell {barcodes.iloc[i]!r}, column {col!r}); "
                "intensities must be numbers (leave the entry empty if it was not recorded).",
                path=path,
                where=f"line {n_before + i + 1}",
            )
        out[name] = values.to_numpy(dtype=np.float64)
    return out
