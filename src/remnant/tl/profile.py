"""Genome-wide copy-number profile: a smoothed profile per cell against state-matched healthy cells.

Per-cell calls (:mod:`remnant.tl.lesions`) say *which* cells carry a lesion; this module computes
what their genome looks like. Each patient's lesion extent is :mod:`remnant.tl.breakpoints`; the
figures are :mod:`remnant.pl.cnv`.

:func:`infer_profile` / :func:`write_profile`
    A smoothed copy-number profile per cell with infercnvpy (:func:`infercnvpy.tl.infercnv`, the
    field's library) against **state-matched** reference categories: each reference cell's
    category is its HSPC state, so infercnvpy compares a cell with the range of healthy state
    means (its "bounded" difference: a gene counts as changed only when the cell lies outside
    the lowest and highest state mean) and differentiation programmes are not read as copy
    number. :func:`infer_profile` keeps the result in the AnnData; :func:`write_profile` writes it
    to an h5ad file block by block (a cohort of a million cells). Results:

    ``obsm["X_cnv"]``
        CSR (n_obs, n_windows), float32: per window, the pyramid-weighted running mean over
        ``window_size`` genes of the clipped difference of log1p(normalised expression) to the
        reference range (natural-log units), centred per cell by its median and set to 0 below
        ``dynamic_threshold`` standard deviations (of the profiles of each block of ``chunksize``
        cells, as infercnvpy computes it), as infercnvpy returns it (in float64; float32 keeps
        7 significant digits of values whose noise is in the second).
    ``uns["cnv"]``
        ``chr_pos`` (chromosome -> index of its first window, from infercnvpy), ``windows``
        (DataFrame, one row per column of ``X_cnv``: ``chromosome``, ``start``, ``end`` (bp,
        0-based half-open: first gene start to last gene end), ``mid`` (bp, midpoint of the central
        gene, where the pyramid weight peaks), ``n_genes``, ``first_gene``, ``last_gene``),
        ``genes`` (var_names used, genome order), ``reference_states`` (categories used) and
        ``params``.

:func:`read_profile_rows`
    A few rows of a written profile (the heatmaps of :mod:`remnant.pl.cnv` read only those they draw).

Memory (issue 8: a million cells on one 24 GB machine)
------------------------------------------------------
Every function reads the counts a block of ``chunk_cells`` cells at a time, from the AnnData's
matrix or, with ``counts=`` a path, from that h5ad file (:mod:`remnant.io.store`; ``adata`` then
holds only obs and var; the block reader :class:`_Counts` serves :mod:`remnant.tl.breakpoints` too).
Nothing densifies the cohort: the profile's reference (the state means, the gene filter) is one
pass over the reference cells; the profile is a second pass, infercnvpy's dense blocks being
``chunksize`` cells x genes used. :func:`write_profile` appends each block's profile to the output
file, so ``X_cnv`` is never held whole. Its size at a million cells: the default settings (window
100, step 10, ``min_mean`` 0.1) keep ~9,800 of 38,912 genes on simulated droplet data, i.e. 773
windows; ~13% of the values survive the dynamic threshold, so CSR float32 is ~0.8 GB (dense
float32 3.1 GB, dense float16 1.5 GB, the former CSR float64 1.2 GB). Heatmaps read only the rows
they draw (:func:`read_profile_rows`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant._sums import group_column_sums
from remnant.errors import InputError
from remnant.io import store
from remnant.tl.depth import group_totals
from remnant.tl.lesions import cell_mask, counts_matrix, require_positions

__all__ = [
    "infer_profile",
    "read_profile_rows",
    "window_positions",
    "write_profile",
]

log = logging.getLogger(__name__)

#: Cells of counts read at a time by default: 10,000 cells x ~2,800 nonzeros x 8 bytes = 0.2 GB.
#: The per-cell work (infercnvpy, group sums) costs the same in smaller reads (measured: the same
#: time as remnant.io.store's 50,000 on 50,000 cells of the test cohort, at half the peak memory).
CHUNK_CELLS = 10_000


# ================================================================================================
# input checks shared by the functions below
# ================================================================================================
def _obs_key(adata: anndata.AnnData, key: str, where: str) -> None:
    if key not in adata.obs:
        raise InputError(f"obs lacks column {key!r}.", where=where)


# ================================================================================================
# counts, a block of cells at a time
# ================================================================================================
class _Counts:
    """Raw counts (cells x genes) read a block of cells at a time.

    From ``adata.layers[layer]`` in memory, or with ``path`` from the h5ad file's
    ``layers/<layer>``; without that layer from ``X`` when it holds counts (``clustered.h5ad``;
    :func:`remnant.io.store.counts_key`); ``layer=None``: ``X``. A file's matrix must be CSR with the
    shape of ``adata`` (whose obs and var describe the file's cells and genes).
    """

    def __init__(self, adata: anndata.AnnData, layer: str | None, path, where: str):
        self.path = None if path is None else str(path)
        if self.path is None:
            X = counts_matrix(adata, layer, where)
            self.X = X if X.format == "csr" else X.tocsr()
            self.key = None
        else:
            self.X = None
            self.key = store.counts_key(self.path, layer, where=where)  # InputError naming the file when not HDF5
            shape = store.shape(self.path, self.key)  # InputError naming the file when absent or not CSR
            if shape != (adata.n_obs, adata.n_vars):
                raise InputError(
                    f"{self.key} is {shape[0]} x {shape[1]} but the AnnData describing it has "
                    f"{adata.n_obs} cells and {adata.n_vars} genes; read obs and var from the same file.",
                    path=self.path,
                )
        self.n_obs, self.n_vars = adata.n_obs, adata.n_vars

    def group_sums(self, codes: np.ndarray, n_groups: int, chunk_cells: int = CHUNK_CELLS) -> np.ndarray:
        """float64 (n_groups x n_vars): the counts summed per group of int64 (n_obs,) ``codes``, exact."""
        if self.path is not None:
            return store.group_sums(self.path, codes, n_groups, key=self.key, chunk_cells=chunk_cells)
        return group_totals(self.X, codes, n_groups)

    def blocks(
        self, rows: np.ndarray | None = None, chunk_cells: int = CHUNK_CELLS
    ) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
        """``(cell_positions, block)``: int64 (n_block,) increasing positions of the cells of boolean
        (n_obs,) ``rows`` (default all) within one block of ``chunk_cells`` cells, and their counts,
        CSR (n_block x n_vars), the stored dtype."""
        if self.path is not None:
            yield from store.iter_chunks(self.path, key=self.key, rows=rows, chunk_cells=chunk_cells)
            return
        for start in range(0, self.n_obs, chunk_cells):
            stop = min(start + chunk_cells, self.n_obs)
            positions = np.arange(start, stop, dtype=np.int64)
            if rows is not None:
                positions = positions[rows[start:stop]]
                if positions.size == 0:
                    continue
                yield positions, sp.csr_matrix(self.X[positions])
            else:
                yield positions, sp.csr_matrix(self.X[start:stop])


def _library(block: sp.csr_matrix) -> np.ndarray:
    """float64 (n_block,) counts per cell over all genes (summed in the stored dtype, as
    ``sc.pp.normalize_total`` and the in-memory profile always did)."""
    return np.asarray(block.sum(axis=1), dtype=np.float64).ravel()


# ================================================================================================
# infercnvpy profile
# ================================================================================================
def window_positions(
    var: pd.DataFrame, window_size: int, step: int, exclude_chromosomes: Sequence[str] | None = ("chrX", "chrY")
) -> pd.DataFrame:
    """Genomic position of every window infercnvpy 0.6 computes for genes ``var``.

    Reproduces :func:`infercnvpy.tl.infercnv`'s layout: chromosomes in natural order (names
    starting with ``chr``, not ``chrM``, minus ``exclude_chromosomes``); within a chromosome,
    genes sorted by ``start`` (the same ``sort_values`` call) and windows of ``window_size``
    consecutive genes every ``step`` genes, or one window of all genes when the chromosome has no
    more than ``window_size`` of them.

    Returns
    -------
    DataFrame with one row per window (the columns of ``obsm["X_cnv"]``): ``chromosome``,
    ``start``, ``end`` (bp, 0-based half-open, first gene start to last gene end), ``mid`` (bp,
    midpoint of the central gene), ``n_genes``, ``first_gene``, ``last_gene`` (var_names).
    """
    from infercnvpy.tl._infercnv import _natural_sort

    skip = var["chromosome"].isnull()
    if exclude_chromosomes is not None:
        skip = skip | var["chromosome"].isin(exclude_chromosomes)
    var = var.loc[~skip, ["chromosome", "start", "end"]]
    chromosomes = _natural_sort([c for c in var["chromosome"].unique() if c.startswith("chr") and c != "chrM"])
    rows = []
    for chrom in chromosomes:
        genes = var.loc[var["chromosome"] == chrom].sort_values("start")
        start = genes["start"].to_numpy(np.int64)
        end = genes["end"].to_numpy(np.int64)
        names = genes.index.to_numpy()
        n = len(genes)
        if window_size < n:
            firsts = np.arange(0, n - window_size + 1)[::step]
            size = window_size
        else:
            firsts, size = np.array([0]), n
        for a in firsts:
            b = a + size
            centre = a + (size - 1) // 2
            rows.append(
                (
                    chrom,
                    int(start[a:b].min()),
                    int(end[a:b].max()),
                    int((start[centre] + end[centre]) // 2),
                    int(size),
                    str(names[a]),
                    str(names[b - 1]),
                )
            )
    return pd.DataFrame(rows, columns=["chromosome", "start", "end", "mid", "n_genes", "first_gene", "last_gene"])


@dataclass
class _ProfileReference:
    """What the profile of every cell is computed against (from :func:`_profile_reference`)."""

    cols: np.ndarray  # int (n_used,) var positions of the genes used, file order
    var: pd.DataFrame  # their chromosome (str), start, end; index var_names
    mean: np.ndarray  # float32 (n_categories, n_used) mean log1p(normalised counts) per reference category
    categories: list[str]
    windows: pd.DataFrame  # window_positions(var)
    uns: dict  # uns["cnv"] without chr_pos


def _reference_categories(
    adata, ref: np.ndarray, state_key: str, min_reference_cells: int, where: str
) -> tuple[list[str], np.ndarray, int]:
    """The reference categories (HSPC states with >= ``min_reference_cells`` reference cells,
    sorted), each cell's category (int64 (n_obs,), -1 for cells outside the reference or its
    categories) and the number of reference cells left out (logged)."""
    state = adata.obs[state_key].astype(object).where(adata.obs[state_key].notna(), None).to_numpy()
    ref_counts = pd.Series(state[ref]).value_counts()
    categories = sorted(str(s) for s, n in ref_counts.items() if s is not None and n >= min_reference_cells)
    if not categories:
        raise InputError(
            f"no HSPC state has >= {min_reference_cells} reference cells (reference states: "
            f"{dict(ref_counts)}); lower min_reference_cells or add reference cells.",
            where=where,
        )
    left_out = int(ref.sum() - ref_counts[ref_counts.index.isin(categories)].sum())
    if left_out:
        log.info(
            "%s: %d reference cells in states with < %d reference cells are not in the reference",
            where,
            left_out,
            min_reference_cells,
        )
    labels = pd.Series(state, dtype=object)
    category = pd.Categorical(labels.astype(str).where(labels.notna(), None), categories=categories).codes.astype(
        np.int64
    )
    category[~ref] = -1  # int (n_obs,): reference category, -1 for the other cells
    return categories, category, left_out


def _profile_reference(
    adata,
    counts: _Counts,
    reference,
    *,
    state_key,
    layer,
    window_size,
    step,
    min_mean,
    target_sum,
    min_reference_cells,
    lfc_clip,
    dynamic_threshold,
    exclude_chromosomes,
    chunk_cells,
    where,
) -> _ProfileReference:
    """Checks, the reference categories, the genes used and each category's mean log expression:
    one pass over the reference cells' counts."""
    require_positions(adata.var, where)
    _obs_key(adata, state_key, where)
    if not adata.var_names.is_unique:
        raise InputError("var_names must be unique (infercnvpy needs one row per gene).", where=where)
    if window_size < 1 or step < 1:
        raise InputError(f"window_size ({window_size}) and step ({step}) must be >= 1.", where=where)
    if target_sum <= 0:
        raise InputError(f"target_sum must be positive; got {target_sum}.", where=where)
    ref = cell_mask(adata, reference, "reference", where)
    if ref.sum() < min_reference_cells:
        raise InputError(
            f"only {int(ref.sum())} reference cells; need at least min_reference_cells={min_reference_cells}.",
            where=f"{where}(reference=...)",
        )
    categories, category, left_out = _reference_categories(adata, ref, state_key, min_reference_cells, where)

    # one pass over the reference cells: mean normalised counts (the gene filter) and each
    # category's summed log1p(normalised counts), over all genes (the used ones are known after)
    scaled = np.zeros(adata.n_vars)
    log_sums = np.zeros((len(categories), adata.n_vars))
    for positions, block in counts.blocks(rows=ref, chunk_cells=chunk_cells):
        library = _library(block)
        scale = target_sum / np.where(library > 0, library, 1.0)  # an empty cell stays all-zero
        scaled += np.asarray(block.T @ scale).ravel()
        group_column_sums(
            store.log_normalise(block, library, target_sum), category[positions], len(categories), out=log_sums
        )
    ref_mean = scaled / int(ref.sum())
    positioned = adata.var["chromosome"].notna().to_numpy()
    use = positioned & (ref_mean >= min_mean)
    if exclude_chromosomes is not None:
        use &= ~adata.var["chromosome"].isin(list(exclude_chromosomes)).to_numpy()
    if use.sum() == 0:
        raise InputError(f"no gene with a genomic position reaches min_mean={min_mean} in the reference.", where=where)
    cols = np.flatnonzero(use)
    n_cat = np.bincount(category[category >= 0], minlength=len(categories))
    # float32 like infercnvpy's own mean of float32 log expression (it compares float32 values with it)
    mean = (log_sums[:, cols] / n_cat[:, None]).astype(np.float32)
    var = adata.var.iloc[cols][["chromosome", "start", "end"]].copy()
    var["chromosome"] = var["chromosome"].astype(str)
    windows = window_positions(var, window_size, step, exclude_chromosomes)
    uns = {
        "windows": windows,
        "genes": np.asarray(adata.var_names[cols], dtype=str),
        "reference_states": np.asarray(categories, dtype=str),
        "params": {
            "state_key": state_key,
            "layer": layer or "",
            "window_size": int(window_size),
            "step": int(step),
            "min_mean": float(min_mean),
            "target_sum": float(target_sum),
            "min_reference_cells": int(min_reference_cells),
            "lfc_clip": float(lfc_clip),
            "dynamic_threshold": float("nan") if dynamic_threshold is None else float(dynamic_threshold),
            "exclude_chromosomes": list(exclude_chromosomes or []),
            "n_reference": int(ref.sum()),
            "n_reference_used": int(ref.sum()) - left_out,
            "n_genes": int(cols.size),
        },
    }
    return _ProfileReference(cols=cols, var=var, mean=mean, categories=categories, windows=windows, uns=uns)


#: Parameters of the reference profile that the per-block smoothing uses again (:func:`_profile_blocks`).
_BLOCK_SETTINGS = ("window_size", "step", "lfc_clip", "dynamic_threshold", "exclude_chromosomes", "chunk_cells")


def _prepare(adata, reference, *, layer, counts, where, **parameters) -> tuple[_Counts, _ProfileReference, dict]:
    """The first step of :func:`infer_profile` and :func:`write_profile`: the block reader, the
    reference profile (one pass over the reference cells) and the settings the blocks share."""
    source = _Counts(adata, layer, counts, where)
    pref = _profile_reference(adata, source, reference, layer=layer, where=where, **parameters)
    return source, pref, {key: parameters[key] for key in _BLOCK_SETTINGS}


def _profile_blocks(
    counts: _Counts,
    pref: _ProfileReference,
    *,
    target_sum,
    window_size,
    step,
    lfc_clip,
    dynamic_threshold,
    exclude_chromosomes,
    chunksize,
    n_jobs,
    chunk_cells,
) -> Iterator[tuple[dict, sp.csr_matrix]]:
    """``(chr_pos, profile)`` per block of cells in order: CSR float32 (n_block, n_windows).

    Each chunk of ``chunksize`` cells goes through infercnvpy's own per-chunk computation
    (``_infercnv_chunk``, what :func:`infercnvpy.tl.infercnv` runs in its workers, given the
    reference means as its ``reference``), in this process for ``n_jobs=1`` or in one pool of
    ``n_jobs`` processes for the whole pass: a pool per block (``infercnv`` called per block) grew
    the parent by ~30 MB per call, ~3 GB over a million cells. Blocks are whole multiples of
    ``chunksize`` cells from the first cell, so the chunks are those infercnvpy makes of the whole
    matrix (its noise threshold is a standard deviation over a chunk's profiles) and the result
    does not depend on ``chunk_cells``. ``exclude_chromosomes`` is already applied to the genes.
    """
    import itertools
    from concurrent.futures import ProcessPoolExecutor
    from contextlib import ExitStack

    from infercnvpy.tl._infercnv import _infercnv_chunk  # infercnvpy 0.6 (pinned < 0.7)

    block_cells = max(1, chunk_cells // chunksize) * chunksize
    args = (pref.var, pref.mean, lfc_clip, window_size, step, dynamic_threshold)
    with ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(n_jobs)) if n_jobs > 1 else None
        for _, block in counts.blocks(chunk_cells=block_cells):
            library = _library(block)
            norm = sp.csr_matrix(block[:, pref.cols], dtype=np.float32)  # a new matrix: scaled in place below
            del block
            scale = target_sum / np.where(library > 0, library, 1.0)  # an empty cell stays all-zero
            norm.data *= np.repeat(scale.astype(np.float32), np.diff(norm.indptr))
            np.log1p(norm.data, out=norm.data)
            chunks = [norm[a : a + chunksize] for a in range(0, norm.shape[0], chunksize)]
            del norm
            if pool is None:
                results = (_infercnv_chunk(chunk, *args) for chunk in chunks)
            else:
                results = pool.map(_infercnv_chunk, chunks, *(itertools.repeat(a) for a in args))
            parts, chr_pos = [], {}
            for chr_pos, result, _ in results:  # noqa: B007 (the last block's chr_pos is kept)
                if result.shape[1] != len(pref.windows):  # infercnvpy changed its layout: do not mislabel windows
                    raise RuntimeError(
                        f"window table has {len(pref.windows)} rows but infercnvpy returned {result.shape[1]} "
                        "windows; the installed infercnvpy lays windows out differently from 0.6."
                    )
                parts.append(sp.csr_matrix(result, dtype=np.float32))
            yield {str(k): int(v) for k, v in chr_pos.items()}, sp.vstack(parts, format="csr")


def infer_profile(
    adata: anndata.AnnData,
    reference,
    *,
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    window_size: int = 100,
    step: int = 10,
    min_mean: float = 0.1,
    target_sum: float = 1e4,
    min_reference_cells: int = 20,
    lfc_clip: float = 3.0,
    dynamic_threshold: float | None = 1.5,
    exclude_chromosomes: Sequence[str] | None = ("chrX", "chrY"),
    chunksize: int = 5000,
    n_jobs: int = 1,
    chunk_cells: int = CHUNK_CELLS,
    key_added: str = "cnv",
) -> None:
    # long because: the docstring is the reference for every parameter and key written (the code
    # is ~50 lines: the reference, the blocks stacked, one log line)
    """Smoothed copy-number profile per cell (infercnvpy) against state-matched reference cells.

    Parameters
    ----------
    adata
        Cells x genes. Raw counts in ``adata.layers[layer]`` (or ``adata.X``, see ``layer``), sparse
        or dense, or with ``counts`` in that file; ``var`` needs ``chromosome``, ``start``, ``end``
        (bp); ``var_names`` unique.
    reference
        Boolean array (n_obs,) or the name of a boolean obs column: the normal reference cells.
    state_key
        obs column with the HSPC state. Reference cells of each state with at least
        ``min_reference_cells`` cells form one infercnvpy reference category (the other reference
        cells are left out of the reference and logged).
    layer
        Layer with raw counts; without it, ``X`` when it holds counts (remnant's ``clustered.h5ad``;
        ``cohort.h5ad`` has ``layers["counts"]``); ``None``: ``X``.
    counts
        Path of an h5ad file holding the counts (``layers/<layer>`` or ``X``, as ``layer``; CSR,
        cells x genes as ``adata``, whose obs and var must describe the file's cells and genes,
        e.g. ``AnnData(obs=store.read_obs(path), var=store.read_var(path))``). ``None``: ``adata``.
    window_size, step
        infercnvpy's running window (genes) and the stride between reported windows (genes).
    min_mean
        Genes are used when their mean normalised expression over reference cells (counts per
        ``target_sum``) is at least this; unexpressed genes only dilute the windows.
    target_sum
        Counts per cell after normalisation (``sc.pp.normalize_total``), before log1p.
    min_reference_cells
        Smallest number of reference cells for a state to be a category (a mean of a handful of
        cells is noisy and would widen infercnvpy's bounds for every cell).
    lfc_clip, dynamic_threshold, exclude_chromosomes, chunksize
        As :func:`infercnvpy.tl.infercnv`'s (chunksize = cells per dense block).
    n_jobs
        Processes computing chunks (1: this process; more: one pool for the whole pass).
    chunk_cells
        Cells of counts read at a time (rounded down to a multiple of ``chunksize``, at least one).
    key_added
        Results go to ``obsm[f"X_{key_added}"]`` and ``uns[key_added]``.

    Writes
    ------
    ``obsm[f"X_{key_added}"]`` (CSR float32, n_obs x n_windows, held in memory: ~0.8 GB at a
    million cells; :func:`write_profile` writes it to a file instead) and ``uns[key_added]`` with
    ``chr_pos``, ``windows`` (see :func:`window_positions`), ``genes``, ``reference_states``,
    ``params``; see the module docstring for units.

    Notes
    -----
    Library sizes are each cell's total over *all* genes (as ``sc.pp.normalize_total`` on the full
    matrix); the used genes are normalised and log1p-transformed per block (CSR float32). The
    reference means are summed in float64 over blocks (infercnvpy sums float32 in one go; the
    profiles agree to ~1e-7). Cost: two passes over the counts (the first over reference cells
    only), linear in cells; memory one block of counts and its normalised used genes, plus
    infercnvpy's dense blocks of ``chunksize`` cells x used genes per worker.
    """
    where = "infer_profile"
    t0 = time.perf_counter()
    source, pref, settings = _prepare(
        adata,
        reference,
        layer=layer,
        counts=counts,
        where=where,
        state_key=state_key,
        min_mean=min_mean,
        target_sum=target_sum,
        min_reference_cells=min_reference_cells,
        window_size=window_size,
        step=step,
        lfc_clip=lfc_clip,
        dynamic_threshold=dynamic_threshold,
        exclude_chromosomes=exclude_chromosomes,
        chunk_cells=chunk_cells,
    )
    t1 = time.perf_counter()
    parts, chr_pos = [], {}
    blocks = _profile_blocks(source, pref, target_sum=target_sum, chunksize=chunksize, n_jobs=n_jobs, **settings)
    for chr_pos, part in blocks:  # noqa: B007 (the last block's chr_pos is kept)
        parts.append(part)
    adata.obsm[f"X_{key_added}"] = (
        sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, len(pref.windows)), dtype=np.float32)
    )
    adata.uns[key_added] = {"chr_pos": chr_pos, **pref.uns}
    log.info(
        "infer_profile: %d cells, %d genes, %d windows, reference states %s; reference %.1f s, profile %.1f s",
        adata.n_obs,
        pref.cols.size,
        len(pref.windows),
        pref.categories,
        t1 - t0,
        time.perf_counter() - t1,
    )


def _profile_index_dtype(n_obs: int, n_windows: int) -> type:
    """One integer type for the profile's ``indices`` and ``indptr``: int32 unless its values could
    pass 2^31 - 1 (scipy's and scikit-learn's compiled sparse routines, e.g. the PCA of
    ``infercnvpy.tl.pca``, refuse a matrix whose two index arrays differ in type)."""
    return np.int64 if n_obs * max(n_windows, 1) >= np.iinfo(np.int32).max else np.int32


def _with_index_dtype(block: sp.csr_matrix, dtype) -> sp.csr_matrix:
    """``block`` (CSR float32, sorted indices) with ``indices`` and ``indptr`` of ``dtype``."""
    block = sp.csr_matrix(block, dtype=np.float32)
    block.sort_indices()
    block.indices = block.indices.astype(dtype, copy=False)
    block.indptr = block.indptr.astype(dtype, copy=False)
    return block


def write_profile(
    adata: anndata.AnnData,
    reference,
    path: str | os.PathLike,
    *,
    obsm: Mapping[str, np.ndarray] | None = None,
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    window_size: int = 100,
    step: int = 10,
    min_mean: float = 0.1,
    target_sum: float = 1e4,
    min_reference_cells: int = 20,
    lfc_clip: float = 3.0,
    dynamic_threshold: float | None = 1.5,
    exclude_chromosomes: Sequence[str] | None = ("chrX", "chrY"),
    chunksize: int = 5000,
    n_jobs: int = 1,
    chunk_cells: int = CHUNK_CELLS,
    key_added: str = "cnv",
) -> dict:
    """The profile of :func:`infer_profile`, written block by block to a new h5ad file.

    The file holds ``adata.obs``, the arrays of ``obsm`` (e.g. ``{"X_umap": ...}``, n_obs rows
    each), ``obsm[f"X_{key_added}"]`` (CSR float32, n_obs x n_windows, appended one block of
    cells at a time, never whole in memory) and ``uns[key_added]``; no gene matrix. It is written
    under a temporary name and renamed at the end. ``anndata.read_h5ad`` reads it; a few rows:
    :func:`read_profile_rows`.

    Parameters
    ----------
    path
        Output h5ad.
    obsm
        Arrays to copy into the file's ``obsm`` (not the profile).
    others
        As :func:`infer_profile`, whose numbers these are (the same blocks of ``chunksize`` cells).

    Returns
    -------
    ``uns[key_added]`` as written (``chr_pos``, ``windows``, ``genes``, ``reference_states``, ``params``).

    Memory: one block of counts as :func:`infer_profile`, plus one block's profile; the file grows
    by ~0.8 bytes per cell and window (13% of values stored at 8 bytes each, gzip-compressed).

    The profile is written with anndata's own writer (:func:`anndata.io.write_elem` for the first
    block, :func:`anndata.io.sparse_dataset` ``.append`` for the others), ``indices`` and ``indptr``
    of one integer type (int32; int64 when cells x windows reach 2^31), so that infercnvpy's
    ``tl.pca``, ``pp.neighbors``, ``tl.leiden`` and ``tl.cnv_score`` run on it as read.
    """
    where = "write_profile"
    t0 = time.perf_counter()
    source, pref, settings = _prepare(
        adata,
        reference,
        layer=layer,
        counts=counts,
        where=where,
        state_key=state_key,
        min_mean=min_mean,
        target_sum=target_sum,
        min_reference_cells=min_reference_cells,
        window_size=window_size,
        step=step,
        lfc_clip=lfc_clip,
        dynamic_threshold=dynamic_threshold,
        exclude_chromosomes=exclude_chromosomes,
        chunk_cells=chunk_cells,
    )
    t1 = time.perf_counter()
    info = {"chr_pos": _chr_pos(pref.windows), **pref.uns}
    blocks = _profile_blocks(source, pref, target_sum=target_sum, chunksize=chunksize, n_jobs=n_jobs, **settings)
    nnz = _write_profile_file(path, adata.obs, dict(obsm or {}), key_added, info, blocks, len(pref.windows))
    log.info(
        "write_profile: %d cells, %d genes, %d windows (%d values stored), reference states %s; reference %.1f s, "
        "profile %.1f s",
        adata.n_obs,
        pref.cols.size,
        len(pref.windows),
        nnz,
        pref.categories,
        t1 - t0,
        time.perf_counter() - t1,
    )
    return info


def _chr_pos(windows: pd.DataFrame) -> dict[str, int]:
    """chr_pos as infercnvpy reports it (chromosome -> index of its first window, chromosomes in
    natural order), known from the window table before any block is computed."""
    from infercnvpy.tl._infercnv import _natural_sort

    first = windows.reset_index().groupby("chromosome", sort=False)["index"].min()
    return {c: int(first[c]) for c in _natural_sort(list(first.index))}


def _write_profile_file(
    path: str | os.PathLike,
    obs: pd.DataFrame,
    obsm: dict,
    key_added: str,
    info: dict,
    blocks: Iterator[tuple[dict, sp.csr_matrix]],
    n_windows: int,
) -> int:
    """A new h5ad at ``path`` with ``obs``, ``obsm``, ``uns[key_added] = info`` and the profile
    ``blocks`` (of :func:`_profile_blocks`) in ``obsm/X_{key_added}``, written under a temporary
    name and renamed at the end. Returns the number of values stored."""
    import h5py
    from anndata.io import write_elem

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        anndata.AnnData(obs=obs, obsm=obsm, uns={key_added: info}).write_h5ad(tmp, compression="gzip")
        with h5py.File(tmp, "r+") as f:
            if "obsm" not in f:
                write_elem(f, "obsm", {})  # an anndata dict group, not a bare HDF5 group
            nnz = _append_profile_blocks(f, f"obsm/X_{key_added}", blocks, info["chr_pos"], len(obs), n_windows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return nnz


def _append_profile_blocks(f, name: str, blocks, chr_pos: dict, n_obs: int, n_windows: int) -> int:
    """Write the profile ``blocks`` to ``f[name]`` (CSR float32, n_obs x n_windows) with anndata's
    own writer: the first block written, the others appended. Returns the number of values stored."""
    from anndata.io import sparse_dataset, write_elem

    dtype = _profile_index_dtype(n_obs, n_windows)
    kwargs = {"compression": "gzip", "chunks": (1 << 16,), "indptr_dtype": np.dtype(dtype).name}
    written, n_rows, nnz = None, 0, 0
    for block_chr_pos, part in blocks:
        if block_chr_pos != chr_pos:
            raise RuntimeError(
                f"infercnvpy's chromosome offsets {block_chr_pos} differ from the window table's "
                f"{chr_pos}; the installed infercnvpy lays windows out differently from 0.6."
            )
        part = _with_index_dtype(part, dtype)
        if written is None:
            write_elem(f, name, part, dataset_kwargs=kwargs)
            written = sparse_dataset(f[name])
        else:
            written.append(part)
        n_rows, nnz = n_rows + part.shape[0], nnz + part.nnz
    if written is None:  # no cells
        write_elem(f, name, _with_index_dtype(sp.csr_matrix((0, n_windows)), dtype), dataset_kwargs=kwargs)
    if n_rows != n_obs:
        raise RuntimeError(f"wrote {n_rows} profiles for {n_obs} cells")
    return nnz


def read_profile_rows(path: str | os.PathLike, rows, *, key: str = "cnv") -> sp.csr_matrix:
    """Rows of ``obsm[f"X_{key}"]`` of a profile h5ad (:func:`write_profile`), read without the rest.

    Parameters
    ----------
    rows
        int cell positions (any order, repeats allowed) or a boolean (n_obs,) mask.

    Returns
    -------
    CSR float (len(rows), n_windows), rows in the order given.
    """
    import h5py

    name = f"obsm/X_{key}"
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"cannot open as HDF5 ({err}); rerun the step that writes it.", path=str(path)) from err
    with f:
        if name not in f:
            raise InputError(f"has no {name!r}: the copy-number profile comes from write_profile.", path=str(path))
        g = f[name]
        if isinstance(g, h5py.Dataset):  # a dense profile
            n = g.shape[0]
        else:
            if g.attrs.get("encoding-type", "") != "csr_matrix":
                raise InputError(
                    f"{name!r} is stored as {g.attrs.get('encoding-type', '?')}, not CSR or dense.", path=str(path)
                )
            n = int(g.attrs["shape"][0])
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise ValueError(f"a row mask must have {n} values; got {rows.shape}")
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"rows out of range 0..{n - 1}")
        wanted, back = np.unique(rows, return_inverse=True)
        if isinstance(g, h5py.Dataset):
            return sp.csr_matrix(g[wanted] if wanted.size else np.zeros((0, g.shape[1]), g.dtype))[back]
        n_cols = int(g.attrs["shape"][1])
        indptr = g["indptr"][:].astype(np.int64)
        # runs of consecutive rows: one read of data/indices each
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        data, indices, lengths = [], [], []
        for run in np.split(wanted, breaks) if wanted.size else []:
            lo, hi = indptr[run[0]], indptr[run[-1] + 1]
            data.append(g["data"][lo:hi])
            indices.append(g["indices"][lo:hi])
            lengths.append(np.diff(indptr[run[0] : run[-1] + 2]))
        if not data:
            return sp.csr_matrix((rows.size, n_cols), dtype=g["data"].dtype)
        lengths = np.concatenate(lengths)
        matrix = sp.csr_matrix(
            (np.concatenate(data), np.concatenate(indices), np.r_[0, np.cumsum(lengths)]), shape=(wanted.size, n_cols)
        )
        return matrix[back]
