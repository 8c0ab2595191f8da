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

from remnant.errors import InputError

__all__ = ["DEFAULT_LESIONS", "Lesion", "call_lesions", "parse_lesions", "read_lesion_counts"]

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


def parse_lesions(
    config_list: list[dict] | None, cytobands: pd.DataFrame, arms: pd.DataFrame | None = None
) -> list[Lesion]:
    """Lesions from config.

    Parameters
    ----------
    config_list
        List of ``{name, type, region}`` mappings (``copy_ratio`` optional). ``region`` is
        coordinates (``chr5:67400000-160500000``, 0-based half-open bp, commas allowed), a
        cytoband or cytoband range (``5q31``, ``5q13.1-5q33.3``; a band name matches its
        sub-bands), or a whole arm (``5q``). ``None`` gives :data:`DEFAULT_LESIONS`.
    cytobands
        :func:`remnant.io.annotation.load_cytobands` table (defines chromosome lengths and bands).
    arms
        :func:`remnant.io.annotation.chromosome_arms` table; derived from ``cytobands`` if omitted.

    Returns
    -------
    list of Lesion

    Raises
    ------
    InputError
        Missing keys, unknown type, bad or duplicate name, unknown chromosome or band,
        ``start >= end``, interval beyond the chromosome end, a band range across chromosomes.
    """
    from remnant.io.annotation import chromosome_arms

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
            raise InputError(
                f"lesion lacks key(s) {missing}; each needs name, type (loss|gain) and region.", where=where
            )
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
            raise InputError(
                f"region {region!r} ends at {end}, beyond the end of {chrom} ({lengths[chrom]}).", where=where
            )
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
        name = chrom.removeprefix("chr")
        known = (
            f"{chrom}'s bands run {name}{on['band'].iloc[0]} to {name}{on['band'].iloc[-1]}"
            if len(on)
            else f"the cytoband table has no bands on {chrom}"
        )
        raise InputError(f"unknown cytoband {name}{band} in region {region!r}; {known}.", where=where)
    return int(hit["start"].min()), int(hit["end"].max())


# ------------------------------------------------------------------------------------------------
# calling
# ------------------------------------------------------------------------------------------------
def genes_in(var: pd.DataFrame, lesion) -> np.ndarray:
    """Boolean (n_vars,) mask of genes whose midpoint lies inside ``lesion``.

    ``lesion``: a :class:`Lesion` or anything with ``chromosome``, ``start``, ``end`` (bp, 0-based
    half-open); ``var`` needs ``chromosome``, ``start``, ``end`` (see :func:`require_positions`).
    """
    mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
    return (var["chromosome"].astype(str).to_numpy() == lesion.chromosome) & (mid >= lesion.start) & (mid < lesion.end)


def lesion_genes(var: pd.DataFrame, lesions) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The genes of each lesion and the genes a cell's depth is counted on.

    Returns
    -------
    inside
        ``{lesion name: boolean (n_vars,) mask}`` (:func:`genes_in`).
    outside
        Boolean (n_vars,): autosomal genes outside every lesion (a deletion must not deflate the
        depth it is compared with; sex chromosomes differ between donors).
    """
    inside = {lesion.name: genes_in(var, lesion) for lesion in lesions}
    inside_any = np.logical_or.reduce(list(inside.values())) if inside else np.zeros(len(var), bool)
    outside = np.isin(var["chromosome"].astype(str).to_numpy(), list(_AUTOSOMES)) & ~inside_any
    return inside, outside


def require_positions(var: pd.DataFrame, where: str) -> None:
    """Raise InputError unless ``var`` has the gene positions (chromosome, start, end)."""
    for col in ("chromosome", "start", "end"):
        if col not in var.columns:
            raise InputError(f"var lacks column {col!r}; map genes to the annotation first.", where=where)


def counts_matrix(adata: anndata.AnnData, layer: str | None, where: str):
    """The raw count matrix as a sparse matrix: ``layers[layer]`` when present, else ``X`` when it
    holds counts (:func:`remnant.io.store.counts_key`: e.g. ``clustered.h5ad`` read whole), ``X`` for
    ``layer=None``.

    Raises
    ------
    InputError
        No such layer and ``X`` is not counts (e.g. log-normalised): names the layers to pass.
    """
    from remnant.io.store import counts_key

    key = counts_key(adata, layer, where=where)
    X = adata.layers[key.removeprefix("layers/")] if key != "X" else adata.X
    if X is None:
        raise InputError("AnnData has no count matrix in X.", where=f"{where}(layer=None)")
    return X if sp.issparse(X) else sp.csr_matrix(X)


def depth_on(X, genes: np.ndarray) -> np.ndarray:
    """(n_obs,) float64 counts of each cell on the genes of the boolean (n_vars,) mask ``genes``.

    The weights take the matrix's dtype: a float64 vector would make scipy upcast a float32 or
    integer count matrix, i.e. copy the whole cohort.
    """
    return np.asarray(X @ genes.astype(X.dtype)).ravel().astype(np.float64)


def cell_depth(X, outside: np.ndarray, depth, n_obs: int, where: str) -> np.ndarray:
    """Each cell's depth, float64 (n_obs,): the caller's ``depth`` (checked: finite, >= 0), or
    when ``None`` the counts of ``X`` on the genes of the boolean mask ``outside``."""
    if depth is None:
        if not outside.any():
            raise InputError(
                "var has no autosomal gene outside the lesions to measure each cell's depth on; pass "
                "the counts with every gene, or depth= (remnant.tl.lesions.read_lesion_counts).",
                where=f"{where}(depth=None)",
            )
        return depth_on(X, outside)
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (n_obs,):
        raise InputError(
            f"depth must have one value per cell ({n_obs}); got shape {depth.shape}.", where=f"{where}(depth=...)"
        )
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise InputError("depth must be finite counts >= 0 for every cell.", where=f"{where}(depth=...)")
    return depth


def read_lesion_counts(path, lesions, *, chunk_cells: int | None = None) -> tuple[anndata.AnnData, np.ndarray]:
    """The counts of the lesions' genes for every cell of a cohort h5ad, and each cell's depth,
    read in one pass of blocks of cells (the matrix is never held whole; issue 8).

    The counts are ``layers/counts`` when the file has that layer (``cohort.h5ad``, and
    ``clustered.h5ad`` files written before issue 8), else ``X`` when it holds counts
    (``clustered.h5ad``; :func:`remnant.io.store.counts_key`).

    Parameters
    ----------
    path
        h5ad file, cells x genes; ``var`` with ``chromosome``, ``start``, ``end`` (bp, 0-based).
    lesions
        From :func:`parse_lesions`.
    chunk_cells
        Cells per block read (default :data:`remnant.io.store.CHUNK_CELLS`).

    Returns
    -------
    adata
        Cells x the genes inside any lesion (file order): raw counts in ``X`` (CSR, the stored
        dtype), the file's ``obs`` and those genes' ``var``. Memory: cells x lesion genes.
    depth
        float64 (n_obs,): each cell's counts on autosomal genes outside every lesion (as
        :func:`call_lesions` computes from the whole matrix); pass it as ``depth=``.
    """
    from remnant.io import store

    obs = store.read_obs(path)  # raises InputError naming the file when it is not HDF5
    var = store.read_var(path)
    require_positions(var, str(path))
    key = store.counts_key(path, where="read_lesion_counts")
    n_obs, n_vars = store.shape(path, key)
    if (n_obs, n_vars) != (len(obs), len(var)):
        raise InputError(
            f"{key} is {n_obs} x {n_vars} but obs has {len(obs)} cells and var {len(var)} genes; "
            "rerun the step that writes it.",
            path=str(path),
        )
    inside, outside = lesion_genes(var, lesions)
    keep = np.logical_or.reduce(list(inside.values())) if inside else np.zeros(n_vars, bool)
    kw = {} if chunk_cells is None else {"chunk_cells": chunk_cells}
    counts, sums = store.read_columns(path, keep, sums={"depth": outside}, key=key, **kw)
    return anndata.AnnData(X=counts, obs=obs, var=var.loc[keep]), sums["depth"]


def write_calls(adata: anndata.AnnData, path) -> None:
    """Write the result of :func:`call_lesions` without any matrix: an h5ad of ``n_obs`` cells x 0
    genes holding ``adata.obs`` (every column, the calls included) and ``uns["lesions"]``.

    Rule ``annotate_cohort`` puts both into a copy of the cohort file
    (:func:`remnant.io.store.annotate_with_calls`); :func:`remnant.tl.fractions.read_calls` reads either file.
    """
    if "lesions" not in adata.uns:
        raise InputError("no lesion calls to write; run call_lesions first.", where="write_calls")
    anndata.AnnData(obs=adata.obs, uns={"lesions": adata.uns["lesions"]}).write_h5ad(path)


def cell_mask(adata: anndata.AnnData, mask, name: str, where: str) -> np.ndarray:
    """A boolean (n_obs,) array from an array or the name of an obs column."""
    if isinstance(mask, str):
        if mask not in adata.obs:
            raise InputError(f"obs has no column {mask!r} for {name}.", where=f"{where}({name}=...)")
        mask = adata.obs[mask].to_numpy()
    mask = np.asarray(mask)
    if mask.shape != (adata.n_obs,):
        raise InputError(
            f"{name} must have one value per cell ({adata.n_obs}); got shape {mask.shape}.",
            where=f"{where}({name}=...)",
        )
    if mask.dtype != bool:
        if pd.isna(mask).any():
            raise InputError(
                f"{name} has missing values; give True/False for every cell.", where=f"{where}({name}=...)"
            )
        mask = mask.astype(bool)
    return mask


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


def _temperature(z_reference: np.ndarray, calibrate: bool) -> float:
    """Spread (sd, >= 1) of the standardised LLRs of cross-fitted reference cells."""
    return float(max(1.0, np.std(z_reference))) if calibrate and z_reference.size > 1 else 1.0


def _sample_posteriors(llr: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per-sample EM prior and the posterior of every cell."""
    post = np.zeros(llr.size)
    priors = {}
    for smp in pd.unique(samples):
        m = samples == smp
        pi = _em_prior(llr[m])
        post[m] = _sigmoid(llr[m] + np.log(pi / (1 - pi)))
        priors[smp] = pi
    return post, priors


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def _assign_folds(
    ref_rows: np.ndarray, donors: np.ndarray | None, n_folds: int, seed: int
) -> tuple[np.ndarray, int, str]:
    """Cross-fitting folds of reference rows: whole donors when >= 2 donors, else random cells."""
    if donors is not None and len(set(donors[ref_rows])) >= 2:
        ref_donors = sorted(set(donors[ref_rows]))
        k = min(n_folds, len(ref_donors))
        dfold = {d: i % k for i, d in enumerate(ref_donors)}
        return np.array([dfold[d] for d in donors[ref_rows]], dtype=np.int64), k, "donor"
    k = max(2, n_folds)
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(ref_rows.size) % k).astype(np.int64), k, "cell"


def _count_scale(num: np.ndarray, smu: np.ndarray, smu2: np.ndarray) -> float:
    """Poisson-level scale ``c`` of ``var = c*mu + phi*mu**2`` fitted over genes (>= 1).

    Read counts of plate protocols (no UMIs) vary more than a Poisson even for lowly expressed
    genes (amplification); UMI counts give ``c`` close to 1. Per gene, ``num/smu`` (excess second
    moment per unit mean) is linear in ``smu2/smu`` (the typical mean) with intercept ``c`` and
    slope ``phi``; weighted least squares over genes, weights falling with the mean.
    """
    ok = smu > 0
    if ok.sum() < 3:
        return 1.0
    y = num[ok] / smu[ok]
    x = smu2[ok] / smu[ok]
    w = smu[ok] / (1.0 + x) ** 2
    A = np.column_stack([np.ones_like(x), x]) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    return float(max(1.0, coef[0])) if np.isfinite(coef[0]) else 1.0


def _score_rows(
    XL: sp.csr_matrix,
    depth: np.ndarray,
    s_idx: np.ndarray,
    n_states: int,
    fold: np.ndarray,
    k: int,
    *,
    rho: float,
    min_mean: float,
    shrinkage: float,
    chunk_size: int,
) -> dict:
    """Log-likelihood ratios of a set of rows (one batch's cells and its reference cells).

    Parameters
    ----------
    XL
        (n_rows, n_lesion_genes) counts of the lesion genes.
    depth
        (n_rows,) counts on genes outside every lesion.
    s_idx
        (n_rows,) state code in ``0..n_states-1`` of the reference states, -1 = no matching state
        (scored against the pooled reference profile).
    fold
        (n_rows,) cross-fitting fold (0..k-1) of reference rows, -1 for the others.

    Returns
    -------
    dict with ``llr`` (n_rows,), ``z`` (n_rows,) LLR standardised by its model mean and sd under H0,
    ``n_genes`` (n_rows,), ``use`` (n_lesion_genes,) genes kept, ``count_scale``.
    """
    n, nL_all = XL.shape
    ref = fold >= 0
    ref_idx = np.flatnonzero(ref)
    med_depth = float(np.median(depth[ref]))
    tot_ref = np.asarray(XL[ref_idx].sum(axis=0)).ravel()
    p_all = tot_ref / max(depth[ref].sum(), 1.0)
    use = (p_all * med_depth >= min_mean) & (p_all > 0)
    XL, p_all, tot_ref = XL[:, use], p_all[use], tot_ref[use]
    nL = int(use.sum())
    if nL == 0:
        return {
            "llr": np.zeros(n),
            "z": np.zeros(n),
            "n_genes": np.zeros(n, dtype=np.int64),
            "use": use,
            "count_scale": 1.0,
        }
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
    P_pool_cf = (tot_ref[None, :] - F) / np.maximum(depth[ref].sum() - Df, 1.0)[:, None]  # (k, nL)
    P_cf = profile(
        S.sum(1)[:, None, :] - S, (Dsf.sum(1)[:, None] - Dsf)[:, :, None], P_pool_cf[None, :, :]
    )  # (n_states, k, nL)
    # table of profiles: [P_full (n_states); p_all (1); P_cf (n_states*k); P_pool_cf (k)]
    table = np.vstack([P_full, p_all[None, :], P_cf.reshape(-1, nL), P_pool_cf])
    row = np.where(s_idx >= 0, s_idx, n_states)
    row[ref] = np.where(
        s_idx[ref] >= 0, n_states + 1 + s_idx[ref] * k + fold[ref], n_states + 1 + n_states * k + fold[ref]
    )

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
    num = sx2 - 2 * sxmu + smu2  # sum of squared residuals per gene
    scale = _count_scale(num, smu, smu2)
    excess = num - scale * smu
    common = max(excess.sum() / max(smu2.sum(), 1e-12), 1e-3)
    tau = float(np.median(smu2))
    phi = np.clip((excess + tau * common) / (smu2 + tau), 1e-3, 10.0)
    # counts and means divided by the scale follow var = mu + phi*mu**2 (quasi-likelihood)
    r = 1.0 / phi
    logrho = np.log(rho)

    # Per cell, with mu = depth * P[row] / scale, l1 = log((r+mu)/(r+rho mu)), coef = l1 + log(rho):
    #   llr = sum_g r*l1 + x*coef,  e0 = sum_g r*l1 + mu*coef,  v0 = sum_g coef**2 * (mu + phi*mu**2)
    # Everything but the x*coef term depends on the cell only through its profile row and depth,
    # so it is computed once per distinct (row, depth) pair (counts are integers: at 91,335 cells
    # there were 29,477 pairs, and their number grows far slower than the cohort), in dense blocks
    # of pairs x lesion genes; x*coef is added at each stored count only.
    n_genes = (table > 0).sum(1)[row]  # genes a cell is scored on depend only on its profile row
    order = np.lexsort((depth, row))
    row_sorted, depth_sorted = row[order], depth[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (row_sorted[1:] != row_sorted[:-1]) | (depth_sorted[1:] != depth_sorted[:-1])
    pair = np.empty(n, dtype=np.int64)
    pair[order] = np.cumsum(new) - 1
    first = order[new]
    pair_row, pair_depth = row[first], depth[first]
    m = first.size
    r_l1, e0_pair, v0_pair = np.zeros(m), np.zeros(m), np.zeros(m)
    for a in range(0, m, chunk_size):
        b = min(a + chunk_size, m)
        mu = pair_depth[a:b, None] * table[pair_row[a:b]]
        if scale != 1.0:
            mu /= scale
        l1 = rho * mu
        l1 += r
        np.divide((1.0 - rho) * mu, l1, out=l1)
        np.log1p(l1, out=l1)  # log((r+mu)/(r+rho mu))
        coef = l1 + logrho  # per-count slope
        rl1 = np.multiply(r, l1, out=l1)
        r_l1[a:b] = rl1.sum(1)
        tmp = np.multiply(mu, coef)
        tmp += rl1
        e0_pair[a:b] = tmp.sum(1)
        np.multiply(mu, mu, out=tmp)
        tmp *= phi
        tmp += mu
        np.multiply(coef, coef, out=coef)
        tmp *= coef
        v0_pair[a:b] = tmp.sum(1)
    llr, e0, v0 = r_l1[pair], e0_pair[pair], v0_pair[pair]
    # x*coef at the stored counts, in blocks of cells (nonzeros x float64 a few times over)
    XL = XL.tocsr()
    XL.sum_duplicates()
    step = max(chunk_size * 256, 1)
    for a in range(0, n, step):
        b = min(a + step, n)
        lo, hi = XL.indptr[a], XL.indptr[b]
        ri = np.repeat(np.arange(a, b), np.diff(XL.indptr[a : b + 1]))
        ci = XL.indices[lo:hi]
        mu = depth[ri] * table[row[ri], ci]
        xv = XL.data[lo:hi].astype(np.float64)
        if scale != 1.0:
            mu /= scale
            xv /= scale
        coef = np.log1p((1.0 - rho) * mu / (r[ci] + rho * mu)) + logrho
        llr[a:b] += np.bincount(ri - a, weights=xv * coef, minlength=b - a)
    z = (llr - e0) / np.sqrt(np.maximum(v0, 1e-12))
    return {
        "llr": llr,
        "z": z,
        "n_genes": n_genes,
        "use": use,
        "count_scale": scale,
        "profiles": np.vstack([P_full, p_all[None, :]]),
        "profile_row": np.where(s_idx >= 0, s_idx, n_states),
    }


def _best_interval(observed: np.ndarray, expected: np.ndarray, rho: float, min_genes: int) -> tuple[int, int, float]:
    """Gene-index interval [i, j) maximising the Poisson log-likelihood ratio of ratio ``rho`` vs 1.

    ``observed``/``expected`` are pseudobulk counts per gene in genomic order; the gain of an
    interval is ``sum(O*log(rho) + (1-rho)*E)`` over its genes, so prefix sums give every interval
    of at least ``min_genes`` genes in O(n^2) memory-light vectorised rows.
    """
    gain = observed * np.log(rho) + (1.0 - rho) * expected
    c = np.concatenate([[0.0], np.cumsum(gain)])
    n = gain.size
    best = (-np.inf, 0, n)
    for i in range(0, max(n - min_genes + 1, 0)):
        tail = c[i + min_genes :] - c[i]
        j = int(np.argmax(tail))
        if tail[j] > best[0]:
            best = (float(tail[j]), i, i + min_genes + j)
    return best[1], best[2], best[0]


def call_lesions(
    adata: anndata.AnnData,
    lesions: list[Lesion],
    *,
    reference_mask,
    state_key: str = "hspc_state",
    sample_key: str = "sample",
    donor_key: str | None = "patient",
    batch_key: str | None = "technology",
    layer: str | None = "counts",
    posterior_cutoff: float = 0.9,
    n_folds: int = 5,
    seed: int = 0,
    min_mean: float = 0.001,
    shrinkage: float = 20.0,
    calibrate: bool = True,
    min_batch_reference: int = 50,
    refine: bool = True,
    min_refine_cells: int = 30,
    min_interval_genes: int = 30,
    refine_max_reference: int | None = 10_000,
    chunk_size: int = 256,
    depth=None,
) -> None:
    """Per-cell posterior probability of each lesion; writes obs columns and ``uns["lesions"]``.

    Parameters
    ----------
    adata
        Cells x genes. Raw counts in ``adata.layers[layer]``, or in ``adata.X`` when it has no
        such layer and ``X`` holds counts (``layer=None``: ``adata.X``; :func:`counts_matrix`),
        sparse (CSR or CSC) or dense; ``var`` needs ``chromosome``, ``start``, ``end`` (bp, 0-based).
        With ``depth`` given, only the lesions' genes are needed (:func:`read_lesion_counts`).
    lesions
        From :func:`parse_lesions`.
    reference_mask
        Boolean array (n_obs,) or the name of a boolean obs column: the normal reference cells
        (see :func:`remnant.workflow.config.reference_cells` and :func:`remnant.tl.reference.find_reference`).
    state_key
        obs column with the annotated HSPC state (expectations are state-matched).
    sample_key
        obs column; the prior (fraction of carriers) is learned per sample.
    donor_key
        obs column naming donors; reference folds are whole donors when the reference has >= 2
        donors (``None``: random cell folds).
    batch_key
        obs column of the technology (``droplet``/``plate`` ...) or another batch with its own
        count distribution. Each batch is scored against the reference cells of the same batch
        (profiles, overdispersion, count scale, temperature and false-positive rates all measured
        there) when it has at least ``min_batch_reference`` of them; otherwise against all
        reference cells, flagged ``reference_matched = False``. ``None``, or the default
        ``"technology"`` absent from obs: one batch. Scoring plate and droplet cells as one batch
        gives both one count scale and one temperature, which miscalibrates both.
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
    min_batch_reference
        Reference cells a batch needs to be scored against its own batch.
    refine
        Re-score each donor (``donor_key``) on its own deleted interval: the interval inside the
        configured lesion that best fits the pooled counts of the donor's called cells (at least
        ``min_refine_cells`` of them; at least ``min_interval_genes`` genes). Breakpoints vary
        between patients; genes a patient did not lose dilute the evidence of its carriers.
    refine_max_reference
        Reference cells (per batch; a seeded random sample, the same for every donor) that
        each donor's re-scoring on its own interval is cross-fitted against (``None``: all).
        Without a cap, refinement costs reference cells x donors, which grows with the square
        of the cohort when cohorts grow by patients; 10,000 cells give the state profiles and
        the false-positive rate (resolution 1e-4) of the refined interval to well within their
        other errors. The first pass always uses every reference cell.
    chunk_size
        Rows per dense block of (profile, depth) pairs x lesion genes; the counts are visited in
        blocks of ``256 * chunk_size`` cells. Small blocks stay in the CPU cache (256 x 1,000 genes
        x float64 = 2 MB): scoring 91,335 cells took 2.6 s in blocks of 2,000 and 1.6 s in blocks
        of 200, with identical results.
    depth
        float64 (n_obs,) counts of each cell on the autosomal genes outside every configured
        lesion (:func:`lesion_genes`), computed beforehand, e.g. while streaming the cohort file
        (:func:`read_lesion_counts`). ``None``: computed from the counts of ``adata``, which must
        then hold every gene.

    Writes
    ------
    ``obs[f"{name}_posterior"]`` (float, 0-1), ``obs[f"{name}_llr"]`` (float, natural log, after
    tempering), ``obs[f"{name}_call"]`` (bool), ``obs[f"{name}_n_genes"]`` (int, lesion genes with
    nonzero expectation). ``uns["lesions"][name]``: ``per_sample`` DataFrame (batch, n_cells,
    n_reference, prior, n_called, fpr, fnr, temperature, count_scale, reference_matched);
    ``batches`` DataFrame (per batch: n_cells, n_reference, reference_matched, fold_mode, n_folds,
    n_genes, temperature, count_scale); ``genes`` (gene ids used in any batch); ``reference_fpr``
    (called fraction of cross-fitted reference cells with their own sample prior); the lesion and
    the parameters. ``fpr`` per sample is the share of cross-fitted reference cells (of the
    sample's batch reference) that would be called with that sample's prior; ``fnr`` is the
    posterior-expected share of carriers below the cut-off.
    """
    X = counts_matrix(adata, layer, "call_lesions")
    require_positions(adata.var, "call_lesions")
    if batch_key == "technology" and batch_key not in adata.obs:
        batch_key = None
    for key in (state_key, sample_key) + ((batch_key,) if batch_key else ()):
        if key not in adata.obs:
            raise InputError(f"obs lacks column {key!r}.", where="call_lesions")
    if not lesions:
        raise InputError("no lesions to call.", where="call_lesions(lesions=...)")
    if not 0 < posterior_cutoff < 1:
        raise InputError("posterior_cutoff must be between 0 and 1.", where="call_lesions")
    ref = cell_mask(adata, reference_mask, "reference_mask", "call_lesions")
    if ref.sum() < 10:
        raise InputError(
            f"only {int(ref.sum())} reference cells; need at least 10.", where="call_lesions(reference_mask=...)"
        )
    n = adata.n_obs
    var = adata.var
    inside, outside = lesion_genes(var, lesions)
    # (n,) counts on outside genes
    depth = cell_depth(X, outside, depth, n, "call_lesions")

    # states: integer codes of the reference states; other cells use the pooled profile (-1)
    state = adata.obs[state_key].astype(str).where(adata.obs[state_key].notna(), "").to_numpy()
    donors = adata.obs[donor_key].astype(str).to_numpy() if donor_key and donor_key in adata.obs else None
    batch = adata.obs[batch_key].astype(str).to_numpy() if batch_key else np.full(n, "all", dtype=object)
    samples = adata.obs[sample_key].astype(str).to_numpy()

    # one scoring unit per batch: its cells plus the reference cells it is judged against
    units = []
    for b in pd.unique(batch):
        cells = np.flatnonzero(batch == b)
        own_ref = np.flatnonzero(ref & (batch == b))
        matched = own_ref.size >= min_batch_reference
        ref_rows = own_ref if matched else np.flatnonzero(ref)
        rows = np.union1d(cells, ref_rows)
        is_ref = np.isin(rows, ref_rows)
        fold = np.full(rows.size, -1, dtype=np.int64)
        fold[is_ref], k, fold_mode = _assign_folds(rows[is_ref], donors, n_folds, seed)
        ref_states = sorted(set(state[rows[is_ref]]) - {"", "nan"})
        code = {s: i for i, s in enumerate(ref_states)}
        s_idx = np.array([code.get(s, -1) for s in state[rows]], dtype=np.int64)
        refine_reference = fold >= 0
        if refine_max_reference is not None and refine_reference.sum() > refine_max_reference:
            keep = np.random.default_rng([int(seed), 7]).choice(
                np.flatnonzero(refine_reference), int(refine_max_reference), replace=False
            )
            refine_reference = np.zeros(rows.size, bool)
            refine_reference[keep] = True
        units.append(
            {
                "batch": b,
                "cells": cells,
                "rows": rows,
                "fold": fold,
                "k": k,
                "fold_mode": fold_mode,
                "matched": matched,
                "s_idx": s_idx,
                "n_states": len(ref_states),
                "refine_reference": refine_reference,  # reference rows each donor's re-scoring uses
                "own": np.isin(rows, cells),
            }
        )  # rows that are the batch's own cells

    uns = adata.uns.setdefault("lesions", {})
    logit_cut = np.log(posterior_cutoff / (1 - posterior_cutoff))
    gene_start = var["start"].to_numpy(np.int64)
    gene_end = var["end"].to_numpy(np.int64)
    for lesion in lesions:
        cols = np.flatnonzero(inside[lesion.name])
        cols = cols[np.argsort(gene_start[cols], kind="stable")]  # genomic order, for the interval scan
        XL = sp.csr_matrix(X[:, cols], dtype=np.float64)
        kw = {"rho": lesion.copy_ratio, "min_mean": min_mean, "shrinkage": shrinkage, "chunk_size": chunk_size}
        llr_t = np.zeros(n)
        n_genes = np.zeros(n, dtype=np.int64)
        used = np.zeros(cols.size, bool)
        batch_rows, results = [], {}
        ref_llr_of: dict[tuple, np.ndarray] = {}  # (batch, donor|None) -> tempered LLRs of its cross-fitted reference
        for u in units:
            rows = u["rows"]
            res = _score_rows(XL[rows], depth[rows], u["s_idx"], u["n_states"], u["fold"], u["k"], **kw)
            if not res["use"].any():
                raise InputError(
                    f"lesion {lesion.name}: no gene inside {lesion.region} reaches min_mean={min_mean} "
                    f"in the reference cells of batch {u['batch']!r}.",
                    where="call_lesions",
                )
            used |= res["use"]
            is_ref = u["fold"] >= 0
            temperature = _temperature(res["z"][is_ref], calibrate)
            llr_rows = res["llr"] / temperature
            # write the batch's own cells; reference cells borrowed from another batch are scored there
            own = u["own"]
            llr_t[rows[own]] = llr_rows[own]
            n_genes[rows[own]] = res["n_genes"][own]
            ref_llr_of[(u["batch"], None)] = llr_rows[is_ref]
            results[u["batch"]] = res
            batch_rows.append(
                {
                    "batch": u["batch"],
                    "n_cells": int(u["cells"].size),
                    "n_reference": int(is_ref.sum()),
                    "reference_matched": bool(u["matched"]),
                    "fold_mode": u["fold_mode"],
                    "n_folds": int(u["k"]),
                    "n_genes": int(res["use"].sum()),
                    "temperature": temperature,
                    "count_scale": float(res["count_scale"]),
                }
            )
        batches = pd.DataFrame(batch_rows).set_index("batch")
        post, priors = _sample_posteriors(llr_t, samples)

        # Each patient's own deleted interval (inside the configured one) from its called cells;
        # its cells (and the reference, for its false-positive rate) are re-scored on those genes
        # only, so genes the patient did not lose neither dilute the evidence nor bias the prior.
        intervals = []
        if refine and donors is not None:
            called = (post >= posterior_cutoff) & ~ref
            for d in pd.unique(donors[~ref]):
                m = called & (donors == d)
                entry = {
                    "donor": d,
                    "n_called": int(m.sum()),
                    "refined": False,
                    "start": np.nan,
                    "end": np.nan,
                    "n_genes": 0,
                    "gain": np.nan,
                }
                if m.sum() < min_refine_cells:
                    intervals.append(entry)
                    continue
                O, E = np.zeros(cols.size), np.zeros(cols.size)
                for u in units:
                    res, rows = results[u["batch"]], u["rows"]
                    sel = m[rows]
                    if not sel.any():
                        continue
                    use, scale = res["use"], res["count_scale"]
                    O[use] += np.asarray(XL[rows[sel]][:, np.flatnonzero(use)].sum(axis=0)).ravel() / scale
                    dsum = np.bincount(
                        res["profile_row"][sel], weights=depth[rows[sel]], minlength=res["profiles"].shape[0]
                    )
                    E[use] += dsum @ res["profiles"] / scale
                keep = np.flatnonzero(E > 0)
                if keep.size < 2 * min_interval_genes:
                    intervals.append(entry)
                    continue
                i, j, gain = _best_interval(O[keep], E[keep], lesion.copy_ratio, min_interval_genes)
                gene_mask = np.zeros(cols.size, bool)
                gene_mask[keep[i] : keep[j - 1] + 1] = True
                entry.update(
                    refined=True,
                    start=int(gene_start[cols[keep[i]]]),
                    end=int(gene_end[cols[keep[j - 1]]]),
                    n_genes=int(j - i),
                    gain=gain,
                )
                intervals.append(entry)
                for u in units:
                    rows = u["rows"]
                    own_d = u["own"] & (donors[rows] == d)
                    if not own_d.any():
                        continue
                    sub = own_d | u["refine_reference"]
                    res2 = _score_rows(
                        XL[rows[sub]][:, np.flatnonzero(gene_mask)],
                        depth[rows[sub]],
                        u["s_idx"][sub],
                        u["n_states"],
                        u["fold"][sub],
                        u["k"],
                        **kw,
                    )
                    is_ref2 = u["fold"][sub] >= 0
                    l2 = res2["llr"] / _temperature(res2["z"][is_ref2], calibrate)
                    target = own_d[sub]
                    llr_t[rows[sub][target]] = l2[target]
                    n_genes[rows[sub][target]] = res2["n_genes"][target]
                    ref_llr_of[(u["batch"], d)] = l2[is_ref2]
            post, priors = _sample_posteriors(llr_t, samples)

        rows_out = []
        for smp, pi in priors.items():
            m = samples == smp
            b = batch[m][0]
            d = donors[m][0] if donors is not None else None
            thr = logit_cut - np.log(pi / (1 - pi))
            ps = post[m]
            below = ps < posterior_cutoff
            rows_out.append(
                {
                    "sample": smp,
                    "batch": b,
                    "n_cells": int(m.sum()),
                    "n_reference": int((m & ref).sum()),
                    "prior": pi,
                    "n_called": int((~below).sum()),
                    "fpr": float(np.mean(ref_llr_of.get((b, d), ref_llr_of[(b, None)]) >= thr)),
                    "fnr": float(ps[below].sum() / ps.sum()) if ps.sum() > 0 else float("nan"),
                    "temperature": batches.loc[b, "temperature"],
                    "count_scale": batches.loc[b, "count_scale"],
                    "reference_matched": batches.loc[b, "reference_matched"],
                }
            )
        call = post >= posterior_cutoff
        adata.obs[f"{lesion.name}_posterior"] = post
        adata.obs[f"{lesion.name}_llr"] = llr_t
        adata.obs[f"{lesion.name}_call"] = call
        adata.obs[f"{lesion.name}_n_genes"] = n_genes
        uns[lesion.name] = {
            "lesion": dict(asdict(lesion).items()),
            "per_sample": pd.DataFrame(rows_out).set_index("sample"),
            "batches": batches,
            "intervals": pd.DataFrame(
                intervals, columns=["donor", "n_called", "refined", "start", "end", "n_genes", "gain"]
            ),
            "genes": np.asarray(adata.var_names[cols[used]], dtype=str),
            "reference_fpr": float(call[ref].mean()),
            "params": {
                "state_key": state_key,
                "sample_key": sample_key,
                "donor_key": donor_key or "",
                "batch_key": batch_key or "",
                "posterior_cutoff": posterior_cutoff,
                "n_folds": int(n_folds),
                "seed": seed,
                "min_mean": min_mean,
                "shrinkage": shrinkage,
                "calibrate": calibrate,
                "min_batch_reference": int(min_batch_reference),
                "refine": refine,
                "min_refine_cells": int(min_refine_cells),
                "min_interval_genes": int(min_interval_genes),
                "refine_max_reference": -1 if refine_max_reference is None else int(refine_max_reference),
                "n_reference": int(ref.sum()),
            },
        }
