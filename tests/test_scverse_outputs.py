"""The files users open are scverse-shaped (issue 20), and remnant's own functions read them.

A small simulated cohort (droplet and plate samples, healthy donors and two patients) goes through
the library the way the workflow's rules do (per-sample files merged on disk and clustered:
``clustered.h5ad``; lesions called from it: the calls file; ``annotate_with_calls``:
``cohort.h5ad``), without Snakemake. Then ``cohort.h5ad`` is opened with scanpy as a user would.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import simulated as S

from remnant.errors import InputError
from remnant.io import store
from remnant.io.annotation import chromosome_arms
from remnant.pp.cluster import FILE_DEFAULTS, annotate_states, cluster_file, merge_samples, write_clustering
from remnant.tl.lesions import call_lesions, parse_lesions, read_lesion_counts, write_calls

ROWS = [
    ("H1_CD34", "H1", "", "CD34", "healthy", "droplet"),
    ("H2_CD34", "H2", "", "CD34", "healthy", "droplet"),
    ("H3_HSC", "H3", "", "HSC", "healthy", "plate"),
    ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
    ("P2_dx", "P2", "diagnosis", "HSC", "MDS", "plate"),
]
PARAMS = {
    "cells_per_sample": {"droplet": 150, "plate": 96},
    "clone_fraction": {"diagnosis": {"CD34": 0.6, "HSC": 0.6}},
    "clone_sampling": "exact",
    "low_quality": {"fraction": 0.0},
    "doublets": {"rate": 0.0},
}
TARGET_SUM = 1e4  # config/config.yaml cluster.target_sum
CD34 = "ENSG00000174059"


@pytest.fixture(scope="module")
def lesions(cytobands):
    return parse_lesions(None, cytobands, chromosome_arms(cytobands))


@pytest.fixture(scope="module")
def files(tmp_path_factory, lesions):
    """(clustered.h5ad, lesion calls file, cohort.h5ad) as rules cluster_cells, call_lesions and
    annotate_cohort write them."""
    tmp = tmp_path_factory.mktemp("scverse")
    mapped, _ = S.cohort_with_truth(ROWS, params=PARAMS, seed=2)
    paths = []
    for name, sample in mapped.items():
        sample = sample.copy()
        sample.X = sp.csr_matrix(sample.X, dtype=np.float32)
        paths.append(str(tmp / f"{name}.h5ad"))
        sample.write_h5ad(paths[-1])
    clustered = str(tmp / "clustered.h5ad")
    obs = merge_samples(paths, clustered, timepoints=["diagnosis"], populations=["HSC", "CD34"])
    params = replace(
        FILE_DEFAULTS, target_sum=TARGET_SUM, n_top_genes=600, n_pcs=10, integrate_keys=["patient"], seed=0
    )
    result = cluster_file(clustered, obs, params)
    annotate_states(result, S.markers(), target_sum=TARGET_SUM, seed=0, counts=clustered)
    write_clustering(clustered, result)
    # the rule knows a configured reference before it reads: the depth is scaled to it
    reference = (store.read_obs(clustered)["condition"] == "healthy").to_numpy()
    adata, depth = read_lesion_counts(clustered, lesions, reference=reference)
    call_lesions(adata, lesions, reference=reference, layer=None, depth=depth, seed=0)
    adata.obs["cnv_reference"] = reference
    calls = str(tmp / "lesion_calls.h5ad")
    write_calls(adata, calls)
    cohort = str(tmp / "cohort.h5ad")
    store.annotate_with_calls(clustered, calls, cohort, target_sum=TARGET_SUM)
    return clustered, calls, cohort


@pytest.fixture(scope="module")
def opened(files):
    import scanpy as sc

    clustered, calls, cohort = files
    return ad.read_h5ad(clustered), ad.read_h5ad(calls), sc.read_h5ad(cohort)


def test_cohort_plots_cd34_by_symbol_with_log_normalised_expression(opened):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    clustered, _, adata = opened
    adata = adata.copy()  # scanpy's plotting makes string columns categorical in place; the fixture is shared
    ax = sc.pl.umap(adata, color="CD34", show=False)
    shown = np.sort(np.asarray(ax.collections[0].get_array(), dtype=float))
    plt.close("all")
    expected = adata[:, "CD34"].X.toarray().ravel()
    np.testing.assert_allclose(shown, np.sort(expected.astype(float)), rtol=1e-6)
    # what is drawn is log-normalised, not counts: plate cells (~20-30x the droplet counts) are
    # on the droplet cells' scale
    counts = clustered[:, clustered.var_names == CD34].X.toarray().ravel()
    plate = (adata.obs["technology"] == "plate").to_numpy()
    assert counts[plate & (counts > 0)].mean() > 10 * counts[~plate & (counts > 0)].mean()
    assert expected[plate & (expected > 0)].mean() < 3 * expected[~plate & (expected > 0)].mean()


def test_X_is_log_normalised_and_the_counts_are_in_layers(opened):
    import scanpy as sc

    clustered, _, adata = opened
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    totals = np.asarray(np.expm1(adata.X.astype(np.float64)).sum(axis=1)).ravel()
    np.testing.assert_allclose(totals, TARGET_SUM, rtol=1e-4)  # every cell, plate and droplet
    assert (adata.layers["counts"] != clustered.X).nnz == 0 and adata.layers["counts"].dtype == np.float32
    scanpy_way = ad.AnnData(X=clustered.X.copy())
    sc.pp.normalize_total(scanpy_way, target_sum=TARGET_SUM)
    sc.pp.log1p(scanpy_way)
    np.testing.assert_allclose(adata.X.toarray(), scanpy_way.X.toarray(), rtol=1e-6, atol=1e-6)
    library = np.asarray(clustered.X.sum(axis=1, dtype=np.float64)).ravel()
    assert (store.log_normalise(clustered.X, library, TARGET_SUM) != adata.X).nnz == 0  # as cluster_cells normalises
    assert adata.uns["log1p"] == {"base": None}
    # scanpy's own tools run on it as on one of its files
    ranked = adata.copy()
    sc.tl.rank_genes_groups(ranked, "technology", method="t-test", n_genes=5)
    assert ranked.uns["rank_genes_groups"]["names"].shape[0] == 5


def test_var_names_are_unique_symbols_with_the_ensembl_ids_kept(opened):
    clustered, _, adata = opened
    assert adata.var_names.is_unique and "CD34" in adata.var_names
    assert adata.var.loc["CD34", "gene_id"] == CD34
    assert list(adata.var["gene_id"]) == list(clustered.var_names) and adata.var["gene_id"].str.startswith("ENSG").all()
    symbols = clustered.var["gene_name"].astype(str)
    assert symbols.duplicated().any()  # GRCh38 has repeated symbols: made unique as scanpy does
    with warnings.catch_warnings():  # "not unique" / "suffixes": what make_unique is for
        warnings.simplefilter("ignore", UserWarning)
        expected = ad.AnnData(var=pd.DataFrame(index=symbols.to_numpy()))
        expected.var_names_make_unique()
    assert list(adata.var_names) == list(expected.var_names)
    pd.testing.assert_frame_equal(
        adata.var.drop(columns="gene_id").reset_index(drop=True), clustered.var.reset_index(drop=True)
    )


def test_obs_obsm_obsp_uns_are_kept(opened):
    clustered, calls, adata = opened
    pd.testing.assert_frame_equal(adata.obs, calls.obs)
    for key in ("X_pca", "X_pca_harmony", "X_umap"):
        np.testing.assert_array_equal(adata.obsm[key], clustered.obsm[key])
    for key in ("connectivities", "distances"):
        assert (adata.obsp[key] != clustered.obsp[key]).nnz == 0
    np.testing.assert_array_equal(adata.varm["PCs"], clustered.varm["PCs"])
    assert set(clustered.uns) | {"lesions", "log1p"} == set(adata.uns)
    assert set(adata.uns["lesions"]["del5q"]) == set(calls.uns["lesions"]["del5q"])
    assert "layers/counts" in adata.uns["remnant"]["cluster"]["X"]


def test_remnant_functions_read_both_files_with_their_defaults(files, opened, lesions):
    """The counts default (layer="counts") means clustered.h5ad's X and cohort.h5ad's
    layers["counts"]: calls, pseudobulks and signature scores are the same from either file,
    streamed from disk or read whole."""
    from remnant.tl.de import pseudobulk
    from remnant.tl.signatures import score_cohort, score_signatures

    clustered_path, _, cohort_path = files
    clustered, _, adata = opened
    a, depth_a = read_lesion_counts(clustered_path, lesions)
    b, depth_b = read_lesion_counts(cohort_path, lesions)
    assert (a.X != b.X).nnz == 0 and np.array_equal(depth_a, depth_b)

    reference = (adata.obs["condition"] == "healthy").to_numpy()
    whole = {}
    for name, data in (("clustered", clustered.copy()), ("cohort", adata.copy())):
        call_lesions(data, lesions, reference=reference, seed=0)  # default layer, whole matrix
        whole[name] = data.obs["del5q_posterior"].to_numpy()
    np.testing.assert_array_equal(whole["clustered"], whole["cohort"])
    np.testing.assert_allclose(whole["cohort"], adata.obs["del5q_posterior"].to_numpy(), atol=1e-12)

    pbs = [pseudobulk(src, groupby=["sample"], min_cells=1) for src in (clustered_path, cohort_path, clustered, adata)]
    for pb in pbs[1:]:
        np.testing.assert_array_equal(pb.X, pbs[0].X)

    sets = {"STEM": ["CD34", "HLF", "CRHBP", "MECOM", "PROM1", "AVP"], "ERY": ["GATA1", "KLF1", "TFRC", "CA1", "HBB"]}
    scores = [score_cohort(src, sets, exclude=lesions, seed=0)[0] for src in (clustered_path, cohort_path)]
    pd.testing.assert_frame_equal(scores[0], scores[1], check_exact=True)
    for data in (clustered.copy(), adata.copy()):
        score_signatures(data, sets, exclude=lesions, seed=0)
        np.testing.assert_allclose(
            data.obs["sig_STEM"].to_numpy(), scores[0]["sig_STEM"].to_numpy(), rtol=1e-6, atol=1e-9
        )


def test_de_table_names_genes_by_ensembl_id_from_the_symbol_indexed_file(files, opened):
    from remnant.tl.de import paired_de, pseudobulk

    _, _, cohort_path = files
    pb = pseudobulk(cohort_path, groupby=["sample"], min_cells=1)
    pb = pb[[s for s in pb.obs_names if s != "H3_HSC"]].copy()  # four pseudobulks: two pairs
    pb.obs["pair"] = ["A", "B", "A", "B"]
    pb.obs["condition"] = ["x", "x", "y", "y"]
    de = paired_de(pb, condition="condition", level="y", reference="x", pair="pair", min_total_count=500, min_count=50)
    assert len(de) > 50 and de["gene"].str.startswith("ENSG").all()
    var = pb.var.set_index("gene_id")
    assert (de["gene_name"].to_numpy() == var.loc[de["gene"], "gene_name"].astype(str).to_numpy()).all()


def test_log_normalised_X_without_a_counts_layer_is_refused_naming_the_layer(opened, lesions):
    _, _, adata = opened
    bare = ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var, layers={"raw": adata.layers["counts"]})
    with pytest.raises(
        InputError, match=r"call_lesions\(layer=\.\.\.\): has no layer 'counts' and X is not raw counts.*\['raw'\]"
    ):
        call_lesions(bare, lesions, reference=(adata.obs["condition"] == "healthy").to_numpy())
    call_lesions(bare, lesions, reference=(adata.obs["condition"] == "healthy").to_numpy(), layer="raw", seed=0)
    np.testing.assert_allclose(
        bare.obs["del5q_posterior"].to_numpy(), adata.obs["del5q_posterior"].to_numpy(), atol=1e-12
    )
