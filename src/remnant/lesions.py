"""Per-cell copy-number lesion calls (del(5q) by default) from a count likelihood.

Model
-----
For a lesion (a chromosome interval, loss or gain) and a cell ``c`` of annotated HSPC state ``s``:

- ``D_c`` (counts) is the cell's depth on the genes *outside* every configured lesion (autosomes
  only), so a deletion does not deflate the depth it is compared with.
- ``p_{s,g}`` (expected counts of lesion gene ``g`` per count of outside depth) is the state-matched
  reference profile: the summed counts of ``g`` over reference cells of state ``s`` divided by
  their summed outside depth, shrunk towards the all-reference profile with a pseudo-depth of
  ``shrinkage`` reference cells (rare states lean on the pooled profile; states absent from the
  reference use it outright).
- ``mu_{c,g} = D_c * p_{s,g}``: the expected count in a normal cell of that state and depth.
- Counts are negative binomial with ``var = mu + phi_g * mu**2``; ``phi_g`` per gene is a
  method-of-moments estimate on the reference cells, shrunk towards the common value.
- The per-cell log-likelihood ratio of copy ratio ``rho`` (0.5 loss, 1.5 gain) against 1, summed over
  the lesion genes, is ``llr_c = sum_g (r_g + x_cg) * log((r_g + mu)/(r_g + rho*mu)) + x_cg * log(rho)``
  with ``r_g = 1/phi_g``.
- Calibration: under H0 the mean and variance of ``llr_c`` follow from the model; the standard
  deviation of the standardised LLR of cross-fitted reference cells measures how far the model
  under-states the noise (donor effects, unmodelled programmes). LLRs are divided by that
  temperature (>= 1), which tempers over-confident posteriors instead of assuming the model.
- Each sample's prior (fraction of carriers) is learned by EM on the two-component mixture of the
  cells' (tempered) likelihood ratios; posterior = ``sigmoid(llr + logit(prior))``.
- Reference cells are scored by cross-fitting: their expectation comes from a profile that leaves
  their fold out. Folds are whole reference donors when there are at least two (so a reference
  cell is judged against other donors, as a query patient is), otherwise random cells.

Cost is linear in cells: the matrix is only touched by sparse products and by chunks of cells x
lesion genes; the cohort is never densified.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputError

__all__ = ["DEFAULT_LESIONS", "Lesion", "call_lesions", "parse_lesions"]

#: Default lesion configuration: del(5q) over 5q13.1-5q33.3 (GRCh38 67.4-160.5 Mb).
DEFAULT_LESIONS: list[dict] = [{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}]

_DEFAULT_RATIO = {"loss": 0.5, "gain": 1.5}
_AUTOSOMES = {f"chr{i}" for i in range(1, 23)}


@dataclass(frozen=True)
class Lesion:
    """One configured lesion.

    Attributes
    ----------
    name
        Identifier used in obs keys (``{name}_posterior`` ...).
    type
        ``"loss"`` or ``"gain"``.
    chromosome
        ``chr``-prefixed chromosome name.
    start, end
        Interval in bp, 0-based half-open. A gene is inside when its midpoint is.
    copy_ratio
        Expression ratio of carriers under H1 (default 0.5 for a loss, 1.5 for a gain).
    region
        The region as written in the config.
    """

    name: str
    type: str
    chromosome: str
    start: int
    end: int
    copy_ratio: float
    region: str


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
_COORD = re.compile(r"^(?:chr)?([0-9]+|X|Y)\s*:\s*([0-9][0-9,_]*)\s*-\s*([0-9][0-9,_]*)$", re.I)
_ARM = re.compile(r"^(?:chr)?([0-9]+|X|Y)([pq])$", re.I)
_BAND = re.compile(r"^(?:chr)?([0-9]+|X|Y)([pq][0-9]+(?:\.[0-9]+)?)$", re.I)


def _chrom(token: str) -> str:
    token = token.upper()
    return f"chr{token}"


def parse_lesions(config_list: list[dict] | None, cytobands: pd.DataFrame, arms: pd.DataFrame | None = None) -> list[Lesion]:
    """Lesions from config.

    Parameters
    ----------
    config_list
        List of ``{name, type, region}`` mappings (``copy_ratio`` optional). ``region`` is
        coordinates (``chr5:67400000-160500000``, 0-based half-open bp, commas allowed), a
        cytoband or cytoband range (``5q31``, ``5q13.1-5q33.3``; a band name matches its
        sub-bands), or a whole arm (``5q``). ``None`` gives :data:`DEFAULT_LESIONS`.
    cytobands
        :func:`remnant.annotation.load_cytobands` table (defines chromosome lengths and bands).
    arms
        :func:`remnant.annotation.chromosome_arms` table; derived from ``cytobands`` if omitted.

    Returns
    -------
    list of Lesion

    Raises
    ------
    InputError
        Missing keys, unknown type, bad or duplicate name, unknown chromosome or band,
        ``start >= end``, interval beyond the chromosome end, a band range across chromosomes.
    """
    from .annotation import chromosome_arms

    if config_list is None:
        config_list = DEFAULT_LESIONS
    if arms is None:
        arms = chromosome_arms(cytobands)
    if not isinstance(config_list, (list, tuple)) or not config_list:
        raise InputError("lesions must be a non-empty list of {name, type, region}.", where="lesions")
    lengths = cytobands.groupby("chromosome")["end"].max().to_dict()
    out: list[Lesion] = []
    for i, item in enumerate(config_list):
        where = f"lesions[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"each lesion must be a mapping with name, type, region; got {item!r}.", where=where)
        missing = [k for k in ("name", "type", "region") if k not in item]
        if missing:
            raise InputError(f"lesion lacks key(s) {missing}; each needs name, type (loss|gain) and region.", where=where)
        name = str(item["name"])
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise InputError(f"lesion name {name!r} must be letters, digits and _ (it names obs columns).", where=where)
        if any(l.name == name for l in out):
            raise InputError(f"duplicate lesion name {name!r}.", where=where)
        kind = str(item["type"]).lower()
        if kind not in _DEFAULT_RATIO:
            raise InputError(f"lesion type {item['type']!r} must be 'loss' or 'gain'.", where=where)
        ratio = float(item.get("copy_ratio", _DEFAULT_RATIO[kind]))
        if not (ratio > 0) or (kind == "loss" and ratio >= 1) or (kind == "gain" and ratio <= 1):
            raise InputError(f"copy_ratio {ratio} does not fit a {kind} (loss: 0<r<1, gain: r>1).", where=where)
        region = str(item["region"]).strip().replace(" ", "")
        chrom, start, end = _parse_region(region, cytobands, arms, where)
        if chrom not in lengths:
            raise InputError(f"chromosome {chrom} of region {region!r} is not in the cytoband table.", where=where)
        if start >= end:
            raise InputError(f"region {region!r}: start {start} must be below end {end}.", where=where)
        if end > lengths[chrom]:
            raise InputError(f"region {region!r} ends at {end}, beyond the end of {chrom} ({lengths[chrom]}).", where=where)
        out.append(Lesion(name, kind, chrom, int(start), int(end), ratio, region))
    return out


def _parse_region(region: str, cytobands: pd.DataFrame, arms: pd.DataFrame, where: str) -> tuple[str, int, int]:
    m = _COORD.match(region)
    if m:
        return _chrom(m.group(1)), int(re.sub("[,_]", "", m.group(2))), int(re.sub("[,_]", "", m.group(3)))
    m = _ARM.match(region)
    if m:
        chrom, arm = _chrom(m.group(1)), m.group(2).lower()
        hit = arms[(arms["chromosome"] == chrom) & (arms["arm"] == arm)]
        if hit.empty:
            raise InputError(f"arm {region!r} is not in the cytoband table.", where=where)
        return chrom, int(hit["start"].iloc[0]), int(hit["end"].iloc[0])
    parts = region.split("-")
    if len(parts) in (1, 2):
        first = _BAND.match(parts[0])
        if first:
            chrom = _chrom(first.group(1))
            lo = _band_span(chrom, first.group(2), cytobands, region, where)
            hi = lo
            if len(parts) == 2:
                second = _BAND.match(parts[1]) or re.fullmatch(r"([pq][0-9]+(?:\.[0-9]+)?)", parts[1], re.I)
                if second is None:
                    raise InputError(f"cannot read band {parts[1]!r} in region {region!r}.", where=where)
                if second.re is _BAND:
                    if _chrom(second.group(1)) != chrom:
                        raise InputError(f"band range {region!r} spans two chromosomes.", where=where)
                    band2 = second.group(2)
                else:
                    band2 = second.group(1)
                hi = _band_span(chrom, band2, cytobands, region, where)
            return chrom, min(lo[0], hi[0]), max(lo[1], hi[1])
    raise InputError(
        f"cannot read region {region!r}; use coordinates (chr5:67400000-160500000), a band range "
        "(5q13.1-5q33.3) or an arm (5q).",
        where=where,
    )


def _band_span(chrom: str, band: str, cytobands: pd.DataFrame, region: str, where: str) -> tuple[int, int]:
    band = band.lower()
    on = cytobands[cytobands["chromosome"] == chrom]
    names = on["band"].str.lower()
    hit = on[(names == band) | names.str.startswith(band + ".")]
    if hit.empty:
        raise InputError(f"unknown cytoband {chrom.removeprefix('chr')}{band} in region {region!r}.", where=where)
    return int(hit["start"].min()), int(hit["end"].max())


# ------------------------------------------------------------------------------------------------
# calling
# ------------------------------------------------------------------------------------------------
def _genes_in(var: pd.DataFrame, lesion: Lesion) -> np.ndarray:
    mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
    return (var["chromosome"].astype(str).to_numpy() == lesion.chromosome) & (mid >= lesion.start) & (mid < lesion.end)


def _as_mask(adata: anndata.AnnData, mask, name: str) -> np.ndarray:
    if isinstance(mask, str):
        if mask not in adata.obs:
            raise InputError(f"obs has no column {mask!r} for {name}.", where=f"call_lesions({name}=...)")
        mask = adata.obs[mask].to_numpy()
    mask = np.asarray(mask)
    if mask.shape != (adata.n_obs,):
        raise InputError(f"{name} must have one value per cell ({adata.n_obs}); got shape {mask.shape}.", where=f"call_lesions({name}=...)")
    return mask.astype(bool)


def _group_sums(X: sp.csr_matrix, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum rows of X by integer group (-1 = ignored) -> dense (n_groups, n_cols)."""
    keep = groups >= 0
    G = sp.csr_matrix((np.ones(keep.sum()), (groups[keep], np.flatnonzero(keep))), shape=(n_groups, X.shape[0]))
    return np.asarray((G @ X).toarray())


def _em_prior(llr: np.ndarray, max_iter: int = 500, tol: float = 1e-8) -> float:
    """Fraction of carriers by EM on a two-component mixture given per-cell LLRs (add-half prior)."""
    n = llr.size
    if n == 0:
        return float("nan")
    pi = 0.5
    for _ in range(max_iter):
        post = _sigmoid(llr + np.log(pi / (1 - pi)))
        new = (post.sum() + 0.5) / (n + 1.0)
        if abs(new - pi) < tol:
            pi = new
            break
        pi = new
    return float(pi)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def call_lesions(
    adata: anndata.AnnData,
    lesions: list[Lesion],
    *,
    reference_mask,
    state_key: str = "hspc_state",
    sample_key: str = "sample",
    donor_key: str | None = "patient",
    layer: str | None = "counts",
    posterior_cutoff: float = 0.9,
    n_folds: int = 5,
    seed: int = 0,
    min_mean: float = 0.001,
    shrinkage: float = 20.0,
    calibrate: bool = True,
    chunk_size: int = 2000,
) -> None:
    """Per-cell posterior probability of each lesion; writes obs columns and ``uns["lesions"]``.

    Parameters
    ----------
    adata
        Cells x genes. Raw counts in ``adata.layers[layer]`` (``layer=None``: ``adata.X``), sparse
        (CSR or CSC) or dense; ``var`` needs ``chromosome``, ``start``, ``end`` (bp, 0-based).
    lesions
        From :func:`parse_lesions`.
    reference_mask
        Boolean array (n_obs,) or the name of a boolean obs column: the normal reference cells.
    state_key
        obs column with the annotated HSPC state (expectations are state-matched).
    sample_key
        obs column; the prior (fraction of carriers) is learned per sample.
    donor_key
        obs column naming donors; reference folds are whole donors when the reference has >= 2
        donors (``None``: random cell folds).
    posterior_cutoff
        A cell is called when its posterior >= this (0-1).
    n_folds
        Cross-fitting folds for reference cells (capped at the number of reference donors).
    seed
        Seed of the random fold assignment (only used for cell folds).
    min_mean
        Lesion genes are used when their reference mean is >= this many counts per cell at the
        median reference depth.
    shrinkage
        Pseudo-count of reference cells (at median depth) pulling a state profile to the pooled one.
    calibrate
        Divide LLRs by the temperature measured on cross-fitted reference cells (>= 1).
    chunk_size
        Cells per dense block of cells x lesion genes.

    Writes
    ------
    ``obs[f"{name}_posterior"]`` (float, 0-1), ``obs[f"{name}_llr"]`` (float, natural log, after
    tempering), ``obs[f"{name}_call"]`` (bool), ``obs[f"{name}_n_genes"]`` (int, lesion genes with
    nonzero expectation). ``uns["lesions"][name]``: ``per_sample`` DataFrame (n_cells, n_reference,
    prior, n_called, fpr, fnr), ``genes`` (gene ids used), ``temperature``, ``reference_fpr``
    (called fraction of cross-fitted reference cells with their own sample prior), the lesion and the
    parameters. ``fpr`` per sample is the share of cross-fitted reference cells that would be called
    with that sample's prior; ``fnr`` is the posterior-expected share of carriers below the cut-off.
    """
    if layer is not None and layer not in adata.layers:
        raise InputError(f"AnnData has no layer {layer!r} with raw counts.", where="call_lesions(layer=...)")
    X = adata.layers[layer] if layer is not None else adata.X
    if not sp.issparse(X):
        X = sp.csr_matrix(X)
    for col in ("chromosome", "start", "end"):
        if col not in adata.var:
            raise InputError(f"var lacks column {col!r}; map genes to the annotation first.", where="call_lesions")
    for key in (state_key, sample_key):
        if key not in adata.obs:
            raise InputError(f"obs lacks column {key!r}.", where="call_lesions")
    if not lesions:
        raise InputError("no lesions to call.", where="call_lesions(lesions=...)")
    if not 0 < posterior_cutoff < 1:
        raise InputError("posterior_cutoff must be between 0 and 1.", where="call_lesions")
    ref = _as_mask(adata, reference_mask, "reference_mask")
    if ref.sum() < 10:
        raise InputError(f"only {int(ref.sum())} reference cells; need at least 10.", where="call_lesions(reference_mask=...)")
    n = adata.n_obs
    var = adata.var
    chrom = var["chromosome"].astype(str).to_numpy()
    inside_any = np.zeros(adata.n_vars, bool)
    inside = {}
    for lesion in lesions:
        inside[lesion.name] = _genes_in(var, lesion)
        inside_any |= inside[lesion.name]
    outside = np.isin(chrom, list(_AUTOSOMES)) & ~inside_any
    depth = np.asarray(X @ outside.astype(np.float64)).ravel()  # (n,) counts on outside genes

    # states: integer codes; cells with missing/unseen state use the pooled profile (code -1)
    state = adata.obs[state_key].astype(str).where(adata.obs[state_key].notna(), "")
    ref_states = sorted(set(state[ref]) - {"", "nan"})
    code = {s: i for i, s in enumerate(ref_states)}
    s_idx = np.array([code.get(s, -1) for s in state], dtype=np.int64)
    n_states = len(ref_states)

    # reference folds
    ref_idx = np.flatnonzero(ref)
    fold = np.full(n, -1, dtype=np.int64)
    donors = adata.obs[donor_key].astype(str).to_numpy() if donor_key and donor_key in adata.obs else None
    ref_donors = sorted(set(donors[ref])) if donors is not None else []
    if len(ref_donors) >= 2:
        k = min(n_folds, len(ref_donors))
        dfold = {d: i % k for i, d in enumerate(ref_donors)}
        fold[ref_idx] = [dfold[d] for d in donors[ref_idx]]
        fold_mode = "donor"
    else:
        k = max(2, n_folds)
        rng = np.random.default_rng(seed)
        fold[ref_idx] = rng.permutation(np.arange(ref_idx.size) % k)
        fold_mode = "cell"

    med_depth = float(np.median(depth[ref]))
    uns = adata.uns.setdefault("lesions", {})
    samples = adata.obs[sample_key].astype(str).to_numpy()
    for lesion in lesions:
        cols = np.flatnonzero(inside[lesion.name])
        XL = sp.csr_matrix(X[:, cols], dtype=np.float64)
        # pooled reference profile and gene filter
        tot_ref = np.asarray(XL[ref_idx].sum(axis=0)).ravel()
        p_all = tot_ref / max(depth[ref].sum(), 1.0)
        use = (p_all * med_depth >= min_mean) & (p_all > 0)
        cols, XL, p_all = cols[use], XL[:, use], p_all[use]
        nL = cols.size
        if nL == 0:
            raise InputError(f"lesion {lesion.name}: no gene inside {lesion.region} reaches min_mean={min_mean} in the reference.",
                             where="call_lesions")
        # per (state, fold) sums over reference cells: rows = state*k + fold
        grp = np.full(n, -1, dtype=np.int64)
        has_state = ref & (s_idx >= 0)
        grp[has_state] = s_idx[has_state] * k + fold[has_state]
        S = _group_sums(XL, grp, n_states * k).reshape(n_states, k, nL)
        Dsf = np.bincount(grp[grp >= 0], weights=depth[grp >= 0], minlength=n_states * k).reshape(n_states, k)
        F = _group_sums(XL, np.where(ref, fold, -1), k)  # (k, nL) all states per fold
        Df = np.bincount(fold[ref], weights=depth[ref], minlength=k)
        pseudo = shrinkage * med_depth

        def profile(state_sum, state_depth, pool):
            return (state_sum + pseudo * pool) / (state_depth + pseudo)

        # profiles: full (state), and leave-fold-out (state, fold); pooled rows for unseen states
        P_full = profile(S.sum(1), Dsf.sum(1)[:, None], p_all[None, :])  # (n_states, nL)
        P_pool_cf = (tot_ref[use][None, :] - F) / np.maximum(depth[ref].sum() - Df, 1.0)[:, None]  # (k, nL)
        P_cf = profile(S.sum(1)[:, None, :] - S, (Dsf.sum(1)[:, None] - Dsf)[:, :, None], P_pool_cf[None, :, :])  # (n_states, k, nL)
        # table of profiles: [P_full (n_states); p_all (1); P_cf (n_states*k); P_pool_cf (k)]
        table = np.vstack([P_full, p_all[None, :], P_cf.reshape(-1, nL), P_pool_cf])
        row = np.where(s_idx >= 0, s_idx, n_states)
        is_cf = fold >= 0
        row[is_cf] = np.where(s_idx[is_cf] >= 0, n_states + 1 + s_idx[is_cf] * k + fold[is_cf],
                              n_states + 1 + n_states * k + fold[is_cf])

        # overdispersion per gene: moments on reference cells with the in-sample state profile
        ref_row = np.where(s_idx[ref_idx] >= 0, s_idx[ref_idx], n_states)
        XR = XL[ref_idx]
        Dr = depth[ref_idx]
        sx2 = np.asarray(XR.multiply(XR).sum(axis=0)).ravel()
        Gr = sp.csr_matrix((Dr, (ref_row, np.arange(ref_idx.size))), shape=(n_states + 1, ref_idx.size))
        Pr = np.vstack([P_full, p_all[None, :]])
        sxmu = (np.asarray((Gr @ XR).todense()) * Pr).sum(0)
        d1 = np.bincount(ref_row, weights=Dr, minlength=n_states + 1)
        d2 = np.bincount(ref_row, weights=Dr**2, minlength=n_states + 1)
        smu = (d1[:, None] * Pr).sum(0)
        smu2 = (d2[:, None] * Pr**2).sum(0)
        num = sx2 - 2 * sxmu + smu2 - smu
        common = max(num.sum() / max(smu2.sum(), 1e-12), 1e-3)
        tau = float(np.median(smu2))
        phi = np.clip((num + tau * common) / (smu2 + tau), 1e-3, 10.0)
        r = 1.0 / phi
        rho = lesion.copy_ratio
        logrho = np.log(rho)

        llr = np.zeros(n)
        e0 = np.zeros(n)
        v0 = np.zeros(n)
        n_genes = np.zeros(n, dtype=np.int64)
        for a in range(0, n, chunk_size):
            b = min(a + chunk_size, n)
            x = XL[a:b].toarray()  # (chunk, nL) counts of lesion genes only
            P = table[row[a:b]]
            mu = depth[a:b, None] * P
            l1 = np.log1p((1.0 - rho) * mu / (r + rho * mu))  # log((r+mu)/(r+rho mu))
            coef = l1 + logrho  # per-count slope
            llr[a:b] = (r * l1 + x * coef).sum(1)
            e0[a:b] = (r * l1 + mu * coef).sum(1)
            v0[a:b] = (coef**2 * (mu + phi * mu**2)).sum(1)
            n_genes[a:b] = (P > 0).sum(1)
        z = (llr - e0) / np.sqrt(np.maximum(v0, 1e-12))
        temperature = 1.0
        if calibrate:
            zr = z[ref_idx]
            temperature = float(max(1.0, np.std(zr)))
        llr_t = llr / temperature

        # per-sample prior by EM; posterior; error rates
        post = np.zeros(n)
        rows = []
        ref_llr = llr_t[ref_idx]
        logit_cut = np.log(posterior_cutoff / (1 - posterior_cutoff))
        for smp in pd.unique(samples):
            m = samples == smp
            pi = _em_prior(llr_t[m])
            post[m] = _sigmoid(llr_t[m] + np.log(pi / (1 - pi)))
            thr = logit_cut - np.log(pi / (1 - pi))
            ps = post[m]
            below = ps < posterior_cutoff
            rows.append({
                "sample": smp,
                "n_cells": int(m.sum()),
                "n_reference": int((m & ref).sum()),
                "prior": pi,
                "n_called": int((~below).sum()),
                "fpr": float(np.mean(ref_llr >= thr)),
                "fnr": float(ps[below].sum() / ps.sum()) if ps.sum() > 0 else float("nan"),
            })
        call = post >= posterior_cutoff
        adata.obs[f"{lesion.name}_posterior"] = post
        adata.obs[f"{lesion.name}_llr"] = llr_t
        adata.obs[f"{lesion.name}_call"] = call
        adata.obs[f"{lesion.name}_n_genes"] = n_genes
        uns[lesion.name] = {
            "lesion": {k_: v for k_, v in asdict(lesion).items()},
            "per_sample": pd.DataFrame(rows).set_index("sample"),
            "genes": np.asarray(adata.var_names[cols], dtype=str),
            "temperature": temperature,
            "reference_fpr": float(call[ref].mean()),
            "params": {
                "state_key": state_key, "sample_key": sample_key, "donor_key": donor_key or "",
                "posterior_cutoff": posterior_cutoff, "n_folds": int(k), "fold_mode": fold_mode, "seed": seed,
                "min_mean": min_mean, "shrinkage": shrinkage, "calibrate": calibrate,
                "n_reference": int(ref.sum()), "median_reference_depth": med_depth,
            },
        }
