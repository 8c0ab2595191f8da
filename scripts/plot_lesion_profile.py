"""Rule plot_lesion_profile: a lesion's chromosome in one patient's called vs uncalled cells
(remnant.workflow.cnv.plot_lesion)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.cnv import plot_lesion  # noqa: E402

with logged(snakemake.log[0], "plot_lesion_profile"):
    plot_lesion(
        snakemake.input.profile,
        snakemake.input.breakpoints,
        snakemake.input.cytobands,
        snakemake.wildcards.patient,
        snakemake.wildcards.lesion,
        snakemake.output.png,
        lesions=snakemake.params.lesions,
    )
