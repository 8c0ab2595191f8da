"""The lesions' genes and each cell's depth from one pass over a cohort file (issue 17).

A cell's depth (:mod:`remnant.tl.depth`) is counted on the *eligible* genes (autosomal, outside
every lesion, not left out by gene family, pattern or list: known before any count is read) less
the *top* genes: the most expressed of each group of cells, known only once every cell has been
read. Reading the compressed file twice (group totals, then the depth) cost twice the read, so
one pass keeps, per cell:

- its sum over the eligible genes;
- its counts on *candidate* genes: those above the top ``CANDIDATE_MARGIN x trim_top_fraction``
  of any group's running totals (a group's final top 1% is, with a margin, inside its top 2%
  of the cells read so far, and groups of one state share most of their top genes), chosen
  afresh for each block of cells read from the totals up to and including them.

Once every cell is read, the exact totals give the exact top genes (:func:`remnant.tl.depth.depth_mask`)
and each cell's depth is its eligible sum less its counts on them. Where a top gene was not a
candidate for some cells (a group read late whose top genes none of the earlier groups had near
their top), only those cells are read again, for those genes only (:meth:`OnePass.depth`): the
depth is always exact, the extra read the exception.

Counts are integers, so the sums (float32 per cell below 2**24, float64 across blocks) are exact and
the depth equals the depth summed over the remaining genes directly (:func:`remnant.tl.lesions.depth_on`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.io import store
from remnant.tl.depth import MIN_TRIM_CELLS

log = logging.getLogger(__name__)

#: A group's genes above its top ``trim_top_fraction / SURE_MARGIN`` (running totals) are taken as top
#: genes while reading: each cell's sum leaves them out at once, nothing is held for them.
SURE_MARGIN = 2.0

#: A group's genes between that and its top ``CANDIDATE_MARGIN x trim_top_fraction`` are held per cell.
CANDIDATE_MARGIN = 2.0


#: Cells per block read (default of :func:`remnant.tl.lesions.read_lesion_counts`; each block's
#: candidates are chosen together, so a miss re-reads that many cells). Reading 91,328 cells x
#: 1,473 stored counts in blocks of 10,000 took 0.7 s of CPU against 3.0-3.6 s in blocks of 50,000
#: (h5py slices of ~300 MB cost 3-5x those of ~60 MB; the file is not compressed).
READ_CELLS = 10_000


@dataclass(frozen=True)
class HeldCells:
    """What one pass keeps of the cells ``[start, stop)`` of the file for their depth.

    ``sure``: int64 positions (in var) of the genes taken as top genes when they were read, left out
    of ``base``, float64 (stop - start,): each cell's counts on the eligible genes but those.
    ``band``: int64 positions of the genes near the top of some group, whose counts the cells
    keep: a CSR matrix ((stop - start) x band.size) held compactly (``data`` uint16 and
    ``indices`` uint16 where they fit: 4 bytes a stored count instead of 8; ``indptr``).
    """

    start: int
    stop: int
    sure: np.ndarray
    base: np.ndarray
    band: np.ndarray
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    @classmethod
    def of(cls, start: int, block: sp.csr_matrix, eligible: np.ndarray, sure: np.ndarray, band: np.ndarray, part):
        """From a read block (CSR, cells x all genes, file rows from ``start``), the boolean (n_vars,)
        ``eligible`` genes, the int64 positions ``sure`` and ``band`` (:class:`Candidates`) and
        ``part``, the block's columns ``band`` (CSR, cells x band.size)."""
        weights = eligible.astype(block.dtype)  # the block's dtype: float64 weights would copy the block
        weights[sure] = 0
        base = np.asarray(block @ weights).ravel().astype(np.float64)
        data = part.data
        small = data.astype(np.uint16)
        if np.array_equal(small, data):
            data = small
        indices = part.indices.astype(np.uint16) if band.size <= np.iinfo(np.uint16).max else part.indices
        return cls(start, start + block.shape[0], sure, base, band, data, indices, part.indptr)

    def depth(self, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each cell's depth given the boolean (n_vars,) mask of the ``top`` genes, float64
        (stop - start,), and the correction still to read, float32 (n_vars,): +1 for genes taken as
        top that are not, -1 for top genes neither taken nor held (0 elsewhere; all 0: exact)."""
        correction = np.zeros(top.size, np.float32)
        correction[self.sure] = 1
        correction[top] -= 1
        correction[self.band] = 0
        weights = top[self.band].astype(np.float32)
        if not weights.any():
            return self.base.copy(), correction
        matrix = sp.csr_matrix(
            (self.data.astype(np.float32), self.indices.astype(np.int32), self.indptr),
            shape=(self.stop - self.start, self.band.size),
        )
        return self.base - np.asarray(matrix @ weights).ravel(), correction

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes + self.base.nbytes


class Candidates:
    """The genes at and near the top of each group (:data:`SURE_MARGIN`, :data:`CANDIDATE_MARGIN`)
    by the running totals.

    ``eligible``: boolean (n_vars,) genes the depth may count on; ``trimmed``: boolean (n_groups,)
    groups whose top genes the depth leaves out (all groups pooled when none is: as
    :func:`remnant.tl.depth.depth_mask`); ``share``: ``trim_top_fraction``.
    """

    def __init__(self, eligible: np.ndarray, trimmed: np.ndarray, share: float):
        self.eligible, self.trimmed = eligible, trimmed
        self.shares = (min(share / SURE_MARGIN, 1.0), min(CANDIDATE_MARGIN * share, 1.0))
        self.pooled = not trimmed.any()
        self.by_group: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def update(self, totals: np.ndarray, touched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The int64 sorted positions of the sure and the band genes once the groups ``touched``
        (int codes) changed in ``totals`` (float64, n_groups x n_vars): sure, above the sure cut of
        any group; band, above the wide cut of any group and not sure."""
        if self.pooled:
            self.by_group[-1] = self.cuts(totals.sum(0))
        for g in touched[self.trimmed[touched]] if not self.pooled else ():
            self.by_group[int(g)] = self.cuts(totals[g])
        if not self.by_group:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        sure = np.unique(np.concatenate([s for s, _ in self.by_group.values()]))
        near = np.unique(np.concatenate([n for _, n in self.by_group.values()]))
        return sure, np.setdiff1d(near, sure, assume_unique=True)

    def cuts(self, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int64 positions of the eligible genes of ``total`` (float64 (n_vars,)) above its
        ``1 - share`` quantiles among its expressed eligible genes (the cut of depth_mask, narrowed
        and widened)."""
        on = self.eligible & (total > 0)
        if not on.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        sure, near = np.quantile(total[on], [1.0 - self.shares[0], 1.0 - self.shares[1]])
        return np.flatnonzero(on & (total > sure)), np.flatnonzero(on & (total > near))


class OnePass:
    """The state of one pass over a cohort file's counts, fed a read block at a time (:meth:`add`).

    Parameters
    ----------
    keep
        Boolean (n_vars,): the genes whose counts are kept for every cell (the lesions').
    eligible
        Boolean (n_vars,): the genes the depth may be counted on before the top genes are known.
    codes, groups
        int64 (n_obs,) group of each cell and the groups' table (``n_cells``) of
        :func:`remnant.tl.depth.depth_groups`.
    share
        ``trim_top_fraction`` (0: no top genes: nothing sure, nothing held).
    """

    def __init__(self, keep, eligible, codes: np.ndarray, groups: pd.DataFrame, share: float):
        self.keep, self.eligible, self.codes, self.share = keep, eligible, codes, float(share)
        self.totals = np.zeros((len(groups), keep.size))
        trimmed = groups["n_cells"].to_numpy() >= MIN_TRIM_CELLS
        self.candidates = Candidates(eligible, trimmed, self.share)
        self.parts: list[sp.csr_matrix] = []
        self.held: list[HeldCells] = []

    def add(self, positions: np.ndarray, block: sp.csr_matrix) -> None:
        """Take one read block: CSR (n_block x n_vars), the cells at file rows ``positions``
        (int64, contiguous and increasing)."""
        g = self.codes[positions]
        store.add_group_sums(self.totals, block, g)
        none = np.zeros(0, np.int64)
        sure, band = self.candidates.update(self.totals, np.unique(g)) if self.share > 0 else (none, none)
        # the lesions' genes and the band in one column selection (each costs a pass over the block's
        # counts), then split (a lesion gene is never in the band: the band is outside the lesions)
        both = self.keep.copy()
        both[band] = True
        columns = block[:, both]
        lesion = self.keep[both]
        self.parts.append(columns[:, lesion])
        self.held.append(HeldCells.of(int(positions[0]), block, self.eligible, sure, band, columns[:, ~lesion]))

    def counts(self) -> sp.csr_matrix:
        """CSR (n_obs x n_keep), the stored dtype: every cell's counts on the kept genes."""
        if not self.parts:
            return sp.csr_matrix((0, int(self.keep.sum())), dtype=np.float32)
        return sp.vstack(self.parts, format="csr")

    def depth(self, top: np.ndarray, path, key: str, chunk_cells: int) -> np.ndarray:
        """float64 (n_obs,): each cell's counts on the eligible genes but those of the boolean
        (n_vars,) mask ``top``. Cells whose block took a gene as top that is not, or neither took
        nor held a top gene, are read again from ``path`` (matrix ``key``) for those genes only."""
        n_obs = self.held[-1].stop if self.held else 0
        depth, redo = np.zeros(n_obs), []
        for h in self.held:
            depth[h.start : h.stop], correction = h.depth(top)
            if correction.any():
                redo.append((h, correction))
        log.info(
            "depth in one pass: %d top genes left out; %.0f taken as top while reading and %.0f held per block of "
            "cells on average (%.1f MB); %d of %d blocks of cells read again for genes taken or missed",
            int(top.sum()),
            np.mean([h.sure.size for h in self.held]) if self.held else 0.0,
            np.mean([h.band.size for h in self.held]) if self.held else 0.0,
            sum(h.nbytes for h in self.held) / 2**20,
            len(redo),
            len(self.held),
        )
        if redo:
            depth += read_corrections(path, key, redo, n_obs, top.size, chunk_cells)
        return depth


def read_corrections(path, key: str, redo: list, n_obs: int, n_vars: int, chunk_cells: int) -> np.ndarray:
    """float64 (n_obs,): each cell's counts weighted by its block's correction (0 for cells of other
    blocks), read from the file for those cells and the genes of the corrections only. ``redo``:
    (:class:`HeldCells`, float32 (n_vars,) correction of :meth:`HeldCells.depth`) pairs."""
    rows, columns = np.zeros(n_obs, bool), np.zeros(n_vars, bool)
    which = np.full(n_obs, -1, np.int64)
    for i, (h, correction) in enumerate(redo):
        rows[h.start : h.stop] = True
        which[h.start : h.stop] = i
        columns |= correction != 0
    weights = np.stack([c[columns] for _, c in redo], axis=1)  # float32 (n_columns x n_redo)
    out = np.zeros(n_obs)
    for positions, block in store.iter_chunks(path, key=key, rows=rows, columns=columns, chunk_cells=chunk_cells):
        per = np.asarray(block @ weights.astype(block.dtype))  # (n_block x n_redo)
        out[positions] = per[np.arange(positions.size), which[positions]]
    log.info("read again: %d cells for %d genes taken as top or missed", int(rows.sum()), int(columns.sum()))
    return out


def read_once(path, key: str, pass_: OnePass, chunk_cells: int) -> OnePass:
    """Feed every block of the matrix ``key`` of ``path`` to ``pass_``; returns it."""
    for positions, block in store.iter_chunks(path, key=key, chunk_cells=chunk_cells):
        pass_.add(positions, block)
    return pass_
