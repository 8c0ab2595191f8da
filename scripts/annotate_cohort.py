"""Rule annotate_cohort: the cohort file users open (clustered.h5ad + obs/uns of call_lesions, scverse-shaped)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import time  # noqa: E402

from remnant.io.store import annotate_with_calls  # noqa: E402

with logged(snakemake.log[0], "annotate_cohort") as log:
    t0 = time.perf_counter()
    annotate_with_calls(
        snakemake.input.h5ad, snakemake.input.calls, snakemake.output.h5ad, target_sum=snakemake.params.target_sum
    )
    log.info(
        "wrote %s (%s with the calls of %s; X log-normalised, raw counts in layers/counts, gene symbols as var_names): %.1f s",
        snakemake.output.h5ad,
        snakemake.input.h5ad,
        snakemake.input.calls,
        time.perf_counter() - t0,
    )
