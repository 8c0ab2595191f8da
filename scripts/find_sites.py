"""Rule find_sites: one patient's BAMs (or plate manifests) -> its heterozygous sites in the lesions and the control region, a VCF."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.alleles import find_sites  # noqa: E402

with logged(snakemake.log[0], f"find_sites {snakemake.wildcards.patient}"):
    find_sites(
        list(snakemake.input.bams),
        snakemake.output[0],
        patient=snakemake.wildcards.patient,
        samples=list(snakemake.params.samples),
        lesions=snakemake.params.lesions,
        control_region=snakemake.params.control_region,
        cytobands=snakemake.input.cytobands,
        barcode_tag=snakemake.params.barcode_tag,
        umi_tags=list(snakemake.params.umi_tags),
        min_mapq=snakemake.params.min_mapq,
        min_baseq=snakemake.params.min_baseq,
        **snakemake.params.discovery,
    )
