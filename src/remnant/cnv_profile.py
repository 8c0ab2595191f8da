"""Genome-wide copy-number view: smoothed profiles, heatmaps, lesion profiles and breakpoints.

Per-cell calls (:mod:`remnant.lesions`) say *which* cells carry a lesion; this module shows *what*
their genome looks like and *where* each patient's lesion starts and ends.

:func:`infer_profile`
    A smoothed copy-number profile per cell with infercnvpy (:func:`infercnvpy.tl.infercnv`, the
    field's library) against **state-matched** reference categories: each reference cell's
    category is its HSPC state, so infercnvpy compares a cell with the range of healthy state
    means (its "bounded" difference: a gene counts as changed only when the cell lies outside
    the lowest and highest state mean) and differentiation programmes are not read as copy
    number. Writes

    ``obsm["X_cnv"]``
        CSR (n_obs, n_windows), float: per window, the pyramid-weighted running mean over
        ``window_size`` genes of the clipped difference of log1p(normalised expression) to the
        reference range (natural-log units), centred per cell by its median and set to 0 below
        ``dynamic_threshold`` standard deviations, exactly as infercnvpy returns it.
    ``uns["cnv"]``
        ``chr_pos`` (chromosome -> index of its first window, from infercnvpy), ``windows``
        (DataFrame, one row per column of ``X_cnv``: ``chromosome``, ``start``, ``end`` (bp,
        0-based half-open: first gene start to last gene end), ``mid`` (bp, midpoint of the central
        gene, where the pyramid weight peaks), ``n_genes``, ``first_gene``, ``last_gene``),
        ``genes`` (var_names used, genome order), ``reference_states`` (categories used) and
        ``params``.

:func:`lesion_profile` / :func:`plot_lesion_profile`
    For each patient, the chromosome of a lesion: per gene the log2 ratio of the pseudobulk counts
    of called (and of uncalled) cells to the counts expected of normal cells of the same states and
    depths, smoothed along the chromosome, with the configured interval and estimated breakpoints.

:func:`estimate_breakpoints`
    Per patient, from the called cells: a maximum-likelihood two-breakpoint segmentation of the
    lesion's chromosome (copy ratio ``rho`` inside ``[start, end)``, 1 outside) and a bootstrap
    over cells for each breakpoint.

:func:`plot_patient_heatmap`
    Chromosome-ordered heatmap of ``X_cnv`` for one patient's cells, annotated by population,
    timepoint and call, with a block of healthy reference cells on top for comparison.

Expected counts (:func:`lesion_profile`, :func:`estimate_breakpoints`)
---------------------------------------------------------------------
As in :mod:`remnant.lesions`, a cell ``c`` of state ``s`` is expected to have ``D_c * p_{s,g}``
counts of gene ``g``: ``D_c`` its counts on autosomal genes *off the lesion's chromosome* (so
neither the deletion nor a breakpoint beyond the configured interval deflates it), ``p_{s,g}``
the reference cells' summed counts of ``g`` in state ``s`` per count of their ``D``, shrunk to the
pooled reference profile with a pseudo-depth of ``shrinkage`` median reference cells (states
absent from the reference use the pooled profile). A group of cells has observed ``O_g = sum_c
x_{cg}`` and expected ``E_g = sum_c D_c p_{s(c),g}``; off the lesion's chromosome ``sum_g O_g =
sum_g E_g`` by construction, so the ratio is 1 where the copy number is normal.

Nothing densifies the cohort: sparse products give per-group sums; dense blocks are at most
cells-of-one-patient x genes-of-one-chromosome, or the rows of one heatmap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputError
from .lesions import cell_mask, counts_matrix, depth_on, require_positions

__all__ = [
    "estimate_breakpoints",
    "infer_profile",
    "lesion_profile",
    "plot_lesion_profile",
    "plot_message",
    "plot_patient_heatmap",
    "window_positions",
]

log = logging.getLogger(__name__)

_AUTOSOMES = [f"chr{i}" for i in range(1, 23)]
#: Colours of the call bar and of the profile lines.
CALL_COLOURS = {"called": "#6A3D9A", "not called": "#D9D9D9"}
GROUP_COLOURS = {"called": "#6A3D9A", "not called": "#1B9E77"}


# ================================================================================================
# input checks shared by the functions below
# ================================================================================================
def _obs_key(adata: anndata.AnnData, key: str, where: str) -> None:
    if key not in adata.obs:
        raise InputError(f"obs lacks column {key!r}.", where=where)


# ================================================================================================
# infercnvpy profile
# ================================================================================================
def window_positions(var: pd.DataFrame, window_size: int, step: int,
                     exclude_chromosomes: Sequence[str] | None = ("chrX", "chrY")) -> pd.DataFrame:
    """Genomic position of every window infercnvpy 0.6 computes for genes ``var``.

    Reproduces :func:`infercnvpy.tl.infercnv`'s layout: chromosomes in natural order (names
    starting with ``chr``, not ``chrM``, minus ``exclude_chromosomes``); within a chromosome,
    genes sorted by ``start`` (the same ``sort_values`` call) and windows of ``window_size``
    consecutive genes every ``step`` genes, or one window of all genes when the chromosome has no
    more than ``window_size`` of them.

    Returns
    -------
    DataFrame with one row per window (the columns of ``obsm["X_cnv"]``): ``chromosome``,
    ``start``, ``end`` (bp, 0-based half-open, first gene start to last gene end), ``mid`` (bp,
    midpoint of the central gene), ``n_genes``, ``first_gene``, ``last_gene`` (var_names).
    """
    from infercnvpy.tl._infercnv import _natural_sort

    skip = var["chromosome"].isnull()
    if exclude_chromosomes is not None:
        skip = skip | var["chromosome"].isin(exclude_chromosomes)
    var = var.loc[~skip, ["chromosome", "start", "end"]]
    chromosomes = _natural_sort([c for c in var["chromosome"].unique() if c.startswith("chr") and c != "chrM"])
    rows = []
    for chrom in chromosomes:
        genes = var.loc[var["chromosome"] == chrom].sort_values("start")
        start = genes["start"].to_numpy(np.int64)
        end = genes["end"].to_numpy(np.int64)
        names = genes.index.to_numpy()
        n = len(genes)
        if window_size < n:
            firsts = np.arange(0, n - window_size + 1)[::step]
            size = window_size
        else:
            firsts, size = np.array([0]), n
        for a in firsts:
            b = a + size
            centre = a + (size - 1) // 2
            rows.append((chrom, int(start[a:b].min()), int(end[a:b].max()), int((start[centre] + end[centre]) // 2),
                         int(size), str(names[a]), str(names[b - 1])))
    return pd.DataFrame(rows, columns=["chromosome", "start", "end", "mid", "n_genes", "first_gene", "last_gene"])


def infer_profile(
    adata: anndata.AnnData,
    reference_mask,
    *,
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    window_size: int = 100,
    step: int = 10,
    min_mean: float = 0.1,
    target_sum: float = 1e4,
    min_reference_cells: int = 20,
    lfc_clip: float = 3.0,
    dynamic_threshold: float | None = 1.5,
    exclude_chromosomes: Sequence[str] | None = ("chrX", "chrY"),
    chunksize: int = 5000,
    n_jobs: int = 1,
    key_added: str = "cnv",
) -> None:
    """Smoothed copy-number profile per cell (infercnvpy) against state-matched reference cells.

    Parameters
    ----------
    adata
        Cells x genes. Raw counts in ``adata.layers[layer]`` (``layer=None``: ``adata.X``), sparse
        or dense; ``var`` needs ``chromosome``, ``start``, ``end`` (bp); ``var_names`` unique.
    reference_mask
        Boolean array (n_obs,) or the name of a boolean obs column: the normal reference cells.
    state_key
        obs column with the HSPC state. Reference cells of each state with at least
        ``min_reference_cells`` cells form one infercnvpy reference category (the other reference
        cells are left out of the reference and logged).
    layer
        Layer with raw counts.
    window_size, step
        infercnvpy's running window (genes) and the stride between reported windows (genes).
    min_mean
        Genes are used when their mean normalised expression over reference cells (counts per
        ``target_sum``) is at least this; unexpressed genes only dilute the windows.
    target_sum
        Counts per cell after normalisation (``sc.pp.normalize_total``), before log1p.
    min_reference_cells
        Smallest number of reference cells for a state to be a category (a mean of a handful of
        cells is noisy and would widen infercnvpy's bounds for every cell).
    lfc_clip, dynamic_threshold, exclude_chromosomes, chunksize
        Passed to :func:`infercnvpy.tl.infercnv` (chunksize = cells per dense block).
    n_jobs
        infercnvpy worker processes.
    key_added
        Results go to ``obsm[f"X_{key_added}"]`` and ``uns[key_added]``.

    Writes
    ------
    ``obsm[f"X_{key_added}"]`` (CSR, n_obs x n_windows) and ``uns[key_added]`` with ``chr_pos``,
    ``windows`` (see :func:`window_positions`), ``genes``, ``reference_states``, ``params``; see the
    module docstring for units.

    Notes
    -----
    The counts are normalised on a copy restricted to the genes used: the library size is each
    cell's total over *all* genes (as ``sc.pp.normalize_total`` on the full matrix), the copy is
    CSR float32, log1p is applied to its stored values. Cost: one sparse copy of the used genes plus
    infercnvpy's dense blocks of ``chunksize`` cells x used genes.
    """
    import infercnvpy as cnv

    where = "infer_profile"
    X = counts_matrix(adata, layer, where)
    require_positions(adata.var, where)
    _obs_key(adata, state_key, where)
    if not adata.var_names.is_unique:
        raise InputError("var_names must be unique (infercnvpy needs one row per gene).", where=where)
    if window_size < 1 or step < 1:
        raise InputError(f"window_size ({window_size}) and step ({step}) must be >= 1.", where=where)
    if target_sum <= 0:
        raise InputError(f"target_sum must be positive; got {target_sum}.", where=where)
    ref = cell_mask(adata, reference_mask, "reference_mask", where)
    if ref.sum() < min_reference_cells:
        raise InputError(f"only {int(ref.sum())} reference cells; need at least min_reference_cells={min_reference_cells}.",
                         where=f"{where}(reference_mask=...)")
    t0 = time.perf_counter()

    state = adata.obs[state_key].astype(object).where(adata.obs[state_key].notna(), None).to_numpy()
    ref_counts = pd.Series(state[ref]).value_counts()
    categories = sorted(str(s) for s, n in ref_counts.items() if s is not None and n >= min_reference_cells)
    if not categories:
        raise InputError(f"no HSPC state has >= {min_reference_cells} reference cells (reference states: "
                         f"{dict(ref_counts)}); lower min_reference_cells or add reference cells.", where=where)
    left_out = int(ref.sum() - ref_counts[ref_counts.index.isin(categories)].sum())
    if left_out:
        log.info("infer_profile: %d reference cells in states with < %d reference cells are not in the reference",
                 left_out, min_reference_cells)

    # library sizes over all genes, then only the used genes are copied and normalised
    total = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    total[total == 0] = 1.0  # an empty cell stays all-zero
    scale = target_sum / total
    positioned = adata.var["chromosome"].notna().to_numpy()
    ref_idx = np.flatnonzero(ref)
    ref_mean = np.asarray(X[ref_idx].T @ scale[ref_idx]).ravel() / ref_idx.size
    use = positioned & (ref_mean >= min_mean)
    if exclude_chromosomes is not None:
        use &= ~adata.var["chromosome"].isin(list(exclude_chromosomes)).to_numpy()
    if use.sum() == 0:
        raise InputError(f"no gene with a genomic position reaches min_mean={min_mean} in the reference.", where=where)
    cols = np.flatnonzero(use)
    # one sparse copy of the used genes, scaled and logged in place
    norm = sp.csr_matrix(X[:, cols], dtype=np.float32)
    if np.shares_memory(norm.data, X.data):  # never scale the caller's counts
        norm = norm.copy()
    norm.data *= np.repeat(scale.astype(np.float32), np.diff(norm.indptr))
    np.log1p(norm.data, out=norm.data)

    category = np.where(ref & np.isin(state.astype(str), categories), state.astype(str), "query")
    light = anndata.AnnData(
        X=norm,
        obs=pd.DataFrame({"_cnv_category": category}, index=adata.obs_names),
        var=adata.var.iloc[cols][["chromosome", "start", "end"]].copy(),
    )
    light.var["chromosome"] = light.var["chromosome"].astype(str)
    t1 = time.perf_counter()
    cnv.tl.infercnv(light, reference_key="_cnv_category", reference_cat=categories, lfc_clip=lfc_clip,
                    window_size=window_size, step=step, dynamic_threshold=dynamic_threshold,
                    exclude_chromosomes=exclude_chromosomes, chunksize=chunksize, n_jobs=n_jobs, key_added="cnv")
    t2 = time.perf_counter()
    windows = window_positions(light.var, window_size, step, exclude_chromosomes)
    result = light.obsm["X_cnv"]
    if len(windows) != result.shape[1]:  # infercnvpy changed its layout: do not mislabel windows
        raise RuntimeError(f"window table has {len(windows)} rows but infercnvpy returned {result.shape[1]} windows; "
                           "the installed infercnvpy lays windows out differently from 0.6.")
    adata.obsm[f"X_{key_added}"] = sp.csr_matrix(result)
    adata.uns[key_added] = {
        "chr_pos": {str(k): int(v) for k, v in light.uns["cnv"]["chr_pos"].items()},
        "windows": windows,
        "genes": np.asarray(adata.var_names[cols], dtype=str),
        "reference_states": np.asarray(categories, dtype=str),
        "params": {
            "state_key": state_key, "layer": layer or "", "window_size": int(window_size), "step": int(step),
            "min_mean": float(min_mean), "target_sum": float(target_sum), "min_reference_cells": int(min_reference_cells),
            "lfc_clip": float(lfc_clip), "dynamic_threshold": float("nan") if dynamic_threshold is None else float(dynamic_threshold),
            "exclude_chromosomes": list(exclude_chromosomes or []), "n_reference": int(ref.sum()),
            "n_reference_used": int(ref.sum()) - left_out, "n_genes": int(cols.size),
        },
    }
    log.info("infer_profile: %d cells, %d genes, %d windows, reference states %s; normalise %.1f s, infercnv %.1f s",
             adata.n_obs, cols.size, result.shape[1], categories, t1 - t0, t2 - t1)


# ================================================================================================
# expected counts of normal cells of the same state and depth
# ================================================================================================
class _Expectation:
    """State-matched reference profiles for the genes of one chromosome (see module docstring).

    Attributes: ``chrom_cols`` (var indices of the chromosome's genes, by midpoint), ``mid`` (their
    midpoints, bp), ``depth`` (n_obs, counts on autosomes off the chromosome), ``row`` (n_obs,
    profile row per cell; the last row is the pooled profile), ``P`` (n_rows, n_chrom_genes) and
    ``P_off`` (n_rows, n_off_genes) expected counts per count of depth, ``off_cols``.
    """

    def __init__(self, X, var: pd.DataFrame, ref: np.ndarray, state: pd.Series, chromosome: str, shrinkage: float):
        chrom = var["chromosome"].astype(str).to_numpy()
        mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
        on = np.flatnonzero(chrom == chromosome)
        if on.size == 0:
            raise InputError(f"no gene of the AnnData lies on {chromosome}.", where="lesion chromosome")
        self.chrom_cols = on[np.argsort(mid[on], kind="stable")]
        self.mid = mid[self.chrom_cols]
        off = np.isin(chrom, _AUTOSOMES) & (chrom != chromosome)
        self.off_cols = np.flatnonzero(off)
        self.depth = depth_on(X, off)
        labels = state.astype(str).where(state.notna(), "").to_numpy()
        states = sorted(set(labels[ref]) - {"", "nan"})
        code = {s: i for i, s in enumerate(states)}
        self.states = states
        self.row = np.array([code.get(s, len(states)) for s in labels], dtype=np.int64)
        ref_idx = np.flatnonzero(ref)
        n_rows = len(states) + 1
        # per-state reference sums (last row: all reference cells)
        grp = np.where(self.row[ref_idx] < len(states), self.row[ref_idx], -1)
        G = sp.csr_matrix((np.ones(ref_idx.size), (np.where(grp >= 0, grp, len(states)), np.arange(ref_idx.size))),
                          shape=(n_rows, ref_idx.size))
        D = np.asarray(G @ self.depth[ref_idx]).ravel()
        cols = np.concatenate([self.chrom_cols, self.off_cols])
        S = np.asarray((G @ sp.csr_matrix(X[ref_idx][:, cols], dtype=np.float64)).toarray())
        pooled = S.sum(0) / max(D.sum(), 1.0)
        pseudo = shrinkage * float(np.median(self.depth[ref_idx]))
        P = (S + pseudo * pooled[None, :]) / (D[:, None] + pseudo)
        P[-1] = pooled  # cells of states the reference lacks
        self.P = P[:, : self.chrom_cols.size]
        self.P_off = P[:, self.chrom_cols.size:]

    def sums(self, X, cells: np.ndarray, weights: np.ndarray | None = None, off: bool = False):
        """Observed and expected sums over ``cells`` (weights: (B, n_cells) -> (B, genes) each)."""
        cols = self.off_cols if off else self.chrom_cols
        P = self.P_off if off else self.P
        Xc = sp.csr_matrix(X[cells][:, cols], dtype=np.float64)
        dep = self.depth[cells]
        onehot = sp.csr_matrix((np.ones(cells.size), (np.arange(cells.size), self.row[cells])), shape=(cells.size, P.shape[0]))
        if weights is None:
            O = np.asarray(Xc.sum(axis=0)).ravel()
            E = np.asarray(onehot.T @ dep).ravel() @ P
            return O, E
        O = np.asarray((Xc.T @ weights.T).T)
        E = np.asarray((onehot.T @ (weights * dep[None, :]).T).T) @ P
        return O, E


def _log_ratio(O, E):
    """Natural-log ratio of observed to expected with half a count added to both."""
    return np.log((O + 0.5) / (E + 0.5))


def _window_log2_ratio(O: np.ndarray, E: np.ndarray, ok: np.ndarray, width: int) -> np.ndarray:
    """log2(sum O / sum E) over a centred window of ``width`` genes among those with ``ok``.

    This is the expected-weighted mean of the per-gene ratios, on the log scale. A plain mean of
    per-gene log ratios is biased low where expected counts are small (about -0.3 log2 at 5-10
    expected counts on the simulator: log of a few counts, Jensen), which would exaggerate a loss.
    Genes without ``ok`` get the value of their window too (NaN when the window is empty).
    """
    pos = np.flatnonzero(ok)
    out = np.full(O.size, np.nan)
    if pos.size == 0:
        return out
    co = np.concatenate([[0.0], np.cumsum(O[pos])])
    ce = np.concatenate([[0.0], np.cumsum(E[pos])])
    # window of each gene: the ok genes around its rank among ok genes
    rank = np.clip(np.searchsorted(pos, np.arange(O.size)), 0, pos.size - 1)
    half = width // 2
    lo = np.clip(rank - half, 0, pos.size)
    hi = np.clip(rank + half + 1, 0, pos.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log2((co[hi] - co[lo]) / (ce[hi] - ce[lo]))
    return np.where(np.isfinite(out), out, np.nan)


def _prepare(adata, lesion, call_key, patient_key, reference_mask, state_key, layer, where):
    X = counts_matrix(adata, layer, where)
    require_positions(adata.var, where)
    call_key = call_key or f"{lesion.name}_call"
    for key in (call_key, patient_key, state_key):
        _obs_key(adata, key, where)
    ref = cell_mask(adata, reference_mask, "reference_mask", where)
    if ref.sum() < 10:
        raise InputError(f"only {int(ref.sum())} reference cells; need at least 10.", where=f"{where}(reference_mask=...)")
    called = cell_mask(adata, call_key, "call_key", where)
    return X, ref, called


# ================================================================================================
# lesion profile of called vs uncalled cells
# ================================================================================================
def lesion_profile(
    adata: anndata.AnnData,
    lesion,
    *,
    reference_mask="reference",
    call_key: str | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    min_expected: float = 5.0,
    smooth_genes: int = 21,
    shrinkage: float = 20.0,
) -> pd.DataFrame:
    """Per patient, log2 ratio of observed to expected counts along the lesion's chromosome.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]``), ``var`` positions and obs columns
        ``call_key``, ``patient_key``, ``state_key``.
    lesion
        A :class:`remnant.lesions.Lesion`; its chromosome is profiled.
    reference_mask
        Boolean array (n_obs,) or obs column: the normal reference cells (expected profiles).
    call_key
        Boolean obs column of the lesion call (default ``f"{lesion.name}_call"``).
    min_expected
        A gene gets a ratio in a group when the group's expected count is at least this (fewer
        expected counts give a ratio dominated by counting noise and the half-count offset).
    smooth_genes
        Width of the centred smoothing window over the genes with a ratio (genes, not bp).
    shrinkage
        Pseudo-cells pulling a state's reference profile to the pooled one.

    Returns
    -------
    DataFrame, one row per patient, group and gene of the chromosome (genes by midpoint):
    ``patient``, ``lesion``, ``group`` (``"called"``/``"not called"``), ``n_cells``, ``gene``
    (var_name), ``gene_name`` (when var has it), ``position`` (gene midpoint, bp), ``observed``,
    ``expected`` (counts summed over the group's cells), ``log2_ratio`` (log2 of (observed + 0.5) /
    (expected + 0.5); NaN below ``min_expected``), ``smoothed`` (log2 of summed observed over summed
    expected counts of the ``smooth_genes`` genes with a ratio centred on the gene: the
    expected-weighted mean of the per-gene ratios).
    Groups without cells have no rows.
    """
    where = "lesion_profile"
    X, ref, called = _prepare(adata, lesion, call_key, patient_key, reference_mask, state_key, layer, where)
    if smooth_genes < 1:
        raise InputError(f"smooth_genes must be >= 1; got {smooth_genes}.", where=where)
    ex = _Expectation(X, adata.var, ref, adata.obs[state_key], lesion.chromosome, shrinkage)
    genes = adata.var_names[ex.chrom_cols]
    names = adata.var["gene_name"].iloc[ex.chrom_cols].astype(str).to_numpy() if "gene_name" in adata.var else np.asarray(genes)
    patients = adata.obs[patient_key].astype(str).to_numpy()
    parts = []
    for patient in _ordered(adata.obs[patient_key]):
        for group, sel in (("called", called), ("not called", ~called)):
            cells = np.flatnonzero((patients == patient) & sel)
            if cells.size == 0:
                continue
            O, E = ex.sums(X, cells)
            ok = E >= min_expected
            lr = np.where(ok, _log_ratio(O, E) / np.log(2), np.nan)
            parts.append(pd.DataFrame({
                "patient": patient, "lesion": lesion.name, "group": group, "n_cells": int(cells.size),
                "gene": np.asarray(genes), "gene_name": names, "position": ex.mid, "observed": O, "expected": E,
                "log2_ratio": lr, "smoothed": _window_log2_ratio(O, E, ok, smooth_genes),
            }))
    columns = ["patient", "lesion", "group", "n_cells", "gene", "gene_name", "position", "observed", "expected",
               "log2_ratio", "smoothed"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _ordered(values: pd.Series) -> list[str]:
    """Levels in categorical order when categorical, else sorted; only levels present."""
    present = set(values.astype(str))
    levels = [str(v) for v in values.cat.categories] if hasattr(values, "cat") else sorted(present)
    return [v for v in levels if v in present]


# ================================================================================================
# breakpoints
# ================================================================================================
def _segment(l: np.ndarray, w: np.ndarray, sign: float, min_genes: int) -> tuple[int, int, float, float]:
    """Best single segment [i, j) of shifted mean against mean 0 (weighted Gaussian ML).

    With ``l_g ~ N(mu_g, 1/w_g)``, ``mu_g = m`` inside and 0 outside, the log-likelihood gain of
    the segment over "no change" at the ML ``m = sum(w l)/sum(w)`` is ``(sum w l)^2 / (2 sum w)``.
    Only segments whose ``m`` has the lesion's sign and which hold >= ``min_genes`` genes count.
    Returns (i, j, m, gain); (-1, -1, nan, 0) when no segment qualifies.
    """
    n = l.size
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cl = np.concatenate([[0.0], np.cumsum(w * l)])
    best = (-1, -1, float("nan"), 0.0)
    # rows of i in blocks keep the (i, j) table small for long chromosomes
    for a in range(0, n + 1, 512):
        i = np.arange(a, min(a + 512, n + 1))[:, None]
        SW = cw[None, :] - cw[i]
        SL = cl[None, :] - cl[i]
        j = np.arange(n + 1)[None, :]
        ok = (j - i >= min_genes) & (sign * SL > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where(ok, SL**2 / (2.0 * SW), -np.inf)
        k = int(np.argmax(gain))
        g = float(gain.flat[k])
        if g > best[3]:
            r, c = divmod(k, n + 1)
            ii, jj = int(i[r, 0]), int(c)
            best = (ii, jj, float(SL[r, c] / SW[r, c]), g)
    return best


def _band_of(cytobands: pd.DataFrame | None, chromosome: str, position: float) -> str:
    if cytobands is None or not np.isfinite(position):
        return ""
    on = cytobands[cytobands["chromosome"] == chromosome]
    hit = on[(on["start"] <= position) & (on["end"] > position)]
    if hit.empty:
        hit = on.iloc[[-1]] if position >= on["end"].max() and not on.empty else hit
    return f"{chromosome.removeprefix('chr')}{hit['band'].iloc[0]}" if not hit.empty else ""


def estimate_breakpoints(
    adata: anndata.AnnData,
    lesion,
    *,
    reference_mask="reference",
    call_key: str | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    cytobands: pd.DataFrame | None = None,
    min_cells: int = 20,
    min_expected: float = 5.0,
    min_genes: int = 10,
    n_boot: int = 200,
    ci: float = 0.95,
    shrinkage: float = 20.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Each patient's lesion breakpoints from the pseudobulk of its called cells.

    Model
    -----
    The genes of the lesion's chromosome with an expected count >= ``min_expected`` in the
    patient's called cells, in midpoint order, have log ratios ``l_g = log((O_g+0.5)/(E_g+0.5))``
    (see the module docstring for ``O``, ``E``) with variance ``1/(E_g+0.5) + tau^2``: counting
    noise plus a gene-level term ``tau^2`` (patient-specific expression, reference mismatch)
    measured on the same cells' autosomal genes off the chromosome (robust variance of their log
    ratios minus their counting variance). The copy ratio is ``rho`` inside ``[start, end)`` and 1
    outside; the ML pair of breakpoints (and ``log rho``, the weighted mean inside) is found by an
    exhaustive scan with cumulative sums (O(genes^2)). For a loss only segments with ``rho < 1``
    count, for a gain ``rho > 1``. The reported ``rho`` is the pooled ratio ``sum O / sum E`` of the
    genes inside (the mean log ratio is biased low by counting noise). A breakpoint lies halfway between the midpoints of the last
    gene outside and the first gene inside (the chromosome's end when the segment reaches it).
    Equal gene weights would let a few highly expressed genes with patient-specific expression
    move the breakpoints; the gene-level variance caps their weight.

    Bootstrap: the called cells are resampled with replacement ``n_boot`` times (profiles,
    ``tau`` and genes fixed) and the scan repeated. Expression only places a breakpoint in the gap
    between two scanned genes, so a breakpoint's interval runs from the ``(1-ci)/2`` quantile of
    the left edges to the ``(1+ci)/2`` quantile of the right edges of the gaps the replicates
    chose; ``rho``'s is the percentile interval. It measures cell-sampling noise only: gene-level
    noise is fixed within a patient, so the true breakpoint may lie a gene or two outside it
    (coverage measured in ``benchmarks/cnv_profile.py``).

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]``), ``var`` positions and obs columns
        ``call_key``, ``patient_key``, ``state_key``.
    lesion
        A :class:`remnant.lesions.Lesion`.
    reference_mask
        Boolean array (n_obs,) or obs column: the normal reference cells.
    call_key
        Boolean obs column of the lesion call (default ``f"{lesion.name}_call"``).
    cytobands
        :func:`remnant.annotation.load_cytobands` table: names the band of each breakpoint and
        gives the chromosome length (without it bands are empty and the length is the last gene end).
    min_cells
        Patients with fewer called cells get NaN and a ``reason``.
    min_expected
        Genes with fewer expected counts in the called cells are not used.
    min_genes
        Smallest number of genes inside a segment.
    n_boot, ci, seed
        Bootstrap replicates, interval level (0-1) and seed.
    shrinkage
        Pseudo-cells pulling a state's reference profile to the pooled one.

    Returns
    -------
    DataFrame indexed by patient (``patient_key`` levels) with ``lesion``, ``chromosome``,
    ``n_called`` (called cells), ``n_genes`` (genes scanned), ``n_genes_inside``, ``start``,
    ``end`` (bp, 0-based half-open), ``start_lo``, ``start_hi``, ``end_lo``, ``end_hi`` (bootstrap
    interval, bp), ``start_band``, ``end_band`` (cytoband, e.g. ``5q13.2``), ``ratio`` (``rho``, pooled inside)
    with ``ratio_lo``, ``ratio_hi``, ``llr`` (log-likelihood gain of the segment over no change,
    natural log), ``tau`` (gene-level sd, natural log) and ``reason`` (empty when estimated).
    """
    where = "estimate_breakpoints"
    X, ref, called = _prepare(adata, lesion, call_key, patient_key, reference_mask, state_key, layer, where)
    if not 0 < ci < 1:
        raise InputError(f"ci must be between 0 and 1; got {ci}.", where=where)
    if n_boot < 0 or min_cells < 1 or min_genes < 1:
        raise InputError("n_boot must be >= 0, min_cells and min_genes >= 1.", where=where)
    ex = _Expectation(X, adata.var, ref, adata.obs[state_key], lesion.chromosome, shrinkage)
    if cytobands is not None and (cytobands["chromosome"] == lesion.chromosome).any():
        length = int(cytobands.loc[cytobands["chromosome"] == lesion.chromosome, "end"].max())
    else:
        length = int(adata.var["end"].iloc[ex.chrom_cols].max())
    sign = -1.0 if lesion.type == "loss" else 1.0
    patients = adata.obs[patient_key].astype(str).to_numpy()
    alpha = (1 - ci) / 2
    rows = []
    for patient in _ordered(adata.obs[patient_key]):
        cells = np.flatnonzero((patients == patient) & called)
        row = {"patient": patient, "lesion": lesion.name, "chromosome": lesion.chromosome, "n_called": int(cells.size),
               "n_genes": 0, "n_genes_inside": 0, **{k: np.nan for k in ("start", "end", "start_lo", "start_hi", "end_lo",
               "end_hi", "ratio", "ratio_lo", "ratio_hi", "llr", "tau")}, "start_band": "", "end_band": "", "reason": ""}
        rows.append(row)
        if cells.size < min_cells:
            row["reason"] = f"{cells.size} called cells (< min_cells {min_cells})"
            continue
        O, E = ex.sums(X, cells)
        use = E >= min_expected
        if use.sum() < 2 * min_genes:
            row["reason"] = f"{int(use.sum())} genes on {lesion.chromosome} with >= {min_expected} expected counts"
            continue
        Oo, Eo = ex.sums(X, cells, off=True)
        keep = Eo >= min_expected
        lo = _log_ratio(Oo[keep], Eo[keep])
        robust_var = (1.4826 * np.median(np.abs(lo - np.median(lo)))) ** 2
        tau2 = max(robust_var - float(np.median(1.0 / (Eo[keep] + 0.5))), 0.0)
        mid = ex.mid[use]
        # boundary k (between scanned genes k-1 and k): the gap (left[k], right[k]) and its middle
        left = np.concatenate([[0], mid])
        right = np.concatenate([mid, [length]])
        bounds = np.concatenate([[0], (mid[:-1] + mid[1:]) // 2, [length]])

        def scan(O_, E_):
            l_ = _log_ratio(O_[use], E_[use])
            w_ = 1.0 / (1.0 / (E_[use] + 0.5) + tau2)
            i_, j_, m_, g_ = _segment(l_, w_, sign, min_genes)
            # rho as the pooled ratio inside: the mean of log ratios is biased low by counting
            # noise (Jensen), more so in bootstrap replicates, which add a second round of it
            rho_ = O_[use][i_:j_].sum() / E_[use][i_:j_].sum() if i_ >= 0 else np.nan
            return i_, j_, rho_, g_

        i, j, rho, gain = scan(O, E)
        row.update(n_genes=int(use.sum()), tau=float(np.sqrt(tau2)))
        if i < 0:
            row["reason"] = f"no segment of >= {min_genes} genes with ratio {'< 1' if sign < 0 else '> 1'}"
            continue
        row.update(start=float(bounds[i]), end=float(bounds[j]), n_genes_inside=int(j - i), ratio=float(rho),
                   llr=float(gain), start_band=_band_of(cytobands, lesion.chromosome, bounds[i]),
                   end_band=_band_of(cytobands, lesion.chromosome, bounds[j] - 1))
        if n_boot > 0:
            rng = np.random.default_rng([int(seed), int.from_bytes(patient.encode()[:8].ljust(8, b"\0"), "little")])
            boot = np.full((n_boot, 5), np.nan)
            for a in range(0, n_boot, 50):  # blocks of replicates bound the (B, genes) temporaries
                B = min(50, n_boot - a)
                W = rng.multinomial(cells.size, np.full(cells.size, 1.0 / cells.size), size=B).astype(np.float64)
                Ob, Eb = ex.sums(X, cells, weights=W)
                for b in range(B):
                    bi, bj, bm, _ = scan(Ob[b], Eb[b])
                    if bi >= 0:
                        boot[a + b] = (left[bi], right[bi], left[bj], right[bj], bm)
            lo_q = np.nanquantile(boot, alpha, axis=0)
            hi_q = np.nanquantile(boot, 1 - alpha, axis=0)
            row.update(start_lo=lo_q[0], start_hi=hi_q[1], end_lo=lo_q[2], end_hi=hi_q[3], ratio_lo=lo_q[4], ratio_hi=hi_q[4])
    return pd.DataFrame(rows).set_index("patient")


# ================================================================================================
# figures
# ================================================================================================
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
    from .plotting import palette

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
    reference_mask="reference",
    key: str = "cnv",
    lesions: Sequence | None = None,
    max_cells: int = 1500,
    n_reference_cells: int = 200,
    seed: int = 0,
    vmax: float | None = None,
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
        Cells with ``obsm[f"X_{key}"]`` and ``uns[key]`` from :func:`infer_profile` and the obs
        columns named below (no gene matrix needed).
    patient
        A value of ``obs[patient_key]``.
    path
        Output PNG.
    call_key
        Boolean obs column(s) of lesion calls, one colour bar each (e.g. ``"del5q_call"``).
    reference_mask
        Boolean array (n_obs,) or obs column of the reference cells; ``None``: no reference block.
    lesions
        :class:`remnant.lesions.Lesion` objects to mark on the genome axis.
    max_cells
        Above this many cells, a seeded random subset is drawn per population/timepoint/call group
        (proportional, at least 10 per group); the figure says how many are shown.
    n_reference_cells
        Reference cells shown (seeded random subset of the reference cells of other donors).
    seed
        Seed of the downsampling.
    vmax
        Colour limit (symmetric); default the 99.5th percentile of |values| shown.
    """
    plt = _plt()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    where = "plot_patient_heatmap"
    if f"X_{key}" not in adata.obsm or key not in adata.uns or "windows" not in adata.uns[key]:
        raise InputError(f"no copy-number profile: obsm['X_{key}'] and uns['{key}']['windows'] come from infer_profile.",
                         where=where)
    call_keys = [call_key] if isinstance(call_key, str) else list(call_key)
    for k in (*call_keys, patient_key, population_key, timepoint_key):
        _obs_key(adata, k, where)
    obs = adata.obs
    mine = (obs[patient_key].astype(str) == str(patient)).to_numpy()
    if not mine.any():
        raise InputError(f"no cell of patient {patient!r} in obs[{patient_key!r}].", where=where)
    if max_cells < 1:
        raise InputError(f"max_cells must be >= 1; got {max_cells}.", where=where)
    ref = cell_mask(adata, reference_mask, "reference_mask", where) if reference_mask is not None else np.zeros(adata.n_obs, bool)
    rng = np.random.default_rng(seed)
    M = sp.csr_matrix(adata.obsm[f"X_{key}"])
    windows = adata.uns[key]["windows"]
    if not isinstance(windows, pd.DataFrame):
        windows = pd.DataFrame(windows)

    # patient rows: order by population, timepoint, call; downsample per group above the cap
    idx = np.flatnonzero(mine)
    sub = obs.iloc[idx]
    calls = [cell_mask(adata, k, "call_key", where)[idx] for k in call_keys]
    pop_levels, pop_col = _bar_colours(sub[population_key], "population")
    tp = sub[timepoint_key].astype(object).where(sub[timepoint_key].notna(), "NA").astype(str)
    tp_levels = [v for v in _ordered(sub[timepoint_key]) if v in set(tp)] + sorted(set(tp) - set(_ordered(sub[timepoint_key])))
    tp_col = _bar_colours(pd.Series(pd.Categorical(tp, categories=tp_levels)), "timepoint")[1]
    order = pd.DataFrame({"pop": [pop_levels.index(str(v)) for v in sub[population_key].astype(str)],
                          "tp": [tp_levels.index(v) for v in tp], "i": np.arange(idx.size)})
    call_cols = [f"call{k}" for k in range(len(calls))]
    for col, c in zip(call_cols, calls):
        order[col] = c.astype(int)
    order = order.sort_values(["pop", "tp", *call_cols, "i"], kind="stable")
    groups = order[["pop", "tp", *call_cols]].astype(str).agg("|".join, axis=1)
    keep = _downsample(groups.reset_index(drop=True), max_cells, rng)
    shown = order.iloc[keep]
    shown_groups = groups.to_numpy()[keep]
    rows = idx[shown["i"].to_numpy()]
    values = M[rows].toarray()

    ref_other = np.flatnonzero(ref & ~mine)
    ref_rows = np.sort(rng.choice(ref_other, size=min(n_reference_cells, ref_other.size), replace=False)) if ref_other.size else ref_other
    ref_values = M[ref_rows].toarray() if ref_rows.size else np.zeros((0, M.shape[1]))
    if vmax is None:
        both = np.abs(np.concatenate([values.ravel(), ref_values.ravel()]))
        vmax = float(np.quantile(both, 0.995)) if both.size and np.any(both > 0) else 0.1
        vmax = max(vmax, 1e-3)

    n_ref_block = ref_values.shape[0]
    height_ref = max(0.18, n_ref_block / max(n_ref_block + values.shape[0], 1)) if n_ref_block else 0.0
    fig = plt.figure(figsize=(14, 8.5))
    nb = 2 + len(call_keys)  # colour bars left of the heatmap
    gs = fig.add_gridspec(3, nb + 2, width_ratios=[0.25] * nb + [14, 0.3], height_ratios=[0.06, height_ref or 1e-6, 1.0 - height_ref],
                          wspace=0.03, hspace=0.04, left=0.08, right=0.9, top=0.88, bottom=0.17)
    cmap = "RdBu_r"
    ax_genome = fig.add_subplot(gs[0, nb])
    ax_ref = fig.add_subplot(gs[1, nb]) if n_ref_block else None
    ax = fig.add_subplot(gs[2, nb])
    im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-vmax, vmax=vmax)
    if ax_ref is not None:
        ax_ref.imshow(ref_values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-vmax, vmax=vmax)
        ax_ref.set_xticks([])
        ax_ref.set_yticks([])
        ax_ref.set_ylabel(f"healthy\nreference\n({n_ref_block} of\n{ref_other.size})", rotation=0, ha="right", va="center", fontsize=7)

    # chromosome boundaries and labels
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

    # lesions on the genome axis
    ax_genome.set_yticks([])
    ax_genome.set_xticks([])
    for spine in ax_genome.spines.values():
        spine.set_visible(False)
    for lesion in lesions or []:
        inside = np.flatnonzero((chroms == lesion.chromosome) & (windows["mid"].to_numpy() >= lesion.start)
                                & (windows["mid"].to_numpy() < lesion.end))
        if inside.size:
            ax_genome.axvspan(inside[0] - 0.5, inside[-1] + 0.5, color="#444444")
            ax_genome.text((inside[0] + inside[-1]) / 2, 0.5, f"{lesion.name} ({lesion.region}) ", ha="right", va="center",
                           fontsize=7, transform=ax_genome.get_xaxis_transform())

    # colour bars
    bars = [
        ("population", [str(v) for v in sub[population_key].astype(str).to_numpy()[shown["i"]]], pop_col),
        ("timepoint", list(tp.to_numpy()[shown["i"]]), tp_col),
    ] + [
        (k.removesuffix("_call") + " call", ["called" if v else "not called" for v in c[shown["i"]]], CALL_COLOURS)
        for k, c in zip(call_keys, calls)
    ]
    handles = []
    for k, (title, labels, colours) in enumerate(bars):
        axb = fig.add_subplot(gs[2, k], sharey=ax)
        levels = list(colours)
        code = np.array([levels.index(v) for v in labels])[:, None]
        axb.imshow(code, aspect="auto", interpolation="nearest", cmap=ListedColormap([colours[v] for v in levels]),
                   vmin=-0.5, vmax=len(levels) - 0.5)
        axb.set_xticks([0], [title], rotation=90, fontsize=7)
        axb.set_yticks([])
        present = [v for v in levels if v in set(labels)]
        handles.append((title, [Patch(color=colours[v], label=v) for v in present]))
    # group boundaries
    for b in np.flatnonzero(shown_groups[1:] != shown_groups[:-1]) + 1:
        ax.axhline(b - 0.5, color="black", lw=0.4)
    cax = fig.add_subplot(gs[2, nb + 1])
    fig.colorbar(im, cax=cax, label="inferred copy number\n(log expression vs healthy, smoothed)")
    for n, (title, patches) in enumerate(handles):
        fig.legend(handles=patches, title=title, loc="lower left", bbox_to_anchor=(0.05 + 0.9 * n / len(handles), 0.0), ncol=min(4, len(patches)),
                   fontsize=7, title_fontsize=7, frameon=False)

    n_total = int(mine.sum())
    is_ref = bool(ref[mine].any())
    params = adata.uns[key].get("params", {})
    states = ", ".join(np.asarray(adata.uns[key].get("reference_states", []), dtype=str))
    fig.suptitle(f"Patient {patient}: inferred copy number (infercnvpy) against the state-matched healthy reference", fontsize=11)
    note = (f"{len(rows):,} of {n_total:,} cells shown"
            + (f" (seeded random subset per population/timepoint/call group, seed {seed})" if len(rows) < n_total else "")
            + f"; reference: {params.get('n_reference_used', ref.sum()):,} healthy cells in states {states}"
            + (". This donor's own cells are part of the reference." if is_ref else "."))
    fig.text(0.5, 0.925, note, ha="center", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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

    Per-gene log2 ratios of the called cells as dots (the axis is cut at -3.5 and 2.5), the smoothed profile of each group as a line,
    the configured interval shaded, the estimated breakpoints (dashed) with their bootstrap
    intervals, and reference lines at 0 and at log2 of the lesion's copy ratio.

    Parameters
    ----------
    profile
        Table from :func:`lesion_profile` (any patients/lesions; the patient's rows are used).
    lesion
        The :class:`remnant.lesions.Lesion` profiled.
    path
        Output PNG.
    patient
        Patient to draw.
    breakpoints
        Table from :func:`estimate_breakpoints` (indexed by patient) or None.
    cytobands
        :func:`remnant.annotation.load_cytobands` table: draws the chromosome's bands below.
    """
    plt = _plt()
    where = "plot_lesion_profile"
    need = {"patient", "lesion", "group", "n_cells", "position", "log2_ratio", "smoothed"}
    if not need <= set(profile.columns):
        raise InputError(f"profile table lacks columns {sorted(need - set(profile.columns))}; use lesion_profile().", where=where)
    mine = profile[(profile["patient"].astype(str) == str(patient)) & (profile["lesion"] == lesion.name)]
    if mine.empty:
        raise InputError(f"no profile rows for patient {patient!r} and lesion {lesion.name!r}.", where=where)
    has_bands = cytobands is not None and (cytobands["chromosome"] == lesion.chromosome).any()
    fig, axes = plt.subplots(2 if has_bands else 1, 1, figsize=(11, 5), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [1, 0.06] if has_bands else [1], "hspace": 0.05})
    ax = axes[0, 0]
    mb = 1e6
    called = mine[mine["group"] == "called"]
    if not called.empty:
        ax.scatter(called["position"] / mb, called["log2_ratio"], s=3, color=GROUP_COLOURS["called"], alpha=0.25, lw=0,
                   label="called cells, per gene")
    for group in ("not called", "called"):
        part = mine[mine["group"] == group]
        if part.empty:
            continue
        ax.plot(part["position"] / mb, part["smoothed"], color=GROUP_COLOURS[group], lw=1.8,
                label=f"{group} ({int(part['n_cells'].iloc[0]):,} cells), smoothed")
    ax.axvspan(lesion.start / mb, lesion.end / mb, color="#F4A582", alpha=0.25, lw=0,
               label=f"configured {lesion.name} {lesion.region}")
    ax.axhline(0, color="black", lw=0.6)
    ax.axhline(np.log2(lesion.copy_ratio), color="grey", lw=0.6, ls=":", label=f"ratio {lesion.copy_ratio:g}")
    text = ""
    if breakpoints is not None and str(patient) in breakpoints.index.astype(str):
        bp = breakpoints.loc[breakpoints.index.astype(str) == str(patient)].iloc[0]
        if str(bp.get("reason", "") or "") == "" and np.isfinite(bp["start"]):
            for side in ("start", "end"):
                ax.axvline(bp[side] / mb, color="black", ls="--", lw=1)
                if np.isfinite(bp[f"{side}_lo"]):
                    ax.axvspan(bp[f"{side}_lo"] / mb, bp[f"{side}_hi"] / mb, color="black", alpha=0.12, lw=0)
            text = (f"estimated {bp['start'] / mb:.1f}-{bp['end'] / mb:.1f} Mb ({bp['start_band']}-{bp['end_band']}), "
                    f"ratio {bp['ratio']:.2f}, {int(bp['n_genes_inside'])} genes; dashed: breakpoints, grey: bootstrap interval")
        else:
            text = f"breakpoints not estimated: {bp.get('reason', '')}"
    ax.set_ylabel("log2 observed / expected\n(state-matched healthy reference)")
    finite = mine["log2_ratio"].dropna()
    if not finite.empty:
        lo, hi = np.nanquantile(finite, [0.01, 0.99])
        # per-gene dots of read-count (plate) data scatter widely: keep the lines readable
        ax.set_ylim(max(min(lo, np.log2(lesion.copy_ratio) - 0.5), -3.5), min(max(hi, 0.5), 2.5))
    ax.set_title(f"Patient {patient}: {lesion.chromosome} in cells called / not called {lesion.name}\n{text}", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="lower left", ncol=2)
    if has_bands:
        axb = axes[1, 0]
        shade = {"gneg": "#FFFFFF", "gpos25": "#C8C8C8", "gpos50": "#969696", "gpos75": "#646464", "gpos100": "#000000",
                 "acen": "#B2182B", "gvar": "#DDDDDD", "stalk": "#EEEEEE"}
        for _, b in cytobands[cytobands["chromosome"] == lesion.chromosome].iterrows():
            axb.axvspan(b["start"] / mb, b["end"] / mb, color=shade.get(str(b["stain"]), "#BBBBBB"), lw=0)
        axb.set_yticks([])
        axb.set_xlabel(f"{lesion.chromosome} position (Mb, GRCh38); bands below, centromere red")
    else:
        ax.set_xlabel(f"{lesion.chromosome} position (Mb)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
