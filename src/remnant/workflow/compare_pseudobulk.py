"""Step compare_pseudobulk: paired pseudobulk DE (PyDESeq2) of carrier stem cells after vs before
treatment, the signatures' enrichment in its ranking, volcano.

:func:`write_pseudobulk_de` is the step (scripts/compare_pseudobulk.py hands it the rule's paths and
params); :func:`run_paired_de` sums the chosen cells' counts in the cohort file block by block
(:func:`remnant.tl.de.pseudobulk`), tests (:func:`remnant.tl.de.paired_de`) and says of every
pseudobulk whether it was used and why not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from remnant.tl.de import DE_COLUMNS, paired_de, pseudobulk, signature_enrichment
from remnant.workflow.design import not_this_design

log = logging.getLogger(__name__)

__all__ = ["SAMPLE_COLUMNS", "de_not_made", "run_paired_de", "write_pseudobulk_de"]

#: Columns of :func:`run_paired_de`'s pseudobulk table.
SAMPLE_COLUMNS = ["patient", "timepoint", "n_cells", "used", "reason"]


def write_pseudobulk_de(
    h5ad: str,
    *,
    gates: str | None,
    gene_set_dir: str | Path,
    pseudobulk: Mapping,
    set_names: Sequence[str],
    persistence: Mapping,
    lesion: str,
    reference_conditions: Sequence[str],
    threads: int,
    samples: str,
    de: str,
    enrichment: str,
    volcano: str,
) -> None:
    """The step: carrier stem cells summed per patient x timepoint, tested after vs before; tables and volcano.

    Parameters
    ----------
    h5ad, gates
        The cohort file (its counts are summed block by block) and rule gate_cells' per-cell table
        (``population_key`` other than ``population``; else None).
    gene_set_dir, set_names
        Directory of the gene sets and the sets tested for enrichment.
    pseudobulk, persistence
        The config's ``pseudobulk`` and ``persistence`` blocks.
    lesion, reference_conditions
        The lesion analysed and the healthy donors' conditions.
    threads
        Processes for PyDESeq2.
    samples, de, enrichment, volcano
        Output paths: pseudobulk table, DE table, enrichment table (TSV) and volcano (PNG).
    """
    from remnant.pl.persistence import plot_volcano
    from remnant.tl.signatures import read_signatures

    b, p = pseudobulk, persistence
    sets = read_signatures(set_names, gene_set_dir)
    # carrier stem cells after vs before: a cohort without that design (a design key null) gets the
    # tables without rows and a figure that says why
    null = [k for k in ("stem", "before", "after") if p[k] is None]
    if null:
        design = " ".join(
            d for d, keys in (("stem-cell", {"stem"}), ("before/after", {"before", "after"})) if keys & set(null)
        )
        reason = not_this_design(null, design)
        log.info("no pseudobulk DE: %s", reason)
        sample_table, de_table, enrichment_table = de_not_made(reason, sets)
        title = f"{lesion} {p['stem'] or 'stem'} cells after vs before treatment: pseudobulk DE"
    else:
        sample_table, de_table, enrichment_table = _carrier_stem_de(
            h5ad, gates, sets, b, p, lesion, reference_conditions, threads
        )
        reason = f"{de_table.attrs.get('n_pairs', 0)} patient(s) with both pseudobulks (2 needed)"
        title = f"{lesion} {p['stem']} cells, {p['after']} vs {p['before']}: pseudobulk DE" + (
            f" ({de_table.attrs['n_pairs']} patients, paired)" if not de_table.empty else ""
        )
    sample_table.to_csv(samples, sep="\t", index=False)
    de_table.to_csv(de, sep="\t", index=False, float_format="%.6g")
    enrichment_table.to_csv(enrichment, sep="\t", index=False, float_format="%.6g")
    plot_volcano(de_table, volcano, padj=b["padj"], title=title, empty=f"no test: {reason}" if de_table.empty else "")


def _carrier_stem_de(
    h5ad: str,
    gates: str | None,
    sets: Mapping,
    b: Mapping,
    p: Mapping,
    lesion: str,
    reference_conditions: Sequence[str],
    threads: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`run_paired_de` of the stem cells called carriers, ``after`` vs ``before``, with its log lines."""
    from remnant.workflow.analysed_cells import read_analysed_cells

    # the cohort is never read whole (issue 8): its cell table here, its counts summed block by block
    obs, cells, summary, counts_key = read_analysed_cells(
        h5ad, reference_conditions=reference_conditions, population_key=p["population_key"], gates_path=gates
    )
    chosen = ((cells["population"] == str(p["stem"])) & cells[f"{lesion}_call"].astype(bool)).to_numpy()
    log.info("%d %s cells called %s summed per patient x timepoint", int(chosen.sum()), p["stem"], lesion)
    # the file's rows: the chosen cells with their analysed labels (prepare_cells keeps the file's order)
    mask = obs.index.isin(cells.index[chosen])
    table = cells.loc[chosen, ["patient", "timepoint"]].reindex(obs.index)
    del obs
    samples, de, enrichment = run_paired_de(
        h5ad,
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
        n_cpus=threads,
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
        log.warning("no DE test: %s", f"{de.attrs.get('n_pairs', 0)} patient(s) with both pseudobulks (2 needed)")
    else:
        log.info(
            "%d genes tested over %d patients; %d at padj < %g",
            len(de),
            de.attrs["n_pairs"],
            int((de["padj"] < b["padj"]).sum()),
            b["padj"],
        )
    return samples, de, enrichment


def run_paired_de(
    adata,
    *,
    mask,
    obs: pd.DataFrame | None = None,
    key: str | None = None,
    signatures: Mapping[str, pd.Series | Sequence[str]] | None = None,
    condition: str = "timepoint",
    level: str = "remission",
    reference: str = "diagnosis",
    pair: str = "patient",
    min_cells: int = 10,
    min_total_count: int = 10,
    min_count: int = 10,
    padj: float = 0.1,
    n_cpus: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pseudobulks of the selected cells, paired DE of ``level`` vs ``reference``, and signature enrichment.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layers["counts"]`` (or ``X``; see
        :func:`remnant.tl.de.pseudobulk`), or the path of a cohort h5ad with raw counts in ``key``
        (summed block by block).
    mask
        Boolean (n_obs,): the cells summed (e.g. del(5q)-called stem cells).
    obs, key
        For a path: the file's cell table in its order (default: read from it) and the counts
        matrix (``None``: ``"layers/counts"`` when the file has it, else ``"X"`` when it holds counts).
    padj
        FDR of PyDESeq2's independent filtering (and the volcano's threshold).

    Returns
    -------
    (samples, de, enrichment)
        ``samples``: one row per patient x ``condition`` with selected cells: ``n_cells``,
        ``used`` and ``reason`` (why a pseudobulk is not in the test: under ``min_cells``, a
        timepoint not compared, its patient lacks the other level). ``de``:
        :func:`remnant.tl.de.paired_de` (``attrs["n_pairs"]``; empty with its columns when fewer
        than two patients have both pseudobulks). ``enrichment``:
        :func:`remnant.tl.de.signature_enrichment` of ``signatures`` in the Wald ranking, with
        ``note`` when there was no test.
    """
    pb = pseudobulk(adata, groupby=(pair, condition), mask=mask, obs=obs, key=key, min_cells=min_cells)
    samples = _pseudobulk_samples(pb, pair, condition, level=str(level), reference=str(reference), min_cells=min_cells)
    de = paired_de(
        pb,
        condition=condition,
        level=str(level),
        reference=str(reference),
        pair=pair,
        min_total_count=min_total_count,
        min_count=min_count,
        alpha=padj,
        n_cpus=n_cpus,
    )
    if de.empty and samples["used"].sum() >= 4:
        samples.loc[samples["used"], "reason"] = "fewer than 2 genes pass pseudobulk.min_total_count and min_count"
        samples["used"] = False
    enrichment = signature_enrichment(de, signatures or {})
    enrichment["note"] = (
        "" if not de.empty else f"no DE test: {de.attrs.get('n_pairs', 0)} patient(s) with both pseudobulks (2 needed)"
    )
    samples = samples.sort_values([pair, condition], kind="stable").reset_index(drop=True)
    return samples, de, enrichment


def _pseudobulk_samples(pb, pair: str, condition: str, *, level: str, reference: str, min_cells: int) -> pd.DataFrame:
    """Every pseudobulk (kept or dropped for too few cells) with ``used`` and the ``reason`` it is not."""
    kept = pb.obs[[pair, condition, "n_cells"]].assign(used=False, reason="")
    dropped = pb.uns["pseudobulk"]["dropped"]
    if len(dropped):
        dropped = dropped.assign(used=False, reason=f"fewer than {min_cells} cells (pseudobulk.min_cells)")
    samples = pd.concat([kept, dropped], ignore_index=True) if len(dropped) else kept.reset_index(drop=True)
    samples = samples.astype({pair: str, condition: str})
    compared = samples[condition].isin([level, reference])
    samples.loc[~compared, "reason"] = f"{condition} not compared ({level} vs {reference})"
    ok = compared & (samples["reason"] == "")
    levels_per_patient = samples[ok].groupby(pair)[condition].agg(set)
    for i in samples.index[ok]:
        other = reference if samples.at[i, condition] == level else level
        if other not in levels_per_patient.get(samples.at[i, pair], set()):
            samples.at[i, "reason"] = f"patient has no {other} pseudobulk to pair with"
    samples["used"] = samples["reason"] == ""
    return samples


def de_not_made(
    reason: str,
    signatures: Mapping[str, pd.Series | Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tables of :func:`run_paired_de` for a cohort without the design it needs (no stem-cell
    population or no before/after timepoints named): no pseudobulk, no test.

    Returns
    -------
    (samples, de, enrichment)
        ``samples`` with :data:`SAMPLE_COLUMNS` and no row, ``de`` with
        :data:`remnant.tl.de.DE_COLUMNS` and no row (``attrs["n_pairs"] = 0``), ``enrichment``:
        one row per signature without statistics, ``note`` = ``reason``.
    """
    de = pd.DataFrame(columns=DE_COLUMNS)
    de.attrs["n_pairs"] = 0
    enrichment = signature_enrichment(de, signatures or {})
    enrichment["note"] = f"no DE test: {reason}"
    return pd.DataFrame(columns=SAMPLE_COLUMNS), de, enrichment
