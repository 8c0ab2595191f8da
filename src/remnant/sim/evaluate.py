"""Agreement between workflow results and simulated ground truth (demo and test cohorts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, roc_auc_score


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean calls against boolean truth (NaN when undefined)."""
    flagged = np.asarray(flagged, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    tp = int((flagged & truth).sum())
    precision = tp / flagged.sum() if flagged.sum() else float("nan")
    recall = tp / truth.sum() if truth.sum() else float("nan")
    return float(precision), float(recall)


def truth_agreement(truth: pd.DataFrame, qc_cells: pd.DataFrame, cohort: pd.DataFrame) -> pd.DataFrame:
    """Table of metric/value rows: QC precision and recall for the planted low-quality cells and
    doublets, and the adjusted Rand index of annotated HSPC states against the simulated states.

    Parameters
    ----------
    truth
        Simulator truth: one row per cell with ``sample``, ``barcode``, ``state``, ``low_quality``, ``doublet``.
    qc_cells
        Per-cell QC tables of all samples (``sample``, ``barcode``, ``qc_pass``, ``qc_fail_*``).
    cohort
        Per-cell table of the clustered cohort (``sample``, ``barcode``, ``hspc_state``, ``leiden``).
    """
    key = ["sample", "barcode"]
    truth_cols = [c for c in truth.columns if c in key or c not in qc_cells.columns]
    qc = qc_cells.merge(truth[truth_cols], on=key, how="inner", validate="one_to_one")
    rows = []
    removed = ~qc["qc_pass"].astype(bool)
    bad = qc["low_quality"].astype(bool) | qc["doublet"].astype(bool)
    p, r = precision_recall(removed, bad)
    rows += [("qc_removed_vs_planted_bad", "precision", p), ("qc_removed_vs_planted_bad", "recall", r)]
    quality_fail = qc[[c for c in qc.columns if c.startswith("qc_fail_") and c != "qc_fail_doublet"]].any(axis=1)
    p, r = precision_recall(quality_fail, qc["low_quality"])
    rows += [("low_quality", "precision", p), ("low_quality", "recall", r)]
    droplet = (qc["technology"].astype(str) == "droplet").to_numpy()
    p, r = precision_recall(qc.loc[droplet, "qc_fail_doublet"], qc.loc[droplet, "doublet"])
    rows += [("doublet_droplet", "precision", p), ("doublet_droplet", "recall", r)]
    states = cohort.merge(
        truth[["sample", "barcode", "state", "low_quality", "doublet"]], on=key, how="inner", validate="one_to_one"
    )
    clean = ~(states["low_quality"].astype(bool) | states["doublet"].astype(bool))
    states = states[clean]
    rows.append(
        ("hspc_state", "adjusted_rand_index", float(adjusted_rand_score(states["state"], states["hspc_state"])))
    )
    rows.append(
        ("hspc_state", "accuracy", float((states["state"].astype(str) == states["hspc_state"].astype(str)).mean()))
    )
    rows.append(("leiden", "adjusted_rand_index", float(adjusted_rand_score(states["state"], states["leiden"]))))
    rows.append(("cells", "n_truth", float(len(truth))))
    rows.append(("cells", "n_kept_clean", float(len(states))))
    return pd.DataFrame(rows, columns=["what", "metric", "value"])


def lesion_agreement(truth: pd.DataFrame, calls: pd.DataFrame) -> pd.DataFrame:
    """Per lesion: AUROC of the posterior against simulated carrier status, false-positive rate on
    the (cross-fitted) reference cells, sensitivity and precision of the calls. Rows as in
    :func:`truth_agreement`; doublets and low-quality cells are left out.

    ``truth`` needs ``lesion_<name>`` columns; ``calls`` needs ``<name>_posterior``,
    ``<name>_call`` and ``reference`` (the per-cell table of rule call_lesions).
    """
    merged = calls.merge(truth, on=["sample", "barcode"], how="inner", suffixes=("", "_truth"), validate="one_to_one")
    merged = merged[~(merged["low_quality"].astype(bool) | merged["doublet"].astype(bool))].reset_index(drop=True)
    rows = []
    for column in [c for c in truth.columns if c.startswith("lesion_")]:
        name = column.removeprefix("lesion_")
        if f"{name}_posterior" not in merged:
            continue
        carrier = merged[column].astype(bool).to_numpy()
        posterior = merged[f"{name}_posterior"].to_numpy(dtype=float)
        called = merged[f"{name}_call"].astype(bool).to_numpy()
        reference = merged["reference"].astype(bool).to_numpy()
        auroc = roc_auc_score(carrier, posterior) if 0 < carrier.sum() < len(carrier) else float("nan")
        precision, recall = precision_recall(called, carrier)
        rows += [
            (name, "auroc", float(auroc)),
            (name, "fpr_reference_cells", float(called[reference].mean()) if reference.any() else float("nan")),
            (name, "sensitivity", recall),
            (name, "precision", precision),
        ]
        if "technology" in merged:
            for tech, m in merged.groupby("technology", observed=True).groups.items():
                m = merged.index.get_indexer(m)
                if 0 < carrier[m].sum() < len(m):
                    rows.append((name, f"auroc_{tech}", float(roc_auc_score(carrier[m], posterior[m]))))
        # the per-sample carrier fraction (mean posterior = the learned prior) against the truth
        query = merged[~reference].assign(carrier=carrier[~reference], posterior=posterior[~reference])
        per_sample = query.groupby("sample", observed=True)[["carrier", "posterior"]].mean()
        rows.append(
            (
                name,
                "sample_fraction_mean_abs_error",
                float((per_sample["posterior"] - per_sample["carrier"]).abs().mean()),
            )
        )
    return pd.DataFrame(rows, columns=["what", "metric", "value"])
