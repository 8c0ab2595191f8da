"""Sums of a sparse count matrix's entries into bins of rows and columns, in one pass over its entries.

The depth of every cell needs, for each block of cells read, two such sums over all of its stored
counts: each cell's counts per block of the genome (cells x ~50) and each group of cells' counts per
gene (groups x genes). As scipy sparse products with an indicator matrix they cost 1.7 s of the
4.0 s read of a 91,465-cell cohort (``benchmarks/scale.py`` at 100k cells, session 36): scipy builds
the product's structure in one pass and fills it in a second, and each block is cast to the
indicator's dtype first. The loops below visit each stored count once and add it to a float64
total, which is exact for counts (integers below 2**53) and the same whatever the order. numba is
already a dependency (the kNN graph, :mod:`remnant.pp.cluster`); the compiled loops are cached on disk
(``cache=True``; the workflow gives numba a writable cache directory, :mod:`remnant.workflow.runlog`), or
compiled in each process where numba finds nowhere to write (a read-only install without a home).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from remnant.io._common import as_csr


def _compiled(func):
    """``func`` compiled by numba, cached on disk where numba finds a writable place: with none it refuses
    ``cache=True`` when the function is defined (a RuntimeError at import), so it is compiled per process."""
    try:
        return numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:
        return numba.njit(nogil=True)(func)


@_compiled
def _row_bins(indptr, indices, data, col_bin, out):  # pragma: no cover - compiled
    for r in range(out.shape[0]):
        for k in range(indptr[r], indptr[r + 1]):
            b = col_bin[indices[k]]
            if b >= 0:
                out[r, b] += data[k]


@_compiled
def _group_columns(indptr, indices, data, row_group, col_map, out):  # pragma: no cover - compiled
    for r in range(row_group.shape[0]):
        g = row_group[r]
        if g < 0:
            continue
        for k in range(indptr[r], indptr[r + 1]):
            c = col_map[indices[k]]
            if c >= 0:
                out[g, c] += data[k]


def row_bin_sums(X, col_bin: np.ndarray, n_bins: int) -> np.ndarray:
    """float64 (n_rows, n_bins): each row's entries summed by the bin of their column.

    ``X``: a sparse or dense (n_rows, n_cols) matrix; ``col_bin``: int (n_cols,) each column's bin,
    -1 for a column in none."""
    X = as_csr(X)
    col_bin = np.asarray(col_bin, np.int64)
    # the compiled loop does not check its indices: a wrong length or bin would write out of bounds
    if col_bin.shape != (X.shape[1],) or (col_bin.size and col_bin.max() >= n_bins):
        raise ValueError(f"col_bin must give each of the {X.shape[1]} columns a bin below {n_bins}, or -1")
    out = np.zeros((X.shape[0], n_bins))
    _row_bins(X.indptr, X.indices, X.data, col_bin, out)
    return out


def group_column_sums(
    X, row_group: np.ndarray, n_groups: int, columns: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """float64 (n_groups, n_out): the rows of each group summed, over the columns ``columns``.

    ``row_group``: int (n_rows,) each row's group, -1 for a row left out; ``columns``: int positions
    of the columns to keep, in output order (default all), or a boolean (n_cols,) mask; ``out``: a
    float64 (n_groups, n_out) array the sums are added to (and returned), e.g. a running total over
    blocks of rows."""
    X = as_csr(X)
    row_group = np.asarray(row_group, np.int64)
    if row_group.shape != (X.shape[0],) or (row_group.size and row_group.max() >= n_groups):
        raise ValueError(f"row_group must give each of the {X.shape[0]} rows a group below {n_groups}, or -1")
    n_cols = X.shape[1]
    if columns is None:
        col_map = np.arange(n_cols, dtype=np.int64)
    else:
        columns = np.asarray(columns)
        positions = np.flatnonzero(columns) if columns.dtype == bool else columns.astype(np.int64)
        if np.unique(positions).size < positions.size or (
            positions.size and not 0 <= positions.min() <= positions.max() < n_cols
        ):
            raise ValueError(f"columns must be distinct positions below {n_cols}")
        col_map = np.full(n_cols, -1, dtype=np.int64)
        col_map[positions] = np.arange(positions.size)
    shape = (n_groups, int(col_map.max(initial=-1)) + 1)
    if out is None:
        out = np.zeros(shape)
    elif out.shape != shape or out.dtype != np.float64:
        raise ValueError(f"out must be float64 {shape}; got {out.dtype} {out.shape}")
    _group_columns(X.indptr, X.indices, X.data, row_group, col_map, out)
    return out


def bins_of(indicator: sp.spmatrix) -> tuple[np.ndarray, int]:
    """``(col_bin, n_bins)`` of an (n_cols x n_bins) 0/1 indicator with at most one entry per row
    (e.g. :func:`remnant.tl.depth.depth_blocks`): each column's bin, -1 for none."""
    ind = sp.csr_matrix(indicator)
    ind.eliminate_zeros()
    per_row = np.diff(ind.indptr)
    if per_row.max(initial=0) > 1 or (ind.data.size and not np.all(ind.data == 1)):
        raise ValueError("the indicator must hold at most one 1 per row")
    col_bin = np.full(ind.shape[0], -1, dtype=np.int64)
    col_bin[per_row == 1] = ind.indices
    return col_bin, ind.shape[1]
