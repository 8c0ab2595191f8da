"""Rule score_signatures: per-cell signature scores and cycling phase (lesion genes excluded), their
comparisons between carrier and non-carrier stem cells and before vs after treatment, figures."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from pathlib import Path  # noqa: E402

from remnant.workflow.score_signatures import write_signature_scores  # noqa: E402

with logged(snakemake.log[0], "score_signatures"):
    write_signature_scores(
        snakemake.input.h5ad,
        gates=snakemake.input.get("gates"),
        gene_set_dir=Path(snakemake.input.sets[0]).parent,
        cytobands=snakemake.input.cytobands,
        **snakemake.params,
        **snakemake.output,
    )
