"""Cohort clustering and HSPC state annotation.

One set of steps (:class:`ClusterParams`) in two forms with the same results:

- on a cohort file (the workflow; issue 8): :func:`merge_samples` concatenates the per-sample
  files on disk (raw counts stay in ``X``, CSR float32), :func:`cluster_file` reads it in blocks
  (highly variable genes one ``hvg_batch_key`` level at a time, then the cells x HVG
  log-normalised matrix), :func:`annotate_states` with ``counts=`` the file scores the markers
  block by block, and :func:`write_clustering` writes the keys below beside the counts (no
  ``layers``, no log-normalised cells x genes matrix: see ``docs/dev/scale.md``);
- in memory: :func:`cluster_cohort` and :func:`annotate_states` on an AnnData.

Both forms run :func:`_cluster` (highly variable genes, then :func:`embed`); they differ only in
where the log-normalised expression comes from and where the results go.

:func:`cluster_cohort` takes the merged, QC-filtered cohort (raw counts in ``.X``, cells x genes,
sparse) and writes:

``.layers["counts"]``
    The raw counts (sparse, unchanged).
``.X``
    log1p of counts scaled to ``target_sum`` per cell (sparse).
``.var["highly_variable"]``
    Genes used for PCA (with scanpy's ``means``, ``dispersions``, ``dispersions_norm`` and,
    per batch, ``highly_variable_nbatches``).
``.obsm["X_pca"]`` (cells x ``n_pcs``), ``.obsm["X_pca_harmony"]`` (when integrated), ``.obsm["X_umap"]`` (cells x 2)
    Embeddings.
``.obsp["distances"]``, ``.obsp["connectivities"]``
    The kNN graph.
``.obs["leiden"]``
    Cluster labels ("0", "1", …).
``.uns["remnant"]["cluster"]``
    The parameters used.

:func:`annotate_states` adds, per state in the marker table:

``.obs["score_<STATE>"]``
    Marker score (:func:`scanpy.tl.score_genes`: mean expression of the markers minus a matched control set; log1p units).
``.obs["hspc_state"]``
    The state of the cell's cluster: the state whose standardised score is highest on average in the cluster.
``.obs["hspc_state_cell"]``
    The per-cell argmax of the standardised scores (noisier; for comparison).

Messages name the parameters (``n_pcs``); a caller that takes them from its own settings passes
``key_prefix`` (the workflow: ``"cluster."``, its config block).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData
from scipy.sparse.csgraph import connected_components

from remnant.errors import InputError
from remnant.io import store
from remnant.io.genesets import read_markers  # noqa: F401 (the marker table reader lives with the gene sets; re-exported)

log = logging.getLogger(__name__)


#: Above this many connected components of the kNN graph UMAP is not initialised spectrally (see :func:`embed`).
MAX_SPECTRAL_COMPONENTS = 100
#: UMAP starting layouts :func:`embed` offers.
UMAP_INITS = ("pca", "spectral")


@contextlib.contextmanager
def timed(what: str):
    """Log ``what`` when the block starts and its wall time (s) when it ends: which of PCA, Harmony,
    kNN, Leiden, UMAP a big cohort's job is in."""
    log.info("%s ...", what)
    t0 = time.perf_counter()
    yield
    log.info("%s: %.1f s", what, time.perf_counter() - t0)


@dataclass(frozen=True)
class ClusterParams:
    """The clustering's parameters (:func:`cluster_cohort`, :func:`cluster_file`).

    Attributes
    ----------
    target_sum
        Counts per cell after normalisation (expression is log1p(counts / total * target_sum)).
    n_top_genes
        Highly variable genes (Seurat dispersion method on log data, per ``hvg_batch_key``).
    hvg_batch_key
        ``.obs`` column whose levels choose highly variable genes separately (one level, or None: the whole cohort).
    hvg_max_cells
        At most this many cells per batch (a seeded random sample) for choosing the genes; None: all.
    n_pcs
        Principal components (capped at one fewer than the cells or the highly variable genes).
    integrate_keys
        ``.obs`` columns Harmony integrates over (empty: no integration; the kNN graph is
        built on ``X_pca``). Keys with one level are dropped.
    harmony_max_iter
        Harmony's iterations.
    n_neighbors, resolution, umap_min_dist
        kNN size, Leiden resolution, UMAP ``min_dist``.
    umap_init
        UMAP's starting layout: ``"pca"``, the first two components of the (integrated)
        embedding, or ``"spectral"``, the kNN graph's Laplacian eigenvectors (see :func:`embed`).
    seed
        Seeds the HVG cell sample, PCA (ARPACK start vector), Harmony, the kNN search, Leiden and UMAP.
    """

    target_sum: float = 1e4
    n_top_genes: int = 2000
    hvg_batch_key: str | None = "patient"
    hvg_max_cells: int | None = None
    n_pcs: int = 30
    integrate_keys: Sequence[str] = ("patient",)
    harmony_max_iter: int = 20
    n_neighbors: int = 15
    resolution: float = 1.0
    umap_min_dist: float = 0.3
    umap_init: str = "pca"
    seed: int = 0

    def embedding(self) -> dict:
        """The keyword arguments of :func:`embed`."""
        names = ("n_pcs", "integrate_keys", "harmony_max_iter", "n_neighbors", "resolution", "umap_min_dist")
        return {name: getattr(self, name) for name in (*names, "umap_init", "seed")}


#: :func:`cluster_file`'s defaults: a cohort too large for memory samples at most 200,000 cells per
#: batch for its highly variable genes.
FILE_DEFAULTS = ClusterParams(hvg_max_cells=200_000)


def normalise(adata: AnnData, *, target_sum: float = 1e4) -> AnnData:
    """Keep raw counts in ``.layers["counts"]`` and put log1p(counts / total * target_sum) in ``.X`` (in place)."""
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    return adata


def highly_variable_genes(
    batches: Iterable[tuple[str, AnnData]],
    var_names: pd.Index,
    *,
    n_top_genes: int,
    batched: bool,
) -> pd.DataFrame:
    """Seurat-flavour highly variable genes, one batch in memory at a time.

    ``batches`` yields ``(name, AnnData)`` with log-normalised expression in ``.X`` for each
    batch's cells (all genes, in ``var_names`` order). The result equals
    ``scanpy.pp.highly_variable_genes(adata, flavor="seurat", n_top_genes=..., batch_key=...)``
    on the whole cohort: per batch, scanpy's own function on the genes expressed in that batch;
    then scanpy's combination (rank genes by the number of batches that chose them, ties broken
    by the mean normalised dispersion). Only scanpy's loop over batches is re-expressed, so that
    the cohort never has to be in memory at once.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``var_names``: ``means``, ``dispersions``, ``dispersions_norm``,
        ``highly_variable`` (bool) and, when ``batched``, ``highly_variable_nbatches``.
    """
    frames, n_batches = [], 0
    for n_batches, (name, sub) in enumerate(batches, start=1):  # noqa: B007 (name: for the reader)
        if batched:  # scanpy's batched path leaves out the genes a batch does not express
            expressed = np.asarray((sub.X != 0).sum(axis=0)).ravel() > 0
            sub = sub[:, expressed].copy()
        df = sc.pp.highly_variable_genes(sub, flavor="seurat", n_top_genes=min(n_top_genes, sub.n_vars), inplace=False)
        df.index = sub.var_names
        frames.append(df[["means", "dispersions", "dispersions_norm", "highly_variable"]])
        log.info("highly variable genes of batch %s: %d cells", name, sub.n_obs)
        del sub
    if not batched:
        return frames[0].reindex(var_names)
    df = pd.concat(frames, axis=0)
    df["highly_variable"] = df["highly_variable"].astype(int)
    df = df.groupby(df.index, observed=True).agg(
        dict(means="mean", dispersions="mean", dispersions_norm="mean", highly_variable="sum")
    )
    df["highly_variable_nbatches"] = df["highly_variable"]
    df = df.reindex(var_names)
    order = df.sort_values(["highly_variable_nbatches", "dispersions_norm"], ascending=False, na_position="last").index
    df["highly_variable"] = df.index.isin(order[:n_top_genes])
    return df


def _hvg_rows(
    obs: pd.DataFrame, batch: str | None, max_cells: int | None, seed: int, key_prefix: str = ""
) -> list[tuple[str, np.ndarray]]:
    """Per batch, the cells (boolean masks) HVG selection reads: all, or a seeded sample of ``max_cells``."""
    labels = obs[batch].astype(str).to_numpy() if batch else np.full(len(obs), "all", dtype=object)
    rng = np.random.default_rng(seed)
    out = []
    for name in sorted(pd.unique(labels)) if batch else ["all"]:
        mask = labels == name
        if max_cells and mask.sum() > max_cells:
            keep = np.sort(rng.choice(np.flatnonzero(mask), max_cells, replace=False))
            mask = np.zeros(len(obs), bool)
            mask[keep] = True
            log.info(
                "batch %s: highly variable genes from %d of its cells (%shvg_max_cells)", name, max_cells, key_prefix
            )
        out.append((name, mask))
    return out


def _cluster(
    obs: pd.DataFrame,
    var_names: pd.Index,
    params: ClusterParams,
    batches: Callable[[list[tuple[str, np.ndarray]]], Iterator[tuple[str, AnnData]]],
    hvg_expression: Callable[[np.ndarray], AnnData],
    key_prefix: str,
) -> tuple[pd.DataFrame, AnnData, dict]:
    """The clustering's steps, whatever holds the cohort: highly variable genes, then :func:`embed`.

    ``batches(rows)`` yields ``(name, AnnData)`` with the log-normalised expression (all genes) of
    each batch's cells (boolean masks ``rows`` of :func:`_hvg_rows`); ``hvg_expression(selected)``
    is the cells x highly-variable-genes log-normalised AnnData (``obs`` set). Returns the HVG
    table (indexed like ``var_names``), the :func:`embed` result and ``uns["remnant"]["cluster"]``.
    """
    batch = params.hvg_batch_key if params.hvg_batch_key and obs[params.hvg_batch_key].nunique() > 1 else None
    rows = _hvg_rows(obs, batch, params.hvg_max_cells, params.seed, key_prefix)
    hvg_table = highly_variable_genes(
        batches(rows), var_names, n_top_genes=int(min(params.n_top_genes, len(var_names))), batched=batch is not None
    )
    selected = hvg_table["highly_variable"].to_numpy()
    embedded = embed(hvg_expression(selected), **params.embedding(), key_prefix=key_prefix)
    info = _parameters(embedded, params.target_sum, int(selected.sum()), batch, params.hvg_max_cells)
    return hvg_table, embedded, info


def cluster_cohort(
    adata: AnnData,
    params: ClusterParams = ClusterParams(),  # noqa: B008 (frozen: one shared default is safe)
    *,
    key_prefix: str = "",
) -> AnnData:
    """Normalise, select highly variable genes, PCA, optional Harmony, kNN, Leiden and UMAP (in place).

    The in-memory form of :func:`cluster_file` (same steps, same results).

    Parameters
    ----------
    adata
        Cohort of QC-passed cells, raw counts in ``.X`` (cells x genes, sparse), with the
        ``.obs`` columns named in ``hvg_batch_key`` and ``integrate_keys``.
    params
        The steps' parameters (:class:`ClusterParams`).
    key_prefix
        Put before parameter names in messages (the workflow: ``"cluster."``).
    """
    normalise(adata, target_sum=params.target_sum)
    hvg_table, embedded, info = _cluster(
        adata.obs,
        adata.var_names,
        params,
        lambda rows: ((name, adata[mask]) for name, mask in rows),
        lambda selected: AnnData(X=adata.X[:, selected], obs=adata.obs),
        key_prefix,
    )
    for column in hvg_table:
        adata.var[column] = hvg_table[column].to_numpy()
    _adopt(adata, embedded, hvg_table["highly_variable"].to_numpy())
    adata.uns.setdefault("remnant", {})["cluster"] = info
    return adata


def cluster_file(
    path: str,
    obs: pd.DataFrame,
    params: ClusterParams = FILE_DEFAULTS,
    *,
    chunk_cells: int = store.CHUNK_CELLS,
    key_prefix: str = "",
) -> AnnData:
    """:func:`cluster_cohort` on a cohort file (raw counts in ``X``, CSR), reading it in blocks.

    ``obs`` is the file's (typed, as :func:`merge_samples` returns it); ``params`` default
    :data:`FILE_DEFAULTS`. Memory: one batch of cells (all genes) for the highly variable genes,
    at most ``hvg_max_cells`` of them; then the cells x HVG log-normalised matrix (sparse) and the
    embeddings. Returns a bare AnnData (``obs`` with ``leiden``, ``var`` with the HVG table,
    ``obsm``, ``obsp``, ``varm``, ``uns``) for :func:`write_clustering`.
    """
    var = store.read_var(path)
    hvg_table, embedded, info = _cluster(
        obs,
        var.index,
        params,
        lambda rows: _file_batches(path, var.index, rows, params.target_sum, chunk_cells),
        lambda selected: _file_hvg_expression(path, obs, var.index, selected, params.target_sum, chunk_cells),
        key_prefix,
    )
    embedded.X = None
    out = AnnData(obs=obs.copy(), var=var.copy())
    for column in hvg_table:
        out.var[column] = hvg_table[column].to_numpy()
    _adopt(out, embedded, hvg_table["highly_variable"].to_numpy())
    out.uns["remnant"] = {"cluster": info}
    return out


def _file_batches(
    path: str, var_names: pd.Index, rows: list[tuple[str, np.ndarray]], target_sum: float, chunk_cells: int
) -> Iterator[tuple[str, AnnData]]:
    """Per HVG batch, its cells' log-normalised expression (all genes), read from the file one batch at a time."""
    for name, mask in rows:
        parts = [b for _, b in store.iter_chunks(path, rows=mask, chunk_cells=chunk_cells)]
        X = sp.vstack(parts, format="csr")
        del parts
        sub = AnnData(
            X=store.log_normalise(X, np.asarray(X.sum(axis=1, dtype=np.float64)).ravel(), target_sum),
            var=pd.DataFrame(index=var_names),
        )
        del X
        yield name, sub


def _file_hvg_expression(
    path: str, obs: pd.DataFrame, var_names: pd.Index, selected: np.ndarray, target_sum: float, chunk_cells: int
) -> AnnData:
    """Cells x HVG log-normalised (each cell's library over all genes), read in one pass over the file."""
    counts, sums = store.read_columns(
        path, selected, sums={"library": np.ones(len(var_names), bool)}, chunk_cells=chunk_cells
    )
    hvg = AnnData(
        X=store.log_normalise(counts, sums["library"], target_sum),
        obs=obs.copy(),
        var=pd.DataFrame(index=var_names[selected]),
    )
    del counts
    log.info("cells x HVG log-normalised: %d x %d, %d nonzeros", hvg.n_obs, hvg.n_vars, hvg.X.nnz)
    return hvg


def embed(
    hvg: AnnData,
    *,
    n_pcs: int = 30,
    integrate_keys: Sequence[str] = ("patient",),
    harmony_max_iter: int = 20,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    umap_min_dist: float = 0.3,
    umap_init: str = "pca",
    seed: int = 0,
    key_prefix: str = "",
) -> AnnData:
    """PCA, optional Harmony, kNN graph, Leiden and UMAP of the log-normalised highly variable
    genes (``hvg.X``, cells x HVG, sparse). Returns ``hvg`` with ``obsm`` (``X_pca``,
    ``X_pca_harmony``, ``X_umap``), ``obsp`` (kNN graph), ``obs["leiden"]``, ``varm["PCs"]``.
    Parameters as in :class:`ClusterParams`; ``key_prefix`` goes before their names in messages.

    Notes
    -----
    No step densifies: PCA runs on the sparse matrix with implicit centring (ARPACK). The kNN
    search is scanpy's choice (exact below 4,096 cells, pynndescent above) with numba on one
    thread, because pynndescent's parallel search gives a different graph on each run.

    UMAP starts by default from the first two components of the embedding (``umap_init="pca"``;
    umap-learn rescales them), which costs nothing and keeps the global structure as well as a
    spectral start does (Kobak & Linderman, Nat Biotechnol 2021). The spectral start
    (``"spectral"``) solves the kNN graph's Laplacian with ARPACK using sqrt(cells) Lanczos
    vectors, so its time and memory grow much faster than the cells (91,328 cells: 6 s; 910,807:
    429 s and 12.7 GB; docs/dev/scale.md). A graph with more than ``MAX_SPECTRAL_COMPONENTS`` connected
    components also starts from the embedding, because the spectral layout compares all pairs
    of components densely.
    """
    if umap_init not in UMAP_INITS:
        raise ValueError(f"umap_init must be one of {UMAP_INITS}, not {umap_init!r}")
    n_comps = _n_components(hvg, n_pcs, key_prefix)
    with timed(f"PCA, {n_comps} components"):
        sc.pp.pca(hvg, n_comps=n_comps, svd_solver="arpack", random_state=seed)
    keys = [k for k in integrate_keys if hvg.obs[k].nunique() > 1]
    use_rep = "X_pca"
    if keys:
        with timed(f"Harmony over {keys}"):
            hvg.obsm["X_pca_harmony"] = harmony(hvg.obsm["X_pca"], hvg.obs[keys], max_iter=harmony_max_iter, seed=seed)
        use_rep = "X_pca_harmony"
    _neighbours(hvg, n_neighbors, use_rep, seed)
    with timed("Leiden"):
        sc.tl.leiden(hvg, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    init = _umap_start(hvg, use_rep, umap_init)
    with timed(
        f"UMAP from {'a spectral layout' if isinstance(init, str) else 'the first two components of ' + use_rep}"
    ):
        sc.tl.umap(hvg, min_dist=umap_min_dist, random_state=seed, init_pos=init)
    hvg.uns["remnant_embedding"] = {
        "n_pcs": n_comps,
        "integrate_keys": keys,
        "embedding": use_rep,
        "n_neighbors": n_neighbors,
        "resolution": resolution,
        "umap_min_dist": umap_min_dist,
        "umap_init": "spectral" if isinstance(init, str) else f"{use_rep}[:, :2]",
        "seed": seed,
    }
    log.info(
        "%d cells, %d HVG, %d PCs, %d Leiden clusters", hvg.n_obs, hvg.n_vars, n_comps, hvg.obs["leiden"].nunique()
    )
    return hvg


def _n_components(hvg: AnnData, n_pcs: int, key_prefix: str) -> int:
    """``n_pcs``, capped at what PCA of ``hvg`` gives (with a warning saying why)."""
    n_comps = int(min(n_pcs, hvg.n_obs - 1, hvg.n_vars - 1))
    if n_comps < n_pcs:
        # PCA gives at most one component fewer than the smaller of cells and genes (ARPACK: strictly fewer)
        by_genes = hvg.n_vars <= hvg.n_obs
        limit = f"{hvg.n_vars} highly variable genes" if by_genes else f"{hvg.n_obs} cells"
        log.warning(
            "%sn_pcs: %d principal components asked for, but PCA of %d cells x %d highly variable genes gives "
            "at most %d (one fewer than its %s): using %d; set %sn_pcs to %d or less%s",
            key_prefix,
            n_pcs,
            hvg.n_obs,
            hvg.n_vars,
            n_comps,
            limit,
            n_comps,
            key_prefix,
            n_comps,
            f" (or raise {key_prefix}n_top_genes)" if by_genes else "",
        )
    return n_comps


def _neighbours(hvg: AnnData, n_neighbors: int, use_rep: str, seed: int) -> None:
    """scanpy's kNN graph on ``use_rep``, numba on one thread (determinism: see :func:`embed`)."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with timed(f"kNN graph, {n_neighbors} neighbours"):
            sc.pp.neighbors(hvg, n_neighbors=n_neighbors, use_rep=use_rep, random_state=seed)
    finally:
        numba.set_num_threads(threads)


def _umap_start(hvg: AnnData, use_rep: str, umap_init: str) -> np.ndarray | str:
    """UMAP's ``init_pos``: the first two components of ``use_rep`` (float32), or ``"spectral"``
    when asked for and the kNN graph has at most :data:`MAX_SPECTRAL_COMPONENTS` components."""
    init = np.asarray(hvg.obsm[use_rep][:, :2], dtype=np.float32)
    if umap_init == "spectral":
        # the spectral initialisation lays out each connected component of the kNN graph and
        # compares all of them pairwise (dense components x components); with many components
        # (e.g. replicated or duplicated cells) that alone can take tens of GB
        n_components, _ = connected_components(hvg.obsp["connectivities"], directed=False)
        if n_components <= MAX_SPECTRAL_COMPONENTS:
            return "spectral"
        log.warning(
            "kNN graph has %d connected components (> %d): UMAP starts from the first two components of %s "
            "instead of a spectral layout",
            n_components,
            MAX_SPECTRAL_COMPONENTS,
            use_rep,
        )
    return init


def _adopt(adata: AnnData, embedded: AnnData, selected: np.ndarray) -> None:
    """Copy an :func:`embed` result into the cohort AnnData (all genes)."""
    for key in ("X_pca", "X_pca_harmony", "X_umap"):
        if key in embedded.obsm:
            adata.obsm[key] = embedded.obsm[key]
    for key in ("distances", "connectivities"):
        adata.obsp[key] = embedded.obsp[key]
    adata.obs["leiden"] = pd.Categorical(embedded.obs["leiden"].to_numpy())
    for key in ("pca", "neighbors", "leiden", "umap"):
        if key in embedded.uns:
            adata.uns[key] = embedded.uns[key]
    adata.varm["PCs"] = np.zeros((adata.n_vars, embedded.varm["PCs"].shape[1]), dtype=np.float32)
    adata.varm["PCs"][selected] = embedded.varm["PCs"]


def _parameters(embedded: AnnData, target_sum: float, n_top: int, batch: str | None, hvg_max_cells: int | None) -> dict:
    e = embedded.uns["remnant_embedding"]
    return {
        "target_sum": target_sum,
        "n_top_genes": n_top,
        "hvg_batch_key": batch or "",
        "hvg_max_cells": hvg_max_cells or 0,
        "n_pcs": e["n_pcs"],
        "integrate_keys": e["integrate_keys"],
        "embedding": e["embedding"],
        "n_neighbors": e["n_neighbors"],
        "resolution": e["resolution"],
        "umap_min_dist": e["umap_min_dist"],
        "umap_init": e["umap_init"],
        "seed": e["seed"],
        "n_clusters": int(embedded.obs["leiden"].nunique()),
        "X": "raw counts",
    }


def merge_samples(
    paths: Sequence[str], out: str, *, timepoints: Sequence[str], populations: Sequence[str]
) -> pd.DataFrame:
    """Concatenate per-sample h5ad files (raw counts in X) into ``out`` on disk (genes outer-joined,
    absent genes 0), without loading the matrices; returns the typed cohort ``obs``
    (written back to ``out``).

    Samples may hold different genes (a plate table exported without its all-zero genes): a gene a
    sample lacks is 0 in its cells, and ``var`` (the annotation's columns) is that of the first
    sample holding the gene. When the samples' genes differ, the cohort's genes are in the order
    of their IDs (anndata's outer join), else in the samples' (genome) order.
    """
    import h5py
    from anndata.experimental import concat_on_disk
    from anndata.io import write_elem

    # Paths, not str: with one file anndata copies it and calls Path methods on the name (a str
    # raised AttributeError: a one-sample cohort crashed here)
    # merge=None, var written below: anndata's merge="first" takes every var column from the first
    # sample alone, so genes only later samples hold got NaN annotations (TypeError writing gene_name)
    concat_on_disk([Path(p) for p in paths], out, join="outer", merge=None, fill_value=0)
    var = _merged_var(paths, store.read_var(out).index)
    with h5py.File(out, "r+") as f:
        del f["var"]
        write_elem(f, "var", var)
    obs = store.read_obs(out)
    obs["timepoint"] = pd.Categorical(
        obs["timepoint"].astype(str).replace({"nan": "NA", "": "NA"}), categories=list(timepoints) + ["NA"]
    ).remove_unused_categories()
    obs["population"] = pd.Categorical(
        obs["population"].astype(str), categories=list(populations)
    ).remove_unused_categories()
    for key in ("sample", "patient", "condition", "technology"):
        obs[key] = obs[key].astype(str).astype("category")
    return obs


def _var_index(path) -> pd.Index:
    """The gene IDs (var index) of an h5ad file, without reading its var columns."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        return pd.Index(read_elem(f["var"][f["var"].attrs.get("_index", "_index")]))


def _merged_var(paths: Sequence[str], index: pd.Index) -> pd.DataFrame:
    """``var`` of the cohort: for each gene of ``index``, the row of the first sample holding it.

    Only the files that add genes not yet seen have their var columns read. Categorical columns
    (anndata stores text columns so) are combined as text and made categorical again.
    """
    parts, seen = [], pd.Index([])
    for path in paths:
        names = _var_index(path)
        if seen.size and names.isin(seen).all():
            continue
        var = store.read_var(path)
        var = var[~var.index.isin(seen)]
        categorical = [c for c in var.columns if isinstance(var[c].dtype, pd.CategoricalDtype)]
        parts.append((var.astype(dict.fromkeys(categorical, object)), categorical))
        seen = seen.append(var.index)
    categorical = sorted({c for _, cats in parts for c in cats})
    var = pd.concat([p for p, _ in parts]).reindex(index)
    for column in var.columns:
        if var[column].dtype == object:
            var[column] = var[column].where(var[column].notna(), "")
    for column in categorical:
        var[column] = var[column].astype(str).astype("category")
    return var


def write_clustering(path: str, result: AnnData) -> None:
    """Write :func:`cluster_file`'s ``obs``, ``var``, ``obsm``, ``obsp``, ``varm`` and ``uns`` into the
    cohort file ``path`` beside its count matrix (in place; the matrix is not rewritten)."""
    import h5py
    from anndata.io import write_elem

    with h5py.File(path, "r+") as f:
        for key, value in (
            ("obs", result.obs),
            ("var", result.var),
            ("obsm", dict(result.obsm)),
            ("obsp", dict(result.obsp)),
            ("varm", dict(result.varm)),
            ("uns", dict(result.uns)),
        ):
            if key in f:
                del f[key]
            write_elem(f, key, value)


def harmony(embedding: np.ndarray, batches: pd.DataFrame, *, max_iter: int = 20, seed: int = 0) -> np.ndarray:
    """Harmony-corrected embedding (cells x components, float32) over the columns of ``batches``.

    Calls :func:`harmonypy.run_harmony` directly: harmonypy 2 returns ``Z_corr`` as cells x
    components, which ``scanpy.external.pp.harmony_integrate`` (1.11) transposes wrongly.
    """
    import harmonypy

    meta = batches.astype(str).reset_index(drop=True)
    out = harmonypy.run_harmony(
        np.asarray(embedding, dtype=np.float64),
        meta,
        list(meta.columns),
        max_iter_harmony=max_iter,
        random_state=seed,
        verbose=False,
    )
    corrected = np.asarray(out.Z_corr)
    if corrected.shape[0] != embedding.shape[0]:  # harmonypy < 2: components x cells
        corrected = corrected.T
    return corrected.astype(np.float32)


def annotate_states(
    adata: AnnData,
    markers: Mapping[str, Sequence[str]],
    *,
    states: Sequence[str] | None = None,
    cluster_key: str = "leiden",
    min_markers: int = 2,
    seed: int = 0,
    counts: str | None = None,
    target_sum: float = 1e4,
) -> AnnData:
    """Score each HSPC state's markers and label each cluster with its best-scoring state (in place).

    Parameters
    ----------
    adata
        Log-normalised expression in ``.X`` and ``.var["gene_name"]`` symbols (as after
        :func:`cluster_cohort`); with ``counts``, only its ``obs``/``var``/``uns`` are used (as
        :func:`cluster_file` returns it).
    markers
        ``{state: [symbol, ...]}`` (see :func:`read_markers`).
    states
        Which states to score (default: all in ``markers``).
    min_markers
        A state with fewer markers present in the data is skipped with a warning.
    counts
        Path of the cohort file holding ``adata``'s cells' raw counts in ``X`` (as
        :func:`cluster_file` reads it): the marker scores are computed from it block by block
        (:func:`remnant.pp.scoring.score_gene_sets`, scanpy's method on log1p(counts / total *
        ``target_sum``)) instead of from ``adata.X``.

    Scores are standardised per state across cells before comparing states, so that a state
    with highly expressed markers does not win everywhere.

    Raises
    ------
    InputError
        A state of ``states`` not in ``markers`` (``where="states"``); no state with ``min_markers``
        markers in the data (``where="markers"``).
    """
    marker_vars = _marker_vars(adata.var, markers, states, min_markers)
    if counts is None:
        for state, genes in marker_vars.items():
            sc.tl.score_genes(adata, gene_list=genes, score_name=f"score_{state}", random_state=seed, use_raw=False)
    else:
        from remnant.pp.scoring import score_gene_sets

        scores = score_gene_sets(counts, marker_vars, target_sum=target_sum, seed=seed)
        for state in marker_vars:
            adata.obs[f"score_{state}"] = scores[state].to_numpy()
    _states_from_scores(adata.obs, adata.uns, list(marker_vars), cluster_key)
    return adata


def _marker_vars(
    var: pd.DataFrame, markers: Mapping[str, Sequence[str]], states: Sequence[str] | None, min_markers: int
) -> dict[str, list[str]]:
    """{state: var names of its markers present} for the states with at least ``min_markers``."""
    states = list(states) if states is not None else list(markers)
    symbols = var["gene_name"].astype(str) if "gene_name" in var else var.index.to_series()
    symbol_to_var = pd.Series(var.index, index=symbols.to_numpy())
    symbol_to_var = symbol_to_var[~symbol_to_var.index.duplicated()]
    out = {}
    for state in states:
        if state not in markers:
            raise InputError(
                f"state {state!r} is not in the marker table; states there: {sorted(markers)}.", where="states"
            )
        present = [g for g in markers[state] if g in symbol_to_var.index]
        if len(present) < min_markers:
            log.warning("state %s: only %d of its markers in the data; not scored", state, len(present))
            continue
        out[state] = list(symbol_to_var[present])
    if not out:
        raise InputError(
            "no HSPC state has enough marker genes in the data to be scored; check the marker table and the gene "
            "identifiers.",
            where="markers",
        )
    return out


def _states_from_scores(obs: pd.DataFrame, uns: dict, scored: list[str], cluster_key: str) -> None:
    """``hspc_state_cell`` and ``hspc_state`` from the ``score_<STATE>`` columns of ``obs`` (in place)."""
    scores = obs[[f"score_{s}" for s in scored]].to_numpy(dtype=float)
    z = (scores - scores.mean(axis=0)) / np.where(scores.std(axis=0) > 0, scores.std(axis=0), 1.0)
    obs["hspc_state_cell"] = pd.Categorical(np.array(scored)[z.argmax(axis=1)], categories=scored)
    per_cluster = pd.DataFrame(z, columns=scored).groupby(obs[cluster_key].to_numpy(), observed=True).mean()
    cluster_state = per_cluster.idxmax(axis=1)
    obs["hspc_state"] = pd.Categorical(obs[cluster_key].map(cluster_state).astype(str), categories=scored)
    uns.setdefault("remnant", {})["states"] = {
        "scored": scored,
        "cluster_state": {str(k): v for k, v in cluster_state.items()},
    }
    log.info("cluster states: %s", dict(obs["hspc_state"].value_counts()))
