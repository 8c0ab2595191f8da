"""Rule score_signatures: per-cell signature scores and cycling phase (lesion genes excluded), their
comparisons between carrier and non-carrier stem cells and before vs after treatment, figures."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from remnant.io import store  # noqa: E402
from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.pl.cnv import plot_message  # noqa: E402
from remnant.pl.persistence import plot_cycling_calibration, plot_cycling_composition, plot_signature_distributions  # noqa: E402
from remnant.tl.fractions import read_analysed_cells  # noqa: E402
from remnant.tl.lesions import parse_lesions  # noqa: E402
from remnant.tl.signatures import (  # noqa: E402
    UNCERTAIN,
    describe_sets,
    exclusion_regions,
    group_labels,
    read_signatures,
    run_comparisons,
    run_cycling,
    score_cohort,
)

with logged(snakemake.log[0], "score_signatures") as log:
    s, p, lesion = snakemake.params.signatures, snakemake.params.persistence, snakemake.params.lesion
    # the design keys may be null (a cohort without that design): None, not "None"
    design = {k: (None if p[k] is None else str(p[k])) for k in ("stem", "before", "after")}
    timepoints, stem = [str(t) for t in snakemake.params.timepoints], design["stem"]
    path = snakemake.input.h5ad
    # the cohort is never read whole (issue 8): its tables here, its counts block by block in score_cohort
    obs, cells, summary, counts_key = read_analysed_cells(
        path,
        reference_conditions=snakemake.params.reference_conditions,
        population_key=p["population_key"],
        gates_path=snakemake.input.get("gates"),
    )
    var = store.read_var(path)
    log.info("cells: %s", summary)
    rows = obs.index.isin(cells.index)  # boolean (n_obs,): the analysed cells, in the file's order as in cells
    del obs
    cytobands = load_cytobands(snakemake.input.cytobands)
    exclude = (
        parse_lesions(snakemake.params.lesions, cytobands, chromosome_arms(cytobands))
        if s["exclude_lesion_genes"]
        else []
    )
    exclude += exclusion_regions(s["exclude_regions"], cytobands)
    log.info(
        "genes left out of sets and controls: %s",
        [f"{x.name} {x.chromosome}:{x.start}-{x.end}" for x in exclude] or "none",
    )
    directory = Path(snakemake.input.sets[0]).parent
    sets = read_signatures(snakemake.params.set_names, directory)
    cycle = read_signatures(snakemake.params.cell_cycle, directory)
    s_name, g2m_name = snakemake.params.cell_cycle
    kept = s["also_with_lesion_genes"] and bool(exclude)
    # the cycling phase is calibrated per technology (score noise differs with depth): cells' batches in file order
    batch_key = "technology" if "technology" in cells else None
    batches = cells[batch_key].astype(str).to_numpy() if batch_key else None
    scores, scored, _ = score_cohort(
        path,
        sets,
        cycle[s_name].index,
        cycle[g2m_name].index,
        rows=rows,
        exclude=exclude or None,
        also_with_lesion_genes=kept,
        downsample_to=s["downsample_to"],
        ctrl_size=s["ctrl_size"],
        n_bins=s["n_bins"],
        min_genes=s["min_genes"],
        seed=snakemake.params.seed,
        key=counts_key,
        batches=batches,
    )
    if not scores.index.equals(cells.index):
        raise RuntimeError(
            "scores and analysed cells are out of order"
        )  # score_cohort keeps the file's order, as prepare_cells
    log.info(
        "%d cells scored from %s (%s, block by block)%s",
        len(scores),
        path,
        counts_key,
        f"; counts thinned to {scores.attrs['downsampled_to']} per cell" if scores.attrs["downsampled_to"] else "",
    )
    for col in scores.columns:
        cells[col] = scores[col].to_numpy()
    calibration = scores.attrs.get(
        "cycling_calibration",
        pd.DataFrame(
            columns=["batch", "cells", "rule", "cycling_share", "called_share", "sign_rule_share", "separation"]
        ),
    )
    for _, r in calibration.iterrows():
        log.info(
            "cycling calibration, %s (%d cells): %s; estimated cycling %.3f, called %.3f, sign rule %.3f, separation %.3f",
            r["batch"],
            r["cells"],
            r["rule"],
            r["cycling_share"],
            r["called_share"],
            r["sign_rule_share"],
            r["separation"],
        )
    calibration.to_csv(snakemake.output.calibration, sep="\t", index=False, float_format="%.6g")
    plot_cycling_calibration(cells, calibration, snakemake.output.calibration_figure, batch_key=batch_key)
    described = describe_sets(var, {**sets, **cycle}, exclude=exclude or None)
    described = described.merge(scored[["signature", "weighted", "scored"]], on="signature", how="left")
    described["scored"] = described["scored"].fillna(True).astype(bool)  # the cell-cycle sets are always scored
    described["role"] = ["cell cycle" if n in cycle else "signature" for n in described["signature"]]
    group_key = f"{lesion}_group"
    cells[group_key] = group_labels(cells, lesion, low=s["group_low"], high=s["group_high"])

    fair = [f"sig_{n}" for n in scored.loc[scored["scored"], "signature"]]
    variant = "lesion genes excluded" if exclude else "all genes (signatures.exclude_lesion_genes: false)"
    variants = dict.fromkeys(fair, variant)
    variants.update(
        {
            f"{k}_with_lesion_genes": "all genes (conventional: carriers read lesion genes at half dose)"
            for k in fair
            if kept
        }
    )
    variants.update({"S_score": f"cell cycle, {variant}", "G2M_score": f"cell cycle, {variant}"})
    keys = [x for k in fair for x in ([k, f"{k}_with_lesion_genes"] if kept else [k])] + ["S_score", "G2M_score"]
    keys = [k for k in keys if k in cells]
    common = dict(
        lesion=lesion,
        group_key=group_key,
        stem=stem,
        before=design["before"],
        after=design["after"],
        timepoints=timepoints,
    )
    comparisons = run_comparisons(cells, keys, min_cells=s["min_cells"], alpha=p["alpha"], variants=variants, **common)
    composition, cycling = run_cycling(cells, alpha=p["alpha"], **common)
    for _, r in comparisons[comparisons["test"].astype(str).str.startswith("linear mixed")].iterrows():
        log.info(
            "%s, %s: difference %.4f [%.4f, %.4f], p %.3g%s",
            r["score"],
            r["question"],
            r["difference"],
            r["difference_low"],
            r["difference_high"],
            r["pvalue"],
            f" ({r['note']})" if r["note"] else "",
        )

    columns = [
        "sample",
        "patient",
        "timepoint",
        "condition",
        "technology",
        "sort_gate",
        "population",
        "hspc_state",
        "total_counts",
        "n_genes_by_counts",
        f"{lesion}_posterior",
        f"{lesion}_call",
        group_key,
        "cnv_reference",
    ]
    columns = [c for c in columns if c in cells] + keys + ["cycle_phase", "cycling_posterior"]
    cells[columns].to_csv(
        snakemake.output.scores, sep="\t", index_label="cell", float_format="%.6g", compression=store.TABLE_GZIP
    )
    described.to_csv(snakemake.output.sets, sep="\t", index=False)
    comparisons.to_csv(snakemake.output.comparisons, sep="\t", index=False, float_format="%.6g")
    composition.to_csv(snakemake.output.composition, sep="\t", index=False, float_format="%.6g")
    cycling.to_csv(snakemake.output.cycling, sep="\t", index=False, float_format="%.6g")

    shown = cells[(cells["population"] == stem) & (cells[group_key] != UNCERTAIN)].copy()
    if stem is None:
        log.info("persistence.stem is null: no stem-cell figures")
        for figure in (snakemake.output.scores_figure, snakemake.output.cycling_figure):
            plot_message(
                figure,
                f"No stem-cell population named (persistence.stem is null: not a stem-cell design), "
                f"so no {lesion} vs non-del stem-cell comparison. Per-cell scores are in signature_scores.tsv.gz.",
            )
    elif shown.empty:
        log.warning("no %s cells called %s or non-del: no figures of their scores", stem, lesion)
        plot_message(
            snakemake.output.scores_figure, f"No {stem} cells with a confident {lesion} call: nothing to compare."
        )
        plot_message(
            snakemake.output.cycling_figure, f"No {stem} cells with a confident {lesion} call: nothing to compare."
        )
    else:
        shown["group"] = shown["timepoint"].astype(str) + "\n" + shown[group_key].astype(str)
        order = [
            f"{tp}\n{g}"
            for tp in [*timepoints, *sorted(set(shown["timepoint"]) - set(timepoints))]
            for g in (lesion, "non-del")
        ]
        plot_signature_distributions(
            shown,
            fair + ["S_score", "G2M_score"],
            snakemake.output.scores_figure,
            group_key="group",
            groups=order,
            ncols=4,
            title=f"{stem} cells by timepoint and {lesion} call (lesion genes excluded): cells (violins), "
            "per-patient medians (dots)",
        )
        comp = composition[(composition["population"] == stem) & (composition[group_key] != UNCERTAIN)]
        plot_cycling_composition(comp, snakemake.output.cycling_figure, label_keys=["patient", "timepoint", group_key])
