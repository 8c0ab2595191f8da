"""Reading and writing the cohort h5ad without holding it in memory (issue 8: a million cells on 24 GB).

The cohort files (``results/cohort/clustered.h5ad``, ``results/cohort/cohort.h5ad``) keep the raw
counts in ``X``: cells x genes, CSR, float32 (no log-normalised copy; compute it per chunk with
:func:`log_normalise`). The cohort steps read them here, a block of cells at a time:

- :func:`read_obs`, :func:`read_var`, :func:`read_key`: the tables and one ``uns``/``obsm`` entry,
  without touching ``X``;
- :func:`iter_chunks`: ``X`` in row blocks (``chunk_cells`` cells each), optionally only some
  cells and some genes;
- :func:`read_columns`: a few genes for all (or some) cells as one CSR matrix, plus per-cell sums
  over gene masks in the same pass (e.g. the depth outside a lesion);
- :func:`group_sums`: counts summed per group of cells (pseudobulks);
- :func:`gene_means`: the mean of every gene over some cells, of counts or of a per-chunk transform;
- :func:`copy_with_obs`: a copy of a cohort file whose ``obs``/``uns``/``obsm`` entries are
  replaced (rule ``annotate_cohort`` adds the lesion calls to ``clustered.h5ad`` this way).

Per-cell tables (``*.tsv.gz``) are written with :data:`TABLE_GZIP`.

Peak memory of a pass is one chunk (``chunk_cells`` x nonzeros per cell x 8 bytes) plus what the
caller keeps; ``indptr`` (8 bytes per cell) is read whole.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputError

log = logging.getLogger(__name__)

#: Cells per block read by default: ~50,000 x 2,000 nonzeros x 8 bytes = 0.8 GB at droplet depth.
CHUNK_CELLS = 50_000

#: pandas ``compression=`` of the per-cell tables: gzip level 1 (zlib's fastest) and no timestamp
#: (same inputs, same bytes). Level 9, Python's default, took 1.3 s for the 91,335-cell lesion
#: table against 0.4 s at level 1, for a file 25% smaller; at a million cells that is ~10 s a table.
TABLE_GZIP = {"method": "gzip", "mtime": 0, "compresslevel": 1}


def _open(path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except (OSError, FileNotFoundError) as err:
        raise InputError(f"cannot open as HDF5 ({err}); rerun the step that writes it.", path=str(path)) from err


def _csr_group(f: h5py.File, key: str, path) -> h5py.Group:
    if key not in f:
        raise InputError(f"has no {key!r}; rerun the step that writes it.", path=str(path))
    g = f[key]
    enc = g.attrs.get("encoding-type", "") if isinstance(g, h5py.Group) else "dense"
    if enc != "csr_matrix":
        raise InputError(f"{key!r} is stored as {enc or 'dense'}, not CSR (cells x genes); rewrite it with "
                         "remnant's cluster_cells or as CSR.", path=str(path))
    return g


def read_obs(path, columns: list[str] | None = None) -> pd.DataFrame:
    """The ``obs`` table of an h5ad file (cells x columns) without reading any matrix.

    ``columns``: only these columns (and the index), in this order. A job that needs a few columns
    of a million cells reads them in a fraction of the time of the whole table (2.4 s at 911k cells
    with 37 columns).

    Raises
    ------
    InputError
        A column in ``columns`` is absent (names the file, the column and the columns it has).
    """
    from anndata.io import read_elem

    with _open(path) as f:
        if columns is None:
            return read_elem(f["obs"])
        group = f["obs"]
        index_key = group.attrs.get("_index", "_index")
        have = list(group.attrs.get("column-order", []))
        missing = [c for c in columns if c not in have]
        if missing:
            raise InputError(f"obs has no column(s) {missing} (it has {have}); rerun the step that writes it.", path=str(path))
        index = pd.Index(read_elem(group[index_key]), name=None if index_key == "_index" else index_key)
        return pd.DataFrame({c: read_elem(group[c]) for c in columns}, index=index)


def read_var(path) -> pd.DataFrame:
    """The ``var`` table of an h5ad file (genes x columns) without reading any matrix."""
    from anndata.io import read_elem

    with _open(path) as f:
        return read_elem(f["var"])


def read_key(path, key: str, default=None):
    """One element of an h5ad file by its HDF5 path (``"uns/lesions/del5q"``, ``"obsm/X_umap"``);
    ``default`` when absent."""
    from anndata.io import read_elem

    with _open(path) as f:
        if key not in f:
            return default
        return read_elem(f[key])


def shape(path, key: str = "X") -> tuple[int, int]:
    """(n_obs, n_vars) of the matrix ``key``."""
    with _open(path) as f:
        return tuple(int(x) for x in _csr_group(f, key, path).attrs["shape"])


def _row_blocks(rows: np.ndarray | None, n: int, chunk_cells: int) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """Blocks [start, stop) of the row range with the selected rows inside each (None = all)."""
    for start in range(0, n, chunk_cells):
        stop = min(start + chunk_cells, n)
        if rows is None:
            yield start, stop, None
        else:
            inside = np.flatnonzero(rows[start:stop])
            if inside.size:
                yield start, stop, inside


def _mask(values, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.dtype != bool or values.shape != (n,):
        raise ValueError(f"{name} must be a boolean mask of length {n}; got {values.dtype} {values.shape}")
    return values


def iter_chunks(path, *, key: str = "X", rows=None, columns=None, chunk_cells: int = CHUNK_CELLS
                ) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """Yield ``(cell_positions, block)`` over the matrix ``key`` of an h5ad file, a block of cells at a time.

    Parameters
    ----------
    rows
        Boolean (n_obs,) mask of the cells to read (default all); blocks hold only these.
    columns
        Boolean (n_vars,) mask of the genes to keep (default all).
    chunk_cells
        Cells per block read from disk (before the ``rows`` selection).

    Yields
    ------
    cell_positions
        int64 (n_block,) positions of the block's cells in the file (0-based, increasing).
    block
        CSR (n_block x n_kept_genes), the stored dtype (float32 counts in remnant's files).
    """
    with _open(path) as f:
        g = _csr_group(f, key, path)
        n, m = (int(x) for x in g.attrs["shape"])
        rows, columns = _mask(rows, n, "rows"), _mask(columns, m, "columns")
        indptr = g["indptr"][:].astype(np.int64)
        data, indices = g["data"], g["indices"]
        for start, stop, inside in _row_blocks(rows, n, chunk_cells):
            if inside is not None:
                # read only the span of the selected rows (a sample's or patient's cells are contiguous)
                start, stop, inside = start + inside[0], start + inside[-1] + 1, inside - inside[0]
            lo, hi = indptr[start], indptr[stop]
            block = sp.csr_matrix((data[lo:hi], indices[lo:hi], indptr[start:stop + 1] - lo), shape=(stop - start, m))
            positions = np.arange(start, stop, dtype=np.int64)
            if inside is not None and inside.size < stop - start:
                block, positions = block[inside], positions[inside]
            if columns is not None:
                block = block[:, columns]
            yield positions, block


def read_columns(path, columns, *, rows=None, sums: Mapping[str, np.ndarray] | None = None, key: str = "X",
                 chunk_cells: int = CHUNK_CELLS) -> tuple[sp.csr_matrix, dict[str, np.ndarray]]:
    """The genes of the boolean (n_vars,) mask ``columns`` for the cells of ``rows`` (default all),
    read in blocks, and per-cell sums over other gene masks in the same pass.

    Returns
    -------
    matrix
        CSR (n_rows x n_columns), the stored dtype.
    sums
        ``{name: float64 (n_rows,)}``: each cell's total over the genes of ``sums[name]`` (a boolean
        (n_vars,) mask), computed on the full row before the column selection.
    """
    sums = dict(sums or {})
    parts, totals = [], {name: [] for name in sums}
    n_genes = shape(path, key)[1]
    columns = _mask(columns, n_genes, "columns")
    masks = {name: _mask(mask, n_genes, f"sums[{name!r}]") for name, mask in sums.items()}
    for _, block in iter_chunks(path, key=key, rows=rows, chunk_cells=chunk_cells):
        for name, mask in masks.items():
            # weights in the block's dtype: a float64 vector would upcast (copy) the block
            totals[name].append(np.asarray(block @ mask.astype(block.dtype)).ravel().astype(np.float64))
        parts.append(block[:, columns])
    matrix = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, int(columns.sum())), dtype=np.float32)
    return matrix, {name: (np.concatenate(v) if v else np.zeros(0)) for name, v in totals.items()}


def group_sums(path, groups, n_groups: int, *, columns=None, key: str = "X", chunk_cells: int = CHUNK_CELLS) -> np.ndarray:
    """Counts summed per group: float64 dense (n_groups x n_genes) from int (n_obs,) group codes
    (-1: cell left out), over the genes of ``columns`` (default all)."""
    groups = np.asarray(groups, dtype=np.int64)
    rows = groups >= 0
    total = None
    for positions, block in iter_chunks(path, key=key, rows=rows, columns=columns, chunk_cells=chunk_cells):
        g = groups[positions]
        indicator = sp.csr_matrix((np.ones(g.size, dtype=np.float64), (g, np.arange(g.size))), shape=(n_groups, g.size))
        part = np.asarray((indicator @ block.astype(np.float64)).toarray())
        total = part if total is None else total + part
    if total is None:
        total = np.zeros((n_groups, int(np.sum(columns)) if columns is not None else shape(path, key)[1]))
    return total


def gene_means(path, *, rows=None, transform: Callable[[sp.csr_matrix, np.ndarray], sp.csr_matrix] | None = None,
               key: str = "X", chunk_cells: int = CHUNK_CELLS) -> np.ndarray:
    """float64 (n_genes,) mean of each gene over the cells of ``rows`` (default all), of the counts or
    of ``transform(block, cell_positions)`` (e.g. :func:`log_normalise`)."""
    total, count = None, 0
    for positions, block in iter_chunks(path, key=key, rows=rows, chunk_cells=chunk_cells):
        if transform is not None:
            block = transform(block, positions)
        part = np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
        total = part if total is None else total + part
        count += block.shape[0]
    if total is None:
        return np.zeros(shape(path, key)[1])
    return total / max(count, 1)


def log_normalise(block: sp.csr_matrix, library: np.ndarray, target_sum: float = 1e4, dtype=np.float32) -> sp.csr_matrix:
    """log1p(counts / library * target_sum) of a CSR block (cells with library 0 stay 0); ``library``
    is float (n_cells,)."""
    scale = np.divide(target_sum, library, out=np.zeros(library.shape, dtype=np.float64), where=library > 0)
    out = sp.csr_matrix(block, dtype=dtype, copy=True)
    out.data *= np.repeat(scale, np.diff(out.indptr)).astype(dtype)
    np.log1p(out.data, out=out.data)
    return out


def copy_with_obs(src, dst, *, obs: pd.DataFrame | None = None, elements: Mapping[str, object] | None = None) -> None:
    """Copy the h5ad file ``src`` to ``dst`` (block copy: no matrix in memory), replacing its ``obs``
    and any elements given by HDF5 path (``{"uns/lesions": {...}, "obsm/X_cnv": array}``).

    ``obs`` must index the same cells in the same order. The copy goes to a temporary name first
    and is renamed at the end, so ``dst`` is never half written.
    """
    from anndata.io import write_elem

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.copyfile(src, tmp)
    try:
        with h5py.File(tmp, "r+") as f:
            if obs is not None:
                old = f["obs"]
                index_key = old.attrs.get("_index", "_index")
                n = old[index_key].shape[0]
                if len(obs) != n:
                    raise ValueError(f"obs has {len(obs)} rows; {src} has {n} cells")
                del f["obs"]
                write_elem(f, "obs", obs)
            for path, value in (elements or {}).items():
                if path in f:
                    del f[path]
                parent = path.rsplit("/", 1)[0] if "/" in path else ""
                if parent and parent not in f:
                    write_elem(f, parent, {})  # an anndata dict group (uns, obsm, ...), not a bare HDF5 group
                write_elem(f, path, value)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def annotate_with_calls(cohort, calls, dst) -> None:
    """Write ``dst``: a copy of the cohort file ``cohort`` whose ``obs`` and ``uns["lesions"]`` are
    those of ``calls`` (the matrix-free file of :func:`remnant.lesions.write_calls`).

    Raises
    ------
    InputError
        ``calls`` has no ``uns["lesions"]``, or its cells are not those of ``cohort`` in the same
        order (the calls were made on another version of the cohort file: rerun call_lesions).
    """
    index = read_obs(cohort, columns=[]).index  # the cells only
    obs = read_obs(calls)
    lesions = read_key(calls, "uns/lesions")
    if lesions is None:
        raise InputError("has no uns['lesions']; rerun call_lesions.", path=str(calls))
    if not obs.index.equals(index):
        raise InputError(f"its {len(obs)} cells are not the {len(index)} cells of {cohort} in the same order "
                         "(calls made on another version of that file); rerun call_lesions.", path=str(calls))
    copy_with_obs(cohort, dst, obs=obs, elements={"uns/lesions": lesions})
