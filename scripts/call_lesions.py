"""Rule call_lesions: per-cell posterior of each configured lesion, per-sample summary."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import time  # noqa: E402

import pandas as pd  # noqa: E402

from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.io.store import TABLE_GZIP  # noqa: E402
from remnant.tl.lesions import call_lesions, parse_lesions, read_lesion_counts, write_calls  # noqa: E402
from remnant.tl.reference import find_reference  # noqa: E402
from remnant.workflow.config import reference_cells  # noqa: E402

with logged(snakemake.log[0], "call_lesions") as log:
    params = snakemake.params
    cytobands = load_cytobands(snakemake.input.cytobands)
    lesions = parse_lesions(params.lesions, cytobands, chromosome_arms(cytobands))
    # Issue 8: the cohort is never held whole. One pass over the counts keeps the lesions' genes
    # (cells x a few hundred genes) and each cell's depth outside them; the scoring needs no more.
    t0, c0 = time.perf_counter(), time.process_time()
    adata, depth = read_lesion_counts(snakemake.input.h5ad, lesions)
    t_read, c_read = time.perf_counter() - t0, time.process_time() - c0
    log.info(
        "read %s: %d cells, %d lesion genes kept, %d stored nonzeros of them",
        snakemake.input.h5ad,
        adata.n_obs,
        adata.n_vars,
        adata.X.nnz,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    c = params.cnv
    options = dict(
        batch_key=c["batch_key"],
        n_folds=c["n_folds"],
        min_mean=c["min_mean"],
        shrinkage=c["shrinkage"],
        min_batch_reference=c["min_batch_reference"],
        refine=c["refine"],
        min_refine_cells=c["min_refine_cells"],
        min_interval_genes=c["min_interval_genes"],
        refine_max_reference=c["refine_max_reference"],
        seed=params.seed,
        layer=None,
        depth=depth,
    )
    if c["reference"] == "auto":
        auto = c["auto_reference"]
        candidates = (
            None
            if auto["candidates"] is None
            else reference_cells(
                adata.obs, auto["candidates"], params.reference_conditions, key="cnv.auto_reference.candidates"
            ).to_numpy()
        )
        log.info(
            "automatic reference: choosing among %d candidate cells",
            adata.n_obs if candidates is None else int(candidates.sum()),
        )
        reference, choice = find_reference(
            adata,
            lesions,
            candidates=candidates,
            max_carrier_probability=auto["max_carrier_probability"],
            min_cells=auto["min_cells"],
            rescore_rounds=auto["rescore_rounds"],
            **options,
        )
        choice.insert(0, "mode", "auto")
        for _, row in choice.iterrows():
            log.info(
                "automatic reference, %s, batch %s: %d of %d candidates chosen, separation %.1f, "
                "%.1f expected carriers among them",
                row["lesion"],
                row["batch"],
                row["n_chosen"],
                row["n_candidates"],
                row["separation"],
                row["contamination"],
            )
            if not row["confident"]:
                log.warning(
                    "automatic reference NOT confident for %s, batch %s: %s. Configure cnv.reference "
                    "(healthy donors or a cleared population) if you can.",
                    row["lesion"],
                    row["batch"],
                    row["reason"],
                )
    else:
        reference = reference_cells(adata.obs, c["reference"], params.reference_conditions).to_numpy()
        choice = None
    log.info("%d cells, %d reference cells; lesions %s", adata.n_obs, int(reference.sum()), [l.name for l in lesions])
    call_lesions(adata, lesions, reference_mask=reference, posterior_cutoff=c["posterior_cutoff"], **options)
    t_call, c_call = time.perf_counter() - t0, time.process_time() - c0
    # benchmarks/scale.py parses this line (issue 8: lesion calling within 3x of reading its input);
    # wall time, and CPU time too since wall time stretches on a shared machine
    log.info("read X: %.1f s; lesion calling: %.1f s", t_read, t_call)
    log.info("CPU time: read X %.1f s; lesion calling %.1f s", c_read, c_call)
    adata.obs["cnv_reference"] = reference
    columns = ["barcode", "sample", "patient", "timepoint", "population", "condition", "hspc_state"]
    for lesion in lesions:
        columns += [f"{lesion.name}_{k}" for k in ("posterior", "llr", "call", "n_genes")]
    table = adata.obs[columns].copy()
    table["reference"] = reference
    table.to_csv(snakemake.output.cells, sep="\t", index_label="cell", float_format="%.6g", compression=TABLE_GZIP)
    summaries, intervals = [], []
    for lesion in lesions:
        info = adata.uns["lesions"][lesion.name]
        summaries.append(info["per_sample"].reset_index().assign(lesion=lesion.name, genes_used=len(info["genes"])))
        intervals.append(
            info["intervals"].assign(lesion=lesion.name, configured_start=lesion.start, configured_end=lesion.end)
        )
        for batch, b in info["batches"].iterrows():
            log.info(
                "%s, batch %s: %d cells, %d reference cells (%s), %d genes, temperature %.3f, count scale %.2f",
                lesion.name,
                batch,
                b["n_cells"],
                b["n_reference"],
                "same batch" if b["reference_matched"] else "NOT matched: too few reference cells of this batch",
                b["n_genes"],
                b["temperature"],
                b["count_scale"],
            )
            if not b["reference_matched"]:
                log.warning(
                    "%s: batch %s is scored against reference cells of other batches; its false-positive "
                    "rate is not measured on its own technology.",
                    lesion.name,
                    batch,
                )
        log.info("%s: reference FPR %.4f", lesion.name, info["reference_fpr"])
    pd.concat(summaries, ignore_index=True).to_csv(snakemake.output.samples, sep="\t", index=False, float_format="%.6g")
    pd.concat(intervals, ignore_index=True).to_csv(
        snakemake.output.intervals, sep="\t", index=False, float_format="%.6g"
    )
    if choice is None:  # configured reference: how many cells, of which batches
        choice = (
            adata.obs.assign(reference=reference)
            .groupby(c["batch_key"] or (lambda _: "all"), observed=True)["reference"]
            .agg(n_candidates="size", n_chosen="sum")
            .reset_index(names="batch")
        )
        choice.insert(0, "mode", "configured")
    choice.to_csv(snakemake.output.reference, sep="\t", index=False, float_format="%.6g")
    # the calls alone (obs columns + uns["lesions"], no matrix); rule annotate_cohort adds them to
    # a copy of the cohort file
    t0 = time.perf_counter()
    write_calls(adata, snakemake.output.calls)
    log.info("wrote %s: %.1f s", snakemake.output.calls, time.perf_counter() - t0)
