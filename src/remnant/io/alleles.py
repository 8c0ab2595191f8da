"""Allele counts per cell: cellsnp-lite output folders, read and written.

cellsnp-lite (Huang & Huang 2021) counts, for every cell barcode and every heterozygous SNP it was
given or found, the reads (UMIs) of the ALT allele and of REF + ALT. Numbat, XClone and vireo read its
output folder; so does :func:`read_cellsnp`:

``cellSNP.base.vcf`` or ``cellSNP.base.vcf.gz``
    ``##`` header lines, the ``#CHROM POS ID REF ALT QUAL FILTER INFO`` line, one row per SNP
    (``POS`` 1-based; ``INFO`` the totals over cells, ``AD=3;DP=10;OTH=0``).
``cellSNP.tag.AD.mtx``, ``cellSNP.tag.DP.mtx`` (optionally ``cellSNP.tag.OTH.mtx``), each maybe ``.gz``
    MatrixMarket coordinate integer matrices, SNPs x cells: row *i* is the *i*-th SNP of the VCF,
    column *j* the *j*-th barcode of ``cellSNP.samples.tsv``. ``AD`` counts the ALT allele, ``DP`` REF +
    ALT (so the REF count is ``DP - AD``), ``OTH`` other bases.
``cellSNP.samples.tsv``
    One cell barcode per line, no header.

In memory the counts are cells x SNPs (the transpose of the files), as every AnnData of remnant is.
Allele data are matched to a sample's cells by :func:`match_cells`.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
import shutil
import zlib
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io._common import INT_TOL, describe, new_adata, open_text
from remnant.io.annotation import _with_chr_prefix

logger = logging.getLogger(__name__)

#: The files that may hold each part of a cellsnp-lite folder (``--gzip`` compresses the VCF, and
#: users gzip the rest); a folder holds one of each required part, never two versions of one.
PARTS = {
    "vcf": ("cellSNP.base.vcf.gz", "cellSNP.base.vcf"),
    "AD": ("cellSNP.tag.AD.mtx.gz", "cellSNP.tag.AD.mtx"),
    "DP": ("cellSNP.tag.DP.mtx.gz", "cellSNP.tag.DP.mtx"),
    "OTH": ("cellSNP.tag.OTH.mtx.gz", "cellSNP.tag.OTH.mtx"),
    "samples": ("cellSNP.samples.tsv.gz", "cellSNP.samples.tsv"),
}
#: Parts a folder must hold (``OTH`` is optional: some pipelines drop it, nothing here needs it).
REQUIRED = ("vcf", "AD", "DP", "samples")
#: Count layers, in the order they are read and written.
TAGS = ("AD", "DP", "OTH")
#: ``var`` columns of :func:`read_cellsnp` (and what :func:`write_cellsnp` needs).
VAR_COLUMNS = ("chromosome", "position", "ref", "alt", "site_id")
#: :func:`match_cells` refuses allele data that hold fewer than this fraction of the sample's cells.
MIN_MATCHED_FRACTION = 0.5

_RECOPY = "re-copy the whole cellsnp-lite output folder (all files of one run)"
_INT32_MAX = np.iinfo(np.int32).max
#: Entries parsed per block of a matrix file (bounds the memory of the text parse).
_CHUNK = 1_000_000
#: A CellRanger-style GEM-well suffix (``-1``), the usual reason barcodes of two files do not match.
_SUFFIX_RE = re.compile(r"-\d+$")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_cellsnp(path: str | PathLike, *, source: str | None = None, regions=None) -> anndata.AnnData:
    """Read a cellsnp-lite output folder (the layout of the module docstring).

    Parameters
    ----------
    path
        The folder cellsnp-lite wrote (``--outDir``). Only read, never modified.
    source
        What the folder is to the caller (e.g. ``"row 3 (sample P1_dx)"``): put in every error message
        after the file name, and recorded in ``uns["alleles"]["source"]``.
    regions
        Keep only the SNPs inside these regions (each with ``chromosome`` as the gene table spells it,
        ``chr5``, and ``start``, ``end``: bp, 0-based half-open, as :class:`remnant.tl.Lesion`); the
        matrix entries of the other SNPs are checked as they are parsed but never stored, so memory
        follows the SNPs kept, not a genome-wide folder's. Default: every SNP.

    Returns
    -------
    anndata.AnnData
        Cells x SNPs (``n_obs`` barcodes in ``cellSNP.samples.tsv`` order, ``n_vars`` SNPs in VCF order).
        ``X`` is None: allele counts are no expression, and depth is read explicitly as ``layers["DP"]``
        (stored once). ``layers["AD"]`` (ALT reads/UMIs) and ``layers["DP"]`` (REF + ALT; the REF count
        is ``DP - AD``), and ``layers["OTH"]`` when the folder has it: CSR ``int32``, no stored zeros.
        ``obs_names`` the barcodes as in the file. ``var``: ``chromosome`` (str, as in the VCF: ``chr5``
        or ``5``, not renamed; :func:`annotation_chromosome` gives the gene table's name), ``position``
        (int64, 1-based), ``ref``, ``alt`` (str), ``site_id`` (``chrom:pos:ref>alt``); ``var_names`` are
        the site IDs, the k-th repeat of one (k >= 2) suffixed ``#k`` so that they stay unique. The VCF's
        ID, QUAL, FILTER and INFO columns are not kept (INFO holds totals over cells, which
        :func:`write_cellsnp` computes again). ``uns["alleles"]``: ``path`` (the folder), ``source``,
        ``files`` (part -> file name read), ``n_cells``, ``n_sites`` (kept), ``n_sites_read`` (in the VCF), ``chromosomes`` (the VCF's chromosome
        names, in file order).

    Raises
    ------
    InputError
        One line naming the file and what to do: folder or a required file missing, two versions of a
        part (``.vcf`` and ``.vcf.gz``), truncated gzip, a VCF without SNPs or with a bad row, empty or
        duplicated barcodes, a matrix that is not MatrixMarket coordinate, whose shape does not match
        the VCF's SNPs x the barcodes, or that holds negative, non-integer or repeated entries, and an
        ALT count above the depth (AD > DP). With ``regions``, repeats and AD > DP are looked for among
        the kept SNPs' entries only.
    """
    folder = Path(path)
    files = _part_files(folder, source)
    sites = _read_vcf(files["vcf"], source)
    barcodes = _read_barcodes(files["samples"], source)
    shape = (len(sites), len(barcodes))
    labels = (_site_ids(sites), barcodes)
    keep = None if regions is None else sites_in_regions(sites, regions)
    layers = {tag: _read_tag(files[tag], shape, labels, source, keep) for tag in TAGS if tag in files}
    var = _var_table(sites)
    if keep is not None:
        var = var.loc[keep]
    kept_labels = labels if keep is None else (labels[0][keep], labels[1])
    excess = _ad_above_dp(layers["AD"], layers["DP"], kept_labels)
    if excess:
        raise InputError(
            f"{excess} (ALT count above REF + ALT depth; {files['DP'].name} is the depth). AD and DP are from "
            f"different runs or swapped: {_RECOPY}.",
            path=files["AD"],
            where=source,
        )
    adata = new_adata(obs=pd.DataFrame(index=pd.Index(barcodes)), var=var, layers=layers)
    adata.uns["alleles"] = {
        "path": str(folder),
        "source": source or "",
        "files": {part: file.name for part, file in files.items()},
        "n_cells": int(adata.n_obs),
        "n_sites": int(adata.n_vars),
        "n_sites_read": int(len(sites)),
        "chromosomes": [str(c) for c in pd.unique(sites["chromosome"])],
    }
    logger.info("read %s: %d cells x %d SNPs (of %d in its VCF)", folder, adata.n_obs, adata.n_vars, len(sites))
    return adata


def sites_in_regions(sites: pd.DataFrame, regions) -> np.ndarray:
    """Which SNPs of a sites table lie inside any of some regions.

    Parameters
    ----------
    sites
        One row per SNP: ``chromosome`` (as its VCF spells it: ``5`` or ``chr5``) and ``position``
        (1-based bp), e.g. ``var`` of :func:`read_cellsnp` or :func:`remnant.io.read_sites`.
    regions
        Objects with ``chromosome`` (as the gene table spells it, ``chr5``), ``start`` and ``end`` (bp,
        0-based half-open), e.g. :class:`remnant.tl.Lesion` from :func:`remnant.tl.parse_lesions`.

    Returns
    -------
    numpy.ndarray
        Boolean (n_sites,): inside at least one region.
    """
    chrom = annotation_chromosome(sites["chromosome"])
    pos0 = sites["position"].to_numpy(np.int64) - 1
    keep = np.zeros(len(sites), dtype=bool)
    for region in regions:
        keep |= (chrom == region.chromosome) & (pos0 >= region.start) & (pos0 < region.end)
    return keep


def _part_files(folder: Path, where: str | None) -> dict[str, Path]:
    """Part -> file of a cellsnp-lite folder; InputError when the folder or a required part is missing
    or a part is there in two versions."""
    if not folder.exists():
        raise InputError(
            "cellsnp-lite folder does not exist; give the folder cellsnp-lite wrote (--outDir).", path=folder
        )
    if not folder.is_dir():
        raise InputError(
            "is a file, but cellsnp-lite output is a folder (cellSNP.base.vcf[.gz], cellSNP.tag.AD.mtx, "
            "cellSNP.tag.DP.mtx, cellSNP.samples.tsv); give the folder cellsnp-lite wrote (--outDir).",
            path=folder,
            where=where,
        )
    found = {part: [folder / n for n in names if (folder / n).is_file()] for part, names in PARTS.items()}
    doubled = [" and ".join(p.name for p in paths) for paths in found.values() if len(paths) > 1]
    if doubled:
        raise InputError(
            f"holds two versions of the same file ({'; '.join(doubled)}), so which is this run's is ambiguous; "
            "keep one and move the other out of the folder.",
            path=folder,
            where=where,
        )
    missing = [" or ".join(PARTS[part][::-1]) for part in REQUIRED if not found[part]]
    if missing:
        listing = sorted(p.name for p in folder.iterdir())[:8]
        raise InputError(
            f"cellsnp-lite folder lacks {'; '.join(missing)} (it holds {listing}); {_RECOPY}.",
            path=folder,
            where=where,
        )
    return {part: paths[0] for part, paths in found.items() if paths}


def _gzip_error(path: Path, exc: BaseException, where: str | None) -> InputError:
    return InputError(
        f"is not a complete gzip file ({describe(exc)}): it is truncated or corrupt; {_RECOPY}.",
        path=path,
        where=where,
    )


_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _join(*parts: str | None) -> str:
    """``where`` of an InputError from its non-empty parts (``"line 4, row 3 (sample P1)"``)."""
    return ", ".join(p for p in parts if p)


def _read_vcf(path: Path, where: str | None) -> pd.DataFrame:
    """``chromosome, position, ref, alt`` of each SNP row of a VCF (str, int64, str, str)."""
    try:
        with open_text(path) as handle:
            n_header = 0
            while handle.readline().startswith("#"):
                n_header += 1
        with open_text(path) as handle:
            rows = pd.read_csv(
                handle,
                sep="\t",
                header=None,
                skiprows=n_header,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                quoting=csv.QUOTE_NONE,
            )
    except pd.errors.EmptyDataError:
        rows = pd.DataFrame()
    except _GZIP_ERRORS as exc:
        raise _gzip_error(path, exc, where) from exc
    except (pd.errors.ParserError, OSError, UnicodeError) as exc:
        raise InputError(
            f"could not read as a VCF ({describe(exc)}); expected tab-separated rows CHROM POS ID REF ALT ... "
            f"after the # header lines; {_RECOPY}.",
            path=path,
            where=where,
        ) from exc
    if rows.empty:
        raise InputError(
            "lists no SNP (header lines only): cellsnp-lite counted no site in any cell. Usual causes: the "
            "chromosome names of its -R VCF differ from the BAM's (chr5 vs 5), or --cellTAG / --UMItag do not "
            "match the BAM's tags (cellsnp-lite FAQ); fix that and rerun cellsnp-lite.",
            path=path,
            where=where,
        )
    return _vcf_columns(rows, n_header, path, where)


def _vcf_columns(rows: pd.DataFrame, n_header: int, path: Path, where: str | None) -> pd.DataFrame:
    """The four columns kept of a VCF's rows, checked (line numbers counted in the file)."""
    if rows.shape[1] < 5:
        raise InputError(
            f"has {rows.shape[1]} tab-separated column(s); a VCF row is CHROM POS ID REF ALT QUAL FILTER INFO; "
            f"{_RECOPY}.",
            path=path,
            where=_join(f"line {n_header + 1}", where),
        )
    chrom, pos, ref, alt = (rows[k].str.strip() for k in (0, 1, 3, 4))
    position = pd.to_numeric(pos, errors="coerce")
    bad = (
        position.isna() | (position < 1) | (position != np.floor(position)) | (chrom == "") | (ref == "") | (alt == "")
    )
    if bad.any():
        k = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"bad SNP row {chr(9).join(rows.iloc[k, :5])!r}: CHROM, REF and ALT must be non-empty and POS a "
            f"1-based integer ({int(bad.sum())} such row(s)); {_RECOPY}.",
            path=path,
            where=_join(f"line {n_header + k + 1}", where),
        )
    columns = {"chromosome": chrom, "position": position.astype(np.int64), "ref": ref, "alt": alt}
    return pd.DataFrame({k: v.to_numpy() for k, v in columns.items()})


def _read_barcodes(path: Path, where: str | None) -> pd.Index:
    """The barcodes of ``cellSNP.samples.tsv``, one per line (trailing blank lines ignored)."""
    try:
        with open_text(path) as handle:
            lines = handle.read().splitlines()
    except _GZIP_ERRORS as exc:
        raise _gzip_error(path, exc, where) from exc
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"lists no cell barcode (one per line expected); {_RECOPY}.", path=path, where=where)
    barcodes = pd.Index([line.strip() for line in lines])
    bad = np.flatnonzero((barcodes == "") | barcodes.str.contains(r"\s", regex=True))
    if len(bad):
        raise InputError(
            f"line {bad[0] + 1} is {lines[bad[0]]!r}: expected one cell barcode per line (no blanks, no "
            f"header, no other columns); {_RECOPY}.",
            path=path,
            where=where,
        )
    if not barcodes.is_unique:
        repeated = barcodes[barcodes.duplicated()].unique()
        raise InputError(
            f"{len(repeated)} barcode(s) listed twice (e.g. {list(repeated[:3])}); cellsnp-lite writes each once, "
            f"so the --barcodeFile it was given repeated them: deduplicate it and rerun cellsnp-lite.",
            path=path,
            where=where,
        )
    return barcodes


def _site_ids(sites: pd.DataFrame) -> np.ndarray:
    """``chrom:pos:ref>alt`` of each SNP (str array)."""
    return (
        sites["chromosome"].astype(str)
        + ":"
        + sites["position"].astype(str)
        + ":"
        + sites["ref"].astype(str)
        + ">"
        + sites["alt"].astype(str)
    ).to_numpy(dtype=object)


def _var_table(sites: pd.DataFrame) -> pd.DataFrame:
    """``var`` of :func:`read_cellsnp`: the VCF's columns, ``site_id`` and unique ``var_names``."""
    var = sites.reset_index(drop=True).copy()
    var["site_id"] = _site_ids(sites)
    repeat = var.groupby("site_id", sort=False).cumcount().to_numpy() + 1
    names = np.where(repeat > 1, var["site_id"] + "#" + repeat.astype(str), var["site_id"])
    var.index = pd.Index(names.astype(str))
    return var


# ---- MatrixMarket ---------------------------------------------------------------------------
def _read_tag(path: Path, shape: tuple[int, int], labels: tuple, where: str | None, keep=None) -> sp.csr_matrix:
    """One ``cellSNP.tag.*.mtx`` (SNPs x cells on disk) as cells x SNPs CSR int32, checked; with ``keep``
    (boolean, one per SNP) cells x the kept SNPs."""
    try:
        with open_text(path) as handle:
            size = _mtx_header(handle, path, where)
            if size[:2] != shape:
                raise InputError(
                    f"is {size[0]} SNPs x {size[1]} cells, but the VCF lists {shape[0]} SNPs and cellSNP.samples.tsv "
                    f"{shape[1]} barcodes: the files are from different cellsnp-lite runs; {_RECOPY}.",
                    path=path,
                    where=where,
                )
            rows, cols, values = _mtx_entries(handle, size[2], labels, path, where, keep)
    except _GZIP_ERRORS as exc:
        raise _gzip_error(path, exc, where) from exc
    n_sites = shape[0] if keep is None else int(keep.sum())
    matrix = sp.csr_matrix((values, (cols, rows)), shape=(shape[1], n_sites))  # cells x SNPs
    if matrix.nnz < len(values):  # the constructor summed entries given twice; cellsnp-lite writes each once
        raise InputError(
            f"has {len(values) - matrix.nnz} entries listed twice (same SNP and cell); {_RECOPY}.",
            path=path,
            where=where,
        )
    matrix.eliminate_zeros()
    return matrix


def _mtx_header(handle, path: Path, where: str | None) -> tuple[int, int, int]:
    """Rows, columns and entries of a MatrixMarket coordinate file (its banner and size line read)."""
    banner = handle.readline().split()
    if len(banner) < 5 or banner[0].lower() != "%%matrixmarket" or banner[2].lower() != "coordinate":
        raise InputError(
            "is not a MatrixMarket coordinate matrix (its first line should be '%%MatrixMarket matrix coordinate "
            f"integer general'); {_RECOPY}.",
            path=path,
            where=where,
        )
    if banner[3].lower() not in ("integer", "real") or banner[4].lower() != "general":
        raise InputError(
            f"is a MatrixMarket '{banner[3]} {banner[4]}' matrix; allele counts are 'integer general'. {_RECOPY}.",
            path=path,
            where=where,
        )
    while (line := handle.readline()).startswith("%"):
        pass
    try:
        n_rows, n_cols, n_entries = (int(v) for v in line.split())
    except ValueError:
        raise InputError(
            f"size line {line.strip()!r} is not 'rows columns entries' (three integers); {_RECOPY}.",
            path=path,
            where=where,
        ) from None
    return n_rows, n_cols, n_entries


def _mtx_entries(handle, n_entries: int, labels: tuple, path: Path, where: str | None, keep=None) -> np.ndarray:
    """0-based SNP, cell and count of the entries after the size line (int32, 3 x ``n_entries``),
    checked block by block (:func:`_bad_entries`; ``labels`` the site IDs and barcodes). With ``keep``
    (boolean, one per SNP) only the kept SNPs' entries, their SNPs numbered among the kept ones.

    Parsed as text here: scipy.io.mmread truncates ``1.5`` in an "integer" file to 1 without a word."""
    shape = (len(labels[0]), len(labels[1]))
    if n_entries > shape[0] * shape[1]:
        raise InputError(
            f"its size line announces {n_entries} entries, more than its {shape[0]} SNPs x {shape[1]} cells; {_RECOPY}.",
            path=path,
            where=where,
        )
    # all entries: filled block by block (no list of parsed blocks kept); some SNPs: only their blocks kept
    out = np.empty((3, n_entries), dtype=np.int32) if keep is None else []
    new_row = None if keep is None else np.cumsum(keep) - 1  # a kept SNP's row among the kept ones
    n_read = 0
    try:
        reader = pd.read_csv(handle, sep=r"\s+", header=None, dtype=np.float64, comment="%", chunksize=_CHUNK)
        for chunk in reader:
            n_read = _store_block(chunk, out, n_read, shape, labels, n_entries, keep, new_row)
    except pd.errors.EmptyDataError:
        pass
    except InputError as exc:
        raise InputError(f"{exc.detail}; {_RECOPY}.", path=path, where=where) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(
            f"could not read its entries ({describe(exc)}); each line after the size line is 'row column value' "
            f"(three numbers); {_RECOPY}.",
            path=path,
            where=where,
        ) from exc
    if n_read != n_entries:
        raise InputError(
            f"has {n_read} entries, but its size line announces {n_entries}: the file is truncated; {_RECOPY}.",
            path=path,
            where=where,
        )
    if keep is None:
        return out
    return np.concatenate(out, axis=1) if out else np.empty((3, 0), dtype=np.int32)


def _store_block(chunk, out, start: int, shape: tuple, labels: tuple, n_entries: int, keep=None, new_row=None) -> int:
    """Check one parsed block of ``row column value`` lines and store it (0-based, int32): in array ``out``
    from entry ``start``, or, with ``keep`` (boolean per SNP), its kept SNPs' entries (rows renumbered by
    ``new_row``) appended to list ``out``. Returns the entries read so far; InputError (no path) for bad
    entries or more than ``n_entries``."""
    if chunk.shape[1] != 3:
        raise ValueError(f"{chunk.shape[1]} fields per entry line")
    entries = chunk.to_numpy()
    rows, cols, values = entries[:, 0] - 1, entries[:, 1] - 1, entries[:, 2]
    problem = _bad_entries(rows, cols, values, shape, labels)
    if problem:
        raise InputError(problem)
    end = start + len(entries)
    if end > n_entries:
        raise InputError(f"has more entries than its size line announces ({n_entries})")
    if keep is None:
        out[:, start:end] = np.stack([rows, cols, np.rint(values)])
        return end
    row = rows.astype(np.int64)
    on = keep[row]
    out.append(np.stack([new_row[row[on]], cols[on], np.rint(values[on])]).astype(np.int32))
    return end


def _bad_entries(rows, cols, values, shape: tuple[int, int], labels: tuple) -> str | None:
    """What is wrong with a matrix's entries (first at SNP / cell, by name), or None.

    ``rows``/``cols`` 0-based SNP/cell indices; ``labels`` the site IDs and barcodes."""
    if len(values) == 0:
        return None
    outside = (rows < 0) | (rows >= shape[0]) | (cols < 0) | (cols >= shape[1]) | (rows % 1 != 0) | (cols % 1 != 0)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        return (
            f"{int(outside.sum())} entries outside its {shape[0]} SNPs x {shape[1]} cells (first: row {rows[k] + 1:g}, "
            f"column {cols[k] + 1:g})"
        )
    checks = (
        ("missing/non-finite", ~np.isfinite(values)),
        ("negative", values < 0),
        ("non-integer", np.abs(values - np.rint(values)) > INT_TOL),
        ("too large (above 2**31 - 1)", values > _INT32_MAX),
    )
    for what, bad in checks:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            site, cell = labels[0][int(rows[k])], labels[1][int(cols[k])]
            return f"{int(bad.sum())} {what} count(s); first at SNP {site}, cell {cell} (value {values[k]:g})"
    return None


def _ad_above_dp(ad: sp.csr_matrix, dp: sp.csr_matrix, labels: tuple) -> str | None:
    """``"N entries where AD > DP; first at ..."`` for cells x SNPs matrices, or None."""
    excess = (ad > dp).tocoo()  # boolean, compared in the stored dtype: no int64 copies of the counts
    excess.eliminate_zeros()
    if excess.nnz == 0:
        return None
    k = int(np.lexsort((excess.row, excess.col))[0])  # the first in file order: by SNP, then cell
    cell, site = int(excess.row[k]), int(excess.col[k])
    return (
        f"{excess.nnz} entries where AD > DP; first at SNP {labels[0][site]}, cell {labels[1][cell]} "
        f"(AD {ad[cell, site]}, DP {dp[cell, site]})"
    )


def annotation_chromosome(chromosome: Iterable[str]) -> np.ndarray:
    """Chromosome names as remnant's gene table spells them (``chr5``, ``chrX``, ``chrM``).

    :func:`read_cellsnp` keeps the VCF's names (Ensembl-style references write ``5``, ``MT``); to place
    SNPs among the genes of :func:`remnant.io.annotation.load_genes`, compare
    ``annotation_chromosome(alleles.var["chromosome"])`` with ``genes["chromosome"]``. The rule is the
    one the gene table itself is built with: ``chr`` is prefixed where missing and ``chrMT`` becomes
    ``chrM``. Returns a str array of the same length.
    """
    values = chromosome if isinstance(chromosome, pd.Series | np.ndarray) else list(chromosome)
    # a few distinct names over many SNPs: the string rule runs once per name, not once per SNP
    codes, names = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    return _with_chr_prefix(pd.Series(names, dtype=object)).to_numpy(dtype=object)[codes]


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def write_cellsnp(adata: anndata.AnnData, path: str | PathLike) -> Path:
    """Write allele counts as a cellsnp-lite output folder (plain ``.vcf`` and ``.mtx`` files).

    Parameters
    ----------
    adata
        Cells x SNPs shaped as :func:`read_cellsnp` returns: ``layers["AD"]`` and ``layers["DP"]``
        (integer counts, AD <= DP; ``layers["OTH"]`` is written when present), ``var`` columns
        ``chromosome``, ``position`` (1-based), ``ref``, ``alt``. ``obs_names`` are written as the
        barcodes (after :func:`match_cells` these are ``"{sample}:{barcode}"``).
    path
        A folder that does not exist yet (or is empty); created with its parents.

    Returns
    -------
    Path
        The folder, holding ``cellSNP.base.vcf`` (INFO ``AD``, ``DP`` and ``OTH``: totals over cells, as
        cellsnp-lite writes them), ``cellSNP.tag.AD.mtx``, ``cellSNP.tag.DP.mtx`` (and ``.OTH.mtx``) as
        SNPs x cells, entries in SNP then cell order, zeros not stored, and ``cellSNP.samples.tsv``.
        ``read_cellsnp(write_cellsnp(x, p))`` gives back ``x``'s layers, ``obs_names`` and ``var``.

    Raises
    ------
    InputError
        ``path`` is a file or a non-empty folder: nothing is overwritten.
    ValueError
        ``adata`` lacks a layer or ``var`` column, or holds counts a cellsnp-lite folder cannot
        (negative, non-integer, AD > DP, names with whitespace).
    """
    folder = Path(path)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(
            "exists and is not an empty folder; write_cellsnp never overwrites anything: name a new folder.",
            path=folder,
        )
    layers, sites = _checked_for_writing(adata)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    partial.mkdir()
    try:
        _write_vcf(partial / "cellSNP.base.vcf", sites, layers)
        for tag, matrix in layers.items():
            _write_mtx(partial / f"cellSNP.tag.{tag}.mtx", matrix)
        (partial / "cellSNP.samples.tsv").write_text("".join(f"{b}\n" for b in adata.obs_names), encoding="utf-8")
        os.replace(partial, folder)  # a half-written folder is never seen under the name asked for
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    logger.info("wrote %s: %d cells x %d SNPs", folder, adata.n_obs, adata.n_vars)
    return folder


def _checked_for_writing(adata: anndata.AnnData) -> tuple[dict[str, sp.csr_matrix], pd.DataFrame]:
    """The count layers (cells x SNPs CSR) and the site columns of ``adata``; ValueError when a
    cellsnp-lite folder cannot hold them."""
    missing = [f'layers["{t}"]' for t in ("AD", "DP") if t not in adata.layers]
    missing += [f'var["{c}"]' for c in VAR_COLUMNS[:4] if c not in adata.var.columns]
    if missing:
        raise ValueError(f"write_cellsnp needs {', '.join(missing)} (the layout read_cellsnp returns)")
    layers = {t: sp.csr_matrix(adata.layers[t]) for t in TAGS if t in adata.layers}
    sites = pd.DataFrame({c: adata.var[c].to_numpy() for c in VAR_COLUMNS[:4]})
    labels = (_site_ids(sites), adata.obs_names)
    for tag, matrix in layers.items():
        coo = matrix.tocoo()
        problem = _bad_entries(coo.col, coo.row, coo.data.astype(np.float64), adata.shape[::-1], labels)
        if problem:
            raise ValueError(f'layers["{tag}"]: {problem}')
    problem = _ad_above_dp(layers["AD"], layers["DP"], labels)
    if problem:
        raise ValueError(f'layers["AD"] above layers["DP"]: {problem}')
    position = pd.to_numeric(sites["position"], errors="coerce")
    if position.isna().any() or (position < 1).any() or (position % 1 != 0).any():
        raise ValueError('var["position"] must hold 1-based integer positions')
    sites["position"] = position.astype(np.int64)
    for name, values in [
        ("obs_names", adata.obs_names),
        *((f'var["{c}"]', sites[c]) for c in ("chromosome", "ref", "alt")),
    ]:
        text = pd.Index(values).astype(str)
        if (text == "").any() or text.str.contains(r"\s", regex=True).any():
            raise ValueError(
                f"{name} must be non-empty and hold no whitespace (a cellsnp-lite folder is tab-separated)"
            )
    if not adata.obs_names.is_unique:
        raise ValueError("obs_names must be unique: they are the barcodes of cellSNP.samples.tsv")
    return {t: m.astype(np.int32) for t, m in layers.items()}, sites  # checked: every count fits


def _write_vcf(path: Path, sites: pd.DataFrame, layers: dict[str, sp.csr_matrix]) -> None:
    """``cellSNP.base.vcf`` as cellsnp-lite writes it: its header, then CHROM POS . REF ALT . PASS INFO."""
    totals = {t: np.asarray(m.sum(axis=0, dtype=np.int64)).ravel() for t, m in layers.items()}
    info = pd.Series("AD=" + totals["AD"].astype(str) + ";DP=" + totals["DP"].astype(str))
    if "OTH" in totals:
        info = info + ";OTH=" + totals["OTH"].astype(str)
    header = [
        "##fileformat=VCFv4.2",
        "##source=remnant.io.write_cellsnp (cellsnp-lite layout)",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="total counts for ALT and REF">',
        '##INFO=<ID=AD,Number=1,Type=Integer,Description="total counts for ALT">',
    ]
    if "OTH" in totals:
        header.append(
            '##INFO=<ID=OTH,Number=1,Type=Integer,Description="total counts for other bases from REF and ALT">'
        )
    header += [f"##contig=<ID={c}>" for c in pd.unique(sites["chromosome"].astype(str))]
    header.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    body = pd.DataFrame(
        {
            "chrom": sites["chromosome"].astype(str),
            "pos": sites["position"],
            "id": ".",
            "ref": sites["ref"].astype(str),
            "alt": sites["alt"].astype(str),
            "qual": ".",
            "filter": "PASS",
            "info": info.to_numpy(),
        }
    )
    with open(path, "x", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(header) + "\n")
        body.to_csv(handle, sep="\t", header=False, index=False, lineterminator="\n", quoting=csv.QUOTE_NONE)


def _write_mtx(path: Path, cells_by_sites: sp.csr_matrix) -> None:
    """One ``cellSNP.tag.*.mtx``: SNPs x cells, 1-based, tab-separated, SNP then cell order, no zeros."""
    matrix = sp.csr_matrix(cells_by_sites.T)  # SNPs x cells; CSR lists entries by SNP, then cell
    matrix.eliminate_zeros()
    matrix.sort_indices()
    rows = np.repeat(np.arange(1, matrix.shape[0] + 1), np.diff(matrix.indptr))
    with open(path, "x", encoding="utf-8", newline="") as handle:
        handle.write("%%MatrixMarket matrix coordinate integer general\n%\n")
        handle.write(f"{matrix.shape[0]}\t{matrix.shape[1]}\t{matrix.nnz}\n")
        for start in range(0, matrix.nnz, _CHUNK):
            part = slice(start, start + _CHUNK)
            entries = pd.DataFrame({"i": rows[part], "j": matrix.indices[part] + 1, "v": matrix.data[part]})
            entries.to_csv(handle, sep="\t", header=False, index=False, lineterminator="\n")


# --------------------------------------------------------------------------------------------
# matching to a sample's cells
# --------------------------------------------------------------------------------------------
def match_cells(
    alleles: anndata.AnnData,
    cells: Iterable[str],
    *,
    sample: str,
    counts_source: str | PathLike | None = None,
) -> anndata.AnnData:
    """The allele counts of one sample's cells, in the order of its count matrix.

    remnant names a cell ``"{sample}:{barcode}"`` in the cohort (:func:`remnant.io.sample.read_sample`,
    with ``obs["barcode"]`` the barcode as in the count matrix); cellsnp-lite names it by the barcode
    alone. The barcode after the ``"{sample}:"`` prefix is looked up among ``alleles.obs_names``, as is:
    no suffix is added or removed, since guessing could pair a cell with another cell's reads.

    Parameters
    ----------
    alleles
        From :func:`read_cellsnp` (cells x SNPs, ``layers`` AD, DP and maybe OTH).
    cells
        The sample's cells as the cohort names them, each ``"{sample}:{barcode}"``.
    sample
        The sample's name (the prefix of ``cells``).
    counts_source
        The count matrix the cells come from, for the error message.

    Returns
    -------
    anndata.AnnData
        ``len(cells)`` x SNPs: ``obs_names`` = ``cells`` (same order), each layer of ``alleles`` with the
        row of the cell's barcode, or a row of zeros for a cell cellsnp-lite did not list (CSR int32);
        ``obs["barcode"]`` and ``obs["has_alleles"]`` (bool); ``var`` as in ``alleles``; ``X`` None.
        ``uns["alleles"]`` is the input's plus ``sample``, ``n_cells`` (the sample's), ``n_matched``,
        ``n_missing`` (cells without allele data) and ``n_dropped`` (allele barcodes that are no cell
        of the sample: empty droplets or cells removed upstream, dropped here).

    Raises
    ------
    InputError
        Fewer than :data:`MIN_MATCHED_FRACTION` of the cells have a barcode in the allele data; the
        message gives example barcodes of both files and says whether a ``-1`` suffix on one side
        explains it (else: another sample's folder?).
    ValueError
        A name of ``cells`` does not start with ``"{sample}:"``.
    """
    names = pd.Index([str(c) for c in cells])
    prefix = f"{sample}:"
    foreign = ~names.str.startswith(prefix) if len(names) else np.zeros(0, bool)
    if foreign.any():
        raise ValueError(f"cell {names[foreign][0]!r} is not named '{prefix}<barcode>' (cells of sample {sample!r})")
    barcodes = pd.Index(names.str.slice(len(prefix)))
    position = alleles.obs_names.get_indexer(barcodes)
    found = position >= 0
    info = dict(alleles.uns.get("alleles", {}))
    if len(names) and found.sum() < MIN_MATCHED_FRACTION * len(names):
        raise _mismatch_error(alleles, barcodes, int(found.sum()), sample, counts_source, info)
    layers = {tag: _rows_or_zeros(sp.csr_matrix(m), position) for tag, m in alleles.layers.items()}
    obs = pd.DataFrame({"barcode": barcodes.to_numpy(dtype=object), "has_alleles": found}, index=names)
    matched = new_adata(obs=obs, var=alleles.var.copy(), layers=layers)
    n_matched = int(found.sum())
    info |= {
        "sample": sample,
        "n_cells": int(len(names)),
        "n_matched": n_matched,
        "n_missing": int(len(names) - n_matched),
        "n_dropped": int(alleles.n_obs - n_matched),
    }
    matched.uns["alleles"] = info
    logger.info(
        "%s: allele data for %d of %d cells; %d allele barcodes are no cell of the sample (dropped)",
        sample,
        n_matched,
        len(names),
        info["n_dropped"],
    )
    return matched


def _rows_or_zeros(matrix: sp.csr_matrix, position: np.ndarray) -> sp.csr_matrix:
    """Rows ``position`` of a CSR matrix (int32), a row of zeros where ``position`` is -1."""
    found = position >= 0
    taken = matrix[position[found]]
    per_row = np.zeros(len(position), dtype=np.int64)
    per_row[found] = np.diff(taken.indptr)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    shape = (len(position), matrix.shape[1])
    return sp.csr_matrix((taken.data.astype(np.int32), taken.indices, indptr), shape=shape)


def _mismatch_error(alleles, barcodes: pd.Index, n_found: int, sample: str, counts_source, info: dict) -> InputError:
    """The error of :func:`match_cells` when the allele data miss most cells: examples of both sides and
    the likely cause."""
    folder = info.get("path") or "the allele data"
    theirs = alleles.obs_names
    stripped = pd.Index(theirs.str.replace(_SUFFIX_RE, "", regex=True)).unique()
    n_stripped = int(pd.Index(barcodes.str.replace(_SUFFIX_RE, "", regex=True)).isin(stripped).sum())
    if n_stripped >= MIN_MATCHED_FRACTION * len(barcodes):
        cause = (
            f"without a '-<number>' suffix {n_stripped} would match: one side carries CellRanger's '-1' suffix and "
            "the other not. Run cellsnp-lite with --barcodeFile set to this sample's barcodes.tsv.gz"
        )
    else:
        cause = "no barcode suffix explains it: is the folder another sample's cellsnp-lite output?"
    counts = f"the count matrix {counts_source}" if counts_source else "the count matrix"
    return InputError(
        f"only {n_found} of the {len(barcodes)} cells of {counts} (e.g. {list(barcodes[:3])}) have a barcode in "
        f"cellSNP.samples.tsv (e.g. {list(theirs[:3])}); {cause}.",
        path=folder,
        where=f"sample {sample}",
    )
