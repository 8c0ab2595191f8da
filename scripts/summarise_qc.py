"""Rule summarise_qc: cells removed per reason per sample (table and figure)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(1)

import pandas as pd  # noqa: E402

from remnant.pl.qc import plot_qc_summary  # noqa: E402
from remnant.pp.qc import REASONS, removed_per_reason  # noqa: E402

with logged(snakemake.log[0], "summarise_qc"):
    tables = []
    for sample, path in zip(snakemake.params.samples, snakemake.input):
        obs = pd.read_csv(path, sep="\t")
        tables.append(removed_per_reason(obs, sample))
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_qc_summary(table, snakemake.output.figure, REASONS)
