"""Rule plot_lesion_profile: a lesion's chromosome in one patient's called vs uncalled cells."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import pandas as pd  # noqa: E402

from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.tl.lesions import parse_lesions  # noqa: E402
from remnant.tl.profile import plot_lesion_profile, plot_message  # noqa: E402

with logged(snakemake.log[0], "plot_lesion_profile") as log:
    patient, name = snakemake.wildcards.patient, snakemake.wildcards.lesion
    cytobands = load_cytobands(snakemake.input.cytobands)
    (lesion,) = [
        lesion
        for lesion in parse_lesions(snakemake.params.lesions, cytobands, chromosome_arms(cytobands))
        if lesion.name == name
    ]
    # patient names stay strings (a patient "01" is not the number 1)
    profile = pd.read_csv(snakemake.input.profile, sep="\t", dtype={"patient": str, "gene": str, "gene_name": str})
    breakpoints = pd.read_csv(snakemake.input.breakpoints, sep="\t", dtype={"patient": str, "reason": str})
    breakpoints["reason"] = breakpoints["reason"].fillna("")
    breakpoints = breakpoints[breakpoints["lesion"] == name].set_index("patient")
    mine = profile[profile["lesion"] == name]  # the table is this patient's (infer_cnv writes one per patient)
    if mine.empty:
        log.warning("no cell of patient %s passed QC", patient)
        plot_message(snakemake.output.png, f"Patient {patient}: no cell passed quality control.")
    else:
        plot_lesion_profile(
            mine, lesion, snakemake.output.png, patient=patient, breakpoints=breakpoints, cytobands=cytobands
        )
