"""Rule collect_warnings: the warnings of every job's log in one table (results/warnings.tsv)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import collect_warnings, logged, start

start(1)

with logged(snakemake.log[0], "collect_warnings") as log:
    table = collect_warnings(snakemake.params.logs)
    table.to_csv(snakemake.output[0], sep="\t", index=False)
    log.info("%d warning(s) in %d job logs", len(table), len(snakemake.params.logs))
