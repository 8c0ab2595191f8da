"""Rule simulate_cohort: simulate the counts the sample sheet names, with ground truth beside them."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.demo import simulate_demo  # noqa: E402

with logged(snakemake.log[0], "simulate_cohort"):
    simulate_demo(
        snakemake.params.sheet,
        genes=snakemake.input.genes,
        markers=snakemake.input.markers,
        gene_sets=snakemake.params.gene_sets,
        params=snakemake.params.demo,
        seed=snakemake.params.seed,
        cells=snakemake.output.cells,
        patients=snakemake.output.patients,
    )
