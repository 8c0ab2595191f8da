"""Rule filter_cells' QC calls as the workflow makes them: messages naming the config keys.

:func:`remnant.pp.qc.flag_cells` names its thresholds by their keys in the mapping it is given
(``min_counts``, ``doublets.threshold``); the workflow gives it the config's ``qc`` block, so here
those names get the block's prefix (``qc.min_counts``). Whether a sample has enough cells left is
the workflow's question, asked by :func:`require_passing_cells`.
"""

from __future__ import annotations

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
