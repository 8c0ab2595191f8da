"""Automatic reference: the cells least likely to carry any configured lesion, found from the data.

When a cohort has no healthy donors and no population known to be cleared of the clone,
:func:`find_reference` picks the normal reference cells for :func:`remnant.tl.lesions.call_lesions`
itself, and says how confident it is.

Model, per lesion and per batch (technology), on candidate cells ``i``:

- ``O_i``: counts of the lesion's genes; ``E_i``: the counts expected from the cell's depth (counts
  outside every lesion) and the state-matched profile of the current reference (as in
  ``call_lesions``: a state profile shrunk towards the pooled one).
- ``y_i = log((O_i + 1/2) / (E_i + 1/2))`` is a two-component mixture: normal cells around ``m``,
  carriers around ``m + log(copy_ratio)`` (half the expression for a one-copy loss), with a
  variance ``a / E_i + b`` (counting noise, scaled by ``a`` for read counts, plus overdispersion).
  The *distance* between the components is fixed by the lesion; the level ``m``, the carrier
  fraction and ``a``, ``b`` are fitted by EM. The normal component is therefore found even when the
  starting reference (all candidates) is mostly carriers: its level is where the other cluster
  sits at ``1/copy_ratio`` times the carriers' level.
- The reference becomes the cells with a carrier probability below ``max_carrier_probability``;
  profiles are re-estimated from them, and this repeats until the selection stops changing.

Confidence, reported per lesion and batch: the likelihood-ratio statistic of the two-component fit
against one component (``separation``, chi-square-like; large when two populations a copy apart
are present) together with the size of the smaller component (a few cells in a tail, or patients
with different breakpoints, also raise the statistic), the expected number of carriers among the chosen cells (``contamination``), and a
``confident`` flag with the reason when it is false. Expression alone cannot tell an all-normal set
of cells from an all-carrier one (both are one population): that case is flagged, not guessed.

Selecting the reference on the same genes it is then used to score biases its profile upwards by
the cut-off's truncation of normal cells' low tail; ``max_carrier_probability`` is lenient by
default (0.5) so the truncation is small, and the benchmark measures the false-positive rate on
normal cells outside the chosen reference.
"""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.tl.lesions import Lesion, cell_depth, cell_mask, counts_matrix, lesion_genes, require_positions

__all__ = ["find_reference"]

#: Likelihood-ratio statistic (two components vs one) above which two populations a copy apart
#: count as present; the 0.999 quantile of a chi-square with two degrees of freedom (the extra
#: component has a weight and its responsibilities), a conservative bar for a mixture test.
MIN_SEPARATION = 13.8


def _fit_mixture(y: np.ndarray, E: np.ndarray, log_rho: float, max_iter: int = 200, tol: float = 1e-7) -> dict:
    """EM for ``y ~ (1-pi) N(m, v) + pi N(m + log_rho, v)`` with ``v = a/E + b`` per cell."""
    inv_e = 1.0 / np.maximum(E, 1e-9)
    # start: the normal level at the upper part of the data, carriers below it (loss) or above (gain)
    m = float(np.quantile(y, 0.75 if log_rho < 0 else 0.25))
    a, b, pi = 1.0, 0.05, 0.5
    ll_old = -np.inf
    for _ in range(max_iter):
        v = a * inv_e + b
        l0 = -0.5 * (np.log(v) + (y - m) ** 2 / v)
        l1 = -0.5 * (np.log(v) + (y - m - log_rho) ** 2 / v)
        lp0, lp1 = np.log1p(-pi) + l0, np.log(pi) + l1
        top = np.maximum(lp0, lp1)
        ll_cells = top + np.log(np.exp(lp0 - top) + np.exp(lp1 - top))
        w = np.exp(lp1 - ll_cells)  # carrier responsibility
        ll = float(ll_cells.sum())
        # M-step: level (precision-weighted), weight, variance model by weighted least squares
        m = float(np.sum((y - w * log_rho) / v) / np.sum(1.0 / v))
        pi = float(np.clip((w.sum() + 0.5) / (y.size + 1.0), 1e-6, 1 - 1e-6))
        r2 = (1 - w) * (y - m) ** 2 + w * (y - m - log_rho) ** 2
        A = np.column_stack([inv_e, np.ones_like(inv_e)]) / v[:, None]
        coef, *_ = np.linalg.lstsq(A, r2 / v, rcond=None)
        a, b = float(max(coef[0], 0.05)), float(max(coef[1], 1e-4))
        if ll - ll_old < tol * max(1.0, abs(ll)):
            break
        ll_old = ll
    # one component (all normal) with its own level and variance model, for the separation statistic
    m1, a1, b1 = float(np.median(y)), a, b
    for _ in range(50):
        v1 = a1 * inv_e + b1
        m1 = float(np.sum(y / v1) / np.sum(1.0 / v1))
        A = np.column_stack([inv_e, np.ones_like(inv_e)]) / v1[:, None]
        coef, *_ = np.linalg.lstsq(A, (y - m1) ** 2 / v1, rcond=None)
        a1, b1 = float(max(coef[0], 0.05)), float(max(coef[1], 1e-4))
    v1 = a1 * inv_e + b1
    ll1 = float(np.sum(-0.5 * (np.log(v1) + (y - m1) ** 2 / v1)))
    return {"w": w, "m": m, "pi": pi, "a": a, "b": b, "separation": max(0.0, 2.0 * (ll - ll1))}


def _expected(
    XL: sp.csr_matrix, depth: np.ndarray, state: np.ndarray, ref: np.ndarray, min_mean: float, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected lesion counts per cell (rows of XL) against the reference rows ``ref``."""
    tot = np.asarray(XL[ref].sum(axis=0)).ravel()
    d_ref = depth[ref]
    p_pool = tot / max(d_ref.sum(), 1.0)
    med = float(np.median(d_ref)) if d_ref.size else 0.0
    use = (p_pool * med >= min_mean) & (p_pool > 0)
    X = XL[:, np.flatnonzero(use)]
    p_pool = p_pool[use]
    O = np.asarray(X.sum(axis=1)).ravel()
    E = np.empty(XL.shape[0])
    pseudo = shrinkage * med
    pooled_total = p_pool.sum()
    for s in pd.unique(state):
        rows = state == s
        rs = rows & ref
        if rs.any():
            total = (np.asarray(X[rs].sum(axis=0)).ravel().sum() + pseudo * pooled_total) / (
                d_ref[rs[ref]].sum() + pseudo
            )
        else:
            total = pooled_total
        E[rows] = depth[rows] * total
    return O, E


def find_reference(
    adata: anndata.AnnData,
    lesions: list[Lesion],
    *,
    candidates=None,
    state_key: str = "hspc_state",
    batch_key: str | None = "technology",
    layer: str | None = "counts",
    max_carrier_probability: float = 0.5,
    min_cells: int = 50,
    max_rounds: int = 10,
    rescore_rounds: int = 2,
    min_mean: float = 0.001,
    shrinkage: float = 20.0,
    depth=None,
    **call_kwargs,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Choose normal reference cells from the data: those least likely to carry any lesion.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layers[layer]`` (or ``X`` when it has no such layer
        and ``X`` holds counts; ``None``: ``X``; :func:`remnant.tl.lesions.counts_matrix`) and gene positions in
        ``var`` (``chromosome``, ``start``, ``end``). With ``depth`` given, only the lesions'
        genes are needed (:func:`remnant.tl.lesions.read_lesion_counts`).
    lesions
        From :func:`remnant.tl.lesions.parse_lesions`.
    candidates
        Boolean array (n_obs,) or obs column: cells that may be chosen (default: all).
    state_key
        obs column of the annotated HSPC state (expectations are state-matched).
    batch_key
        obs column of the technology; each batch is fitted on its own (count distributions
        differ). The default ``"technology"`` is ignored when obs lacks it.
    max_carrier_probability
        A candidate is kept when its probability of carrying the lesion is below this (0-1), for
        every lesion.
    min_cells
        Fewest cells kept per batch: when fewer pass the cut-off, the ``min_cells`` least likely
        carriers are kept and the batch is flagged not confident.
    max_rounds
        Re-estimation rounds (profiles from the chosen cells, then a new choice).
    rescore_rounds
        After the mixture's choice, rounds of :func:`remnant.tl.lesions.call_lesions` (gene-level
        likelihoods, per-sample priors; chosen cells scored by cross-fitting) on the candidates
        against the current choice, each followed by a new choice from its posteriors. 0: the
        mixture's choice is final.
    min_mean, shrinkage, call_kwargs
        As in :func:`remnant.tl.lesions.call_lesions` (``call_kwargs``: its other keyword arguments,
        e.g. ``sample_key``, ``donor_key``, ``n_folds``, ``seed``).
    depth
        float64 (n_obs,) counts of each cell on the autosomal genes outside every lesion, computed
        beforehand (as ``depth`` of :func:`remnant.tl.lesions.call_lesions`); ``None``: from ``adata``.

    Returns
    -------
    mask
        Boolean (n_obs,): the chosen reference cells.
    report
        One row per lesion and batch: ``lesion``, ``batch``, ``n_candidates``, ``n_chosen``,
        ``carrier_fraction`` (fitted share of carriers among candidates), ``separation``
        (likelihood-ratio statistic, two components vs one), ``contamination`` (expected carriers
        among the chosen cells, a count), ``normal_level`` (fitted log ratio of normal cells to the
        chosen reference, near 0 when converged), ``rounds``, ``converged``, ``confident`` (bool)
        and ``reason`` (why not, else empty).
    """
    X = counts_matrix(adata, layer, "find_reference")
    require_positions(adata.var, "find_reference")
    if not 0 < max_carrier_probability < 1:
        raise InputError(
            f"max_carrier_probability must be between 0 and 1; got {max_carrier_probability}.",
            where="cnv.auto_reference.max_carrier_probability",
        )
    if batch_key == "technology" and batch_key not in adata.obs:
        batch_key = None
    for key in (state_key,) + ((batch_key,) if batch_key else ()):
        if key not in adata.obs:
            raise InputError(f"obs lacks column {key!r}.", where="find_reference")
    cand = (
        np.ones(adata.n_obs, bool)
        if candidates is None
        else cell_mask(adata, candidates, "candidates", "find_reference")
    )
    if cand.sum() < min_cells:
        raise InputError(
            f"only {int(cand.sum())} candidate cells for an automatic reference; need at least {min_cells}.",
            where="cnv.auto_reference",
        )
    inside, outside = lesion_genes(adata.var, lesions)
    depth = cell_depth(X, outside, depth, adata.n_obs, "find_reference")
    # Only the lesions' genes are used from here on: select those columns before any row subset
    # (rows first would copy every gene of the selected cells).
    lesion_cols = np.flatnonzero(
        np.logical_or.reduce(list(inside.values())) if inside else np.zeros(adata.n_vars, bool)
    )
    XU = sp.csr_matrix(X[:, lesion_cols])  # cells x lesion genes, the counts' dtype
    inside = {name: mask[lesion_cols] for name, mask in inside.items()}
    state = adata.obs[state_key].astype(str).to_numpy()
    batch = adata.obs[batch_key].astype(str).to_numpy() if batch_key else np.full(adata.n_obs, "all", dtype=object)

    mask = np.zeros(adata.n_obs, bool)
    rows = []
    for b in pd.unique(batch[cand]):
        idx = np.flatnonzero(cand & (batch == b))
        XLs = {
            lesion.name: sp.csr_matrix(XU[idx][:, np.flatnonzero(inside[lesion.name])], dtype=np.float64)
            for lesion in lesions
        }
        keep = depth[idx] > 0
        ref = keep.copy()  # round 0: every candidate
        fits: dict[str, dict] = {}
        converged, rounds = False, 0
        for rounds in range(1, max_rounds + 1):  # noqa: B007 (rounds is reported after the loop)
            prob_any = np.zeros(idx.size)
            for lesion in lesions:
                O, E = _expected(XLs[lesion.name], depth[idx], state[idx], ref, min_mean, shrinkage)
                ok = keep & (E > 0)
                fit = _fit_mixture(np.log((O[ok] + 0.5) / (E[ok] + 0.5)), E[ok], float(np.log(lesion.copy_ratio)))
                w = np.ones(idx.size)
                w[ok] = fit["w"]
                fits[lesion.name] = {**fit, "w_all": w}
                prob_any = 1.0 - (1.0 - prob_any) * (1.0 - w)  # carries any lesion (independent lesions)
            new = keep & (prob_any < max_carrier_probability)
            if new.sum() < min_cells:
                new = np.zeros(idx.size, bool)
                new[np.argsort(prob_any, kind="stable")[:min_cells]] = True
            if np.array_equal(new, ref):
                converged = True
                break
            ref = new
        mask[idx[ref]] = True
        for lesion in lesions:
            fit = fits[lesion.name]
            rows.append(
                {
                    "lesion": lesion.name,
                    "batch": b,
                    "n_candidates": int(idx.size),
                    "n_chosen": int(ref.sum()),
                    "carrier_fraction": float(fit["pi"]),
                    "separation": float(fit["separation"]),
                    "contamination": float(fit["w_all"][ref].sum()),
                    "normal_level": float(fit["m"]),
                    "rounds": rounds,
                    "converged": converged,
                    "rescore_rounds": 0,
                    "below_cutoff": int((keep & (prob_any < max_carrier_probability)).sum()),
                }
            )
    report = pd.DataFrame(rows)

    if rescore_rounds > 0:
        from remnant.tl.lesions import call_lesions

        cand_idx = np.flatnonzero(cand)
        # the candidates' lesion genes and their depth: call_lesions needs nothing else
        sub = anndata.AnnData(
            X=XU if cand.all() else XU[cand_idx],
            obs=adata.obs.iloc[cand_idx].copy(),
            var=adata.var.iloc[lesion_cols][["chromosome", "start", "end"]].copy(),
        )
        sub_depth = depth[cand_idx]
        sub_batch = batch[cand_idx]
        chosen = mask[cand_idx]
        for r in range(1, rescore_rounds + 1):
            call_lesions(
                sub,
                lesions,
                reference_mask=chosen,
                state_key=state_key,
                batch_key=batch_key,
                layer=None,
                min_mean=min_mean,
                shrinkage=shrinkage,
                posterior_cutoff=0.9,
                depth=sub_depth,
                **call_kwargs,
            )
            post = {lesion.name: sub.obs[f"{lesion.name}_posterior"].to_numpy(float) for lesion in lesions}
            prob_any = 1.0 - np.prod([1.0 - p for p in post.values()], axis=0)
            new = np.zeros_like(chosen)
            for b in pd.unique(sub_batch):
                inb = np.flatnonzero(sub_batch == b)
                ok = prob_any[inb] < max_carrier_probability
                pick = inb[ok] if ok.sum() >= min_cells else inb[np.argsort(prob_any[inb], kind="stable")[:min_cells]]
                new[pick] = True
                for lesion in lesions:
                    at = (report["lesion"] == lesion.name) & (report["batch"] == b)
                    report.loc[at, "n_chosen"] = int(new[inb].sum())
                    report.loc[at, "contamination"] = float(post[lesion.name][inb][new[inb]].sum())
                    report.loc[at, "carrier_fraction"] = float(post[lesion.name][inb].mean())
                    report.loc[at, "below_cutoff"] = int(ok.sum())
                    report.loc[at, "rescore_rounds"] = r
            stable = np.array_equal(new, chosen)
            chosen = new
            if stable:
                break
        mask = np.zeros(adata.n_obs, bool)
        mask[cand_idx[chosen]] = True

    reasons_of = []
    for _, row in report.iterrows():
        reasons = []
        n_carriers = row["carrier_fraction"] * row["n_candidates"]
        if row["separation"] < MIN_SEPARATION or min(n_carriers, row["n_candidates"] - n_carriers) < min_cells:
            reasons.append(
                f"one population only (separation {row['separation']:.1f}, bar {MIN_SEPARATION}; "
                f"{n_carriers:.0f} cells in the carrier component, bar {min_cells}): the candidates are "
                "all normal or all carriers, and expression cannot tell which"
            )
        if row["contamination"] > 0.05 * row["n_chosen"]:
            reasons.append(
                f"{row['contamination']:.0f} expected carriers among the {row['n_chosen']} chosen cells (> 5%)"
            )
        if row["below_cutoff"] < min_cells:
            reasons.append(f"fewer than {min_cells} cells below the carrier-probability cut-off")
        if not row["converged"]:
            reasons.append(f"selection still changing after {max_rounds} rounds")
        reasons_of.append("; ".join(reasons))
    report["reason"] = reasons_of
    report["confident"] = report["reason"] == ""
    return mask, report
