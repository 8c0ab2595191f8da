"""Rule cluster_cells: merge QC-passed samples on disk, cluster the cohort, annotate HSPC states."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.io import store  # noqa: E402
from remnant.pp.cluster import annotate_states_file, cluster_file, merge_samples, read_markers, write_clustering  # noqa: E402

with logged(snakemake.log[0], "cluster_cells") as log:
    params, c = snakemake.params, snakemake.params.cluster
    out = snakemake.output.h5ad
    # the cohort's raw counts go to the output as they are (no matrix in memory); the clustering
    # is written beside them
    obs = merge_samples(snakemake.input.samples, out, timepoints=params.timepoints, populations=params.populations)
    n_cells, n_genes = store.shape(out)
    log.info("merged %d samples on disk: %d cells x %d genes", len(snakemake.input.samples), n_cells, n_genes)
    result = cluster_file(
        out,
        obs,
        target_sum=c["target_sum"],
        n_top_genes=c["n_top_genes"],
        hvg_batch_key=c["hvg_batch_key"],
        hvg_max_cells=c["hvg_max_cells"],
        n_pcs=c["n_pcs"],
        integrate_keys=c["integrate"],
        n_neighbors=c["n_neighbors"],
        resolution=c["resolution"],
        umap_min_dist=c["umap_min_dist"],
        umap_init=c["umap_init"],
        seed=params.seed,
    )
    annotate_states_file(
        out,
        result,
        read_markers(snakemake.input.markers),
        states=params.states,
        target_sum=c["target_sum"],
        seed=params.seed,
    )
    write_clustering(out, result)
    columns = [
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
    columns += [c for c in result.obs if c.startswith("score_") or c.startswith("facs_")]
    table = result.obs[columns].copy()
    table["umap_1"], table["umap_2"] = result.obsm["X_umap"][:, 0], result.obsm["X_umap"][:, 1]
    table.to_csv(
        snakemake.output.cells, sep="\t", index_label="cell", float_format="%.6g", compression=store.TABLE_GZIP
    )
