"""The simulator's allele counts (remnant.sim.alleles): off changes nothing, on they follow the
simulated expression, the lesions and the phase, and they round-trip through a cellsnp-lite folder."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from simulated import sheet_table as sheet  # markers, gene_sets: conftest.py fixtures

from remnant.errors import InputError
from remnant.io.alleles import read_cellsnp, write_cellsnp
from remnant.sim.alleles import TRUTH_COLUMNS, with_noisy_sites
from remnant.sim.cohort import DEFAULT_PARAMS, in_interval, resolve_params, simulate_cohort

SHEET = sheet(
    [
        ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
        ("P1_rem", "P1", "remission", "HSC", "MDS", "plate"),
        ("H1", "H1", "", "CD34", "healthy", "droplet"),
    ]
)
BASE = {"cells_per_sample": {"droplet": 150, "plate": 40}}
ON = {**BASE, "alleles": {"enabled": True}}


def simulate(genes, markers, gene_sets, params: dict, seed: int = 3, rows: pd.DataFrame = SHEET):
    return simulate_cohort(rows, genes, markers, gene_sets, params=copy.deepcopy(params), seed=seed)


@pytest.fixture(scope="module")
def off(genes, markers, gene_sets):
    return simulate(genes, markers, gene_sets, BASE)


@pytest.fixture(scope="module")
def on(genes, markers, gene_sets):
    return simulate(genes, markers, gene_sets, ON)


def same_counts(a, b) -> bool:
    for sample in SHEET["sample"]:
        x, y = a.counts[sample].X, b.counts[sample].X
        if not all(np.array_equal(getattr(x, k), getattr(y, k)) for k in ("indptr", "indices", "data")):
            return False
        if not a.counts[sample].obs_names.equals(b.counts[sample].obs_names):
            return False
    return a.cells.equals(b.cells)


# ------------------------------------------------------------------------------------------------
# off and on: the expression does not change
# ------------------------------------------------------------------------------------------------
def test_off_by_default_gives_no_allele_data(off, genes, markers, gene_sets):
    assert DEFAULT_PARAMS["alleles"]["enabled"] is False
    assert off.alleles == {} and off.allele_truth.empty
    explicit = simulate(
        genes, markers, gene_sets, {**BASE, "alleles": {"enabled": False, "reads_per_umi": {"droplet": 0.5}}}
    )
    assert same_counts(off, explicit) and explicit.alleles == {}


def test_on_keeps_the_expression_counts(off, on, genes):
    assert same_counts(off, on)
    assert set(on.alleles) == set(SHEET["sample"])
    for sample, a in on.alleles.items():
        assert a.obs_names.equals(on.counts[sample].obs_names)
        assert a.X is None
        for layer in ("AD", "DP"):
            m = a.layers[layer]
            assert sp.isspmatrix_csr(m) and m.dtype == np.int32
        ad, dp = a.layers["AD"].toarray(), a.layers["DP"].toarray()
        assert (ad >= 0).all() and (ad <= dp).all()
        assert 0 < ad.sum() < dp.sum()
        assert list(a.var.columns) == ["chromosome", "position", "ref", "alt", "site_id"]
        assert a.var["site_id"].is_unique and (a.var["ref"] != a.var["alt"]).all()
    # a patient's samples share its sites; every site is in the truth, once per region
    assert on.alleles["P1_dx"].var.equals(on.alleles["P1_rem"].var)
    truth = on.allele_truth
    for patient, sample in (("P1", "P1_dx"), ("H1", "H1")):
        ids = truth.loc[truth["patient"] == patient, "site_id"]
        assert set(ids) == set(on.alleles[sample].var["site_id"]) and ids.is_unique
    assert set(truth["lesion"]) == {"del5q", "control"}
    assert set(truth["lost_allele"]) == {"REF", "ALT"}
    # sites sit inside their gene and the region's range
    g = genes.drop_duplicates("gene_id_version").set_index("gene_id_version")
    start, end = g.loc[truth["gene_id"], "start"].to_numpy(), g.loc[truth["gene_id"], "end"].to_numpy()
    assert ((truth["position"] > start) & (truth["position"] <= end)).all()
    assert not truth.loc[truth["patient"] == "H1", "in_lesion"].any()
    assert truth.loc[(truth["patient"] == "P1") & (truth["lesion"] == "del5q"), "in_lesion"].mean() > 0.5


def test_deterministic_with_the_seed(on, genes, markers, gene_sets):
    again = simulate(genes, markers, gene_sets, ON)
    other = simulate(genes, markers, gene_sets, ON, seed=4)
    pd.testing.assert_frame_equal(again.allele_truth, on.allele_truth)
    for sample, a in on.alleles.items():
        for layer in ("AD", "DP"):
            assert (again.alleles[sample].layers[layer] != a.layers[layer]).nnz == 0
    assert not other.allele_truth["site_id"].equals(on.allele_truth["site_id"])
    # a sample's allele counts do not depend on the other samples of the sheet
    alone = simulate(genes, markers, gene_sets, ON, rows=SHEET.iloc[2:])
    assert (alone.alleles["H1"].layers["DP"] != on.alleles["H1"].layers["DP"]).nnz == 0
    pd.testing.assert_frame_equal(
        alone.allele_truth, on.allele_truth[on.allele_truth["patient"] == "H1"].reset_index(drop=True)
    )


# ------------------------------------------------------------------------------------------------
# what the reads show
# ------------------------------------------------------------------------------------------------
def lost_fraction(cohort, sample: str, cells: np.ndarray, lesion: str, in_lesion: bool | None = True):
    """Share of the reads of ``cells`` (bool over the sample's barcodes) at the region's sites that
    show the allele of haplotype A (the lost one), and their read count."""
    a = cohort.alleles[sample]
    patient = cohort.cells.loc[cohort.cells["sample"] == sample, "patient"].iloc[0]
    t = cohort.allele_truth
    t = t[(t["patient"] == patient) & (t["lesion"] == lesion)]
    if in_lesion is not None:
        t = t[t["in_lesion"] == in_lesion]
    cols = a.var_names.get_indexer(t["site_id"])
    ad = np.asarray(a.layers["AD"][cells][:, cols].sum(axis=0)).ravel()
    dp = np.asarray(a.layers["DP"][cells][:, cols].sum(axis=0)).ravel()
    on_a = np.where(t["lost_allele"].to_numpy() == "ALT", ad, dp - ad)
    return on_a.sum() / max(dp.sum(), 1), int(dp.sum())


def truth_of(cohort, sample: str) -> pd.DataFrame:
    cells = cohort.cells[cohort.cells["sample"] == sample].set_index("barcode")
    return cells.loc[cohort.counts[sample].obs_names]


def test_carriers_show_only_the_retained_allele(on):
    for sample in ("P1_dx", "P1_rem"):
        t = truth_of(on, sample)
        single = ~t["doublet"].to_numpy()
        carrier = t["lesion_del5q"].to_numpy() & single
        normal = ~t["lesion_del5q"].to_numpy() & single
        frac, n = lost_fraction(on, sample, carrier, "del5q")
        assert n > 100 and frac < 0.03, (sample, frac, n)  # only sequencing error shows the lost allele
        frac, n = lost_fraction(on, sample, carrier, "control", None)
        assert n > 100 and 0.35 < frac < 0.65, (sample, frac)  # outside the lesion: both haplotypes
        if sample == "P1_rem":  # 60% of the remission sample's HSC are not in the clone
            frac, n = lost_fraction(on, sample, normal, "del5q")
            assert n > 100 and 0.3 < frac < 0.7, (sample, frac, n)
    h = truth_of(on, "H1")
    frac, n = lost_fraction(on, "H1", np.ones(len(h), bool), "del5q", None)
    assert n > 100 and 0.4 < frac < 0.6
    # both alleles at the sites across the healthy donor's cells
    a = on.alleles["H1"]
    ad, dp = np.asarray(a.layers["AD"].sum(axis=0)).ravel(), np.asarray(a.layers["DP"].sum(axis=0)).ravel()
    deep = dp >= 6
    assert deep.sum() > 20 and np.median(ad[deep] / dp[deep]) == pytest.approx(0.5, abs=0.15)
    assert ((ad[deep] > 0) & (ad[deep] < dp[deep])).mean() > 0.9


def test_noisy_sites_read_both_alleles_in_carriers_too(on):
    """RNA-editing / mismapped sites (with_noisy_sites): the chosen share of the lesion's sites is read at
    the given ALT share by every cell, carriers included; reads per cell and every other site unchanged."""
    a = on.alleles["P1_dx"]
    t = on.allele_truth
    lesion_sites = t.loc[(t["patient"] == "P1") & (t["lesion"] == "del5q") & t["in_lesion"], "site_id"]
    noisy, chosen = with_noisy_sites(a, lesion_sites, 0.5, 0.3, seed=1)
    assert len(chosen) == round(0.5 * a.var_names.isin(lesion_sites).sum()) and set(chosen) <= set(lesion_sites)
    assert (noisy.layers["DP"] != a.layers["DP"]).nnz == 0
    cols = a.var_names.get_indexer(chosen)
    others = np.setdiff1d(np.arange(a.n_vars), cols)
    assert (noisy.layers["AD"][:, others] != a.layers["AD"][:, others]).nnz == 0
    carrier = truth_of(on, "P1_dx")["lesion_del5q"].to_numpy()
    ad = noisy.layers["AD"][carrier][:, cols].sum()
    dp = noisy.layers["DP"][carrier][:, cols].sum()
    assert dp > 50 and ad / dp == pytest.approx(0.3, abs=0.1), (ad, dp)  # a carrier reads only one allele elsewhere
    again, same = with_noisy_sites(a, lesion_sites, 0.5, 0.3, seed=1)
    assert np.array_equal(same, chosen) and (again.layers["AD"] != noisy.layers["AD"]).nnz == 0


def test_cells_of_another_type_are_normal(genes, markers, gene_sets):
    params = {**ON, "confounders": {"other_type": {"fraction": 0.3}}}
    rows = sheet([("P1_dx", "P1", "diagnosis", "CD34", "MDS", "plate")])
    cohort = simulate(genes, markers, gene_sets, params, rows=rows)
    t = truth_of(cohort, "P1_dx")
    other = t["other_type"].to_numpy()
    assert other.sum() >= 5 and not t.loc[other, "lesion_del5q"].any()
    frac, n = lost_fraction(cohort, "P1_dx", other, "del5q")
    assert n > 1000 and 0.3 < frac < 0.7, frac
    frac, n = lost_fraction(cohort, "P1_dx", t["lesion_del5q"].to_numpy(), "del5q")
    assert n > 1000 and frac < 0.03, frac


def test_no_sites_no_reads(genes, markers, gene_sets):
    cohort = simulate(genes, markers, gene_sets, {**BASE, "alleles": {"enabled": True, "sites_per_gene": 0}})
    assert cohort.allele_truth.empty and list(cohort.allele_truth.columns) == TRUTH_COLUMNS
    for sample, a in cohort.alleles.items():
        assert a.n_vars == 0 and a.obs_names.equals(cohort.counts[sample].obs_names)


def test_no_heterozygous_sites_on_a_single_x(genes, markers, gene_sets):
    rows = sheet([(f"H{i}", f"H{i}", "", "CD34", "healthy", "droplet") for i in range(8)])
    control = {"chromosome": "chrX", "start": 0, "end": 156_000_000}
    params = {"cells_per_sample": {"droplet": 20}, "alleles": {"enabled": True, "control": control}}
    cohort = simulate(genes, markers, gene_sets, params, rows=rows)
    sex = cohort.patients.set_index("patient")["sex"]
    on_x = cohort.allele_truth.groupby("patient")["chromosome"].apply(lambda c: int((c == "chrX").sum()))
    on_x = on_x.reindex(sex.index, fill_value=0)
    assert set(sex) == {"male", "female"}
    assert (on_x[sex == "male"] == 0).all() and (on_x[sex == "female"] > 50).all()


def test_a_gain_tilts_the_share_two_to_one(genes, markers, gene_sets):
    gain = copy.deepcopy(DEFAULT_PARAMS["lesions"][0])
    gain.update(name="gain5q", type="gain", copy_ratio=1.5)
    params = {**ON, "lesions": [gain], "doublets": {"rate": 0.0}}
    cohort = simulate(genes, markers, gene_sets, params, rows=SHEET.iloc[:2])
    t = truth_of(cohort, "P1_rem")
    frac, n = lost_fraction(cohort, "P1_rem", t["lesion_gain5q"].to_numpy(), "gain5q")
    assert n > 1000 and 0.6 < frac < 0.73, frac  # 2/3 from the gained haplotype, around bursting noise


def haplotype_a_share_per_gene(cohort, person: str, min_reads: int) -> pd.Series:
    """Per gene over all of ``person``'s cells (a healthy donor: all normal), haplotype A's share of the reads."""
    a, t = cohort.alleles[person], cohort.allele_truth
    t = t[(t["patient"] == person) & ~t.duplicated("site_id")]
    cols = a.var_names.get_indexer(t["site_id"])
    ad, dp = (np.asarray(a.layers[k][:, cols].sum(axis=0)).ravel() for k in ("AD", "DP"))
    gene = t["gene"].to_numpy()
    on_a = pd.Series(np.where(t["lost_allele"].to_numpy() == "ALT", ad, dp - ad)).groupby(gene).sum()
    reads = pd.Series(dp).groupby(gene).sum()
    return (on_a / reads)[reads >= min_reads]


def test_allele_specific_expression_tilts_every_normal_cell_and_not_a_carrier(genes, markers, gene_sets):
    """``imbalanced_genes``: the genes so drawn read one haplotype 2.3-9 times the other in every normal cell;
    a loss carrier still reads only the retained one; the sites are those drawn without it."""
    deeper = {**ON, "cells_per_sample": {"droplet": 400, "plate": 40}}
    balanced = simulate(genes, markers, gene_sets, deeper)
    tilted = simulate(genes, markers, gene_sets, {**deeper, "alleles": {"enabled": True, "imbalanced_genes": 1.0}})
    for sample in SHEET["sample"]:
        assert tilted.alleles[sample].var_names.equals(balanced.alleles[sample].var_names)
    # per gene with >= 20 reads over the healthy donor's 400 cells: 18 genes today
    share, even = haplotype_a_share_per_gene(tilted, "H1", 20), haplotype_a_share_per_gene(balanced, "H1", 20)
    assert share.size >= 10 and even.size >= 10
    assert ((share < 0.4) | (share > 0.6)).mean() > 0.8, share.describe()  # today 0.94
    assert ((even < 0.4) | (even > 0.6)).mean() < 0.35, even.describe()  # today 0.11: bursting and counting
    t = truth_of(tilted, "P1_dx")
    frac, n = lost_fraction(tilted, "P1_dx", t["lesion_del5q"].to_numpy() & ~t["doublet"].to_numpy(), "del5q")
    assert n > 100 and frac < 0.03, frac


def region_rate(cohort, sample: str, lesion: str, chromosome: str, start: int, end: int, genes_sim) -> float:
    """Allele reads at the region's sites per expression UMI of the region's genes."""
    a = cohort.alleles[sample]
    patient = cohort.cells.loc[cohort.cells["sample"] == sample, "patient"].iloc[0]
    t = cohort.allele_truth
    cols = a.var_names.get_indexer(t.loc[(t["patient"] == patient) & (t["lesion"] == lesion), "site_id"])
    mask = in_interval(genes_sim, chromosome, start, end)
    umis = cohort.counts[sample].X[:, mask].sum()
    return a.layers["DP"][:, cols].sum() / umis


def simulated_genes(cohort, genes) -> pd.DataFrame:
    ids = cohort.counts[next(iter(cohort.counts))].var["gene_ids"]
    return genes.set_index("gene_id_version").loc[ids].reset_index()


def test_allele_reads_per_umi_near_the_configured_rate(on, genes):
    sim = simulated_genes(on, genes)
    lesion = DEFAULT_PARAMS["lesions"][0]
    ctrl = DEFAULT_PARAMS["alleles"]["control"]
    rates = DEFAULT_PARAMS["alleles"]["reads_per_umi"]
    for sample, tech in (("P1_dx", "droplet"), ("H1", "droplet"), ("P1_rem", "plate")):
        r = region_rate(on, sample, "del5q", "chr5", lesion["proximal"][0], lesion["distal"][1], sim)
        c = region_rate(on, sample, "control", ctrl["chromosome"], ctrl["start"], ctrl["end"], sim)
        assert r == pytest.approx(rates[tech], rel=0.3), (sample, r)
        assert c == pytest.approx(rates[tech], rel=0.3), (sample, c)


def gene_shares(cohort, sample: str, cells: np.ndarray, min_reads: int):
    """Per (cell, gene) with at least ``min_reads`` reads at control-region sites (every cell is
    normal there): haplotype-A reads and reads."""
    a = cohort.alleles[sample]
    patient = cohort.cells.loc[cohort.cells["sample"] == sample, "patient"].iloc[0]
    t = cohort.allele_truth
    t = t[(t["patient"] == patient) & (t["lesion"] == "control")]
    cols = a.var_names.get_indexer(t["site_id"])
    ad = a.layers["AD"][cells][:, cols].toarray()
    dp = a.layers["DP"][cells][:, cols].toarray()
    on_a = np.where(t["lost_allele"].to_numpy() == "ALT", ad, dp - ad)
    gene_codes, gene_index = np.unique(t["gene_id"].to_numpy(), return_inverse=True)
    onehot = sp.csr_matrix((np.ones(gene_index.size), (np.arange(gene_index.size), gene_index)))
    x, n = (on_a @ onehot).ravel(), (dp @ onehot).ravel()
    keep = n >= min_reads
    return x[keep], n[keep]


def dispersion_ratio(x: np.ndarray, n: np.ndarray) -> float:
    """Observed variance of per-(cell, gene) shares around 1/2 over the binomial's (1 for no bursting)."""
    return float(np.mean((x - n / 2) ** 2 / (n / 4)))


def test_bursting_makes_gene_shares_more_extreme_than_binomial(on, genes, markers, gene_sets):
    # Beta(a, a) shares: variance ratio 1 + (n - 1) / (2a + 1) over the binomial's
    everyone = np.ones(on.alleles["P1_rem"].n_obs, bool)
    plate = dispersion_ratio(*gene_shares(on, "P1_rem", everyone, 10))  # a = 0.3, n >= 10: > 6
    flat = simulate(
        genes, markers, gene_sets, {**ON, "alleles": {"enabled": True, "burst_concentration": {"plate": 1e3}}}
    )
    binomial = dispersion_ratio(*gene_shares(flat, "P1_rem", everyone, 10))
    assert plate > 10 and 0.7 < binomial < 1.3, (plate, binomial)
    # droplet (a = 2): deep cells and a high rate, so that many (cell, gene) pairs have several reads
    deep = {"cells_per_sample": {"droplet": 150}, "library_size": {"droplet": {"median": 30000.0}}}
    rows = SHEET.iloc[2:]
    ratios = []
    for a in (2.0, 1e3):
        alleles = {"enabled": True, "burst_concentration": {"droplet": a}, "reads_per_umi": {"droplet": 0.3}}
        params = {**deep, "alleles": alleles}
        cohort = simulate(genes, markers, gene_sets, params, rows=rows)
        x, n = gene_shares(cohort, "H1", np.ones(cohort.alleles["H1"].n_obs, bool), 3)
        assert n.size > 300, n.size
        ratios.append(dispersion_ratio(x, n))
    assert ratios[0] > 1.3 and 0.8 < ratios[1] < 1.2, ratios


def test_round_trip_through_a_cellsnp_folder(on, tmp_path):
    a = on.alleles["P1_dx"]
    back = read_cellsnp(write_cellsnp(a, tmp_path / "P1_dx"))
    assert back.obs_names.equals(a.obs_names)
    for layer in ("AD", "DP"):
        assert (back.layers[layer] != a.layers[layer]).nnz == 0
    for col in ("chromosome", "position", "ref", "alt", "site_id"):
        assert back.var[col].tolist() == a.var[col].tolist()


# ------------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------------
def test_bad_allele_parameters_get_one_clear_line():
    with pytest.raises(InputError, match=r"alleles\.control.*overlaps lesion 'del5q'"):
        resolve_params({"alleles": {"control": {"chromosome": "chr5", "start": 100_000_000, "end": 120_000_000}}})
    with pytest.raises(InputError, match=r"alleles\.control.*start 5 is not below end 5"):
        resolve_params({"alleles": {"control": {"chromosome": "chr2", "start": 5, "end": 5}}})
    with pytest.raises(InputError, match=r"alleles\.error_rate"):
        resolve_params({"alleles": {"error_rate": 0.7}})
    with pytest.raises(InputError, match=r"alleles"):
        resolve_params({"alleles": {"enabled": True, "density": 2}})
    assert resolve_params({"alleles": {"control": None}})["alleles"]["control"] is None
