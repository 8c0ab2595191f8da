"""Rule compare_pseudobulk: paired pseudobulk DE (PyDESeq2) of carrier stem cells after vs before
treatment, enrichment of the signatures in its ranking, volcano."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from pathlib import Path  # noqa: E402

from remnant.pl.persistence import plot_volcano  # noqa: E402
from remnant.tl.de import de_not_made, run_paired_de  # noqa: E402
from remnant.tl.fractions import not_this_design, read_analysed_cells  # noqa: E402
from remnant.tl.signatures import read_signatures  # noqa: E402

with logged(snakemake.log[0], "compare_pseudobulk") as log:
    b, p, lesion = snakemake.params.pseudobulk, snakemake.params.persistence, snakemake.params.lesion
    path = snakemake.input.h5ad
    sets = read_signatures(snakemake.params.set_names, Path(snakemake.input.sets[0]).parent)
    # carrier stem cells after vs before: a cohort without that design (a design key null) gets the
    # tables without rows and a figure that says why
    null = [k for k in ("stem", "before", "after") if p[k] is None]
    if null:
        design = " ".join(
            d for d, keys in (("stem-cell", {"stem"}), ("before/after", {"before", "after"})) if keys & set(null)
        )
        reason = not_this_design(null, design)
        log.info("no pseudobulk DE: %s", reason)
        samples, de, enrichment = de_not_made(reason, sets)
        title = f"{lesion} {p['stem'] or 'stem'} cells after vs before treatment: pseudobulk DE"
    else:
        # the cohort is never read whole (issue 8): its cell table here, its counts summed block by block
        obs, cells, summary, counts_key = read_analysed_cells(
            path,
            reference_conditions=snakemake.params.reference_conditions,
            population_key=p["population_key"],
            gates_path=snakemake.input.get("gates"),
        )
        chosen = ((cells["population"] == str(p["stem"])) & cells[f"{lesion}_call"].astype(bool)).to_numpy()
        log.info("%d %s cells called %s summed per patient x timepoint", int(chosen.sum()), p["stem"], lesion)
        # the file's rows: the chosen cells with their analysed labels (prepare_cells keeps the file's order)
        mask = obs.index.isin(cells.index[chosen])
        table = cells.loc[chosen, ["patient", "timepoint"]].reindex(obs.index)
        del obs
        samples, de, enrichment = run_paired_de(
            path,
            mask=mask,
            obs=table,
            key=counts_key,
            signatures=sets,
            level=str(p["after"]),
            reference=str(p["before"]),
            min_cells=b["min_cells"],
            min_total_count=b["min_total_count"],
            min_count=b["min_count"],
            padj=b["padj"],
            n_cpus=snakemake.threads,
        )
        for _, r in samples.iterrows():
            log.info(
                "pseudobulk %s %s: %d cells%s",
                r["patient"],
                r["timepoint"],
                r["n_cells"],
                f" - not used: {r['reason']}" if r["reason"] else "",
            )
        if de.empty:
            reason = f"{de.attrs.get('n_pairs', 0)} patient(s) with both pseudobulks (2 needed)"
            log.warning("no DE test: %s", reason)
        else:
            log.info(
                "%d genes tested over %d patients; %d at padj < %g",
                len(de),
                de.attrs["n_pairs"],
                int((de["padj"] < b["padj"]).sum()),
                b["padj"],
            )
        title = f"{lesion} {p['stem']} cells, {p['after']} vs {p['before']}: pseudobulk DE" + (
            f" ({de.attrs['n_pairs']} patients, paired)" if not de.empty else ""
        )
    samples.to_csv(snakemake.output.samples, sep="\t", index=False)
    de.to_csv(snakemake.output.de, sep="\t", index=False, float_format="%.6g")
    enrichment.to_csv(snakemake.output.enrichment, sep="\t", index=False, float_format="%.6g")
    plot_volcano(
        de, snakemake.output.volcano, padj=b["padj"], title=title, empty=f"no test: {reason}" if de.empty else ""
    )
