"""Rule cluster_cells: merge the QC-passed samples on disk, cluster the cohort, annotate HSPC states.

The library's clustering (:mod:`remnant.pp.cluster`) takes its parameters as a
:class:`~remnant.pp.cluster.ClusterParams`; here they come from the config's ``cluster`` block,
and its messages name those config keys (``cluster.n_pcs``, ``states.use``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence

import pandas as pd
from anndata import AnnData

from remnant.errors import InputError

log = logging.getLogger(__name__)

#: Columns of the per-cell table, before the ``score_*`` and ``facs_*`` columns and the UMAP.
CELL_COLUMNS = [
    "barcode",
    "sample",
    "patient",
    "timepoint",
    "population",
    "condition",
    "technology",
    "total_counts",
    "n_genes_by_counts",
    "pct_counts_mt",
    "leiden",
    "hspc_state",
    "hspc_state_cell",
]

#: The config key of each parameter :func:`remnant.pp.cluster.annotate_states` names in its errors.
STATES_KEYS = {"states": "states.use", "markers": "states.markers"}


def cluster_params(cluster: Mapping, seed: int):
    """:class:`~remnant.pp.cluster.ClusterParams` from the config's ``cluster`` block and ``seed``."""
    from remnant.pp.cluster import ClusterParams

    return ClusterParams(
        target_sum=cluster["target_sum"],
        n_top_genes=cluster["n_top_genes"],
        hvg_batch_key=cluster["hvg_batch_key"],
        hvg_max_cells=cluster["hvg_max_cells"],
        n_pcs=cluster["n_pcs"],
        integrate_keys=cluster["integrate"],
        n_neighbors=cluster["n_neighbors"],
        resolution=cluster["resolution"],
        umap_min_dist=cluster["umap_min_dist"],
        umap_init=cluster["umap_init"],
        seed=seed,
    )


@contextlib.contextmanager
def config_keys(keys: Mapping[str, str]):
    """Re-raise an :class:`InputError` whose ``where`` is a parameter name of ``keys`` with the config key instead."""
    try:
        yield
    except InputError as err:
        if err.where not in keys:
            raise
        raise InputError(err.detail, path=err.path, where=keys[err.where]) from err


def cluster_cells(
    samples: Sequence[str],
    markers: str,
    out: str,
    cells: str,
    *,
    cluster: Mapping,
    states: Sequence[str] | None,
    timepoints: Sequence[str],
    populations: Sequence[str],
    seed: int,
) -> None:
    """Merge the per-sample h5ad files ``samples`` into ``out`` (raw counts as they are, no matrix in
    memory), cluster it by the config's ``cluster`` block and annotate the ``states`` of the marker
    table ``markers``; the clustering is written into ``out`` beside the counts and the per-cell
    table (:func:`cells_table`) to ``cells``."""
    from remnant.io import store
    from remnant.pp.cluster import annotate_states, cluster_file, merge_samples, read_markers, write_clustering

    obs = merge_samples(samples, out, timepoints=timepoints, populations=populations)
    n_cells, n_genes = store.shape(out)
    log.info("merged %d samples on disk: %d cells x %d genes", len(samples), n_cells, n_genes)
    result = cluster_file(out, obs, cluster_params(cluster, seed), key_prefix="cluster.")
    with config_keys(STATES_KEYS):
        annotate_states(
            result, read_markers(markers), states=states, target_sum=cluster["target_sum"], seed=seed, counts=out
        )
    write_clustering(out, result)
    store.write_cell_table(cells_table(result), cells)


def cells_table(result: AnnData) -> pd.DataFrame:
    """One row per cell: :data:`CELL_COLUMNS`, the ``score_*`` and ``facs_*`` columns, ``umap_1``, ``umap_2``."""
    columns = CELL_COLUMNS + [c for c in result.obs if c.startswith("score_") or c.startswith("facs_")]
    table = result.obs[columns].copy()
    table["umap_1"], table["umap_2"] = result.obsm["X_umap"][:, 0], result.obsm["X_umap"][:, 1]
    return table
