"""Rule write_front_page: the report's first page (short RST) and its full summary page (HTML) from the run's tables."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import pandas as pd  # noqa: E402

from remnant.workflow.config import read_sample_sheet  # noqa: E402
from remnant.workflow.report import front_page, landing_page, package_versions, render_html  # noqa: E402

with logged(snakemake.log[0], "write_front_page") as log:
    read = lambda path: pd.read_csv(path, sep="\t", low_memory=False)  # noqa: E731
    versions = package_versions()
    sheet = read_sample_sheet(
        snakemake.input.samples, f"{snakemake.scriptdir}/../config/schemas/samples.schema.yaml", snakemake.params.config
    )
    tables = {key: read(path) for key, path in snakemake.input.items() if key not in ("samples",)}
    full = front_page(
        config=snakemake.params.config,
        samples=sheet,
        qc_removed=tables["qc"],
        lesion_summary=tables["lesions"],
        reference=tables["reference"],
        fractions=tables["fractions"],
        contrasts=tables["contrasts"],
        comparisons=tables["comparisons"],
        cycling=tables["cycling"],
        enrichment=tables["enrichment"],
        versions=versions,
        annotation=snakemake.params.annotation,
    )
    with open(snakemake.output.summary, "w", encoding="utf-8") as handle:
        handle.write(render_html(full))
    text = landing_page(
        config=snakemake.params.config,
        samples=sheet,
        qc_removed=tables["qc"],
        fractions=tables["fractions"],
        contrasts=tables["contrasts"],
        comparisons=tables["comparisons"],
        cycling=tables["cycling"],
        enrichment=tables["enrichment"],
    )
    with open(snakemake.output.front, "w", encoding="utf-8") as handle:
        handle.write(text)
    log.info("front page: %d lines; versions %s", text.count("\n"), versions)
