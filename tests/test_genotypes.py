"""Which listed SNPs each person is heterozygous at (remnant.tl.genotypes), and what that does to the
allele evidence when the listed sites are common SNPs rather than the person's heterozygotes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from test_allele_evidence import simulated  # noqa: F401  (the module's cohort fixture)
from test_lesions import auroc

from remnant.sim.alleles import with_homozygous_sites
from remnant.tl.allele_evidence import add_allele_evidence
from remnant.tl.genotypes import MIN_GENOTYPE_SITES, heterozygous_sites, vote_share


def _person(rng, n_sites, het_fraction, cells=60, reads_per_cell_site=0.08, eps=0.01):
    """Reads of one person: (AD, DP) cells x sites, and which sites are heterozygous. At a
    heterozygous site each reading cell reads one haplotype (bursting), at a homozygous site one allele."""
    het = rng.random(n_sites) < het_fraction
    hom_alt = rng.random(n_sites) < 0.5
    dp = rng.poisson(reads_per_cell_site, (cells, n_sites)) * (1 + rng.poisson(1.0, (cells, n_sites)))
    hap = rng.random((cells, n_sites)) < 0.5  # the haplotype a cell's reads come from
    alt_allele = np.where(het, hap, hom_alt)
    err = rng.binomial(dp, eps)
    ad_ = np.where(alt_allele, dp - err, err)
    return sp.csr_matrix(ad_), sp.csr_matrix(dp), het


@pytest.mark.parametrize("het_fraction", [0.3, 0.7])
def test_share_of_heterozygous_sites_and_which(het_fraction):
    rng = np.random.default_rng(0)
    a, d, het = _person(rng, 3000, het_fraction)
    persons = np.array(["A"] * a.shape[0])
    post, table = heterozygous_sites(a, d, persons, eps=0.01)
    row = table.iloc[0]
    assert abs(row["het_fraction"] - het_fraction) < 0.05
    p = post.toarray()[0]
    votes = np.asarray((d > 0).sum(axis=0)).ravel()
    sure = votes >= 4
    # sites read by several cells are told apart; a site read by one cell keeps the prior
    assert ((p[sure] >= 0.5) == het[sure]).mean() > 0.9
    both = np.asarray(((a > 0).multiply(a < d)).sum(axis=0)).ravel()  # cells reading both alleles: a tie or more
    one = (votes == 1) & (both == 0)
    assert one.sum() > 100 and np.allclose(p[one], row["het_fraction"], atol=1e-6)
    assert row["kept"] == int((p[votes > 0] >= 0.5).sum())


def test_a_list_of_heterozygotes_is_kept_whole():
    rng = np.random.default_rng(1)
    a, d, _ = _person(rng, 2000, 1.0)
    post, table = heterozygous_sites(a, d, np.array(["A"] * a.shape[0]))
    assert table.iloc[0]["het_fraction"] > 0.98
    assert table.iloc[0]["kept"] == table.iloc[0]["sites"]


def test_too_few_informative_sites_keep_everything():
    rng = np.random.default_rng(2)
    a, d, _ = _person(rng, 40, 0.2, cells=10)
    post, table = heterozygous_sites(a, d, np.array(["A"] * 10))
    assert table.iloc[0]["informative_sites"] < MIN_GENOTYPE_SITES
    assert np.isnan(table.iloc[0]["het_fraction"])
    assert table.iloc[0]["kept"] == table.iloc[0]["sites"]


def test_vote_share_inside_lesions():
    assert vote_share("loss", 0.0) == pytest.approx(0.5) and vote_share("gain", 0.0) == pytest.approx(0.5)
    assert vote_share("loss", 1.0) == pytest.approx(0.0)  # carriers read the retained allele only
    assert vote_share("loss", 0.5) == pytest.approx(1 / 3)  # normal cells' reads, weighted by expression
    assert vote_share("gain", 1.0) == pytest.approx(2 / 3)


def test_loss_of_heterozygosity_in_carriers_is_not_taken_for_a_homozygote():
    """Inside a loss, a person of 90% carriers shows mostly one allele at a heterozygous site: with the
    carrier fraction in the model such sites stay heterozygous where a plain 1/2 would drop them."""
    rng = np.random.default_rng(3)
    cells, n_sites = 200, 800
    carrier = rng.random(cells) < 0.9
    dp = rng.poisson(0.05, (cells, n_sites)) * (1 + rng.poisson(1.0, (cells, n_sites)))
    inside = np.arange(n_sites) >= 400
    hap = rng.random((cells, n_sites)) < 0.5
    hap[np.ix_(carrier, inside)] = False  # carriers keep haplotype 0 (REF) inside the lesion
    ad_ = np.where(hap, dp, 0)
    persons = np.array(["A"] * cells)
    plain, _ = heterozygous_sites(sp.csr_matrix(ad_), sp.csr_matrix(dp), persons)
    regions = [(inside, {"A": vote_share("loss", 0.9)})]
    aware, table = heterozygous_sites(sp.csr_matrix(ad_), sp.csr_matrix(dp), persons, regions)
    read = np.asarray((dp > 0).sum(axis=0)).ravel() >= 3
    pick = inside & read
    assert table.iloc[0]["het_fraction"] > 0.95
    assert (aware.toarray()[0][pick] >= 0.5).mean() > 0.95
    assert (aware.toarray()[0][pick]).mean() > (plain.toarray()[0][pick]).mean()


def test_common_snp_sites_do_not_make_normal_cells_carriers(simulated):  # noqa: F811
    adata, alleles, _, lesions = simulated
    polluted = with_homozygous_sites(alleles, 3)
    before = polluted.layers["DP"].copy()
    clean, mixed = adata.copy(), adata.copy()
    add_allele_evidence(clean, alleles, lesions)
    add_allele_evidence(mixed, polluted, lesions)
    assert (polluted.layers["DP"] != before).nnz == 0  # the input is not modified
    params = mixed.uns["lesions"]["del5q"]["allele_params"]
    assert 0.15 < params["het_fraction"]["P1"] < 0.4  # a quarter of the listed sites are heterozygous
    assert params["het_fraction"]["H1"] < 0.4
    p1 = (adata.obs["patient"] == "P1").to_numpy()
    truth = adata.obs["truth"].to_numpy(bool)[p1]
    for out in (clean, mixed):
        out.auc = auroc(out.obs["del5q_posterior"].to_numpy()[p1], truth)
        out.normal_called = out.obs["del5q_call"].to_numpy()[p1][~truth].mean()
    assert mixed.auc > clean.auc - 0.01
    assert mixed.normal_called <= clean.normal_called + 0.03


def test_cells_count_at_their_own_carrier_probability():
    """One patient, a diagnosis sample (carriers, posterior 0.95) and a remission sample (normal, 0.05).
    At a heterozygous site of the loss read by six diagnosis cells (the retained allele) and two
    remission cells (one each way), each cell at its own carrier probability keeps the site; the
    patient's mean carrier fraction (1/2) for every cell expects a third of the votes on the lost
    allele and takes the one it sees for a homozygote's error (issue 18: the genotype step used the
    patient's mean over samples)."""
    rng = np.random.default_rng(5)
    n_dx, n_rem, n_out, n_in = 200, 200, 120, 60
    post = np.r_[np.full(n_dx, 0.95), np.full(n_rem, 0.05)]
    het_out = rng.random(n_out) < 0.25  # a common-SNP list: a quarter of the sites heterozygous
    ad_rows = []
    for j in range(n_out):  # outside the lesion: eight random cells vote, 1/2 each way at a het site
        cells = rng.choice(n_dx + n_rem, 8, replace=False)
        alt = rng.random(8) < 0.5 if het_out[j] else np.ones(8, bool)
        ad_rows += [(c, j, int(a)) for c, a in zip(cells, alt)]
    for j in range(n_out, n_out + n_in):  # inside, all heterozygous; ALT retained at even sites
        retained_alt = j % 2 == 0
        dx = rng.choice(n_dx, 6, replace=False)
        rem = n_dx + rng.choice(n_rem, 2, replace=False)
        ad_rows += [(c, j, int(retained_alt)) for c in dx] + [(rem[0], j, 1), (rem[1], j, 0)]
    rows, cols, alt = (np.array(x) for x in zip(*ad_rows))
    shape = (n_dx + n_rem, n_out + n_in)
    ad = sp.csr_matrix((alt, (rows, cols)), shape=shape)
    dp = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=shape)
    persons = np.full(shape[0], "A")
    inside = np.r_[np.zeros(n_out, bool), np.ones(n_in, bool)]
    per_cell, table = heterozygous_sites(ad, dp, persons, [(inside, vote_share("loss", post))])
    pooled, _ = heterozygous_sites(ad, dp, persons, [(inside, {"A": vote_share("loss", post.mean())})])
    assert table.loc[0, "het_fraction"] == pytest.approx(0.25, abs=0.1)
    kept_cell = (per_cell.toarray()[0, inside] >= 0.5).mean()
    kept_pooled = (pooled.toarray()[0, inside] >= 0.5).mean()
    assert kept_cell == 1.0 and kept_pooled < 0.5, (kept_cell, kept_pooled)
    # an array of carrier probabilities gives an array of shares; a number a number
    assert vote_share("loss", np.array([0.0, 1.0])).tolist() == pytest.approx([0.5, 0.0])
    assert isinstance(vote_share("gain", 0.3), float)
