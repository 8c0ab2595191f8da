"""Genome-wide copy-number view (remnant.tl.profile, remnant.tl.breakpoints, remnant.pl.cnv)
against simulated truth.

Cohort: 2 healthy reference donors and 2 MDS patients (a CD34 diagnosis sample each, 60% of cells
in the del(5q) clone, ~2,000 UMI/cell, 300 cells per sample); the simulator draws each patient's
breakpoints (proximal 65-80 Mb, distal 140-160.5 Mb) and writes them to ``sim.patients``. The
annotated state is the true simulated state (clustering is tested elsewhere).

Breakpoint tolerance: benchmarks/cnv_profile.py (10 patients, ~140 called cells each, 2,000 UMI,
default settings) measured |error| median 0.7 Mb, 90th percentile 2.2 Mb, max 3.3 Mb, and at most 5
scanned genes between truth and estimate; the truth lies in the gap between two expressed genes,
which on 5q is often 1-2 Mb wide. The test asks for <= 4 Mb.
"""

from __future__ import annotations

import logging

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import simulated as S

from remnant.errors import InputError
from remnant.io.counts import map_genes
from remnant.pl import cnv as P
from remnant.sim.cohort import simulate_cohort
from remnant.tl import breakpoints as B
from remnant.tl import profile as C
from remnant.tl.lesions import call_lesions, parse_lesions

ROWS = [
    ("H1_CD34", "H1", "", "CD34", "healthy", "droplet"),
    ("H2_CD34", "H2", "", "CD34", "healthy", "droplet"),
    ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
    ("P2_dx", "P2", "diagnosis", "CD34", "MDS", "droplet"),
]
PARAMS = {
    "cells_per_sample": {"droplet": 300},
    "library_size": {"droplet": {"median": 2000.0, "sdlog": 0.35}},
    "clone_fraction": {"diagnosis": {"CD34": 0.6}},
    "clone_sampling": "exact",
    "low_quality": {"fraction": 0.0},
    "doublets": {"rate": 0.0},
}
TOLERANCE_BP = 4_000_000


@pytest.fixture(scope="module")
def lesion(cytobands):
    (lesion,) = parse_lesions(None, cytobands)
    return lesion


def _simulate(params):
    samples = S.sheet(ROWS)
    return samples, simulate_cohort(
        samples, S.genes(), S.markers(), S.read_gene_sets(S.ROOT / "resources/gene_sets"), params=params, seed=3
    )


@pytest.fixture(scope="module")
def sim():
    return _simulate(PARAMS)


@pytest.fixture(scope="module")
def cohort(sim, lesion):
    return _called(sim, lesion)


def _called(sim, lesion):
    samples, result = sim
    parts = []
    for sample, row in samples.iterrows():
        adata, _ = map_genes(result.counts[sample], S.genes(), source=sample)
        for key in ("sample", "patient", "timepoint", "population", "condition"):
            adata.obs[key] = row[key]
        adata.obs_names = [f"{sample}:{b}" for b in adata.obs_names]
        parts.append(adata)
    adata = ad.concat(parts, merge="same")
    cells = result.cells
    truth = cells.set_index(cells["sample"] + ":" + cells["barcode"]).loc[adata.obs_names]
    adata.obs["hspc_state"] = truth["state"].to_numpy()
    adata.obs["truth"] = truth["lesion_del5q"].to_numpy(bool)
    adata.obs["timepoint"] = pd.Categorical(adata.obs["timepoint"].replace({"": "NA"}), categories=["diagnosis", "NA"])
    adata.obs["population"] = pd.Categorical(adata.obs["population"])
    adata.obs["reference"] = (adata.obs["condition"] == "healthy").to_numpy()
    adata.layers["counts"] = sp.csr_matrix(adata.X)
    adata.X = None
    call_lesions(adata, [lesion], reference="reference")
    return adata


@pytest.fixture(scope="module")
def profiled(cohort):
    adata = cohort.copy()
    C.infer_profile(adata, "reference")
    return adata


@pytest.fixture(scope="module")
def truth(sim):
    return _truth(sim)


def _truth(sim):
    patients = sim[1].patients
    return patients[patients["lesion"] == "del5q"].set_index("patient")


@pytest.fixture(scope="module")
def breakpoints(cohort, lesion, cytobands):
    return B.estimate_breakpoints(cohort, lesion, cytobands=cytobands, n_boot=100)


# ------------------------------------------------------------------------------------------------
# infer_profile
# ------------------------------------------------------------------------------------------------
def test_profile_keys_and_window_table(profiled, cohort):
    M = profiled.obsm["X_cnv"]
    assert sp.issparse(M) and M.shape[0] == profiled.n_obs
    info = profiled.uns["cnv"]
    windows = info["windows"]
    assert len(windows) == M.shape[1]
    assert list(windows.columns) == ["chromosome", "start", "end", "mid", "n_genes", "first_gene", "last_gene"]
    # chr_pos (infercnvpy's) agrees with where each chromosome starts in the window table
    first = windows.reset_index().groupby("chromosome", sort=False)["index"].min().to_dict()
    assert info["chr_pos"] == first
    assert not set(windows["chromosome"]) & {"chrX", "chrY", "chrM"}
    assert (windows["start"] < windows["end"]).all()
    assert ((windows["mid"] >= windows["start"]) & (windows["mid"] < windows["end"])).all()
    for _, w in windows.groupby("chromosome", sort=False):
        assert w["mid"].is_monotonic_increasing
    assert set(info["reference_states"]) <= set(cohort.obs.loc[cohort.obs["reference"], "hspc_state"])
    assert info["params"]["n_genes"] == len(info["genes"])
    # the counts are untouched and nothing else was added to the cohort
    assert (profiled.layers["counts"] != cohort.layers["counts"]).nnz == 0
    assert profiled.X is None and list(profiled.obs.columns) == list(cohort.obs.columns)


def test_profile_equals_infercnvpy_on_scanpy_normalised_data(profiled, cohort):
    """infer_profile = sc.pp.normalize_total + log1p on all genes, then infercnvpy with state categories."""
    import infercnvpy as cnv
    import scanpy as sc

    full = ad.AnnData(
        X=cohort.layers["counts"].copy().astype(np.float32),
        obs=cohort.obs[["hspc_state", "reference"]].copy(),
        var=cohort.var[["chromosome", "start", "end"]].copy(),
    )
    sc.pp.normalize_total(full, target_sum=1e4)
    sc.pp.log1p(full)
    light = full[:, list(profiled.uns["cnv"]["genes"])].copy()
    states = list(profiled.uns["cnv"]["reference_states"])
    light.obs["category"] = np.where(
        light.obs["reference"] & light.obs["hspc_state"].isin(states), light.obs["hspc_state"], "query"
    )
    cnv.tl.infercnv(light, reference_key="category", reference_cat=states, window_size=100, step=10, n_jobs=1)
    np.testing.assert_allclose(light.obsm["X_cnv"].toarray(), profiled.obsm["X_cnv"].toarray(), atol=1e-4)


def test_called_cells_lower_inside_interval_genome_wide_view(profiled, truth):
    windows = profiled.uns["cnv"]["windows"]
    M = profiled.obsm["X_cnv"]
    for patient, t in truth.iterrows():
        chr5 = (windows["chromosome"] == "chr5").to_numpy()
        inside = chr5 & (windows["mid"] >= t["start"]).to_numpy() & (windows["mid"] < t["end"]).to_numpy()
        called = (profiled.obs["patient"] == patient).to_numpy() & profiled.obs["del5q_call"].to_numpy()
        mean = np.asarray(M[called].mean(axis=0)).ravel()
        assert mean[inside].mean() < mean[chr5 & ~inside].mean() - 0.02
        assert mean[inside].mean() < np.delete(mean, np.flatnonzero(chr5)).mean() - 0.02


# ------------------------------------------------------------------------------------------------
# lesion profile and breakpoints
# ------------------------------------------------------------------------------------------------
def test_lesion_profile_shows_deletion_extent(cohort, lesion, truth):
    # with the simulator's confounders (dominant transcript families): a plain depth put the called
    # cells' profile at -0.24 outside P2's deletion; the calls' depth genes put it within 0.06 of 0
    _lesion_profile_shows_deletion_extent(cohort, lesion, truth)


def _lesion_profile_shows_deletion_extent(cohort, lesion, truth):
    profile = B.lesion_profile(cohort, lesion)
    assert set(profile["group"]) == {"called", "not called"}
    for patient, t in truth.iterrows():
        mine = profile[profile["patient"] == patient]
        called = mine[mine["group"] == "called"]
        inside = called["position"].between(t["start"] + 3e6, t["end"] - 3e6)
        outside = (called["position"] < t["start"] - 3e6) | (called["position"] > t["end"] + 3e6)
        # copy ratio 0.5 inside: about -1 log2; outside: about 0
        assert -1.4 < called.loc[inside, "smoothed"].median() < -0.7
        assert abs(called.loc[outside, "smoothed"].median()) < 0.2
        uncalled = mine[mine["group"] == "not called"]
        assert uncalled.loc[uncalled["position"].between(t["start"] + 3e6, t["end"] - 3e6), "smoothed"].median() > -0.5
    # healthy donors: no deletion anywhere on chr5
    healthy = profile[(profile["patient"] == "H1") & (profile["group"] == "not called")]
    assert abs(healthy["smoothed"].median()) < 0.1 and healthy["smoothed"].abs().quantile(0.95) < 0.35


def test_breakpoints_recovered(breakpoints, truth):
    for patient, t in truth.iterrows():
        row = breakpoints.loc[patient]
        assert row["reason"] == "" and row["n_called"] >= 20
        assert abs(row["start"] - t["start"]) <= TOLERANCE_BP, (patient, row["start"], t["start"])
        assert abs(row["end"] - t["end"]) <= TOLERANCE_BP, (patient, row["end"], t["end"])
        assert row["start_lo"] <= row["start"] <= row["start_hi"] and row["end_lo"] <= row["end"] <= row["end_hi"]
        assert 0.35 < row["ratio"] < 0.6 and row["ratio_lo"] <= row["ratio"] <= row["ratio_hi"]
        assert row["start_band"].startswith("5q") and row["end_band"].startswith("5q")
        assert row["n_genes_inside"] > 50 and row["llr"] > 50


def test_too_few_called_cells_give_nan_and_reason(breakpoints, cohort, lesion):
    for donor in ("H1", "H2"):
        row = breakpoints.loc[donor]
        assert np.isnan(row["start"]) and np.isnan(row["end"]) and "called cells" in row["reason"]
    strict = B.estimate_breakpoints(cohort, lesion, n_boot=0, min_cells=10_000)
    assert strict["start"].isna().all() and strict["reason"].str.contains("min_cells").all()


def test_breakpoints_deterministic(cohort, lesion, cytobands, breakpoints):
    again = B.estimate_breakpoints(cohort, lesion, cytobands=cytobands, n_boot=100)
    pd.testing.assert_frame_equal(again, breakpoints)


def _programme_cohort(seed=0, factor=8.0):
    """A reference donor and a patient, 150 cells each of one state (Poisson counts, ~4,000 a cell);
    2,000 genes, 400 on each of chr1-chr5. 60 of the patient's cells carry a loss of chr5's genes
    100-300 (copy ratio 0.5) and are its calls; a programme multiplies 300 genes off chr5 by
    ``factor`` in all the patient's cells. Returns the AnnData and the profile and programme
    (per gene)."""
    rng = np.random.default_rng(seed)
    n_genes, n_cells = 2000, 150
    chrom = np.repeat([f"chr{i}" for i in range(1, 6)], 400)
    start = np.tile(np.arange(400) * 400_000 + 1_000_000, 5)
    var = pd.DataFrame(
        {
            "gene_name": [f"G{i:04d}" for i in range(n_genes)],
            "chromosome": chrom,
            "start": start,
            "end": start + 20_000,
        },
        index=[f"ENSG{i:011d}" for i in range(n_genes)],
    )
    profile = rng.lognormal(0.0, 1.5, n_genes)
    profile /= profile.sum()
    programme = np.ones(n_genes)
    programme[rng.choice(np.flatnonzero(chrom != "chr5"), 300, replace=False)] = factor
    lost = np.ones(n_genes)
    lost[np.flatnonzero(chrom == "chr5")[100:300]] = 0.5
    carrier = np.r_[np.zeros(n_cells, bool), np.arange(n_cells) < 60]
    level = np.where(carrier[:, None], lost, 1.0) * np.where(np.arange(2 * n_cells)[:, None] >= n_cells, programme, 1.0)
    size = rng.lognormal(np.log(4000.0), 0.3, 2 * n_cells)[:, None]
    X = sp.csr_matrix(rng.poisson(size * profile * level).astype(np.float32))
    obs = pd.DataFrame(
        {
            "sample": np.repeat(["H1", "P1_dx"], n_cells),
            "patient": np.repeat(["H1", "P1"], n_cells),
            "hspc_state": "HSC",
            "reference": np.repeat([True, False], n_cells),
            "loss5_call": carrier,
            "loss4_call": False,
        },
        index=[f"c{i}" for i in range(2 * n_cells)],
    )
    return ad.AnnData(obs=obs, var=var, layers={"counts": X}), profile, programme


def test_breakpoint_depth_scaled_per_sample_as_the_calls_scale_it(caplog):
    """A programme raising 300 genes off chr5 eight-fold in a patient's cells inflates its depth
    2.08-fold, so with the depth unscaled (as lesion_sums read it before) its cells without the
    loss read chr5 at 0.477 against the reference and the loss at 0.238; the breakpoint scan took
    the whole chromosome (0-160.6 Mb, ratio 0.37; truth 41-121 Mb). Scaled as the calls scale it
    (remnant.tl.depth.depth_scales), they read 0.987 and 0.492 (seeds 0-5: within 0.013 of 1 and
    0.009 of 0.5) and the breakpoints 40.8 and 120.8 Mb. The reference's depth is not touched, and
    the factor is logged once for two lesion chromosomes."""
    from remnant.tl.depth import DepthGenes
    from remnant.tl.lesions import Lesion

    adata, profile, programme = _programme_cohort()
    chr5 = adata.var["start"].to_numpy()[adata.var["chromosome"].to_numpy() == "chr5"]
    loss5 = Lesion("loss5", "loss", "chr5", int(chr5[100]), int(chr5[300]), 0.5, "chr5")
    loss4 = Lesion("loss4", "loss", "chr4", 0, 10_000_000, 0.5, "chr4")
    with caplog.at_level(logging.INFO, logger="remnant.tl.depth"):
        scaled = B.lesion_sums(adata, [loss5, loss4])
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("depth of sample")]
    plain = B.lesion_sums(adata, [loss5], depth_genes=DepthGenes(scale_to_reference=False))["loss5"]
    sums = scaled["loss5"]
    patient = adata.obs["patient"].to_numpy() == "P1"

    # unscaled: each cell's counts on the depth genes off chr5, as before
    unscaled = np.asarray(adata.layers["counts"][:, plain.off_cols].sum(1)).ravel()
    np.testing.assert_array_equal(plain.depth, unscaled)
    np.testing.assert_array_equal(sums.off_cols, plain.off_cols)
    np.testing.assert_array_equal(sums.depth[~patient], unscaled[~patient])
    # the patient's factor undoes the programme's inflation of its depth
    inflation = (profile * programme)[sums.off_cols].sum() / profile[sums.off_cols].sum()
    factor = sums.depth[patient] / unscaled[patient]
    assert np.ptp(factor) < 1e-9 and inflation > 2.0
    assert abs(factor[0] * inflation - 1.0) < 0.02, (factor[0], 1 / inflation)
    assert len(logged) == 1 and logged[0].startswith("depth of sample P1_dx scaled by"), logged

    def chr5_ratio(s, group, genes=slice(None)):
        """The patient's pooled observed / expected counts of ``group`` on chr5's ``genes``."""
        profile_ = B.lesion_profile(adata, loss5, sums=s)
        mine = profile_[(profile_["patient"] == "P1") & (profile_["group"] == group)].iloc[genes]
        return mine["observed"].sum() / mine["expected"].sum()

    ratios = {
        name: (chr5_ratio(s, "not called"), chr5_ratio(s, "called", slice(100, 300)))
        for name, s in (("scaled", sums), ("plain", plain))
    }
    assert abs(ratios["scaled"][0] - 1.0) < 0.02 and abs(ratios["scaled"][1] - 0.5) < 0.02, ratios
    assert abs(ratios["plain"][0] * inflation - 1.0) < 0.02, (ratios, inflation)
    row = B.estimate_breakpoints(adata, loss5, sums=sums, n_boot=0).loc["P1"]
    assert row["reason"] == "" and abs(row["ratio"] - 0.5) < 0.03, row["ratio"]
    gaps = np.diff(chr5).max()
    assert abs(row["start"] - loss5.start) < 2 * gaps and abs(row["end"] - loss5.end) < 2 * gaps, row


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def _nontrivial_png(path, min_kb=20):
    assert path.is_file() and path.stat().st_size > min_kb * 1024
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_heatmap_and_profile_figures(profiled, cohort, lesion, cytobands, breakpoints, tmp_path):
    heat = tmp_path / "heatmap_P1.png"
    P.plot_patient_heatmap(profiled, "P1", str(heat), lesions=[lesion], max_cells=120, n_reference_cells=50)
    _nontrivial_png(heat)
    healthy = tmp_path / "heatmap_H1.png"  # a reference donor, two call bars
    P.plot_patient_heatmap(profiled, "H1", str(healthy), call_key=["del5q_call", "truth"], lesions=[lesion])
    _nontrivial_png(healthy)
    profile = B.lesion_profile(cohort, lesion)
    for patient in ("P1", "H1"):
        path = tmp_path / f"del5q_profile_{patient}.png"
        P.plot_lesion_profile(profile, lesion, str(path), patient=patient, breakpoints=breakpoints, cytobands=cytobands)
        _nontrivial_png(path)


def test_downsampling_is_seeded_and_keeps_small_groups():
    groups = pd.Series(["a"] * 900 + ["b"] * 95 + ["c"] * 5)
    first = P._downsample(groups, 100, np.random.default_rng(1))
    again = P._downsample(groups, 100, np.random.default_rng(1))
    np.testing.assert_array_equal(first, again)
    kept = groups.iloc[first].value_counts()
    assert kept["a"] == 90 and kept["b"] == 10 and kept["c"] == 5
    assert np.array_equal(P._downsample(groups, 5000, np.random.default_rng(1)), np.arange(1000))


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_bad_inputs(cohort, profiled, lesion, tmp_path):
    small = cohort[:60].copy()
    with pytest.raises(InputError, match="no layer"):
        C.infer_profile(small, "reference", layer="raw")
    with pytest.raises(InputError, match="one value per cell"):
        C.infer_profile(small, np.ones(3, bool))
    with pytest.raises(InputError, match="obs has no column"):
        C.infer_profile(small, "is_normal")
    with pytest.raises(InputError, match="reference cells"):
        C.infer_profile(small, np.zeros(small.n_obs, bool))
    with pytest.raises(InputError, match="lacks column"):
        C.infer_profile(cohort, "reference", state_key="cluster_state")
    no_pos = small.copy()
    del no_pos.var["start"]
    with pytest.raises(InputError, match="var lacks column 'start'"):
        B.estimate_breakpoints(no_pos, lesion)
    uncalled = small.copy()
    del uncalled.obs["del5q_call"]
    with pytest.raises(InputError, match="lacks column 'del5q_call'"):
        B.lesion_profile(uncalled, lesion)
    with pytest.raises(InputError, match="ci"):
        B.estimate_breakpoints(cohort, lesion, ci=1.5)
    with pytest.raises(InputError, match="no cell of patient"):
        P.plot_patient_heatmap(profiled, "P9", str(tmp_path / "x.png"))
    with pytest.raises(InputError, match="infer_profile"):
        P.plot_patient_heatmap(cohort, "P1", str(tmp_path / "x.png"))
    with pytest.raises(InputError, match="no profile rows"):
        P.plot_lesion_profile(B.lesion_profile(cohort, lesion), lesion, str(tmp_path / "x.png"), patient="P9")


# ------------------------------------------------------------------------------------------------
# the cohort read from its h5ad a block of cells at a time (issue 8)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort_file(cohort, tmp_path_factory):
    """The cohort as remnant's cohort files hold it: raw counts in X (CSR float32), no layers."""
    path = tmp_path_factory.mktemp("cohort_file") / "clustered.h5ad"
    out = ad.AnnData(X=sp.csr_matrix(cohort.layers["counts"], dtype=np.float32), obs=cohort.obs, var=cohort.var)
    out.obsm["X_umap"] = np.random.default_rng(0).normal(size=(cohort.n_obs, 2)).astype(np.float32)
    out.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def light(cohort):
    """obs and var only: what the workflow holds of a cohort of a million cells."""
    return ad.AnnData(obs=cohort.obs.copy(), var=cohort.var.copy())


def test_profile_from_file_in_blocks_equals_in_memory(cohort, cohort_file, light, tmp_path):
    """write_profile streams 4 blocks of 300 cells (infercnvpy chunks of 150) from the file's X into
    an h5ad anndata reads; the numbers are infer_profile's on the whole in-memory matrix."""
    whole = cohort.copy()
    C.infer_profile(whole, "reference", chunksize=150, chunk_cells=10**6)
    out = tmp_path / "profile.h5ad"
    umap = np.asarray(ad.read_h5ad(cohort_file).obsm["X_umap"])
    info = C.write_profile(
        light, "reference", out, obsm={"X_umap": umap}, layer=None, counts=cohort_file, chunksize=150, chunk_cells=300
    )
    back = ad.read_h5ad(out)
    assert back.n_obs == cohort.n_obs and back.n_vars == 0 and back.X is None
    M = back.obsm["X_cnv"]
    assert sp.issparse(M) and M.dtype == np.float32 and M.shape == whole.obsm["X_cnv"].shape
    assert (whole.obsm["X_cnv"] != M).nnz == 0
    np.testing.assert_array_equal(back.obsm["X_umap"], umap)
    pd.testing.assert_frame_equal(back.obs.astype(str), cohort.obs.astype(str))
    assert back.uns["cnv"]["chr_pos"] == whole.uns["cnv"]["chr_pos"] == info["chr_pos"]
    pd.testing.assert_frame_equal(back.uns["cnv"]["windows"], whole.uns["cnv"]["windows"])
    np.testing.assert_array_equal(back.uns["cnv"]["genes"], whole.uns["cnv"]["genes"])
    assert not list(tmp_path.glob(".*partial"))
    # the blocks of a smaller chunk_cells than chunksize are whole chunks: same numbers
    again = light.copy()
    C.infer_profile(again, "reference", layer=None, counts=cohort_file, chunksize=150, chunk_cells=7)
    assert (again.obsm["X_cnv"] != whole.obsm["X_cnv"]).nnz == 0
    pooled = light.copy()  # chunks computed by two worker processes
    C.infer_profile(pooled, "reference", layer=None, counts=cohort_file, chunksize=150, chunk_cells=450, n_jobs=2)
    assert (pooled.obsm["X_cnv"] != whole.obsm["X_cnv"]).nnz == 0


def test_default_layer_reads_the_counts_of_every_file_the_workflow_writes(cohort, cohort_file, light, lesion, tmp_path):
    """layer="counts" (the default) reads clustered.h5ad's X (no layers) and cohort.h5ad's
    layers/counts (log-normalised X), from the file or read whole: the same numbers."""
    from remnant.io import store
    from remnant.tl.lesions import write_calls

    whole = cohort.copy()
    C.infer_profile(whole, "reference", chunksize=150)
    calls = tmp_path / "calls.h5ad"
    write_calls(cohort, calls)
    scverse = tmp_path / "cohort.h5ad"
    store.annotate_with_calls(cohort_file, calls, scverse)
    clustered = ad.read_h5ad(cohort_file)  # counts in X, no layers
    annotated = ad.read_h5ad(scverse)  # log-normalised X, counts in layers, symbols as var_names
    assert (
        not clustered.layers
        and "counts" in annotated.layers
        and not np.allclose(annotated.X.data, np.round(annotated.X.data))
    )
    for counts, adata in ((cohort_file, light), (scverse, light), (None, clustered), (None, annotated)):
        got = adata.copy()
        C.infer_profile(got, "reference", counts=counts, chunksize=150)
        assert (got.obsm["X_cnv"] != whole.obsm["X_cnv"]).nnz == 0, counts
    sums = B.lesion_sums(cohort, [lesion])["del5q"]
    for counts, adata in ((scverse, light), (None, annotated), (None, clustered)):
        other = B.lesion_sums(adata, [lesion], counts=counts, chunk_cells=333)["del5q"]
        for field in ("depth", "reference_sums", "called_sums", "uncalled_sums"):
            np.testing.assert_array_equal(getattr(other, field), getattr(sums, field), err_msg=f"{field} {counts}")


def test_profile_file_runs_infercnvpy_downstream(light, cohort_file, tmp_path):
    """profile.h5ad as the workflow writes it (write_profile streaming the counts from the cohort
    file) is usable by infercnvpy as read: tl.pca (scikit-learn's sparse code wants one index type:
    the former hand-written writer stored int32 indices with an int64 indptr, "Buffer dtype
    mismatch"), pp.neighbors, tl.leiden, tl.cnv_score."""
    import infercnvpy as cnv

    out = tmp_path / "profile.h5ad"
    C.write_profile(light, "reference", out, counts=cohort_file, chunksize=150, chunk_cells=300)
    adata = ad.read_h5ad(out)
    M = adata.obsm["X_cnv"]
    assert M.indices.dtype == M.indptr.dtype == np.int32
    cnv.tl.pca(adata, n_comps=10)
    assert adata.obsm["X_cnv_pca"].shape == (adata.n_obs, 10) and np.isfinite(adata.obsm["X_cnv_pca"]).all()
    cnv.pp.neighbors(adata, n_neighbors=10)
    cnv.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    assert adata.obs["cnv_leiden"].nunique() >= 2
    cnv.tl.cnv_score(adata)
    score = adata.obs["cnv_score"]
    assert score.notna().all() and (score > 0).all()
    # the carriers' clusters score higher than the healthy donors' (the lesion is in the profile)
    assert score[adata.obs["truth"]].mean() > score[adata.obs["reference"]].mean()


def test_profile_index_type_is_wide_when_values_could_pass_int32(light, cohort_file, tmp_path, monkeypatch):
    """Above 2^31 possible values both index arrays are int64 (one type, as scikit-learn wants)."""
    assert C._profile_index_dtype(1_000_000, 773) == np.int32 and C._profile_index_dtype(3_000_000, 773) == np.int64
    monkeypatch.setattr(C, "_profile_index_dtype", lambda n_obs, n_windows: np.int64)
    out = tmp_path / "profile.h5ad"
    C.write_profile(light, "reference", out, counts=cohort_file, chunksize=150, chunk_cells=300)
    M = ad.read_h5ad(out).obsm["X_cnv"]
    assert M.indices.dtype == M.indptr.dtype == np.int64


def test_read_profile_rows(profiled, tmp_path):
    out = tmp_path / "profile.h5ad"
    ad.AnnData(obs=profiled.obs, obsm={"X_cnv": profiled.obsm["X_cnv"]}, uns={"cnv": profiled.uns["cnv"]}).write_h5ad(
        out
    )
    M = profiled.obsm["X_cnv"]
    rows = np.array([5, 900, 3, 4, 5, 1199, 0])  # any order, repeats
    np.testing.assert_array_equal(C.read_profile_rows(out, rows).toarray(), M[rows].toarray())
    mask = profiled.obs["patient"].eq("P2").to_numpy()
    np.testing.assert_array_equal(C.read_profile_rows(out, mask).toarray(), M[mask].toarray())
    assert C.read_profile_rows(out, np.zeros(0, int)).shape == (0, M.shape[1])
    dense = tmp_path / "dense.h5ad"
    ad.AnnData(obs=profiled.obs, obsm={"X_cnv": M.toarray()}).write_h5ad(dense)
    np.testing.assert_array_equal(C.read_profile_rows(dense, rows).toarray(), M[rows].toarray())
    with pytest.raises(InputError, match="X_other"):
        C.read_profile_rows(out, rows, key="other")


def test_lesion_sums_from_file_equal_in_memory(cohort, cohort_file, light, lesion, cytobands, breakpoints, tmp_path):
    """One pass over the file in blocks of 77 cells gives the in-memory numbers; the counts of the
    layers/counts of older cohort files too."""
    sums = B.lesion_sums(light, [lesion], layer=None, counts=cohort_file, chunk_cells=77)["del5q"]
    memory = B.lesion_sums(cohort, [lesion])["del5q"]
    for field in ("depth", "reference_sums", "called_sums", "uncalled_sums", "called_cells", "chrom_cols", "off_cols"):
        np.testing.assert_array_equal(getattr(sums, field), getattr(memory, field), err_msg=field)
    assert (sums.called_counts != memory.called_counts).nnz == 0
    assert sums.called_counts.shape == (int(cohort.obs["del5q_call"].sum()), sums.chrom_cols.size)
    bp = B.estimate_breakpoints(light, lesion, sums=sums, cytobands=cytobands, n_boot=100)
    pd.testing.assert_frame_equal(bp, breakpoints)
    pd.testing.assert_frame_equal(B.lesion_profile(light, lesion, sums=sums), B.lesion_profile(cohort, lesion))
    older = tmp_path / "older.h5ad"  # counts in layers/counts, X something else
    ad.AnnData(
        X=sp.csr_matrix(cohort.layers["counts"].shape, dtype=np.float32),
        obs=cohort.obs,
        var=cohort.var,
        layers={"counts": cohort.layers["counts"]},
    ).write_h5ad(older)
    pd.testing.assert_frame_equal(
        B.estimate_breakpoints(light, lesion, counts=older, cytobands=cytobands, n_boot=100), breakpoints
    )


def test_sums_must_match_the_arguments(cohort, light, lesion):
    sums = B.lesion_sums(cohort, [lesion])["del5q"]
    with pytest.raises(ValueError, match="sums were computed"):
        B.lesion_profile(light, lesion, sums=sums, reference=~cohort.obs["reference"].to_numpy())
    with pytest.raises(ValueError, match="sums were computed"):
        B.estimate_breakpoints(light, lesion, sums=sums, call_key="truth", n_boot=0)
    with pytest.raises(TypeError, match="LesionSums"):
        B.lesion_profile(light, lesion, sums={"del5q": sums})


def test_heatmap_reads_only_its_rows_from_the_profile_file(profiled, lesion, tmp_path, monkeypatch):
    out = tmp_path / "profile.h5ad"
    ad.AnnData(obs=profiled.obs, obsm={"X_cnv": profiled.obsm["X_cnv"]}, uns={"cnv": profiled.uns["cnv"]}).write_h5ad(
        out
    )
    obs_only = ad.AnnData(obs=profiled.obs, uns={"cnv": profiled.uns["cnv"]})
    read = []
    real = C.read_profile_rows

    def spy(path, rows, **kw):
        read.append(np.asarray(rows).size)
        return real(path, rows, **kw)

    monkeypatch.setattr(P, "read_profile_rows", spy)  # as the heatmap looks it up
    from_file, in_memory = tmp_path / "file.png", tmp_path / "memory.png"
    P.plot_patient_heatmap(
        obs_only, "P1", str(from_file), lesions=[lesion], max_cells=120, n_reference_cells=50, profile=out
    )
    P.plot_patient_heatmap(profiled, "P1", str(in_memory), lesions=[lesion], max_cells=120, n_reference_cells=50)
    _nontrivial_png(from_file)
    np.testing.assert_array_equal(mpimg.imread(from_file), mpimg.imread(in_memory))
    assert sum(read) <= 120 + 10 * 8 + 50  # the shown rows (downsampling keeps >= 10 per group) and the reference block


def test_bad_counts_files(light, cohort_file, cohort, lesion, tmp_path):
    # no layers/counts and a log-normalised X: refused, naming the layers to pass
    logged = tmp_path / "logged.h5ad"
    counts = sp.csr_matrix(cohort.layers["counts"], dtype=np.float32)
    from remnant.io.store import log_normalise

    ad.AnnData(
        X=log_normalise(counts, np.asarray(counts.sum(axis=1)).ravel()),
        obs=cohort.obs,
        var=cohort.var,
        layers={"raw": counts},
    ).write_h5ad(logged)
    with pytest.raises(
        InputError,
        match=r"logged\.h5ad: infer_profile\(layer=\.\.\.\): has no layer 'counts' and X is not raw counts.*\['raw'\]",
    ):
        C.infer_profile(light, "reference", counts=logged)
    with pytest.raises(InputError, match=r"lesion_sums\(layer=\.\.\.\).*X is not raw counts"):
        B.lesion_sums(ad.AnnData(X=ad.read_h5ad(logged).X, obs=cohort.obs, var=cohort.var), [lesion])
    with pytest.raises(InputError, match="cannot open"):
        B.lesion_sums(light, [lesion], layer=None, counts=tmp_path / "missing.h5ad")
    with pytest.raises(InputError, match="read obs and var from the same file"):
        B.estimate_breakpoints(light[:100].copy(), lesion, layer=None, counts=cohort_file)
