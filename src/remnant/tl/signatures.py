"""Per-cell signature scores that are fair between del(5q) and non-del cells, cycling phase, and group comparisons.

Scores
------
:func:`score_signatures` scores each gene set with :func:`scanpy.tl.score_genes` on log-normalised
expression: the mean of the set's genes minus the mean of control genes drawn from the same
expression bins (Tirosh et al., Science 2016). Because a cell's control genes are detected at the
same depth as its set genes, most of the effect of detection depth cancels (quiescent cells have
fewer counts). On the simulator, cells scored together with copies of themselves at half depth:
the copies' quiescence score moved by 4% of the quiescent-vs-cycling difference (0.006 log1p
units), the EPPERT_HSC_R score by -0.017. ``downsample_to`` removes the rest (0.0002 and -0.002)
by thinning every cell to the same total before scoring, at the price of noise. Weighted sets (LSC17, Ng et al., Nature 2016) are the weighted sum of per-gene scores
(each gene minus its own bin-matched controls).

Dosage: genes inside a deleted region read at about half dose in carriers, so a set holding 5q
genes (CRHBP in most HSC and quiescence sets, CDC25C in G2/M) scores lower in del(5q) cells for a
reason that is not biology. With ``exclude`` (the configured lesions; on by default in the
workflow), lesion genes leave both the sets and the control pool, and library sizes are counted
on the genes outside the lesions (total-count normalisation would scale every other gene of a
carrier up, by about the lesion's share of its transcripts).

:func:`score_cell_cycle` wraps :func:`scanpy.tl.score_genes_cell_cycle` the same way; its ``G1``
(neither S nor G2/M program) is reported as ``G0/G1``.

Both are computed by :mod:`remnant.pp.scoring`, scanpy's method re-expressed in two passes over the
raw counts, one block of cells at a time (scanpy needs the whole log-normalised matrix for the
expression bins): :func:`score_cohort` scores the cohort file (the workflow's step, every set,
both normalisations and the cell cycle in the same passes); :func:`score_signatures` and
:func:`score_cell_cycle` do the same on an AnnData in memory. The control genes and scores are
those of ``scanpy.tl.score_genes`` with the same seed (tests/test_scoring.py).

Comparisons
-----------
Cells of one patient are not independent. :func:`compare_groups` therefore summarises each patient
first (median score per group), then tests across patients (paired t-test and Wilcoxon
signed-rank on per-patient differences, :func:`remnant.stats.contrasts.paired_difference_tests`,
and a linear mixed model ``score ~ group + (1 | patient)`` on cells,
:func:`remnant.stats.contrasts.linear_mixed_difference`). Cell-level Mann-Whitney tests are reported per
patient and labelled descriptive. :func:`cycling_composition` counts G0/G1, S and G2M cells per
group; :func:`cycling_contrast` compares the cycling share (S + G2M) of two groups with patient
as a Cochran-Mantel-Haenszel stratum.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from remnant.errors import InputError
from remnant.stats.contrasts import linear_mixed_difference, paired_difference_tests, stratified_contrast
from remnant.tl.lesions import genes_in, require_positions

log = logging.getLogger(__name__)

__all__ = [
    "PHASES",
    "UNCERTAIN",
    "calibrate_cycling",
    "cell_cycle_plan",
    "compare_groups",
    "cycling_composition",
    "cycling_contrast",
    "describe_sets",
    "group_labels",
    "lesion_gene_mask",
    "lesion_groups",
    "read_signatures",
    "score_cell_cycle",
    "score_cohort",
    "score_signatures",
    "select_cells",
    "signature_path",
    "signature_plan",
]

#: Cycling phases in display order.
PHASES = ["G0/G1", "S", "G2M"]


def signature_path(name: str, directory: str | Path) -> Path:
    """The file of gene set ``name`` in ``directory``: ``{name}.txt``, ``{name}.tsv`` or ``{name}_weights.tsv``."""
    directory = Path(directory)
    candidates = [directory / f"{name}.txt", directory / f"{name}.tsv", directory / f"{name}_weights.tsv"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        shipped = sorted({p.stem.removesuffix("_weights") for p in directory.glob("*.t[xs][tv]")})
        raise InputError(
            f"no gene set {name!r} ({name}.txt or {name}.tsv) in {directory}; shipped sets: {shipped}.",
            where="signature_path",
        )
    return path


def read_signatures(names: Iterable[str], directory: str | Path) -> dict[str, pd.Series]:
    """Gene sets by name from ``directory``: ``{name}.txt`` (one symbol per line, weight 1) or
    ``{name}.tsv`` (weighted: columns ``gene`` or ``current_symbol``, and ``weight``).

    A ``.tsv`` name may be given with or without a ``_weights`` suffix (``LSC17_NG2016`` finds
    ``LSC17_NG2016_weights.tsv``).

    Returns
    -------
    dict
        ``{name: pandas.Series}`` of weights indexed by gene symbol (duplicates dropped, order kept).
    """
    out = {}
    for name in names:
        path = signature_path(name, directory)
        if path.suffix == ".tsv":
            table = pd.read_csv(path, sep="\t", dtype={"gene": str, "current_symbol": str})
            column = "current_symbol" if "current_symbol" in table else "gene"
            if column not in table or "weight" not in table:
                raise InputError(
                    f"weighted gene set needs columns 'gene' (or 'current_symbol') and 'weight'; found {list(table.columns)}.",
                    path=path,
                )
            weights = pd.Series(
                pd.to_numeric(table["weight"], errors="coerce").to_numpy(), index=table[column].astype(str).str.strip()
            )
            if weights.isna().any():
                raise InputError("a weight is not a number.", path=path)
        else:
            genes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            genes = [g for g in genes if g and not g.startswith("#")]
            weights = pd.Series(1.0, index=genes)
        weights = weights[~weights.index.duplicated()]
        if weights.empty:
            raise InputError("gene set is empty.", path=path)
        out[name] = weights
    return out


def lesion_gene_mask(var: pd.DataFrame, lesions: Sequence) -> np.ndarray:
    """Boolean (n_vars,) mask of genes whose midpoint lies inside any lesion.

    ``lesions``: :class:`remnant.tl.lesions.Lesion` objects (or anything with ``chromosome``,
    ``start``, ``end`` in bp, 0-based half-open); ``var`` needs ``chromosome``, ``start``, ``end``.
    """
    mask = np.zeros(len(var), bool)
    if not lesions:
        return mask
    require_positions(var, "lesion_gene_mask")
    for lesion in lesions:
        mask |= genes_in(var, lesion)
    return mask


def _var(data) -> pd.DataFrame:
    """The var table (genes x columns) of an AnnData, or a var DataFrame as it is."""
    return data.var if isinstance(data, AnnData) else data


def _symbols(var, symbol_key: str | None) -> pd.Series:
    """var_name indexed by symbol (first occurrence of each symbol); ``var``: a var table or an AnnData."""
    var = _var(var)
    symbols = var[symbol_key].astype(str) if symbol_key and symbol_key in var else var.index.to_series()
    table = pd.Series(var.index, index=symbols.to_numpy())
    return table[~table.index.duplicated()]


def _exclusion(var, exclude) -> np.ndarray:
    """Boolean (n_vars,) mask of the genes left out: lesions, a mask, or None (nothing)."""
    var = _var(var)
    if exclude is None:
        return np.zeros(len(var), bool)
    if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
        if exclude.shape != (len(var),):
            raise InputError(
                f"exclude mask must have one value per gene ({len(var)}).", where="score_signatures(exclude=...)"
            )
        return exclude
    return lesion_gene_mask(var, list(exclude))


#: Normalisations of the scores (keys of the ``libraries`` of :func:`remnant.pp.scoring.score_many`):
#: library counted over the genes outside the excluded lesions, or over all genes.
OUTSIDE, ALL_GENES = "outside lesions", "all genes"


def signature_plan(
    var,
    signatures: Mapping[str, pd.Series | Sequence[str]],
    *,
    exclude=None,
    also_with_lesion_genes: bool = False,
    symbol_key: str | None = "gene_name",
    key_prefix: str = "sig_",
    ctrl_size: int = 50,
    n_bins: int = 25,
    min_genes: int = 3,
    seed: int = 0,
) -> tuple[list, pd.DataFrame, dict]:
    """What :func:`score_signatures` scores, without scoring: the :class:`remnant.pp.scoring.Score` s.

    ``var`` is the var table (or the AnnData); the other parameters as in :func:`score_signatures`.

    Returns
    -------
    (scores, summary, uns)
        ``scores``: per scored set ``{key_prefix}{name}`` (lesion genes out of set and pool,
        library outside the lesions) and, with ``also_with_lesion_genes``,
        ``{key_prefix}{name}_with_lesion_genes`` (every gene, library over all genes);
        ``summary``: the table :func:`score_signatures` returns; ``uns``: its ``uns["signatures"]``
        entries.
    """
    from remnant.pp.scoring import Score

    if not signatures:
        raise InputError("no gene sets to score; give at least one.", where="score_signatures")
    var = _var(var)
    symbol_to_var = _symbols(var, symbol_key)
    excluded_mask = _exclusion(var, exclude)
    excluded_vars = set(var.index[excluded_mask])
    pool_fair, pool_all = list(var.index[~excluded_mask]), list(var.index)
    scores, rows, uns = [], [], {}
    for name, weights in signatures.items():
        if not isinstance(weights, pd.Series):
            weights = pd.Series(1.0, index=list(dict.fromkeys(weights)))
        present = [g for g in weights.index if g in symbol_to_var.index]
        missing = [g for g in weights.index if g not in symbol_to_var.index]
        used = [g for g in present if symbol_to_var[g] not in excluded_vars]
        dropped = [g for g in present if symbol_to_var[g] in excluded_vars]
        weighted = bool(weights.nunique() > 1)
        row = {
            "signature": name,
            "n_genes": len(weights),
            "n_used": len(used),
            "n_excluded": len(dropped),
            "n_missing": len(missing),
            "weighted": weighted,
            "scored": len(used) >= min_genes,
        }
        rows.append(row)
        if not row["scored"]:
            log.warning("signature %s: %d genes left after exclusion (< %d); not scored", name, len(used), min_genes)
            continue
        variants = [(f"{key_prefix}{name}", used, pool_fair, OUTSIDE)]
        if also_with_lesion_genes:
            variants.append((f"{key_prefix}{name}_with_lesion_genes", present, pool_all, ALL_GENES))
        for key, genes, pool, library in variants:
            var_names = symbol_to_var[genes].to_numpy()
            # weighted: the weighted sum of per-gene scores, each gene with its own controls
            genes = pd.Series(weights[genes].to_numpy(dtype=float), index=var_names) if weighted else list(var_names)
            scores.append(
                Score(key, genes, gene_pool=pool, library=library, ctrl_size=ctrl_size, n_bins=n_bins, seed=seed)
            )
        uns[name] = {
            "genes": np.asarray(used, dtype=str),
            "excluded": np.asarray(dropped, dtype=str),
            "missing": np.asarray(missing, dtype=str),
            "weighted": weighted,
        }
    return scores, pd.DataFrame(rows), uns


def cell_cycle_plan(
    var,
    s_genes: Sequence[str],
    g2m_genes: Sequence[str],
    *,
    exclude=None,
    symbol_key: str | None = "gene_name",
    seed: int = 0,
) -> list:
    """The ``S_score`` and ``G2M_score`` :class:`remnant.pp.scoring.Score` s of :func:`score_cell_cycle`
    (lesion genes out of the lists and the pool; library outside the lesions)."""
    from remnant.pp.scoring import cell_cycle_scores

    var = _var(var)
    symbol_to_var = _symbols(var, symbol_key)
    excluded_mask = _exclusion(var, exclude)
    excluded_vars = set(var.index[excluded_mask])

    def keep(genes):
        out = [
            symbol_to_var[g]
            for g in dict.fromkeys(genes)
            if g in symbol_to_var.index and symbol_to_var[g] not in excluded_vars
        ]
        if len(out) < 3:
            raise InputError(
                f"fewer than 3 cell-cycle genes in the data ({len(out)}); check the S and G2/M lists and the gene symbols.",
                where="score_cell_cycle",
            )
        return out

    return cell_cycle_scores(
        keep(s_genes), keep(g2m_genes), gene_pool=list(var.index[~excluded_mask]), library=OUTSIDE, seed=seed
    )


#: Fewer cells than this in a batch: no mixture is fitted, scanpy's sign rule is used (and said).
MIN_CALIBRATION_CELLS = 50


def _fit_cycling_mixture(m: np.ndarray, seed: int) -> dict:
    """Two Gaussians on the cycling score ``m`` = max(S, G2/M) of one batch, if BIC prefers them to one.

    Returns the cycling posterior per cell (the higher-mean component's) and the fit's summary:
    ``cycling_share`` (the mixture weight: the share of cells in S or G2/M), the components' means
    and sds, and ``separation``: the AUROC the fitted components imply, P(cycling > non-cycling) =
    Phi((mu1 - mu0) / sqrt(sd0^2 + sd1^2)), the share of (cycling, non-cycling) pairs the score orders right.
    """
    from sklearn.mixture import GaussianMixture

    x = m.reshape(-1, 1)
    one = GaussianMixture(1, random_state=seed).fit(x)
    two = GaussianMixture(2, random_state=seed, n_init=3).fit(x)
    if two.bic(x) >= one.bic(x):  # no second group in the scores: no cell is called cycling
        return {
            "posterior": np.zeros(len(m)),
            "rule": "one component (BIC): none cycling",
            "cycling_share": 0.0,
            "mean_non_cycling": float(one.means_[0, 0]),
            "sd_non_cycling": float(np.sqrt(one.covariances_.ravel()[0])),
            "mean_cycling": np.nan,
            "sd_cycling": np.nan,
            "separation": np.nan,
        }
    hi = int(np.argmax(two.means_.ravel()))
    lo = 1 - hi
    mu, sd = two.means_.ravel(), np.sqrt(two.covariances_.ravel())
    return {
        "posterior": two.predict_proba(x)[:, hi],
        "rule": "two-component mixture",
        "cycling_share": float(two.weights_[hi]),
        "mean_non_cycling": float(mu[lo]),
        "sd_non_cycling": float(sd[lo]),
        "mean_cycling": float(mu[hi]),
        "sd_cycling": float(sd[hi]),
        "separation": float(stats.norm.cdf((mu[hi] - mu[lo]) / np.hypot(sd[lo], sd[hi]))),
    }


def calibrate_cycling(
    s_score, g2m_score, *, batches=None, seed: int = 0
) -> tuple[pd.Categorical, np.ndarray, pd.DataFrame]:
    """Cycling phase per cell, calibrated per batch (technology) instead of scanpy's sign rule.

    scanpy calls a cell S or G2/M when either score is above 0, which calls most of a mostly
    quiescent population cycling at low depth (noise alone puts one of two scores above 0 in about
    half the cells: 68-77% called where 30% cycled). Here, in each batch, the cycling score
    max(S, G2/M) is modelled as a mixture of a non-cycling and a cycling Gaussian (one component
    when BIC prefers it: none cycling); the mixture weight estimates the cycling share, and the
    cells called cycling are the ones with the highest cycling score, as many as that share,
    so the called share is the estimated one even where single cells are hard to tell apart. A
    cycling cell's phase is the higher of its two scores. Batches of fewer than
    :data:`MIN_CALIBRATION_CELLS` cells keep scanpy's rule.

    Parameters
    ----------
    s_score, g2m_score
        Per cell (n_cells,), log1p units (:func:`score_cell_cycle`).
    batches
        Optional label per cell (n_cells,), e.g. technology: score noise differs by depth.
    seed
        Seed of the mixture fits.

    Returns
    -------
    (phase, posterior, calibration)
        ``phase``: categorical :data:`PHASES`; ``posterior``: float (n_cells,) probability that the
        cell is in S or G2/M (NaN where scanpy's rule was used); ``calibration``: one row per batch:
        ``batch, cells, rule, cycling_share, called_share, sign_rule_share, mean_non_cycling,
        sd_non_cycling, mean_cycling, sd_cycling, separation``.
    """
    from remnant.pp.scoring import cell_cycle_phase

    s_score, g2m_score = np.asarray(s_score, float), np.asarray(g2m_score, float)
    sign_rule = cell_cycle_phase(s_score, g2m_score) != "G1"
    batches = np.zeros(len(s_score), dtype=object) if batches is None else np.asarray(batches, dtype=object)
    cycling = np.zeros(len(s_score), dtype=bool)
    posterior = np.full(len(s_score), np.nan)
    rows = []
    for batch in pd.unique(batches):
        idx = np.flatnonzero(batches == batch)
        m = np.maximum(s_score[idx], g2m_score[idx])
        if len(idx) < MIN_CALIBRATION_CELLS or not np.isfinite(m).all():
            cycling[idx] = sign_rule[idx]
            fit = {"rule": f"scanpy sign rule (fewer than {MIN_CALIBRATION_CELLS} cells)", "cycling_share": np.nan}
        else:
            fit = _fit_cycling_mixture(m, seed)
            post = fit.pop("posterior")
            posterior[idx] = post
            n_called = int(round(fit["cycling_share"] * len(idx)))
            # the highest cycling scores, not the highest posteriors: a wider cycling Gaussian gives
            # cells far below the non-cycling mean a high posterior too; the call must be monotone in m
            order = np.argsort(-m, kind="stable")
            cycling[idx[order[:n_called]]] = True
        rows.append(
            {
                "batch": batch,
                "cells": len(idx),
                **fit,
                "called_share": float(cycling[idx].mean()) if len(idx) else np.nan,
                "sign_rule_share": float(sign_rule[idx].mean()) if len(idx) else np.nan,
            }
        )
    phase = np.where(~cycling, "G0/G1", np.where(g2m_score > s_score, "G2M", "S"))
    columns = [
        "batch",
        "cells",
        "rule",
        "cycling_share",
        "called_share",
        "sign_rule_share",
        "mean_non_cycling",
        "sd_non_cycling",
        "mean_cycling",
        "sd_cycling",
        "separation",
    ]
    return pd.Categorical(phase, categories=PHASES), posterior, pd.DataFrame(rows).reindex(columns=columns)


def _phase(s_score, g2m_score, batches=None, seed: int = 0) -> tuple[pd.Categorical, np.ndarray, pd.DataFrame]:
    return calibrate_cycling(s_score, g2m_score, batches=batches, seed=seed)


def score_cohort(
    source,
    signatures: Mapping[str, pd.Series | Sequence[str]],
    s_genes: Sequence[str] | None = None,
    g2m_genes: Sequence[str] | None = None,
    *,
    rows=None,
    exclude=None,
    also_with_lesion_genes: bool = False,
    target_sum: float | None = 1e4,
    downsample_to: float | None = None,
    symbol_key: str | None = "gene_name",
    key_prefix: str = "sig_",
    ctrl_size: int = 50,
    n_bins: int = 25,
    min_genes: int = 3,
    seed: int = 0,
    key: str | None = None,
    chunk_cells: int | None = None,
    batches=None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Signature scores and cell-cycle phase of a cohort file's cells, streamed (two passes over its counts).

    The scores of :func:`score_signatures` and :func:`score_cell_cycle` computed by
    :func:`remnant.pp.scoring.score_many`, every set, both normalisations and the cell cycle in the
    same two passes; one block of cells in memory at a time.

    Parameters
    ----------
    source
        Path of the cohort h5ad (raw counts in ``key``; ``None``: ``"layers/counts"`` when it has
        that layer, as ``cohort.h5ad``, else ``"X"`` when it holds counts, as ``clustered.h5ad``;
        with ``target_sum=None``, ``"X"`` scored as it is), or an AnnData.
    s_genes, g2m_genes
        Cell-cycle symbols (``None``: no cell-cycle scores).
    rows
        Boolean (n_obs,) mask of the cells scored (default all); the bins use these cells only.
    batches
        Optional label per scored cell (e.g. technology): the cycling phase is calibrated in each
        (:func:`calibrate_cycling`).
    Others
        As in :func:`score_signatures`.

    Returns
    -------
    (scores, summary, uns)
        ``scores``: float64 per scored cell (file order, indexed by obs name): the
        ``{key_prefix}{name}`` columns, then ``S_score``, ``G2M_score``, ``cycle_phase``
        (categorical :data:`PHASES`) and ``cycling_posterior`` when the cell-cycle lists are given;
        ``attrs`` as :func:`remnant.pp.scoring.score_many`, plus ``cycling_calibration`` (the table of
        :func:`calibrate_cycling`). ``summary``, ``uns``: as :func:`signature_plan`.
    """
    from remnant.io import store
    from remnant.pp.scoring import CHUNK_CELLS, score_many

    var = store.read_var(source) if isinstance(source, (str, Path)) else source.var
    scores, summary, uns = signature_plan(
        var,
        signatures,
        exclude=exclude,
        also_with_lesion_genes=also_with_lesion_genes,
        symbol_key=symbol_key,
        key_prefix=key_prefix,
        ctrl_size=ctrl_size,
        n_bins=n_bins,
        min_genes=min_genes,
        seed=seed,
    )
    if s_genes is not None and g2m_genes is not None:
        scores += cell_cycle_plan(var, s_genes, g2m_genes, exclude=exclude, symbol_key=symbol_key, seed=seed)
    if not scores:
        return pd.DataFrame(index=pd.Index([], dtype=object)), summary, uns
    frame = score_many(
        source,
        scores,
        libraries={OUTSIDE: ~_exclusion(var, exclude), ALL_GENES: None},
        rows=rows,
        target_sum=target_sum,
        downsample_to=downsample_to,
        downsample_seed=seed,
        key=key,
        chunk_cells=chunk_cells or CHUNK_CELLS,
    )
    if "S_score" in frame:
        frame["cycle_phase"], frame["cycling_posterior"], frame.attrs["cycling_calibration"] = _phase(
            frame["S_score"], frame["G2M_score"], batches, seed
        )
    return frame, summary, uns


def _counts_key(adata: AnnData, layer: str | None, where: str) -> str:
    """``"layers/<layer>"``, or ``"X"`` when the AnnData has no such layer and ``X`` holds counts
    (:func:`remnant.io.store.counts_key`); ``"X"`` for ``layer=None`` (``X`` scored as it is)."""
    from remnant.io.store import counts_key

    if layer is None:
        return "X"
    try:
        return counts_key(adata, layer, where=where)
    except InputError as err:
        raise InputError(
            f"{err.detail} Or give layer=None to score .X as it is (log-normalised).", where=f"{where}(layer=...)"
        ) from None


def score_signatures(
    adata: AnnData,
    signatures: Mapping[str, pd.Series | Sequence[str]],
    *,
    exclude=None,
    also_with_lesion_genes: bool = False,
    layer: str | None = "counts",
    target_sum: float = 1e4,
    downsample_to: float | None = None,
    symbol_key: str | None = "gene_name",
    key_prefix: str = "sig_",
    ctrl_size: int = 50,
    n_bins: int = 25,
    min_genes: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Score gene sets per cell (in place) with lesion genes left out of sets and controls.

    The in-memory form of :func:`score_cohort` (the workflow scores the cohort file; the numbers
    are the same): :func:`remnant.pp.scoring.score_many`, scanpy's ``score_genes`` re-expressed.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``.layers[layer]``, or in ``.X`` when it has no such layer
        and ``.X`` holds counts (sparse or dense).
    signatures
        ``{name: weights}`` (:func:`read_signatures`; a list of symbols means weight 1 each).
        Unweighted sets are scored as one set; sets with unequal weights as the weighted sum of
        per-gene scores.
    exclude
        Lesions (:func:`remnant.tl.lesions.parse_lesions`) or a boolean gene mask (n_vars,): genes
        left out of every set and of the control pool. ``None``: nothing excluded.
    also_with_lesion_genes
        Also write the score computed the conventional way, with every gene and total-count
        normalisation (``{key_prefix}{name}_with_lesion_genes``), to show the dosage bias.
    layer, target_sum
        Scores use ``log1p(counts / library * target_sum)`` where the library counts only genes
        outside the excluded lesions: a deletion removes transcripts, and normalising by the
        total would rescale every other gene of a carrier upwards. ``layer=None``: score
        ``.X`` as it is (already log-normalised).
    downsample_to
        Thin every cell's counts (without replacement, :func:`scanpy.pp.downsample_counts`) to a
        common total before scoring, so that detection depth is the same for every cell: a
        quantile of the cells' totals when <= 1 (e.g. 0.1), else a count. ``None``: no thinning
        (bin-matched controls already absorb most of the depth effect; see the module notes).
    symbol_key
        var column of gene symbols (default ``gene_name``; ``None``: var_names are symbols).
    ctrl_size, n_bins
        Control genes per set gene and expression bins (:func:`scanpy.tl.score_genes`).
    min_genes
        A set with fewer genes present (after exclusion) is skipped with a warning.
    seed
        Seed of the control-gene draw.

    Writes
    ------
    ``obs[f"{key_prefix}{name}"]`` (float, log1p-expression units: set minus controls) per
    scored set; ``uns["signatures"][name]``: ``genes`` (symbols used), ``excluded`` (symbols
    left out as lesion genes), ``missing`` (symbols not in the data), ``weighted``.

    Returns
    -------
    pandas.DataFrame
        One row per set: ``signature, n_genes, n_used, n_excluded, n_missing, weighted, scored``.
    """
    key = _counts_key(adata, layer, "score_signatures")
    frame, summary, uns = score_cohort(
        adata,
        signatures,
        exclude=exclude,
        also_with_lesion_genes=also_with_lesion_genes,
        target_sum=target_sum if layer is not None else None,
        downsample_to=downsample_to if layer is not None else None,
        symbol_key=symbol_key,
        key_prefix=key_prefix,
        ctrl_size=ctrl_size,
        n_bins=n_bins,
        min_genes=min_genes,
        seed=seed,
        key=key,
    )
    for col in frame.columns:
        adata.obs[col] = frame[col].to_numpy()
    adata.uns.setdefault("signatures", {}).update(uns)
    return summary


def score_cell_cycle(
    adata: AnnData,
    s_genes: Sequence[str],
    g2m_genes: Sequence[str],
    *,
    exclude=None,
    layer: str | None = "counts",
    target_sum: float = 1e4,
    downsample_to: float | None = None,
    symbol_key: str | None = "gene_name",
    key_added: str = "cycle_phase",
    batch_key: str | None = "technology",
    seed: int = 0,
) -> None:
    """S and G2/M scores and a phase per cell (in place), lesion genes excluded.

    :func:`scanpy.tl.score_genes_cell_cycle` re-expressed by :func:`remnant.pp.scoring.score_many`
    (the same numbers; ``ctrl_size`` is the length of the shorter list after exclusion).

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``.layers[layer]`` (or ``.X``, as :func:`score_signatures`;
        ``layer=None``: log-normalised ``.X``).
    s_genes, g2m_genes
        Symbols of the S and G2/M programs (``TIROSH2016_S``, ``TIROSH2016_G2M``).
    exclude, layer, target_sum, downsample_to
        As in :func:`score_signatures` (CDC25C of the G2/M list sits on 5q).

    Writes
    ------
    ``obs["S_score"]``, ``obs["G2M_score"]`` (float, log1p units), ``obs[key_added]``
    (categorical :data:`PHASES`, calibrated per ``obs[batch_key]`` by :func:`calibrate_cycling`),
    ``obs["cycling_posterior"]`` and ``uns["remnant"]["cycling_calibration"]`` (its table).
    """
    from remnant.pp.scoring import score_many

    key = _counts_key(adata, layer, "score_cell_cycle")
    scores = cell_cycle_plan(adata.var, s_genes, g2m_genes, exclude=exclude, symbol_key=symbol_key, seed=seed)
    frame = score_many(
        adata,
        scores,
        libraries={OUTSIDE: ~_exclusion(adata.var, exclude)},
        target_sum=target_sum if layer is not None else None,
        downsample_to=downsample_to if layer is not None else None,
        downsample_seed=seed,
        key=key,
    )
    adata.obs["S_score"] = frame["S_score"].to_numpy()
    adata.obs["G2M_score"] = frame["G2M_score"].to_numpy()
    batches = adata.obs[batch_key].to_numpy() if batch_key is not None and batch_key in adata.obs else None
    phase, posterior, calibration = _phase(frame["S_score"], frame["G2M_score"], batches, seed)
    adata.obs[key_added] = phase
    adata.obs["cycling_posterior"] = posterior
    adata.uns.setdefault("remnant", {})["cycling_calibration"] = calibration


def lesion_groups(obs: pd.DataFrame, lesion: str = "del5q", *, low: float = 0.1, high: float = 0.9) -> pd.Series:
    """Carrier group per cell from the lesion posterior: ``lesion`` (posterior >= ``high``),
    ``"non-del"`` (posterior <= ``low``), NaN in between (uncertain cells are left out of del vs
    non-del comparisons so that misclassified cells do not dilute them).

    Returns a categorical Series indexed like ``obs`` (categories ``[lesion, "non-del"]``).
    """
    key = f"{lesion}_posterior"
    if key not in obs.columns:
        raise InputError(
            f"the cell table has no column {key!r}; call the lesions first (remnant.tl.call_lesions).",
            where="lesion_groups",
        )
    if not 0 <= low < high <= 1:
        raise InputError(f"need 0 <= low < high <= 1; got low={low}, high={high}.", where="lesion_groups")
    post = obs[key].astype(float)
    out = pd.Series(
        np.where(post >= high, lesion, np.where(post <= low, "non-del", None)), index=obs.index, dtype=object
    )
    return out.astype(pd.CategoricalDtype([lesion, "non-del"]))


def select_cells(obs: pd.DataFrame, fixed: Mapping | None, where: str) -> pd.DataFrame:
    """Rows of ``obs`` whose ``fixed`` columns hold the given value or one of a list of values (compared as str)."""
    sub = obs
    for col, value in (fixed or {}).items():
        if col not in sub.columns:
            raise InputError(f"the cell table has no column {col!r}.", where=where)
        values = [str(v) for v in value] if isinstance(value, (list, tuple, set)) else [str(value)]
        sub = sub[sub[col].astype(str).isin(values)]
    return sub


def compare_groups(
    obs: pd.DataFrame,
    score_key: str,
    *,
    factor: str,
    level: str,
    reference: str,
    fixed: Mapping | None = None,
    patient_key: str = "patient",
    min_cells: int = 5,
    alpha: float = 0.05,
    mixed_model: bool = True,
) -> pd.DataFrame:
    """Compare a per-cell score between two levels of ``factor``, patient by patient, then across patients.

    Parameters
    ----------
    obs
        Per-cell table with ``score_key``, ``factor``, ``patient_key`` and the ``fixed`` columns.
    factor, level, reference
        E.g. ``factor="del5q_group", level="del5q", reference="non-del"`` (within one timepoint
        and population, via ``fixed``), or ``factor="timepoint", level="remission",
        reference="diagnosis"`` for del(5q) stem cells before vs after treatment.
    fixed
        ``{column: value or list of values}`` selecting the cells first.
    min_cells
        A patient enters the across-patient tests only with at least this many cells in each level.
    mixed_model
        Also fit ``score ~ level + (1 | patient)`` on the cells of the eligible patients.

    Returns
    -------
    pandas.DataFrame
        Rows ``scope="patient"`` (per patient: ``n_level``, ``n_reference``, ``median_level``,
        ``median_reference``, ``difference`` (of medians), ``pvalue`` of a cell-level Mann-Whitney
        U test, ``test`` labelled *descriptive*), then ``scope="across patients"`` rows: the mean
        per-patient ``difference`` with t interval and paired t-test ``pvalue``; the Wilcoxon
        signed-rank test of per-patient differences; and (``mixed_model``) the fixed effect of
        the linear mixed model with its interval. ``n_patients`` counts eligible patients.
        Scores are in the units of ``score_key``.
    """
    where = "compare_groups"
    for col in (score_key, factor, patient_key):
        if col not in obs.columns:
            raise InputError(f"the cell table has no column {col!r}.", where=where)
    label = f"{score_key}: {factor} {level} vs {reference}" + "".join(f" | {k}={v}" for k, v in (fixed or {}).items())
    sub = select_cells(obs, fixed, where)
    sub = sub[sub[factor].astype(str).isin([str(level), str(reference)]) & sub[score_key].notna()]
    is_level = (sub[factor].astype(str) == str(level)).to_numpy()
    rows = []
    for patient in pd.unique(sub[patient_key]):
        mine = (sub[patient_key] == patient).to_numpy()
        medians = _patient_medians(sub, score_key, mine, is_level)
        rows.append({"comparison": label, "scope": "patient", patient_key: patient, **medians})
    # a patient enters the across-patient tests with enough cells in both groups
    enough = [r for r in rows if r["n_level"] >= min_cells and r["n_reference"] >= min_cells]
    eligible, d = [r[patient_key] for r in enough], [r["difference"] for r in enough]
    in_eligible = sub[patient_key].isin(eligible).to_numpy()
    base = {
        "comparison": label,
        "scope": "across patients",
        patient_key: "all",
        "n_patients": len(d),
        "n_level": int(is_level[in_eligible].sum()),
        "n_reference": int((~is_level)[in_eligible].sum()),
    }
    tests = paired_difference_tests(d, alpha=alpha)
    rows.append(
        {
            **base,
            "difference": tests["mean"],
            "difference_low": tests["low"],
            "difference_high": tests["high"],
            "pvalue": tests["t_pvalue"],
            "test": "paired t-test on per-patient median differences",
        }
    )
    rows.append(
        {
            **base,
            "difference": tests["median"],
            "pvalue": tests["wilcoxon_pvalue"],
            "test": "Wilcoxon signed-rank on per-patient median differences (difference: median)",
        }
    )
    if mixed_model:
        cells = sub[in_eligible]
        fit = linear_mixed_difference(
            cells[score_key].to_numpy(float), is_level[in_eligible], cells[patient_key], alpha=alpha
        )
        rows.append({**base, **fit})
    return pd.DataFrame(rows)


def _patient_medians(sub: pd.DataFrame, score_key: str, mine: np.ndarray, is_level: np.ndarray) -> dict:
    """One patient's cells (``mine``, boolean over ``sub``): counts and medians per level, their
    difference and a cell-level Mann-Whitney test (descriptive)."""
    a = sub.loc[mine & is_level, score_key].to_numpy(float)
    b = sub.loc[mine & ~is_level, score_key].to_numpy(float)
    row = {
        "n_patients": 1,
        "n_level": a.size,
        "n_reference": b.size,
        "median_level": np.median(a) if a.size else np.nan,
        "median_reference": np.median(b) if b.size else np.nan,
        "test": "Mann-Whitney U on cells (descriptive: cells of a patient are not independent)",
    }
    row["difference"] = row["median_level"] - row["median_reference"]
    row["pvalue"] = stats.mannwhitneyu(a, b).pvalue if a.size and b.size else np.nan
    return row


def cycling_composition(obs: pd.DataFrame, by: Sequence[str], *, phase_key: str = "cycle_phase") -> pd.DataFrame:
    """Cells per cycling phase per group.

    Returns
    -------
    pandas.DataFrame
        Columns ``*by, n_cells``, ``n_<phase>`` and ``fraction_<phase>`` for ``G0/G1``, ``S``,
        ``G2M`` (written ``G0_G1`` in column names), ``n_cycling`` (S + G2M) and ``fraction_cycling``.
    """
    for col in [*by, phase_key]:
        if col not in obs.columns:
            raise InputError(f"the cell table has no column {col!r}.", where="cycling_composition")
    frame = obs[list(by)].astype(object).fillna("NA").astype(str)
    frame["_phase"] = obs[phase_key].astype(str).to_numpy()
    counts = frame.groupby([*by, "_phase"]).size().unstack("_phase", fill_value=0)
    counts = counts.reindex(columns=PHASES, fill_value=0)
    out = counts.rename(columns=lambda p: f"n_{p.replace('/', '_')}")
    out.insert(0, "n_cells", counts.sum(axis=1))
    out["n_cycling"] = counts["S"] + counts["G2M"]
    for p in PHASES:
        out[f"fraction_{p.replace('/', '_')}"] = counts[p] / out["n_cells"]
    out["fraction_cycling"] = out["n_cycling"] / out["n_cells"]
    return out.reset_index()


def cycling_contrast(
    obs: pd.DataFrame,
    *,
    factor: str,
    level: str,
    reference: str,
    fixed: Mapping | None = None,
    patient_key: str = "patient",
    phase_key: str = "cycle_phase",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Cycling share (S + G2M) of ``level`` vs ``reference`` with patient as CMH stratum.

    Returns the rows of :func:`remnant.stats.contrasts.stratified_contrast` where "called" means
    cycling, without its ``corrected`` columns (cycling calls have no error rates).
    """
    sub = select_cells(obs, fixed, "cycling_contrast")
    comp = cycling_composition(sub, [patient_key, factor], phase_key=phase_key)
    table = comp.rename(columns={"n_cycling": "n_called"})
    out = stratified_contrast(
        table,
        factor=factor,
        level=str(level),
        reference=str(reference),
        strata=patient_key,
        alpha=alpha,
        name=f"cycling (S+G2M): {factor} {level} vs {reference}"
        + "".join(f" | {k}={v}" for k, v in (fixed or {}).items()),
    )
    return out.drop(columns=[c for c in out.columns if c.startswith("corrected")])


#: Label of cells whose posterior is between ``group_low`` and ``group_high`` (left out of del vs non-del).
UNCERTAIN = "uncertain"


def describe_sets(
    adata, signatures: Mapping[str, pd.Series | Sequence[str]], *, exclude=None, symbol_key: str | None = "gene_name"
) -> pd.DataFrame:
    """Which genes of each set are used, left out as lesion genes, or missing from the data
    (``adata``: an AnnData or its var table, e.g. :func:`remnant.io.store.read_var` of the cohort).

    Returns
    -------
    pandas.DataFrame
        One row per set: ``signature, n_genes, n_used, n_excluded, n_missing, excluded_genes,
        missing_genes`` (comma-separated symbols).
    """
    var = _var(adata)
    symbol_to_var = _symbols(var, symbol_key)
    excluded_vars = set(var.index[_exclusion(var, exclude)])
    rows = []
    for name, weights in signatures.items():
        genes = list(weights.index if isinstance(weights, pd.Series) else dict.fromkeys(weights))
        missing = [g for g in genes if g not in symbol_to_var.index]
        dropped = [g for g in genes if g in symbol_to_var.index and symbol_to_var[g] in excluded_vars]
        rows.append(
            {
                "signature": name,
                "n_genes": len(genes),
                "n_used": len(genes) - len(missing) - len(dropped),
                "n_excluded": len(dropped),
                "n_missing": len(missing),
                "excluded_genes": ",".join(dropped),
                "missing_genes": ",".join(missing),
            }
        )
    return pd.DataFrame(rows)


def group_labels(obs: pd.DataFrame, lesion: str = "del5q", *, low: float = 0.1, high: float = 0.9) -> pd.Series:
    """:func:`lesion_groups` with the cells in between labelled :data:`UNCERTAIN` (for tables) instead of NaN."""
    groups = lesion_groups(obs, lesion, low=low, high=high)
    return groups.cat.add_categories(UNCERTAIN).fillna(UNCERTAIN)
