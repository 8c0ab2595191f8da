"""What the count-matrix, index-sort and sample readers share: error wording, blank cells of a
sample sheet, sparse checks, and sniffing delimited text files (plain or gzipped).

Private to :mod:`remnant.io`; the readers are :mod:`remnant.io.counts`, :mod:`remnant.io.count_tables`,
:mod:`remnant.io.tenx`, :mod:`remnant.io.index_sort` and :mod:`remnant.io.sample`.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError

#: Integer test tolerance: stored floats of integers are exact, so this only forgives text noise.
INT_TOL = 1e-6

RAW_COUNTS_HINT = (
    "remnant needs raw counts, not normalised/TPM values (estimated counts from RSEM/salmon "
    "must be rounded to integers first)"
)

#: Ensembl stable gene IDs of any species (``ENSG…`` human, ``ENSMUSG…`` mouse), optionally versioned.
ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?(_PAR_Y)?$")


def describe(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` of a library's exception, for one-line errors."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_blank(value) -> bool:
    """Whether a sample-sheet cell is empty (None, NaN, ``""``, ``NA``, ``-``, ...)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        if pd.isna(value):
            return True
    except (TypeError, ValueError):
        pass
    return str(value).strip() in ("", "NA", "na", "NaN", "nan", "None", "-")


def new_adata(**kwargs) -> anndata.AnnData:
    """AnnData without the "names are not unique" warning: duplicates are checked (and reported
    with the file name) by :func:`remnant.io.counts.read_counts`, or summed on purpose by
    :func:`remnant.io.counts.map_genes`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*names are not unique", category=UserWarning)
        return anndata.AnnData(**kwargs)


# ---- sparse checks ---------------------------------------------------------------------------
def as_csr(matrix) -> sp.csr_matrix:
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix)
    if hasattr(matrix, "to_memory"):  # backed / lazy arrays
        matrix = matrix.to_memory()
    return sp.csr_matrix(np.asarray(matrix))  # the input is dense already; CSR makes it smaller


def first_non_integer(matrix: sp.csr_matrix) -> tuple[int, int, float] | None:
    """(row, column, value) of the first stored value that is not a finite integer; None if all are."""
    data = matrix.data
    finite = np.isfinite(data)
    bad = ~finite | (np.abs(data - np.rint(np.where(finite, data, 0))) > INT_TOL)
    if not bad.any():
        return None
    k = int(np.flatnonzero(bad)[0])
    return entry(matrix, k) + (float(data[k]),)


def entry(matrix: sp.csr_matrix, k: int) -> tuple[int, int]:
    """Row and column of the k-th stored entry of a CSR matrix."""
    row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
    return row, int(matrix.indices[k])


def bad_value_message(kind: str, n: int, cell, gene, value) -> str:
    """The error for ``n`` ``kind`` ("non-finite", "negative", "non-integer") values, the first at ``cell``, ``gene``."""
    what = {
        "non-finite": "missing/non-finite (NaN or inf) value(s)",
        "negative": "negative value(s)",
        "non-integer": "non-integer value(s)",
    }[kind]
    msg = f"{n} {what}; first at cell {cell!r}, gene {gene!r} (value {value:g}). "
    if kind == "non-integer":
        return msg + RAW_COUNTS_HINT + "."
    if kind == "negative":
        return msg + "Counts cannot be negative: " + RAW_COUNTS_HINT + " (scaled/centred data is not accepted)."
    return msg + "Counts must be finite numbers; fill missing entries with 0 if they mean no reads."


# ---- delimited text ------------------------------------------------------------------------
def open_text(path: Path):
    """Text handle for a plain or gzipped file (detected by magic bytes, not the extension)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def sniff(path: Path, what: str) -> tuple[str, int, list[str], list[str] | None]:
    """Delimiter, number of lines before the data, header fields and first data row's fields.

    Leading ``#`` lines (featureCounts writes ``# Program:featureCounts …``) and blank lines are
    skipped.
    """
    try:
        with open_text(path) as handle:
            header_line = None
            n_before = 0
            for line in handle:
                n_before += 1
                if line.strip() == "" or line.startswith("#"):
                    continue
                header_line = line.rstrip("\r\n")
                break
            first = None
            for line in handle:
                if line.strip():
                    first = line.rstrip("\r\n")
                    break
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(
            f"could not read the {what} ({describe(exc)}); a gzipped file may be truncated or corrupt: re-copy it.",
            path=path,
        ) from exc
    if header_line is None:
        raise InputError(f"the {what} is empty (no header line, no rows).", path=path)
    counts = {d: header_line.count(d) for d in ("\t", ",", ";")}
    if max(counts.values()) > 0:
        # tab wins ties: gene symbols never contain tabs, but some contain commas in descriptions
        delimiter = max(("\t", ",", ";"), key=lambda d: (counts[d], d == "\t"))
    elif " " in header_line.strip():
        delimiter = " "
    else:
        delimiter = "\t"  # single column; caught below as "no data columns"
    header = split_fields(header_line, delimiter)
    first_fields = split_fields(first, delimiter) if first is not None else None
    return delimiter, n_before, header, first_fields


def split_fields(line: str, delimiter: str) -> list[str]:
    if delimiter == " ":
        return next(csv.reader([line.strip()], delimiter=" ", skipinitialspace=True))
    return next(csv.reader([line], delimiter=delimiter))


def pandas_sep(delimiter: str) -> str:
    """``sep=`` for :func:`pandas.read_csv` of a sniffed delimiter (runs of spaces are one)."""
    return r"\s+" if delimiter == " " else delimiter
