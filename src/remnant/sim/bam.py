"""Small, real BAM files of a simulated sample's allele reads, so that the BAM path is tested end to end.

From a sample's allele counts (:attr:`remnant.sim.cohort.SimulatedCohort.alleles`, cells x sites,
``layers`` AD and DP) every (cell, site) with DP > 0 becomes DP molecules, AD of them showing the ALT
base and the rest the REF base, each a read (or several) of ``read_length`` bp whose alignment covers
the site. Counting the files with :func:`remnant.io.bam.count_alleles` (``cells`` the sample's barcodes)
gives back exactly AD and DP; :attr:`SimulatedBam.oth` is what it must give as OTH. What the counting
has to get right is in the files on purpose:

- **Molecules with several reads** (droplets): 1-3 reads per UMI; a third of the 3-read molecules have
  one read showing the other allele (a PCR/sequencing error: the majority still decides). As Cell
  Ranger does, every read of a molecule but one is flagged duplicate (0x400), and for 10% of the
  molecules that one too (Cell Ranger keeps one read per barcode, UMI and gene, often off the site):
  with UMIs duplicates count, the collapse being the deduplication.
- **Tied molecules** (droplets): per (cell, site), with probability ``tie_rate``, an extra molecule of
  one REF and one ALT read: one molecule one vote drops it.
- **Other bases**: with probability ``other_rate`` an extra molecule showing a third base (OTH only).
- **Alignments**: soft clips, insertions, deletions and introns (N) beside the site, on ~30% of reads.
- **Overlapping mates** (plates): ~20% of fragments are pairs whose two mates cover the site: one vote.
- **Noise reads** that must count nowhere, ``noise`` of each: secondary, supplementary, QC-fail and
  unmapped flags, MAPQ 3, base quality 5 at the site, a deletion over the site; without UMIs a
  duplicate (a fragment of its own, flagged 0x400); with barcodes a read without ``CB`` and one of a
  barcode that is no cell; with UMIs one without ``UB``.

The other aligned bases of a read are those of a fixed pseudo-random reference genome (:func:`reference_bases`,
a hash of contig and position: every read covering a position shows the same base there, so the only
polymorphic positions are the sites), except at another site it covers, where they are ``N`` (no call),
so that each read counts at its own site only; inserted and soft-clipped bases are random. With
``error_rate`` > 0 each of those other aligned bases is replaced by another base with that probability
(sequencing errors away from the sites, for site discovery to reject). Reads are written
coordinate-sorted, with a BAM index.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["SimulatedBam", "reference_bases", "write_bam", "write_plate_bams"]

_CODE = np.frombuffer(b"ACGT", dtype=np.uint8)
#: Alignment shapes: plain match, soft clip at the start, insertion, deletion, intron (N) beside the site.
_PLAIN, _CLIP, _INS, _DEL, _INTRON = range(5)
_SHAPE_P = (0.7, 0.08, 0.07, 0.07, 0.08)
#: Noise kinds; the first seven in every BAM, the last three only where reads carry barcode tags.
_NOISE = ("duplicate", "secondary", "supplementary", "qcfail", "unmapped", "low_mapq", "low_baseq", "deleted")
_NOISE_TAGGED = ("no_barcode", "no_umi", "other_barcode")
_FLAG = {"duplicate": 0x400, "secondary": 0x100, "supplementary": 0x800, "qcfail": 0x200, "unmapped": 0x4}
_MIN_POSITION = 2_500  # room for an intron before the site


@dataclass
class SimulatedBam:
    """What :func:`write_bam` or :func:`write_plate_bams` wrote.

    Attributes
    ----------
    path
        The BAM (droplet, or plate with a cell tag) or the manifest (``manifest.tsv``: ``cell<TAB>bam``).
    bams
        Cell -> BAM for a manifest (empty for one BAM).
    oth
        (cells, sites) CSR int32: the OTH counts counting must give (the extra other-base molecules).
    n_reads
        Reads written (noise included); ``n_noise`` of them noise, ``n_tied`` tied molecules.
    """

    path: Path
    bams: dict[str, Path]
    oth: sp.csr_matrix
    n_reads: int
    n_noise: int
    n_tied: int


def write_bam(
    alleles: anndata.AnnData,
    path: str | PathLike,
    *,
    seed: int = 0,
    read_length: int = 90,
    barcode_tag: str = "CB",
    umi_tag: str | None = "UB",
    tie_rate: float = 0.05,
    other_rate: float = 0.03,
    noise: int = 2,
    ensembl_names: bool = False,
    error_rate: float = 0.0,
) -> SimulatedBam:
    """Write one coordinate-sorted, indexed BAM of a sample's allele reads (module docstring).

    Parameters
    ----------
    alleles
        Cells x sites with ``layers["AD"]``, ``layers["DP"]`` and ``var`` ``chromosome``, ``position``
        (1-based, >= 2,500), ``ref``, ``alt`` (:attr:`SimulatedCohort.alleles` of a sample).
    path
        The BAM to create (``.bai`` written beside it); refuses to overwrite.
    seed
        Seed of every draw (shapes, bases, reads per molecule, noise).
    read_length
        Bases per read (>= 40).
    barcode_tag, umi_tag
        Tags of the cell barcode (``obs_names``) and the UMI. ``umi_tag=None``: a plate with a per-cell
        tag, one read (or read pair) per counted fragment, no tied molecules.
    tie_rate, other_rate
        Per (cell, site) with reads: probability of an extra tied molecule (with UMIs only), of an
        extra molecule showing a third base.
    noise
        Reads of each noise kind.
    ensembl_names
        Name the contigs ``5`` rather than ``chr5`` (``chrM`` as ``MT``), as Ensembl references do.
    error_rate
        Probability that an aligned base away from the sites is read as another base (0: none, and no
        draw, so the files of a seed are as without this option).
    """
    rng = np.random.default_rng(seed)
    reads, oth, n_tied = _molecule_reads(
        alleles, rng, umi=umi_tag is not None, tie_rate=tie_rate, other_rate=other_rate
    )
    kinds = _NOISE + _NOISE_TAGGED
    drop = ("duplicate",) if umi_tag is not None else ("no_umi",)  # with UMIs a duplicate is counted
    noise_reads = _noise_reads(alleles, rng, noise, tuple(k for k in kinds if k not in drop))
    writer = _Writer(alleles, rng, read_length, ensembl_names, error_rate)
    out = Path(path)
    writer.write(out, _concat(reads, noise_reads), barcode_tag, umi_tag)
    return SimulatedBam(out, {}, oth, writer.n_written, len(noise_reads["cell"]), n_tied)


def write_plate_bams(
    alleles: anndata.AnnData,
    folder: str | PathLike,
    *,
    seed: int = 0,
    read_length: int = 90,
    other_rate: float = 0.03,
    noise: int = 1,
    ensembl_names: bool = False,
    error_rate: float = 0.0,
) -> SimulatedBam:
    """Write one indexed BAM per cell (``cell00000.bam`` ...) and ``manifest.tsv`` into a new folder.

    Each counted fragment is one read, or (20%) a pair of overlapping mates covering the site; no
    UMIs. Parameters as :func:`write_bam`; ``folder`` must not exist. Returns the manifest as ``path``
    and ``bams`` (cell -> BAM, in ``obs_names`` order).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=False)
    rng = np.random.default_rng(seed)
    reads, oth, _ = _molecule_reads(alleles, rng, umi=False, tie_rate=0.0, other_rate=other_rate)
    every = _concat(reads, _noise_reads(alleles, rng, noise, _NOISE))
    writer = _Writer(alleles, rng, read_length, ensembl_names, error_rate)
    bams = {}
    for k, cell in enumerate(alleles.obs_names):
        bams[str(cell)] = out / f"cell{k:05d}.bam"
        writer.write(bams[str(cell)], _subset(every, every["cell"] == k), None, None)
    with open(out / "manifest.tsv", "x", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(
            [("cell", "bam"), *((c, p.name) for c, p in bams.items())]
        )
    return SimulatedBam(out / "manifest.tsv", bams, oth, writer.n_written, int((every["noise"] >= 0).sum()), 0)


# --------------------------------------------------------------------------------------------
# what each read is (numpy columns, one entry per read)
# --------------------------------------------------------------------------------------------
def _molecule_reads(alleles, rng, *, umi: bool, tie_rate: float, other_rate: float) -> tuple[dict, sp.csr_matrix, int]:
    """The reads of the counted molecules, the tied ones and the other-base ones, and the OTH matrix.

    Columns: ``cell, site, base`` (0 REF, 1 ALT, 2 third base), ``molecule`` (UMI number; per read for
    plates), ``pair`` (plates: written as two overlapping mates)."""
    dp = sp.csr_matrix(alleles.layers["DP"]).tocoo()
    alt = np.asarray(sp.csr_matrix(alleles.layers["AD"])[dp.row, dp.col]).ravel()
    cell = np.repeat(dp.row, dp.data).astype(np.int64)
    site = np.repeat(dp.col, dp.data).astype(np.int64)
    rank = np.arange(cell.size) - np.repeat(np.cumsum(dp.data) - dp.data, dp.data)
    base = (rank < np.repeat(alt, dp.data)).astype(np.int8)  # the first AD molecules of an entry are ALT
    tie = rng.random(dp.nnz) < tie_rate if umi else np.zeros(dp.nnz, bool)
    other = rng.random(dp.nnz) < other_rate
    oth = sp.csr_matrix((np.ones(other.sum(), np.int32), (dp.row[other], dp.col[other])), shape=alleles.shape)
    # molecules: the counted ones, then the tied (REF + ALT reads), then the other-base ones
    m_cell = np.concatenate([cell, dp.row[tie], dp.row[other]]).astype(np.int64)
    m_site = np.concatenate([site, dp.col[tie], dp.col[other]]).astype(np.int64)
    m_base = np.concatenate([base, np.zeros(tie.sum(), np.int8), np.full(other.sum(), 2, np.int8)])
    per = rng.choice([1, 2, 3], size=m_cell.size, p=[0.6, 0.25, 0.15]) if umi else np.ones(m_cell.size, np.int64)
    per[cell.size : cell.size + tie.sum()] = 2
    molecule = np.repeat(np.arange(m_cell.size), per)
    k_in = np.arange(molecule.size) - np.repeat(np.cumsum(per) - per, per)
    r_base = m_base[molecule].copy()
    is_tie = (molecule >= cell.size) & (molecule < cell.size + tie.sum())
    r_base[is_tie & (k_in == 1)] = 1  # a tied molecule: one REF and one ALT read
    # a third of the 3-read molecules: their last read shows the other allele (the majority still wins)
    flip = (per[molecule] == 3) & (k_in == 2) & (r_base < 2) & (rng.random(molecule.size) < 1 / 3)
    r_base[flip] = 1 - r_base[flip]
    # Cell Ranger's duplicate flags: all reads of a molecule but one, and for 10% of molecules all
    dup = ((k_in > 0) | (rng.random(m_cell.size) < 0.1)[molecule]) if umi else np.zeros(molecule.size, bool)
    reads = {
        "cell": m_cell[molecule],
        "site": m_site[molecule],
        "base": r_base,
        "molecule": molecule,
        "pair": (rng.random(molecule.size) < 0.2) if not umi else np.zeros(molecule.size, bool),
        "dup": dup,
        "noise": np.full(molecule.size, -1, np.int8),
    }
    return reads, oth, int(tie.sum())


def _noise_reads(alleles, rng, n: int, kinds: tuple[str, ...]) -> dict:
    """``n`` reads of each noise kind at random (cell, site) entries with reads, showing ALT."""
    dp = sp.csr_matrix(alleles.layers["DP"]).tocoo()
    every = _NOISE + _NOISE_TAGGED
    kind = np.repeat([every.index(k) for k in kinds], n) if dp.nnz else np.zeros(0, np.int64)
    pick = rng.integers(0, max(dp.nnz, 1), kind.size)
    return {
        "cell": dp.row[pick].astype(np.int64) if dp.nnz else np.zeros(0, np.int64),
        "site": dp.col[pick].astype(np.int64) if dp.nnz else np.zeros(0, np.int64),
        "base": np.ones(kind.size, np.int8),
        "molecule": -1 - np.arange(kind.size),  # own UMIs
        "pair": np.zeros(kind.size, bool),
        "dup": np.zeros(kind.size, bool),
        "noise": kind.astype(np.int8),
    }


def _concat(a: dict, b: dict) -> dict:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def _subset(reads: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] for k, v in reads.items()}


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
class _Writer:
    """Turns read columns into aligned reads at the sites and writes them, sorted and indexed."""

    def __init__(self, alleles, rng, read_length: int, ensembl_names: bool, error_rate: float = 0.0):
        if read_length < 40:
            raise ValueError("read_length must be at least 40")
        var = alleles.var
        self.rng, self.length, self.error_rate = rng, int(read_length), float(error_rate)
        self.pos0 = var["position"].to_numpy(np.int64) - 1
        if (self.pos0 < _MIN_POSITION).any():
            raise ValueError(f"simulated BAMs need sites at positions >= {_MIN_POSITION} (room for an intron)")
        chrom = var["chromosome"].astype(str).to_numpy()
        names = pd.unique(chrom)
        self.contig_rank = pd.Index(names).get_indexer(chrom)
        shown = [_ensembl(c) if ensembl_names else c for c in names]
        lengths = [int(self.pos0[chrom == c].max()) + 10_000 for c in names]
        self.header = {
            "HD": {"VN": "1.6", "SO": "coordinate"},
            "SQ": [{"SN": s, "LN": n} for s, n in zip(shown, lengths)],
        }
        self.ref = np.frombuffer("".join(var["ref"].astype(str)).encode(), np.uint8)
        self.alt = np.frombuffer("".join(var["alt"].astype(str)).encode(), np.uint8)
        self.barcodes = [str(b) for b in alleles.obs_names]
        # every contig's site positions, sorted: a read shows N at the other sites it covers
        self.sorted_sites = [np.sort(self.pos0[self.contig_rank == r]).tolist() for r in range(len(names))]
        self.n_written = 0

    def write(self, path: Path, reads: dict, barcode_tag: str | None, umi_tag: str | None) -> None:
        import pysam

        if path.exists():
            raise FileExistsError(f"{path} exists: a simulated BAM never overwrites a file")
        shape = self._shapes(reads)
        order = np.lexsort((shape["start"], self.contig_rank[reads["site"]]))
        with pysam.AlignmentFile(str(path), "wb", header=self.header) as out:
            for k in order:
                for segment in self._segments(out.header, reads, shape, int(k), barcode_tag, umi_tag):
                    out.write(segment)
                    self.n_written += 1
        pysam.index(str(path))

    def _shapes(self, reads: dict) -> dict:
        """Per read: alignment shape, query offset of the site, the event's query offset and length, and
        the alignment start (0-based), all numpy."""
        n, L, rng = reads["site"].size, self.length, self.rng
        kind = rng.choice(5, size=n, p=_SHAPE_P)
        kind[reads["noise"] == _NOISE.index("deleted")] = _DEL
        o = rng.integers(12, L - 12, n)  # query offset of the site
        event = np.where(rng.random(n) < 0.5, rng.integers(4, np.maximum(o - 5, 5)), rng.integers(o + 2, L - 4))
        size = np.select([kind == _INS, kind == _INTRON], [rng.integers(1, 4, n), rng.integers(200, 2000, n)], 0)
        size = np.where(kind == _DEL, rng.integers(1, 4, n), size)
        size = np.where(kind == _CLIP, rng.integers(3, 9, n), size)
        deleted = reads["noise"] == _NOISE.index("deleted")
        event[deleted], size[deleted] = o[deleted], 1  # the deletion covers the site itself
        before = event <= o
        # reference bases before the site: query offset, less inserted/clipped, plus deleted/skipped before it
        ref_off = o.copy()
        ref_off -= np.where((kind == _CLIP) | ((kind == _INS) & before), size, 0)
        ref_off += np.where(np.isin(kind, (_DEL, _INTRON)) & before & ~deleted, size, 0)
        event = np.where(kind == _CLIP, size, event)
        event = np.where((kind == _INS) & before, np.minimum(event, o - size), event)
        start = self.pos0[reads["site"]] - ref_off
        return {"kind": kind, "o": o, "event": event, "size": size, "start": start}

    def _cigar(self, kind: int, event: int, size: int) -> list[tuple[int, int]]:
        L = self.length
        if kind == _PLAIN:
            return [(0, L)]
        if kind == _CLIP:
            return [(4, size), (0, L - size)]
        if kind == _INS:
            return [(0, event), (1, size), (0, L - event - size)]
        return [(0, event), (2 if kind == _DEL else 3, size), (0, L - event)]

    def _segments(self, header, reads, shape, k: int, barcode_tag, umi_tag):
        """The read (or the two mates) of read ``k``."""
        import pysam

        site, noise = int(reads["site"][k]), int(reads["noise"][k])
        cigar = self._cigar(int(shape["kind"][k]), int(shape["event"][k]), int(shape["size"][k]))
        start, o = int(shape["start"][k]), int(shape["o"][k])
        seq = self._sequence(site, int(reads["base"][k]), cigar, start, o)
        qual = np.full(self.length, 35, np.uint8)
        if noise == _NOISE.index("low_baseq"):
            qual[o] = 5
        kind = (_NOISE + _NOISE_TAGGED)[noise] if noise >= 0 else ""
        mates = 2 if reads["pair"][k] else 1
        out = []
        for mate in range(mates):
            a = pysam.AlignedSegment(header)
            a.query_name = f"r{k}"
            a.reference_id = int(self.contig_rank[site])
            a.reference_start = start
            a.cigartuples = cigar
            a.query_sequence = seq
            a.query_qualities = pysam.qualitystring_to_array(bytes(qual + 33).decode())
            a.mapping_quality = 3 if kind == "low_mapq" else 60
            a.flag = _FLAG.get(kind, 0) | (0x400 if reads["dup"][k] else 0)
            if mates == 2:
                a.flag |= 0x1 | 0x2 | (0x40, 0x80)[mate] | (0x20, 0x10)[mate]
                a.next_reference_id, a.next_reference_start = a.reference_id, start
            a.set_tags(self._tags(reads, k, kind, barcode_tag, umi_tag))
            out.append(a)
        return out

    def _tags(self, reads, k: int, kind: str, barcode_tag, umi_tag) -> list[tuple[str, str, str]]:
        tags = []
        if barcode_tag and kind != "no_barcode":
            barcode = "GGGGGGGGGGGGGGGG-9" if kind == "other_barcode" else self.barcodes[int(reads["cell"][k])]
            tags.append((barcode_tag, barcode, "Z"))
        if umi_tag and kind != "no_umi":
            tags.append((umi_tag, _umi(int(reads["molecule"][k])), "Z"))
        return tags

    def _sequence(self, site: int, base: int, cigar, start: int, o: int) -> str:
        """The reference's bases (random where inserted or clipped; errors at ``error_rate``); the site's
        REF/ALT/third base at query offset ``o``; N at other sites covered."""
        seq = _CODE[self.rng.integers(0, 4, self.length)].copy()  # drawn as before: the same stream per seed
        rank = int(self.contig_rank[site])
        own = self.pos0[site]
        sites = self.sorted_sites[rank]
        others = []
        r, q = start, 0
        for op, n in cigar:
            if op == 0:
                seq[q : q + n] = _CODE[reference_bases(rank, np.arange(r, r + n))]
                covered = sites[bisect.bisect_left(sites, r) : bisect.bisect_left(sites, r + n)]
                others += [q + p - r for p in covered if p != own]
                r, q = r + n, q + n
            elif op in (1, 4):
                q += n
            else:
                r += n
        if self.error_rate > 0:
            wrong = np.flatnonzero(self.rng.random(self.length) < self.error_rate)
            seq[wrong] = _CODE[(np.searchsorted(_CODE, seq[wrong]) + self.rng.integers(1, 4, wrong.size)) % 4]
        for p in others:
            seq[p] = ord("N")
        ref, alt = self.ref[site], self.alt[site]
        third = next(c for c in _CODE if c not in (ref, alt))
        seq[o] = (ref, alt, third)[base]
        return seq.tobytes().decode()


def reference_bases(contig: int, positions: np.ndarray) -> np.ndarray:
    """The simulated reference's base codes (0-3 for A, C, G, T) at 0-based ``positions`` of the
    ``contig``-th contig: a fixed hash of both, the same for every read and every seed."""
    offset = np.uint64(((contig + 1) * 0xC2B2AE3D27D4EB4F) % 2**64)
    x = np.asarray(positions, np.uint64) * np.uint64(0x9E3779B97F4A7C15) + offset  # wraps modulo 2**64
    return ((x >> np.uint64(29)) & np.uint64(3)).astype(np.int64)


def _umi(number: int) -> str:
    """A 12-base UMI spelling ``number`` in base 4 (noise reads, numbered below 0, get ``T...`` ones)."""
    n = number if number >= 0 else 4**12 - 1 + number
    return "".join("ACGT"[(n >> (2 * i)) & 3] for i in range(12))


def _ensembl(chromosome: str) -> str:
    name = chromosome[3:] if chromosome.startswith("chr") else chromosome
    return "MT" if name == "M" else name
