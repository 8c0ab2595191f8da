"""Rule annotate_cohort: the cohort file users open (clustered.h5ad + obs/uns of call_lesions, scverse-shaped;
remnant.workflow.lesions.annotate_cohort)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.lesions import annotate_cohort  # noqa: E402

with logged(snakemake.log[0], "annotate_cohort"):
    annotate_cohort(
        snakemake.input.h5ad, snakemake.input.calls, snakemake.output.h5ad, target_sum=snakemake.params.target_sum
    )
