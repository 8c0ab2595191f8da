"""Gene sets: plain lists (one symbol per line) and weighted tables, read from files.

Shipped sets live in ``resources/gene_sets/`` (citations in its README).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import InputError


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
