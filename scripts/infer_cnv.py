"""Rule infer_cnv: genome-wide copy-number profile per cell, lesion profiles and breakpoints per patient
(remnant.workflow.cnv.infer_cnv)."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.workflow.cnv import infer_cnv  # noqa: E402

with logged(snakemake.log[0], "infer_cnv"):
    params = snakemake.params
    infer_cnv(
        snakemake.input.h5ad,
        snakemake.input.calls,
        snakemake.input.cytobands,
        lesions=params.lesions,
        profile=params.profile,
        breakpoints=params.breakpoints,
        depth=params.depth,
        shrinkage=params.shrinkage,
        seed=params.seed,
        patients=params.patients,
        out_h5ad=snakemake.output.h5ad,
        out_breakpoints=snakemake.output.breakpoints,
        out_profiles=snakemake.output.profiles,
        n_jobs=snakemake.threads,
    )
