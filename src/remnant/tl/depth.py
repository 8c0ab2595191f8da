"""Which genes a cell's depth is counted on for the lesion calls (issue 17, item 2).

The lesion model compares a cell's counts on a lesion's genes with its depth ``D_c``, counted on the
autosomal genes (with ``baseline="sum"`` only those outside every lesion, below). A plain sum is set
by whatever dominates the cell's counts. In plasma cells, immunoglobulins hold 78% of a normal
cell's counts, so every other gene reads low as a block: every loss scores low and every gain is
called. Haemoglobin in erythroid cells, MALAT1, mitochondrial and ribosomal transcripts,
immediate-early genes that rise with sample handling, and the keratins or ferritin of one cell type
do the same.

The depth therefore leaves out:

- named gene families (:data:`DEPTH_FAMILIES`, symbol patterns; all on by default);
- user symbol patterns and a user list of symbols;
- the most-expressed genes: in each sample (group), the top ``trim_top_fraction`` of the
  remaining genes by summed counts; a gene at the top of any sample is left out for every cell,
  so every cell's depth is counted on one gene set.

Where the reference is known when the depth is counted, each sample's depth is then scaled to the
reference (:func:`depth_scales`): a programme that raises a few hundred genes of every cell of a
patient inflates a sum however its genes are chosen.

A sum is also moved by the copy number of every arm a cell has gained or lost outside the configured
lesions: an aneuploid tumour's gains inflate it, and every arm it did not change then reads low, as a
partial loss. So by default (``baseline="median"``) a cell's depth is the weighted median over blocks
of the genome (:func:`depth_blocks`, :func:`median_depth`) of its counts on each block divided by the
block's share of the reference's counts (all cells' until the reference is known): what its depth
would be if the block were at the copy number of the genome's middle, which no minority of changed
arms moves. It is the sum where a cell's blocks are in the reference's proportions. inferCNV and
infercnvpy centre each cell's profile on its median for the same reason. The median is counted on
every autosomal gene, the configured lesions' too (a lesion's blocks are a few of the ~50, and
leaving them out only thins the median: :func:`remnant.tl.lesions.lesion_columns`); a sum outside
them, since each loss in it would lower it. ``baseline="sum"`` (the default until session 33) is a
little less noisy at a few hundred counts a cell, and the tumour's inflated depth deepens its real
losses as well as its unchanged arms (docs/robust_evidence.md, sessions 31 and 33).

This applies to the depth only: a lesion's own genes keep their evidence (RPS14 in 5q, HLA genes in
6p). The same function chooses the genes in memory (:func:`remnant.tl.lesions.call_lesions`) and
when streaming a cohort file (:func:`remnant.tl.lesions.read_lesion_counts`): both give it the
per-sample gene totals, summed in float64 (exact for counts).

Genes are matched by symbol: ``var["gene_name"]`` where present and not empty (remnant's files
hold Ensembl IDs as var names and the symbols there), else the var names (an AnnData with
symbols as var names, e.g. :func:`remnant.io.store.scverse_var`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant._sums import group_column_sums
from remnant.errors import InputError
from remnant.io.annotation import GENE_FAMILIES, family_genes, var_symbols
from remnant.tl.intervals import weighted_median

log = logging.getLogger(__name__)

#: Gene families left out of the depth: :data:`remnant.io.annotation.GENE_FAMILIES` (symbol patterns;
#: the same families as the method study, docs/robust_evidence.md).
DEPTH_FAMILIES = GENE_FAMILIES

#: Most-expressed genes left out of the depth: this share of each sample's expressed genes.
DEFAULT_TRIM_TOP_FRACTION = 0.01

#: What a cell's depth is taken as (:class:`DepthGenes` ``baseline``).
BASELINES = ("sum", "median")

#: Blocks of the genome :func:`median_depth` takes its median over: the depth genes of each
#: chromosome in genomic order, cut into blocks of about this share of all of them each (a chromosome
#: arm holds 1-5% of the genes). Enough blocks that a gained arm is a minority of them; few enough
#: that each holds a few percent of a cell's counts (dozens at 2,000 UMI).
DEPTH_BLOCKS = 50

#: A sample is reported when its ``DOMINANCE_TOP_GENES`` most-expressed genes hold more than this share.
DOMINANCE_SHARE = 0.30
DOMINANCE_TOP_GENES = 10


@dataclass(frozen=True)
class DepthGenes:
    """Which genes count towards a cell's depth (see the module docstring).

    Attributes
    ----------
    exclude_families
        Names of :data:`DEPTH_FAMILIES` left out (default: all).
    exclude_patterns
        Further regular expressions, matched at the start of the symbol (``re.match``), e.g.
        ``"KRT\\d"`` or ``"FTL$"``.
    exclude_genes
        Symbols left out (exact; e.g. from a file, :func:`read_gene_list`).
    trim_top_fraction
        Share (0 to < 0.5) of each sample's expressed genes, the most expressed, left out
        (0: none).
    scale_to_reference
        Multiply each sample's depth by its factor against the reference (:func:`depth_scales`),
        where the reference is known when the depth is counted.
    baseline
        ``"median"`` (default): the weighted median over blocks of the genome of a cell's counts on
        the depth genes, each block's divided by its share (:func:`median_depth`); ``"sum"``: those
        counts summed.
    """

    exclude_families: tuple[str, ...] = tuple(DEPTH_FAMILIES)
    exclude_patterns: tuple[str, ...] = ()
    exclude_genes: tuple[str, ...] = field(default=())
    trim_top_fraction: float = DEFAULT_TRIM_TOP_FRACTION
    scale_to_reference: bool = True
    baseline: str = "median"

    @classmethod
    def plain(cls) -> DepthGenes:
        """Every autosomal gene outside the lesions, summed (the depth before issue 17)."""
        return cls(
            exclude_families=(),
            exclude_patterns=(),
            exclude_genes=(),
            trim_top_fraction=0.0,
            scale_to_reference=False,
            baseline="sum",
        )

    def checked(self, where: str) -> DepthGenes:
        """Self with tuples, or InputError naming what is wrong."""
        families = tuple(self.exclude_families or ())
        unknown = [f for f in families if f not in DEPTH_FAMILIES]
        if unknown:
            raise InputError(
                f"unknown gene families {unknown}; known: {sorted(DEPTH_FAMILIES)}.", where=f"{where}(depth_genes=...)"
            )
        patterns = tuple(str(p) for p in (self.exclude_patterns or ()))
        for p in patterns:
            try:
                re.compile(p)
            except re.error as err:
                raise InputError(
                    f"gene pattern {p!r} is not a regular expression: {err}.", where=f"{where}(depth_genes=...)"
                ) from err
        trim = float(self.trim_top_fraction)
        if not 0 <= trim < 0.5:
            raise InputError(
                f"trim_top_fraction must be >= 0 and < 0.5; got {trim}.", where=f"{where}(depth_genes=...)"
            )
        genes = tuple(str(g) for g in (self.exclude_genes or ()))
        if self.baseline not in BASELINES:
            raise InputError(
                f"baseline must be one of {list(BASELINES)}; got {self.baseline!r}.", where=f"{where}(depth_genes=...)"
            )
        return DepthGenes(families, patterns, genes, trim, bool(self.scale_to_reference), str(self.baseline))


def read_gene_list(path) -> tuple[str, ...]:
    """Gene symbols from a text file: one a line (the first tab- or comma-separated field); empty
    lines and lines starting with ``#`` are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError("gene list does not exist.", path=path)
    genes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            genes.append(re.split(r"[\t,]", line)[0].strip())
    return tuple(g for g in genes if g)


def excluded_genes(var: pd.DataFrame, spec: DepthGenes) -> np.ndarray:
    """Boolean (n_vars,): genes of the named families, patterns and list of ``spec``."""
    return family_genes(var, spec.exclude_families, spec.exclude_patterns, spec.exclude_genes)


#: Cells a group needs for its own most-expressed genes to be left out (fewer: noise, not dominance).
MIN_TRIM_CELLS = 5


def depth_groups(samples, states=None, reference=None) -> tuple[np.ndarray, pd.DataFrame]:
    """The groups whose most-expressed genes the depth leaves out: cells of one sample, one state
    (``states``, optional) and on one side of the reference (``reference``, a boolean array,
    optional), so that a population's dominant genes (a tumour's keratins, macrophages' ferritin)
    are left out even where it shares a sample with others.

    Returns int64 (n_obs,) codes and a table of the groups (``sample``, ``n_cells``; ``state`` and
    ``reference`` where given), in code order.
    """
    samples = pd.Series(np.asarray(samples)).astype(str)
    label = samples.copy()
    if states is not None:
        states = pd.Series(np.asarray(states)).astype(str)
        label = label + "\x1f" + states
    if reference is not None:
        label = label + "\x1f" + pd.Series(np.asarray(reference, bool)).map({True: "ref", False: "query"})
    codes, uniques = pd.factorize(label, sort=True)
    first = pd.Series(np.arange(codes.size)).groupby(codes).first().to_numpy()
    table = pd.DataFrame({"sample": samples.to_numpy()[first], "n_cells": np.bincount(codes, minlength=len(uniques))})
    if states is not None:
        table["state"] = states.to_numpy()[first]
    if reference is not None:
        table["reference"] = np.asarray(reference, bool)[first]
    return codes.astype(np.int64), table


def group_totals(X, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """float64 dense (n_groups x n_vars): counts of ``X`` (cells x genes) summed per group (int
    ``codes``, -1: left out), in one pass over its stored counts without a copy
    (:func:`remnant._sums.group_column_sums`, as :func:`remnant.io.store.group_sums` does over a file:
    counts are integers, so the float64 sums are exact and the same in any order)."""
    return group_column_sums(X, codes, n_groups)


def depth_blocks(var: pd.DataFrame, genes: np.ndarray, n_blocks: int = DEPTH_BLOCKS) -> sp.csr_matrix:
    """float32 CSR (n_vars x n): the indicator of each gene of the boolean (n_vars,) mask ``genes`` in
    its block of the genome (:data:`DEPTH_BLOCKS`): per chromosome, its genes of the mask ordered by
    ``var["start"]`` and cut into ``round(n_genes / (all / n_blocks))`` blocks (at least one) of about
    equal size. ``counts @ depth_blocks(...)`` is each cell's counts per block."""
    chromosome = var["chromosome"].astype(str).to_numpy()
    start = var["start"].to_numpy(np.int64)
    size = max(int(genes.sum()) / n_blocks, 1.0)
    rows, cols, n = [], [], 0
    for c in pd.unique(chromosome[genes]):
        idx = np.flatnonzero(genes & (chromosome == c))
        idx = idx[np.argsort(start[idx], kind="stable")]
        k = max(int(round(idx.size / size)), 1)
        rows.append(idx)
        cols.append(n + np.arange(idx.size) * k // idx.size)
        n += k
    if not rows:
        return sp.csr_matrix((len(var), 0), dtype=np.float32)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(len(var), n))


#: Cells :func:`median_depth` sorts at a time (~25 MB a copy at 50 blocks).
MEDIAN_CELLS = 65_536


def median_depth(block_counts: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """float64 (n_cells,): each cell's weighted median over blocks of ``block_counts / shares``
    (weights ``shares``; blocks of share 0 left out). ``block_counts``: (n_cells x n_blocks) counts per
    block (``counts @`` :func:`depth_blocks`); ``shares``: (n_blocks,) each block's share of the
    pooled counts of the cells the depth is read against (the reference's, :func:`block_shares`; they
    sum to 1). A cell whose blocks hold those shares gets its sum; a block of a gained (lost) arm reads
    high (low) and, while such blocks are fewer than half of the weight, does not move the median."""
    on = shares > 0
    out = np.zeros(block_counts.shape[0])
    if not on.any():
        return out
    # a block of cells at a time: the sort's copies are cells x blocks x 8 bytes each
    for a in range(0, out.size, MEDIAN_CELLS):
        values = np.asarray(block_counts[a : a + MEDIAN_CELLS], np.float64)[:, on] / shares[on]
        out[a : a + MEDIAN_CELLS] = weighted_median(values, np.broadcast_to(shares[on], values.shape))
    return out


def block_shares(totals: np.ndarray, blocks: sp.csr_matrix) -> np.ndarray:
    """float64 (n_blocks,): each block's share of the counts of ``totals`` (n_groups x n_vars: the
    groups to read against, e.g. the reference's) pooled, over the genes of :func:`depth_blocks`'
    indicator ``blocks``."""
    pooled = blocks.T.astype(np.float64) @ totals.sum(0)
    total = pooled.sum()
    return pooled / total if total > 0 else pooled


def depth_mask(
    var: pd.DataFrame,
    outside: np.ndarray,
    totals: np.ndarray,
    groups: pd.DataFrame,
    spec: DepthGenes | None,
    where: str,
    *,
    report: bool = True,
) -> np.ndarray:
    """Boolean (n_vars,): the genes each cell's depth is counted on.

    ``outside``: the autosomal genes the depth may be counted on (:func:`remnant.tl.lesions.lesion_columns`:
    all, or with the sum those outside every lesion); ``totals``: (n_groups x n_vars) counts summed per
    group of :func:`depth_groups` (:func:`group_totals` in memory,
    :func:`remnant.io.store.group_sums` over a file); ``groups``: its table (sample, n_cells).
    The most-expressed genes are taken from each group of at least :data:`MIN_TRIM_CELLS` cells
    (from all cells pooled when no group has that many); samples a few genes dominate are
    reported (:func:`warn_dominance`; ``report=False``: the same genes chosen again, nothing logged).
    """
    spec = (DepthGenes() if spec is None else spec).checked(where)
    excluded = excluded_genes(var, spec)
    keep = outside & ~excluded
    top = np.zeros(len(var), bool)
    if spec.trim_top_fraction > 0 and len(totals):
        big = groups["n_cells"].to_numpy() >= MIN_TRIM_CELLS
        for t in totals[big] if big.any() else totals.sum(0, keepdims=True):
            on = np.flatnonzero(keep & (t > 0))
            if on.size:
                top |= keep & (t > np.quantile(t[on], 1.0 - spec.trim_top_fraction))
    mask = keep & ~top
    if not report:
        return mask
    log.info(
        "depth counted on %d of %d candidate autosomal genes: %d left out by gene family, pattern or "
        "list, %d as the most expressed of a group of cells",
        int(mask.sum()),
        int(outside.sum()),
        int((outside & excluded).sum()),
        int(top.sum()),
    )
    names, code = np.unique(groups["sample"].to_numpy(dtype=str), return_inverse=True)
    per_sample = np.zeros((names.size, totals.shape[1]))
    np.add.at(per_sample, code, totals)
    warn_dominance(per_sample, names, var_symbols(var), mask)
    return mask


def warn_dominance(
    totals: np.ndarray,
    groups,
    symbols: np.ndarray,
    depth_genes: np.ndarray,
    top: int = DOMINANCE_TOP_GENES,
    share: float = DOMINANCE_SHARE,
) -> list[dict]:
    """Log a WARNING for each sample whose ``top`` most-expressed genes hold more than ``share`` of
    its counts, naming the genes and whether the depth leaves them out; returns those samples as
    dicts (sample, share, genes)."""
    found = []
    for name, t in zip(groups, totals, strict=True):
        total = float(t.sum())
        if total <= 0:
            continue
        order = np.argsort(-t, kind="stable")[:top]
        s = float(t[order].sum()) / total
        if s <= share:
            continue
        genes = [f"{symbols[i]} {100 * t[i] / total:.1f}%" for i in order]
        kept = [str(symbols[i]) for i in order if depth_genes[i]]
        found.append({"sample": str(name), "share": s, "genes": [str(symbols[i]) for i in order]})
        log.warning(
            "sample %s: its %d most-expressed genes hold %.0f%% of its counts (%s). %s",
            name,
            top,
            100 * s,
            ", ".join(genes),
            (
                f"The depth of the copy-number calls counts {', '.join(kept)} among them; leave them out of it "
                "by gene pattern or gene list if they are a cell-type programme rather than the cell's depth."
                if kept
                else "The depth of the copy-number calls leaves all of them out."
            ),
        )
    return found


#: A sample's depth scale (:func:`depth_scales`) is read where it has this many cells of the
#: reference's states, on genes with at least this many expected counts, weighted by those counts up
#: to a cap, leaving out genes more than ``SCALE_TRIM`` (natural log) from the median ratio, and only
#: where its genes' robust sd around the reference (genes of at least ``SCALE_SD_EXPECTED`` expected
#: counts, where counting noise is under 0.1) is at most ``SCALE_MAX_SD``.
SCALE_MIN_CELLS = 30
SCALE_MIN_EXPECTED = 20.0
SCALE_WEIGHT_CAP = 100.0
SCALE_TRIM = 1.0
SCALE_SD_EXPECTED = 100.0
SCALE_MAX_SD = 0.5


def depth_scales(
    totals: np.ndarray,
    groups: pd.DataFrame,
    depth_genes: np.ndarray,
    spec: DepthGenes | None = None,
    *,
    report: bool = True,
    group_depth: np.ndarray | None = None,
    blocks: sp.spmatrix | None = None,
) -> np.ndarray:
    """float64 (n_groups,): the factor each group's depth is multiplied by (1 where none is read,
    and everywhere where ``spec.scale_to_reference`` is off); each sample read is logged with its
    factor (``report=False``: nothing logged). ``group_depth``: (n_groups,) each group's summed
    depth when it is not the sum of its ``totals`` on ``depth_genes`` (a median baseline,
    :func:`median_depth`), so that the profiles and factors are per count of that depth.
    ``blocks``: with a median baseline, :func:`depth_blocks`' indicator; each sample's factor is
    then the weighted median over those blocks of each block's trimmed mean ratio, so the arms an
    aneuploid tumour gained do not move it either (the trimmed mean over all genes keeps a gained
    arm's genes, 1.5-fold being inside the trim, and would put back what the median left out).

    A cell's depth is a sum over many genes, and a programme that raises a few hundred of them in
    every cell of a patient (or lowers them) moves it: every gene of that patient's cells then reads
    low (or high) against the reference, as a partial loss (or gain) of every lesion would. The
    factor of a sample is read off its cells of the reference's states pooled
    (:func:`group_totals` over :func:`depth_groups` with ``states`` and ``reference``): each depth
    gene's pooled counts against the reference's profile of each state times the cells' depth, and
    the mean of those ratios over the genes no programme moved (within :data:`SCALE_TRIM` of their
    median). That is normalisation against a reference with the outlying genes trimmed, as DESeq2's
    and edgeR's size factors are, applied to the sum the depth already is. Read only where the
    sample's genes look like the reference's (robust sd at most :data:`SCALE_MAX_SD`): a tumour of
    another type than the reference's cells is left as it is. Reference groups, groups of a state
    the reference lacks and every group without ``state`` / ``reference`` columns keep 1.
    """
    scales = np.ones(len(groups))
    if (spec is not None and not spec.scale_to_reference) or not {"reference", "state"} <= set(groups.columns):
        return scales
    ref = groups["reference"].to_numpy(bool)
    states = groups["state"].to_numpy(str)
    samples = groups["sample"].to_numpy(str)
    genes = np.flatnonzero(depth_genes)
    gene_block = None if blocks is None else _block_of(blocks)[genes]
    # each group's summed depth (no copy of the totals)
    depth = totals @ depth_genes.astype(np.float64) if group_depth is None else np.asarray(group_depth, np.float64)

    def pooled(rows: np.ndarray) -> np.ndarray:
        return totals[rows].sum(0)[genes]

    profiles = {}
    for s in np.unique(states[ref]):
        rows = np.flatnonzero(ref & (states == s))
        if depth[rows].sum() > 0:
            profiles[s] = pooled(rows) / depth[rows].sum()
    for sample in np.unique(samples[~ref]):
        rows = np.flatnonzero(~ref & (samples == sample) & np.isin(states, list(profiles)))
        if groups["n_cells"].to_numpy()[rows].sum() < SCALE_MIN_CELLS:
            continue
        expected = sum(profiles[states[g]] * depth[g] for g in rows)
        scale = _sample_scale(pooled(rows), expected, gene_block)
        if scale is None:
            continue
        scales[rows] = scale
        if report:
            log.info(
                "depth of sample %s scaled by %.3f: its depth genes, the outlying ones left out, read "
                "at that level against the reference's profiles",
                sample,
                scale,
            )
    return scales


def _block_of(blocks: sp.spmatrix) -> np.ndarray:
    """int (n_vars,) each gene's block in :func:`depth_blocks`' indicator, -1 for genes in none."""
    rows, cols = sp.csr_matrix(blocks).nonzero()
    out = np.full(blocks.shape[0], -1)
    out[rows] = cols
    return out


def _sample_scale(observed: np.ndarray, expected: np.ndarray, block: np.ndarray | None = None) -> float | None:
    """The trimmed mean ratio of a sample's pooled ``observed`` to ``expected`` counts per gene
    (:func:`depth_scales`), or None where too few genes have the counts or their spread is a
    different cell type's. ``block``: each gene's block (:func:`_block_of`); the weighted median
    over the blocks of their own trimmed mean ratios (weights: their genes' weights) instead."""
    ok = expected >= SCALE_MIN_EXPECTED
    if ok.sum() < 50:
        return None
    o, e = observed[ok], expected[ok]
    log_ratio = np.log(np.maximum(o, 0.5) / e)
    w = np.minimum(e, SCALE_WEIGHT_CAP)
    median = weighted_median(log_ratio, w)
    sure = e >= SCALE_SD_EXPECTED
    if sure.sum() < 50 or 1.4826 * np.median(np.abs(log_ratio[sure] - median)) > SCALE_MAX_SD:
        return None
    keep = np.abs(log_ratio - median) < SCALE_TRIM
    if block is None:
        return float(np.sum(w[keep] * o[keep] / e[keep]) / np.sum(w[keep]))
    b = block[ok][keep]
    n = int(block.max()) + 1
    weight = np.bincount(b, weights=w[keep], minlength=n)
    ratio = np.bincount(b, weights=w[keep] * o[keep] / e[keep], minlength=n)
    on = weight > 0
    return float(weighted_median(ratio[on] / weight[on], weight[on]))
