"""Per-cell copy-number evidence that an expression programme cannot fake (issue 17 item 1): a method study.

Run:  .venv/bin/python benchmarks/robust_evidence.py [--cells N] [--json out.json] [--only tnbc1,oligo,sim]

A prototype outside the library. Every candidate is scored on the same cells, with the same reference,
cross-fitted the same way (reference cells scored against a profile built without their fold), tempered
the same way (LLR / max(1, sd of the model-standardised statistic of the cross-fitted reference cells)) and
turned into posteriors by the same EM prior (per sample as today, or per sample x state group).

The model of every candidate is today's (remnant.tl.lesions): expected count ``mu_cg = D_c * p_g`` (pooled
or state-matched reference profile per outside-lesion depth), negative binomial ``var = mu + phi_g mu^2``,
per-gene LLR contribution of copy ratio rho vs 1, ``l_cg = r l1 + x coef`` (``l1 = log((r+mu)/(r+rho mu))``,
``coef = l1 + log rho``) with H0 mean ``e_cg = r l1 + mu coef`` and variance ``v_cg = coef^2 (mu + phi mu^2)``.
The candidates change one ingredient each:

- ``nb``: today's statistic (no refinement): sum_g l_cg, depth = counts on autosomal genes outside the lesions.
- ``clip`` / ``clip1``: bounded per-gene contributions: each ``l_cg - e_cg = coef (x - mu)`` clipped to +-2 (+-1)
  sqrt(v_cg), i.e. the count winsorised at ``mu +- c sd``; the clipped sum is no longer a likelihood ratio, so it
  is turned into one: Gaussian, with its exact NB means under H0 and H1 (counts winsorised at the same bounds,
  :func:`winsor_mean`) and the unclipped model variance.
- ``window``: windowed evidence: genes in genomic order cut into windows of 20 expressed genes; the
  statistic is n_windows x the median window sum (one window, e.g. a keratin cluster, moves it little).
- ``selfnorm``: the interval's common shift tested against the spread of its genes: the standardised
  per-gene deviations ``d_cg = (l_cg - e_cg)/sqrt(v_cg)`` have, within one cell, a spread that programmes
  inflate; the cell's z is divided by max(1, sd_g d_cg).
- ``rdepth``: robust depth: counts outside the lesions without the gene families of issue 17 (IG*, TR[ABDG]*,
  MT-, RPL/RPS, HLA-, haemoglobins, immediate-early genes, MALAT1/NEAT1) and without the 1% most expressed
  genes (reference or query); then one size factor per group of cells (sample x state; a reference fold for
  reference cells): the precision-weighted median over outside genes of log(observed/expected) of the group's
  pseudobulk (median-of-ratios: the typical gene, not the dominant one, defines depth). The families are also
  left out of the lesion's genes.
- ``centred``: rdepth + a gene-level random effect for the query group. For each group (sample x state;
  each reference fold against the other folds), each lesion gene's offset
  ``delta_g = log(O_g / E_g)`` of the group pseudobulk is split into the interval's common shift (weighted
  median over the lesion's genes) and the gene's own offset ``u_g`` (a programme, a cell-type gene), shrunk
  by empirical Bayes (``tau^2/(tau^2 + s_g^2)``, ``s_g^2`` its sampling variance, ``tau^2`` the between-gene
  variance from the MAD over outside genes). The H0 expectation becomes ``mu_cg exp(u_g)``: a programme gene is
  expected at its own level, and only the common shift is left as evidence. Per cell it is the same NB LLR.
- ``rdepth_clip``, ``rdepth_clip1``, ``centred_clip``: the combinations.

Posteriors: the EM prior per ``sample`` (today) and per ``sample x state group`` (issue 17 item 3); the
reference cells are scored in their own sample (TNBC1: the tumour's sample, i.e. they share its prior).

Data: TNBC1 (7 lesions + control arms 1p/18p/22q gain and loss), oligodendroglioma (del1p, del19q; controls
1q, 19p), and a simulated cohort (``rm.sim.simulate_cohort``: 3 healthy donors, a reference and a held-out
sample each, 2 MDS patients at clone fraction 0.5, 2,000 UMI/cell, true states) with and without the
confounders injected into the patient samples (documented in :func:`inject_confounders`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_sets as R  # noqa: E402

import remnant as rm  # noqa: E402

ROOT = R.ROOT
IEG = {"FOS", "FOSB", "JUN", "JUNB", "JUND", "EGR1", "EGR2", "EGR3", "IER2", "IER3", "IER5", "DUSP1", "ATF3"}
IEG |= {"NR4A1", "NR4A2", "KLF2", "KLF4", "KLF6", "ZFP36", "HSPA1A", "HSPA1B", "PPP1R15A", "CYR61", "CCN1"}
FAMILY = re.compile(r"^(IG[HKL][VDJCAEGM]|TR[ABDG][VDJC]|MT-|MTRNR|RP[LS]\d|HLA-|HB[ABDEGMQZ]\d?$|MALAT1$|NEAT1$)")
METHODS = [
    "nb",
    "clip",
    "clip1",
    "window",
    "selfnorm",
    "rdepth",
    "rdepth_clip",
    "rdepth_clip1",
    "centred",
    "centred_clip",
]
CLIP, WINDOW = 2.0, 20


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, float)))


def em_prior(llr, iters=300):
    pi = 0.5
    for _ in range(iters):
        new = (sigmoid(llr + np.log(pi / (1 - pi))).sum() + 0.5) / (llr.size + 1.0)
        if abs(new - pi) < 1e-9:
            return new
        pi = new
    return pi


def posteriors(llr, groups):
    post = np.zeros(llr.size)
    for g in pd.unique(groups):
        m = groups == g
        pi = em_prior(llr[m])
        post[m] = sigmoid(llr[m] + np.log(pi / (1 - pi)))
    return post


def excluded_genes(var: pd.DataFrame) -> np.ndarray:
    names = var["gene_name"].astype(str)
    return names.str.match(FAMILY).to_numpy() | names.isin(IEG).to_numpy()


class Setup:
    """Cells, reference, folds, groups and the per-gene quantities every candidate shares.

    ``groups``: (n,) label of the query group a cell's gene offsets and group size factor come from
    (sample x state for query cells; ``ref:<fold>`` for reference cells).
    """

    def __init__(self, X, var, reference, state, sample, donors=None, n_folds=5, seed=0, lesions=()):
        self.X = sp.csr_matrix(X, dtype=np.float64)
        self.var = var
        self.n = self.X.shape[0]
        self.ref = np.asarray(reference, bool)
        self.state = np.asarray(state, dtype=object).astype(str)
        self.sample = np.asarray(sample, dtype=object).astype(str)
        ref_idx = np.flatnonzero(self.ref)
        fold = np.full(self.n, -1)
        if donors is not None and len(set(np.asarray(donors)[ref_idx])) >= 2:
            ds = sorted(set(np.asarray(donors)[ref_idx]))
            k = min(n_folds, len(ds))
            fold[ref_idx] = [ds.index(d) % k for d in np.asarray(donors)[ref_idx]]
        else:
            k = n_folds
            fold[ref_idx] = np.random.default_rng(seed).permutation(np.arange(ref_idx.size) % k)
        self.fold, self.k = fold, k
        sample_state = pd.Series(self.sample) + "|" + pd.Series(self.state)
        self.prior_state_groups = sample_state.to_numpy()
        self.groups = np.where(self.ref, "ref:" + pd.Series(fold).astype(str), sample_state).astype(str)
        chrom = var["chromosome"].astype(str).to_numpy()
        inside = np.zeros(len(var), bool)
        for les in lesions:
            inside |= R._gene_in(var, les)
        self.outside = rm.io.autosomal(chrom) & ~inside
        self.depth_sum = np.asarray(self.X @ self.outside.astype(float)).ravel()
        # robust depth genes: outside, no families, no top-1% genes of the reference or of any query group
        keep = self.outside & ~excluded_genes(var)
        tot_ref = np.asarray(self.X[ref_idx].sum(0)).ravel()
        tot_q = np.asarray(self.X[~self.ref].sum(0)).ravel()
        top = np.zeros(len(var), bool)
        for t in (tot_ref, tot_q):
            on = np.flatnonzero(keep & (t > 0))
            if on.size:
                cut = np.quantile(t[on], 0.99)
                top |= t > cut
        self.rgenes = keep & ~top
        self.depth_rob = np.asarray(self.X @ self.rgenes.astype(float)).ravel()

    # ---------------------------------------------------------------------------------------------
    def profile_table(self, XL, depth):
        """State-matched reference profiles per count of ``depth`` of the columns of XL (shrunk to the pooled
        profile with 20 median reference cells), full and leave-fold-out; returns (table, row of each cell):
        a reference cell's row leaves its fold out."""
        ref = self.ref
        states = sorted(set(self.state[ref]) - {"", "nan"})
        pseudo = 20.0 * float(np.median(depth[ref]))
        XLd = XL.toarray() if sp.issparse(XL) else np.asarray(XL)
        code = pd.Series(self.state).map({s: i for i, s in enumerate(states)}).fillna(-1).to_numpy().astype(int)
        tables, row = [], np.zeros(self.n, int)
        for f in [-1, *range(self.k)]:
            mask = ref & (self.fold != f) if f >= 0 else ref
            pool = XLd[mask].sum(0) / max(depth[mask].sum(), 1.0)
            base = len(tables)
            tables.append(pool)
            for s in states:
                m = mask & (self.state == s)
                tables.append((XLd[m].sum(0) + pseudo * pool) / (depth[m].sum() + pseudo))
            cells = ~ref if f < 0 else ref & (self.fold == f)
            row[cells] = base + np.where(code[cells] >= 0, code[cells] + 1, 0)
        return np.vstack(tables), row

    def _robust_norm(self):
        """Per group (sample x state; reference folds): observed and expected pseudobulk counts of every
        autosomal gene (families excluded) on robust depth: input of the size factor and gene offsets."""
        if hasattr(self, "_norm"):
            return self._norm
        auto = rm.io.autosomal(self.var["chromosome"]) & ~excluded_genes(self.var)
        cols = np.flatnonzero(auto)
        Xa = self.X[:, cols]
        table, row = self.profile_table(Xa, self.depth_rob)
        out = {"cols": cols, "groups": {}}
        for g in pd.unique(self.groups):
            m = self.groups == g
            O = np.asarray(Xa[m].sum(0)).ravel()
            E = np.bincount(row[m], weights=self.depth_rob[m], minlength=table.shape[0]) @ table
            out["groups"][g] = (O, E, int(m.sum()))
        self._norm = out
        return out

    def shifts(self, lesion_cols):
        """Per group: genome shift g0 (log size factor: weighted median of delta over outside genes), the
        lesion's shift relative to it (the same estimator over the lesion's genes) and the lesion genes'
        shrunk offsets u_g (delta_g - lesion shift, times tau2 / (tau2 + s2_g))."""
        norm = self._robust_norm()
        cols = norm["cols"]
        li = pd.Series(np.arange(cols.size), index=cols).reindex(lesion_cols).to_numpy()
        lok = ~np.isnan(li)
        lidx = li[lok].astype(int)
        outside = self.outside[cols]
        res = {}
        for g, (O, E, _n) in norm["groups"].items():
            ok = (O + E) >= 2
            delta = np.log((O + 0.5) / (E + 0.5))
            s2 = 1.0 / (O + 0.5) + 1.0 / (E + 0.5)
            o = ok & outside
            g0 = _wmedian(delta[o], 1.0 / s2[o])
            tau2 = max(0.0, _wmad2(delta[o] - g0, 1.0 / s2[o]) - float(np.median(s2[o])))
            w = 1.0 / (s2 + tau2)
            g0 = _wmedian(delta[o], w[o])
            d_l, w_l, ok_l = delta[lidx], w[lidx], ok[lidx]
            shift = _wmedian(d_l[ok_l], w_l[ok_l]) if ok_l.any() else g0
            u = np.zeros(len(lesion_cols))
            shrink = tau2 / (tau2 + s2[lidx])
            u[lok] = np.where(ok_l, shrink * (d_l - shift), 0.0)
            res[g] = {"g0": g0, "shift": shift - g0, "u": u, "tau2": tau2}
        return res

    # ---------------------------------------------------------------------------------------------
    def evidence(self, les, method: str) -> dict:
        """Tempered per-cell LLR of one candidate, its model z and the temperature."""
        robust = method.startswith(("rdepth", "centred"))
        cols = np.flatnonzero(R._gene_in(self.var, les))
        cols = cols[np.argsort(self.var["start"].to_numpy()[cols], kind="stable")]
        if robust:
            cols = cols[~excluded_genes(self.var.iloc[cols])]
        base_depth = self.depth_rob if robust else self.depth_sum
        XL = self.X[:, cols].toarray()
        table, row = self.profile_table(XL, base_depth)
        ref = self.ref
        use = table[0] * float(np.median(base_depth[ref])) >= 0.001
        cols, XL, table = cols[use], XL[:, use], table[:, use]
        depth = base_depth.copy()
        U = np.zeros((self.n, cols.size))
        group_shift = {}
        if robust:
            for g, v in self.shifts(cols).items():
                m = self.groups == g
                depth[m] *= np.exp(v["g0"])
                group_shift[g] = v["shift"]
                if method.startswith("centred"):
                    U[m] = v["u"][None, :]
        mu = depth[:, None] * table[row]
        # overdispersion per gene from the reference cells (moments, shrunk to the common value)
        res2 = ((XL[ref] - mu[ref]) ** 2 - mu[ref]).sum(0)
        smu2 = (mu[ref] ** 2).sum(0)
        common = max(res2.sum() / max(smu2.sum(), 1e-12), 1e-3)
        tau = float(np.median(smu2))
        phi = np.clip((res2 + tau * common) / (smu2 + tau), 1e-3, 10.0)
        mu = np.maximum(mu * np.exp(U), 1e-12)
        rho = les.copy_ratio
        r = 1.0 / phi
        l1 = np.log1p((1.0 - rho) * mu / (r + rho * mu))
        coef = l1 + np.log(rho)
        lg = r * l1 + XL * coef
        e = r * l1 + mu * coef
        v = coef**2 * (mu + phi * mu**2)
        if "clip" in method:
            # clipping l - e = coef (x - mu) at +-c sd is winsorising the count at mu +- c sdx; its H0 mean is
            # then no longer e (low counts: only the upper tail is cut), so e takes the exact NB mean
            c = 1.0 if method.endswith("clip1") else CLIP
            sdx = np.sqrt(mu + phi * mu**2)
            lo, hi = mu - c * sdx, mu + c * sdx
            rb = np.broadcast_to(r, mu.shape)
            lg = coef * (np.clip(XL, lo, hi) - mu)
            m0 = (coef * (winsor_mean(mu, rb, lo, hi) - mu)).sum(1)
            m1 = (coef * (winsor_mean(rho * mu, rb, lo, hi) - mu)).sum(1)
            # the clipped sum is not a likelihood ratio: turn it into one, Gaussian with the model's H0 and
            # H1 means of the clipped sum and the (unclipped, conservative) variance
            s_ = lg.sum(1)
            vv = np.maximum(v.sum(1), 1e-12)
            llr_g = (m1 - m0) / vv * (s_ - 0.5 * (m0 + m1))
            z = (s_ - m0) / np.sqrt(vv)
            T = max(1.0, float(np.std(z[ref])))
            return {"llr": llr_g / T, "z": z, "T": T, "n_genes": int(cols.size), "group_shift": group_shift}
        if method.endswith("window"):
            nw = max(1, lg.shape[1] // WINDOW)
            edges = np.linspace(0, lg.shape[1], nw + 1).astype(int)
            ws = np.add.reduceat(lg, edges[:-1], axis=1)
            we = np.add.reduceat(e, edges[:-1], axis=1)
            stat, e0 = nw * np.median(ws, 1), nw * np.median(we, 1)
            v0 = v.sum(1) * np.pi / 2
        else:
            stat, e0, v0 = lg.sum(1), e.sum(1), v.sum(1)
        z = (stat - e0) / np.sqrt(np.maximum(v0, 1e-12))
        if method == "selfnorm":
            d = (lg - e) / np.sqrt(np.maximum(v, 1e-12))
            z = z / np.maximum(1.0, d.std(1))
            stat = e0 + z * np.sqrt(v0)
        T = max(1.0, float(np.std(z[ref])))
        return {"llr": stat / T, "z": z, "T": T, "n_genes": int(cols.size), "group_shift": group_shift}


def winsor_mean(mu, r, lo, hi, exact_below: float = 30.0, kmax: int = 160):
    """E[min(max(X, lo), hi)] for X ~ NB(mean mu, size r), elementwise: exact sum over k <= kmax where
    mu <= exact_below, else mu (a winsorised near-normal count keeps its mean)."""
    from scipy.special import gammaln

    out = mu.copy()
    small = np.flatnonzero((mu <= exact_below).ravel())
    k = np.arange(kmax + 1, dtype=float)
    m, rr, a, b = (np.ravel(x)[small] for x in (mu, r, lo, hi))
    for s0 in range(0, small.size, 20_000):
        sl = slice(s0, s0 + 20_000)
        mm, r_, a_, b_ = m[sl, None], rr[sl, None], a[sl, None], b[sl, None]
        logp = gammaln(k + r_) - gammaln(r_) - gammaln(k + 1) + r_ * np.log(r_ / (r_ + mm)) + k * np.log(mm / (r_ + mm))
        pk = np.exp(logp)
        tail = np.clip(1.0 - pk.sum(1, keepdims=True), 0.0, 1.0)
        val = (np.clip(k, a_, b_) * pk).sum(1, keepdims=True) + tail * np.minimum(b_, np.maximum(a_, kmax + 1))
        out.ravel()[small[sl]] = val.ravel()
    return out


def _wmad2(x, w):
    """Squared robust scale (1.4826 x weighted median absolute deviation) of x."""
    return float((1.4826 * _wmedian(np.abs(x), w)) ** 2) if x.size else 0.0


_wmedian = R.weighted_median


# ------------------------------------------------------------------------------------------------
def score_set(setup: Setup, lesions, truth_pos, truth_neg, name, kind_of, extra_masks=None) -> list[dict]:
    """Per lesion and method: AUROC (positives vs negatives), shares called."""
    rows = []
    for les in lesions:
        for method in METHODS:
            ev = setup.evidence(les, method)
            llr = ev["llr"]
            post_s = posteriors(llr, setup.sample)
            post_g = posteriors(llr, setup.prior_state_groups)
            row = {
                "data": name,
                "lesion": les.name,
                "kind": kind_of(les),
                "method": method,
                "auroc": R.auroc(llr[truth_pos | truth_neg], truth_pos[truth_pos | truth_neg]),
                "pos_called": float((post_g[truth_pos] >= 0.9).mean()),
                "neg_called_sample_prior": float((post_s[truth_neg] >= 0.9).mean()),
                "neg_called_group_prior": float((post_g[truth_neg] >= 0.9).mean()),
                "ref_llr_ge_logit09": float((llr[setup.ref] >= np.log(9)).mean()),
                "T": ev["T"],
                "genes": ev["n_genes"],
            }
            for key, mask in (extra_masks or {}).items():
                row[key] = float((post_g[mask] >= 0.9).mean())
            rows.append(row)
    return rows


def tnbc1_rows(shared: bool = True) -> list[dict]:
    adata = R.load_tnbc1()
    lesions, controls = R.tnbc1_sets()
    tumour, normal = adata.obs["tumour"].to_numpy(), adata.obs["normal"].to_numpy()
    state = np.where(tumour, "tumour_cluster", "")  # the tumour cells' own cluster; normals = reference
    sample = adata.obs["sample_shared" if shared else "sample_split"].to_numpy()
    rows = []
    for kind, les in (("lesion", lesions), ("control", controls)):
        s = Setup(adata.layers["counts"], adata.var, normal, state, sample, lesions=les)
        rows += score_set(s, les, tumour, normal, "TNBC1", lambda _l, k=kind: k)
    return rows


def oligo_rows() -> list[dict]:
    adata = R.load_oligo()
    lesions, controls = R.oligo_sets()
    tumour, normal = adata.obs["tumour"].to_numpy(), adata.obs["normal"].to_numpy()
    rows = []
    for kind, les in (("lesion", lesions), ("control", controls)):
        s = Setup(
            adata.layers["counts"],
            adata.var,
            normal,
            adata.obs["state"].to_numpy(),
            adata.obs["sample"].to_numpy(),
            donors=adata.obs["patient"].to_numpy(),
            lesions=les,
        )
        rows += score_set(s, les, tumour, normal, "oligodendroglioma", lambda _l, k=kind: k)
    return rows


# ------------------------------------------------------------------------------------------------
# simulated cohort with confounders
# ------------------------------------------------------------------------------------------------
def simulate(cells: int, seed: int = 0, depth: float = 2000.0) -> ad.AnnData:
    genes = rm.io.load_genes(R.GRCH38_GENES)
    rows = []
    for h in range(1, 4):
        rows += [(f"H{h}_ref", f"H{h}", "", "CD34", "healthy", "droplet")]
        rows += [(f"H{h}_held", f"H{h}", "", "CD34", "healthy", "droplet")]
    rows += [("H4_other", "H4", "", "CD34", "healthy", "droplet")]
    rows += [(f"P{p}_CD34", f"P{p}", "diagnosis", "CD34", "MDS", "droplet") for p in (1, 2)]
    sheet = pd.DataFrame(rows, columns=["sample", "patient", "timepoint", "population", "condition", "technology"])
    params = {
        "cells_per_sample": {"droplet": cells},
        "library_size": {"droplet": {"median": depth, "sdlog": 0.35}},
        "clone_fraction": {"diagnosis": {"CD34": 0.5}},
        "clone_sampling": "exact",
        "low_quality": {"fraction": 0.0},
        "doublets": {"rate": 0.0},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = rm.sim.simulate_cohort(
            sheet,
            genes,
            rm.io.read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
            rm.io.read_gene_sets(ROOT / "resources/gene_sets"),
            params=params,
            seed=seed,
        )
        parts = []
        for _, row in sheet.iterrows():
            a, _ = rm.io.map_genes(sim.counts[row["sample"]], genes, source=row["sample"])
            for key in ("sample", "patient", "condition"):
                a.obs[key] = row[key]
            a.obs_names = [f"{row['sample']}:{b}" for b in a.obs_names]
            parts.append(a)
    adata = ad.concat(parts, merge="same")
    truth = sim.cells.set_index(sim.cells["sample"] + ":" + sim.cells["barcode"]).loc[adata.obs_names]
    adata.obs["state"] = truth["state"].to_numpy()
    adata.obs["truth"] = truth["lesion_del5q"].to_numpy(bool)
    adata.obs["other_type"] = False
    adata.layers["counts"] = sp.csr_matrix(adata.X)
    return adata


def inject_confounders(adata: ad.AnnData, seed: int = 1) -> tuple[ad.AnnData, dict]:
    """Confounders of real MDS marrow, injected into the counts of the patient samples only.

    1. A disease programme in every patient cell (carriers and non-carriers alike): 200 genes drawn among
       genes the reference expresses (>= 0.05 counts per cell), 40 of them inside del(5q)'s 5q13.1-5q33.3
       (chr5:67.4-160.5 Mb) and 160 elsewhere; the 40 in 5q all go DOWN (fold 1/4 to 1/16, log-uniform: an
       adversarial programme that imitates the loss), the 160 others half up, half down (4- to 16-fold).
       Down: binomial thinning of the counts; up: plus Poisson((f-1) x the gene's expected count).
    2. Dominant transcripts: in a random 30% of patient cells, haemoglobin counts (HBB 50%, HBA1 30%,
       HBA2 20%) equal to the cell's whole count (HB then holds half of the cell's counts), and in every
       cell of sample P1 the immediate-early genes EGR1 (5q31), FOS, JUN, IER2, DUSP1 x10.
    3. Cells of another type: the healthy donor sample H4_other (non-carriers) is moved into the patient
       samples (half each, ``other_type`` True, state ``other`` which the reference lacks), after a
       cell-type programme of its own: 300 genes up and 300 down 8-fold, genome-wide (about 5% in 5q).
    """
    rng = np.random.default_rng(seed)
    var, obs = adata.var, adata.obs.copy()
    chrom = var["chromosome"].astype(str).to_numpy()
    mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
    in5q = (chrom == "chr5") & (mid >= 67_400_000) & (mid < 160_500_000)
    ref = obs["sample"].str.endswith("_ref").to_numpy()
    Xc = sp.csr_matrix(adata.layers["counts"], dtype=np.float64)
    tot = np.asarray(Xc.sum(1)).ravel()
    p = np.asarray(Xc[ref].sum(0)).ravel() / tot[ref].sum()
    expressed = p * np.median(tot[ref]) >= 0.05
    names = var["gene_name"].astype(str).to_numpy()
    patient = (obs["condition"] == "MDS").to_numpy()
    other = (obs["sample"] == "H4_other").to_numpy()
    cand_in = np.flatnonzero(expressed & in5q & ~excluded_genes(var))
    cand_out = np.flatnonzero(expressed & ~in5q & rm.io.autosomal(chrom) & ~excluded_genes(var))
    prog_in = rng.choice(cand_in, 40, replace=False)
    prog_out = rng.choice(cand_out, 160, replace=False)
    fold = {g: 1 / np.exp(rng.uniform(np.log(4), np.log(16))) for g in prog_in}
    for i, g in enumerate(prog_out):
        f = np.exp(rng.uniform(np.log(4), np.log(16)))
        fold[g] = f if i % 2 == 0 else 1 / f
    ct_genes = rng.choice(np.flatnonzero(expressed & rm.io.autosomal(chrom)), 600, replace=False)
    ct_fold = {g: (8.0 if i < 300 else 1 / 8.0) for i, g in enumerate(ct_genes)}

    Xcsc = Xc.tocsc()

    def apply(cells, folds):
        cols = np.array(list(folds))
        sub = Xcsc[:, cols][cells].toarray()
        lam = tot[cells][:, None] * p[cols][None, :]
        for j, g in enumerate(cols):
            f = folds[g]
            if f < 1:
                sub[:, j] = rng.binomial(sub[:, j].astype(np.int64), f)
            else:
                sub[:, j] = sub[:, j] + rng.poisson((f - 1) * np.maximum(lam[:, j], 1e-3))
        return cols, sub

    out = Xc.tolil()
    cells = np.flatnonzero(patient)
    cols, sub = apply(cells, fold)
    for j, g in enumerate(cols):
        for ci, c in enumerate(cells):
            out[c, g] = sub[ci, j]
    ocells = np.flatnonzero(other)
    cols, sub = apply(ocells, ct_fold)
    for j, g in enumerate(cols):
        for ci, c in enumerate(ocells):
            out[c, g] = sub[ci, j]
    out = sp.csr_matrix(out)
    # dominant transcripts
    dense_add = sp.lil_matrix(out.shape)
    hb = {n: np.flatnonzero(names == n) for n in ("HBB", "HBA1", "HBA2")}
    cur = np.asarray(out.sum(1)).ravel()
    hb_cells = cells[rng.random(cells.size) < 0.3]
    for n, share in (("HBB", 0.5), ("HBA1", 0.3), ("HBA2", 0.2)):
        if hb[n].size:
            dense_add[hb_cells, hb[n][0]] = rng.poisson(share * cur[hb_cells])[:, None]
    p1 = np.flatnonzero((obs["sample"] == "P1_CD34").to_numpy())
    for n in ("EGR1", "FOS", "JUN", "IER2", "DUSP1"):
        idx = np.flatnonzero(names == n)
        if idx.size:
            g = idx[0]
            lam = np.maximum(tot[p1] * p[g], 0.05)
            dense_add[p1, g] = rng.poisson(9 * lam)[:, None]
    out = sp.csr_matrix(out + dense_add.tocsr())
    b = adata.copy()
    b.layers["counts"] = out
    # move H4_other into the patient samples
    half = rng.random(other.sum()) < 0.5
    b.obs.loc[other, "sample"] = np.where(half, "P1_CD34", "P2_CD34")
    b.obs.loc[other, "patient"] = np.where(half, "P1", "P2")
    b.obs.loc[other, "condition"] = "MDS"
    b.obs.loc[other, "state"] = "other"
    b.obs.loc[other, "other_type"] = True
    info = {
        "programme_in_5q": [names[g] for g in prog_in],
        "programme_elsewhere": int(len(prog_out)),
        "hb_cells": int(hb_cells.size),
        "hb_share_of_counts": float(
            np.asarray(out[hb_cells][:, np.concatenate(list(hb.values()))].sum()) / out[hb_cells].sum()
        ),
        "other_type_cells": int(other.sum()),
    }
    return b, info


def sim_rows(adata: ad.AnnData, label: str) -> list[dict]:
    cyto = rm.io.load_cytobands(R.GRCH38_BANDS)
    lesions = rm.tl.parse_lesions(None, cyto, rm.io.chromosome_arms(cyto))
    obs = adata.obs
    ref = obs["sample"].str.endswith("_ref").to_numpy()
    held = obs["sample"].str.endswith("_held").to_numpy()
    patient = (obs["condition"] == "MDS").to_numpy()
    truth = obs["truth"].to_numpy(bool)
    s = Setup(
        adata.layers["counts"],
        adata.var,
        ref,
        obs["state"].to_numpy(),
        obs["sample"].to_numpy(),
        donors=obs["patient"].to_numpy(),
        lesions=lesions,
    )
    pos = patient & truth
    neg = (patient & ~truth) | held
    extra = {"held_called": held, "other_type_called": obs["other_type"].to_numpy(bool)}
    rows = score_set(s, lesions, pos, neg, label, lambda _l: "lesion", extra)
    # today's library on the same cells (with refinement, default parameters)
    b = R.call(adata, lesions, ref, state_key="state", sample_key="sample", donor_key="patient", batch_key=None)
    llr, call = b.obs["del5q_llr"].to_numpy(), b.obs["del5q_call"].to_numpy()
    rows.append(
        {
            "data": label,
            "lesion": "del5q",
            "kind": "lesion",
            "method": "library",
            "auroc": R.auroc(llr[pos | neg], pos[pos | neg]),
            "pos_called": float(call[pos].mean()),
            "neg_called_sample_prior": float(call[neg].mean()),
            "held_called": float(call[held].mean()),
            "other_type_called": float(call[obs["other_type"].to_numpy(bool)].mean()),
        }
    )
    return rows


def library_real_rows() -> list[dict]:
    """Today's library LLR AUROC on the real sets (from benchmarks/real_data.py's setup), for the table."""
    import real_data

    rows = []
    for r in real_data.run_tnbc1(False) + real_data.run_oligo(False):
        rows.append(
            {
                "data": r["data"],
                "lesion": r["lesion"],
                "kind": r["kind"],
                "method": "library",
                "auroc": r["auroc"],
                "pos_called": r["tumour_called"],
                "neg_called_sample_prior": r["normal_called"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=400, help="simulated cells per sample")
    ap.add_argument("--only", default="tnbc1,oligo,sim")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 500)
    which = set(args.only.split(","))
    rows, info = [], {}
    t0 = time.perf_counter()
    if which & {"tnbc1", "oligo"}:
        rows += [r for r in library_real_rows() if ("tnbc1" in which) == (r["data"] == "TNBC1") or "oligo" in which]
    if "tnbc1" in which:
        rows += tnbc1_rows(shared=True)
        print(f"TNBC1 done {time.perf_counter() - t0:.0f} s", flush=True)
    if "oligo" in which:
        rows += oligo_rows()
        print(f"oligodendroglioma done {time.perf_counter() - t0:.0f} s", flush=True)
    if "sim" in which:
        base = simulate(args.cells)
        print(f"simulated {base.n_obs} cells {time.perf_counter() - t0:.0f} s", flush=True)
        rows += sim_rows(base[base.obs["sample"] != "H4_other"].copy(), "sim_clean")
        conf, info = inject_confounders(base)
        rows += sim_rows(conf, "sim_confounded")
        print(f"simulator done {time.perf_counter() - t0:.0f} s; injected: {info}", flush=True)
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(index=False))
    wide = table.pivot_table(index=["data", "kind", "lesion"], columns="method", values="auroc", sort=False)
    print("\nAUROC per lesion and method:")
    print(wide.round(3).to_string())
    if args.json:
        args.json.write_text(json.dumps({"rows": json.loads(table.to_json(orient="records")), "injected": info}))


if __name__ == "__main__":
    main()
