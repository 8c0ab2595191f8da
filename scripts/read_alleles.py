"""Rule read_alleles: one sample's cellsnp-lite folder -> its kept cells x the lesions' and control SNPs."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.alleles import read_alleles  # noqa: E402

with logged(snakemake.log[0], f"read_alleles {snakemake.wildcards.sample}"):
    read_alleles(
        snakemake.input.alleles,
        snakemake.input.cells,
        snakemake.output[0],
        sample=snakemake.wildcards.sample,
        lesions=snakemake.params.lesions,
        control_region=snakemake.params.control_region,
        cytobands=snakemake.input.cytobands,
        counts=snakemake.params.counts,
    )
