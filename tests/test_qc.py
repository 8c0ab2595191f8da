"""QC: thresholds, MAD outliers and doublet calls against planted truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from simulated import WITHOUT_CONFOUNDERS, cohort

from remnant.pp.qc import REASONS, mad_outlier, removed_per_reason
from remnant.sim.evaluate import precision_recall
from remnant.workflow.qc import flag_cells  # the workflow's call: warnings name the config keys (qc.*)

THRESHOLDS = {
    "min_counts": 500,
    "max_counts": None,
    "min_genes": 200,
    "max_genes": None,
    "max_pct_mito": 20,
    "mad": {"counts": 5, "genes": 5, "pct_mito": 4},
    "doublets": {"enabled": True, "expected_rate": 0.06, "threshold": None},
}


def test_mad_outlier_sides():
    values = np.array([10.0, 11, 9, 10, 10.5, 9.5, 30, -10])
    low, cut_low = mad_outlier(values, 3, side="low")
    high, _ = mad_outlier(values, 3, side="high")
    both, _ = mad_outlier(values, 3, side="both")
    assert list(np.where(low)[0]) == [7] and list(np.where(high)[0]) == [6]
    assert list(np.where(both)[0]) == [6, 7]
    assert cut_low < 9
    assert not mad_outlier(values, None, side="both")[0].any()
    assert not mad_outlier(np.ones(5), 3, side="both")[0].any()  # MAD 0: nothing is an outlier


def test_absolute_thresholds_on_a_known_matrix():
    counts = sp.csr_matrix(np.array([[600, 0, 5], [100, 0, 0], [300, 300, 900]], dtype=np.float32))
    var = pd.DataFrame({"chromosome": ["chr1", "chr2", "chrM"]}, index=["g1", "g2", "MT-CO1"])
    adata = AnnData(counts, var=var)
    adata.obs_names = ["a", "b", "c"]
    flag_cells(adata, {**THRESHOLDS, "min_genes": 1, "mad": {}}, score_doublets_for=False)
    assert adata.obs.loc["b", "qc_reason"] == "low_counts"
    assert adata.obs.loc["c", "qc_reason"] == "high_mito"  # 900 of 1,500 counts on chrM
    assert adata.obs.loc["a", "qc_pass"]
    np.testing.assert_allclose(adata.obs["pct_counts_mt"], [5 / 605 * 100, 0.0, 60.0], rtol=1e-5)


def _droplet_sample(**params):
    rows = [("S1", "P1", "diagnosis", "PROG", "MDS", "droplet")]
    mapped, truth = cohort(rows, params={"cells_per_sample": {"droplet": 600, "plate": 96}, **params}, seed=3)
    adata = mapped["S1"]
    truth = truth.set_index("barcode").loc[adata.obs["barcode"]]
    return adata, truth


@pytest.fixture(scope="module")
def droplet_sample():
    return _droplet_sample()


def test_qc_finds_planted_low_quality_cells_and_doublets(droplet_sample):
    _qc_finds_planted_low_quality_cells_and_doublets(droplet_sample)


def test_qc_finds_planted_low_quality_cells_and_doublets_without_confounders():
    _qc_finds_planted_low_quality_cells_and_doublets(_droplet_sample(**WITHOUT_CONFOUNDERS))


def _qc_finds_planted_low_quality_cells_and_doublets(droplet_sample):
    adata, truth = droplet_sample
    adata = adata.copy()
    flag_cells(adata, THRESHOLDS, score_doublets_for=True, seed=0)
    removed = ~adata.obs["qc_pass"].to_numpy()
    bad = truth["low_quality"].to_numpy() | truth["doublet"].to_numpy()
    quality = adata.obs[[f"qc_fail_{r}" for r in REASONS if r != "doublet"]].any(axis=1).to_numpy()
    p_lq, r_lq = precision_recall(quality, truth["low_quality"].to_numpy())
    p_d, r_d = precision_recall(adata.obs["qc_fail_doublet"].to_numpy(), truth["doublet"].to_numpy())
    p, r = precision_recall(removed, bad)
    base = truth["doublet"].mean()
    print(
        f"\nlow quality: precision {p_lq:.2f} recall {r_lq:.2f}; doublets: precision {p_d:.2f} recall {r_d:.2f} "
        f"(planted rate {base:.2f}); all removed: precision {p:.2f} recall {r:.2f}"
    )
    assert r_lq >= 0.95 and p_lq >= 0.8
    rule = adata.uns["remnant"]["qc"]["doublet_rule"]["rule"]
    if rule == "Scrublet automatic threshold":
        # Scrublet on a few hundred sorted cells is weak (AUROC ~0.7 here): clearly better than chance
        assert p_d >= 2 * base and r_d >= 2 * base
    else:  # (this sample: the automatic threshold would call 88% of cells) said, and nothing removed
        assert rule == "not reliable: none called" and not adata.obs["qc_fail_doublet"].any()


def test_doublet_free_sample_loses_no_fixed_share(caplog):
    _doublet_free_sample_loses_no_fixed_share(caplog, {})


def test_doublet_free_sample_loses_no_fixed_share_without_confounders(caplog):
    _doublet_free_sample_loses_no_fixed_share(caplog, WITHOUT_CONFOUNDERS)


def _doublet_free_sample_loses_no_fixed_share(caplog, params):
    """A small sorted sample without doublets: remnant once removed the top 6% by score whenever
    Scrublet's automatic threshold failed; now it removes none and says calling is not reliable."""
    rows = [("S1", "P1", "diagnosis", "PROG", "MDS", "droplet")]
    mapped, truth = cohort(
        rows, params={"cells_per_sample": {"droplet": 300, "plate": 96}, "doublets": {"rate": 0.0}, **params}, seed=1
    )
    assert not truth["doublet"].any()
    adata = mapped["S1"].copy()
    with caplog.at_level("WARNING", logger="remnant.pp.qc"):
        flag_cells(adata, THRESHOLDS, score_doublets_for=True, seed=0)
    assert adata.uns["remnant"]["qc"]["doublet_rule"]["rule"] == "not reliable: none called"
    assert not adata.obs["qc_fail_doublet"].any()
    assert any(
        "doublet calling is not reliable" in r.getMessage() and "qc.doublets.threshold" in r.getMessage()
        for r in caplog.records
    )


def test_qc_warns_when_it_removes_much_of_a_shallow_sample(caplog):
    """At ~500 counts per cell the default qc.min_counts (500) removes about half of a sample: a
    warning names the key, its threshold, its share and the sample's median depth."""
    rows = [("S1", "P1", "diagnosis", "PROG", "MDS", "droplet")]
    mapped, _ = cohort(
        rows,
        params={"cells_per_sample": {"droplet": 200, "plate": 96}, "library_size": {"droplet": {"median": 500}}},
        seed=2,
    )
    adata = mapped["S1"].copy()
    thresholds = {**THRESHOLDS, "doublets": {"enabled": False}, "warn_removed_fraction": 0.3}
    with caplog.at_level("WARNING", logger="remnant.pp.qc"):
        flag_cells(adata, thresholds, score_doublets_for=False)
    share = 1 - adata.obs["qc_pass"].mean()
    warned = [r.getMessage() for r in caplog.records if "QC removes" in r.getMessage()]
    assert share > 0.3 and len(warned) == 1, (share, warned)
    assert "qc.min_counts (at 500) removes" in warned[0] and "median cell has" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="remnant.pp.qc"):
        flag_cells(adata.copy(), {**thresholds, "min_counts": 50, "min_genes": 20}, score_doublets_for=False)
    assert not [r for r in caplog.records if "QC removes" in r.getMessage()]


def test_plate_samples_are_not_doublet_scored(droplet_sample):
    adata = droplet_sample[0].copy()
    flag_cells(adata, THRESHOLDS, score_doublets_for=False)
    assert adata.obs["doublet_score"].isna().all() and not adata.obs["qc_fail_doublet"].any()


def test_configured_threshold_and_summary(droplet_sample):
    adata = droplet_sample[0].copy()
    flag_cells(adata, {**THRESHOLDS, "doublets": {"enabled": True, "expected_rate": 0.06, "threshold": 0.2}})
    scores = adata.obs["doublet_score"]
    assert (adata.obs["qc_fail_doublet"] == (scores > 0.2)).all()
    row = removed_per_reason(adata.obs, "S1").iloc[0]
    assert row["cells"] == adata.n_obs and row["kept"] + row["removed"] == row["cells"]
    assert row["doublet"] == int((scores > 0.2).sum())


def test_doublet_scoring_of_a_sample_above_the_approximate_neighbour_size():
    """Scrublet searches neighbours among observed + 2x simulated doublets with pynndescent from
    scanpy's approximate size up; pynndescent 0.7 returned a sparse array scanpy 1.11 cannot read
    (AttributeError: getnnz), so every droplet sample of more than a few thousand cells failed QC
    (pyproject pins pynndescent < 0.6). 3,000 cells -> 9,000 rows in the neighbour search."""
    rows = [("S1", "P1", "diagnosis", "PROG", "MDS", "droplet")]
    mapped, _ = cohort(rows, params={"cells_per_sample": {"droplet": 3000, "plate": 96}}, seed=5)
    adata = mapped["S1"].copy()
    flag_cells(adata, THRESHOLDS, score_doublets_for=True, seed=0)
    scored = np.isfinite(
        adata.obs["doublet_score"].to_numpy(dtype=float)
    )  # cells failing other thresholds are not scored
    assert scored.sum() > 2500 and adata.obs["qc_fail_doublet"].any()


def test_qc_figures(droplet_sample, tmp_path):
    """remnant.pl.qc: the per-sample figure (thresholds drawn, doublet scores) and the summary bars."""
    from PIL import Image

    from remnant.pl.qc import plot_qc, plot_qc_summary

    adata = droplet_sample[0].copy()
    flag_cells(adata, THRESHOLDS, score_doublets_for=True, seed=0)
    unscored = adata.copy()
    flag_cells(unscored, THRESHOLDS, score_doublets_for=False)
    table = pd.concat([removed_per_reason(adata.obs, "S1"), removed_per_reason(unscored.obs, "S2")], ignore_index=True)
    paths = [tmp_path / "S1.png", tmp_path / "S2.png", tmp_path / "summary.png"]
    plot_qc(adata, str(paths[0]), title="S1")
    plot_qc(unscored, str(paths[1]), title="S2")  # no doublet scores: a note instead of the histogram
    plot_qc_summary(table, str(paths[2]), REASONS)
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
            assert image.size[0] > 500 and len(np.unique(pixels, axis=0)) > 10
