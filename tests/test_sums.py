"""remnant._sums: one-pass sums of a sparse matrix into bins equal the indicator products they replace."""

import numpy as np
import pytest
import scipy.sparse as sp

from remnant._sums import bins_of, group_column_sums, row_bin_sums


def _matrix(dtype, integer: bool, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    X = sp.random(300, 80, density=0.3, format="csr", random_state=seed, dtype=np.float64)
    X.data = rng.integers(1, 50, X.nnz).astype(float) if integer else rng.gamma(0.5, 3.0, X.nnz)
    return X.astype(dtype)


@pytest.mark.parametrize("dtype,integer", [(np.float32, True), (np.float64, False), (np.int64, True)])
def test_row_bins_equal_the_product_with_the_indicator(dtype, integer):
    X = _matrix(dtype, integer)
    rng = np.random.default_rng(1)
    col_bin = rng.integers(-1, 7, X.shape[1])  # -1: a column in no bin
    keep = col_bin >= 0
    indicator = sp.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), col_bin[keep])), shape=(X.shape[1], 7))
    expected = (X.astype(np.float64) @ indicator).toarray()
    got = row_bin_sums(X, col_bin, 7)
    assert got.dtype == np.float64 and got.shape == (300, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    if integer:
        assert np.array_equal(got, expected)  # counts: exact, whatever the order of the additions
    assert np.array_equal(bins_of(indicator)[0], col_bin) and bins_of(indicator)[1] == 7


@pytest.mark.parametrize("columns", [None, "mask", "positions"])
def test_group_sums_leave_out_rows_and_pick_columns_in_order(columns):
    X = _matrix(np.float32, True, seed=2)
    rng = np.random.default_rng(3)
    groups = rng.integers(-1, 4, X.shape[0])  # -1: a row left out
    cols = {"mask": rng.random(X.shape[1]) < 0.5, "positions": rng.permutation(X.shape[1])[:25], None: None}[columns]
    dense = X.toarray().astype(np.float64)
    picked = dense if cols is None else dense[:, np.flatnonzero(cols) if cols.dtype == bool else cols]
    expected = np.stack([picked[groups == g].sum(0) for g in range(5)])  # group 4 has no rows: zeros
    got = group_column_sums(X, groups, 5, cols)
    assert np.array_equal(got, expected)
    # added to a running total, as over blocks of a file
    total = np.ones_like(expected)
    assert group_column_sums(X, groups, 5, cols, out=total) is total
    assert np.array_equal(total, expected + 1)


def test_a_dense_matrix_and_an_empty_one():
    X = _matrix(np.float64, True, seed=4)
    assert np.array_equal(row_bin_sums(X.toarray(), np.zeros(80, np.int64), 1)[:, 0], np.asarray(X.sum(1)).ravel())
    empty = sp.csr_matrix((0, 80), dtype=np.float32)
    assert row_bin_sums(empty, np.zeros(80, np.int64), 3).shape == (0, 3)
    assert np.array_equal(group_column_sums(empty, np.zeros(0, np.int64), 2), np.zeros((2, 80)))


def test_misuse_is_refused():
    X = _matrix(np.float32, True)
    with pytest.raises(ValueError, match="distinct"):
        group_column_sums(X, np.zeros(300, np.int64), 1, np.array([3, 3]))
    with pytest.raises(ValueError, match="distinct"):
        group_column_sums(X, np.zeros(300, np.int64), 1, np.array([80]))
    # the compiled loops do not check indices: out-of-range bins and groups are refused before them
    with pytest.raises(ValueError, match="col_bin"):
        row_bin_sums(X, np.zeros(79, np.int64), 2)
    with pytest.raises(ValueError, match="col_bin"):
        row_bin_sums(X, np.full(80, 2), 2)
    with pytest.raises(ValueError, match="row_group"):
        group_column_sums(X, np.full(300, 1), 1)
    with pytest.raises(ValueError, match="row_group"):
        group_column_sums(X, np.zeros(299, np.int64), 1)
    with pytest.raises(ValueError, match="float64"):
        group_column_sums(X, np.zeros(300, np.int64), 1, out=np.zeros((1, 80), np.float32))
    with pytest.raises(ValueError, match="one 1 per row"):
        bins_of(sp.csr_matrix(np.ones((4, 2))))


def test_no_writable_cache_still_imports_and_sums():
    """Where numba finds no place to cache compiled code it refuses cache=True at import; the loops are then
    compiled per process (a fresh interpreter whose only cache locator, for code inside zip files, finds none)."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, scipy.sparse as sp\n"
        "from remnant._sums import row_bin_sums\n"
        "X = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 4.0]]))\n"
        "print(row_bin_sums(X, np.array([0, 1, 1]), 2).tolist())\n"
    )
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "ZipCacheLocator"}
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[[1.0, 2.0], [0.0, 7.0]]"
