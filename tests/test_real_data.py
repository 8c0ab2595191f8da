"""Real-data suite (issue 17 item 6): the table of benchmarks/real_data.py, computed once, held to floors.

TNBC1 (``../shared/data/real/tnbc1`` beside the project root: 228 tumour and 74 normal cells of one 10x
sample) and infercnvpy's oligodendroglioma set (shipped inside infercnvpy, read offline), prepared and
scored by benchmarks/_real_sets.py and benchmarks/real_data.py (imported, not re-implemented): per lesion
and control arm, remnant's per-cell LLR AUROC tumour vs normal, the share of tumour cells called on a
control arm, the share of normal cells called (in the tumour's own sample, and TNBC1's normals also in a
sample of their own), and infercnvpy's arm score on the same cells and reference.

Both data sets are present where CI runs: a missing one fails the test (it is not skipped).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _real_sets as R  # noqa: E402
import real_data  # noqa: E402
import reference_size  # noqa: E402

# REGRESSION FLOORS, NOT ALL OF THE ISSUE'S TARGETS. Issue 17 asks, on TNBC1, for every lesion AUROC >= 0.95 and
# >= infercnvpy's, and <= 2% of cells called on the control arms and among the normal cells. Today (outlier-robust
# evidence, cnv.outlier_fraction 0.05, each gene's term clipped at log(1/eps); carrier fractions per sample and
# Leiden cluster, pooled by empirical Bayes, and learned as one clone's across the seven lesions (cnv.clone_prior);
# cnv.unmatched_level_sd 0.1 and cnv.unmatched_gene_spread: TNBC1 has no annotated states, so every cell is scored
# against the pooled profile, and a cell's evidence is bounded by how well its interval's level is known: 10%, and
# the spread of its cluster's genes around that profile averaged over the cell's genes; each cell's depth the median
# over ~50 blocks of the genome, cnv.depth.baseline median, since session 33, on every autosomal gene since session
# 37) all seven lesions pass 0.95 by the LLR (del19q 0.9543; 0.9452 with the depth counted outside the lesions,
# which took a fifth of the blocks from each cell's median) and by the posterior (del19q 0.9998); by the LLR three
# are >= infercnvpy (gain8q, del10q, del14q), by the posterior all seven. No arm of TNBC1 is refined since session 19 (a patient's interval from its
# carriers against its own cells, tl.intervals: TNBC1's tumour is clonal, so no trim beats the arm's own stretches
# of genes; the earlier fit trimmed each arm and del19q's LLR was 0.965). At most one of the 74
# normal cells is called for any lesion (the 2%), in the tumour's sample or in one of their own: a
# tumour-myeloid doublet (gains) and a fibroblast (losses). No control arm is called in more than one tumour cell
# (del18p: 46 of 228 before the gene spread, in two of the tumour's Leiden clusters; docs/robust_evidence.md). The
# values below are the where it is met, else today's (`benchmarks/real_data.py`) less a small margin: AUROC
# 0.01. They guard against regression; raise them as the method improves. The oligodendroglioma AUROC floors are
# the issue's own (today 1.000 / 0.9909).
N_TUMOUR, N_NORMAL = 228, 74  # TNBC1
N_TUMOUR_OLIGO, N_NORMAL_OLIGO = 142, 42
TWO_PERCENT = 1 / N_NORMAL  # at most one normal cell of 74 (the issue's <= 2%)

# TNBC1 lesions: auroc (LLR) >= floor, auroc_post (posterior) >= the 0.95; normal_called (normals in the
# tumour's sample) and normal_called_split (normals in a sample of their own) <= the 2%. Today's values in
# the comments (LLR, posterior, normals shared and split). With the plain negative binomial (outlier_fraction 0)
# the losses' LLR AUROCs were 0.892 / 0.958 / 0.891 / 0.932.
_NORMALS = {"auroc_post": 0.95, "normal_called": TWO_PERCENT, "normal_called_split": TWO_PERCENT}
TNBC1_LESIONS = {
    "gain1q": {"auroc": 0.986, **_NORMALS},  # .9969 .9999 1 1
    "gain8q": {"auroc": 0.990, **_NORMALS},  # 1.000 1.000 1 1
    "gain16p": {"auroc": 0.974, **_NORMALS},  # .9852 .9992 1 1
    "del19q": {"auroc": 0.950, **_NORMALS},  # .9543 .9998 0 0 (the issue's; .9452 with the depth outside the lesions)
    "del5q": {"auroc": 0.985, **_NORMALS},  # .9927 .9999 0 0
    "del10q": {"auroc": 0.967, **_NORMALS},  # .9769 .9969 0 0
    "del14q": {"auroc": 0.972, **_NORMALS},  # .9822 .9995 0 0
}
# TNBC1 control arms (no change): tumour_called, normal_called, normal_called_split <= ceiling.
_CONTROL = {"tumour_called": 4 / N_TUMOUR, "normal_called": 1 / N_NORMAL, "normal_called_split": 1 / N_NORMAL}
TNBC1_CONTROLS = dict.fromkeys(("gain1p", "del1p", "gain18p", "del18p", "gain22q", "del22q"), _CONTROL)
# the ceiling, 2% of the 228 tumour cells (4); today 0, 1, 0, 0, 0, 0 and no normal cell. del18p was 63 with
# fixed pooling of the clusters' priors, 69 with empirical Bayes, 51 with the level term (cnv.unmatched_level_sd),
# 46 with the clone prior (the six control arms learned as one clone's), 0 with the gene spread.
# Oligodendroglioma: the AUROC floors; normals (each in its tumour's sample) today 0 and 0 of 42.
OLIGO_LESIONS = {
    "del1p": {"auroc": 0.99, "normal_called": 1 / N_NORMAL_OLIGO},
    "del19q": {"auroc": 0.98, "normal_called": 1 / N_NORMAL_OLIGO},
}
# retained arms: today no cell called on del1q (one tumour cell before the clone prior), one tumour and one normal
# cell on del19p
OLIGO_CONTROLS = {
    "del1q": {"tumour_called": 2 / N_TUMOUR_OLIGO, "normal_called": 1 / N_NORMAL_OLIGO},
    "del19p": {"tumour_called": 2 / N_TUMOUR_OLIGO, "normal_called": 1 / N_NORMAL_OLIGO},
}
# infercnvpy's arm score (cross-fitted reference) on the same cells, a check that the comparison itself
# still works (today 0.968-1.000 on the TNBC1 lesions, 0.998-1.000 on the oligodendroglioma ones)
ICNV_FLOOR = 0.95

EPS = 1e-9  # the ceilings are whole cells: compare shares without rounding trouble


@pytest.fixture(scope="module")
def table():
    """benchmarks/real_data.py's table with infercnvpy (TNBC1 ~6 s, oligodendroglioma ~18 s here)."""
    counts = R.TNBC1 / "counts.tsv.gz"
    if not counts.is_file():
        pytest.fail(
            f"TNBC1 is missing: {counts} not found. It lives in ../shared/data/real/tnbc1 beside the project "
            "root (or set REMNANT_TNBC1 to its directory); CI has it, so this is a failure, not a skip."
        )
    try:
        import infercnvpy as cnv

        cnv.datasets.oligodendroglioma  # noqa: B018
    except (ImportError, AttributeError) as err:
        pytest.fail(
            f"the oligodendroglioma set ships with infercnvpy, a dependency of remnant, which is unusable: {err!r}"
        )
    import pandas as pd

    return pd.DataFrame(real_data.run_tnbc1(True) + real_data.run_oligo(True)).set_index(["data", "lesion"])


def test_table_shape(table):
    assert set(table.loc["TNBC1"].index) == set(TNBC1_LESIONS) | set(TNBC1_CONTROLS) | {"clone"}
    assert set(table.loc["oligodendroglioma"].index) == set(OLIGO_LESIONS) | set(OLIGO_CONTROLS) | {"clone"}
    calls = table[table["kind"] != "clone"]
    assert np.isfinite(calls[["auroc", "icnv", "icnv_cf", "tumour_called", "normal_called"]].to_numpy()).all()


# The clone prior's probability that a cell belongs to the clone (obs["clone_posterior"], the lesions' run):
# today AUROC 1.000 on both sets, every tumour cell >= 0.9, 2 of TNBC1's 74 normal cells (the tumour-myeloid
# doublet and a fibroblast positive on three losses), 1 in their own sample, none of the oligodendroglioma's 42.
CLONE = {
    "TNBC1": {"auroc": 0.99, "tumour_called": 0.95, "normal_called": 2 / N_NORMAL, "normal_called_split": 1 / N_NORMAL},
    "oligodendroglioma": {"auroc": 0.99, "tumour_called": 0.95, "normal_called": 1 / N_NORMAL_OLIGO},
}


@pytest.mark.parametrize("data", list(CLONE))
def test_clone_posterior(table, data):
    row = table.loc[(data, "clone")]
    assert row["kind"] == "clone"
    floors = dict(CLONE[data])
    assert row["tumour_called"] >= floors.pop("tumour_called")
    _check(row, floors)


def _check(row, floors: dict) -> None:
    for col, bound in floors.items():
        got = row[col]
        if col.startswith("auroc"):
            assert got >= bound, f"{col} {got:.4f} fell below its floor {bound:.3f}"
        else:
            assert got <= bound + EPS, f"{col} {got:.4f} rose above its ceiling {bound:.4f}"


@pytest.mark.parametrize("lesion", list(TNBC1_LESIONS))
def test_tnbc1_lesion(table, lesion):
    row = table.loc[("TNBC1", lesion)]
    assert row["kind"] == "lesion"
    _check(row, TNBC1_LESIONS[lesion])


@pytest.mark.parametrize("lesion", list(TNBC1_CONTROLS))
def test_tnbc1_control(table, lesion):
    row = table.loc[("TNBC1", lesion)]
    assert row["kind"] == "control"
    _check(row, TNBC1_CONTROLS[lesion])


@pytest.mark.parametrize("lesion", list(OLIGO_LESIONS))
def test_oligodendroglioma_lesion(table, lesion):
    row = table.loc[("oligodendroglioma", lesion)]
    assert row["kind"] == "lesion"
    _check(row, OLIGO_LESIONS[lesion])


@pytest.mark.parametrize("lesion", list(OLIGO_CONTROLS))
def test_oligodendroglioma_control(table, lesion):
    row = table.loc[("oligodendroglioma", lesion)]
    assert row["kind"] == "control"
    _check(row, OLIGO_CONTROLS[lesion])


def test_tnbc1_posterior_at_least_infercnvpy(table):
    """The issue's comparison: each TNBC1 lesion's posterior AUROC >= infercnvpy's arm score on the same cells and
    reference (the cross-fitted one, as remnant scores its reference cells); today equal on del5q and +8q, ahead by
    0.001-0.026 elsewhere."""
    lesions = table.loc["TNBC1"]
    lesions = lesions[lesions["kind"] == "lesion"]
    short = lesions[lesions["auroc_post"] < lesions["icnv_cf"] - EPS]
    assert short.empty, short[["auroc_post", "icnv_cf"]]


def test_tnbc1_posterior_without_clusters_at_least_infercnvpy(table):
    """The same comparison with call_lesions' own default prior, one carrier fraction per sample (no Leiden
    clusters), the lesions learned as one clone's: the posterior's lead over the LLR comes from each cell's evidence
    on the other lesions, not from the clusters (today 0.9938-1.0000, ahead of infercnvpy on all seven), and it calls
    at most one of the 74 normal cells on any lesion."""
    lesions = table.loc["TNBC1"]
    lesions = lesions[lesions["kind"] == "lesion"]
    assert (lesions["auroc_post_sample"] >= 0.95).all(), lesions["auroc_post_sample"]
    short = lesions[lesions["auroc_post_sample"] < lesions["icnv_cf"] - EPS]
    assert short.empty, short[["auroc_post_sample", "icnv_cf"]]
    assert (lesions["normal_called_sample"] <= TWO_PERCENT + EPS).all(), lesions["normal_called_sample"]


# Each lesion configured alone (a cohort configured for one lesion: the clone prior has nothing to pool, so the
# posterior is the cell's own evidence and its Leiden cluster's prior). Today TNBC1 0.9672-1.0000 (at or above
# infercnvpy on 5 of 7: del19q 0.9672 against 0.9700, del5q 0.9978 against 0.9986), the oligodendroglioma 1.0000 and
# 0.9975 (against 0.9988); TNBC1's normal cells called at most 2 of 74 (gain1q: the tumour-myeloid doublet and the one
# CopyKAT-diploid cell of a tumour cluster, +1q LLR 9.3 and 4.5), 1 of 74 on del19q, none of the oligodendroglioma's.
ALONE = {"TNBC1": (0.96, 2 / N_NORMAL), "oligodendroglioma": (0.99, 1 / N_NORMAL_OLIGO)}


@pytest.mark.parametrize("data", list(ALONE))
def test_each_lesion_alone(table, data):
    floor, ceiling = ALONE[data]
    lesions = table.loc[data]
    lesions = lesions[lesions["kind"] == "lesion"]
    assert (lesions["auroc_post_alone"] >= floor).all(), lesions["auroc_post_alone"]
    assert (lesions["normal_called_alone"] <= ceiling + EPS).all(), lesions["normal_called_alone"]


# The lesions called against the reference rm.tl.find_reference chooses (nobody told it which cells are normal: a
# cohort without a healthy donor). Today it chooses 70 of TNBC1's cells and 42 of the oligodendroglioma's, every one
# of them normal; the posterior AUROC is 0.9968-1.0000 and at or above infercnvpy on every lesion of both sets, and at
# most 1 of 74 normal cells is called.
@pytest.mark.parametrize("data", ["TNBC1", "oligodendroglioma"])
def test_the_automatic_reference(table, data):
    lesions = table.loc[data]
    lesions = lesions[lesions["kind"] == "lesion"]
    assert (lesions["auroc_post_auto"] >= 0.95).all(), lesions["auroc_post_auto"]
    short = lesions[lesions["auroc_post_auto"] < lesions["icnv_cf"] - EPS]
    assert short.empty, short[["auroc_post_auto", "icnv_cf"]]
    n_normal = N_NORMAL if data == "TNBC1" else N_NORMAL_OLIGO
    assert (lesions["normal_called_auto"] <= 1 / n_normal + EPS).all(), lesions["normal_called_auto"]
    report = real_data.chosen[data]
    assert report["chosen_normal"].iloc[0] >= 0.95 and report["confident"].all(), report


def _tnbc1_spec() -> dict:
    """benchmarks/sets/tnbc1.yaml with its paths on the shared folder wherever REMNANT_TNBC1 puts it."""
    spec = yaml.safe_load((BENCH / "sets/tnbc1.yaml").read_text())
    spec["counts"] = str(R.TNBC1 / "counts.tsv.gz")
    spec["cells"]["file"] = str(R.TNBC1 / "copykat_prediction.tsv")
    return spec


def test_a_truth_set_described_in_yaml_gives_the_built_in_rows(table, tmp_path):
    """benchmarks/real_data.py --set: TNBC1 described by a YAML (benchmarks/sets/README.md; its counts read by
    rm.io.read_counts, its truth from CopyKAT's table) is scored exactly as the built-in TNBC1 is."""
    import pandas as pd

    spec = _tnbc1_spec()
    path = tmp_path / "tnbc1.yaml"
    path.write_text(yaml.safe_dump(spec))
    got = pd.DataFrame(real_data.run_set(path, do_icnv=False)).set_index(["data", "lesion"])
    want = table.loc[["TNBC1"]]
    assert list(got.index) == list(want.index)
    for col in ("auroc", "auroc_post", "auroc_post_sample", "auroc_post_alone", "tumour_called", "normal_called"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=0, atol=1e-12, err_msg=col)


def test_a_truth_set_matches_10x_barcodes_with_their_suffix(tmp_path, capsys):
    """A cells table naming barcodes with 10x's "-1" suffix (the counts' have none) and lacking five cells: the cells
    match, the five are left out, and the run says so."""
    import pandas as pd

    cells = pd.read_csv(R.TNBC1 / "copykat_prediction.tsv", sep="\t")
    cells["cell.names"] += "-1"
    cells.iloc[:-5].to_csv(tmp_path / "cells.tsv", sep="\t", index=False)
    spec = _tnbc1_spec()
    spec["cells"]["file"] = "cells.tsv"
    (tmp_path / "set.yaml").write_text(yaml.safe_dump(spec))
    adata, *_ = R.load_truth_set(tmp_path / "set.yaml")
    assert (adata.n_obs, int(adata.obs["tumour"].sum() + adata.obs["normal"].sum())) == (N_TUMOUR + N_NORMAL - 5,) * 2
    assert "left out 5 of the counts' and 0 of the table's" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("lesions"), r"missing \['lesions'\]"),
        (
            lambda s: s["cells"].update(truth="copykat"),
            r"`cells.truth` column 'copykat' is not in .*copykat_prediction",
        ),
        (lambda s: s["cells"].update(normal="aneuploid"), r"`cells.tumour` and `cells.normal` share values"),
        (lambda s: s.update(counts="nowhere.tsv"), r"`counts` .*nowhere.tsv does not exist"),
        (lambda s: s.update(lesions=[{"name": "x", "type": "loss", "region": "5z"}]), r"lesions/controls: "),
    ],
)
def test_a_truth_set_with_a_mistake_says_what_to_fix(tmp_path, edit, message):
    spec = _tnbc1_spec()
    edit(spec)
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(R.SetError, match=message):
        R.load_truth_set(path)  # each before the counts are read


def test_infercnvpy_comparison_runs(table):
    lesions = table[table["kind"] == "lesion"]
    assert (lesions["icnv_cf"] >= ICNV_FLOOR).all(), lesions[["icnv", "icnv_cf"]]


def test_a_reference_of_ten_normal_cells_calls_no_unchanged_arm():
    """TNBC1 with 10 of its normal cells as the reference (benchmarks/reference_size.py, the draw that called most):
    before each gene's spread held the reference profile's own error, del1p was called in 36% of the tumour
    cells (a median of 11% over five draws); now in at most one of 228, with the lesions still told apart."""
    from real_depth import HARNESS

    a, _ = reference_size.drawn(R.load_tnbc1(), 10, 4)
    lesions, controls = R.tnbc1_sets()
    tumour, normal = a.obs["tumour"].to_numpy(), a.obs["normal"].to_numpy()
    b = R.call(a, controls, normal, **HARNESS)
    for c in controls:
        assert b.obs[f"{c.name}_call"].to_numpy()[tumour].mean() <= 1 / N_TUMOUR + EPS, c.name
    b = R.call(a, lesions, normal, **HARNESS)
    for l in lesions:
        assert R.auroc(b.obs[f"{l.name}_posterior"].to_numpy(), tumour) >= 0.95, l.name
        assert b.obs[f"{l.name}_call"].to_numpy()[normal].sum() <= 1, l.name


def test_every_arm_at_once():
    """TNBC1 with a gain and a loss configured on every arm (benchmarks/arm_scan.py, 78 lesions, one call):
    before session 37 the call refused (each cell's depth read off the acrocentric arms' few genes). The
    known lesions keep their floors, no control arm is called in more than one tumour cell, and at most
    two of the 74 normal cells are called on any arm (today's: the issue's 2% is one; a myeloid cell whose
    depth reads low across the genome leans to a gain on 21 of the 39 gain arms, and the clone prior's
    evidence summed over 78 lesions calls it)."""
    import arm_scan
    from real_depth import HARNESS

    lesions, controls = R.tnbc1_sets()
    scan = arm_scan.scan(
        R.load_tnbc1(), {l.name for l in lesions}, {c.name for c in controls}, HARNESS, clone_prior=True
    ).set_index("lesion")
    assert len(scan) == 78
    for name, floors in TNBC1_LESIONS.items():
        assert scan.loc[name, "auroc"] >= floors["auroc"], name
        assert scan.loc[name, "auroc_post"] >= 0.95, name
    assert (scan.loc[scan["readme"] == "control", "tumour_called"] <= 1 / N_TUMOUR + EPS).all()
    assert scan.attrs["normal_cells_called"] <= 2


def test_a_planted_subclone_is_read_at_its_share():
    """A one-copy loss of 1p planted in 10% and 54% of TNBC1's tumour cells (benchmarks/subclone_spike.py, full
    depth), whose other tumour cells lean on 1p: its carriers are called, its non-carriers are not, and the
    posteriors give its share. Today: carriers called 0.96 / 0.99, non-carriers 0.5% / 1.0%, fraction 0.114 / 0.554
    against 0.110 / 0.540, LLR AUROC carriers vs non-carriers 0.997 / 0.996, no normal cell called; the same with the
    seven known lesions in the call and alone. Below ~8,000 UMI the share is read high (docs/robust_evidence.md,
    session 38): not held here."""
    import subclone_spike

    table = subclone_spike.run([1.0], [0.1, 0.5], "1p", seed=5)
    assert len(table) == 4
    assert (table["carriers_called"] >= 0.95).all(), table
    assert (table["noncarriers_called"] <= 0.02).all(), table
    assert ((table["fraction"] - table["true_fraction"]).abs() <= 0.03).all(), table
    assert (table["auroc"] >= 0.99).all(), table
    assert (table["normals_called"] <= 1 / N_NORMAL + EPS).all(), table


def test_a_planted_subclone_at_lower_depth_with_each_clusters_null():
    """The same planted loss at 4,400 UMI per cell, where the non-carriers' lean on 1p reads the 54% share at
    0.675 (non-carriers called 5.7%): with ``cluster_null`` each tumour cluster whose cells show the two
    populations has its null read off them, and the share is read at 0.595 (1.9% called). Held: the error at least
    halves and at most 2% of the non-carriers are called; the LLR's ranking is kept."""
    import subclone_spike

    plain, mapped = (
        subclone_spike.run([0.25], [0.5], "1p", seed=5, runs=("with the seven",), cluster_null=on).iloc[0]
        for on in (False, True)
    )
    error = {k: abs(r["fraction"] - r["true_fraction"]) for k, r in (("plain", plain), ("mapped", mapped))}
    assert error["plain"] > 0.1, error  # the flaw this guards against is still there without the option
    assert error["mapped"] <= error["plain"] / 2, error
    assert mapped["noncarriers_called"] <= 0.02, mapped
    assert mapped["carriers_called"] >= 0.95 and mapped["auroc"] >= 0.99, mapped


#: The oligodendroglioma set's women (XIST in 76-100% of their cells, RPS4Y1 in none): their cells hold no chrY
FEMALE_TUMOURS = ("MGH36", "MGH93")


def test_loss_of_y_reads_womens_cells_against_a_male_reference():
    """-Y, the commonest change in older men's marrow, configured as any lesion (the bundled tables have chrX and
    chrY since session 39). Real truth without a karyotype: a woman's cell holds no chrY, so against the men's
    normal cells every cell of the two women must read as -Y and none of MGH97's tumour cells (RPS4Y1 in 94%).
    MGH53's tumour cells are not held either way (RPS4Y1 in only 56% of them: some may have lost Y). With a
    woman's normal cells in the reference it stops naming her (cross-fitted against the men her cells read as a complete
    loss, which would set the calibration); with women's cells alone it stops, saying so."""
    import remnant as rm

    a = R.load_oligo()
    cyto = rm.io.load_cytobands(R.HG19_ARMS)
    lesions = rm.tl.parse_lesions([{"name": "lossY", "region": "-Y"}], cyto, rm.io.chromosome_arms(cyto))
    patient, normal = a.obs["patient"].to_numpy(), a.obs["normal"].to_numpy()
    female = np.isin(patient, FEMALE_TUMOURS)
    male_ref = normal & ~female
    kw = {"state_key": "state", "donor_key": "patient", "sample_key": "patient", "layer": "counts"}
    b = a.copy()
    rm.tl.call_lesions(b, lesions, reference=male_ref, **kw)
    llr, call = b.obs["lossY_llr"].to_numpy(), b.obs["lossY_call"].to_numpy()
    men = patient == "MGH97"
    assert call[female].mean() >= 0.95, call[female].mean()
    assert call[men].mean() <= 0.02, call[men].mean()
    assert R.auroc(llr[female | men], female[female | men]) >= 0.99
    with pytest.raises(rm.errors.InputError, match=r"reference donor\(s\) MGH36 .* only \(MGH53, MGH54\)"):
        rm.tl.call_lesions(a.copy(), lesions, reference=normal, **kw)  # MGH36: the one woman with normal cells
    b = a.copy()
    women = normal & female
    women |= (patient == "MGH93") & (np.arange(a.n_obs) % 3 == 0)  # a woman's tumour cells too: 10 reference cells
    with pytest.raises(rm.errors.InputError, match="no male donor among them"):
        rm.tl.call_lesions(b, lesions, reference=women, **kw)
