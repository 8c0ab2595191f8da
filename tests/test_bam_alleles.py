"""Allele counts from BAM files (issue 18, item 3): remnant.io.bam.count_alleles on the simulator's BAMs
(remnant.sim.bam) gives back exactly what the simulator drew, for droplets (one molecule one vote) and
plates (a manifest of one BAM per cell, or one BAM with a cell tag); filters, chromosome names, VCF
sites, the cellsnp-lite round trip and bad input."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pandas as pd
import pysam
import pytest
import scipy.sparse as sp
from simulated import sheet_table as sheet  # markers, gene_sets, genes: conftest.py fixtures

from remnant.errors import InputError
from remnant.io.alleles import read_cellsnp, write_cellsnp
from remnant.io.bam import SKIP_FLAGS, count_alleles, read_bam_manifest, read_sites
from remnant.sim.bam import write_bam, write_plate_bams
from remnant.sim.cohort import simulate_cohort

SHEET = sheet(
    [
        ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
        ("P1_pl", "P1", "diagnosis", "HSC", "MDS", "plate"),
    ]
)
PARAMS = {
    "cells_per_sample": {"droplet": 120, "plate": 12},
    "alleles": {"enabled": True, "reads_per_umi": {"droplet": 0.3, "plate": 0.1}},
}


@pytest.fixture(scope="module")
def cohort(genes, markers, gene_sets):
    return simulate_cohort(SHEET, genes, markers, gene_sets, params=copy.deepcopy(PARAMS), seed=5)


@pytest.fixture(scope="module")
def droplet(cohort, tmp_path_factory):
    alleles = cohort.alleles["P1_dx"]
    written = write_bam(alleles, tmp_path_factory.mktemp("droplet") / "P1_dx.bam", seed=1)
    return alleles, written


def sites_of(alleles) -> pd.DataFrame:
    return alleles.var[["chromosome", "position", "ref", "alt"]].reset_index(drop=True)


def assert_same_counts(counted, alleles, oth):
    assert counted.obs_names.equals(alleles.obs_names)
    assert list(counted.var_names) == list(alleles.var_names)
    for tag, want in (("AD", alleles.layers["AD"]), ("DP", alleles.layers["DP"]), ("OTH", oth)):
        got = counted.layers[tag]
        assert sp.isspmatrix_csr(got) and got.dtype == np.int32
        assert (got != sp.csr_matrix(want)).nnz == 0, tag


# ------------------------------------------------------------------------------------------------
# the simulator's BAMs counted back
# ------------------------------------------------------------------------------------------------
def test_droplet_bam_gives_back_the_simulated_counts(droplet):
    alleles, written = droplet
    assert alleles.layers["DP"].sum() > 1000 and written.n_tied > 0 and written.oth.nnz > 0
    counted = count_alleles(written.path, sites_of(alleles), cells=alleles.obs_names)
    assert_same_counts(counted, alleles, written.oth)
    assert list(counted.var.columns) == ["chromosome", "position", "ref", "alt", "site_id"]
    info = counted.uns["alleles"]
    assert info["molecules"]["tied_dropped"] == written.n_tied
    assert info["molecules"]["counted"] == alleles.layers["DP"].sum() + written.oth.sum()
    reads = info["reads"]
    # 2 of each noise kind: 6 flagged at the sites (secondary, supplementary, QC-fail; the unmapped ones lie
    # before the site: never fetched), 2 of MAPQ 3, 2 without CB, 2 without UB, 2 of a non-cell (a read
    # fetched in two windows counts twice)
    assert reads["filtered_flag"] >= 6 and reads["low_mapq"] >= 2 and reads["other_cell"] >= 2
    assert reads["no_barcode"] >= 2 and reads["no_umi"] >= 2


def test_molecules_of_several_reads_are_in_the_droplet_bam(droplet):
    alleles, written = droplet
    with pysam.AlignmentFile(str(written.path)) as bam:
        keys = pd.Series(
            [(r.get_tag("CB"), r.get_tag("UB")) for r in bam.fetch() if r.has_tag("CB") and r.has_tag("UB")]
        )
    assert keys.duplicated().sum() > 0.2 * alleles.layers["DP"].sum()


def test_duplicate_flags_count_with_umis(droplet):
    """Cell Ranger flags all reads of a molecule but one as duplicates (and that one may lie off the site):
    skipping them, as without UMIs, loses molecules."""
    alleles, written = droplet
    strict = count_alleles(written.path, sites_of(alleles), cells=alleles.obs_names, skip_duplicates=True)
    kept, lost = strict.layers["DP"].sum(), alleles.layers["DP"].sum()
    assert 0.8 * lost < kept < 0.95 * lost


def test_read_counts_agree_with_htslib_pileup(droplet):
    """Per read (no UMI), summed over barcodes: the bases htslib's pileup counts at each site
    (pysam count_coverage, same filters), an implementation of CIGAR walking independent of remnant's."""
    alleles, written = droplet
    sites = sites_of(alleles)
    counted = count_alleles(written.path, sites, umi_tag=None, skip_duplicates=False)
    per_site = {t: np.asarray(counted.layers[t].sum(axis=0)).ravel() for t in ("AD", "DP", "OTH")}

    def keep(read):
        return not read.flag & SKIP_FLAGS and read.mapping_quality >= 20 and read.has_tag("CB")

    with pysam.AlignmentFile(str(written.path)) as bam:
        for k, (chrom, pos, ref, alt) in enumerate(sites.itertuples(index=False)):
            coverage = bam.count_coverage(chrom, int(pos) - 1, int(pos), quality_threshold=20, read_callback=keep)
            acgt = dict(zip("ACGT", (int(c[0]) for c in coverage)))
            assert per_site["AD"][k] == acgt[alt]
            assert per_site["DP"][k] == acgt[ref] + acgt[alt]
            assert per_site["OTH"][k] == sum(acgt.values()) - acgt[ref] - acgt[alt]
    assert per_site["DP"].sum() > alleles.layers["DP"].sum()  # reads, more than molecules


def test_filters_off_count_the_noise(droplet):
    """Without the read filters or the cell list the noise reads count: the filters are what removes them."""
    alleles, written = droplet
    sites = sites_of(alleles)
    loose = count_alleles(written.path, sites, cells=alleles.obs_names, min_mapq=0, min_baseq=0)
    assert loose.layers["DP"].sum() == alleles.layers["DP"].sum() + 4  # the 2 MAPQ-3 and 2 low-quality reads
    every = count_alleles(written.path, sites)
    assert "GGGGGGGGGGGGGGGG-9" in every.obs_names and every.obs_names.is_monotonic_increasing
    with_reads = alleles.obs_names[np.asarray(alleles.layers["DP"].sum(axis=1)).ravel() > 0]
    assert set(with_reads) < set(every.obs_names) <= set(alleles.obs_names) | {"GGGGGGGGGGGGGGGG-9"}
    assert (every[with_reads].layers["DP"] != alleles[with_reads].layers["DP"]).nnz == 0


def test_plate_manifest_gives_back_the_simulated_counts(cohort, tmp_path):
    alleles = cohort.alleles["P1_pl"]
    written = write_plate_bams(alleles, tmp_path / "plate", seed=2)
    manifest = read_bam_manifest(written.path)
    assert manifest == written.bams and len(manifest) == alleles.n_obs
    counted = count_alleles(manifest, sites_of(alleles), cells=alleles.obs_names, umi_tag=None)
    assert_same_counts(counted, alleles, written.oth)
    with pysam.AlignmentFile(str(next(iter(manifest.values())))) as bam:
        paired = sum(r.is_paired for r in bam.fetch())
    assert paired > 0  # overlapping mates counted once: the counts above are exact
    # cells asked for: a subset in another order, and one the manifest lacks (a zero row)
    asked = [alleles.obs_names[3], "plate9_H12", alleles.obs_names[0]]
    some = count_alleles(manifest, sites_of(alleles), cells=asked, umi_tag=None)
    assert list(some.obs_names) == asked
    assert (some.layers["DP"][[0, 2]] != alleles.layers["DP"][[3, 0]]).nnz == 0 and some.layers["DP"][1].nnz == 0
    broken = {**manifest, alleles.obs_names[1]: tmp_path / "gone.bam"}
    with pytest.raises(InputError, match=rf"gone\.bam: cell {alleles.obs_names[1]}: BAM file does not exist"):
        count_alleles(broken, sites_of(alleles), umi_tag=None)


def test_plate_bam_with_a_cell_tag(cohort, tmp_path):
    alleles = cohort.alleles["P1_pl"]
    written = write_bam(alleles, tmp_path / "plate.bam", seed=3, barcode_tag="RG", umi_tag=None)
    counted = count_alleles(written.path, sites_of(alleles), cells=alleles.obs_names, barcode_tag="RG", umi_tag=None)
    assert_same_counts(counted, alleles, written.oth)


def test_ensembl_contig_names_are_matched(cohort, tmp_path):
    alleles = cohort.alleles["P1_dx"]
    written = write_bam(alleles, tmp_path / "ens.bam", seed=4, ensembl_names=True)
    with pysam.AlignmentFile(str(written.path)) as bam:
        assert not any(c.startswith("chr") for c in bam.references)
    counted = count_alleles(written.path, sites_of(alleles), cells=alleles.obs_names)
    assert_same_counts(counted, alleles, written.oth)
    assert counted.var["chromosome"].str.startswith("chr").all()  # the sites' names are kept


def test_round_trip_through_a_cellsnp_folder(droplet, tmp_path):
    alleles, written = droplet
    counted = count_alleles(written.path, sites_of(alleles), cells=alleles.obs_names)
    back = read_cellsnp(write_cellsnp(counted, tmp_path / "cellsnp"))
    assert back.obs_names.equals(counted.obs_names)
    pd.testing.assert_frame_equal(back.var, counted.var)
    for tag in ("AD", "DP", "OTH"):
        assert (back.layers[tag] != counted.layers[tag]).nnz == 0


def test_vcf_sites_keep_biallelic_snps(droplet, tmp_path):
    alleles, written = droplet
    var = sites_of(alleles)
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c}>" for c in var["chromosome"].unique())]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    lines += [f"{r.chromosome}\t{r.position}\t.\t{r.ref}\t{r.alt}\t.\tPASS\t." for r in var.itertuples()]
    first = var.iloc[0]
    lines.insert(4, f"{first.chromosome}\t{first.position}\t.\t{first.ref}\tA,C\t.\tPASS\t.")  # multi-allelic
    lines.insert(5, f"{first.chromosome}\t{first.position + 1}\t.\tAT\tA\t.\tPASS\t.")  # an indel
    (tmp_path / "sites.vcf").write_text("\n".join(lines) + "\n")
    counted = count_alleles(written.path, tmp_path / "sites.vcf", cells=alleles.obs_names)
    assert_same_counts(counted, alleles, written.oth)


def test_read_sites_in_regions_with_and_without_an_index(tmp_path):
    records = [("5", 1000, "A", "G"), ("5", 2000, "C", "T"), ("5", 2500, "C", "CT"), ("5", 9000, "G", "A")]
    records += [("2", 500, "T", "C"), ("2", 7000, "A", "C,G")]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=2,length=100000>", "##contig=<ID=5,length=100000>"]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    lines += [f"{c}\t{p}\t.\t{r}\t{a}\t.\tPASS\t." for c, p, r, a in sorted(records)]
    plain = tmp_path / "sites.vcf"
    plain.write_text("\n".join(lines) + "\n")
    indexed = pysam.tabix_index(str(plain), preset="vcf", keep_original=True)
    assert list(read_sites(plain)[["chromosome", "position"]].itertuples(index=False, name=None)) == [
        ("2", 500),
        ("5", 1000),
        ("5", 2000),
        ("5", 9000),
    ]
    # 0-based half-open: position 1000 is base 999; the two chr5 regions overlap; no region on chr2
    regions = [("chr5", 999, 1500), ("chr5", 1200, 2000), ("chr5", 1900, 2100), ("chr7", 0, 10_000)]
    for vcf in (plain, indexed):
        got = read_sites(vcf, regions=regions)
        assert got.to_dict("list") == {
            "chromosome": ["5", "5"],
            "position": [1000, 2000],
            "ref": ["A", "C"],
            "alt": ["G", "T"],
        }
    with pytest.raises(InputError, match=r"holds no biallelic SNP inside the 1 region\(s\)"):
        read_sites(indexed, regions=[("chr2", 6000, 8000)])


# ------------------------------------------------------------------------------------------------
# one molecule one vote, by hand (independent of the simulator's writer)
# ------------------------------------------------------------------------------------------------
def hand_bam(path, reads):
    """A sorted, indexed BAM on chr5 of reads ``(barcode, umi, start, cigar, sequence, flag)``."""
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr5", "LN": 100_000}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for k, (barcode, umi, start, cigar, seq, flag) in enumerate(sorted(reads, key=lambda r: r[2])):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.reference_id, a.reference_start, a.cigarstring = f"q{k}", 0, start, cigar
            a.query_sequence, a.flag, a.mapping_quality = seq, flag, 60
            a.query_qualities = pysam.qualitystring_to_array("I" * len(seq))
            a.set_tags([("CB", barcode, "Z"), ("UB", umi, "Z")])
            out.write(a)
    pysam.index(str(path))
    return path


def test_majority_votes_ties_and_other_bases_by_hand(tmp_path):
    # site chr5:1001 (0-based 1000) twice, C>T and C>G; reads of 10 bases starting at 995: the site is base 5
    def read(barcode, umi, base, start=995, cigar="10M", flag=0):
        seq = list("AAAAAAAAAA")
        seq[1000 - start] = base
        return (barcode, umi, start, cigar, "".join(seq), flag)

    reads = [
        *(read("c1", "u1", b) for b in "TTC"),  # majority T: ALT of the first site, other base of the second
        *(read("c1", "u2", b) for b in "CT"),  # tie: dropped at both sites
        ("c1", "u6", 993, "2S8M", "AAAAAAAAAC", 0),  # soft clip: query 9 is reference 993 + 9 - 2 = 1000, REF
        read("c2", "u1", "G"),  # ALT of the second site, other base of the first
        read("c2", "u4", "T", flag=0x400),  # duplicate-flagged: counted with UMIs, not without
        read("c2", "u5", "N"),  # no call
        ("c2", "u7", 995, "5M1D5M", "AAAAATAAAA", 0),  # the site deleted: the T is reference 1001
    ]
    bam = hand_bam(tmp_path / "hand.bam", reads)
    sites = pd.DataFrame({"chromosome": ["chr5", "chr5"], "position": [1001, 1001], "ref": "C", "alt": ["T", "G"]})
    counted = count_alleles(bam, sites, cells=["c1", "c2", "c3"])
    assert list(counted.var_names) == ["chr5:1001:C>T", "chr5:1001:C>G"]
    assert counted.layers["AD"].toarray().tolist() == [[1, 0], [1, 1], [0, 0]]
    assert counted.layers["DP"].toarray().tolist() == [[2, 1], [1, 1], [0, 0]]
    assert counted.layers["OTH"].toarray().tolist() == [[0, 1], [1, 1], [0, 0]]
    assert counted.uns["alleles"]["molecules"]["tied_dropped"] == 2  # u2 at both sites
    strict = count_alleles(bam, sites, cells=["c1", "c2", "c3"], skip_duplicates=True)
    assert strict.layers["DP"].toarray().tolist() == [[2, 1], [0, 1], [0, 0]]
    # without UMIs every read is a fragment of its own: no majority, no tie; duplicates skipped
    reads_only = count_alleles(bam, sites, cells=["c1", "c2", "c3"], umi_tag=None)
    assert reads_only.layers["AD"].toarray().tolist() == [[3, 0], [0, 1], [0, 0]]
    assert reads_only.layers["DP"].toarray().tolist() == [[6, 3], [0, 1], [0, 0]]


# ------------------------------------------------------------------------------------------------
# bad input: one line naming the file and what to do
# ------------------------------------------------------------------------------------------------
def test_bad_input(droplet, tmp_path):
    alleles, written = droplet
    sites = sites_of(alleles)
    with pytest.raises(InputError, match=r"missing\.bam: BAM file does not exist"):
        count_alleles(tmp_path / "missing.bam", sites)
    shutil.copy(written.path, tmp_path / "bare.bam")
    with pytest.raises(InputError, match=r"bare\.bam: has no index; index it with `samtools index`"):
        count_alleles(tmp_path / "bare.bam", sites)
    (tmp_path / "text.bam").write_text("not a bam\n")
    with pytest.raises(InputError, match=r"text\.bam: could not be read as a BAM"):
        count_alleles(tmp_path / "text.bam", sites)
    with pytest.raises(InputError, match=r"no read at the sites carries the cell-barcode tag XB \(its reads carry"):
        count_alleles(written.path, sites, barcode_tag="XB")
    with pytest.raises(InputError, match=r"no read at the sites carries the UMI tag UX"):
        count_alleles(written.path, sites, umi_tag="UX")
    with pytest.raises(InputError, match=r"none of the 2 cells asked for .* '-1' suffix"):
        count_alleles(written.path, sites, cells=["AAAC-1", "AAAG-1"])
    other = pd.concat([sites, pd.DataFrame([{"chromosome": "chr9", "position": 5000, "ref": "A", "alt": "G"}])])
    with pytest.raises(InputError, match=r"has no contig for the sites on \['chr9'\]"):
        count_alleles(written.path, other)
    bad = sites.assign(alt=sites["ref"])
    with pytest.raises(InputError, match=r"sites: row 1: .* ref and alt one base each .* and different"):
        count_alleles(written.path, bad)
    with pytest.raises(InputError, match=r"cells\.tsv: BAM manifest does not exist"):
        read_bam_manifest(tmp_path / "cells.tsv")
    (tmp_path / "sites.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    with pytest.raises(InputError, match=r"sites\.vcf: .*holds no biallelic SNP"):
        count_alleles(written.path, tmp_path / "sites.vcf")
