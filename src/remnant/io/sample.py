"""One row of the sample sheet: its count matrix read, mapped to the genome annotation and checked,
its index-sort table joined, and its sheet columns put on every cell."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.io._common import is_blank
from remnant.io.annotation import chromosome_rank
from remnant.io.counts import MAPPING_HINT, map_genes, read_counts
from remnant.io.index_sort import read_index_sort

logger = logging.getLogger(__name__)

_OBS_FIELDS = ("sample", "patient", "timepoint", "population", "condition", "technology")

#: Below this fraction of mapped features (and above ``min_mapped_fraction``) a sample is read with a warning.
WARN_MAPPED_FRACTION = 0.9

#: A sample whose mapped counts lie more than this share on one chromosome is refused (:func:`check_chromosomes`).
MAX_CHROMOSOME_SHARE = 0.9
#: A sample must have genes on at least this fraction of the annotation's nuclear chromosomes.
MIN_CHROMOSOME_FRACTION = 0.5
#: Chromosomes of the annotation holding at least this share of its genes are those a matrix should cover.
MIN_GENES_SHARE = 0.002
_MITO = ("chrM", "chrMT", "MT", "M")


@dataclass(frozen=True)
class ReadHints:
    """How :func:`read_sample`'s messages name the settings behind its ``genes`` and ``build``.

    The defaults speak of the arguments; a caller that takes them from its own settings (the
    workflow: its config keys) passes its names, so that a message says what to change.

    Attributes
    ----------
    build
        The annotation's genome build, as in "... but {build} is GRCh38".
    annotation
        Where another annotation is chosen, as in "use an annotation of that build ({annotation})";
        empty: no parenthesis.
    check_annotation
        The last sentence of the warning when many features do not map.
    mapping
        The last sentence of :func:`remnant.io.counts.map_genes`' error (its ``hint``).
    """

    build: str = "the annotation's build"
    annotation: str = ""
    check_annotation: str = "Check the gene annotation"
    mapping: str = MAPPING_HINT


def read_sample(
    row: Mapping[str, str],
    genes: pd.DataFrame,
    *,
    min_mapped_fraction: float = 0.5,
    sheet: str = "samples.tsv",
    markers: list[str] | None = None,
    base_dir: str | PathLike | None = None,
    build: str | None = None,
    hints: ReadHints = ReadHints(),  # noqa: B008 (frozen, so one shared default is safe)
) -> tuple[anndata.AnnData, dict]:
    """Read, map and annotate one sample-sheet row.

    Parameters
    ----------
    row
        Sample-sheet row with keys ``sample, patient, timepoint, population, condition, counts,
        format, index_sort, technology``; ``format`` and ``index_sort`` may be empty/NA.
    genes
        Annotation (:func:`remnant.io.annotation.load_genes`).
    min_mapped_fraction
        Passed to :func:`remnant.io.counts.map_genes`.
    sheet
        Sample-sheet name used in messages.
    markers
        Index-sort markers that must be present (see :func:`remnant.io.index_sort.read_index_sort`);
        ``None`` keeps all numeric columns.
    base_dir
        Directory that relative ``counts`` / ``index_sort`` paths are relative to (default: the
        working directory).
    build
        Genome build of the annotation; a 10x matrix whose features name another reference genome
        (``hg19`` for GRCh38) gets a warning.
    hints
        How messages name the settings behind ``genes`` and ``build`` (:class:`ReadHints`).

    Returns
    -------
    (anndata.AnnData, dict)
        Cells x genes (genome order). ``obs_names`` ``"{sample}:{barcode}"``; ``obs`` columns
        ``barcode`` (str), ``sample, patient, timepoint, population, condition, technology``
        (categorical), ``facs_<MARKER>`` (float; NaN for cells not in the index-sort table).
        ``uns["remnant"]["read"]`` holds the stats dict (also returned): mapping stats plus
        ``path``, ``format``, ``n_cells``, ``warnings`` (list of str) and, with an index-sort
        table, ``index_sort`` (path, ``n_rows``, ``n_matched``, ``n_unmatched``).

    Warnings (logged and listed in ``warnings``; the sample is read): a 10x reference genome other
    than ``build``; fewer than :data:`WARN_MAPPED_FRACTION` of the features mapped (above
    ``min_mapped_fraction``); index-sort rows without a cell in the matrix.

    Raises
    ------
    InputError
        Any problem with the files; the message names the sample (sheet row) and the file.
    """
    sample = "" if is_blank(row.get("sample")) else str(row.get("sample")).strip()
    where = f"{sheet}, sample {sample!r}" if sample else f"{sheet}, row without a sample id"
    if not sample:
        raise InputError("the `sample` column is empty; every row needs a unique sample id.", where=where)
    if is_blank(row.get("counts")):
        raise InputError("the `counts` column is empty; give the path of the count matrix.", where=where)
    base = Path(base_dir) if base_dir is not None else None

    def resolve(p) -> Path:
        p = Path(str(p).strip())
        return base / p if base is not None and not p.is_absolute() else p

    counts_path = resolve(row["counts"])
    fmt = None if is_blank(row.get("format")) else str(row.get("format")).strip()
    mapped, stats = _read_mapped(counts_path, fmt, genes, min_mapped_fraction, hints.mapping, where)
    for msg in _mapping_warnings(stats, counts_path, build, hints):
        stats["warnings"].append(msg)
        logger.warning("%s: %s", where, msg)
    barcodes = mapped.obs_names.astype(str)
    obs = _sheet_columns(row, sample, barcodes)
    if not is_blank(row.get("index_sort")):
        facs_path = resolve(row["index_sort"])
        stats["index_sort"] = _join_index_sort(obs, facs_path, barcodes, markers, counts_path, where, stats)

    mapped.obs = obs
    mapped.uns = {"remnant": {"read": stats}}
    logger.info(
        "sample %s: %d cells x %d genes from %s (%s), %.1f%% of features mapped",
        sample,
        mapped.n_obs,
        mapped.n_vars,
        counts_path,
        stats["format"],
        100 * stats["fraction_mapped"],
    )
    return mapped, stats


def _read_mapped(
    counts_path: Path, fmt: str | None, genes: pd.DataFrame, min_mapped_fraction: float, hint: str, where: str
) -> tuple[anndata.AnnData, dict]:
    """The count matrix read, mapped and checked for chromosomes, and the stats so far (``warnings`` empty)."""
    try:
        adata = read_counts(counts_path, fmt, gene_symbols=genes["gene_name"])
        read_info = dict(adata.uns.get("remnant", {}).get("read", {}))
        mapped, stats = map_genes(
            adata, genes, min_mapped_fraction=min_mapped_fraction, source=str(counts_path), hint=hint
        )
        stats["chromosome_share"] = check_chromosomes(mapped, genes, source=str(counts_path))
    except InputError as exc:
        raise _with_sample(exc, where) from exc
    stats = {**read_info, **stats, "n_cells": int(mapped.n_obs), "warnings": []}
    stats["format"] = read_info.get("format", fmt or "")
    return mapped, stats


def _mapping_warnings(stats: dict, counts_path: Path, build: str | None, hints: ReadHints) -> list[str]:
    """Warnings on the genes: a 10x reference of another build; many features unmapped."""
    out = []
    other_builds = [g for g in stats.get("genome", []) if build and not same_build(g, build)]
    if other_builds:
        choices = f" ({hints.annotation})" if hints.annotation else ""
        out.append(
            f"{counts_path} was quantified against reference genome {other_builds} (10x features' genome) but "
            f"{hints.build} is {build}: genes are matched by identifier and placed at their {build} positions; "
            f"use an annotation of that build{choices} if that is not what you want"
        )
    if stats["fraction_mapped"] < WARN_MAPPED_FRACTION:
        out.append(
            f"only {100 * stats['fraction_mapped']:.1f}% of the {stats['n_features']} features of {counts_path} map to "
            f"the annotation (e.g. unmapped {stats['unmapped_examples'][:3]}); the rest are left out. Counts from "
            f"another genome build or annotation release? {hints.check_annotation}"
        )
    return out


def _sheet_columns(row: Mapping[str, str], sample: str, barcodes: pd.Index) -> pd.DataFrame:
    """``obs``: ``"{sample}:{barcode}"`` names, ``barcode`` and the sheet's columns (categorical)."""
    obs = pd.DataFrame(index=pd.Index([f"{sample}:{b}" for b in barcodes]))
    obs["barcode"] = barcodes.to_numpy()
    for field in _OBS_FIELDS:
        value = "" if is_blank(row.get(field)) else str(row.get(field)).strip()
        obs[field] = pd.Categorical([value] * len(obs))
    return obs


def _join_index_sort(
    obs: pd.DataFrame,
    facs_path: Path,
    barcodes: pd.Index,
    markers: list[str] | None,
    counts_path: Path,
    where: str,
    stats: dict,
) -> dict:
    """Add ``facs_<MARKER>`` columns to ``obs`` (in place; NaN for cells not sorted) and return the
    join's stats; warns (into ``stats["warnings"]``) about sorted wells without a cell."""
    try:
        facs = read_index_sort(facs_path, markers=markers)
    except InputError as exc:
        raise _with_sample(exc, where) from exc
    in_matrix = facs.index.isin(barcodes)
    n_matched = int(in_matrix.sum())
    if n_matched == 0:
        raise InputError(
            f"none of the {len(facs)} barcodes of the index-sort table {facs_path} (e.g. "
            f"{list(facs.index[:3])}) occurs in the count matrix {counts_path} (e.g. "
            f"{list(barcodes[:3])}); both must name cells the same way (e.g. well IDs A01…).",
            path=facs_path,
            where=where,
        )
    n_unmatched = int((~in_matrix).sum())
    if n_unmatched:
        msg = (
            f"{n_unmatched} of {len(facs)} index-sort barcodes are not in the count matrix "
            f"(e.g. {list(facs.index[~in_matrix][:3])}); they are ignored (cells failing sequencing?)"
        )
        stats["warnings"].append(msg)
        logger.warning("%s: %s", where, msg)
    joined = facs.reindex(barcodes)
    for col in facs.columns:
        obs[f"facs_{col}"] = joined[col].to_numpy(dtype=np.float64)
    return {
        "path": str(facs_path),
        "n_rows": int(len(facs)),
        "n_matched": n_matched,
        "n_unmatched": n_unmatched,
        "markers": [str(c) for c in facs.columns],
    }


def _chromosome_label(chromosome: str) -> str:
    return chromosome[3:] if chromosome.startswith("chr") else chromosome


def check_chromosomes(mapped: anndata.AnnData, genes: pd.DataFrame, *, source: str = "") -> dict[str, float]:
    """Share of a sample's mapped counts per chromosome; refuse a matrix that covers only a few.

    A matrix subset to some chromosomes (a chr1-only test export, a filtered table) cannot be read
    for copy number: its cells would have zeros for every gene of the other chromosomes once the
    cohort is merged (genes a sample lacks count as zero), which is indistinguishable from a loss
    of them, and the lesion calls and genome-wide profile would call its cells carriers; its low
    counts would also fail QC with a message that never names the cause. So this is an error, not
    a warning.

    Parameters
    ----------
    mapped
        Cells x genes from :func:`map_genes` (``var["chromosome"]``).
    genes
        The annotation; its nuclear chromosomes (all but the mitochondrial one) are the ones a
        genome-wide matrix covers.
    source
        File name for messages.

    Returns
    -------
    dict
        Chromosome -> share of the sample's nuclear counts (genome order; chromosomes with genes).

    Raises
    ------
    InputError
        Genes on fewer than :data:`MIN_CHROMOSOME_FRACTION` of the annotation's nuclear
        chromosomes, or more than :data:`MAX_CHROMOSOME_SHARE` of the nuclear counts on one
        chromosome (names the chromosomes).
    """
    chromosomes = mapped.var["chromosome"].astype(str).to_numpy()
    totals = pd.Series(np.asarray(mapped.X.sum(axis=0, dtype=np.float64)).ravel(), index=chromosomes)
    nuclear = ~np.isin(chromosomes, _MITO)
    by_chromosome = totals[nuclear].groupby(level=0, sort=False).sum()
    by_chromosome = by_chromosome.iloc[np.argsort(chromosome_rank(pd.Series(by_chromosome.index)), kind="stable")]
    total = float(by_chromosome.sum())
    share = (by_chromosome / total) if total > 0 else by_chromosome * 0.0
    # the annotation's nuclear chromosomes; unplaced scaffolds of a GTF (a few genes each) are no chromosome to cover
    per_chromosome = genes["chromosome"].astype(str).value_counts()
    annotated = sorted(set(per_chromosome.index[per_chromosome >= MIN_GENES_SHARE * len(genes)]) - set(_MITO))
    needed = int(math.ceil(MIN_CHROMOSOME_FRACTION * len(annotated)))
    present = sorted(set(chromosomes), key=lambda c: (int(chromosome_rank([c])[0]), c))
    labels = ", ".join(_chromosome_label(c) for c in present)
    hint = (
        "remnant reads copy number against the whole genome, and genes a sample lacks would count as zeros (read as "
        "losses); give the full matrix (all genes, as CellRanger or the plate pipeline wrote it)."
    )
    if len(by_chromosome) < needed:
        raise InputError(
            f"genes from chromosome(s) {labels} only: was the matrix subset or filtered? Its {mapped.n_vars} mapped genes lie "
            f"on {len(by_chromosome)} of the annotation's {len(annotated)} nuclear chromosomes (at least {needed} expected); {hint}",
            path=source or None,
        )
    if total > 0 and share.max() > MAX_CHROMOSOME_SHARE:
        top = str(share.idxmax())
        spread = f"chromosome(s) {labels}" if len(present) <= 6 else f"{len(present)} chromosomes"
        raise InputError(
            f"{100 * share.max():.1f}% of the mapped counts are on chromosome {_chromosome_label(top)} (genes from {spread}): "
            "was the matrix subset or filtered? A genome-wide matrix spreads its counts over every chromosome (chr1, the "
            "largest, holds about 10%); give the full matrix (all genes, as CellRanger or the plate pipeline wrote it).",
            path=source or None,
        )
    return {str(k): float(v) for k, v in share.items()}


_BUILD_ALIASES = {
    "grch38": "GRCh38",
    "hg38": "GRCh38",
    "grch37": "GRCh37",
    "hg19": "GRCh37",
    "b37": "GRCh37",
    "grcm38": "GRCm38",
    "mm10": "GRCm38",
    "grcm39": "GRCm39",
    "mm39": "GRCm39",
}


def same_build(genome: str, build: str) -> bool:
    """Whether a reference name (``GRCh38-2020-A``, ``refdata-gex-GRCh38``, ``hg19``) is ``build``.

    Names that mention no known build (a custom reference) count as the same: nothing to warn about.
    """

    def canonical(name: str) -> str | None:
        found = {v for k, v in _BUILD_ALIASES.items() if re.search(rf"(?<![a-z0-9]){k}(?![0-9])", name.lower())}
        return found.pop() if len(found) == 1 else None

    a, b = canonical(genome), canonical(build)
    return a is None or b is None or a == b


def _with_sample(exc: InputError, where: str) -> InputError:
    inner = f"{where}; {exc.where}" if exc.where else where
    return InputError(exc.detail, path=exc.path, where=inner)
