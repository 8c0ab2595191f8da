"""Allele evidence per cell: lesion haplotypes phased from the patient's own cells, a per-cell LLR.

A one-copy loss removes one haplotype: at heterozygous SNPs inside the interval a carrier's reads
come from the retained haplotype only (up to sequencing error and mismapping, rate ``eps``). A
one-copy gain leaves both, the gained one at 2/3 of the reads. Normal cells read both haplotypes at
1/2 *on average*, but transcriptional bursting makes the reads of one gene in one cell share a
haplotype, so a gene, not a read, is the unit of evidence.

Inputs are the allele AnnData of :func:`remnant.io.read_cellsnp` (cells x SNPs, ``layers["AD"]`` ALT
reads, ``layers["DP"]`` REF + ALT reads), cut to one patient's cells and one lesion's sites
(:func:`lesion_sites`), and each site's gene (:func:`site_genes`).

Model
-----
For a site ``s`` the *phase* says which allele lies on the haplotype the lesion changes (the lost
haplotype of a loss, the gained one of a gain): ``p_alt = P(ALT is on it)``. For cell ``c`` and gene
``g``, ``k_cg`` counts reads on that haplotype and ``n_cg`` all reads, over the gene's phased sites.

- Normal: ``k ~ BetaBinomial(n, mean 1/2, overdispersion rho)``; ``rho`` (intra-class correlation of
  the reads of one site in one cell, 0 = binomial, 1 = every cell monoallelic) is the bursting. Given
  normal (reference) cells it is estimated by moments (:func:`bursting_overdispersion`), which needs no
  phase: at a single site the ALT share is the haplotype share or its mirror, both with the same
  spread about 1/2. Inside :func:`phase_sites` it is the maximum of the cells' carrier/normal mixture
  likelihood over a grid, from the phased genes: moments weighted by ``1 - posterior`` would read the
  monoallelic reads of a patient of 90% carriers as bursting (0.60 for a true 0.20 in the tests).
- Carrier of a loss: ``k ~ Binomial(n, eps)``: only error and mismapping put reads on the lost one.
  When scoring the cells a phase was learned on, ``eps`` is each site's own (:func:`site_error_rates`):
  an RNA-editing or mismapped site shows both alleles in every cell, carriers included, and the
  carriers' reads of its "lost" allele then say so, where a shared ``eps`` read them as normal cells'.
- Carrier of a gain: ``k ~ BetaBinomial(n, mean 2/3, rho)``: both haplotypes remain, so bursting too.
- A site whose phase is unsure: for a loss the phase is marginalised (:func:`_marginal_loss_llr`): a
  carrier's reads at a site are a mixture over its two phases, a normal cell's reads over the gene a
  beta-binomial mixed over the sites' phases. A read against a phase of confidence 0.7 so costs a
  carrier -0.5 nats, not the -1.3 of scoring 0.4 of it as if the phase were sure, and a site of unknown
  phase still says "normal" where a cell reads both its alleles. For a gain (both haplotypes remain,
  burst together) a site counts by ``|2 p_alt - 1|`` of its reads (soft counts), assigned by the more
  likely phase, so a coin-flip site adds nothing.
- Each gene's LLR is clipped at ``max_gene_llr`` nats both ways (as the expression evidence is), so a
  mismapped site or a gene of thousands of reads cannot decide a cell alone.

Phasing (:func:`phase_sites`) is EM over sites and cells: each cell's carrier probability starts at its
expression posterior and is updated with its allele LLR; each site's phase is then the posterior from
its reads given the cells' carrier probabilities, each cell a mixture of carrier and normal. No
high-carrier sample is needed: the expression posteriors start the EM and the allele evidence sharpens
them; even flat ones phase, because only the lost haplotype's alleles are rare across cells (carriers
lack them, normals split).

Phase confidence. A cell's reads must not vote twice: once to phase a site, then, through that phase,
for the cell being a carrier, which weighs its vote at its other sites (mean-field self-confirmation:
a normal cell reading one allele at each of a few sites read by nobody else phases them all its way
and looks like a carrier for it). So a cell's weight for a site leaves out the site's own gene, and the
allele LLR in its carrier probability scores each of its reads by the phase learned *without* its own
reads at that site (the leave-one-out log odds :func:`allele_llr` also scores by). With 5% carriers
and ~0.1 reads per (cell, gene) the mean-field EM reported a mean confidence of 0.82 for an accuracy of
0.70 (0.96 for 0.82 on its sites >= 0.8); with leave-one-out weights 0.71 for 0.71 (0.93 for 0.94),
tests/test_phase_confidence.py. What remains optimistic comes from the carrier probabilities the
phase rests on (expression posteriors that oversell). That is measured without reusing reads: the
patient's cells are split into two halves, each phased alone, and the site log odds are divided by the
temperature under which the halves' agreement is what their confidences predict
(:func:`_split_half_temperature`). Half the cells phase worse than all of them, so the tempered
confidence errs low (docs/alleles.md: 0.08-0.11 below the accuracy in 3 of 12 benchmark settings); an
overconfident phase pushes carriers the wrong way, an underconfident one only costs weight.
:func:`allele_llr` marginalises a loss's phase rather than weighting reads by it, so a poorly phased
patient's cells keep about their expression call.

A normal cell's reads at a site are beta-binomial about the site's *normal share*, the ALT share of the
patient's likely normal cells (:func:`normal_share`: reads weighted by ``1 - carrier``, 20 pseudo-reads at
1/2; when scoring the cells it was learned on, without the cell's own reads), not about 1/2: a gene with
allele-specific expression (a cis-eQTL, imprinting) reads one haplotype more in every cell, and taken as
balanced its under-expressed allele looked "lost" (rare across cells) and every normal cell reading the
other looked like a carrier. For a loss the phase is still marginalised; over several sites of a gene the
lost haplotype's expected normal share ``p b + (1 - p)(1 - b)`` averaged over the reads replaces 1/2.

Limits: a gain's normal cells are still taken as balanced; the control region's null LLRs (calibration)
take every normal cell as balanced; a loss carrier's reads are taken as unburst (one haplotype).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import betaln, expit, gammaln, logit

from remnant.io.alleles import annotation_chromosome, sites_in_regions

__all__ = [
    "allele_llr",
    "bursting_overdispersion",
    "combine",
    "lesion_sites",
    "null_allele_llr",
    "phase_sites",
    "site_error_rates",
    "site_genes",
]

log = logging.getLogger(__name__)

#: Share of a gained haplotype's reads in a carrier of a one-copy gain (two copies of three).
GAIN_SHARE = 2.0 / 3.0
#: Overdispersion is kept inside this range: 0 makes the beta-binomial's concentration infinite,
#: 1 makes every cell monoallelic (no evidence at all).
_RHO_RANGE = (1e-6, 0.95)
_TYPES = ("loss", "gain")
#: Below this many (cell, gene) pairs of likely normal cells with two reads or more (weighted by the
#: probability of being normal), :func:`phase_sites` warns that its bursting estimate is uncertain.
MIN_BURST_PAIRS = 100
#: Pseudo-reads at ``eps`` each site's own error rate is shrunk with (:func:`site_error_rates`): a
#: site the carriers read a few times keeps about ``eps``.
ERROR_PRIOR_READS = 20.0
#: Overdispersions tried by the maximum-likelihood estimate of :func:`phase_sites` (log grid).
_RHO_GRID = np.geomspace(0.005, 0.9, 48)


# ------------------------------------------------------------------------------------------------
# sites
# ------------------------------------------------------------------------------------------------
def lesion_sites(alleles: anndata.AnnData, lesion) -> np.ndarray:
    """Boolean (n_sites,) mask of the SNPs inside ``lesion`` (``chromosome``, ``start``, ``end``: bp,
    0-based half-open, as :class:`remnant.tl.Lesion`). Positions in ``var["position"]`` are 1-based;
    VCF chromosome names (``5``, ``chr5``) are matched as the gene table spells them."""
    return sites_in_regions(alleles.var, [lesion])


def site_genes(alleles: anndata.AnnData, genes: pd.DataFrame) -> np.ndarray:
    """The gene of each SNP: (n_sites,) object array of ``genes.index`` labels, ``""`` outside genes.

    ``genes``: ``chromosome`` (``chr5``), ``start``, ``end`` (bp, 0-based half-open), as
    :func:`remnant.io.load_genes`. Where genes overlap, a site goes to the covering gene that starts
    last before it (one gene per site: sites of one gene share its transcripts' bursts).
    """
    chrom = annotation_chromosome(alleles.var["chromosome"])
    pos0 = alleles.var["position"].to_numpy(np.int64) - 1
    out = np.full(alleles.n_vars, "", dtype=object)
    for name in pd.unique(chrom):
        on = np.flatnonzero(chrom == name)
        table = genes[genes["chromosome"].astype(str) == name].sort_values("start")
        if table.empty:
            continue
        best = _covering(table["start"].to_numpy(np.int64), table["end"].to_numpy(np.int64), pos0[on])
        hit = best >= 0
        out[on[hit]] = table.index.to_numpy()[best[hit]]
    return out


def _covering(starts: np.ndarray, ends: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Per position, the last gene (sorted by start) starting at or before it that covers it; -1: none."""
    best = np.searchsorted(starts, pos, side="right") - 1
    reach = np.maximum.accumulate(ends)  # farthest end of the genes starting up to each one
    at = np.maximum(best, 0)
    covered = (best >= 0) & (ends[at] > pos)
    best[(best >= 0) & ~covered & (reach[at] <= pos)] = -1  # no earlier gene reaches it either
    for j in np.flatnonzero((best >= 0) & ~covered):
        k = best[j]
        # walk back only while some earlier gene still reaches the position (rare: nested genes)
        while k >= 0 and ends[k] <= pos[j] and reach[k] > pos[j]:
            k -= 1
        best[j] = k if k >= 0 and ends[k] > pos[j] else -1
    return best


# ------------------------------------------------------------------------------------------------
# likelihood pieces
# ------------------------------------------------------------------------------------------------
def _counts(alleles: anndata.AnnData) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """:func:`_read_entries` of an allele AnnData's ``layers`` AD and DP."""
    return _read_entries(alleles.layers["AD"], alleles.layers["DP"])


def _read_entries(ad, dp) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """ALT and REF + ALT reads, cells x sites CSR float64 (the same sparsity: AD's explicit zeros
    where DP > 0 are added so every read site of a cell is one entry of both)."""
    dp = sp.csr_matrix(dp).astype(np.float64)  # a copy: the caller's layer stays as it is
    dp.sum_duplicates()
    dp.eliminate_zeros()
    ad = _on_pattern(sp.csr_matrix(ad, dtype=np.float64, copy=True), dp)
    return sp.csr_matrix((ad, dp.indices, dp.indptr), shape=dp.shape), dp


def _on_pattern(m: sp.csr_matrix, pattern: sp.csr_matrix) -> np.ndarray:
    """Values of read counts ``m`` (non-negative integers; made canonical in place, so pass a copy) at the
    stored entries of canonical ``pattern`` (its storage order; 0 where ``m`` stores nothing). Where
    ``m``'s entries all lie on the pattern (AD's reads are DP's) this is one sparse sum, linear in the
    entries; else a key search."""
    m.sum_duplicates()  # canonical, so the sum below comes out canonical too
    m.eliminate_zeros()
    ones = sp.csr_matrix((np.ones(pattern.nnz), pattern.indices, pattern.indptr), shape=pattern.shape)
    union = m + ones  # m >= 0: no entry cancels, so the pattern is the union exactly when m lies on it
    if union.nnz == pattern.nnz and (m.data >= 0).all():
        return union.data - 1.0  # exact for integer counts
    return _lookup(m, *_nonzero(pattern))


def _nonzero(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every stored entry of a canonical CSR, in storage order."""
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)), m.indices


#: Largest matrix (rows x columns) :func:`_lookup` reads through a dense copy (32 MB of float64).
_DENSE_LOOKUP = 1 << 22


def _lookup(m: sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of sparse ``m`` at (rows, cols), 0 where nothing is stored: through a dense copy where ``m``
    is small (a person x site table), else by hashing its keys (linear in the entries)."""
    csr = sp.csr_matrix(m)
    if csr.nnz == 0:
        return np.zeros(rows.size)
    if csr.shape[0] * csr.shape[1] <= _DENSE_LOOKUP:
        return csr.toarray()[rows, cols].astype(np.float64)  # float either way, as the hashed read gives
    if not csr.has_canonical_format:  # duplicates summed: one key per stored value
        csr = csr.copy()
        csr.sum_duplicates()
    keys = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr)) * m.shape[1] + csr.indices
    at = pd.Index(keys).get_indexer(rows.astype(np.int64) * m.shape[1] + cols)
    return np.where(at >= 0, csr.data[at], 0.0)


def _unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` (uniques sorted) by hashing: linear in the keys, for keys
    repeated many times (a (person, site) per read entry), where ``np.unique`` sorts all of them."""
    inverse, uniq = pd.factorize(keys, sort=True)
    return np.asarray(uniq), inverse.astype(np.int64)


def _unique_inverse_of_runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_unique_inverse` of keys that come in sorted runs (a read entry's (cell, gene) in cell order,
    sorted within each cell, most of them distinct): a merge sort of sorted runs is close to linear, a
    fifteenth of hashing's time here (whose sort of the uniques is a sort of nearly every key)."""
    keys = np.asarray(keys)
    if keys.size == 0:
        return keys.copy(), np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    first = np.empty(keys.size, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(keys.size, dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def _concentration(rho):
    """Beta-binomial concentration ``a + b`` of overdispersion ``rho = 1 / (a + b + 1)`` (a float, or
    an array of one per cell: cells of several technologies burst differently)."""
    rho = np.clip(np.asarray(rho, dtype=float), *_RHO_RANGE)
    return float(1.0 / rho - 1.0) if rho.ndim == 0 else 1.0 / rho - 1.0


def _at_entries(conc, rows: np.ndarray):
    """A per-cell concentration at each stored entry (its row's); a float stays as it is."""
    return conc if np.ndim(conc) == 0 else np.asarray(conc)[rows]


def _summary(rho) -> float:
    """One number for logs and tables: the overdispersion, or its mean over cells."""
    return float(np.mean(rho))


def _bb(k: np.ndarray, n: np.ndarray, mean: float, conc, rows: np.ndarray | None = None) -> np.ndarray:
    """Beta-binomial log pmf without the binomial coefficient (it cancels in every ratio here).

    ``mean`` and ``conc`` floats or one per entry; or one per row (cell, pair) with ``rows`` each entry's
    row (the normaliser ``B(a, b)`` is then evaluated once per row, not once per entry)."""
    a, b = mean * conc, (1.0 - mean) * conc
    norm = betaln(a, b)
    if rows is not None and np.ndim(a):
        a, b, norm = a[rows], b[rows], norm[rows]
    return betaln(k + a, n - k + b) - norm


def _carrier(k: np.ndarray, n: np.ndarray, lesion_type: str, conc, eps: float, rows=None) -> np.ndarray:
    """Log-likelihood (no binomial coefficient) of ``k`` of ``n`` reads on the changed haplotype in a
    carrier (``conc``, ``rows``: :func:`_bb`)."""
    if lesion_type == "loss":
        return k * np.log(eps) + (n - k) * np.log1p(-eps)
    return _bb(k, n, GAIN_SHARE, conc, rows)


def _check_type(lesion_type: str) -> None:
    if lesion_type not in _TYPES:
        raise ValueError(f"lesion_type must be one of {_TYPES}, not {lesion_type!r}")


def _check_alleles(alleles: anndata.AnnData) -> None:
    """The allele layers must be there (:func:`remnant.io.read_cellsnp` writes them)."""
    missing = [tag for tag in ("AD", "DP") if tag not in alleles.layers]
    if missing:
        raise ValueError(f"allele AnnData lacks layers {missing}: read it with remnant.io.read_cellsnp")


def _check_phase_inputs(alleles: anndata.AnnData, sites_gene, carrier: np.ndarray) -> None:
    """One gene label per SNP and one carrier probability (finite, 0-1) per cell."""
    _check_alleles(alleles)
    if len(sites_gene) != alleles.n_vars:
        raise ValueError(f"sites_gene has {len(sites_gene)} labels for {alleles.n_vars} SNPs")
    if carrier.shape != (alleles.n_obs,):
        raise ValueError(f"carrier has shape {carrier.shape}, expected ({alleles.n_obs},): one value per cell")
    if not np.all(np.isfinite(carrier)) or carrier.min(initial=0) < 0 or carrier.max(initial=0) > 1:
        raise ValueError("carrier must hold probabilities in [0, 1] (the expression posterior), without NaN")


# ------------------------------------------------------------------------------------------------
# overdispersion
# ------------------------------------------------------------------------------------------------
def bursting_overdispersion(alleles: anndata.AnnData, weights: np.ndarray | None = None) -> float:
    """Overdispersion ``rho`` of a cell's reads at one heterozygous site about 1/2 (bursting).

    Method of moments over (cell, site) pairs with at least two reads, each cell weighted by
    ``weights`` ((n_obs,), e.g. 1 - carrier probability; default 1): ``E[(x - n/2)^2] = n/4 (1 + (n -
    1) rho)`` for ``x`` ALT of ``n`` reads, so ``rho = sum w [(x - n/2)^2 - n/4] / sum w n (n - 1) / 4``.
    Phase-free (the ALT share's spread about 1/2 is the haplotype share's). Carriers of a loss left in
    the weights inflate it, which weakens the evidence rather than calling normals. Returns a float
    in [1e-6, 0.95]; 1e-6 when no pair has two reads.
    """
    ad, dp = _counts(alleles)
    w = np.ones(alleles.n_obs) if weights is None else np.asarray(weights, dtype=float)
    return _moments_rho(ad, dp, w)


def _moments_rho(ad: sp.csr_matrix, dp: sp.csr_matrix, w: np.ndarray) -> float:
    """:func:`bursting_overdispersion` on counts (:func:`_counts`), cells weighted by ``w`` (n_obs,)."""
    rows, _ = _nonzero(dp)
    x, n, wc = ad.data, dp.data, w[rows]
    num = np.sum(wc * ((x - n / 2) ** 2 - n / 4))
    den = np.sum(wc * n * (n - 1) / 4)
    rho = num / den if den > 0 else 0.0
    return float(np.clip(rho, *_RHO_RANGE))


def _rho_ml(k: sp.csr_matrix, n: sp.csr_matrix, carrier: np.ndarray, lesion_type: str, eps: float) -> float:
    """Bursting ``rho`` maximising the cells' mixture likelihood (carrier probability ``carrier`` each)
    over a log grid, from per (cell, gene) phased counts. Unlike moments weighted by ``1 - carrier``,
    carriers are explained by their own component here, so a patient of 90% carriers does not read
    their monoallelic reads as bursting."""
    rows, _ = _nonzero(n)
    log_prior = np.log(carrier), np.log1p(-carrier)
    best, best_ll = _RHO_GRID[0], -np.inf
    for rho in _RHO_GRID:
        conc = _concentration(rho)
        car = np.bincount(rows, _carrier(k.data, n.data, lesion_type, conc, eps), n.shape[0])
        norm = np.bincount(rows, _bb(k.data, n.data, 0.5, conc), n.shape[0])
        ll = np.sum(np.logaddexp(log_prior[0] + car, log_prior[1] + norm))
        if ll > best_ll:
            best, best_ll = rho, ll
    return float(best)


def _warn_if_few_pairs(n: sp.csr_matrix, carrier: np.ndarray) -> None:
    """Bursting is only seen in normal cells' genes with two reads or more; with few, say so."""
    rows, _ = _nonzero(n)
    pairs = float(np.sum((1.0 - carrier[rows]) * (n.data >= 2)))
    if pairs < MIN_BURST_PAIRS:
        log.warning(
            "bursting estimated from %.0f (cell, gene) pairs of likely normal cells with >= 2 reads (< %d): "
            "the overdispersion is uncertain; pass one measured on reference cells (bursting_overdispersion)",
            pairs,
            MIN_BURST_PAIRS,
        )


# ------------------------------------------------------------------------------------------------
# per (cell, gene) evidence
# ------------------------------------------------------------------------------------------------
def _gene_matrices(
    ad: sp.csr_matrix, dp: sp.csr_matrix, p_alt: np.ndarray, codes: np.ndarray, n_genes: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Soft counts per (cell, gene): reads on the changed haplotype ``k`` and all reads ``n`` (CSR
    cells x genes, same sparsity). Each site weighs ``|2 p_alt - 1|``; its reads go by the likelier phase."""
    weight = np.abs(2.0 * p_alt - 1.0)
    alt_side = p_alt > 0.5
    keep = (codes >= 0) & (weight > 0)
    s = np.flatnonzero(keep)
    to_gene = sp.csr_matrix((weight[s], (s, codes[s])), shape=(p_alt.size, n_genes))
    sign = np.where(alt_side, 1.0, -1.0)[s]
    # k = AD on ALT-side sites, DP - AD on REF-side sites: AD * sign + DP * [REF side]
    flip = sp.csr_matrix((weight[s] * sign, (s, codes[s])), shape=(p_alt.size, n_genes))
    ref_side = sp.csr_matrix((weight[s] * (~alt_side[s]), (s, codes[s])), shape=(p_alt.size, n_genes))
    n = sp.csr_matrix(dp @ to_gene)
    n.sum_duplicates()
    n.eliminate_zeros()
    k = _lookup(ad @ flip + dp @ ref_side, *_nonzero(n))
    return sp.csr_matrix((np.clip(k, 0.0, n.data), n.indices, n.indptr), shape=n.shape), n


def _gene_llr(
    k: sp.csr_matrix, n: sp.csr_matrix, lesion_type: str, rho: float, eps: float, bound: float
) -> sp.csr_matrix:
    """Clipped LLR carrier vs normal per (cell, gene), CSR cells x genes (nats); 0 where a pair holds no
    weighted read (an unphased gene: the EM's first round has only these)."""
    llr = _pair_llr(k.data, n.data, _nonzero(n)[0], lesion_type, rho, eps, bound)
    return sp.csr_matrix((llr, n.indices, n.indptr), shape=n.shape)


def _pair_llr(
    k: np.ndarray, n: np.ndarray, cells: np.ndarray, lesion_type: str, rho, eps: float, bound: float
) -> np.ndarray:
    """:func:`_gene_llr` on flat (n_pairs,) counts ``k``, ``n`` of pairs in ``cells``."""
    read = np.flatnonzero(n > 0)
    conc, rows = _concentration(rho), cells[read]
    kd, nd = k[read], n[read]
    llr = np.zeros(n.size)
    term = _carrier(kd, nd, lesion_type, conc, eps, rows) - _bb(kd, nd, 0.5, conc, rows)
    llr[read] = np.clip(term, -bound, bound)
    return llr


def _codes(sites_gene) -> tuple[np.ndarray, np.ndarray]:
    """Integer gene code per site (-1: no gene) and the gene labels."""
    labels = pd.Series(np.asarray(sites_gene, dtype=object)).fillna("").astype(str)
    codes, uniques = pd.factorize(labels.where(labels != "", None), use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


# ------------------------------------------------------------------------------------------------
# phasing
# ------------------------------------------------------------------------------------------------
def phase_sites(
    alleles: anndata.AnnData,
    sites_gene,
    carrier: np.ndarray,
    *,
    lesion_type: str = "loss",
    eps: float = 0.02,
    overdispersion: float | None = None,
    max_gene_llr: float = 3.0,
    max_iter: int = 50,
    tol: float = 1e-4,
    calibrate: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Which allele of each SNP lies on the haplotype a lesion changes, learned from one patient's cells.

    Parameters
    ----------
    alleles
        One patient's cells x the lesion's SNPs (:func:`lesion_sites`), ``layers["AD"]``,
        ``layers["DP"]`` (read counts).
    sites_gene
        (n_sites,) gene label of each SNP (:func:`site_genes`); ``""`` or None: the site is not used.
    carrier
        (n_obs,) each cell's carrier probability from expression (``{lesion}_posterior``), 0-1.
        Starts the EM; the allele evidence then updates it. A sample of nearly all carriers
        (diagnosis) phases at once; without one, informative posteriors suffice.
    lesion_type
        ``"loss"`` (the phase names the lost haplotype) or ``"gain"`` (the gained one).
    eps
        Reads on the lost haplotype in a carrier of a loss, per read (sequencing error, mismapping).
    overdispersion
        Bursting ``rho``: a float, or (n_obs,) one per cell (technologies burst differently); default
        the maximum-likelihood value of the cells' carrier/normal mixture from the phased genes.
    max_gene_llr
        Bound of one gene's LLR in a cell (nats), both ways.
    max_iter, tol
        EM stops when no site's ``p_alt`` moves by ``tol`` or after ``max_iter`` rounds.
    calibrate
        Temper the sites' log odds by the split-half agreement (:func:`_split_half_temperature`): the
        EM judges each site given the others' phases and the cells' carrier probabilities as if they
        were known, so its confidences are optimistic where reads or carriers are few. False: the EM's
        own log odds (temperature 1).
    seed
        Seed of the random split of the cells into halves.

    Returns
    -------
    pandas.DataFrame
        One row per SNP (index ``alleles.var_names``): ``gene``; ``p_alt`` (P(ALT on the changed
        haplotype)); ``allele`` (``"ALT"``/``"REF"``: the likelier one on it); ``confidence``
        (max(p_alt, 1 - p_alt)); ``n_reads`` (REF + ALT reads over the cells) and ``n_cells`` (cells with
        reads); ``normal_share`` (the site's ALT share in the likely normal cells, :func:`normal_share`:
        the EM's and :func:`allele_llr`'s normal cell reads about it, not about 1/2); for a loss
        ``error_rate`` (the site's own rate of carrier reads on the lost haplotype,
        :func:`site_error_rates`). Sites without a gene or reads keep ``p_alt`` 0.5. ``p_alt`` is the
        EM's log odds divided by ``attrs["phase_temperature"]`` (>= 1). ``attrs``: ``overdispersion``,
        ``iterations``, ``lesion_type``, ``eps``, ``carrier`` ((n_obs,) the carrier probabilities:
        expression and alleles under the tempered phase), ``phase_temperature``, ``split_sites`` (sites
        read in both halves) and ``split_agreement`` (their share phased alike by the two halves), and,
        when the EM ran, ``loo_logit`` (cells x sites sparse: each read entry's tempered phase log odds
        without its own cell's reads at the site) and for a loss ``error_loo`` (the same layout: the
        entry's site error rate without its own cell's reads).
    """
    _check_type(lesion_type)
    carrier = np.asarray(carrier, dtype=float)
    _check_phase_inputs(alleles, sites_gene, carrier)
    ad, dp = _counts(alleles)
    codes, genes = _codes(sites_gene)
    # a posterior of exactly 0 or 1 would let no allele evidence move the cell
    carrier = np.clip(carrier, 1e-6, 1 - 1e-6)
    settings = _Settings(lesion_type, eps, max_gene_llr, max_iter, tol)
    fit = _em(ad, dp, codes, genes.size, carrier, overdispersion, settings)
    if overdispersion is None:
        _warn_if_few_pairs(fit.n, carrier)
    split = {"phase_temperature": 1.0, "split_sites": 0, "split_agreement": float("nan")}
    if calibrate and fit.iterations:
        split = _split_half_temperature(alleles, codes, genes.size, carrier, fit.rho, settings, seed)
    temp = split["phase_temperature"]
    log.info(
        "phased %d sites in %d EM rounds (overdispersion %.3f, phase temperature %.2f from %d split-half sites)",
        alleles.n_vars,
        fit.iterations,
        _summary(fit.rho),
        temp,
        split["split_sites"],
    )
    p_alt = expit(fit.score / temp)
    # each read entry's phase without its own cell's reads at the site (allele_llr's leave-one-out),
    # tempered like the site's own; the cells' carrier probabilities given it
    loo = (fit.score[dp.indices] - fit.contrib) / temp
    k, n = _PairLayout.of(dp, codes, genes.size).counts(ad, dp, expit(loo))
    total = np.asarray(_gene_llr(k, n, lesion_type, fit.rho, eps, max_gene_llr).sum(axis=1)).ravel()
    post = expit(logit(carrier) + total)
    table = _phase_table(alleles, dp, codes, genes, p_alt, post, fit.rho, fit.iterations, lesion_type, eps)
    table["normal_share"] = _normal_share(ad, dp, 1.0 - post)
    table.attrs.update(split)
    _add_leave_one_out(table, ad, dp, loo, post, eps, fit.iterations > 0)
    return table


def _add_leave_one_out(table: pd.DataFrame, ad, dp, loo: np.ndarray, post: np.ndarray, eps: float, ran: bool) -> None:
    """A loss's ``error_rate`` column, and (when the EM ran) ``attrs["loo_logit"]`` and a loss's
    ``attrs["error_loo"]``: each read entry's phase and error rate without its own cell's reads."""

    def as_matrix(values: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((values, dp.indices, dp.indptr), shape=dp.shape)

    if table.attrs["lesion_type"] == "loss":
        site, entry = _site_error_rates(ad, dp, loo, post, eps)
        table["error_rate"] = site
        if ran:
            table.attrs["error_loo"] = as_matrix(entry)
    if ran:
        table.attrs["loo_logit"] = as_matrix(loo)


def site_error_rates(alleles: anndata.AnnData, phase: pd.DataFrame, eps: float = 0.02) -> np.ndarray:
    """Each site's rate of reads on the lost haplotype in a carrier of a loss, learned from the cells.

    Parameters
    ----------
    alleles
        The cells and sites :func:`phase_sites` phased (``layers["AD"]``, ``layers["DP"]``).
    phase
        Its output for these cells (``p_alt``, ``attrs["carrier"]``; ``attrs["loo_logit"]`` if present).
    eps
        The shared rate the sites are shrunk towards, with :data:`ERROR_PRIOR_READS` pseudo-reads.

    Returns
    -------
    numpy.ndarray
        (n_sites,) float, 0-1: the carriers' reads of the lost allele over their reads, each cell
        weighted by its carrier probability and each read by which allele it is lost given the
        cell's other reads there and the phase. Sites the carriers read rarely keep about ``eps``;
        a site every cell reads both alleles of (RNA editing, a mismapped paralog) rises towards its
        minor allele's share. :func:`phase_sites` writes it as the ``error_rate`` column of a loss's
        phase, and :func:`allele_llr` scores each cell's reads by the rate learned without them.
    """
    ad, dp = _counts(alleles)
    loo = _leave_one_out(alleles, phase)
    if loo is None:
        logits = logit(np.clip(phase["p_alt"].to_numpy(float), 1e-12, 1 - 1e-12))[dp.indices]
    else:
        logits = _lookup(loo, *_nonzero(dp))
    return _site_error_rates(ad, dp, logits, np.asarray(phase.attrs["carrier"], float), eps)[0]


def _site_error_rates(ad, dp, loo: np.ndarray, carrier: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per site, and per read entry of ``dp`` without its own cell's reads (storage order), the error
    rate of :func:`site_error_rates`; ``loo`` (nnz,) each entry's phase log odds, ``carrier`` (n_obs,)."""
    rows, cols = _nonzero(dp)
    x, m = ad.data.astype(float), dp.data.astype(float)
    # which allele of the entry's reads is the lost one, for a carrier: the phase, updated by the reads
    # themselves (a carrier's reads are mostly the retained allele)
    towards_alt = (2.0 * x - m) * (np.log(eps) - np.log1p(-eps))  # log P(reads | ALT lost) / P(.. | REF lost)
    q = expit(loo + towards_alt)
    lost = q * x + (1.0 - q) * (m - x)
    w = carrier[rows]
    lost_sum = np.bincount(cols, w * lost, dp.shape[1])
    reads_sum = np.bincount(cols, w * m, dp.shape[1])
    a, b = ERROR_PRIOR_READS * eps, ERROR_PRIOR_READS * (1.0 - eps)
    site = (lost_sum + a) / (reads_sum + a + b)
    entry = (lost_sum[cols] - w * lost + a) / (reads_sum[cols] - w * m + a + b)
    return site, np.clip(entry, 1e-6, 0.5)


@dataclass(frozen=True)
class _Settings:
    """The model settings one phasing EM runs with (:func:`phase_sites`' arguments of the same names)."""

    lesion_type: str
    eps: float
    max_gene_llr: float
    max_iter: int
    tol: float


@dataclass
class _Fit:
    """One phasing EM's result: ``score`` (n_sites,) log odds of ALT on the changed haplotype (0 where
    unread); ``contrib`` each read entry's share of it (``dp``'s storage order); ``rho`` the bursting;
    ``n`` the last (cell, gene) read matrix; ``iterations`` the EM rounds."""

    score: np.ndarray
    contrib: np.ndarray
    rho: float | np.ndarray
    n: sp.csr_matrix
    iterations: int


def _em(ad, dp, codes, n_genes: int, carrier: np.ndarray, overdispersion, settings: _Settings) -> _Fit:
    """EM over sites and cells (:func:`phase_sites`) on counts ``ad``/``dp`` (:func:`_counts`), carrier
    probabilities (n_obs,) clipped into (0, 1); bursting fixed where ``overdispersion`` is given."""
    lesion_type, eps, bound = settings.lesion_type, settings.eps, settings.max_gene_llr
    p_alt, iterations = np.full(dp.shape[1], 0.5), 0
    score, contrib = np.zeros(dp.shape[1]), np.zeros(dp.nnz)
    layout = _PairLayout.of(dp, codes, n_genes)
    n, terms = np.zeros(layout.genes.size), None
    rho = overdispersion if overdispersion is not None else _moments_rho(ad, dp, 1.0 - carrier)
    base = _normal_share(ad, dp, 1.0 - carrier)
    entries = _Entries.of(dp, layout.in_gene, carrier)
    while iterations < settings.max_iter:
        iterations += 1
        # each cell's reads scored by the phases learned without them (its entries' leave-one-out log
        # odds): a cell's reads must not phase a site and then vouch, through it, for the cell's carrier
        # weight at its other sites (mean-field self-confirmation)
        k, n = layout.pair_counts(ad, dp, expit(score[dp.indices] - contrib))
        if overdispersion is None and n.any():  # phased genes: bursting by maximum likelihood
            rho = _rho_ml(layout.csr(k), layout.csr(n), carrier, lesion_type, eps)
        llr = _pair_llr(k, n, layout.cells, lesion_type, rho, eps, bound)
        total = np.bincount(layout.cells, llr, dp.shape[0])
        if terms is None or overdispersion is None:  # bursting re-estimated: the entries' terms change
            terms = _entry_terms(ad, dp, lesion_type, _concentration(rho), eps, base)
        own = np.zeros(dp.nnz)
        own[layout.in_gene] = llr[layout.at]
        score, contrib = _site_scores(entries, total, own, terms)
        new = expit(score)
        moved = np.max(np.abs(new - p_alt), initial=0.0)
        p_alt = new
        if moved < settings.tol:
            break
    return _Fit(score, contrib, rho, layout.csr(n), iterations)


@dataclass
class _PairLayout:
    """Where each read entry of ``dp`` (storage order) goes among the (cell, gene) pairs with reads: the
    EM's soft counts per pair are then one ``bincount`` a round, not sparse products and key searches.

    ``pair``: (nnz,) the entry's pair (-1: site without gene); ``indptr``, ``genes``: the pairs as a
    canonical CSR pattern, cells x ``n_genes`` (sorted by cell, then gene); ``cells``: each pair's
    cell; ``in_gene``: the entries with a pair, and ``at``: their pairs (what every round indexes by)."""

    pair: np.ndarray
    indptr: np.ndarray
    genes: np.ndarray
    shape: tuple[int, int]
    cells: np.ndarray
    in_gene: np.ndarray
    at: np.ndarray

    @classmethod
    def of(cls, dp: sp.csr_matrix, codes: np.ndarray, n_genes: int) -> _PairLayout:
        rows, cols = _nonzero(dp)
        code = codes[cols]
        on = code >= 0
        key = rows[on].astype(np.int64) * max(n_genes, 1) + code[on]
        uniq, inverse = _unique_inverse_of_runs(key)
        pair = np.full(rows.size, -1, dtype=np.int64)
        pair[on] = inverse
        cell = uniq // max(n_genes, 1)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=dp.shape[0]))]).astype(np.int64)
        genes = (uniq % max(n_genes, 1)).astype(np.int64)
        return cls(pair, indptr, genes, (dp.shape[0], n_genes), cell.astype(np.int64), on, inverse.astype(np.int64))

    def csr(self, values: np.ndarray) -> sp.csr_matrix:
        """Per-pair ``values`` as a CSR matrix, cells x genes."""
        return sp.csr_matrix((values, self.genes, self.indptr), shape=self.shape)

    def pair_counts(self, ad: sp.csr_matrix, dp: sp.csr_matrix, p_entry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reads on the changed haplotype ``k`` and all reads ``n`` per pair, (n_pairs,) each, every
        entry weighing ``|2 p - 1|`` for its phase ``p_entry`` (nnz,); a pair whose entries all weigh 0
        holds 0."""
        on, p = self.in_gene, p_entry[self.in_gene]
        weight = np.abs(2.0 * p - 1.0)
        x, m = ad.data[on], dp.data[on]
        changed = np.where(p > 0.5, x, m - x)
        size = self.genes.size
        n = np.bincount(self.at, weight * m, size)
        return np.clip(np.bincount(self.at, weight * changed, size), 0.0, n), n

    def counts(self, ad: sp.csr_matrix, dp: sp.csr_matrix, p_entry: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """:meth:`pair_counts` as CSR matrices, cells x genes (as :func:`_entry_gene_matrices`)."""
        k, n = self.pair_counts(ad, dp, p_entry)
        return self.csr(k), self.csr(n)


# ------------------------------------------------------------------------------------------------
# honest phase confidence: a temperature from split-half agreement
# ------------------------------------------------------------------------------------------------
#: Largest phase temperature: beyond it a site's log odds are as good as 0 (no allele weight).
MAX_PHASE_TEMPERATURE = 1000.0
#: Log-likelihood gain over ``T = 1`` the split-half fit needs to be used: half the 95% point of
#: chi-squared with one degree of freedom (a likelihood-ratio test at 5%).
TEMPERATURE_TEST_NATS = 1.92


def _split_half_temperature(alleles, codes, n_genes: int, carrier, rho, settings: _Settings, seed: int) -> dict:
    """The temperature that makes the EM's site log odds honest, from two disjoint halves of the cells.

    Each half is phased on its own (same bursting); a site read in both is phased twice from disjoint
    reads, so given its true phase the two calls are independent and, were their confidences ``q_A``,
    ``q_B`` calibrated, they would agree with probability ``q_A q_B + (1 - q_A)(1 - q_B)``. The
    temperature ``T >= 1`` dividing both halves' log odds that maximises the likelihood of the agreements
    seen is the calibration; a full-data log odds ``l`` is about ``l_A + l_B``, so ``l / T`` is the log
    odds of both halves' calibrated evidence together. Returns ``phase_temperature``, ``split_sites``
    (sites read in both halves) and ``split_agreement`` (their share phased alike; NaN without one).
    """
    in_a = _split_cells(carrier, seed)
    scores = []
    for half in (in_a, ~in_a):
        rows = np.flatnonzero(half)
        ad, dp = _counts(alleles[rows])
        rho_h = rho if np.ndim(rho) == 0 else np.asarray(rho)[rows]
        scores.append(_em(ad, dp, codes, n_genes, carrier[rows], rho_h, settings).score)
    both = (scores[0] != 0) & (scores[1] != 0)
    l_a, l_b = scores[0][both], scores[1][both]
    agree = np.sign(l_a) == np.sign(l_b)
    return {
        "phase_temperature": _agreement_temperature(l_a, l_b, agree),
        "split_sites": int(both.sum()),
        "split_agreement": float(agree.mean()) if both.any() else float("nan"),
    }


def _split_cells(carrier: np.ndarray, seed: int) -> np.ndarray:
    """Boolean (n_obs,) half of the cells, stratified by carrier probability: the cells sorted by it
    (random order among ties) are paired off and one of each pair drawn at random, so both halves hold
    as many likely carriers."""
    rng = np.random.default_rng(seed)
    n = carrier.size
    order = np.lexsort((rng.random(n), carrier))
    coin = rng.random((n + 1) // 2) < 0.5
    slot = np.arange(n)
    in_a = np.empty(n, dtype=bool)
    in_a[order] = np.where(slot % 2 == 0, coin[slot // 2], ~coin[slot // 2])
    return in_a


def _agreement_temperature(l_a: np.ndarray, l_b: np.ndarray, agree: np.ndarray) -> float:
    """Maximum-likelihood ``T`` in [1, :data:`MAX_PHASE_TEMPERATURE`] of the sites' agreement between
    halves: ``P(agree) = (1 + tanh(l_A / 2T) tanh(l_B / 2T)) / 2``. 1 (no change) without a site, or
    where the fit beats ``T = 1`` by no more than :data:`TEMPERATURE_TEST_NATS` (a likelihood-ratio
    test at 5%)."""
    if not l_a.size:
        return 1.0
    sign = np.where(agree, 1.0, -1.0)

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        both = np.abs(np.tanh(l_a / (2 * t)) * np.tanh(l_b / (2 * t)))
        return -float(np.sum(np.log(np.clip((1.0 + sign * both) / 2.0, 1e-300, None))))

    best = minimize_scalar(nll, bounds=(0.0, np.log(MAX_PHASE_TEMPERATURE)), method="bounded")
    # T = 1 unless the agreements reject it: halves whose log odds are all near 0 (a healthy donor, a
    # patient without carriers) leave the likelihood flat, and a flat optimum is no measurement
    return 1.0 if nll(0.0) - best.fun <= TEMPERATURE_TEST_NATS else float(np.exp(best.x))


@dataclass
class _Entries:
    """What the EM's site scores need of each read entry of ``dp`` (storage order) and never changes
    between its rounds: the entry's cell ``rows`` and site ``cols``, whether its site has a gene
    (``in_gene``) and its cell's prior log odds of being a carrier (``prior``, logit of the expression
    posterior); ``n_sites``."""

    rows: np.ndarray
    cols: np.ndarray
    in_gene: np.ndarray
    prior: np.ndarray
    n_sites: int

    @classmethod
    def of(cls, dp: sp.csr_matrix, in_gene: np.ndarray, carrier: np.ndarray) -> _Entries:
        rows, cols = _nonzero(dp)
        return cls(rows, cols, in_gene, logit(carrier)[rows], dp.shape[1])


def _site_scores(
    entries: _Entries,
    total: np.ndarray,
    own: np.ndarray,
    terms: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Log odds of ALT on the changed haplotype per site from its reads, each cell a carrier/normal
    mixture, and each read entry's share of it (its cell's reads at the site), in ``dp``'s storage order.

    A cell's carrier weight for a site is its expression posterior plus its allele LLR *without the
    site's gene* (the gene's own reads must not vouch for the phase they are judged by): ``total``
    (n_obs,) the cells' allele LLR, ``own`` (nnz,) the entry's gene's term of it (0 without gene);
    ``terms``: :func:`_entry_terms`."""
    normal_ll, alt_ll, ref_ll = terms
    # with w the carrier weight (log odds z) and N, A, R the entry's likelihoods as a normal cell and as
    # a carrier whose changed haplotype's reads are its ALT or its REF reads:
    # log(w A + (1 - w) N) - log(w R + (1 - w) N) = softplus(z + log A/N) - softplus(z + log R/N)
    u = entries.prior + total[entries.rows] - own - normal_ll
    contrib = np.logaddexp(0.0, u + alt_ll) - np.logaddexp(0.0, u + ref_ll)
    contrib = np.where(entries.in_gene, contrib, 0.0)
    score = np.bincount(entries.cols, weights=contrib, minlength=entries.n_sites)
    return score, contrib


def _entry_terms(ad, dp, lesion_type, conc, eps, base=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per read entry of ``dp`` (storage order): log-likelihood of its reads in a normal cell (beta-binomial
    about its site's normal ALT share ``base`` (n_sites,), default 1/2), and in a carrier with the changed
    haplotype's reads being the ALT ones or the REF ones (no binomial coefficients). Fixed for a given
    bursting: the EM computes them once, not every round."""
    x, m = ad.data, dp.data
    rows, cols = _nonzero(dp)
    mean = np.full(dp.shape[1], 0.5) if base is None else np.asarray(base, dtype=float)
    c = _at_entries(conc, rows)
    normal = betaln(x + c * mean[cols], m - x + c * (1.0 - mean)[cols]) - _bb_normaliser(conc, mean, rows, cols)
    return normal, _carrier(x, m, lesion_type, conc, eps, rows), _carrier(m - x, m, lesion_type, conc, eps, rows)


def _bb_normaliser(conc, mean: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``B(a, b)`` of each entry's beta-binomial, ``a = mean[col] conc[row]``, ``b = (1 - mean[col]) conc[row]``
    (``conc`` a float or one per cell), from a table of one value per (distinct concentration, site): cells
    of one technology share a concentration, so the table is far smaller than the entries."""
    levels, level = np.unique(np.atleast_1d(conc), return_inverse=True)
    if levels.size * mean.size > rows.size:  # nearly a concentration per cell: per entry is cheaper
        c = _at_entries(conc, rows)
        return betaln(c * mean[cols], c * (1.0 - mean)[cols])
    table = betaln(levels[:, None] * mean[None, :], levels[:, None] * (1.0 - mean)[None, :])
    return table[0, cols] if np.ndim(conc) == 0 else table[level.ravel()[rows], cols]


#: Pseudo-reads at 1/2 each site's normal ALT share is shrunk with (:func:`normal_share`).
NORMAL_SHARE_PSEUDO_READS = 20.0


def normal_share(ad: sp.csr_matrix, dp: sp.csr_matrix, weight: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
    """(n_sites,) each site's ALT share in normal cells: the reads of the cells weighted by ``weight``
    ((n_obs,), their probability of being normal), with :data:`NORMAL_SHARE_PSEUDO_READS` at 1/2.
    ``leave_one_out``: instead (nnz,) per read entry of ``dp`` (storage order), the share without that
    cell's own reads at the site (a cell's reads must not set the share they are judged against).

    A gene with allele-specific expression (a cis-eQTL, imprinting) reads one haplotype more in every
    cell. Taken as balanced, its under-expressed allele is the one "rare across cells", which phasing
    reads as the lost one wherever carriers are few or poorly told apart (10% carriers at 500 UMI in
    the simulator: the allele evidence turned against the truth); against a normal share measured
    from the likely normal cells, a site's phase rests on how carriers differ from them. Carriers the
    weights miss pull the share towards their retained allele, which weakens a site's phase, never
    reverses it."""
    return _normal_share(*_read_entries(ad, dp), weight, leave_one_out)


def _normal_share(ad: sp.csr_matrix, dp: sp.csr_matrix, weight: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
    """:func:`normal_share` of counts already on the same entries (:func:`_read_entries`, as the EM and
    :func:`allele_llr` hold them)."""
    rows, cols = _nonzero(dp)
    w = np.asarray(weight, float)[rows]
    reads = np.bincount(cols, w * dp.data, dp.shape[1])
    alt = np.bincount(cols, w * ad.data, dp.shape[1])
    half = NORMAL_SHARE_PSEUDO_READS / 2.0
    if leave_one_out:
        return (alt[cols] - w * ad.data + half) / (reads[cols] - w * dp.data + 2.0 * half)
    return (alt + half) / (reads + 2.0 * half)


def phase_table(var_names: pd.Index, gene, p_alt, dp) -> pd.DataFrame:
    """One row per site: its phase and its reads, the table of a learned phase (:func:`phase_sites`) and of
    a given one (:func:`remnant.tl.add_allele_evidence` with a user's phasing).

    Parameters
    ----------
    var_names
        (n_sites,) the sites' labels: the table's index (copied).
    gene
        (n_sites,) gene label per site; ``""`` where the site is not used.
    p_alt
        (n_sites,) P(ALT on the changed haplotype), 0-1; 0.5 where unknown.
    dp
        (n_cells, n_sites) REF + ALT reads per cell and site, sparse or dense; only read (explicit zeros
        and duplicate entries are summed away on a copy, so a cell counts only where it has reads).

    Returns
    -------
    pandas.DataFrame
        ``gene`` (object), ``p_alt``, ``allele`` (``"ALT"`` where ``p_alt >= 0.5``, else ``"REF"``),
        ``confidence`` (max(p_alt, 1 - p_alt)), ``n_reads`` (int64: reads over the cells) and ``n_cells``
        (int64: cells with reads).
    """
    p_alt = np.asarray(p_alt, dtype=float)
    reads = sp.csc_matrix(dp, copy=True)
    reads.sum_duplicates()
    reads.eliminate_zeros()
    return pd.DataFrame(
        {
            "gene": np.asarray(gene).astype(object),
            "p_alt": p_alt,
            "allele": np.where(p_alt >= 0.5, "ALT", "REF"),
            "confidence": np.maximum(p_alt, 1.0 - p_alt),
            "n_reads": np.asarray(reads.sum(axis=0)).ravel().astype(np.int64),
            "n_cells": np.diff(reads.indptr).astype(np.int64),
        },
        index=pd.Index(var_names).copy(),
    )


def _phase_table(alleles, dp, codes, genes, p_alt, post, rho, iterations, lesion_type, eps) -> pd.DataFrame:
    """The per-site result of :func:`phase_sites` (:func:`phase_table`) with the fit in ``attrs``."""
    gene = np.where(codes >= 0, genes[np.maximum(codes, 0)] if genes.size else "", "")
    table = phase_table(alleles.var_names, gene, p_alt, dp)
    table.attrs.update(
        overdispersion=rho if np.ndim(rho) else float(rho),
        iterations=int(iterations),
        lesion_type=lesion_type,
        eps=eps,
        carrier=post,
    )
    return table


# ------------------------------------------------------------------------------------------------
# per-cell evidence
# ------------------------------------------------------------------------------------------------
def allele_llr(
    alleles: anndata.AnnData,
    phase: pd.DataFrame,
    lesion_type: str = "loss",
    *,
    overdispersion: float | None = None,
    normal: np.ndarray | None = None,
    eps: float = 0.02,
    max_gene_llr: float = 3.0,
    leave_one_out: bool = True,
) -> pd.DataFrame:
    """Per-cell log-likelihood ratio, carrier vs normal, from allele reads at a lesion's phased SNPs.

    Parameters
    ----------
    alleles
        Cells x SNPs with ``layers["AD"]``, ``layers["DP"]``; SNPs not in ``phase.index`` are ignored.
    phase
        :func:`phase_sites` output (or a user's phasing): index site names, ``gene``, ``p_alt``.
    lesion_type
        ``"loss"`` or ``"gain"``.
    overdispersion
        Bursting ``rho`` (a float, or (n_obs,) one per cell). Default: :func:`bursting_overdispersion`
        of the ``normal`` cells if given, else ``phase.attrs["overdispersion"]``.
    normal
        (n_obs,) weights (or booleans) of cells to estimate ``rho`` from, e.g. reference cells.
    eps, max_gene_llr
        As :func:`phase_sites`.
    leave_one_out
        With a phase table :func:`phase_sites` learned from these same cells (its
        ``attrs["loo_logit"]``), score each cell's reads at a site by the site's phase learned without
        that cell's reads there: a site read by a few cells is otherwise phased to agree with them, and
        their reads then look like a carrier's (self-confirmation). Ignored for other phase tables.

    Returns
    -------
    pandas.DataFrame
        Index ``alleles.obs_names``: ``llr`` (float, nats; sum of the genes' clipped terms; 0 for a
        cell without reads), ``n_reads`` (int, REF + ALT reads on phased sites with a gene),
        ``n_genes`` (int, genes whose reads were scored: for a loss every read site with a gene, whose
        phase-free evidence counts too; for a gain the phased ones). ``attrs["overdispersion"]``: the
        ``rho`` used.
    """
    _check_type(lesion_type)
    _check_alleles(alleles)
    if not {"gene", "p_alt"} <= set(phase.columns):
        raise ValueError("phase needs columns 'gene' and 'p_alt' (the table phase_sites returns)")
    rho = _rho_for(alleles, phase, overdispersion, normal)
    p_alt, codes, genes = _aligned_phase(alleles, phase)
    ad, dp = _counts(alleles)
    loo = _leave_one_out(alleles, phase) if leave_one_out else None
    if lesion_type == "loss":
        if loo is None:
            p_entry = p_alt[dp.indices]
            base = _aligned_column(alleles, phase, "normal_share", 0.5)[dp.indices]
            error = _aligned_column(alleles, phase, "error_rate", eps)[dp.indices]
        else:  # learned on these cells: each cell's reads against the share and rate of the others' (as its phase)
            entries = _nonzero(dp)
            p_entry = expit(_lookup(loo, *entries))
            base = _normal_share(ad, dp, 1.0 - np.asarray(phase.attrs["carrier"], float), leave_one_out=True)
            # phase_sites writes error_loo beside loo_logit (a loss's phase), on the same entries
            error_loo = phase.attrs.get("error_loo")
            error = eps if error_loo is None else _lookup(error_loo, *entries)
        llr, n = _marginal_loss_llr(ad, dp, p_entry, codes, genes.size, rho, error, max_gene_llr, base)
    else:
        if loo is None:
            k, n = _gene_matrices(ad, dp, p_alt, codes, genes.size)
        else:
            k, n = _entry_gene_matrices(ad, dp, loo, codes, genes.size)
        llr = _gene_llr(k, n, lesion_type, rho, eps, max_gene_llr)
    used = (codes >= 0) & (p_alt != 0.5)
    out = pd.DataFrame(
        {
            "llr": np.asarray(llr.sum(axis=1)).ravel(),
            "n_reads": np.asarray(dp[:, used].sum(axis=1)).ravel().astype(np.int64),
            "n_genes": np.diff(n.indptr).astype(np.int64),
        },
        index=alleles.obs_names.copy(),
    )
    out.attrs["overdispersion"] = rho
    return out


def _marginal_loss_llr(
    ad: sp.csr_matrix,
    dp: sp.csr_matrix,
    p_entry: np.ndarray,
    codes: np.ndarray,
    n_genes: int,
    rho,
    eps,
    bound,
    base_entry: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Clipped LLR of a loss per (cell, gene), each site's phase known only as ``p_entry`` (nnz,
    P(ALT on the lost haplotype) per read entry of ``dp``), and the reads per (cell, gene); CSR cells x
    genes.

    The phase is marginalised, not weighted. A carrier reads a site's retained allele up to error:
    ``p eps^ALT (1 - eps)^REF + (1 - p) eps^REF (1 - eps)^ALT`` per site. A normal cell's reads on the
    lost haplotype over the gene, ``k``, are beta-binomial about 1/2 (bursting), ``k`` summing each
    site's ALT reads (probability ``p``) or REF reads: its distribution over the sites' phases is the
    product of the sites' two-point laws. Soft counts (``|2p - 1|`` of the reads scored as if the phase
    were sure) charged a carrier the full price of a read against an unsure phase on that share: at
    ``p`` 0.7, -1.3 nats for one read instead of -0.5. A site of unknown phase still counts where its
    evidence is phase-free: both alleles in one cell are a normal cell's (a carrier has one haplotype).
    With every ``p`` 0 or 1 this is :func:`_gene_llr` of a loss.

    ``base_entry`` (nnz,): the normal ALT share of each entry's site (:func:`normal_share`; default 1/2). A
    normal cell's reads of a one-site gene are beta-binomial about it; over several sites the lost
    haplotype's expected share ``p b + (1 - p)(1 - b)``, averaged over the pair's reads, replaces 1/2.
    ``eps``: a float, or (nnz,) one per entry (:func:`site_error_rates`)."""
    layout = _PairLayout.of(dp, codes, n_genes)
    on = layout.pair >= 0
    a, m = ad.data[on], dp.data[on]
    p = np.clip(p_entry[on], 1e-12, 1.0 - 1e-12)
    b = np.full(a.size, 0.5) if base_entry is None else np.clip(base_entry[on], 1e-3, 1.0 - 1e-3)
    e = eps[on] if np.ndim(eps) else eps
    log_e, log_1e = np.log(e), np.log1p(-e)
    car = np.logaddexp(np.log(p) + a * log_e + (m - a) * log_1e, np.log1p(-p) + (m - a) * log_e + a * log_1e)
    pair, size = layout.pair[on], layout.genes.size
    n = np.bincount(pair, m, size)
    conc = _at_entries(_concentration(rho), np.repeat(np.arange(dp.shape[0]), np.diff(layout.indptr)))
    llr = np.bincount(pair, car, size) - _normal_marginal(pair, a, m, p, n, conc, b)
    return (
        sp.csr_matrix((np.clip(llr, -bound, bound), layout.genes, layout.indptr), shape=layout.shape),
        sp.csr_matrix((n, layout.genes, layout.indptr), shape=layout.shape),
    )


#: (cell, gene) pairs of at most this many reads get the normal term's phase mixture as one array
#: operation; deeper ones (plate genes of hundreds of reads) one at a time, to bound the array's width.
_MIXTURE_WIDTH = 128


def _normal_marginal(pair, a, m, p, n, conc, b) -> np.ndarray:
    """Log-likelihood (no binomial coefficient) per (cell, gene) pair of a normal cell's reads, the
    sites' phases marginalised: ``log sum_k P(k) BB(k; n, share)`` with ``P(k)`` the law of the reads on the
    lost haplotype (each site's ALT reads with probability ``p``, else its REF reads) and ``share`` its
    expected normal share over the pair's reads (a one-site pair: its ALT reads about ``b``). ``pair`` (entries,)
    the entry's pair; ``a``, ``m``, ``p`` the entry's ALT reads, reads and phase; ``n`` (pairs,) reads
    per pair; ``conc`` the concentration (a float, or one per pair); ``b`` (entries,) the normal ALT share of
    the entry's site, inside (0, 1)."""
    entries = np.bincount(pair, minlength=n.size)
    out = np.zeros(n.size)
    one = entries[pair] == 1
    # one site: its ALT reads are beta-binomial about its normal ALT share, whichever allele is lost
    out[pair[one]] = _bb(a[one], m[one], b[one], _at_entries(conc, pair[one]))
    # several: the lost haplotype's expected share in a normal cell over the pair's reads
    lost = p * b + (1.0 - p) * (1.0 - b)
    share = np.bincount(pair, m * lost, n.size) / np.maximum(n, 1e-12)
    many = ~one
    narrow = many & (n[pair] < _MIXTURE_WIDTH)
    # pairs of similar depth together: the law's width is its deepest pair's reads, so one pair of 100
    # reads would widen every pair's law (most hold a few reads) to 100 points
    width = np.ceil(np.log2(np.maximum(n[pair], 1.0)))
    for w in np.unique(width[narrow]):
        sel = narrow & (width == w)
        rows, value = _mixture_bb_many(pair[sel], a[sel], m[sel], p[sel], n, conc, share)
        out[rows] = value
    wide = np.flatnonzero(many & ~narrow)
    if wide.size:
        order = wide[np.argsort(pair[wide], kind="stable")]
        for group in np.split(order, np.flatnonzero(np.diff(pair[order])) + 1):
            g = pair[group[0]]
            out[g] = _mixture_bb(a[group], m[group], p[group], _at_entries(conc, g), share[g])
    return out


def _mixture_bb_many(pair, a, m, p, n, conc, share=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_mixture_bb` of many pairs at once (their entries ``pair``, ``a``, ``m``, ``p``; ``n``
    reads per pair, all below :data:`_MIXTURE_WIDTH`): the pairs and their values. The law of the
    lost-haplotype reads is built site by site, the r-th site of every pair in one step."""
    order = np.argsort(pair, kind="stable")
    pair, a, m, p = pair[order], a[order].astype(np.int64), m[order].astype(np.int64), p[order]
    first = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])  # runs of the sorted pairs
    pairs, counts = pair[first], np.diff(np.r_[first, pair.size])
    row = np.repeat(np.arange(pairs.size), counts)
    rank = np.arange(pair.size) - first[row]
    width = int(n[pairs].max()) + 1
    j = np.arange(width)
    law = np.zeros((pairs.size, width))
    law[:, 0] = 1.0
    for r in range(int(counts.max())):
        at = rank == r
        rr, sub = row[at], law[row[at]]
        step = np.zeros_like(sub)
        for shift, weight in ((a[at], p[at]), (m[at] - a[at], 1.0 - p[at])):
            src = j[None, :] - shift[:, None]
            step += weight[:, None] * np.where(src >= 0, np.take_along_axis(sub, np.maximum(src, 0), 1), 0.0)
        law[rr] = step
    total = n[pairs].astype(float)
    c = conc if np.ndim(conc) == 0 else np.asarray(conc)[pairs]
    mean = 0.5 if share is None else share[pairs]
    # the beta-binomial only where the law has mass (its cost is most of this function's), its
    # normaliser once per pair
    at, k = np.nonzero((law > 0) & (j[None, :] <= total[:, None]))
    terms = np.full(law.shape, -np.inf)
    terms[at, k] = np.log(law[at, k]) + _bb(k.astype(float), total[at], mean, c, at)
    return pairs, np.logaddexp.reduce(terms, axis=1)


def _mixture_bb(a: np.ndarray, m: np.ndarray, p: np.ndarray, conc: float, share: float = 0.5) -> float:
    """``log sum_k P(k) BB(k; sum m, share)`` for one pair's sites (ALT reads ``a``, reads ``m``, phase ``p``;
    ``share`` the lost haplotype's expected share of a normal cell's reads)."""
    law = np.ones(1)
    for a_s, m_s, p_s in zip(a.astype(np.int64), m.astype(np.int64), p):
        step = np.zeros(m_s + 1)
        step[a_s] += p_s  # ALT on the lost haplotype: its ALT reads are the lost ones
        step[m_s - a_s] += 1.0 - p_s
        law = np.convolve(law, step)
    k = np.arange(law.size, dtype=float)
    keep = law > 0
    terms = np.log(law[keep]) + _bb(k[keep], np.full(keep.sum(), k.size - 1.0), share, conc)
    return float(np.logaddexp.reduce(terms))


def _rho_for(alleles, phase: pd.DataFrame, overdispersion, normal) -> float:
    """The overdispersion :func:`allele_llr` uses (argument, normal cells, or the phasing's)."""
    if overdispersion is not None:
        return overdispersion if np.ndim(overdispersion) else float(overdispersion)
    if normal is not None:
        return bursting_overdispersion(alleles, weights=np.asarray(normal, dtype=float))
    if "overdispersion" in phase.attrs:
        rho = phase.attrs["overdispersion"]
        return rho if np.ndim(rho) else float(rho)
    raise ValueError("allele_llr needs overdispersion, normal cells, or a phase table from phase_sites")


def _leave_one_out(alleles, phase: pd.DataFrame) -> sp.csr_matrix | None:
    """The per-entry phase log odds of :func:`phase_sites` when ``phase`` was learned on these cells
    and sites (same shape and site order), else None."""
    loo = phase.attrs.get("loo_logit")
    if loo is None or loo.shape != (alleles.n_obs, alleles.n_vars) or not phase.index.equals(alleles.var_names):
        return None
    return loo


def _entry_gene_matrices(
    ad: sp.csr_matrix, dp: sp.csr_matrix, loo: sp.csr_matrix, codes: np.ndarray, n_genes: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """As :func:`_gene_matrices`, with each read entry's own phase (log odds ``loo``, cells x sites): the
    EM's soft counts (:meth:`_PairLayout.counts`) on the pairs that hold any (a pair whose entries all
    weigh 0 is not one of the cell's genes)."""
    k, n = _PairLayout.of(dp, codes, n_genes).counts(ad, dp, expit(_lookup(loo, *_nonzero(dp))))
    rows, cols = _nonzero(n)
    on = n.data > 0
    shape = (dp.shape[0], n_genes)
    return (
        sp.csr_matrix((k.data[on], (rows[on], cols[on])), shape=shape),
        sp.csr_matrix((n.data[on], (rows[on], cols[on])), shape=shape),
    )


def _aligned_column(alleles, phase: pd.DataFrame, column: str, default: float) -> np.ndarray:
    """(n_sites,) a numeric column of ``phase`` per SNP of ``alleles`` (``default`` where absent)."""
    out = np.full(alleles.n_vars, default)
    if column in phase.columns:
        pos = phase.index.get_indexer(alleles.var_names)
        out[pos >= 0] = phase[column].to_numpy(float)[pos[pos >= 0]]
    return out


def _aligned_phase(alleles, phase: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``p_alt`` and gene codes per SNP of ``alleles`` (unphased SNPs: 0.5, no gene)."""
    p_alt = _aligned_column(alleles, phase, "p_alt", 0.5)
    pos = phase.index.get_indexer(alleles.var_names)
    found = pos >= 0
    gene = np.full(alleles.n_vars, "", dtype=object)
    gene[found] = phase["gene"].to_numpy(object)[pos[found]]
    codes, genes = _codes(gene)
    return p_alt, codes, genes


def null_allele_llr(
    alleles: anndata.AnnData,
    sites_gene,
    lesion_type: str = "loss",
    *,
    overdispersion: float,
    eps: float = 0.02,
    max_gene_llr: float = 3.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-cell allele LLRs where no lesion is, with a random phase, and their model mean and sd.

    At SNPs of a region no cell has a lesion in (a control region), a random phase per site makes the
    per-cell LLR a draw from its null distribution: at a heterozygous site a normal cell's reads are
    symmetric about 1/2, whichever allele is named "changed". Its spread against the model's (``z``)
    measures what the model leaves out: bursting misjudged, sites wrongly taken as heterozygous (all
    reads one allele), allele-specific expression, mapping bias. ``temperature`` of the ``z`` is the
    allele evidence's calibration, as the expression evidence's is measured on reference cells.

    Parameters
    ----------
    alleles
        Cells x control-region SNPs (``layers`` AD, DP).
    sites_gene
        (n_sites,) gene of each SNP (:func:`site_genes`; ``""``: not used).
    overdispersion, eps, max_gene_llr, lesion_type
        As :func:`allele_llr`.
    seed
        Seed of the random phases.

    Returns
    -------
    pandas.DataFrame
        Index ``alleles.obs_names``: ``llr`` (nats), ``mean`` and ``sd`` (its null mean and sd under the
        model, given the cell's reads per gene), ``z`` (``(llr - mean) / sd``; NaN without reads).
    """
    _check_type(lesion_type)
    _check_alleles(alleles)
    codes, genes = _codes(sites_gene)
    p_alt = np.random.default_rng(seed).integers(0, 2, alleles.n_vars).astype(float)
    ad, dp = _counts(alleles)
    k, n = _gene_matrices(ad, dp, p_alt, codes, genes.size)
    llr = _gene_llr(k, n, lesion_type, overdispersion, eps, max_gene_llr)
    mean_g, var_g = _null_term_moments(n.data, lesion_type, overdispersion, eps, max_gene_llr)
    rows, _ = _nonzero(n)
    mean = np.bincount(rows, mean_g, alleles.n_obs)
    var = np.bincount(rows, var_g, alleles.n_obs)
    total = np.asarray(llr.sum(axis=1)).ravel()
    sd = np.sqrt(var)
    z = np.where(sd > 0, (total - mean) / np.where(sd > 0, sd, 1.0), np.nan)
    return pd.DataFrame({"llr": total, "mean": mean, "sd": sd, "z": z}, index=alleles.obs_names.copy())


def _null_term_moments(
    n: np.ndarray, lesion_type: str, rho: float, eps: float, bound: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of one gene's clipped LLR in a normal cell with ``n`` reads (k ~ BetaBinomial(n,
    1/2, rho)), for each entry of ``n`` (integer read counts); computed once per distinct ``n``."""
    conc = _concentration(rho)
    values, inverse = np.unique(np.round(n).astype(np.int64), return_inverse=True)
    mean, var = np.zeros(values.size), np.zeros(values.size)
    for i, m in enumerate(values):
        kk = np.arange(m + 1, dtype=float)
        mm = np.full_like(kk, float(m))
        log_p = _bb(kk, mm, 0.5, conc) + gammaln(m + 1) - gammaln(kk + 1) - gammaln(m - kk + 1)
        p = np.exp(log_p - np.logaddexp.reduce(log_p))
        term = np.clip(_carrier(kk, mm, lesion_type, conc, eps) - _bb(kk, mm, 0.5, conc), -bound, bound)
        mean[i] = np.sum(p * term)
        var[i] = np.sum(p * (term - mean[i]) ** 2)
    return mean[inverse], var[inverse]


def combine(expression_llr, allele_llr, prior) -> np.ndarray:
    """Joint carrier posterior from independent expression and allele evidence.

    Given the carrier state, expression counts and allele reads are independent, so their LLRs add:
    ``posterior = sigmoid(logit(prior) + expression_llr + allele_llr)``. ``prior`` is the carrier
    fraction (scalar or per cell, 0-1; e.g. the sample's prior in ``uns["lesions"]``); the LLRs are
    natural-log arrays of one length. Equivalently, with an expression posterior ``p`` already
    holding the prior: ``sigmoid(logit(p) + allele_llr)``. Returns (n,) float, 0-1.
    """
    prior = np.clip(np.asarray(prior, dtype=float), 1e-12, 1 - 1e-12)
    return expit(logit(prior) + np.asarray(expression_llr, dtype=float) + np.asarray(allele_llr, dtype=float))
