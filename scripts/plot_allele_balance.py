"""Rule plot_allele_balance: a lesion's allele reads on the changed haplotype along its interval,
cells called vs not called, one panel per patient (remnant.workflow.cnv.plot_alleles)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.cnv import plot_alleles  # noqa: E402

with logged(snakemake.log[0], "plot_allele_balance"):
    plot_alleles(
        snakemake.input.phase,
        snakemake.input.cytobands,
        snakemake.wildcards.lesion,
        snakemake.output.png,
        lesions=snakemake.params.lesions,
    )
