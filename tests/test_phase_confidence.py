"""Phase confidence of remnant.tl.phase_sites: honest where phasing is poor, unchanged where it is easy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from test_tl_alleles import oracle, simulate

from remnant.tl.alleles import (
    MAX_PHASE_TEMPERATURE,
    _agreement_temperature,
    _split_cells,
    allele_llr,
    phase_sites,
)


def _outcomes(seeds, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Pooled over ``seeds``: each read site's reported confidence and whether its phase is right."""
    conf, right = [], []
    for seed in seeds:
        p = simulate(seed=seed, **kwargs)
        phase = phase_sites(p.alleles, p.gene, p.posterior, seed=seed)
        read = phase["n_reads"].to_numpy() > 0
        conf.append(phase["confidence"].to_numpy()[read])
        right.append(((phase["p_alt"].to_numpy() >= 0.5) == p.alt_lost)[read])
    return np.concatenate(conf), np.concatenate(right)


def test_confidence_matches_accuracy_with_few_carriers():
    # 5% carriers (30 of 600 cells), ~0.1 allele reads per (cell, gene): most sites are phased by one or
    # two cells, whose carrier status is what the site's phase rests on. The expression LLR here is the
    # true log-likelihood ratio (separation 2, sd 2), so a calibrated phasing must report its accuracy.
    # The mean-field EM (a cell's reads phasing sites that then vouch for the cell) reported 0.82 for
    # an accuracy of 0.70, and 0.96 for 0.82 on the sites it called >= 0.8.
    conf, right = _outcomes(range(4), n_cells=600, n_genes=60, fraction=0.05, reads=0.1, separation=2.0)
    assert 0.6 < right.mean() < 0.8  # poor phasing: the case the confidence must not oversell
    assert abs(conf.mean() - right.mean()) < 0.04
    sure = conf >= 0.8
    assert sure.sum() > 100
    assert abs(conf[sure].mean() - right[sure].mean()) < 0.05


def test_confidence_deflated_when_expression_posteriors_are_overconfident():
    # separation 0.5 with sd 2: the true expression LLR is a quarter of the one given, so every cell's
    # carrier posterior, and the phase resting on it, is overconfident; the split halves disagree more
    # than their confidences predict and the temperature takes the mean confidence down to the accuracy
    kwargs = dict(n_cells=600, n_genes=60, fraction=0.1, reads=0.05, separation=0.5)
    conf, right = _outcomes(range(4), **kwargs)
    raw_conf = []
    for seed in range(4):
        p = simulate(seed=seed, **kwargs)
        raw = phase_sites(p.alleles, p.gene, p.posterior, calibrate=False)
        raw_conf.append(raw["confidence"].to_numpy()[raw["n_reads"].to_numpy() > 0])
    raw_conf = np.concatenate(raw_conf)
    assert raw_conf.mean() > right.mean() + 0.1  # uncalibrated: overconfident
    assert abs(conf.mean() - right.mean()) < 0.05


def test_unchanged_where_phasing_is_easy():
    p = simulate(n_cells=400, fraction=0.9, reads=0.5, seed=3)
    phase = phase_sites(p.alleles, p.gene, p.posterior)
    raw = phase_sites(p.alleles, p.gene, p.posterior, calibrate=False)
    assert phase.attrs["phase_temperature"] == 1.0
    assert phase.attrs["split_sites"] > 50 and phase.attrs["split_agreement"] > 0.95
    np.testing.assert_array_equal(phase["p_alt"].to_numpy(), raw["p_alt"].to_numpy())
    right = (phase["p_alt"].to_numpy() >= 0.5) == p.alt_lost
    assert right.mean() == 1.0 and phase["confidence"].min() > 0.99


def test_temperature_deflates_allele_weight():
    # a poorly phased patient's cells get less allele evidence: the LLRs shrink with the temperature
    p = simulate(n_cells=600, n_genes=60, fraction=0.1, reads=0.05, separation=0.5, seed=2)
    phase = phase_sites(p.alleles, p.gene, p.posterior, seed=2)
    raw = phase_sites(p.alleles, p.gene, p.posterior, calibrate=False)
    assert phase.attrs["phase_temperature"] > 2
    tempered = allele_llr(p.alleles, phase)["llr"].to_numpy()
    untempered = allele_llr(p.alleles, raw)["llr"].to_numpy()
    assert np.abs(tempered).sum() < 0.7 * np.abs(untempered).sum()


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_agreement_temperature_recovers_overconfidence(scale):
    # two independent calls per site, each right with probability expit(lam), reported as scale * lam
    rng = np.random.default_rng(0)
    lam = np.abs(rng.normal(0.0, 2.0, 4000))
    calls = [np.where(rng.random(lam.size) < expit(lam), 1.0, -1.0) * scale * lam for _ in range(2)]
    agree = np.sign(calls[0]) == np.sign(calls[1])
    t = _agreement_temperature(calls[0], calls[1], agree)
    if scale == 1.0:
        assert t == 1.0  # calibrated: the test keeps it
    else:
        assert 2.5 < t < 3.6


def test_agreement_temperature_without_information():
    # log odds of about 0 in both halves (a donor without carriers): no measurement, no change
    rng = np.random.default_rng(1)
    l_a, l_b = rng.normal(0, 1e-3, 200), rng.normal(0, 1e-3, 200)
    assert _agreement_temperature(l_a, l_b, np.sign(l_a) == np.sign(l_b)) == 1.0
    assert _agreement_temperature(np.zeros(0), np.zeros(0), np.zeros(0, bool)) == 1.0
    # confident and always disagreeing: no confidence is left
    l = np.full(50, 5.0)
    assert _agreement_temperature(l, -l, np.zeros(50, bool)) == pytest.approx(MAX_PHASE_TEMPERATURE, rel=0.01)


def test_split_is_stratified_by_carrier_probability():
    rng = np.random.default_rng(0)
    carrier = np.concatenate([rng.uniform(0.9, 1.0, 101), rng.uniform(0.0, 0.1, 300)])
    half = _split_cells(carrier, seed=5)
    assert abs(int(half.sum()) - int((~half).sum())) <= 1
    assert abs(int(half[:101].sum()) - 50.5) <= 1  # the likely carriers split evenly
    np.testing.assert_array_equal(half, _split_cells(carrier, seed=5))  # deterministic given the seed
    assert not np.array_equal(half, _split_cells(carrier, seed=6))


def test_marginal_loss_llr_equals_sure_phase_llr_at_sure_phases():
    # with every phase 0 or 1 (the oracle, a user's phasing, the control region's random phases) the
    # marginalised likelihood is the sure-phase one, gene by gene
    from remnant.tl.alleles import _codes, _counts, _gene_llr, _gene_matrices

    p = simulate(n_cells=300, fraction=0.5, reads=2.0, seed=4)
    sure = oracle(p)
    got = allele_llr(p.alleles, sure, overdispersion=0.2)["llr"].to_numpy()
    ad, dp = _counts(p.alleles)
    codes, genes = _codes(p.gene)
    k, n = _gene_matrices(ad, dp, sure["p_alt"].to_numpy(), codes, genes.size)
    expected = np.asarray(_gene_llr(k, n, "loss", 0.2, 0.02, 3.0).sum(axis=1)).ravel()
    assert np.abs(expected).max() > 3
    np.testing.assert_allclose(got, expected, atol=1e-8)


def test_marginal_normal_term_mixes_site_phases():
    # two sites of one gene, one read each (ALT at both): a normal cell's lost-haplotype reads are 0, 1
    # or 2 with the sites' phase probabilities; the carrier term is the per-site phase mixture
    from remnant.tl.alleles import _bb, _concentration, _mixture_bb

    conc = _concentration(0.2)
    p = np.array([0.9, 0.3])
    got = _mixture_bb(np.array([1, 1]), np.array([1, 1]), p, conc)
    law = {2: p[0] * p[1], 1: p[0] * (1 - p[1]) + (1 - p[0]) * p[1], 0: (1 - p[0]) * (1 - p[1])}
    expected = np.log(sum(w * np.exp(_bb(np.array([float(k)]), np.array([2.0]), 0.5, conc)[0]) for k, w in law.items()))
    assert got == pytest.approx(expected)


def test_normal_mixture_of_many_pairs_equals_one_at_a_time():
    from remnant.tl.alleles import _concentration, _mixture_bb, _mixture_bb_many

    rng = np.random.default_rng(0)
    pair = rng.integers(0, 200, 700)
    m = rng.integers(1, 6, pair.size)
    a, p = rng.binomial(m, 0.5), rng.random(pair.size)
    n = np.bincount(pair, m, 200)
    conc = _concentration(0.2) * rng.uniform(0.5, 2.0, 200)  # one per pair (cells of two technologies)
    rows, got = _mixture_bb_many(pair, a, m, p, n, conc)
    assert rows.size > 150
    expected = [_mixture_bb(a[pair == r], m[pair == r], p[pair == r], conc[r]) for r in rows]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
