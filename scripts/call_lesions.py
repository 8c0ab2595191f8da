"""Rule call_lesions: per-cell posterior of each configured lesion, per-sample summary
(remnant.workflow.lesions.call_cohort_lesions)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.lesions import call_cohort_lesions  # noqa: E402


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


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
        alleles=list(snakemake.input.alleles),
        allele_options=params.alleles,
        # a named output of no file (no sample has allele data) is an empty list
        out_phase=next(iter(_as_list(snakemake.output.phase)), None),
    )
