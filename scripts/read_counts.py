"""Rule read_counts: one sample's counts -> AnnData mapped to the genome annotation."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.read_counts import read_counts  # noqa: E402

with logged(snakemake.log[0], f"read_counts {snakemake.wildcards.sample}"):
    read_counts(
        snakemake.params.row,
        snakemake.input.genes,
        snakemake.output[0],
        gtf=snakemake.params.gtf,
        cytobands=snakemake.params.cytobands,
        min_mapped_fraction=snakemake.params.min_mapped_fraction,
        sheet=snakemake.params.sheet,
        markers=snakemake.params.markers,
        build=snakemake.params.build,
    )
