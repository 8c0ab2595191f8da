"""Rule filter_cells: QC metrics, thresholds and doublets for one sample."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.qc import filter_cells  # noqa: E402

sample = snakemake.wildcards.sample
with logged(snakemake.log[0], f"filter_cells {sample}"):
    filter_cells(
        snakemake.input[0],
        sample=sample,
        qc=snakemake.params.qc,
        droplet=snakemake.params.technology == "droplet",
        seed=snakemake.params.seed,
        figure=snakemake.output.figure,
        cells=snakemake.output.cells,
        h5ad=snakemake.output.h5ad,
        log_path=snakemake.log[0],
    )
