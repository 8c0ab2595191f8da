"""Rule count_alleles: one sample's BAM (or plate manifest) -> its kept cells' allele counts, a cellsnp-lite folder."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.alleles import count_alleles  # noqa: E402

with logged(snakemake.log[0], f"count_alleles {snakemake.wildcards.sample}"):
    count_alleles(
        snakemake.input.bam,
        snakemake.input.cells,
        snakemake.output[0],
        sample=snakemake.wildcards.sample,
        sites=snakemake.input.sites,
        sites_source=snakemake.params.sites_source,
        lesions=snakemake.params.lesions,
        control_region=snakemake.params.control_region,
        cytobands=snakemake.input.cytobands,
        barcode_tag=snakemake.params.barcode_tag,
        umi_tag=snakemake.params.umi_tag,
        min_mapq=snakemake.params.min_mapq,
        min_baseq=snakemake.params.min_baseq,
    )
