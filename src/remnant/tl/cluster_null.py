"""A group's non-carrier null read off its own cells where they show two populations
(:func:`remnant.tl.call_lesions` with ``cluster_null=True``, the default).

A lesion's LLR compares the configured copy ratio with no change, each against the reference's profile. A
tumour's cells can sit off that null as a population: a programme, or the tumour's other cell type, moves the
interval's genes in every one of them (TNBC1's tumour cells read 1p at 0.87 of their genome; none carries a loss
there). A subclone among such cells is still ranked well by its LLRs, but its non-carriers' LLRs sit above the
model's null, so the carrier fraction learned from them, and their posteriors, are too high once the depth is low
(a loss of 1p planted in 54% of TNBC1's tumour cells read at 0.675 at 4,400 UMI; docs/robust_evidence.md, session
38).

Model, per group of cells (a sample's cells of one cluster or state, as the priors'): each cell's level on the
lesion's scale is ``t = llr / s + 1/2`` (0 no change, 1 the configured ratio), ``s`` its expected separation of the
two hypotheses (:func:`separation`). Two populations, at ``a`` and ``a + d`` with a shared spread factor ``v``
(variance ``v / s``), are fitted by EM and compared with one population at a free level. Where the two fit better
by :data:`MARGIN` nats, each holds :data:`MIN_CELLS` expected cells, the lower lies nearer no change than the
configured ratio and the upper beyond it (``a < 1/2 < a + d``), and the lower sits above the model's null, towards
the lesion, by more than :data:`GATE` standard errors, the group's LLRs are mapped so that its lower population
reads as the null and its upper as the configured ratio: ``llr' = s * ((t - a) / d - 1/2)``. Elsewhere nothing changes: a lean or a
clonal lesion alone is one population, which the model's null has to read (the two look alike), and a group whose
lower population sits on the null, or below it (its non-carriers then read less like carriers than the model says,
which makes its calls conservative), is read as the model reads it. On the simulator, whose null is right,
non-carrier populations that differ from the reference sat below it (-0.13 to -0.29 of a step; mapped, they raised
a 50% clone's fraction by up to 0.026 and its non-carriers called from 1.9% to 2.8%).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from remnant._sums import _compiled
from remnant.tl.lesion_model import level_information, split_by

__all__ = ["map_cluster_nulls", "separation"]

#: nats by which two populations must fit a group's levels better than one
MARGIN = 10.0
#: expected cells each population must hold
MIN_CELLS = 3.0
#: standard errors by which the lower population must sit above the model's null (0), towards the lesion
GATE = 3.0
#: fewest cells of a group for a fit
MIN_GROUP = 10
#: the LLR's slope in the level is at most I log(rho)^2; a batch's factor is measured on its reference cells and
#: kept in these bounds
SLOPE_BOUNDS = (0.05, 1.0)


def separation(res: dict, depth: np.ndarray, rho: float, temperature: float, is_ref: np.ndarray) -> np.ndarray:
    """(n_rows,) each row's expected separation of its tempered LLR between the configured ratio ``rho`` and no
    change: ``c * I * log(rho)**2 / temperature`` from its Fisher information ``I`` on the interval's level
    (:func:`remnant.tl.lesion_model.level_information` on the profiles and genes :func:`score_rows` used,
    ``res``), ``c`` the one factor that puts the reference rows' (``is_ref``) median level at the null (the
    outlier terms and the clip make the LLR move less per step than ``I log(rho)^2``). 0 where no gene was kept."""
    if "profiles" not in res:
        return np.zeros(depth.size)
    info = level_information(res["profile_row"], depth / res["count_scale"], res["profiles"], 1.0 / res["size"])
    s = info * np.log(rho) ** 2 / temperature
    llr = res["llr"] / temperature
    ok = is_ref & (s > 0)
    c = float(np.clip(np.median(-2.0 * llr[ok] / s[ok]), *SLOPE_BOUNDS)) if ok.any() else 1.0
    return c * s


#: EM stops when no parameter (levels in steps of the lesion, a share, a spread factor) moves by more than this
TOLERANCE = 1e-7
#: the EM's starts: the upper population's share
STARTS = (0.1, 0.5, 0.9)
#: the least distance (in steps) between the two populations
MIN_DISTANCE = 0.05


@_compiled
def _em_two(t, s, a, d, q, max_iter, tol):  # pragma: no cover - compiled
    """One EM run of the two populations from ``a, d, q`` (spread factor 1); returns ``a, d, q, v``, the
    log-likelihood (up to the constant both models share) and the lower level's standard error. Compiled: the
    fit runs per group and lesion, and a Python loop over numpy calls cost more than the lesion's scoring."""
    n = t.size
    v = 1.0
    for _ in range(max_iter):
        sr = s0 = s0t = s0tt = s1 = s1t = s1tt = 0.0
        lq, lq1 = np.log(q), np.log1p(-q)
        for i in range(n):
            w = s[i] / v
            lo = lq1 - 0.5 * w * (t[i] - a) ** 2
            hi = lq - 0.5 * w * (t[i] - a - d) ** 2
            r = 1.0 / (1.0 + np.exp(lo - hi))
            w0, w1 = s[i] * (1.0 - r), s[i] * r
            sr += r
            s0 += w0
            s0t += w0 * t[i]
            s0tt += w0 * t[i] * t[i]
            s1 += w1
            s1t += w1 * t[i]
            s1tt += w1 * t[i] * t[i]
        q_new = min(max((sr + 0.5) / (n + 1.0), 1e-6), 1.0 - 1e-6)
        a_new = s0t / max(s0, 1e-12)
        d_new = max(s1t / max(s1, 1e-12) - a_new, MIN_DISTANCE)
        c = a_new + d_new
        ss = (s0tt - 2.0 * a_new * s0t + a_new * a_new * s0) + (s1tt - 2.0 * c * s1t + c * c * s1)
        v_new = max(ss / n, 1e-9)
        step = max(abs(q_new - q), abs(a_new - a), abs(d_new - d), abs(v_new - v))
        a, d, q, v = a_new, d_new, q_new, v_new
        if step < tol:
            break
    ll = 0.0
    lq, lq1 = np.log(q), np.log1p(-q)
    s0 = 0.0
    for i in range(n):
        w = s[i] / v
        lo = lq1 - 0.5 * w * (t[i] - a) ** 2
        hi = lq - 0.5 * w * (t[i] - a - d) ** 2
        m = max(lo, hi)
        ll += m + np.log(np.exp(lo - m) + np.exp(hi - m)) + 0.5 * np.log(w)
        s0 += s[i] / (1.0 + np.exp(hi - lo))
    return a, d, q, v, ll, np.sqrt(v / max(s0, 1e-12))


def fit_two(t: np.ndarray, s: np.ndarray, max_iter: int = 500) -> dict:
    """Two populations of levels ``t`` (precisions ``s / v``) by EM from three starts; the best fit's lower level
    ``a``, distance ``d``, upper share ``q``, its lower level's standard error ``se`` and ``gain``, its
    log-likelihood over one population's (at the precision-weighted mean, with its own ``v``)."""
    t, s = np.ascontiguousarray(t, float), np.ascontiguousarray(s, float)
    lo_t, hi_t = np.percentile(t, [10, 90])
    best = None
    for q0 in STARTS:
        a, d, q, v, ll, se = _em_two(t, s, float(lo_t), float(max(hi_t - lo_t, MIN_DISTANCE)), q0, max_iter, TOLERANCE)
        if best is None or ll > best[4]:
            best = (a, d, q, v, ll, se)
    b = float((s * t).sum() / s.sum())
    v1 = float(max((s * (t - b) ** 2).mean(), 1e-9))
    one = float((-0.5 * s / v1 * (t - b) ** 2 + 0.5 * np.log(s / v1)).sum())
    a, d, q, _, ll, se = best
    return {"a": float(a), "d": float(d), "q": float(q), "se": float(se), "gain": float(ll) - one}


def map_cluster_nulls(
    llr: np.ndarray,
    sep: np.ndarray,
    samples: np.ndarray,
    groups: np.ndarray,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Each group's tempered LLRs ``llr`` ((n,)) with its null read off its own cells where the model above finds
    two populations (``sep``: (n,) :func:`separation`, 0 where unknown; ``samples``, ``groups``: (n,) labels, a
    group is a sample's cells of one label). ``reference`` ((n,) bool): the reference cells, which define the
    model's null, are left out of every fit and never mapped. Returns the mapped LLRs (a copy) and one row per
    group fitted:
    ``sample``, ``group``, ``n_cells``, ``lower`` (``a``), ``distance`` (``d``), ``upper_share`` (``q``),
    ``lower_se``, ``gain`` (nats) and ``mapped`` (bool)."""
    out = llr.copy()
    usable = sep > 0 if reference is None else (sep > 0) & ~np.asarray(reference, bool)
    rows = []
    for m in split_by(samples):
        for g in split_by(groups[m]):
            cells = m[g]
            cells = cells[usable[cells]]
            if cells.size < MIN_GROUP:
                continue
            t = llr[cells] / sep[cells] + 0.5
            fit = fit_two(t, sep[cells])
            a, d, q = fit["a"], fit["d"], fit["q"]
            mapped = (
                fit["gain"] >= MARGIN
                and min(q, 1 - q) * cells.size >= MIN_CELLS
                and a < 0.5 < a + d
                and a > GATE * fit["se"]
            )
            if mapped:
                out[cells] = sep[cells] * ((t - a) / d - 0.5)
            rows.append(
                {"sample": samples[cells[0]], "group": groups[cells[0]], "n_cells": int(cells.size)}
                | {"lower": a, "distance": d, "upper_share": q, "lower_se": fit["se"], "gain": fit["gain"]}
                | {"mapped": bool(mapped)}
            )
    columns = ["sample", "group", "n_cells", "lower", "distance", "upper_share", "lower_se", "gain", "mapped"]
    return out, pd.DataFrame(rows, columns=columns)
