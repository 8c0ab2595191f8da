"""The lesion calls' workflow steps (rules/cnv.smk): call_lesions and annotate_cohort.

Each function is one rule's work on plain values and paths; its script unpacks Snakemake's
input, params and output and calls it inside :func:`remnant.workflow.runlog.logged`. The analysis
is :mod:`remnant.tl.lesions` and :mod:`remnant.tl.reference`; this module chooses the reference
the config asks for, names config keys in messages, logs and writes the rule's tables.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.io.annotation import chromosome_arms, load_cytobands
from remnant.io.store import annotate_with_calls, read_obs, read_var, write_cell_table
from remnant.tl.allele_evidence import add_allele_evidence, concat_alleles
from remnant.tl.depth import DepthGenes, read_gene_list
from remnant.tl.lesions import (
    CLONE_KEY,
    DEPTH_BLOCKS_KEY,
    Lesion,
    call_lesions,
    parse_lesions,
    read_lesion_counts,
    scale_read_depth,
    write_calls,
)
from remnant.tl.reference import find_reference
from remnant.workflow.config import reference_cells
from remnant.workflow.report import NOTE_SEPARATOR

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: find_reference's arguments in its messages -> the config keys they come from here.
_AUTO_REFERENCE_WHERE = {
    "find_reference(max_carrier_probability=...)": "cnv.auto_reference.max_carrier_probability",
    "find_reference(candidates=...)": "cnv.auto_reference",
}
#: Sample-sheet columns of the per-cell table, before each lesion's columns.
_CELL_COLUMNS = ["barcode", "sample", "patient", "timepoint", "population", "condition", "hspc_state"]


def call_cohort_lesions(
    h5ad: PathLike,
    cytobands: PathLike,
    *,
    lesions: Sequence[Mapping] | None,
    cnv: Mapping,
    reference_conditions: Sequence[str],
    seed: int,
    out_calls: PathLike,
    out_cells: PathLike,
    out_samples: PathLike,
    out_intervals: PathLike,
    out_reference: PathLike,
    alleles: Sequence[PathLike] = (),
    allele_options: Mapping | None = None,
    out_phase: PathLike | None = None,
) -> None:
    """Rule call_lesions: per-cell posterior of each configured lesion, per-sample summary.

    Issue 8: the cohort is never held whole. One pass over the counts of ``h5ad``
    (clustered.h5ad) keeps the lesions' genes (cells x a few hundred genes) and each cell's depth
    outside them; the scoring needs no more.

    Parameters
    ----------
    lesions, cnv, reference_conditions, seed
        The config's ``lesions``, ``cnv``, ``conditions.reference`` and ``seed``.
    out_calls
        lesion_calls.h5ad: the calls alone (obs + ``uns["lesions"]``, no matrix); rule
        annotate_cohort adds them to a copy of the cohort file.
    out_cells, out_samples, out_intervals, out_reference
        The per-cell table (gzip TSV), the per-sample summary, the per-patient intervals and the
        reference report (TSVs).
    alleles, allele_options, out_phase
        Per-sample allele counts (h5ad files of rule read_alleles: cells x sites, layers AD, DP;
        none: expression alone, exactly as without them), the config's ``alleles`` block (``error_rate``,
        ``max_gene_llr``, ``phased_sites``: a user's phasing or null) and the phased-site table
        written from them (:func:`remnant.tl.add_allele_evidence`).
    """
    table = load_cytobands(cytobands)
    parsed = parse_lesions(lesions, table, chromosome_arms(table))
    depth_genes = depth_options(cnv["depth"])
    # a configured reference is known before the counts are read: the depth's groups of cells then
    # separate it from the cells it is compared with (as call_lesions does in memory)
    t0, c0 = time.perf_counter(), time.process_time()
    obs = read_obs(h5ad)
    known = None if cnv["reference"] == "auto" else reference_cells(obs, cnv["reference"], reference_conditions)
    try:
        adata, depth = read_lesion_counts(
            h5ad, parsed, reference=None if known is None else known.to_numpy(), depth_genes=depth_genes, obs=obs
        )
    except InputError as err:
        if err.where != "read_lesion_counts(depth_genes=...)":
            raise
        raise InputError(err.detail, where="cnv.depth") from err
    t_read, c_read = time.perf_counter() - t0, time.process_time() - c0
    log.info(
        "read %s: %d cells, %d lesion genes kept, %d stored nonzeros of them",
        h5ad,
        adata.n_obs,
        adata.n_vars,
        adata.X.nnz,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    options = {**_call_options(cnv, seed, depth), "depth_genes": depth_genes}  # on record in uns params
    # the first read's counts per block of the genome: only a reference chosen after it needs them
    blocks = adata.obsm.pop(DEPTH_BLOCKS_KEY, None)
    reference, choice = choose_reference(adata, parsed, cnv, reference_conditions, options)
    if known is None:
        # chosen after the depth was read: each sample's depth is scaled to it now, as a configured
        # reference's is while reading (one more pass over the counts, counted as reading below; the
        # median baseline's block counts are the first read's)
        t1, c1 = time.perf_counter(), time.process_time()
        options["depth"] = scale_read_depth(
            h5ad, parsed, depth, reference, depth_genes=depth_genes, obs=adata.obs, block_counts=blocks
        )
        t_pass, c_pass = time.perf_counter() - t1, time.process_time() - c1
        log.info("depth scaled to the automatic reference: one more pass over %s, %.1f s", h5ad, t_pass)
        t0, c0 = t0 + t_pass, c0 + c_pass
        t_read, c_read = t_read + t_pass, c_read + c_pass
    log.info("%d cells, %d reference cells; lesions %s", adata.n_obs, int(reference.sum()), [l.name for l in parsed])
    call_lesions(adata, parsed, reference=reference, posterior_cutoff=cnv["posterior_cutoff"], **options)
    adata.obs["cnv_reference"] = reference
    if alleles:
        _add_alleles(adata, parsed, alleles, allele_options or {}, out_phase, read_var(h5ad), seed)
    t_call, c_call = time.perf_counter() - t0, time.process_time() - c0
    # benchmarks/scale.py parses this line (issue 8: lesion calling within 3x of reading its input);
    # wall time, and CPU time too since wall time stretches on a shared machine
    log.info("read X: %.1f s; lesion calling: %.1f s", t_read, t_call)
    log.info("CPU time: read X %.1f s; lesion calling %.1f s", c_read, c_call)
    _write_cells(adata, parsed, reference, out_cells)
    _write_summaries(adata, parsed, out_samples, out_intervals)
    if choice is None:
        choice = _configured_choice(adata.obs, reference, cnv["batch_key"])
    choice.to_csv(out_reference, sep="\t", index=False, float_format="%.6g")
    t0 = time.perf_counter()
    write_calls(adata, out_calls)
    log.info("wrote %s: %.1f s", out_calls, time.perf_counter() - t0)


def _add_alleles(
    adata: ad.AnnData,
    lesions: list[Lesion],
    paths: Sequence[PathLike],
    options: Mapping,
    out_phase: PathLike | None,
    genes: pd.DataFrame,
    seed: int,
) -> None:
    """Phase each patient's sites, add each cell's allele LLR to its posterior and write the
    phased sites (one table, all lesions: ``lesion`` column first)."""
    parts = [ad.read_h5ad(path) for path in paths]
    log.info("allele counts of %d samples: %s", len(parts), ", ".join(str(p) for p in paths))
    given = read_phased_sites(options["phased_sites"]) if options.get("phased_sites") else None
    add_allele_evidence(
        adata,
        concat_alleles(parts),
        lesions,
        eps=float(options.get("error_rate", 0.02)),
        max_gene_llr=float(options.get("max_gene_llr", 3.0)),
        phase=given,
        genes=genes,  # every gene's position: the control region's sites need theirs too
        seed=seed,
    )
    tables = [adata.uns["lesions"][x.name]["phase"].assign(lesion=x.name) for x in lesions]
    table = pd.concat(tables, ignore_index=True)
    table = table[["lesion"] + [c for c in table.columns if c != "lesion"]]
    if out_phase is not None:
        table.to_csv(out_phase, sep="\t", index=False, float_format="%.6g")
    for lesion in lesions:
        name, obs = lesion.name, adata.obs
        cutoff = adata.uns["lesions"][name]["params"]["posterior_cutoff"]
        log.info(
            "%s with alleles: %d cells called (%d from expression alone); %d cells with allele reads",
            name,
            int(obs[f"{name}_call"].sum()),
            int((obs[f"{name}_expression_posterior"] >= cutoff).sum()),
            int((obs[f"{name}_allele_reads"] > 0).sum()),
        )


def read_phased_sites(path: PathLike) -> pd.DataFrame:
    """A user's phasing (config ``alleles.phased_sites``): a TSV with columns ``patient``, ``site_id``,
    ``lesion``, ``allele`` (``REF`` or ``ALT``: the allele on the haplotype the lesion changes)."""
    try:
        table = pd.read_csv(path, sep="\t", dtype=str)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read it as a TSV ({err}).", path=str(path), where="alleles.phased_sites") from err
    need = {"patient", "site_id", "lesion", "allele"}
    if not need <= set(table.columns):
        raise InputError(
            f"needs columns {sorted(need)}; it has {list(table.columns)}.", path=str(path), where="alleles.phased_sites"
        )
    bad = ~table["allele"].isin(["REF", "ALT"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise InputError(
            f"row {row}: allele {table['allele'].iloc[row - 2]!r} must be REF or ALT (the allele on the changed "
            "haplotype).",
            path=str(path),
            where="alleles.phased_sites",
        )
    return table


def depth_options(depth: Mapping) -> DepthGenes:
    """The genes left out of each cell's depth, from the ``cnv.depth`` config."""
    genes = ()
    if depth.get("exclude_genes_file"):
        try:
            genes = read_gene_list(depth["exclude_genes_file"])
        except InputError as err:
            raise InputError(err.detail, path=err.path, where="cnv.depth.exclude_genes_file") from err
        log.info("%d genes left out of the depth from %s", len(genes), depth["exclude_genes_file"])
    return DepthGenes(
        exclude_families=tuple(depth["exclude_families"]),
        exclude_patterns=tuple(depth["exclude_patterns"]),
        exclude_genes=genes,
        trim_top_fraction=float(depth["trim_top_fraction"]),
        scale_to_reference=bool(depth["scale_to_reference"]),
        baseline=str(depth["baseline"]),
    )


def _call_options(cnv: Mapping, seed: int, depth: np.ndarray) -> dict:
    """The keyword arguments of call_lesions and find_reference from the ``cnv`` config, for the
    lesions' genes read with their depth (``layer=None``: the counts are that AnnData's ``X``)."""
    keys = ("batch_key", "n_folds", "min_mean", "shrinkage", "min_state_reference", "outlier_fraction")
    keys += ("unmatched_level_sd",)
    keys += ("unmatched_gene_spread",)
    keys += ("min_batch_reference", "refine", "clone_prior")
    keys += ("min_refine_cells", "min_interval_genes", "refine_max_reference", "patient_levels", "fit_copy_ratio")
    keys += ("cluster_null",)
    # null: one prior per sample (no pull from groups: an infinite strength)
    prior = {"prior_key": cnv["prior_key"] or "sample", "prior_strength": cnv["prior_strength"]}
    if cnv["prior_key"] is None:
        prior["prior_strength"] = np.inf
    return {**{key: cnv[key] for key in keys}, **prior, "seed": seed, "layer": None, "depth": depth}


def choose_reference(
    adata: ad.AnnData, lesions: list[Lesion], cnv: Mapping, reference_conditions: Sequence[str], options: dict
) -> tuple[np.ndarray, pd.DataFrame | None]:
    """The boolean (n_obs,) reference cells ``cnv.reference`` asks for, and for ``auto`` the report
    of :func:`remnant.tl.reference.find_reference` (``mode`` column first; ``None`` otherwise)."""
    if cnv["reference"] != "auto":
        return reference_cells(adata.obs, cnv["reference"], reference_conditions).to_numpy(), None
    auto = cnv["auto_reference"]
    candidates = (
        None
        if auto["candidates"] is None
        else reference_cells(
            adata.obs, auto["candidates"], reference_conditions, key="cnv.auto_reference.candidates"
        ).to_numpy()
    )
    log.info(
        "automatic reference: choosing among %d candidate cells",
        adata.n_obs if candidates is None else int(candidates.sum()),
    )
    try:
        reference, choice = find_reference(
            adata,
            lesions,
            candidates=candidates,
            max_carrier_probability=auto["max_carrier_probability"],
            min_cells=auto["min_cells"],
            rescore_rounds=auto["rescore_rounds"],
            **options,
        )
    except InputError as err:
        if err.where not in _AUTO_REFERENCE_WHERE:
            raise
        raise InputError(err.detail, path=err.path, where=_AUTO_REFERENCE_WHERE[err.where]) from err
    choice.insert(0, "mode", "auto")
    _log_choice(choice)
    return reference, choice


def _log_choice(choice: pd.DataFrame) -> None:
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
        if row["cycle"] > 0:
            log.info(
                "automatic reference, %s, batch %s: the choice alternated between %d selections; the cells "
                "common to them were kept",
                row["lesion"],
                row["batch"],
                row["cycle"],
            )
        if not row["confident"]:
            log.warning(
                "automatic reference NOT confident for %s, batch %s: %s. Configure cnv.reference "
                "(healthy donors or a cleared population) if you can.",
                row["lesion"],
                row["batch"],
                row["reason"],
            )


def _write_cells(adata: ad.AnnData, lesions: list[Lesion], reference: np.ndarray, path: PathLike) -> None:
    """lesion_calls.tsv.gz: one row per cell (index ``cell``), sheet columns, ``clone_posterior``
    (with two or more lesions and ``cnv.clone_prior``), each lesion's calls and ``reference``."""
    columns = list(_CELL_COLUMNS) + ([CLONE_KEY] if CLONE_KEY in adata.obs else [])
    for lesion in lesions:
        columns += [f"{lesion.name}_{k}" for k in ("posterior", "llr", "call", "n_genes")]
        # with allele data: the expression posterior beside the joint one, and the allele evidence
        extra = [f"{lesion.name}_{k}" for k in ("expression_posterior", "allele_llr", "allele_reads", "allele_genes")]
        columns += [c for c in extra if c in adata.obs]
    table = adata.obs[columns].copy()
    table["reference"] = reference
    write_cell_table(table, path)


def _write_summaries(adata: ad.AnnData, lesions: list[Lesion], samples: PathLike, intervals: PathLike) -> None:
    """The per-sample summary and per-patient intervals of every lesion (one TSV each); logs each
    batch's scoring."""
    summaries, rows = [], []
    for lesion in lesions:
        info = adata.uns["lesions"][lesion.name]
        summary = info["per_sample"].reset_index().assign(lesion=lesion.name, genes_used=len(info["genes"]))
        summary["reference_note"] = _sample_notes(summary, info.get("reference_notes"), adata.obs, info["params"])
        summaries.append(summary)
        rows.append(
            info["intervals"].assign(lesion=lesion.name, configured_start=lesion.start, configured_end=lesion.end)
        )
        _log_batches(lesion.name, info["batches"])
        log.info("%s: reference FPR %.4f", lesion.name, info["reference_fpr"])
    pd.concat(summaries, ignore_index=True).to_csv(samples, sep="\t", index=False, float_format="%.6g")
    pd.concat(rows, ignore_index=True).to_csv(intervals, sep="\t", index=False, float_format="%.6g")


#: What a reference note's kind (remnant.tl.lesions) asks of the config, appended to the note.
_NOTE_HINTS = {
    "cell_folds": "The reference cells are cnv.reference; each cell's donor is the sheet's patient column.",
    "states_without_reference": "The reference cells are cnv.reference (or cnv.reference: auto).",
    "unmatched_batch": "The reference cells are cnv.reference; cnv.min_batch_reference sets how many a batch needs.",
}


def _sample_notes(summary: pd.DataFrame, notes: pd.DataFrame | None, obs: pd.DataFrame, params: Mapping) -> list[str]:
    """Each summary row's reference notes (those of its batch, with the config key to change) as
    one string (``NOTE_SEPARATOR`` between notes), for the ``reference_note`` column of
    lesion_summary.tsv; a note on states without
    reference cells only where the sample has cells of those states."""
    if notes is None or notes.empty:
        return [""] * len(summary)
    states = obs[params["state_key"]].astype(str).groupby(obs[params["sample_key"]].astype(str)).agg(set)
    out = []
    for sample, batch in zip(summary["sample"].astype(str), summary["batch"].astype(str), strict=True):
        texts = []
        for _, note in notes[notes["batch"] == batch].iterrows():
            lacking = set(note["detail"].split(", "))
            if note["kind"] == "states_without_reference" and not lacking & states.get(sample, set()):
                continue
            texts.append(f"{note['note']} {_NOTE_HINTS.get(note['kind'], '')}".strip())
        out.append(NOTE_SEPARATOR.join(texts))
    return out


def _log_batches(name: str, batches: pd.DataFrame) -> None:
    for batch, b in batches.iterrows():
        log.info(
            "%s, batch %s: %d cells, %d reference cells (%s), %d genes, temperature %.3f, count scale %.2f",
            name,
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
                name,
                batch,
            )


def _configured_choice(obs: pd.DataFrame, reference: np.ndarray, batch_key: str | None) -> pd.DataFrame:
    """The reference report of a configured reference: how many cells, of which batches."""
    choice = (
        obs.assign(reference=reference)
        .groupby(batch_key or (lambda _: "all"), observed=True)["reference"]
        .agg(n_candidates="size", n_chosen="sum")
        .reset_index(names="batch")
    )
    choice.insert(0, "mode", "configured")
    return choice


def annotate_cohort(h5ad: PathLike, calls: PathLike, out_h5ad: PathLike, *, target_sum: float) -> None:
    """Rule annotate_cohort: the cohort file users open (clustered.h5ad ``h5ad`` + the obs/uns of
    the calls ``calls``, scverse-shaped; :func:`remnant.io.store.annotate_with_calls`)."""
    t0 = time.perf_counter()
    annotate_with_calls(h5ad, calls, out_h5ad, target_sum=target_sum)
    log.info(
        "wrote %s (%s with the calls of %s; X log-normalised, raw counts in layers/counts, gene symbols as var_names): %.1f s",
        out_h5ad,
        h5ad,
        calls,
        time.perf_counter() - t0,
    )
