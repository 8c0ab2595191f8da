"""Which listed SNPs each person is heterozygous at, from the person's own cells (issue 18).

The allele model (:mod:`remnant.tl.alleles`) takes every site it is given as heterozygous. A VCF of a
patient's germline calls, or cellsnp-lite run with a minor-allele filter, gives it that. A list of
common SNPs (cellsnp-lite's 1000 Genomes sites with ``--minMAF 0``, the ``alleles.sites`` of the
workflow) does not: a person is homozygous at most of them, and at a homozygous site every cell reads
one allele, which the model reads as a carrier of a loss (its normal cells "lose" a haplotype) and as
strong bursting. On the simulated cohort with three homozygous sites per heterozygous one the joint
AUROC fell below that of expression alone (0.992 -> 0.970 at 2,000 UMI) and normal patient cells called
rose from 2% to 12%.

Model (:func:`heterozygous_sites`). Per person and site, each cell with reads casts one vote: the
allele most of its reads show (bursting makes a cell's reads of one gene share a haplotype, so votes,
not reads, are independent), or a tie. A homozygous site gives every vote to one allele, each wrong
with the error rate ``eps``, and ties only through errors (probability ``eps``). A heterozygous site
gives a vote to the changed haplotype's allele with probability ``m``: 1/2 outside the lesions; inside a
loss ``m = (1 - f) / 2 / (1 - f / 2)`` (carriers read the retained allele only and express the region at
half; ``f`` the cell's carrier probability from expression, so a diagnosis sample's cells and a
remission sample's cells of one patient each count at their own), inside a gain
``m = (f + (1 - f) / 2) / (1 + f / 2)`` (carriers express it at 3/2 and read the gained allele at 2/3);
a tied cell counts as evidence of a heterozygote (weight 1/2 against ``eps``). The share ``pi`` of
the person's listed sites that are heterozygous is fitted by EM on the sites outside every lesion
with two votes or more; a site is kept for that person when its posterior ``P(het)`` is at least 1/2.

So a site read by one cell keeps the prior: kept when most of the person's listed sites are
heterozygous (a germline VCF, a filtered cellsnp-lite run), dropped when most are not (a common-SNP
list) unless a cell reads both alleles or cells disagree. With fewer than :data:`MIN_GENOTYPE_SITES`
informative sites outside the lesions ``pi`` is not measured and every site is kept (as before this
module). A person whose cells all carry a loss shows one allele at a heterozygous site of the lesion:
from RNA alone that cannot be told from a homozygote, and the prior decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import logsumexp

from remnant.tl.alleles import _nonzero, _read_entries, _unique_inverse

__all__ = ["MIN_GENOTYPE_SITES", "heterozygous_sites", "vote_share"]

#: Sites outside the lesions with two cell votes or more a person needs for its share of heterozygous
#: sites to be measured (fewer: every listed site is taken as heterozygous).
MIN_GENOTYPE_SITES = 30

_EM_ROUNDS = 200


def heterozygous_sites(
    ad: sp.csr_matrix,
    dp: sp.csr_matrix,
    persons: np.ndarray,
    regions: Sequence[tuple[np.ndarray, np.ndarray | Mapping[str, float]]] = (),
    *,
    eps: float = 0.02,
) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """Each person's posterior of being heterozygous at each site it has reads at.

    Parameters
    ----------
    ad, dp
        (n_cells, n_sites) ALT and REF + ALT reads, CSR.
    persons
        (n_cells,) the person of each cell (str).
    regions
        The lesions: per lesion a boolean (n_sites,) mask of its sites and the probability ``m`` that a
        cell's vote at a heterozygous site there goes to the changed haplotype's allele
        (:func:`vote_share`): an (n_cells,) array, one per cell from its carrier probability (a
        patient's diagnosis and remission cells each at their own), or ``{person: m}``, one per
        person; elsewhere ``m`` is 1/2 (see the module docstring). Sites outside every region fit the
        share of heterozygous sites.
    eps
        Per-vote error rate at a homozygous site (and the chance of a tie there).

    Returns
    -------
    het
        CSR (n_persons in the order of ``pd.unique(persons)``, n_sites): ``P(het)`` of each (person, site)
        with reads (0-1). Memory: a few float64 per (person, site) with reads.
    table
        One row per person: ``person``, ``het_fraction`` (``pi``; NaN when not measured),
        ``informative_sites`` (outside the lesions, >= 2 votes), ``sites`` (with reads), ``kept``
        (``P(het) >= 1/2``).
    """
    return _heterozygous_entries(*_read_entries(ad, dp), persons, regions, eps)


def _heterozygous_entries(ad: sp.csr_matrix, dp: sp.csr_matrix, persons, regions, eps: float):
    """:func:`heterozygous_sites` of counts already on the same entries (:func:`_read_entries`)."""
    order = pd.unique(persons)
    code = pd.Index(order).get_indexer(persons)
    rows, cols = _nonzero(dp)
    m = _entry_shares(rows, cols, code, order, regions)
    pairs, alt, ref, tie, sums = _votes(
        ad.data, dp.data, code[rows].astype(np.int64) * dp.shape[1] + cols, m, dp.shape[1]
    )
    outside = np.ones(alt.size, bool)
    for mask, _ in regions:
        outside &= ~np.asarray(mask, bool)[pairs[1]]
    log_het, log_hom = _site_likelihoods(alt, ref, tie, sums, eps)
    informative = outside & (alt + ref + tie >= 2)
    rows, post = [], np.zeros(alt.size)
    for p, person in enumerate(order):
        mine = pairs[0] == p
        use = mine & informative
        pi = _fit_share(log_het[use], log_hom[use]) if use.sum() >= MIN_GENOTYPE_SITES else np.nan
        prior = 1.0 if np.isnan(pi) else pi
        post[mine] = _posterior(log_het[mine], log_hom[mine], prior)
        rows.append(
            {
                "person": person,
                "het_fraction": pi,
                "informative_sites": int(use.sum()),
                "sites": int(mine.sum()),
                "kept": int((post[mine] >= 0.5).sum()),
            }
        )
    het = sp.csr_matrix((post, (pairs[0], pairs[1])), shape=(len(order), dp.shape[1]))
    return het, pd.DataFrame(rows)


def _entry_shares(rows: np.ndarray, cols: np.ndarray, code: np.ndarray, order, regions) -> np.ndarray:
    """``m`` of every stored read entry (``rows``, ``cols``: its cell and site): its region's share for
    the cell (a per-cell array) or for the cell's person (a mapping); 1/2 outside every region."""
    m = np.full(cols.size, 0.5)
    for mask, share in regions:
        inside = np.asarray(mask, bool)[cols]
        if isinstance(share, Mapping):
            m[inside] = pd.Series(order[code[rows[inside]]]).map(share).fillna(0.5).to_numpy(float)
        else:
            m[inside] = np.asarray(share, float)[rows[inside]]
    return m


def _votes(a: np.ndarray, n: np.ndarray, keys: np.ndarray, m: np.ndarray, n_sites: int):
    """Per (person, site) with reads: (person, site) index pair, the cells voting ALT, REF and tied, and
    the log likelihoods of the votes at a heterozygous site with ALT the changed allele and with REF.
    Per stored read entry: ``a`` ALT and ``n`` REF + ALT reads, ``keys`` person * ``n_sites`` + site,
    ``m`` its chance that its vote goes to the changed allele."""
    uniq, inv = _unique_inverse(keys)
    v_alt, v_ref, v_tie = 2 * a > n, 2 * a < n, 2 * a == n
    alt = np.bincount(inv, weights=v_alt, minlength=uniq.size)
    ref = np.bincount(inv, weights=v_ref, minlength=uniq.size)
    tie = np.bincount(inv, weights=v_tie, minlength=uniq.size)
    m = np.clip(m, 1e-6, 1 - 1e-6)
    lm, l1m = np.log(m), np.log1p(-m)
    alt_changed = np.bincount(inv, weights=v_alt * lm + v_ref * l1m, minlength=uniq.size)
    ref_changed = np.bincount(inv, weights=v_alt * l1m + v_ref * lm, minlength=uniq.size)
    return (uniq // n_sites, uniq % n_sites), alt, ref, tie, (alt_changed, ref_changed)


def _site_likelihoods(alt, ref, tie, sums, eps) -> tuple[np.ndarray, np.ndarray]:
    """Log likelihoods of the votes at a heterozygous site (either allele the changed one's; ``sums``:
    the votes' log likelihoods with ALT and with REF changed, :func:`_votes`) and at a homozygous site
    (either allele)."""
    log_het = logsumexp(list(sums), axis=0) + np.log(0.5) + tie * np.log(0.5)
    le, l1e = np.log(eps), np.log1p(-eps)
    log_hom = logsumexp([alt * l1e + ref * le, alt * le + ref * l1e], axis=0) + np.log(0.5) + tie * le
    return log_het, log_hom


def _posterior(log_het: np.ndarray, log_hom: np.ndarray, pi: float) -> np.ndarray:
    """P(het) given the prior share ``pi``."""
    if pi >= 1.0:
        return np.ones(log_het.size)
    if pi <= 0.0:
        return np.zeros(log_het.size)
    a = np.log(pi) + log_het
    b = np.log1p(-pi) + log_hom
    return np.exp(a - np.logaddexp(a, b))


def _fit_share(log_het: np.ndarray, log_hom: np.ndarray) -> float:
    """ML share of heterozygous sites (EM on the two-component mixture)."""
    pi = 0.5
    for _ in range(_EM_ROUNDS):
        new = float(np.clip(_posterior(log_het, log_hom, pi).mean(), 1e-4, 1 - 1e-4))
        if abs(new - pi) < 1e-7:
            return new
        pi = new
    return pi


def vote_share(lesion_type: str, carrier_fraction):
    """``m`` of a heterozygous site inside a lesion of ``lesion_type``: the chance a cell's vote goes to
    the changed haplotype's allele, for a person whose cells carry it at ``carrier_fraction`` (0-1), or
    for one cell of carrier probability ``carrier_fraction`` (an array of them gives an array): a
    carrier of a loss reads only the retained allele and, expressing the region at half, votes half as
    often as a normal cell; a carrier of a gain reads the gained allele at 2/3 and votes 3/2 as often."""
    f = np.clip(np.asarray(carrier_fraction, float), 0.0, 1.0)
    if lesion_type == "loss":
        out = 0.5 * (1.0 - f) / (1.0 - 0.5 * f)
    else:
        out = (f * (1.5 * 2.0 / 3.0) + (1.0 - f) * 0.5) / (1.0 + 0.5 * f)
    return out if out.ndim else float(out)
