"""What a lost arm reads at on real cells, and two ways to read it (issue 17; docs/robust_evidence.md, Session 20).

Run:  .venv/bin/python benchmarks/aneuploid_levels.py [--ratios] [--levels] [--sets tnbc1,oligo]

Two studies, each printing its tables; nothing here is used by the library.

``--ratios`` (TNBC1): ``rm.tl.call_lesions`` with every lesion's ``copy_ratio`` set to one value at a time (losses
0.3-0.9, gains 1.2-3.5; ``refine=False``; the settings of benchmarks/real_data.py, the tumour's shared sample),
on TNBC1's lesions and its unchanged control arms. Per arm and ratio: ``mixture`` the log-likelihood of the
non-reference cells under the two-component mixture of their tempered LLRs at the sample's EM prior (the
likeliest ratio is where it peaks), ``auroc`` the LLR's tumour-vs-normal AUROC, ``tumour`` / ``normal`` the
shares called (posterior >= 0.9).

``--levels`` (TNBC1 and the oligodendroglioma set): a stand-alone scorer with the library's outlier-robust gene
terms (:func:`remnant.tl.lesion_model._outlier_terms`, eps 0.05, copy ratio 0.5 / 1.5), a pooled reference
profile per count of depth (the library's depth genes), reference cells scored against the profile of the
other four of five random folds, a method-of-moments NB size per gene; each Leiden cluster's cells are scored
with the expectation ``D_c p_g exp(offset_Kg)``, where the offset is

- ``none``: 0 (the library's form, without refinement or priors);
- ``arm``: the cluster's anchor, the median over the genome's arms (outside every configured arm, >= 30
  expressed genes) of its per-arm log ratio of sums, observed over expected;
- ``rs``: the cluster's gene pattern with its level kept: per lesion gene the cluster's log ratio minus the
  lesion's log ratio of sums, shrunk by ``tau^2 / (tau^2 + 1 / E)`` (tau 0.5, ``E`` the expected count), then
  renormalised so the expected total over the lesion's genes is unchanged;
- ``rs+arm``: both.

The cluster's offsets are computed from all its cells (in-sample, reference cells too). Printed per arm and
variant: the per-cell LLR's AUROC tumour vs normal, and the shares of tumour and normal cells with LLR > 2.2 (a
crude call without a prior). Then each tumour cluster's level on each arm against its anchor, two ways: the log
ratio of sums minus the median arm's (``rs+arm``'s level), and the weighted median (weights sqrt(E)) of the genes'
log ratios minus the same median over the genes outside every configured arm (infercnv's centring).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_sets as R  # noqa: E402

import remnant as rm  # noqa: E402
from remnant.io.annotation import _locate  # noqa: E402
from remnant.tl.depth import depth_groups, depth_mask, group_totals  # noqa: E402
from remnant.tl.lesion_model import _outlier_terms, em_prior  # noqa: E402
from remnant.tl.lesions import genes_in  # noqa: E402

LOSSES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
GAINS = (1.2, 1.35, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5)
VARIANTS = ("none", "arm", "rs", "rs+arm")
EPS, TAU2, CALL_LLR, N_FOLDS, MIN_ARM_GENES = 0.05, 0.5**2, 2.2, 5, 30


# ------------------------------------------------------------------------------------------------
# --ratios
# ------------------------------------------------------------------------------------------------
def ratio_grid() -> pd.DataFrame:
    adata = R.load_tnbc1()
    lesions, controls = R.tnbc1_sets()
    tumour, normal = adata.obs["tumour"].to_numpy(), adata.obs["normal"].to_numpy()
    kw = {"state_key": "state", "prior_key": "leiden", "donor_key": "patient", "batch_key": None}
    kw |= {"layer": "counts", "sample_key": "sample_shared", "refine": False}
    rows = []
    for loss, gain in zip(LOSSES, GAINS, strict=True):
        arms = [dataclasses.replace(a, copy_ratio=loss if a.type == "loss" else gain) for a in lesions + controls]
        b = R.call(adata, arms, normal, **kw)
        for a in arms:
            llr = b.obs[f"{a.name}_llr"].to_numpy()
            call = b.obs[f"{a.name}_call"].to_numpy()
            query = llr[~normal]
            pi = em_prior(query)
            rows.append(
                {
                    "arm": a.name,
                    "kind": "lesion" if a in arms[: len(lesions)] else "control",
                    "ratio": a.copy_ratio,
                    "mixture": float(np.sum(np.logaddexp(np.log(pi) + query, np.log1p(-pi)))),
                    "auroc": R.auroc(llr, tumour),
                    "tumour": float(call[tumour].mean()),
                    "normal": float(call[normal].mean()),
                }
            )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# --levels
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Cells:
    """One set's cells as the stand-alone scorer reads them."""

    X: sp.csc_matrix  # counts, cells x genes
    var: pd.DataFrame
    arms: list  # lesions then controls (Lesion objects)
    n_lesions: int
    tumour: np.ndarray
    normal: np.ndarray
    depth: np.ndarray
    outside: np.ndarray  # autosomal genes outside every configured arm
    arm_of: np.ndarray  # arm label per gene
    clusters: np.ndarray


def load_cells(name: str) -> Cells:
    if name == "tnbc1":
        adata, (lesions, controls), sample = R.load_tnbc1(), R.tnbc1_sets(), "sample_shared"
        bands = R.GRCH38_BANDS
    else:
        adata, (lesions, controls), sample = R.load_oligo(), R.oligo_sets(), "sample"
        bands = R.HG19_ARMS
    var, normal = adata.var, adata.obs["normal"].to_numpy()
    X = sp.csr_matrix(adata.layers["counts"], dtype=np.float64)
    autosome = rm.io.autosomal(var["chromosome"])
    configured = np.zeros(adata.n_vars, bool)
    for a in lesions + controls:
        configured |= genes_in(var, a)
    outside = autosome & ~configured
    codes, table = depth_groups(adata.obs[sample].to_numpy(), None, normal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = depth_mask(var, outside, group_totals(X, codes, len(table)), table, None, "aneuploid_levels")
    return Cells(
        X.tocsc(),
        var,
        lesions + controls,
        len(lesions),
        adata.obs["tumour"].to_numpy(),
        normal,
        np.asarray(X[:, mask].sum(1)).ravel(),
        outside,
        _arm_labels(var, bands),
        adata.obs["leiden"].astype(str).to_numpy(),
    )


def _arm_labels(var: pd.DataFrame, bands: Path) -> np.ndarray:
    """Each gene's arm (``chr5q``; "" off every arm), by its midpoint, as the gene table places it."""
    arm, _ = _locate(var, rm.io.load_cytobands(bands))
    return np.where(arm.notna(), var["chromosome"].astype(str) + arm.astype(str), "").astype(object)


def level_study(cells: Cells, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    X, D, normal = cells.X, cells.depth, cells.normal
    fold = np.full(D.size, -1)
    ref = np.flatnonzero(normal)
    fold[ref] = np.random.default_rng(seed).permutation(ref.size) % N_FOLDS
    ref_counts = np.asarray(X[normal].sum(0)).ravel()
    profiles = {-1: ref_counts / D[normal].sum()}
    for f in range(N_FOLDS):
        keep = normal & (fold != f)
        profiles[f] = np.asarray(X[keep].sum(0)).ravel() / D[keep].sum()
    p_all = profiles[-1]
    size = _nb_size(X, D, normal, p_all)
    expressed = p_all * D[normal].mean() >= 0.05
    expected_rows = np.vstack([profiles[f] for f in fold])  # cells x genes, each row its own profile
    clusters = {}
    for k in np.unique(cells.clusters):
        rows = np.flatnonzero(cells.clusters == k)
        O = np.asarray(X[rows].sum(0)).ravel()
        E = D[rows] @ expected_rows[rows]
        levels = []
        for arm in pd.unique(cells.arm_of):
            g = np.flatnonzero((cells.arm_of == arm) & cells.outside & expressed & (E > 1))
            if arm and g.size >= MIN_ARM_GENES:
                levels.append(np.log(O[g].sum() / E[g].sum()))
        genome = cells.outside & expressed & (E > 1)
        median_anchor = R.weighted_median(np.log((O[genome] + 0.5) / (E[genome] + 0.5)), np.sqrt(E[genome]))
        clusters[k] = (rows, O, E, float(np.median(levels)), median_anchor)
    out, level_rows = [], []
    for i, arm in enumerate(cells.arms):
        rho = 0.5 if arm.type == "loss" else 1.5
        g = np.flatnonzero(genes_in(cells.var, arm) & expressed)
        x = X[:, g].toarray()
        llr = {v: np.zeros(D.size) for v in VARIANTS}
        for k, (rows, O, E, anchor, median_anchor) in clusters.items():
            og, eg = O[g], E[g]
            level = np.log((og.sum() + 0.5) / (eg.sum() + 0.5))
            pattern = (np.log((og + 0.5) / (eg + 0.5)) - level) * TAU2 / (TAU2 + 1.0 / (eg + 0.5))
            pattern -= np.log(np.sum(eg * np.exp(pattern)) / eg.sum())
            offsets = {"none": 0.0, "arm": anchor, "rs": pattern, "rs+arm": pattern + anchor}
            for v, off in offsets.items():
                mu = np.maximum(D[rows, None] * expected_rows[rows][:, g] * np.exp(off), 1e-12)
                llr[v][rows] = _outlier_terms(x[rows], mu, size[g], rho, EPS).sum(1)
            if cells.tumour[rows].mean() > 0.5:
                on = eg > 1
                median_level = R.weighted_median(np.log((og[on] + 0.5) / (eg[on] + 0.5)), np.sqrt(eg[on]))
                level_rows.append(
                    {
                        "arm": arm.name,
                        "cluster": k,
                        "sums_minus_arm_anchor": level - anchor,
                        "median_minus_median_anchor": median_level - median_anchor,
                        "median_anchor": median_anchor,
                        "arm_anchor": anchor,
                    }
                )
        for v in VARIANTS:
            out.append(
                {
                    "arm": arm.name,
                    "kind": "lesion" if i < cells.n_lesions else "control",
                    "variant": v,
                    "auroc": R.auroc(llr[v], cells.tumour),
                    "tumour": float((llr[v][cells.tumour] > CALL_LLR).mean()),
                    "normal": float((llr[v][normal] > CALL_LLR).mean()),
                }
            )
    return pd.DataFrame(out), pd.DataFrame(level_rows)


def _nb_size(X, D, normal, p) -> np.ndarray:
    """Method-of-moments NB size per gene on the reference cells, half-way to the median over expressed genes."""
    x = X[normal].toarray()
    mu = D[normal][:, None] * p[None, :]
    num, den = ((x - mu) ** 2 - mu).sum(0), (mu**2).sum(0)
    phi = np.clip(np.where(den > 0, num / np.maximum(den, 1e-300), 0.0), 1e-3, 100.0)
    phi = 0.5 * phi + 0.5 * np.median(phi[p * D[normal].mean() > 0.1])
    return 1.0 / phi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", action="store_true", help="TNBC1 copy-ratio grid")
    ap.add_argument("--levels", action="store_true", help="stand-alone scorer variants")
    ap.add_argument("--sets", default="tnbc1,oligo", help="data sets of --levels")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    if not (args.ratios or args.levels):
        args.ratios = args.levels = True
    if args.ratios:
        grid = ratio_grid()
        print("TNBC1, every arm at one copy ratio at a time (refine off):")
        print(grid.round(4).to_string(index=False))
        best = grid.loc[grid.groupby("arm", sort=False)["mixture"].idxmax()]
        print("\nLikeliest ratio per arm:")
        print(best.round(4).to_string(index=False))
    if args.levels:
        for name in args.sets.split(","):
            table, levels = level_study(load_cells(name))
            print(f"\n{name}: AUROC / tumour with LLR > {CALL_LLR} / normal with LLR > {CALL_LLR}")
            for col in ("auroc", "tumour", "normal"):
                wide = table.pivot(index="arm", columns="variant", values=col)
                print(wide.loc[pd.unique(table["arm"]), list(VARIANTS)].round(4).to_string())
            for col, what in (
                ("sums_minus_arm_anchor", "log ratio of sums minus the median arm's"),
                ("median_minus_median_anchor", "weighted median gene log ratio minus that of the genes outside"),
            ):
                print(f"\n{name}: tumour clusters' lesion level, {what} (natural log)")
                print(levels.pivot(index="arm", columns="cluster", values=col).round(2).to_string())
            anchors = levels.groupby("cluster")[["arm_anchor", "median_anchor"]].first()
            print(f"\n{name}: tumour clusters' anchors against the depth's level (natural log)")
            print(anchors.round(3).T.to_string())


if __name__ == "__main__":
    main()
