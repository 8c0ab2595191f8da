"""Rule plot_cnv: chromosome-ordered copy-number heatmap of one patient.

Reads obs and the window table of profile.h5ad, then only the profile rows it draws (the
patient's shown cells and a sample of reference cells), not the cohort's cells x windows matrix.
"""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402

from remnant.errors import InputError  # noqa: E402
from remnant.io import store  # noqa: E402
from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.tl.lesions import parse_lesions  # noqa: E402
from remnant.tl.profile import plot_message, plot_patient_heatmap  # noqa: E402

with logged(snakemake.log[0], "plot_cnv") as log:
    params = snakemake.params
    patient = snakemake.wildcards.patient
    cytobands = load_cytobands(snakemake.input.cytobands)
    lesions = parse_lesions(params.lesions, cytobands, chromosome_arms(cytobands))
    path = snakemake.input.h5ad
    info = store.read_key(path, "uns/cnv")
    if info is None:
        raise InputError("has no uns['cnv'] (the window table); rerun infer_cnv.", path=path)
    call_keys = [f"{lesion.name}_call" for lesion in lesions]
    # only the columns drawn: the obs of a million cells is read by each of the per-patient jobs
    columns = ["patient", "population", "timepoint", "reference", *call_keys]
    adata = ad.AnnData(obs=store.read_obs(path, columns=columns), uns={"cnv": info})
    if patient not in set(adata.obs["patient"].astype(str)):
        log.warning("no cell of patient %s passed QC", patient)
        plot_message(snakemake.output.heatmap, f"Patient {patient}: no cell passed quality control.")
    else:
        plot_patient_heatmap(
            adata,
            patient,
            snakemake.output.heatmap,
            call_key=call_keys,
            lesions=lesions,
            max_cells=params.heatmap["max_cells"],
            n_reference_cells=params.heatmap["n_reference_cells"],
            seed=params.seed,
            profile=path,
        )
