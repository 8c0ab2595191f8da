"""Per-cell copy-number lesion calls (del(5q) by default) from a count likelihood.

Model
-----
For a lesion (a chromosome interval, loss or gain) and a cell ``c`` of annotated HSPC state ``s``:

- ``D_c`` (counts) is the cell's depth on the genes *outside* every configured lesion (autosomes
  only), so a deletion does not deflate the depth it is compared with, less the genes that would
  let a few transcripts set it (gene families such as immunoglobulins, haemoglobin, MALAT1, and
  each sample's most-expressed genes; :mod:`remnant.tl.depth`).
- ``p_{s,g}`` (expected counts of lesion gene ``g`` per count of outside depth) is the state-matched
  reference profile: the summed counts of ``g`` over reference cells of state ``s`` divided by
  their summed outside depth, shrunk towards the all-reference profile with a pseudo-depth of
  ``shrinkage`` reference cells (rare states lean on the pooled profile; states absent from the
  reference, or with fewer than ``min_state_reference`` reference cells, use it outright and are
  scored as cells the reference does not describe).
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
lesion genes; the cohort is never densified. The arithmetic of the model is in
:mod:`remnant.tl.lesion_model`; this module reads the lesions and the counts and runs the steps.
"""

from __future__ import annotations

import functools
import logging
import re
import zlib
from dataclasses import asdict, dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import logit

from remnant._sums import bins_of, row_bin_sums
from remnant.errors import InputError
from remnant.io.annotation import autosomal
from remnant.tl.clone_prior import clone_posteriors, lesion_posteriors
from remnant.tl.cluster_null import map_cluster_nulls, separation
from remnant.tl.depth import (
    DepthGenes,
    block_shares,
    depth_blocks,
    depth_groups,
    depth_mask,
    depth_scales,
    group_totals,
    median_depth,
)
from remnant.tl.intervals import (
    Pools,
    fit_interval,
    fit_model,
    level_posterior,
    local_baseline,
    pool_counts,
    pool_shares,
    trim_threshold,
)
from remnant.tl.lesion_model import (
    _outlier_terms,
    assign_folds,
    em_prior,
    group_posteriors,
    mixture_loglik,
    score_rows,
    split_by,
    temperature,
)

#: obs column of each cell's probability of belonging to the malignant clone (the clone prior's).
CLONE_KEY = "clone_posterior"

__all__ = [
    "DEFAULT_LESIONS",
    "DepthGenes",
    "Lesion",
    "call_lesions",
    "iscn_type",
    "parse_lesions",
    "parse_region",
    "read_lesion_counts",
]

#: Default lesion configuration: del(5q) over 5q13.1-5q33.3 (GRCh38 67.4-160.5 Mb).
DEFAULT_LESIONS: list[dict] = [{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}]

log = logging.getLogger(__name__)

_DEFAULT_RATIO = {"loss": 0.5, "gain": 1.5}


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
# a whole chromosome ("7", "chr7"): monosomy 7 and trisomy 8 are MDS's commonest lesions after del(5q)
_WHOLE = re.compile(r"^(?:chr)?([0-9]+|X|Y)$", re.I)


# ISCN as a karyotype writes a lesion: interstitial del(5)(q13q33) / dup(1)(q21q32), the breakpoints
# alone (5q13q33), or a whole-chromosome loss or gain (-7, +8); and the arm-level shorthand of clinical
# reports and papers, del(5q), dup(1q), +1q, -17p (the whole arm: the breakpoints are not written)
_ISCN_SEGMENT = re.compile(r"^(del|dup)\((?:chr)?([0-9]+|X|Y)\)\(([pq][0-9.]+)([pq][0-9.]+)\)$", re.I)
_ISCN_TERMINAL = re.compile(r"^(del|dup)\((?:chr)?([0-9]+|X|Y)\)\(([pq])([0-9.]+)\)$", re.I)
_ISCN_BREAKPOINTS = re.compile(r"^(?:chr)?([0-9]+|X|Y)([pq][0-9.]+)([pq][0-9.]+)$", re.I)
_ISCN_WHOLE = re.compile(r"^([+-])(?:chr)?([0-9]+|X|Y)$", re.I)
_ISCN_ARM = re.compile(r"^(del|dup)\((?:chr)?([0-9]+|X|Y)([pq])\)$", re.I)
_SIGNED_ARM = re.compile(r"^([+-])(?:chr)?([0-9]+|X|Y)([pq])$", re.I)
_SIGN_TYPE = {"del": "loss", "dup": "gain", "-": "loss", "+": "gain"}


def _read_iscn(region: str) -> tuple[str | None, str, str] | None:
    """A region written in ISCN (or its arm shorthand) as ``(type it implies or None, chromosome, what
    of it)``: ``what`` is ``"q13-q33"`` (a segment), ``"q31-"`` (terminal: from the band to the arm's
    end), ``"q"`` (the arm) or ``""`` (the whole chromosome). None: not ISCN."""
    m = _ISCN_SEGMENT.match(region)
    if m:
        return _SIGN_TYPE[m.group(1).lower()], m.group(2), f"{m.group(3)}-{m.group(4)}"
    m = _ISCN_TERMINAL.match(region)
    if m:
        return _SIGN_TYPE[m.group(1).lower()], m.group(2), f"{m.group(3).lower()}{m.group(4)}-"
    m = _ISCN_BREAKPOINTS.match(region)
    if m:
        return None, m.group(1), f"{m.group(2)}-{m.group(3)}"
    m = _ISCN_WHOLE.match(region)
    if m:
        return _SIGN_TYPE[m.group(1)], m.group(2), ""
    m = _ISCN_ARM.match(region) or _SIGNED_ARM.match(region)
    if m:
        return _SIGN_TYPE[m.group(1).lower()], m.group(2), m.group(3).lower()
    return None


def iscn_type(region) -> str | None:
    """The lesion type a region written in ISCN karyotype notation implies: ``"loss"`` for ``del(5)(q13q33)``,
    ``del(5)(q31)``, ``-7``, ``del(5q)`` and ``-17p``, ``"gain"`` for ``dup(1)(q21q32)``, ``+8``, ``dup(1q)``
    and ``+1q``; None for any other region (coordinates, bands, arms, bare breakpoints ``5q13q33``).
    Spaces are ignored."""
    read = _read_iscn(str(region).strip().replace(" ", ""))
    return read[0] if read else None


def _from_iscn(region: str, cytobands: pd.DataFrame) -> str:
    """A region written in ISCN karyotype notation as the band range, arm or chromosome
    :func:`_parse_region` reads; any other region unchanged. A terminal ``del(5)(q31)`` runs from the
    band to the end of its arm (the arm's last band in ``cytobands``)."""
    read = _read_iscn(region)
    if read is None:
        return region
    _, chrom, what = read
    if not what.endswith("-"):
        return chrom + what if "-" not in what else "-".join(chrom + band for band in what.split("-"))
    arm = what[0]
    bands = cytobands.loc[cytobands["chromosome"] == _chrom(chrom), "band"].astype(str)
    on_arm = bands[bands.str.lower().str.startswith(arm)]
    # the arm's telomeric band: the p arm's first row (p-ter), the q arm's last (q-ter)
    end = (on_arm.iloc[0] if arm == "p" else on_arm.iloc[-1]) if len(on_arm) else arm
    return f"{chrom}{what[:-1]}-{chrom}{end}"


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
        cytoband or cytoband range (``5q31``, ``5q13.1-5q33.3``, ``20q11.2-q13.1``; a band name matches
        its sub-bands, as ISCN writes them: ``5q3`` is 5q31-5q35), a whole arm (``5q``) or chromosome (``7``),
        or ISCN karyotype notation (``del(5)(q13q33)``, ``dup(1)(q21q32)``, terminal ``del(5)(q31)`` to the
        arm's end, ``5q13q33``, ``-7``, ``+8``) and its arm shorthand (``del(5q)``, ``dup(1q)``, ``+1q``,
        ``-17p``: the whole arm). A ``del``/``dup``/``-``/``+`` implies ``type`` (which may then be left
        out, and must agree where given). ``None`` gives :data:`DEFAULT_LESIONS`.
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
        region = str(item.get("region", "")).strip().replace(" ", "")
        implied = iscn_type(region)
        missing = [k for k in ("name", "type", "region") if k not in item and not (k == "type" and implied)]
        if missing:
            raise InputError(
                f"lesion lacks key(s) {missing}; each needs name, type (loss|gain) and region "
                "(type may be left out where the region says it: del(5)(q13q33), del(5q), -7, +8).",
                where=where,
            )
        name = str(item["name"])
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise InputError(f"lesion name {name!r} must be letters, digits and _ (it names obs columns).", where=where)
        if any(l.name == name for l in out):
            raise InputError(f"duplicate lesion name {name!r}.", where=where)
        if name == CLONE_KEY.removesuffix("_posterior"):
            raise InputError(
                f"lesion name {name!r} is taken: obs[{CLONE_KEY!r}] holds each cell's probability of "
                "belonging to the clone; name the lesion after its region (e.g. del5q).",
                where=where,
            )
        kind = str(item.get("type", implied)).lower()
        if kind not in _DEFAULT_RATIO:
            raise InputError(f"lesion type {item['type']!r} must be 'loss' or 'gain'.", where=where)
        ratio = float(item.get("copy_ratio", _DEFAULT_RATIO[kind]))
        if not (ratio > 0) or (kind == "loss" and ratio >= 1) or (kind == "gain" and ratio <= 1):
            raise InputError(f"copy_ratio {ratio} does not fit a {kind} (loss: 0<r<1, gain: r>1).", where=where)
        if implied is not None and implied != kind:
            raise InputError(
                f"region {region!r} is a {implied} in ISCN but the lesion's type is {kind!r}; make them agree.",
                where=where,
            )
        chrom, start, end = _parse_region(_from_iscn(region, cytobands), cytobands, arms, where)
        if chrom not in lengths:
            raise InputError(
                f"chromosome {chrom} of region {region!r} is not in the cytoband table" + _missing_hint(chrom),
                where=where,
            )
        if start >= end:
            raise InputError(f"region {region!r}: start {start} must be below end {end}.", where=where)
        if end > lengths[chrom]:
            raise InputError(
                f"region {region!r} ends at {end}, beyond the end of {chrom} ({lengths[chrom]}).", where=where
            )
        out.append(Lesion(name, kind, chrom, int(start), int(end), ratio, region))
    return out


def parse_region(region, cytobands: pd.DataFrame, arms: pd.DataFrame | None = None, *, name: str) -> Lesion:
    """A region read for its span alone (a control region, a region to leave out), written as a lesion's
    ``region`` is (:func:`parse_lesions`), as a :class:`Lesion` named ``name``: its type is the one its
    ISCN implies (``+8`` a gain), else a loss, so no sign is refused. Raises :class:`InputError` as
    :func:`parse_lesions` does."""
    kind = iscn_type(region) or "loss"
    (lesion,) = parse_lesions([{"name": name, "type": kind, "region": str(region)}], cytobands, arms)
    return lesion


def _missing_hint(chrom: str) -> str:
    """The end of the error for a chromosome the cytoband table lacks: what to do for a sex chromosome."""
    if chrom in ("chrX", "chrY"):
        return (
            " (use a cytoband table with chrX and chrY bands to call lesions there, as the bundled GRCh38 and "
            "hg19 tables have)."
        )
    return "."


def _parse_region(region: str, cytobands: pd.DataFrame, arms: pd.DataFrame, where: str) -> tuple[str, int, int]:
    m = _COORD.match(region)
    if m:
        return _chrom(m.group(1)), int(re.sub("[,_]", "", m.group(2))), int(re.sub("[,_]", "", m.group(3)))
    m = _ARM.match(region)
    if m:
        chrom, arm = _chrom(m.group(1)), m.group(2).lower()
        hit = arms[(arms["chromosome"] == chrom) & (arms["arm"] == arm)]
        if hit.empty:
            raise InputError(f"arm {region!r} is not in the cytoband table" + _missing_hint(chrom), where=where)
        return chrom, int(hit["start"].iloc[0]), int(hit["end"].iloc[0])
    m = _WHOLE.match(region)
    if m:
        chrom = _chrom(m.group(1))
        hit = arms[arms["chromosome"] == chrom]
        if hit.empty:
            raise InputError(f"chromosome {region!r} is not in the cytoband table" + _missing_hint(chrom), where=where)
        return chrom, int(hit["start"].min()), int(hit["end"].max())
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
        "(5q13.1-5q33.3), an arm (5q), a whole chromosome (7) or ISCN (del(5)(q13q33), del(5)(q31), del(5q), -7, +8).",
        where=where,
    )


def _within_band(name: str, band: str) -> bool:
    """Whether cytoband ``name`` (``q11.21``) lies within ``band`` as ISCN writes bands: a band holds its
    sub-bands, each further digit one level down (``q1`` is region 1 of the arm, ``q11`` its band 1, ``q11.2``
    sub-band 2 of that, holding ``q11.21``-``q11.23``), so a coarser name a table does not list (``20q11.2``
    where the table has ``20q11.21``) still finds its bands."""
    if not name.startswith(band):
        return False
    rest = name[len(band) :]
    # nothing left: the band itself; a dot or a digit next: one of its sub-bands (q2 -> q21.1, q11.2 -> q11.21)
    return not rest or rest[0] == "." or rest[0].isdigit()


def _band_span(chrom: str, band: str, cytobands: pd.DataFrame, region: str, where: str) -> tuple[int, int]:
    band = band.lower()
    on = cytobands[cytobands["chromosome"] == chrom]
    names = on["band"].str.lower()
    hit = on[names.map(lambda name: _within_band(name, band)).to_numpy(bool)]
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
    """The genes of each lesion and the autosomal genes outside every lesion.

    Returns
    -------
    inside
        ``{lesion name: boolean (n_vars,) mask}`` (:func:`genes_in`).
    outside
        Boolean (n_vars,): autosomal genes outside every lesion (sex chromosomes differ between
        donors). Which genes a cell's depth may be counted on follows from these and the depth's
        baseline (:func:`lesion_columns`); the depth leaves some of them out too: gene families and
        each group's most-expressed genes (:func:`depth_columns`, :mod:`remnant.tl.depth`).
    """
    inside = {lesion.name: genes_in(var, lesion) for lesion in lesions}
    inside_any = np.logical_or.reduce(list(inside.values())) if inside else np.zeros(len(var), bool)
    return inside, autosomal(var["chromosome"]) & ~inside_any


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


#: Cells per block :func:`read_lesion_counts` reads. On the 100k scale cohort's ``clustered.h5ad``
#: (91,328 cells x 38,912 genes, 134.5M stored counts, not compressed) its two passes took 2.7-3.2 s
#: of CPU in blocks of 10,000 cells against 4.9-5.7 s in blocks of 50,000 (h5py slices of ~300 MB
#: cost 3-5x those of ~60 MB a value; 5,000 cells: 3.0-3.7 s), and the blocks hold a fifth of the
#: memory. A single pass holding each cell's counts near the groups' top cut instead of reading
#: twice was slower (3.0-3.6 s; docs/robust_evidence.md): holding them costs what a second read does.
READ_CELLS = 10_000

#: ``obsm`` key of each cell's counts per block of the genome in :func:`read_lesion_counts`' AnnData.
DEPTH_BLOCKS_KEY = "depth_blocks"


def read_lesion_counts(
    path,
    lesions,
    *,
    chunk_cells: int | None = None,
    sample_key: str = "sample",
    state_key: str | None = "hspc_state",
    reference=None,
    depth_genes: DepthGenes | None = None,
    obs: pd.DataFrame | None = None,
) -> tuple[anndata.AnnData, np.ndarray]:
    """The counts of the lesions' genes for every cell of a cohort h5ad, and each cell's depth,
    read in blocks of cells (the matrix is never held whole; issue 8).

    Two passes, in blocks of :data:`READ_CELLS` cells: the first sums the counts per gene of each
    group of cells (sample x state x reference or not: the most-expressed genes of a group are left
    out of the depth; samples a few genes dominate are reported; :mod:`remnant.tl.depth`), the
    second keeps the lesions' genes and sums each cell's depth. The counts are ``layers/counts``
    when the file has that layer (``cohort.h5ad``, and ``clustered.h5ad`` files written before
    issue 8), else ``X`` when it holds counts (``clustered.h5ad``; :func:`remnant.io.store.counts_key`).

    Parameters
    ----------
    path
        h5ad file, cells x genes; ``var`` with ``chromosome``, ``start``, ``end`` (bp, 0-based).
    lesions
        From :func:`parse_lesions`.
    chunk_cells
        Cells per block read (default :data:`READ_CELLS`).
    sample_key, state_key, reference, depth_genes
        As in :func:`call_lesions`: the obs columns of the samples and states (absent from obs or
        ``None``: not used to group cells), the reference cells (boolean (n_obs,) or an obs column;
        ``None``: not known yet, e.g. before an automatic choice) and the genes the depth leaves
        out. The same arguments give the depth :func:`call_lesions` computes in memory.
    obs
        The file's obs when the caller has read it already (:func:`remnant.io.store.read_obs`; read
        here when ``None``): one read of every obs column less (0.1-0.3 s at 100k cells).

    Returns
    -------
    adata
        Cells x the genes inside any lesion (file order): raw counts in ``X`` (CSR, the stored
        dtype), the file's ``obs`` and those genes' ``var``. Memory: cells x lesion genes. With the
        median baseline (``depth_genes.baseline``, the default) also ``obsm["depth_blocks"]``:
        float32 (n_obs x ~50), each cell's counts on the depth genes of each block of the genome
        (:func:`remnant.tl.depth.depth_blocks`), for :func:`scale_read_depth`.
    depth
        float64 (n_obs,): each cell's depth (:func:`depth_columns`; with ``reference`` given, each
        sample's scaled to it, :func:`remnant.tl.depth.depth_scales`), as :func:`call_lesions`
        computes it from the whole matrix; pass it as ``depth=``.
    """
    from remnant.io import store

    if obs is None:
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
    kw = {"chunk_cells": READ_CELLS if chunk_cells is None else chunk_cells}
    codes, groups = obs_depth_groups(obs, sample_key, state_key, reference, "read_lesion_counts")
    totals = store.group_sums(path, codes, len(groups), key=key, **kw)
    keep, depth_genes_mask = depth_columns(var, lesions, totals, groups, depth_genes, "read_lesion_counts")
    blocks = depth_blocks(var, depth_genes_mask) if _median_baseline(depth_genes) else None
    counts, sums = store.read_columns(path, keep, sums={"depth": depth_genes_mask}, blocks=blocks, key=key, **kw)
    depth = _baseline(sums["depth"], sums.get("blocks"), totals, groups, blocks)
    depth = depth * _scales(totals, groups, depth_genes_mask, depth_genes, depth, codes, blocks)[codes]
    adata = anndata.AnnData(X=counts, obs=obs, var=var.loc[keep])
    if blocks is not None:
        # kept for scale_read_depth: with the reference chosen later, the median is taken again on them
        adata.obsm[DEPTH_BLOCKS_KEY] = sums["blocks"]
    return adata, depth


def scale_read_depth(
    path,
    lesions,
    depth,
    reference,
    *,
    chunk_cells: int | None = None,
    sample_key: str = "sample",
    state_key: str | None = "hspc_state",
    depth_genes: DepthGenes | None = None,
    obs: pd.DataFrame | None = None,
    block_counts: np.ndarray | None = None,
) -> np.ndarray:
    """The depth :func:`read_lesion_counts` read before the reference was known (``reference=None``,
    e.g. before :func:`remnant.tl.find_reference` chose one), each sample's scaled to the reference
    chosen since (:func:`remnant.tl.depth.depth_scales`), as a reference known beforehand scales it.

    One more pass over the counts sums them per group of cells on each side of the reference. The
    genes the depth is counted on are those the first read chose (the groups' totals added back
    over the reference recover its groups exactly), so only the factors are new. With
    ``trim_top_fraction`` 0 the result equals :func:`read_lesion_counts` given the reference; with
    a trim, the reference given beforehand also trims each side of it separately, so a few of the
    most-expressed genes may differ. With a median baseline (``depth_genes.baseline``) the median is
    taken again against the reference's block shares, on each cell's counts per block of the genome
    that the first read kept (``block_counts``; a further pass reads them where they are not given).

    Parameters
    ----------
    path, lesions, chunk_cells, sample_key, state_key, depth_genes
        As given to :func:`read_lesion_counts`.
    depth
        float64 (n_obs,): the depth it returned.
    reference
        The reference cells: boolean (n_obs,) or an obs column.
    obs
        The file's obs where the caller holds it (the ``obs`` of the AnnData :func:`read_lesion_counts`
        returned; reading it again took a third of this pass at 91k cells); ``None``: read from ``path``.
    block_counts
        (n_obs x n_blocks) each cell's counts per block: ``obsm["depth_blocks"]`` of that AnnData
        (the same genes: the first read's); ``None``: read from ``path`` in one more pass.

    Returns
    -------
    float64 (n_obs,): ``depth`` with each sample's factor applied (``depth`` itself, without a pass,
    where ``depth_genes.scale_to_reference`` is off and the baseline is the sum).
    """
    from remnant.io import store

    if depth_genes is not None and not depth_genes.scale_to_reference and not _median_baseline(depth_genes):
        return np.asarray(depth, dtype=np.float64)
    var = store.read_var(path)
    key = store.counts_key(path, where="scale_read_depth")
    n_obs = store.shape(path, key)[0]
    obs = store.read_obs(path) if obs is None else obs
    if len(obs) != n_obs:
        raise InputError(
            f"obs has {len(obs)} cells but the file holds {n_obs}; pass the obs read from this file.",
            path=str(path),
            where="scale_read_depth(obs=...)",
        )
    depth = cell_depth(None, np.zeros(len(var), bool), depth, n_obs, "scale_read_depth")
    codes, groups = obs_depth_groups(obs, sample_key, state_key, reference, "scale_read_depth")
    read_codes, read_groups = obs_depth_groups(obs, sample_key, state_key, None, "scale_read_depth")
    totals = store.group_sums(path, codes, len(groups), key=key, chunk_cells=chunk_cells or READ_CELLS)
    # each group split by the reference lies inside one group of the first read: add them back
    first_read = np.zeros(len(groups), np.int64)
    first_read[codes] = read_codes
    read_totals = np.zeros((len(read_groups), totals.shape[1]))
    np.add.at(read_totals, first_read, totals)
    _, outside = lesion_columns(var, lesions, depth_genes)
    genes = depth_mask(var, outside, read_totals, read_groups, depth_genes, "scale_read_depth", report=False)
    blocks = depth_blocks(var, genes) if _median_baseline(depth_genes) else None
    if blocks is not None:
        # the median was taken against all cells' block shares; the reference's are known now
        if block_counts is None:
            _, sums = store.read_columns(
                path, np.zeros(len(var), bool), blocks=blocks, key=key, chunk_cells=chunk_cells or READ_CELLS
            )
            block_counts = sums["blocks"]
        elif np.shape(block_counts) != (n_obs, blocks.shape[1]):
            raise InputError(
                f"block_counts is {' x '.join(map(str, np.shape(block_counts)))} but the file's {n_obs} cells "
                f"have {blocks.shape[1]} blocks of the genome; pass obsm['{DEPTH_BLOCKS_KEY}'] of the AnnData "
                "read_lesion_counts returned for this file with these depth_genes.",
                path=str(path),
                where="scale_read_depth(block_counts=...)",
            )
        depth = _baseline(depth, block_counts, totals, groups, blocks)
    return depth * _scales(totals, groups, genes, depth_genes, depth, codes, blocks)[codes]


def lesion_counts(
    X,
    var: pd.DataFrame,
    lesions,
    depth,
    where: str,
    *,
    groups: tuple[np.ndarray, pd.DataFrame] | None = None,
    depth_genes: DepthGenes | None = None,
) -> tuple[sp.csr_matrix, pd.DataFrame, np.ndarray]:
    """The in-memory twin of :func:`read_lesion_counts`: the counts of the lesions' genes and each
    cell's depth, from a count matrix ``X`` (cells x the genes of ``var``, sparse).

    Returns
    -------
    counts
        CSR, cells x the genes inside any lesion (``var`` order), the dtype of ``X``.
    var
        Those genes' rows of ``var``.
    depth
        float64 (n_obs,): ``depth`` when given (checked), else the counts of ``X`` on the genes of
        :func:`depth_columns`, with ``groups`` the cells' groups
        (:func:`remnant.tl.depth.depth_groups`; ``None``: one group), each sample's scaled to the
        reference where the groups know it (:func:`remnant.tl.depth.depth_scales`).
    """
    keep, _ = lesion_columns(var, lesions)
    if depth is None:
        codes, table = depth_groups(np.zeros(X.shape[0], np.int64)) if groups is None else groups
        totals = group_totals(X, codes, len(table))
        _, depth_genes_mask = depth_columns(var, lesions, totals, table, depth_genes, where)
        depth = cell_depth(X, depth_genes_mask, None, X.shape[0], where)
        blocks = depth_blocks(var, depth_genes_mask) if _median_baseline(depth_genes) else None
        if blocks is not None:
            depth = _baseline(depth, row_bin_sums(X, *bins_of(blocks)), totals, table, blocks)
        depth = depth * _scales(totals, table, depth_genes_mask, depth_genes, depth, codes, blocks)[codes]
    else:
        depth = cell_depth(X, np.zeros(len(var), bool), depth, X.shape[0], where)
    # Only the lesions' genes are used from here on: select those columns before any row subset
    # (rows first would copy every gene of the selected cells). A matrix of those genes alone
    # (read_lesion_counts) is used as it is, not copied.
    if keep.all() and isinstance(X, sp.csr_matrix) and X.has_canonical_format:
        return X, var, depth
    return sp.csr_matrix(X[:, np.flatnonzero(keep)]), var.loc[keep], depth


def _median_baseline(depth_genes: DepthGenes | None) -> bool:
    return (DepthGenes() if depth_genes is None else depth_genes).baseline == "median"


def _baseline(
    depth: np.ndarray,
    block_counts: np.ndarray | None,
    totals: np.ndarray,
    groups: pd.DataFrame,
    blocks: sp.csr_matrix | None,
) -> np.ndarray:
    """Each cell's depth as :class:`remnant.tl.depth.DepthGenes` ``baseline`` takes it: ``depth`` (the
    sum), or with ``block_counts`` (n_obs x n_blocks, :func:`remnant.tl.depth.depth_blocks`) their
    weighted median against the blocks' shares of the reference's ``totals`` (its groups' rows of
    ``groups``; all groups where it is not known yet; :func:`remnant.tl.depth.median_depth`). The
    shares are the reference's so that a normal cell reads at its sum and a tumour's gained arms read
    high: shares of a cohort of mostly tumour cells would make the normal cells look aneuploid."""
    if block_counts is None:
        return depth
    ref = groups["reference"].to_numpy(bool) if "reference" in groups.columns else np.zeros(len(groups), bool)
    median = median_depth(block_counts, block_shares(totals[ref] if ref.any() else totals, blocks))
    # a cell with counts on fewer than half of the blocks' weight has a median of 0: its sum is what is known
    return np.where(median > 0, median, depth)


def _scales(totals, groups, genes, depth_genes: DepthGenes | None, depth: np.ndarray, codes, blocks) -> np.ndarray:
    """:func:`remnant.tl.depth.depth_scales` of the depth as counted: with a median baseline (its
    ``blocks``, :func:`remnant.tl.depth.depth_blocks`; None for the sum) the group depths are its
    cells' depths summed, not the groups' totals on the depth genes, and its factors are medians over
    the same blocks of the genome."""
    if blocks is None:
        return depth_scales(totals, groups, genes, depth_genes)
    group_depth = np.bincount(codes, weights=depth, minlength=len(groups))
    return depth_scales(totals, groups, genes, depth_genes, group_depth=group_depth, blocks=blocks)


def depth_columns(
    var: pd.DataFrame, lesions, totals: np.ndarray, groups: pd.DataFrame, depth_genes: DepthGenes | None, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n_vars,) masks of the genes inside any lesion and of the genes each cell's depth is
    counted on: those :func:`lesion_columns` offers less those :func:`remnant.tl.depth.depth_mask`
    leaves out, given the gene totals ``totals`` (n_groups x n_vars) of the groups of cells
    ``groups`` (:func:`remnant.tl.depth.depth_groups`)."""
    keep, outside = lesion_columns(var, lesions, depth_genes)
    if not _median_baseline(depth_genes) and (keep & outside).any():
        log.warning(
            "%s: the lesions cover %d of the %d autosomal genes, more than %d%%: too few are left outside them "
            "to count each cell's summed depth on, so it is counted on all autosomal genes, the lesions' included, "
            "where each loss lowers its carriers' depth (the baseline 'median' is not moved by them)",
            where,
            int((keep & outside).sum()),
            int(outside.sum()),
            round(100 * (1 - MIN_OUTSIDE_SHARE)),
        )
    return keep, depth_mask(var, outside, totals, groups, depth_genes, where)


#: The genes outside every lesion must be at least this share of the autosomal genes for a summed
#: depth to be counted on them alone. Lesions that cover more (a scan of every arm) leave a depth of
#: a handful of genes, most cells' zero: the sum is then counted on every autosomal gene, the
#: lesions' included, as the median always is (:func:`lesion_columns`).
MIN_OUTSIDE_SHARE = 0.25


def lesion_columns(var: pd.DataFrame, lesions, depth_genes: DepthGenes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n_vars,) masks of the genes inside any lesion (those scored) and of the genes a cell's
    depth may be counted on (:func:`depth_columns` leaves some of them out).

    The latter depend on the depth's baseline (``depth_genes.baseline``). A sum is lowered by every
    loss in it, so it is counted outside every lesion (:func:`lesion_genes`) while they leave at least
    :data:`MIN_OUTSIDE_SHARE` of the autosomal genes. A median over blocks of the genome (the default)
    is not moved by a minority of changed blocks, so it is counted on every autosomal gene, the
    lesions' too, as inferCNV centres a cell on its whole genome: leaving the lesions out took a fifth
    of TNBC1's blocks from each cell's median and read its four losses at LLR AUROC 0.945-0.987,
    against 0.954-0.993 on the whole genome (docs/robust_evidence.md, session 37). With no gene
    outside the lesions (a matrix of their genes alone, :func:`read_lesion_counts`) there is no genome
    to read a depth on, and none is offered."""
    inside, outside = lesion_genes(var, lesions)
    keep = np.logical_or.reduce(list(inside.values())) if inside else np.zeros(len(var), bool)
    autosome = autosomal(var["chromosome"])
    few = outside.sum() < MIN_OUTSIDE_SHARE * autosome.sum()
    if outside.any() and (_median_baseline(depth_genes) or few):
        outside = autosome
    return keep, outside


def obs_depth_groups(obs: pd.DataFrame, sample_key: str, state_key: str | None, reference, where: str):
    """:func:`remnant.tl.depth.depth_groups` from obs columns (a column absent: not used) and the
    reference (``None``, a boolean (n_obs,) array or an obs column)."""
    samples = obs[sample_key].to_numpy() if sample_key in obs.columns else np.zeros(len(obs), np.int64)
    states = obs[state_key].to_numpy() if state_key is not None and state_key in obs.columns else None
    if isinstance(reference, str):
        if reference not in obs.columns:
            raise InputError(f"obs has no column {reference!r}.", where=f"{where}(reference=...)")
        reference = obs[reference].to_numpy()
    if reference is not None:
        reference = np.asarray(reference)
        if reference.dtype != bool or reference.shape != (len(obs),):
            raise InputError(
                f"reference must be a boolean array of one value per cell ({len(obs)}) or an obs column.",
                where=f"{where}(reference=...)",
            )
    return depth_groups(samples, states, reference)


def write_calls(adata: anndata.AnnData, path) -> None:
    """Write the result of :func:`call_lesions` without any matrix: an h5ad of ``n_obs`` cells x 0
    genes holding ``adata.obs`` (every column, the calls included) and ``uns["lesions"]``.

    :func:`remnant.io.store.annotate_with_calls` puts both into a copy of the cohort file (the
    workflow does so in a step of its own); :func:`remnant.workflow.analysed_cells.read_calls` reads either file.
    """
    if "lesions" not in adata.uns:
        raise InputError("no lesion calls to write; run remnant.tl.call_lesions first.", where="write_calls")
    # strings stay strings: anndata would otherwise make every string column categorical, natural-sorting
    # each cell's barcode (0.8 s of the 8 s the workflow's step takes at 91k cells)
    out = anndata.AnnData(obs=adata.obs, uns={"lesions": adata.uns["lesions"]})
    out.write_h5ad(path, convert_strings_to_categoricals=False)


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


# ------------------------------------------------------------------------------------------------
# calling
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Unit:
    """One batch's cells plus the reference cells it is judged against; arrays are over ``rows``
    (indices into the cohort) unless said otherwise."""

    batch: str
    cells: np.ndarray  # the batch's own cells (cohort indices)
    rows: np.ndarray  # its cells and its reference cells (cohort indices, sorted)
    fold: np.ndarray  # cross-fitting fold of reference rows, -1 for the others
    k: int
    fold_mode: str
    matched: bool  # the reference is the batch's own
    s_idx: np.ndarray  # state code among the reference's states, -1 = none (pooled profile)
    n_states: int
    refine_reference: np.ndarray  # reference rows each donor's re-scoring uses
    own: np.ndarray  # rows that are the batch's own cells


@dataclass(frozen=True)
class _Cohort:
    """What every lesion is scored with: per-cell arrays (n_obs,) and the batches' scoring units."""

    depth: np.ndarray
    ref: np.ndarray
    samples: np.ndarray
    prior_groups: np.ndarray  # label of each cell's prior group inside its sample (state or cluster)
    group_codes: np.ndarray  # integer code of each cell's prior group label (the same label in any sample)
    batch: np.ndarray
    donors: np.ndarray | None
    units: list[_Unit]


@dataclass
class _Scores:
    """One lesion's tempered LLRs and genes per cell (n_obs,), and what scoring measured per batch."""

    llr: np.ndarray
    n_genes: np.ndarray
    used: np.ndarray  # (lesion genes,) used in any batch
    fits: dict  # batch -> score_rows result
    reference_llr: dict  # (batch, donor|None) -> tempered LLRs of its cross-fitted reference cells
    batches: pd.DataFrame
    separation: np.ndarray | None = None  # (n_obs,) each cell's expected separation (cluster_null.separation)
    null_map: pd.DataFrame | None = None  # cluster_null's groups (map_cluster_nulls), when it ran


@dataclass
class _Scored:
    """One lesion scored: its scores, donors' intervals, genes used, and posteriors (n_obs,) with
    the priors they were computed with (``{sample: prior}`` and the per-group rows)."""

    lesion: Lesion
    scores: _Scores
    intervals: list
    genes: np.ndarray
    post: np.ndarray
    priors: dict
    groups: pd.DataFrame


def call_lesions(
    adata: anndata.AnnData,
    lesions: list[Lesion],
    *,
    reference,
    state_key: str = "hspc_state",
    sample_key: str = "sample",
    donor_key: str | None = "patient",
    batch_key: str | None = "technology",
    layer: str | None = "counts",
    posterior_cutoff: float = 0.9,
    prior_key: str | None = None,
    prior_strength: float = 20.0,
    clone_prior: bool = True,
    n_folds: int = 5,
    seed: int = 0,
    min_mean: float = 0.001,
    shrinkage: float = 20.0,
    min_state_reference: int = 20,
    outlier_fraction: float = 0.05,
    unmatched_level_sd: float = 0.1,
    unmatched_gene_spread: bool = True,
    calibrate: bool = True,
    min_batch_reference: int = 50,
    refine: bool = True,
    min_refine_cells: int = 30,
    min_interval_genes: int = 30,
    refine_max_reference: int | None = 10_000,
    patient_levels: bool = True,
    fit_copy_ratio: bool = False,
    cluster_null: bool = True,
    chunk_size: int = 256,
    depth=None,
    depth_genes: DepthGenes | None = None,
) -> None:
    # long because: the docstring is the reference for every parameter and key written; the code
    # (about 60 lines) checks the inputs and hands each step to the functions below.
    """Per-cell posterior probability of each lesion; writes obs columns and ``uns["lesions"]``.

    Works on an AnnData in memory, as infercnvpy's tools do (see Examples); to call a cohort file
    too large to hold, read the lesions' genes and each cell's depth in one pass with
    :func:`read_lesion_counts` and pass that AnnData with ``layer=None, depth=depth``.

    Parameters
    ----------
    adata
        Cells x genes. Raw counts in ``adata.layers[layer]``, or in ``adata.X`` when it has no
        such layer and ``X`` holds counts (``layer=None``: ``adata.X``; :func:`counts_matrix`),
        sparse (CSR or CSC) or dense; ``var`` needs ``chromosome``, ``start``, ``end`` (bp, 0-based).
        With ``depth`` given, only the lesions' genes are needed (:func:`read_lesion_counts`).
    lesions
        :class:`Lesion` objects, from :func:`parse_lesions` (a list of ``{name, type, region}``
        mappings, as the workflow's config writes them, and a cytoband table; ``None`` gives the
        default del(5q)). The lesions' names prefix the obs keys written.
    reference
        Boolean array (n_obs,) or the name of a boolean obs column: the normal reference cells
        (e.g. healthy donors' cells, or those :func:`remnant.tl.reference.find_reference` chooses).
    state_key
        obs column with the annotated HSPC state (expectations are state-matched).
    sample_key
        obs column; the prior (fraction of carriers) is learned per sample, and then per group of
        cells inside it (``prior_key``).
    donor_key
        obs column naming donors. Reference cells are cross-fitted a donor at a time when the
        reference has >= 2 donors, except those whose sample also holds cells that are scored (the
        patients' own normal cells as the reference): their sample-mates are scored against a
        reference holding them, so they are spread over random cell folds (``None``: random cell
        folds throughout). ``uns["lesions"][name]["batches"]["fold_mode"]`` says which.
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
    prior_key
        obs column grouping each sample's cells for the prior (``None``: ``state_key``; a cluster
        column such as ``"leiden"`` separates cell types an HSPC annotation does not). Each group
        learns its own carrier fraction, pulled towards its sample's by ``prior_strength``
        pseudo-cells, so a population of normal cells inside a tumour's sample is not called
        because the tumour's cells made the sample's prior high.
    prior_strength
        The most pseudo-cells pulling a group's prior towards its sample's (>= 0; ``numpy.inf``: one
        prior per sample, as before groups). Where a sample's groups differ in carrier fraction more
        than their sizes explain (a tumour and its normal cells), the pull is estimated from that
        spread and is weaker (empirical Bayes, at least one pseudo-cell;
        :func:`remnant.tl.lesion_model.pooling_strength`); where they agree it is ``prior_strength``.
    clone_prior
        With two or more lesions, learn their priors together (:mod:`remnant.tl.clone_prior`): a
        group's cells belong to the malignant clone with one fraction, and a clone cell carries each
        lesion with its own fraction (a subclone's lesion a small one); a normal cell carries none.
        A cell's posterior of one lesion then draws on the others' evidence as far as the lesions
        co-occur, so a normal cell that reads as changed on one arm, or that clusters with tumour
        cells, is not called while every other lesion says it is normal. With one lesion it is the
        per-lesion model exactly. False: each lesion's prior learned alone.
    n_folds
        Cross-fitting folds for reference cells (capped at the number of reference donors when
        folds are whole donors).
    seed
        Seed of the random fold assignment (only used for cell folds).
    min_mean
        Lesion genes are used when their reference mean is >= this many counts per cell at the
        median reference depth.
    shrinkage
        Pseudo-count of reference cells (at median depth) pulling a state profile to the pooled one.
    min_state_reference
        Reference cells a state needs (in a batch's reference) to be scored against its own
        profile. The cells of a state with fewer are scored as those of a state the reference lacks:
        against the pooled profile, with the level terms of ``unmatched_level_sd`` and
        ``unmatched_gene_spread``. With fewer cells than ``shrinkage`` a state's profile is mostly
        the pooled one anyway, but its cells would be taken as matched: on TNBC1 through the
        workflow, 114 breast tumour cells given the HSPC state HSC, which one reference cell had,
        were scored as if their state's reference described them (docs/robust_evidence.md,
        session 33). ``lesion_summary``'s reference notes name such states.
    outlier_fraction
        Prior share (0-1) of a cell's lesion genes expressed off the copy-number model: by an
        expression programme, a cell type the reference lacks, a dominant transcript. Each gene's
        count is modelled as a mixture of the negative binomial of the lesion hypothesis (weight
        ``1 - outlier_fraction``) and a broad component common to both hypotheses
        (:func:`remnant.tl.lesion_model._outlier_terms`), so one gene's evidence is bounded and a
        gene far from both hypotheses adds little: a copy-number change moves every gene of the
        interval by the same ratio, a programme moves some genes a lot. 0: the plain negative
        binomial (every gene's count taken at face value; a handful of strongly expressed
        programme genes can then decide a call).
    unmatched_level_sd
        sd (natural log; 0.1: about 10%) of the lesion interval's expression level in a cell of a
        state the reference lacks, beyond counting noise. Such a cell is scored against the pooled
        profile of other cell types, so its expected level is borrowed, not measured; without
        this term a deep cell's evidence grows with its counts although the anchor is no better
        than that, and a cell type whose interval sits 25% off reads as certainly changed or
        certainly not. Its LLR is divided by ``1 + sd**2 * I`` (``I``: its information on the
        interval's level, :func:`remnant.tl.lesion_model.level_information`). Cells of a state
        with reference cells are unaffected. 0: off.
    unmatched_gene_spread
        Also add, for those cells, what their cell type's genes say about the borrowed anchor: per
        ``prior_key`` group, the spread (natural log) of the interval's genes around the pooled
        profile in the group's summed counts, less counting noise
        (:func:`remnant.tl.lesion_model.gene_spread`; the median log ratio absorbs any copy-number
        change, which moves every gene alike). Averaged over a cell's genes with their
        information as weights it adds ``tau**2 * sum(w**2) / I**2`` to ``sd**2``: an interval of a few
        genes that dominate a cell's counts (e.g. 57 on 18p) is known far less well than one of
        hundreds. A group of the reference's own type measures ~0. False: ``sd`` alone.
    calibrate
        Divide LLRs by the temperature measured on cross-fitted reference cells (>= 1).
    min_batch_reference
        Reference cells a batch needs to be scored against its own batch.
    refine
        Re-score each donor (``donor_key``) on its own deleted interval: the part of the configured
        lesion (at least ``min_interval_genes`` genes) its carriers lost, read off the donor's cells
        pooled twice, weighted by their carrier posteriors and by the complements, each cell's
        weight for a gene without that gene's own evidence (:mod:`remnant.tl.intervals`): what all
        the donor's cells share (a disease programme, its alleles' expression, the sample's
        handling) cancels between the pools. A donor needs ``min_refine_cells`` expected carriers
        (the sum of its posteriors), and the interval must beat the whole configured region by more
        than chance (the 95th percentile of the same gain with the region's genes resampled in
        blocks along it); otherwise the donor keeps the configured region. Breakpoints vary between patients;
        genes a patient did not lose dilute the evidence of its carriers.
    refine_max_reference
        Reference cells (per batch; a seeded random sample, the same for every donor) that
        each donor's re-scoring on its own interval is cross-fitted against (``None``: all).
        Without a cap, refinement costs reference cells x donors, which grows with the square
        of the cohort when cohorts grow by patients; 10,000 cells give the state profiles and
        the false-positive rate (resolution 1e-4) of the refined interval to well within their
        other errors. The first pass always uses every reference cell.
    patient_levels
        Re-score each donor's cells against the reference's profiles times the donor's own level of
        each gene: a disease programme moves some genes in every cell of a patient, carriers and
        normal cells alike, and the reference does not know it (nor, with patients' cells as the
        reference, another patient's programme). The levels are read off all the donor's cells of
        the reference's states (the same pooling as ``refine``, both pools added, so no posterior
        enters) against each gene's local baseline, the level of its neighbours along the
        chromosome that no programme moved (:func:`remnant.tl.intervals.local_baseline`, 50 genes
        each side): a copy-number change is a step along the chromosome and stays in the baseline,
        so it is never read as a level, while a programme's scattered genes stand out from it. The
        levels are shrunk towards the baseline by the pool's fitted gene sd, with a broad component
        for programme genes. Only for donors with at least 30 cells of those states whose genes lie
        within sd 0.8 (natural log) of the reference (a type the reference lacks spreads wider and
        is left as it is); the donors read so are ``own_levels`` in ``uns[...]["intervals"]``.
        Cells of a state the reference lacks are not re-levelled.
    fit_copy_ratio
        Fit each donor's copy ratio of each lesion, where it has at least :data:`RATIO_MIN_CARRIERS`
        expected carriers: among the lesion's ``copy_ratio`` and those of :data:`RATIO_STEPS` between
        it and 1 (one copy of three or four lost, one gained on three or four), the ratio whose
        two-component mixture of the donor's cells fits best, where it beats the configured one by
        :data:`RATIO_MIN_GAIN` nats; its cells are re-scored at that ratio. Against an aneuploid
        tumour's own depth a lost arm reads at (n - 1) / n of its n copies: a near-triploid tumour's
        at 2/3, where a model of 1/2 leaves each cell undecided and the clusters' fractions low.
        Keep ``depth_genes``' median baseline (the default): against a sum the tumour's gains
        inflated, an unchanged arm of an aneuploid tumour reads low enough for a ratio near 1 to
        call it. ``uns[...]["intervals"]`` gets each donor's ``copy_ratio`` and ``ratio_gain``.
    cluster_null
        Read each prior group's non-carrier null off its own cells where they show two populations
        (:mod:`remnant.tl.cluster_null`: a subclone among cells a programme or their cell type moves
        on the interval, whose non-carriers' LLRs then sit above the model's null): that group's LLRs
        are mapped so its lower population reads as no change and its upper as the configured ratio;
        groups of one population, or whose lower one sits on the model's null or below it, are left as
        they are.
        On a planted subclone in real tumour cells at 4,400 UMI it took the fraction's error from
        0.135 to 0.055 (docs/robust_evidence.md, session 38); on by default since session 39, when
        the simulator's seeds 0-5 (64 runs, clones 1-100%, with and without confounders) and TNBC1
        thinned to 2,200-17,300 UMI read as without it, every figure. ``obs[f"{name}_llr"]`` holds the
        mapped LLRs; ``uns[...]["cluster_null"]`` one row per group fitted
        (:func:`remnant.tl.cluster_null.map_cluster_nulls`).
    chunk_size
        Rows per dense block of (profile, depth) pairs x lesion genes; the counts are visited in
        blocks of ``256 * chunk_size`` cells. Small blocks stay in the CPU cache (256 x 1,000 genes
        x float64 = 2 MB): scoring 91,335 cells took 2.6 s in blocks of 2,000 and 1.6 s in blocks
        of 200, with identical results.
    depth
        float64 (n_obs,) each cell's depth on the genes :func:`lesion_columns` offers (all
        autosomal genes with the median baseline), computed beforehand, e.g. while streaming the cohort file
        (:func:`read_lesion_counts`). ``None``: computed from the counts of ``adata``, which must
        then hold every gene.
    depth_genes
        The genes the depth leaves out (:class:`remnant.tl.depth.DepthGenes`; ``None``: the
        default, every named gene family and each sample's top 1% of genes left out, each cell's
        depth the median over blocks of the genome, and each sample's depth scaled to the reference,
        :func:`remnant.tl.depth.depth_scales`; ``DepthGenes.plain()``: none of these, a plain sum). Samples whose 10 most-expressed genes hold more than 30%
        of their counts are reported (a WARNING). With ``depth`` given it only goes on record in
        ``params`` (pass the spec the depth was counted with, as the workflow does).

    Writes
    ------
    ``obs["clone_posterior"]`` (float, 0-1; under ``clone_prior`` with two or more lesions, else
    absent): each cell's probability of belonging to the malignant clone from all its lesions'
    evidence (expression; CopyKAT's aneuploid-or-not, as a probability).
    ``obs[f"{name}_posterior"]`` (float, 0-1), ``obs[f"{name}_llr"]`` (float, natural log, after
    tempering), ``obs[f"{name}_call"]`` (bool), ``obs[f"{name}_n_genes"]`` (int, lesion genes with
    nonzero expectation). ``uns["lesions"][name]``: ``per_sample`` DataFrame (batch, n_cells,
    n_reference, prior, n_called, fpr, fnr, temperature, count_scale, reference_matched);
    ``per_group`` DataFrame (sample, group, n_cells, prior, strength (the pseudo-cells of the pull
    towards the sample's prior), clone and q (under ``clone_prior``: the group's clone fraction and
    the lesion's fraction among clone cells, prior = clone * q; NaN otherwise), n_called, fpr: the
    priors the cells were called with);
    ``batches`` DataFrame (per batch: n_cells, n_reference, reference_matched, fold_mode, n_folds,
    n_reference_donors (-1: donors unknown), n_genes, temperature, count_scale); ``reference_notes``
    DataFrame (batch, kind, detail, note: what the reference could not give a batch - one reference
    donor, states without reference cells, a batch without its own reference; each also logged as
    a WARNING; no rows when none applies); ``intervals`` DataFrame (per donor with cells outside
    the reference: donor, n_called, expected_carriers (sum of posteriors), refined, start, end (bp),
    n_genes, gain (nats, the pools' log-likelihood ratio of the interval lost; NaN where not
    refined), carrier_share and normal_share (the fitted share of carriers in the donor's carrier and
    normal pools), gene_sd (the fitted sd, natural log, of a gene's level in the donor around the
    reference), trim_gain (nats the best interval gains over the whole configured region) and
    trim_threshold (what chance gives, :func:`remnant.tl.intervals.trim_threshold`); NaN where not
    fitted; level_sd (the fitted sd, natural log, of its genes' levels around the reference's over all
    its cells of the reference's states: above :data:`LEVEL_MAX_SD` its levels are not read; NaN where
    not measured) and own_levels (its cells re-scored against its own gene levels, ``patient_levels``);
    copy_ratio and ratio_gain (``fit_copy_ratio``: the ratio its cells were scored at, and the nats its
    mixture gained over the configured one's; NaN where not fitted); no rows without ``refine``,
    ``patient_levels`` and ``fit_copy_ratio``); ``genes`` (var_names of the genes used in any batch);
    ``reference_fpr`` (called fraction of cross-fitted reference cells with their own sample prior);
    ``lesion`` (the :class:`Lesion` as a dict) and ``params`` (the arguments, ``n_reference``, and the depth's
    settings: ``depth`` "counted" or "given (depth=...)", ``depth_exclude_families`` and
    ``depth_exclude_patterns`` (comma-separated), ``depth_n_exclude_genes``, ``depth_trim_top_fraction``,
    ``depth_scale_to_reference``; a given depth was counted elsewhere, e.g. by :func:`read_lesion_counts`,
    whose settings these are only where the same ``depth_genes`` were passed to both). ``fpr`` of a group is the share of cross-fitted reference cells (of its
    batch's reference) that would be called with that group's prior; ``fpr`` of a sample is its
    groups' rates weighted by their expected non-carriers (``n_cells * (1 - prior)``), the rate
    that applies to the calls made; ``prior`` of a sample is the fraction learned from all its
    cells; ``fnr`` is the posterior-expected share of carriers below the cut-off.

    Examples
    --------
    >>> import remnant as rm
    >>> cytobands = rm.io.load_cytobands("resources/annotation/GRCh38_cytobands.tsv")
    >>> lesions = rm.tl.parse_lesions([{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}], cytobands)
    >>> rm.tl.call_lesions(adata, lesions, reference="is_reference")  # doctest: +SKIP
    >>> adata.obs[["del5q_posterior", "del5q_call"]]  # doctest: +SKIP
    """
    X = counts_matrix(adata, layer, "call_lesions")
    require_positions(adata.var, "call_lesions")
    batch_key = effective_batch_key(adata.obs, batch_key)
    prior_key = state_key if prior_key is None else prior_key
    require_obs(adata.obs, (state_key, sample_key, prior_key) + ((batch_key,) if batch_key else ()), "call_lesions")
    if not prior_strength >= 0:
        raise InputError(f"prior_strength must be >= 0 (got {prior_strength}).", where="call_lesions")
    if not lesions:
        raise InputError("no lesions to call.", where="call_lesions(lesions=...)")
    if not 0 < posterior_cutoff < 1:
        raise InputError("posterior_cutoff must be between 0 and 1.", where="call_lesions")
    if not 0 <= outlier_fraction < 1:
        raise InputError(f"outlier_fraction must be in [0, 1) (got {outlier_fraction}).", where="call_lesions")
    if not min_state_reference >= 0:
        raise InputError(f"min_state_reference must be >= 0 (got {min_state_reference}).", where="call_lesions")
    if not 0 <= unmatched_level_sd < np.inf:
        raise InputError(f"unmatched_level_sd must be >= 0 (got {unmatched_level_sd}).", where="call_lesions")
    ref = cell_mask(adata, reference, "reference", "call_lesions")
    if ref.sum() < 10:
        raise InputError(
            f"only {int(ref.sum())} reference cells; need at least 10.", where="call_lesions(reference=...)"
        )
    given_depth = depth is not None
    groups = None if given_depth else obs_depth_groups(adata.obs, sample_key, state_key, ref, "call_lesions")
    XU, var, depth = lesion_counts(X, adata.var, lesions, depth, "call_lesions", groups=groups, depth_genes=depth_genes)
    cohort = _cohort(
        adata.obs,
        ref,
        depth,
        state_key=state_key,
        sample_key=sample_key,
        prior_key=prior_key,
        donor_key=donor_key,
        batch_key=batch_key,
        n_folds=n_folds,
        seed=seed,
        min_batch_reference=min_batch_reference,
        min_state_reference=min_state_reference,
        refine_max_reference=refine_max_reference,
    )
    params = {
        "state_key": state_key,
        "sample_key": sample_key,
        "donor_key": donor_key or "",
        "batch_key": batch_key or "",
        "posterior_cutoff": posterior_cutoff,
        "prior_key": prior_key,
        "prior_strength": float(prior_strength),
        "n_folds": int(n_folds),
        "seed": seed,
        "min_mean": min_mean,
        "shrinkage": shrinkage,
        "min_state_reference": int(min_state_reference),
        "outlier_fraction": float(outlier_fraction),
        "unmatched_level_sd": float(unmatched_level_sd),
        "unmatched_gene_spread": bool(unmatched_gene_spread),
        "calibrate": calibrate,
        "min_batch_reference": int(min_batch_reference),
        "refine": refine,
        "min_refine_cells": int(min_refine_cells),
        "min_interval_genes": int(min_interval_genes),
        "refine_max_reference": -1 if refine_max_reference is None else int(refine_max_reference),
        "patient_levels": bool(patient_levels),
        "fit_copy_ratio": bool(fit_copy_ratio),
        "cluster_null": bool(cluster_null),
        "n_reference": int(ref.sum()),
        **_depth_params(depth_genes, given=given_depth),
    }
    if fit_copy_ratio and not _median_baseline(depth_genes):
        log.warning(
            "fit_copy_ratio with the depth's sum baseline: an aneuploid tumour's gains inflate its depth, its unchanged "
            "arms then read low and a ratio near 1 can call them; give depth_genes a median baseline "
            '(DepthGenes(baseline="median"))'
        )
    notes = _reference_notes(adata.obs[state_key], cohort, min_batch_reference, min_state_reference)
    for note in notes["note"]:
        log.warning("%s", note)
    for lesion in lesions:
        _check_y_reference(XU, var, lesion, cohort)
        if lesion.chromosome == "chrX":
            log.warning(X_NOTE, lesion.name)
    options = {
        "posterior_cutoff": posterior_cutoff,
        "prior_strength": prior_strength,
        "calibrate": calibrate,
        "refine": refine,
        "patient_levels": patient_levels,
        "fit_copy_ratio": fit_copy_ratio,
        "cluster_null": cluster_null,
        "min_refine_cells": min_refine_cells,
        "min_interval_genes": min_interval_genes,
    }
    score = {
        "min_mean": min_mean,
        "shrinkage": shrinkage,
        "chunk_size": chunk_size,
        "outlier_fraction": outlier_fraction,
        "unmatched_level_sd": unmatched_level_sd,
        "gene_spread": bool(unmatched_gene_spread),
        "separation": bool(cluster_null),
    }
    scored = [
        _score_lesion(XU, var, lesion, cohort, **options, score={**score, "rho": lesion.copy_ratio})
        for lesion in lesions
    ]
    if CLONE_KEY in adata.obs:  # a previous call's, which this one may not replace
        del adata.obs[CLONE_KEY]
    if clone_prior and len(scored) > 1:
        results, adata.obs[CLONE_KEY] = _with_clone_prior(scored, cohort, prior_strength, posterior_cutoff)
    else:
        results = [(s, _lesion_fpr(s.scores, cohort, posterior_cutoff)) for s in scored]
    uns = adata.uns.setdefault("lesions", {})
    new = {}
    for s, fpr_of in results:
        columns, uns[s.lesion.name] = _lesion_result(s, cohort, posterior_cutoff, fpr_of)
        new.update({f"{s.lesion.name}_{key}": values for key, values in columns.items()})
        uns[s.lesion.name]["params"] = {**params, "clone_prior": bool(clone_prior and len(scored) > 1)}
        uns[s.lesion.name]["reference_notes"] = notes.copy()
    # all lesions' columns joined at once: one column at a time fragments obs (pandas warns from ~100)
    kept = adata.obs.drop(columns=[k for k in new if k in adata.obs])
    adata.obs = pd.concat([kept, pd.DataFrame(new, index=adata.obs.index)], axis=1)


def _depth_params(depth_genes: DepthGenes | None, *, given: bool) -> dict:
    """The depth's settings as ``params`` entries (strings and numbers, so the h5ad keeps them):
    where the depth came from and which genes it leaves out."""
    spec = (DepthGenes() if depth_genes is None else depth_genes).checked("call_lesions")
    return {
        "depth": "given (depth=...)" if given else "counted",
        "depth_exclude_families": ", ".join(spec.exclude_families),
        "depth_exclude_patterns": ", ".join(spec.exclude_patterns),
        "depth_n_exclude_genes": len(spec.exclude_genes),
        "depth_trim_top_fraction": float(spec.trim_top_fraction),
        "depth_scale_to_reference": bool(spec.scale_to_reference),
        "depth_baseline": str(spec.baseline),
    }


def _score_lesion(
    XU: sp.csr_matrix,
    var: pd.DataFrame,
    lesion: Lesion,
    cohort: _Cohort,
    *,
    posterior_cutoff: float,
    prior_strength: float,
    calibrate: bool,
    refine: bool,
    patient_levels: bool,
    fit_copy_ratio: bool,
    cluster_null: bool,
    min_refine_cells: int,
    min_interval_genes: int,
    score: dict,
) -> _Scored:
    """One lesion scored on its own: tempered LLRs, each donor's interval (refined on the posteriors
    of this lesion alone) and the per-lesion priors. ``XU``: cells x the lesions' genes (``var``);
    ``score``: :func:`score_rows`'s options."""
    # the lesion's genes in genomic order, for the interval scan
    cols = np.flatnonzero(genes_in(var, lesion))
    cols = cols[np.argsort(var["start"].to_numpy(np.int64)[cols], kind="stable")]
    XL = sp.csr_matrix(XU[:, cols], dtype=np.float64)
    scores = _score_batches(XL, lesion, cohort, score, calibrate)
    post, priors, groups = group_posteriors(scores.llr, cohort.samples, cohort.prior_groups, prior_strength)
    # Each patient's own deleted interval (inside the configured one) from its called cells;
    # its cells (and the reference, for its false-positive rate) are re-scored on those genes
    # only, so genes the patient did not lose neither dilute the evidence nor bias the prior;
    # and against its own genes' levels (a programme), read off its cells that carry nothing.
    intervals = []
    if (refine or patient_levels or fit_copy_ratio) and cohort.donors is not None:
        intervals = _rescore_donors(
            XL,
            var.iloc[cols],
            lesion,
            np.where(cohort.ref, 0.0, post),
            cohort,
            scores,
            score,
            calibrate,
            _DonorLimits(
                posterior_cutoff, min_refine_cells, min_interval_genes, refine, patient_levels, fit_copy_ratio
            ),
        )
        post, priors, groups = group_posteriors(scores.llr, cohort.samples, cohort.prior_groups, prior_strength)
        _warn_unlevelled(lesion.name, intervals)
    if cluster_null:
        # each group's null read off its own cells where they show two populations (remnant.tl.cluster_null)
        scores.llr, scores.null_map = map_cluster_nulls(
            scores.llr, scores.separation, cohort.samples, cohort.prior_groups, cohort.ref
        )
        post, priors, groups = group_posteriors(scores.llr, cohort.samples, cohort.prior_groups, prior_strength)
    genes = np.asarray(var.index[cols[scores.used]], dtype=str)
    return _Scored(lesion, scores, intervals, genes, post, priors, groups)


def _warn_unlevelled(name: str, intervals: list[dict]) -> None:
    """One WARNING per lesion naming the patients whose genes spread too wide around the
    reference's for their own levels to be read (``level_sd`` above :data:`LEVEL_MAX_SD`)."""
    wide = [f"{e['donor']} (sd {e['level_sd']:.2f})" for e in intervals if e["level_sd"] > LEVEL_MAX_SD]
    if wide:
        log.warning(
            "%s: the genes of patient(s) %s spread around the reference's wider than a disease programme moves "
            "them (sd above %g, natural log), as cells of a type the reference lacks do: their cells were scored "
            "without their own gene levels, so a programme of theirs inside the lesion can read as copy number; "
            "add reference cells of their cell type, or read their calls with care.",
            name,
            ", ".join(wide),
            LEVEL_MAX_SD,
        )


def _lesion_result(scored: _Scored, cohort: _Cohort, posterior_cutoff: float, fpr_of) -> tuple[dict, dict]:
    """One lesion's obs columns (``posterior``, ``llr``, ``call``, ``n_genes``; (n_obs,) each,
    prefixed with the lesion's name when written) and its ``uns["lesions"]`` entry but the
    parameters, from its posteriors and priors (``scored``: per lesion, or replaced by the clone
    model's); ``fpr_of(group row, mask)``: the share of reference cells the group would call."""
    post, scores = scored.post, scored.scores
    call = post >= posterior_cutoff
    per_group = _per_group(post, scored.groups, cohort, posterior_cutoff, fpr_of)
    columns = {"posterior": post, "llr": scores.llr, "call": call, "n_genes": scores.n_genes}
    return columns, {
        "lesion": dict(asdict(scored.lesion).items()),
        "per_sample": _per_sample(post, scored.priors, per_group, cohort, scores, posterior_cutoff),
        "per_group": per_group,
        "batches": scores.batches,
        "intervals": pd.DataFrame(
            scored.intervals,
            columns=list(_INTERVAL_COLUMNS),
        ),
        "genes": scored.genes,
        "reference_fpr": float(call[cohort.ref].mean()),
    } | ({} if scores.null_map is None else {"cluster_null": scores.null_map})


def _lesion_fpr(scores: _Scores, cohort: _Cohort, posterior_cutoff: float):
    """``fpr_of`` of one lesion scored alone: its reference cells' LLRs above the group prior's bar."""
    logit_cut = np.log(posterior_cutoff / (1 - posterior_cutoff))

    def fpr_of(row, m: np.ndarray) -> float:  # m: the group's cells (indices or mask)
        pi = row["prior"]
        return float(np.mean(_reference_llr(scores, cohort, m) >= logit_cut - np.log(pi / (1 - pi))))

    return fpr_of


def _with_clone_prior(
    scored: list[_Scored], cohort: _Cohort, prior_strength: float, posterior_cutoff: float
) -> tuple[list, np.ndarray]:
    """The lesions' posteriors and priors under the clone model (:mod:`remnant.tl.clone_prior`),
    each with its ``fpr_of`` (the group's reference cells called on their LLRs of every lesion), and
    each cell's probability of belonging to the clone ((n_obs,))."""
    llr = np.column_stack([s.scores.llr for s in scored])
    post, fits, groups, clone = clone_posteriors(
        llr, cohort.samples, cohort.prior_groups, prior_strength, cohort.donors
    )
    out = []
    for k, s in enumerate(scored):
        q_k = groups["q"].map(lambda q, k=k: q[k])
        table = groups[["sample", "group", "n_cells"]].assign(
            prior=groups["clone"] * q_k, strength=groups["strength"], clone=groups["clone"], q=q_k
        )
        priors = {smp: m * q[k] for smp, (m, q) in fits.items()}
        out.append(
            (
                _Scored(s.lesion, s.scores, s.intervals, s.genes, post[:, k], priors, table),
                _clone_fpr(scored, k, groups, cohort, posterior_cutoff),
            )
        )
    return out, clone


def _clone_fpr(scored: list[_Scored], k: int, groups: pd.DataFrame, cohort: _Cohort, posterior_cutoff: float):
    """``fpr_of`` of lesion ``k`` under the clone model: the group's fractions (``groups``: the clone
    model's rows, ``q`` over every lesion) applied to its reference cells' LLRs of every lesion (the
    donor's refined ones where they cover the same cells as the batch's)."""
    fractions = {
        (smp, grp): (m, q) for smp, grp, m, q in groups[["sample", "group", "clone", "q"]].itertuples(index=False)
    }

    def fpr_of(row, m: np.ndarray) -> float:
        b = cohort.batch[m][0]
        base = [s.scores.reference_llr[(b, None)] for s in scored]
        own = [_reference_llr(s.scores, cohort, m) for s in scored]
        R = np.column_stack([o if o.size == r.size else r for o, r in zip(own, base, strict=True)])
        clone, q = fractions[(row["sample"], row["group"])]
        return float(np.mean(lesion_posteriors(R, clone, q)[:, k] >= posterior_cutoff))

    return fpr_of


def _reference_notes(
    states: pd.Series, cohort: _Cohort, min_batch_reference: int, min_state_reference: int
) -> pd.DataFrame:
    """What the reference could not give each batch, in words a user can act on: one row per fact
    (``batch``, ``kind``, ``detail``, ``note``).

    Kinds: ``cell_folds`` (fewer than two reference donors, or none named, so cross-fitting used
    random cells and the false-positive rate is measured on the reference's own donor), ``states_without_reference``
    (states of the batch's cells with no reference cell, or fewer than ``min_state_reference``;
    scored against the pooled profile) and
    ``unmatched_batch`` (too few reference cells of the batch's own; scored against all batches').
    ``states``: the annotated state of every cell (n_obs,)."""
    state = states.astype(str).where(states.notna(), "").to_numpy()
    rows = []
    for u in cohort.units:
        ref_rows = u.rows[u.fold >= 0]
        where = f"batch {u.batch}: " if len(cohort.units) > 1 else ""
        ref_donors = set() if cohort.donors is None else set(cohort.donors[ref_rows])
        # random cell folds over two donors or more are a choice (the patients' own normal cells, see
        # assign_folds), not a lack
        if u.fold_mode != "donor" and len(ref_donors) < 2:
            if cohort.donors is None:
                detail, who = "", "the reference cells' donors are not known (no donor column)"
            else:
                detail = ", ".join(sorted(ref_donors))
                who = f"only one reference donor ({detail})"
            rows.append(
                (
                    u.batch,
                    "cell_folds",
                    detail,
                    f"{where}{who}: cross-fitting used random cell folds, so the false-positive rate and the "
                    "calibration are measured on cells of the same donor(s) as the reference profile and may be "
                    "optimistic for other people's cells; add reference cells of a second healthy donor (and "
                    "name each cell's donor) to measure them across donors.",
                )
            )
        cells = pd.Series(state[u.rows[u.own & (u.s_idx < 0)]])
        missing = cells[~cells.isin({"", "nan"})].value_counts()
        if len(missing):
            n_ref = pd.Series(state[ref_rows]).value_counts()
            detail = ", ".join(f"{s} ({n} cells, {int(n_ref.get(s, 0))} reference)" for s, n in missing.items())
            rows.append(
                (
                    u.batch,
                    "states_without_reference",
                    ", ".join(missing.index),
                    f"{where}no reference cells, or fewer than {min_state_reference}, of state(s) {detail}: these "
                    "cells were scored against the pooled profile of all reference states, so expression that sets "
                    "their state apart can read as copy number; add reference cells of these states, or read their "
                    "calls with care.",
                )
            )
        if not u.matched:
            own = int((cohort.ref & (cohort.batch == u.batch)).sum())
            rows.append(
                (
                    u.batch,
                    "unmatched_batch",
                    str(own),
                    f"{where}only {own} reference cells of its own ({min_batch_reference} needed): it was scored "
                    f"against the {ref_rows.size} reference cells of all batches, so its count scale, calibration "
                    "and false-positive rate are measured on other batches and may not hold for it; add "
                    "reference cells of this batch (e.g. healthy donors measured the same way).",
                )
            )
    return pd.DataFrame(rows, columns=["batch", "kind", "detail", "note"], dtype=str)


#: Logged for a lesion on chrX (docs/robust_evidence.md, session 40: on the oligodendroglioma set +X reads in most
#: tumour cells of women and men alike, with no truth for chrX there).
X_NOTE = (
    "%s is on chrX: a cell expresses one X whatever its number of copies (X inactivation), so the gain or loss of "
    "an inactive X moves only the genes that escape inactivation, while a programme of the cells' type on X reads "
    "like a gain; check its calls against another measure (FISH, karyotype)"
)

#: counts per count of depth on a chrY lesion's genes below which a batch's reference holds no male cell: on the 7
#: chrY genes of the oligodendroglioma set each man's cells pool 9.8e-4 to 1.4e-3, each woman's 2.7e-6 to 1.5e-5
#: (cross-mapped reads of X homologues); TNBC1 (a woman) holds 9e-7 of its counts on its 88 chrY genes
Y_MALE_LEVEL = 5e-5
#: a reference donor whose pooled counts on a chrY lesion's genes, per count of depth, are below this share of the
#: most expressing reference donor's reads as a female donor (on the oligodendroglioma set the two women's cells
#: sit at 0.000-0.010 of the top donor's level, the men's at 0.53-1: cross-mapped reads of X homologues remain)
Y_SILENT = 0.1


def _check_y_reference(XU: sp.csr_matrix, var: pd.DataFrame, lesion: Lesion, cohort: _Cohort) -> None:
    """For a chrY lesion, raise InputError unless each batch's reference donors (or samples, without donors) are
    men: a batch with no male cell (below :data:`Y_MALE_LEVEL`) cannot be scored, and a donor below
    :data:`Y_SILENT` of the most expressing donor's level (a woman, or a man who lost Y) reads, cross-fitted
    against the men, as a complete loss, which sets the calibration (on the demo cohort, two women among three
    healthy donors took the temperature to 2,000,000 and every cell's LLR to 0) and pulls the profile down."""
    if lesion.chromosome != "chrY":
        return
    on_y = np.asarray(XU[:, genes_in(var, lesion)].sum(axis=1)).ravel()
    who = np.asarray(cohort.samples if cohort.donors is None else cohort.donors).astype(str)
    for u in cohort.units:
        ref_rows = u.rows[u.fold >= 0]
        frame = pd.DataFrame({"y": on_y[ref_rows], "depth": cohort.depth[ref_rows]}, index=who[ref_rows])
        pooled = frame.groupby(level=0).sum()
        level = pooled["y"] / pooled["depth"].clip(lower=1e-12)
        batch = f" of batch {u.batch!r}" if len(cohort.units) > 1 else ""
        if not level.max() >= Y_MALE_LEVEL:
            raise InputError(
                f"lesion {lesion.name} is on chrY, but the reference cells{batch} hold {1e4 * level.max():.3f} "
                "counts per 10,000 on its genes (men's cells about 10): no male donor among them, and only male "
                "cells hold chrY; give male reference donors"
                + (" of this batch (its technology)" if len(cohort.units) > 1 else "")
                + ", or leave the chrY lesion out.",
                where="call_lesions",
            )
        silent = level[level < Y_SILENT * level.max()] / level.max()
        if len(silent):
            names = ", ".join(f"{d} ({v:.3f} of the top donor's level)" for d, v in silent.items())
            men = ", ".join(level.index[level >= Y_SILENT * level.max()])
            raise InputError(
                f"lesion {lesion.name} is on chrY, but reference donor(s){batch} {names} hardly express its genes "
                f"where {men} do (women, or men who lost chrY): against the men their cells read as a complete "
                "loss, which would set the calibration and wipe out every cell's evidence; give a chrY lesion "
                f"male reference donors only ({men}), or leave it out.",
                where="call_lesions",
            )


def effective_batch_key(obs: pd.DataFrame, batch_key: str | None) -> str | None:
    """``batch_key``, or ``None`` for the default ``"technology"`` when obs lacks it (one batch)."""
    return None if batch_key == "technology" and batch_key not in obs else batch_key


def require_obs(obs: pd.DataFrame, keys, where: str) -> None:
    """Raise InputError naming the first of ``keys`` that is not an obs column."""
    for key in keys:
        if key not in obs:
            raise InputError(f"obs lacks column {key!r}.", where=where)


def _cohort(
    obs: pd.DataFrame,
    ref: np.ndarray,
    depth: np.ndarray,
    *,
    state_key: str,
    sample_key: str,
    prior_key: str,
    donor_key: str | None,
    batch_key: str | None,
    n_folds: int,
    seed: int,
    min_batch_reference: int,
    min_state_reference: int,
    refine_max_reference: int | None,
) -> _Cohort:
    """The per-cell arrays of obs that scoring uses, and one scoring unit per batch."""
    n = len(obs)
    # states: integer codes of the reference states; other cells use the pooled profile (-1)
    state = obs[state_key].astype(str).where(obs[state_key].notna(), "").to_numpy()
    donors = obs[donor_key].astype(str).to_numpy() if donor_key and donor_key in obs else None
    batch = obs[batch_key].astype(str).to_numpy() if batch_key else np.full(n, "all", dtype=object)
    samples = obs[sample_key].astype(str).to_numpy()
    units = [
        _unit(
            b,
            ref,
            state,
            donors,
            samples,
            batch,
            n_folds,
            seed,
            (min_batch_reference, min_state_reference),
            refine_max_reference,
        )
        for b in pd.unique(batch)
    ]
    groups = obs[prior_key].astype(str).where(obs[prior_key].notna(), "").to_numpy()
    codes = pd.factorize(groups)[0].astype(np.int64)
    return _Cohort(depth, ref, samples, groups, codes, batch, donors, units)


def _unit(
    b: str,
    ref: np.ndarray,
    state: np.ndarray,
    donors: np.ndarray | None,
    samples: np.ndarray,
    batch: np.ndarray,
    n_folds: int,
    seed: int,
    min_reference: tuple[int, int],
    refine_max_reference: int | None,
) -> _Unit:
    """Batch ``b``'s scoring unit: its cells and its own reference cells when it has at least
    ``min_batch_reference`` of them, else every reference cell; folds and state codes of those
    (states with at least ``min_state_reference`` of those reference cells; ``min_reference``:
    the two)."""
    min_batch_reference, min_state_reference = min_reference
    cells = np.flatnonzero(batch == b)
    own_ref = np.flatnonzero(ref & (batch == b))
    # a batch holding every reference cell is scored against its own, however few
    matched = own_ref.size >= min_batch_reference or own_ref.size == int(ref.sum())
    ref_rows = own_ref if matched else np.flatnonzero(ref)
    rows = np.union1d(cells, ref_rows)
    is_ref = np.isin(rows, ref_rows)
    fold = np.full(rows.size, -1, dtype=np.int64)
    # reference cells whose sample holds cells that are scored, not reference (assign_folds)
    # against the distinct names: np.isin of two long object arrays is quadratic (29 s at 91k cells)
    shared = np.isin(samples[rows[is_ref]], pd.unique(samples[cells[~ref[cells]]]))
    fold[is_ref], k, fold_mode = assign_folds(rows[is_ref], donors, n_folds, seed, shared)
    # a state with a handful of reference cells has no profile of its own worth matching its cells to
    n_ref = pd.Series(state[rows[is_ref]]).value_counts()
    ref_states = sorted(set(n_ref.index[n_ref >= max(int(min_state_reference), 1)]) - {"", "nan"})
    code = {s: i for i, s in enumerate(ref_states)}
    s_idx = np.array([code.get(s, -1) for s in state[rows]], dtype=np.int64)
    refine_reference = fold >= 0
    if refine_max_reference is not None and refine_reference.sum() > refine_max_reference:
        keep = np.random.default_rng([int(seed), 7]).choice(
            np.flatnonzero(refine_reference), int(refine_max_reference), replace=False
        )
        refine_reference = np.zeros(rows.size, bool)
        refine_reference[keep] = True
    return _Unit(
        b, cells, rows, fold, k, fold_mode, matched, s_idx, len(ref_states), refine_reference, np.isin(rows, cells)
    )


def _with_groups(kw: dict, cohort: _Cohort, rows: np.ndarray) -> dict:
    """:func:`score_rows`'s options for ``rows``: ``gene_spread`` becomes their prior groups' codes (or none);
    ``separation`` (whether each cell's expected separation is wanted, for ``cluster_null``) is not one."""
    out = {key: value for key, value in kw.items() if key not in ("gene_spread", "separation")}
    out["groups"] = cohort.group_codes[rows] if kw.get("gene_spread") else None
    return out


def _score_batches(XL: sp.csr_matrix, lesion: Lesion, cohort: _Cohort, kw: dict, calibrate: bool) -> _Scores:
    """Score every batch's cells on the lesion's genes (``XL``: n_obs x genes, float64), tempered."""
    n = XL.shape[0]
    scores = _Scores(np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(XL.shape[1], bool), {}, {}, None, np.zeros(n))
    batch_rows = []
    for u in cohort.units:
        rows = u.rows
        res = score_rows(
            XL[rows], cohort.depth[rows], u.s_idx, u.n_states, u.fold, u.k, **_with_groups(kw, cohort, rows)
        )
        if not res["use"].any():
            raise InputError(
                f"lesion {lesion.name}: no gene inside {lesion.region} reaches min_mean={kw['min_mean']} "
                f"in the reference cells of batch {u.batch!r}; lower min_mean or widen the region.",
                where="call_lesions",
            )
        scores.used |= res["use"]
        is_ref = u.fold >= 0
        t = temperature(res["z"][is_ref], calibrate)
        llr_rows = res["llr"] / t
        # write the batch's own cells; reference cells borrowed from another batch are scored there
        scores.llr[rows[u.own]] = llr_rows[u.own]
        if kw.get("separation"):
            scores.separation[rows[u.own]] = separation(res, cohort.depth[rows], kw["rho"], t, is_ref)[u.own]
        scores.n_genes[rows[u.own]] = res["n_genes"][u.own]
        scores.reference_llr[(u.batch, None)] = llr_rows[is_ref]
        scores.fits[u.batch] = res
        batch_rows.append(
            {
                "batch": u.batch,
                "n_cells": int(u.cells.size),
                "n_reference": int(is_ref.sum()),
                "reference_matched": bool(u.matched),
                "fold_mode": u.fold_mode,
                "n_folds": int(u.k),
                "n_reference_donors": -1 if cohort.donors is None else len(set(cohort.donors[rows[is_ref]])),
                "n_genes": int(res["use"].sum()),
                "temperature": t,
                "count_scale": float(res["count_scale"]),
            }
        )
    scores.batches = pd.DataFrame(batch_rows).set_index("batch")
    return scores


#: Columns of ``uns["lesions"][name]["intervals"]`` (one row per donor).
_INTERVAL_COLUMNS = (
    "donor",
    "n_called",
    "expected_carriers",
    "refined",
    "start",
    "end",
    "n_genes",
    "gain",
    "carrier_share",
    "normal_share",
    "gene_sd",
    "trim_gain",
    "trim_threshold",
    "level_sd",
    "own_levels",
    "copy_ratio",
    "ratio_gain",
)


@dataclass(frozen=True)
class _DonorLimits:
    """:func:`call_lesions`' settings of each donor's re-scoring: the posterior cut-off (for ``n_called``),
    the expected carriers a donor needs for its interval, the fewest genes of an interval, and whether
    intervals are fitted (``refine``), donors' own gene levels read (``levels``) and their copy
    ratios fitted (``fit_ratio``, :func:`_donor_ratio`)."""

    posterior_cutoff: float
    min_refine_cells: int
    min_interval_genes: int
    refine: bool
    levels: bool
    fit_ratio: bool = False


def _rescore_donors(
    XL: sp.csr_matrix,
    var: pd.DataFrame,
    lesion: Lesion,
    post: np.ndarray,
    cohort: _Cohort,
    scores: _Scores,
    kw: dict,
    calibrate: bool,
    limits: _DonorLimits,
) -> list[dict]:
    """Each donor's own interval inside the lesion, its own gene levels and copy ratio, and its cells
    re-scored on them (``scores`` updated); one row per donor for ``uns[...]["intervals"]`` (:data:`_INTERVAL_COLUMNS`).

    The interval is read off the donor's leave-gene-out carrier and normal pools
    (:func:`_pool_parts`, :mod:`remnant.tl.intervals`) weighted by ``post`` ((n_obs,), 0 for
    reference cells): the expected carriers, as in an EM step, rather than only the cells above the
    cut-off, so a donor with a few dozen carriers that are each too shallow to be called still has
    its own interval found; the levels off all its cells (:func:`_donor_levels`); with
    ``limits.fit_ratio`` its copy ratio (:func:`_donor_ratio`). ``var``: the lesion's genes, the
    columns of ``XL`` (genomic order).
    """
    intervals = []
    donors = cohort.donors
    for d in pd.unique(donors[~cohort.ref]):
        w = np.where(donors == d, post, 0.0)
        entry = dict.fromkeys(_INTERVAL_COLUMNS, np.nan) | {
            "donor": d,
            "n_called": int((w >= limits.posterior_cutoff).sum()),
            "expected_carriers": float(w.sum()),
            "refined": False,
            "n_genes": 0,
        }
        intervals.append(entry)
        # the donor's pools, built once if the levels or the interval need them
        parts = functools.cache(lambda d=d: _pool_parts(XL, post, d, cohort, scores, kw))
        levels = _donor_levels(parts, kw, lesion.copy_ratio, XL.shape[1], entry) if limits.levels else None
        entry["own_levels"] = levels is not None
        gene_mask = None
        if limits.refine and w.sum() >= limits.min_refine_cells:
            gene_mask = _donor_interval(_as_pools(*parts()), var, lesion, d, limits, entry, kw["outlier_fraction"])
        mask = np.ones(XL.shape[1], bool) if gene_mask is None else gene_mask
        # the donor's cells scored at a copy ratio, once per ratio: the fit's candidates and the
        # re-scoring at the chosen one share them
        scored = functools.cache(
            lambda ratio, mask=mask, d=d, levels=levels: list(
                _donor_scores(XL, mask, d, cohort, {**kw, "rho": ratio}, calibrate, levels)
            )
        )
        rho = kw["rho"]
        if limits.fit_ratio and w.sum() >= RATIO_MIN_CARRIERS:
            rho = _donor_ratio(
                lambda ratio, scored=scored: np.concatenate([unit[1] for unit in scored(ratio)]), lesion, entry
            )
        # a fit that keeps the configured ratio leaves the donor's first-pass scores as they were
        if gene_mask is not None or levels is not None or rho != kw["rho"]:
            _store_donor_scores(scores, d, scored(rho))
    return intervals


def _donor_interval(
    found: tuple[Pools, np.ndarray],
    var: pd.DataFrame,
    lesion: Lesion,
    d,
    limits: _DonorLimits,
    entry: dict,
    eps: float,
) -> np.ndarray | None:
    """Donor ``d``'s own interval, from its pools of all its cells (``found``, :func:`_as_pools`), as a
    mask of the lesion genes (``var``), or None where no trim beats chance (or too few genes); ``entry``
    (its row of the intervals table) gets the fit's figures. ``eps``: the outlier fraction."""
    pools, keep = found
    if keep.size < 2 * limits.min_interval_genes:
        return None
    rho, n_min = lesion.copy_ratio, limits.min_interval_genes
    fit = fit_interval(pools, rho, eps, n_min)
    threshold = trim_threshold(fit.region_terms, n_min, _seed(d))
    entry.update(
        carrier_share=fit.model.carrier_share,
        normal_share=fit.model.normal_share,
        gene_sd=fit.region_model.gene_sd,
        trim_gain=fit.trim,
        trim_threshold=threshold,
    )
    if not fit.trim > threshold:
        return None
    gene_mask = np.zeros(len(var), bool)
    gene_mask[keep[fit.start] : keep[fit.end - 1] + 1] = True
    entry.update(
        refined=True,
        start=int(var["start"].to_numpy(np.int64)[keep[fit.start]]),
        end=int(var["end"].to_numpy(np.int64)[keep[fit.end - 1]]),
        n_genes=int(fit.end - fit.start),
        gain=fit.gain,
    )
    return gene_mask


#: a patient needs this many cells of the reference's states for its genes' levels to be read off
#: them, and its genes within this sd (natural log) of the reference's levels (the pools' fitted
#: gene sd). The bar lies between two measured regimes: cells of the reference's type with a
#: disease programme (300 genes 4-16-fold, the simulator's default) spread 0.20-0.62 over the 24
#: patients of twelve simulated cohorts, and a tumour of a type the reference lacks far wider (the
#: oligodendroglioma's tumours 1.0-2.3 in all 16 donor-arm fits), where levels read the type's
#: difference as the patient's own and cost the loss (del19q AUROC 0.995 -> 0.967). At 0.5 two of
#: those 24 patients were left unlevelled and their samples' fractions missed by 0.13 and 0.29.
LEVEL_MIN_CELLS = 30
LEVEL_MAX_SD = 0.8


def _donor_levels(parts, kw: dict, rho: float, n_genes: int, entry: dict) -> np.ndarray | None:
    """(n_genes,) a donor's own level of each lesion gene against the reference, or None.

    Read off all its cells of the reference's states outside the reference (their pooled observed
    and expected counts, ``parts()``: the donor's :func:`_pool_parts`), carriers and normal cells
    alike, against each gene's local baseline (:func:`remnant.tl.intervals.local_baseline`): the level of its neighbours along the
    chromosome that no programme moved. A copy-number change is a step along the chromosome and
    stays in the baseline, so it is never read as a level; a programme moves scattered genes, and
    those are what the levels take up. The levels are shrunk towards the baseline
    (:func:`remnant.tl.intervals.level_posterior`: a Gamma prior of the pool's fitted gene sd, and a
    broad component for programme genes). None with fewer than :data:`LEVEL_MIN_CELLS` such cells
    or a gene sd above :data:`LEVEL_MAX_SD` (the sd is ``entry["level_sd"]``, the donor's row of the
    intervals table). No carrier probability enters, so a patient whose normal cells read as carriers
    (their programme inside the lesion) is read all the same.
    """
    matched = parts()[0]
    if sum(w.size for w in matched[2]) < LEVEL_MIN_CELLS:  # its cells of the reference's states
        return None
    found = _as_pools(matched)
    if found is None or found[1].size == 0:
        return None
    pools, keep = found
    eps = kw["outlier_fraction"]
    sd = fit_model(pools, rho, eps).gene_sd
    entry["level_sd"] = sd
    if sd > LEVEL_MAX_SD:
        return None
    observed = pools.carrier_observed + pools.normal_observed
    expected = pools.carrier_expected + pools.normal_expected
    out = np.ones(n_genes)
    out[keep] = level_posterior(observed, expected * local_baseline(observed, expected, sd, eps), sd, eps)
    return out


def _seed(donor) -> int:
    """A donor's seed for its block bootstrap: the same donor draws the same, whatever else the cohort holds."""
    return zlib.crc32(str(donor).encode())


def _pool_parts(
    XL: sp.csr_matrix, post: np.ndarray, d, cohort: _Cohort, scores: _Scores, kw: dict
) -> tuple[tuple, tuple]:
    """Donor ``d``'s leave-gene-out pools over the lesion genes, in two parts: its cells of a state the
    reference has, and its others (a state the reference lacks, scored against the pooled profile).
    Each part is ``(sums, covered, weights)``: (4, n_genes) carrier observed, carrier expected, total
    observed, total expected (each batch's cells against its in-sample profiles, on its count scale,
    with the terms its evidence had), the genes any of its batches scored, and the cells' carrier
    probabilities. Parts add up (:func:`_as_pools`): a pool's zero counts are evaluated per group of
    cells of one profile row (:func:`remnant.tl.intervals.pool_counts`), and the two parts share none."""
    n = XL.shape[1]
    parts = [(np.zeros((4, n)), np.zeros(n, bool), []) for _ in range(2)]
    for u in cohort.units:
        res, rows = scores.fits[u.batch], u.rows
        donor = u.own & (cohort.donors[rows] == d) & ~cohort.ref[rows]
        for (sums, covered, weights), m in zip(parts, (donor & (u.s_idx >= 0), donor & (u.s_idx < 0))):
            if not m.any():
                continue
            use, scale = res["use"], res["count_scale"]
            p = np.clip(post[rows[m]], 1e-9, 1 - 1e-9)
            weights.append(p)
            sums[:, use] += np.vstack(
                pool_counts(
                    sp.csr_matrix(XL[rows[m]][:, np.flatnonzero(use)] / scale),
                    res["profiles"] / scale,
                    res["profile_row"][m],
                    cohort.depth[rows[m]],
                    logit(p),
                    _gene_term(res["size"], kw, float(scores.batches.loc[u.batch, "temperature"])),
                )
            )
            covered |= use
    return parts[0], parts[1]


def _as_pools(*parts: tuple) -> tuple[Pools, np.ndarray] | None:
    """:class:`remnant.tl.intervals.Pools` of :func:`_pool_parts`' parts added up, over the genes any
    of them scored, and those genes' columns; None where they hold no cell."""
    weights = [w for _, _, ws in parts for w in ws]
    if not weights:
        return None
    sums = sum(p[0] for p in parts)
    covered = np.logical_or.reduce([p[1] for p in parts])
    keep = np.flatnonzero(covered & (sums[3] > 0))
    oc, ec, ot, et = sums[:, keep]
    return Pools(oc, ec, ot - oc, np.maximum(et - ec, 0.0), *pool_shares(np.concatenate(weights))), keep


def _gene_term(size: np.ndarray, kw: dict, temperature: float):
    """``(x, mu, gene) -> term``: the tempered LLR term a count adds to a cell's evidence
    (:func:`remnant.tl.lesion_model._outlier_terms`; at ``outlier_fraction`` 0 that is the plain
    negative binomial's term, as the cells' evidence then is). Cells of a state the reference lacks had
    their evidence shrunk by their level's uncertainty; their terms are taken whole, which leaves out a
    little more than the gene gave them."""
    rho, eps = kw["rho"], kw["outlier_fraction"]

    def term(x, mu, gene):
        with np.errstate(divide="ignore"):  # log(eps) at eps 0: the broad component drops out
            return _outlier_terms(x, mu, size[gene], rho, eps) / temperature

    return term


def _donor_scores(
    XL: sp.csr_matrix,
    gene_mask: np.ndarray,
    d: str,
    cohort: _Cohort,
    kw: dict,
    calibrate: bool,
    levels: np.ndarray | None = None,
):
    """Donor ``d``'s cells scored on the genes of ``gene_mask``, cross-fitted against each batch's
    refinement reference, per batch unit: (its cells' indices, their tempered LLRs, their genes
    scored, the batch, the reference's tempered LLRs, their expected separations for ``cluster_null``,
    zeros without it). ``levels``: as in :func:`_store_donor_scores`."""
    for u in cohort.units:
        rows = u.rows
        own_d = u.own & (cohort.donors[rows] == d)
        if not own_d.any():
            continue
        sub = own_d | u.refine_reference
        cols = np.flatnonzero(gene_mask)
        res = score_rows(
            XL[rows[sub]][:, cols],
            cohort.depth[rows[sub]],
            u.s_idx[sub],
            u.n_states,
            u.fold[sub],
            u.k,
            **_with_groups(kw, cohort, rows[sub]),
            levels=None if levels is None else (np.where(own_d[sub] & (u.s_idx[sub] >= 0), 0, -1), levels[None, cols]),
        )
        is_ref = u.fold[sub] >= 0
        t = temperature(res["z"][is_ref], calibrate)
        llr = res["llr"] / t
        target = own_d[sub]
        sep = (
            separation(res, cohort.depth[rows[sub]], kw["rho"], t, is_ref)[target]
            if kw.get("separation")
            else np.zeros(int(target.sum()))
        )
        yield rows[sub][target], llr[target], res["n_genes"][target], u.batch, llr[is_ref], sep


def _store_donor_scores(scores: _Scores, d: str, units) -> None:
    """Donor ``d``'s re-scored cells into ``scores``: their LLRs, genes and separations and the reference's LLRs,
    from :func:`_donor_scores`' ``units``. With levels (:func:`_donor_levels`) those cells are all its
    cells of the reference's states, its cells in the reference too: without a healthy donor the
    reference is patients' normal cells, whose posteriors count in their samples' fractions."""
    for cells, llr, n_genes, batch, reference_llr, sep in units:
        scores.llr[cells] = llr
        scores.n_genes[cells] = n_genes
        scores.reference_llr[(batch, d)] = reference_llr
        scores.separation[cells] = sep


#: the copy ratios a donor's lesion is fitted among (``fit_copy_ratio``) besides its configured one,
#: those of them between it and 1: one copy of three or four lost (a triploid or tetraploid tumour's
#: loss), one gained on three or four. Against the depth of an aneuploid tumour's own genome a lost
#: arm reads at (n - 1) / n of its n copies, not at 1/2. Ratios further from 1 than the configured
#: one are not fitted: cells at such a level are called at the configured one anyway.
RATIO_STEPS = {"loss": (2 / 3, 3 / 4), "gain": (4 / 3, 5 / 4)}
#: a ratio other than the configured one is taken only where it raises the donor's mixture
#: log-likelihood by at least this many nats (natural log): one discrete parameter, held to more
#: than chance because a programme that moves many of the interval's genes a little can look like
#: a ratio nearer 1.
RATIO_MIN_GAIN = 10.0
#: a donor's ratio is fitted where the configured one finds at least this many expected carriers
#: (sum of posteriors): fewer than ``min_refine_cells``, since cells of a lesion nearer 1 than
#: configured read as carriers only weakly, but a donor without any (a healthy one) has no ratio to
#: fit, and each candidate costs a scoring of its cells.
RATIO_MIN_CARRIERS = 10.0


def _mixture_loglik(llr: np.ndarray) -> float:
    """The log-likelihood (natural log, against all cells normal) of tempered per-cell ``llr``
    under a two-component mixture with its EM carrier fraction (:func:`em_prior`)."""
    return mixture_loglik(llr, float(np.clip(em_prior(llr), 1e-6, 1 - 1e-6)))


def _donor_ratio(llr_at, lesion: Lesion, entry: dict) -> float:
    """A donor's copy ratio of ``lesion``: among its configured one and :data:`RATIO_STEPS` nearer 1,
    the one whose two-component mixture of the donor's cells (one carrier fraction) fits best, where
    it beats the configured one by :data:`RATIO_MIN_GAIN` nats. ``llr_at(ratio)``: the donor's cells'
    tempered LLRs (n_cells,) scored at that ratio (:func:`_donor_scores`); ``entry`` (its intervals
    row) gets ``copy_ratio`` and ``ratio_gain`` (the chosen ratio's log-likelihood over the configured one's)."""
    steps = [r for r in RATIO_STEPS[lesion.type] if abs(np.log(r)) < abs(np.log(lesion.copy_ratio)) - 1e-9]
    candidates = [lesion.copy_ratio, *steps]
    fits = np.array([_mixture_loglik(llr_at(rho)) for rho in candidates])
    best = int(np.argmax(fits))
    gain = float(fits[best] - fits[0])
    if gain < RATIO_MIN_GAIN:
        return _set_ratio(entry, lesion.copy_ratio, gain)
    # of the ratios that beat the configured one and the data cannot tell from the best (both by the
    # same margin), the nearest to the configured one: a step nearer 1 only where the cells ask for it
    near = np.flatnonzero(fits >= max(fits[best] - RATIO_MIN_GAIN, fits[0] + RATIO_MIN_GAIN))
    distance = np.abs(np.log(np.asarray(candidates)[near]) - np.log(lesion.copy_ratio))
    chosen = int(near[np.argmin(distance)])
    return _set_ratio(entry, candidates[chosen], float(fits[chosen] - fits[0]))


def _set_ratio(entry: dict, rho: float, gain: float) -> float:
    entry.update(copy_ratio=rho, ratio_gain=gain)
    return rho


def _reference_llr(scores: _Scores, cohort: _Cohort, m: np.ndarray) -> np.ndarray:
    """Tempered LLRs of the cross-fitted reference cells the cells ``m`` (mask or indices, one sample) were
    judged against: their donor's refinement reference when it was re-scored, else their batch's."""
    b = cohort.batch[m][0]
    d = cohort.donors[m][0] if cohort.donors is not None else None
    return scores.reference_llr.get((b, d), scores.reference_llr[(b, None)])


def _per_group(
    post: np.ndarray, groups: pd.DataFrame, cohort: _Cohort, posterior_cutoff: float, fpr_of
) -> pd.DataFrame:
    """The ``per_group`` table: ``groups`` (sample, group, n_cells, prior, strength and, under the
    clone model, clone and q; NaN without it) with each group's calls and ``fpr``, the share of its
    reference cells its priors would call (``fpr_of(row, rows)``, ``rows`` the group's cell indices)."""
    n_called, fpr = [], []
    # each group's cells found once by hashing (a mask per row would compare every cell's sample and
    # group again for every row: cells x groups, both growing with the cohort)
    where = (
        pd.DataFrame({"sample": cohort.samples, "group": cohort.prior_groups})
        .groupby(["sample", "group"], sort=False)
        .indices
    )
    for _, row in groups.iterrows():
        m = where[(row["sample"], row["group"])]
        n_called.append(int((post[m] >= posterior_cutoff).sum()))
        fpr.append(fpr_of(row, m))
    out = groups.assign(n_called=n_called, fpr=fpr)
    for column in ("clone", "q"):
        if column not in out:
            out[column] = np.nan
    return out[["sample", "group", "n_cells", "prior", "strength", "clone", "q", "n_called", "fpr"]]


def called_and_fnr(post: np.ndarray, posterior_cutoff: float) -> tuple[int, float]:
    """A sample's calls from its cells' posteriors: how many are called, and the false-negative rate,
    the posterior-expected share of carriers below the cut-off (NaN without expected carriers)."""
    below = post < posterior_cutoff
    total = post.sum()
    return int((~below).sum()), float(post[below].sum() / total) if total > 0 else float("nan")


def _per_sample(
    post: np.ndarray, priors: dict, per_group: pd.DataFrame, cohort: _Cohort, scores: _Scores, posterior_cutoff: float
) -> pd.DataFrame:
    """The ``per_sample`` table of ``uns["lesions"][name]`` (one row per sample, indexed by it)."""
    batches, samples = scores.batches, cohort.samples
    # the false-positive rate that applies to a sample's calls: its groups' rates, weighted by the
    # non-carriers each is expected to hold
    weight = per_group["n_cells"] * (1.0 - per_group["prior"])
    fpr = (per_group["fpr"] * weight).groupby(per_group["sample"]).sum() / weight.groupby(per_group["sample"]).sum()
    rows_out = []
    where = {samples[m[0]]: m for m in split_by(samples)}
    for smp, pi in priors.items():
        m = where[smp]
        b = cohort.batch[m[0]]
        n_called, fnr = called_and_fnr(post[m], posterior_cutoff)
        rows_out.append(
            {
                "sample": smp,
                "batch": b,
                "n_cells": int(m.size),
                "n_reference": int(cohort.ref[m].sum()),
                "prior": pi,
                "n_called": n_called,
                "fpr": float(fpr.get(smp, np.nan)),
                "fnr": fnr,
                "temperature": batches.loc[b, "temperature"],
                "count_scale": batches.loc[b, "count_scale"],
                "reference_matched": batches.loc[b, "reference_matched"],
            }
        )
    return pd.DataFrame(rows_out).set_index("sample")
