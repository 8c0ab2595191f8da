"""Rule cluster_cells: merge QC-passed samples, cluster the cohort, annotate HSPC states."""
import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from remnant.cluster import annotate_states, cluster_cohort, read_markers  # noqa: E402

with logged(snakemake.log[0], "cluster_cells") as log:
    params = snakemake.params
    parts = [ad.read_h5ad(path) for path in snakemake.input.samples]
    log.info("merging %d samples, %d cells", len(parts), sum(p.n_obs for p in parts))
    # outer join: a gene measured in one sample but not another is absent there, stored as zero
    adata = ad.concat(parts, join="outer", merge="first", uns_merge=None, fill_value=0)
    del parts
    adata.obs["timepoint"] = pd.Categorical(adata.obs["timepoint"].astype(str).replace({"nan": "NA", "": "NA"}),
                                            categories=list(params.timepoints) + ["NA"])
    adata.obs["timepoint"] = adata.obs["timepoint"].cat.remove_unused_categories()
    adata.obs["population"] = pd.Categorical(adata.obs["population"].astype(str), categories=params.populations).remove_unused_categories()
    for key in ("sample", "patient", "condition", "technology"):
        adata.obs[key] = adata.obs[key].astype(str).astype("category")
    c = params.cluster
    cluster_cohort(adata, target_sum=c["target_sum"], n_top_genes=c["n_top_genes"], n_pcs=c["n_pcs"], hvg_batch_key=c["hvg_batch_key"],
                   integrate_keys=c["integrate"], n_neighbors=c["n_neighbors"], resolution=c["resolution"],
                   umap_min_dist=c["umap_min_dist"], seed=params.seed)
    annotate_states(adata, read_markers(snakemake.input.markers), states=params.states, seed=params.seed)
    adata.write_h5ad(snakemake.output.h5ad, compression="gzip")
    columns = ["barcode", "sample", "patient", "timepoint", "population", "condition", "technology",
               "total_counts", "n_genes_by_counts", "pct_counts_mt", "leiden", "hspc_state", "hspc_state_cell"]
    columns += [c for c in adata.obs if c.startswith("score_") or c.startswith("facs_")]
    table = adata.obs[columns].copy()
    table["umap_1"], table["umap_2"] = adata.obsm["X_umap"][:, 0], adata.obsm["X_umap"][:, 1]
    table.to_csv(snakemake.output.cells, sep="\t", index_label="cell", float_format="%.6g", compression={"method": "gzip", "mtime": 0})
