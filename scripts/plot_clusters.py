"""Rule plot_clusters: UMAPs by patient, timepoint, population, cluster, state; marker dot plot."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402

from remnant.io import store  # noqa: E402
from remnant.pl.clusters import plot_marker_dotplot, plot_umaps  # noqa: E402
from remnant.pp.cluster import read_markers  # noqa: E402

with logged(snakemake.log[0], "plot_clusters"):
    # only what the figures need: obs, the UMAP and the marker genes, log-normalised like the
    # clustering (library = all genes); the cohort's count matrix stays on disk
    path = snakemake.input.h5ad
    var = store.read_var(path)
    markers = read_markers(snakemake.input.markers)
    wanted = {g for genes in markers.values() for g in genes}
    columns = var["gene_name"].astype(str).isin(wanted).to_numpy()
    counts, sums = store.read_columns(path, columns, sums={"library": np.ones(len(var), bool)})
    target_sum = store.read_key(path, "uns/remnant/cluster/target_sum", 1e4)
    adata = ad.AnnData(
        X=store.log_normalise(counts, sums["library"], float(target_sum)),
        obs=store.read_obs(path),
        var=var.loc[columns],
        obsm={"X_umap": store.read_key(path, "obsm/X_umap")},
    )
    plot_umaps(adata, snakemake.params.colour_by, snakemake.output.umaps)
    states = list(snakemake.params.states or adata.obs["hspc_state"].cat.categories)
    plot_marker_dotplot(adata, markers, states, snakemake.output.dotplot)
