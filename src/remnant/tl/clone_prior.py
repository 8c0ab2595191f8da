"""Carrier priors shared by the lesions of one clone (:func:`remnant.tl.call_lesions` with two or
more lesions and ``clone_prior=True``).

A tumour's lesions sit in the same cells: a cell of the malignant clone carries most of them, a
normal cell carries none. Scored one at a time, each lesion sees only its own evidence, so a normal
cell of a type the reference lacks that reads as changed on one arm, or a normal cell that clusters
with tumour cells (and takes their prior), is called although every other lesion says it is normal.

Model, per group of cells (a sample's cells of one state or cluster, as
:func:`remnant.tl.lesion_model.group_posteriors`): a cell belongs to the clone with probability
``m``; a clone cell carries lesion ``L`` with probability ``q_L``, independently of the others
(subclones: ``q_L < 1``); a normal cell carries none. With tempered per-lesion LLRs ``l_L``:

- ``P(clone | data) = sigmoid(logit m + sum_L log(q_L exp(l_L) + 1 - q_L))``
- ``P(L | data) = P(clone | data) * sigmoid(l_L + logit q_L)``

so a lesion's posterior draws on the others' evidence only as far as the lesions co-occur (``q``
near 1 for lesions of the trunk; a lesion of a subclone, ``q`` small, needs its own evidence). The
marginal carrier fraction of ``L`` is ``m * q_L``; with one lesion the model is the per-lesion one
exactly (only the product enters), which is why it runs only for two or more.

``q`` is the clone's make-up, a patient's: fitted by EM on all the patient's cells (add-half priors);
``m`` is fitted per sample. Each group's ``m`` is pulled towards its sample's by pseudo-cells estimated
from the groups' spread (:func:`remnant.tl.lesion_model.pooling_strength`; a tumour and a normal
population in one sample keep their own). Each group's ``q_L`` is pulled towards its patient's by
``strength`` pseudo clone cells, always: a cluster's make-up departs from the patient's only as far as
it has clone cells to show it. Not estimated from the spread, because the spread of ``q`` misleads at
the boundary: a trunk lesion's ``q`` is near 1, its binomial variance near 0, so a mostly normal cluster
whose few candidate clone cells lack it (normal cells a programme reads as gained on one or two arms)
counts as real spread, the pull falls to its least, and those cells become a clone "lacking" the trunk
and the losses, called on the gains (TNBC1 through the workflow, docs/robust_evidence.md, session 34).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from remnant.tl.lesion_model import pooling_strength, sigmoid, split_by

__all__ = ["clone_posteriors", "clone_terms", "lesion_posteriors"]

#: Probabilities are kept this far from 0 and 1 (a fraction of exactly 0 or 1 would let no evidence move it).
_EPS = 1e-6


def clone_terms(llr: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(n, L) ``log(q_L exp(l_L) + 1 - q_L)``: each lesion's evidence that a cell belongs to the clone."""
    q = np.clip(q, _EPS, 1 - _EPS)
    return np.logaddexp(np.log(q) + llr, np.log1p(-q))


def lesion_posteriors(llr: np.ndarray, m: float, q: np.ndarray, *, with_clone: bool = False):
    """(n, L) posterior of each lesion in each cell given the clone fraction ``m`` and the lesions'
    fractions among clone cells ``q`` ((L,)); ``llr``: (n, L) tempered LLRs. ``with_clone``: also
    each cell's probability of belonging to the clone ((n,))."""
    m = float(np.clip(m, _EPS, 1 - _EPS))
    q = np.clip(q, _EPS, 1 - _EPS)
    clone = sigmoid(np.log(m / (1 - m)) + clone_terms(llr, q).sum(axis=1))
    post = clone[:, None] * sigmoid(llr + np.log(q / (1 - q)))
    return (post, clone) if with_clone else post


def _em(
    llr: np.ndarray,
    centre: tuple[float, np.ndarray],
    strength: tuple[float, np.ndarray],
    max_iter: int = 500,
    tol: float = 1e-8,
) -> tuple[float, np.ndarray, np.ndarray]:
    """MAP ``m``, ``q`` ((L,)) of one set of cells by EM, each fraction with a beta prior of
    ``strength`` pseudo-cells centred on ``centre``; also each cell's P(clone) ((n,))."""
    n = llr.shape[0]
    (m0, q0), (km, kq) = centre, strength
    m, q = 0.5, np.full(llr.shape[1], 0.5)
    r = np.full(n, 0.5)
    for _ in range(max_iter):
        mc, qc = np.clip(m, _EPS, 1 - _EPS), np.clip(q, _EPS, 1 - _EPS)
        r = sigmoid(np.log(mc / (1 - mc)) + clone_terms(llr, qc).sum(axis=1))
        s = sigmoid(llr + np.log(qc / (1 - qc)))
        m_new = (r.sum() + km * m0) / (n + km)
        q_new = ((r[:, None] * s).sum(axis=0) + kq * q0) / (r.sum() + kq)
        done = abs(m_new - m) < tol and np.max(np.abs(q_new - q)) < tol
        m, q = float(m_new), q_new
        if done:
            break
    return m, q, r


def clone_posteriors(
    llr: np.ndarray, samples: np.ndarray, groups: np.ndarray, strength: float, patients: np.ndarray | None = None
) -> tuple[np.ndarray, dict, pd.DataFrame, np.ndarray]:
    """Posteriors of every lesion in every cell under the clone model (module docstring).

    Parameters
    ----------
    llr
        (n, L) tempered LLRs, one column per lesion.
    samples, groups
        (n,) each cell's sample and its group inside the sample (state or cluster).
    strength
        The most pseudo-cells pulling a group's clone fraction towards its sample's, and the pseudo
        clone cells pulling its lesion fractions towards its patient's (``inf``: those).
    patients
        (n,) each cell's patient (``None``: each sample its own). The clone is a patient's: a
        group's ``q`` is pulled towards the one learned from all the patient's cells, so a sample
        or cluster with few clone cells (a sorted normal population, a remission sample) reads
        the clone's make-up from the patient's other cells rather than guessing it.

    Returns
    -------
    (n, L) posteriors; ``{sample: (m, q)}`` (each sample's own fit, ``q`` pulled towards its
    patient's by one pseudo-cell); one row per (sample, group): ``sample``, ``group``, ``n_cells``,
    ``clone`` (m), ``q`` ((L,) array), ``strength`` (pseudo-cells pulling ``m``); (n,) each cell's
    probability of belonging to the clone.
    """
    n_lesions = llr.shape[1]
    patients = samples if patients is None else np.asarray(patients)
    post, clone = np.zeros(llr.shape), np.zeros(llr.shape[0])
    fits, rows = {}, []
    half, one = (0.5, np.full(n_lesions, 0.5)), (1.0, np.ones(n_lesions))
    for cells in split_by(patients):
        q_p = _em(llr[cells], half, one)[1]
        members, centres = [], []
        for at in split_by(samples[cells]):
            own = cells[at]
            m_s, q_s, _ = _em(llr[own], (0.5, q_p), one)
            fits[samples[own[0]]] = (m_s, q_s)
            for g in split_by(groups[own]):
                members.append(own[g])
                centres.append(m_s)
        km = _pooling(llr, members, centres, q_p, samples, strength)
        kq = np.full(n_lesions, float(strength))
        for g, m_s, k_m in zip(members, centres, km, strict=True):
            m_g, q_g = (m_s, q_p) if not np.isfinite(k_m) else _em(llr[g], (m_s, q_p), (k_m, kq))[:2]
            post[g], clone[g] = lesion_posteriors(llr[g], m_g, q_g, with_clone=True)
            row = {"sample": samples[g[0]], "group": groups[g[0]], "n_cells": int(g.size)}
            rows.append({**row, "clone": m_g, "q": q_g, "strength": k_m})
    return post, fits, pd.DataFrame(rows, columns=["sample", "group", "n_cells", "clone", "q", "strength"]), clone


def _pooling(
    llr: np.ndarray,
    members: list[np.ndarray],
    centres: list[float],
    q_p: np.ndarray,
    samples: np.ndarray,
    strength: float,
) -> list[float]:
    """Pseudo-cells pulling one patient's groups' ``m`` towards their sample's (one value per sample,
    by the groups' cells): the empirical-Bayes pull of :func:`pooling_strength` from the groups' own
    fits (each with one pseudo-cell). Returns the ``m`` pull of each group."""
    if not np.isfinite(strength):
        return [float(strength)] * len(members)
    one = (1.0, np.ones(llr.shape[1]))
    own = [_em(llr[g], (m_s, q_p), one)[0] for g, m_s in zip(members, centres, strict=True)]
    of_sample = np.array([samples[g[0]] for g in members])
    km = np.full(len(members), float(strength))
    for at in split_by(of_sample):
        if at.size > 1:
            sizes = np.array([members[i].size for i in at])
            km[at] = pooling_strength(np.array([own[i] for i in at]), sizes, centres[at[0]], strength)
    return list(km)
