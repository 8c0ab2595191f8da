"""Rule cluster_cells: merge QC-passed samples on disk, cluster the cohort, annotate HSPC states."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.cluster_cells import cluster_cells  # noqa: E402

with logged(snakemake.log[0], "cluster_cells"):
    cluster_cells(
        snakemake.input.samples,
        snakemake.input.markers,
        snakemake.output.h5ad,
        snakemake.output.cells,
        cluster=snakemake.params.cluster,
        states=snakemake.params.states,
        timepoints=snakemake.params.timepoints,
        populations=snakemake.params.populations,
        seed=snakemake.params.seed,
    )
