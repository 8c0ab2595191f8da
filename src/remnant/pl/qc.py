"""Quality-control figures (PNG): one sample's metrics against the thresholds applied, and the
cells kept and removed per reason over all samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anndata import AnnData  # noqa: E402

__all__ = ["plot_qc", "plot_qc_summary"]


def plot_qc(
    adata: AnnData,
    path: str,
    *,
    title: str = "",
    unscored: str = "doublets not scored\n(plate sample, or doublet scoring disabled)",
) -> None:
    """Per-sample QC figure (PNG): counts vs genes and mito % vs counts, cells coloured kept/removed,
    with the applied thresholds drawn; histogram of doublet scores where scored, else the note
    ``unscored``."""
    obs = adata.obs
    thr = adata.uns.get("remnant", {}).get("qc", {})
    kept = obs["qc_pass"].to_numpy(dtype=bool)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    colours = np.where(kept, "#4C72B0", "#DD8452")
    ax = axes[0]
    ax.scatter(obs["total_counts"], obs["n_genes_by_counts"], c=colours, s=6, linewidths=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("counts per cell")
    ax.set_ylabel("genes detected per cell")
    _threshold_lines(ax.axvline, thr, ("min_counts", "mad_min_counts"), "--")
    _threshold_lines(ax.axhline, thr, ("min_genes", "mad_min_genes"), ":")
    ax = axes[1]
    ax.scatter(obs["total_counts"], obs["pct_counts_mt"], c=colours, s=6, linewidths=0)
    ax.set_xscale("log")
    ax.set_xlabel("counts per cell")
    ax.set_ylabel("mitochondrial counts (%)")
    _threshold_lines(ax.axhline, thr, ("max_pct_mito", "mad_max_pct_mito"), "--")
    ax = axes[2]
    scores = obs["doublet_score"].to_numpy(dtype=float)
    if np.isfinite(scores).any():
        ax.hist(scores[np.isfinite(scores)], bins=30, color="#4C72B0")
        ax.set_xlabel("Scrublet doublet score")
        ax.set_ylabel("cells")
    else:
        ax.text(
            0.5,
            0.5,
            unscored,
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    n_kept = int(kept.sum())
    fig.suptitle(f"{title}: {n_kept} of {len(kept)} cells kept (blue kept, orange removed)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _threshold_lines(draw, thresholds: Mapping[str, Any], keys: tuple[str, ...], style: str) -> None:
    """Draw each applied threshold of ``keys`` with ``draw`` (``ax.axvline`` or ``ax.axhline``)."""
    for key in keys:
        if thresholds.get(key):
            draw(thresholds[key], color="grey", ls=style, lw=0.8)


def plot_qc_summary(table: pd.DataFrame, path: str, reasons: Sequence[str]) -> None:
    """Stacked bars: cells kept and removed per reason, per sample (PNG)."""
    reasons = [r for r in reasons if table[r].sum() > 0]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(table) + 2), 4.5), constrained_layout=True)
    x = np.arange(len(table))
    ax.bar(x, table["kept"], color="#BBBBBB", label="kept")
    bottom = table["kept"].to_numpy(dtype=float)
    cmap = plt.get_cmap("tab10")
    for i, reason in enumerate(reasons):
        ax.bar(x, table[reason], bottom=bottom, color=cmap(i), label=f"failed {reason.replace('_', ' ')}")
        bottom = bottom + table[reason].to_numpy(dtype=float)
    ax.set_xticks(x, table["sample"], rotation=90, fontsize=7)
    ax.set_ylabel("cells (a cell failing several checks is counted under each)")
    ax.set_title("Cells kept and removed per sample")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
