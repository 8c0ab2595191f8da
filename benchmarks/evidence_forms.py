"""Per-gene evidence forms on real cells, and how each cell's lesion LLR moves with its depth (session 38).

Run by hand:  .venv/bin/python benchmarks/evidence_forms.py [--forms nb log hybrid] [--keep 1 0.25 0.125]
                  [--seeds 0 1] [--no-oligo] [--thin-deep]

A method study outside the library (as benchmarks/robust_evidence.py): remnant's per-gene term of a lesion's LLR
is a mixture of its negative binomial and a broad component, clipped at log(1/eps)
(``remnant.tl.lesion_model._outlier_llr``). At high expected counts a negative binomial's LLR of a copy ratio is
linear in the gene's ratio of observed to expected counts (the gamma's log density), so of a programme's genes,
spread evenly up and down in log space around the interval's copy level, those above it weigh more than those
below: the arithmetic mean of the ratios exceeds their geometric mean. Against a loss that reads as "not lost",
more so the deeper the cell. Forms compared, each replacing that one function for the run:

- ``nb``: remnant as it is;
- ``log``: a quasi-likelihood of log(count + 1/2): per gene, a Gaussian in that value with its exact mean and
  variance under the gene's negative binomial at each hypothesis's mean (sums over counts on a grid of means per
  gene, the gamma limit above 200), clipped at log(1/eps) as remnant's terms are: symmetric in log space;
- ``hybrid``: ``nb`` for a gene whose expected count and overdispersion give ``phi * mu < 1`` (its variance mostly
  counting noise, where the negative binomial is the efficient test), ``log`` for the rest (mostly the gene's own
  multiplicative spread, where the two regimes of a Poisson-lognormal differ).

The reference rows' standardised LLRs (what the temperature is measured on) are the exact model moments for ``nb``
and the rows' own mean and sd for the other two.

Prints one table: data set, thinning (share of molecules kept) and seed, form, lesion or control arm, LLR AUROC
tumour vs normal (benchmarks/real_data.py's harness: TNBC1 in one shared sample with Leiden-cluster priors, the
oligodendroglioma set by tumour), shares of tumour and normal cells called, and for TNBC1's tumour cells the
median LLR in each quarter of their library sizes and the Pearson correlation of the LLR with log library size
(``depth_r``): a caller whose evidence of a lesion every tumour cell carries grows with depth has depth_r > 0 on it.
infercnvpy's arm score (benchmarks/_real_sets.py) is printed as a form of its own on TNBC1 (no calls).

``--thin-deep`` prints instead, for remnant as it is, the median LLR of TNBC1's deepest quarter of tumour cells at
full depth and with only those cells' molecules thinned to the median library of the first and second quarters
(binomially, seed 0; every other cell as it is): whether the same cells read more or less lost with fewer molecules.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln, polygamma

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_sets as R  # noqa: E402
import real_data  # noqa: E402
from real_depth import HARNESS, draws  # noqa: E402

import remnant.tl.lesion_model as LM  # noqa: E402

NB_TERMS = LM._outlier_llr
GRID = 48  # expected counts per gene at which the log form's moments are computed (log-spaced)
GAMMA_LIMIT = 200.0  # above this expected count the moments are the gamma's (log mean + digamma, trigamma)


def _nb_logpmf(y, mu, r):
    return gammaln(y + r) - gammaln(r) - gammaln(y + 1) + r * np.log(r / (r + mu)) + y * np.log(mu / (r + mu))


def log_moments(lo: np.ndarray, hi: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per gene, a grid of log expected counts from ``lo`` to ``hi`` ((GRID, n_genes)) and the mean and variance
    of log(y + 1/2) under the gene's negative binomial (size ``r``) there."""
    grid = lo[None, :] + np.linspace(0.0, 1.0, GRID)[:, None] * (hi - lo)[None, :]
    mu = np.exp(grid)
    mean = grid + digamma(r)[None, :] - np.log(r)[None, :]
    var = polygamma(1, r)[None, :] + 1.0 / mu
    k_idx, g_idx = np.nonzero(mu <= GAMMA_LIMIT)
    if k_idx.size:
        m, rr = mu[k_idx, g_idx], r[g_idx]
        top = int(min(np.max(np.ceil(m + 14 * np.sqrt(m + m * m / rr) + 20)), 6000))
        y = np.arange(top, dtype=float)[:, None]
        step = max(1, 4_000_000 // top)
        for a in range(0, k_idx.size, step):
            lp = _nb_logpmf(y, m[None, a : a + step], rr[None, a : a + step])
            p = np.exp(lp - lp.max(0))
            p /= p.sum(0)
            ly = np.log(y + 0.5)
            mm = (p * ly).sum(0)
            mean[k_idx[a : a + step], g_idx[a : a + step]] = mm
            var[k_idx[a : a + step], g_idx[a : a + step]] = (p * (ly - mm) ** 2).sum(0)
    return grid, mean, var


def _at(grid: np.ndarray, table: np.ndarray, log_mu: np.ndarray) -> np.ndarray:
    lo, hi = grid[0], grid[-1]
    t = np.clip((log_mu - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1) * (GRID - 1)
    i = np.clip(np.floor(t).astype(np.int64), 0, GRID - 2)
    w = t - i
    gene = np.arange(table.shape[1])
    return (1 - w) * table[i, gene] + w * table[i + 1, gene]


def _terms(form: str, XL, depth, row, table, r, phi, scale, rho, eps):
    """(n_rows, n_genes) per-gene terms of the form (dense: these data sets are a few hundred cells)."""
    mu = np.maximum(depth[:, None] * table[row] / scale, 1e-12)
    y = XL.toarray() / scale
    lm0, lm1 = np.log(mu), np.log(rho * mu)
    grid, mean, var = log_moments(np.minimum(lm0.min(0), lm1.min(0)), np.maximum(lm0.max(0), lm1.max(0)), r)
    m0, m1 = _at(grid, mean, lm0), _at(grid, mean, lm1)
    v = 0.5 * (_at(grid, var, lm0) + _at(grid, var, lm1))
    ly = np.log(y + 0.5)
    bound = np.log(1.0 / eps)
    log_terms = np.clip(((ly - m0) ** 2 - (ly - m1) ** 2) / (2 * v), -bound, bound)
    if form == "log":
        return log_terms
    nb_terms = LM._outlier_terms(y, mu, r[None, :], rho, eps)
    return np.where(phi[None, :] * mu >= 1.0, log_terms, nb_terms)


def use_form(form: str) -> None:
    """Make remnant score every lesion with ``form`` until the next call."""
    if form == "nb":
        LM._outlier_llr = NB_TERMS
        return

    def llr(XL, depth, row, table, r, phi, scale, rho, eps, ref, chunk_size):
        total = _terms(form, XL, depth, row, table, r, phi, scale, rho, eps).sum(1)
        z = np.full(row.size, np.nan)
        z[ref] = (total[ref] - total[ref].mean()) / max(total[ref].std(), 1e-12)
        return total, z

    LM._outlier_llr = llr


def _depth_trend(score: np.ndarray, lib: np.ndarray, tumour: np.ndarray) -> dict:
    s, lt = score[tumour], lib[tumour]
    quarter = pd.qcut(lt, 4, labels=False)
    out = {f"q{k + 1}": float(np.median(s[quarter == k])) for k in range(4)}
    out["depth_r"] = float(np.corrcoef(s, np.log(lt))[0, 1])
    return out


def run_tnbc1(forms, keeps, seeds) -> list[dict]:
    full = R.load_tnbc1()
    lesions, controls = R.tnbc1_sets()
    tumour, normal = full.obs["tumour"].to_numpy(), full.obs["normal"].to_numpy()
    rows = []
    for keep, seed, a in draws(full, keeps, seeds):
        lib = np.asarray(a.layers["counts"].sum(1)).ravel()
        base = {"data": "TNBC1", "keep": keep, "seed": seed}
        icnv = R.infercnv_scores(a, R.log_normalised(a), normal, np.full(a.n_obs, "normal"), lesions + controls)
        for les in lesions + controls:
            score = icnv["crossfit"][les.name]
            kind = "lesion" if les in lesions else "control"
            rows.append(
                base
                | {"form": "infercnvpy", "lesion": les.name, "kind": kind, "auroc": R.auroc(score, tumour)}
                | _depth_trend(score, lib, tumour)
            )
        for form in forms:
            use_form(form)
            for kind, group in (("lesion", lesions), ("control", controls)):
                b = R.call(a, group, normal, **HARNESS)
                for les in group:
                    llr, call = (b.obs[f"{les.name}_{k}"].to_numpy() for k in ("llr", "call"))
                    row = base | {"form": form, "lesion": les.name, "kind": kind, "auroc": R.auroc(llr, tumour)}
                    row |= {
                        "tumour_called": float(call[tumour].mean()),
                        "normal_called": float(call[normal].mean()),
                    }
                    rows.append(row | _depth_trend(llr, lib, tumour))
            print(f"TNBC1 keep {keep} seed {seed} {form}: done", file=sys.stderr, flush=True)
    use_form("nb")
    return rows


def run_oligo(forms) -> list[dict]:
    adata = R.load_oligo()
    lesions, controls = R.oligo_sets()
    tumour, normal = adata.obs["tumour"].to_numpy(), adata.obs["normal"].to_numpy()
    rows = []
    for form in forms:
        use_form(form)
        for kind, group in (("lesion", lesions), ("control", controls)):
            b = R.call(adata, group, normal, **real_data.OLIGO_HARNESS)
            for les in group:
                llr, call = (b.obs[f"{les.name}_{k}"].to_numpy() for k in ("llr", "call"))
                rows.append(
                    {"data": "oligodendroglioma", "keep": 1.0, "seed": 0, "form": form, "lesion": les.name}
                    | {"kind": kind, "auroc": R.auroc(llr, tumour), "tumour_called": float(call[tumour].mean())}
                    | {"normal_called": float(call[normal].mean())}
                )
    use_form("nb")
    return rows


def thin_deep() -> pd.DataFrame:
    """TNBC1's deepest quarter of tumour cells, full depth against thinned to the first and second quarters'."""
    import scipy.sparse as sp

    full = R.load_tnbc1()
    lesions, _ = R.tnbc1_sets()
    tumour, normal = full.obs["tumour"].to_numpy(), full.obs["normal"].to_numpy()
    lib = np.asarray(full.layers["counts"].sum(1)).ravel()
    quarter = np.full(full.n_obs, -1)
    quarter[tumour] = pd.qcut(lib[tumour], 4, labels=False)
    deep = np.flatnonzero(quarter == 3)
    base = R.call(full, lesions, normal, **HARNESS)
    rows = []
    for q in (0, 1):
        target = float(np.median(lib[quarter == q]))
        counts = sp.csr_matrix(full.layers["counts"], copy=True)
        rng = np.random.default_rng(0)
        for i in deep:
            lo, hi = counts.indptr[i], counts.indptr[i + 1]
            counts.data[lo:hi] = rng.binomial(counts.data[lo:hi].astype(np.int64), target / lib[i])
        counts.eliminate_zeros()
        a = full.copy()
        a.layers["counts"], a.X = counts, counts.copy()
        b = R.call(a, lesions, normal, **HARNESS)
        for les in lesions:
            llr = base.obs[f"{les.name}_llr"].to_numpy()
            rows.append(
                {"lesion": les.name, "thinned_to": f"q{q + 1} ({target:.0f} UMI)"}
                | {"deep_full": float(np.median(llr[deep]))}
                | {"deep_thinned": float(np.median(b.obs[f"{les.name}_llr"].to_numpy()[deep]))}
                | {"that_quarter": float(np.median(llr[quarter == q]))}
            )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--forms", nargs="+", default=["nb", "log", "hybrid"], choices=["nb", "log", "hybrid"])
    ap.add_argument("--keep", type=float, nargs="+", default=[1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--no-oligo", action="store_true")
    ap.add_argument("--thin-deep", action="store_true", help="the deepest tumour cells thinned (see above)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    if args.thin_deep:
        print(thin_deep().round(2).to_string(index=False))
        print(f"\n{time.perf_counter() - t0:.0f} s")
        return
    rows = run_tnbc1(args.forms, args.keep, args.seeds)
    if not args.no_oligo:
        rows += run_oligo(args.forms)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 220, "display.max_rows", 1000):
        print(table.round(4).to_string(index=False))
    print()
    for (data, keep, seed, form), t in table.groupby(["data", "keep", "seed", "form"], sort=False):
        les, ctl = t[t["kind"] == "lesion"], t[t["kind"] == "control"]
        line = (
            f"{data} keep {keep:g} seed {seed} {form}: lesions AUROC {les['auroc'].min():.4f}-{les['auroc'].max():.4f}"
        )
        if "tumour_called" in t and t["tumour_called"].notna().any():
            line += (
                f"; controls' worst share of tumour cells called {ctl['tumour_called'].max():.3f}; "
                f"normal cells called at most {t['normal_called'].max():.3f}"
            )
        print(line)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
