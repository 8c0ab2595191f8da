"""Allele counts per cell (issue 18, item 1): cellsnp-lite output folders read, written and matched to a
sample's cells (:mod:`remnant.io.alleles`)."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from remnant.errors import InputError
from remnant.io.alleles import annotation_chromosome, match_cells, read_cellsnp, write_cellsnp

# A folder as cellsnp-lite 1.2 writes it (mode 1a, --gzip): the header macros of its csp.h, tab-separated
# VCF rows "CHROM POS . REF ALT . PASS AD=..;DP=..;OTH=..", MatrixMarket files SNPs x cells with a "%" line
# and tab-separated entries in SNP then cell order. 3 SNPs (the third repeats the second's position with
# another ALT) x 4 barcodes.
VCF = (
    "##fileformat=VCFv4.2\n"
    '##FILTER=<ID=PASS,Description="All filters passed">\n'
    '##FILTER=<ID=.,Description="Filter info not available">\n'
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="total counts for ALT and REF">\n'
    '##INFO=<ID=AD,Number=1,Type=Integer,Description="total counts for ALT">\n'
    '##INFO=<ID=OTH,Number=1,Type=Integer,Description="total counts for other bases from REF and ALT">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    "chr5\t1295228\t.\tG\tA\t.\tPASS\tAD=7;DP=12;OTH=0\n"
    "chr5\t140011319\t.\tC\tT\t.\tPASS\tAD=2;DP=9;OTH=1\n"
    "chr5\t140011319\t.\tC\tG\t.\tPASS\tAD=0;DP=4;OTH=0\n"
)
BARCODES = ["AAACCTGAGAAGGCCT-1", "AAACCTGAGACAGACC-1", "AAACCTGAGATCCGAG-1", "AAACCTGCAAGCCGCT-1"]
# (SNP, cell, value), 1-based as in the files
AD = [(1, 1, 3), (1, 3, 4), (2, 2, 2)]
DP = [(1, 1, 5), (1, 3, 7), (2, 2, 6), (2, 4, 3), (3, 1, 4)]
OTH = [(2, 4, 1)]


def mtx_text(entries, n_snps=3, n_cells=4) -> str:
    lines = [f"{i}\t{j}\t{v}\n" for i, j, v in entries]
    return f"%%MatrixMarket matrix coordinate integer general\n%\n{n_snps}\t{n_cells}\t{len(entries)}\n" + "".join(
        lines
    )


def cellsnp_folder(folder: Path, *, vcf=VCF, ad=None, dp=None, oth=None, barcodes=None, gz_vcf=True) -> Path:
    folder.mkdir(parents=True)
    if gz_vcf:
        (folder / "cellSNP.base.vcf.gz").write_bytes(gzip.compress(vcf.encode()))
    else:
        (folder / "cellSNP.base.vcf").write_text(vcf)
    (folder / "cellSNP.tag.AD.mtx").write_text(ad if ad is not None else mtx_text(AD))
    (folder / "cellSNP.tag.DP.mtx").write_text(dp if dp is not None else mtx_text(DP))
    (folder / "cellSNP.tag.OTH.mtx").write_text(oth if oth is not None else mtx_text(OTH))
    (folder / "cellSNP.samples.tsv").write_text("".join(f"{b}\n" for b in (barcodes or BARCODES)))
    return folder


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------------------
# reading a real-layout folder
# ------------------------------------------------------------------------------------------------
def test_reads_cellsnp_lite_output_values_at_cells_and_sites(tmp_path):
    folder = cellsnp_folder(tmp_path / "P1_dx")
    before = digest(folder)
    adata = read_cellsnp(folder, source="row 2 (sample P1_dx)")
    assert digest(folder) == before, "reading changed an input file"

    assert adata.shape == (4, 3) and adata.X is None
    assert list(adata.obs_names) == BARCODES
    assert list(adata.var_names) == ["chr5:1295228:G>A", "chr5:140011319:C>T", "chr5:140011319:C>G"]
    assert list(adata.var["chromosome"]) == ["chr5"] * 3
    assert adata.var["position"].dtype == np.int64
    assert list(adata.var["position"]) == [1295228, 140011319, 140011319]
    assert list(adata.var["ref"]) == ["G", "C", "C"] and list(adata.var["alt"]) == ["A", "T", "G"]
    for tag in ("AD", "DP", "OTH"):
        assert sp.isspmatrix_csr(adata.layers[tag]) and adata.layers[tag].dtype == np.int32
    ad, dp = adata.layers["AD"].toarray(), adata.layers["DP"].toarray()
    # cell 3 (AAACCTGAGATCCGAG-1) at chr5:1295228: 4 ALT of 7, so 3 REF
    assert ad[2, 0] == 4 and dp[2, 0] == 7 and dp[2, 0] - ad[2, 0] == 3
    # cell 4 at the T site: depth 3, no ALT read, one other base
    assert ad[3, 1] == 0 and dp[3, 1] == 3 and adata.layers["OTH"][3, 1] == 1
    # cell 1 at the G site: 4 REF reads only
    assert ad[0, 2] == 0 and dp[0, 2] == 4
    # column sums are the VCF's INFO totals
    assert list(ad.sum(axis=0)) == [7, 2, 0] and list(dp.sum(axis=0)) == [12, 9, 4]
    info = adata.uns["alleles"]
    assert info["n_cells"] == 4 and info["n_sites"] == 3 and info["path"] == str(folder)
    assert info["source"] == "row 2 (sample P1_dx)" and info["files"]["vcf"] == "cellSNP.base.vcf.gz"


def test_repeated_site_gets_unique_names_and_ensembl_chromosomes_are_kept(tmp_path):
    vcf = VCF.replace("chr5\t", "5\t").replace("140011319\t.\tC\tG", "140011319\t.\tC\tT")  # SNP 3 = SNP 2
    adata = read_cellsnp(cellsnp_folder(tmp_path / "f", vcf=vcf, gz_vcf=False))
    assert list(adata.var["chromosome"]) == ["5", "5", "5"]
    assert list(adata.var_names) == ["5:1295228:G>A", "5:140011319:C>T", "5:140011319:C>T#2"]
    assert list(adata.var["site_id"]) == ["5:1295228:G>A", "5:140011319:C>T", "5:140011319:C>T"]
    assert list(annotation_chromosome(adata.var["chromosome"])) == ["chr5"] * 3
    assert list(annotation_chromosome(["chr5", "X", "MT", "chrM"])) == ["chr5", "chrX", "chrM", "chrM"]
    # categorical and integer chromosome columns (as a VCF read by pandas gives them), in input order
    as_category = pd.Series(["5", "X", "5", "MT"], dtype="category")
    assert list(annotation_chromosome(as_category)) == ["chr5", "chrX", "chr5", "chrM"]
    assert list(annotation_chromosome(pd.Series([7, 5, 7]))) == ["chr7", "chr5", "chr7"]


def test_gzipped_matrices_and_no_oth_are_read(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "cellSNP.base.vcf").write_text(VCF)
    (folder / "cellSNP.tag.AD.mtx.gz").write_bytes(gzip.compress(mtx_text(AD).encode()))
    (folder / "cellSNP.tag.DP.mtx.gz").write_bytes(gzip.compress(mtx_text(DP).replace("\t", " ").encode()))
    (folder / "cellSNP.samples.tsv").write_text("\n".join(BARCODES) + "\n\n")
    adata = read_cellsnp(folder)
    assert set(adata.layers) == {"AD", "DP"}
    assert adata.layers["DP"][2, 0] == 7 and adata.layers["AD"][1, 1] == 2


# ------------------------------------------------------------------------------------------------
# round trip
# ------------------------------------------------------------------------------------------------
def assert_same(a, b):
    assert list(a.obs_names) == list(b.obs_names)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert set(a.layers) == set(b.layers)
    for tag in a.layers:
        assert a.layers[tag].dtype == b.layers[tag].dtype
        assert (a.layers[tag] != b.layers[tag]).nnz == 0, tag
    assert a.X is None and b.X is None


def test_round_trip_is_exact(tmp_path):
    first = read_cellsnp(cellsnp_folder(tmp_path / "in"))
    out = write_cellsnp(first, tmp_path / "out")
    again = read_cellsnp(out)
    assert_same(first, again)
    assert {k: v for k, v in again.uns["alleles"].items() if k not in ("path", "files")} == {
        k: v for k, v in first.uns["alleles"].items() if k not in ("path", "files")
    }
    # the files are cellsnp-lite's layout: INFO totals, SNPs x cells, tab-separated entries in SNP order
    vcf_rows = [line for line in (out / "cellSNP.base.vcf").read_text().splitlines() if not line.startswith("#")]
    assert vcf_rows[1] == "chr5\t140011319\t.\tC\tT\t.\tPASS\tAD=2;DP=9;OTH=1"
    assert (out / "cellSNP.tag.DP.mtx").read_text() == mtx_text(DP)
    assert (out / "cellSNP.samples.tsv").read_text().splitlines() == BARCODES


def test_round_trip_of_a_larger_random_folder(tmp_path):
    rng = np.random.default_rng(7)
    n_cells, n_sites = 300, 500
    dp = sp.random(n_cells, n_sites, density=0.05, random_state=rng, data_rvs=lambda n: rng.integers(1, 40, n))
    dp = sp.csr_matrix(dp, dtype=np.int32)
    ad = dp.copy()
    ad.data = rng.binomial(ad.data, 0.4).astype(np.int32)
    from remnant.io._common import new_adata

    var = pd.DataFrame(
        {
            "chromosome": rng.choice(["chr1", "chr5", "chrX"], n_sites).astype(object),
            "position": rng.integers(1, 10**8, n_sites).astype(np.int64),
            "ref": rng.choice(list("ACGT"), n_sites).astype(object),
            "alt": rng.choice(list("ACGT"), n_sites).astype(object),
        },
        index=[f"site{i}" for i in range(n_sites)],
    )
    x = new_adata(
        obs=pd.DataFrame(index=[f"BC{i:05d}-1" for i in range(n_cells)]), var=var, layers={"AD": ad, "DP": dp}
    )
    first = read_cellsnp(write_cellsnp(x, tmp_path / "a"))
    assert (first.layers["AD"] != ad).nnz == 0 and (first.layers["DP"] != dp).nnz == 0
    assert list(first.var["position"]) == list(var["position"])
    assert_same(first, read_cellsnp(write_cellsnp(first, tmp_path / "b")))


def test_regions_keep_only_their_snps_as_a_full_read_would(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import remnant.io.alleles as io_alleles
    from remnant.io._common import new_adata

    rng = np.random.default_rng(11)
    n_cells, n_sites = 200, 400
    dp = sp.csr_matrix(
        sp.random(n_cells, n_sites, density=0.08, random_state=rng, data_rvs=lambda n: rng.integers(1, 30, n)),
        dtype=np.int32,
    )
    ad = dp.copy()
    ad.data = rng.binomial(ad.data, 0.5).astype(np.int32)
    # Ensembl names in the VCF ("5"), gene-table names in the regions ("chr5")
    var = pd.DataFrame(
        {
            "chromosome": rng.choice(["1", "5", "X"], n_sites).astype(object),
            "position": rng.integers(1, 2 * 10**8, n_sites).astype(np.int64),
            "ref": "A",
            "alt": "G",
        },
        index=[f"s{i}" for i in range(n_sites)],
    )
    cells = pd.DataFrame(index=[f"C{i}" for i in range(n_cells)])
    folder = write_cellsnp(new_adata(obs=cells, var=var, layers={"AD": ad, "DP": dp}), tmp_path / "genome")
    monkeypatch.setattr(io_alleles, "_CHUNK", 97)  # many parse blocks, most holding kept and dropped SNPs
    regions = [
        SimpleNamespace(chromosome="chr5", start=50_000_000, end=150_000_000),
        SimpleNamespace(chromosome="chrX", start=0, end=10**9),
    ]
    full = read_cellsnp(folder)
    some = read_cellsnp(folder, regions=regions)
    pos0 = var["position"].to_numpy() - 1
    chrom = var["chromosome"].to_numpy()
    want = ((chrom == "5") & (pos0 >= 50_000_000) & (pos0 < 150_000_000)) | (chrom == "X")
    assert 0 < want.sum() < n_sites
    assert list(some.var_names) == list(full.var_names[want])
    for tag in ("AD", "DP"):
        assert some.layers[tag].dtype == np.int32
        assert (some.layers[tag] != full.layers[tag][:, np.flatnonzero(want)]).nnz == 0
    info = some.uns["alleles"]
    assert info["n_sites"] == int(want.sum()) and info["n_sites_read"] == n_sites
    assert info["chromosomes"] == list(pd.unique(var["chromosome"]))
    # AD > DP at a kept SNP is named by that SNP, not by the row it has among the kept ones
    bad_site = int(np.flatnonzero(want & (np.diff(dp.tocsc().indptr) > 0))[-1])
    cell = int(dp[:, bad_site].nonzero()[0][0])
    lines = (folder / "cellSNP.tag.AD.mtx").read_text().splitlines()
    n_head = next(i for i, line in enumerate(lines) if not line.startswith("%")) + 1  # comments + size line
    head, body = lines[:n_head], lines[n_head:]
    body = [line for line in body if line.split()[:2] != [str(bad_site + 1), str(cell + 1)]]
    body.append(f"{bad_site + 1}\t{cell + 1}\t{int(dp[cell, bad_site]) + 1}")
    head[-1] = f"{n_sites}\t{n_cells}\t{len(body)}"
    (folder / "cellSNP.tag.AD.mtx").write_text("\n".join(head + body) + "\n")
    with pytest.raises(
        InputError, match=rf"AD > DP; first at SNP {re.escape(full.var_names[bad_site])}, cell C{cell} "
    ):
        read_cellsnp(folder, regions=regions)


def test_writer_refuses_a_non_empty_folder_and_bad_counts(tmp_path):
    adata = read_cellsnp(cellsnp_folder(tmp_path / "in"))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="occupied: exists and is not an empty folder"):
        write_cellsnp(adata, occupied)
    assert (occupied / "notes.txt").read_text() == "mine" and len(list(occupied.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_cellsnp(write_cellsnp(adata, empty)).shape == (4, 3)
    bad = adata.copy()
    bad.layers["AD"] = bad.layers["AD"] * 3
    with pytest.raises(ValueError, match=r"AD > DP; first at SNP chr5:1295228:G>A, cell AAACCTGAGAAGGCCT-1"):
        write_cellsnp(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name], "a half-written folder was left behind"


# ------------------------------------------------------------------------------------------------
# bad input: one InputError naming the file
# ------------------------------------------------------------------------------------------------
def broken(name: str, folder: Path) -> None:
    """Break one thing of a good folder (``name`` says what)."""
    if name == "no AD":
        (folder / "cellSNP.tag.AD.mtx").unlink()
    elif name == "no barcodes":
        (folder / "cellSNP.samples.tsv").unlink()
    elif name == "two VCFs":
        (folder / "cellSNP.base.vcf").write_text(VCF)
    elif name == "truncated gzip":
        data = (folder / "cellSNP.base.vcf.gz").read_bytes()
        (folder / "cellSNP.base.vcf.gz").write_bytes(data[: len(data) // 2])
    elif name == "corrupt gzip matrix":
        data = bytearray(gzip.compress(mtx_text(DP).encode()))
        data[20:30] = b"0123456789"
        (folder / "cellSNP.tag.DP.mtx").unlink()
        (folder / "cellSNP.tag.DP.mtx.gz").write_bytes(bytes(data))
    elif name == "empty VCF":
        (folder / "cellSNP.base.vcf.gz").write_bytes(gzip.compress(VCF.split("chr5\t")[0].encode()))
    elif name == "bad POS":
        (folder / "cellSNP.base.vcf.gz").write_bytes(gzip.compress(VCF.replace("1295228", "0").encode()))
    elif name == "too few VCF rows":
        (folder / "cellSNP.base.vcf.gz").write_bytes(gzip.compress(VCF.rsplit("chr5\t", 1)[0].encode()))
    elif name == "extra barcode":
        (folder / "cellSNP.samples.tsv").write_text("".join(f"{b}\n" for b in [*BARCODES, "TTTGTCATCTTTCCTC-1"]))
    elif name == "duplicate barcode":
        (folder / "cellSNP.samples.tsv").write_text("".join(f"{b}\n" for b in [*BARCODES[:3], BARCODES[0]]))
    elif name == "AD above DP":
        (folder / "cellSNP.tag.AD.mtx").write_text(mtx_text([(1, 1, 6), (1, 3, 4), (2, 2, 2)]))
    elif name == "negative":
        (folder / "cellSNP.tag.DP.mtx").write_text(mtx_text([*DP[:4], (3, 1, -4)]))
    elif name == "non-integer":
        (folder / "cellSNP.tag.DP.mtx").write_text(mtx_text([*DP[:4], (3, 1, 4.5)]))
    elif name == "truncated mtx":
        (folder / "cellSNP.tag.DP.mtx").write_text(mtx_text(DP).rsplit("3\t1\t4\n", 1)[0])
    elif name == "more entries than announced":
        (folder / "cellSNP.tag.AD.mtx").write_text(mtx_text(AD).replace("\t3\n", "\t2\n", 1))
    elif name == "not mtx":
        (folder / "cellSNP.tag.OTH.mtx").write_text("SNP\tcell\tcount\n1\t1\t1\n")
    elif name == "entry outside":
        (folder / "cellSNP.tag.AD.mtx").write_text(mtx_text([(1, 1, 3), (1, 5, 4), (2, 2, 2)]))
    elif name == "repeated entry":
        (folder / "cellSNP.tag.AD.mtx").write_text(mtx_text([(1, 1, 3), (1, 1, 1), (2, 2, 2)]))


BAD = {
    "no AD": ("f", r"lacks cellSNP\.tag\.AD\.mtx or cellSNP\.tag\.AD\.mtx\.gz"),
    "no barcodes": ("f", r"lacks cellSNP\.samples\.tsv"),
    "two VCFs": ("f", r"two versions of the same file \(cellSNP\.base\.vcf\.gz and cellSNP\.base\.vcf\)"),
    "truncated gzip": ("cellSNP.base.vcf.gz", "not a complete gzip file"),
    "corrupt gzip matrix": ("cellSNP.tag.DP.mtx.gz", "not a complete gzip file"),
    "empty VCF": ("cellSNP.base.vcf.gz", "lists no SNP .*chromosome names"),
    "bad POS": ("cellSNP.base.vcf.gz", r"line 8, sample P1: bad SNP row 'chr5\\t0\\t"),
    "too few VCF rows": ("cellSNP.tag.AD.mtx", "is 3 SNPs x 4 cells, but the VCF lists 2 SNPs"),
    "extra barcode": ("cellSNP.tag.AD.mtx", "cellSNP.samples.tsv 5 barcodes"),
    "duplicate barcode": ("cellSNP.samples.tsv", r"1 barcode\(s\) listed twice \(e\.g\. \['AAACCTGAGAAGGCCT-1'\]\)"),
    "AD above DP": (
        "cellSNP.tag.AD.mtx",
        "1 entries where AD > DP; first at SNP chr5:1295228:G>A, cell AAACCTGAGAAGGCCT-1",
    ),
    "negative": ("cellSNP.tag.DP.mtx", "1 negative count.*SNP chr5:140011319:C>G, cell AAACCTGAGAAGGCCT-1 .value -4"),
    "non-integer": ("cellSNP.tag.DP.mtx", "1 non-integer count.*value 4.5"),
    "truncated mtx": ("cellSNP.tag.DP.mtx", "has 4 entries, but its size line announces 5"),
    "more entries than announced": ("cellSNP.tag.AD.mtx", r"has more entries than its size line announces \(2\)"),
    "not mtx": ("cellSNP.tag.OTH.mtx", "not a MatrixMarket coordinate matrix"),
    "entry outside": ("cellSNP.tag.AD.mtx", r"outside its 3 SNPs x 4 cells \(first: row 1, column 5\)"),
    "repeated entry": ("cellSNP.tag.AD.mtx", "1 entries listed twice"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_folder_gives_one_line_naming_the_file(tmp_path, name):
    folder = cellsnp_folder(tmp_path / "f")
    broken(name, folder)
    before = digest(folder)
    file, pattern = BAD[name]
    named = folder if file == "f" else folder / file
    with pytest.raises(InputError) as caught:
        read_cellsnp(folder, source="sample P1")
    message = str(caught.value)
    assert message.startswith(f"{named}: "), message
    assert re.search(pattern, message), message
    assert "\n" not in message
    assert digest(folder) == before, "reading changed an input file"


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(InputError, match=r"nowhere: cellsnp-lite folder does not exist"):
        read_cellsnp(tmp_path / "nowhere")
    file = tmp_path / "cellSNP.base.vcf"
    file.write_text(VCF)
    with pytest.raises(InputError, match=r"cellSNP\.base\.vcf: is a file, but cellsnp-lite output is a folder"):
        read_cellsnp(file)


# ------------------------------------------------------------------------------------------------
# matching to a sample's cells
# ------------------------------------------------------------------------------------------------
def test_match_cells_orders_zero_fills_and_counts_dropped(tmp_path):
    alleles = read_cellsnp(cellsnp_folder(tmp_path / "f"))
    # the count matrix: cells 3 and 1 of the allele data, one cell cellsnp-lite did not list; cells 2, 4 dropped
    cells = [f"P1_dx:{BARCODES[2]}", "P1_dx:GGGTTTCCCAAATTTG-1", f"P1_dx:{BARCODES[0]}"]
    matched = match_cells(alleles, cells, sample="P1_dx", counts_source="P1_dx/filtered_feature_bc_matrix")
    assert list(matched.obs_names) == cells and matched.X is None
    assert list(matched.obs["barcode"]) == [BARCODES[2], "GGGTTTCCCAAATTTG-1", BARCODES[0]]
    assert list(matched.obs["has_alleles"]) == [True, False, True]
    assert matched.layers["AD"].dtype == np.int32 and sp.isspmatrix_csr(matched.layers["DP"])
    assert matched.layers["DP"].toarray().tolist() == [[7, 0, 0], [0, 0, 0], [5, 0, 4]]
    assert matched.layers["AD"].toarray().tolist() == [[4, 0, 0], [0, 0, 0], [3, 0, 0]]
    info = matched.uns["alleles"]
    assert (info["n_cells"], info["n_matched"], info["n_missing"], info["n_dropped"]) == (3, 2, 1, 2)
    assert info["sample"] == "P1_dx" and info["n_sites"] == 3
    pd.testing.assert_frame_equal(matched.var, alleles.var)


def test_match_cells_names_a_suffix_mismatch(tmp_path):
    folder = cellsnp_folder(tmp_path / "f", barcodes=[b.removesuffix("-1") for b in BARCODES])
    alleles = read_cellsnp(folder)
    cells = [f"P1_dx:{b}" for b in BARCODES]
    with pytest.raises(InputError) as caught:
        match_cells(alleles, cells, sample="P1_dx", counts_source="counts/P1_dx.h5")
    message = str(caught.value)
    assert message.startswith(f"{folder}: sample P1_dx: only 0 of the 4 cells of the count matrix counts/P1_dx.h5")
    assert "'AAACCTGAGAAGGCCT-1'" in message and "'AAACCTGAGAAGGCCT'" in message
    assert "without a '-<number>' suffix 4 would match" in message


def test_match_cells_another_samples_folder(tmp_path):
    alleles = read_cellsnp(cellsnp_folder(tmp_path / "f"))
    cells = ["P2:TTTGTCATCTTTCCTC-1", "P2:TTTGGTTTCGCTAGCG-1", f"P2:{BARCODES[0]}"]
    with pytest.raises(InputError, match=r"only 1 of the 3 cells .*another sample's cellsnp-lite output"):
        match_cells(alleles, cells, sample="P2")
    with pytest.raises(ValueError, match="not named 'P2:<barcode>'"):
        match_cells(alleles, [BARCODES[0]], sample="P2")
