"""Gene-set scores of a cohort file, streamed: scanpy's ``score_genes`` without the whole matrix.

Method
------
:func:`scanpy.tl.score_genes` (scanpy 1.11; Satija et al., Nat Biotechnol 2015, as used by Tirosh
et al., Science 2016): a cell's score is the mean expression of the set's genes minus the mean
of control genes. The controls are drawn per expression bin: every gene of the pool is binned
by its mean expression over the cells (``n_bins`` bins of equal size by rank), and ``ctrl_size``
genes are sampled from each bin holding a set gene; the set genes themselves are then removed
from the controls (``ctrl_as_ref=True``, scanpy's default).

Why it is re-expressed here
---------------------------
scanpy works on an in-memory AnnData: for the bins it takes the mean of every pool gene over the
whole log-normalised matrix, so a million-cell cohort would need its counts (~12 GB) plus a
float64 log-normalised copy in memory. The bins only need per-gene means, and the scores only
need the set and control genes, so here two passes over the file's raw counts, one block of cells
at a time (:func:`remnant.io.store.iter_chunks`), do the same:

1. per-gene sums of ``log1p(counts / library * target_sum)`` over the scored cells (one float64
   vector per normalisation), then the bins and the control draw exactly as scanpy does them (the
   same pandas calls, with a ``numpy.random.RandomState(seed)`` passed to ``Series.sample``, which
   draws what scanpy's ``np.random.seed(seed)`` plus the global generator draws; a fresh generator
   for every score, as scanpy reseeds on every call);
2. per block, each score as the block's log-normalised set and control genes times a sparse
   weight matrix (``+1/n`` on set genes, ``-1/n_ctrl`` on controls).

Several gene sets and several normalisations (e.g. the library counted outside the lesions, or
over all genes) share the same two passes. The per-gene sums are accumulated in float64 in the
order of the cells (``numpy.add.at``), as scipy sums a float64 matrix, so on float64 data the
means, hence the bins and the controls, are bit-identical to scanpy's and the scores agree to
rounding (~1e-15). scanpy given a float32 matrix (e.g. after ``sc.pp.normalize_total`` of float32
counts) normalises and accumulates in float32; its means then differ from these in the 7th
digit, which can move a gene whose mean lies on a bin edge into the next bin and so change the
control draw of that bin (rare; the scores stay within float32 noise otherwise).

Memory: one block of counts (``chunk_cells`` cells), its float64 log-normalised values (8 bytes
per nonzero), one float64 vector per normalisation (genes), and the scores (cells x scores,
float64). Nothing is cells x all genes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io import store

log = logging.getLogger(__name__)

__all__ = [
    "Score",
    "cell_cycle_phase",
    "cell_cycle_scores",
    "choose_controls",
    "score_cell_cycle",
    "score_gene_sets",
    "score_many",
]


#: Cells per block: smaller than :data:`remnant.io.store.CHUNK_CELLS` because a block is held with
#: float64 copies of its values (~4 x 8 bytes per nonzero at the peak): 20,000 cells x 2,300
#: nonzeros -> ~1.5 GB, whatever the cohort size.
CHUNK_CELLS = 20_000


@dataclass(frozen=True)
class Score:
    """One per-cell score.

    Attributes
    ----------
    name
        Column name of the result.
    genes
        Var names of the set (a sequence: scanpy's score of the set), or a ``pandas.Series`` of
        weights indexed by var name: the weighted sum of per-gene scores, each gene scored alone
        with its own controls (its own generator seeded with ``seed``), as remnant scores LSC17.
    gene_pool
        Var names the controls are drawn from (and binned over); ``None``: every gene.
    library
        Key of the normalisation in ``libraries`` of :func:`score_many`.
    ctrl_size, n_bins, seed, ctrl_as_ref
        As in :func:`scanpy.tl.score_genes` (``seed`` is its ``random_state``).
    """

    name: str
    genes: Sequence[str] | pd.Series
    gene_pool: Sequence[str] | None = None
    library: str = "all"
    ctrl_size: int = 50
    n_bins: int = 25
    seed: int = 0
    ctrl_as_ref: bool = True


# ---------------------------------------------------------------------------------------------
# blocks of counts from a file or from memory
# ---------------------------------------------------------------------------------------------
def _is_path(source) -> bool:
    return isinstance(source, (str, Path))


def _names(source, key: str) -> tuple[pd.Index, pd.Index]:
    """(obs_names, var_names) of a cohort file or an AnnData."""
    if not _is_path(source):
        return source.obs_names, source.var_names
    from anndata.io import read_elem

    n_obs, n_vars = store.shape(source, key)  # checks the file and that key is a CSR matrix
    with store._open(source) as f:
        obs_index = read_elem(f["obs"][f["obs"].attrs.get("_index", "_index")])
        var_index = read_elem(f["var"][f["var"].attrs.get("_index", "_index")])
    obs_names, var_names = pd.Index(np.asarray(obs_index).astype(str)), pd.Index(np.asarray(var_index).astype(str))
    if len(obs_names) != n_obs or len(var_names) != n_vars:
        raise InputError(
            f"obs/var have {len(obs_names)}/{len(var_names)} rows but {key!r} is {n_obs} x {n_vars}.", path=str(source)
        )
    return obs_names, var_names


def _blocks(
    source, *, key: str, rows: np.ndarray | None, chunk_cells: int
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """(cell positions, CSR counts block) over the selected cells, from a file (``key``: ``"X"`` or
    ``"layers/counts"``) or an AnnData (``key``: ``"X"`` or ``"layers/<name>"``)."""
    if _is_path(source):
        yield from store.iter_chunks(source, key=key, rows=rows, chunk_cells=chunk_cells)
        return
    if key == "X":
        matrix = source.X
    elif key.startswith("layers/") and key.removeprefix("layers/") in source.layers:
        matrix = source.layers[key.removeprefix("layers/")]
    else:
        raise InputError(f"AnnData has no {key!r} with raw counts.", where="scoring")
    n = matrix.shape[0]
    for start in range(0, n, chunk_cells):
        positions = np.arange(start, min(start + chunk_cells, n), dtype=np.int64)
        if rows is not None:
            positions = positions[rows[start : start + chunk_cells]]
            if not positions.size:
                continue
        block = matrix[positions]
        yield positions, (block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block)))


class _Float64:
    """A CSR block in float64 (the counts are converted once) with what its normalisations share."""

    def __init__(self, block: sp.csr_matrix):
        self.csr = sp.csr_matrix((block.data.astype(np.float64), block.indices, block.indptr), shape=block.shape)
        self._rows = None

    def library(self, mask: np.ndarray | None) -> np.ndarray:
        """float64 (n_cells,) totals over the genes of the float (n_genes,) 0/1 ``mask`` (None: all):
        a float64 matrix-vector product, as the in-memory path computed it."""
        return self.csr @ (np.ones(self.csr.shape[1]) if mask is None else mask)

    def per_value(self, per_cell: np.ndarray) -> np.ndarray:
        """float64 (nnz,) ``per_cell[row of each stored value]`` (a new array)."""
        if self._rows is None:
            self._rows = np.repeat(np.arange(self.csr.shape[0], dtype=np.int32), np.diff(self.csr.indptr))
        return per_cell[self._rows]


def _downsample(block: sp.csr_matrix, target: int | None, seed: int) -> sp.csr_matrix:
    """Counts thinned without replacement to ``target`` per cell (cells at or under it unchanged),
    :func:`scanpy.pp.downsample_counts`. scanpy reseeds its generator with ``seed`` for every cell,
    so a cell's thinning depends only on its own counts: thinning block by block gives the same
    counts as thinning the whole matrix at once (and the same in both passes). It walks a row's
    stored values in order, so the genes are put in ascending order first: the thinning then does
    not depend on how the matrix happened to be stored (it did in the in-memory path before)."""
    if target is None:
        return block
    import scanpy as sc
    from anndata import AnnData

    block = sp.csr_matrix(block, dtype=np.float32, copy=True)
    block.sort_indices()
    tmp = AnnData(X=block)
    sc.pp.downsample_counts(tmp, counts_per_cell=max(int(target), 1), random_state=seed, replace=False)
    return sp.csr_matrix(tmp.X)


def _values(block: _Float64, library: np.ndarray | None, target_sum: float | None) -> np.ndarray:
    """float64 log1p(counts * target_sum / library) of the block's stored values (``csr.data`` order),
    ``library`` float64 (n_cells,); ``target_sum=None``: the stored values as they are (already normalised)."""
    if target_sum is None:
        return block.csr.data
    scale = np.divide(target_sum, library, out=np.zeros(library.shape, dtype=np.float64), where=library > 0)
    # scale * count in float64 then log1p: the same operations (and bits) as diags(scale) @ counts
    out = block.per_value(scale)
    out *= block.csr.data
    return np.log1p(out, out=out)


# ---------------------------------------------------------------------------------------------
# control genes: scanpy 1.11's _score_genes_bins, given the per-gene means
# ---------------------------------------------------------------------------------------------
def choose_controls(
    gene_list,
    means: pd.Series,
    *,
    gene_pool=None,
    ctrl_size: int = 50,
    n_bins: int = 25,
    seed: int = 0,
    ctrl_as_ref: bool = True,
    where: str = "score",
) -> pd.Index:
    """The control genes :func:`scanpy.tl.score_genes` draws for ``gene_list``.

    Parameters
    ----------
    gene_list
        Var names of the set (present in ``means``; order as given).
    means
        float mean expression per gene over the scored cells, indexed by var name (all genes).
    gene_pool
        Var names to bin and draw from (``None``: every gene of ``means``), in this order.
    seed
        The ``random_state`` of scanpy: a fresh ``RandomState(seed)`` for this call.

    Returns
    -------
    pandas.Index
        The union of the per-bin draws (sorted), set genes removed when ``ctrl_as_ref``.
    """
    var_names = means.index
    gene_list = pd.Index([gene_list] if isinstance(gene_list, str) else list(gene_list)).intersection(var_names)
    if gene_pool is None:
        gene_pool = var_names.astype("string")
    else:
        gene_pool = pd.Index(list(gene_pool), dtype="string").intersection(var_names)
    if len(gene_pool) == 0:
        raise InputError("no gene of the control pool is in the data.", where=where)
    outside = gene_list.difference(gene_pool, sort=False)
    if len(outside):
        # scanpy fails here with a bare KeyError (its bins cover the pool only)
        raise InputError(
            f"set genes {list(outside)[:5]} are not in the control gene pool; a set's genes must be in the pool.",
            where=where,
        )
    rs = np.random.RandomState(seed)
    obs_avg = pd.Series(means.to_numpy()[var_names.get_indexer(gene_pool)], index=gene_pool)
    obs_avg = obs_avg[np.isfinite(obs_avg)]
    n_items = int(np.round(len(obs_avg) / (n_bins - 1)))
    obs_cut = obs_avg.rank(method="min") // n_items
    in_set = np.zeros(len(obs_cut), bool) if ctrl_as_ref else obs_cut.index.isin(gene_list)
    control_genes = pd.Index([], dtype="string")
    for cut in np.unique(obs_cut.loc[gene_list]):
        r_genes = obs_cut[(obs_cut == cut).to_numpy() & ~in_set].index
        if len(r_genes) == 0:
            log.warning("%s: no control genes for bin %s (gene pool of %d genes)", where, cut, len(gene_pool))
        if ctrl_size < len(r_genes):
            r_genes = r_genes.to_series().sample(ctrl_size, random_state=rs).index
        if ctrl_as_ref:
            r_genes = r_genes.difference(gene_list)
        control_genes = control_genes.union(r_genes)
    if len(control_genes) == 0:
        raise InputError("no control genes found in any bin; the gene pool is too small.", where=where)
    return control_genes


# ---------------------------------------------------------------------------------------------
# the two passes
# ---------------------------------------------------------------------------------------------
def _present(genes: Sequence[str], var_names: pd.Index, name: str) -> list[str]:
    genes = list(dict.fromkeys(str(g) for g in genes))
    missing = [g for g in genes if g not in var_names]
    if missing:
        log.warning("score %s: genes not in the data and ignored: %s", name, missing)
    kept = [g for g in genes if g in var_names]
    if not kept:
        raise InputError(f"no gene of score {name!r} is in the data.", where="scoring")
    return kept


def score_many(
    source,
    scores: Sequence[Score],
    *,
    libraries: Mapping[str, np.ndarray | None] | None = None,
    rows=None,
    target_sum: float | None = 1e4,
    downsample_to: float | None = None,
    downsample_seed: int = 0,
    key: str | None = None,
    chunk_cells: int = CHUNK_CELLS,
) -> pd.DataFrame:
    """Several :class:`Score` s of the cells of a cohort file (or an AnnData) in two passes over its counts.

    Parameters
    ----------
    source
        Path of an h5ad file whose ``key`` is raw counts, cells x genes, CSR, or an AnnData
        (``key``: ``"X"`` or ``"layers/<name>"``; dense or sparse).
    scores
        The scores; their ``library`` names a normalisation in ``libraries``.
    libraries
        ``{name: boolean (n_vars,) mask or None}``: a cell's library size is its total over the
        genes of the mask (``None``: all genes). Default ``{"all": None}``.
    rows
        Boolean (n_obs,) mask of the cells scored (default all). The bins use the means over
        these cells only, as scanpy on the subset would.
    target_sum
        Expression is ``log1p(counts / library * target_sum)`` (log1p units). ``None``: the
        stored values as they are (already log-normalised; ``libraries`` unused).
    downsample_to
        Thin every cell's counts without replacement to a common total first
        (:func:`scanpy.pp.downsample_counts` with ``downsample_seed``): a quantile of the scored
        cells' totals (all genes) when <= 1, else a count. Identical to thinning the whole matrix
        (scanpy reseeds per cell). ``None``: no thinning.
    key, chunk_cells
        Matrix read and cells per block (:func:`remnant.io.store.iter_chunks`; default :data:`CHUNK_CELLS`).
        ``key=None``: the raw counts (:func:`remnant.io.store.counts_key`: ``layers/counts`` when
        present, as in ``cohort.h5ad``, else ``X`` when it holds counts, as in ``clustered.h5ad``);
        with ``target_sum=None``, ``X``.

    Returns
    -------
    pandas.DataFrame
        float64, scored cells (file order, indexed by obs name) x score names, in log1p units.
        ``attrs["controls"]``: ``{score name: [control var names, one list per term]}``;
        ``attrs["n_cells"]``, ``attrs["downsampled_to"]`` (the per-cell total, or None).
    """
    libraries = dict(libraries) if libraries is not None else {"all": None}
    if key is None:
        key = "X" if target_sum is None else store.counts_key(source, where="scoring")
    obs_names, var_names = _names(source, key)
    rows = store._mask(rows, len(obs_names), "rows")
    scores = list(scores)
    masks = _library_masks(scores, libraries, len(var_names))
    n_cells = int(rows.sum()) if rows is not None else len(obs_names)
    if n_cells == 0:
        raise InputError("no cells selected to score.", where="scoring")
    counts = _Counts(source, dict(key=key, rows=rows, chunk_cells=chunk_cells), target_sum, downsample_seed)
    counts.target = _downsample_target(counts, downsample_to)

    means = _gene_means(counts, masks, var_names, n_cells)  # pass 1
    weights = _Weights(var_names)
    for s in scores:
        weights.add(s, means[s.library])
    out = _scores(counts, masks, weights, n_cells)  # pass 2
    index = obs_names[rows] if rows is not None else obs_names
    frame = pd.concat(
        [pd.DataFrame(out[lib], index=index, columns=weights.columns[lib]) for lib in weights.columns], axis=1
    )[[s.name for s in scores]]
    frame.attrs.update(controls=weights.controls, n_cells=n_cells, downsampled_to=counts.target)
    return frame


@dataclass
class _Counts:
    """Where :func:`score_many` reads its counts, and how each block is prepared (downsampled to ``target``)."""

    source: object
    blocks: dict  # key, rows, chunk_cells of _blocks
    target_sum: float | None
    downsample_seed: int
    target: int | None = None

    def __iter__(self) -> Iterator[sp.csr_matrix]:
        """The blocks of counts (selected cells), each thinned to :attr:`target` per cell."""
        for _, block in _blocks(self.source, **self.blocks):
            yield _downsample(block, self.target, self.downsample_seed)


def _library_masks(
    scores: list[Score], libraries: Mapping[str, np.ndarray | None], n_vars: int
) -> dict[str, np.ndarray | None]:
    """float (n_vars,) 0/1 gene mask (None: all genes) of each normalisation the scores use; checks the names."""
    if not scores:
        raise InputError("no gene sets to score.", where="scoring")
    names = [s.name for s in scores]
    if len(set(names)) != len(names):
        raise InputError(f"score names repeat: {sorted({n for n in names if names.count(n) > 1})}.", where="scoring")
    masks = {}
    for s in scores:
        if s.library not in libraries:
            raise InputError(
                f"score {s.name!r} names normalisation {s.library!r}; defined: {sorted(libraries)}.", where="scoring"
            )
        mask = libraries[s.library]
        masks[s.library] = (
            None if mask is None else store._mask(mask, n_vars, f"libraries[{s.library!r}]").astype(np.float64)
        )
    return masks


def _downsample_target(counts: _Counts, downsample_to: float | None) -> int | None:
    """The per-cell total counts are thinned to: ``downsample_to`` as a count, or as a quantile
    (<= 1) of the selected cells' totals (a pass over the file); None: no thinning."""
    if downsample_to is None:
        return None
    if not downsample_to > 0:
        raise InputError(
            f"downsample_to must be > 0 (a quantile <= 1 or a count > 1); got {downsample_to}.",
            where="scoring(downsample_to=...)",
        )
    if downsample_to <= 1:  # pass 0: the cells' totals, for the quantile
        totals = np.concatenate([_Float64(b).library(None) for _, b in _blocks(counts.source, **counts.blocks)])
        target = int(np.quantile(totals, downsample_to))
    else:
        target = int(downsample_to)
    log.info("scores on counts downsampled to %d per cell", target)
    return target


def _gene_means(
    counts: _Counts, masks: Mapping[str, np.ndarray | None], var_names: pd.Index, n_cells: int
) -> dict[str, pd.Series]:
    """Pass 1: per normalisation, the mean log-normalised expression of every gene over the cells."""
    # one float64 vector per normalisation; added cell by cell in file order (add.at), as scipy
    # sums a matrix over its rows
    sums = {lib: np.zeros(len(var_names)) for lib in masks}
    for block in counts:
        block = _Float64(block)
        for lib, mask in masks.items():
            library = block.library(mask) if counts.target_sum is not None else None
            np.add.at(sums[lib], block.csr.indices, _values(block, library, counts.target_sum))
        del block
    return {lib: pd.Series(total / n_cells, index=var_names) for lib, total in sums.items()}


class _Weights:
    """Each score as a column of a sparse weight matrix per normalisation: ``+w/n`` on the genes of
    a term, ``-w/n_ctrl`` on its controls (a gene in two terms gets the sum)."""

    def __init__(self, var_names: pd.Index):
        self.var_names = var_names
        self.parts: dict[str, list] = {}  # per normalisation: (gene positions, weights, score column)
        self.columns: dict[str, list[str]] = {}  # per normalisation: the score names, in column order
        self.controls: dict[str, list[list[str]]] = {}  # per score: the control var names of each term

    def add(self, s: Score, means: pd.Series) -> None:
        """Add score ``s``: its terms' controls drawn on ``means`` (its normalisation's gene means)."""
        if isinstance(s.genes, pd.Series):
            genes = _present(s.genes.index, self.var_names, s.name)
            terms = [(float(s.genes[g]), [g]) for g in genes]
        else:
            terms = [(1.0, _present(s.genes, self.var_names, s.name))]
        columns = self.columns.setdefault(s.library, [])
        parts = self.parts.setdefault(s.library, [])
        column = len(columns)
        columns.append(s.name)
        self.controls[s.name] = []
        for w, genes in terms:
            ctrl = choose_controls(
                genes,
                means,
                gene_pool=s.gene_pool,
                ctrl_size=s.ctrl_size,
                n_bins=s.n_bins,
                seed=s.seed,
                ctrl_as_ref=s.ctrl_as_ref,
                where=f"score {s.name!r}",
            )
            self.controls[s.name].append(list(ctrl))
            genes_at, ctrl_at = self.var_names.get_indexer(genes), self.var_names.get_indexer(ctrl)
            parts.append((genes_at, np.full(len(genes_at), w / len(genes_at)), column))
            parts.append((ctrl_at, np.full(len(ctrl_at), -w / len(ctrl_at)), column))

    def matrix(self, lib: str) -> tuple[np.ndarray, sp.csr_matrix]:
        """The genes normalisation ``lib``'s scores use (sorted positions) and its (genes used x scores) weights."""
        parts = self.parts[lib]
        at = np.concatenate([p[0] for p in parts])
        genes_used = np.unique(at)
        local = np.searchsorted(genes_used, at)
        col = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
        # duplicates (a gene in two terms) are summed by the COO -> CSR conversion
        matrix = sp.csr_matrix(
            (np.concatenate([p[1] for p in parts]), (local, col)), shape=(len(genes_used), len(self.columns[lib]))
        )
        return genes_used, matrix


def _scores(
    counts: _Counts, masks: Mapping[str, np.ndarray | None], weights: _Weights, n_cells: int
) -> dict[str, np.ndarray]:
    """Pass 2: per normalisation, float64 (cells x its scores), block by block from the set and control genes only."""
    matrices = {lib: weights.matrix(lib) for lib in masks}
    out = {lib: np.zeros((n_cells, len(cols))) for lib, cols in weights.columns.items()}
    done = 0
    for block in counts:
        full = _Float64(block) if counts.target_sum is not None else None
        for lib, mask in masks.items():
            library = full.library(mask) if full is not None else None
            used, matrix = matrices[lib]
            sub = _Float64(block[:, used])
            sub.csr.data = _values(sub, library, counts.target_sum)
            out[lib][done : done + block.shape[0]] = (sub.csr @ matrix).toarray()
        done += block.shape[0]
        del block, full
    return out


def score_gene_sets(
    source,
    sets: Mapping[str, Sequence[str] | pd.Series],
    *,
    rows=None,
    library_genes=None,
    target_sum: float | None = 1e4,
    ctrl_size: int = 50,
    n_bins: int = 25,
    gene_pool: Sequence[str] | None = None,
    seed: int = 0,
    ctrl_as_ref: bool = True,
    downsample_to: float | None = None,
    key: str | None = None,
    chunk_cells: int = CHUNK_CELLS,
) -> pd.DataFrame:
    """:func:`scanpy.tl.score_genes` of each set on log1p(counts / library * ``target_sum``) of a cohort file, streamed.

    Equals ``sc.pp.normalize_total(target_sum)`` + ``sc.pp.log1p`` (library over all genes) then
    ``sc.tl.score_genes(adata, genes, random_state=seed, ctrl_size=..., n_bins=..., gene_pool=...,
    use_raw=False)`` per set, on the cells of ``rows`` (see the module notes on float32).

    Parameters
    ----------
    source
        Path of an h5ad file with raw counts in ``key`` (CSR; ``None``: found as in
        :func:`score_many`), or an AnnData.
    sets
        ``{name: var names}`` (a ``pandas.Series`` of weights by var name: weighted sum of
        per-gene scores). Var names missing from the file are ignored with a warning.
    rows
        Boolean (n_obs,) mask of the cells scored (default all).
    library_genes
        Boolean (n_vars,) mask of the genes a cell's library size counts (default all).
    gene_pool, ctrl_size, n_bins, seed, ctrl_as_ref
        As in :func:`scanpy.tl.score_genes` (``seed`` = its ``random_state``); the same for every set.
    downsample_to, key, chunk_cells
        As in :func:`score_many`.

    Returns
    -------
    pandas.DataFrame
        float64, cells of ``rows`` (file order, indexed by obs name) x set names, log1p units.
    """
    scores = [
        Score(
            name,
            genes,
            gene_pool=gene_pool,
            library="library",
            ctrl_size=ctrl_size,
            n_bins=n_bins,
            seed=seed,
            ctrl_as_ref=ctrl_as_ref,
        )
        for name, genes in sets.items()
    ]
    return score_many(
        source,
        scores,
        libraries={"library": library_genes},
        rows=rows,
        target_sum=target_sum,
        downsample_to=downsample_to,
        downsample_seed=seed,
        key=key,
        chunk_cells=chunk_cells,
    )


def cell_cycle_phase(s_score, g2m_score) -> np.ndarray:
    """scanpy's phase rule (:func:`scanpy.tl.score_genes_cell_cycle`): ``G2M`` when the G2/M score is
    above the S score, else ``S``; ``G1`` when both are negative. object (n_cells,)."""
    s_score, g2m_score = np.asarray(s_score, float), np.asarray(g2m_score, float)
    phase = np.where(g2m_score > s_score, "G2M", "S").astype(object)
    phase[(s_score < 0) & (g2m_score < 0)] = "G1"
    return phase


def cell_cycle_scores(
    s_genes: Sequence[str],
    g2m_genes: Sequence[str],
    *,
    gene_pool=None,
    library: str = "all",
    n_bins: int = 25,
    seed: int = 0,
) -> list[Score]:
    """The two :class:`Score` s of :func:`scanpy.tl.score_genes_cell_cycle` (``S_score``, ``G2M_score``):
    ``ctrl_size`` is the length of the shorter list, as there."""
    ctrl_size = min(len(s_genes), len(g2m_genes))
    return [
        Score(name, list(genes), gene_pool=gene_pool, library=library, ctrl_size=ctrl_size, n_bins=n_bins, seed=seed)
        for name, genes in (("S_score", s_genes), ("G2M_score", g2m_genes))
    ]


def score_cell_cycle(
    source,
    s_genes: Sequence[str],
    g2m_genes: Sequence[str],
    *,
    rows=None,
    library_genes=None,
    target_sum: float | None = 1e4,
    gene_pool=None,
    n_bins: int = 25,
    seed: int = 0,
    downsample_to: float | None = None,
    key: str | None = None,
    chunk_cells: int = CHUNK_CELLS,
) -> pd.DataFrame:
    """:func:`scanpy.tl.score_genes_cell_cycle` on a cohort file, streamed (parameters as :func:`score_gene_sets`).

    Returns
    -------
    pandas.DataFrame
        Cells of ``rows`` x ``S_score``, ``G2M_score`` (float64, log1p units) and ``phase``
        (``S``, ``G2M`` or ``G1``: scanpy's labels).
    """
    scores = cell_cycle_scores(s_genes, g2m_genes, gene_pool=gene_pool, library="library", n_bins=n_bins, seed=seed)
    out = score_many(
        source,
        scores,
        libraries={"library": library_genes},
        rows=rows,
        target_sum=target_sum,
        downsample_to=downsample_to,
        downsample_seed=seed,
        key=key,
        chunk_cells=chunk_cells,
    )
    out["phase"] = cell_cycle_phase(out["S_score"], out["G2M_score"])
    return out
