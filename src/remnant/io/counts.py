"""Reading what sorting labs produce: count matrices, index-sort tables, one sample-sheet row.

Formats (:data:`FORMATS`)
-------------------------
``h5ad``
    AnnData file. Raw counts are taken from ``.X``, else ``.raw.X``, else ``layers["counts"]``,
    whichever comes first that is integer-valued.
``10x_h5``
    CellRanger HDF5 (v3+ ``/matrix`` layout, or legacy v2 single-genome), read with
    :func:`scanpy.read_10x_h5`. Only "Gene Expression" features are kept.
``10x_mtx``
    CellRanger matrix directory (``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]``,
    ``features.tsv[.gz]`` or legacy ``genes.tsv``), read with :func:`scanpy.read_10x_mtx`.
``table`` / ``table_genes_x_cells`` / ``table_cells_x_genes``
    Delimited text (comma, tab or semicolon, sniffed; gzipped or not), as Smart-seq2 plate
    pipelines and featureCounts write them. ``table`` detects the orientation (see
    :func:`read_counts`), the explicit names force it.

Every reader returns cells x genes with ``X`` a CSR ``float32`` matrix of raw counts. Every
problem with a file is raised as :class:`remnant.errors.InputError` naming the file, the
row/field, the bad value and what to do; errors from h5py/pandas/scipy never escape bare.
Input files are only ever opened read-only.

Gene identifiers are mapped to the genome annotation (:func:`remnant.io.annotation.load_genes`)
by :func:`map_genes`; :func:`read_sample` does reading, mapping and the index-sort join for
one row of the sample sheet.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io.annotation import chromosome_rank, strip_version

logger = logging.getLogger(__name__)

#: Count-matrix formats that the sample sheet's ``format`` column may name.
FORMATS = ("h5ad", "10x_h5", "10x_mtx", "table", "table_genes_x_cells", "table_cells_x_genes")

_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
_FORMAT_HELP = (
    "allowed formats: h5ad (.h5ad), 10x_h5 (.h5), 10x_mtx (a directory holding matrix.mtx[.gz], "
    "barcodes.tsv[.gz], features.tsv[.gz]), table / table_genes_x_cells / table_cells_x_genes "
    "(.csv, .tsv, .txt, optionally .gz); the sample sheet's `format` column can name the format "
    "when the file name does not show it"
)
_RAW_COUNTS_HINT = (
    "remnant needs raw counts, not normalised/TPM values (estimated counts from RSEM/salmon "
    "must be rounded to integers first)"
)

#: Ensembl stable gene IDs of any species (``ENSG…`` human, ``ENSMUSG…`` mouse), optionally versioned.
_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?(_PAR_Y)?$")
_HUMAN_ENSEMBL_RE = re.compile(r"^ENSG\d{11}(\.\d+)?(_PAR_Y)?$")
#: Suffix that scanpy/anndata ``make_unique`` appends to repeated symbols (``MATR3-1``).
_UNIQUE_SUFFIX_RE = re.compile(r"^(.+)-\d+$")
#: Title-case symbols (``Cd34``, ``Gapdh``): the mouse/rat convention; human symbols are upper case.
_TITLE_CASE_RE = re.compile(r"^[A-Z][a-z0-9]+[a-z][a-z0-9]*$")

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
_BARCODE_COLUMNS = ("cell", "barcode", "well", "cell_id")

#: Dense values parsed per chunk when reading tables (~40 MB of float64; at least 256 rows, so a
#: wide cells x genes chunk can reach 256 x n_genes).
_CHUNK_VALUES = 5_000_000
#: Integer test tolerance: stored floats of integers are exact, so this only forgives text noise.
_INT_TOL = 1e-6


# --------------------------------------------------------------------------------------------
# format inference
# --------------------------------------------------------------------------------------------
def infer_format(path: str | PathLike) -> str:
    """Count-matrix format from a path.

    ``.h5ad`` -> ``h5ad``; ``.h5`` -> ``10x_h5``; a directory holding ``matrix.mtx[.gz]`` (or the
    ``matrix.mtx[.gz]`` file itself) -> ``10x_mtx``; ``.csv``/``.tsv``/``.txt`` (optionally
    ``.gz``) -> ``table``.

    Raises
    ------
    InputError
        The path does not exist, or its name matches none of the formats.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("count matrix does not exist; fix the `counts` path in the sample sheet.", path=path)
    if path.is_dir():
        if _find_mtx(path) is not None:
            return "10x_mtx"
        listing = sorted(p.name for p in path.iterdir())[:8]
        raise InputError(
            f"is a directory without matrix.mtx or matrix.mtx.gz (it holds {listing}); a directory "
            f"is only accepted as a 10x_mtx matrix directory. {_FORMAT_HELP}.",
            path=path,
        )
    name = path.name.lower()
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5") or name.endswith(".hdf5"):
        return "10x_h5"
    if name.endswith(("matrix.mtx", "matrix.mtx.gz")):
        return "10x_mtx"
    if name.endswith(_TABLE_SUFFIXES):
        return "table"
    raise InputError(f"cannot tell the count-matrix format from the file name; {_FORMAT_HELP}.", path=path)


def _find_mtx(directory: Path) -> Path | None:
    for name in ("matrix.mtx.gz", "matrix.mtx"):
        if (directory / name).is_file():
            return directory / name
    return None


def _check_format(fmt: str, path: Path) -> str:
    fmt = str(fmt).strip().lower()  # "10X_H5" in a hand-written sheet means 10x_h5
    if fmt not in FORMATS:
        raise InputError(f"unknown count-matrix format {fmt!r}; {_FORMAT_HELP}.", path=path, where="format")
    return fmt


# --------------------------------------------------------------------------------------------
# reading count matrices
# --------------------------------------------------------------------------------------------
def read_counts(
    path: str | PathLike,
    fmt: str | None = None,
    *,
    gene_symbols: Iterable[str] | None = None,
) -> anndata.AnnData:
    """Read a count matrix in any of :data:`FORMATS`.

    Parameters
    ----------
    path
        File (``h5ad``, ``10x_h5``, tables) or directory (``10x_mtx``).
    fmt
        One of :data:`FORMATS`; ``None`` infers it from the path (:func:`infer_format`).
    gene_symbols
        Known gene symbols (e.g. the annotation's ``gene_name``), used only by ``fmt="table"`` to
        recognise which axis holds genes when the identifiers are symbols rather than Ensembl IDs.

    Returns
    -------
    anndata.AnnData
        Cells x genes (``n_obs`` cells, ``n_vars`` features); ``X`` CSR ``float32`` raw counts
        (integer-valued, >= 0). ``obs_names`` are barcodes as in the file, ``var_names`` gene
        identifiers as in the file (for 10x formats the feature IDs); ``var["gene_ids"]`` and
        ``var["gene_symbols"]`` where the format has both. ``uns["remnant"]["read"]`` records
        path, format and reader details.

    Notes
    -----
    Table orientation with ``fmt="table"``: the genes axis is the one whose labels (the first
    column vs. the header) look like gene identifiers. First by Ensembl gene-ID pattern
    (``ENS…G`` + 11 digits): an axis with >= 50 % such labels and a larger fraction than the other
    axis is genes. Failing that, by ``gene_symbols`` (compared case-insensitively): the axis with the
    larger fraction of matching labels, if that fraction is >= 20 %. Otherwise an InputError asks
    for ``table_genes_x_cells`` / ``table_cells_x_genes``.

    featureCounts tables: leading columns ``Chr Start End Strand Length`` (and symbol / biotype
    columns such as ``gene_name``) after the gene column are annotation, not cells, and are dropped
    (a symbol column is kept as ``var["gene_symbols"]``). featureCounts names count columns after
    the BAM paths; directories and the suffix shared by all columns (``.bam``,
    ``.Aligned.sortedByCoord.out.bam``) are removed so that the barcodes are the well/cell names.

    Raises
    ------
    InputError
        Missing path; directory where a file is expected or vice versa; corrupt or truncated
        file; empty matrix; negative, non-finite or non-integer values; duplicate barcodes;
        duplicate gene identifiers in tables.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("count matrix does not exist; fix the `counts` path in the sample sheet.", path=path)
    fmt = infer_format(path) if fmt is None or _is_blank(fmt) else _check_format(fmt, path)
    if fmt == "10x_mtx":
        if path.is_file():
            if path.name.lower().endswith(("matrix.mtx", "matrix.mtx.gz")):
                path = path.parent  # the matrix file itself was named; read its directory
            else:
                raise InputError(
                    "is a file, but format 10x_mtx expects a directory holding matrix.mtx.gz, "
                    "barcodes.tsv.gz and features.tsv.gz (CellRanger filtered_feature_bc_matrix/).",
                    path=path,
                )
    elif path.is_dir():
        raise InputError(
            f"is a directory, but format {fmt} expects a file; for a CellRanger matrix directory use format 10x_mtx.",
            path=path,
        )

    info: dict = {"path": str(path), "format": fmt}
    with warnings.catch_warnings():
        # duplicate barcodes are reported below, with the file name, instead of anndata's warning
        warnings.filterwarnings("ignore", message=".*names are not unique", category=UserWarning)
        if fmt == "h5ad":
            adata = _read_h5ad(path, info)
        elif fmt == "10x_h5":
            adata = _read_10x_h5(path, info)
        elif fmt == "10x_mtx":
            adata = _read_10x_mtx(path, info)
        else:
            orientation = {
                "table": "auto",
                "table_genes_x_cells": "genes_x_cells",
                "table_cells_x_genes": "cells_x_genes",
            }[fmt]
            adata = _read_table(path, orientation, gene_symbols, info)
        adata = _finish_counts(adata, path)
    adata.uns["remnant"] = {"read": info}
    logger.info("read %s (%s): %d cells x %d features", path, fmt, adata.n_obs, adata.n_vars)
    return adata


def _new_adata(**kwargs) -> anndata.AnnData:
    """AnnData without the "names are not unique" warning: duplicates are checked (and reported
    with the file name) by :func:`_finish_counts`, or summed on purpose by :func:`map_genes`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*names are not unique", category=UserWarning)
        return anndata.AnnData(**kwargs)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- h5ad ----------------------------------------------------------------------------------
def _read_h5ad(path: Path, info: dict) -> anndata.AnnData:
    if not h5py.is_hdf5(path):
        raise InputError(
            "is not an HDF5 file, so not an .h5ad (it may be truncated, still being copied, or another "
            "format); re-copy it, or name the right format in the sample sheet's `format` column.",
            path=path,
        )
    try:
        src = anndata.read_h5ad(path)  # opens the file read-only
    except Exception as exc:  # h5py/anndata raise many types for damaged files
        raise InputError(
            f"could not read as an AnnData .h5ad file ({_describe(exc)}); the file may be truncated or "
            "corrupt: re-copy it from the source.",
            path=path,
        ) from exc

    # Candidates in order of preference; the first integer-valued one holds the raw counts.
    candidates: list[tuple[str, object, pd.Index, pd.DataFrame]] = [(".X", src.X, src.var_names, src.var)]
    if src.raw is not None:
        candidates.append((".raw.X", src.raw.X, src.raw.var_names, src.raw.var))
    if "counts" in src.layers:
        candidates.append(('layers["counts"]', src.layers["counts"], src.var_names, src.var))
    problems = []
    for name, matrix, var_names, var in candidates:
        if matrix is None:
            problems.append(f"{name} is empty")
            continue
        matrix = _as_csr(matrix)
        bad = _first_non_integer(matrix)
        if bad is None:
            info["matrix"] = name
            out_var = pd.DataFrame(index=pd.Index(np.asarray(var_names, dtype=str)))
            for col in ("gene_ids", "gene_symbols"):
                if col in var.columns:
                    out_var[col] = var[col].astype(str).to_numpy()
            out = _new_adata(X=matrix, obs=pd.DataFrame(index=src.obs_names.astype(str)), var=out_var)
            if name != ".X":
                logger.info("%s: .X is not raw counts; using %s", path, name)
            return out
        row, col, value = bad
        kind = "non-integer" if np.isfinite(value) else "non-finite"
        problems.append(
            f"{name} has {kind} value {value:g} (cell {str(src.obs_names[row])!r}, gene {str(var_names[col])!r})"
        )
    raise InputError(
        "no integer-valued count matrix found in .X, .raw.X or layers['counts']: "
        + "; ".join(problems)
        + f". {_RAW_COUNTS_HINT}; store them in .X, .raw.X or layers['counts'].",
        path=path,
    )


# ---- 10x HDF5 ------------------------------------------------------------------------------
def _read_10x_h5(path: Path, info: dict) -> anndata.AnnData:
    import scanpy as sc

    if not h5py.is_hdf5(path):
        raise InputError(
            "is not an HDF5 file (it may be truncated, still being copied, or another format); expected "
            "a CellRanger filtered_feature_bc_matrix.h5. Re-copy it, or name the right format in the "
            "sample sheet's `format` column.",
            path=path,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Variable names are not unique": we re-index below
            adata = sc.read_10x_h5(path, gex_only=False)
    except Exception as exc:
        raise InputError(
            f"could not read as a CellRanger HDF5 matrix ({_describe(exc)}); the file may be truncated "
            "or corrupt (re-copy it), or not a CellRanger feature-barcode matrix (expected groups "
            "/matrix/{barcodes,data,indices,indptr,shape,features}).",
            path=path,
        ) from exc
    return _tidy_10x(adata, path, info)


def _tidy_10x(adata: anndata.AnnData, path: Path, info: dict) -> anndata.AnnData:
    """Gene-expression features only; var_names = feature IDs (unique), symbols kept alongside."""
    if "feature_types" in adata.var.columns:
        gex = (adata.var["feature_types"].astype(str) == "Gene Expression").to_numpy()
        n_other = int((~gex).sum())
        if n_other:
            kinds = sorted(set(adata.var["feature_types"].astype(str)[~gex]))
            logger.info("%s: ignoring %d non-gene-expression features (%s)", path, n_other, ", ".join(kinds))
            info["n_other_features_dropped"] = n_other
            adata = adata[:, gex].copy()
    if "genome" in adata.var.columns:  # the reference CellRanger quantified against (GRCh38, hg19, mm10, ...)
        info["genome"] = sorted(set(adata.var["genome"].astype(str)) - {"", "nan"})
    symbols = np.asarray(adata.var_names, dtype=str)
    ids = adata.var["gene_ids"].astype(str).to_numpy() if "gene_ids" in adata.var.columns else symbols
    var = pd.DataFrame({"gene_ids": ids, "gene_symbols": symbols})
    # Feature IDs are unique in CellRanger output; probe-based (Flex) matrices repeat gene IDs,
    # then the original (probe) names stay as var_names and map_genes sums via gene_ids.
    var.index = pd.Index(ids if pd.Index(ids).is_unique else symbols)
    return _new_adata(X=adata.X, obs=pd.DataFrame(index=adata.obs_names.astype(str)), var=var)


# ---- 10x matrix directory -------------------------------------------------------------------
def _read_10x_mtx(path: Path, info: dict) -> anndata.AnnData:
    import scanpy as sc

    mtx = _find_mtx(path)
    if mtx is None:
        listing = sorted(p.name for p in path.iterdir())[:8]
        raise InputError(
            f"10x_mtx directory has no matrix.mtx.gz or matrix.mtx (it holds {listing}); point `counts` "
            "at CellRanger's filtered_feature_bc_matrix/ directory.",
            path=path,
        )
    _refuse_mixed_mtx(path)
    gz = mtx.suffix == ".gz"
    suffix = ".gz" if gz else ""
    barcodes = path / f"barcodes.tsv{suffix}"
    features = path / f"features.tsv{suffix}"
    legacy = path / "genes.tsv"
    for candidate in (path / "features.tsv.gz", path / "features.tsv", path / "genes.tsv.gz", legacy):
        if not features.is_file() and candidate.is_file():
            features = candidate
    if not barcodes.is_file():
        other = path / ("barcodes.tsv" if gz else "barcodes.tsv.gz")
        barcodes = other if other.is_file() else barcodes
    missing = [p.name for p in (barcodes, features) if not p.is_file()]
    if missing:
        raise InputError(
            f"10x_mtx directory lacks {', '.join(missing)} (needed next to {mtx.name}); copy the complete "
            "CellRanger filtered_feature_bc_matrix/ directory.",
            path=path,
        )
    standard_v3 = gz and barcodes.name == "barcodes.tsv.gz" and features.name == "features.tsv.gz"
    standard_legacy = not gz and legacy.is_file() and barcodes.name == "barcodes.tsv"
    try:
        if standard_v3 or standard_legacy:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                adata = sc.read_10x_mtx(path, var_names="gene_ids", gex_only=False, cache=False)
            adata.var["gene_ids"] = adata.var_names.astype(str)
            adata.var_names = (
                adata.var["gene_symbols"].astype(str).to_numpy() if "gene_symbols" in adata.var else adata.var_names
            )
        else:
            # Mixed compression (e.g. plain matrix.mtx with features.tsv): the same pieces scanpy
            # uses, put together by hand.
            adata = _read_mtx_by_hand(mtx, barcodes, features)
    except InputError:
        raise
    except Exception as exc:
        # Most common cause: a truncated .gz or a barcodes/features file that does not match
        # the matrix dimensions; verify both before giving up with the library's message.
        raise InputError(_mtx_diagnosis(mtx, barcodes, features, exc), path=path) from exc
    info["files"] = [mtx.name, barcodes.name, features.name]
    return _tidy_10x(adata, path, info)


#: The files that may hold each part of a 10x matrix directory (CellRanger v3+ writes the gzipped
#: ones, CellRanger 2 the plain ones with genes.tsv); a directory must hold one of each.
_MTX_PARTS = {
    "matrix": ("matrix.mtx.gz", "matrix.mtx"),
    "barcodes": ("barcodes.tsv.gz", "barcodes.tsv"),
    "features": ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"),
}


def _refuse_mixed_mtx(path: Path) -> None:
    """A 10x directory holding two versions of a part (``matrix.mtx.gz`` and ``matrix.mtx``;
    ``features.tsv.gz`` and ``genes.tsv``) is ambiguous: scanpy reads the legacy files whenever
    ``genes.tsv`` is there, whatever the log would say was read. Refuse it, naming the files."""
    doubled = [[n for n in names if (path / n).is_file()] for names in _MTX_PARTS.values()]
    doubled = [names for names in doubled if len(names) > 1]
    if doubled:
        pairs = "; ".join(" and ".join(names) for names in doubled)
        raise InputError(
            f"10x_mtx directory holds two versions of the same part ({pairs}), so which files are this sample's "
            "is ambiguous; keep one set (CellRanger v3+: matrix.mtx.gz, barcodes.tsv.gz, features.tsv.gz; CellRanger 2: "
            "matrix.mtx, barcodes.tsv, genes.tsv) and move the others out of the directory.",
            path=path,
        )


def _read_mtx_by_hand(mtx: Path, barcodes: Path, features: Path) -> anndata.AnnData:
    adata = anndata.io.read_mtx(mtx).T  # genes x cells on disk
    feats = pd.read_csv(features, sep="\t", header=None, dtype=str, keep_default_na=False)
    bcs = pd.read_csv(barcodes, sep="\t", header=None, dtype=str, keep_default_na=False)
    if len(feats) != adata.n_vars or len(bcs) != adata.n_obs:
        raise ValueError(
            f"{features.name} has {len(feats)} rows and {barcodes.name} {len(bcs)}, but the matrix is "
            f"{adata.n_vars} features x {adata.n_obs} barcodes"
        )
    adata.obs_names = bcs[0].to_numpy()
    names = feats[1] if feats.shape[1] > 1 else feats[0]
    adata.var_names = names.to_numpy()
    adata.var["gene_ids"] = feats[0].to_numpy()
    if feats.shape[1] > 2:
        adata.var["feature_types"] = feats[2].to_numpy()
    return adata


def _mtx_diagnosis(mtx: Path, barcodes: Path, features: Path, exc: Exception) -> str:
    for part in (mtx, barcodes, features):
        if part.suffix == ".gz":
            try:
                with gzip.open(part, "rb") as handle:
                    while handle.read(1 << 20):
                        pass
            except (OSError, EOFError, gzip.BadGzipFile) as gz_exc:
                return (
                    f"{part.name} is not a complete gzip file ({_describe(gz_exc)}): it is truncated or "
                    "corrupt; re-copy the CellRanger output directory."
                )
    return (
        f"could not read the 10x matrix directory ({_describe(exc)}); check that {mtx.name} is a "
        f"MatrixMarket file and that {barcodes.name} / {features.name} have one line per matrix "
        "column / row (re-copy the CellRanger filtered_feature_bc_matrix/ directory)."
    )


# ---- delimited tables -----------------------------------------------------------------------
def _open_text(path: Path):
    """Text handle for a plain or gzipped file (detected by magic bytes, not the extension)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def _sniff(path: Path, what: str) -> tuple[str, int, list[str], list[str] | None]:
    """Delimiter, number of lines before the data, header fields and first data row's fields.

    Leading ``#`` lines (featureCounts writes ``# Program:featureCounts …``) and blank lines are
    skipped.
    """
    try:
        with _open_text(path) as handle:
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
            f"could not read the {what} ({_describe(exc)}); a gzipped file may be truncated or corrupt: re-copy it.",
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
    header = _split(header_line, delimiter)
    first_fields = _split(first, delimiter) if first is not None else None
    return delimiter, n_before, header, first_fields


def _split(line: str, delimiter: str) -> list[str]:
    if delimiter == " ":
        return next(csv.reader([line.strip()], delimiter=" ", skipinitialspace=True))
    return next(csv.reader([line], delimiter=delimiter))


def _read_table(path: Path, orientation: str, gene_symbols: Iterable[str] | None, info: dict) -> anndata.AnnData:
    delimiter, n_before, header, first = _sniff(path, "count table")
    header = [h.strip() for h in header]
    if first is not None and len(first) == len(header) + 1:
        header = [""] + header  # R write.table style: the header has no name for the row-label column
    n_fields = len(header)
    if n_fields < 2:
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
    annot_names = [h.lower() for h in header[1 : 1 + n_annot]]
    is_featurecounts = all(c in annot_names for c in _FEATURECOUNTS_COLUMNS)
    data_labels = header[1 + n_annot :]
    if not data_labels:
        raise InputError(
            "count table has no count columns after the identifier/annotation columns "
            f"{header[: 1 + n_annot]}; the matrix is empty (0 cells).",
            path=path,
            where="header line",
        )

    n_data = len(data_labels)
    # ~5e6 values per chunk, but at least 256 rows: pandas' per-chunk cost grows with the number
    # of columns, so wide (cells x genes) tables need long chunks to parse in reasonable time.
    chunk_rows = max(256, _CHUNK_VALUES // n_data)
    str_cols = dict.fromkeys(range(1 + n_annot), str)
    try:
        with pd.read_csv(  # closed even when a bad value stops the loop
            path,
            sep=r"\s+" if delimiter == " " else delimiter,
            header=None,
            names=list(range(n_fields)),
            skiprows=n_before,
            dtype=str_cols,
            chunksize=chunk_rows,
            compression="gzip" if _is_gzip(path) else None,
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
                row_labels = chunk[0]
                if row_labels.isna().any():
                    i = int(np.flatnonzero(row_labels.isna().to_numpy())[0])
                    raise InputError(
                        "empty row label (first column); every row needs a gene identifier or barcode.",
                        path=path,
                        where=f"line {n_before + row_offset + i + 1}",
                    )
                row_labels = row_labels.str.strip().to_numpy(dtype=str)
                values = _numeric_block(
                    chunk, list(range(1 + n_annot, n_fields)), row_labels, data_labels, n_before + row_offset, path
                )
                bad.scan(values, row_labels, data_labels)
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
            f"could not parse the count table ({_describe(exc)}); check that every line has the same "
            "number of delimiter-separated fields as the header and, if gzipped, that the file is complete.",
            path=path,
        ) from exc

    row_names = np.concatenate(labels) if labels else np.array([], dtype=str)
    if row_names.size == 0:
        raise InputError("count table has a header but no data rows; the matrix is empty.", path=path)
    matrix = sp.vstack(blocks, format="csr")

    if orientation == "auto":
        orientation = _detect_orientation(row_names, np.asarray(data_labels, dtype=str), gene_symbols, path)
    info["orientation"] = orientation

    # A symbol or ID column next to the row labels (e.g. gene_id + gene_name) gives both identifiers.
    symbols = ids = None
    if n_annot:
        annot = pd.concat(annots)
        annot.columns = annot_names
        symbols = _first_column(annot, _SYMBOL_COLUMNS)
        ids = _first_column(annot, tuple(c for c in _ID_COLUMNS if c != header[0].lower()))
    if orientation == "genes_x_cells":
        gene_labels, cell_labels = row_names, np.asarray(data_labels, dtype=str)
        matrix = matrix.T.tocsr()
        if is_featurecounts:
            cell_labels = _featurecounts_cell_names(cell_labels, path, info)
    else:
        gene_labels, cell_labels = np.asarray(data_labels, dtype=str), row_names
        symbols = ids = None  # annotation columns describe rows, i.e. cells here; nothing to keep

    bad.raise_if_any(path, orientation)

    dup_genes = pd.Index(gene_labels)[pd.Index(gene_labels).duplicated()].unique()
    if len(dup_genes):
        raise InputError(
            f"{len(dup_genes)} gene identifier(s) appear more than once, e.g. {list(dup_genes[:5])}; "
            "each gene must have one row (sum or remove the duplicates, or use Ensembl gene IDs, "
            "which are unique).",
            path=path,
            where="gene identifiers",
        )
    var = pd.DataFrame(index=pd.Index(gene_labels))
    if symbols is not None or ids is not None:
        var["gene_ids"] = ids if ids is not None else gene_labels
        var["gene_symbols"] = symbols if symbols is not None else gene_labels
    info["featurecounts"] = bool(is_featurecounts)
    return _new_adata(X=matrix, obs=pd.DataFrame(index=pd.Index(cell_labels)), var=var)


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
    ens_rows = _fraction(rows, lambda s: bool(_ENSEMBL_RE.match(s)))
    ens_cols = _fraction(col_labels, lambda s: bool(_ENSEMBL_RE.match(s)))
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
            "non-integer": finite & (np.abs(values - np.rint(np.where(finite, values, 0))) > _INT_TOL),
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
                raise InputError(_bad_value_message(kind, self.count[kind], cell, gene, value), path=path)


def _bad_value_message(kind: str, n: int, cell, gene, value) -> str:
    what = {
        "non-finite": "missing/non-finite (NaN or inf) value(s)",
        "negative": "negative value(s)",
        "non-integer": "non-integer value(s)",
    }[kind]
    msg = f"{n} {what}; first at cell {cell!r}, gene {gene!r} (value {value:g}). "
    if kind == "non-integer":
        return msg + _RAW_COUNTS_HINT + "."
    if kind == "negative":
        return msg + "Counts cannot be negative: " + _RAW_COUNTS_HINT + " (scaled/centred data is not accepted)."
    return msg + "Counts must be finite numbers; fill missing entries with 0 if they mean no reads."


# ---- shared checks ---------------------------------------------------------------------------
def _as_csr(matrix) -> sp.csr_matrix:
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix)
    if hasattr(matrix, "to_memory"):  # backed / lazy arrays
        matrix = matrix.to_memory()
    return sp.csr_matrix(np.asarray(matrix))  # the input is dense already; CSR makes it smaller


def _first_non_integer(matrix: sp.csr_matrix) -> tuple[int, int, float] | None:
    data = matrix.data
    finite = np.isfinite(data)
    bad = ~finite | (np.abs(data - np.rint(np.where(finite, data, 0))) > _INT_TOL)
    if not bad.any():
        return None
    k = int(np.flatnonzero(bad)[0])
    return _entry(matrix, k) + (float(data[k]),)


def _entry(matrix: sp.csr_matrix, k: int) -> tuple[int, int]:
    """Row and column of the k-th stored entry of a CSR matrix."""
    row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
    return row, int(matrix.indices[k])


def _finish_counts(adata: anndata.AnnData, path: Path) -> anndata.AnnData:
    """CSR float32, string names, and the checks every format shares."""
    X = _as_csr(adata.X)
    X.sum_duplicates()
    obs_names = pd.Index(np.asarray(adata.obs_names, dtype=str))
    var_names = pd.Index(np.asarray(adata.var_names, dtype=str))
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(
            f"the count matrix is empty ({X.shape[0]} cells x {X.shape[1]} genes); check that the "
            "right (filtered, non-empty) file was given.",
            path=path,
        )
    data = X.data
    for kind, mask in (
        ("non-finite", ~np.isfinite(data)),
        ("negative", np.isfinite(data) & (data < 0)),
        ("non-integer", np.isfinite(data) & (np.abs(data - np.rint(np.where(np.isfinite(data), data, 0))) > _INT_TOL)),
    ):
        if mask.any():
            k = int(np.flatnonzero(mask)[0])
            row, col = _entry(X, k)
            raise InputError(
                _bad_value_message(kind, int(mask.sum()), obs_names[row], var_names[col], data[k]), path=path
            )
    if not obs_names.is_unique:
        dups = obs_names[obs_names.duplicated()].unique()
        raise InputError(
            f"{len(dups)} barcode(s) appear more than once, e.g. {list(dups[:5])}; every cell needs a "
            "unique barcode (were two runs concatenated? give them as separate samples).",
            path=path,
            where="barcodes",
        )
    X = X.astype(np.float32)
    X.data = np.rint(X.data)  # exact integers (tolerance above forgives only text noise)
    var = adata.var.copy()
    var.index = var_names
    return _new_adata(X=X, obs=pd.DataFrame(index=obs_names), var=var)


# --------------------------------------------------------------------------------------------
# gene mapping
# --------------------------------------------------------------------------------------------
def map_genes(
    adata: anndata.AnnData,
    genes: pd.DataFrame,
    *,
    min_mapped_fraction: float = 0.5,
    source: str = "",
) -> tuple[anndata.AnnData, dict]:
    """Map features to annotation genes (unversioned Ensembl ``gene_id``).

    Identifiers are tried both as Ensembl gene IDs (versioned or not; ``var["gene_ids"]`` when
    present, else ``var_names``) and as gene symbols (``var["gene_symbols"]`` when present, else
    ``var_names``); the interpretation that maps more features wins (ties: Ensembl). A symbol
    shared by several annotation genes maps to the protein-coding one, then the first in genome
    order. A symbol made unique by scanpy (``MATR3-1``) that is not itself a symbol maps as its
    base symbol.

    Parameters
    ----------
    adata
        Cells x features counts (CSR).
    genes
        Annotation from :func:`remnant.io.annotation.load_genes` (indexed by ``gene_id``).
    min_mapped_fraction
        Minimum fraction (0–1) of features that must map; below it an InputError is raised.
    source
        File name used in messages.

    Returns
    -------
    (anndata.AnnData, dict)
        Cells x mapped genes: ``var_names`` unversioned ``gene_id`` in genome order; ``var``
        columns ``gene_name, chromosome, start, end, arm, band, gene_type`` (from the annotation;
        ``start``/``end`` 0-based half-open bp). Unmapped features are dropped; several features
        mapping to one gene are summed. ``obs`` and ``uns`` are carried over. The stats dict has
        ``n_features, n_mapped, fraction_mapped, id_type ("ensembl"/"symbol"), n_ambiguous_symbols,
        n_summed`` (features merged into another's gene), ``n_genes`` and ``unmapped_examples``.
    """
    n_features = adata.n_vars
    var = adata.var
    ids = (
        pd.Series(var["gene_ids"] if "gene_ids" in var.columns else adata.var_names, dtype=str)
        .str.strip()
        .reset_index(drop=True)
    )
    symbols = (
        pd.Series(var["gene_symbols"] if "gene_symbols" in var.columns else adata.var_names, dtype=str)
        .str.strip()
        .reset_index(drop=True)
    )

    # Ensembl interpretation
    ens_target = strip_version(ids)
    ens_target = ens_target.where(ens_target.isin(genes.index))

    # Symbol interpretation; preferred gene per symbol: protein-coding first, then genome order
    order = genes.assign(
        _pc=(genes["gene_type"] != "protein_coding").astype(int),
        _rank=chromosome_rank(genes["chromosome"]),
    ).sort_values(["_pc", "_rank", "start", "gene_id"])
    symbol_to_id = order.drop_duplicates("gene_name", keep="first").set_index("gene_name")["gene_id"]
    n_per_symbol = genes["gene_name"].value_counts()
    sym_target = symbols.map(symbol_to_id)
    unmatched = sym_target.isna()
    if unmatched.any():
        base = symbols[unmatched].str.replace(_UNIQUE_SUFFIX_RE, r"\1", regex=True)
        sym_target[unmatched] = base.map(symbol_to_id)
    sym_used = symbols.where(
        symbols.isin(symbol_to_id.index), symbols.str.replace(_UNIQUE_SUFFIX_RE, r"\1", regex=True)
    )

    n_ens, n_sym = int(ens_target.notna().sum()), int(sym_target.notna().sum())
    if n_sym > n_ens:
        id_type, target, labels = "symbol", sym_target, symbols
        ambiguous = sym_used[sym_target.notna()].map(n_per_symbol).fillna(1) > 1
        n_ambiguous = int(ambiguous.sum())
    else:
        id_type, target, labels = "ensembl", ens_target, ids
        n_ambiguous = 0
    n_mapped = int(target.notna().sum())
    fraction = n_mapped / n_features if n_features else 0.0
    unmapped_examples = [str(s) for s in labels[target.isna()].head(5)]

    if fraction < min_mapped_fraction:
        raise InputError(
            _mapping_message(labels, fraction, n_mapped, n_features, unmapped_examples, genes, min_mapped_fraction),
            path=source or None,
        )

    # Sum features into genes with a sparse 0/1 aggregation matrix: (cells x features) @ (features x genes).
    mapped = np.flatnonzero(target.notna().to_numpy())
    gene_ids = target.iloc[mapped].to_numpy(dtype=str)
    genome = genes.loc[pd.unique(gene_ids)]
    genome = genome.assign(_rank=chromosome_rank(genome["chromosome"])).sort_values(
        ["_rank", "start", "end", "gene_id"]
    )
    out_ids = genome.index.to_numpy(dtype=str)
    column = pd.Series(np.arange(len(out_ids)), index=out_ids)[gene_ids].to_numpy()
    agg = sp.csr_matrix(
        (np.ones(len(mapped), dtype=np.float32), (mapped, column)),
        shape=(n_features, len(out_ids)),
    )
    X = (sp.csr_matrix(adata.X) @ agg).tocsr().astype(np.float32)
    out_var = genome[["gene_name", "chromosome", "start", "end", "arm", "band", "gene_type"]].copy()
    for col in ("gene_name", "chromosome", "arm", "band", "gene_type"):
        out_var[col] = out_var[col].astype(object).where(out_var[col].notna(), "").astype(str)
    out_var.index = pd.Index(out_ids)
    out = _new_adata(X=X, obs=adata.obs.copy(), var=out_var, uns=dict(adata.uns))

    stats = {
        "n_features": int(n_features),
        "n_mapped": n_mapped,
        "fraction_mapped": float(fraction),
        "id_type": id_type,
        "n_ambiguous_symbols": n_ambiguous,
        "n_summed": int(len(mapped) - len(out_ids)),
        "n_genes": int(len(out_ids)),
        "unmapped_examples": unmapped_examples,
    }
    logger.info(
        "%s: mapped %d/%d features (%.1f%%, %s) to %d genes; %d ambiguous symbols, %d features summed",
        source or "matrix",
        n_mapped,
        n_features,
        100 * fraction,
        id_type,
        len(out_ids),
        n_ambiguous,
        stats["n_summed"],
    )
    return out, stats


def _mapping_message(
    labels: pd.Series,
    fraction: float,
    n_mapped: int,
    n_features: int,
    examples: list[str],
    genes: pd.DataFrame,
    minimum: float,
) -> str:
    msg = (
        f"only {n_mapped} of {n_features} gene identifiers ({100 * fraction:.1f}%) map to the genome "
        f"annotation (at least {100 * minimum:.0f}% required); unmapped e.g. {examples}. remnant expected "
        "human GRCh38 (GENCODE/Ensembl) gene identifiers: Ensembl gene IDs (ENSG…) or HGNC symbols. "
    )
    lab = labels.astype(str)
    foreign_ens = lab[lab.str.match(_ENSEMBL_RE) & ~lab.str.match(_HUMAN_ENSEMBL_RE)]
    human_upper = set(genes["gene_name"].astype(str))
    title = lab[lab.str.match(_TITLE_CASE_RE) & ~lab.isin(human_upper) & lab.str.upper().isin(human_upper)]
    if len(foreign_ens) or len(title) > 0.1 * max(1, len(lab) - n_mapped):
        eg = list(foreign_ens.head(2)) + list(title.head(3))
        prefix = (
            "mouse (ENSMUSG) IDs"
            if lab.str.startswith("ENSMUSG").any()
            else "non-human Ensembl IDs"
            if len(foreign_ens)
            else "mouse/rat-style symbols"
        )
        msg += f"These look like {prefix} (e.g. {eg}) — another organism? "
    msg += (
        "For another genome build or organism set annotation.genes (gene table) or annotation.gtf in "
        "the config; otherwise check the `counts` path and `format` in the sample sheet."
    )
    return msg


# --------------------------------------------------------------------------------------------
# writers (simulator, tests)
# --------------------------------------------------------------------------------------------
def write_counts(adata: anndata.AnnData, path: str | PathLike, fmt: str) -> None:
    """Write raw counts (cells x genes ``adata.X``) in one of :data:`FORMATS`.

    ``h5ad``: ``X`` as CSR plus ``var`` ``gene_ids``/``gene_symbols`` columns where present.
    ``10x_h5``: CellRanger v3 layout ``/matrix/{barcodes,data,indices,indptr,shape,features/{id,
    name,feature_type,genome}}`` (readable by :func:`scanpy.read_10x_h5`). ``10x_mtx``: directory
    with ``matrix.mtx.gz``, ``barcodes.tsv.gz``, ``features.tsv.gz``. ``table`` and
    ``table_genes_x_cells``: genes x cells TSV (Smart-seq2 style, first column ``gene_id``);
    ``table_cells_x_genes``: cells x genes CSV (first column ``cell``); gzipped when ``path`` ends
    with ``.gz``.

    Feature IDs are ``var["gene_ids"]`` when present, else ``var_names``; feature names are
    ``var["gene_symbols"]`` / ``var["gene_name"]`` when present, else the IDs. Integer-valued
    counts are written as integers, other values as floats (so tests can write bad inputs).
    Output is byte-reproducible (gzip mtime 0, no HDF5 timestamps).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {FORMATS}")
    path = Path(path)
    X = _as_csr(adata.X)
    X.sort_indices()
    barcodes = np.asarray(adata.obs_names, dtype=str)
    ids = np.asarray(adata.var["gene_ids"] if "gene_ids" in adata.var.columns else adata.var_names, dtype=str)
    names = ids
    for col in ("gene_symbols", "gene_name"):
        if col in adata.var.columns:
            names = np.asarray(adata.var[col], dtype=str)
            break
    integer = X.nnz == 0 or bool(np.all(np.isfinite(X.data)) and np.all(X.data == np.rint(X.data)))

    if fmt == "h5ad":
        var = pd.DataFrame(index=pd.Index(np.asarray(adata.var_names, dtype=str)))
        for col in ("gene_ids", "gene_symbols"):
            if col in adata.var.columns:
                var[col] = np.asarray(adata.var[col], dtype=str)
        out = _new_adata(X=X.astype(np.float32), obs=pd.DataFrame(index=pd.Index(barcodes)), var=var)
        out.write_h5ad(path)
    elif fmt == "10x_h5":
        with h5py.File(path, "w", track_order=False) as f:
            m = f.create_group("matrix")
            m.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
            m.create_dataset("data", data=X.data.astype(np.int32 if integer else np.float32))
            m.create_dataset("indices", data=X.indices.astype(np.int64))
            m.create_dataset("indptr", data=X.indptr.astype(np.int64))
            m.create_dataset("shape", data=np.array([X.shape[1], X.shape[0]], dtype=np.int32))
            feat = m.create_group("features")
            feat.create_dataset("id", data=np.array(ids, dtype="S"))
            feat.create_dataset("name", data=np.array(names, dtype="S"))
            feat.create_dataset("feature_type", data=np.array(["Gene Expression"] * len(ids), dtype="S"))
            feat.create_dataset("genome", data=np.array(["GRCh38"] * len(ids), dtype="S"))
            feat.create_dataset("_all_tag_keys", data=np.array(["genome"], dtype="S"))
    elif fmt == "10x_mtx":
        path.mkdir(parents=True, exist_ok=True)
        coo = X.T.tocoo()  # genes x cells on disk; ordered by cell, then gene, like CellRanger
        order = np.lexsort((coo.row, coo.col))
        entries = pd.DataFrame(
            {
                "row": coo.row[order].astype(np.int64) + 1,  # MatrixMarket is 1-based
                "col": coo.col[order].astype(np.int64) + 1,
                "value": coo.data[order].astype(np.int64) if integer else coo.data[order].astype(np.float64),
            }
        )
        field = "integer" if integer else "real"
        with _text_out(path / "matrix.mtx.gz", gz=True) as handle:
            handle.write(f"%%MatrixMarket matrix coordinate {field} general\n")
            handle.write(f"{X.shape[1]} {X.shape[0]} {X.nnz}\n")
            entries.to_csv(
                handle, sep=" ", header=False, index=False, float_format="%.9g", na_rep="nan", lineterminator="\n"
            )
        with _text_out(path / "barcodes.tsv.gz", gz=True) as handle:
            handle.write("".join(f"{b}\n" for b in barcodes))
        with _text_out(path / "features.tsv.gz", gz=True) as handle:
            handle.write("".join(f"{i}\t{n}\tGene Expression\n" for i, n in zip(ids, names)))
    else:
        cells_x_genes = fmt == "table_cells_x_genes"
        sep = "," if cells_x_genes else "\t"
        matrix, row_labels, col_labels = (X, barcodes, ids) if cells_x_genes else (X.T.tocsr(), ids, barcodes)
        with _text_out(path, gz=path.name.endswith(".gz")) as handle:
            handle.write(sep.join(["cell" if cells_x_genes else "gene_id", *col_labels]) + "\n")
            step = max(1, 2_000_000 // max(1, matrix.shape[1]))
            for start in range(0, matrix.shape[0], step):  # dense only chunk-wise
                block = matrix[start : start + step].toarray()
                for label, row in zip(row_labels[start : start + step], block):
                    # str() of Python ints is much faster than DataFrame.to_csv on wide rows
                    values = map(str, row.astype(np.int64).tolist()) if integer else (f"{v:.9g}" for v in row.tolist())
                    handle.write(label + sep + sep.join(values) + "\n")


@contextlib.contextmanager
def _text_out(path: Path, *, gz: bool):
    """Text handle writing plain or gzip (mtime 0, no file name: byte-reproducible)."""
    with open(path, "wb") as raw:
        if gz:
            # level 1: text count matrices compress ~8x faster than at level 6 for ~25 % more bytes
            with (
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=1) as zipped,
                io.TextIOWrapper(zipped, encoding="utf-8", newline="") as handle,
            ):
                yield handle
        else:
            with io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle:
                yield handle


# --------------------------------------------------------------------------------------------
# index-sort tables
# --------------------------------------------------------------------------------------------
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
    delimiter, n_before, header, first = _sniff(path, "index-sort table")
    try:
        table = pd.read_csv(
            path,
            sep=r"\s+" if delimiter == " " else delimiter,
            skiprows=n_before - 1,
            header=0,
            dtype=str,
            compression="gzip" if _is_gzip(path) else None,
            index_col=False,
            keep_default_na=False,
        )
    except Exception as exc:
        raise InputError(
            f"could not parse the index-sort table ({_describe(exc)}); expected one row per cell with "
            "a barcode column and one numeric column per marker.",
            path=path,
        ) from exc
    table.columns = [str(c).strip() for c in table.columns]
    if table.shape[0] == 0:
        raise InputError("index-sort table has a header but no rows.", path=path)
    lower = [c.lower() for c in table.columns]
    barcode_col = next((table.columns[lower.index(n)] for n in _BARCODE_COLUMNS if n in lower), None)
    marker_like = {m.lower() for m in (markers or [])}
    if barcode_col is None:
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
        barcode_col = first_col
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

    # Which columns to return
    others = [c for c in table.columns if c != barcode_col]
    if markers:
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
        columns = chosen
    else:
        columns = {c: c for c in others}

    out = pd.DataFrame(index=pd.Index(barcodes.to_numpy(), name="barcode"))
    for name, col in columns.items():
        raw = table[col].astype(str).str.strip()
        values = pd.to_numeric(raw.replace({"": np.nan, "NA": np.nan, "NaN": np.nan, "nan": np.nan}), errors="coerce")
        offending = values.isna() & ~raw.isin(["", "NA", "NaN", "nan"])
        if offending.any():
            if not markers and offending.all():
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
    if out.shape[1] == 0:
        raise InputError(
            f"index-sort table has no numeric marker columns (columns: {list(table.columns)}).",
            path=path,
        )
    logger.info(
        "read index-sort table %s: %d cells x %d markers (%s)", path, out.shape[0], out.shape[1], ", ".join(out.columns)
    )
    return out


# --------------------------------------------------------------------------------------------
# one sample-sheet row
# --------------------------------------------------------------------------------------------
_OBS_FIELDS = ("sample", "patient", "timepoint", "population", "condition", "technology")


def _is_blank(value) -> bool:
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


def read_sample(
    row: Mapping[str, str],
    genes: pd.DataFrame,
    *,
    min_mapped_fraction: float = 0.5,
    sheet: str = "samples.tsv",
    markers: list[str] | None = None,
    base_dir: str | PathLike | None = None,
    build: str | None = None,
) -> tuple[anndata.AnnData, dict]:
    """Read, map and annotate one sample-sheet row.

    Parameters
    ----------
    row
        Sample-sheet row with keys ``sample, patient, timepoint, population, condition, counts,
        format, index_sort, technology``; ``format`` and ``index_sort`` may be empty/NA.
    genes
        Annotation (:func:`remnant.io.annotation.load_genes`).
    min_mapped_fraction
        Passed to :func:`map_genes`.
    sheet
        Sample-sheet name used in messages.
    markers
        Index-sort markers that must be present (see :func:`read_index_sort`); ``None`` keeps all
        numeric columns.
    base_dir
        Directory that relative ``counts`` / ``index_sort`` paths are relative to (default: the
        working directory).
    build
        Genome build of the annotation (config ``annotation.build``); a 10x matrix whose features
        name another reference genome (``hg19`` for GRCh38) gets a warning.

    Returns
    -------
    (anndata.AnnData, dict)
        Cells x genes (genome order). ``obs_names`` ``"{sample}:{barcode}"``; ``obs`` columns
        ``barcode`` (str), ``sample, patient, timepoint, population, condition, technology``
        (categorical), ``facs_<MARKER>`` (float; NaN for cells not in the index-sort table).
        ``uns["remnant"]["read"]`` holds the stats dict (also returned): mapping stats plus
        ``path``, ``format``, ``n_cells``, ``warnings`` (list of str) and, with an index-sort
        table, ``index_sort`` (path, ``n_rows``, ``n_matched``, ``n_unmatched``).

    Warnings (logged and listed in ``warnings``; the sample is read): a 10x reference genome other
    than ``build``; fewer than :data:`WARN_MAPPED_FRACTION` of the features mapped (above
    ``min_mapped_fraction``); index-sort rows without a cell in the matrix.

    Raises
    ------
    InputError
        Any problem with the files; the message names the sample (sheet row) and the file.
    """
    sample = "" if _is_blank(row.get("sample")) else str(row.get("sample")).strip()
    where = f"{sheet}, sample {sample!r}" if sample else f"{sheet}, row without a sample id"
    if not sample:
        raise InputError("the `sample` column is empty; every row needs a unique sample id.", where=where)
    if _is_blank(row.get("counts")):
        raise InputError("the `counts` column is empty; give the path of the count matrix.", where=where)
    base = Path(base_dir) if base_dir is not None else None

    def resolve(p) -> Path:
        p = Path(str(p).strip())
        return base / p if base is not None and not p.is_absolute() else p

    counts_path = resolve(row["counts"])
    fmt = None if _is_blank(row.get("format")) else str(row.get("format")).strip()
    try:
        adata = read_counts(counts_path, fmt, gene_symbols=genes["gene_name"])
        read_info = dict(adata.uns.get("remnant", {}).get("read", {}))
        mapped, stats = map_genes(adata, genes, min_mapped_fraction=min_mapped_fraction, source=str(counts_path))
        stats["chromosome_share"] = check_chromosomes(mapped, genes, source=str(counts_path))
    except InputError as exc:
        raise _with_sample(exc, where) from exc

    stats = {**read_info, **stats, "n_cells": int(mapped.n_obs), "warnings": []}
    stats["format"] = read_info.get("format", fmt or "")
    other_builds = [g for g in read_info.get("genome", []) if build and not same_build(g, build)]
    if other_builds:
        msg = (
            f"{counts_path} was quantified against reference genome {other_builds} (10x features' genome) but "
            f"annotation.build is {build}: genes are matched by identifier and placed at their {build} positions; "
            f"use an annotation of that build (annotation.genes or annotation.gtf) if that is not what you want"
        )
        stats["warnings"].append(msg)
        logger.warning("%s: %s", where, msg)
    if stats["fraction_mapped"] < WARN_MAPPED_FRACTION:
        msg = (
            f"only {100 * stats['fraction_mapped']:.1f}% of the {stats['n_features']} features of {counts_path} map to "
            f"the annotation (e.g. unmapped {stats['unmapped_examples'][:3]}); the rest are left out. Counts from "
            f"another genome build or annotation release? Check annotation.genes / annotation.gtf"
        )
        stats["warnings"].append(msg)
        logger.warning("%s: %s", where, msg)
    barcodes = mapped.obs_names.astype(str)

    obs = pd.DataFrame(index=pd.Index([f"{sample}:{b}" for b in barcodes]))
    obs["barcode"] = barcodes.to_numpy()
    for field in _OBS_FIELDS:
        value = "" if _is_blank(row.get(field)) else str(row.get(field)).strip()
        obs[field] = pd.Categorical([value] * len(obs))

    if not _is_blank(row.get("index_sort")):
        facs_path = resolve(row["index_sort"])
        try:
            facs = read_index_sort(facs_path, markers=markers)
        except InputError as exc:
            raise _with_sample(exc, where) from exc
        in_matrix = facs.index.isin(barcodes)
        n_matched = int(in_matrix.sum())
        if n_matched == 0:
            raise InputError(
                f"none of the {len(facs)} barcodes of the index-sort table {facs_path} (e.g. "
                f"{list(facs.index[:3])}) occurs in the count matrix {counts_path} (e.g. "
                f"{list(barcodes[:3])}); both must name cells the same way (e.g. well IDs A01…).",
                path=facs_path,
                where=where,
            )
        n_unmatched = int((~in_matrix).sum())
        if n_unmatched:
            msg = (
                f"{n_unmatched} of {len(facs)} index-sort barcodes are not in the count matrix "
                f"(e.g. {list(facs.index[~in_matrix][:3])}); they are ignored (cells failing sequencing?)"
            )
            stats["warnings"].append(msg)
            logger.warning("%s: %s", where, msg)
        joined = facs.reindex(barcodes)
        for col in facs.columns:
            obs[f"facs_{col}"] = joined[col].to_numpy(dtype=np.float64)
        stats["index_sort"] = {
            "path": str(facs_path),
            "n_rows": int(len(facs)),
            "n_matched": n_matched,
            "n_unmatched": n_unmatched,
            "markers": [str(c) for c in facs.columns],
        }

    mapped.obs = obs
    mapped.uns = {"remnant": {"read": stats}}
    logger.info(
        "sample %s: %d cells x %d genes from %s (%s), %.1f%% of features mapped",
        sample,
        mapped.n_obs,
        mapped.n_vars,
        counts_path,
        stats["format"],
        100 * stats["fraction_mapped"],
    )
    return mapped, stats


#: Below this fraction of mapped features (and above ``min_mapped_fraction``) a sample is read with a warning.
WARN_MAPPED_FRACTION = 0.9

#: A sample whose mapped counts lie more than this share on one chromosome is refused (:func:`check_chromosomes`).
MAX_CHROMOSOME_SHARE = 0.9
#: A sample must have genes on at least this fraction of the annotation's nuclear chromosomes.
MIN_CHROMOSOME_FRACTION = 0.5
#: Chromosomes of the annotation holding at least this share of its genes are those a matrix should cover.
MIN_GENES_SHARE = 0.002
_MITO = ("chrM", "chrMT", "MT", "M")


def _chromosome_label(chromosome: str) -> str:
    return chromosome[3:] if chromosome.startswith("chr") else chromosome


def check_chromosomes(mapped: anndata.AnnData, genes: pd.DataFrame, *, source: str = "") -> dict[str, float]:
    """Share of a sample's mapped counts per chromosome; refuse a matrix that covers only a few.

    A matrix subset to some chromosomes (a chr1-only test export, a filtered table) cannot be read
    for copy number: its cells would have zeros for every gene of the other chromosomes once the
    cohort is merged (genes a sample lacks count as zero), which is indistinguishable from a loss
    of them, and the lesion calls and genome-wide profile would call its cells carriers; its low
    counts would also fail QC with a message that never names the cause. So this is an error, not
    a warning.

    Parameters
    ----------
    mapped
        Cells x genes from :func:`map_genes` (``var["chromosome"]``).
    genes
        The annotation; its nuclear chromosomes (all but the mitochondrial one) are the ones a
        genome-wide matrix covers.
    source
        File name for messages.

    Returns
    -------
    dict
        Chromosome -> share of the sample's nuclear counts (genome order; chromosomes with genes).

    Raises
    ------
    InputError
        Genes on fewer than :data:`MIN_CHROMOSOME_FRACTION` of the annotation's nuclear
        chromosomes, or more than :data:`MAX_CHROMOSOME_SHARE` of the nuclear counts on one
        chromosome (names the chromosomes).
    """
    chromosomes = mapped.var["chromosome"].astype(str).to_numpy()
    totals = pd.Series(np.asarray(mapped.X.sum(axis=0, dtype=np.float64)).ravel(), index=chromosomes)
    nuclear = ~np.isin(chromosomes, _MITO)
    by_chromosome = totals[nuclear].groupby(level=0, sort=False).sum()
    by_chromosome = by_chromosome.iloc[np.argsort(chromosome_rank(pd.Series(by_chromosome.index)), kind="stable")]
    total = float(by_chromosome.sum())
    share = (by_chromosome / total) if total > 0 else by_chromosome * 0.0
    # the annotation's nuclear chromosomes; unplaced scaffolds of a GTF (a few genes each) are no chromosome to cover
    per_chromosome = genes["chromosome"].astype(str).value_counts()
    annotated = sorted(set(per_chromosome.index[per_chromosome >= MIN_GENES_SHARE * len(genes)]) - set(_MITO))
    needed = int(math.ceil(MIN_CHROMOSOME_FRACTION * len(annotated)))
    present = sorted(set(chromosomes), key=lambda c: (int(chromosome_rank([c])[0]), c))
    labels = ", ".join(_chromosome_label(c) for c in present)
    hint = (
        "remnant reads copy number against the whole genome, and genes a sample lacks would count as zeros (read as "
        "losses); give the full matrix (all genes, as CellRanger or the plate pipeline wrote it)."
    )
    if len(by_chromosome) < needed:
        raise InputError(
            f"genes from chromosome(s) {labels} only: was the matrix subset or filtered? Its {mapped.n_vars} mapped genes lie "
            f"on {len(by_chromosome)} of the annotation's {len(annotated)} nuclear chromosomes (at least {needed} expected); {hint}",
            path=source or None,
        )
    if total > 0 and share.max() > MAX_CHROMOSOME_SHARE:
        top = str(share.idxmax())
        spread = f"chromosome(s) {labels}" if len(present) <= 6 else f"{len(present)} chromosomes"
        raise InputError(
            f"{100 * share.max():.1f}% of the mapped counts are on chromosome {_chromosome_label(top)} (genes from {spread}): "
            "was the matrix subset or filtered? A genome-wide matrix spreads its counts over every chromosome (chr1, the "
            "largest, holds about 10%); give the full matrix (all genes, as CellRanger or the plate pipeline wrote it).",
            path=source or None,
        )
    return {str(k): float(v) for k, v in share.items()}


_BUILD_ALIASES = {
    "grch38": "GRCh38",
    "hg38": "GRCh38",
    "grch37": "GRCh37",
    "hg19": "GRCh37",
    "b37": "GRCh37",
    "grcm38": "GRCm38",
    "mm10": "GRCm38",
    "grcm39": "GRCm39",
    "mm39": "GRCm39",
}


def same_build(genome: str, build: str) -> bool:
    """Whether a reference name (``GRCh38-2020-A``, ``refdata-gex-GRCh38``, ``hg19``) is ``build``.

    Names that mention no known build (a custom reference) count as the same: nothing to warn about.
    """

    def canonical(name: str) -> str | None:
        found = {v for k, v in _BUILD_ALIASES.items() if re.search(rf"(?<![a-z0-9]){k}(?![0-9])", name.lower())}
        return found.pop() if len(found) == 1 else None

    a, b = canonical(genome), canonical(build)
    return a is None or b is None or a == b


def _with_sample(exc: InputError, where: str) -> InputError:
    inner = f"{where}; {exc.where}" if exc.where else where
    return InputError(exc.detail, path=exc.path, where=inner)
