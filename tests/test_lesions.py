"""Lesion configuration and per-cell lesion calls against simulated truth.

The simulated cohort is small (3 healthy donors: a reference sample and a held-out sample each;
one MDS sample at 50% clone fraction; ~2,000 UMI/cell) so the file runs in well under a minute.
Floors are set below the values measured on it (AUROC ~0.97 at 2,000 UMI; see
benchmarks/lesion_calling.py for the full table).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import simulated as S

from remnant.errors import InputError
from remnant.io.annotation import autosomal, chromosome_arms
from remnant.tl.depth import DepthGenes
from remnant.tl.lesions import DEFAULT_LESIONS, call_lesions, depth_columns, lesion_columns, parse_lesions


# ------------------------------------------------------------------------------------------------
# parse_lesions
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arms(cytobands):
    return chromosome_arms(cytobands)


def test_default_is_del5q_q13_q33(cytobands, arms):
    (lesion,) = parse_lesions(None, cytobands, arms)
    assert lesion.name == "del5q" and lesion.type == "loss" and lesion.copy_ratio == 0.5
    assert (lesion.chromosome, lesion.start, lesion.end) == ("chr5", 67_400_000, 160_500_000)
    assert parse_lesions(DEFAULT_LESIONS, cytobands, arms) == [lesion]


@pytest.mark.parametrize(
    "region, expected",
    [
        ("chr5:67400000-160500000", ("chr5", 67_400_000, 160_500_000)),
        ("5:67,400,000-160,500,000", ("chr5", 67_400_000, 160_500_000)),
        ("5q13.1-5q33.3", ("chr5", 67_400_000, 160_500_000)),
        ("5q13.1-q33.3", ("chr5", 67_400_000, 160_500_000)),
        ("5q", ("chr5", 48_800_000, 181_538_259)),
        ("chr5q", ("chr5", 48_800_000, 181_538_259)),
        ("7", ("chr7", 0, 159_345_973)),
        ("chr7", ("chr7", 0, 159_345_973)),
    ],
)
def test_region_forms(cytobands, arms, region, expected):
    (lesion,) = parse_lesions([{"name": "x", "type": "loss", "region": region}], cytobands, arms)
    assert (lesion.chromosome, lesion.start, lesion.end) == expected


def test_band_prefix_covers_sub_bands(cytobands, arms):
    (lesion,) = parse_lesions([{"name": "x", "type": "gain", "region": "5q31"}], cytobands, arms)
    on = cytobands[(cytobands.chromosome == "chr5") & cytobands.band.str.startswith("q31")]
    assert (lesion.start, lesion.end) == (on.start.min(), on.end.max())
    assert lesion.copy_ratio == 1.5


@pytest.mark.parametrize(
    "region, kind, same_as",
    [
        # a band holds its sub-bands: one the table splits further (20q11.2 -> 20q11.21-23; MDS's del(20q)
        # as papers write it) and ISCN regions (5q3 is 5q31-5q35; 1q2 must not take 1q12, nor 5q1 5q21)
        ("20q11.2-q13.1", "loss", "20q11.21-20q13.13"),
        ("20q11.2", "loss", "20q11.21-20q11.23"),
        ("5q3", "loss", "5q31.1-5q35.3"),
        ("1q2", "loss", "1q21.1-1q25.3"),
        ("5q1", "loss", "5q11.1-5q15"),
        # ISCN as a karyotype report writes them, read as the band range, arm or chromosome they name
        ("del(5)(q13q33)", "loss", "5q13-5q33"),
        ("del(20)(q11.2q13.1)", "loss", "20q11.2-20q13.1"),
        ("dup(1)(q21q32)", "gain", "1q21-1q32"),
        ("5q13.1q33.3", "loss", "5q13.1-5q33.3"),
        ("-7", "loss", "7"),
        # terminal: from the band to the end of its arm
        ("del(5)(q31)", "loss", "5q31-5q35.3"),
        ("del(1)(p36.1)", "loss", "1p36.33-1p36.1"),
        ("+8", "gain", "chr8"),
        # the arm shorthand of clinical reports: the whole arm (no breakpoints are written)
        ("del(5q)", "loss", "5q"),
        ("del(chr20q)", "loss", "20q"),
        ("dup(1q)", "gain", "1q"),
        ("+1q", "gain", "1q"),
        ("-17p", "loss", "17p"),
    ],
)
def test_regions_as_iscn_writes_them(cytobands, arms, region, kind, same_as):
    (lesion,) = parse_lesions([{"name": "x", "type": kind, "region": region}], cytobands, arms)
    (plain,) = parse_lesions([{"name": "x", "type": kind, "region": same_as}], cytobands, arms)
    assert (lesion.chromosome, lesion.start, lesion.end) == (plain.chromosome, plain.start, plain.end)
    assert lesion.region == region  # named as the user wrote it


def test_type_follows_from_a_region_written_as_a_karyotype(cytobands, arms):
    """A del/dup/-/+ says the type, so a lesion copied from a karyotype needs no ``type`` key; the
    same lesion with it given is the same lesion."""
    out = parse_lesions(
        [
            {"name": "del5q", "region": "del(5)(q13q33)"},
            {"name": "mono7", "region": "-7"},
            {"name": "tri8", "region": "+8"},
            {"name": "gain1q", "region": "+1q"},
            {"name": "del17p", "region": "del(17p)"},
        ],
        cytobands,
        arms,
    )
    assert [(x.type, x.chromosome, x.copy_ratio) for x in out] == [
        ("loss", "chr5", 0.5),
        ("loss", "chr7", 0.5),
        ("gain", "chr8", 1.5),
        ("gain", "chr1", 1.5),
        ("loss", "chr17", 0.5),
    ]
    (given,) = parse_lesions([{"name": "del5q", "type": "loss", "region": "del(5)(q13q33)"}], cytobands, arms)
    assert given == out[0]
    # a region that says no type still needs one
    with pytest.raises(InputError, match=r"lacks key\(s\) \['type'\].*del\(5q\)"):
        parse_lesions([{"name": "x", "region": "5q13.1-5q33.3"}], cytobands, arms)


def test_several_lesions_and_arms(cytobands, arms):
    out = parse_lesions(
        [
            {"name": "del1p", "type": "loss", "region": "1p"},
            {"name": "del19q", "type": "loss", "region": "19q"},
            {"name": "tri8", "type": "gain", "region": "chr8:0-145138636"},
        ],
        cytobands,
        arms,
    )
    assert [l.name for l in out] == ["del1p", "del19q", "tri8"]
    assert out[0].start == 0 and out[1].chromosome == "chr19"


@pytest.mark.parametrize(
    "item, message",
    [
        ({"name": "x", "type": "loss", "region": "5q99.9-5q33.3"}, "unknown cytoband"),
        ({"name": "x", "type": "loss", "region": "chr5:160000000-67000000"}, "start"),
        ({"name": "x", "type": "loss", "region": "chr5:100-100"}, "start"),
        ({"name": "x", "type": "loss", "region": "chr5:67400000-190000000"}, "beyond the end"),
        ({"name": "x", "type": "loss", "region": "chr27:1-100"}, "not in the cytoband"),
        ({"name": "x", "type": "deletion", "region": "5q"}, "loss' or 'gain"),
        ({"name": "x", "type": "loss"}, "lacks key"),
        ({"name": "5q-", "type": "loss", "region": "5q"}, "letters, digits"),
        ({"name": "x", "type": "loss", "region": "5q13.1-6q33"}, "two chromosomes"),
        ({"name": "x", "type": "loss", "region": "somewhere"}, "cannot read region"),
        ({"name": "x", "type": "loss", "region": "chr30"}, "chromosome 'chr30' is not in the cytoband table"),
        ({"name": "x", "type": "loss", "region": "5q31.4"}, "unknown cytoband 5q31.4"),
        ({"name": "x", "type": "loss", "region": "+8"}, "is a gain in ISCN but the lesion's type is 'loss'"),
        ({"name": "x", "type": "gain", "region": "del(5)(q13q33)"}, "is a loss in ISCN"),
        ({"name": "x", "type": "loss", "region": "+1q"}, "is a gain in ISCN"),
        ({"name": "x", "type": "gain", "region": "del(5q)"}, "is a loss in ISCN"),
        ({"name": "x", "region": "del(5q"}, "lacks key"),
        ({"name": "x", "type": "loss", "region": "del(5)(q13q33)(q35)"}, "cannot read region"),
        ({"name": "x", "type": "loss", "region": "5q", "copy_ratio": 1.5}, "does not fit"),
    ],
)
def test_errors(cytobands, arms, item, message):
    with pytest.raises(InputError, match=message):
        parse_lesions([item], cytobands, arms)


def test_sex_chromosomes(cytobands, arms):
    """The bundled GRCh38 table has chrX and chrY (session 39; -Y is the commonest change in older men's
    marrow): whole chromosomes, arms and bands parse there as on an autosome. A table without them names
    what to do."""
    lesions = parse_lesions(
        [
            {"name": "lossY", "region": "-Y"},
            {"name": "delYq", "type": "loss", "region": "Yq"},
            {"name": "gainX", "region": "+X"},
            {"name": "delXq", "region": "del(X)(q13q21)"},
        ],
        cytobands,
        arms,
    )
    by_name = {les.name: les for les in lesions}
    assert (by_name["lossY"].chromosome, by_name["lossY"].start, by_name["lossY"].end) == ("chrY", 0, 57_227_415)
    assert (by_name["delYq"].start, by_name["delYq"].type) == (10_400_000, "loss")  # the end of Yp11.1 (acen)
    assert (by_name["gainX"].chromosome, by_name["gainX"].type, by_name["gainX"].end) == ("chrX", "gain", 156_040_895)
    assert by_name["delXq"].chromosome == "chrX" and 61_000_000 <= by_name["delXq"].start < by_name["delXq"].end
    autosomes = cytobands[~cytobands["chromosome"].isin(["chrX", "chrY"])]
    with pytest.raises(InputError, match="use a cytoband table with chrX and chrY bands"):
        parse_lesions([{"name": "x", "region": "-Y"}], autosomes, chromosome_arms(autosomes))


def test_loss_of_y_on_simulated_droplets(cohort, cytobands, arms):
    """-Y at 2,000 UMI per cell (the simulator's donors have a sex; seed 11: H1 and H2 women, H3 and P1 men).
    Against the one man's reference sample every woman's cell is called -Y and almost no man's. A man's cell holds
    3-4 chrY counts here and 7-13% of them none, which reads as -Y by the cell's own counts: the LLR's AUROC cannot
    pass about 0.95 (0.960), and the samples' learned carrier fractions keep those cells from being called. With the
    women's reference samples alone the call stops, and so it does with them beside the man's: cross-fitted against
    him they read as a complete loss and would set the calibration (the demo cohort's temperature went to 2,000,000)."""
    sex = cohort.uns["truth_patients"].drop_duplicates("patient").set_index("patient")["sex"]
    assert sex.to_dict() == {"H1": "female", "H2": "female", "H3": "male", "P1": "male"}
    lesions = parse_lesions([{"name": "lossY", "region": "-Y", "copy_ratio": 0.1}], cytobands, arms)
    obs = cohort.obs
    female = (obs["patient"].map(sex) == "female").to_numpy()
    is_ref = obs["sample"].str.endswith("_ref").to_numpy()
    adata = cohort.copy()
    call_lesions(adata, lesions, reference=is_ref & ~female)
    call = adata.obs["lossY_call"].to_numpy()
    men = ~female & ~is_ref
    assert call[female].mean() >= 0.95 and call[men].mean() <= 0.02, (call[female].mean(), call[men].mean())
    assert auroc(adata.obs["lossY_llr"].to_numpy()[female | men], female[female | men]) >= 0.95
    with pytest.raises(InputError, match=r"reference donor\(s\) H1 \(.*\), H2 \(.*\) hardly express .* only \(H3\)"):
        call_lesions(cohort.copy(), lesions, reference=is_ref)
    with pytest.raises(InputError, match="no male donor among them"):
        call_lesions(cohort.copy(), lesions, reference=is_ref & female)


def test_a_lesion_on_chrX_says_what_expression_can_see(cohort, cytobands, arms, caplog):
    """X inactivation leaves one active X in every cell: a chrX lesion is called, with a warning that says so."""
    lesions = parse_lesions([{"name": "gainX", "region": "+X"}], cytobands, arms)
    adata = cohort.copy()
    with caplog.at_level("WARNING", logger="remnant.tl.lesions"):
        call_lesions(adata, lesions, reference=adata.obs["sample"].str.endswith("_ref").to_numpy())
    assert "gainX is on chrX: a cell expresses one X whatever its number of copies" in caplog.text
    assert adata.obs["gainX_call"].mean() <= 0.02  # the simulator changes no X


def test_a_region_whose_genes_the_reference_hardly_expresses_says_what_to_change(cohort, cytobands, arms):
    """No gene of the region reaches min_mean in a batch's reference: one line naming the lesion, the batch and
    what to change (before session 41 it also said, on chrY, to give male reference cells, which
    _check_y_reference has already made sure of by then)."""
    lesions = parse_lesions(DEFAULT_LESIONS, cytobands, arms)
    reference = cohort.obs["sample"].str.endswith("_ref").to_numpy()
    with pytest.raises(
        InputError, match=r"del5q: no gene inside 5q13.1-5q33.3 reaches min_mean=1000000.0 .*lower min_mean"
    ):
        call_lesions(cohort.copy(), lesions, reference=reference, min_mean=1e6)


def test_duplicate_names(cytobands, arms):
    with pytest.raises(InputError, match="duplicate"):
        parse_lesions([{"name": "a", "type": "loss", "region": "5q"}] * 2, cytobands, arms)


# ------------------------------------------------------------------------------------------------
# call_lesions on a simulated cohort
# ------------------------------------------------------------------------------------------------
ROWS = [
    ("H1_ref", "H1", "", "CD34", "healthy", "droplet"),
    ("H1_held", "H1", "", "CD34", "healthy", "droplet"),
    ("H2_ref", "H2", "", "CD34", "healthy", "droplet"),
    ("H2_held", "H2", "", "CD34", "healthy", "droplet"),
    ("H3_ref", "H3", "", "CD34", "healthy", "droplet"),
    ("H3_held", "H3", "", "CD34", "healthy", "droplet"),
    ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
]
PARAMS = {
    "cells_per_sample": {"droplet": 300},
    "library_size": {"droplet": {"median": 2000.0, "sdlog": 0.35}},
    "clone_fraction": {"diagnosis": {"CD34": 0.5}},
    "clone_sampling": "exact",
    "low_quality": {"fraction": 0.0},
    "doublets": {"rate": 0.0},
}


def auroc(score, truth):
    from scipy.stats import rankdata

    truth = np.asarray(truth, bool)
    npos, nneg = truth.sum(), (~truth).sum()
    ranks = rankdata(score)
    return (ranks[truth].sum() - npos * (npos + 1) / 2) / (npos * nneg)


@pytest.fixture(scope="module")
def cohort():
    return S.called_cohort(ROWS, params=PARAMS, seed=11)


@pytest.fixture(scope="module")
def lesions(cytobands, arms):
    return parse_lesions(None, cytobands, arms)


@pytest.fixture(scope="module")
def called(cohort, lesions):
    adata = cohort.copy()
    call_lesions(adata, lesions, reference=adata.obs["sample"].str.endswith("_ref").to_numpy())
    return adata


def test_notebook_api_on_an_in_memory_anndata(cohort, lesions):
    """The call as a notebook writes it (rm.tl, keywords, the reference as an obs column), on an
    AnnData in memory: the documented obs and uns keys, and carriers score above non-carriers."""
    import remnant as rm

    adata = cohort.copy()
    adata.obs["is_ref"] = adata.obs["sample"].str.endswith("_ref").to_numpy()
    rm.tl.call_lesions(adata, lesions=lesions, reference="is_ref")
    assert {f"del5q_{k}" for k in ("posterior", "llr", "call", "n_genes")} <= set(adata.obs)
    info = adata.uns["lesions"]["del5q"]
    assert {"lesion", "per_sample", "batches", "intervals", "genes", "reference_fpr", "params"} <= set(info)
    assert info["params"]["n_reference"] == adata.obs["is_ref"].sum()
    # the depth's settings are on record: counted here, with the default gene families and trim
    assert info["params"]["depth"] == "counted" and info["params"]["depth_trim_top_fraction"] == 0.01
    assert info["params"]["depth_exclude_families"] == ", ".join(rm.tl.depth.DEPTH_FAMILIES)
    mds = (adata.obs["condition"] == "MDS").to_numpy()
    truth, post = adata.obs["truth"].to_numpy(), adata.obs["del5q_posterior"].to_numpy()
    assert post[mds & truth].mean() > post[mds & ~truth].mean() + 0.5
    assert adata.obs["del5q_call"][mds & truth].mean() > adata.obs["del5q_call"][~truth].mean()


def test_outputs_documented_keys(called):
    obs = called.obs
    for key in ("del5q_posterior", "del5q_llr", "del5q_call", "del5q_n_genes"):
        assert key in obs
    assert obs["del5q_posterior"].between(0, 1).all()
    assert obs["del5q_call"].dtype == bool
    assert (obs["del5q_n_genes"] > 100).all()
    info = called.uns["lesions"]["del5q"]
    ps = info["per_sample"]
    assert set(ps.index) == set(obs["sample"])
    assert {"prior", "fpr", "fnr", "n_called", "n_cells"} <= set(ps.columns)
    assert len(info["genes"]) == obs["del5q_n_genes"].max()
    assert (info["batches"]["fold_mode"] == "donor").all()
    assert (info["batches"]["temperature"] >= 1.0).all() and (ps["temperature"] >= 1.0).all()
    assert info["batches"]["reference_matched"].all()


def test_auroc_and_fpr_floors(called):
    obs = called.obs
    mds = (obs["condition"] == "MDS").to_numpy()
    held = obs["sample"].str.endswith("_held").to_numpy()
    truth = obs["truth"].to_numpy()
    assert auroc(obs["del5q_posterior"].to_numpy()[mds], truth[mds]) >= 0.95
    # healthy cells not in the reference: called fraction at the default cut-off
    assert obs["del5q_call"].to_numpy()[held].mean() <= 0.01
    # even at a 50% prior (LLR >= logit(0.9)) few held-out healthy cells pass
    assert np.mean(obs["del5q_llr"].to_numpy()[held] >= np.log(9)) <= 0.05
    # the learned prior of the MDS sample is near the planted 50%
    assert abs(called.uns["lesions"]["del5q"]["per_sample"].loc["P1_dx", "prior"] - 0.5) < 0.1


def test_as_good_as_an_oracle_that_knows_the_true_interval(called, cytobands, arms):
    """The floor that the data allow: call_lesions on the patient's TRUE deleted interval (no
    refinement) is the best this count likelihood can do; remnant, which only knows the configured
    region, must come within 0.01 of it (benchmarks/lesion_calling.py prints the full table)."""
    obs = called.obs
    scored = ((obs["condition"] == "MDS") | obs["sample"].str.endswith("_held")).to_numpy()
    truth = obs["truth"].to_numpy()
    patient = called.uns["truth_patients"].set_index("patient").loc["P1"]
    oracle_lesions = parse_lesions(
        [{"name": "del5q", "type": "loss", "region": f"chr5:{int(patient['start'])}-{int(patient['end'])}"}],
        cytobands,
        arms,
    )
    oracle = called.copy()
    call_lesions(
        oracle,
        oracle_lesions,
        reference=obs["sample"].str.endswith("_ref").to_numpy(),
        refine=False,
        patient_levels=False,
    )
    ours = auroc(obs["del5q_llr"].to_numpy()[scored], truth[scored])
    best = auroc(oracle.obs["del5q_llr"].to_numpy()[scored], truth[scored])
    assert best > 0.95  # the simulated cohort carries enough signal for the comparison to mean something
    assert ours >= best - 0.01, (ours, best)


def test_posterior_roughly_calibrated(called):
    obs = called.obs
    mds = (obs["condition"] == "MDS").to_numpy()
    callm = obs["del5q_call"].to_numpy() & mds
    precision = obs["truth"].to_numpy()[callm].mean()
    assert callm.sum() > 30
    assert abs(obs["del5q_posterior"].to_numpy()[callm].mean() - precision) < 0.06
    # binned calibration over all MDS cells
    post, truth = obs["del5q_posterior"].to_numpy()[mds], obs["truth"].to_numpy()[mds]
    assert abs(post.mean() - truth.mean()) < 0.08


def test_deterministic_and_csr_csc_agree(cohort, lesions, called):
    ref = cohort.obs["sample"].str.endswith("_ref").to_numpy()
    again = cohort.copy()
    call_lesions(again, lesions, reference=ref)
    pd.testing.assert_frame_equal(again.obs, called.obs)
    csc = cohort.copy()
    csc.layers["counts"] = sp.csc_matrix(csc.layers["counts"])
    call_lesions(csc, lesions, reference=ref, chunk_size=137)
    np.testing.assert_allclose(csc.obs["del5q_llr"], called.obs["del5q_llr"], rtol=1e-9, atol=1e-9)
    assert (csc.obs["del5q_call"] == called.obs["del5q_call"]).all()


def test_cell_folds_with_one_reference_donor(cohort, lesions):
    adata = cohort[cohort.obs["patient"].isin(["H1", "P1"])].copy()
    ref = (adata.obs["sample"] == "H1_ref").to_numpy()
    call_lesions(adata, lesions, reference=ref, seed=1)
    info = adata.uns["lesions"]["del5q"]
    assert (info["batches"]["fold_mode"] == "cell").all()
    assert info["reference_fpr"] <= 0.02


def test_fold_assignment_follows_what_each_reference_cell_calibrates():
    from remnant.tl.lesion_model import assign_folds

    donors = np.array(["H1"] * 4 + ["H2"] * 4 + ["H3"] * 4 + ["P1"] * 6)
    rows = np.arange(donors.size)
    # healthy donors' samples (nothing else scored in them): whole donors, one per fold
    fold, k, mode = assign_folds(rows[:12], donors, 5, seed=0)
    assert (mode, k) == ("donor", 3)
    assert all(len(set(fold[donors[:12] == d])) == 1 for d in ("H1", "H2", "H3"))
    assert len(set(fold)) == 3
    # a patient's normal cells in samples that are scored too: random folds, the donors beside them whole
    shared = donors == "P1"
    fold, k, mode = assign_folds(rows, donors, 3, seed=0, shared=shared)
    assert (mode, k) == ("donor+cell", 3)
    assert sorted(np.bincount(fold[shared], minlength=3)) == [2, 2, 2]
    assert all(len(set(fold[donors == d])) == 1 for d in ("H1", "H2", "H3"))
    fold, k, mode = assign_folds(rows[12:], donors, 3, seed=0, shared=np.ones(6, bool))
    assert (mode, k) == ("cell", 3) and sorted(np.bincount(fold)) == [2, 2, 2]
    # one donor, or none known: random cells
    assert assign_folds(rows[:4], donors, 2, seed=0)[2] == "cell"
    assert assign_folds(rows, None, 2, seed=0)[2] == "cell"


def test_bad_inputs(cohort, lesions):
    adata = cohort[:50].copy()
    with pytest.raises(InputError, match="reference cells"):
        call_lesions(adata, lesions, reference=np.zeros(adata.n_obs, bool))
    with pytest.raises(InputError, match="one value per cell"):
        call_lesions(adata, lesions, reference=np.ones(3, bool))
    with pytest.raises(InputError, match="no layer"):
        call_lesions(adata, lesions, reference=np.ones(adata.n_obs, bool), layer="raw")
    with pytest.raises(InputError, match="hspc_state|lacks column"):
        call_lesions(adata, lesions, reference=np.ones(adata.n_obs, bool), state_key="nope")


# ------------------------------------------------------------------------------------------------
# technologies, patient intervals
# ------------------------------------------------------------------------------------------------
MIXED_ROWS = [
    ("H1_drop", "H1", "", "CD34", "healthy", "droplet"),
    ("H1_plate", "H1", "", "HSC", "healthy", "plate"),
    ("H2_drop", "H2", "", "CD34", "healthy", "droplet"),
    ("H2_plate", "H2", "", "HSC", "healthy", "plate"),
    ("P1_drop", "P1", "diagnosis", "CD34", "MDS", "droplet"),
    ("P1_plate", "P1", "diagnosis", "HSC", "MDS", "plate"),
]
MIXED_PARAMS = {
    "cells_per_sample": {"droplet": 300, "plate": 96},
    "library_size": {"droplet": {"median": 3000.0, "sdlog": 0.35}},
    "clone_fraction": {"diagnosis": {"CD34": 0.6, "HSC": 0.8}},
    "clone_sampling": "exact",
    "low_quality": {"fraction": 0.0},
    "doublets": {"rate": 0.0},
}


@pytest.fixture(scope="module")
def mixed():
    return S.called_cohort(MIXED_ROWS, params=MIXED_PARAMS, seed=5)


def test_technologies_scored_against_their_own_reference(mixed, lesions):
    adata = mixed.copy()
    call_lesions(adata, lesions, reference=(adata.obs["condition"] == "healthy").to_numpy(), batch_key="technology")
    info = adata.uns["lesions"]["del5q"]
    batches = info["batches"]
    # plate read counts vary far beyond a Poisson (amplification); UMIs do not
    assert batches.loc["plate", "count_scale"] > 5 and batches.loc["droplet", "count_scale"] < 1.5
    assert batches["reference_matched"].all() and (batches["n_reference"] == [600, 192]).all()
    obs, ps = adata.obs, info["per_sample"]
    for sample in ("P1_drop", "P1_plate"):
        m = (obs["sample"] == sample).to_numpy()
        assert auroc(obs["del5q_posterior"].to_numpy()[m], obs["truth"].to_numpy()[m]) >= 0.97, sample
        assert abs(ps.loc[sample, "prior"] - obs["truth"].to_numpy()[m].mean()) < 0.08, sample
    assert obs.loc[obs["condition"] == "healthy", "del5q_call"].mean() <= 0.01


def test_batch_without_its_own_reference_is_flagged(mixed, lesions):
    adata = mixed.copy()
    ref = ((adata.obs["condition"] == "healthy") & (adata.obs["technology"] == "droplet")).to_numpy()
    call_lesions(adata, lesions, reference=ref, batch_key="technology")
    batches = adata.uns["lesions"]["del5q"]["batches"]
    assert batches.loc["droplet", "reference_matched"] and not batches.loc["plate", "reference_matched"]
    assert not adata.uns["lesions"]["del5q"]["per_sample"].loc["P1_plate", "reference_matched"]


def test_patient_interval_refined_towards_truth(mixed, lesions):
    adata = mixed.copy()
    call_lesions(adata, lesions, reference=(adata.obs["condition"] == "healthy").to_numpy(), batch_key="technology")
    intervals = adata.uns["lesions"]["del5q"]["intervals"].set_index("donor")
    truth = adata.uns["truth_patients"].set_index("patient").loc["P1"]
    got = intervals.loc["P1"]
    assert got["refined"] and got["n_called"] >= 30
    # within 5 Mb of the simulated breakpoints (~40 genes at 5q gene density)
    assert abs(got["start"] - truth["start"]) < 5e6 and abs(got["end"] - truth["end"]) < 5e6, (got, truth)
    unrefined = mixed.copy()
    call_lesions(
        unrefined,
        lesions,
        reference=(unrefined.obs["condition"] == "healthy").to_numpy(),
        batch_key="technology",
        refine=False,
        patient_levels=False,
    )
    assert unrefined.uns["lesions"]["del5q"]["intervals"].empty


def test_refinement_reference_cap(cohort, lesions, called):
    """refine_max_reference: a cap above the reference changes nothing; a cap below it (a seeded
    sample re-scored per donor, so refinement costs stay linear in the cohort) keeps the calls."""
    ref = cohort.obs["sample"].str.endswith("_ref").to_numpy()
    above = cohort.copy()
    call_lesions(above, lesions, reference=ref, refine_max_reference=int(ref.sum()))
    np.testing.assert_array_equal(above.obs["del5q_llr"], called.obs["del5q_llr"])
    capped = cohort.copy()
    call_lesions(capped, lesions, reference=ref, refine_max_reference=200)
    assert capped.uns["lesions"]["del5q"]["params"]["refine_max_reference"] == 200
    mds = (capped.obs["condition"] == "MDS").to_numpy()
    truth = capped.obs["truth"].to_numpy()
    assert auroc(capped.obs["del5q_posterior"].to_numpy()[mds], truth[mds]) >= 0.95
    assert (capped.obs["del5q_call"] == called.obs["del5q_call"]).mean() >= 0.97


def test_lesions_on_every_arm_count_the_depth_on_the_whole_genome(cohort, cytobands, arms, caplog):
    """A scan of every arm leaves no genome outside the lesions but the acrocentric short arms. The
    median baseline counts each cell's depth on every autosomal gene whatever the lesions (before
    session 37 outside them: most cells' depth was a handful of counts, del(5q)'s AUROC 0.84); the sum
    falls back to every autosomal gene there, with a warning. del(5q) is found as well as alone and
    the arms the simulator left unchanged are called in few cells."""
    items = [{"name": "del5q", "type": "loss", "region": "5q13-q33"}]
    arms = arms[autosomal(arms["chromosome"])]  # the autosomes' arms
    for arm in arms["chromosome"].str.removeprefix("chr") + arms["arm"]:
        if arm not in ("5q", "13p", "14p", "15p", "21p", "22p"):  # del5q's arm, the acrocentric short arms
            items.append({"name": f"del{arm}", "type": "loss", "region": arm})
    scan = parse_lesions(items, cytobands, arms)
    autosome = autosomal(cohort.var["chromosome"])
    summed = DepthGenes(baseline="sum")
    assert np.array_equal(lesion_columns(cohort.var, scan)[1], autosome)  # the median's, always
    assert np.array_equal(lesion_columns(cohort.var, scan, summed)[1], autosome)
    one = lesion_columns(cohort.var, scan[:1], summed)  # del5q alone: the sum outside it
    assert np.array_equal(one[1], autosome & ~one[0])
    totals = np.asarray(cohort.layers["counts"].sum(0))
    groups = pd.DataFrame({"sample": ["all"], "n_cells": [cohort.n_obs]})
    with caplog.at_level("WARNING", logger="remnant.tl.lesions"):
        depth_columns(cohort.var, scan, totals, groups, summed, "test")
    assert "counted on all autosomal genes" in caplog.text
    adata = cohort.copy()
    reference = adata.obs["sample"].str.endswith("_ref").to_numpy()
    call_lesions(adata, scan, reference=reference, clone_prior=False)
    obs = adata.obs
    mds, truth = (obs["condition"] == "MDS").to_numpy(), obs["truth"].to_numpy()
    assert auroc(obs["del5q_posterior"].to_numpy()[mds], truth[mds]) >= 0.95
    held = obs["sample"].str.endswith("_held").to_numpy()
    others = [lesion.name for lesion in scan if lesion.name != "del5q"]
    called = np.array([obs[f"{name}_call"].to_numpy() for name in others])
    assert called[:, held].mean() <= 0.01 and called[:, mds].mean() <= 0.02
