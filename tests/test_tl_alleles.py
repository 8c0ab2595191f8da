"""Allele evidence: phasing from the patient's cells, the per-cell allele LLR, the joint posterior."""

from __future__ import annotations

from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.special import expit
from test_lesions import auroc

from remnant.tl.alleles import (
    allele_llr,
    bursting_overdispersion,
    combine,
    lesion_sites,
    phase_sites,
    site_error_rates,
    site_genes,
)


@dataclass
class Patient:
    alleles: anndata.AnnData
    gene: np.ndarray  # (n_sites,) gene label of each site
    alt_lost: np.ndarray  # (n_sites,) bool: ALT on the changed (lost or gained) haplotype
    carrier: np.ndarray  # (n_cells,) bool, the truth
    expression_llr: np.ndarray  # (n_cells,) what an expression caller would give
    posterior: np.ndarray  # (n_cells,) its posterior at the true carrier fraction


def simulate(
    n_cells=400,
    n_genes=20,
    sites_per_gene=3,
    fraction=0.9,
    reads=0.5,
    burst=2.0,
    error=0.01,
    separation=2.0,
    gain=False,
    seed=0,
) -> Patient:
    """One patient: ``n_genes * sites_per_gene`` het sites in the lesion, phase at random.

    Per (cell, gene) Poisson(``reads``) reads spread over the gene's sites. A normal cell reads the
    changed haplotype with a share drawn per (cell, gene) from Beta(burst, burst) (bursting: rho =
    1 / (2 burst + 1)); a carrier of a loss reads it only by error, a carrier of a gain at a
    Beta share of mean 2/3. The expression LLR is normal around +-``separation``.
    """
    rng = np.random.default_rng(seed)
    n_sites = n_genes * sites_per_gene
    alt_lost = rng.random(n_sites) < 0.5
    carrier = rng.random(n_cells) < fraction
    share = rng.beta(burst, burst, (n_cells, n_genes))
    if gain:
        share_c = rng.beta(4 * burst / 3, 2 * burst / 3, (n_cells, n_genes))
    else:
        share_c = np.full((n_cells, n_genes), error)
    share = np.where(carrier[:, None], share_c, share)
    n_cg = rng.poisson(reads, (n_cells, n_genes))
    cell, gene = np.nonzero(n_cg)
    cell, gene = np.repeat(cell, n_cg[cell, gene]), np.repeat(gene, n_cg[cell, gene])
    site = gene * sites_per_gene + rng.integers(0, sites_per_gene, cell.size)
    is_alt = (rng.random(cell.size) < share[cell, gene]) == alt_lost[site]
    dp = sp.csr_matrix((np.ones(cell.size, np.int32), (cell, site)), shape=(n_cells, n_sites))
    ad = sp.csr_matrix((is_alt.astype(np.int32), (cell, site)), shape=(n_cells, n_sites))
    ad.eliminate_zeros()
    var = pd.DataFrame(
        {"chromosome": "5", "position": 80_000_001 + 1000 * np.arange(n_sites)},
        index=[f"s{i}" for i in range(n_sites)],
    )
    alleles = anndata.AnnData(
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]), var=var, layers={"AD": ad, "DP": dp}
    )
    llr = rng.normal(np.where(carrier, separation, -separation), 2.0)
    prior = np.clip(fraction, 0.01, 0.99)
    posterior = expit(llr + np.log(prior / (1 - prior)))
    labels = np.array([f"G{g}" for g in np.repeat(np.arange(n_genes), sites_per_gene)], dtype=object)
    return Patient(alleles, labels, alt_lost, carrier, llr, posterior)


def accuracy(phase, patient):
    return float(np.mean((phase["p_alt"].to_numpy() > 0.5) == patient.alt_lost))


def oracle(patient):
    return pd.DataFrame(
        {"gene": patient.gene, "p_alt": patient.alt_lost.astype(float)}, index=patient.alleles.var_names
    )


# ------------------------------------------------------------------------------------------------
# phasing
# ------------------------------------------------------------------------------------------------
def test_diagnosis_sample_phases_the_sites():
    p = simulate(fraction=0.9, reads=0.3, seed=1)
    phase = phase_sites(p.alleles, p.gene, p.posterior)
    assert accuracy(phase, p) >= 0.95
    of_any_phase = ["gene", "p_alt", "allele", "confidence", "n_reads", "n_cells"]  # phase_table's
    assert list(phase.columns) == [*of_any_phase, "normal_share", "error_rate"]
    assert (phase["allele"] == np.where(phase["p_alt"] >= 0.5, "ALT", "REF")).all()
    assert phase["confidence"].between(0.5, 1).all() and phase["confidence"].median() > 0.99
    assert phase["n_reads"].sum() == p.alleles.layers["DP"].sum()
    assert phase.attrs["carrier"].shape == (p.alleles.n_obs,)


def _noisy(patient, sites, minor, seed=0):
    """``patient`` with ``sites`` (indices) read as an RNA-editing or mismapped site is: every cell,
    carrier or not, reads the minor allele (ALT) at share ``minor``."""
    rng = np.random.default_rng(seed)
    ad = sp.lil_matrix(patient.alleles.layers["AD"])
    dp = sp.csc_matrix(patient.alleles.layers["DP"])
    for s in sites:
        rows = dp.indices[dp.indptr[s] : dp.indptr[s + 1]]
        m = dp.data[dp.indptr[s] : dp.indptr[s + 1]]
        column = np.zeros(dp.shape[0], np.int64)
        column[rows] = rng.binomial(m, minor)
        ad[:, s] = column[:, None]
    alleles = patient.alleles.copy()
    alleles.layers["AD"] = sp.csr_matrix(ad)
    return alleles


def test_each_site_learns_its_own_error_rate():
    """A site every cell reads both alleles of (editing, mismapping) gets its own rate; the others keep
    about ``eps``; and a carrier is no longer judged a normal cell for reading its minor allele."""
    p = simulate(fraction=0.5, reads=0.5, sites_per_gene=1, seed=2)
    noisy = np.arange(0, 20, 4)  # 5 of 20 sites
    alleles = _noisy(p, noisy, 0.3)
    phase = phase_sites(alleles, p.gene, p.posterior)
    rate = phase["error_rate"].to_numpy()
    clean = np.setdiff1d(np.arange(20), noisy)
    assert np.all(rate[noisy] > 0.1) and np.all(rate[clean] < 0.04), rate
    np.testing.assert_allclose(site_error_rates(alleles, phase), rate)
    assert phase.attrs["error_loo"].shape == alleles.shape
    learned = allele_llr(alleles, phase)["llr"].to_numpy()
    shared = phase.drop(columns="error_rate")
    shared.attrs = {k: v for k, v in phase.attrs.items() if k != "error_loo"}
    fixed = allele_llr(alleles, shared)["llr"].to_numpy()
    assert auroc(learned, p.carrier) > auroc(fixed, p.carrier) + 0.01
    assert np.median(learned[p.carrier]) > np.median(fixed[p.carrier])
    # without such sites the rates stay at eps and the evidence as it was
    plain = phase_sites(p.alleles, p.gene, p.posterior)
    assert plain["error_rate"].between(0.0, 0.04).all()  # the simulated error is 0.01


def test_em_phases_without_a_high_carrier_sample():
    """Half the cells carry the lesion; the expression posteriors (AUROC about 0.9) start the EM."""
    p = simulate(fraction=0.5, reads=0.3, seed=2)
    assert 0.8 < auroc(p.posterior, p.carrier) < 0.97
    phase = phase_sites(p.alleles, p.gene, p.posterior)
    assert accuracy(phase, p) >= 0.95
    # the allele evidence sharpens the carrier probabilities the EM started from
    assert auroc(phase.attrs["carrier"], p.carrier) > auroc(p.posterior, p.carrier) + 0.05


def test_confidence_is_not_self_confirmed():
    """Sparse reads, weak expression: a cell's weight for a site leaves out the site's own gene, so
    the stated confidence accounts for a fair share of the errors (counting the gene's own reads
    twice would claim under a fifth of them)."""
    expected = wrong = 0.0
    for seed in range(3):
        p = simulate(n_cells=200, fraction=0.3, reads=0.1, separation=0.5, seed=seed)
        phase = phase_sites(p.alleles, p.gene, p.posterior)
        expected += np.sum(1 - phase["confidence"])
        wrong += np.sum((phase["p_alt"].to_numpy() > 0.5) != p.alt_lost)
    assert wrong > 10  # the setting is hard enough to make errors
    assert expected > 0.3 * wrong


def test_bursting_estimated_beside_many_carriers():
    """90% carriers of a loss are monoallelic: moments weighted by 1 - posterior read them as bursting
    (about 0.6 here); the mixture likelihood explains them by their own component."""
    p = simulate(fraction=0.9, reads=2.0, burst=2.0, seed=12)  # rho = 1 / 5
    assert phase_sites(p.alleles, p.gene, p.posterior).attrs["overdispersion"] == pytest.approx(0.2, abs=0.05)


def test_few_normal_pairs_are_reported(caplog):
    """90% carriers, 0.3 reads per gene: a few dozen normal genes with two reads tell little of bursting."""
    p = simulate(fraction=0.9, reads=0.3, seed=1)
    with caplog.at_level("WARNING", logger="remnant.tl.alleles"):
        phase_sites(p.alleles, p.gene, p.posterior)
    assert "overdispersion is uncertain" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="remnant.tl.alleles"):
        phase_sites(p.alleles, p.gene, p.posterior, overdispersion=0.2)
    assert not caplog.text


def test_gain_phases_the_gained_haplotype():
    p = simulate(fraction=0.9, reads=1.0, gain=True, seed=3)
    phase = phase_sites(p.alleles, p.gene, p.posterior, lesion_type="gain")
    assert accuracy(phase, p) >= 0.95
    llr = allele_llr(p.alleles, phase, "gain")["llr"].to_numpy()
    assert auroc(llr, p.carrier) > 0.8


def test_sites_without_reads_or_gene_stay_unphased():
    p = simulate(fraction=0.9, reads=0.5, seed=4)
    gene = p.gene.copy()
    gene[:3] = ""  # three sites outside any gene
    phase = phase_sites(p.alleles, gene, p.posterior)
    assert np.allclose(phase["p_alt"].iloc[:3], 0.5)
    assert (phase["gene"].iloc[:3] == "").all()
    assert accuracy(phase.iloc[3:], Patient(None, None, p.alt_lost[3:], None, None, None)) >= 0.95


# ------------------------------------------------------------------------------------------------
# per-cell LLR
# ------------------------------------------------------------------------------------------------
def test_allele_llr_near_the_oracle():
    p = simulate(fraction=0.5, reads=0.3, seed=5)
    phase = phase_sites(p.alleles, p.gene, p.posterior)
    rho = phase.attrs["overdispersion"]
    est = allele_llr(p.alleles, phase)
    true = allele_llr(p.alleles, oracle(p), overdispersion=rho)
    a_est, a_true = auroc(est["llr"].to_numpy(), p.carrier), auroc(true["llr"].to_numpy(), p.carrier)
    assert a_est >= a_true - 0.01
    assert a_est > 0.9
    # the joint posterior is better than expression alone
    joint = combine(p.expression_llr, est["llr"], 0.5)
    assert auroc(joint, p.carrier) > auroc(p.expression_llr, p.carrier) + 0.05
    assert (est["n_reads"] == np.asarray(p.alleles.layers["DP"].sum(axis=1)).ravel()).all()
    assert est["n_genes"].max() <= 20


def test_normal_cells_score_below_zero():
    p = simulate(fraction=0.5, reads=0.5, seed=6)
    llr = allele_llr(p.alleles, phase_sites(p.alleles, p.gene, p.posterior))["llr"].to_numpy()
    assert np.median(llr[~p.carrier]) < -1.0
    assert np.median(llr[p.carrier]) > 1.0


def test_bursting_is_not_called():
    """Plate-like data: strong bursting (Beta(0.2, 0.2), most normal genes monoallelic), 3 reads per gene."""
    p = simulate(fraction=0.5, reads=3.0, n_genes=10, burst=0.2, seed=7)
    phase = phase_sites(p.alleles, p.gene, p.posterior)
    assert phase.attrs["overdispersion"] == pytest.approx(1 / 1.4, abs=0.1)
    normal = ~p.carrier
    called = np.mean(allele_llr(p.alleles, phase)["llr"].to_numpy()[normal] > 0)
    binomial = np.mean(allele_llr(p.alleles, phase, overdispersion=1e-6)["llr"].to_numpy()[normal] > 0)
    assert called <= 0.03
    assert binomial > 2 * called + 0.03  # a read-level binomial would call the bursts


def test_overdispersion_by_moments_on_normal_cells():
    p = simulate(fraction=0.0, reads=3.0, burst=2.0, seed=8)  # rho = 1 / 5
    assert bursting_overdispersion(p.alleles) == pytest.approx(0.2, abs=0.04)
    # the same cells given as the normals of allele_llr
    phase = oracle(p)
    rho = allele_llr(p.alleles, phase, normal=np.ones(p.alleles.n_obs)).attrs["overdispersion"]
    assert rho == pytest.approx(0.2, abs=0.04)


def test_one_gene_cannot_dominate():
    p = simulate(n_cells=50, fraction=0.0, reads=0.5, seed=9)
    dp = p.alleles.layers["DP"].tolil()
    ad = p.alleles.layers["AD"].tolil()
    # cell 0: 1000 reads at one site of G0, all on the retained haplotype (a burst or a mismapped gene)
    dp[0, 0] = 1000
    ad[0, 0] = 0 if p.alt_lost[0] else 1000
    # cell 1: the same on the lost haplotype (a carrier's mismapped site)
    dp[1, 0] = 1000
    ad[1, 0] = 1000 if p.alt_lost[0] else 0
    alleles = p.alleles.copy()
    alleles.layers["DP"], alleles.layers["AD"] = dp.tocsr(), ad.tocsr()
    base = allele_llr(p.alleles, oracle(p), overdispersion=0.05)["llr"].to_numpy()
    llr = allele_llr(alleles, oracle(p), overdispersion=0.05, max_gene_llr=3.0)["llr"].to_numpy()
    gene0_before = _gene_term(p.alleles, p, cell=0), _gene_term(p.alleles, p, cell=1)
    assert llr[0] - base[0] + gene0_before[0] <= 3.0 + 1e-9
    assert llr[0] - base[0] + gene0_before[0] == pytest.approx(3.0)
    assert llr[1] - base[1] + gene0_before[1] == pytest.approx(-3.0)


def _gene_term(alleles, p, cell):
    """G0's own term in ``cell``'s LLR (the LLR of the cell's reads at G0's sites alone)."""
    sub = alleles[[cell], :3].copy()
    return float(allele_llr(sub, oracle(p), overdispersion=0.05)["llr"].iloc[0])


def test_cells_without_reads_score_zero():
    p = simulate(n_cells=100, fraction=0.5, reads=0.05, seed=10)
    phase = phase_sites(p.alleles, p.gene, p.posterior)
    out = allele_llr(p.alleles, phase)
    empty = np.asarray(p.alleles.layers["DP"].sum(axis=1)).ravel() == 0
    assert empty.sum() > 10
    assert (out.loc[empty, "llr"] == 0).all() and (out.loc[empty, ["n_reads", "n_genes"]] == 0).all().all()
    # a site's phase for a cell comes from the other cells' reads there (leave-one-out): a cell whose
    # every read is at a site no other cell read has no evidence; every other cell with reads has some
    dp = sp.csr_matrix(p.alleles.layers["DP"])
    cells_per_site = np.diff(dp.tocsc().indptr)
    shared = np.asarray((dp > 0).multiply(cells_per_site[None, :] > 1).sum(axis=1)).ravel() > 0
    assert (out.loc[~empty & shared, "llr"] != 0).all()
    # (a read at a site no other cell read says nothing on its own: a carrier's retained allele is
    # either allele when the phase is unknown; only both alleles in one cell, phase-free, do)
    ad, dp = (sp.csr_matrix(p.alleles.layers[x]) for x in ("AD", "DP"))
    mixed = np.asarray(((ad > 0).multiply(ad < dp)).sum(axis=1)).ravel() > 0
    assert np.abs(out.loc[~empty & ~shared & ~mixed, "llr"]).max() < 1e-9


def test_unsure_sites_keep_only_phase_free_evidence():
    p = simulate(fraction=0.5, reads=1.0, seed=11)
    sure = oracle(p)
    unsure = sure.copy()
    unsure["p_alt"] = 0.5
    out = allele_llr(p.alleles, unsure, overdispersion=0.2)
    assert (out["n_reads"] == 0).all()  # no phased site
    # a loss carrier reads one haplotype: without any phase, both alleles in a cell's site still say
    # "normal", one read says nothing (a carrier's retained allele is either allele at p 0.5)
    ad, dp = (sp.csr_matrix(p.alleles.layers[x]).toarray() for x in ("AD", "DP"))
    both = ((ad > 0) & (ad < dp)).any(axis=1)
    single = dp.max(axis=1) <= 1
    assert both.sum() > 50 and single.sum() > 10
    assert (out.loc[both, "llr"] < 0).mean() > 0.9 and out.loc[both, "llr"].median() < -1
    assert np.abs(out.loc[single, "llr"]).max() < 1e-9
    assert auroc(out["llr"].to_numpy(), p.carrier) > 0.75  # carriers are monoallelic, normals often not
    gain = simulate(fraction=0.5, reads=1.0, gain=True, seed=11)
    unsure_gain = oracle(gain).assign(p_alt=0.5)
    assert (allele_llr(gain.alleles, unsure_gain, "gain", overdispersion=0.2)["llr"] == 0).all()
    # an unsure phase weighs a carrier's reads less: between no phase and the sure one
    half = sure.copy()
    half["p_alt"] = np.where(p.alt_lost, 0.75, 0.25)
    llr = {
        name: allele_llr(p.alleles, table, overdispersion=0.2)["llr"].to_numpy()
        for name, table in (("none", unsure), ("half", half), ("sure", sure))
    }
    gap = {name: llr[name][p.carrier].mean() - llr[name][~p.carrier].mean() for name in llr}
    assert gap["none"] < gap["half"] < gap["sure"]


# ------------------------------------------------------------------------------------------------
# joint posterior and sites
# ------------------------------------------------------------------------------------------------
def test_combine_adds_the_evidence():
    assert combine([0.0], [0.0], 0.3) == pytest.approx([0.3])
    post = combine([1.0, -2.0], [0.5, 2.0], [0.2, 0.5])
    expected = expit(np.log(0.2 / 0.8) + 1.5), 0.5
    assert post == pytest.approx(expected)


def test_lesion_sites_and_genes():
    from remnant.tl.lesions import Lesion

    var = pd.DataFrame(
        {"chromosome": ["5", "chr5", "5", "6", "5"], "position": [100, 150, 300, 150, 1001]},
        index=[f"s{i}" for i in range(5)],
    )
    alleles = anndata.AnnData(obs=pd.DataFrame(index=["c"]), var=var)
    lesion = Lesion("del5q", "loss", "chr5", 99, 1000, 0.5, "5:100-1000")
    assert lesion_sites(alleles, lesion).tolist() == [True, True, True, False, False]
    genes = pd.DataFrame(
        {"chromosome": ["chr5", "chr5", "chr5", "chr6"], "start": [50, 120, 900, 0], "end": [400, 200, 1200, 500]},
        index=["LONG", "NESTED", "LATE", "OTHER"],
    )
    # position 150 lies in LONG and NESTED: the one starting last; 300 only in LONG (past NESTED's end)
    assert site_genes(alleles, genes).tolist() == ["LONG", "NESTED", "LONG", "OTHER", "LATE"]
    assert site_genes(alleles, genes.iloc[[1, 3]]).tolist() == ["", "NESTED", "", "OTHER", ""]


def test_inputs_are_not_modified():
    p = simulate(n_cells=50, reads=0.5, seed=14)
    p.alleles.layers["DP"] = p.alleles.layers["DP"].astype(np.float64)
    p.alleles.layers["DP"].data[:3] = 0.0  # explicit zeros a caller may hold
    before = {tag: p.alleles.layers[tag].copy() for tag in ("AD", "DP")}
    phase = phase_sites(p.alleles, p.gene, p.posterior)
    allele_llr(p.alleles, phase)
    for tag, matrix in before.items():
        assert p.alleles.layers[tag].nnz == matrix.nnz
        assert (p.alleles.layers[tag] != matrix).nnz == 0


def test_wrong_inputs_say_what_is_wrong():
    p = simulate(n_cells=20, reads=0.5, seed=13)
    with pytest.raises(ValueError, match="one value per cell"):
        phase_sites(p.alleles, p.gene, p.posterior[:-1])
    with pytest.raises(ValueError, match="labels for 60 SNPs"):
        phase_sites(p.alleles, p.gene[:-1], p.posterior)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        phase_sites(p.alleles, p.gene, p.posterior * np.nan)
    with pytest.raises(ValueError, match="lesion_type"):
        phase_sites(p.alleles, p.gene, p.posterior, lesion_type="deletion")
    with pytest.raises(ValueError, match="columns 'gene' and 'p_alt'"):
        allele_llr(p.alleles, oracle(p).drop(columns="gene"))
    with pytest.raises(ValueError, match="needs overdispersion"):
        allele_llr(p.alleles, oracle(p))
    unphased = phase_sites(p.alleles, p.gene, p.posterior, max_iter=0, overdispersion=0.2)
    assert (unphased["p_alt"] == 0.5).all() and np.allclose(unphased.attrs["carrier"], p.posterior)
    bare = anndata.AnnData(obs=p.alleles.obs, var=p.alleles.var)
    with pytest.raises(ValueError, match=r"lacks layers \['AD', 'DP'\]"):
        allele_llr(bare, oracle(p), overdispersion=0.2)


# ------------------------------------------------------------------------------------------------
# calibration on a control region
# ------------------------------------------------------------------------------------------------
def test_null_llr_matches_its_model_where_the_model_holds():
    from remnant.tl.alleles import null_allele_llr
    from remnant.tl.lesion_model import temperature

    p = simulate(n_cells=2000, fraction=0.0, reads=1.0, burst=2.0, seed=21)  # no lesion: a control region
    rho = bursting_overdispersion(p.alleles)
    null = null_allele_llr(p.alleles, p.gene, overdispersion=rho, seed=0)
    z = null["z"].dropna()
    assert len(z) > 1500
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
    assert temperature(null["z"].to_numpy(), True) < 1.1
    # the model's null mean is the mean of the draws (negative: a normal cell's evidence points to normal)
    has = null["sd"] > 0
    assert null.loc[has, "mean"].mean() < 0
    gap = null.loc[has, "llr"].mean() - null.loc[has, "mean"].mean()
    assert abs(gap) < 0.1 * null.loc[has, "sd"].mean()


def test_false_heterozygous_sites_are_absorbed_by_the_measured_bursting():
    """Sites wrongly taken as heterozygous (every read one allele) look like monoallelic bursting: the
    control region's bursting rises with them, and with it measured the null errs towards normal."""
    from remnant.tl.alleles import null_allele_llr

    p = simulate(n_cells=2000, fraction=0.0, reads=2.0, burst=2.0, seed=22)
    a = p.alleles.copy()
    ad, dp = a.layers["AD"].tolil(), a.layers["DP"].tocsc()
    for site in range(0, a.n_vars, 3):  # a third of the sites are homozygous ALT
        ad[:, site] = dp[:, site].toarray()
    a.layers["AD"] = ad.tocsr()
    clean, bad = bursting_overdispersion(p.alleles), bursting_overdispersion(a)
    assert 0.15 < clean < 0.25 and bad > clean + 0.1
    null = null_allele_llr(a, p.gene, overdispersion=bad, seed=0)
    assert null["z"].mean() < 0.0 and null["z"].std() < 1.1  # no wider than the model: no temperature needed
    assert null["llr"].quantile(0.99) < -3  # and no cell's null evidence points to a carrier


def test_normal_share_is_the_likely_normal_cells_alt_share_shrunk_to_half():
    from remnant.tl.alleles import NORMAL_SHARE_PSEUDO_READS, normal_share

    # two sites: one read 80% ALT by normal cells, one by a carrier reading only REF (weight 0)
    ad = sp.csr_matrix(np.array([[8, 0], [8, 0], [0, 0]], dtype=float))
    dp = sp.csr_matrix(np.array([[10, 0], [10, 0], [0, 30]], dtype=float))
    weight = np.array([1.0, 1.0, 0.0])
    half = NORMAL_SHARE_PSEUDO_READS / 2
    share = normal_share(ad, dp, weight)
    np.testing.assert_allclose(share, [(16 + half) / (20 + 2 * half), 0.5])  # the carrier's 30 REF reads: nothing
    loo = normal_share(ad, dp, weight, leave_one_out=True)  # per entry of dp: rows 0, 1 at site 0, row 2 at site 1
    np.testing.assert_allclose(loo, [(8 + half) / (10 + 2 * half), (8 + half) / (10 + 2 * half), 0.5])


def test_a_normal_cell_reading_an_imbalanced_genes_common_allele_is_not_a_carrier():
    """At one site whose normal cells read ALT 85% of the time, a normal cell reading only ALT: against 1/2 it
    looks like a carrier that lost REF; against the site's normal share it does not."""
    rng = np.random.default_rng(5)
    n_cells = 400
    dp = rng.poisson(3, n_cells) + 1
    ad = rng.binomial(dp, 0.85)
    alleles = anndata.AnnData(
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=["s0"]),
        layers={"AD": sp.csr_matrix(ad[:, None]), "DP": sp.csr_matrix(dp[:, None])},
    )
    phase = pd.DataFrame({"gene": ["G"], "p_alt": [0.0]}, index=alleles.var_names)  # REF on the lost haplotype
    flat = allele_llr(alleles, phase, overdispersion=0.05)
    measured = allele_llr(alleles, phase.assign(normal_share=0.85), overdispersion=0.05)
    only_alt = ad == dp
    assert only_alt.sum() > 100
    assert flat["llr"].to_numpy()[only_alt].mean() > 1.0  # taken for carriers
    assert abs(measured["llr"].to_numpy()[only_alt].mean()) < flat["llr"].to_numpy()[only_alt].mean() / 3


# ------------------------------------------------------------------------------------------------
# the index helpers the EM is built on: each against the plain numpy/scipy answer
# ------------------------------------------------------------------------------------------------
def test_unique_inverse_helpers_match_np_unique():
    from remnant.tl.alleles import _unique_inverse, _unique_inverse_of_runs

    rng = np.random.default_rng(3)
    runs = np.concatenate([np.sort(rng.integers(0, 50, 30)) + 100 * cell for cell in rng.permutation(40)])
    for keys in (runs, rng.integers(0, 10**12, 5000), rng.integers(0, 7, 5000), np.array([5]), np.zeros(0, np.int64)):
        want_uniq, want_inv = np.unique(keys, return_inverse=True)
        for helper in (_unique_inverse, _unique_inverse_of_runs):
            uniq, inv = helper(keys)
            assert np.array_equal(uniq, want_uniq) and np.array_equal(inv, want_inv.ravel()), helper.__name__


def test_lookup_and_counts_on_a_pattern_match_dense_reads(monkeypatch):
    from remnant.tl import alleles as al

    rng = np.random.default_rng(4)
    dp = sp.random(60, 90, density=0.2, format="csr", random_state=rng, data_rvs=lambda n: rng.integers(1, 9, n))
    ad = dp.copy()
    ad.data = rng.binomial(ad.data.astype(int), 0.4).astype(float)
    ad.eliminate_zeros()  # AD stores fewer entries than DP, as cellsnp-lite writes it
    rows, cols = rng.integers(0, 60, 500), rng.integers(0, 90, 500)
    for limit in (10**9, 0):  # the dense read of a small table and the hashed read of a large one
        monkeypatch.setattr(al, "_DENSE_LOOKUP", limit)
        assert np.array_equal(al._lookup(ad, rows, cols), ad.toarray()[rows, cols])
    a, d = al._read_entries(ad, dp)
    assert np.array_equal(a.indptr, d.indptr) and np.array_equal(a.indices, d.indices)
    assert np.array_equal(a.toarray(), ad.toarray()) and np.array_equal(d.toarray(), dp.toarray())
    stray = ad.copy().tolil()
    stray[0, np.flatnonzero(dp[0].toarray().ravel() == 0)[0]] = 3.0  # an AD entry where DP has none
    a, d = al._read_entries(sp.csr_matrix(stray), dp)  # falls back to a key search, same answer on DP's entries
    assert np.array_equal(a.toarray(), np.where(dp.toarray() > 0, stray.toarray(), 0.0))
