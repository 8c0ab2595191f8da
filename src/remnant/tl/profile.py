"""Genome-wide copy-number view: smoothed profiles, heatmaps, lesion profiles and breakpoints.

Per-cell calls (:mod:`remnant.tl.lesions`) say *which* cells carry a lesion; this module shows *what*
their genome looks like and *where* each patient's lesion starts and ends.

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

:func:`lesion_profile` / :func:`plot_lesion_profile`
    For each patient, the chromosome of a lesion: per gene the log2 ratio of the pseudobulk counts
    of called (and of uncalled) cells to the counts expected of normal cells of the same states and
    depths, smoothed along the chromosome, with the configured interval and estimated breakpoints.

:func:`estimate_breakpoints`
    Per patient, from the called cells: a maximum-likelihood two-breakpoint segmentation of the
    lesion's chromosome (copy ratio ``rho`` inside ``[start, end)``, 1 outside) and a bootstrap
    over cells for each breakpoint.

:func:`plot_patient_heatmap`
    Chromosome-ordered heatmap of ``X_cnv`` for one patient's cells, annotated by population,
    timepoint and call, with a block of healthy reference cells on top for comparison.

Expected counts (:func:`lesion_profile`, :func:`estimate_breakpoints`)
---------------------------------------------------------------------
As in :mod:`remnant.tl.lesions`, a cell ``c`` of state ``s`` is expected to have ``D_c * p_{s,g}``
counts of gene ``g``: ``D_c`` its counts on autosomal genes *off the lesion's chromosome* (so
neither the deletion nor a breakpoint beyond the configured interval deflates it), ``p_{s,g}``
the reference cells' summed counts of ``g`` in state ``s`` per count of their ``D``, shrunk to the
pooled reference profile with a pseudo-depth of ``shrinkage`` median reference cells (states
absent from the reference use the pooled profile). A group of cells has observed ``O_g = sum_c
x_{cg}`` and expected ``E_g = sum_c D_c p_{s(c),g}``; off the lesion's chromosome ``sum_g O_g =
sum_g E_g`` by construction, so the ratio is 1 where the copy number is normal.

Memory (issue 8: a million cells on one 24 GB machine)
------------------------------------------------------
Every function reads the counts a block of ``chunk_cells`` cells at a time, from the AnnData's
matrix or, with ``counts=`` a path, from that h5ad file (:mod:`remnant.io.store`; ``adata`` then
holds only obs and var). Nothing densifies the cohort:

- the profile's reference (the state means, the gene filter) is one pass over the reference
  cells; the profile is a second pass, infercnvpy's dense blocks being ``chunksize`` cells x genes
  used. :func:`write_profile` appends each block's profile to the output file, so ``X_cnv`` is
  never held whole. Its size at a million cells: the default settings (window 100, step 10,
  ``min_mean`` 0.1) keep ~9,800 of 38,912 genes on simulated droplet data, i.e. 773 windows;
  ~13% of the values survive the dynamic threshold, so CSR float32 is ~0.8 GB (dense float32
  3.1 GB, dense float16 1.5 GB, the former CSR float64 1.2 GB). Heatmaps read only the rows they
  draw (:func:`read_profile_rows`).
- :func:`lesion_sums` is one pass for all lesions: per-cell depths, the reference's summed counts
  per state, each patient's summed counts of called and of uncalled cells (group sums over
  blocks), and the called cells' counts on the lesion's chromosome (cells x one chromosome's
  genes, sparse) for the bootstrap, whose replicate weights are blocks of 50 replicates x a
  patient's called cells.
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

from remnant.errors import InputError
from remnant.io import store
from remnant.tl.lesions import cell_mask, counts_matrix, require_positions

__all__ = [
    "LesionSums",
    "estimate_breakpoints",
    "infer_profile",
    "lesion_profile",
    "lesion_sums",
    "plot_lesion_profile",
    "plot_message",
    "plot_patient_heatmap",
    "read_profile_rows",
    "window_positions",
    "write_profile",
]

log = logging.getLogger(__name__)

_AUTOSOMES = [f"chr{i}" for i in range(1, 23)]
#: Colours of the call bar and of the profile lines.
CALL_COLOURS = {"called": "#6A3D9A", "not called": "#D9D9D9"}
GROUP_COLOURS = {"called": "#6A3D9A", "not called": "#1B9E77"}
#: Cells of counts read at a time by default: 10,000 cells x ~2,800 nonzeros x 8 bytes = 0.2 GB.
#: The per-cell work (infercnvpy, group sums) costs the same in smaller reads (measured: the same
#: time as remnant.io.store's 50,000 on 50,000 cells of the test cohort, at half the peak memory).
CHUNK_CELLS = 10_000
#: Rows per float64 copy when summing counts by group (bounds the copy at ~5,000 x nonzeros per cell x 12 bytes).
_SUM_ROWS = 5000


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


def _sum_by_group(
    block: sp.csr_matrix, groups: np.ndarray, n_groups: int, columns: np.ndarray | None = None
) -> np.ndarray:
    """float64 (n_groups, n_columns) sums of a block's rows by int group (-1: left out), over the
    int column positions ``columns`` (default all). Float64 copies of ``_SUM_ROWS`` rows at a time:
    float32 sums of read counts would round above 2^24."""
    n_cols = block.shape[1] if columns is None else columns.size
    out = np.zeros((n_groups, n_cols))
    for a in range(0, block.shape[0], _SUM_ROWS):
        g = groups[a : a + _SUM_ROWS]
        keep = np.flatnonzero(g >= 0)
        if keep.size == 0:
            continue
        part = block[a : a + _SUM_ROWS][keep]
        if columns is not None:
            part = part[:, columns]
        indicator = sp.csr_matrix((np.ones(keep.size), (g[keep], np.arange(keep.size))), shape=(n_groups, keep.size))
        out += (indicator @ part.astype(np.float64)).toarray()
    return out


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


def _profile_reference(
    adata,
    counts: _Counts,
    reference_mask,
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
    ref = cell_mask(adata, reference_mask, "reference_mask", where)
    if ref.sum() < min_reference_cells:
        raise InputError(
            f"only {int(ref.sum())} reference cells; need at least min_reference_cells={min_reference_cells}.",
            where=f"{where}(reference_mask=...)",
        )

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

    # one pass over the reference cells: mean normalised counts (the gene filter) and each
    # category's summed log1p(normalised counts), over all genes (the used ones are known after)
    scaled = np.zeros(adata.n_vars)
    log_sums = np.zeros((len(categories), adata.n_vars))
    for positions, block in counts.blocks(rows=ref, chunk_cells=chunk_cells):
        library = _library(block)
        scale = target_sum / np.where(library > 0, library, 1.0)  # an empty cell stays all-zero
        scaled += np.asarray(block.T @ scale).ravel()
        log_sums += _sum_by_group(store.log_normalise(block, library, target_sum), category[positions], len(categories))
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
    reference_mask,
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
    """Smoothed copy-number profile per cell (infercnvpy) against state-matched reference cells.

    Parameters
    ----------
    adata
        Cells x genes. Raw counts in ``adata.layers[layer]`` (or ``adata.X``, see ``layer``), sparse
        or dense, or with ``counts`` in that file; ``var`` needs ``chromosome``, ``start``, ``end``
        (bp); ``var_names`` unique.
    reference_mask
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
    source = _Counts(adata, layer, counts, where)
    settings = dict(
        window_size=window_size,
        step=step,
        lfc_clip=lfc_clip,
        dynamic_threshold=dynamic_threshold,
        exclude_chromosomes=exclude_chromosomes,
        chunk_cells=chunk_cells,
    )
    pref = _profile_reference(
        adata,
        source,
        reference_mask,
        state_key=state_key,
        layer=layer,
        min_mean=min_mean,
        target_sum=target_sum,
        min_reference_cells=min_reference_cells,
        where=where,
        **settings,
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
    reference_mask,
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
    import h5py
    from anndata.io import sparse_dataset, write_elem

    where = "write_profile"
    t0 = time.perf_counter()
    source = _Counts(adata, layer, counts, where)
    settings = dict(
        window_size=window_size,
        step=step,
        lfc_clip=lfc_clip,
        dynamic_threshold=dynamic_threshold,
        exclude_chromosomes=exclude_chromosomes,
        chunk_cells=chunk_cells,
    )
    pref = _profile_reference(
        adata,
        source,
        reference_mask,
        state_key=state_key,
        layer=layer,
        min_mean=min_mean,
        target_sum=target_sum,
        min_reference_cells=min_reference_cells,
        where=where,
        **settings,
    )
    t1 = time.perf_counter()
    from infercnvpy.tl._infercnv import _natural_sort

    # chr_pos as infercnvpy reports it (chromosome -> first window), known before any block
    first = pref.windows.reset_index().groupby("chromosome", sort=False)["index"].min()
    info = {"chr_pos": {c: int(first[c]) for c in _natural_sort(list(first.index))}, **pref.uns}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    obsm = dict(obsm or {})
    try:
        anndata.AnnData(obs=adata.obs, obsm=obsm, uns={key_added: info}).write_h5ad(tmp, compression="gzip")
        with h5py.File(tmp, "r+") as f:
            if "obsm" not in f:
                write_elem(f, "obsm", {})  # an anndata dict group, not a bare HDF5 group
            # anndata's own writer: the first block written, the others appended
            name, n_windows = f"obsm/X_{key_added}", len(pref.windows)
            dtype = _profile_index_dtype(adata.n_obs, n_windows)
            kwargs = {"compression": "gzip", "chunks": (1 << 16,), "indptr_dtype": np.dtype(dtype).name}
            written, n_rows, nnz = None, 0, 0
            for chr_pos, part in _profile_blocks(
                source, pref, target_sum=target_sum, chunksize=chunksize, n_jobs=n_jobs, **settings
            ):
                if chr_pos != info["chr_pos"]:
                    raise RuntimeError(
                        f"infercnvpy's chromosome offsets {chr_pos} differ from the window table's "
                        f"{info['chr_pos']}; the installed infercnvpy lays windows out differently from 0.6."
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
            if n_rows != adata.n_obs:
                raise RuntimeError(f"wrote {n_rows} profiles for {adata.n_obs} cells")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
            raise InputError(
                f"has no {name!r}: the copy-number profile comes from infer_cnv (write_profile).", path=str(path)
            )
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


# ================================================================================================
# summed counts for lesion profiles and breakpoints: one pass over the counts
# ================================================================================================
@dataclass
class LesionSums:
    """What :func:`lesion_profile` and :func:`estimate_breakpoints` read of the counts for one
    lesion, summed per group of cells in one pass (:func:`lesion_sums`).

    Attributes
    ----------
    lesion, chromosome
        The lesion's name and chromosome.
    reference, called
        bool (n_obs,): the reference cells and the lesion's calls the sums were made with.
    patients, patient
        Patient levels (str, in order) and each cell's index into them, int64 (n_obs,).
    states, state_row
        The reference's HSPC states (sorted) and each cell's row of ``reference_sums``, int64
        (n_obs,): its state's, or ``len(states)`` (the pooled profile) for other states.
    chrom_cols, mid
        int (n_chrom,) var positions of the chromosome's genes ordered by midpoint, and the
        midpoints (bp, int64).
    off_cols
        int (n_off,) var positions of the autosomal genes off the chromosome.
    depth
        float64 (n_obs,): each cell's counts on ``off_cols``.
    reference_sums
        float64 (len(states) + 1, n_chrom + n_off): reference cells' counts summed per state row
        (last row: reference cells of no state), genes ``chrom_cols`` then ``off_cols``.
    called_sums
        float64 (n_patients, n_chrom + n_off): each patient's called cells' counts, same genes.
    uncalled_sums
        float64 (n_patients, n_chrom): each patient's other cells' counts on ``chrom_cols``.
    called_cells, called_counts
        int64 (n_called,) positions of the called cells (increasing) and their counts on
        ``chrom_cols``, CSR (n_called, n_chrom), for the bootstrap.
    """

    lesion: str
    chromosome: str
    reference: np.ndarray
    called: np.ndarray
    patients: list
    patient: np.ndarray
    states: list
    state_row: np.ndarray
    chrom_cols: np.ndarray
    mid: np.ndarray
    off_cols: np.ndarray
    depth: np.ndarray
    reference_sums: np.ndarray
    called_sums: np.ndarray
    uncalled_sums: np.ndarray
    called_cells: np.ndarray
    called_counts: sp.csr_matrix


def _cell_groups(adata, lesion, reference_mask, call_key, patient_key, state_key, where) -> dict:
    """The obs-derived arrays of :class:`LesionSums` (checked)."""
    require_positions(adata.var, where)
    call_key = call_key or f"{lesion.name}_call"
    for key in (call_key, patient_key, state_key):
        _obs_key(adata, key, where)
    ref = cell_mask(adata, reference_mask, "reference_mask", where)
    if ref.sum() < 10:
        raise InputError(
            f"only {int(ref.sum())} reference cells; need at least 10.", where=f"{where}(reference_mask=...)"
        )
    called = cell_mask(adata, call_key, "call_key", where)
    patients = _ordered(adata.obs[patient_key])
    patient = pd.Categorical(adata.obs[patient_key].astype(str), categories=patients).codes.astype(np.int64)
    state = adata.obs[state_key]
    labels = state.astype(str).where(state.notna(), "").to_numpy()
    states = sorted(set(labels[ref]) - {"", "nan"})
    state_row = pd.Categorical(labels, categories=states).codes.astype(np.int64)
    state_row[state_row < 0] = len(states)  # no state, or one the reference lacks: the pooled profile
    return {
        "reference": ref,
        "called": called,
        "patients": patients,
        "patient": patient,
        "states": states,
        "state_row": state_row,
    }


def _chromosome_genes(var: pd.DataFrame, chromosome: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chrom_cols by midpoint, their midpoints in bp, off_cols: autosomal genes off the chromosome)."""
    chrom = var["chromosome"].astype(str).to_numpy()
    mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
    on = np.flatnonzero(chrom == chromosome)
    if on.size == 0:
        raise InputError(f"no gene of the AnnData lies on {chromosome}.", where="lesion chromosome")
    on = on[np.argsort(mid[on], kind="stable")]
    return on, mid[on], np.flatnonzero(np.isin(chrom, _AUTOSOMES) & (chrom != chromosome))


def lesion_sums(
    adata: anndata.AnnData,
    lesions: Sequence,
    *,
    reference_mask="reference",
    call_keys: Mapping[str, str] | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    chunk_cells: int = CHUNK_CELLS,
) -> dict[str, LesionSums]:
    """The summed counts :func:`lesion_profile` and :func:`estimate_breakpoints` need, for all
    ``lesions`` in one pass over the counts (pass the result as their ``sums=``).

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]``, or ``X`` as in :func:`infer_profile`) or, with
        ``counts``, only obs and var describing that file's cells and genes; ``var`` positions and
        obs columns of the calls, ``patient_key`` and ``state_key``.
    lesions
        :class:`remnant.tl.lesions.Lesion` objects.
    reference_mask
        Boolean array (n_obs,) or obs column: the normal reference cells.
    call_keys
        ``{lesion name: boolean obs column of its call}`` (default ``f"{name}_call"``).
    counts
        Path of an h5ad file with the counts in ``layers/<layer>`` or ``X`` (as ``layer`` of
        :func:`infer_profile`), read a
        block of ``chunk_cells`` cells at a time; ``None``: ``adata``.

    Returns
    -------
    ``{lesion name: LesionSums}``. Memory: per lesion, the called cells' counts on its chromosome
    (sparse) and a few float64 (n_obs,) vectors; per-group sums are patients x genes.
    """
    where = "lesion_sums"
    source = _Counts(adata, layer, counts, where)
    call_keys = dict(call_keys or {})
    groups = {
        lesion.name: _cell_groups(
            adata, lesion, reference_mask, call_keys.get(lesion.name), patient_key, state_key, where
        )
        for lesion in lesions
    }
    if not groups:
        return {}
    genes = {c: _chromosome_genes(adata.var, c) for c in {lesion.chromosome for lesion in lesions}}
    shared = next(iter(groups.values()))  # reference and states: the same for every lesion
    n_rows = len(shared["states"]) + 1
    ref_row = np.where(shared["reference"], shared["state_row"], -1)
    reference_all = np.zeros((n_rows, adata.n_vars))
    off_masks = {c: np.isin(np.arange(adata.n_vars), g[2]) for c, g in genes.items()}
    depth = {c: np.zeros(adata.n_obs) for c in genes}
    acc = {}
    for lesion in lesions:
        on, _, off = genes[lesion.chromosome]
        n_pat = len(groups[lesion.name]["patients"])
        acc[lesion.name] = {
            "called": np.zeros((n_pat, on.size + off.size)),
            "uncalled": np.zeros((n_pat, on.size)),
            "cells": [],
            "counts": [],
        }
    for positions, block in source.blocks(chunk_cells=chunk_cells):
        for c, mask in off_masks.items():
            # weights in the block's dtype (as lesions.depth_on): a float64 vector would copy the block
            depth[c][positions] = np.asarray(block @ mask.astype(block.dtype)).ravel()
        reference_all += _sum_by_group(block, ref_row[positions], n_rows)
        for lesion in lesions:
            g, a = groups[lesion.name], acc[lesion.name]
            on, _, off = genes[lesion.chromosome]
            called, patient = g["called"][positions], g["patient"][positions]
            a["called"] += _sum_by_group(
                block, np.where(called, patient, -1), a["called"].shape[0], np.concatenate([on, off])
            )
            a["uncalled"] += _sum_by_group(block, np.where(called, -1, patient), a["uncalled"].shape[0], on)
            a["cells"].append(positions[called])
            a["counts"].append(block[np.flatnonzero(called)][:, on])
    out = {}
    for lesion in lesions:
        g, a = groups[lesion.name], acc[lesion.name]
        on, mid, off = genes[lesion.chromosome]
        n_called = int(g["called"].sum())
        out[lesion.name] = LesionSums(
            lesion=lesion.name,
            chromosome=lesion.chromosome,
            **g,
            chrom_cols=on,
            mid=mid,
            off_cols=off,
            depth=depth[lesion.chromosome],
            reference_sums=reference_all[:, np.concatenate([on, off])],
            called_sums=a["called"],
            uncalled_sums=a["uncalled"],
            called_cells=np.concatenate(a["cells"]) if a["cells"] else np.zeros(0, np.int64),
            called_counts=sp.vstack(a["counts"], format="csr") if a["counts"] else sp.csr_matrix((n_called, on.size)),
        )
    return out


def _sums_for(
    adata, lesion, sums, reference_mask, call_key, patient_key, state_key, layer, counts, chunk_cells, where
) -> LesionSums:
    """``sums`` checked against the AnnData and the arguments, or computed (one pass)."""
    if sums is None:
        return lesion_sums(
            adata,
            [lesion],
            reference_mask=reference_mask,
            call_keys={lesion.name: call_key} if call_key else None,
            patient_key=patient_key,
            state_key=state_key,
            layer=layer,
            counts=counts,
            chunk_cells=chunk_cells,
        )[lesion.name]
    if not isinstance(sums, LesionSums):
        raise TypeError(f"sums must be a LesionSums from lesion_sums(); got {type(sums).__name__}")
    g = _cell_groups(adata, lesion, reference_mask, call_key, patient_key, state_key, where)
    same = (
        sums.lesion == lesion.name
        and sums.chromosome == lesion.chromosome
        and sums.depth.shape == (adata.n_obs,)
        and all(
            np.array_equal(getattr(sums, k), v) if isinstance(v, np.ndarray) else getattr(sums, k) == v
            for k, v in g.items()
        )
    )
    if not same:
        raise ValueError(
            f"sums were computed for other cells, calls, reference, patients or states than {where} is "
            f"given for {lesion.name}; compute them with the same arguments."
        )
    return sums


# ================================================================================================
# expected counts of normal cells of the same state and depth
# ================================================================================================
class _Expectation:
    """State-matched reference profiles for the genes of one chromosome (see module docstring).

    Attributes: ``mid`` (the chromosome's gene midpoints, bp, by midpoint), ``P`` (n_rows,
    n_chrom_genes) and ``P_off`` (n_rows, n_off_genes): expected counts per count of depth, per
    state row of :class:`LesionSums` (the last row is the pooled profile).
    """

    def __init__(self, sums: LesionSums, shrinkage: float):
        self.sums = sums
        self.mid = sums.mid
        ref_idx = np.flatnonzero(sums.reference)
        n_rows = len(sums.states) + 1
        D = np.bincount(sums.state_row[ref_idx], weights=sums.depth[ref_idx], minlength=n_rows)
        S = sums.reference_sums
        pooled = S.sum(0) / max(D.sum(), 1.0)
        pseudo = shrinkage * float(np.median(sums.depth[ref_idx]))
        P = (S + pseudo * pooled[None, :]) / (D[:, None] + pseudo)
        P[-1] = pooled  # cells of states the reference lacks
        n_chrom = sums.chrom_cols.size
        self.P = P[:, :n_chrom]
        self.P_off = P[:, n_chrom:]

    def expected(self, cells: np.ndarray, weights: np.ndarray | None = None, off: bool = False) -> np.ndarray:
        """Expected counts summed over ``cells`` (int positions) on the chromosome's genes (``off``:
        the autosomal genes off it): float64 (n_genes,), or (B, n_genes) for ``weights`` (B, n_cells)."""
        P = self.P_off if off else self.P
        dep = self.sums.depth[cells]
        onehot = sp.csr_matrix(
            (np.ones(cells.size), (np.arange(cells.size), self.sums.state_row[cells])), shape=(cells.size, P.shape[0])
        )
        if weights is None:
            return np.asarray(onehot.T @ dep).ravel() @ P
        return np.asarray((onehot.T @ (weights * dep[None, :]).T).T) @ P


def _log_ratio(O, E):
    """Natural-log ratio of observed to expected with half a count added to both."""
    return np.log((O + 0.5) / (E + 0.5))


def _window_log2_ratio(O: np.ndarray, E: np.ndarray, ok: np.ndarray, width: int) -> np.ndarray:
    """log2(sum O / sum E) over a centred window of ``width`` genes among those with ``ok``.

    This is the expected-weighted mean of the per-gene ratios, on the log scale. A plain mean of
    per-gene log ratios is biased low where expected counts are small (about -0.3 log2 at 5-10
    expected counts on the simulator: log of a few counts, Jensen), which would exaggerate a loss.
    Genes without ``ok`` get the value of their window too (NaN when the window is empty).
    """
    pos = np.flatnonzero(ok)
    out = np.full(O.size, np.nan)
    if pos.size == 0:
        return out
    co = np.concatenate([[0.0], np.cumsum(O[pos])])
    ce = np.concatenate([[0.0], np.cumsum(E[pos])])
    # window of each gene: the ok genes around its rank among ok genes
    rank = np.clip(np.searchsorted(pos, np.arange(O.size)), 0, pos.size - 1)
    half = width // 2
    lo = np.clip(rank - half, 0, pos.size)
    hi = np.clip(rank + half + 1, 0, pos.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log2((co[hi] - co[lo]) / (ce[hi] - ce[lo]))
    return np.where(np.isfinite(out), out, np.nan)


# ================================================================================================
# lesion profile of called vs uncalled cells
# ================================================================================================
def lesion_profile(
    adata: anndata.AnnData,
    lesion,
    *,
    reference_mask="reference",
    call_key: str | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    sums: LesionSums | None = None,
    min_expected: float = 5.0,
    smooth_genes: int = 21,
    shrinkage: float = 20.0,
    chunk_cells: int = CHUNK_CELLS,
) -> pd.DataFrame:
    """Per patient, log2 ratio of observed to expected counts along the lesion's chromosome.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]`` or ``X``, as :func:`infer_profile`; or only
        obs and var with ``counts`` or ``sums``), ``var`` positions and obs columns ``call_key``,
        ``patient_key``, ``state_key``.
    lesion
        A :class:`remnant.tl.lesions.Lesion`; its chromosome is profiled.
    reference_mask
        Boolean array (n_obs,) or obs column: the normal reference cells (expected profiles).
    call_key
        Boolean obs column of the lesion call (default ``f"{lesion.name}_call"``).
    counts
        Path of an h5ad file holding the counts (see :func:`lesion_sums`).
    sums
        :func:`lesion_sums` of this lesion, computed with the same cells and arguments (checked):
        no pass over the counts. ``None``: computed here.
    min_expected
        A gene gets a ratio in a group when the group's expected count is at least this (fewer
        expected counts give a ratio dominated by counting noise and the half-count offset).
    smooth_genes
        Width of the centred smoothing window over the genes with a ratio (genes, not bp).
    shrinkage
        Pseudo-cells pulling a state's reference profile to the pooled one.
    chunk_cells
        Cells of counts read at a time.

    Returns
    -------
    DataFrame, one row per patient, group and gene of the chromosome (genes by midpoint):
    ``patient``, ``lesion``, ``group`` (``"called"``/``"not called"``), ``n_cells``, ``gene``
    (var_name), ``gene_name`` (when var has it), ``position`` (gene midpoint, bp), ``observed``,
    ``expected`` (counts summed over the group's cells), ``log2_ratio`` (log2 of (observed + 0.5) /
    (expected + 0.5); NaN below ``min_expected``), ``smoothed`` (log2 of summed observed over summed
    expected counts of the ``smooth_genes`` genes with a ratio centred on the gene: the
    expected-weighted mean of the per-gene ratios).
    Groups without cells have no rows.
    """
    where = "lesion_profile"
    if smooth_genes < 1:
        raise InputError(f"smooth_genes must be >= 1; got {smooth_genes}.", where=where)
    sums = _sums_for(
        adata, lesion, sums, reference_mask, call_key, patient_key, state_key, layer, counts, chunk_cells, where
    )
    ex = _Expectation(sums, shrinkage)
    n_chrom = sums.chrom_cols.size
    genes = adata.var_names[sums.chrom_cols]
    names = (
        adata.var["gene_name"].iloc[sums.chrom_cols].astype(str).to_numpy()
        if "gene_name" in adata.var
        else np.asarray(genes)
    )
    parts = []
    for k, patient in enumerate(sums.patients):
        mine = sums.patient == k
        for group, sel, O in (
            ("called", sums.called, sums.called_sums[k, :n_chrom]),
            ("not called", ~sums.called, sums.uncalled_sums[k]),
        ):
            cells = np.flatnonzero(mine & sel)
            if cells.size == 0:
                continue
            E = ex.expected(cells)
            ok = min_expected <= E
            lr = np.where(ok, _log_ratio(O, E) / np.log(2), np.nan)
            parts.append(
                pd.DataFrame(
                    {
                        "patient": patient,
                        "lesion": lesion.name,
                        "group": group,
                        "n_cells": int(cells.size),
                        "gene": np.asarray(genes),
                        "gene_name": names,
                        "position": ex.mid,
                        "observed": O,
                        "expected": E,
                        "log2_ratio": lr,
                        "smoothed": _window_log2_ratio(O, E, ok, smooth_genes),
                    }
                )
            )
    columns = [
        "patient",
        "lesion",
        "group",
        "n_cells",
        "gene",
        "gene_name",
        "position",
        "observed",
        "expected",
        "log2_ratio",
        "smoothed",
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _ordered(values: pd.Series) -> list[str]:
    """Levels in categorical order when categorical, else sorted; only levels present."""
    present = set(values.astype(str))
    levels = [str(v) for v in values.cat.categories] if hasattr(values, "cat") else sorted(present)
    return [v for v in levels if v in present]


# ================================================================================================
# breakpoints
# ================================================================================================
def _segment(l: np.ndarray, w: np.ndarray, sign: float, min_genes: int) -> tuple[int, int, float, float]:
    """Best single segment [i, j) of shifted mean against mean 0 (weighted Gaussian ML).

    With ``l_g ~ N(mu_g, 1/w_g)``, ``mu_g = m`` inside and 0 outside, the log-likelihood gain of
    the segment over "no change" at the ML ``m = sum(w l)/sum(w)`` is ``(sum w l)^2 / (2 sum w)``.
    Only segments whose ``m`` has the lesion's sign and which hold >= ``min_genes`` genes count.
    Returns (i, j, m, gain); (-1, -1, nan, 0) when no segment qualifies.
    """
    n = l.size
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cl = np.concatenate([[0.0], np.cumsum(w * l)])
    best = (-1, -1, float("nan"), 0.0)
    # rows of i in blocks keep the (i, j) table small for long chromosomes
    for a in range(0, n + 1, 512):
        i = np.arange(a, min(a + 512, n + 1))[:, None]
        SW = cw[None, :] - cw[i]
        SL = cl[None, :] - cl[i]
        j = np.arange(n + 1)[None, :]
        ok = (j - i >= min_genes) & (sign * SL > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where(ok, SL**2 / (2.0 * SW), -np.inf)
        k = int(np.argmax(gain))
        g = float(gain.flat[k])
        if g > best[3]:
            r, c = divmod(k, n + 1)
            ii, jj = int(i[r, 0]), int(c)
            best = (ii, jj, float(SL[r, c] / SW[r, c]), g)
    return best


def _band_of(cytobands: pd.DataFrame | None, chromosome: str, position: float) -> str:
    if cytobands is None or not np.isfinite(position):
        return ""
    on = cytobands[cytobands["chromosome"] == chromosome]
    hit = on[(on["start"] <= position) & (on["end"] > position)]
    if hit.empty:
        hit = on.iloc[[-1]] if position >= on["end"].max() and not on.empty else hit
    return f"{chromosome.removeprefix('chr')}{hit['band'].iloc[0]}" if not hit.empty else ""


def estimate_breakpoints(
    adata: anndata.AnnData,
    lesion,
    *,
    reference_mask="reference",
    call_key: str | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    sums: LesionSums | None = None,
    cytobands: pd.DataFrame | None = None,
    min_cells: int = 20,
    min_expected: float = 5.0,
    min_genes: int = 10,
    n_boot: int = 200,
    ci: float = 0.95,
    shrinkage: float = 20.0,
    seed: int = 0,
    chunk_cells: int = CHUNK_CELLS,
) -> pd.DataFrame:
    """Each patient's lesion breakpoints from the pseudobulk of its called cells.

    Model
    -----
    The genes of the lesion's chromosome with an expected count >= ``min_expected`` in the
    patient's called cells, in midpoint order, have log ratios ``l_g = log((O_g+0.5)/(E_g+0.5))``
    (see the module docstring for ``O``, ``E``) with variance ``1/(E_g+0.5) + tau^2``: counting
    noise plus a gene-level term ``tau^2`` (patient-specific expression, reference mismatch)
    measured on the same cells' autosomal genes off the chromosome (robust variance of their log
    ratios minus their counting variance). The copy ratio is ``rho`` inside ``[start, end)`` and 1
    outside; the ML pair of breakpoints (and ``log rho``, the weighted mean inside) is found by an
    exhaustive scan with cumulative sums (O(genes^2)). For a loss only segments with ``rho < 1``
    count, for a gain ``rho > 1``. The reported ``rho`` is the pooled ratio ``sum O / sum E`` of the
    genes inside (the mean log ratio is biased low by counting noise). A breakpoint lies halfway between the midpoints of the last
    gene outside and the first gene inside (the chromosome's end when the segment reaches it).
    Equal gene weights would let a few highly expressed genes with patient-specific expression
    move the breakpoints; the gene-level variance caps their weight.

    Bootstrap: the called cells are resampled with replacement ``n_boot`` times (profiles,
    ``tau`` and genes fixed) and the scan repeated. Expression only places a breakpoint in the gap
    between two scanned genes, so a breakpoint's interval runs from the ``(1-ci)/2`` quantile of
    the left edges to the ``(1+ci)/2`` quantile of the right edges of the gaps the replicates
    chose; ``rho``'s is the percentile interval. It measures cell-sampling noise only: gene-level
    noise is fixed within a patient, so the true breakpoint may lie a gene or two outside it
    (coverage measured in ``benchmarks/cnv_profile.py``).

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]`` or ``X``, as :func:`infer_profile`; or only
        obs and var with ``counts`` or ``sums``), ``var`` positions and obs columns ``call_key``,
        ``patient_key``, ``state_key``.
    lesion
        A :class:`remnant.tl.lesions.Lesion`.
    reference_mask
        Boolean array (n_obs,) or obs column: the normal reference cells.
    call_key
        Boolean obs column of the lesion call (default ``f"{lesion.name}_call"``).
    counts
        Path of an h5ad file holding the counts (see :func:`lesion_sums`).
    sums
        :func:`lesion_sums` of this lesion, computed with the same cells and arguments (checked):
        no pass over the counts. ``None``: computed here.
    cytobands
        :func:`remnant.io.annotation.load_cytobands` table: names the band of each breakpoint and
        gives the chromosome length (without it bands are empty and the length is the last gene end).
    min_cells
        Patients with fewer called cells get NaN and a ``reason``.
    min_expected
        Genes with fewer expected counts in the called cells are not used.
    min_genes
        Smallest number of genes inside a segment.
    n_boot, ci, seed
        Bootstrap replicates, interval level (0-1) and seed.
    shrinkage
        Pseudo-cells pulling a state's reference profile to the pooled one.
    chunk_cells
        Cells of counts read at a time.

    Returns
    -------
    DataFrame indexed by patient (``patient_key`` levels) with ``lesion``, ``chromosome``,
    ``n_called`` (called cells), ``n_genes`` (genes scanned), ``n_genes_inside``, ``start``,
    ``end`` (bp, 0-based half-open), ``start_lo``, ``start_hi``, ``end_lo``, ``end_hi`` (bootstrap
    interval, bp), ``start_band``, ``end_band`` (cytoband, e.g. ``5q13.2``), ``ratio`` (``rho``, pooled inside)
    with ``ratio_lo``, ``ratio_hi``, ``llr`` (log-likelihood gain of the segment over no change,
    natural log), ``tau`` (gene-level sd, natural log) and ``reason`` (empty when estimated).
    """
    where = "estimate_breakpoints"
    if not 0 < ci < 1:
        raise InputError(f"ci must be between 0 and 1; got {ci}.", where=where)
    if n_boot < 0 or min_cells < 1 or min_genes < 1:
        raise InputError("n_boot must be >= 0, min_cells and min_genes >= 1.", where=where)
    sums = _sums_for(
        adata, lesion, sums, reference_mask, call_key, patient_key, state_key, layer, counts, chunk_cells, where
    )
    ex = _Expectation(sums, shrinkage)
    n_chrom = sums.chrom_cols.size
    if cytobands is not None and (cytobands["chromosome"] == lesion.chromosome).any():
        length = int(cytobands.loc[cytobands["chromosome"] == lesion.chromosome, "end"].max())
    else:
        length = int(adata.var["end"].iloc[sums.chrom_cols].max())
    sign = -1.0 if lesion.type == "loss" else 1.0
    called_patient = sums.patient[sums.called_cells]  # patient of each row of sums.called_counts
    alpha = (1 - ci) / 2
    rows = []
    for k, patient in enumerate(sums.patients):
        cells = np.flatnonzero((sums.patient == k) & sums.called)
        row = {
            "patient": patient,
            "lesion": lesion.name,
            "chromosome": lesion.chromosome,
            "n_called": int(cells.size),
            "n_genes": 0,
            "n_genes_inside": 0,
            **dict.fromkeys(
                (
                    "start",
                    "end",
                    "start_lo",
                    "start_hi",
                    "end_lo",
                    "end_hi",
                    "ratio",
                    "ratio_lo",
                    "ratio_hi",
                    "llr",
                    "tau",
                ),
                np.nan,
            ),
            "start_band": "",
            "end_band": "",
            "reason": "",
        }
        rows.append(row)
        if cells.size < min_cells:
            row["reason"] = f"{cells.size} called cells (< min_cells {min_cells})"
            continue
        O, E = sums.called_sums[k, :n_chrom], ex.expected(cells)
        use = min_expected <= E
        if use.sum() < 2 * min_genes:
            row["reason"] = f"{int(use.sum())} genes on {lesion.chromosome} with >= {min_expected} expected counts"
            continue
        Oo, Eo = sums.called_sums[k, n_chrom:], ex.expected(cells, off=True)
        keep = Eo >= min_expected
        lo = _log_ratio(Oo[keep], Eo[keep])
        robust_var = (1.4826 * np.median(np.abs(lo - np.median(lo)))) ** 2
        tau2 = max(robust_var - float(np.median(1.0 / (Eo[keep] + 0.5))), 0.0)
        mid = ex.mid[use]
        # boundary k (between scanned genes k-1 and k): the gap (left[k], right[k]) and its middle
        left = np.concatenate([[0], mid])
        right = np.concatenate([mid, [length]])
        bounds = np.concatenate([[0], (mid[:-1] + mid[1:]) // 2, [length]])

        def scan(O_, E_, use=use, tau2=tau2):
            l_ = _log_ratio(O_[use], E_[use])
            w_ = 1.0 / (1.0 / (E_[use] + 0.5) + tau2)
            i_, j_, m_, g_ = _segment(l_, w_, sign, min_genes)
            # rho as the pooled ratio inside: the mean of log ratios is biased low by counting
            # noise (Jensen), more so in bootstrap replicates, which add a second round of it
            rho_ = O_[use][i_:j_].sum() / E_[use][i_:j_].sum() if i_ >= 0 else np.nan
            return i_, j_, rho_, g_

        i, j, rho, gain = scan(O, E)
        row.update(n_genes=int(use.sum()), tau=float(np.sqrt(tau2)))
        if i < 0:
            row["reason"] = f"no segment of >= {min_genes} genes with ratio {'< 1' if sign < 0 else '> 1'}"
            continue
        row.update(
            start=float(bounds[i]),
            end=float(bounds[j]),
            n_genes_inside=int(j - i),
            ratio=float(rho),
            llr=float(gain),
            start_band=_band_of(cytobands, lesion.chromosome, bounds[i]),
            end_band=_band_of(cytobands, lesion.chromosome, bounds[j] - 1),
        )
        if n_boot > 0:
            rng = np.random.default_rng([int(seed), int.from_bytes(patient.encode()[:8].ljust(8, b"\0"), "little")])
            boot = np.full((n_boot, 5), np.nan)
            # the patient's called cells on the chromosome, rows in the order of ``cells``
            Xc = sp.csr_matrix(sums.called_counts[np.flatnonzero(called_patient == k)], dtype=np.float64)
            for a in range(0, n_boot, 50):  # blocks of replicates bound the (B, genes) temporaries
                B = min(50, n_boot - a)
                W = rng.multinomial(cells.size, np.full(cells.size, 1.0 / cells.size), size=B).astype(np.float64)
                Ob, Eb = np.asarray((Xc.T @ W.T).T), ex.expected(cells, weights=W)
                for b in range(B):
                    bi, bj, bm, _ = scan(Ob[b], Eb[b])
                    if bi >= 0:
                        boot[a + b] = (left[bi], right[bi], left[bj], right[bj], bm)
            lo_q = np.nanquantile(boot, alpha, axis=0)
            hi_q = np.nanquantile(boot, 1 - alpha, axis=0)
            row.update(
                start_lo=lo_q[0], start_hi=hi_q[1], end_lo=lo_q[2], end_hi=hi_q[3], ratio_lo=lo_q[4], ratio_hi=hi_q[4]
            )
    return pd.DataFrame(rows).set_index("patient")


# ================================================================================================
# figures
# ================================================================================================
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_message(path: str, text: str) -> None:
    """A small PNG that says why a figure has no data (keeps declared workflow outputs honest)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _downsample(groups: pd.Series, cap: int, rng: np.random.Generator, floor: int = 10) -> np.ndarray:
    """Positions to keep: all when <= cap, else per group a share proportional to its size (at
    least ``floor`` cells or the whole group) so that small groups stay visible."""
    n = len(groups)
    if n <= cap:
        return np.arange(n)
    keep = []
    codes = pd.factorize(groups)[0]
    for g in np.unique(codes):
        idx = np.flatnonzero(codes == g)
        k = min(idx.size, max(floor, int(round(cap * idx.size / n))))
        keep.append(np.sort(rng.choice(idx, size=k, replace=False)))
    return np.sort(np.concatenate(keep))


def _bar_colours(values: pd.Series, key: str) -> tuple[list[str], dict[str, str]]:
    from remnant.pl.clusters import palette

    levels = _ordered(values)
    colours = palette(levels, key)
    return levels, colours


def plot_patient_heatmap(
    adata: anndata.AnnData,
    patient: str,
    path: str,
    *,
    call_key: str | Sequence[str] = "del5q_call",
    patient_key: str = "patient",
    population_key: str = "population",
    timepoint_key: str = "timepoint",
    reference_mask="reference",
    key: str = "cnv",
    lesions: Sequence | None = None,
    max_cells: int = 1500,
    n_reference_cells: int = 200,
    seed: int = 0,
    vmax: float | None = None,
    profile: str | os.PathLike | None = None,
) -> None:
    """Chromosome-ordered heatmap of one patient's copy-number profiles (PNG).

    Rows are the patient's cells ordered by population, timepoint and call(s) (not called first),
    with colour bars for each; above them a block of healthy reference cells from other donors
    shows what "normal" looks like against the same reference. Columns are ``obsm[f"X_{key}"]``
    windows in genome order with chromosome boundaries and labels; configured ``lesions`` are
    marked above. Blue is lower expression than the state-matched reference (loss), red higher.

    Parameters
    ----------
    adata
        Cells with ``obsm[f"X_{key}"]`` and ``uns[key]`` from :func:`infer_profile` and the obs
        columns named below (no gene matrix needed); with ``profile``, only obs and ``uns[key]``.
    patient
        A value of ``obs[patient_key]``.
    path
        Output PNG.
    call_key
        Boolean obs column(s) of lesion calls, one colour bar each (e.g. ``"del5q_call"``).
    reference_mask
        Boolean array (n_obs,) or obs column of the reference cells; ``None``: no reference block.
    lesions
        :class:`remnant.tl.lesions.Lesion` objects to mark on the genome axis.
    max_cells
        Above this many cells, a seeded random subset is drawn per population/timepoint/call group
        (proportional, at least 10 per group); the figure says how many are shown.
    n_reference_cells
        Reference cells shown (seeded random subset of the reference cells of other donors).
    seed
        Seed of the downsampling.
    vmax
        Colour limit (symmetric); default the 99.5th percentile of |values| shown.
    profile
        A profile h5ad (:func:`write_profile`) holding ``obsm[f"X_{key}"]`` for the cells of
        ``adata``: only the rows drawn are read from it (:func:`read_profile_rows`), not the
        cohort's whole profile.
    """
    plt = _plt()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    where = "plot_patient_heatmap"
    if (profile is None and f"X_{key}" not in adata.obsm) or key not in adata.uns or "windows" not in adata.uns[key]:
        raise InputError(
            f"no copy-number profile: obsm['X_{key}'] and uns['{key}']['windows'] come from infer_profile.", where=where
        )
    call_keys = [call_key] if isinstance(call_key, str) else list(call_key)
    for k in (*call_keys, patient_key, population_key, timepoint_key):
        _obs_key(adata, k, where)
    obs = adata.obs
    mine = (obs[patient_key].astype(str) == str(patient)).to_numpy()
    if not mine.any():
        raise InputError(f"no cell of patient {patient!r} in obs[{patient_key!r}].", where=where)
    if max_cells < 1:
        raise InputError(f"max_cells must be >= 1; got {max_cells}.", where=where)
    ref = (
        cell_mask(adata, reference_mask, "reference_mask", where)
        if reference_mask is not None
        else np.zeros(adata.n_obs, bool)
    )
    rng = np.random.default_rng(seed)
    if profile is None:
        M = sp.csr_matrix(adata.obsm[f"X_{key}"])

        def profile_rows(positions):
            return M[positions].toarray()
    else:

        def profile_rows(positions):
            return read_profile_rows(profile, positions, key=key).toarray()

    windows = adata.uns[key]["windows"]
    if not isinstance(windows, pd.DataFrame):
        windows = pd.DataFrame(windows)

    # patient rows: order by population, timepoint, call; downsample per group above the cap
    idx = np.flatnonzero(mine)
    sub = obs.iloc[idx]
    calls = [cell_mask(adata, k, "call_key", where)[idx] for k in call_keys]
    pop_levels, pop_col = _bar_colours(sub[population_key], "population")
    tp = sub[timepoint_key].astype(object).where(sub[timepoint_key].notna(), "NA").astype(str)
    tp_levels = [v for v in _ordered(sub[timepoint_key]) if v in set(tp)] + sorted(
        set(tp) - set(_ordered(sub[timepoint_key]))
    )
    tp_col = _bar_colours(pd.Series(pd.Categorical(tp, categories=tp_levels)), "timepoint")[1]
    order = pd.DataFrame(
        {
            "pop": [pop_levels.index(str(v)) for v in sub[population_key].astype(str)],
            "tp": [tp_levels.index(v) for v in tp],
            "i": np.arange(idx.size),
        }
    )
    call_cols = [f"call{k}" for k in range(len(calls))]
    for col, c in zip(call_cols, calls):
        order[col] = c.astype(int)
    order = order.sort_values(["pop", "tp", *call_cols, "i"], kind="stable")
    groups = order[["pop", "tp", *call_cols]].astype(str).agg("|".join, axis=1)
    keep = _downsample(groups.reset_index(drop=True), max_cells, rng)
    shown = order.iloc[keep]
    shown_groups = groups.to_numpy()[keep]
    rows = idx[shown["i"].to_numpy()]
    values = profile_rows(rows)

    ref_other = np.flatnonzero(ref & ~mine)
    ref_rows = (
        np.sort(rng.choice(ref_other, size=min(n_reference_cells, ref_other.size), replace=False))
        if ref_other.size
        else ref_other
    )
    ref_values = profile_rows(ref_rows) if ref_rows.size else np.zeros((0, values.shape[1]))
    if vmax is None:
        both = np.abs(np.concatenate([values.ravel(), ref_values.ravel()]))
        vmax = float(np.quantile(both, 0.995)) if both.size and np.any(both > 0) else 0.1
        vmax = max(vmax, 1e-3)

    n_ref_block = ref_values.shape[0]
    height_ref = max(0.18, n_ref_block / max(n_ref_block + values.shape[0], 1)) if n_ref_block else 0.0
    fig = plt.figure(figsize=(14, 8.5))
    nb = 2 + len(call_keys)  # colour bars left of the heatmap
    gs = fig.add_gridspec(
        3,
        nb + 2,
        width_ratios=[0.25] * nb + [14, 0.3],
        height_ratios=[0.06, height_ref or 1e-6, 1.0 - height_ref],
        wspace=0.03,
        hspace=0.04,
        left=0.08,
        right=0.9,
        top=0.88,
        bottom=0.17,
    )
    cmap = "RdBu_r"
    ax_genome = fig.add_subplot(gs[0, nb])
    ax_ref = fig.add_subplot(gs[1, nb]) if n_ref_block else None
    ax = fig.add_subplot(gs[2, nb])
    im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-vmax, vmax=vmax)
    if ax_ref is not None:
        ax_ref.imshow(ref_values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-vmax, vmax=vmax)
        ax_ref.set_xticks([])
        ax_ref.set_yticks([])
        ax_ref.set_ylabel(
            f"healthy\nreference\n({n_ref_block} of\n{ref_other.size})", rotation=0, ha="right", va="center", fontsize=7
        )

    # chromosome boundaries and labels
    chroms = windows["chromosome"].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, chroms[1:] != chroms[:-1]])
    ends = np.r_[starts[1:], chroms.size]
    for a in (ax, ax_ref, ax_genome):
        if a is None:
            continue
        for first in starts[1:]:
            a.axvline(first - 0.5, color="black", lw=0.5)
        a.set_xlim(-0.5, chroms.size - 0.5)
    ax.set_xticks((starts + ends - 1) / 2, [c.removeprefix("chr") for c in chroms[starts]], fontsize=7)
    ax.set_xlabel("chromosome (windows of genes in genome order)")
    ax.set_yticks([])

    # lesions on the genome axis
    ax_genome.set_yticks([])
    ax_genome.set_xticks([])
    for spine in ax_genome.spines.values():
        spine.set_visible(False)
    for lesion in lesions or []:
        inside = np.flatnonzero(
            (chroms == lesion.chromosome)
            & (windows["mid"].to_numpy() >= lesion.start)
            & (windows["mid"].to_numpy() < lesion.end)
        )
        if inside.size:
            ax_genome.axvspan(inside[0] - 0.5, inside[-1] + 0.5, color="#444444")
            ax_genome.text(
                (inside[0] + inside[-1]) / 2,
                0.5,
                f"{lesion.name} ({lesion.region}) ",
                ha="right",
                va="center",
                fontsize=7,
                transform=ax_genome.get_xaxis_transform(),
            )

    # colour bars
    bars = [
        ("population", [str(v) for v in sub[population_key].astype(str).to_numpy()[shown["i"]]], pop_col),
        ("timepoint", list(tp.to_numpy()[shown["i"]]), tp_col),
    ] + [
        (k.removesuffix("_call") + " call", ["called" if v else "not called" for v in c[shown["i"]]], CALL_COLOURS)
        for k, c in zip(call_keys, calls)
    ]
    handles = []
    for k, (title, labels, colours) in enumerate(bars):
        axb = fig.add_subplot(gs[2, k], sharey=ax)
        levels = list(colours)
        code = np.array([levels.index(v) for v in labels])[:, None]
        axb.imshow(
            code,
            aspect="auto",
            interpolation="nearest",
            cmap=ListedColormap([colours[v] for v in levels]),
            vmin=-0.5,
            vmax=len(levels) - 0.5,
        )
        axb.set_xticks([0], [title], rotation=90, fontsize=7)
        axb.set_yticks([])
        present = [v for v in levels if v in set(labels)]
        handles.append((title, [Patch(color=colours[v], label=v) for v in present]))
    # group boundaries
    for b in np.flatnonzero(shown_groups[1:] != shown_groups[:-1]) + 1:
        ax.axhline(b - 0.5, color="black", lw=0.4)
    cax = fig.add_subplot(gs[2, nb + 1])
    fig.colorbar(im, cax=cax, label="inferred copy number\n(log expression vs healthy, smoothed)")
    for n, (title, patches) in enumerate(handles):
        fig.legend(
            handles=patches,
            title=title,
            loc="lower left",
            bbox_to_anchor=(0.05 + 0.9 * n / len(handles), 0.0),
            ncol=min(4, len(patches)),
            fontsize=7,
            title_fontsize=7,
            frameon=False,
        )

    n_total = int(mine.sum())
    is_ref = bool(ref[mine].any())
    params = adata.uns[key].get("params", {})
    states = ", ".join(np.asarray(adata.uns[key].get("reference_states", []), dtype=str))
    fig.suptitle(
        f"Patient {patient}: inferred copy number (infercnvpy) against the state-matched healthy reference", fontsize=11
    )
    note = (
        f"{len(rows):,} of {n_total:,} cells shown"
        + (f" (seeded random subset per population/timepoint/call group, seed {seed})" if len(rows) < n_total else "")
        + f"; reference: {params.get('n_reference_used', ref.sum()):,} healthy cells in states {states}"
        + (". This donor's own cells are part of the reference." if is_ref else ".")
    )
    fig.text(0.5, 0.925, note, ha="center", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lesion_profile(
    profile: pd.DataFrame,
    lesion,
    path: str,
    *,
    patient: str,
    breakpoints: pd.DataFrame | None = None,
    cytobands: pd.DataFrame | None = None,
) -> None:
    """The lesion's chromosome for one patient: called vs uncalled cells (PNG).

    Per-gene log2 ratios of the called cells as dots (the axis is cut at -3.5 and 2.5), the smoothed profile of each group as a line,
    the configured interval shaded, the estimated breakpoints (dashed) with their bootstrap
    intervals, and reference lines at 0 and at log2 of the lesion's copy ratio.

    Parameters
    ----------
    profile
        Table from :func:`lesion_profile` (any patients/lesions; the patient's rows are used).
    lesion
        The :class:`remnant.tl.lesions.Lesion` profiled.
    path
        Output PNG.
    patient
        Patient to draw.
    breakpoints
        Table from :func:`estimate_breakpoints` (indexed by patient) or None.
    cytobands
        :func:`remnant.io.annotation.load_cytobands` table: draws the chromosome's bands below.
    """
    plt = _plt()
    where = "plot_lesion_profile"
    need = {"patient", "lesion", "group", "n_cells", "position", "log2_ratio", "smoothed"}
    if not need <= set(profile.columns):
        raise InputError(
            f"profile table lacks columns {sorted(need - set(profile.columns))}; use lesion_profile().", where=where
        )
    mine = profile[(profile["patient"].astype(str) == str(patient)) & (profile["lesion"] == lesion.name)]
    if mine.empty:
        raise InputError(f"no profile rows for patient {patient!r} and lesion {lesion.name!r}.", where=where)
    has_bands = cytobands is not None and (cytobands["chromosome"] == lesion.chromosome).any()
    fig, axes = plt.subplots(
        2 if has_bands else 1,
        1,
        figsize=(11, 5),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [1, 0.06] if has_bands else [1], "hspace": 0.05},
    )
    ax = axes[0, 0]
    mb = 1e6
    called = mine[mine["group"] == "called"]
    if not called.empty:
        ax.scatter(
            called["position"] / mb,
            called["log2_ratio"],
            s=3,
            color=GROUP_COLOURS["called"],
            alpha=0.25,
            lw=0,
            label="called cells, per gene",
        )
    for group in ("not called", "called"):
        part = mine[mine["group"] == group]
        if part.empty:
            continue
        ax.plot(
            part["position"] / mb,
            part["smoothed"],
            color=GROUP_COLOURS[group],
            lw=1.8,
            label=f"{group} ({int(part['n_cells'].iloc[0]):,} cells), smoothed",
        )
    ax.axvspan(
        lesion.start / mb,
        lesion.end / mb,
        color="#F4A582",
        alpha=0.25,
        lw=0,
        label=f"configured {lesion.name} {lesion.region}",
    )
    ax.axhline(0, color="black", lw=0.6)
    ax.axhline(np.log2(lesion.copy_ratio), color="grey", lw=0.6, ls=":", label=f"ratio {lesion.copy_ratio:g}")
    text = ""
    if breakpoints is not None and str(patient) in breakpoints.index.astype(str):
        bp = breakpoints.loc[breakpoints.index.astype(str) == str(patient)].iloc[0]
        if str(bp.get("reason", "") or "") == "" and np.isfinite(bp["start"]):
            for side in ("start", "end"):
                ax.axvline(bp[side] / mb, color="black", ls="--", lw=1)
                if np.isfinite(bp[f"{side}_lo"]):
                    ax.axvspan(bp[f"{side}_lo"] / mb, bp[f"{side}_hi"] / mb, color="black", alpha=0.12, lw=0)
            text = (
                f"estimated {bp['start'] / mb:.1f}-{bp['end'] / mb:.1f} Mb ({bp['start_band']}-{bp['end_band']}), "
                f"ratio {bp['ratio']:.2f}, {int(bp['n_genes_inside'])} genes; dashed: breakpoints, grey: bootstrap interval"
            )
        else:
            text = f"breakpoints not estimated: {bp.get('reason', '')}"
    ax.set_ylabel("log2 observed / expected\n(state-matched healthy reference)")
    finite = mine["log2_ratio"].dropna()
    if not finite.empty:
        lo, hi = np.nanquantile(finite, [0.01, 0.99])
        # per-gene dots of read-count (plate) data scatter widely: keep the lines readable
        ax.set_ylim(max(min(lo, np.log2(lesion.copy_ratio) - 0.5), -3.5), min(max(hi, 0.5), 2.5))
    ax.set_title(
        f"Patient {patient}: {lesion.chromosome} in cells called / not called {lesion.name}\n{text}", fontsize=9
    )
    ax.legend(fontsize=7, frameon=False, loc="lower left", ncol=2)
    if has_bands:
        axb = axes[1, 0]
        shade = {
            "gneg": "#FFFFFF",
            "gpos25": "#C8C8C8",
            "gpos50": "#969696",
            "gpos75": "#646464",
            "gpos100": "#000000",
            "acen": "#B2182B",
            "gvar": "#DDDDDD",
            "stalk": "#EEEEEE",
        }
        for _, b in cytobands[cytobands["chromosome"] == lesion.chromosome].iterrows():
            axb.axvspan(b["start"] / mb, b["end"] / mb, color=shade.get(str(b["stain"]), "#BBBBBB"), lw=0)
        axb.set_yticks([])
        axb.set_xlabel(f"{lesion.chromosome} position (Mb, GRCh38); bands below, centromere red")
    else:
        ax.set_xlabel(f"{lesion.chromosome} position (Mb)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
