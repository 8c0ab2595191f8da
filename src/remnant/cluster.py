"""Cohort clustering and HSPC state annotation.

:func:`cluster_cohort` takes the merged, QC-filtered cohort (raw counts in ``.X``, cells x genes,
sparse) and writes:

``.layers["counts"]``
    The raw counts (sparse, unchanged).
``.X``
    log1p of counts scaled to ``target_sum`` per cell (sparse).
``.var["highly_variable"]``
    Genes used for PCA.
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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from .errors import InputError
from .genesets import read_markers  # noqa: F401 (the marker table reader lives with the gene sets; re-exported)

log = logging.getLogger(__name__)


def normalise(adata: AnnData, *, target_sum: float = 1e4) -> AnnData:
    """Keep raw counts in ``.layers["counts"]`` and put log1p(counts / total * target_sum) in ``.X`` (in place)."""
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    return adata


def cluster_cohort(
    adata: AnnData,
    *,
    target_sum: float = 1e4,
    n_top_genes: int = 2000,
    hvg_batch_key: str | None = "patient",
    n_pcs: int = 30,
    integrate_keys: Sequence[str] = ("patient",),
    harmony_max_iter: int = 20,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    umap_min_dist: float = 0.3,
    seed: int = 0,
) -> AnnData:
    """Normalise, select highly variable genes, PCA, optional Harmony, kNN, Leiden and UMAP (in place).

    Parameters
    ----------
    adata
        Cohort of QC-passed cells, raw counts in ``.X`` (cells x genes, sparse), with the
        ``.obs`` columns named in ``hvg_batch_key`` and ``integrate_keys``.
    n_top_genes
        Highly variable genes (Seurat dispersion method on log data, per ``hvg_batch_key``).
    integrate_keys
        ``.obs`` columns Harmony integrates over (empty: no integration; the kNN graph is
        built on ``X_pca``). Keys with one level are dropped.
    n_neighbors, resolution, umap_min_dist
        kNN size, Leiden resolution, UMAP ``min_dist``.
    seed
        Seeds PCA (ARPACK start vector), Harmony, Leiden and UMAP.

    Notes
    -----
    No step densifies the cohort: PCA runs on the sparse HVG matrix with implicit centring, and
    the kNN graph uses scikit-learn's exact transformer (pynndescent 0.7 returns a sparse array
    scanpy 1.11 cannot handle from 8,192 cells up).
    """
    normalise(adata, target_sum=target_sum)
    batch = hvg_batch_key if hvg_batch_key and adata.obs[hvg_batch_key].nunique() > 1 else None
    n_top = int(min(n_top_genes, adata.n_vars))
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat", batch_key=batch)
    hvg = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    n_comps = int(min(n_pcs, hvg.n_obs - 1, hvg.n_vars - 1))
    sc.pp.pca(hvg, n_comps=n_comps, svd_solver="arpack", random_state=seed)
    adata.obsm["X_pca"] = hvg.obsm["X_pca"]
    adata.uns["pca"] = hvg.uns["pca"]
    adata.varm["PCs"] = np.zeros((adata.n_vars, n_comps), dtype=np.float32)
    adata.varm["PCs"][adata.var["highly_variable"].to_numpy()] = hvg.varm["PCs"]
    del hvg

    keys = [k for k in integrate_keys if adata.obs[k].nunique() > 1]
    use_rep = "X_pca"
    if keys:
        adata.obsm["X_pca_harmony"] = harmony(adata.obsm["X_pca"], adata.obs[keys], max_iter=harmony_max_iter, seed=seed)
        use_rep = "X_pca_harmony"
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=use_rep, transformer="sklearn", random_state=seed)
    sc.tl.leiden(adata, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    sc.tl.umap(adata, min_dist=umap_min_dist, random_state=seed)
    adata.uns.setdefault("remnant", {})["cluster"] = {
        "target_sum": target_sum,
        "n_top_genes": n_top,
        "hvg_batch_key": batch or "",
        "n_pcs": n_comps,
        "integrate_keys": keys,
        "embedding": use_rep,
        "n_neighbors": n_neighbors,
        "resolution": resolution,
        "umap_min_dist": umap_min_dist,
        "seed": seed,
        "n_clusters": int(adata.obs["leiden"].nunique()),
    }
    log.info("%d cells, %d HVG, %d PCs, %d Leiden clusters", adata.n_obs, n_top, n_comps, adata.obs["leiden"].nunique())
    return adata


def harmony(embedding: np.ndarray, batches: pd.DataFrame, *, max_iter: int = 20, seed: int = 0) -> np.ndarray:
    """Harmony-corrected embedding (cells x components, float32) over the columns of ``batches``.

    Calls :func:`harmonypy.run_harmony` directly: harmonypy 2 returns ``Z_corr`` as cells x
    components, which ``scanpy.external.pp.harmony_integrate`` (1.11) transposes wrongly.
    """
    import harmonypy

    log.info("Harmony over %s", list(batches.columns))
    meta = batches.astype(str).reset_index(drop=True)
    out = harmonypy.run_harmony(np.asarray(embedding, dtype=np.float64), meta, list(meta.columns),
                                max_iter_harmony=max_iter, random_state=seed, verbose=False)
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
) -> AnnData:
    """Score each HSPC state's markers and label each cluster with its best-scoring state (in place).

    Parameters
    ----------
    adata
        Log-normalised expression in ``.X`` and ``.var["gene_name"]`` symbols (as after :func:`cluster_cohort`).
    markers
        ``{state: [symbol, ...]}`` (see :func:`read_markers`).
    states
        Which states to score (default: all in ``markers``).
    min_markers
        A state with fewer markers present in the data is skipped with a warning.

    Scores are standardised per state across cells before comparing states, so that a state
    with highly expressed markers does not win everywhere.
    """
    states = list(states) if states is not None else list(markers)
    symbols = adata.var["gene_name"].astype(str) if "gene_name" in adata.var else adata.var_names.to_series()
    symbol_to_var = pd.Series(adata.var_names, index=symbols.to_numpy())
    symbol_to_var = symbol_to_var[~symbol_to_var.index.duplicated()]
    scored = []
    for state in states:
        if state not in markers:
            raise InputError(f"state {state!r} is not in the marker table; states there: {sorted(markers)}.", where="states.use")
        present = [g for g in markers[state] if g in symbol_to_var.index]
        if len(present) < min_markers:
            log.warning("state %s: only %d of its markers in the data; not scored", state, len(present))
            continue
        sc.tl.score_genes(adata, gene_list=list(symbol_to_var[present]), score_name=f"score_{state}",
                          random_state=seed, use_raw=False)
        scored.append(state)
    if not scored:
        raise InputError("no HSPC state has enough marker genes in the data to be scored; check states.markers and the gene identifiers.", where="states")
    scores = adata.obs[[f"score_{s}" for s in scored]].to_numpy(dtype=float)
    z = (scores - scores.mean(axis=0)) / np.where(scores.std(axis=0) > 0, scores.std(axis=0), 1.0)
    adata.obs["hspc_state_cell"] = pd.Categorical(np.array(scored)[z.argmax(axis=1)], categories=scored)
    per_cluster = pd.DataFrame(z, columns=scored).groupby(adata.obs[cluster_key].to_numpy(), observed=True).mean()
    cluster_state = per_cluster.idxmax(axis=1)
    adata.obs["hspc_state"] = pd.Categorical(adata.obs[cluster_key].map(cluster_state).astype(str), categories=scored)
    adata.uns.setdefault("remnant", {})["states"] = {
        "scored": scored,
        "cluster_state": {str(k): v for k, v in cluster_state.items()},
    }
    log.info("cluster states: %s", dict(adata.obs["hspc_state"].value_counts()))
    return adata
