"""CellRanger's count matrices: the HDF5 file (``10x_h5``) and the matrix directory (``10x_mtx``).

Readers behind :func:`remnant.io.counts.read_counts`: each returns cells x features with the
feature IDs as ``var_names`` (unique; probe-based matrices keep the probe names), ``var["gene_ids"]``
and ``var["gene_symbols"]``; only "Gene Expression" features are kept. Checks shared by every format
(integers, duplicates, empty matrix) follow in :func:`remnant.io.counts.read_counts`.
"""

from __future__ import annotations

import gzip
import logging
import warnings
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.io._common import describe, new_adata

logger = logging.getLogger(__name__)

#: The files that may hold each part of a 10x matrix directory (CellRanger v3+ writes the gzipped
#: ones, CellRanger 2 the plain ones with genes.tsv); a directory must hold one of each.
_MTX_PARTS = {
    "matrix": ("matrix.mtx.gz", "matrix.mtx"),
    "barcodes": ("barcodes.tsv.gz", "barcodes.tsv"),
    "features": ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"),
}


def find_mtx(directory: Path) -> Path | None:
    """``matrix.mtx.gz`` (or else ``matrix.mtx``) of a directory; None when it holds neither."""
    for name in ("matrix.mtx.gz", "matrix.mtx"):
        if (directory / name).is_file():
            return directory / name
    return None


# ---- 10x HDF5 ------------------------------------------------------------------------------
def read_10x_h5(path: Path, info: dict) -> anndata.AnnData:
    """A CellRanger HDF5 matrix (v3+ ``/matrix`` layout, or legacy v2 single-genome); ``info`` gets
    ``genome`` and ``n_other_features_dropped``."""
    import scanpy as sc

    if not h5py.is_hdf5(path):
        raise InputError(
            "is not an HDF5 file (it may be truncated, still being copied, or another format); expected "
            "a CellRanger filtered_feature_bc_matrix.h5. Re-copy it, or name the right format in the "
            "sample sheet's `format` column.",
            path=path,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Variable names are not unique": we re-index below
            adata = sc.read_10x_h5(path, gex_only=False)
    except Exception as exc:
        raise InputError(
            f"could not read as a CellRanger HDF5 matrix ({describe(exc)}); the file may be truncated "
            "or corrupt (re-copy it), or not a CellRanger feature-barcode matrix (expected groups "
            "/matrix/{barcodes,data,indices,indptr,shape,features}).",
            path=path,
        ) from exc
    return _tidy_10x(adata, path, info)


def _tidy_10x(adata: anndata.AnnData, path: Path, info: dict) -> anndata.AnnData:
    """Gene-expression features only; var_names = feature IDs (unique), symbols kept alongside."""
    if "feature_types" in adata.var.columns:
        gex = (adata.var["feature_types"].astype(str) == "Gene Expression").to_numpy()
        n_other = int((~gex).sum())
        if n_other:
            kinds = sorted(set(adata.var["feature_types"].astype(str)[~gex]))
            logger.info("%s: ignoring %d non-gene-expression features (%s)", path, n_other, ", ".join(kinds))
            info["n_other_features_dropped"] = n_other
            adata = adata[:, gex].copy()
    if "genome" in adata.var.columns:  # the reference CellRanger quantified against (GRCh38, hg19, mm10, ...)
        info["genome"] = sorted(set(adata.var["genome"].astype(str)) - {"", "nan"})
    symbols = np.asarray(adata.var_names, dtype=str)
    ids = adata.var["gene_ids"].astype(str).to_numpy() if "gene_ids" in adata.var.columns else symbols
    var = pd.DataFrame({"gene_ids": ids, "gene_symbols": symbols})
    # Feature IDs are unique in CellRanger output; probe-based (Flex) matrices repeat gene IDs,
    # then the original (probe) names stay as var_names and map_genes sums via gene_ids.
    var.index = pd.Index(ids if pd.Index(ids).is_unique else symbols)
    return new_adata(X=adata.X, obs=pd.DataFrame(index=adata.obs_names.astype(str)), var=var)


# ---- 10x matrix directory -------------------------------------------------------------------
def read_10x_mtx(path: Path, info: dict) -> anndata.AnnData:
    """A CellRanger matrix directory (v3+ gzipped files, or CellRanger 2's plain ones with
    ``genes.tsv``); ``info`` gets ``files`` (the three read) and what :func:`read_10x_h5` records."""
    import scanpy as sc

    mtx, barcodes, features = _mtx_files(path)
    gz = mtx.suffix == ".gz"
    standard_v3 = gz and barcodes.name == "barcodes.tsv.gz" and features.name == "features.tsv.gz"
    standard_legacy = not gz and (path / "genes.tsv").is_file() and barcodes.name == "barcodes.tsv"
    try:
        if standard_v3 or standard_legacy:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                adata = sc.read_10x_mtx(path, var_names="gene_ids", gex_only=False, cache=False)
            adata.var["gene_ids"] = adata.var_names.astype(str)
            adata.var_names = (
                adata.var["gene_symbols"].astype(str).to_numpy() if "gene_symbols" in adata.var else adata.var_names
            )
        else:
            # Mixed compression (e.g. plain matrix.mtx with features.tsv): the same pieces scanpy
            # uses, put together by hand.
            adata = _read_mtx_by_hand(mtx, barcodes, features)
    except InputError:
        raise
    except Exception as exc:
        # Most common cause: a truncated .gz or a barcodes/features file that does not match
        # the matrix dimensions; verify both before giving up with the library's message.
        raise InputError(_mtx_diagnosis(mtx, barcodes, features, exc), path=path) from exc
    info["files"] = [mtx.name, barcodes.name, features.name]
    return _tidy_10x(adata, path, info)


def _mtx_files(path: Path) -> tuple[Path, Path, Path]:
    """The matrix, barcodes and features files of a 10x directory; InputError when one is missing
    or a part is there twice."""
    mtx = find_mtx(path)
    if mtx is None:
        listing = sorted(p.name for p in path.iterdir())[:8]
        raise InputError(
            f"10x_mtx directory has no matrix.mtx.gz or matrix.mtx (it holds {listing}); point `counts` "
            "at CellRanger's filtered_feature_bc_matrix/ directory.",
            path=path,
        )
    _refuse_mixed_mtx(path)
    gz = mtx.suffix == ".gz"
    suffix = ".gz" if gz else ""
    barcodes = path / f"barcodes.tsv{suffix}"
    features = path / f"features.tsv{suffix}"
    legacy = path / "genes.tsv"
    for candidate in (path / "features.tsv.gz", path / "features.tsv", path / "genes.tsv.gz", legacy):
        if not features.is_file() and candidate.is_file():
            features = candidate
    if not barcodes.is_file():
        other = path / ("barcodes.tsv" if gz else "barcodes.tsv.gz")
        barcodes = other if other.is_file() else barcodes
    missing = [p.name for p in (barcodes, features) if not p.is_file()]
    if missing:
        raise InputError(
            f"10x_mtx directory lacks {', '.join(missing)} (needed next to {mtx.name}); copy the complete "
            "CellRanger filtered_feature_bc_matrix/ directory.",
            path=path,
        )
    return mtx, barcodes, features


def _refuse_mixed_mtx(path: Path) -> None:
    """A 10x directory holding two versions of a part (``matrix.mtx.gz`` and ``matrix.mtx``;
    ``features.tsv.gz`` and ``genes.tsv``) is ambiguous: scanpy reads the legacy files whenever
    ``genes.tsv`` is there, whatever the log would say was read. Refuse it, naming the files."""
    doubled = [[n for n in names if (path / n).is_file()] for names in _MTX_PARTS.values()]
    doubled = [names for names in doubled if len(names) > 1]
    if doubled:
        pairs = "; ".join(" and ".join(names) for names in doubled)
        raise InputError(
            f"10x_mtx directory holds two versions of the same part ({pairs}), so which files are this sample's "
            "is ambiguous; keep one set (CellRanger v3+: matrix.mtx.gz, barcodes.tsv.gz, features.tsv.gz; CellRanger 2: "
            "matrix.mtx, barcodes.tsv, genes.tsv) and move the others out of the directory.",
            path=path,
        )


def _read_mtx_by_hand(mtx: Path, barcodes: Path, features: Path) -> anndata.AnnData:
    adata = anndata.io.read_mtx(mtx).T  # genes x cells on disk
    feats = pd.read_csv(features, sep="\t", header=None, dtype=str, keep_default_na=False)
    bcs = pd.read_csv(barcodes, sep="\t", header=None, dtype=str, keep_default_na=False)
    if len(feats) != adata.n_vars or len(bcs) != adata.n_obs:
        raise ValueError(
            f"{features.name} has {len(feats)} rows and {barcodes.name} {len(bcs)}, but the matrix is "
            f"{adata.n_vars} features x {adata.n_obs} barcodes"
        )
    adata.obs_names = bcs[0].to_numpy()
    names = feats[1] if feats.shape[1] > 1 else feats[0]
    adata.var_names = names.to_numpy()
    adata.var["gene_ids"] = feats[0].to_numpy()
    if feats.shape[1] > 2:
        adata.var["feature_types"] = feats[2].to_numpy()
    return adata


def _mtx_diagnosis(mtx: Path, barcodes: Path, features: Path, exc: Exception) -> str:
    for part in (mtx, barcodes, features):
        if part.suffix == ".gz":
            try:
                with gzip.open(part, "rb") as handle:
                    while handle.read(1 << 20):
                        pass
            except (OSError, EOFError, gzip.BadGzipFile) as gz_exc:
                return (
                    f"{part.name} is not a complete gzip file ({describe(gz_exc)}): it is truncated or "
                    "corrupt; re-copy the CellRanger output directory."
                )
    return (
        f"could not read the 10x matrix directory ({describe(exc)}); check that {mtx.name} is a "
        f"MatrixMarket file and that {barcodes.name} / {features.name} have one line per matrix "
        "column / row (re-copy the CellRanger filtered_feature_bc_matrix/ directory)."
    )
