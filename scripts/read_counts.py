"""Rule read_counts: one sample's counts -> AnnData mapped to the genome annotation."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.io.annotation import genes_from_gtf, load_cytobands, load_genes  # noqa: E402
from remnant.io.counts import read_sample  # noqa: E402

with logged(snakemake.log[0], f"read_counts {snakemake.wildcards.sample}") as log:
    if snakemake.params.gtf:
        genes = genes_from_gtf(snakemake.input.genes, load_cytobands(snakemake.params.cytobands))
    else:
        genes = load_genes(snakemake.input.genes)
    adata, stats = read_sample(
        snakemake.params.row,
        genes,
        min_mapped_fraction=snakemake.params.min_mapped_fraction,
        sheet=snakemake.params.sheet,
        markers=snakemake.params.markers,
        build=snakemake.params.build,
    )
    log.info("read %d cells x %d genes; %s", adata.n_obs, adata.n_vars, stats)
    adata.write_h5ad(snakemake.output[0], compression="gzip")
