"""Multiple-testing adjustment of comparison tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["bh_across_patients"]


def bh_across_patients(table: pd.DataFrame) -> pd.Series:
    """Benjamini-Hochberg adjusted p-values over the across-patient rows of each test.

    ``table`` needs ``scope``, ``test`` and ``pvalue``; the rows with ``scope == "across patients"``
    and a p-value are adjusted together per ``test`` (a family is one test over the table's
    comparisons). Returns a Series indexed like ``table``: NaN on every other row.
    """
    from statsmodels.stats.multitest import multipletests

    padj = pd.Series(np.nan, index=table.index)
    across = (table["scope"] == "across patients") & table["pvalue"].notna()
    for _, rows in table[across].groupby("test"):
        padj.loc[rows.index] = multipletests(rows["pvalue"].to_numpy(float), method="fdr_bh")[1]
    return padj
