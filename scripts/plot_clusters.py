"""Rule plot_clusters: UMAPs by patient, timepoint, population, cluster, state; marker dot plot."""
import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402

from remnant.cluster import read_markers  # noqa: E402
from remnant.plotting import plot_marker_dotplot, plot_umaps  # noqa: E402

with logged(snakemake.log[0], "plot_clusters"):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    plot_umaps(adata, snakemake.params.colour_by, snakemake.output.umaps)
    states = [s for s in (snakemake.params.states or adata.obs["hspc_state"].cat.categories)]
    plot_marker_dotplot(adata, read_markers(snakemake.input.markers), states, snakemake.output.dotplot)
