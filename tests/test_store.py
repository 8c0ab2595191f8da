"""remnant.io.store: block-wise reading of a cohort h5ad equals reading it whole."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io import store


@pytest.fixture()
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.random(503, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    X.data = rng.integers(1, 20, X.nnz).astype(np.float32)
    obs = pd.DataFrame(
        {"sample": pd.Categorical(rng.choice(["a", "b", "c"], 503)), "x": rng.normal(size=503)},
        index=[f"c{i}" for i in range(503)],
    )
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


def test_group_sums_are_exact_integers_past_float32_precision(tmp_path):
    """Counts stored as float32 are summed in float32 while that is exact (below 2**24), in float64 past it."""
    X = sp.csr_matrix(np.array([[9_000_001.0, 1.0], [9_000_002.0, 3.0], [5.0, 0.0]], dtype=np.float32))
    path = tmp_path / "big.h5ad"
    ad.AnnData(X=X).write_h5ad(path)
    sums = store.group_sums(path, np.array([0, 0, 1]), 2)
    assert sums.dtype == np.float64
    assert sums.tolist() == [[18_000_003.0, 4.0], [5.0, 0.0]]  # float32 arithmetic gives 18,000,004


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
    from remnant.tl.lesions import write_calls
    from remnant.workflow.analysed_cells import read_calls

    path, X, obs = cohort
    called = ad.AnnData(obs=obs.assign(del5q_posterior=np.linspace(0, 1, 503), del5q_call=np.arange(503) % 2 == 0))
    called.uns["lesions"] = {
        "del5q": {"per_sample": pd.DataFrame({"prior": [0.1, 0.2]}, index=["a", "b"]), "genes": np.array(["g1", "g2"])}
    }
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
    back = ad.read_h5ad(out)
    assert (back.layers["counts"] != X).nnz == 0  # the counts, unchanged
    library = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()
    assert (store.log_normalise(X, library) != back.X).nnz == 0  # X log-normalised, as cluster_cells computes it
    # calls made on another version of the cohort (a cell fewer): refused, naming the calls file
    write_calls(called[1:].copy(), calls)
    with pytest.raises(
        InputError, match=r"lesion_calls\.h5ad.*502 cells are not the 503 cells.*call the lesions again"
    ):
        store.annotate_with_calls(path, calls, tmp_path / "other.h5ad")
    assert not (tmp_path / "other.h5ad").exists()


def test_read_obs_of_some_columns_equals_those_of_the_whole_table(cohort):
    path, _, obs = cohort
    some = store.read_obs(path, columns=["x", "sample"])
    pd.testing.assert_frame_equal(some, store.read_obs(path)[["x", "sample"]])
    with pytest.raises(InputError, match=r"cohort\.h5ad.*no column\(s\) \['patient'\].*'sample'"):
        store.read_obs(path, columns=["sample", "patient"])


def test_annotated_cohort_is_written_in_blocks_and_shaped_for_scverse(cohort, tmp_path):
    """annotate_with_calls writes X a few stored values at a time (here 7: every block is one
    cell or a few) with the numbers of the whole matrix; duplicated symbols become unique as
    AnnData.var_names_make_unique makes them; the Ensembl IDs move to var["gene_id"]; cells with
    no counts stay 0."""
    import h5py
    import scanpy as sc

    from remnant.tl.lesions import write_calls

    path, X, obs = cohort
    a = ad.read_h5ad(path)
    a.var["gene_name"] = [
        "CD34",
        "CD34",
        "GATA1",
        "CD34-1",
        *[f"G{i}" for i in range(4, 40)],
    ]  # CD34-1 is a real-looking name
    a.X = X.copy()
    a.X.data[a.X.indptr[7] : a.X.indptr[8]] = 0  # a cell without counts
    a.X.eliminate_zeros()
    a.uns["remnant"] = {"cluster": {"X": "raw counts", "target_sum": 1e4}}
    src = tmp_path / "clustered.h5ad"
    a.write_h5ad(src)
    calls = tmp_path / "calls.h5ad"
    write_calls(ad.AnnData(obs=a.obs.assign(del5q_call=False), uns={"lesions": {"del5q": {"n": 1}}}), calls)
    out = tmp_path / "cohort.h5ad"
    store.annotate_with_calls(src, calls, out, target_sum=100.0, block_values=7)
    back = sc.read_h5ad(out)
    expected = ad.AnnData(var=pd.DataFrame(index=a.var["gene_name"].astype(str).to_numpy()))
    expected.var_names_make_unique()
    assert list(back.var_names) == list(expected.var_names) and back.var_names.is_unique
    assert list(back.var_names[:4]) == ["CD34", "CD34-2", "GATA1", "CD34-1"]
    assert list(back.var["gene_id"]) == list(a.var_names) and list(back.var.columns) == ["gene_id", "gene_name"]
    assert (back.layers["counts"] != a.X).nnz == 0
    scanpy_way = a.copy()
    sc.pp.normalize_total(scanpy_way, target_sum=100.0)
    sc.pp.log1p(scanpy_way)
    np.testing.assert_allclose(back.X.toarray(), scanpy_way.X.toarray(), rtol=1e-6, atol=1e-6)
    library = np.asarray(a.X.sum(axis=1, dtype=np.float64)).ravel()
    assert (store.log_normalise(a.X, library, target_sum=100.0) != back.X).nnz == 0
    sums = np.asarray(np.expm1(back.X.astype(np.float64)).sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[library > 0], 100.0, rtol=1e-5)
    assert sums[7] == 0
    assert back.uns["log1p"] == {"base": None} and back.uns["lesions"]["del5q"]["n"] == 1
    assert "layers/counts" in back.uns["remnant"]["cluster"]["X"]
    np.testing.assert_array_equal(back.obsm["X_umap"], a.obsm["X_umap"])
    with h5py.File(out) as f:  # X and the counts share their index arrays (stored once)
        assert f["X/indices"] == f["layers/counts/indices"] and f["X/indptr"] == f["layers/counts/indptr"]
    assert store.counts_key(out) == "layers/counts" and store.counts_key(src) == "X"
    assert not list(tmp_path.glob(".*partial"))


def test_annotated_cohort_gets_one_index_type_from_mixed_counts(cohort, tmp_path):
    """anndata's on-disk concatenation stores int32 indices with an int64 indptr above 2^31
    values; the copy gets one type (scipy/sklearn's compiled sparse code takes one)."""
    import h5py

    from remnant.tl.lesions import write_calls

    path, X, obs = cohort
    src = tmp_path / "mixed.h5ad"
    ad.read_h5ad(path).write_h5ad(src)
    with h5py.File(src, "r+") as f:
        indptr = f["X/indptr"][:]
        del f["X/indptr"]
        f["X"].create_dataset("indptr", data=indptr.astype(np.int64))
        assert f["X/indices"].dtype == np.int32
    calls = tmp_path / "calls.h5ad"
    write_calls(ad.AnnData(obs=obs, uns={"lesions": {"del5q": {"n": 1}}}), calls)
    out = tmp_path / "cohort.h5ad"
    store.annotate_with_calls(src, calls, out, block_values=100)
    back = ad.read_h5ad(out)
    for m in (back.X, back.layers["counts"]):
        assert m.indices.dtype == m.indptr.dtype == np.int64
    assert (back.layers["counts"] != X).nnz == 0


def test_counts_key_finds_the_raw_counts_or_says_which_layer_to_pass(cohort, tmp_path):
    path, X, obs = cohort
    assert store.counts_key(path) == "X"  # clustered.h5ad: counts in X
    assert store.counts_key(path, None) == "X"
    a = ad.read_h5ad(path)
    assert store.counts_key(a) == "X"
    a.layers["counts"] = a.X.copy()
    a.X = store.log_normalise(a.X, np.asarray(a.X.sum(axis=1)).ravel())
    assert store.counts_key(a) == "layers/counts"
    logged = tmp_path / "logged.h5ad"
    ad.AnnData(X=a.X, obs=a.obs, var=a.var, layers={"raw": a.layers["counts"]}).write_h5ad(logged)
    with pytest.raises(
        InputError, match=r"logged\.h5ad.*no layer 'counts' and X is not raw counts.*pass layer=.*\['raw'\]"
    ):
        store.counts_key(logged)
    assert store.counts_key(logged, "raw") == "layers/raw"
    with pytest.raises(InputError, match=r"no layer 'spliced' \(layers: \['raw'\]\)"):
        store.counts_key(logged, "spliced")  # a layer named other than "counts" is taken as asked
    with pytest.raises(InputError, match="no layer 'spliced'"):
        store.counts_key(path, "spliced")  # even when X holds counts
    del a.layers["counts"]
    with pytest.raises(
        InputError, match=r"f\(layer=\.\.\.\): has no layer 'counts' and X is not raw counts.*layers: none"
    ):
        store.counts_key(a, where="f")
    a.X = -X  # negative integers are not counts either
    with pytest.raises(InputError, match="not raw counts"):
        store.counts_key(a)
    assert store.counts_key(ad.AnnData(X=np.array([[0, 3], [1, 0]], dtype=np.int64))) == "X"  # dense integers


def test_cell_table_is_written_byte_for_byte_as_pandas_writes_it(tmp_path):
    # every dtype a per-cell table holds, with the floats pandas special-cases (NaN, +-inf, -0.0, float32
    # rounding, nullable floats with NA)
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame(
        {
            "sample": pd.Categorical(rng.choice(["P1_dx", "P1_rem"], n)),
            "posterior": rng.random(n),
            "llr": rng.normal(0, 30, n),
            "call": rng.random(n) > 0.5,
            "n_genes": rng.integers(0, 900, n),
            "f32": rng.random(n).astype(np.float32),
            "large": rng.normal(0, 1e9, n),
            "note": rng.choice(["x", None], n),
            "nullable": pd.array(rng.random(n), dtype="Float64"),
        },
        index=pd.Index([f"AAAC-{i}" for i in range(n)]),
    )
    frame.iloc[:5, 1] = np.nan
    frame.iloc[5:8, 2] = np.inf
    frame.iloc[8:10, 2] = -np.inf
    frame.iloc[10:12, 2] = -0.0
    frame.iloc[:3, 8] = pd.NA
    (tmp_path / "pandas").mkdir()
    (tmp_path / "ours").mkdir()
    # the same file name in both: gzip's header holds it
    frame.to_csv(
        tmp_path / "pandas/cells.tsv.gz",
        sep="\t",
        index_label="cell",
        float_format="%.6g",
        compression=store.TABLE_GZIP,
    )
    store.write_cell_table(frame, tmp_path / "ours/cells.tsv.gz")
    assert (tmp_path / "ours/cells.tsv.gz").read_bytes() == (tmp_path / "pandas/cells.tsv.gz").read_bytes()
    assert frame["posterior"].isna().sum() == 5  # the caller's frame is left as it was
