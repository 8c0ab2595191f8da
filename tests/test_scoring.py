"""remnant.pp.scoring: scanpy's score_genes / score_genes_cell_cycle re-expressed over a cohort file in blocks."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.pp import scoring

N_CELLS, N_GENES = 700, 500


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Raw counts (CSR float32 in X, as the cohort files) with genes spanning expression levels and
    cells of varied depth; written to h5ad."""
    rng = np.random.default_rng(3)
    gene_mean = np.exp(rng.normal(-1.5, 1.6, N_GENES))
    depth = rng.lognormal(0, 0.5, N_CELLS)
    counts = rng.negative_binomial(2, 2 / (2 + np.outer(depth, gene_mean)))
    counts[:5, :] = 0  # a few empty cells: library 0, expression 0
    X = sp.csr_matrix(counts.astype(np.float32))
    obs = pd.DataFrame({"group": rng.choice(["a", "b"], N_CELLS)}, index=[f"cell{i}" for i in range(N_CELLS)])
    var = pd.DataFrame({"gene_name": [f"G{i}" for i in range(N_GENES)]}, index=[f"g{i}" for i in range(N_GENES)])
    path = tmp_path_factory.mktemp("scoring") / "cohort.h5ad"
    ad.AnnData(X=X, obs=obs, var=var).write_h5ad(path)
    return path, X, obs, var


def _log_normalised(X, library_mask=None, target_sum=1e4):
    """float64 log1p(counts / library * target_sum), the in-memory path of remnant.tl.signatures."""
    counts = X.astype(np.float64)
    lib = np.asarray(
        counts @ (library_mask.astype(np.float64) if library_mask is not None else np.ones(X.shape[1]))
    ).ravel()
    scale = np.divide(target_sum, lib, out=np.zeros_like(lib), where=lib > 0)
    out = (sp.diags(scale) @ counts).tocsr()
    out.data = np.log1p(out.data)
    return out


def _scanpy(X, var_names, genes, **kw):
    import scanpy as sc

    a = ad.AnnData(X=X, var=pd.DataFrame(index=var_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.score_genes(a, gene_list=genes, score_name="s", use_raw=False, **kw)
    return a.obs["s"].to_numpy()


SETS = {
    "low": [f"g{i}" for i in range(0, 500, 37)],
    "high": ["g3", "g10", "g11", "g250", "g499", "g77", "g78"],
    "one": ["g42"],
}


@pytest.mark.parametrize("ctrl_size,n_bins,seed", [(50, 25, 0), (20, 10, 7), (200, 25, 1)])
def test_scores_equal_scanpy_score_genes_on_a_file_read_in_blocks(cohort, ctrl_size, n_bins, seed):
    path, X, obs, var = cohort
    rows = np.arange(N_CELLS) % 4 != 1
    keep = np.arange(N_GENES) % 9 != 0  # e.g. genes outside a lesion: library, pool
    pool = list(var.index[keep])
    sets = {k: [g for g in v if g in set(pool)] for k, v in SETS.items()}
    ours = scoring.score_gene_sets(
        path,
        sets,
        rows=rows,
        library_genes=keep,
        ctrl_size=ctrl_size,
        n_bins=n_bins,
        gene_pool=pool,
        seed=seed,
        chunk_cells=97,
    )
    assert list(ours.index) == list(obs.index[rows]) and list(ours.columns) == list(sets)
    expr = _log_normalised(X[rows], keep)
    for name, genes in sets.items():
        expected = _scanpy(
            expr, var.index, genes, ctrl_size=ctrl_size, n_bins=n_bins, gene_pool=pool, random_state=seed
        )
        np.testing.assert_allclose(ours[name].to_numpy(), expected, rtol=0, atol=1e-12)
    # the controls are scanpy's (bit-identical means): same draw whatever the block size
    again = scoring.score_gene_sets(
        path,
        sets,
        rows=rows,
        library_genes=keep,
        ctrl_size=ctrl_size,
        n_bins=n_bins,
        gene_pool=pool,
        seed=seed,
        chunk_cells=10_000,
    )
    assert again.attrs["controls"] == ours.attrs["controls"]
    np.testing.assert_allclose(again.to_numpy(), ours.to_numpy(), rtol=0, atol=1e-12)


def test_state_marker_scores_as_cluster_cells_computes_them_in_memory(cohort):
    """annotate_states: sc.pp.normalize_total(1e4) + log1p of float32 counts (all genes), default pool,
    ctrl_size 50, n_bins 25. scanpy normalises and sums in float32 there; the scores agree to float32 noise."""
    import scanpy as sc

    path, X, _, var = cohort
    a = ad.AnnData(X=X.copy(), var=pd.DataFrame(index=var.index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test's empty cells
        sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    ours = scoring.score_gene_sets(path, SETS, seed=0, chunk_cells=128)
    for name, genes in SETS.items():
        expected = _scanpy(a.X, var.index, genes, random_state=0)
        np.testing.assert_allclose(ours[name].to_numpy(), expected, rtol=0, atol=2e-6)


def test_cell_cycle_phases_equal_scanpy(cohort):
    import scanpy as sc

    path, X, _, var = cohort
    s_genes, g2m_genes = [f"g{i}" for i in range(1, 400, 23)], [f"g{i}" for i in range(5, 480, 31)] + ["nope"]
    ours = scoring.score_cell_cycle(path, s_genes, g2m_genes, seed=4, chunk_cells=150)
    a = ad.AnnData(X=_log_normalised(X), var=pd.DataFrame(index=var.index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.score_genes_cell_cycle(a, s_genes=s_genes, g2m_genes=g2m_genes, random_state=4, use_raw=False)
    for col in ("S_score", "G2M_score"):
        np.testing.assert_allclose(ours[col].to_numpy(), a.obs[col].to_numpy(float), rtol=0, atol=1e-12)
    assert (ours["phase"].to_numpy() == a.obs["phase"].astype(str).to_numpy()).all()
    assert set(ours["phase"]) == {"G1", "S", "G2M"}


def test_weighted_sets_two_normalisations_and_downsampling_in_one_pass(cohort):
    """A weighted set is the weighted sum of per-gene scanpy scores; two normalisations share the
    passes; thinning block by block equals thinning the whole matrix (scanpy reseeds per cell)."""
    import scanpy as sc

    path, X, _, var = cohort
    keep = np.arange(N_GENES) >= 60
    pool = list(var.index[keep])
    weights = pd.Series([0.5, -1.2, 2.0], index=["g70", "g100", "g300"])
    scores = [
        scoring.Score("w", weights, gene_pool=pool, library="fair", ctrl_size=30, seed=2),
        scoring.Score("plain_fair", SETS["high"][3:], gene_pool=pool, library="fair", seed=2),
        scoring.Score("plain_naive", SETS["high"], library="naive", seed=2),
    ]
    for downsample in (None, 0.3):
        ours = scoring.score_many(
            path,
            scores,
            libraries={"fair": keep, "naive": None},
            downsample_to=downsample,
            downsample_seed=5,
            chunk_cells=61,
        )
        counts = X
        if downsample is not None:
            lib = np.asarray(X.sum(axis=1)).ravel()
            tmp = ad.AnnData(X=X.copy())
            sc.pp.downsample_counts(
                tmp, counts_per_cell=int(np.quantile(lib, downsample)), random_state=5, replace=False
            )
            counts = sp.csr_matrix(tmp.X)
            assert ours.attrs["downsampled_to"] == int(np.quantile(lib, downsample))
        fair, naive = _log_normalised(counts, keep), _log_normalised(counts)
        expected_w = sum(
            w * _scanpy(fair, var.index, [g], ctrl_size=30, gene_pool=pool, random_state=2) for g, w in weights.items()
        )
        np.testing.assert_allclose(ours["w"].to_numpy(), expected_w, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            ours["plain_fair"].to_numpy(),
            _scanpy(fair, var.index, SETS["high"][3:], gene_pool=pool, random_state=2),
            rtol=0,
            atol=1e-12,
        )
        np.testing.assert_allclose(
            ours["plain_naive"].to_numpy(), _scanpy(naive, var.index, SETS["high"], random_state=2), rtol=0, atol=1e-12
        )


def test_in_memory_source_and_stored_values(cohort):
    path, X, obs, var = cohort
    adata = ad.AnnData(X=X.copy(), obs=obs, var=var, layers={"counts": X.toarray()})
    from_file = scoring.score_gene_sets(path, SETS, seed=1)
    from_layer = scoring.score_gene_sets(adata, SETS, seed=1, key="layers/counts", chunk_cells=200)
    np.testing.assert_allclose(from_layer.to_numpy(), from_file.to_numpy(), rtol=0, atol=1e-12)
    normalised = ad.AnnData(X=_log_normalised(X), obs=obs, var=var)
    as_is = scoring.score_gene_sets(normalised, SETS, seed=1, target_sum=None)
    np.testing.assert_allclose(as_is.to_numpy(), from_file.to_numpy(), rtol=0, atol=1e-12)


def test_clear_errors(cohort):
    path, *_ = cohort
    with pytest.raises(InputError, match="not in the control gene pool"):
        scoring.score_gene_sets(path, {"x": ["g1", "g2"]}, gene_pool=["g2", "g3", "g4"])
    with pytest.raises(InputError, match="no gene of score 'x'"):
        scoring.score_gene_sets(path, {"x": ["nope"]})
    with pytest.raises(InputError, match="no cells"):
        scoring.score_gene_sets(path, {"x": ["g1"]}, rows=np.zeros(N_CELLS, bool))
    with pytest.raises(InputError, match="has no 'layers/counts'"):
        scoring.score_gene_sets(path, {"x": ["g1"]}, key="layers/counts")
    with pytest.raises(InputError, match="normalisation 'fair'"):
        scoring.score_many(path, [scoring.Score("x", ["g1"], library="fair")])
