"""Rule gate_cells: each cell's sort gate, index gate and transcriptomic state, and where they disagree."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.gate_cells import write_gates  # noqa: E402

with logged(snakemake.log[0], "gate_cells"):
    write_gates(snakemake.input.h5ad, **snakemake.params, **snakemake.output)
