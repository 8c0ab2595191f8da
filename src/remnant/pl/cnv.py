"""Copy-number figures: a patient's genome-wide heatmap and a lesion's chromosome (PNG).

:func:`plot_patient_heatmap`
    Chromosome-ordered heatmap of ``X_cnv`` (:func:`remnant.tl.profile.infer_profile`) for one
    patient's cells, annotated by population, timepoint and call, with a block of healthy reference
    cells on top for comparison.

:func:`plot_lesion_profile`
    For one patient, the chromosome of a lesion (:func:`remnant.tl.breakpoints.lesion_profile`):
    called vs uncalled cells, with the configured interval and the estimated breakpoints
    (:func:`remnant.tl.breakpoints.estimate_breakpoints`).

:func:`plot_message`
    A small PNG saying why a figure has no data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.tl.breakpoints import _ordered
from remnant.tl.lesions import cell_mask
from remnant.tl.profile import _obs_key, read_profile_rows

__all__ = ["plot_lesion_profile", "plot_message", "plot_patient_heatmap"]

#: Colours of the call bar and of the profile lines.
CALL_COLOURS = {"called": "#6A3D9A", "not called": "#D9D9D9"}
GROUP_COLOURS = {"called": "#6A3D9A", "not called": "#1B9E77"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_message(path: str, text: str) -> None:
    """A small PNG that says why a figure has no data (keeps declared workflow outputs honest)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _downsample(groups: pd.Series, cap: int, rng: np.random.Generator, floor: int = 10) -> np.ndarray:
    """Positions to keep: all when <= cap, else per group a share proportional to its size (at
    least ``floor`` cells or the whole group) so that small groups stay visible."""
    n = len(groups)
    if n <= cap:
        return np.arange(n)
    keep = []
    codes = pd.factorize(groups)[0]
    for g in np.unique(codes):
        idx = np.flatnonzero(codes == g)
        k = min(idx.size, max(floor, int(round(cap * idx.size / n))))
        keep.append(np.sort(rng.choice(idx, size=k, replace=False)))
    return np.sort(np.concatenate(keep))


def _bar_colours(values: pd.Series, key: str) -> tuple[list[str], dict[str, str]]:
    from remnant.pl.clusters import palette

    levels = _ordered(values)
    colours = palette(levels, key)
    return levels, colours


def plot_patient_heatmap(
    adata: anndata.AnnData,
    patient: str,
    path: str,
    *,
    call_key: str | Sequence[str] = "del5q_call",
    patient_key: str = "patient",
    population_key: str = "population",
    timepoint_key: str = "timepoint",
    reference="reference",
    key: str = "cnv",
    lesions: Sequence | None = None,
    max_cells: int = 1500,
    n_reference_cells: int = 200,
    seed: int = 0,
    vmax: float | None = None,
    profile: str | os.PathLike | None = None,
) -> None:
    """Chromosome-ordered heatmap of one patient's copy-number profiles (PNG).

    Rows are the patient's cells ordered by population, timepoint and call(s) (not called first),
    with colour bars for each; above them a block of healthy reference cells from other donors
    shows what "normal" looks like against the same reference. Columns are ``obsm[f"X_{key}"]``
    windows in genome order with chromosome boundaries and labels; configured ``lesions`` are
    marked above. Blue is lower expression than the state-matched reference (loss), red higher.

    Parameters
    ----------
    adata
        Cells with ``obsm[f"X_{key}"]`` and ``uns[key]`` from :func:`~remnant.tl.profile.infer_profile` and the obs
        columns named below (no gene matrix needed); with ``profile``, only obs and ``uns[key]``.
    patient
        A value of ``obs[patient_key]``.
    path
        Output PNG.
    call_key
        Boolean obs column(s) of lesion calls, one colour bar each (e.g. ``"del5q_call"``).
    reference
        Boolean array (n_obs,) or obs column of the reference cells; ``None``: no reference block.
    lesions
        :class:`remnant.tl.lesions.Lesion` objects to mark on the genome axis.
    max_cells
        Above this many cells, a seeded random subset is drawn per population/timepoint/call group
        (proportional, at least 10 per group); the figure says how many are shown.
    n_reference_cells
        Reference cells shown (seeded random subset of the reference cells of other donors).
    seed
        Seed of the downsampling.
    vmax
        Colour limit (symmetric); default the 99.5th percentile of |values| shown.
    profile
        A profile h5ad (:func:`~remnant.tl.profile.write_profile`) holding ``obsm[f"X_{key}"]`` for the cells of
        ``adata``: only the rows drawn are read from it (:func:`~remnant.tl.profile.read_profile_rows`), not the
        cohort's whole profile.
    """
    plt = _plt()
    where = "plot_patient_heatmap"
    if (profile is None and f"X_{key}" not in adata.obsm) or key not in adata.uns or "windows" not in adata.uns[key]:
        raise InputError(
            f"no copy-number profile: obsm['X_{key}'] and uns['{key}']['windows'] come from infer_profile.", where=where
        )
    call_keys = [call_key] if isinstance(call_key, str) else list(call_key)
    mine, ref = _heatmap_cells(
        adata, patient, call_keys, patient_key, population_key, timepoint_key, reference, max_cells, where
    )
    rng = np.random.default_rng(seed)  # draws the patient's rows first, then the reference rows
    profile_rows = _profile_reader(adata, key, profile)
    windows = adata.uns[key]["windows"]
    if not isinstance(windows, pd.DataFrame):
        windows = pd.DataFrame(windows)
    rows, groups, bars = _patient_rows(adata, mine, call_keys, population_key, timepoint_key, max_cells, rng, where)
    values = profile_rows(rows)
    ref_rows, n_ref_other = _reference_rows(ref, mine, n_reference_cells, rng)
    ref_values = profile_rows(ref_rows) if ref_rows.size else np.zeros((0, values.shape[1]))
    if vmax is None:
        vmax = _colour_limit(values, ref_values)
    nb = len(bars)  # colour bars left of the heatmap
    fig, gs, (ax_genome, ax_ref, ax), im = _heatmap_grid(plt, values, ref_values, n_ref_other, vmax, nb)
    chroms = _chromosome_axes(windows, ax, ax_ref, ax_genome)
    _mark_lesions(ax_genome, windows, chroms, lesions)
    handles = _colour_bars(fig, gs, ax, bars)
    # group boundaries
    for b in np.flatnonzero(groups[1:] != groups[:-1]) + 1:
        ax.axhline(b - 0.5, color="black", lw=0.4)
    cax = fig.add_subplot(gs[2, nb + 1])
    fig.colorbar(im, cax=cax, label="inferred copy number\n(log expression vs healthy, smoothed)")
    _legends(fig, handles)
    _heatmap_title(fig, adata.uns[key], patient, len(rows), mine, ref, seed)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _heatmap_cells(
    adata, patient, call_keys, patient_key, population_key, timepoint_key, reference, max_cells, where
) -> tuple[np.ndarray, np.ndarray]:
    """Checks; bool (n_obs,) masks of the patient's cells and of the reference cells (none without
    ``reference``)."""
    for k in (*call_keys, patient_key, population_key, timepoint_key):
        _obs_key(adata, k, where)
    mine = (adata.obs[patient_key].astype(str) == str(patient)).to_numpy()
    if not mine.any():
        raise InputError(f"no cell of patient {patient!r} in obs[{patient_key!r}].", where=where)
    if max_cells < 1:
        raise InputError(f"max_cells must be >= 1; got {max_cells}.", where=where)
    ref = cell_mask(adata, reference, "reference", where) if reference is not None else np.zeros(adata.n_obs, bool)
    return mine, ref


def _profile_reader(adata, key: str, profile):
    """A function of int cell positions giving their profiles, dense float (n, n_windows): from
    ``obsm[f"X_{key}"]``, or with ``profile`` only those rows of the file."""
    if profile is None:
        M = sp.csr_matrix(adata.obsm[f"X_{key}"])

        def profile_rows(positions):
            return M[positions].toarray()
    else:

        def profile_rows(positions):
            return read_profile_rows(profile, positions, key=key).toarray()

    return profile_rows


def _patient_rows(
    adata, mine, call_keys, population_key, timepoint_key, max_cells, rng, where
) -> tuple[np.ndarray, np.ndarray, list]:
    """The patient's rows drawn, ordered by population, timepoint and call(s) (not called first),
    downsampled per group above ``max_cells``: their int positions in ``adata``, their group labels
    (str, one per row) and the colour bars, ``(title, labels, colours)`` each."""
    idx = np.flatnonzero(mine)
    sub = adata.obs.iloc[idx]
    calls = [cell_mask(adata, k, "call_key", where)[idx] for k in call_keys]
    pop_levels, pop_col = _bar_colours(sub[population_key], "population")
    tp, tp_levels, tp_col = _timepoints(sub[timepoint_key])
    order = pd.DataFrame(
        {
            "pop": [pop_levels.index(str(v)) for v in sub[population_key].astype(str)],
            "tp": [tp_levels.index(v) for v in tp],
            "i": np.arange(idx.size),
        }
    )
    call_cols = [f"call{k}" for k in range(len(calls))]
    for col, c in zip(call_cols, calls):
        order[col] = c.astype(int)
    order = order.sort_values(["pop", "tp", *call_cols, "i"], kind="stable")
    groups = order[["pop", "tp", *call_cols]].astype(str).agg("|".join, axis=1)
    keep = _downsample(groups.reset_index(drop=True), max_cells, rng)
    shown = order.iloc[keep]
    bars = [
        ("population", [str(v) for v in sub[population_key].astype(str).to_numpy()[shown["i"]]], pop_col),
        ("timepoint", list(tp.to_numpy()[shown["i"]]), tp_col),
    ] + [
        (k.removesuffix("_call") + " call", ["called" if v else "not called" for v in c[shown["i"]]], CALL_COLOURS)
        for k, c in zip(call_keys, calls)
    ]
    return idx[shown["i"].to_numpy()], groups.to_numpy()[keep], bars


def _timepoints(values: pd.Series) -> tuple[pd.Series, list[str], dict[str, str]]:
    """Each cell's timepoint label ("NA" when missing), the levels in order (categorical order, then
    unlisted ones sorted) and their colours."""
    tp = values.astype(object).where(values.notna(), "NA").astype(str)
    tp_levels = [v for v in _ordered(values) if v in set(tp)] + sorted(set(tp) - set(_ordered(values)))
    tp_col = _bar_colours(pd.Series(pd.Categorical(tp, categories=tp_levels)), "timepoint")[1]
    return tp, tp_levels, tp_col


def _reference_rows(ref, mine, n_reference_cells: int, rng) -> tuple[np.ndarray, int]:
    """A seeded random subset of the reference cells of other donors (int positions, increasing),
    and how many there are."""
    ref_other = np.flatnonzero(ref & ~mine)
    ref_rows = (
        np.sort(rng.choice(ref_other, size=min(n_reference_cells, ref_other.size), replace=False))
        if ref_other.size
        else ref_other
    )
    return ref_rows, ref_other.size


def _colour_limit(values: np.ndarray, ref_values: np.ndarray) -> float:
    """The 99.5th percentile of |values| shown (0.1 when all are 0; at least 1e-3)."""
    both = np.abs(np.concatenate([values.ravel(), ref_values.ravel()]))
    vmax = float(np.quantile(both, 0.995)) if both.size and np.any(both > 0) else 0.1
    return max(vmax, 1e-3)


def _heatmap_grid(plt, values, ref_values, n_ref_other: int, vmax: float, nb: int):
    """The figure, its grid (genome axis, reference block and heatmap over ``nb`` colour bars and a
    colour scale), the axes ``(genome, reference or None, heatmap)`` and the heatmap's image."""
    n_ref_block = ref_values.shape[0]
    height_ref = max(0.18, n_ref_block / max(n_ref_block + values.shape[0], 1)) if n_ref_block else 0.0
    fig = plt.figure(figsize=(14, 8.5))
    gs = fig.add_gridspec(
        3,
        nb + 2,
        width_ratios=[0.25] * nb + [14, 0.3],
        height_ratios=[0.06, height_ref or 1e-6, 1.0 - height_ref],
        wspace=0.03,
        hspace=0.04,
        left=0.08,
        right=0.9,
        top=0.88,
        bottom=0.17,
    )
    cmap = "RdBu_r"
    ax_genome = fig.add_subplot(gs[0, nb])
    ax_ref = fig.add_subplot(gs[1, nb]) if n_ref_block else None
    ax = fig.add_subplot(gs[2, nb])
    im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-vmax, vmax=vmax)
    if ax_ref is not None:
        ax_ref.imshow(ref_values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-vmax, vmax=vmax)
        ax_ref.set_xticks([])
        ax_ref.set_yticks([])
        ax_ref.set_ylabel(
            f"healthy\nreference\n({n_ref_block} of\n{n_ref_other})", rotation=0, ha="right", va="center", fontsize=7
        )
    return fig, gs, (ax_genome, ax_ref, ax), im


def _chromosome_axes(windows: pd.DataFrame, ax, ax_ref, ax_genome) -> np.ndarray:
    """Chromosome boundaries on every axis and chromosome labels below the heatmap; returns each
    window's chromosome (str)."""
    chroms = windows["chromosome"].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, chroms[1:] != chroms[:-1]])
    ends = np.r_[starts[1:], chroms.size]
    for a in (ax, ax_ref, ax_genome):
        if a is None:
            continue
        for first in starts[1:]:
            a.axvline(first - 0.5, color="black", lw=0.5)
        a.set_xlim(-0.5, chroms.size - 0.5)
    ax.set_xticks((starts + ends - 1) / 2, [c.removeprefix("chr") for c in chroms[starts]], fontsize=7)
    ax.set_xlabel("chromosome (windows of genes in genome order)")
    ax.set_yticks([])
    return chroms


def _mark_lesions(ax_genome, windows: pd.DataFrame, chroms: np.ndarray, lesions) -> None:
    """The configured lesions on the genome axis above the heatmap."""
    ax_genome.set_yticks([])
    ax_genome.set_xticks([])
    for spine in ax_genome.spines.values():
        spine.set_visible(False)
    for lesion in lesions or []:
        inside = np.flatnonzero(
            (chroms == lesion.chromosome)
            & (windows["mid"].to_numpy() >= lesion.start)
            & (windows["mid"].to_numpy() < lesion.end)
        )
        if inside.size:
            ax_genome.axvspan(inside[0] - 0.5, inside[-1] + 0.5, color="#444444")
            ax_genome.text(
                (inside[0] + inside[-1]) / 2,
                0.5,
                f"{lesion.name} ({lesion.region}) ",
                ha="right",
                va="center",
                fontsize=7,
                transform=ax_genome.get_xaxis_transform(),
            )


def _colour_bars(fig, gs, ax, bars) -> list:
    """One colour bar per ``(title, labels, colours)`` left of the heatmap; returns the legend
    entries ``(title, patches of the levels present)``."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    handles = []
    for k, (title, labels, colours) in enumerate(bars):
        axb = fig.add_subplot(gs[2, k], sharey=ax)
        levels = list(colours)
        code = np.array([levels.index(v) for v in labels])[:, None]
        axb.imshow(
            code,
            aspect="auto",
            interpolation="nearest",
            cmap=ListedColormap([colours[v] for v in levels]),
            vmin=-0.5,
            vmax=len(levels) - 0.5,
        )
        axb.set_xticks([0], [title], rotation=90, fontsize=7)
        axb.set_yticks([])
        present = [v for v in levels if v in set(labels)]
        handles.append((title, [Patch(color=colours[v], label=v) for v in present]))
    return handles


def _legends(fig, handles: list) -> None:
    """One legend per colour bar, side by side below the heatmap."""
    for n, (title, patches) in enumerate(handles):
        fig.legend(
            handles=patches,
            title=title,
            loc="lower left",
            bbox_to_anchor=(0.05 + 0.9 * n / len(handles), 0.0),
            ncol=min(4, len(patches)),
            fontsize=7,
            title_fontsize=7,
            frameon=False,
        )


def _heatmap_title(fig, info: dict, patient, n_shown: int, mine, ref, seed: int) -> None:
    """Title, and a note of the cells shown and the reference (``info``: ``uns[key]`` of the profile)."""
    n_total = int(mine.sum())
    is_ref = bool(ref[mine].any())
    params = info.get("params", {})
    states = ", ".join(np.asarray(info.get("reference_states", []), dtype=str))
    fig.suptitle(
        f"Patient {patient}: inferred copy number (infercnvpy) against the state-matched healthy reference", fontsize=11
    )
    note = (
        f"{n_shown:,} of {n_total:,} cells shown"
        + (f" (seeded random subset per population/timepoint/call group, seed {seed})" if n_shown < n_total else "")
        + f"; reference: {params.get('n_reference_used', ref.sum()):,} healthy cells in states {states}"
        + (". This donor's own cells are part of the reference." if is_ref else ".")
    )
    fig.text(0.5, 0.925, note, ha="center", fontsize=8)


def plot_lesion_profile(
    profile: pd.DataFrame,
    lesion,
    path: str,
    *,
    patient: str,
    breakpoints: pd.DataFrame | None = None,
    cytobands: pd.DataFrame | None = None,
) -> None:
    """The lesion's chromosome for one patient: called vs uncalled cells (PNG).

    Per-gene log2 ratios of the called cells as dots (the axis is cut at -3.5 and 2.5), the
    smoothed profile of each group as a line, the configured interval shaded, the estimated
    breakpoints (dashed) with their bootstrap intervals, and reference lines at 0 and at log2 of
    the lesion's copy ratio.

    Parameters
    ----------
    profile
        Table from :func:`~remnant.tl.breakpoints.lesion_profile` (any patients/lesions; the
        patient's rows are used).
    lesion
        The :class:`remnant.tl.lesions.Lesion` profiled.
    path
        Output PNG.
    patient
        Patient to draw.
    breakpoints
        Table from :func:`~remnant.tl.breakpoints.estimate_breakpoints` (indexed by patient) or None.
    cytobands
        :func:`remnant.io.annotation.load_cytobands` table: draws the chromosome's bands below.
    """
    plt = _plt()
    where = "plot_lesion_profile"
    need = {"patient", "lesion", "group", "n_cells", "position", "log2_ratio", "smoothed"}
    if not need <= set(profile.columns):
        raise InputError(
            f"profile table lacks columns {sorted(need - set(profile.columns))}; use lesion_profile().", where=where
        )
    mine = profile[(profile["patient"].astype(str) == str(patient)) & (profile["lesion"] == lesion.name)]
    if mine.empty:
        raise InputError(f"no profile rows for patient {patient!r} and lesion {lesion.name!r}.", where=where)
    has_bands = cytobands is not None and (cytobands["chromosome"] == lesion.chromosome).any()
    fig, axes = plt.subplots(
        2 if has_bands else 1,
        1,
        figsize=(11, 5),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [1, 0.06] if has_bands else [1], "hspace": 0.05},
    )
    ax = axes[0, 0]
    _draw_groups(ax, mine, lesion)
    text = _draw_breakpoints(ax, breakpoints, patient)
    ax.set_ylabel("log2 observed / expected\n(state-matched healthy reference)")
    finite = mine["log2_ratio"].dropna()
    if not finite.empty:
        lo, hi = np.nanquantile(finite, [0.01, 0.99])
        # per-gene dots of read-count (plate) data scatter widely: keep the lines readable
        ax.set_ylim(max(min(lo, np.log2(lesion.copy_ratio) - 0.5), -3.5), min(max(hi, 0.5), 2.5))
    ax.set_title(
        f"Patient {patient}: {lesion.chromosome} in cells called / not called {lesion.name}\n{text}", fontsize=9
    )
    ax.legend(fontsize=7, frameon=False, loc="lower left", ncol=2)
    if has_bands:
        _draw_bands(axes[1, 0], cytobands, lesion.chromosome)
    else:
        ax.set_xlabel(f"{lesion.chromosome} position (Mb)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


#: Positions are drawn in Mb.
_MB = 1e6


def _draw_groups(ax, mine: pd.DataFrame, lesion) -> None:
    """The called cells' per-gene ratios (dots), each group's smoothed profile (lines), the
    configured interval and reference lines at 0 and at log2 of the lesion's copy ratio."""
    mb = _MB
    called = mine[mine["group"] == "called"]
    if not called.empty:
        ax.scatter(
            called["position"] / mb,
            called["log2_ratio"],
            s=3,
            color=GROUP_COLOURS["called"],
            alpha=0.25,
            lw=0,
            label="called cells, per gene",
        )
    for group in ("not called", "called"):
        part = mine[mine["group"] == group]
        if part.empty:
            continue
        ax.plot(
            part["position"] / mb,
            part["smoothed"],
            color=GROUP_COLOURS[group],
            lw=1.8,
            label=f"{group} ({int(part['n_cells'].iloc[0]):,} cells), smoothed",
        )
    ax.axvspan(
        lesion.start / mb,
        lesion.end / mb,
        color="#F4A582",
        alpha=0.25,
        lw=0,
        label=f"configured {lesion.name} {lesion.region}",
    )
    ax.axhline(0, color="black", lw=0.6)
    ax.axhline(np.log2(lesion.copy_ratio), color="grey", lw=0.6, ls=":", label=f"ratio {lesion.copy_ratio:g}")


def _draw_breakpoints(ax, breakpoints: pd.DataFrame | None, patient) -> str:
    """The patient's estimated breakpoints (dashed) and their bootstrap intervals (grey); returns
    the line of the title that describes them ("" without a table or a row of the patient)."""
    mb = _MB
    text = ""
    if breakpoints is not None and str(patient) in breakpoints.index.astype(str):
        bp = breakpoints.loc[breakpoints.index.astype(str) == str(patient)].iloc[0]
        if str(bp.get("reason", "") or "") == "" and np.isfinite(bp["start"]):
            for side in ("start", "end"):
                ax.axvline(bp[side] / mb, color="black", ls="--", lw=1)
                if np.isfinite(bp[f"{side}_lo"]):
                    ax.axvspan(bp[f"{side}_lo"] / mb, bp[f"{side}_hi"] / mb, color="black", alpha=0.12, lw=0)
            text = (
                f"estimated {bp['start'] / mb:.1f}-{bp['end'] / mb:.1f} Mb ({bp['start_band']}-{bp['end_band']}), "
                f"ratio {bp['ratio']:.2f}, {int(bp['n_genes_inside'])} genes; dashed: breakpoints, grey: bootstrap interval"
            )
        else:
            text = f"breakpoints not estimated: {bp.get('reason', '')}"
    return text


#: Cytoband stains as drawn below a lesion profile.
_BAND_SHADES = {
    "gneg": "#FFFFFF",
    "gpos25": "#C8C8C8",
    "gpos50": "#969696",
    "gpos75": "#646464",
    "gpos100": "#000000",
    "acen": "#B2182B",
    "gvar": "#DDDDDD",
    "stalk": "#EEEEEE",
}


def _draw_bands(axb, cytobands: pd.DataFrame, chromosome: str) -> None:
    """The chromosome's cytobands as a strip (centromere red), with the position axis label."""
    for _, b in cytobands[cytobands["chromosome"] == chromosome].iterrows():
        axb.axvspan(b["start"] / _MB, b["end"] / _MB, color=_BAND_SHADES.get(str(b["stain"]), "#BBBBBB"), lw=0)
    axb.set_yticks([])
    axb.set_xlabel(f"{chromosome} position (Mb, GRCh38); bands below, centromere red")
