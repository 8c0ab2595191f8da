"""Count matrices as delimited text: Smart-seq2 plate tables and featureCounts output.

The reader behind :func:`remnant.io.counts.read_counts` for the ``table`` formats. A table is
comma, tab, semicolon or space separated (sniffed; gzipped or not), one row per gene and one
column per cell or the other way round (``orientation``), with optional annotation columns
(featureCounts' ``Chr Start End Strand Length``, a symbol column) after the row labels. It is
parsed in chunks of rows, each chunk kept as CSR, so a wide table is never dense as a whole.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io._common import ENSEMBL_RE, INT_TOL, bad_value_message, describe, is_gzip, new_adata, pandas_sep, sniff

logger = logging.getLogger(__name__)

#: Leading annotation columns of gene x cell tables (featureCounts writes Geneid Chr Start End
#: Strand Length before the per-BAM count columns). Compared case-insensitively.
_FEATURECOUNTS_COLUMNS = ("chr", "start", "end", "strand", "length")
_SYMBOL_COLUMNS = ("gene_name", "gene_symbol", "symbol", "genesymbol", "gene_symbols", "name")
_ID_COLUMNS = ("gene_id", "geneid", "gene_ids", "ensembl_id", "ensembl_gene_id")
_ANNOTATION_COLUMNS = (
    set(_FEATURECOUNTS_COLUMNS)
    | set(_SYMBOL_COLUMNS)
    | set(_ID_COLUMNS)
    | {
        "gene_type",
        "gene_biotype",
        "biotype",
        "description",
    }
)

#: Dense values parsed per chunk when reading tables (~40 MB of float64; at least 256 rows, so a
#: wide cells x genes chunk can reach 256 x n_genes).
_CHUNK_VALUES = 5_000_000


@dataclass
class _Layout:
    """A count table's header: where the data start and which columns are labels, annotation, counts."""

    delimiter: str
    n_before: int  # lines before the first data row
    header: list[str]  # every field, the row-label column's name first ("" when the header lacks it)
    n_annot: int  # annotation columns after the row labels
    data_labels: list[str]  # names of the count columns

    @property
    def annot_names(self) -> list[str]:
        return [h.lower() for h in self.header[1 : 1 + self.n_annot]]

    @property
    def is_featurecounts(self) -> bool:
        return all(c in self.annot_names for c in _FEATURECOUNTS_COLUMNS)


@dataclass
class _Parsed:
    """A count table's rows as read: counts (rows x count columns, CSR), row labels, annotation columns."""

    matrix: sp.csr_matrix
    row_names: np.ndarray
    annot: pd.DataFrame | None
    bad: _BadValues


def read_table(path: Path, orientation: str, gene_symbols: Iterable[str] | None, info: dict) -> anndata.AnnData:
    """A count table as cells x genes (``var["gene_ids"]``/``var["gene_symbols"]`` when the table
    has a symbol or ID column beside the gene labels).

    ``orientation`` is ``"genes_x_cells"``, ``"cells_x_genes"`` or ``"auto"`` (told from the labels:
    see :func:`remnant.io.counts.read_counts`, which uses ``gene_symbols`` for it). ``info`` gets
    ``orientation``, ``featurecounts`` and ``renamed_bam_columns``.
    """
    layout = _layout(path)
    parsed = _parse(path, layout)
    if orientation == "auto":
        orientation = _detect_orientation(
            parsed.row_names, np.asarray(layout.data_labels, dtype=str), gene_symbols, path
        )
    info["orientation"] = orientation

    # A symbol or ID column next to the row labels (e.g. gene_id + gene_name) gives both identifiers.
    symbols = ids = None
    if parsed.annot is not None:
        symbols = _first_column(parsed.annot, _SYMBOL_COLUMNS)
        ids = _first_column(parsed.annot, tuple(c for c in _ID_COLUMNS if c != layout.header[0].lower()))
    if orientation == "genes_x_cells":
        gene_labels, cell_labels = parsed.row_names, np.asarray(layout.data_labels, dtype=str)
        matrix = parsed.matrix.T.tocsr()
        if layout.is_featurecounts:
            cell_labels = _featurecounts_cell_names(cell_labels, path, info)
    else:
        gene_labels, cell_labels = np.asarray(layout.data_labels, dtype=str), parsed.row_names
        matrix = parsed.matrix
        symbols = ids = None  # annotation columns describe rows, i.e. cells here; nothing to keep

    parsed.bad.raise_if_any(path, orientation)
    _refuse_duplicate_genes(gene_labels, path)
    var = pd.DataFrame(index=pd.Index(gene_labels))
    if symbols is not None or ids is not None:
        var["gene_ids"] = ids if ids is not None else gene_labels
        var["gene_symbols"] = symbols if symbols is not None else gene_labels
    info["featurecounts"] = bool(layout.is_featurecounts)
    return new_adata(X=matrix, obs=pd.DataFrame(index=pd.Index(cell_labels)), var=var)


def _layout(path: Path) -> _Layout:
    """The header of a count table; InputError when it has no count columns."""
    delimiter, n_before, header, first = sniff(path, "count table")
    header = [h.strip() for h in header]
    if first is not None and len(first) == len(header) + 1:
        header = [""] + header  # R write.table style: the header has no name for the row-label column
    if len(header) < 2:
        raise InputError(
            "count table has a single column; expected gene identifiers plus one column per cell "
            "(or cell barcodes plus one column per gene), separated by tabs or commas.",
            path=path,
            where="header line",
        )
    # Leading annotation columns (featureCounts: Geneid Chr Start End Strand Length).
    n_annot = 0
    for name in header[1:]:
        if name.lower() in _ANNOTATION_COLUMNS:
            n_annot += 1
        else:
            break
    data_labels = header[1 + n_annot :]
    if not data_labels:
        raise InputError(
            "count table has no count columns after the identifier/annotation columns "
            f"{header[: 1 + n_annot]}; the matrix is empty (0 cells).",
            path=path,
            where="header line",
        )
    return _Layout(delimiter, n_before, header, n_annot, data_labels)


def _parse(path: Path, layout: _Layout) -> _Parsed:
    """Every row of the table in chunks: counts as CSR float32 (rounded; bad values tallied, not raised)."""
    n_fields, n_annot = len(layout.header), layout.n_annot
    # ~5e6 values per chunk, but at least 256 rows: pandas' per-chunk cost grows with the number
    # of columns, so wide (cells x genes) tables need long chunks to parse in reasonable time.
    chunk_rows = max(256, _CHUNK_VALUES // len(layout.data_labels))
    str_cols = dict.fromkeys(range(1 + n_annot), str)
    try:
        with pd.read_csv(  # closed even when a bad value stops the loop
            path,
            sep=pandas_sep(layout.delimiter),
            header=None,
            names=list(range(n_fields)),
            skiprows=layout.n_before,
            dtype=str_cols,
            chunksize=chunk_rows,
            compression="gzip" if is_gzip(path) else None,
            skip_blank_lines=True,
            engine="c",
            low_memory=False,  # we chunk ourselves; pandas' internal sub-chunks only add cost
        ) as reader:
            blocks: list[sp.csr_matrix] = []
            labels: list[np.ndarray] = []
            annots: list[pd.DataFrame] = []
            bad = _BadValues()
            row_offset = 0
            for chunk in reader:
                row_labels = _row_labels(chunk, path, layout.n_before + row_offset)
                values = _numeric_block(
                    chunk,
                    list(range(1 + n_annot, n_fields)),
                    row_labels,
                    layout.data_labels,
                    layout.n_before + row_offset,
                    path,
                )
                bad.scan(values, row_labels, layout.data_labels)
                # values are integers (checked at the end); rint removes text noise like 3.0000001
                blocks.append(sp.csr_matrix(np.rint(values).astype(np.float32)))
                labels.append(row_labels)
                if n_annot:
                    annots.append(chunk[list(range(1, 1 + n_annot))])
                row_offset += len(chunk)
    except InputError:
        raise
    except Exception as exc:  # pandas ParserError, gzip EOFError, UnicodeDecodeError, ...
        raise InputError(
            f"could not parse the count table ({describe(exc)}); check that every line has the same "
            "number of delimiter-separated fields as the header and, if gzipped, that the file is complete.",
            path=path,
        ) from exc

    row_names = np.concatenate(labels) if labels else np.array([], dtype=str)
    if row_names.size == 0:
        raise InputError("count table has a header but no data rows; the matrix is empty.", path=path)
    annot = None
    if n_annot:
        annot = pd.concat(annots)
        annot.columns = layout.annot_names
    return _Parsed(sp.vstack(blocks, format="csr"), row_names, annot, bad)


def _row_labels(chunk: pd.DataFrame, path: Path, line0: int) -> np.ndarray:
    """The first column of a chunk (stripped str); InputError at an empty one."""
    row_labels = chunk[0]
    if row_labels.isna().any():
        i = int(np.flatnonzero(row_labels.isna().to_numpy())[0])
        raise InputError(
            "empty row label (first column); every row needs a gene identifier or barcode.",
            path=path,
            where=f"line {line0 + i + 1}",
        )
    return row_labels.str.strip().to_numpy(dtype=str)


def _refuse_duplicate_genes(gene_labels: np.ndarray, path: Path) -> None:
    dup_genes = pd.Index(gene_labels)[pd.Index(gene_labels).duplicated()].unique()
    if len(dup_genes):
        raise InputError(
            f"{len(dup_genes)} gene identifier(s) appear more than once, e.g. {list(dup_genes[:5])}; "
            "each gene must have one row (sum or remove the duplicates, or use Ensembl gene IDs, "
            "which are unique).",
            path=path,
            where="gene identifiers",
        )


def _first_column(annot: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray | None:
    for col in names:
        if col in annot.columns:
            return annot[col].fillna("").astype(str).str.strip().to_numpy()
    return None


def _numeric_block(
    chunk: pd.DataFrame,
    cols: list[int],
    row_labels: np.ndarray,
    col_labels: list[str],
    line0: int,
    path: Path,
) -> np.ndarray:
    """Dense float64 values (rows x count columns) of one chunk; InputError at the first non-numeric entry."""
    block = chunk[cols]
    # Only columns the parser could not read as numbers need a closer look; found via dtypes in
    # one go because per-column access is slow on wide (cells x genes) tables.
    suspect = np.flatnonzero((block.dtypes == np.dtype(object)).to_numpy())
    if len(suspect) == 0:
        return block.to_numpy(dtype=np.float64)
    block = block.copy()
    for j in suspect:
        col = cols[j]
        parsed = pd.to_numeric(block[col], errors="coerce")
        offending = parsed.isna() & block[col].notna()
        if offending.any():
            i = int(np.flatnonzero(offending.to_numpy())[0])
            raise InputError(
                f"non-numeric value {block[col].iloc[i]!r} (row {str(row_labels[i])!r}, column "
                f"{col_labels[j]!r}); a count table must hold numbers only after its label column(s).",
                path=path,
                where=f"line {line0 + i + 1}",
            )
        block[col] = parsed
    return block.to_numpy(dtype=np.float64)


def _detect_orientation(
    row_labels: np.ndarray,
    col_labels: np.ndarray,
    gene_symbols: Iterable[str] | None,
    path: Path,
) -> str:
    rows = row_labels[:5000]
    ens_rows = _fraction(rows, lambda s: bool(ENSEMBL_RE.match(s)))
    ens_cols = _fraction(col_labels, lambda s: bool(ENSEMBL_RE.match(s)))
    if max(ens_rows, ens_cols) >= 0.5 and ens_rows != ens_cols:
        return "genes_x_cells" if ens_rows > ens_cols else "cells_x_genes"
    if gene_symbols is not None:
        known = {str(s).upper() for s in gene_symbols}
        sym_rows = _fraction(rows, lambda s: s.upper() in known)
        sym_cols = _fraction(col_labels, lambda s: s.upper() in known)
        if max(sym_rows, sym_cols) >= 0.2 and sym_rows != sym_cols:
            return "genes_x_cells" if sym_rows > sym_cols else "cells_x_genes"
    raise InputError(
        "cannot tell whether genes are rows or columns: neither the first column (e.g. "
        f"{list(row_labels[:3])}) nor the header (e.g. {list(col_labels[:3])}) looks like gene "
        "identifiers (Ensembl IDs ENSG… or known gene symbols). Set the sample sheet's `format` to "
        "table_genes_x_cells or table_cells_x_genes.",
        path=path,
    )


def _fraction(labels: np.ndarray, test) -> float:
    if len(labels) == 0:
        return 0.0
    return sum(1 for s in labels if test(str(s))) / len(labels)


def _featurecounts_cell_names(names: np.ndarray, path: Path, info: dict) -> np.ndarray:
    """``star/A01.Aligned.sortedByCoord.out.bam`` -> ``A01`` (only if the result stays unique)."""
    if not all(n.lower().endswith((".bam", ".sam")) for n in names):
        return names
    base = [re.split(r"[\\/]", n)[-1] for n in names]
    suffix = _common_suffix(base) if len(base) > 1 else base[0][-4:]
    dot = suffix.find(".")
    suffix = suffix[dot:] if dot >= 0 else ""
    cleaned = [b[: len(b) - len(suffix)] if suffix else b for b in base]
    if any(c == "" for c in cleaned) or len(set(cleaned)) != len(cleaned):
        return names
    logger.info("%s: featureCounts columns renamed from BAM paths (e.g. %s -> %s)", path, names[0], cleaned[0])
    info["renamed_bam_columns"] = True
    return np.asarray(cleaned, dtype=str)


def _common_suffix(strings: list[str]) -> str:
    reversed_prefix = []
    for chars in zip(*(s[::-1] for s in strings)):
        if len(set(chars)) != 1:
            break
        reversed_prefix.append(chars[0])
    return "".join(reversed(reversed_prefix))


class _BadValues:
    """Tally of negative / non-finite / non-integer entries over all chunks, with the first of each."""

    def __init__(self):
        self.count = {"non-finite": 0, "negative": 0, "non-integer": 0}
        self.first: dict[str, tuple] = {}

    def scan(self, values: np.ndarray, row_labels: np.ndarray, col_labels: list[str]) -> None:
        finite = np.isfinite(values)
        tests = {
            "non-finite": ~finite,
            "negative": finite & (values < 0),
            "non-integer": finite & (np.abs(values - np.rint(np.where(finite, values, 0))) > INT_TOL),
        }
        for kind, mask in tests.items():
            n = int(mask.sum())
            if n:
                self.count[kind] += n
                if kind not in self.first:
                    i, j = np.argwhere(mask)[0]
                    self.first[kind] = (str(row_labels[i]), str(col_labels[j]), float(values[i, j]))

    def raise_if_any(self, path: Path, orientation: str) -> None:
        for kind in ("non-finite", "negative", "non-integer"):
            if self.count[kind]:
                row, col, value = self.first[kind]
                gene, cell = (row, col) if orientation == "genes_x_cells" else (col, row)
                raise InputError(bad_value_message(kind, self.count[kind], cell, gene, value), path=path)
