"""Figures of the persistence analysis (PNG): del(5q) fraction per patient, signature scores,
cycling composition and its calibration, pseudobulk volcano.

Colours follow :func:`remnant.pl.clusters.palette`, so a population or timepoint has the same colour
as in the other figures of a run.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from remnant.errors import InputError  # noqa: E402
from remnant.pl.clusters import palette  # noqa: E402
from remnant.tl.signatures import PHASES  # noqa: E402

__all__ = [
    "plot_cycling_calibration",
    "plot_cycling_composition",
    "plot_del_fraction",
    "plot_signature_distributions",
    "plot_volcano",
]


def _order(values: pd.Series, order: Sequence[str] | None) -> list[str]:
    present = list(pd.unique(values.astype(str)))
    if order is None:
        return present
    return [str(v) for v in order if str(v) in present] + [v for v in present if v not in set(map(str, order))]


def plot_del_fraction(
    table: pd.DataFrame,
    path: str,
    *,
    estimate: str = "corrected",
    timepoints: Sequence[str] | None = None,
    populations: Sequence[str] | None = None,
    lesion_label: str = "del(5q)",
) -> None:
    """The study's central figure: per patient, bars of the carrier fraction by timepoint (groups)
    and population (bars), with interval whiskers and the cell counts under each bar.

    Parameters
    ----------
    table
        :func:`remnant.tl.fractions.del_fraction_table` (``patient, population, timepoint``).
    estimate
        ``"corrected"`` (error-corrected, ``corrected_low/high``) or ``"fraction"`` (called
        cells, Wilson ``fraction_low/high``). Where the corrected value is NaN (error rates too
        high to correct), the called fraction is drawn hatched instead.
    timepoints, populations
        Display order (default: order of appearance).
    """
    for col in ("patient", "population", "timepoint", "fraction", "n_cells"):
        if col not in table.columns:
            raise InputError(f"the fraction table has no column {col!r}.", where="plot_del_fraction")
    if estimate not in ("corrected", "fraction"):
        raise InputError(f"estimate must be 'corrected' or 'fraction'; got {estimate!r}.", where="plot_del_fraction")
    patients = list(pd.unique(table["patient"].astype(str)))
    tps = _order(table["timepoint"], timepoints)
    pops = _order(table["population"], populations)
    colours = palette(pops, "population")
    fig, axes = plt.subplots(
        1,
        len(patients),
        figsize=(max(4.0, 1.1 * len(tps) * len(pops) / 2 + 1.5) * len(patients) / 1.6, 4.2),
        sharey=True,
        constrained_layout=True,
        squeeze=False,
    )
    for ax, patient in zip(axes[0], patients):
        _fraction_bars(ax, table[table["patient"].astype(str) == patient], pops, tps, colours, estimate)
        ax.set_xticks(range(len(tps)), tps, rotation=30)
        ax.set_title(patient)
        ax.set_ylim(-14, 105)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0][0].set_ylabel(
        f"{lesion_label} cells (%)" + (", error-corrected" if estimate == "corrected" else ", called")
    )
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    # below the panels: at the upper right it collides with the wrapped title of narrow figures
    fig.legend(
        seen.values(),
        seen.keys(),
        loc="outside lower center",
        ncol=max(len(seen), 1),
        frameon=False,
        fontsize=8,
        title="population",
        title_fontsize=8,
    )
    whisker = (
        "95% interval (Rogan-Gladen corrected; hatched: not correctable, called fraction with Wilson interval)"
        if estimate == "corrected"
        else "95% Wilson interval"
    )
    title = f"{lesion_label} fraction by population and timepoint; bars: {whisker}; numbers: cells"
    # wrapped to the figure's width (about 14 characters per inch at this size), so narrow figures of few patients keep it whole
    fig.suptitle(textwrap.fill(title, width=max(40, int(fig.get_figwidth() * 14))), fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fraction_bars(ax, part: pd.DataFrame, pops: list[str], tps: list[str], colours: dict, estimate: str) -> None:
    """One patient's bars (timepoint groups, population bars) with interval whiskers and cell counts."""
    width = 0.8 / max(len(pops), 1)
    for j, pop in enumerate(pops):
        for i, tp in enumerate(tps):
            hit = part[(part["population"].astype(str) == pop) & (part["timepoint"].astype(str) == tp)]
            if hit.empty:
                continue
            r = hit.iloc[0]
            x = i - 0.4 + width * (j + 0.5)
            use_corr = estimate == "corrected" and pd.notna(r.get("corrected", np.nan))
            value, lo, hi = (
                (r["corrected"], r["corrected_low"], r["corrected_high"])
                if use_corr
                else (r["fraction"], r["fraction_low"], r["fraction_high"])
            )
            hatch = "//" if estimate == "corrected" and not use_corr else None
            ax.bar(
                x,
                100 * value,
                width=width * 0.92,
                color=colours[pop],
                hatch=hatch,
                edgecolor="white" if hatch else None,
                label=pop if i == 0 else None,
            )
            ax.errorbar(
                x,
                100 * value,
                yerr=[[100 * max(value - lo, 0.0)], [100 * max(hi - value, 0.0)]],
                color="black",
                capsize=2,
                lw=1,
            )
            ax.text(x, -3, f"{int(r['n_cells'])}", ha="center", va="top", fontsize=6, rotation=90)


def plot_signature_distributions(
    obs: pd.DataFrame,
    score_keys: Sequence[str],
    path: str,
    *,
    group_key: str,
    groups: Sequence[str] | None = None,
    patient_key: str = "patient",
    ncols: int | None = None,
    title: str | None = None,
) -> None:
    """Per score: violins of the cells of each group, with each patient's median as a dot
    (patients joined by lines across groups: the unit of inference is the patient).

    Parameters
    ----------
    obs
        Per-cell table already restricted to the cells compared (e.g. HSC at remission).
    score_keys
        Score columns (``sig_*``).
    group_key, groups
        Grouping column and the order of its levels (default: order of appearance).
    ncols
        Panels per row (default: all in one row).
    title
        Figure title (default: what the violins and dots are).
    """
    for col in [*score_keys, group_key, patient_key]:
        if col not in obs.columns:
            raise InputError(f"the cell table has no column {col!r}.", where="plot_signature_distributions")
    levels = _order(obs[group_key].dropna(), groups)
    n = len(score_keys)
    ncols = max(1, min(ncols or n, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(max(3.0, 0.9 * len(levels) + 1.5) * ncols, 3.8 * nrows),
        constrained_layout=True,
        squeeze=False,
    )
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    colours = palette(levels, group_key)
    patients = list(pd.unique(obs[patient_key].astype(str)))
    for ax, key in zip(axes.ravel(), score_keys):
        data = [obs.loc[obs[group_key].astype(str) == g, key].dropna().to_numpy(float) for g in levels]
        pos = [i for i, d in enumerate(data) if d.size > 1]
        if pos:
            parts = ax.violinplot([data[i] for i in pos], positions=pos, showmedians=False, showextrema=False)
            for body, i in zip(parts["bodies"], pos):
                body.set_facecolor(colours[levels[i]])
                body.set_alpha(0.45)
        medians = obs.groupby([obs[patient_key].astype(str), obs[group_key].astype(str)], observed=True)[key].median()
        for patient in patients:
            ys = [medians.get((patient, g), np.nan) for g in levels]
            ax.plot(range(len(levels)), ys, color="black", lw=0.6, marker="o", ms=3)
        ax.set_xticks(range(len(levels)), [f"{g}\n(n={d.size})" for g, d in zip(levels, data)], fontsize=8)
        ax.set_title(key.removeprefix("sig_"), fontsize=8)
        ax.set_ylabel("score (set minus matched controls, log1p units)", fontsize=7)
    fig.suptitle(title or "Signature scores: cells (violins) and per-patient medians (dots)", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_cycling_composition(composition: pd.DataFrame, path: str, *, label_keys: Sequence[str]) -> None:
    """Stacked bars of the G0/G1, S and G2M share per group.

    ``composition``: :func:`remnant.tl.signatures.cycling_composition` output; ``label_keys``: its
    grouping columns joined to label each bar (e.g. ``["patient", "timepoint", "del5q_group"]``).
    """
    cols = [f"fraction_{p.replace('/', '_')}" for p in PHASES]
    for col in [*cols, "n_cells", *label_keys]:
        if col not in composition.columns:
            raise InputError(f"the composition table has no column {col!r}.", where="plot_cycling_composition")
    labels = composition[list(label_keys)].astype(str).agg(" ".join, axis=1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(composition) + 2), 4.2), constrained_layout=True)
    bottom = np.zeros(len(composition))
    colours = {"G0/G1": "#BBBBBB", "S": "#4C72B0", "G2M": "#C44E52"}
    for phase, col in zip(PHASES, cols):
        values = 100 * composition[col].to_numpy(float)
        ax.bar(range(len(composition)), values, bottom=bottom, color=colours[phase], label=phase)
        bottom += values
    ax.set_xticks(
        range(len(composition)),
        [f"{lab} (n={n})" for lab, n in zip(labels, composition["n_cells"])],
        rotation=90,
        fontsize=7,
    )
    ax.set_ylabel("cells (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Cell-cycle phase (from S and G2/M programs)")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _calibration_cut(row: pd.Series, posterior: np.ndarray, called: np.ndarray) -> float:
    """The cycling score at which the batch's call changes: for a fitted mixture, the score between
    the two means where the cycling posterior reaches the lowest posterior of a called cell; for
    scanpy's sign rule 0; NaN when nothing is called."""
    rule = str(row.get("rule", ""))
    if rule.startswith("scanpy"):
        return 0.0
    if not rule.startswith("two-component") or not called.any():
        return np.nan
    from scipy import stats

    w1 = float(row["cycling_share"])
    grid = np.linspace(float(row["mean_non_cycling"]), float(row["mean_cycling"]), 4001)
    f0 = (1 - w1) * stats.norm.pdf(grid, row["mean_non_cycling"], row["sd_non_cycling"])
    f1 = w1 * stats.norm.pdf(grid, row["mean_cycling"], row["sd_cycling"])
    post = f1 / np.maximum(f0 + f1, 1e-300)
    above = np.flatnonzero(post >= np.nanmin(posterior[called]))
    return float(grid[above[0]]) if above.size else np.nan


def plot_cycling_calibration(
    scores: pd.DataFrame, calibration: pd.DataFrame, path: str, *, batch_key: str | None = "technology"
) -> None:
    """Per batch (technology): the histogram of the cycling score max(S, G2/M), the two fitted
    Gaussians of :func:`remnant.tl.signatures.calibrate_cycling` (each scaled by its weight, and their
    sum), the cut where the calibrated call changes (dashed) and scanpy's sign rule (either score
    above 0, dotted). Each panel's title gives the cells, the estimated cycling share (mixture
    weight), the share called, the share the sign rule would call and the separation AUROC the
    fitted components imply.

    Parameters
    ----------
    scores
        Per cell: ``S_score``, ``G2M_score``, ``cycle_phase`` (``G0/G1``, ``S``, ``G2M``),
        ``cycling_posterior`` (NaN where the sign rule was used) and ``batch_key``.
    calibration
        The table of :func:`remnant.tl.signatures.calibrate_cycling` (one row per ``batch``).
    batch_key
        Column of ``scores`` with the batch of each cell; ``None``: one batch, the table's only row.
    """
    for col in ("S_score", "G2M_score", "cycle_phase", "cycling_posterior", *([batch_key] if batch_key else [])):
        if col not in scores.columns:
            raise InputError(f"the score table has no column {col!r}.", where="plot_cycling_calibration")
    for col in ("batch", "cells", "rule", "cycling_share", "called_share", "sign_rule_share", "separation"):
        if col not in calibration.columns:
            raise InputError(f"the calibration table has no column {col!r}.", where="plot_cycling_calibration")
    if calibration.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "No cells scored: no cycling calibration.", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    if batch_key is None and len(calibration) != 1:
        raise InputError(
            "several batches in the calibration table: name the cells' batch column (batch_key).",
            where="plot_cycling_calibration",
        )
    from scipy import stats

    batches = (
        scores[batch_key].astype(str).to_numpy()
        if batch_key
        else np.full(len(scores), str(calibration["batch"].iloc[0]), dtype=object)
    )
    m_all = np.maximum(scores["S_score"].to_numpy(float), scores["G2M_score"].to_numpy(float))
    called_all = scores["cycle_phase"].astype(str).to_numpy() != "G0/G1"
    posterior_all = scores["cycling_posterior"].to_numpy(float)
    n = max(len(calibration), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.9), constrained_layout=True, squeeze=False)
    for ax, (_, row) in zip(axes[0], calibration.iterrows()):
        idx = batches == str(row["batch"])
        m, called = m_all[idx], called_all[idx]
        ax.hist(
            m,
            bins=max(10, min(60, int(np.sqrt(idx.sum())) * 2)),
            density=True,
            color="#BBBBBB",
            edgecolor="white",
            lw=0.3,
        )
        rule = str(row["rule"])
        if rule.startswith(("two-component", "one component")) and m.size:
            x = np.linspace(m.min() - 0.05, m.max() + 0.05, 400)
            w1 = float(row["cycling_share"]) if np.isfinite(row["cycling_share"]) else 0.0
            f0 = (1 - w1) * stats.norm.pdf(x, row["mean_non_cycling"], row["sd_non_cycling"])
            ax.plot(x, f0, color="#4C72B0", lw=1.2, label="non-cycling (G0/G1)")
            if rule.startswith("two-component"):
                f1 = w1 * stats.norm.pdf(x, row["mean_cycling"], row["sd_cycling"])
                ax.plot(x, f1, color="#C44E52", lw=1.2, label="cycling (S or G2/M)")
                ax.plot(x, f0 + f1, color="black", lw=0.7, ls="-", alpha=0.6, label="mixture")
        cut = _calibration_cut(row, posterior_all[idx], called)
        if np.isfinite(cut):
            ax.axvline(cut, color="black", ls="--", lw=1, label=f"cut {cut:.3f}: called cycling above")
        ax.axvline(0, color="grey", ls=":", lw=1, label="sign rule: either score > 0")

        def share(v):
            return "NA" if not np.isfinite(v) else f"{100 * v:.0f}%"

        separation = f"{row['separation']:.3f}" if np.isfinite(row["separation"]) else "NA"
        head = f"{row['batch']}: {int(row['cells'])} cells; {rule}"
        ax.set_title(
            textwrap.fill(head, 60) + f"\nestimated cycling {share(row['cycling_share'])}, called "
            f"{share(row['called_share'])}, sign rule {share(row['sign_rule_share'])}\n"
            f"separation AUROC {separation}",
            fontsize=8,
        )
        ax.set_xlabel("cycling score max(S, G2/M) (log1p units)", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.legend(frameon=False, fontsize=6, loc="upper right")
    fig.suptitle("Cycling phase calibrated per batch: two-component Gaussian mixture on max(S, G2/M)", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_volcano(
    results: pd.DataFrame,
    path: str,
    *,
    padj: float = 0.1,
    label_top: int = 15,
    title: str | None = None,
    empty: str = "no test: fewer than two patients with both pseudobulks",
) -> None:
    """Volcano of a :func:`remnant.tl.de.paired_de` table: log2 fold change vs -log10 p,
    genes at ``padj`` below the threshold coloured and the ``label_top`` smallest p-values named.
    An empty table gives a figure saying why (``empty``)."""
    fig, ax = plt.subplots(figsize=(6, 4.8), constrained_layout=True)
    if results.empty:
        ax.text(0.5, 0.5, "\n".join(textwrap.wrap(empty, 60)), ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        for col in ("log2FoldChange", "pvalue", "padj", "gene_name"):
            if col not in results.columns:
                raise InputError(f"the DE table has no column {col!r}.", where="plot_volcano")
        r = results.dropna(subset=["log2FoldChange", "pvalue"])
        y = -np.log10(np.clip(r["pvalue"].to_numpy(float), 1e-300, 1))
        x = r["log2FoldChange"].to_numpy(float)
        sig = (r["padj"] < padj).fillna(False).to_numpy()
        ax.scatter(x[~sig], y[~sig], s=4, color="#BBBBBB", lw=0, rasterized=True)
        ax.scatter(x[sig & (x > 0)], y[sig & (x > 0)], s=6, color="#C44E52", lw=0, label=f"up, padj < {padj}")
        ax.scatter(x[sig & (x < 0)], y[sig & (x < 0)], s=6, color="#4C72B0", lw=0, label=f"down, padj < {padj}")
        top = np.argsort(r["pvalue"].to_numpy(float))[:label_top]
        for i in top:
            ax.annotate(
                str(r["gene_name"].iloc[i]), (x[i], y[i]), fontsize=6, xytext=(2, 2), textcoords="offset points"
            )
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("log2 fold change")
        ax.set_ylabel("-log10 p-value")
        if sig.any():
            ax.legend(frameon=False, fontsize=7)
    n_pairs = results.attrs.get("n_pairs")
    ax.set_title(title or ("Pseudobulk DE" + (f" ({n_pairs} patients, paired)" if n_pairs else "")), fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
