"""The B-allele picture of a lesion: the share of reads on the changed haplotype along the chromosome,
cells called vs not called (the figure Numbat users read)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.pl.cnv import GROUP_COLOURS, _plt, plot_message

__all__ = ["plot_allele_balance", "binned_balance"]

_MB = 1e6
_NEED = {"patient", "position", "confidence", "called_reads", "called_changed", "uncalled_reads", "uncalled_changed"}


def binned_balance(phase: pd.DataFrame, *, bin_mb: float = 2.0, min_confidence: float = 0.9) -> pd.DataFrame:
    """Reads on the changed haplotype per window of ``bin_mb`` Mb and group of cells.

    ``phase``: one patient's rows of ``uns["lesions"][name]["phase"]`` (:data:`PHASE_COLUMNS
    <remnant.tl.allele_evidence.PHASE_COLUMNS>`); sites phased with ``confidence`` below
    ``min_confidence`` are left out. Returns one row per window and group (``called``/``not called``)
    with reads: ``mid`` (Mb), ``group``, ``reads``, ``changed``, ``share`` (changed / reads, 0-1),
    ``low``, ``high`` (Wilson 95% interval).
    """
    sure = phase[phase["confidence"] >= min_confidence]
    window = np.floor(sure["position"].to_numpy(float) / (bin_mb * _MB))
    rows = []
    for group, prefix in (("called", "called"), ("not called", "uncalled")):
        sums = (
            pd.DataFrame({"w": window, "n": sure[f"{prefix}_reads"], "k": sure[f"{prefix}_changed"]}).groupby("w").sum()
        )
        sums = sums[sums["n"] > 0]
        share = sums["k"] / sums["n"]
        low, high = _wilson(sums["k"].to_numpy(float), sums["n"].to_numpy(float))
        rows.append(
            pd.DataFrame(
                {
                    "mid": (sums.index.to_numpy() + 0.5) * bin_mb,
                    "group": group,
                    "reads": sums["n"].to_numpy(np.int64),
                    "changed": sums["k"].to_numpy(np.int64),
                    "share": share.to_numpy(),
                    "low": low,
                    "high": high,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def plot_allele_balance(phase: pd.DataFrame, lesion, path: str, *, bin_mb: float = 2.0) -> None:
    """One panel per patient: the share of allele reads on the changed haplotype along the lesion's
    interval, cells called vs not called (PNG ``path``).

    A one-copy loss leaves carriers reading only the retained haplotype (share near 0, up to error),
    a gain 2/3; normal cells read both (1/2). Points: windows of ``bin_mb`` Mb of sites phased with
    confidence >= 0.9, with Wilson 95% intervals; the size of a point grows with its reads.

    Parameters
    ----------
    phase
        ``uns["lesions"][lesion.name]["phase"]`` (results/cnv/phased_sites.tsv rows of the lesion).
    lesion
        The :class:`remnant.tl.Lesion`.
    path
        Output PNG. A table without rows gives a figure saying no site was phased.
    """
    if not set(phase.columns) >= _NEED:
        raise InputError(
            f"phase table lacks columns {sorted(_NEED - set(phase.columns))}; use add_allele_evidence().",
            where="plot_allele_balance",
        )
    patients = list(pd.unique(phase["patient"].astype(str)))
    if not patients:
        plot_message(path, f"{lesion.name}: no allele site was phased (no allele reads in the lesion's interval).")
        return
    plt = _plt()
    fig, axes = plt.subplots(len(patients), 1, figsize=(10, 2.3 * len(patients) + 0.6), squeeze=False, sharex=True)
    expected = 0.0 if lesion.type == "loss" else 2.0 / 3.0
    for ax, patient in zip(axes[:, 0], patients, strict=True):
        mine = phase[phase["patient"].astype(str) == patient]
        _draw_patient(ax, binned_balance(mine, bin_mb=bin_mb), expected, lesion)
        n_sure = int((mine["confidence"] >= 0.9).sum())
        ax.set_title(f"Patient {patient}: {n_sure} of {len(mine)} sites phased with confidence >= 0.9", fontsize=8)
    axes[-1, 0].set_xlabel(f"{lesion.chromosome} position (Mb)")
    axes[0, 0].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{lesion.name}: allele reads on the changed haplotype, cells called / not called", fontsize=10, y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _draw_patient(ax, bins: pd.DataFrame, expected: float, lesion) -> None:
    for group in ("not called", "called"):
        part = bins[bins["group"] == group]
        if part.empty:
            continue
        ax.errorbar(
            part["mid"],
            part["share"],
            # at a share of 0 or 1 the Wilson bound equals it up to rounding
            yerr=np.clip([part["share"] - part["low"], part["high"] - part["share"]], 0, None),
            fmt="none",
            ecolor=GROUP_COLOURS[group],
            alpha=0.35,
            lw=0.8,
        )
        ax.scatter(
            part["mid"],
            part["share"],
            s=8 + 40 * np.sqrt(part["reads"] / part["reads"].max()),
            color=GROUP_COLOURS[group],
            label=f"{group} ({int(part['reads'].sum()):,} reads)",
            zorder=3,
        )
    ax.axvspan(lesion.start / _MB, lesion.end / _MB, color="#F4A582", alpha=0.2, lw=0)
    ax.axhline(0.5, color="black", lw=0.6, ls=":", label="both haplotypes (1/2)")
    ax.axhline(expected, color="grey", lw=0.6, ls="--", label=f"carrier ({expected:.2g})")
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("changed-haplotype\nshare of reads", fontsize=8)
