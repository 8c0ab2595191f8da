"""Gene sets: plain lists (one symbol per line), weighted tables and the HSPC marker table, read
from files, and checked against the genome annotation's symbols.

Shipped sets live in ``resources/gene_sets/`` (citations in its README). This module imports no
analysis library, so the workflow can check gene sets when it starts (rules/common.smk).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import pandas as pd

from remnant.errors import InputError


def read_gene_set(path: str | Path) -> list[str]:
    """One symbol per line (blank lines and ``#`` comments ignored); duplicates dropped, order kept.

    A ``.tsv`` with a header is read as a weighted set: its ``current_symbol`` column, else its
    ``gene`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("gene set file does not exist.", path=path)
    if path.suffix == ".tsv":
        table = pd.read_csv(path, sep="\t", dtype=str)
        column = "current_symbol" if "current_symbol" in table else "gene"
        if column not in table:
            raise InputError(f"weighted gene set needs a 'gene' column; found {list(table.columns)}.", path=path)
        genes = table[column].dropna().str.strip().tolist()
    else:
        genes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        genes = [g for g in genes if g and not g.startswith("#")]
    if not genes:
        raise InputError("gene set is empty.", path=path)
    return list(dict.fromkeys(genes))


def read_gene_sets(directory: str | Path) -> dict[str, list[str]]:
    """Every ``*.txt`` gene set in ``directory``, keyed by file stem (e.g. ``TIROSH2016_S``)."""
    directory = Path(directory)
    return {p.stem: read_gene_set(p) for p in sorted(directory.glob("*.txt"))}


def read_markers(path: str | Path) -> dict[str, list[str]]:
    """Marker table: ``population<TAB>space-separated symbols`` with a header line.

    Returns ``{population: [symbol, ...]}`` in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("marker table does not exist.", path=path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if list(table.columns[:2]) != ["population", "markers"]:
        raise InputError(
            f"marker table needs a header 'population<TAB>markers'; found {list(table.columns)}.", path=path
        )
    markers = {}
    for i, row in table.iterrows():
        genes = str(row["markers"]).split()
        if not genes:
            raise InputError(
                "no marker genes listed; give space-separated symbols.",
                path=path,
                where=f"row {i + 2} ({row['population']})",
            )
        markers[str(row["population"])] = genes
    return markers


def check_known_genes(
    genes: Iterable[str],
    symbols: Collection[str],
    *,
    path: str | Path,
    build: str = "the annotation",
    where: str | None = None,
) -> None:
    """Raise :class:`InputError` when none of a gene set's ``genes`` is among the annotation's ``symbols``.

    A set of another organism's symbols (``Cd34``) or of Ensembl IDs would otherwise be scored on no
    gene at all; a set with only some genes missing is scored on the rest (the workflow reports them).
    """
    genes = [str(g) for g in genes]
    if not any(g in symbols for g in genes):
        raise InputError(
            f"none of its {len(genes)} genes (e.g. {genes[:3]}) is a gene symbol of {build}; gene sets list HGNC "
            "symbols (human, upper case, e.g. CD34), one per line.",
            path=path,
            where=where,
        )
