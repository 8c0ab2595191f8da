"""Clustering and state annotation on simulated cohorts, including one above 8,192 cells
(the size from which scanpy's default approximate kNN broke with pynndescent 0.7)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from remnant.cluster import annotate_states, cluster_cohort, read_markers
from remnant.errors import InputError
from simulated import ROOT, cohort


def clean(adata, truth):
    truth = truth.set_index(["sample", "barcode"]).loc[list(zip(adata.obs["sample"], adata.obs["barcode"]))]
    keep = ~(truth["low_quality"].to_numpy() | truth["doublet"].to_numpy())
    return adata[keep].copy(), truth[keep]


@pytest.fixture(scope="module")
def large_cohort():
    rows = [(f"P{p}_{pop}", f"P{p}", "diagnosis", pop, "MDS", "droplet") for p in (1, 2, 3) for pop in ("HSC", "PROG", "CD34")]
    mapped, truth = cohort(rows, params={"cells_per_sample": {"droplet": 1100, "plate": 96}}, seed=11)
    adata = ad.concat(list(mapped.values()), join="outer", merge="first", fill_value=0)
    return clean(adata, truth.reset_index(drop=True))


def test_clusters_and_states_above_8192_cells(large_cohort):
    adata, truth = large_cohort
    assert adata.n_obs > 8192
    cluster_cohort(adata, n_top_genes=1500, n_pcs=20, integrate_keys=["patient"], seed=0)
    annotate_states(adata, read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
                    states=["HSC", "LMPP", "GMP", "MEP", "CLP", "MK", "ERY_EARLY"])
    ari = adjusted_rand_score(truth["state"], adata.obs["hspc_state"])
    accuracy = float((truth["state"].to_numpy() == adata.obs["hspc_state"].astype(str).to_numpy()).mean())
    print(f"\n{adata.n_obs} cells: HSPC state ARI {ari:.3f}, accuracy {accuracy:.3f}, {adata.obs['leiden'].nunique()} clusters")
    assert ari >= 0.8 and accuracy >= 0.9
    assert sp.issparse(adata.X) and sp.issparse(adata.layers["counts"])
    assert adata.obsm["X_pca_harmony"].shape == (adata.n_obs, 20)
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2)
    assert adata.uns["remnant"]["cluster"]["integrate_keys"] == ["patient"]


def test_clustering_is_deterministic():
    rows = [("A", "P1", "diagnosis", "PROG", "MDS", "droplet"), ("B", "P2", "diagnosis", "HSC", "MDS", "droplet")]
    mapped, _ = cohort(rows, params={"cells_per_sample": {"droplet": 200, "plate": 96}}, seed=5)
    base = ad.concat(list(mapped.values()), join="outer", merge="first", fill_value=0)
    runs = []
    for _ in range(2):
        adata = base.copy()
        cluster_cohort(adata, n_top_genes=800, n_pcs=10, integrate_keys=["patient"], seed=3)
        runs.append(adata)
    assert (runs[0].obs["leiden"] == runs[1].obs["leiden"]).all()
    np.testing.assert_array_equal(runs[0].obsm["X_umap"], runs[1].obsm["X_umap"])


def test_marker_table_errors(tmp_path):
    bad = tmp_path / "markers.tsv"
    bad.write_text("state\tgenes\nHSC\tCD34\n")
    with pytest.raises(InputError, match="population<TAB>markers"):
        read_markers(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_markers(tmp_path / "none.tsv")
