"""Rule write_front_page: the report's first page (short RST) and its full summary page (HTML) from the run's tables."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.report import write_pages  # noqa: E402

with logged(snakemake.log[0], "write_front_page"):
    write_pages(
        {key: path for key, path in snakemake.input.items() if key != "samples"},
        samples=snakemake.input.samples,
        schema=f"{snakemake.scriptdir}/../config/schemas/samples.schema.yaml",
        config=snakemake.params.config,
        annotation=snakemake.params.annotation,
        summary=snakemake.output.summary,
        front=snakemake.output.front,
    )
