"""Rule evaluate_demo: QC precision/recall and state agreement against the simulated truth."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(1)

import pandas as pd  # noqa: E402

from remnant.sim.evaluate import lesion_agreement, truth_agreement  # noqa: E402

with logged(snakemake.log[0], "evaluate_demo") as log:
    truth = pd.read_csv(snakemake.input.truth, sep="\t")
    qc = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.qc], ignore_index=True)
    cohort = pd.read_csv(snakemake.input.cohort, sep="\t")
    lesions = pd.read_csv(snakemake.input.lesions, sep="\t")
    table = pd.concat([truth_agreement(truth, qc, cohort), lesion_agreement(truth, lesions)], ignore_index=True)
    table.to_csv(snakemake.output[0], sep="\t", index=False, float_format="%.4f")
    log.info("\n%s", table.to_string(index=False))
