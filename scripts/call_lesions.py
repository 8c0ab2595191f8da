"""Rule call_lesions: per-cell posterior of each configured lesion, per-sample summary
(remnant.workflow.lesions.call_cohort_lesions)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.lesions import call_cohort_lesions  # noqa: E402

with logged(snakemake.log[0], "call_lesions"):
    params = snakemake.params
    call_cohort_lesions(
        snakemake.input.h5ad,
        snakemake.input.cytobands,
        lesions=params.lesions,
        cnv=params.cnv,
        reference_conditions=params.reference_conditions,
        seed=params.seed,
        out_calls=snakemake.output.calls,
        out_cells=snakemake.output.cells,
        out_samples=snakemake.output.samples,
        out_intervals=snakemake.output.intervals,
        out_reference=snakemake.output.reference,
    )
