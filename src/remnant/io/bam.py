"""Allele counts per cell from aligned reads (BAM), in the layout of :func:`remnant.io.alleles.read_cellsnp`.

What cellsnp-lite does for a list of SNPs, done with pysam (htslib): for every heterozygous site and
every cell, the molecules (droplets: cell barcode + UMI) or fragments (plates) that show the REF
base, the ALT base, or another base. Three inputs are read:

droplet
    One coordinate-sorted, indexed BAM (Cell Ranger's ``possorted_genome_bam.bam``) whose reads carry
    the cell barcode (``CB``) and the UMI (``UB``). One molecule one vote: the reads of one (barcode,
    UMI) at a site collapse to their majority base class (REF, ALT or other); a tie counts nowhere.
    Duplicate-flagged reads are counted (the collapse is the deduplication; :data:`DUPLICATE`).
plate, one BAM per cell
    A manifest: cell name -> BAM path (:func:`read_bam_manifest` reads one from a two-column file).
    Every fragment counts once: the mates of a read pair that both cover a site vote as one;
    duplicate-flagged reads are skipped.
plate, one BAM with a per-cell tag
    As droplet with ``umi_tag=None`` and ``barcode_tag`` the per-cell tag (e.g. ``RG``).

Reads are taken from the index, one fetch per cluster of nearby sites; each read's CIGAR is walked
only up to the sites it covers (no pileup of every position: ``benchmarks/allele_counting.py``
compares the two and samtools mpileup).

Without a list of sites, :func:`find_sites` finds a patient's heterozygous SNVs in the pooled reads of
all its samples, inside given regions only: a read-level screen of every position (htslib's
``count_coverage``, window by window), then the candidates counted exactly as above (molecules or
fragments) and kept where both alleles reach the minimums.
"""

from __future__ import annotations

import bisect
import csv
import functools
import logging
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io._common import describe, new_adata
from remnant.io.alleles import _var_table, annotation_chromosome

logger = logging.getLogger(__name__)

__all__ = ["count_alleles", "find_sites", "read_bam_manifest", "read_sites", "SKIP_FLAGS", "DUPLICATE"]

#: Reads never counted: unmapped (0x4), secondary (0x100), QC-fail (0x200), supplementary (0x800).
SKIP_FLAGS = 0x4 | 0x100 | 0x200 | 0x800
#: The duplicate flag, skipped only without UMIs (as cellsnp-lite's --exclFLAG default): Cell Ranger
#: flags every read of a (barcode, UMI, gene) but one as a duplicate, and that one often does not cover
#: the site, so skipping them would lose most molecules; with UMIs the molecule collapse is the dedup.
DUPLICATE = 0x400
#: Sites closer than this (bp) share one fetch: a read between them is rare, one index seek per site is not.
MERGE_GAP = 200
#: Observations (read x site) held before they are collapsed to molecule counts (bounds the memory).
BATCH = 500_000
_BASES = frozenset("ACGT")
_REF, _ALT, _OTH = 0, 1, 2
#: CIGAR operations: consume reference and query (M, =, X), query only (I, S), reference only (D, N).
_MATCH, _QUERY, _SKIP = (0, 7, 8), (1, 4), (2, 3)
#: Reference bp per window of the discovery screen: its pooled base counts are 4 x WINDOW integers.
WINDOW = 1_000_000
#: The read screen keeps a position whose minor base reaches this share of ``min_minor_fraction``: reads
#: (PCR duplicates, both mates of a pair) are not molecules, so it is looser and the exact counts decide.
SCREEN_SLACK = 0.5
#: At most this many BAMs are held open at once by the screen (more: each is reopened per window).
MAX_OPEN = 256
_INDEX_HINT = "index it with `samtools index` (the .bai or .csi must sit next to the BAM)"


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------
def count_alleles(
    bam: str | PathLike | Mapping[str, str | PathLike],
    sites: pd.DataFrame | str | PathLike,
    *,
    cells: Iterable[str] | None = None,
    barcode_tag: str = "CB",
    umi_tag: str | None = "UB",
    min_mapq: int = 20,
    min_baseq: int = 20,
    skip_duplicates: bool | None = None,
    source: str | None = None,
) -> anndata.AnnData:
    """Count the REF and ALT molecules (or fragments) of each cell at each site.

    Parameters
    ----------
    bam
        A coordinate-sorted, indexed BAM (droplet, or plate with a per-cell ``barcode_tag``), or a
        plate manifest: cell name -> indexed BAM of that cell (``barcode_tag`` is then not read;
        :func:`read_bam_manifest` reads one from a file).
        Only read, never modified.
    sites
        A DataFrame with columns ``chromosome``, ``position`` (1-based), ``ref``, ``alt`` (one base
        each, A/C/G/T, REF != ALT; other columns ignored), or a VCF path (plain or bgzipped; only
        biallelic SNPs are kept; :func:`read_sites` reads only some regions of one). Chromosome names are matched to the BAM's (``5`` and ``chr5``,
        ``MT`` and ``chrM`` are the same contig) and kept as given in ``var``.
    cells
        Barcodes (or manifest cell names) to count, in the output's row order; cells without reads get
        zero rows. None: every barcode with a read that passes the read filters at a site, sorted
        (a manifest: its cells, in its order).
    barcode_tag, umi_tag
        Read tags of the cell barcode and the UMI (Cell Ranger: ``CB``, ``UB``). ``umi_tag=None``:
        no UMIs, each fragment (read, or read pair) is one vote. Reads without a needed tag are skipped.
    min_mapq, min_baseq
        Reads below this mapping quality and bases below this base quality (Phred) are not counted.
    skip_duplicates
        Skip reads flagged as PCR duplicates (0x400). None (default): only without UMIs; with UMIs the
        flag is ignored (:data:`DUPLICATE`). Unmapped, secondary, supplementary and QC-fail reads are
        always skipped.
    source
        What ``bam`` is to the caller (e.g. ``"row 3 (sample P1_dx)"``), put in error messages.

    Returns
    -------
    anndata.AnnData
        Cells x sites, as :func:`remnant.io.alleles.read_cellsnp` returns (and
        :func:`remnant.io.alleles.write_cellsnp` writes): ``X`` None; ``layers["AD"]`` (ALT
        molecules), ``layers["DP"]`` (REF + ALT) and ``layers["OTH"]`` (molecules showing another
        base), CSR int32 without stored zeros; ``obs_names`` the barcodes; ``var`` columns
        ``chromosome, position, ref, alt, site_id`` in the order of ``sites`` (``var_names`` the site
        IDs, repeats suffixed ``#k``). ``uns["alleles"]``: ``path``, ``source``, ``n_cells``,
        ``n_sites`` and ``reads`` (reads fetched, skipped per reason, used; a read overlapping two
        fetch windows counts in both) and ``molecules`` (counted, tied and dropped).

    Raises
    ------
    InputError
        One line naming the file and what to do: a BAM (or manifest entry) missing, unreadable or
        without index; sites on contigs the BAM lacks; no read at the sites carrying ``barcode_tag`` or
        ``umi_tag``; ``cells`` given but none of its barcodes in the BAM; bad sites (missing column,
        position not a positive integer, REF/ALT not one base).
    """
    table = _read_sites(sites, source)
    sources = _sources(bam, barcode_tag, source)
    if cells is None and isinstance(bam, Mapping):
        cells = list(bam)  # a manifest's cells, in its order
    if skip_duplicates is None:
        skip_duplicates = umi_tag is None
    tally = _Tally(table, cells, umi_tag, min_mapq, min_baseq, SKIP_FLAGS | (DUPLICATE if skip_duplicates else 0))
    for path, cell in sources:
        if cell is not None and tally.fixed_cells and cell not in tally.cell_of:
            continue  # a manifest cell not asked for: its BAM is not opened
        with _open_bam(path, _join(source, cell and f"cell {cell}")) as handle:
            contigs = _contig_map(handle, table["chromosome"], path, _join(source, cell and f"cell {cell}"))
            tally.scan(handle, contigs, cell, barcode_tag)
    where = next(iter(sources))[0] if len(sources) == 1 else f"{len(sources)} BAMs of the manifest"
    tally.check_tags(where, barcode_tag if sources[0][1] is None else None, source)
    if tally.stats["used"] == 0:
        logger.warning("%s: no read passing the filters covers any of the %d sites", where, len(table))
    adata = tally.result(_var_table(table))
    adata.uns["alleles"] |= {"path": str(where), "source": source or ""}
    logger.info(
        "counted %s: %d cells x %d sites, %d molecules", where, adata.n_obs, adata.n_vars, tally.stats["molecules"]
    )
    return adata


def _join(*parts: str | None) -> str | None:
    """``where`` of an InputError from its non-empty parts (``"row 3 (sample P1), cell A01"``)."""
    return ", ".join(p for p in parts if p) or None


def read_bam_manifest(path: str | PathLike) -> dict[str, Path]:
    """A plate's manifest: cell name -> BAM path, from a tab-separated file of two columns.

    One line per cell, ``cell<TAB>bam``; a first line ``cell<TAB>bam`` is a header and skipped; relative
    BAM paths are relative to the manifest's folder. Returns the cells in file order.

    Raises
    ------
    InputError
        Missing file, a line without two fields, an empty or repeated cell name.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise InputError("BAM manifest does not exist; give a file of lines 'cell<TAB>path/to/cell.bam'.", path=path)
    with open(manifest, encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t") if r and any(f.strip() for f in r)]
    if rows and [f.strip().lower() for f in rows[0][:2]] == ["cell", "bam"]:
        rows = rows[1:]
    out: dict[str, Path] = {}
    for k, row in enumerate(rows, start=1):
        cell = row[0].strip() if row else ""
        if len(row) != 2 or not cell or not row[1].strip():
            raise InputError(f"line {row!r} is not 'cell<TAB>bam' (two non-empty fields).", path=path, where=f"row {k}")
        if cell in out:
            raise InputError(f"cell {cell!r} is listed twice; each cell has one BAM.", path=path, where=f"row {k}")
        bam = Path(row[1].strip())
        out[cell] = bam if bam.is_absolute() else manifest.parent / bam
    if not out:
        raise InputError("BAM manifest lists no cell; give lines 'cell<TAB>path/to/cell.bam'.", path=path)
    return out


# --------------------------------------------------------------------------------------------
# sites
# --------------------------------------------------------------------------------------------
def _read_sites(sites, source: str | None) -> pd.DataFrame:
    """``chromosome`` (str), ``position`` (int64, 1-based), ``ref``, ``alt`` (upper-case bases), checked."""
    if isinstance(sites, pd.DataFrame):
        return _checked_sites(sites, "sites")
    return read_sites(sites, source=source)


def _checked_sites(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in ("chromosome", "position", "ref", "alt") if c not in frame.columns]
    if missing:
        raise InputError(f"lacks column(s) {missing}; sites need chromosome, position (1-based), ref, alt.", path=name)
    if frame.empty:
        raise InputError("lists no site; give at least one SNP.", path=name)
    chrom = frame["chromosome"].astype(str).str.strip().to_numpy(dtype=object)
    position = pd.to_numeric(frame["position"], errors="coerce").to_numpy(np.float64)
    ref, alt = (frame[c].astype(str).str.strip().str.upper().to_numpy(dtype=object) for c in ("ref", "alt"))
    base = np.array([r in _BASES and a in _BASES and r != a for r, a in zip(ref, alt)])
    bad = ~np.isfinite(position) | (position < 1) | (position % 1 != 0) | (chrom == "") | ~base
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        row = frame.iloc[k]
        raise InputError(
            f"{int(bad.sum())} bad site(s), first {row['chromosome']}:{row['position']} {row['ref']}>{row['alt']}: "
            "position must be a 1-based integer, ref and alt one base each (A, C, G or T) and different.",
            path=name,
            where=f"row {k + 1}",
        )
    return pd.DataFrame({"chromosome": chrom, "position": position.astype(np.int64), "ref": ref, "alt": alt})


def read_sites(
    path: str | PathLike, *, regions: Iterable[tuple[str, int, int]] | None = None, source: str | None = None
) -> pd.DataFrame:
    """The biallelic SNPs of a VCF, optionally only those inside some regions.

    Parameters
    ----------
    path
        A VCF, plain or bgzipped; with a tabix/CSI index beside it the regions are read from the index
        (a common-SNP list of millions of sites is not read whole), else the file is streamed.
    regions
        ``(chromosome, start, end)`` in bp, 0-based half-open (the annotation's convention): e.g. the
        lesion intervals and the control region. Names are matched to the VCF's (``5`` = ``chr5``);
        overlapping regions give each site once. None: every site.
    source
        What the file is to the caller, for error messages.

    Returns
    -------
    pandas.DataFrame
        ``chromosome`` (as in the VCF), ``position`` (int64, 1-based), ``ref``, ``alt`` (upper-case
        bases), one row per biallelic SNP in file order; other records (indels, multi-allelic sites)
        are dropped and counted in the log.

    Raises
    ------
    InputError
        The file is missing or no VCF, or holds no biallelic SNP (in the regions).
    """
    import pysam

    path = Path(path)
    if not path.is_file():
        raise InputError("sites VCF does not exist; give the VCF of the sites to count.", path=path, where=source)
    merged = _merged_regions(regions) if regions is not None else None
    rows, dropped = [], 0
    try:
        with pysam.VariantFile(str(path)) as vcf:
            for rec in _records(vcf, merged):
                alts = rec.alts or ()
                if len(alts) == 1 and rec.ref.upper() in _BASES and alts[0].upper() in _BASES:
                    rows.append((rec.chrom, rec.pos, rec.ref.upper(), alts[0].upper()))
                else:
                    dropped += 1
    except (OSError, ValueError) as exc:
        raise InputError(
            f"could not be read as a VCF ({describe(exc)}); give a VCF (plain or bgzipped) of the sites.",
            path=path,
            where=source,
        ) from exc
    inside = "" if merged is None else f" inside the {sum(len(v) for v in merged.values())} region(s)"
    if not rows:
        raise InputError(
            f"holds no biallelic SNP{inside} ({dropped} other record(s)); allele counting needs REF and ALT of one "
            "base each.",
            path=path,
            where=source,
        )
    if dropped:
        logger.info("%s: %d records that are no biallelic SNP not counted", path, dropped)
    return _checked_sites(pd.DataFrame(rows, columns=["chromosome", "position", "ref", "alt"]), str(path))


def _merged_regions(regions) -> dict[str, list[tuple[int, int]]]:
    """Normalised chromosome (``chr5``) -> sorted, non-overlapping ``(start, end)`` intervals."""
    by_chrom: dict[str, list[tuple[int, int]]] = {}
    for chrom, start, end in regions:
        by_chrom.setdefault(_normalised(chrom), []).append((int(start), int(end)))
    merged = {}
    for chrom, spans in by_chrom.items():
        out: list[list[int]] = []
        for start, end in sorted(spans):
            if out and start <= out[-1][1]:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([start, end])
        merged[chrom] = [(a, b) for a, b in out]
    return merged


@functools.lru_cache(maxsize=1024)
def _normalised(chromosome: str) -> str:
    """The gene table's name of a chromosome (``5`` -> ``chr5``), cached: called per VCF record."""
    return str(annotation_chromosome([str(chromosome)])[0])


def _records(vcf, merged: dict[str, list[tuple[int, int]]] | None):
    """The VCF's records, all or those inside the regions (from the index when there is one)."""
    if merged is None:
        yield from vcf.fetch()
        return
    if vcf.index is not None:
        contigs = {_normalised(c): c for c in vcf.header.contigs}
        for chrom, spans in merged.items():
            if chrom in contigs:
                for start, end in spans:
                    yield from vcf.fetch(contigs[chrom], start, end)
        return
    for rec in vcf.fetch():  # no index: stream, keep what lies inside
        spans = merged.get(_normalised(rec.chrom))
        if spans:
            k = bisect.bisect_right(spans, (rec.start, float("inf"))) - 1
            if k >= 0 and rec.start < spans[k][1]:
                yield rec


# --------------------------------------------------------------------------------------------
# BAM files
# --------------------------------------------------------------------------------------------
def _sources(bam, barcode_tag: str, source: str | None) -> list[tuple[Path, str | None]]:
    """(BAM, fixed cell or None) pairs: one pair for a tagged BAM, one per cell of a manifest."""
    if isinstance(bam, Mapping):
        if not bam:
            raise InputError("the BAM manifest lists no cell.", where=source)
        return [(Path(p), str(c)) for c, p in bam.items()]
    if not barcode_tag:
        raise ValueError("barcode_tag is needed for one BAM of many cells (give a manifest for one BAM per cell)")
    return [(Path(bam), None)]


def _open_bam(path: Path, source: str | None):
    """An open ``pysam.AlignmentFile`` with its index; InputError when the file or its index is missing
    or unreadable."""
    import pysam

    if not path.is_file():
        raise InputError(
            "BAM file does not exist; check the path (nothing is read from elsewhere).", path=path, where=source
        )
    try:
        handle = pysam.AlignmentFile(str(path), "rb")
    except (OSError, ValueError) as exc:
        raise InputError(
            f"could not be read as a BAM ({describe(exc)}); give a coordinate-sorted BAM (e.g. Cell Ranger's "
            "possorted_genome_bam.bam).",
            path=path,
            where=source,
        ) from exc
    if not handle.has_index():
        handle.close()
        raise InputError(f"has no index; {_INDEX_HINT}.", path=path, where=source)
    return handle


def _contig_map(handle, chromosomes: pd.Series, path: Path, source: str | None) -> dict[str, str]:
    """Site chromosome -> the BAM's contig of that name (``5`` = ``chr5``, ``MT`` = ``chrM``)."""
    contigs = list(handle.references)
    exact, by_norm = set(contigs), dict(zip(annotation_chromosome(contigs), contigs))
    wanted = pd.unique(chromosomes)
    out = {c: c if c in exact else by_norm.get(n) for c, n in zip(wanted, annotation_chromosome(wanted))}
    missing = [c for c, contig in out.items() if contig is None]
    if missing:
        raise InputError(
            f"has no contig for the sites on {missing[:5]} (its contigs: {contigs[:5]}...); the sites are of another "
            "reference: count only sites on the BAM's reference contigs.",
            path=path,
            where=source,
        )
    return out


# --------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------
class _Tally:
    """Observations (site, cell, molecule key, base class) of the reads scanned so far, collapsed to
    molecule counts per (cell, site) batch by batch."""

    def __init__(self, table: pd.DataFrame, cells, umi_tag: str | None, min_mapq: int, min_baseq: int, flags: int):
        self.table, self.umi_tag, self.flags = table, umi_tag, flags
        self.min_mapq, self.min_baseq = int(min_mapq), int(min_baseq)
        self.fixed_cells = cells is not None
        names = [str(c) for c in cells] if cells is not None else []
        self.cell_of = {c: k for k, c in enumerate(names)}
        if len(self.cell_of) < len(names):
            raise ValueError("cells holds a barcode twice")
        self.obs: tuple[list, list, list, list] = ([], [], [], [])
        self.parts: list[tuple[np.ndarray, ...]] = []
        keys = ("fetched", "filtered_flag", "low_mapq", "off_site", "no_barcode", "other_cell", "no_umi", "used")
        self.stats = dict.fromkeys(keys, 0) | {"molecules": 0, "tied": 0}
        self.example_tags: list[str] = []

    def windows(self, contigs: dict[str, str]):
        """(contig, start, stop, positions (0-based), site indices, ref, alt) per cluster of sites."""
        t = self.table
        contig = t["chromosome"].map(contigs).to_numpy()
        pos0 = t["position"].to_numpy(np.int64) - 1
        order = np.lexsort((pos0, contig))
        ref, alt = t["ref"].to_numpy(), t["alt"].to_numpy()
        new = np.ones(order.size, bool)
        new[1:] = (contig[order][1:] != contig[order][:-1]) | (np.diff(pos0[order]) > MERGE_GAP)
        for chunk in np.split(order, np.flatnonzero(new)[1:]):
            p = pos0[chunk]
            yield contig[chunk[0]], int(p[0]), int(p[-1]) + 1, p.tolist(), chunk.tolist(), ref[chunk], alt[chunk]

    def scan(self, handle, contigs: dict[str, str], cell: str | None, barcode_tag: str) -> None:
        """Count the reads of one BAM at every site (``cell``: the manifest cell all reads belong to)."""
        fixed = None if cell is None else self.cell_of[cell]  # a manifest's cells are always listed
        for window in self.windows(contigs):
            self._scan_window(handle, window, fixed, barcode_tag)
            if len(self.obs[0]) >= BATCH:
                self._collapse()

    def _scan_window(self, handle, window, fixed: int | None, barcode_tag: str) -> None:
        # long because: the inner loop over reads, written out with local names (it is the hot path)
        contig, start, stop, pos, idx, ref, alt = window
        n = len(pos)
        obs_site, obs_cell, obs_key, obs_base = self.obs
        umi_tag, min_mapq, min_baseq, skip = self.umi_tag, self.min_mapq, self.min_baseq, self.flags
        cell_of, fixed_cells, st = self.cell_of, self.fixed_cells, self.stats
        first = 0
        for read in handle.fetch(contig, start, stop):
            st["fetched"] += 1
            if read.flag & skip:
                st["filtered_flag"] += 1
                continue
            if read.mapping_quality < min_mapq:
                st["low_mapq"] += 1
                continue
            rs = read.reference_start
            while first < n and pos[first] < rs:
                first += 1
            re_ = read.reference_end
            if first == n or re_ is None or pos[first] >= re_:  # no CIGAR: placed but not aligned
                st["off_site"] += 1
                continue
            if fixed is None:
                try:
                    barcode = read.get_tag(barcode_tag)
                except KeyError:
                    st["no_barcode"] += 1
                    self._remember_tags(read)
                    continue
                cell = cell_of.get(barcode) if fixed_cells else cell_of.setdefault(barcode, len(cell_of))
                if cell is None:
                    st["other_cell"] += 1
                    continue
            else:
                cell = fixed
            if umi_tag is None:
                key = read.query_name
            else:
                try:
                    key = read.get_tag(umi_tag)
                except KeyError:
                    st["no_umi"] += 1
                    self._remember_tags(read)
                    continue
            seq, qual, cigar = read.query_sequence, read.query_qualities, read.cigartuples
            if seq is None:
                continue
            st["used"] += 1
            simple = len(cigar) == 1
            k = first
            while k < n and pos[k] < re_:
                q = pos[k] - rs if simple else _query_position(cigar, rs, pos[k])
                if q is not None and (qual is None or qual[q] >= min_baseq):
                    b = seq[q]
                    if b == ref[k]:
                        base = _REF
                    elif b == alt[k]:
                        base = _ALT
                    elif b in _BASES:
                        base = _OTH
                    else:  # N: no call
                        k += 1
                        continue
                    obs_site.append(idx[k])
                    obs_cell.append(cell)
                    obs_key.append(key)
                    obs_base.append(base)
                k += 1

    def _remember_tags(self, read) -> None:
        if not self.example_tags:
            self.example_tags = sorted({t for t, _ in read.get_tags()})

    def _collapse(self) -> None:
        """Turn the held observations into (cell, site, ALT, REF + ALT, other) molecule counts."""
        site, cell, key, base = self.obs
        if site:
            part, tied = _molecule_counts(
                np.asarray(site, np.int64), np.asarray(cell, np.int64), key, np.asarray(base, np.int8)
            )
            self.parts.append(part)
            self.stats["molecules"] += int(part[3].sum() + part[4].sum())
            self.stats["tied"] += tied
        for column in self.obs:
            column.clear()

    def check_tags(self, where, barcode_tag: str | None, source: str | None) -> None:
        """InputError when no read at the sites carried a needed tag, or none was of the cells asked for."""
        st = self.stats
        tags = f" (its reads carry {self.example_tags})" if self.example_tags else ""
        covering = st["used"] + st["no_barcode"] + st["other_cell"] + st["no_umi"]
        if barcode_tag and covering and st["no_barcode"] == covering:
            raise InputError(
                f"no read at the sites carries the cell-barcode tag {barcode_tag}{tags}; set the barcode tag to the "
                "one this BAM uses (Cell Ranger: CB; plates with one BAM per cell: give a manifest).",
                path=where,
                where=source,
            )
        if self.umi_tag and st["no_umi"] and st["used"] == 0:
            raise InputError(
                f"no read at the sites carries the UMI tag {self.umi_tag}{tags}; set the UMI tag to the one this "
                "BAM uses (Cell Ranger: UB), or none for reads without UMIs (plates).",
                path=where,
                where=source,
            )
        if barcode_tag and self.fixed_cells and st["other_cell"] and st["used"] == 0:
            raise InputError(
                f"none of the {len(self.cell_of)} cells asked for (e.g. {list(self.cell_of)[:3]}) has a read at the "
                f"sites, but {st['other_cell']} reads of other barcodes do: are the barcodes another sample's, or "
                "written with/without a '-1' suffix?",
                path=where,
                where=source,
            )

    def result(self, var: pd.DataFrame) -> anndata.AnnData:
        """Cells x sites AnnData of the counts (barcodes sorted when ``cells`` was not given)."""
        self._collapse()
        names = np.array(list(self.cell_of), dtype=object)
        shape = (len(names), len(var))
        cell, site, alt, dp, oth = (
            np.concatenate([p[k] for p in self.parts]) if self.parts else np.zeros(0, np.int64) for k in range(5)
        )
        layers = {}
        for tag, values in (("AD", alt), ("DP", dp), ("OTH", oth)):
            m = sp.csr_matrix((values.astype(np.int32), (cell, site)), shape=shape)
            m.eliminate_zeros()
            m.sort_indices()
            layers[tag] = m
        order = np.arange(len(names)) if self.fixed_cells else np.argsort(names.astype(str), kind="stable")
        adata = new_adata(
            obs=pd.DataFrame(index=pd.Index(names[order].astype(str))),
            var=var,
            layers={t: m[order] for t, m in layers.items()},
        )
        reads = {k: int(v) for k, v in self.stats.items() if k not in ("molecules", "tied")}
        adata.uns["alleles"] = {
            "n_cells": int(adata.n_obs),
            "n_sites": int(adata.n_vars),
            "reads": reads,
            "molecules": {"counted": int(self.stats["molecules"]), "tied_dropped": int(self.stats["tied"])},
        }
        return adata


def _query_position(cigar: list[tuple[int, int]], ref_start: int, target: int) -> int | None:
    """0-based position in the read's query of reference position ``target``; None in a deletion or
    intron (N) of the alignment."""
    r, q = ref_start, 0
    for op, length in cigar:
        if op in _MATCH:
            if target < r + length:
                return q + target - r
            r += length
            q += length
        elif op in _QUERY:
            q += length
        elif op in _SKIP:
            if target < r + length:
                return None
            r += length
    return None


def _molecule_counts(site: np.ndarray, cell: np.ndarray, key: list, base: np.ndarray) -> tuple[tuple, int]:
    """One vote per molecule: observations (site, cell, molecule key, base class) grouped by (site,
    cell, key); each group counts as its majority class, ties as nothing.

    Returns ``((cell, site, ALT, REF + ALT, other), n_tied)``: one row per (cell, site) with counts
    (int64 arrays), and how many molecules tied."""
    key_code = pd.factorize(pd.Series(key, dtype=object))[0].astype(np.int64)
    pair_code, pairs = pd.factorize(site * (int(cell.max()) + 1) + cell)
    pairs = np.asarray(pairs, np.int64)
    molecule, first = np.unique(pair_code.astype(np.int64) * (int(key_code.max()) + 1) + key_code, return_inverse=True)
    votes = np.bincount(first * 3 + base, minlength=3 * molecule.size).reshape(-1, 3)
    top = votes.max(axis=1)
    tied = (votes == top[:, None]).sum(axis=1) > 1
    winner = votes.argmax(axis=1)
    mol_pair = molecule // (int(key_code.max()) + 1)
    keep = ~tied
    counts = np.zeros((len(pairs), 3), np.int64)
    np.add.at(counts, (mol_pair[keep], winner[keep]), 1)
    n_cells = int(cell.max()) + 1
    pair_site, pair_cell = pairs // n_cells, pairs % n_cells
    alt, ref, oth = counts[:, _ALT], counts[:, _REF], counts[:, _OTH]
    return (pair_cell, pair_site, alt, ref + alt, oth), int(tied.sum())


# --------------------------------------------------------------------------------------------
# site discovery
# --------------------------------------------------------------------------------------------
def find_sites(
    bams,
    regions: Iterable[tuple[str, int, int]],
    *,
    min_depth: int = 10,
    min_minor_reads: int = 3,
    min_minor_fraction: float = 0.05,
    min_mapq: int = 20,
    min_baseq: int = 20,
    barcode_tag: str = "CB",
    umi_tag: str | None | list[str | None] = "UB",
    source: str | None = None,
) -> pd.DataFrame:
    """Heterozygous SNVs found in the pooled reads of several BAMs (one patient's samples), inside regions.

    Two passes. A screen: per window of :data:`WINDOW` bp of each region, the reads of every BAM
    (flags :data:`SKIP_FLAGS`, duplicates too without UMIs, ``min_mapq``, ``min_baseq``) piled up
    per base with htslib (``count_coverage``) and summed over the BAMs; a position is a candidate when
    its two most frequent bases reach ``min_depth`` reads together, the second ``min_minor_reads``
    reads and :data:`SCREEN_SLACK` x ``min_minor_fraction`` of the two. Then every base of the
    candidates counted exactly by :func:`count_alleles` (droplets: one molecule one vote; plates: one
    vote per fragment), summed over cells and BAMs; the two most frequent are REF and ALT (an error
    base with many reads of few molecules cannot hide the true minor allele), kept where REF + ALT >= ``min_depth``, the minor allele >=
    ``min_minor_reads`` and >= ``min_minor_fraction`` of REF + ALT, and the minor allele outnumbers
    the other two bases together (biallelic).

    There is no reference FASTA here: REF and ALT are the major and the minor base of the pooled
    counts (ties: alphabetical), not the genome's. That is enough for phasing: only which allele is
    which matters, and it is the same in every sample of the patient counted at these sites.

    Parameters
    ----------
    bams
        The patient's inputs: a list of indexed BAMs (droplet, or plate with a per-cell
        ``barcode_tag``), plate manifests (a path not ending ``.bam``: :func:`read_bam_manifest`; or
        a Mapping cell -> BAM), or a single one of these. Only read.
    regions
        ``(chromosome, start, end)`` in bp, 0-based half-open (the lesions and the control region);
        names matched to each BAM's contigs (``5`` = ``chr5``).
    min_depth, min_minor_reads, min_minor_fraction
        The minimums above (molecules with UMIs, fragments without; reads in the screen).
    min_mapq, min_baseq
        Mapping and base quality minimums (Phred).
    barcode_tag, umi_tag
        As :func:`count_alleles`; ``umi_tag`` one for all BAMs or a list, one per input (None for
        plates; manifests never use one).
    source
        What the inputs are to the caller (e.g. ``"patient P1"``), put in error messages.

    Returns
    -------
    pandas.DataFrame
        One row per site, in genome order (contigs as in the regions' order of first appearance):
        ``chromosome`` (as in ``regions``), ``position`` (int64, 1-based), ``ref``, ``alt`` (major,
        minor base), ``ref_count``, ``alt_count``, ``other_count`` (pooled molecules or fragments),
        ``depth`` (REF + ALT), ``minor_fraction`` (ALT / depth), ``screen_depth`` (reads of the two
        bases in the screen). ``attrs["discovery"]``: the minimums, inputs, windows and BAMs screened,
        candidates.

    Raises
    ------
    InputError
        One line naming the file: a BAM or manifest missing, unreadable, unindexed, without a contig of
        the regions; no input; no region; bad minimums.
    """
    # long because: the docstring documents both passes and every minimum; the body is short
    inputs = _discovery_inputs(bams, umi_tag, source)
    spans = _discovery_regions(regions)
    _check_minimums(min_depth, min_minor_reads, min_minor_fraction)
    screen = _Screen(min_mapq, min_baseq, min_depth, min_minor_reads, SCREEN_SLACK * min_minor_fraction)
    files = [(path, cell, umi) for target, umi, label in inputs for path, cell in _files_of(target, label)]
    candidates = screen.run(files, spans, source)
    counts = _exact_counts(inputs, candidates, barcode_tag, min_mapq, min_baseq)
    found = _kept_sites(candidates, counts, min_depth, min_minor_reads, min_minor_fraction)
    found.attrs["discovery"] = {
        "min_depth": int(min_depth),
        "min_minor_reads": int(min_minor_reads),
        "min_minor_fraction": float(min_minor_fraction),
        "inputs": [label for _, _, label in inputs],
        "bams": len(files),
        "windows": screen.windows,
        "candidates": len(candidates),
        "sites": len(found),
    }
    logger.info(
        "found %d heterozygous sites among %d candidates in %d BAM(s) of %d input(s)",
        len(found),
        len(candidates),
        len(files),
        len(inputs),
    )
    return found


def _discovery_inputs(bams, umi_tag, source: str | None) -> list[tuple[object, str | None, str]]:
    """(BAM path or manifest dict, UMI tag, label) per input; manifests read, UMI None for them."""
    items = [bams] if isinstance(bams, (str, PathLike, Mapping)) else list(bams)
    if not items:
        raise InputError("no BAM given; site discovery needs the patient's BAMs or plate manifests.", where=source)
    umis = list(umi_tag) if isinstance(umi_tag, (list, tuple)) else [umi_tag] * len(items)
    if len(umis) != len(items):
        raise ValueError(f"umi_tag lists {len(umis)} tags for {len(items)} inputs")
    out = []
    for item, umi in zip(items, umis):
        if isinstance(item, Mapping):
            out.append(({str(c): Path(p) for c, p in item.items()}, None, f"{len(item)}-cell manifest"))
        elif str(item).lower().endswith(BAM_SUFFIX):
            out.append((Path(item), umi, str(item)))
        else:
            out.append((read_bam_manifest(item), None, str(item)))
    return out


#: A BAM's name ending (anything else given as a path is a plate manifest).
BAM_SUFFIX = ".bam"


def _files_of(target, label: str) -> list[tuple[Path, str | None]]:
    """(BAM, manifest cell or None) per file of one input."""
    if isinstance(target, Mapping):
        if not target:
            raise InputError("the BAM manifest lists no cell.", path=label)
        return [(Path(p), str(c)) for c, p in target.items()]
    return [(Path(target), None)]


def _discovery_regions(regions) -> list[tuple[str, str, int, int]]:
    """(chromosome as given, normalised name, start, end) of the merged regions, in order of appearance."""
    given = [(str(c), int(s), int(e)) for c, s, e in regions]
    if not given:
        raise InputError("no region given; site discovery piles up only the lesions and the control region.")
    bad = [r for r in given if r[1] < 0 or r[2] <= r[1]]
    if bad:
        raise InputError(f"region {bad[0]} is empty or negative; give (chromosome, start, end) with 0 <= start < end.")
    names = {}
    for chrom, _, _ in given:
        names.setdefault(_normalised(chrom), chrom)
    merged = _merged_regions(given)
    return [(names[n], n, a, b) for n in names for a, b in merged[n]]


def _check_minimums(min_depth, min_minor_reads, min_minor_fraction) -> None:
    if int(min_minor_reads) < 1 or int(min_depth) < 2 or int(min_depth) < int(min_minor_reads):
        raise InputError(
            f"minimums min_depth {min_depth}, min_minor_reads {min_minor_reads}: need 1 <= min_minor_reads "
            "<= min_depth and min_depth >= 2 (both alleles seen).",
        )
    if not 0 < float(min_minor_fraction) <= 0.5:
        raise InputError(
            f"min_minor_fraction {min_minor_fraction} must lie in (0, 0.5]: the minor allele's share of the two."
        )


class _Screen:
    """Pass one: per window, the reads of every BAM piled up per base and summed; candidate positions."""

    def __init__(self, min_mapq, min_baseq, min_depth, min_minor, min_fraction):
        self.min_mapq, self.min_baseq = int(min_mapq), int(min_baseq)
        self.min_depth, self.min_minor, self.min_fraction = int(min_depth), int(min_minor), float(min_fraction)
        self.windows = 0

    def run(self, files, spans, source: str | None) -> pd.DataFrame:
        """Candidates: ``chromosome, position`` (1-based), ``ref`` (the major read base), ``screen_depth``
        (reads of the two top bases), in window order."""
        handles = _Handles(files, source)
        try:
            contigs = handles.contigs(spans)
            parts = [
                self._window(handles, contigs, chrom, norm, a, min(a + WINDOW, end))
                for chrom, norm, start, end in spans
                for a in range(start, end, WINDOW)
            ]
        finally:
            handles.close()
        columns = ["chromosome", "position", "ref", "screen_depth"]
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def _window(self, handles, contigs, chrom, norm, start, stop) -> pd.DataFrame:
        """Candidates of one window: each BAM piled up only over the spans its reads cover (allocation and
        work follow the reads, not the window's length), summed into one (4, window) array."""
        self.windows += 1
        pooled, touched = None, []
        for k, (_, umi) in enumerate(handles.files):
            handle, contig = handles.get(k), contigs[k][norm]
            keep = _read_filter(SKIP_FLAGS | (DUPLICATE if umi is None else 0), self.min_mapq)
            for a, b in _read_spans(handle.fetch(contig, start, stop), keep, start, stop):
                acgt = handle.count_coverage(contig, a, b, quality_threshold=self.min_baseq, read_callback=keep)
                if pooled is None:  # calloc'd: pages never touched cost nothing
                    pooled = np.zeros((4, stop - start), np.int64)
                # htslib's unsigned longs read as int64 (counts far below 2**63): no copy, no float promotion
                pooled[:, a - start : b - start] += np.vstack([np.frombuffer(x, dtype=np.int64) for x in acgt])
                touched.append((a, b))
        if pooled is None:
            return pd.DataFrame()
        parts = [self._candidates(pooled[:, a - start : b - start], chrom, a) for a, b in _merged(touched)]
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def _candidates(self, pooled: np.ndarray, chrom: str, start: int) -> pd.DataFrame:
        """Positions of a window's (4, n) base counts whose two top bases pass the screen."""
        covered = np.flatnonzero((pooled > 0).sum(axis=0) >= 2)  # two bases seen at least
        if covered.size == 0:
            return pd.DataFrame()
        sub = pooled[:, covered]
        order = np.argsort(-sub, axis=0, kind="stable")  # ties: A before C before G before T
        top = np.take_along_axis(sub, order[:2], axis=0)
        depth = top[0] + top[1]
        keep = (depth >= self.min_depth) & (top[1] >= self.min_minor) & (top[1] >= self.min_fraction * depth)
        bases = np.array(list("ACGT"), dtype=object)
        return pd.DataFrame(
            {
                "chromosome": chrom,
                "position": (start + covered[keep] + 1).astype(np.int64),
                "ref": bases[order[0][keep]],
                "screen_depth": depth[keep].astype(np.int64),
            }
        )


#: Reads closer than this (bp) share one pile-up span of the screen.
SPAN_GAP = 1_000


def _read_spans(reads, keep, start: int, stop: int) -> list[tuple[int, int]]:
    """Sorted, disjoint ``[a, b)`` inside ``[start, stop)`` covering the reads that pass ``keep`` (a
    read's span runs from its first to its last aligned base, introns included)."""
    spans: list[list[int]] = []
    for read in reads:
        end = read.reference_end
        if end is None or not keep(read):
            continue
        a, b = max(read.reference_start, start), min(end, stop)
        if spans and a <= spans[-1][1] + SPAN_GAP:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans if b > a]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of ``[a, b)`` spans, sorted and disjoint."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _read_filter(skip: int, min_mapq: int):
    """count_coverage's per-read test: none of the ``skip`` flags, mapping quality >= ``min_mapq``."""
    return lambda read: not (read.flag & skip) and read.mapping_quality >= min_mapq


class _Handles:
    """The screened BAMs, held open (up to :data:`MAX_OPEN`; beyond, reopened per use)."""

    def __init__(self, files, source: str | None):
        self.files = [(path, umi) for path, _, umi in files]
        self.where = [_join(source, cell and f"cell {cell}") for _, cell, _ in files]
        self.keep = len(files) <= MAX_OPEN
        self.open: dict[int, object] = {}
        self.last = None

    def get(self, k: int):
        if k in self.open:
            return self.open[k]
        if not self.keep and self.last is not None:
            self.last.close()
        handle = _open_bam(self.files[k][0], self.where[k])
        if self.keep:
            self.open[k] = handle
        else:
            self.last = handle
        return handle

    def contigs(self, spans) -> list[dict[str, str]]:
        """Per BAM: normalised chromosome of the regions -> its contig; InputError when it lacks one."""
        out = []
        for k, (path, _) in enumerate(self.files):
            handle = self.get(k)
            by_norm = dict(zip(annotation_chromosome(list(handle.references)), handle.references))
            missing = sorted({chrom for chrom, norm, _, _ in spans if norm not in by_norm})
            if missing:
                raise InputError(
                    f"has no contig for the regions on {missing[:5]} (its contigs: {list(handle.references)[:5]}...); "
                    "the BAM is of another reference.",
                    path=path,
                    where=self.where[k],
                )
            out.append(by_norm)
        return out

    def close(self) -> None:
        for handle in self.open.values():
            handle.close()
        if self.last is not None:
            self.last.close()
        self.open.clear()


def _exact_counts(inputs, candidates: pd.DataFrame, barcode_tag: str, min_mapq: int, min_baseq: int) -> np.ndarray:
    """(n_candidates, 4) molecules (fragments) showing A, C, G, T, summed over cells and inputs: each
    candidate counted as three sites, its screen major base against each other base."""
    n = len(candidates)
    total = np.zeros((n, 4), np.int64)
    if n == 0:
        return total
    ref = candidates["ref"].to_numpy()
    alts = np.array([[b for b in "ACGT" if b != r] for r in ref], dtype=object).ravel()
    sites = pd.DataFrame(
        {
            "chromosome": np.repeat(candidates["chromosome"].to_numpy(), 3),
            "position": np.repeat(candidates["position"].to_numpy(np.int64), 3),
            "ref": np.repeat(ref, 3),
            "alt": alts,
        }
    )
    code = {b: k for k, b in enumerate("ACGT")}
    rows = np.repeat(np.arange(n), 3)
    alt_code = np.array([code[b] for b in alts])
    ref_code = np.array([code[b] for b in ref])
    for target, umi, label in inputs:
        counted = count_alleles(
            target, sites, barcode_tag=barcode_tag, umi_tag=umi, min_mapq=min_mapq, min_baseq=min_baseq, source=label
        )
        alt = np.asarray(counted.layers["AD"].sum(axis=0)).ravel()
        dp = np.asarray(counted.layers["DP"].sum(axis=0)).ravel()
        np.add.at(total, (rows, alt_code), alt)
        total[np.arange(n), ref_code] += (dp - alt)[::3]  # the three rows of a candidate count its REF alike
    return total


def _kept_sites(candidates, counts: np.ndarray, min_depth, min_minor, min_fraction) -> pd.DataFrame:
    """The candidates whose exact counts pass, with REF/ALT the major/minor base (ties: alphabetical)."""
    order = np.argsort(-counts, axis=1, kind="stable")
    top = np.take_along_axis(counts, order[:, :2], axis=1)
    major, minor = top[:, 0], top[:, 1]
    other = counts.sum(axis=1) - major - minor
    depth = major + minor
    keep = (depth >= min_depth) & (minor >= min_minor) & (minor >= min_fraction * depth) & (minor > other)
    bases = np.array(list("ACGT"), dtype=object)
    c = candidates.reset_index(drop=True)
    out = pd.DataFrame(
        {
            "chromosome": c["chromosome"].astype(str).to_numpy(),
            "position": c["position"].to_numpy(np.int64),
            "ref": bases[order[:, 0]],
            "alt": bases[order[:, 1]],
            "ref_count": major,
            "alt_count": minor,
            "other_count": other,
            "depth": depth,
            "minor_fraction": np.divide(minor, depth, out=np.zeros(len(depth)), where=depth > 0),
            "screen_depth": c["screen_depth"].to_numpy(np.int64),
        }
    )
    return out.loc[keep].reset_index(drop=True)
