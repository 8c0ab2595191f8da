"""Rule simulate_cohort: the demo cohort simulated into the files the workflow reads, truth beside them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

#: The demo parameters' place in the config (named in the simulator's messages).
PARAMS_KEY = "demo.params"
#: The sites VCF the demo writes for its BAM samples (``alleles.bam_samples``): config ``alleles.sites``.
SIMULATED_SITES = "results/demo/inputs/sites.vcf"
#: Where the demo writes the allele counts its BAMs hold (the truth rule count_alleles must give back).
TRUTH_FOLDER = "results/demo/truth"


def check_no_sites(sites: str | None, *, source: str = "config") -> None:
    """With ``demo.simulate: true`` the config names no sites VCF: the simulator writes its own
    (:data:`SIMULATED_SITES`) and never reads a user's file (as the sheet's columns, issue 19)."""
    from remnant.errors import InputError

    if sites:
        raise InputError(
            f"names {sites!r} but the config sets demo.simulate: true, which simulates every sample and counts its "
            f"simulated BAMs at the sites it writes ({SIMULATED_SITES}); set alleles.sites: null for the demo, or "
            "demo.simulate: false to analyse your files.",
            path=source,
            where="alleles.sites",
        )


def simulate_demo(
    rows: list[dict],
    *,
    genes: str,
    markers: str,
    gene_sets: str,
    params: Mapping[str, Any],
    seed: int,
    cells: str,
    patients: str,
) -> None:
    """Simulate every sample of the sheet (``rows``: its records) and write each one's counts and
    index-sort table where its row says, as soon as it is made (memory of one sample, not of the
    cohort); then the cellsnp-lite folder of each sample whose row names one (column ``alleles``:
    the samples ``params.alleles`` gives allele data), the per-cell truth (``cells``, gzipped TSV)
    and the patients' table (``patients``)."""
    from remnant.io.annotation import load_genes
    from remnant.io.counts import write_counts
    from remnant.io.genesets import read_gene_sets, read_markers
    from remnant.sim.cohort import simulate_cohort

    log = logging.getLogger(__name__)
    sheet = pd.DataFrame.from_records(rows).set_index("sample", drop=False)
    sheet_rows = sheet.to_dict(orient="index")

    def write(sample, counts, index_sort):
        row = sheet_rows[sample]
        Path(row["counts"]).parent.mkdir(parents=True, exist_ok=True)
        write_counts(counts, row["counts"], row["format"])
        if row["index_sort"]:
            index_sort.to_csv(row["index_sort"], index_label="barcode", float_format="%.2f")
        log.info("%s: %d cells written to %s (%s)", sample, counts.n_obs, row["counts"], row["format"])

    cohort = simulate_cohort(
        sheet,
        load_genes(genes),
        read_markers(markers),
        read_gene_sets(gene_sets),
        params=params,
        seed=seed,
        write=write,
        root=PARAMS_KEY,
    )
    write_alleles(cohort.alleles, sheet_rows, seed=seed)
    cohort.cells.to_csv(cells, sep="\t", index=False, compression={"method": "gzip", "mtime": 0})
    cohort.patients.to_csv(patients, sep="\t", index=False)


def write_alleles(alleles: Mapping[str, Any], sheet_rows: Mapping[str, Mapping], *, seed: int = 0) -> None:
    """Each simulated sample's allele counts (``alleles``: sample -> AnnData) where its row says: a
    cellsnp-lite folder at ``alleles`` (:func:`remnant.io.alleles.write_cellsnp`), or reads at ``bam``
    (:func:`write_reads`), with the sites VCF (:data:`SIMULATED_SITES`) of those samples. A sample
    with allele counts has a path and a row with a path has allele counts (the sheet's paths and the
    simulator's ``alleles.patients`` come from the same parameters)."""
    from remnant.io.alleles import write_cellsnp

    log = logging.getLogger(__name__)
    wanted = {s for s, row in sheet_rows.items() if row.get("alleles", "") or row.get("bam", "")}
    if wanted != set(alleles):
        raise RuntimeError(
            f"the sheet names allele data for {sorted(wanted)} but the simulator drew allele counts for "
            f"{sorted(alleles)}"
        )
    reads = {s: a for s, a in alleles.items() if sheet_rows[s].get("bam", "")}
    for sample, adata in alleles.items():
        if sample in reads:
            write_reads(adata, sheet_rows[sample], seed=seed)
            continue
        folder = write_cellsnp(adata, sheet_rows[sample]["alleles"])
        log.info("%s: allele counts of %d cells x %d SNPs written to %s", sample, adata.n_obs, adata.n_vars, folder)
    if reads:
        n = write_sites_vcf(list(reads.values()), SIMULATED_SITES)
        log.info("%d sites of %d BAM samples written to %s", n, len(reads), SIMULATED_SITES)


def write_reads(adata, row: Mapping, *, seed: int = 0) -> None:
    """One sample's allele counts as reads (:mod:`remnant.sim.bam`): a droplet sample's one indexed BAM
    at its row's ``bam`` (barcodes ``CB``, UMIs ``UB``), a plate sample's BAM per cell in the folder
    beside its manifest (``{name}.bams.tsv`` -> ``{name}.bams/``, paths relative to the manifest).
    The counts the reads hold are written to ``{TRUTH_FOLDER}/{sample}.cellsnp`` (the truth)."""
    import zlib

    import numpy as np

    from remnant.io.alleles import write_cellsnp
    from remnant.sim.bam import write_bam, write_plate_bams

    log = logging.getLogger(__name__)
    sample, path = str(row["sample"]), Path(row["bam"])
    path.parent.mkdir(parents=True, exist_ok=True)
    draw = int(np.random.SeedSequence([int(seed), zlib.crc32(sample.encode())]).generate_state(1)[0])
    if path.suffix == ".bam":
        written = write_bam(adata, path, seed=draw)
    else:
        written = write_plate_bams(adata, path.with_suffix(""), seed=draw)
        with open(path, "x", encoding="utf-8") as handle:
            handle.write("cell\tbam\n")
            handle.writelines(f"{cell}\t{path.with_suffix('').name}/{bam.name}\n" for cell, bam in written.bams.items())
    write_cellsnp(adata, f"{TRUTH_FOLDER}/{sample}.cellsnp")
    log.info(
        "%s: %d reads (%d noise) of %d cells x %d SNPs written to %s",
        sample,
        written.n_reads,
        written.n_noise,
        adata.n_obs,
        adata.n_vars,
        path,
    )


def write_sites_vcf(tables: list, path: str) -> int:
    """The sites of the samples' allele counts (``var``: ``chromosome, position, ref, alt, site_id``),
    each once, as a plain VCF sorted by chromosome and position; returns how many."""
    var = pd.concat([t.var[["chromosome", "position", "ref", "alt", "site_id"]] for t in tables], ignore_index=True)
    var = var.astype({"chromosome": str, "ref": str, "alt": str, "site_id": str})
    var = var.drop_duplicates(["chromosome", "position", "ref", "alt"]).sort_values(["chromosome", "position"])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as handle:
        handle.write("##fileformat=VCFv4.2\n")
        handle.writelines(f"##contig=<ID={c}>\n" for c in pd.unique(var["chromosome"]))
        handle.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        handle.writelines(
            f"{c}\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t.\n"
            for c, p, i, r, a in var[["chromosome", "position", "site_id", "ref", "alt"]].itertuples(index=False)
        )
    return len(var)
