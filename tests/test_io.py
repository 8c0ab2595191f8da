"""Tests for remnant.io (counts, count_tables, tenx, index_sort, sample): every reader returns the same matrix;
every bad input gives a clear InputError."""

from __future__ import annotations

import gzip
import hashlib
import re
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remnant import io as rio
from remnant.errors import InputError
from remnant.io.annotation import chromosome_rank, load_genes

ANNOTATION = Path(__file__).resolve().parents[1] / "resources" / "annotation" / "GRCh38_genes.tsv.gz"
N_CELLS, N_GENES = 50, 300


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def genes() -> pd.DataFrame:
    return load_genes(ANNOTATION)


@pytest.fixture(scope="module")
def counts(genes) -> anndata.AnnData:
    """50 cells x 300 real GRCh38 genes (unique, protein-coding symbols), sparse integer counts.

    var_names are symbols, var["gene_ids"] versioned Ensembl IDs (as CellRanger writes them).
    Barcodes are plate wells, as in Smart-seq2.
    """
    unique = genes[~genes["gene_name"].duplicated(keep=False) & (genes["gene_type"] == "protein_coding")]
    # always include a few del(5q) genes, the rest random
    fixed = unique[unique["gene_name"].isin(["RPS14", "CSNK1A1", "CD74", "CD34", "GAPDH"])]
    rest = unique.drop(fixed.index).sample(N_GENES - len(fixed), random_state=1)
    sel = pd.concat([fixed, rest])
    rng = np.random.default_rng(7)
    X = sp.random(N_CELLS, N_GENES, density=0.25, random_state=3, format="csr", dtype=np.float32)
    X.data = rng.integers(1, 200, X.nnz).astype(np.float32)
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)][:N_CELLS]
    var = pd.DataFrame(
        {"gene_ids": sel["gene_id_version"].to_numpy(), "gene_symbols": sel["gene_name"].to_numpy()},
        index=pd.Index(sel["gene_name"].to_numpy()),
    )
    return anndata.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(wells)), var=var)


@pytest.fixture(scope="module")
def reference(counts, genes) -> anndata.AnnData:
    mapped, stats = rio.map_genes(counts, genes)
    assert stats["n_mapped"] == N_GENES
    return mapped


def assert_same(mapped: anndata.AnnData, reference: anndata.AnnData) -> None:
    assert list(mapped.obs_names) == list(reference.obs_names)
    assert list(mapped.var_names) == list(reference.var_names)
    assert sp.isspmatrix_csr(mapped.X) or isinstance(mapped.X, sp.csr_array)
    assert mapped.X.dtype == np.float32
    assert (mapped.X != reference.X).nnz == 0


def digest(path: Path) -> str:
    if path.is_dir():
        return "".join(digest(p) for p in sorted(path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def message(excinfo) -> str:
    return str(excinfo.value)


# ------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------
ROUND_TRIPS = [
    ("h5ad", "c.h5ad", None),
    ("10x_h5", "c.h5", None),
    ("10x_mtx", "filtered_feature_bc_matrix", None),
    ("table", "c.tsv.gz", None),  # genes x cells, gzipped, orientation auto-detected
    ("table_genes_x_cells", "c.tsv", "table_genes_x_cells"),
    ("table_cells_x_genes", "c.csv", "table_cells_x_genes"),
    ("table_cells_x_genes", "c.csv.gz", None),  # cells x genes, auto-detected
]


@pytest.mark.parametrize("fmt,name,read_fmt", ROUND_TRIPS)
def test_round_trip_every_format(tmp_path, counts, genes, reference, fmt, name, read_fmt):
    path = tmp_path / name
    rio.write_counts(counts, path, fmt)
    before = digest(path)
    adata = rio.read_counts(path, read_fmt)
    assert adata.shape == (N_CELLS, N_GENES)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert list(adata.obs_names) == list(counts.obs_names)
    mapped, stats = rio.map_genes(adata, genes, source=str(path))
    assert stats["fraction_mapped"] == 1.0 and stats["n_summed"] == 0
    assert_same(mapped, reference)
    assert digest(path) == before  # inputs are never modified
    assert adata.uns["remnant"]["read"]["format"] == (read_fmt or rio.infer_format(path))


def test_10x_formats_keep_ids_and_symbols(tmp_path, counts):
    for fmt, name in (("10x_h5", "c.h5"), ("10x_mtx", "mtx")):
        rio.write_counts(counts, tmp_path / name, fmt)
        adata = rio.read_counts(tmp_path / name)
        assert list(adata.var["gene_ids"]) == list(counts.var["gene_ids"])
        assert list(adata.var["gene_symbols"]) == list(counts.var_names)
        assert list(adata.var_names) == list(counts.var["gene_ids"])


def test_writers_are_deterministic(tmp_path, counts):
    for fmt, name in (("10x_h5", "c.h5"), ("10x_mtx", "mtx"), ("table", "c.tsv.gz"), ("h5ad", "c.h5ad")):
        rio.write_counts(counts, tmp_path / f"a_{name}", fmt)
        rio.write_counts(counts, tmp_path / f"b_{name}", fmt)
        assert digest(tmp_path / f"a_{name}") == digest(tmp_path / f"b_{name}"), fmt


def test_infer_format(tmp_path, counts):
    rio.write_counts(counts, tmp_path / "mtx", "10x_mtx")
    (tmp_path / "x.h5ad").write_bytes(b"")
    (tmp_path / "x.h5").write_bytes(b"")
    (tmp_path / "x.txt.gz").write_bytes(b"")
    assert rio.infer_format(tmp_path / "x.h5ad") == "h5ad"
    assert rio.infer_format(tmp_path / "x.h5") == "10x_h5"
    assert rio.infer_format(tmp_path / "mtx") == "10x_mtx"
    assert rio.infer_format(tmp_path / "mtx" / "matrix.mtx.gz") == "10x_mtx"
    assert rio.infer_format(tmp_path / "x.txt.gz") == "table"
    (tmp_path / "x.loom").write_bytes(b"")
    with pytest.raises(InputError) as e:
        rio.infer_format(tmp_path / "x.loom")
    assert "x.loom" in message(e) and "format" in message(e) and ".h5ad" in message(e)


def test_mtx_file_path_reads_its_directory(tmp_path, counts, genes, reference):
    rio.write_counts(counts, tmp_path / "mtx", "10x_mtx")
    mapped, _ = rio.map_genes(rio.read_counts(tmp_path / "mtx" / "matrix.mtx.gz"), genes)
    assert_same(mapped, reference)


def test_plain_mtx_directory(tmp_path, counts, genes, reference):
    """Uncompressed matrix.mtx with features.tsv (not CellRanger's exact layout) still reads."""
    rio.write_counts(counts, tmp_path / "gz", "10x_mtx")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("matrix.mtx", "barcodes.tsv", "features.tsv"):
        (plain / name).write_bytes(gzip.decompress((tmp_path / "gz" / f"{name}.gz").read_bytes()))
    mapped, _ = rio.map_genes(rio.read_counts(plain), genes)
    assert_same(mapped, reference)


# ------------------------------------------------------------------------------------------
# gene identifiers
# ------------------------------------------------------------------------------------------
def test_versioned_unversioned_and_symbols_map_to_same_genes(counts, genes, reference):
    versioned = counts.var["gene_ids"].to_numpy()
    variants = {
        "versioned": versioned,
        "unversioned": np.array([v.split(".")[0] for v in versioned]),
        "symbol": counts.var_names.to_numpy(),
    }
    for kind, names in variants.items():
        adata = anndata.AnnData(X=counts.X.copy(), obs=counts.obs.copy(), var=pd.DataFrame(index=pd.Index(names)))
        mapped, stats = rio.map_genes(adata, genes)
        assert stats["id_type"] == ("symbol" if kind == "symbol" else "ensembl"), kind
        assert_same(mapped, reference)
    # annotation columns come along, in genome order
    assert {"gene_name", "chromosome", "start", "end", "arm", "band"} <= set(reference.var.columns)
    assert reference.var.loc["ENSG00000164587", "gene_name"] == "RPS14"
    assert (
        reference.var.loc["ENSG00000164587", "arm"] == "q"
        and reference.var.loc["ENSG00000164587", "chromosome"] == "chr5"
    )
    rank = list(zip(chromosome_rank(reference.var["chromosome"]), reference.var["start"]))
    assert rank == sorted(rank)


def test_duplicate_features_are_summed_and_ambiguous_symbols_resolved(genes):
    # MATR3 has two gene IDs in GENCODE v44; the protein-coding one (then genome order) wins.
    matr3 = genes[genes["gene_name"] == "MATR3"]
    assert len(matr3) > 1
    coding = matr3[matr3["gene_type"] == "protein_coding"]
    expected = coding.index[0] if len(coding) else matr3.index[0]
    X = sp.csr_matrix(np.array([[1, 2, 5, 7], [0, 3, 0, 1]], dtype=np.float32))
    var = pd.DataFrame(index=pd.Index(["MATR3", "MATR3-1", "RPS14", "CD34"]))
    adata = anndata.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(["c1", "c2"])), var=var)
    mapped, stats = rio.map_genes(adata, genes)
    assert stats["id_type"] == "symbol"
    assert stats["n_ambiguous_symbols"] == 2  # MATR3 and MATR3-1 (its scanpy-made-unique copy)
    assert stats["n_summed"] == 1 and stats["n_genes"] == 3
    assert mapped.X[:, list(mapped.var_names).index(expected)].toarray().ravel().tolist() == [3, 3]
    # versioned + unversioned copies of one ID are summed too
    var = pd.DataFrame(index=pd.Index(["ENSG00000164587.13", "ENSG00000164587", "ENSG00000174059"]))
    adata = anndata.AnnData(
        X=sp.csr_matrix(np.array([[1, 4, 2]], dtype=np.float32)), obs=pd.DataFrame(index=pd.Index(["c"])), var=var
    )
    mapped, stats = rio.map_genes(adata, genes)
    assert stats["n_summed"] == 1
    assert mapped[:, "ENSG00000164587"].X.toarray().item() == 5


def test_unmapped_features_dropped_when_enough_map(counts, genes, reference):
    names = list(counts.var["gene_ids"])
    names[0] = "ERCC-00002"  # spike-ins are not genes
    adata = anndata.AnnData(X=counts.X.copy(), obs=counts.obs.copy(), var=pd.DataFrame(index=pd.Index(names)))
    mapped, stats = rio.map_genes(adata, genes)
    assert stats["n_mapped"] == N_GENES - 1 and stats["unmapped_examples"] == ["ERCC-00002"]
    assert mapped.n_vars == N_GENES - 1


def test_mouse_genes_fail_with_organism_hint(tmp_path, counts, genes):
    mouse_symbols = [s.capitalize() for s in counts.var_names]  # Cd34, Gapdh, Rps14 ...
    adata = anndata.AnnData(X=counts.X.copy(), obs=counts.obs.copy(), var=pd.DataFrame(index=pd.Index(mouse_symbols)))
    with pytest.raises(InputError) as e:
        rio.map_genes(adata, genes, source="plate7.h5ad")
    msg = message(e)
    assert "plate7.h5ad" in msg and "GRCh38" in msg and "another organism" in msg
    assert (
        msg.endswith(rio.counts.MAPPING_HINT)
        and "annotation.genes" not in msg
        and re.search(r"only \d+ of 300 gene identifiers \(\d+\.\d%\)", msg)
    )
    ids = [f"ENSMUSG{i:011d}" for i in range(N_GENES)]
    adata = anndata.AnnData(X=counts.X.copy(), obs=counts.obs.copy(), var=pd.DataFrame(index=pd.Index(ids)))
    with pytest.raises(InputError) as e:
        rio.map_genes(adata, genes, source="m.h5")
    assert "ENSMUSG" in message(e) and "another organism" in message(e)


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------
def _dense(counts) -> np.ndarray:
    return counts.X.toarray().astype(int)  # 50 x 300: small test matrix


def test_featurecounts_table(tmp_path, counts, genes, reference):
    dense = _dense(counts)
    bams = [f"/data/star/{w}.Aligned.sortedByCoord.out.bam" for w in counts.obs_names]
    lines = ['# Program:featureCounts v2.0.6; Command:"featureCounts" "-a" "gencode.v44.gtf"']
    lines.append("\t".join(["Geneid", "Chr", "Start", "End", "Strand", "Length", *bams]))
    for j, gid in enumerate(counts.var["gene_ids"]):
        lines.append("\t".join([gid, "chr1;chr1", "100;200", "150;260", "+;+", "111", *map(str, dense[:, j])]))
    path = tmp_path / "featurecounts.txt"
    path.write_text("\n".join(lines) + "\n")
    adata = rio.read_counts(path)
    assert list(adata.obs_names) == list(counts.obs_names)  # BAM paths -> well names
    assert adata.uns["remnant"]["read"]["featurecounts"] is True
    mapped, _ = rio.map_genes(adata, genes)
    assert_same(mapped, reference)


def test_table_with_symbol_column_and_r_style_header(tmp_path, counts, genes, reference):
    dense = _dense(counts)
    # R write.table: header lacks the row-label column; plus a gene_name annotation column
    lines = [",".join(["gene_name", *counts.obs_names])]
    for j, (gid, sym) in enumerate(zip(counts.var["gene_ids"], counts.var_names)):
        lines.append(",".join([gid, sym, *map(str, dense[:, j])]))
    path = tmp_path / "r.csv"
    path.write_text("\n".join(lines) + "\n")
    adata = rio.read_counts(path)
    assert list(adata.var["gene_symbols"]) == list(counts.var_names)
    mapped, _ = rio.map_genes(adata, genes)
    assert_same(mapped, reference)
    # symbols first, Ensembl IDs in a second column: map_genes still uses the IDs
    lines = ["\t".join(["symbol", "gene_id", *counts.obs_names])]
    for j, (gid, sym) in enumerate(zip(counts.var["gene_ids"], counts.var_names)):
        lines.append("\t".join([sym, gid, *map(str, dense[:, j])]))
    path = tmp_path / "sym_first.tsv"
    path.write_text("\n".join(lines) + "\n")
    adata = rio.read_counts(path, "table_genes_x_cells")
    assert list(adata.var["gene_ids"]) == list(counts.var["gene_ids"])
    mapped, stats = rio.map_genes(adata, genes)
    assert stats["id_type"] == "ensembl"
    assert_same(mapped, reference)


def test_symbol_table_orientation_needs_symbols_or_explicit_format(tmp_path, counts, genes, reference):
    plain = counts.copy()
    del plain.var["gene_ids"]  # write symbols as the identifier column
    del plain.var["gene_symbols"]
    path = tmp_path / "symbols_cells_x_genes.csv"
    rio.write_counts(plain, path, "table_cells_x_genes")
    with pytest.raises(InputError) as e:
        rio.read_counts(path)
    assert "symbols_cells_x_genes.csv" in message(e) and "table_cells_x_genes" in message(e)
    auto = rio.read_counts(path, gene_symbols=genes["gene_name"])
    assert auto.uns["remnant"]["read"]["orientation"] == "cells_x_genes"
    forced = rio.read_counts(path, "table_cells_x_genes")
    for adata in (auto, forced):
        mapped, stats = rio.map_genes(adata, genes)
        assert stats["id_type"] == "symbol"
        assert_same(mapped, reference)


def _write_table(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    return path


def _small_table(tmp_path, value="3", name="bad.tsv", gene2="ENSG00000174059", cell2="A02") -> Path:
    return _write_table(
        tmp_path / name,
        [["gene_id", "A01", cell2], ["ENSG00000164587", "1", "2"], [gene2, "0", value]],
    )


@pytest.mark.parametrize(
    "value,expected",
    [
        ("-4", ["negative", "'A02'", "ENSG00000174059", "raw counts"]),
        ("NaN", ["non-finite", "'A02'", "ENSG00000174059"]),
        ("", ["non-finite", "'A02'"]),
        (
            "2.5",
            ["non-integer", "'A02'", "ENSG00000174059", "2.5", "remnant needs raw counts, not normalised/TPM values"],
        ),
        ("abc", ["non-numeric", "'abc'", "A02", "line 3"]),
    ],
)
def test_bad_values_in_table(tmp_path, value, expected):
    path = _small_table(tmp_path, value)
    with pytest.raises(InputError) as e:
        rio.read_counts(path)
    msg = message(e)
    assert "bad.tsv" in msg
    for text in expected:
        assert text in msg, (text, msg)


def test_bad_values_in_sparse_formats(tmp_path, counts):
    for value, word in ((-1.0, "negative"), (np.nan, "non-finite"), (0.5, "non-integer")):
        bad = counts.copy()
        bad.X = bad.X.copy()
        bad.X.data[0] = value
        row = int(np.searchsorted(bad.X.indptr, 0, side="right") - 1)
        for fmt, name in (("10x_h5", "bad.h5"), ("10x_mtx", "badmtx")):
            rio.write_counts(bad, tmp_path / name, fmt)
            with pytest.raises(InputError) as e:
                rio.read_counts(tmp_path / name)
            assert name in message(e) and word in message(e) and repr(bad.obs_names[row]) in message(e)


def test_duplicate_barcodes_and_genes(tmp_path, counts):
    with pytest.raises(InputError) as e:
        rio.read_counts(_small_table(tmp_path, cell2="A01"))
    assert "bad.tsv" in message(e) and "barcode" in message(e) and "'A01'" in message(e)
    with pytest.raises(InputError) as e:
        rio.read_counts(_small_table(tmp_path, gene2="ENSG00000164587"))
    assert "bad.tsv" in message(e) and "ENSG00000164587" in message(e) and "more than once" in message(e)
    dup = counts.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about the duplicates we are making on purpose
        dup.obs_names = ["A01"] * 2 + list(counts.obs_names[2:])
    rio.write_counts(dup, tmp_path / "dup.h5", "10x_h5")
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "dup.h5")
    assert "dup.h5" in message(e) and "'A01'" in message(e) and "more than once" in message(e)


def test_empty_matrices(tmp_path, counts):
    _write_table(tmp_path / "header_only.tsv", [["gene_id", "A01", "A02"]])
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "header_only.tsv")
    assert "header_only.tsv" in message(e) and "empty" in message(e)
    (tmp_path / "nothing.tsv").write_text("")
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "nothing.tsv")
    assert "nothing.tsv" in message(e) and "empty" in message(e)
    rio.write_counts(counts[:0].copy(), tmp_path / "zero_cells.h5ad", "h5ad")
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "zero_cells.h5ad")
    assert "zero_cells.h5ad" in message(e) and "0 cells" in message(e)


# ------------------------------------------------------------------------------------------
# h5ad specifics
# ------------------------------------------------------------------------------------------
def test_h5ad_counts_from_raw_or_layer(tmp_path, counts, genes, reference):
    normalised = counts.X.multiply(1 / (counts.X.sum(axis=1) + 1)).tocsr().astype(np.float32) * 1e4
    a = anndata.AnnData(X=normalised, obs=counts.obs.copy(), var=counts.var.copy())
    a.raw = anndata.AnnData(X=counts.X.copy(), obs=counts.obs.copy(), var=counts.var.copy())
    a.write_h5ad(tmp_path / "raw.h5ad")
    b = anndata.AnnData(X=normalised, obs=counts.obs.copy(), var=counts.var.copy(), layers={"counts": counts.X.copy()})
    b.write_h5ad(tmp_path / "layer.h5ad")
    for name, source in (("raw.h5ad", ".raw.X"), ("layer.h5ad", 'layers["counts"]')):
        adata = rio.read_counts(tmp_path / name)
        assert adata.uns["remnant"]["read"]["matrix"] == source
        assert_same(rio.map_genes(adata, genes)[0], reference)
    c = anndata.AnnData(X=normalised, obs=counts.obs.copy(), var=counts.var.copy())
    c.write_h5ad(tmp_path / "normalised.h5ad")
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "normalised.h5ad")
    msg = message(e)
    assert "normalised.h5ad" in msg and ".X has non-integer value" in msg and "raw counts" in msg


# ------------------------------------------------------------------------------------------
# broken / wrong paths
# ------------------------------------------------------------------------------------------
def test_missing_path_and_wrong_kind(tmp_path, counts):
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "absent.h5ad")
    assert "absent.h5ad" in message(e) and "does not exist" in message(e)
    (tmp_path / "dir.tsv").mkdir()
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "dir.tsv", "table")
    assert "dir.tsv" in message(e) and "is a directory" in message(e)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "emptydir")
    assert "emptydir" in message(e) and "matrix.mtx" in message(e)
    rio.write_counts(counts, tmp_path / "c.h5", "10x_h5")
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "c.h5", "10x_mtx")
    assert "c.h5" in message(e) and "is a file" in message(e)
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "c.h5", "loom")
    assert "c.h5" in message(e) and "'loom'" in message(e) and "10x_mtx" in message(e)


@pytest.mark.parametrize("fmt,name", [("h5ad", "cut.h5ad"), ("10x_h5", "cut.h5")])
def test_truncated_hdf5(tmp_path, counts, fmt, name):
    path = tmp_path / name
    rio.write_counts(counts, path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        rio.read_counts(path)
    assert name in message(e) and ("truncated" in message(e) or "corrupt" in message(e))


def test_h5_without_matrix_group(tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("something", data=np.arange(3))
    with pytest.raises(InputError) as e:
        rio.read_counts(tmp_path / "other.h5")
    assert "other.h5" in message(e) and "CellRanger" in message(e)


def test_truncated_mtx(tmp_path, counts):
    d = tmp_path / "mtx"
    rio.write_counts(counts, d, "10x_mtx")
    data = (d / "matrix.mtx.gz").read_bytes()
    (d / "matrix.mtx.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        rio.read_counts(d)
    assert "mtx" in message(e) and "matrix.mtx.gz" in message(e) and "truncated" in message(e)


def test_mtx_missing_barcodes_or_mismatched(tmp_path, counts):
    d = tmp_path / "mtx"
    rio.write_counts(counts, d, "10x_mtx")
    (d / "barcodes.tsv.gz").unlink()
    with pytest.raises(InputError) as e:
        rio.read_counts(d)
    assert "barcodes.tsv" in message(e)
    rio.write_counts(counts[:10].copy(), tmp_path / "other", "10x_mtx")
    (d / "barcodes.tsv.gz").write_bytes((tmp_path / "other" / "barcodes.tsv.gz").read_bytes())
    with pytest.raises(InputError) as e:
        rio.read_counts(d)
    assert str(d) in message(e) and "barcodes.tsv.gz" in message(e)


def test_truncated_gzip_table(tmp_path, counts):
    path = tmp_path / "cut.tsv.gz"
    rio.write_counts(counts, path, "table")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        rio.read_counts(path)
    assert "cut.tsv.gz" in message(e)


# ------------------------------------------------------------------------------------------
# index sort
# ------------------------------------------------------------------------------------------
def _index_sort(path: Path, wells, *, extra=None, sep=",") -> Path:
    rows = [["Well", "CD34", "CD38", "CD90", "CD45RA", "Plate"]]
    for i, w in enumerate(wells):
        rows.append([w, f"{1000 + i}.5", f"{-20 + i}", f"{i * 3}", "12.25", "P1"])
    if extra:
        rows.append(extra)
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n")
    return path


def test_read_index_sort(tmp_path, counts):
    wells = list(counts.obs_names[:10])
    for sep in (",", "\t"):
        facs = rio.read_index_sort(_index_sort(tmp_path / "facs.csv", wells, sep=sep))
        assert list(facs.index) == wells and facs.index.name == "barcode"
        assert list(facs.columns) == ["CD34", "CD38", "CD90", "CD45RA"]  # text column 'Plate' dropped
        assert all(facs.dtypes == np.float64)
        assert facs.loc[wells[2], "CD34"] == 1002.5 and facs.loc[wells[0], "CD38"] == -20
    facs = rio.read_index_sort(tmp_path / "facs.csv", markers=["cd90", "CD34"])
    assert list(facs.columns) == ["cd90", "CD34"]


def test_index_sort_errors(tmp_path, counts):
    wells = list(counts.obs_names[:5])
    with pytest.raises(InputError) as e:
        rio.read_index_sort(tmp_path / "nofacs.csv")
    assert "nofacs.csv" in message(e) and "does not exist" in message(e)
    path = _index_sort(tmp_path / "facs.csv", wells)
    with pytest.raises(InputError) as e:
        rio.read_index_sort(path, markers=["CD34", "CD123"])
    assert "facs.csv" in message(e) and "'CD123'" in message(e) and "CD45RA" in message(e)
    path = _index_sort(tmp_path / "bad.csv", wells, extra=["H12", "high", "1", "2", "3", "P1"])
    with pytest.raises(InputError) as e:
        rio.read_index_sort(path)
    msg = message(e)
    assert "bad.csv" in msg and "'high'" in msg and "'H12'" in msg and "'CD34'" in msg and "line 7" in msg
    path = _index_sort(tmp_path / "dup.csv", wells, extra=[wells[0], "1", "1", "1", "1", "P1"])
    with pytest.raises(InputError) as e:
        rio.read_index_sort(path)
    assert "dup.csv" in message(e) and repr(wells[0]) in message(e)
    (tmp_path / "nobc.csv").write_text("CD34,CD38\n1.5,2.5\n3.5,4.5\n")
    with pytest.raises(InputError) as e:
        rio.read_index_sort(tmp_path / "nobc.csv")
    assert "nobc.csv" in message(e) and "no barcode column" in message(e)


# ------------------------------------------------------------------------------------------
# read_sample
# ------------------------------------------------------------------------------------------
def _row(counts_path, index_sort="", sample="P1_dx_HSC", fmt="") -> dict:
    return {
        "sample": sample,
        "patient": "P1",
        "timepoint": "diagnosis",
        "population": "HSC",
        "condition": "MDS_del5q",
        "counts": str(counts_path),
        "format": fmt,
        "index_sort": index_sort,
        "technology": "smartseq2",
    }


def test_read_sample(tmp_path, counts, genes, reference, caplog):
    caplog.set_level("INFO", logger="remnant.io")
    rio.write_counts(counts, tmp_path / "p1.tsv.gz", "table")
    wells = list(counts.obs_names)
    facs_wells = wells[:40] + ["P12", "P13"]  # 10 matrix cells lack FACS data; 2 sorted wells lack reads
    _index_sort(tmp_path / "p1_facs.csv", facs_wells)
    adata, stats = rio.read_sample(_row(tmp_path / "p1.tsv.gz", tmp_path / "p1_facs.csv"), genes)
    assert list(adata.obs_names) == [f"P1_dx_HSC:{w}" for w in wells] and adata.obs_names.is_unique
    assert list(adata.obs["barcode"]) == wells
    for col, value in [
        ("sample", "P1_dx_HSC"),
        ("patient", "P1"),
        ("timepoint", "diagnosis"),
        ("population", "HSC"),
        ("condition", "MDS_del5q"),
        ("technology", "smartseq2"),
    ]:
        assert set(adata.obs[col].astype(str)) == {value}
    assert list(adata.var_names) == list(reference.var_names)
    assert (adata.X != reference.X).nnz == 0
    # FACS joined by barcode, not by position
    assert adata.obs.loc["P1_dx_HSC:" + wells[5], "facs_CD34"] == 1005.5
    assert adata.obs.loc["P1_dx_HSC:" + wells[39], "facs_CD90"] == 39 * 3
    assert adata.obs["facs_CD34"].isna().sum() == 10 and np.isnan(adata.obs.loc["P1_dx_HSC:" + wells[45], "facs_CD38"])
    assert stats["index_sort"]["n_matched"] == 40 and stats["index_sort"]["n_unmatched"] == 2
    assert any("P12" in w for w in stats["warnings"])
    assert stats["format"] == "table" and stats["fraction_mapped"] == 1.0
    assert adata.uns["remnant"]["read"]["path"].endswith("p1.tsv.gz")
    assert "sample P1_dx_HSC: 50 cells x 300 genes" in caplog.text and "100.0% of features mapped" in caplog.text
    adata.write_h5ad(tmp_path / "out.h5ad")  # stats and obs must be storable
    back = anndata.read_h5ad(tmp_path / "out.h5ad")
    assert back.uns["remnant"]["read"]["index_sort"]["n_matched"] == 40


def test_read_sample_concatenates_without_clashes(tmp_path, counts, genes):
    rio.write_counts(counts, tmp_path / "a.h5", "10x_h5")
    rio.write_counts(counts, tmp_path / "b", "10x_mtx")
    a, _ = rio.read_sample(_row(tmp_path / "a.h5", sample="P1_dx"), genes)
    b, _ = rio.read_sample(_row(tmp_path / "b", sample="P1_cr", fmt="10x_mtx"), genes)
    both = anndata.concat([a, b])
    assert both.obs_names.is_unique and both.n_obs == 2 * N_CELLS


def test_read_sample_errors_name_sample_and_file(tmp_path, counts, genes):
    rio.write_counts(counts, tmp_path / "p1.tsv", "table")
    _index_sort(tmp_path / "other_plate.csv", ["X01", "X02"])
    with pytest.raises(InputError) as e:
        rio.read_sample(_row(tmp_path / "p1.tsv", tmp_path / "other_plate.csv"), genes, sheet="config/samples.tsv")
    msg = message(e)
    assert (
        "other_plate.csv" in msg
        and "p1.tsv" in msg
        and "P1_dx_HSC" in msg
        and "config/samples.tsv" in msg
        and "none of" in msg
    )
    with pytest.raises(InputError) as e:
        rio.read_sample(_row(tmp_path / "missing.h5ad"), genes)
    assert "missing.h5ad" in message(e) and "'P1_dx_HSC'" in message(e) and "samples.tsv" in message(e)
    _small_table(tmp_path, "2.5", name="tpm.tsv")
    with pytest.raises(InputError) as e:
        rio.read_sample(_row(tmp_path / "tpm.tsv", fmt="table_genes_x_cells"), genes)
    assert "tpm.tsv" in message(e) and "'P1_dx_HSC'" in message(e) and "raw counts" in message(e)
    with pytest.raises(InputError) as e:
        rio.read_sample(_row(tmp_path / "p1.tsv", tmp_path / "other_plate.csv"), genes, markers=["CD123"])
    assert "CD123" in message(e) and "'P1_dx_HSC'" in message(e)
    row = _row(tmp_path / "p1.tsv")
    row["counts"] = float("nan")
    with pytest.raises(InputError) as e:
        rio.read_sample(row, genes)
    assert "counts" in message(e) and "'P1_dx_HSC'" in message(e)


def test_a_matrix_covering_few_chromosomes_is_refused(reference, genes):
    """Issue 19: a matrix subset to a chromosome (or with nearly all counts on one) would have its
    other genes read as zeros (losses) in the cohort; read_sample refuses it naming the chromosomes.
    A genome-wide matrix passes and its counts' share per chromosome is returned."""
    share = rio.check_chromosomes(reference, genes)
    assert abs(sum(share.values()) - 1) < 1e-9 and max(share.values()) < 0.3 and list(share)[0] == "chr1"
    chromosome = reference.var["chromosome"].to_numpy()
    with pytest.raises(
        InputError, match=r"x\.tsv: genes from chromosome\(s\) 1, M only: was the matrix subset or filtered\?"
    ):
        keep = np.isin(chromosome, ["chr1"]) | (np.arange(reference.n_vars) == 0)
        sub = reference[:, keep].copy()
        sub.var["chromosome"] = np.where(
            np.arange(sub.n_vars) == 0, "chrM", sub.var["chromosome"]
        )  # plus a mitochondrial gene
        rio.check_chromosomes(sub, genes, source="x.tsv")
    skewed = reference.copy()
    skewed.X = sp.csr_matrix(skewed.X.toarray() * np.where(chromosome == "chr2", 1000, 1).astype(np.float32))
    with pytest.raises(
        InputError, match=r"9\d\.\d% of the mapped counts are on chromosome 2 \(genes from \d+ chromosomes\): was"
    ):
        rio.check_chromosomes(skewed, genes, source="x.tsv")
