"""Rule estimate_fractions: carrier fraction per patient x population x timepoint, the study's contrasts, figure."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.estimate_fractions import write_fractions  # noqa: E402

with logged(snakemake.log[0], "estimate_fractions"):
    write_fractions(snakemake.input.h5ad, gates=snakemake.input.get("gates"), **snakemake.params, **snakemake.output)
