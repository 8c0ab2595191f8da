"""The shipped GRCh38 annotation and the annotation readers."""

from __future__ import annotations

import gzip

import pytest

from remnant.errors import InputError
from remnant.io.annotation import chromosome_arms, genes_from_gtf, load_genes, strip_version


def test_chr5_arms_match_grch38(cytobands):
    arms = chromosome_arms(cytobands).set_index(["chromosome", "arm"])
    assert arms.loc[("chr5", "p"), "end"] == 48_800_000  # start of 5q11.1
    assert arms.loc[("chr5", "q"), "end"] == 181_538_259  # chr5 length
    assert len(arms) == 48  # 22 autosomes, X and Y x 2 arms
    assert arms.loc[("chrX", "p"), "end"] == 61_000_000 and arms.loc[("chrY", "q"), "end"] == 57_227_415


def test_known_genes_are_placed(genes):
    by_name = genes.set_index("gene_name")
    rps14 = by_name.loc["RPS14"]
    assert (rps14["chromosome"], rps14["arm"], rps14["band"]) == ("chr5", "q", "5q33.1")
    assert 150_400_000 < rps14["start"] < 150_500_000
    assert by_name.loc["CSNK1A1", "band"] == "5q32"
    assert by_name.loc["CD34", "chromosome"] == "chr1"
    assert genes.index.is_unique
    assert not genes["gene_id"].str.contains(r"\.").any()
    assert (genes["gene_type"] == "protein_coding").sum() > 19_000


def test_strip_version():
    import pandas as pd

    out = strip_version(pd.Series(["ENSG00000164587.13", "ENSG00000164587", "RPS14", "ENSG1.2.3"]))
    assert list(out) == ["ENSG00000164587", "ENSG00000164587", "RPS14", "ENSG1.2.3"]


def test_gtf_reader(tmp_path, cytobands):
    gtf = tmp_path / "mini.gtf.gz"
    lines = [
        "#!genome-build GRCh38",
        '5\tensembl\tgene\t150442635\t150449739\t.\t-\t.\tgene_id "ENSG00000164587.13"; gene_name "RPS14"; gene_biotype "protein_coding";',
        '5\tensembl\ttranscript\t150442635\t150449739\t.\t-\t.\tgene_id "ENSG00000164587.13"; transcript_id "ENST1";',
        'MT\tensembl\tgene\t3307\t4262\t.\t+\t.\tgene_id "ENSG00000198888"; gene_name "MT-ND1"; gene_biotype "protein_coding";',
    ]
    with gzip.open(gtf, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    genes = genes_from_gtf(gtf, cytobands)
    assert list(genes["gene_name"]) == ["RPS14", "MT-ND1"]
    rps14 = genes.iloc[0]
    assert (rps14["chromosome"], rps14["start"], rps14["end"], rps14["band"]) == (
        "chr5",
        150442634,
        150449739,
        "5q33.1",
    )
    assert genes.iloc[1]["chromosome"] == "chrM"


def test_missing_tables_are_named(tmp_path):
    with pytest.raises(InputError, match=r"genes\.tsv\.gz: gene annotation table does not exist"):
        load_genes(tmp_path / "genes.tsv.gz")
    # a table of another layout: what else to do is the caller's (the workflow names its config key)
    other = tmp_path / "other.tsv"
    other.write_text("gene\tchrom\nCD34\tchr1\n")
    with pytest.raises(InputError, match=r"make_annotation\.py or read a GTF with genes_from_gtf\.$"):
        load_genes(other)
    with pytest.raises(InputError, match=r"make_annotation\.py or use annotation\.gtf\.$"):
        load_genes(other, instead="use annotation.gtf")
    bad = tmp_path / "bad.gtf"
    bad.write_text("not a gtf\n")
    with pytest.raises(InputError, match="no 'gene' features"):
        genes_from_gtf(bad)
