"""Rule filter_cells: QC of one sample as the workflow makes it, with messages naming the config keys.

:func:`remnant.pp.qc.flag_cells` names its thresholds by their keys in the mapping it is given
(``min_counts``, ``doublets.threshold``); the workflow gives it the config's ``qc`` block, so here
those names get the block's prefix (``qc.min_counts``). Whether a sample has enough cells left is
the workflow's question, asked by :func:`require_passing_cells`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from anndata import AnnData

from remnant.errors import InputError

#: Where the QC thresholds are in the config (put before their keys in messages).
QC_PREFIX = "qc."


def flag_cells(adata: AnnData, thresholds: Mapping[str, Any], **options) -> AnnData:
    """:func:`remnant.pp.qc.flag_cells` (same arguments) given the config's ``qc`` block as
    ``thresholds``: its warnings name the config keys (``qc.doublets.threshold``)."""
    from remnant.pp.qc import flag_cells as _flag_cells

    return _flag_cells(adata, thresholds, key_prefix=QC_PREFIX, **options)


def require_passing_cells(adata: AnnData, min_cells: int, *, sample: str, log_path: str = "") -> int:
    """Raise :class:`InputError` when fewer than ``min_cells`` (config ``qc.min_cells``) cells of a sample pass QC
    (:func:`flag_cells` ran).

    The message names the sample, the count, the config key and the checks the cells failed (most
    common first), and the job's log (``log_path``, which has the thresholds applied). Returns the
    number of passing cells.
    """
    kept = int(adata.obs["qc_pass"].sum())
    if kept < min_cells:
        reasons = adata.obs.loc[~adata.obs["qc_pass"], "qc_reason"].str.split(";").explode().value_counts().to_dict()
        raise InputError(
            f"only {kept} of {adata.n_obs} cells pass QC (config qc.min_cells = {min_cells}); failed checks: {reasons}. "
            "Check the counts file, or relax the thresholds under qc: in the config"
            + (f"; the thresholds applied are in {log_path}." if log_path else "."),
            where=f"sample {sample}",
        )
    return kept


#: The per-cell QC table's columns (then every ``qc_fail_*`` column).
CELL_COLUMNS = [
    "barcode",
    "sample",
    "technology",
    "total_counts",
    "n_genes_by_counts",
    "pct_counts_mt",
    "doublet_score",
    "predicted_doublet",
    "qc_pass",
    "qc_reason",
]


def filter_cells(
    counts: str,
    *,
    sample: str,
    qc: Mapping[str, Any],
    droplet: bool,
    seed: int,
    figure: str,
    cells: str,
    h5ad: str,
    log_path: str,
) -> None:
    """One sample's QC: flag the cells, draw the QC figure, write the per-cell table (``cells``,
    gzipped TSV) and the passing cells (``h5ad``); InputError when too few cells pass."""
    import anndata as ad

    from remnant.io.store import write_cell_table
    from remnant.pl.qc import plot_qc

    log = logging.getLogger(__name__)
    adata = ad.read_h5ad(counts)
    flag_cells(adata, qc, score_doublets_for=droplet, seed=seed)
    plot_qc(adata, figure, title=sample, unscored="doublets not scored\n(plate sample, or qc.doublets disabled)")
    columns = CELL_COLUMNS + [c for c in adata.obs if c.startswith("qc_fail_")]
    write_cell_table(adata.obs[columns], cells)
    require_passing_cells(adata, qc["min_cells"], sample=sample, log_path=log_path)
    filtered = adata[adata.obs["qc_pass"].to_numpy()].copy()
    filtered.write_h5ad(h5ad, compression="gzip")
    log.info("kept %d of %d cells", filtered.n_obs, adata.n_obs)
