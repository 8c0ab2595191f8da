"""The study's design in the tables' words: what the cohort has, which design keys are null, row order.

Shared by the steps that plan contrasts from the config's design keys (``persistence.stem``,
``progenitor``, ``before``, ``after``): estimate_fractions, score_signatures and compare_pseudobulk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

__all__ = ["levels_text", "not_this_design", "ordered_rows"]


def levels_text(values, what: str) -> str:
    """``"one population (HSC)"``, ``"2 timepoints (diagnosis, remission)"``, ``"no population"``."""
    values = [str(v) for v in values]
    if not values:
        return f"no {what}"
    return f"{'one' if len(values) == 1 else len(values)} {what}{'' if len(values) == 1 else 's'} ({', '.join(values)})"


def not_this_design(keys: Sequence[str], design: str) -> str:
    """The note of a contrast the config does not ask for: which design keys are null."""
    named = [f"persistence.{k}" for k in keys]
    named = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return f"{named} {'is' if len(keys) == 1 else 'are'} null (not a {design} design)"


def ordered_rows(table: pd.DataFrame, columns: Mapping[str, Sequence[str] | None]) -> pd.DataFrame:
    """Rows sorted by the given columns, each in its given level order (others after, alphabetically)."""
    keys = []
    for col, order in columns.items():
        values = table[col].astype(str)
        levels = [str(v) for v in (order or [])]
        rank = {v: i for i, v in enumerate(levels + sorted(set(values) - set(levels)))}
        keys.append(values.map(rank))
    if not keys:
        return table
    idx = (
        pd.DataFrame({f"_k{i}": k for i, k in enumerate(keys)})
        .sort_values([f"_k{i}" for i in range(len(keys))], kind="stable")
        .index
    )
    return table.loc[idx].reset_index(drop=True)
