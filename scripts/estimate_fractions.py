"""Rule estimate_fractions: carrier fraction per patient x population x timepoint, the study's contrasts, figure."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import pandas as pd  # noqa: E402

from remnant.pl.persistence import plot_del_fraction  # noqa: E402
from remnant.tl.fractions import POPULATION_KEYS, prepare_cells, read_calls, run_contrasts, run_fractions  # noqa: E402

with logged(snakemake.log[0], "estimate_fractions") as log:
    p, lesion = snakemake.params.persistence, snakemake.params.lesion
    obs, info = read_calls(snakemake.input.h5ad, lesion)
    gates = (
        pd.read_csv(snakemake.input.gates, sep="\t", index_col="cell", low_memory=False)
        if "gates" in snakemake.input
        else None
    )
    cells, summary = prepare_cells(
        obs,
        reference_conditions=snakemake.params.reference_conditions,
        population_key=p["population_key"],
        gates=gates,
        source=snakemake.input.h5ad,
    )
    log.info("cells: %s", summary)
    n_reference = info.get("params", {}).get("n_reference")
    table, pooled = run_fractions(
        cells,
        info["per_sample"],
        lesion=lesion,
        n_reference=n_reference,
        alpha=p["alpha"],
        min_youden=p["min_youden"],
        planned=snakemake.params.planned,
        populations=snakemake.params.populations,
        timepoints=snakemake.params.timepoints,
        assigned_by=POPULATION_KEYS[p["population_key"]],
    )
    for _, r in pooled.iterrows():
        log.info(
            "%s %s (pooled over patients): %d/%d called (%.3f), corrected %.3f [%.3f, %.3f]",
            r["population"],
            r["timepoint"],
            r["n_called"],
            r["n_cells"],
            r["fraction"],
            r["corrected"],
            r["corrected_low"],
            r["corrected_high"],
        )
    contrasts = run_contrasts(
        table,
        cells,
        stem=p["stem"],
        progenitor=p["progenitor"],
        before=p["before"],
        after=p["after"],
        lesion=lesion,
        alpha=p["alpha"],
        timepoints=snakemake.params.timepoints,
    )
    for _, r in contrasts[contrasts["scope"] == "across patients"].iterrows():
        log.info(
            "%s [%s]: OR %.3g [%.3g, %.3g], p %.3g%s",
            r["question"],
            r["test"],
            r.get("odds_ratio", float("nan")),
            r.get("odds_ratio_low", float("nan")),
            r.get("odds_ratio_high", float("nan")),
            r.get("pvalue", float("nan")),
            f" ({r['note']})" if r["note"] else "",
        )
    table.to_csv(snakemake.output.fractions, sep="\t", index=False, float_format="%.6g")
    pooled.assign(scope="cells pooled over patients (descriptive)").to_csv(
        snakemake.output.pooled, sep="\t", index=False, float_format="%.6g"
    )
    contrasts.to_csv(snakemake.output.contrasts, sep="\t", index=False, float_format="%.6g")
    plot_del_fraction(
        table[table["n_cells"] > 0],
        snakemake.output.figure,
        timepoints=snakemake.params.timepoints,
        populations=snakemake.params.populations,
        lesion_label=lesion,
    )
