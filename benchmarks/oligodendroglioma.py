"""Real data with known truth: 1p/19q co-deletion in the oligodendroglioma Smart-seq2 set of infercnvpy.

Run by hand:  .venv/bin/python benchmarks/oligodendroglioma.py [--no-figures] [--no-infercnv] [--variants]

Data
----
``infercnvpy.datasets.oligodendroglioma()`` (infercnvpy 0.6.1): 184 cells x 9,450 genes, the example
of the original inferCNV, subsampled from Tirosh et al., Nature 2016 (Smart-seq2, full-length reads,
no UMIs). Every malignant cell of these 1p/19q-codeleted oligodendrogliomas carries the loss of 1p
and of 19q; the 42 non-malignant cells (microglia/macrophages, oligodendrocytes) are diploid.
Positions in ``var`` are hg19. The cell id prefix is the tumour (``MGH53_P2_E09``; ``93_``/``97_``
are MGH93/MGH97): the normal cells come from MGH36, MGH53 and MGH54 (no malignant MGH54 cell is in
the subset), so the tumour is both the ``sample`` (per-sample prior) and the ``donor`` (cross-fitting
folds: a normal cell is judged against the normal cells of the other tumours).

What ``X`` holds, and the count layer
-------------------------------------
``X`` is not counts and not log: infercnvpy's tutorial calls it "TPM-normalized, but not
log-transformed" (and applies log1p before ``tl.infercnv``). Checked here: non-negative floats
(0.1% integers, smallest nonzero 0.00085, largest 34,215), row sums 75k-128k (median 98.7k) over
the 9,450 genes with no cell-type difference, i.e. a relative scale (TPM/10 = 2^E - 1 of Tirosh's
E = log2(TPM/10 + 1)) that has removed each cell's depth. The per-cell distribution of log10(X)
is bimodal: a low mode at 0.1-1 (fractions of a read that RSEM assigns to multi-mapping genes) and
the main mode at 10-30.

``call_lesions`` needs counts on the scale of sampled molecules (its negative binomial has a
Poisson term). We use Census (Qiu et al., Nat Methods 2017; monocle ``relative2abs``): in
full-length single-cell data the most frequent relative expression value of detected genes is
that of a gene captured as one molecule (t*), so ``X / t*`` is the cell's relative expression in
captured-molecule units. t* per cell is 10^(mean of the upper component of a 2-Gaussian mixture
on log10 X, X > 0.1) -- the mixture variant that Census ships as an alternative to its
kernel-density mode, needed here because the low RSEM mode wins the density mode in ~10% of
cells. Median t* = 18 (range 6-42), i.e. 2,700-15,600 (median 5,700) captured molecules per cell. Check:
``call_lesions`` fits the Poisson-level scale ``c`` of ``var = c*mu + phi*mu^2`` on the reference
cells and finds c = 1.0-1.35 on these Census counts (c = 15-20 on X itself, the same factor as
t*). ``--variants`` shows that the result does not hinge on this choice (X as is; one global t*).

States
------
The reference states are the two normal cell types. Malignant cells have none of them; they are
given the nearest reference state by correlation of log1p(counts) on genes outside chr1 and chr19
(so neither the configured nor the control arms inform it): 138/142 are nearest to
oligodendrocytes, 4 to microglia (the issue's "nearest reference neighbours" option). The other
choice of ``call_lesions`` -- no state, the pooled reference profile -- is in ``--variants``.

Printed: per lesion the AUROC of the posterior (malignant vs normal; normals scored by
cross-fitting), the AUROC of the LLR (no prior), the false-positive rate on the cross-fitted
normals at the 0.9 cut-off with their sample's learned prior and at a fixed prior of 0.5,
sensitivity, genes used, temperature, count scale; per-tumour call rates; the same AUROCs for
infercnvpy's arm score (mean of its per-gene smoothed CNV value over the arm, negated), with the
normals inside infercnvpy's reference (as its tutorial runs) and cross-fitted (reference without
the cell's tumour); control arms 1q and 19p, retained in 1p/19q-codeleted tumours (the
co-deletion is an unbalanced t(1;19)(q10;p10)): an AUROC near or below 0.5 there shows that
the calls read copy number, not cell type.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.tl.lesions import call_lesions, parse_lesions  # noqa: E402

HG19 = ROOT / "resources/annotation/hg19_chromosome_arms.tsv"
FIGURES = ROOT / "docs/figures"
LESIONS = [{"name": "del1p", "type": "loss", "region": "1p"}, {"name": "del19q", "type": "loss", "region": "19q"}]
CONTROLS = [{"name": "del1q", "type": "loss", "region": "1q"}, {"name": "del19p", "type": "loss", "region": "19p"}]
NORMAL_TYPES = ("Microglia/Macrophage", "Oligodendrocytes (non-malignant)")
TUMOUR_NAMES = {"93": "MGH93", "97": "MGH97"}


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def auroc(score, truth) -> float:
    from scipy.stats import rankdata

    truth = np.asarray(truth, bool)
    npos, nneg = truth.sum(), (~truth).sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, float))
    return float((ranks[truth].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def census_t(X: sp.csr_matrix, threshold: float = 0.1, seed: int = 0) -> np.ndarray:
    """Per-cell relative expression of one captured molecule (Census t*), upper mixture component.

    For each cell: log10 of the values > ``threshold``; a two-component Gaussian mixture; t* is
    10 to the larger component mean.
    """
    from sklearn.mixture import GaussianMixture

    X = sp.csr_matrix(X)
    out = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        v = X.data[X.indptr[i] : X.indptr[i + 1]]
        lv = np.log10(v[v > threshold])[:, None]
        gm = GaussianMixture(2, random_state=seed).fit(lv)
        out[i] = 10 ** float(gm.means_.max())
    return out


def load(state: str = "nearest", scale: str = "census") -> ad.AnnData:
    """The data set with obs ``tumour``, ``malignant``, ``state`` and ``layers['counts']``.

    ``scale``: ``census`` (X / per-cell t*), ``global`` (X / median t*) or ``none`` (X as is).
    ``state``: ``nearest`` (malignant cells get the nearest reference state) or ``none``
    (malignant cells have no state: pooled reference profile).
    """
    import infercnvpy as cnv

    adata = cnv.datasets.oligodendroglioma()
    X = sp.csr_matrix(adata.X, dtype=np.float64)
    obs = adata.obs
    obs["cell_type"] = obs["cell_type"].astype(str)
    prefix = pd.Series([c.split("_")[0] for c in adata.obs_names], index=obs.index)
    obs["tumour"] = prefix.replace(TUMOUR_NAMES)
    obs["malignant"] = obs["cell_type"].str.startswith("malignant").to_numpy()
    obs["normal"] = obs["cell_type"].isin(NORMAL_TYPES).to_numpy()
    assert (obs["malignant"] ^ obs["normal"]).all()
    t = census_t(X)
    obs["census_t"] = t
    factor = {"census": 1.0 / t, "global": np.full(adata.n_obs, 1.0 / np.median(t)), "none": np.ones(adata.n_obs)}[
        scale
    ]
    counts = sp.csr_matrix(sp.diags(factor) @ X)
    adata.layers["counts"] = counts
    adata.uns["count_layer"] = scale
    normal = obs["normal"].to_numpy()
    if state == "nearest":
        keep = ~adata.var["chromosome"].isin(["chr1", "chr19", "chrX", "chrY"]).to_numpy()
        lx = np.log1p(counts[:, keep].toarray())
        lx = lx - lx.mean(1, keepdims=True)
        cents = np.vstack([lx[(obs["cell_type"] == s).to_numpy()].mean(0) for s in NORMAL_TYPES])
        cents = cents - cents.mean(1, keepdims=True)
        cor = (lx @ cents.T) / np.outer(np.linalg.norm(lx, axis=1), np.linalg.norm(cents, axis=1))
        nearest = np.asarray(NORMAL_TYPES)[cor.argmax(1)]
        obs["state"] = np.where(normal, obs["cell_type"], nearest)
    else:
        obs["state"] = np.where(normal, obs["cell_type"], "")
    return adata


def lesion_sets():
    cyto = load_cytobands(HG19)
    arms = chromosome_arms(cyto)
    return parse_lesions(LESIONS, cyto, arms), parse_lesions(CONTROLS, cyto, arms), arms


def run_remnant(adata: ad.AnnData, lesions, **kwargs) -> ad.AnnData:
    b = adata.copy()
    call_lesions(
        b,
        lesions,
        reference=b.obs["normal"].to_numpy(),
        state_key="state",
        sample_key="tumour",
        donor_key="tumour",
        layer="counts",
        **kwargs,
    )
    return b


def _batch_value(info: dict, key: str) -> float:
    if key in info:
        return float(info[key])
    if "batches" in info and key in info["batches"]:
        return float(info["batches"][key].iloc[0])
    return float("nan")


def summarize(b: ad.AnnData, lesions) -> pd.DataFrame:
    obs = b.obs
    mal, nor = obs["malignant"].to_numpy(), obs["normal"].to_numpy()
    rows = []
    for les in lesions:
        info = b.uns["lesions"][les.name]
        post, llr, call = (obs[f"{les.name}_{k}"].to_numpy() for k in ("posterior", "llr", "call"))
        rows.append(
            {
                "lesion": les.name,
                "hg19": f"{les.chromosome}:{les.start:,}-{les.end:,}",
                "auroc": auroc(post, mal),
                "auroc_llr": auroc(llr, mal),
                "fpr_normals": float(call[nor].mean()),
                "fpr_prior0.5": float(np.mean(llr[nor] >= np.log(9))),
                "sensitivity": float(call[mal].mean()),
                "genes": int(len(info["genes"])),
                "temperature": _batch_value(info, "temperature"),
                "count_scale": _batch_value(info, "count_scale"),
            }
        )
    return pd.DataFrame(rows).set_index("lesion")


def per_tumour(b: ad.AnnData, lesions) -> pd.DataFrame:
    obs = b.obs.copy()
    obs["group"] = np.where(obs["malignant"], "malignant", "normal")
    agg = {"n": ("tumour", "size")}
    for les in lesions:
        agg[f"{les.name}_called"] = (f"{les.name}_call", "mean")
    out = obs.groupby(["tumour", "group"], observed=True).agg(**agg)
    for les in lesions:
        prior = b.uns["lesions"][les.name]["per_sample"]["prior"]
        out[f"{les.name}_prior"] = [prior.get(t, np.nan) for t, _ in out.index]
    return out


# ------------------------------------------------------------------------------------------------
# infercnvpy, side by side
# ------------------------------------------------------------------------------------------------
def _gene_in(var: pd.DataFrame, les) -> np.ndarray:
    mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
    return (var["chromosome"].astype(str).to_numpy() == les.chromosome) & (mid >= les.start) & (mid < les.end)


def _infercnv(adata: ad.AnnData, reference: np.ndarray, dynamic_threshold: float | None = 1.5) -> ad.AnnData:
    import infercnvpy as cnv

    b = ad.AnnData(
        np.log1p(sp.csr_matrix(adata.X, dtype=np.float32)),
        obs=adata.obs[["cell_type"]].copy(),
        var=adata.var[["chromosome", "start", "end"]].copy(),
    )
    b.obs["icnv_ref"] = np.where(reference, b.obs["cell_type"], "query")
    cats = sorted(set(b.obs["icnv_ref"][reference]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cnv.tl.infercnv(
            b,
            reference_key="icnv_ref",
            reference_cat=cats,
            window_size=100,
            step=10,
            n_jobs=1,
            dynamic_threshold=dynamic_threshold,
            calculate_gene_values=True,
        )
    return b


def infercnv_scores(adata: ad.AnnData, lesions, dynamic_threshold: float | None = 1.5) -> dict:
    """Arm scores (negated mean per-gene smoothed CNV value) from infercnvpy.tl.infercnv on log1p(X).

    ``dynamic_threshold``: infercnvpy's denoising (default 1.5: values within 1.5 sd of the
    reference noise are set to 0, so every normal cell scores exactly 0 and ties with the malignant
    cells it zeroes); ``None`` keeps the continuous values.

    ``insample``: one run, all normal cells are the reference (infercnvpy's tutorial).
    ``crossfit``: malignant cells from that run; each tumour's normal cells from a run whose
    reference leaves that tumour's normal cells out.
    """
    normal = adata.obs["normal"].to_numpy()
    tumour = adata.obs["tumour"].to_numpy()
    t0 = time.perf_counter()
    full = _infercnv(adata, normal, dynamic_threshold)
    sec = time.perf_counter() - t0
    gv = full.layers["gene_values_cnv"]
    scores = {"insample": {}, "crossfit": {}, "sec": sec, "adata": full}
    for les in lesions:
        m = _gene_in(adata.var, les)
        scores["insample"][les.name] = -np.nanmean(gv[:, m], axis=1)
    cf = {les.name: scores["insample"][les.name].copy() for les in lesions}
    gv_cf = np.array(gv, dtype=float, copy=True)
    for d in sorted(set(tumour[normal])):
        held = normal & (tumour == d)
        run = _infercnv(adata, normal & ~held, dynamic_threshold)
        g2 = run.layers["gene_values_cnv"]
        gv_cf[held] = g2[held]
        for les in lesions:
            m = _gene_in(adata.var, les)
            cf[les.name][held] = -np.nanmean(g2[held][:, m], axis=1)
    scores["crossfit"] = cf
    scores["gene_values_crossfit"] = gv_cf
    return scores


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
GROUP_ORDER = [
    "malignant_93",
    "malignant_97",
    "malignant_MGH36",
    "malignant_MGH53",
    "Oligodendrocytes (non-malignant)",
    "Microglia/Macrophage",
]
GROUP_LABEL = {
    "malignant_93": "malignant MGH93",
    "malignant_97": "malignant MGH97",
    "malignant_MGH36": "malignant MGH36",
    "malignant_MGH53": "malignant MGH53",
    "Oligodendrocytes (non-malignant)": "oligodendrocytes (normal)",
    "Microglia/Macrophage": "microglia/macrophages (normal)",
}
GROUP_COLOR = {
    "malignant_93": "#d62728",
    "malignant_97": "#ff7f0e",
    "malignant_MGH36": "#9467bd",
    "malignant_MGH53": "#8c564b",
    "Oligodendrocytes (non-malignant)": "#1f77b4",
    "Microglia/Macrophage": "#2ca02c",
}


def _roc(score, truth):
    """ROC points at each distinct score (tied cells move both rates at once: a diagonal step)."""
    score = np.asarray(score, float)
    t = np.asarray(truth, bool)
    thr = np.unique(score)[::-1]
    tpr = np.concatenate([[0], [(score[t] >= x).mean() for x in thr]])
    fpr = np.concatenate([[0], [(score[~t] >= x).mean() for x in thr]])
    return fpr, tpr


def figure_calls(b: ad.AnnData, icnv: dict | None, icnv_raw: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = b.obs
    mal = obs["malignant"].to_numpy()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.25, 1, 1]})
    ax = axes[0]
    for g in GROUP_ORDER:
        m = (obs["cell_type"] == g).to_numpy()
        normal = not g.startswith("malignant")
        ax.scatter(
            obs.loc[m, "del1p_llr"],
            obs.loc[m, "del19q_llr"],
            s=22 if normal else 14,
            c=GROUP_COLOR[g],
            marker="o" if not normal else "D",
            edgecolors="k" if normal else "none",
            linewidths=0.5,
            label=f"{GROUP_LABEL[g]} ({m.sum()})",
            alpha=0.85,
        )
    for f in (ax.axvline, ax.axhline):
        f(np.log(9), color="grey", lw=0.8, ls="--")
        f(0, color="grey", lw=0.5)
    ax.set_xlabel("del(1p) log-likelihood ratio (tempered)")
    ax.set_ylabel("del(19q) log-likelihood ratio (tempered)")
    ax.set_title(
        "Per-cell evidence; normals cross-fitted\n(dashed: LLR = log 9, posterior 0.9 at prior 0.5)", fontsize=9
    )
    ax.legend(fontsize=7, loc="lower right", frameon=True, framealpha=0.9)
    for ax, name in zip(axes[1:], ("del1p", "del19q")):
        fpr, tpr = _roc(obs[f"{name}_posterior"], mal)
        ax.plot(
            fpr, tpr, color="k", lw=1.8, label=f"remnant posterior (AUROC {auroc(obs[f'{name}_posterior'], mal):.3f})"
        )
        if icnv is not None:
            for sc, ls, lab in ((icnv, "--", "default (denoised)"), (icnv_raw, ":", "dynamic_threshold=None")):
                s = sc["crossfit"][name]
                fpr, tpr = _roc(s, mal)
                ax.plot(
                    fpr,
                    tpr,
                    color="tab:blue",
                    ls=ls,
                    lw=1.4,
                    label=f"infercnvpy arm score, {lab} ({auroc(s, mal):.3f})",
                )
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
        ax.set_xlim(-0.01, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false-positive rate (42 normal cells)")
        ax.set_ylabel("true-positive rate (142 malignant cells)")
        ax.set_title(f"{name.replace('del', 'del(')}): malignant vs normal (normals cross-fitted)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def figure_profiles(icnv: dict, b: ad.AnnData, lesions, path: Path) -> None:
    """Chromosomes 1 and 19: mean infercnvpy per-gene profile per cell group (normals cross-fitted),
    with remnant's per-tumour deleted interval (refined from its called cells) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = b.obs
    var = b.var
    gv = icnv["gene_values_crossfit"]
    chrom = var["chromosome"].astype(str).to_numpy()
    tumour_of = {
        "malignant_93": "MGH93",
        "malignant_97": "MGH97",
        "malignant_MGH36": "MGH36",
        "malignant_MGH53": "MGH53",
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.9), gridspec_kw={"width_ratios": [249, 100]})
    for ax, c, les in zip(axes, ("chr1", "chr19"), lesions):
        on = np.flatnonzero(chrom == c)
        on = on[np.argsort(var["start"].to_numpy()[on])]
        mb = (var["start"].to_numpy()[on] + var["end"].to_numpy()[on]) / 2e6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for g in GROUP_ORDER:
                grp = (obs["cell_type"] == g).to_numpy()
                y = np.nanmean(gv[grp][:, on], axis=0)
                ok = np.isfinite(y)
                malignant = g.startswith("malignant")
                ax.plot(
                    mb[ok],
                    y[ok],
                    color=GROUP_COLOR[g],
                    lw=1.3 if malignant else 1.6,
                    ls="-" if malignant else "--",
                    label=GROUP_LABEL[g],
                )
        ax.axvspan(les.start / 1e6, les.end / 1e6, color="0.93", zorder=0)
        ax.axhline(0, color="k", lw=0.5)
        iv = b.uns["lesions"][les.name].get("intervals")
        if iv is not None and len(iv):
            iv = iv.set_index("donor")
            for i, g in enumerate(GROUP_ORDER[:4]):
                t = tumour_of[g]
                if t in iv.index and bool(iv.loc[t, "refined"]):
                    y0 = -0.33 - 0.025 * i
                    ax.plot(
                        [iv.loc[t, "start"] / 1e6, iv.loc[t, "end"] / 1e6],
                        [y0, y0],
                        color=GROUP_COLOR[g],
                        lw=3,
                        solid_capstyle="butt",
                    )
        ax.set_ylim(-0.43, 0.2)
        ax.set_xlabel(f"{c} (Mb, hg19)")
        ax.set_title(f"{c}: configured {les.name.replace('del', 'del(')}) shaded", fontsize=9)
    axes[0].set_ylabel("infercnvpy smoothed CNV value\n(mean per group)")
    axes[0].legend(fontsize=7, loc="upper right", frameon=False, ncol=2)
    fig.suptitle(
        "Mean infercnvpy profile per group (normal cells cross-fitted); bars: remnant's deleted interval per "
        "tumour, refined from its called cells (>= 30 needed)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def figure_heatmap(icnv_adata: ad.AnnData, b: ad.AnnData, path: Path) -> None:
    """Genome-wide infercnvpy profile (normals in its reference), rows grouped by cell type, with remnant's calls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    X = icnv_adata.obsm["X_cnv"]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    chr_pos = icnv_adata.uns["cnv"]["chr_pos"]
    obs = b.obs
    order = []
    for g in GROUP_ORDER:
        idx = np.flatnonzero((obs["cell_type"] == g).to_numpy())
        order.extend(idx[np.argsort(-obs["del1p_llr"].to_numpy()[idx])])
    order = np.asarray(order)
    fig = plt.figure(figsize=(12, 5.2))
    gs = fig.add_gridspec(1, 4, width_ratios=[0.25, 0.12, 0.12, 12], wspace=0.03)
    ax_g, ax_a, ax_b, ax = (fig.add_subplot(gs[0, i]) for i in range(4))
    v = np.nanpercentile(np.abs(X), 99)
    im = ax.imshow(X[order], aspect="auto", cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    starts = list(chr_pos.values()) + [X.shape[1]]
    for s in starts[1:-1]:
        ax.axvline(s - 0.5, color="k", lw=0.4)
    mids = [(a + c) / 2 for a, c in zip(starts[:-1], starts[1:])]
    ax.set_xticks(mids)
    ax.set_xticklabels([k.replace("chr", "") for k in chr_pos], fontsize=7)
    ax.set_yticks([])
    ax.set_title("infercnvpy smoothed CNV profile (log1p TPM vs both normal types); rows: cells", fontsize=9)
    groups = obs["cell_type"].to_numpy()[order]
    codes = np.array([GROUP_ORDER.index(g) for g in groups])[:, None]
    ax_g.imshow(
        codes,
        aspect="auto",
        cmap=ListedColormap([GROUP_COLOR[g] for g in GROUP_ORDER]),
        vmin=-0.5,
        vmax=len(GROUP_ORDER) - 0.5,
        interpolation="nearest",
    )
    for axx, name in ((ax_a, "del1p"), (ax_b, "del19q")):
        axx.imshow(
            obs[f"{name}_call"].to_numpy()[order][:, None].astype(float),
            aspect="auto",
            cmap="Greys",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        axx.set_xticks([0])
        axx.set_xticklabels([name.replace("del", "")], fontsize=7, rotation=90)
        axx.set_yticks([])
    ax_g.set_xticks([])
    bounds = np.flatnonzero(np.diff(codes[:, 0])) + 0.5
    ax_g.set_yticks([(a + c) / 2 for a, c in zip(np.r_[-0.5, bounds], np.r_[bounds, len(order) - 0.5])])
    ax_g.set_yticklabels([GROUP_LABEL[g] for g in GROUP_ORDER], fontsize=7)
    for y in bounds:
        ax.axhline(y, color="k", lw=0.6)
    cb = fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    cb.ax.tick_params(labelsize=7)
    fig.text(0.02, 0.01, "black in the 1p / 19q columns: called by remnant (posterior >= 0.9)", fontsize=7)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--no-infercnv", action="store_true")
    ap.add_argument("--variants", action="store_true", help="also: count layer and state alternatives, shrinkage")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    import infercnvpy

    lesions, controls, arms = lesion_sets()
    digest = hashlib.sha256((ROOT / "src/remnant/lesions.py").read_bytes()).hexdigest()[:12]
    print(f"infercnvpy {infercnvpy.__version__}; remnant/lesions.py sha256 {digest}")
    t0 = time.perf_counter()
    adata = load()
    print(
        f"data + Census counts: {time.perf_counter() - t0:.1f} s; t* median {np.median(adata.obs['census_t']):.1f} "
        f"(range {adata.obs['census_t'].min():.1f}-{adata.obs['census_t'].max():.1f}); captured molecules per cell "
        f"median {np.median(np.asarray(adata.layers['counts'].sum(1)).ravel()):,.0f}"
    )
    print("nearest reference state of the malignant cells:")
    print(pd.crosstab(adata.obs["cell_type"], adata.obs["state"]).to_string())
    t0 = time.perf_counter()
    b = run_remnant(adata, lesions)
    sec = time.perf_counter() - t0
    table = summarize(b, lesions)
    ctrl = summarize(run_remnant(adata, controls), controls)
    icnv = icnv_raw = None
    icnv_table = None
    if not args.no_infercnv:
        icnv = infercnv_scores(adata, lesions + controls)
        icnv_raw = infercnv_scores(adata, lesions + controls, dynamic_threshold=None)
        mal = adata.obs["malignant"].to_numpy()
        nor = adata.obs["normal"].to_numpy()
        rows = []
        for les in lesions + controls:
            row = {"lesion": les.name}
            for tag, sc in (("denoised", icnv), ("raw", icnv_raw)):
                row[f"{tag}_insample"] = auroc(sc["insample"][les.name], mal)
                row[f"{tag}_crossfit"] = auroc(sc["crossfit"][les.name], mal)
            # the best any threshold on the cross-fitted raw score can do at remnant's FPR (1 of 42 normals)
            cf = icnv_raw["crossfit"][les.name]
            thr = np.sort(cf[nor])[-2]
            row["raw_crossfit_sens_at_1_fp"] = float(np.mean(cf[mal] > thr))
            rows.append(row)
        icnv_table = pd.DataFrame(rows).set_index("lesion")
    print(f"\ncall_lesions: {sec:.2f} s (184 cells, both lesions)")
    print("\nLesions (malignant vs normal; normals cross-fitted by tumour):")
    print(table.round(4).to_string())
    print("\nControl arms, retained in 1p/19q-codeleted tumours (AUROC ~<= 0.5 expected, few calls):")
    print(ctrl.round(4).to_string())
    print("\nPer tumour (called fraction; prior learned per tumour):")
    print(per_tumour(b, lesions).round(3).to_string())
    fp = b.obs.loc[
        b.obs["normal"] & (b.obs["del1p_call"] | b.obs["del19q_call"]),
        ["cell_type", "tumour", "del1p_posterior", "del19q_posterior", "del1p_llr", "del19q_llr"],
    ]
    print("\nNormal cells called (false positives):")
    print(fp.round(3).to_string() if len(fp) else "none")
    if "intervals" in b.uns["lesions"]["del1p"]:
        for les in lesions:
            print(f"\nrefined intervals {les.name}:")
            print(b.uns["lesions"][les.name]["intervals"].to_string(index=False))
    if icnv is not None:
        print(
            "\ninfercnvpy arm score AUROC (malignant vs normal; 'denoised' = its default dynamic_threshold=1.5, "
            "'raw' = None; 'insample' = normals in its reference, 'crossfit' = reference without the normal cell's tumour):"
        )
        print(icnv_table.round(4).to_string())
        print(
            f"infercnvpy.tl.infercnv (window 100, step 10, gene values): {icnv['sec']:.1f} s for one run of 184 cells"
        )

    if args.variants:
        rows = []
        cols = ["auroc", "auroc_llr", "fpr_normals", "sensitivity", "temperature", "count_scale"]
        for scale in ("census", "global", "none"):
            for state in ("nearest", "none"):
                a2 = load(state=state, scale=scale)
                settings = [{"shrinkage": 20.0}, {"shrinkage": 5.0}]
                if scale == "census" and state == "nearest":
                    settings.append({"shrinkage": 20.0, "refine": False})
                for kw in settings:
                    s = summarize(run_remnant(a2, lesions, **kw), lesions)
                    c = summarize(run_remnant(a2, controls, **kw), controls)
                    for tab, tag in ((s, ""), (c, " (control)")):
                        for name in tab.index:
                            rows.append(
                                {
                                    "count_layer": scale,
                                    "state": state,
                                    "shrinkage": kw["shrinkage"],
                                    "refine": kw.get("refine", True),
                                    "lesion": name + tag,
                                    **tab.loc[name, cols].to_dict(),
                                }
                            )
        print(
            "\nVariants (count layer: census = X/t* per cell, global = X/median t*, none = X as is; state: nearest"
            " reference state, or none = pooled reference profile):"
        )
        print(pd.DataFrame(rows).round(4).to_string(index=False))

    if not args.no_figures:
        FIGURES.mkdir(parents=True, exist_ok=True)
        figure_calls(b, icnv, icnv_raw, FIGURES / "oligodendroglioma_calls.png")
        if icnv is not None:
            figure_profiles(icnv, b, lesions, FIGURES / "oligodendroglioma_chr1_chr19.png")
            figure_heatmap(icnv["adata"], b, FIGURES / "oligodendroglioma_heatmap.png")
        for p in sorted(FIGURES.glob("oligodendroglioma_*.png")):
            print(f"wrote {p.relative_to(ROOT)} ({p.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
