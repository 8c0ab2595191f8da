"""Rule simulate_cohort: simulate the counts the sample sheet names, with ground truth beside them."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from remnant.io.annotation import load_genes  # noqa: E402
from remnant.io.counts import write_counts  # noqa: E402
from remnant.io.genesets import read_gene_sets  # noqa: E402
from remnant.pp.cluster import read_markers  # noqa: E402
from remnant.sim.cohort import simulate_cohort  # noqa: E402

with logged(snakemake.log[0], "simulate_cohort") as log:
    sheet = pd.DataFrame.from_records(snakemake.params.sheet).set_index("sample", drop=False)
    sheet_rows = sheet.to_dict(orient="index")

    def write(sample, counts, index_sort):
        # each sample goes to disk as soon as it is simulated: memory of one sample, not of the cohort
        row = sheet_rows[sample]
        Path(row["counts"]).parent.mkdir(parents=True, exist_ok=True)
        write_counts(counts, row["counts"], row["format"])
        if row["index_sort"]:
            index_sort.to_csv(row["index_sort"], index_label="barcode", float_format="%.2f")
        log.info("%s: %d cells written to %s (%s)", sample, counts.n_obs, row["counts"], row["format"])

    cohort = simulate_cohort(
        sheet,
        load_genes(snakemake.input.genes),
        read_markers(snakemake.input.markers),
        read_gene_sets(snakemake.params.gene_sets),
        params=snakemake.params.demo,
        seed=snakemake.params.seed,
        write=write,
        root="demo.params",  # the config key the parameters come from, named in messages
    )
    gz = {"method": "gzip", "mtime": 0}
    cohort.cells.to_csv(snakemake.output.cells, sep="\t", index=False, compression=gz)
    cohort.patients.to_csv(snakemake.output.patients, sep="\t", index=False)
