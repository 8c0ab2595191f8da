"""Automatic reference: the cells least likely to carry any configured lesion, found from the data.

When a cohort has no healthy donors and no population known to be cleared of the clone,
:func:`find_reference` picks the normal reference cells for :func:`remnant.tl.lesions.call_lesions`
itself, and says how confident it is.

Model, per lesion and per batch (technology), on candidate cells ``i``:

- ``O_i``: counts of the lesion's genes; ``E_i``: the counts expected from the cell's depth
  (:func:`remnant.tl.lesions.lesion_counts`) and the state-matched profile of the current reference (as in
  ``call_lesions``: a state profile shrunk towards the pooled one).
- ``y_i = log((O_i + 1/2) / (E_i + 1/2))`` is a two-component mixture: normal cells around ``m``,
  carriers around ``m + log(copy_ratio)`` (half the expression for a one-copy loss), with a
  variance ``a / E_i + b`` (counting noise, scaled by ``a`` for read counts, plus overdispersion).
  The *distance* between the components is fixed by the lesion; the level ``m``, the carrier
  fraction and ``a``, ``b`` are fitted by EM. The normal component is therefore found even when the
  starting reference (all candidates) is mostly carriers: its level is where the other cluster
  sits at ``1/copy_ratio`` times the carriers' level.
- The reference becomes the cells with a carrier probability below ``max_carrier_probability``;
  profiles are re-estimated from them, and this repeats until the selection stops changing, or
  returns to an earlier selection: then the cells common to the selections of the cycle are kept.

Confidence, reported per lesion and batch: a likelihood-ratio statistic for two populations a copy
apart against one (``separation``, chi-square-like), together with the size of the smaller
population (a few cells in a tail, or patients with different breakpoints, also raise the
statistic), the expected number of carriers among the chosen cells (``contamination``), and a
``confident`` flag with the reason when it is false. After the rescore rounds the statistic is
that of the cells' gene-level log-likelihood ratios (``_llr_separation``, a share of carriers
against none); without them, the two-component fit's against one component. The summed counts
the mixture sees differ between normal cell types by about a copy on real cells, which left it
below the bar on lesions the calls separate (docs/robust_evidence.md, session 35). Expression
alone cannot tell an all-normal set of cells from an all-carrier one (both are one population):
that case is flagged, not guessed.

Selecting the reference on the same genes it is then used to score biases its profile upwards by
the cut-off's truncation of normal cells' low tail; ``max_carrier_probability`` is lenient by
default (0.5) so the truncation is small, and the benchmark measures the false-positive rate on
normal cells outside the chosen reference.
"""

from __future__ import annotations

import logging

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize_scalar

from remnant.errors import InputError
from remnant.tl.lesion_model import mixture_loglik
from remnant.tl.lesions import (
    Lesion,
    call_lesions,
    cell_mask,
    counts_matrix,
    effective_batch_key,
    genes_in,
    lesion_counts,
    obs_depth_groups,
    require_obs,
    require_positions,
)

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
    min_cells: int = 20,
    max_rounds: int = 10,
    rescore_rounds: int = 2,
    min_mean: float = 0.001,
    shrinkage: float = 20.0,
    depth=None,
    depth_genes=None,
    **call_kwargs,
) -> tuple[np.ndarray, pd.DataFrame]:
    # long because: the docstring is the reference for every parameter and column returned; the
    # code (about 35 lines) checks the inputs and hands each step to the functions below.
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
        carriers are kept and the batch is flagged not confident. Every cell kept beyond those that
        pass is likely a carrier and pulls the profile towards the lesion, so this is the least a
        profile needs (20, as ``call_lesions``' ``min_state_reference``), not a comfortable size: on
        the oligodendroglioma set through the workflow (42 normal cells) 50 took 8 tumour cells in
        and called 93.6% of the tumour cells on del19q; the 43 cells that passed called 99.3%
        (docs/robust_evidence.md, session 34).
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
        float64 (n_obs,) each cell's depth (:func:`remnant.tl.lesions.lesion_counts`), computed
        beforehand (as ``depth`` of :func:`remnant.tl.lesions.call_lesions`); ``None``: from ``adata``.
    depth_genes
        As in :func:`remnant.tl.lesions.call_lesions`: the genes the depth leaves out (``None``: the default).

    Returns
    -------
    mask
        Boolean (n_obs,): the chosen reference cells.
    report
        One row per lesion and batch: ``lesion``, ``batch``, ``n_candidates``, ``n_chosen``,
        ``carrier_fraction`` (fitted share of carriers among candidates), ``separation``
        (likelihood-ratio statistic for two populations a copy apart vs one: of the cells'
        gene-level log-likelihood ratios after the rescore rounds, else of the mixture; module
        docstring), ``contamination`` (expected carriers
        among the chosen cells, a count), ``normal_level`` (fitted log ratio of normal cells to the
        chosen reference, near 0 when converged), ``rounds``, ``converged``, ``cycle`` (the number
        of choices the selection alternated between before the cells common to them were kept; 0
        when it settled on one), ``confident`` (bool) and ``reason`` (why not, else empty).
    """
    X, batch_key, cand = _checked_inputs(
        adata, candidates, state_key, batch_key, layer, max_carrier_probability, min_cells
    )
    # the reference is what is being chosen: the depth's groups of cells are samples x states
    groups = (
        None
        if depth is not None
        else obs_depth_groups(adata.obs, call_kwargs.get("sample_key", "sample"), state_key, None, "find_reference")
    )
    XU, var, depth = lesion_counts(
        X, adata.var, lesions, depth, "find_reference", groups=groups, depth_genes=depth_genes
    )
    state = adata.obs[state_key].astype(str).to_numpy()
    batch = adata.obs[batch_key].astype(str).to_numpy() if batch_key else np.full(adata.n_obs, "all", dtype=object)
    choice = {"max_carrier_probability": max_carrier_probability, "min_cells": min_cells}
    fit = {"max_rounds": max_rounds, "min_mean": min_mean, "shrinkage": shrinkage}
    mask, report = _mixture_choice(XU, var, lesions, depth, state, batch, cand, **fit, **choice)
    if rescore_rounds > 0:
        call = {"state_key": state_key, "batch_key": batch_key, "min_mean": min_mean, "shrinkage": shrinkage}
        sub, cand_idx = _candidates(adata.obs, XU, var, cand)
        chosen = _rescore(
            sub,
            lesions,
            depth[cand_idx],
            batch[cand_idx],
            mask[cand_idx],
            report,
            rescore_rounds,
            choice,
            call_kwargs | call,
        )
        mask = np.zeros(adata.n_obs, bool)
        mask[cand_idx[chosen]] = True
    report["reason"] = _reasons(report, min_cells, max_rounds)
    report["confident"] = report["reason"] == ""
    return mask, report


def _checked_inputs(
    adata: anndata.AnnData,
    candidates,
    state_key: str,
    batch_key: str | None,
    layer: str | None,
    max_carrier_probability: float,
    min_cells: int,
) -> tuple[object, str | None, np.ndarray]:
    """The counts, the batch key in effect and the boolean (n_obs,) candidates, or InputError."""
    X = counts_matrix(adata, layer, "find_reference")
    require_positions(adata.var, "find_reference")
    if not 0 < max_carrier_probability < 1:
        raise InputError(
            f"max_carrier_probability must be between 0 and 1; got {max_carrier_probability}.",
            where="find_reference(max_carrier_probability=...)",
        )
    batch_key = effective_batch_key(adata.obs, batch_key)
    require_obs(adata.obs, (state_key,) + ((batch_key,) if batch_key else ()), "find_reference")
    cand = (
        np.ones(adata.n_obs, bool)
        if candidates is None
        else cell_mask(adata, candidates, "candidates", "find_reference")
    )
    if cand.sum() < min_cells:
        raise InputError(
            f"only {int(cand.sum())} candidate cells for an automatic reference; need at least {min_cells}.",
            where="find_reference(candidates=...)",
        )
    return X, batch_key, cand


def _candidates(
    obs: pd.DataFrame, XU: sp.csr_matrix, var: pd.DataFrame, cand: np.ndarray
) -> tuple[anndata.AnnData, np.ndarray]:
    """The candidates' lesion genes as an AnnData (with their depth, call_lesions needs nothing
    else), and their indices in the cohort."""
    cand_idx = np.flatnonzero(cand)
    sub = anndata.AnnData(
        X=XU if cand.all() else XU[cand_idx],
        obs=obs.iloc[cand_idx].copy(),
        var=var[["chromosome", "start", "end"]].copy(),
    )
    return sub, cand_idx


def _mixture_choice(
    XU: sp.csr_matrix,
    var: pd.DataFrame,
    lesions: list[Lesion],
    depth: np.ndarray,
    state: np.ndarray,
    batch: np.ndarray,
    cand: np.ndarray,
    *,
    max_carrier_probability: float,
    min_cells: int,
    max_rounds: int,
    min_mean: float,
    shrinkage: float,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Each batch's choice among its candidates by the two-component mixture (module docstring).

    ``XU``: cells x the lesions' genes (``var``); the arrays are (n_obs,). Returns the boolean
    (n_obs,) choice and one report row per lesion and batch (without ``reason``/``confident``).
    """
    inside = {lesion.name: genes_in(var, lesion) for lesion in lesions}
    mask = np.zeros(len(cand), bool)
    rows = []
    for b in pd.unique(batch[cand]):
        idx = np.flatnonzero(cand & (batch == b))
        XLs = {
            lesion.name: sp.csr_matrix(XU[idx][:, np.flatnonzero(inside[lesion.name])], dtype=np.float64)
            for lesion in lesions
        }
        keep = depth[idx] > 0
        ref, fits, rounds, converged, prob_any, cycle = _iterate_choice(
            XLs,
            lesions,
            depth[idx],
            state[idx],
            keep,
            max_carrier_probability,
            min_cells,
            max_rounds,
            min_mean,
            shrinkage,
        )
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
                    "cycle": cycle,
                    "rescore_rounds": 0,
                    "below_cutoff": int((keep & (prob_any < max_carrier_probability)).sum()),
                }
            )
    return mask, pd.DataFrame(rows)


def _iterate_choice(
    XLs: dict,
    lesions: list[Lesion],
    depth: np.ndarray,
    state: np.ndarray,
    keep: np.ndarray,
    max_carrier_probability: float,
    min_cells: int,
    max_rounds: int,
    min_mean: float,
    shrinkage: float,
) -> tuple[np.ndarray, dict, int, bool, np.ndarray, int]:
    """One batch's choice: fit the mixture of each lesion against the current reference, keep the
    cells unlikely to carry any, repeat until the choice stops changing (at most ``max_rounds``).

    The choice can also alternate: a reference that holds a few carriers moves the normal level, so
    the next choice drops them with some normal cells, whose profile takes them back in (the
    oligodendroglioma set through the workflow alternated between 42 cells and 30 of them). When a
    choice repeats an earlier one, the cells chosen in every round of the cycle are kept (filled to
    ``min_cells`` by the last round's probabilities) and the mixture is fitted once more against them.

    ``XLs``: lesion name -> the batch's candidates x that lesion's genes (float64); ``keep``: the
    candidates with depth. Returns the choice, the last fits, rounds run, whether the choice
    converged (to one choice or a cycle), each candidate's probability of carrying any lesion, and
    the number of choices in the cycle (0 when the choice settled on one).
    """
    ref = keep.copy()  # round 0: every candidate
    fit_args = (XLs, lesions, depth, state, keep, min_mean, shrinkage)
    history = [ref]
    converged, rounds, cycle = False, 0, 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 (rounds is reported after the loop)
        fits, prob_any = _fit_round(ref, *fit_args)
        new = _below_cutoff(prob_any, keep, max_carrier_probability, min_cells)
        if np.array_equal(new, ref):
            converged = True
            break
        start = next((i for i, old in enumerate(history) if np.array_equal(old, new)), None)
        if start is not None:
            cycle = len(history) - start
            core = np.logical_and.reduce(history[start:])
            ref = _filled(core, prob_any, min_cells)
            fits, prob_any = _fit_round(ref, *fit_args)
            converged = True
            break
        history.append(new)
        ref = new
    return ref, fits, rounds, converged, prob_any, cycle


def _fit_round(
    ref: np.ndarray,
    XLs: dict,
    lesions: list[Lesion],
    depth: np.ndarray,
    state: np.ndarray,
    keep: np.ndarray,
    min_mean: float,
    shrinkage: float,
) -> tuple[dict, np.ndarray]:
    """Each lesion's mixture fitted against the reference ``ref`` (boolean, the batch's candidates),
    and each candidate's probability of carrying any lesion (lesions taken as independent)."""
    fits: dict[str, dict] = {}
    prob_any = np.zeros(keep.size)
    for lesion in lesions:
        O, E = _expected(XLs[lesion.name], depth, state, ref, min_mean, shrinkage)
        ok = keep & (E > 0)
        fit = _fit_mixture(np.log((O[ok] + 0.5) / (E[ok] + 0.5)), E[ok], float(np.log(lesion.copy_ratio)))
        w = np.ones(keep.size)
        w[ok] = fit["w"]
        fits[lesion.name] = {**fit, "w_all": w}
        prob_any = 1.0 - (1.0 - prob_any) * (1.0 - w)
    return fits, prob_any


def _below_cutoff(prob_any: np.ndarray, keep: np.ndarray, max_carrier_probability: float, min_cells: int) -> np.ndarray:
    """The candidates with depth whose probability of carrying any lesion is below the cut-off, or the
    ``min_cells`` least likely when fewer pass."""
    return _filled(keep & (prob_any < max_carrier_probability), prob_any, min_cells)


def _filled(chosen: np.ndarray, prob_any: np.ndarray, min_cells: int) -> np.ndarray:
    """``chosen``, with the cells least likely to carry a lesion added when it holds fewer than
    ``min_cells``."""
    if chosen.sum() >= min_cells:
        return chosen
    out = np.zeros(chosen.size, bool)
    out[np.argsort(np.where(chosen, -1.0, prob_any), kind="stable")[:min_cells]] = True
    return out


def _rescore(
    sub: anndata.AnnData,
    lesions: list[Lesion],
    depth: np.ndarray,
    batch: np.ndarray,
    chosen: np.ndarray,
    report: pd.DataFrame,
    rescore_rounds: int,
    choice: dict,
    call_kwargs: dict,
) -> np.ndarray:
    """Rounds of :func:`call_lesions` on the candidates ``sub`` (their lesion genes; ``depth``,
    ``batch`` and the mixture's choice ``chosen`` over them) against the current choice, each
    followed by a new choice from its posteriors; updates ``report``, returns the last choice."""
    # the notes on what a trial reference lacks (call_lesions' WARNINGs) concern the candidates,
    # not the final call; the call on the cohort with the chosen reference says them
    notes_log = logging.getLogger("remnant.tl.lesions")
    level = notes_log.level
    notes_log.setLevel(logging.ERROR)
    try:
        for r in range(1, rescore_rounds + 1):
            call_lesions(sub, lesions, reference=chosen, layer=None, posterior_cutoff=0.9, depth=depth, **call_kwargs)
            post = {lesion.name: sub.obs[f"{lesion.name}_posterior"].to_numpy(float) for lesion in lesions}
            llr = {lesion.name: sub.obs[f"{lesion.name}_llr"].to_numpy(float) for lesion in lesions}
            new = _choose_from_posteriors(post, llr, batch, report, r, **choice)
            stable = np.array_equal(new, chosen)
            chosen = new
            if stable:
                break
    finally:
        notes_log.setLevel(level)
    return chosen


def _choose_from_posteriors(
    post: dict,
    llr: dict,
    batch: np.ndarray,
    report: pd.DataFrame,
    r: int,
    *,
    max_carrier_probability: float,
    min_cells: int,
) -> np.ndarray:
    """Per batch, the cells unlikely to carry any lesion by their posteriors (``post``: lesion
    name -> (n,)), at least ``min_cells`` of them; their report rows updated for round ``r``, the
    separation from the cells' log-likelihood ratios (``llr``: lesion name -> (n,), nats)."""
    prob_any = 1.0 - np.prod([1.0 - p for p in post.values()], axis=0)
    new = np.zeros(batch.size, bool)
    for b in pd.unique(batch):
        inb = np.flatnonzero(batch == b)
        ok = prob_any[inb] < max_carrier_probability
        new[inb[_below_cutoff(prob_any[inb], np.ones(inb.size, bool), max_carrier_probability, min_cells)]] = True
        for name, p in post.items():
            at = (report["lesion"] == name) & (report["batch"] == b)
            report.loc[at, "separation"] = _llr_separation(llr[name][inb])
            report.loc[at, "n_chosen"] = int(new[inb].sum())
            report.loc[at, "contamination"] = float(p[inb][new[inb]].sum())
            report.loc[at, "carrier_fraction"] = float(p[inb].mean())
            report.loc[at, "below_cutoff"] = int(ok.sum())
            report.loc[at, "rescore_rounds"] = r
    return new


def _llr_separation(llr: np.ndarray) -> float:
    """Likelihood-ratio statistic for a share of carriers among cells against none, from each cell's
    log-likelihood ratio of carrier to normal (``llr``, (n,), nats): ``2 max_pi sum_i log(1 - pi +
    pi exp(llr_i))``. The sum is concave in ``pi``: 0 when its slope at ``pi = 0`` is not positive.

    The two-component mixture's ``separation`` sums a lesion's counts per cell; on real cells the
    normal cells' types differ in those sums by more than a copy (TNBC1: 0.0-4.4 on five lesions
    whose calls separate at AUROC 0.996-1.0), where the gene-level ratios keep them apart.
    """
    llr = np.asarray(llr, float)
    llr = np.minimum(llr[np.isfinite(llr)], 700.0)  # exp overflows above ~709
    if llr.size == 0 or np.expm1(llr).sum() <= 0:
        return 0.0

    # the maximum likelihood fraction (em_prior's is a MAP with an add-half prior, below the maximum)
    best = minimize_scalar(
        lambda pi: -mixture_loglik(llr, pi), bounds=(1e-12, 1.0 - 1e-12), method="bounded", options={"xatol": 1e-9}
    )
    return max(0.0, -2.0 * float(best.fun))


def _reasons(report: pd.DataFrame, min_cells: int, max_rounds: int) -> list[str]:
    """Why each report row is not confident ("" when it is)."""
    reasons_of = []
    for _, row in report.iterrows():
        reasons = []
        n_carriers = row["carrier_fraction"] * row["n_candidates"]
        if row["separation"] < MIN_SEPARATION or min(n_carriers, row["n_candidates"] - n_carriers) < min_cells:
            reasons.append(
                f"one population only (separation {row['separation']:.1f}, bar {MIN_SEPARATION}; "
                f"{n_carriers:.0f} cells in the carrier component and {row['n_candidates'] - n_carriers:.0f} in "
                f"the normal one, bar {min_cells} each): the candidates are all normal or all carriers, and "
                "expression cannot tell which"
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
    return reasons_of
