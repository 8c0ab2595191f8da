"""remnant.store: block-wise reading of a cohort h5ad equals reading it whole."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remnant import store
from remnant.errors import InputError


@pytest.fixture()
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.random(503, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    X.data = rng.integers(1, 20, X.nnz).astype(np.float32)
    obs = pd.DataFrame({"sample": pd.Categorical(rng.choice(["a", "b", "c"], 503)), "x": rng.normal(size=503)},
                       index=[f"c{i}" for i in range(503)])
    var = pd.DataFrame({"gene_name": [f"G{i}" for i in range(40)]}, index=[f"g{i}" for i in range(40)])
    path = tmp_path / "cohort.h5ad"
    ad.AnnData(X=X, obs=obs, var=var, obsm={"X_umap": rng.normal(size=(503, 2))}).write_h5ad(path, compression="gzip")
    return path, X, obs


def test_chunks_cover_the_matrix_with_row_and_column_selection(cohort):
    path, X, _ = cohort
    rows = np.arange(503) % 3 == 1
    cols = np.arange(40) % 4 != 0
    positions, blocks = zip(*store.iter_chunks(path, rows=rows, columns=cols, chunk_cells=50))
    assert np.array_equal(np.concatenate(positions), np.flatnonzero(rows))
    assert (sp.vstack(blocks) != X[rows][:, cols]).nnz == 0


def test_read_columns_sums_and_group_sums(cohort):
    path, X, _ = cohort
    cols = np.arange(40) < 7
    other = np.arange(40) >= 30
    rows = np.arange(503) % 2 == 0
    m, sums = store.read_columns(path, cols, rows=rows, sums={"other": other}, chunk_cells=64)
    assert (m != X[rows][:, cols]).nnz == 0
    assert np.allclose(sums["other"], np.asarray(X[rows][:, other].sum(axis=1)).ravel())
    groups = np.where(np.arange(503) % 5 == 0, -1, np.arange(503) % 3)
    expected = np.vstack([np.asarray(X[groups == g].sum(axis=0)).ravel() for g in range(3)])
    assert np.allclose(store.group_sums(path, groups, 3, chunk_cells=100), expected)
    assert np.allclose(store.gene_means(path, rows=rows, chunk_cells=77), np.asarray(X[rows].mean(axis=0)).ravel())


def test_log_normalise_matches_scanpy(cohort):
    import scanpy as sc

    _, X, _ = cohort
    a = ad.AnnData(X=X.copy())
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    ours = store.log_normalise(X, np.asarray(X.sum(axis=1)).ravel())
    assert np.allclose(ours.toarray(), a.X.toarray(), atol=1e-5)


def test_copy_with_obs_replaces_obs_and_adds_elements_without_touching_the_source(cohort, tmp_path):
    path, X, obs = cohort
    before = path.read_bytes()
    new = obs.assign(call=np.arange(503) % 2 == 0)
    out = tmp_path / "out.h5ad"
    store.copy_with_obs(path, out, obs=new, elements={"uns/lesions": {"del5q": {"n": 3}}})
    back = ad.read_h5ad(out)
    assert path.read_bytes() == before
    assert back.obs["call"].tolist() == new["call"].tolist()
    assert back.uns["lesions"]["del5q"]["n"] == 3
    assert (back.X != X).nnz == 0
    assert store.read_key(out, "uns/lesions/del5q")["n"] == 3
    with pytest.raises(ValueError, match="rows"):
        store.copy_with_obs(path, tmp_path / "bad.h5ad", obs=obs.iloc[:10])
    assert not (tmp_path / "bad.h5ad").exists() and not (tmp_path / ".bad.h5ad.partial").exists()


def test_not_csr_is_a_clear_error(tmp_path):
    path = tmp_path / "dense.h5ad"
    ad.AnnData(X=np.ones((3, 2), dtype=np.float32)).write_h5ad(path)
    with pytest.raises(InputError, match="not CSR"):
        next(store.iter_chunks(path))
    with pytest.raises(InputError, match="cannot open"):
        store.read_obs(tmp_path / "missing.h5ad")


def test_annotate_with_calls_puts_the_calls_into_a_copy_and_refuses_other_cells(cohort, tmp_path):
    from remnant.lesions import write_calls
    from remnant.persistence import read_calls

    path, X, obs = cohort
    called = ad.AnnData(obs=obs.assign(del5q_posterior=np.linspace(0, 1, 503), del5q_call=np.arange(503) % 2 == 0))
    called.uns["lesions"] = {"del5q": {"per_sample": pd.DataFrame({"prior": [0.1, 0.2]}, index=["a", "b"]), "genes": np.array(["g1", "g2"])}}
    calls = tmp_path / "lesion_calls.h5ad"
    write_calls(called, calls)
    assert ad.read_h5ad(calls).shape == (503, 0)  # no matrix
    before = path.read_bytes()
    out = tmp_path / "annotated.h5ad"
    store.annotate_with_calls(path, calls, out)
    assert path.read_bytes() == before  # the cohort file is an input: never modified
    table, info = read_calls(str(out), "del5q")
    pd.testing.assert_frame_equal(table, called.obs)
    pd.testing.assert_frame_equal(info["per_sample"], called.uns["lesions"]["del5q"]["per_sample"])
    assert (ad.read_h5ad(out).X != X).nnz == 0
    # calls made on another version of the cohort (a cell fewer): refused, naming the calls file
    write_calls(called[1:].copy(), calls)
    with pytest.raises(InputError, match=r"lesion_calls\.h5ad.*502 cells are not the 503 cells.*rerun call_lesions"):
        store.annotate_with_calls(path, calls, tmp_path / "other.h5ad")
    assert not (tmp_path / "other.h5ad").exists()


def test_read_obs_of_some_columns_equals_those_of_the_whole_table(cohort):
    path, _, obs = cohort
    some = store.read_obs(path, columns=["x", "sample"])
    pd.testing.assert_frame_equal(some, store.read_obs(path)[["x", "sample"]])
    with pytest.raises(InputError, match=r"cohort\.h5ad.*no column\(s\) \['patient'\].*'sample'"):
        store.read_obs(path, columns=["sample", "patient"])
