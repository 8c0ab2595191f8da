"""Rule plot_cnv: chromosome-ordered copy-number heatmap of one patient (remnant.workflow.cnv.plot_cnv)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.cnv import plot_cnv  # noqa: E402

with logged(snakemake.log[0], "plot_cnv"):
    params = snakemake.params
    plot_cnv(
        snakemake.input.h5ad,
        snakemake.input.cytobands,
        snakemake.wildcards.patient,
        snakemake.output.heatmap,
        lesions=params.lesions,
        heatmap=params.heatmap,
        seed=params.seed,
    )
