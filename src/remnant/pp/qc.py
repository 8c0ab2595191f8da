"""Per-sample quality control: metrics, absolute and MAD-based thresholds, doublet scores.

All functions take one sample's AnnData of raw counts (cells x genes, sparse) and write to
documented keys.

``.obs`` keys written
---------------------
``total_counts``
    Counts per cell (UMIs for droplet data, reads for plate data).
``n_genes_by_counts``
    Genes with a non-zero count.
``pct_counts_mt``
    Percentage of counts on mitochondrial (chrM) genes, 0-100.
``doublet_score``, ``predicted_doublet``
    Scrublet's score and call (droplet samples; NaN / False where not run).
``qc_fail_<reason>``
    One boolean column per reason in :data:`REASONS`.
``qc_pass``
    True for cells that fail no check.
``qc_reason``
    ``;``-joined reasons a cell failed ("" when it passed).

``.uns["remnant"]["qc"]`` holds the thresholds actually applied (absolute and MAD-derived).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from remnant.io.annotation import family_genes

log = logging.getLogger(__name__)

#: The reasons a cell can be removed for, in the order they are reported.
REASONS = (
    "low_counts",
    "high_counts",
    "low_genes",
    "high_genes",
    "high_mito",
    "outlier_counts",
    "outlier_genes",
    "outlier_mito",
    "doublet",
)


def qc_metrics(adata: AnnData) -> AnnData:
    """Add ``total_counts``, ``n_genes_by_counts`` and ``pct_counts_mt`` to ``.obs`` (in place).

    Mitochondrial genes are those on ``chrM`` when ``.var["chromosome"]`` exists, else those
    whose symbol starts with ``MT-``.
    """
    if "chromosome" in adata.var:
        mt = (adata.var["chromosome"].astype(str) == "chrM").to_numpy()
    else:
        names = adata.var["gene_name"] if "gene_name" in adata.var else adata.var_names.to_series()
        mt = names.astype(str).str.upper().str.startswith("MT-").to_numpy()
    adata.var["mt"] = mt
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    return adata


def mad_outlier(values: np.ndarray, n_mads: float | None, *, side: str) -> tuple[np.ndarray, float | None]:
    """Cells further than ``n_mads`` median absolute deviations from the median.

    Parameters
    ----------
    values
        One value per cell (already on the scale to test, e.g. log1p counts).
    n_mads
        How many MADs; ``None`` disables the test.
    side
        ``"low"``, ``"high"`` or ``"both"``.

    Returns
    -------
    The boolean outlier mask and the (lower or upper) cut-off used, on the scale of ``values``.
    With ``side="both"`` the returned cut-off is the lower one.
    """
    values = np.asarray(values, dtype=float)
    if n_mads is None or values.size == 0:
        return np.zeros(values.shape, dtype=bool), None
    median = float(np.median(values))
    # scaled MAD: consistent with the standard deviation for normal data
    mad = 1.4826 * float(np.median(np.abs(values - median)))
    if mad == 0:
        return np.zeros(values.shape, dtype=bool), None
    lower, upper = median - n_mads * mad, median + n_mads * mad
    if side == "low":
        return values < lower, lower
    if side == "high":
        return values > upper, upper
    return (values < lower) | (values > upper), lower


#: Gene families (:data:`remnant.io.annotation.GENE_FAMILIES`) Scrublet does not see: ambient red-cell
#: haemoglobin and the immediate-early genes of sample handling vary from cell to cell without
#: marking two cells in one droplet, and, highly variable, they set its principal components; simulated
#: doublets then differ from cells by their mix of these. benchmarks/doublets.py (same cells, seeds
#: 0-2, confounders on): 300-cell samples AUROC 0.751 -> 0.778, cells called 21 -> 8 at precision 0.22
#: -> 0.33; 3,000-cell samples 0.868 -> 0.863 (per seed -0.014 to +0.004), so a gain on the sorted
#: samples of this study and no clear change on large ones.
DOUBLET_EXCLUDED_FAMILIES = ("haemoglobin", "immediate_early")

#: Samples up to this many cells get exact neighbours in Scrublet's search (observed + 2x simulated
#: doublets); larger ones pynndescent's approximate search, whose cost grows near-linearly.
EXACT_DOUBLET_NEIGHBOURS = 20_000


def score_doublets(
    adata: AnnData,
    *,
    expected_rate: float = 0.06,
    threshold: float | None = None,
    seed: int = 0,
    threshold_name: str = "threshold",
    exclude_families: tuple[str, ...] = DOUBLET_EXCLUDED_FAMILIES,
) -> AnnData:
    """Scrublet doublet scores (:func:`scanpy.pp.scrublet`) into ``doublet_score``/``predicted_doublet``.

    With a ``threshold``, cells scoring above it are called. Without one, Scrublet's automatic
    threshold (the minimum between the two modes of the simulated-doublet scores) is used when
    it calls a plausible share of cells (at most 2.5 x ``expected_rate``). On small sorted samples
    that minimum is often found in the wrong place and would call most cells: then doublet calling
    is not reliable for the sample, no cell is called and a warning says so. (Calling the
    ``expected_rate`` highest-scoring cells instead, as remnant once did, removed ~6% of cells from
    samples that held no doublet at all.) ``.uns["remnant"]["doublets"]`` records which rule was
    used. Samples too small for Scrublet's simulation (< 30 cells) are left unscored with a warning.
    Genes of the ``exclude_families`` (default :data:`DOUBLET_EXCLUDED_FAMILIES`; ``()``: none) are
    left out of the scoring (matched by symbol: ``var["gene_name"]`` where present, else the var names).
    ``threshold_name``: how the warning names ``threshold`` (the caller's name for it).
    """
    adata.obs["doublet_score"] = np.nan
    adata.obs["predicted_doublet"] = False
    info: dict[str, Any] = {"rule": "not scored", "threshold": None}
    adata.uns.setdefault("remnant", {})["doublets"] = info
    if adata.n_obs < 30:
        log.warning("%d cells: too few to score doublets; skipped", adata.n_obs)
        return adata
    seen = ~family_genes(adata.var, tuple(exclude_families))
    work = AnnData(
        X=adata.X[:, seen].copy(),
        obs=pd.DataFrame(index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names[seen]),
    )
    n_pcs = int(min(30, work.n_obs - 2, work.n_vars - 1))
    sc.pp.scrublet(
        work,
        expected_doublet_rate=expected_rate,
        threshold=threshold,
        n_prin_comps=n_pcs,
        random_state=seed,
        verbose=False,
        # exact neighbours up to EXACT_DOUBLET_NEIGHBOURS cells: on a 5,000-cell sample they cost
        # 10 s of CPU against 52 s for pynndescent (whose numba compilation each job pays again)
        use_approx_neighbors=adata.n_obs > EXACT_DOUBLET_NEIGHBOURS,
    )
    scores = work.obs["doublet_score"].to_numpy(dtype=float)
    adata.obs["doublet_score"] = scores
    if threshold is not None:
        called = scores > threshold
        info.update(rule="configured threshold", threshold=float(threshold))
    else:
        auto = float(work.uns["scrublet"]["threshold"])
        called = scores > auto
        if called.mean() <= 2.5 * expected_rate:
            info.update(rule="Scrublet automatic threshold", threshold=auto)
        else:
            log.warning(
                "doublet calling is not reliable on this sample: Scrublet's automatic threshold %.3f would call "
                "%.0f%% of %d cells (expected rate %.3f), so its score distribution has no usable gap; no cell is "
                "removed as a doublet. Set %s to call doublets above a fixed score.",
                auto,
                100 * called.mean(),
                adata.n_obs,
                expected_rate,
                threshold_name,
            )
            called = np.zeros(adata.n_obs, dtype=bool)
            info.update(rule="not reliable: none called", threshold=None, automatic_threshold=auto)
    adata.obs["predicted_doublet"] = called
    return adata


def flag_cells(
    adata: AnnData,
    thresholds: Mapping[str, Any],
    *,
    score_doublets_for: bool = True,
    seed: int = 0,
    key_prefix: str = "",
) -> AnnData:
    """Apply absolute and MAD-based thresholds and doublet calls; write ``qc_*`` keys (in place).

    Parameters
    ----------
    adata
        One sample, raw counts in ``.X`` (cells x genes).
    thresholds
        ``min_counts``, ``max_counts``, ``min_genes``,
        ``max_genes``, ``max_pct_mito`` (absolute; ``None`` disables), ``mad`` with
        ``counts``, ``genes``, ``pct_mito`` (number of MADs; ``None`` disables) and
        ``doublets`` with ``expected_rate`` and ``threshold``.
    score_doublets_for
        Whether this sample gets doublet scores (droplet data; plates are sorted one cell per well).
    seed
        Seed for Scrublet.
    key_prefix
        Put before the keys of ``thresholds`` where warnings name them (``doublets.threshold``,
        ``min_counts``); the workflow passes ``"qc."``, its config block.
    """
    qc_metrics(adata)
    counts = adata.obs["total_counts"].to_numpy(dtype=float)
    genes = adata.obs["n_genes_by_counts"].to_numpy(dtype=float)
    mito = adata.obs["pct_counts_mt"].to_numpy(dtype=float)
    mad = thresholds.get("mad", {}) or {}
    applied: dict[str, Any] = {}

    def absolute(values, limit, op):
        if limit is None:
            return np.zeros(values.shape, dtype=bool)
        return values < limit if op == "lt" else values > limit

    fails = {
        "low_counts": absolute(counts, thresholds.get("min_counts"), "lt"),
        "high_counts": absolute(counts, thresholds.get("max_counts"), "gt"),
        "low_genes": absolute(genes, thresholds.get("min_genes"), "lt"),
        "high_genes": absolute(genes, thresholds.get("max_genes"), "gt"),
        "high_mito": absolute(mito, thresholds.get("max_pct_mito"), "gt"),
    }
    # MADs on log counts / log genes: library sizes are log-normal-ish, so the scale is symmetric there.
    fails["outlier_counts"], lo = mad_outlier(np.log1p(counts), mad.get("counts"), side="both")
    applied["mad_min_counts"] = None if lo is None else float(np.expm1(lo))
    fails["outlier_genes"], lo = mad_outlier(np.log1p(genes), mad.get("genes"), side="low")
    applied["mad_min_genes"] = None if lo is None else float(np.expm1(lo))
    fails["outlier_mito"], hi = mad_outlier(mito, mad.get("pct_mito"), side="high")
    applied["mad_max_pct_mito"] = hi

    doublets = thresholds.get("doublets", {}) or {}
    scored = bool(score_doublets_for and doublets.get("enabled", True))
    fails["doublet"], doublet_rule = _doublet_calls(
        adata, fails, doublets if scored else None, seed=seed, threshold_name=f"{key_prefix}doublets.threshold"
    )
    for reason in REASONS:
        adata.obs[f"qc_fail_{reason}"] = fails[reason]
    failed = np.column_stack([fails[r] for r in REASONS])
    adata.obs["qc_pass"] = ~failed.any(axis=1)
    names = np.array(REASONS)
    adata.obs["qc_reason"] = [";".join(names[row]) for row in failed]
    adata.uns.setdefault("remnant", {})["qc"] = {
        **{k: thresholds.get(k) for k in ("min_counts", "max_counts", "min_genes", "max_genes", "max_pct_mito")},
        **applied,
        "doublets_scored": scored,
        "doublet_rule": doublet_rule,
    }
    warn_removed_share(adata, fails, thresholds.get("warn_removed_fraction"), key_prefix=key_prefix)
    log.info(
        "%d of %d cells pass QC; removed per reason: %s; thresholds applied: %s",
        int(adata.obs["qc_pass"].sum()),
        adata.n_obs,
        {r: int(fails[r].sum()) for r in REASONS if fails[r].any()},
        {k: v for k, v in adata.uns["remnant"]["qc"].items() if k != "doublet_rule"},
    )
    return adata


def _doublet_calls(
    adata: AnnData,
    fails: Mapping[str, np.ndarray],
    doublets: Mapping[str, Any] | None,
    *,
    seed: int,
    threshold_name: str,
) -> tuple[np.ndarray, dict]:
    """Write ``doublet_score``/``predicted_doublet`` (NaN / False where not scored) and return the
    doublet fail mask and the rule used (:func:`score_doublets`); ``doublets`` None: not scored."""
    adata.obs["doublet_score"] = np.nan
    adata.obs["predicted_doublet"] = False
    if doublets is None:
        return np.zeros(adata.n_obs, dtype=bool), {"rule": "not scored", "threshold": None}
    # Score only cells that pass the other checks: damaged cells distort Scrublet's embedding.
    keep = ~np.logical_or.reduce(list(fails.values()))
    sub = adata[keep].copy()
    score_doublets(
        sub,
        expected_rate=doublets.get("expected_rate", 0.06),
        threshold=doublets.get("threshold"),
        seed=seed,
        threshold_name=threshold_name,
    )
    adata.obs.loc[sub.obs_names, "doublet_score"] = sub.obs["doublet_score"].to_numpy()
    adata.obs.loc[sub.obs_names, "predicted_doublet"] = sub.obs["predicted_doublet"].to_numpy()
    return adata.obs["predicted_doublet"].to_numpy(dtype=bool), sub.uns["remnant"]["doublets"]


#: The key of :func:`flag_cells`' ``thresholds`` behind each QC reason (named in warnings, after ``key_prefix``).
REASON_KEYS = {
    "low_counts": "min_counts",
    "high_counts": "max_counts",
    "low_genes": "min_genes",
    "high_genes": "max_genes",
    "high_mito": "max_pct_mito",
    "outlier_counts": "mad.counts",
    "outlier_genes": "mad.genes",
    "outlier_mito": "mad.pct_mito",
    "doublet": "doublets",
}


def warn_removed_share(
    adata: AnnData, fails: Mapping[str, np.ndarray], fraction: float | None, *, key_prefix: str = ""
) -> bool:
    """Warn when QC removes more than ``fraction`` of a sample's cells, naming the checks that did it.

    A shallow sample (e.g. 500 UMI/cell against a ``min_counts`` of 500) otherwise loses half its
    cells with nothing but a count in the QC table. The warning gives each check's threshold key
    (:data:`REASON_KEYS`, after ``key_prefix``), its threshold and its share, and the sample's median
    counts and genes per cell, so the user can tell a bad sample from a threshold that does not fit
    the depth. Returns whether it warned.
    """
    if fraction is None or adata.n_obs == 0:
        return False
    removed = np.logical_or.reduce([np.asarray(v, dtype=bool) for v in fails.values()])
    share = float(removed.mean())
    if share <= fraction:
        return False
    applied = adata.uns.get("remnant", {}).get("qc", {})
    limits = {
        "low_counts": "min_counts",
        "high_counts": "max_counts",
        "low_genes": "min_genes",
        "high_genes": "max_genes",
        "high_mito": "max_pct_mito",
        "outlier_counts": "mad_min_counts",
        "outlier_genes": "mad_min_genes",
        "outlier_mito": "mad_max_pct_mito",
    }
    parts = []
    for reason in sorted(fails, key=lambda r: -int(np.sum(fails[r]))):
        n = int(np.sum(fails[reason]))
        if n == 0:
            continue
        limit = applied.get(limits.get(reason, ""))
        at = f" (at {limit:.4g})" if isinstance(limit, (int, float)) else ""
        parts.append(f"{key_prefix}{REASON_KEYS[reason]}{at} removes {n} ({100 * n / adata.n_obs:.0f}%)")
    log.warning(
        "QC removes %.0f%% of %d cells (more than %swarn_removed_fraction %.2f): %s; the median cell has %.0f counts "
        "and %.0f genes. If the sample is shallow rather than bad, lower those thresholds in the config.",
        100 * share,
        adata.n_obs,
        key_prefix,
        fraction,
        "; ".join(parts),
        float(np.median(adata.obs["total_counts"])),
        float(np.median(adata.obs["n_genes_by_counts"])),
    )
    return True


def removed_per_reason(obs: pd.DataFrame, sample: str) -> pd.DataFrame:
    """One row for ``sample``: cells in, cells kept, cells removed, and cells failing each reason.

    A cell failing several checks counts once under ``removed`` and once under each reason.
    """
    row = {"sample": sample, "cells": len(obs), "kept": int(obs["qc_pass"].sum())}
    row["removed"] = row["cells"] - row["kept"]
    for reason in REASONS:
        row[reason] = int(obs[f"qc_fail_{reason}"].sum())
    return pd.DataFrame([row])
