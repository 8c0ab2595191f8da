"""Rule compare_pseudobulk: paired pseudobulk DE (PyDESeq2) of carrier stem cells after vs before
treatment, enrichment of the signatures in its ranking, volcano."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from pathlib import Path  # noqa: E402

from remnant.workflow.compare_pseudobulk import write_pseudobulk_de  # noqa: E402

with logged(snakemake.log[0], "compare_pseudobulk"):
    write_pseudobulk_de(
        snakemake.input.h5ad,
        gates=snakemake.input.get("gates"),
        gene_set_dir=Path(snakemake.input.sets[0]).parent,
        threads=snakemake.threads,
        **snakemake.params,
        **snakemake.output,
    )
