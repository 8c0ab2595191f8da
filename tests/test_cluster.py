"""Clustering and state annotation on simulated cohorts, including one above 8,192 cells
(the size from which scanpy's default approximate kNN broke with pynndescent 0.7)."""

from __future__ import annotations

from dataclasses import replace

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from simulated import ROOT, WITHOUT_CONFOUNDERS, cohort
from sklearn.metrics import adjusted_rand_score

from remnant.errors import InputError
from remnant.pp.cluster import (
    FILE_DEFAULTS,
    ClusterParams,
    annotate_states,
    cluster_cohort,
    cluster_file,
    merge_samples,
    read_markers,
    write_clustering,
)


def clean(adata, truth):
    truth = truth.set_index(["sample", "barcode"]).loc[list(zip(adata.obs["sample"], adata.obs["barcode"]))]
    keep = ~(truth["low_quality"].to_numpy() | truth["doublet"].to_numpy())
    return adata[keep].copy(), truth[keep]


@pytest.fixture(scope="module")
def large_cohort():
    rows = [
        (f"P{p}_{pop}", f"P{p}", "diagnosis", pop, "MDS", "droplet")
        for p in (1, 2, 3)
        for pop in ("HSC", "PROG", "CD34")
    ]
    # without the simulator's confounders: this cohort is here for the kNN above 8,192 cells. With
    # them (issue 17; the defaults, seed 11) the annotation falls to ARI 0.671 / accuracy 0.785
    # (floors 0.8 / 0.9): the other-type cells (state OTHER, 5% of patient cells) are annotated CLP
    # (370) or MK (74); without them 0.806 / 0.892 (haemoglobin-dominated cells and the samples'
    # immediate-early genes); the disease programme alone 0.952 / 0.973; none 0.964 / 0.981.
    params = {"cells_per_sample": {"droplet": 1100, "plate": 96}, **WITHOUT_CONFOUNDERS}
    mapped, truth = cohort(rows, params=params, seed=11)
    adata = ad.concat(list(mapped.values()), join="outer", merge="first", fill_value=0)
    return clean(adata, truth.reset_index(drop=True))


def test_clusters_and_states_above_8192_cells(large_cohort):
    adata, truth = large_cohort
    assert adata.n_obs > 8192
    cluster_cohort(adata, ClusterParams(n_top_genes=1500, n_pcs=20, integrate_keys=["patient"], seed=0))
    annotate_states(
        adata,
        read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
        states=["HSC", "LMPP", "GMP", "MEP", "CLP", "MK", "ERY_EARLY"],
    )
    ari = adjusted_rand_score(truth["state"], adata.obs["hspc_state"])
    accuracy = float((truth["state"].to_numpy() == adata.obs["hspc_state"].astype(str).to_numpy()).mean())
    print(
        f"\n{adata.n_obs} cells: HSPC state ARI {ari:.3f}, accuracy {accuracy:.3f}, {adata.obs['leiden'].nunique()} clusters"
    )
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
        cluster_cohort(adata, ClusterParams(n_top_genes=800, n_pcs=10, integrate_keys=["patient"], seed=3))
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


def test_cluster_file_equals_the_in_memory_clustering(tmp_path):
    """The cohort-file path (samples merged on disk, read in blocks: issue 8) gives the in-memory
    result: the same highly variable genes, PCA, Leiden clusters and states; and the file keeps
    the raw counts in X."""
    rows = [
        ("A", "P1", "diagnosis", "PROG", "MDS", "droplet"),
        ("B", "P2", "diagnosis", "HSC", "MDS", "droplet"),
        ("C", "P2", "remission", "PROG", "MDS", "droplet"),
    ]
    mapped, _ = cohort(rows, params={"cells_per_sample": {"droplet": 300, "plate": 96}}, seed=8)
    paths = []
    for name, sample in mapped.items():
        sample = sample.copy()
        sample.X = sp.csr_matrix(sample.X, dtype=np.float32)
        paths.append(tmp_path / f"{name}.h5ad")
        sample.write_h5ad(paths[-1])
    markers = read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv")
    options = dict(n_top_genes=600, n_pcs=10, integrate_keys=["patient"], seed=3)

    memory = ad.concat([ad.read_h5ad(p) for p in paths], join="outer", merge="first", fill_value=0)
    raw = memory.X.copy()
    cluster_cohort(memory, ClusterParams(**options))
    annotate_states(memory, markers, seed=3)

    out = str(tmp_path / "clustered.h5ad")
    obs = merge_samples(
        [str(p) for p in paths], out, timepoints=["diagnosis", "remission"], populations=["HSC", "PROG"]
    )
    result = cluster_file(out, obs, replace(FILE_DEFAULTS, **options), chunk_cells=128)
    annotate_states(result, markers, seed=3, counts=out)
    write_clustering(out, result)
    back = ad.read_h5ad(out)

    assert (raw != back.X).nnz == 0 and back.X.dtype == np.float32 and not back.layers
    assert (back.var["highly_variable"].to_numpy() == memory.var["highly_variable"].to_numpy()).all()
    np.testing.assert_allclose(np.abs(back.obsm["X_pca"]), np.abs(memory.obsm["X_pca"]), atol=1e-3)
    assert adjusted_rand_score(back.obs["leiden"], memory.obs["leiden"]) > 0.99
    np.testing.assert_allclose(back.obs["score_HSC"], memory.obs["score_HSC"], atol=1e-5)
    assert (back.obs["hspc_state"].astype(str).to_numpy() == memory.obs["hspc_state"].astype(str).to_numpy()).all()
    assert {"X_pca", "X_pca_harmony", "X_umap"} <= set(back.obsm) and "connectivities" in back.obsp
    assert back.uns["remnant"]["cluster"]["X"] == "raw counts"


def test_one_sample_cohort_merges_and_clusters(tmp_path):
    """A one-sample cohort (issue 19): anndata copies a single file instead of concatenating, and
    called a Path method on the str name (AttributeError in rule cluster_cells). The merged file
    holds the sample's counts and clusters with one patient and one batch."""
    mapped, _ = cohort(
        [("A", "P1", "diagnosis", "HSC", "MDS", "droplet")],
        params={"cells_per_sample": {"droplet": 200, "plate": 96}},
        seed=4,
    )
    sample = mapped["A"].copy()
    sample.X = sp.csr_matrix(sample.X, dtype=np.float32)
    sample.write_h5ad(tmp_path / "A.h5ad")
    out = str(tmp_path / "clustered.h5ad")
    obs = merge_samples([str(tmp_path / "A.h5ad")], out, timepoints=["diagnosis"], populations=["HSC"])
    assert list(obs.index) == list(sample.obs_names) and list(obs["timepoint"].cat.categories) == ["diagnosis"]
    result = cluster_file(
        out, obs, replace(FILE_DEFAULTS, n_top_genes=300, n_pcs=5, integrate_keys=["patient", "technology"], seed=0)
    )
    write_clustering(out, result)
    back = ad.read_h5ad(out)
    assert (
        (back.X != sample.X).nnz == 0
        and back.obs["leiden"].notna().all()
        and back.obsm["X_umap"].shape == (sample.n_obs, 2)
    )


def test_umap_starts_from_the_embedding_when_the_graph_has_many_components(monkeypatch, caplog):
    """UMAP's spectral layout compares every pair of kNN-graph components densely (62 GB for the
    91,335 components of a 1M cohort tiled from 100k cells); above MAX_SPECTRAL_COMPONENTS the
    layout starts from the embedding's first two components instead."""
    import pandas as pd

    import remnant.pp.cluster as cluster

    rng = np.random.default_rng(0)
    X = sp.random(600, 80, density=0.2, format="csr", random_state=0, dtype=np.float32)
    X.data = np.log1p(rng.integers(1, 20, X.nnz)).astype(np.float32)
    obs = pd.DataFrame({"patient": pd.Categorical(rng.choice(["a", "b"], 600))}, index=[str(i) for i in range(600)])
    monkeypatch.setattr(cluster, "MAX_SPECTRAL_COMPONENTS", 0)
    out = cluster.embed(ad.AnnData(X=X, obs=obs), n_pcs=5, integrate_keys=[], umap_init="spectral", seed=0)
    assert np.isfinite(out.obsm["X_umap"]).all() and out.obsm["X_umap"].shape == (600, 2)
    assert "instead of a spectral layout" in caplog.text
    assert out.uns["remnant_embedding"]["umap_init"] == "X_pca[:, :2]"


def test_umap_init_pca_or_spectral_both_separate_the_cell_groups():
    """The default start is the embedding's first two components (linear in cells; the spectral
    start's cost grows with cells squared); either start separates three distinct cell groups,
    the layouts differ, the start used is recorded, and an unknown start is refused."""
    import pandas as pd
    from sklearn.metrics import silhouette_score

    import remnant.pp.cluster as cluster

    rng = np.random.default_rng(1)
    n, genes = 300, 60
    group = np.repeat([0, 1, 2], n // 3)
    rates = np.full((3, genes), 0.5)
    for g in range(3):
        rates[g, g * 20 : (g + 1) * 20] = 6.0  # each group expresses its own 20 genes
    X = sp.csr_matrix(np.log1p(rng.poisson(rates[group])).astype(np.float32))
    obs = pd.DataFrame({"group": pd.Categorical(group)}, index=[str(i) for i in range(n)])
    layouts = {}
    for init in ("pca", "spectral"):
        out = cluster.embed(ad.AnnData(X=X.copy(), obs=obs.copy()), n_pcs=5, integrate_keys=[], umap_init=init, seed=0)
        assert out.uns["remnant_embedding"]["umap_init"] == {"pca": "X_pca[:, :2]", "spectral": "spectral"}[init]
        assert silhouette_score(out.obsm["X_umap"], group) > 0.5
        layouts[init] = out.obsm["X_umap"]
    assert not np.allclose(layouts["pca"], layouts["spectral"])
    with pytest.raises(ValueError, match="umap_init must be one of"):
        cluster.embed(ad.AnnData(X=X.copy(), obs=obs.copy()), n_pcs=5, integrate_keys=[], umap_init="random")


def test_samples_with_different_genes_merge_in_any_order(tmp_path):
    """Issue 19: the first sample lacking genes that later samples hold (a plate table exported
    without its all-zero genes) crashed cluster_cells with a TypeError writing var's gene_name, or
    (a categorical column) left those genes' annotation NaN: anndata's merge='first'. Merged in either order, a gene a sample lacks is 0 in its
    cells, every gene keeps its annotation, and the cluster_cells steps run on the result."""
    from simulated import genes, markers

    rows = [("A", "P1", "diagnosis", "HSC", "MDS", "plate"), ("B", "P2", "diagnosis", "PROG", "MDS", "droplet")]
    mapped, _ = cohort(rows, params={"cells_per_sample": {"droplet": 150, "plate": 96}}, seed=6)
    paths = {}
    for name, sample in mapped.items():
        sample = sample.copy()
        sample.X = sp.csr_matrix(sample.X, dtype=np.float32)
        if name == "A":  # exported without its all-zero genes
            sample = sample[:, np.asarray(sample.X.sum(axis=0)).ravel() > 0].copy()
        paths[name] = tmp_path / f"{name}.h5ad"
        sample.write_h5ad(paths[name])
    a, b = ad.read_h5ad(paths["A"]), ad.read_h5ad(paths["B"])
    assert len(set(b.var_names) - set(a.var_names)) > 1000
    expected = ad.concat([a, b], join="outer", fill_value=0)
    for order in (["A", "B"], ["B", "A"]):
        out = str(tmp_path / f"{''.join(order)}.h5ad")
        obs = merge_samples([str(paths[n]) for n in order], out, timepoints=["diagnosis"], populations=["HSC", "PROG"])
        back = ad.read_h5ad(out)
        assert set(back.var_names) == set(a.var_names) | set(b.var_names) and back.var_names.is_unique
        assert (back.X != expected[back.obs_names, back.var_names].X).nnz == 0
        annotation = genes().loc[back.var_names]
        for column in ("gene_name", "chromosome", "start", "end", "band"):
            known = annotation[column].astype(object).where(annotation[column].notna(), "")  # as map_genes writes it
            assert (back.var[column].astype(str).to_numpy() == known.astype(str).to_numpy()).all(), column
    result = cluster_file(
        out, obs, replace(FILE_DEFAULTS, n_top_genes=300, n_pcs=5, integrate_keys=["patient"], seed=0)
    )
    annotate_states(result, markers(), seed=0, counts=out)
    write_clustering(out, result)
    back = ad.read_h5ad(out)
    assert (
        back.obs["leiden"].notna().all()
        and back.obs["hspc_state"].notna().all()
        and back.var["gene_name"].notna().all()
    )


def test_n_pcs_above_what_pca_gives_is_a_warning_in_the_warnings_table(tmp_path):
    """cluster.n_pcs above one fewer than the highly variable genes (or cells) is capped with a
    WARNING saying the value, the cap and why (it was an INFO line), so that it reaches
    results/warnings.tsv."""
    import pandas as pd

    import remnant.pp.cluster as cluster
    from remnant.workflow.runlog import collect_warnings, logged

    rng = np.random.default_rng(2)
    X = sp.random(120, 40, density=0.3, format="csr", random_state=2, dtype=np.float32)
    X.data = np.log1p(rng.integers(1, 20, X.nnz)).astype(np.float32)
    obs = pd.DataFrame({"patient": pd.Categorical(["a"] * 120)}, index=[str(i) for i in range(120)])
    log_path = tmp_path / "logs/cluster_cells/cluster_cells.log"
    with logged(log_path, "cluster_cells"):
        out = cluster.embed(ad.AnnData(X=X, obs=obs), n_pcs=5000, integrate_keys=[], seed=0, key_prefix="cluster.")
    assert out.obsm["X_pca"].shape == (120, 39)
    table = collect_warnings([("cluster_cells", log_path)])
    assert table["logger"].tolist() == ["remnant.pp.cluster"], table
    message = table["message"].iloc[0]
    for part in (
        "cluster.n_pcs: 5000",
        "at most 39",
        "40 highly variable genes",
        "using 39",
        "cluster.n_pcs to 39 or less",
    ):
        assert part in message, message


def test_state_errors_name_the_parameter_and_in_the_workflow_the_config_key():
    """annotate_states names its own parameter (states, markers); rule cluster_cells names the config key."""
    import pandas as pd

    from remnant.workflow.cluster_cells import STATES_KEYS, config_keys

    adata = ad.AnnData(
        X=sp.csr_matrix((3, 2), dtype=np.float32),
        obs=pd.DataFrame({"leiden": ["0", "0", "1"]}, index=["a", "b", "c"]),
        var=pd.DataFrame({"gene_name": ["CD34", "GATA2"]}, index=["g1", "g2"]),
    )
    markers = {"HSC": ["CD34", "GATA2"], "ERY": ["GATA1", "KLF1"]}
    with pytest.raises(InputError, match=r"^states: state 'LMP' is not in the marker table"):
        annotate_states(adata, markers, states=["LMP"])
    with (
        pytest.raises(InputError, match=r"^states\.use: state 'LMP' is not in the marker table"),
        config_keys(STATES_KEYS),
    ):
        annotate_states(adata, markers, states=["LMP"])
    with (
        pytest.raises(InputError, match=r"^states\.markers: no HSPC state has enough marker genes"),
        config_keys(STATES_KEYS),
    ):
        annotate_states(adata, markers, states=["ERY"])
