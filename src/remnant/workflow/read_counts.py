"""Rule read_counts: one sample-sheet row -> its counts mapped to the genome annotation (an h5ad).

The library's reader (:func:`remnant.io.sample.read_sample`) speaks of its arguments; here its
messages name the config keys the user sets instead (:data:`HINTS`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata
import pandas as pd

from remnant.io.sample import ReadHints
from remnant.io.sample import read_sample as _read_sample

log = logging.getLogger(__name__)

#: The config keys behind the annotation, as :func:`read_sample`'s messages name them.
HINTS = ReadHints(
    build="annotation.build",
    annotation="annotation.genes or annotation.gtf",
    check_annotation="Check annotation.genes / annotation.gtf",
    mapping=(
        "For another genome build or organism set annotation.genes (gene table) or annotation.gtf in "
        "the config; otherwise check the `counts` path and `format` in the sample sheet."
    ),
)


def load_annotation(genes: str, *, gtf: bool, cytobands: str | None = None) -> pd.DataFrame:
    """The gene table: ``genes`` read as a GTF (bands from ``cytobands``) when ``gtf``, else as the
    shipped table layout (:func:`remnant.io.annotation.load_genes`; its errors name annotation.gtf)."""
    from remnant.io.annotation import genes_from_gtf, load_cytobands, load_genes

    if gtf:
        return genes_from_gtf(genes, load_cytobands(cytobands))
    return load_genes(genes, instead="use annotation.gtf")


def read_sample(row: Mapping[str, str], genes: pd.DataFrame, **options) -> tuple[anndata.AnnData, dict]:
    """:func:`remnant.io.sample.read_sample` (same arguments) with messages naming the config keys."""
    return _read_sample(row, genes, hints=HINTS, **options)


def read_counts(
    row: Mapping[str, str],
    genes: str,
    out: str,
    *,
    gtf: bool,
    cytobands: str | None,
    min_mapped_fraction: float,
    sheet: str,
    markers: list[str] | None,
    build: str,
) -> None:
    """Read the sample of sheet ``row`` against the annotation ``genes`` and write it to ``out``
    (gzip-compressed h5ad; keys as :func:`remnant.io.sample.read_sample` documents)."""
    adata, stats = read_sample(
        row,
        load_annotation(genes, gtf=gtf, cytobands=cytobands),
        min_mapped_fraction=min_mapped_fraction,
        sheet=sheet,
        markers=markers,
        build=build,
    )
    log.info("read %d cells x %d genes; %s", adata.n_obs, adata.n_vars, stats)
    adata.write_h5ad(out, compression="gzip")
