"""Each patient's lesion seen along its chromosome: lesion profiles and breakpoints.

Per-cell calls (:mod:`remnant.tl.lesions`) say *which* cells carry a lesion; this module shows
*where* each patient's lesion starts and ends. The genome-wide profile is :mod:`remnant.tl.profile`;
the figures are :mod:`remnant.pl.cnv`.

:func:`lesion_profile`
    For each patient, the chromosome of a lesion: per gene the log2 ratio of the pseudobulk counts
    of called (and of uncalled) cells to the counts expected of normal cells of the same states and
    depths, smoothed along the chromosome.

:func:`estimate_breakpoints`
    Per patient, from the called cells: a maximum-likelihood two-breakpoint segmentation of the
    lesion's chromosome (copy ratio ``rho`` inside ``[start, end)``, 1 outside) and a bootstrap
    over cells for each breakpoint (model below).

:func:`lesion_sums`
    What both read of the counts, for all lesions in one pass (pass it as their ``sums=``).

Expected counts (:func:`lesion_profile`, :func:`estimate_breakpoints`)
---------------------------------------------------------------------
As in :mod:`remnant.tl.lesions`, a cell ``c`` of state ``s`` is expected to have ``D_c * p_{s,g}``
counts of gene ``g``: ``D_c`` its counts on autosomal genes *off the lesion's chromosome* (so
neither the deletion nor a breakpoint beyond the configured interval deflates it) less those the
lesion calls leave out of the depth (:mod:`remnant.tl.depth`: dominant transcript families, each
group of cells' most-expressed genes), times its sample's factor against the reference as the calls
apply it (:func:`remnant.tl.depth.depth_scales`; 1 for the reference's cells): a programme that
raises a few hundred genes in a patient's cells inflates that sum, and the whole chromosome would
read low. ``p_{s,g}`` is the reference cells' summed counts of ``g`` in state ``s`` per count of
their ``D``, shrunk to the pooled reference profile with a pseudo-depth of ``shrinkage`` median
reference cells (states absent from the reference use the pooled profile). A group of cells has
observed ``O_g = sum_c x_{cg}`` and expected ``E_g = sum_c D_c p_{s(c),g}``; off the lesion's
chromosome ``sum_g O_g = sum_g E_g`` before the factor, by construction, and with it the genes no
programme moved read 1, so the ratio is 1 where the copy number is normal.

Breakpoint model (:func:`estimate_breakpoints`)
-----------------------------------------------
The genes of the lesion's chromosome with an expected count >= ``min_expected`` in the patient's
called cells, in midpoint order, have log ratios ``l_g = log((O_g+0.5)/(E_g+0.5))`` with variance
``1/(E_g+0.5) + tau^2``: counting noise plus a gene-level term ``tau^2`` (patient-specific
expression, reference mismatch) measured on the same cells' autosomal genes off the chromosome
(robust variance of their log ratios minus their counting variance). The copy ratio is ``rho``
inside ``[start, end)`` and 1 outside; the ML pair of breakpoints (and ``log rho``, the weighted
mean inside) is found by an exhaustive scan with cumulative sums (O(genes^2)). For a loss only
segments with ``rho < 1`` count, for a gain ``rho > 1``. The reported ``rho`` is the pooled ratio
``sum O / sum E`` of the genes inside (the mean log ratio is biased low by counting noise). A
breakpoint lies halfway between the midpoints of the last gene outside and the first gene inside
(the chromosome's end when the segment reaches it). Equal gene weights would let a few highly
expressed genes with patient-specific expression move the breakpoints; the gene-level variance caps
their weight.

Bootstrap: the called cells are resampled with replacement ``n_boot`` times (profiles,
``tau`` and genes fixed) and the scan repeated. Expression only places a breakpoint in the gap
between two scanned genes, so a breakpoint's interval runs from the ``(1-ci)/2`` quantile of
the left edges to the ``(1+ci)/2`` quantile of the right edges of the gaps the replicates
chose; ``rho``'s is the percentile interval. It measures cell-sampling noise only: gene-level
noise is fixed within a patient, so the true breakpoint may lie a gene or two outside it
(coverage measured in ``benchmarks/cnv_profile.py``).

Memory (issue 8: a million cells on one 24 GB machine)
------------------------------------------------------
The counts are read a block of ``chunk_cells`` cells at a time, from the AnnData's matrix or, with
``counts=`` a path, from that h5ad file (as :mod:`remnant.tl.profile` reads them; ``adata`` then
holds only obs and var). :func:`lesion_sums` is one pass for all lesions: per-cell depths, the
reference's summed counts per state, each patient's summed counts of called and of uncalled cells
(group sums over blocks), and the called cells' counts on the lesion's chromosome (cells x one
chromosome's genes, sparse) for the bootstrap, whose replicate weights are blocks of 50 replicates
x a patient's called cells.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant._sums import group_column_sums
from remnant.errors import InputError
from remnant.io.annotation import autosomal
from remnant.tl.depth import DepthGenes, depth_mask, depth_scales
from remnant.tl.lesions import cell_mask, obs_depth_groups, require_positions
from remnant.tl.profile import CHUNK_CELLS, _Counts, _obs_key

__all__ = [
    "LesionSums",
    "estimate_breakpoints",
    "lesion_profile",
    "lesion_sums",
]

#: Columns of :func:`lesion_profile`'s table, in order.
_PROFILE_COLUMNS = [
    "patient",
    "lesion",
    "group",
    "n_cells",
    "gene",
    "gene_name",
    "position",
    "observed",
    "expected",
    "log2_ratio",
    "smoothed",
]


# ================================================================================================
# summed counts for lesion profiles and breakpoints: one pass over the counts
# ================================================================================================
@dataclass
class LesionSums:
    """What :func:`lesion_profile` and :func:`estimate_breakpoints` read of the counts for one
    lesion, summed per group of cells in one pass (:func:`lesion_sums`).

    Attributes
    ----------
    lesion, chromosome
        The lesion's name and chromosome.
    reference, called
        bool (n_obs,): the reference cells and the lesion's calls the sums were made with.
    patients, patient
        Patient levels (str, in order) and each cell's index into them, int64 (n_obs,).
    states, state_row
        The reference's HSPC states (sorted) and each cell's row of ``reference_sums``, int64
        (n_obs,): its state's, or ``len(states)`` (the pooled profile) for other states.
    chrom_cols, mid
        int (n_chrom,) var positions of the chromosome's genes ordered by midpoint, and the
        midpoints (bp, int64).
    off_cols
        int (n_off,) var positions of the autosomal genes off the chromosome.
    depth
        float64 (n_obs,): each cell's counts on ``off_cols`` times its sample's depth scale
        (:func:`remnant.tl.depth.depth_scales`; 1 for the reference's cells).
    reference_sums
        float64 (len(states) + 1, n_chrom + n_off): reference cells' counts summed per state row
        (last row: reference cells of no state), genes ``chrom_cols`` then ``off_cols``.
    called_sums
        float64 (n_patients, n_chrom + n_off): each patient's called cells' counts, same genes.
    uncalled_sums
        float64 (n_patients, n_chrom): each patient's other cells' counts on ``chrom_cols``.
    called_cells, called_counts
        int64 (n_called,) positions of the called cells (increasing) and their counts on
        ``chrom_cols``, CSR (n_called, n_chrom), for the bootstrap.
    """

    lesion: str
    chromosome: str
    reference: np.ndarray
    called: np.ndarray
    patients: list
    patient: np.ndarray
    states: list
    state_row: np.ndarray
    chrom_cols: np.ndarray
    mid: np.ndarray
    off_cols: np.ndarray
    depth: np.ndarray
    reference_sums: np.ndarray
    called_sums: np.ndarray
    uncalled_sums: np.ndarray
    called_cells: np.ndarray
    called_counts: sp.csr_matrix


def _cell_groups(adata, lesion, reference, call_key, patient_key, state_key, where) -> dict:
    """The obs-derived arrays of :class:`LesionSums` (checked)."""
    require_positions(adata.var, where)
    call_key = call_key or f"{lesion.name}_call"
    for key in (call_key, patient_key, state_key):
        _obs_key(adata, key, where)
    ref = cell_mask(adata, reference, "reference", where)
    if ref.sum() < 10:
        raise InputError(f"only {int(ref.sum())} reference cells; need at least 10.", where=f"{where}(reference=...)")
    called = cell_mask(adata, call_key, "call_key", where)
    patients = _ordered(adata.obs[patient_key])
    patient = pd.Categorical(adata.obs[patient_key].astype(str), categories=patients).codes.astype(np.int64)
    state = adata.obs[state_key]
    labels = state.astype(str).where(state.notna(), "").to_numpy()
    states = sorted(set(labels[ref]) - {"", "nan"})
    state_row = pd.Categorical(labels, categories=states).codes.astype(np.int64)
    state_row[state_row < 0] = len(states)  # no state, or one the reference lacks: the pooled profile
    return {
        "reference": ref,
        "called": called,
        "patients": patients,
        "patient": patient,
        "states": states,
        "state_row": state_row,
    }


def _chromosome_genes(
    var: pd.DataFrame, chromosome: str, counted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chrom_cols by midpoint, their midpoints in bp, off_cols: the autosomal genes off the chromosome
    among boolean (n_vars,) ``counted``)."""
    chrom = var["chromosome"].astype(str).to_numpy()
    mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
    on = np.flatnonzero(chrom == chromosome)
    if on.size == 0:
        raise InputError(f"no gene of the AnnData lies on {chromosome}.", where="lesion chromosome")
    on = on[np.argsort(mid[on], kind="stable")]
    return on, mid[on], np.flatnonzero(autosomal(chrom) & (chrom != chromosome) & counted)


def lesion_sums(
    adata: anndata.AnnData,
    lesions: Sequence,
    *,
    reference="reference",
    call_keys: Mapping[str, str] | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    chunk_cells: int = CHUNK_CELLS,
    sample_key: str = "sample",
    depth_genes: DepthGenes | None = None,
) -> dict[str, LesionSums]:
    """The summed counts :func:`lesion_profile` and :func:`estimate_breakpoints` need, for all
    ``lesions`` in one pass over the counts (pass the result as their ``sums=``), after a first pass
    that sums each gene per group of cells for the depth's gene set.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]``, or ``X`` as in :func:`~remnant.tl.profile.infer_profile`)
        or, with ``counts``, only obs and var describing that file's cells and genes; ``var`` positions
        and obs columns of the calls, ``patient_key`` and ``state_key``.
    lesions
        :class:`remnant.tl.lesions.Lesion` objects.
    reference
        Boolean array (n_obs,) or obs column: the normal reference cells.
    call_keys
        ``{lesion name: boolean obs column of its call}`` (default ``f"{name}_call"``).
    counts
        Path of an h5ad file with the counts in ``layers/<layer>`` or ``X`` (as ``layer`` of
        :func:`~remnant.tl.profile.infer_profile`), read a block of ``chunk_cells`` cells at a
        time; ``None``: ``adata``.
    sample_key, depth_genes
        The depth ``D_c`` and the genes the ratios are normalised on are the autosomal genes off the
        lesion's chromosome that :func:`remnant.tl.depth.depth_mask` keeps, as for the calls (groups of
        cells: ``sample_key`` x ``state_key`` x reference; ``depth_genes``: a
        :class:`remnant.tl.depth.DepthGenes`, default its defaults; ``DepthGenes.plain()``: all).
        Each sample's depth is scaled to the reference as the calls scale it
        (:func:`remnant.tl.depth.depth_scales`, on those genes; off with
        ``DepthGenes(scale_to_reference=False)``).

    Returns
    -------
    ``{lesion name: LesionSums}``. Memory: per lesion, the called cells' counts on its chromosome
    (sparse) and a few float64 (n_obs,) vectors; per-group sums are patients x genes.
    """
    where = "lesion_sums"
    source = _Counts(adata, layer, counts, where)
    call_keys = dict(call_keys or {})
    groups = {
        lesion.name: _cell_groups(adata, lesion, reference, call_keys.get(lesion.name), patient_key, state_key, where)
        for lesion in lesions
    }
    if not groups:
        return {}
    shared = next(iter(groups.values()))  # reference and states: the same for every lesion
    counted, totals, table, codes = _depth_genes(
        adata, source, shared["reference"], sample_key, state_key, depth_genes, chunk_cells
    )
    genes = {c: _chromosome_genes(adata.var, c, counted) for c in dict.fromkeys(l.chromosome for l in lesions)}
    n_rows = len(shared["states"]) + 1
    ref_row = np.where(shared["reference"], shared["state_row"], -1)
    reference_all = np.zeros((n_rows, adata.n_vars))
    off_masks = {c: np.isin(np.arange(adata.n_vars), g[2]) for c, g in genes.items()}
    depth = {c: np.zeros(adata.n_obs) for c in genes}
    acc = {l.name: _accumulators(len(groups[l.name]["patients"]), genes[l.chromosome]) for l in lesions}
    for positions, block in source.blocks(chunk_cells=chunk_cells):
        for c, mask in off_masks.items():
            # weights in the block's dtype (as lesions.depth_on): a float64 vector would copy the block
            depth[c][positions] = np.asarray(block @ mask.astype(block.dtype)).ravel()
        group_column_sums(block, ref_row[positions], n_rows, out=reference_all)
        for lesion in lesions:
            g, a = groups[lesion.name], acc[lesion.name]
            on, _, off = genes[lesion.chromosome]
            called, patient = g["called"][positions], g["patient"][positions]
            both = np.concatenate([on, off])
            group_column_sums(block, np.where(called, patient, -1), a["called"].shape[0], both, out=a["called"])
            group_column_sums(block, np.where(called, -1, patient), a["uncalled"].shape[0], on, out=a["uncalled"])
            a["cells"].append(positions[called])
            a["counts"].append(block[np.flatnonzero(called)][:, on])
    # read on the genes this depth is summed on, so that the factor fits the sum; logged for one
    # chromosome only, as another's factors differ from these only by the genes the two depths do not share
    for k, (c, mask) in enumerate(off_masks.items()):
        depth[c] *= depth_scales(totals, table, mask, depth_genes, report=k == 0)[codes]
    return {
        lesion.name: _collect_sums(
            lesion,
            groups[lesion.name],
            acc[lesion.name],
            genes[lesion.chromosome],
            depth[lesion.chromosome],
            reference_all,
        )
        for lesion in lesions
    }


def _depth_genes(
    adata, source, reference, sample_key, state_key, depth_genes, chunk_cells
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray]:
    """From one pass summing each gene per group of cells (:func:`remnant.tl.depth.depth_groups`:
    sample x state x reference): boolean (n_vars,) the genes a cell's depth may be counted on
    (:func:`remnant.tl.depth.depth_mask` among all autosomal genes; the caller keeps those off a
    lesion's chromosome), the groups' float64 (n_groups x n_vars) totals, their table and each
    cell's int64 group code (what :func:`remnant.tl.depth.depth_scales` reads)."""
    codes, table = obs_depth_groups(adata.obs, sample_key, state_key, reference, "lesion_sums")
    totals = source.group_sums(codes, len(table), chunk_cells=chunk_cells)
    autosome = autosomal(adata.var["chromosome"])
    return depth_mask(adata.var, autosome, totals, table, depth_genes, "lesion_sums"), totals, table, codes


def _accumulators(n_patients: int, genes: tuple) -> dict:
    """What the pass of :func:`lesion_sums` adds up for one lesion (:func:`_collect_sums` reads it),
    empty: its patients' called and uncalled sums and its called cells' counts, for its
    chromosome's genes ``(on, mid, off)``."""
    on, _, off = genes
    return {
        "called": np.zeros((n_patients, on.size + off.size)),
        "uncalled": np.zeros((n_patients, on.size)),
        "cells": [],
        "counts": [],
    }


def _collect_sums(lesion, g: dict, a: dict, genes: tuple, depth: np.ndarray, reference_all: np.ndarray) -> LesionSums:
    """One lesion's :class:`LesionSums` from what the pass of :func:`lesion_sums` accumulated: its
    cell groups ``g``, its sums and called cells' counts ``a``, its chromosome's genes ``(on, mid,
    off)`` and depths, and the reference's sums over all genes."""
    on, mid, off = genes
    n_called = int(g["called"].sum())
    return LesionSums(
        lesion=lesion.name,
        chromosome=lesion.chromosome,
        **g,
        chrom_cols=on,
        mid=mid,
        off_cols=off,
        depth=depth,
        reference_sums=reference_all[:, np.concatenate([on, off])],
        called_sums=a["called"],
        uncalled_sums=a["uncalled"],
        called_cells=np.concatenate(a["cells"]) if a["cells"] else np.zeros(0, np.int64),
        called_counts=sp.vstack(a["counts"], format="csr") if a["counts"] else sp.csr_matrix((n_called, on.size)),
    )


def _sums_for(
    adata, lesion, sums, reference, call_key, patient_key, state_key, layer, counts, chunk_cells, where
) -> LesionSums:
    """``sums`` checked against the AnnData and the arguments, or computed (one pass)."""
    if sums is None:
        return lesion_sums(
            adata,
            [lesion],
            reference=reference,
            call_keys={lesion.name: call_key} if call_key else None,
            patient_key=patient_key,
            state_key=state_key,
            layer=layer,
            counts=counts,
            chunk_cells=chunk_cells,
        )[lesion.name]
    if not isinstance(sums, LesionSums):
        raise TypeError(f"sums must be a LesionSums from lesion_sums(); got {type(sums).__name__}")
    g = _cell_groups(adata, lesion, reference, call_key, patient_key, state_key, where)
    same = (
        sums.lesion == lesion.name
        and sums.chromosome == lesion.chromosome
        and sums.depth.shape == (adata.n_obs,)
        and all(
            np.array_equal(getattr(sums, k), v) if isinstance(v, np.ndarray) else getattr(sums, k) == v
            for k, v in g.items()
        )
    )
    if not same:
        raise ValueError(
            f"sums were computed for other cells, calls, reference, patients or states than {where} is "
            f"given for {lesion.name}; compute them with the same arguments."
        )
    return sums


# ================================================================================================
# expected counts of normal cells of the same state and depth
# ================================================================================================
class _Expectation:
    """State-matched reference profiles for the genes of one chromosome (see module docstring).

    Attributes: ``mid`` (the chromosome's gene midpoints, bp, by midpoint), ``P`` (n_rows,
    n_chrom_genes) and ``P_off`` (n_rows, n_off_genes): expected counts per count of depth, per
    state row of :class:`LesionSums` (the last row is the pooled profile).
    """

    def __init__(self, sums: LesionSums, shrinkage: float):
        self.sums = sums
        self.mid = sums.mid
        ref_idx = np.flatnonzero(sums.reference)
        n_rows = len(sums.states) + 1
        D = np.bincount(sums.state_row[ref_idx], weights=sums.depth[ref_idx], minlength=n_rows)
        S = sums.reference_sums
        pooled = S.sum(0) / max(D.sum(), 1.0)
        pseudo = shrinkage * float(np.median(sums.depth[ref_idx]))
        P = (S + pseudo * pooled[None, :]) / (D[:, None] + pseudo)
        P[-1] = pooled  # cells of states the reference lacks
        n_chrom = sums.chrom_cols.size
        self.P = P[:, :n_chrom]
        self.P_off = P[:, n_chrom:]

    def expected(self, cells: np.ndarray, weights: np.ndarray | None = None, off: bool = False) -> np.ndarray:
        """Expected counts summed over ``cells`` (int positions) on the chromosome's genes (``off``:
        the autosomal genes off it): float64 (n_genes,), or (B, n_genes) for ``weights`` (B, n_cells)."""
        P = self.P_off if off else self.P
        dep = self.sums.depth[cells]
        onehot = sp.csr_matrix(
            (np.ones(cells.size), (np.arange(cells.size), self.sums.state_row[cells])), shape=(cells.size, P.shape[0])
        )
        if weights is None:
            return np.asarray(onehot.T @ dep).ravel() @ P
        return np.asarray((onehot.T @ (weights * dep[None, :]).T).T) @ P


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


# ================================================================================================
# lesion profile of called vs uncalled cells
# ================================================================================================
def lesion_profile(
    adata: anndata.AnnData,
    lesion,
    *,
    reference="reference",
    call_key: str | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    sums: LesionSums | None = None,
    min_expected: float = 5.0,
    smooth_genes: int = 21,
    shrinkage: float = 20.0,
    chunk_cells: int = CHUNK_CELLS,
) -> pd.DataFrame:
    """Per patient, log2 ratio of observed to expected counts along the lesion's chromosome.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]`` or ``X``, as
        :func:`~remnant.tl.profile.infer_profile`; or only obs and var with ``counts`` or ``sums``),
        ``var`` positions and obs columns ``call_key``, ``patient_key``, ``state_key``.
    lesion
        A :class:`remnant.tl.lesions.Lesion`; its chromosome is profiled.
    reference
        Boolean array (n_obs,) or obs column: the normal reference cells (expected profiles).
    call_key
        Boolean obs column of the lesion call (default ``f"{lesion.name}_call"``).
    counts
        Path of an h5ad file holding the counts (see :func:`lesion_sums`).
    sums
        :func:`lesion_sums` of this lesion, computed with the same cells and arguments (checked):
        no pass over the counts. ``None``: computed here.
    min_expected
        A gene gets a ratio in a group when the group's expected count is at least this (fewer
        expected counts give a ratio dominated by counting noise and the half-count offset).
    smooth_genes
        Width of the centred smoothing window over the genes with a ratio (genes, not bp).
    shrinkage
        Pseudo-cells pulling a state's reference profile to the pooled one.
    chunk_cells
        Cells of counts read at a time.

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
    if smooth_genes < 1:
        raise InputError(f"smooth_genes must be >= 1; got {smooth_genes}.", where=where)
    sums = _sums_for(
        adata, lesion, sums, reference, call_key, patient_key, state_key, layer, counts, chunk_cells, where
    )
    ex = _Expectation(sums, shrinkage)
    n_chrom = sums.chrom_cols.size
    genes = adata.var_names[sums.chrom_cols]
    names = (
        adata.var["gene_name"].iloc[sums.chrom_cols].astype(str).to_numpy()
        if "gene_name" in adata.var
        else np.asarray(genes)
    )
    parts = []
    for k, patient in enumerate(sums.patients):
        mine = sums.patient == k
        for group, sel, O in (
            ("called", sums.called, sums.called_sums[k, :n_chrom]),
            ("not called", ~sums.called, sums.uncalled_sums[k]),
        ):
            cells = np.flatnonzero(mine & sel)
            if cells.size == 0:
                continue
            E = ex.expected(cells)
            parts.append(
                pd.DataFrame(
                    {
                        "patient": patient,
                        "lesion": lesion.name,
                        "group": group,
                        "n_cells": int(cells.size),
                        "gene": np.asarray(genes),
                        "gene_name": names,
                        "position": ex.mid,
                        "observed": O,
                        "expected": E,
                        **_ratios(O, E, min_expected, smooth_genes),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_PROFILE_COLUMNS)


def _ratios(O: np.ndarray, E: np.ndarray, min_expected: float, smooth_genes: int) -> dict[str, np.ndarray]:
    """``log2_ratio`` and ``smoothed`` of one group's observed and expected counts per gene (float64
    (n_genes,) each, see :func:`lesion_profile`)."""
    ok = min_expected <= E
    return {
        "log2_ratio": np.where(ok, _log_ratio(O, E) / np.log(2), np.nan),
        "smoothed": _window_log2_ratio(O, E, ok, smooth_genes),
    }


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
    reference="reference",
    call_key: str | None = None,
    patient_key: str = "patient",
    state_key: str = "hspc_state",
    layer: str | None = "counts",
    counts: str | os.PathLike | None = None,
    sums: LesionSums | None = None,
    cytobands: pd.DataFrame | None = None,
    min_cells: int = 20,
    min_expected: float = 5.0,
    min_genes: int = 10,
    n_boot: int = 200,
    ci: float = 0.95,
    shrinkage: float = 20.0,
    seed: int = 0,
    chunk_cells: int = CHUNK_CELLS,
) -> pd.DataFrame:
    """Each patient's lesion breakpoints from the pseudobulk of its called cells.

    Model and bootstrap: see the module docstring.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layers[layer]`` or ``X``, as
        :func:`~remnant.tl.profile.infer_profile`; or only obs and var with ``counts`` or ``sums``),
        ``var`` positions and obs columns ``call_key``, ``patient_key``, ``state_key``.
    lesion
        A :class:`remnant.tl.lesions.Lesion`.
    reference
        Boolean array (n_obs,) or obs column: the normal reference cells.
    call_key
        Boolean obs column of the lesion call (default ``f"{lesion.name}_call"``).
    counts
        Path of an h5ad file holding the counts (see :func:`lesion_sums`).
    sums
        :func:`lesion_sums` of this lesion, computed with the same cells and arguments (checked):
        no pass over the counts. ``None``: computed here.
    cytobands
        :func:`remnant.io.annotation.load_cytobands` table: names the band of each breakpoint and
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
    chunk_cells
        Cells of counts read at a time.

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
    if not 0 < ci < 1:
        raise InputError(f"ci must be between 0 and 1; got {ci}.", where=where)
    if n_boot < 0 or min_cells < 1 or min_genes < 1:
        raise InputError("n_boot must be >= 0, min_cells and min_genes >= 1.", where=where)
    sums = _sums_for(
        adata, lesion, sums, reference, call_key, patient_key, state_key, layer, counts, chunk_cells, where
    )
    scan = _Scan(
        sums=sums,
        ex=_Expectation(sums, shrinkage),
        lesion=lesion,
        cytobands=cytobands,
        length=_chromosome_length(adata.var, sums.chrom_cols, cytobands, lesion.chromosome),
        sign=-1.0 if lesion.type == "loss" else 1.0,
        min_expected=min_expected,
        min_genes=min_genes,
    )
    rows = [_patient_breakpoints(scan, k, min_cells, n_boot, ci, seed) for k in range(len(sums.patients))]
    return pd.DataFrame(rows).set_index("patient")


def _chromosome_length(
    var: pd.DataFrame, chrom_cols: np.ndarray, cytobands: pd.DataFrame | None, chromosome: str
) -> int:
    """bp: the chromosome's last band end, or without bands its last gene end."""
    if cytobands is not None and (cytobands["chromosome"] == chromosome).any():
        return int(cytobands.loc[cytobands["chromosome"] == chromosome, "end"].max())
    return int(var["end"].iloc[chrom_cols].max())


@dataclass
class _Scan:
    """What the breakpoint scans of every patient of one lesion share."""

    sums: LesionSums
    ex: _Expectation
    lesion: object  # remnant.tl.lesions.Lesion
    cytobands: pd.DataFrame | None
    length: int  # bp, the chromosome's
    sign: float  # -1 for a loss (segments with rho < 1), +1 for a gain
    min_expected: float
    min_genes: int


def _empty_row(patient: str, lesion, n_called: int) -> dict:
    """A patient's row of :func:`estimate_breakpoints` before the scan (NaN estimates, no reason)."""
    return {
        "patient": patient,
        "lesion": lesion.name,
        "chromosome": lesion.chromosome,
        "n_called": n_called,
        "n_genes": 0,
        "n_genes_inside": 0,
        **dict.fromkeys(
            (
                "start",
                "end",
                "start_lo",
                "start_hi",
                "end_lo",
                "end_hi",
                "ratio",
                "ratio_lo",
                "ratio_hi",
                "llr",
                "tau",
            ),
            np.nan,
        ),
        "start_band": "",
        "end_band": "",
        "reason": "",
    }


def _patient_breakpoints(scan: _Scan, k: int, min_cells: int, n_boot: int, ci: float, seed: int) -> dict:
    """The row of :func:`estimate_breakpoints` of patient ``k`` (index into ``scan.sums.patients``)."""
    sums, ex, lesion, min_expected, min_genes = scan.sums, scan.ex, scan.lesion, scan.min_expected, scan.min_genes
    n_chrom = sums.chrom_cols.size
    cells = np.flatnonzero((sums.patient == k) & sums.called)
    row = _empty_row(sums.patients[k], lesion, int(cells.size))
    if cells.size < min_cells:
        row["reason"] = f"{cells.size} called cells (< min_cells {min_cells})"
        return row
    O, E = sums.called_sums[k, :n_chrom], ex.expected(cells)
    use = min_expected <= E
    if use.sum() < 2 * min_genes:
        row["reason"] = f"{int(use.sum())} genes on {lesion.chromosome} with >= {min_expected} expected counts"
        return row
    tau2 = _gene_variance(sums.called_sums[k, n_chrom:], ex.expected(cells, off=True), min_expected)
    mid = ex.mid[use]
    # boundary k (between scanned genes k-1 and k): the gap (left[k], right[k]) and its middle
    left = np.concatenate([[0], mid])
    right = np.concatenate([mid, [scan.length]])
    bounds = np.concatenate([[0], (mid[:-1] + mid[1:]) // 2, [scan.length]])
    i, j, rho, gain = _scan_segment(O, E, use, tau2, scan.sign, min_genes)
    row.update(n_genes=int(use.sum()), tau=float(np.sqrt(tau2)))
    if i < 0:
        row["reason"] = f"no segment of >= {min_genes} genes with ratio {'< 1' if scan.sign < 0 else '> 1'}"
        return row
    row.update(
        start=float(bounds[i]),
        end=float(bounds[j]),
        n_genes_inside=int(j - i),
        ratio=float(rho),
        llr=float(gain),
        start_band=_band_of(scan.cytobands, lesion.chromosome, bounds[i]),
        end_band=_band_of(scan.cytobands, lesion.chromosome, bounds[j] - 1),
    )
    if n_boot > 0:
        row.update(_bootstrap(scan, k, cells, use, tau2, left, right, n_boot, ci, seed))
    return row


def _gene_variance(O_off: np.ndarray, E_off: np.ndarray, min_expected: float) -> float:
    """``tau^2``: the gene-level variance of log ratios (natural log) beyond counting noise, from the
    autosomal genes off the chromosome with >= ``min_expected`` expected counts (robust variance of
    their log ratios minus their median counting variance; 0 when negative)."""
    keep = E_off >= min_expected
    lo = _log_ratio(O_off[keep], E_off[keep])
    robust_var = (1.4826 * np.median(np.abs(lo - np.median(lo)))) ** 2
    return max(robust_var - float(np.median(1.0 / (E_off[keep] + 0.5))), 0.0)


def _scan_segment(
    O: np.ndarray, E: np.ndarray, use: np.ndarray, tau2: float, sign: float, min_genes: int
) -> tuple[int, int, float, float]:
    """(i, j, rho, gain): the best segment [i, j) of the genes ``use`` (:func:`_segment`, weights
    ``1 / (1/(E+0.5) + tau2)``) and its pooled ratio ``rho`` (NaN when no segment qualifies)."""
    l_ = _log_ratio(O[use], E[use])
    w_ = 1.0 / (1.0 / (E[use] + 0.5) + tau2)
    i_, j_, m_, g_ = _segment(l_, w_, sign, min_genes)
    # rho as the pooled ratio inside: the mean of log ratios is biased low by counting
    # noise (Jensen), more so in bootstrap replicates, which add a second round of it
    rho_ = O[use][i_:j_].sum() / E[use][i_:j_].sum() if i_ >= 0 else np.nan
    return i_, j_, rho_, g_


def _bootstrap(
    scan: _Scan,
    k: int,
    cells: np.ndarray,
    use: np.ndarray,
    tau2: float,
    left: np.ndarray,
    right: np.ndarray,
    n_boot: int,
    ci: float,
    seed: int,
) -> dict[str, float]:
    """Bootstrap intervals of patient ``k``'s breakpoints (bp, from the gaps the replicates chose)
    and ratio: ``start_lo``, ``start_hi``, ``end_lo``, ``end_hi``, ``ratio_lo``, ``ratio_hi``.
    ``cells``: the patient's called cells (int positions, increasing)."""
    sums, ex = scan.sums, scan.ex
    patient = sums.patients[k]
    alpha = (1 - ci) / 2
    rng = np.random.default_rng([int(seed), int.from_bytes(patient.encode()[:8].ljust(8, b"\0"), "little")])
    boot = np.full((n_boot, 5), np.nan)
    # the patient's called cells on the chromosome, rows in the order of ``cells``
    called_patient = sums.patient[sums.called_cells]  # patient of each row of sums.called_counts
    Xc = sp.csr_matrix(sums.called_counts[np.flatnonzero(called_patient == k)], dtype=np.float64)
    for a in range(0, n_boot, 50):  # blocks of replicates bound the (B, genes) temporaries
        B = min(50, n_boot - a)
        W = rng.multinomial(cells.size, np.full(cells.size, 1.0 / cells.size), size=B).astype(np.float64)
        Ob, Eb = np.asarray((Xc.T @ W.T).T), ex.expected(cells, weights=W)
        for b in range(B):
            bi, bj, bm, _ = _scan_segment(Ob[b], Eb[b], use, tau2, scan.sign, scan.min_genes)
            if bi >= 0:
                boot[a + b] = (left[bi], right[bi], left[bj], right[bj], bm)
    lo_q = np.nanquantile(boot, alpha, axis=0)
    hi_q = np.nanquantile(boot, 1 - alpha, axis=0)
    return dict(start_lo=lo_q[0], start_hi=hi_q[1], end_lo=lo_q[2], end_hi=hi_q[3], ratio_lo=lo_q[4], ratio_hi=hi_q[4])
