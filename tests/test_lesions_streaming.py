"""Lesion calling from a cohort file without holding it (issue 8): the lesions' genes and each
cell's depth read in one pass of blocks give the same calls as the whole matrix in memory.

The cohort files are written as remnant's cluster_cells writes them (raw counts in ``X``, CSR
float32, gzip) and, for the older layout, with the counts in ``layers["counts"]``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import simulated as S
from test_lesions import MIXED_PARAMS, MIXED_ROWS
from test_reference import PARAMS as PATIENT_PARAMS
from test_reference import ROWS as PATIENT_ROWS

from remnant.errors import InputError
from remnant.io import store
from remnant.io.annotation import chromosome_arms
from remnant.tl.depth import DepthGenes
from remnant.tl.lesions import (
    call_lesions,
    depth_on,
    lesion_counts,
    lesion_genes,
    obs_depth_groups,
    parse_lesions,
    read_lesion_counts,
    scale_read_depth,
)
from remnant.tl.reference import find_reference
from remnant.workflow.analysed_cells import read_calls

LESION_COLUMNS = [f"del5q_{k}" for k in ("posterior", "llr", "call", "n_genes")]


@pytest.fixture(scope="module")
def lesions(cytobands):
    return parse_lesions(None, cytobands, chromosome_arms(cytobands))


def as_cohort_file(adata: ad.AnnData, path, *, layer: bool = False) -> ad.AnnData:
    """``adata``'s counts as a cohort file: raw counts in X (CSR float32), or in layers["counts"]
    with a log-normalised X when ``layer``; returns the in-memory AnnData with counts in X."""
    counts = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    full = ad.AnnData(X=counts, obs=adata.obs.copy(), var=adata.var.copy())
    if layer:
        on_disk = ad.AnnData(
            X=store.log_normalise(counts, np.asarray(counts.sum(1)).ravel()),
            obs=full.obs,
            var=full.var,
            layers={"counts": counts},
        )
    else:
        on_disk = full
    on_disk.write_h5ad(path, compression="gzip")
    return full


def in_memory_depth(full: ad.AnnData, lesions, reference=None, depth_genes=None) -> np.ndarray:
    """Each cell's depth computed from the whole matrix (group totals in memory, the in-memory twin
    of the streaming read), each sample's scaled to the reference where it is known."""
    groups = obs_depth_groups(full.obs, "sample", "hspc_state", reference, "test")
    return lesion_counts(full.X, full.var, lesions, None, "test", groups=groups, depth_genes=depth_genes)[2]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Droplet and plate samples of healthy donors and a patient; the file and the whole AnnData."""
    path = tmp_path_factory.mktemp("streaming") / "clustered.h5ad"
    full = as_cohort_file(S.called_cohort(MIXED_ROWS, params=MIXED_PARAMS, seed=5), path)
    return path, full


def assert_same_calls(a: ad.AnnData, b: ad.AnnData, name: str = "del5q") -> None:
    for col in LESION_COLUMNS:
        np.testing.assert_array_equal(a.obs[col].to_numpy(), b.obs[col].to_numpy(), err_msg=col)
        assert a.obs[col].dtype == b.obs[col].dtype, col
    ia, ib = a.uns["lesions"][name], b.uns["lesions"][name]
    for key in ("per_sample", "batches", "intervals"):
        pd.testing.assert_frame_equal(ia[key], ib[key], check_exact=True)
    np.testing.assert_array_equal(ia["genes"], ib["genes"])
    assert ia["reference_fpr"] == ib["reference_fpr"]
    # the same settings but where the depth came from (counted in memory, or given by the stream)
    assert {k: v for k, v in ia["params"].items() if k != "depth"} == {
        k: v for k, v in ib["params"].items() if k != "depth"
    }


def test_lesion_columns_and_depth_give_the_in_memory_calls(mixed, lesions):
    path, full = mixed
    healthy = (full.obs["condition"] == "healthy").to_numpy()
    in_memory = full.copy()
    call_lesions(in_memory, lesions, reference=healthy, batch_key="technology", layer=None)

    small, depth = read_lesion_counts(path, lesions, chunk_cells=97, reference=healthy)  # blocks split samples
    inside, outside = lesion_genes(full.var, lesions)
    assert small.n_vars == inside["del5q"].sum() < full.n_vars / 10  # only the lesion's genes held
    assert list(small.var_names) == list(full.var_names[inside["del5q"]])
    assert small.X.dtype == np.float32 and (full.X[:, inside["del5q"]] != small.X).nnz == 0
    np.testing.assert_array_equal(depth, in_memory_depth(full, lesions, healthy))
    assert (depth < depth_on(full.X, outside)).all()  # the most-expressed genes are left out
    pd.testing.assert_frame_equal(small.obs, full.obs)

    call_lesions(small, lesions, reference=healthy, batch_key="technology", layer=None, depth=depth, chunk_size=113)
    assert_same_calls(small, in_memory)
    assert small.uns["lesions"]["del5q"]["intervals"]["refined"].any()  # the refinement ran on both


def test_counts_in_a_layer_are_read_from_it(mixed, lesions, tmp_path):
    _, full = mixed
    path = tmp_path / "layered.h5ad"
    as_cohort_file(S.called_cohort(MIXED_ROWS, params=MIXED_PARAMS, seed=5), path, layer=True)
    small, depth = read_lesion_counts(path, lesions)
    inside, outside = lesion_genes(full.var, lesions)
    assert (full.X[:, inside["del5q"]] != small.X).nnz == 0
    np.testing.assert_array_equal(depth, in_memory_depth(full, lesions))
    _, plain = read_lesion_counts(path, lesions, depth_genes=DepthGenes.plain())
    np.testing.assert_array_equal(plain, depth_on(full.X, outside))


def test_cohort_file_written_by_copy_reads_as_before(mixed, lesions, tmp_path):
    """cohort.h5ad as call_lesions now writes it (a copy of the input with obs and uns/lesions
    replaced) reads back through read_calls exactly as the whole-AnnData write did."""
    path, full = mixed
    healthy = (full.obs["condition"] == "healthy").to_numpy()
    small, depth = read_lesion_counts(path, lesions, reference=healthy)
    call_lesions(small, lesions, reference=healthy, batch_key="technology", layer=None, depth=depth)
    small.obs["cnv_reference"] = healthy
    new = tmp_path / "cohort.h5ad"
    store.copy_with_obs(path, new, obs=small.obs, elements={"uns/lesions": small.uns["lesions"]})

    old = full.copy()  # the former way: the whole AnnData called and written
    call_lesions(old, lesions, reference=healthy, batch_key="technology", layer=None)
    old.obs["cnv_reference"] = healthy
    old.write_h5ad(tmp_path / "old.h5ad", compression="gzip")

    obs_new, info_new = read_calls(new, "del5q")
    obs_old, info_old = read_calls(tmp_path / "old.h5ad", "del5q")
    pd.testing.assert_frame_equal(obs_new, obs_old, check_exact=True)
    assert obs_new["del5q_call"].dtype == bool and obs_new["cnv_reference"].dtype == bool
    assert obs_new["del5q_posterior"].dtype == np.float64
    assert set(info_new) == set(info_old)
    for key in ("per_sample", "batches", "intervals"):
        pd.testing.assert_frame_equal(info_new[key], info_old[key], check_exact=True)
        pd.testing.assert_frame_equal(info_new[key], small.uns["lesions"]["del5q"][key], check_exact=True)
    np.testing.assert_array_equal(info_new["genes"], info_old["genes"])
    assert info_new["lesion"] == info_old["lesion"]
    assert info_new["params"].pop("depth") == "given (depth=...)" and info_old["params"].pop("depth") == "counted"
    assert info_new["params"] == info_old["params"]
    # the matrix is the input's, untouched
    assert (ad.read_h5ad(new).X != full.X).nnz == 0


@pytest.fixture(scope="module")
def patients(tmp_path_factory):
    path = tmp_path_factory.mktemp("streaming_auto") / "clustered.h5ad"
    full = as_cohort_file(S.called_cohort(PATIENT_ROWS, PATIENT_PARAMS, seed=3), path)
    return path, full


@pytest.mark.parametrize("restrict", [False, True])
def test_automatic_reference_from_lesion_columns(patients, lesions, restrict):
    path, full = patients
    candidates = (full.obs["timepoint"] == "remission").to_numpy() if restrict else None
    mask_mem, report_mem = find_reference(full, lesions, candidates=candidates, layer=None, rescore_rounds=1)
    small, depth = read_lesion_counts(path, lesions)
    mask, report = find_reference(small, lesions, candidates=candidates, layer=None, depth=depth, rescore_rounds=1)
    np.testing.assert_array_equal(mask, mask_mem)
    pd.testing.assert_frame_equal(report, report_mem, check_exact=True)
    assert mask.sum() > 100


def test_depth_read_before_an_automatic_reference_is_scaled_to_it(patients, lesions):
    """The workflow reads the depth before find_reference chooses the reference: scale_read_depth
    then gives each sample the factor a reference known while reading gives it (exactly when no
    gene is trimmed, since the trim is then the only part that sees the reference's groups). The
    sum baseline first, then the median (the default)."""
    path, full = patients
    small, depth = read_lesion_counts(path, lesions)
    mask, _ = find_reference(small, lesions, layer=None, depth=depth, rescore_rounds=1)
    untrimmed = DepthGenes(trim_top_fraction=0.0, baseline="sum")
    summed = DepthGenes(baseline="sum")
    _, depth = read_lesion_counts(path, lesions, depth_genes=summed)
    _, before = read_lesion_counts(path, lesions, depth_genes=untrimmed)
    scaled = scale_read_depth(path, lesions, before, mask, chunk_cells=97, depth_genes=untrimmed)
    # the obs the caller already holds gives the same, without reading it again
    held = scale_read_depth(path, lesions, before, mask, depth_genes=untrimmed, obs=small.obs)
    np.testing.assert_array_equal(held, scaled)
    with pytest.raises(InputError, match=r"obs has 10 cells but the file holds"):
        scale_read_depth(path, lesions, before, mask, obs=small.obs.iloc[:10])
    _, known = read_lesion_counts(path, lesions, reference=mask, depth_genes=untrimmed)
    np.testing.assert_allclose(scaled, known, rtol=1e-12)
    np.testing.assert_array_equal(scaled[mask], before[mask])  # the reference's own cells keep theirs
    factor = pd.Series(scaled / before)[~mask].groupby(full.obs["sample"].to_numpy()[~mask]).agg(["min", "max"])
    np.testing.assert_allclose(factor["min"], factor["max"], rtol=1e-12)  # one factor per sample
    assert (factor["min"] != 1.0).all() and factor["min"].between(0.8, 1.25).all(), factor
    # trimmed (the default): the first read's genes, so each cell's depth differs by the few genes
    # trimmed on one side of the reference only; against its reference's cells, each sample's query
    # cells read within 1% of the reference read beforehand; the first read alone is 2.3-2.5% off
    # for the two diagnosis samples (their factors 1.023 and 1.026; those of remission are not read)
    samples = full.obs["sample"].to_numpy()

    def relative(d: np.ndarray, known: np.ndarray) -> pd.Series:
        ratio = pd.Series(d / known)
        return ratio[~mask].groupby(samples[~mask]).median() / ratio[mask].median()

    _, known = read_lesion_counts(path, lesions, reference=mask, depth_genes=summed)
    assert (relative(scale_read_depth(path, lesions, depth, mask, depth_genes=summed), known) - 1).abs().max() < 0.01
    assert ((relative(depth, known) - 1).abs() > 0.02).sum() == 2
    # the median baseline: read before the choice against all cells' block shares, then taken again
    # against the reference's, it equals the median read with the reference known
    median = DepthGenes(trim_top_fraction=0.0, baseline="median")
    first, before = read_lesion_counts(path, lesions, depth_genes=median)
    _, known = read_lesion_counts(path, lesions, reference=mask, depth_genes=median)
    np.testing.assert_allclose(scale_read_depth(path, lesions, before, mask, depth_genes=median), known, rtol=1e-12)
    assert not np.allclose(before, known, rtol=1e-3)
    # the first read's block counts (one pass fewer) give the same
    kept = first.obsm["depth_blocks"]
    assert kept.shape[0] == first.n_obs and kept.dtype == np.float32 and kept.sum() > 0
    again = scale_read_depth(path, lesions, before, mask, depth_genes=median, block_counts=kept)
    np.testing.assert_allclose(again, known, rtol=1e-12)
    with pytest.raises(InputError, match=r"block_counts is 10 x .* pass obsm\['depth_blocks'\]"):
        scale_read_depth(path, lesions, before, mask, depth_genes=median, block_counts=kept[:10])
    # the scaling turned off: the depth as it was, no pass made
    plain = DepthGenes(scale_to_reference=False, baseline="sum")
    assert scale_read_depth(path / "missing", lesions, depth, mask, depth_genes=plain) is not None
    np.testing.assert_array_equal(scale_read_depth(path, lesions, depth, mask, depth_genes=plain), depth)


def test_bad_depth_and_file_are_named(mixed, lesions, tmp_path):
    path, full = mixed
    small, depth = read_lesion_counts(path, lesions)
    ref = (full.obs["condition"] == "healthy").to_numpy()
    with pytest.raises(InputError, match=r"depth must have one value per cell"):
        call_lesions(small.copy(), lesions, reference=ref, layer=None, depth=depth[:-1])
    bad = depth.copy()
    bad[3] = np.nan
    with pytest.raises(InputError, match=r"depth must be finite"):
        find_reference(small, lesions, layer=None, depth=bad)
    # lesion genes only and no depth: nothing to measure depth on, said rather than scored as 0
    with pytest.raises(InputError, match=r"no autosomal gene outside the lesions.*depth="):
        call_lesions(small.copy(), lesions, reference=ref, layer=None)
    junk = tmp_path / "junk.h5ad"
    junk.write_text("not hdf5")
    with pytest.raises(InputError, match="junk.h5ad"):
        read_lesion_counts(junk, lesions)
