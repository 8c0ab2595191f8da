"""Figures (PNG) of the clustered cohort: UMAPs and the marker dot plot, and the fixed palettes.

Palettes are fixed per variable so that a population or timepoint has the same colour in every
figure of a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402
from anndata import AnnData  # noqa: E402

#: Fixed colours for timepoints (clinical order) and sort gates.
TIMEPOINT_COLOURS = ["#4C72B0", "#55A868", "#C44E52", "#8172B3", "#CCB974", "#64B5CD"]
POPULATION_COLOURS = {"HSC": "#D62728", "PROG": "#1F77B4", "CD34": "#7F7F7F"}


#: UMAPs of a key with more levels than this are drawn without a legend.
MAX_LEGEND_LEVELS = 60


def palette(values: Sequence[str], key: str) -> dict[str, str]:
    """A stable colour per level of ``key`` (timepoints in given order; populations by name)."""
    values = [str(v) for v in values]
    if key == "timepoint":
        return {v: TIMEPOINT_COLOURS[i % len(TIMEPOINT_COLOURS)] for i, v in enumerate(values)}
    if key == "population":
        cmap = plt.get_cmap("tab10")
        return {v: POPULATION_COLOURS.get(v, matplotlib.colors.to_hex(cmap(i % 10))) for i, v in enumerate(values)}
    cmap = plt.get_cmap("tab20" if len(values) > 10 else "tab10")
    return {v: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, v in enumerate(values)}


def plot_umaps(adata: AnnData, keys: Sequence[str], paths: Sequence[str]) -> None:
    """One UMAP per ``.obs`` key (PNG each), with fixed palettes for timepoint and population."""
    for key, path in zip(keys, paths):
        values = adata.obs[key]
        levels = list(values.cat.categories) if hasattr(values, "cat") else sorted(values.astype(str).unique())
        colours = palette(levels, key)
        fig, ax = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
        # a legend of hundreds of levels (e.g. Leiden clusters of a large cohort) is unreadable and
        # takes matplotlib minutes per thousand entries: above MAX_LEGEND_LEVELS the levels are
        # coloured without a legend and the title says how many there are
        many = len(levels) > MAX_LEGEND_LEVELS
        sc.pl.umap(
            adata,
            color=key,
            palette=[colours[str(v)] for v in levels],
            ax=ax,
            show=False,
            frameon=False,
            size=max(3, 120000 / max(adata.n_obs, 1) ** 1.1),
            legend_loc=None if many else "right margin",
            title=f"cells by {key}" + (f" ({len(levels)} levels, no legend)" if many else ""),
        )
        fig.savefig(path, dpi=110)
        plt.close(fig)


def plot_marker_dotplot(adata: AnnData, markers: Mapping[str, Sequence[str]], states: Sequence[str], path: str) -> None:
    """Dot plot of marker genes (by symbol) across annotated HSPC states (PNG)."""
    symbols = adata.var["gene_name"].astype(str)
    present = set(symbols)
    groups = {s: [g for g in markers[s] if g in present] for s in states if s in markers}
    groups = {s: g for s, g in groups.items() if g}
    view = adata.copy()
    view.var_names = pd.Index(symbols).where(~pd.Index(symbols).duplicated(), adata.var_names)
    # a state no cluster was labelled with has no row (its markers still get columns)
    view.obs["hspc_state"] = view.obs["hspc_state"].cat.remove_unused_categories()
    dot = sc.pl.dotplot(
        view,
        groups,
        groupby="hspc_state",
        standard_scale="var",
        show=False,
        return_fig=True,
        title="HSPC markers by annotated state",
    )
    dot.savefig(path, dpi=110, bbox_inches="tight")
    plt.close("all")
