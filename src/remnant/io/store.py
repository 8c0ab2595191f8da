"""Reading and writing the cohort h5ad without holding it in memory (issue 8: a million cells on 24 GB).

``clustered.h5ad``, the file the workflow's cohort steps read, keeps the raw counts in ``X``:
cells x genes, CSR, float32 (no log-normalised copy; compute it per chunk with
:func:`log_normalise`). ``cohort.h5ad``, the file users open, is scverse-shaped
(:func:`annotate_with_calls`): log-normalised ``X``, the raw counts in ``layers["counts"]``, gene
symbols as ``var_names``. :func:`counts_key` says where a file's (or an AnnData's) raw counts are.
The cohort steps read the files here, a block of cells at a time:

- :func:`read_obs`, :func:`read_var`, :func:`read_key`: the tables and one ``uns``/``obsm`` entry,
  without touching ``X``;
- :func:`iter_chunks`: ``X`` in row blocks (``chunk_cells`` cells each), optionally only some
  cells and some genes;
- :func:`read_columns`: a few genes for all (or some) cells as one CSR matrix, plus per-cell sums
  over gene masks in the same pass (e.g. the depth outside a lesion);
- :func:`group_sums`: counts summed per group of cells (pseudobulks);
- :func:`gene_means`: the mean of every gene over some cells, of counts or of a per-chunk transform;
- :func:`copy_with_obs`: a copy of a cohort file whose ``obs``/``uns``/``obsm`` entries are
  replaced;
- :func:`annotate_with_calls`: ``cohort.h5ad`` from ``clustered.h5ad`` and the lesion calls,
  written a block of stored values at a time.

Per-cell tables (``*.tsv.gz``) are written with :data:`TABLE_GZIP`.

Peak memory of a pass is one chunk (``chunk_cells`` x nonzeros per cell x 8 bytes) plus what the
caller keeps; ``indptr`` (8 bytes per cell) is read whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant._sums import bins_of, group_column_sums, row_bin_sums
from remnant.errors import InputError

log = logging.getLogger(__name__)

#: Cells per block read by default: ~50,000 x 2,000 nonzeros x 8 bytes = 0.8 GB at droplet depth.
CHUNK_CELLS = 50_000

#: The layer remnant's functions read raw counts from by default (the scverse convention).
COUNTS_LAYER = "counts"

#: Stored values of ``X`` read to tell raw counts (integers >= 0) from normalised expression.
INTEGER_CHECK_VALUES = 1_000_000

#: Stored values per block when :func:`annotate_with_calls` writes the log-normalised ``X``
#: (2 MB of float32; the block's float64 temporaries add 8 MB): the peak stays that of the tables.
WRITE_BLOCK_VALUES = 1 << 19

#: pandas ``compression=`` of the per-cell tables: gzip level 1 (zlib's fastest) and no timestamp
#: (same inputs, same bytes). Level 9, Python's default, took 1.3 s for the 91,335-cell lesion
#: table against 0.4 s at level 1, for a file 25% smaller; at a million cells that is ~10 s a table.
TABLE_GZIP = {"method": "gzip", "mtime": 0, "compresslevel": 1}


def write_cell_table(frame: pd.DataFrame, path, *, index_label: str = "cell", float_format: str = "%.6g") -> None:
    """``frame.to_csv(path, sep="\\t", index_label=index_label, float_format=float_format,
    compression=TABLE_GZIP)``, the same bytes, faster: each float column is formatted once here
    (NaN as the empty field, as pandas writes it). pandas formats every float through a Python
    callback per value: 0.72 s for 91k cells x 4 columns against 0.19 s here, and the lesion step
    writes such a table at every run."""
    out = frame.copy(deep=False)
    for i, dtype in enumerate(out.dtypes):
        if pd.api.types.is_float_dtype(dtype):
            values = out.iloc[:, i].to_numpy(np.float64, na_value=np.nan).tolist()
            out.isetitem(i, np.array([float_format % v if v == v else "" for v in values], dtype=object))
    out.to_csv(path, sep="\t", index_label=index_label, compression=TABLE_GZIP)


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
        raise InputError(
            f"{key!r} is stored as {enc or 'dense'}, not CSR (cells x genes); rewrite it as CSR (as "
            "remnant's clustering writes it).",
            path=str(path),
        )
    return g


def _counts_like(values: np.ndarray) -> bool:
    """Whether stored matrix values look like raw counts: finite integers >= 0 (empty: yes)."""
    values = np.asarray(values)
    if values.size == 0 or values.dtype.kind in "bu":
        return True
    if values.dtype.kind == "i":
        return bool((values >= 0).all())
    return bool(np.isfinite(values).all() and (values >= 0).all() and np.array_equal(values, np.rint(values)))


def _leading_values(matrix, n: int = INTEGER_CHECK_VALUES) -> np.ndarray:
    """The first ``n`` stored values of a matrix: an in-memory (sparse or dense) array, an h5py
    dataset (dense) or an anndata-encoded sparse group of an h5py file."""
    if isinstance(matrix, h5py.Group):
        return matrix["data"][:n]
    if sp.issparse(matrix):
        return np.asarray(matrix.data[:n])
    rows = max(1, n // max(1, int(matrix.shape[1]))) if len(matrix.shape) == 2 else n
    return np.asarray(matrix[:rows]).ravel()


def counts_key(source, layer: str | None = COUNTS_LAYER, *, where: str = "counts") -> str:
    """Where the raw counts of a cohort h5ad file (a path) or an AnnData are: ``"layers/<layer>"``
    or ``"X"``.

    ``layers[layer]`` when ``source`` has it. Without it, for the default ``"counts"`` (the
    scverse convention), ``X`` when ``X`` holds counts (finite integers >= 0, checked on its first
    :data:`INTEGER_CHECK_VALUES` stored values), as in ``clustered.h5ad``; ``cohort.h5ad``
    (log-normalised ``X``) gives ``"layers/counts"``. Another layer name is taken as asked: it
    must exist. ``layer=None``: ``X`` as it is (the caller says it holds counts).

    Raises
    ------
    InputError
        The layer is absent (and, for ``"counts"``, ``X`` is absent or not counts, e.g.
        log-normalised); the message names the layers ``source`` has, to pass as ``layer=``.
    """
    if layer is None:
        return "X"
    is_path = isinstance(source, (str, os.PathLike))
    if is_path:
        with _open(source) as f:
            layers = list(f["layers"]) if "layers" in f and isinstance(f["layers"], h5py.Group) else []
            if layer in layers:
                return f"layers/{layer}"
            X = f.get("X", None)
            counts = layer == COUNTS_LAYER and X is not None and _counts_like(_leading_values(X))
    else:
        layers = list(source.layers)
        if layer in layers:
            return f"layers/{layer}"
        X = source.X
        counts = layer == COUNTS_LAYER and X is not None and _counts_like(_leading_values(X))
    if counts:
        log.debug("%s: no layer %r; X holds counts", where, layer)
        return "X"
    if layer != COUNTS_LAYER:
        what = f"has no layer {layer!r} (layers: {layers or 'none'}); pass the layer with the raw counts, or layer=None for X"
    else:
        x = (
            "no X"
            if X is None
            else "X is not raw counts (non-integer or negative values, e.g. log-normalised expression)"
        )
        what = f"has no layer {layer!r} and {x}; pass layer= the layer with the raw counts (layers: {layers or 'none'})"
    raise InputError(what + ".", path=str(source) if is_path else None, where=f"{where}(layer=...)")


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
            raise InputError(
                f"obs has no column(s) {missing} (it has {have}); rerun the step that writes it.", path=str(path)
            )
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


def iter_chunks(
    path, *, key: str = "X", rows=None, columns=None, chunk_cells: int = CHUNK_CELLS
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
            block = sp.csr_matrix((data[lo:hi], indices[lo:hi], indptr[start : stop + 1] - lo), shape=(stop - start, m))
            positions = np.arange(start, stop, dtype=np.int64)
            if inside is not None and inside.size < stop - start:
                block, positions = block[inside], positions[inside]
            if columns is not None:
                block = block[:, columns]
            yield positions, block


def read_columns(
    path,
    columns,
    *,
    rows=None,
    sums: Mapping[str, np.ndarray] | None = None,
    blocks: sp.spmatrix | None = None,
    key: str = "X",
    chunk_cells: int = CHUNK_CELLS,
) -> tuple[sp.csr_matrix, dict[str, np.ndarray]]:
    """The genes of the boolean (n_vars,) mask ``columns`` for the cells of ``rows`` (default all),
    read in blocks, and per-cell sums over other gene masks in the same pass.

    Returns
    -------
    matrix
        CSR (n_rows x n_columns), the stored dtype.
    sums
        ``{name: float64 (n_rows,)}``: each cell's total over the genes of ``sums[name]`` (a boolean
        (n_vars,) mask), computed on the full row before the column selection; with ``blocks`` (an
        (n_vars x n_blocks) indicator of genes in blocks, e.g. :func:`remnant.tl.depth.depth_blocks`)
        also ``"blocks"``: float32 (n_rows x n_blocks), each cell's counts per block.
    """
    sums = dict(sums or {})
    parts, totals = [], {name: [] for name in sums}
    n_genes = shape(path, key)[1]
    columns = _mask(columns, n_genes, "columns")
    masks = {name: _mask(mask, n_genes, f"sums[{name!r}]") for name, mask in sums.items()}
    per_block = []
    bins = bins_of(blocks) if blocks is not None else None
    for _, block in iter_chunks(path, key=key, rows=rows, chunk_cells=chunk_cells):
        for name, mask in masks.items():
            # weights in the block's dtype: a float64 vector would upcast (copy) the block
            totals[name].append(np.asarray(block @ mask.astype(block.dtype)).ravel().astype(np.float64))
        if bins is not None:
            # float32 holds a cell's counts on one block exactly (< 2**24): half the memory of float64
            per_block.append(row_bin_sums(block, *bins).astype(np.float32))
        parts.append(block[:, columns])
    matrix = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, int(columns.sum())), dtype=np.float32)
    out = {name: (np.concatenate(v) if v else np.zeros(0)) for name, v in totals.items()}
    if blocks is not None:
        out["blocks"] = np.vstack(per_block) if per_block else np.zeros((0, blocks.shape[1]), np.float32)
    return matrix, out


def group_sums(
    path, groups, n_groups: int, *, columns=None, key: str = "X", chunk_cells: int = CHUNK_CELLS
) -> np.ndarray:
    """Counts summed per group: float64 dense (n_groups x n_genes) from int (n_obs,) group codes
    (-1: cell left out), over the genes of ``columns`` (default all)."""
    groups = np.asarray(groups, dtype=np.int64)
    rows = groups >= 0
    n_genes = int(np.sum(columns)) if columns is not None else shape(path, key)[1]
    total = np.zeros((n_groups, n_genes))
    for positions, block in iter_chunks(path, key=key, rows=rows, chunk_cells=chunk_cells):
        # one pass over the block's stored counts, the genes of ``columns`` picked inside it
        # (an indicator product and a column selection cost 1.3 s of the read at 100k cells)
        group_column_sums(block, groups[positions], n_groups, columns, out=total)
    return total


def gene_means(
    path,
    *,
    rows=None,
    transform: Callable[[sp.csr_matrix, np.ndarray], sp.csr_matrix] | None = None,
    key: str = "X",
    chunk_cells: int = CHUNK_CELLS,
) -> np.ndarray:
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


def log_normalise(
    block: sp.csr_matrix, library: np.ndarray, target_sum: float = 1e4, dtype=np.float32
) -> sp.csr_matrix:
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


def scverse_var(var: pd.DataFrame) -> pd.DataFrame:
    """``var`` indexed by unique gene symbols, as scverse tools expect (``sc.pl.umap(adata, color="CD34")``).

    The symbols are ``var["gene_name"]`` (the var names where it is empty or absent); a symbol
    held by several genes keeps its first gene's name and the others get ``-1``, ``-2``, ...
    (:func:`anndata.utils.make_index_unique`, what ``AnnData.var_names_make_unique`` and scanpy
    do). The former var names (Ensembl gene IDs in remnant's files) go to ``var["gene_id"]``, the
    first column; the other columns are kept as they are.
    """
    from anndata.utils import make_index_unique

    out = var.copy()
    ids = pd.Index(out.index.astype(str))
    if "gene_name" in out.columns:
        names = out["gene_name"].astype(object)
        symbols = pd.Index(np.where(names.notna() & (names.astype(str) != ""), names.astype(str), ids), dtype=object)
    else:
        symbols = pd.Index(ids, dtype=object)
    with warnings.catch_warnings():  # symbols such as NKX2-1 look like its suffixes; the result is still unique
        warnings.simplefilter("ignore", UserWarning)
        unique = make_index_unique(symbols, join="-")
    if "gene_id" not in out.columns:
        out.insert(0, "gene_id", ids.to_numpy())
    out.index = pd.Index(unique.to_numpy(), dtype=object)
    return out


def _copy_csr(src: h5py.Group, parent: h5py.Group, name: str, block_values: int) -> h5py.Group:
    """Copy the anndata CSR group ``src`` to ``parent[name]`` inside HDF5 (no array in memory).
    ``indices`` and ``indptr`` get one integer type, the wider of the two (scipy/sklearn's
    compiled sparse routines take one index type; anndata's on-disk concatenation stores int32
    indices with an int64 indptr above 2^31 values)."""
    g = parent.create_group(name)
    g.attrs.update(dict(src.attrs))
    src.file.copy(src["data"], g, "data")
    wide = np.promote_types(src["indices"].dtype, src["indptr"].dtype)
    for key in ("indices", "indptr"):
        ds = src[key]
        if ds.dtype == wide:
            src.file.copy(ds, g, key)
            continue
        out = g.create_dataset(key, shape=ds.shape, dtype=wide, maxshape=(None,), chunks=ds.chunks or True)
        for lo in range(0, ds.shape[0], block_values):
            out[lo : lo + block_values] = ds[lo : lo + block_values].astype(wide)
    return g


def _write_log_normalised(
    counts: h5py.Group, parent: h5py.Group, name: str, target_sum: float, block_values: int
) -> None:
    """``parent[name]``: log1p(counts / total * target_sum) of the CSR group ``counts`` (CSR float32,
    total over all genes), a block of whole cells of about ``block_values`` stored values at a time.

    Its ``indices`` and ``indptr`` are hard links to those of ``counts`` (the same sparsity pattern:
    log1p(0) = 0, and a count > 0 stays > 0), so they are stored once. The values equal
    :func:`log_normalise` of the counts with each cell's total as library."""
    g = parent.create_group(name)
    g.attrs.update(dict(counts.attrs))
    g["indices"] = counts["indices"]
    g["indptr"] = counts["indptr"]
    source = counts["data"]
    # chunks of 2^16 values (256 kB): a block's last, partly written chunk is still in HDF5's chunk
    # cache (1 MB) when the next block completes it (the counts' chunks can be a few kB: slow to write)
    data = g.create_dataset(
        "data",
        shape=source.shape,
        dtype=np.float32,
        maxshape=(None,),
        chunks=(int(min(max(source.shape[0], 1), 1 << 16)),),
    )
    indptr = counts["indptr"][:].astype(np.int64)
    n = indptr.size - 1
    start = 0
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + block_values, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        lo, hi = int(indptr[start]), int(indptr[stop])
        if hi > lo:
            values = source[lo:hi]
            ptr = indptr[start : stop + 1] - lo
            lengths = np.diff(ptr)
            library = np.zeros(lengths.size)
            filled = lengths > 0
            # each cell's total in float64 (exact for counts below 2^53), as X.sum(axis=1, dtype=float64)
            library[filled] = np.add.reduceat(values, ptr[:-1][filled], dtype=np.float64)
            scale = np.divide(target_sum, library, out=np.zeros(library.shape, dtype=np.float64), where=library > 0)
            out = values.astype(np.float32)  # a copy
            del values
            out *= np.repeat(scale.astype(np.float32), lengths)
            np.log1p(out, out=out)
            data[lo:hi] = out
            del out
        start = stop


def annotate_with_calls(cohort, calls, dst, *, target_sum: float = 1e4, block_values: int = WRITE_BLOCK_VALUES) -> None:
    """Write ``dst``, the cohort file users open: the cohort file
    ``cohort`` (``clustered.h5ad``) with the lesion calls of ``calls`` (the matrix-free file of
    :func:`remnant.tl.lesions.write_calls`), shaped as scverse tools expect.

    ``X``
        log1p(counts / total * ``target_sum``), CSR float32: ``sc.pp.normalize_total(target_sum=...)``
        then ``sc.pp.log1p`` (each cell's total over all genes, as :func:`remnant.pp.cluster.cluster_file`
        normalises).
    ``layers["counts"]``
        The raw counts of ``cohort`` (its ``X``, or ``layers/counts`` in files written before
        issue 8), unchanged.
    ``var``
        Indexed by unique gene symbols (:func:`scverse_var`); ``var["gene_id"]`` the Ensembl IDs;
        the other columns of ``cohort``.
    ``obs``, ``uns["lesions"]``
        Those of ``calls`` (the cohort's obs with the calls).
    ``obsm``, ``obsp``, ``varm``, the rest of ``uns``
        Those of ``cohort``; ``uns["log1p"] = {"base": None}`` as ``sc.pp.log1p`` leaves it, and
        ``uns["remnant"]["cluster"]["X"]`` says what ``X`` holds here.

    Never holds a matrix: the counts and the other arrays are copied inside HDF5, ``X`` is
    computed ``block_values`` stored values at a time (whole cells); ``X`` shares its
    ``indices``/``indptr`` datasets with ``layers["counts"]`` (HDF5 hard links). The file is
    written under a temporary name and renamed at the end, so ``dst`` is never half written.

    Raises
    ------
    InputError
        ``calls`` has no ``uns["lesions"]``, or its cells are not those of ``cohort`` in the same
        order (the calls were made on another version of the cohort file: call the lesions again);
        ``cohort`` holds no raw counts (:func:`counts_key`).
    """
    from anndata.io import write_elem

    index = read_obs(cohort, columns=[]).index  # the cells only
    obs = read_obs(calls)
    lesions = read_key(calls, "uns/lesions")
    if lesions is None:
        raise InputError(
            "has no uns['lesions']; write the lesion calls again (remnant.tl.lesions.write_calls).", path=str(calls)
        )
    if not obs.index.equals(index):
        raise InputError(
            f"its {len(obs)} cells are not the {len(index)} cells of {cohort} in the same order "
            "(calls made on another version of that file); call the lesions again on it.",
            path=str(calls),
        )
    del index
    key = counts_key(cohort, where="annotate_with_calls")
    var = scverse_var(read_var(cohort))
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        with _open(cohort) as src, h5py.File(tmp, "w") as out:
            _csr_group(src, key, cohort)
            out.attrs.update(dict(src.attrs))
            write_elem(out, "obs", obs)
            write_elem(out, "var", var)
            for group in ("obsm", "obsp", "varm", "uns"):
                if group in src:
                    src.copy(src[group], out, group)  # inside HDF5: no array in memory
                else:
                    write_elem(out, group, {})
            for name, value in (("lesions", lesions), ("log1p", {"base": None})):
                if name in out["uns"]:
                    del out["uns"][name]
                write_elem(out["uns"], name, value)
            if "remnant/cluster/X" in out["uns"]:
                del out["uns/remnant/cluster/X"]
                write_elem(
                    out["uns/remnant/cluster"],
                    "X",
                    f"log1p(counts / total * {target_sum:g}); raw counts in layers/counts",
                )
            write_elem(out, "layers", {})
            for name in src.get("layers", []):
                if f"layers/{name}" != key:
                    src.copy(src[f"layers/{name}"], out["layers"], name)
            counts = _copy_csr(src[key], out["layers"], "counts", block_values)
            _write_log_normalised(counts, out, "X", float(target_sum), block_values)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info(
        "%s: %d cells x %d genes; X log-normalised (target_sum %g), raw counts (%s of %s) in layers/counts, "
        "%d duplicated symbols made unique",
        dst,
        len(obs),
        len(var),
        target_sum,
        key,
        cohort,
        int((var.index != var["gene_name"].astype(str).to_numpy()).sum()) if "gene_name" in var else 0,
    )
