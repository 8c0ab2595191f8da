"""Count matrices: reading any format sorting labs produce, mapping genes to the annotation, writing.

Formats (:data:`FORMATS`)
-------------------------
``h5ad``
    AnnData file. Raw counts are taken from ``.X``, else ``.raw.X``, else ``layers["counts"]``,
    whichever comes first that is integer-valued.
``10x_h5``
    CellRanger HDF5 (v3+ ``/matrix`` layout, or legacy v2 single-genome), read with
    :func:`scanpy.read_10x_h5`. Only "Gene Expression" features are kept (:mod:`remnant.io.tenx`).
``10x_mtx``
    CellRanger matrix directory (``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]``,
    ``features.tsv[.gz]`` or legacy ``genes.tsv``), read with :func:`scanpy.read_10x_mtx`.
``table`` / ``table_genes_x_cells`` / ``table_cells_x_genes``
    Delimited text (comma, tab or semicolon, sniffed; gzipped or not), as Smart-seq2 plate
    pipelines and featureCounts write them (:mod:`remnant.io.count_tables`). ``table`` detects the
    orientation (see :func:`read_counts`), the explicit names force it.

Every reader returns cells x genes with ``X`` a CSR ``float32`` matrix of raw counts. Every
problem with a file is raised as :class:`remnant.errors.InputError` naming the file, the
row/field, the bad value and what to do; errors from h5py/pandas/scipy never escape bare.
Input files are only ever opened read-only.

Gene identifiers are mapped to the genome annotation (:func:`remnant.io.annotation.load_genes`)
by :func:`map_genes`. One row of the sample sheet (reading, mapping, the index-sort join) is
:func:`remnant.io.sample.read_sample`; index-sort tables are :mod:`remnant.io.index_sort`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import re
import warnings
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io._common import (
    ENSEMBL_RE,
    INT_TOL,
    RAW_COUNTS_HINT,
    as_csr,
    bad_value_message,
    describe,
    entry,
    first_non_integer,
    is_blank,
    new_adata,
)
from remnant.io.annotation import chromosome_rank, strip_version
from remnant.io.count_tables import read_table
from remnant.io.tenx import find_mtx, read_10x_h5, read_10x_mtx

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
#: Orientation of each table format (:func:`remnant.io.count_tables.read_table`).
_TABLE_ORIENTATIONS = {"table": "auto", "table_genes_x_cells": "genes_x_cells", "table_cells_x_genes": "cells_x_genes"}

_HUMAN_ENSEMBL_RE = re.compile(r"^ENSG\d{11}(\.\d+)?(_PAR_Y)?$")
#: Suffix that scanpy/anndata ``make_unique`` appends to repeated symbols (``MATR3-1``).
_UNIQUE_SUFFIX_RE = re.compile(r"^(.+)-\d+$")
#: Title-case symbols (``Cd34``, ``Gapdh``): the mouse/rat convention; human symbols are upper case.
_TITLE_CASE_RE = re.compile(r"^[A-Z][a-z0-9]+[a-z][a-z0-9]*$")

#: The last sentence of :func:`map_genes`' error when too few genes map (its ``hint``).
MAPPING_HINT = (
    "For another genome build or organism give its gene annotation as `genes`; otherwise check that the "
    "right count matrix was read."
)


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
        if find_mtx(path) is not None:
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
    path, fmt = _locate(Path(path), fmt)
    info: dict = {"path": str(path), "format": fmt}
    with warnings.catch_warnings():
        # duplicate barcodes are reported below, with the file name, instead of anndata's warning
        warnings.filterwarnings("ignore", message=".*names are not unique", category=UserWarning)
        if fmt == "h5ad":
            adata = _read_h5ad(path, info)
        elif fmt == "10x_h5":
            adata = read_10x_h5(path, info)
        elif fmt == "10x_mtx":
            adata = read_10x_mtx(path, info)
        else:
            adata = read_table(path, _TABLE_ORIENTATIONS[fmt], gene_symbols, info)
        adata = _finish_counts(adata, path)
    adata.uns["remnant"] = {"read": info}
    logger.info("read %s (%s): %d cells x %d features", path, fmt, adata.n_obs, adata.n_vars)
    return adata


def _locate(path: Path, fmt: str | None) -> tuple[Path, str]:
    """The path to read (a 10x matrix file named: its directory) and its format; InputError when
    the path is missing, or a file where the format expects a directory or the other way round."""
    if not path.exists():
        raise InputError("count matrix does not exist; fix the `counts` path in the sample sheet.", path=path)
    fmt = infer_format(path) if fmt is None or is_blank(fmt) else _check_format(fmt, path)
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
    return path, fmt


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
            f"could not read as an AnnData .h5ad file ({describe(exc)}); the file may be truncated or "
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
        matrix = as_csr(matrix)
        bad = first_non_integer(matrix)
        if bad is None:
            info["matrix"] = name
            out_var = pd.DataFrame(index=pd.Index(np.asarray(var_names, dtype=str)))
            for col in ("gene_ids", "gene_symbols"):
                if col in var.columns:
                    out_var[col] = var[col].astype(str).to_numpy()
            out = new_adata(X=matrix, obs=pd.DataFrame(index=src.obs_names.astype(str)), var=out_var)
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
        + f". {RAW_COUNTS_HINT}; store them in .X, .raw.X or layers['counts'].",
        path=path,
    )


# ---- shared checks ---------------------------------------------------------------------------
def _finish_counts(adata: anndata.AnnData, path: Path) -> anndata.AnnData:
    """CSR float32, string names, and the checks every format shares."""
    X = as_csr(adata.X)
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
        ("non-integer", np.isfinite(data) & (np.abs(data - np.rint(np.where(np.isfinite(data), data, 0))) > INT_TOL)),
    ):
        if mask.any():
            k = int(np.flatnonzero(mask)[0])
            row, col = entry(X, k)
            raise InputError(
                bad_value_message(kind, int(mask.sum()), obs_names[row], var_names[col], data[k]), path=path
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
    return new_adata(X=X, obs=pd.DataFrame(index=obs_names), var=var)


# --------------------------------------------------------------------------------------------
# gene mapping
# --------------------------------------------------------------------------------------------
def map_genes(
    adata: anndata.AnnData,
    genes: pd.DataFrame,
    *,
    min_mapped_fraction: float = 0.5,
    source: str = "",
    hint: str = MAPPING_HINT,
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
    hint
        The last sentence of that error: where another annotation is chosen (default :data:`MAPPING_HINT`).

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
    id_type, target, labels, n_ambiguous = _gene_targets(adata, genes)
    n_mapped = int(target.notna().sum())
    fraction = n_mapped / n_features if n_features else 0.0
    unmapped_examples = [str(s) for s in labels[target.isna()].head(5)]

    if fraction < min_mapped_fraction:
        raise InputError(
            _mapping_message(labels, fraction, n_mapped, n_features, unmapped_examples, genes, min_mapped_fraction)
            + hint,
            path=source or None,
        )
    out, n_summed = _sum_into_genes(adata, target, genes)
    stats = {
        "n_features": int(n_features),
        "n_mapped": n_mapped,
        "fraction_mapped": float(fraction),
        "id_type": id_type,
        "n_ambiguous_symbols": n_ambiguous,
        "n_summed": n_summed,
        "n_genes": int(out.n_vars),
        "unmapped_examples": unmapped_examples,
    }
    logger.info(
        "%s: mapped %d/%d features (%.1f%%, %s) to %d genes; %d ambiguous symbols, %d features summed",
        source or "matrix",
        n_mapped,
        n_features,
        100 * fraction,
        id_type,
        out.n_vars,
        n_ambiguous,
        stats["n_summed"],
    )
    return out, stats


def _gene_targets(adata: anndata.AnnData, genes: pd.DataFrame) -> tuple[str, pd.Series, pd.Series, int]:
    """The interpretation of the features' identifiers that maps more of them: ``(id_type, target
    gene_id per feature (NaN: unmapped), the labels as read, number of ambiguous symbols mapped)``."""
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
        ambiguous = sym_used[sym_target.notna()].map(n_per_symbol).fillna(1) > 1
        return "symbol", sym_target, symbols, int(ambiguous.sum())
    return "ensembl", ens_target, ids, 0


def _sum_into_genes(adata: anndata.AnnData, target: pd.Series, genes: pd.DataFrame) -> tuple[anndata.AnnData, int]:
    """Cells x mapped genes (genome order, annotation columns in ``var``) and the number of
    features summed into another's gene."""
    n_features = adata.n_vars
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
    out = new_adata(X=X, obs=adata.obs.copy(), var=out_var, uns=dict(adata.uns))
    return out, int(len(mapped) - len(out_ids))


def _mapping_message(
    labels: pd.Series,
    fraction: float,
    n_mapped: int,
    n_features: int,
    examples: list[str],
    genes: pd.DataFrame,
    minimum: float,
) -> str:
    """The error when too few features map, up to its last sentence (the caller's hint)."""
    msg = (
        f"only {n_mapped} of {n_features} gene identifiers ({100 * fraction:.1f}%) map to the genome "
        f"annotation (at least {100 * minimum:.0f}% required); unmapped e.g. {examples}. remnant expected "
        "human GRCh38 (GENCODE/Ensembl) gene identifiers: Ensembl gene IDs (ENSG…) or HGNC symbols. "
    )
    lab = labels.astype(str)
    foreign_ens = lab[lab.str.match(ENSEMBL_RE) & ~lab.str.match(_HUMAN_ENSEMBL_RE)]
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
    X = as_csr(adata.X)
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
        _write_h5ad(adata, X, barcodes, path)
    elif fmt == "10x_h5":
        _write_10x_h5(X, barcodes, ids, names, integer, path)
    elif fmt == "10x_mtx":
        _write_10x_mtx(X, barcodes, ids, names, integer, path)
    else:
        _write_table(X, barcodes, ids, integer, path, cells_x_genes=fmt == "table_cells_x_genes")


def _write_h5ad(adata: anndata.AnnData, X: sp.csr_matrix, barcodes: np.ndarray, path: Path) -> None:
    var = pd.DataFrame(index=pd.Index(np.asarray(adata.var_names, dtype=str)))
    for col in ("gene_ids", "gene_symbols"):
        if col in adata.var.columns:
            var[col] = np.asarray(adata.var[col], dtype=str)
    out = new_adata(X=X.astype(np.float32), obs=pd.DataFrame(index=pd.Index(barcodes)), var=var)
    out.write_h5ad(path)


def _write_10x_h5(
    X: sp.csr_matrix, barcodes: np.ndarray, ids: np.ndarray, names: np.ndarray, integer: bool, path: Path
) -> None:
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


def _write_10x_mtx(
    X: sp.csr_matrix, barcodes: np.ndarray, ids: np.ndarray, names: np.ndarray, integer: bool, path: Path
) -> None:
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


def _write_table(
    X: sp.csr_matrix, barcodes: np.ndarray, ids: np.ndarray, integer: bool, path: Path, *, cells_x_genes: bool
) -> None:
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
