"""Pseudobulk differential expression (PyDESeq2) of del(5q) stem cells after vs before treatment.

Cells of one patient are not independent replicates; the replicate is the patient. The counts of
the selected cells (e.g. del(5q) HSC) are summed per patient x timepoint (:func:`pseudobulk`), and
:func:`paired_de` fits DESeq2's negative binomial GLM ``~ patient + timepoint`` with PyDESeq2
(Muzellec et al., Bioinformatics 2023; the Python port of Love et al., Genome Biol 2014), so each
patient is its own control (a paired design). :func:`signature_enrichment` asks whether the
shipped signatures sit high or low in the resulting ranking with a competitive rank-sum test of
the set's Wald statistics against all other genes that allows for correlation between the set's
genes (limma's ``camera`` with ``use.ranks=TRUE``; :func:`remnant.stats.genesets.rank_sum_with_correlation`).

:func:`pseudobulk` also takes the path of a cohort file: the pseudobulks are summed there block by
block (:func:`remnant.io.store.group_sums`), so the cells x genes matrix is never in memory, only
the groups x genes sums (issue 8).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy import stats
from statsmodels.stats.multitest import multipletests

from remnant.errors import InputError
from remnant.stats.genesets import rank_sum_with_correlation

log = logging.getLogger(__name__)

__all__ = ["DE_COLUMNS", "paired_de", "pseudobulk", "signature_enrichment"]

#: Columns of :func:`paired_de` results.
DE_COLUMNS = ["gene", "gene_name", "baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


def _is_path(source) -> bool:
    return isinstance(source, (str, Path))


def pseudobulk(
    adata,
    *,
    groupby: Sequence[str] = ("patient", "timepoint"),
    mask=None,
    layer: str | None = "counts",
    obs: pd.DataFrame | None = None,
    key: str | None = None,
    min_cells: int = 10,
    chunk_cells: int | None = None,
) -> AnnData:
    """Sum raw counts of the selected cells per group.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``.layers[layer]`` (without that layer ``.X`` when it
        holds counts; ``None``: ``.X``; :func:`remnant.io.store.counts_key`), sparse or dense; or the
        path of a cohort h5ad with raw counts in ``key`` (CSR; ``None``: ``layers/counts`` when the
        file has it, as ``cohort.h5ad``, else ``X`` when it holds counts, as ``clustered.h5ad``),
        summed block by block (:func:`remnant.io.store.group_sums`; the matrix is never read whole).
    groupby
        obs columns defining a pseudobulk sample (default: patient x timepoint).
    mask
        Boolean array (n_obs,) or the name of a boolean obs column selecting the cells (e.g.
        del(5q)-called HSC); ``None``: all cells.
    obs
        For a path: the file's cell table, one row per cell in the file's order (default
        :func:`remnant.io.store.read_obs` of it); rows outside ``mask`` may lack the ``groupby``
        values. Ignored for an AnnData (its ``obs``).
    min_cells
        Groups with fewer selected cells are dropped (too few cells make a noisy pseudobulk).
    chunk_cells
        For a path: cells per block read (default :data:`remnant.pp.scoring.CHUNK_CELLS`).

    Returns
    -------
    AnnData
        Groups x genes, ``X`` dense int64 counts; ``obs``: the ``groupby`` columns and
        ``n_cells``; ``var``: a copy of the cells' ``var``; ``uns["pseudobulk"]``: ``dropped``
        (DataFrame of groups under ``min_cells`` with their cell counts), ``min_cells``, ``groupby``.
    """
    obs, n_obs, key = _cell_table(adata, obs, key)
    groupby = list(groupby)
    for col in groupby:
        if col not in obs.columns:
            raise InputError(f"obs has no column {col!r} to group pseudobulks by.", where="pseudobulk(groupby=...)")
    if min_cells < 1:
        raise InputError(f"min_cells must be >= 1; got {min_cells}.", where="pseudobulk(min_cells=...)")
    mask = _cell_mask(obs, mask, n_obs)
    X = None if _is_path(adata) else _counts(adata, layer)
    keys = obs.loc[mask, groupby].astype(str)
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    groups = pd.DataFrame(list(uniques), columns=groupby) if len(uniques) else pd.DataFrame(columns=groupby)
    n_cells = np.bincount(codes, minlength=len(groups))
    summed, var = _group_sums(adata, X, codes, np.flatnonzero(mask), len(groups), n_obs, key, chunk_cells)
    if not np.allclose(summed, np.round(summed)):
        raise InputError(
            "pseudobulk counts are not integers; give the layer with raw counts.", where="pseudobulk(layer=...)"
        )
    groups["n_cells"] = n_cells
    keep = n_cells >= min_cells
    dropped = groups.loc[~keep].reset_index(drop=True)
    if len(dropped):
        log.info(
            "pseudobulk: %d group(s) under %d cells dropped: %s", len(dropped), min_cells, dropped.to_dict("records")
        )
    obs = groups.loc[keep].reset_index(drop=True)
    obs.index = ["|".join(map(str, r)) for r in obs[groupby].itertuples(index=False)]
    out = AnnData(X=np.round(summed[keep]).astype(np.int64), obs=obs, var=var)
    out.uns["pseudobulk"] = {"dropped": dropped, "min_cells": int(min_cells), "groupby": groupby}
    return out


def _cell_table(adata, obs: pd.DataFrame | None, key: str | None) -> tuple[pd.DataFrame, int, str | None]:
    """The cells' obs, their number and (for a file) where its counts are."""
    from remnant.io import store

    if not _is_path(adata):
        return adata.obs, adata.n_obs, key
    obs = store.read_obs(adata) if obs is None else obs
    key = store.counts_key(adata, where="pseudobulk") if key is None else key
    n_obs = store.shape(adata, key)[0]
    if len(obs) != n_obs:
        raise InputError(f"obs has {len(obs)} rows, the file {n_obs} cells.", where="pseudobulk(obs=...)")
    return obs, n_obs, key


def _cell_mask(obs: pd.DataFrame, mask, n_obs: int) -> np.ndarray:
    """Boolean (n_obs,) of the selected cells from ``mask`` (array, obs column name or None: all)."""
    if isinstance(mask, str):
        if mask not in obs.columns:
            raise InputError(f"obs has no column {mask!r}.", where="pseudobulk(mask=...)")
        mask = obs[mask].to_numpy()
    mask = np.ones(n_obs, bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (n_obs,):
        raise InputError(f"mask must have one value per cell ({n_obs}).", where="pseudobulk(mask=...)")
    return mask


def _counts(adata: AnnData, layer: str | None):
    """The AnnData's raw counts (cells x genes)."""
    from remnant.tl.lesions import counts_matrix

    return counts_matrix(adata, layer, "pseudobulk")  # InputError naming the layers when none holds counts


def _group_sums(adata, X, codes: np.ndarray, rows: np.ndarray, n_groups: int, n_obs: int, key, chunk_cells):
    """Groups x genes float sums of the selected cells (``rows``, group ``codes``) and a copy of the genes' var."""
    from remnant.io import store
    from remnant.pp.scoring import CHUNK_CELLS

    if _is_path(adata):
        group_of = np.full(n_obs, -1, dtype=np.int64)
        group_of[rows] = codes
        # blocks of scoring's size: group_sums holds a float64 copy of each block besides the block
        summed = store.group_sums(adata, group_of, n_groups, key=key, chunk_cells=chunk_cells or CHUNK_CELLS)
        return summed, store.read_var(adata)
    G = sp.csr_matrix((np.ones(rows.size), (codes, rows)), shape=(n_groups, n_obs))
    summed = G @ (X if sp.issparse(X) else sp.csr_matrix(X))
    summed = np.asarray(summed.toarray() if sp.issparse(summed) else summed)
    return summed, adata.var.copy()


def paired_de(
    pb: AnnData,
    *,
    condition: str = "timepoint",
    level: str = "remission",
    reference: str = "diagnosis",
    pair: str = "patient",
    min_total_count: int = 10,
    min_count: int = 10,
    symbol_key: str | None = "gene_name",
    alpha: float = 0.05,
    n_cpus: int = 1,
) -> pd.DataFrame:
    """DESeq2 Wald test of ``level`` vs ``reference`` with a per-patient (paired) term.

    Parameters
    ----------
    pb
        :func:`pseudobulk` output (obs: ``condition``, ``pair``).
    condition, level, reference
        The comparison: log2 fold change of ``level`` over ``reference``.
    pair
        Pairing column; only patients with a pseudobulk at both levels are used.
    min_total_count
        Genes with fewer summed counts over the used pseudobulks are left out before fitting.
    min_count
        Genes also need at least this many counts in as many pseudobulks as there are pairs (the
        smallest group), the pre-filter of the DESeq2 vignette; 0 turns it off.
    alpha
        False discovery rate for PyDESeq2's independent filtering.
    n_cpus
        Processes for PyDESeq2 (the workflow passes the rule's threads).

    Returns
    -------
    pandas.DataFrame
        One row per tested gene, sorted by p-value, columns :data:`DE_COLUMNS`: ``gene``
        (``var["gene_id"]`` when present, the Ensembl ID in ``cohort.h5ad`` whose var names are
        symbols; else the var name), ``gene_name`` (symbol), ``baseMean`` (mean normalised count),
        ``log2FoldChange`` (log2, level over reference), ``lfcSE``, ``stat`` (Wald), ``pvalue``,
        ``padj`` (Benjamini-Hochberg after independent filtering; NaN for filtered genes).
        ``attrs["n_pairs"]`` holds the number of patients used. Empty (with these columns) when
        fewer than two patients have both levels.
    """
    for col in (condition, pair):
        if col not in pb.obs.columns:
            raise InputError(f"pseudobulk obs has no column {col!r}.", where="paired_de")
    obs = pb.obs.astype({condition: str, pair: str})
    both = obs.groupby(pair)[condition].agg(lambda v: {str(level), str(reference)} <= set(v))
    pairs = sorted(both[both].index)
    empty = pd.DataFrame(columns=DE_COLUMNS)
    empty.attrs["n_pairs"] = len(pairs)
    if len(pairs) < 2:
        log.warning(
            "paired_de: %d patient(s) with both %s and %s pseudobulks; need 2 or more, no test",
            len(pairs),
            level,
            reference,
        )
        return empty
    use = (obs[pair].isin(pairs) & obs[condition].isin([str(level), str(reference)])).to_numpy()
    counts = np.asarray(pb.X[use])
    total = counts.sum(axis=0)
    genes = (total >= min_total_count) & ((counts >= min_count).sum(axis=0) >= len(pairs))
    if genes.sum() < 2:
        log.warning(
            "paired_de: fewer than 2 genes with >= %d counts in total and >= %d in %d pseudobulks; no test",
            min_total_count,
            min_count,
            len(pairs),
        )
        return empty
    log.info("paired_de: %d of %d genes pass the count filters", int(genes.sum()), genes.size)
    table = _deseq_wald(
        counts[:, genes],
        obs.loc[use, pair].to_numpy(),
        obs.loc[use, condition].to_numpy(),
        level=str(level),
        reference=str(reference),
        alpha=alpha,
        n_cpus=n_cpus,
    )
    var_names = pb.var_names[genes]
    ids = pb.var["gene_id"].astype(str).to_numpy()[genes] if "gene_id" in pb.var else np.asarray(var_names)
    table.insert(0, "gene", ids)
    symbols = (
        pb.var[symbol_key].astype(str).to_numpy()[genes]
        if symbol_key and symbol_key in pb.var
        else np.asarray(var_names)
    )
    table.insert(1, "gene_name", symbols)
    table = table.reset_index(drop=True)[DE_COLUMNS].sort_values("pvalue", na_position="last").reset_index(drop=True)
    table.attrs["n_pairs"] = len(pairs)
    return table


def _deseq_wald(
    counts: np.ndarray,
    pairs: np.ndarray,
    conditions: np.ndarray,
    *,
    level: str,
    reference: str,
    alpha: float,
    n_cpus: int,
) -> pd.DataFrame:
    """PyDESeq2's ``~pair + condition`` fit and Wald test of ``level`` vs ``reference``.

    ``counts``: pseudobulks x genes (int); ``pairs``, ``conditions``: per pseudobulk. Returns its
    ``results_df`` (one row per gene, in the order of ``counts``' columns).
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    # Names that formulaic accepts whatever the user's labels are.
    meta = pd.DataFrame({"pair": pairs, "condition": conditions}, index=[f"s{i}" for i in range(len(pairs))])
    count_df = pd.DataFrame(counts, index=meta.index, columns=[f"g{j}" for j in range(counts.shape[1])])
    inference = DefaultInference(n_cpus=n_cpus)
    dds = DeseqDataSet(
        counts=count_df, metadata=meta, design="~pair + condition", refit_cooks=True, inference=inference, quiet=True
    )
    dds.deseq2()
    res = DeseqStats(dds, contrast=["condition", level, reference], alpha=alpha, inference=inference, quiet=True)
    res.summary()
    return res.results_df.copy()


def signature_enrichment(
    results: pd.DataFrame,
    signatures: Mapping[str, pd.Series | Sequence[str]],
    *,
    stat: str = "stat",
    gene_key: str = "gene_name",
    exclude: Sequence[str] | None = None,
    min_genes: int = 5,
    inter_gene_cor: float = 0.01,
) -> pd.DataFrame:
    """Where each signature sits in a DE ranking: competitive rank-sum test allowing for inter-gene correlation.

    Parameters
    ----------
    results
        :func:`paired_de` output (or any table with ``gene_key`` and ``stat`` columns).
    signatures
        ``{name: weights or symbols}`` (:func:`remnant.tl.signatures.read_signatures`); only
        membership is used (for LSC17 the sign of the weights is ignored).
    stat
        Ranking column (Wald statistic; positive = higher after treatment).
    exclude
        Symbols to leave out of the ranking (e.g. lesion genes).
    min_genes
        Sets with fewer genes in the ranking get NaN statistics.
    inter_gene_cor
        Correlation assumed between the genes of a set. A set is a program whose genes move
        together, so a rank-sum test that takes them as independent is anti-conservative (Wu &
        Smyth, Nucleic Acids Res 2012); the variance of the rank sum is that under equicorrelation,
        as limma's ``camera(use.ranks=TRUE)`` with its preset ``inter.gene.cor = 0.01``. 0: the
        plain Mann-Whitney U test.

    Returns
    -------
    pandas.DataFrame
        One row per set: ``signature``, ``n_genes`` (in the ranking), ``mean_stat`` (of the set),
        ``auc`` (probability that a set gene ranks above a random other gene; 0.5 = no shift),
        ``direction`` (``up``/``down``), ``pvalue`` (two-sided), ``padj`` (Benjamini-Hochberg
        over the sets), ``test``. Sorted by p-value.
    """
    for col in (gene_key, stat):
        if col not in results.columns:
            raise InputError(f"the DE table has no column {col!r}.", where="signature_enrichment")
    ranked = results[[gene_key, stat]].dropna()
    if exclude is not None:
        ranked = ranked[~ranked[gene_key].isin(set(exclude))]
    ranked = ranked.drop_duplicates(gene_key)
    values = ranked[stat].to_numpy(float)
    # a hashed index: np.isin of object arrays compares every pair (0.17 s a set at 30,000 genes)
    names = pd.Index(ranked[gene_key].astype(str).to_numpy())
    rows = []
    for name, members in signatures.items():
        inside = names.isin(set(members.index if isinstance(members, pd.Series) else members))
        n_in, n_out = int(inside.sum()), int((~inside).sum())
        row = {"signature": name, "n_genes": n_in, "mean_stat": float(values[inside].mean()) if n_in else np.nan}
        if n_in >= min_genes and n_out >= 1:
            if inter_gene_cor:
                auc, pvalue = rank_sum_with_correlation(values, inside, inter_gene_cor)
            else:
                test = stats.mannwhitneyu(values[inside], values[~inside], alternative="two-sided")
                auc, pvalue = float(test.statistic / (n_in * n_out)), float(test.pvalue)
            row.update(auc=auc, direction="up" if auc > 0.5 else "down", pvalue=pvalue)
        else:
            row.update(auc=np.nan, direction="", pvalue=np.nan)
        rows.append(row)
    out = pd.DataFrame(rows, columns=["signature", "n_genes", "mean_stat", "auc", "direction", "pvalue"])
    out["test"] = (
        f"rank-sum, set genes correlated {inter_gene_cor} (camera, ranks)"
        if inter_gene_cor
        else "Mann-Whitney U (set genes taken as independent)"
    )
    ok = out["pvalue"].notna().to_numpy()
    out["padj"] = np.nan
    if ok.any():
        out.loc[ok, "padj"] = multipletests(out.loc[ok, "pvalue"], method="fdr_bh")[1]
    return out.sort_values("pvalue", na_position="last").reset_index(drop=True)
