"""Rules find_sites, count_alleles and read_alleles: one sample's reads or cellsnp-lite folder -> its kept
cells x the SNPs the calls use.

A patient whose sheet rows name reads is counted at the heterozygous SNPs of its own VCF (sheet column
``sites``), else at those of config ``alleles.sites``; with neither, its sites are found in the pooled
reads of those samples, inside the lesions and the control region
(:func:`find_sites`, rule ``find_sites``: :func:`remnant.io.bam.find_sites`), written as a plain VCF
(``results/alleles/sites/{patient}.vcf``) that each of its samples is then counted at.

A sample whose sheet row names reads (column ``bam``: an indexed BAM, or a plate's manifest of one
BAM per cell) has them counted first (:func:`count_alleles`, rule ``count_alleles``): its kept cells'
molecules at its patient's sites inside the lesions and the control region, written
as a cellsnp-lite folder (``results/alleles/{sample}.cellsnp``) that rule ``read_alleles`` then reads
like a user's.

A sample whose sheet row names a cellsnp-lite output folder (column ``alleles``) has its allele
counts read (:func:`remnant.io.alleles.read_cellsnp`), cut to the SNPs inside a configured lesion's
region or the control region (config ``alleles.control_region``: the baseline allele balance of
every cell) and matched to the cells the workflow keeps after QC
(:func:`remnant.io.alleles.match_cells`; the cells of ``results/cohort/clustered.h5ad``, named
``"{sample}:{barcode}"``). The user's folder is only read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anndata
import numpy as np
import pandas as pd

from remnant.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "CONTROL",
    "allele_regions",
    "count_alleles",
    "find_sites",
    "kept_cells",
    "read_alleles",
    "region_sites",
    "write_sites_vcf",
]

#: Name of the control region among the regions (:func:`allele_regions`) and in ``uns``.
CONTROL = "control"
#: The config key of the control region, named in messages.
CONTROL_KEY = "alleles.control_region"


def allele_regions(
    lesions: Sequence[Mapping] | None, control_region: str | int | None, cytobands: pd.DataFrame
) -> list:
    """The configured lesions and the control region, as :class:`remnant.tl.lesions.Lesion`.

    Parameters
    ----------
    lesions
        The config's ``lesions`` list (:func:`remnant.tl.lesions.parse_lesions`).
    control_region
        ``alleles.control_region``: a region written as a lesion's (coordinates, cytoband range,
        arm or chromosome, a bare chromosome number as YAML reads it), or None for none.
    cytobands
        :func:`remnant.io.annotation.load_cytobands` table.

    Returns
    -------
    list of Lesion
        The lesions in config order, then the control region (named :data:`CONTROL`) if any.

    Raises
    ------
    InputError
        A lesion named ``control``, a control region that does not parse or overlaps a lesion
        (naming ``alleles.control_region``).
    """
    from remnant.tl.lesions import parse_lesions, parse_region

    regions = parse_lesions(lesions, cytobands)
    if control_region is None:
        return regions
    named = [r.name for r in regions if r.name == CONTROL]
    if named:
        raise InputError(
            f"a lesion is named {CONTROL!r}, the name of the allele control region; rename the lesion.",
            where="lesions",
        )
    # a control region has no type: only its span is read, whatever its sign (dup(1)(q21q32), +8)
    try:
        control = parse_region(control_region, cytobands, name=CONTROL)
    except InputError as err:
        raise InputError(
            f"{err.detail.rstrip('.')}; or set it to null for no control region.", where=CONTROL_KEY
        ) from None
    for lesion in regions:
        if lesion.chromosome == control.chromosome and control.start < lesion.end and lesion.start < control.end:
            raise InputError(
                f"{control_region!r} ({control.chromosome}:{control.start}-{control.end}) overlaps lesion "
                f"{lesion.name!r} ({lesion.chromosome}:{lesion.start}-{lesion.end}); a control region must lie "
                "outside every lesion (or null for none).",
                where=CONTROL_KEY,
            )
    return [*regions, control]


def region_sites(alleles: anndata.AnnData, regions: Sequence) -> tuple[np.ndarray, dict[str, int]]:
    """Which SNPs lie inside any of ``regions`` (:func:`remnant.tl.alleles.lesion_sites`).

    Returns the boolean (n_sites,) mask and, per region name, the number of SNPs inside it.
    """
    from remnant.tl.alleles import lesion_sites

    keep = np.zeros(alleles.n_vars, dtype=bool)
    counts = {}
    for region in regions:
        inside = lesion_sites(alleles, region)
        counts[region.name] = int(inside.sum())
        keep |= inside
    return keep, counts


def kept_cells(h5ad: str) -> pd.Index:
    """The ``obs_names`` of an h5ad (``"{sample}:{barcode}"``), read without its matrices."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(h5ad, "r") as f:
        return pd.Index(read_elem(f["obs"]).index.astype(str))


def read_alleles(
    folder: str,
    cells: str,
    out: str,
    *,
    sample: str,
    lesions: Sequence[Mapping] | None,
    control_region: str | None,
    cytobands: str,
    counts: str | None = None,
) -> anndata.AnnData:
    """Write one sample's allele counts at the lesions' and the control region's SNPs, for its kept cells.

    Parameters
    ----------
    folder
        The sample's cellsnp-lite output folder (sheet column ``alleles``); only read.
    cells
        An h5ad whose cells are the sample's kept cells (``results/samples/{sample}/filtered.h5ad``);
        only its ``obs_names`` are read.
    out
        The h5ad to write (gzip-compressed).
    sample
        The sample's name (cells are ``"{sample}:{barcode}"``).
    lesions, control_region
        The config's ``lesions`` and ``alleles.control_region`` (:func:`allele_regions`).
    cytobands
        Path of the cytoband table the regions are read against.
    counts
        The sample's counts path, named when the barcodes do not match.

    Returns
    -------
    anndata.AnnData
        What is written: the kept cells (in ``cells``' order) x the SNPs inside any region (VCF order);
        ``X`` None, ``layers["AD"]`` and ``layers["DP"]`` CSR int32 (zeros for a cell cellsnp-lite did
        not list), ``obs`` ``barcode``, ``has_alleles``, ``var`` as
        :func:`remnant.io.alleles.read_cellsnp` gives it (``chromosome``, ``ref``, ``alt`` categorical,
        as h5ad stores text). ``uns["alleles"]``: ``path`` (the folder), ``sample``, ``n_cells`` (kept cells),
        ``n_matched``, ``n_missing``, ``n_dropped`` (barcodes of the folder that are no kept cell),
        ``n_barcodes`` (in the folder), ``n_sites_read``, ``n_sites`` (kept), ``regions`` (name ->
        ``chrom:start-end``, 0-based half-open) and ``region_sites`` (name -> SNPs inside).

    Raises
    ------
    InputError
        The folder's files (:func:`remnant.io.alleles.read_cellsnp`) or barcodes that do not match the
        sample's cells (:func:`remnant.io.alleles.match_cells`), naming the sample.
    """
    from remnant.io.alleles import match_cells, read_cellsnp
    from remnant.io.annotation import load_cytobands

    regions = allele_regions(lesions, control_region, load_cytobands(cytobands))
    names = kept_cells(cells)
    # only the regions' SNPs are stored: a genome-wide folder costs the memory of the sites the calls use
    alleles = read_cellsnp(folder, source=f"sample {sample}", regions=regions)
    n_read = alleles.uns["alleles"]["n_sites_read"]
    log.info("%s: %d barcodes x %d SNPs read from %s", sample, alleles.n_obs, n_read, folder)
    _, per_region = region_sites(alleles, regions)  # the read kept exactly the regions' SNPs
    log.info("%s: %d of %d SNPs kept (per region: %s)", sample, alleles.n_vars, n_read, per_region)
    for name, n in per_region.items():
        if n == 0:
            log.warning(
                "%s: no SNP of %s lies inside %s %r; the folder's VCF names chromosomes %s: were the SNPs called "
                "on another genome build, or restricted to other regions?",
                sample,
                folder,
                "the control region" if name == CONTROL else "lesion",
                name,
                sorted(alleles.uns["alleles"]["chromosomes"])[:6],
            )
    subset = anndata.AnnData(
        obs=alleles.obs.copy(),
        var=alleles.var.copy(),
        layers={tag: alleles.layers[tag] for tag in ("AD", "DP")},
        uns={"alleles": dict(alleles.uns["alleles"])},
    )
    matched = match_cells(subset, names, sample=sample, counts_source=counts)
    for column in ("chromosome", "ref", "alt"):  # as h5ad stores text columns: the same in memory and on disk
        matched.var[column] = matched.var[column].astype("category")
    matched.uns["alleles"] |= {
        "n_barcodes": int(alleles.n_obs),
        "n_sites_read": int(n_read),
        "n_sites": int(matched.n_vars),
        "regions": {r.name: f"{r.chromosome}:{r.start}-{r.end}" for r in regions},
        "region_sites": per_region,
    }
    info = matched.uns["alleles"]
    log.info(
        "%s: %d of %d kept cells matched (%d without allele data); %d barcodes of the folder are no kept cell",
        sample,
        info["n_matched"],
        info["n_cells"],
        info["n_missing"],
        info["n_dropped"],
    )
    matched.write_h5ad(out, compression="gzip")
    log.info("%s: wrote %d cells x %d SNPs to %s", sample, matched.n_obs, matched.n_vars, out)
    return matched


def count_alleles(
    bam: str,
    cells: str,
    out: str,
    *,
    sample: str,
    sites: str,
    lesions: Sequence[Mapping] | None,
    control_region: str | None,
    cytobands: str,
    barcode_tag: str = "CB",
    umi_tag: str | None = "UB",
    min_mapq: int = 20,
    min_baseq: int = 20,
    sites_source: str = "alleles.sites",
) -> anndata.AnnData:
    """Count one sample's kept cells' alleles in its reads at the sites inside the lesions and the control
    region, and write them as a cellsnp-lite folder.

    Parameters
    ----------
    bam
        The sheet's column ``bam``: an indexed BAM (name ending ``.bam``; cells told apart by
        ``barcode_tag``) or a plate's manifest (``cell<TAB>bam`` lines,
        :func:`remnant.io.bam.read_bam_manifest`). Only read.
    cells
        An h5ad whose cells are the sample's kept cells (``results/samples/{sample}/filtered.h5ad``,
        ``"{sample}:{barcode}"``); only its ``obs_names`` are read.
    out
        The cellsnp-lite folder to write (must not exist or be empty).
    sample
        The sample's name.
    sites
        The patient's VCF (sheet column ``sites``), else config ``alleles.sites``, else the patient's sites
        rule ``find_sites`` wrote; only its biallelic SNPs inside the regions are read
        (:func:`remnant.io.bam.read_sites`), never written.
    lesions, control_region, cytobands
        The regions (:func:`allele_regions`); ``cytobands`` the table's path.
    barcode_tag, umi_tag, min_mapq, min_baseq
        As :func:`remnant.io.bam.count_alleles` (``umi_tag`` None for plates).
    sites_source
        Where ``sites`` comes from (the sheet column, the config key or the rule), named in messages.

    Returns
    -------
    anndata.AnnData
        What is written: the kept cells' barcodes (in ``cells``' order, zeros for a cell without reads)
        x the sites inside the regions (VCF order), ``layers`` AD, DP, OTH (CSR int32);
        ``uns["alleles"]`` as :func:`remnant.io.bam.count_alleles` gives it.

    Raises
    ------
    InputError
        The sites VCF (missing, no SNP inside the regions, naming ``sites_source``), the BAMs (missing,
        unindexed, tags absent, no kept cell among its barcodes or the manifest's cells), naming the sample.
    """
    from remnant.io.alleles import write_cellsnp
    from remnant.io.annotation import load_cytobands
    from remnant.io.bam import count_alleles as count_reads
    from remnant.io.bam import read_bam_manifest, read_sites

    regions = allele_regions(lesions, control_region, load_cytobands(cytobands))
    table = read_sites(sites, regions=[(r.chromosome, r.start, r.end) for r in regions], source=sites_source)
    log.info("%s: %d sites of %s inside %s", sample, len(table), sites, [r.name for r in regions])
    barcodes = kept_cells(cells).str.slice(len(sample) + 1)
    manifest = None if str(bam).lower().endswith(".bam") else read_bam_manifest(bam)
    if manifest is not None:
        _check_manifest_cells(manifest, barcodes, bam, sample)
    log.info("%s: counting %d kept cells in %s", sample, len(barcodes), bam)
    counted = count_reads(
        bam if manifest is None else manifest,
        table,
        cells=list(barcodes),
        barcode_tag=barcode_tag,
        umi_tag=umi_tag,
        min_mapq=min_mapq,
        min_baseq=min_baseq,
        source=f"sample {sample}",
    )
    info = counted.uns["alleles"]
    with_reads = int((np.diff(counted.layers["DP"].indptr) > 0).sum())
    log.info("%s: reads %s; molecules %s", sample, info["reads"], info["molecules"])
    log.info("%s: %d of %d kept cells have allele reads at %d sites", sample, with_reads, counted.n_obs, counted.n_vars)
    write_cellsnp(counted, out)
    log.info("%s: wrote the cellsnp-lite folder %s", sample, out)
    return counted


def _check_manifest_cells(manifest: Mapping, barcodes: pd.Index, path: str, sample: str) -> None:
    """Most kept cells are cells of the manifest (else it is another sample's, or named otherwise)."""
    from remnant.io.alleles import MIN_MATCHED_FRACTION

    found = barcodes.isin(list(manifest))
    if len(barcodes) and found.sum() < MIN_MATCHED_FRACTION * len(barcodes):
        raise InputError(
            f"only {int(found.sum())} of the {len(barcodes)} cells QC kept are cells of the manifest (it names e.g. "
            f"{list(manifest)[:3]}, the counts e.g. {list(barcodes[:3])}); the manifest's cell names must be the "
            "count matrix's barcodes: is it another sample's?",
            path=path,
            where=f"sample {sample}",
        )
    if not found.all():
        log.warning("%s: %d kept cells are not in the manifest %s (no allele reads)", sample, int((~found).sum()), path)


#: The config key of site discovery's minimums, named in messages.
DISCOVERY_KEY = "alleles.discovery"


def find_sites(
    bams: Sequence[str],
    out: str,
    *,
    patient: str,
    samples: Sequence[str],
    lesions: Sequence[Mapping] | None,
    control_region: str | None,
    cytobands: str,
    barcode_tag: str = "CB",
    umi_tags: Sequence[str | None] | None = None,
    min_mapq: int = 20,
    min_baseq: int = 20,
    min_depth: int = 10,
    min_minor_reads: int = 3,
    min_minor_fraction: float = 0.05,
) -> pd.DataFrame:
    """Find one patient's heterozygous sites in the pooled reads of its samples and write them as a VCF.

    Parameters
    ----------
    bams
        The sheet's column ``bam`` of each of the patient's samples with reads (a BAM or a plate
        manifest); only read.
    out
        The VCF to write (plain text; :func:`write_sites_vcf`).
    patient, samples
        The patient and its samples (in ``bams``' order), named in the log and in errors.
    lesions, control_region, cytobands
        The regions piled up (:func:`allele_regions`); ``cytobands`` the table's path.
    barcode_tag, umi_tags, min_mapq, min_baseq
        As :func:`remnant.io.bam.find_sites`; ``umi_tags`` one per BAM (None for plates).
    min_depth, min_minor_reads, min_minor_fraction
        Config ``alleles.discovery``.

    Returns
    -------
    pandas.DataFrame
        The sites written (:func:`remnant.io.bam.find_sites`).

    Raises
    ------
    InputError
        The BAMs (missing, unindexed, of another reference), or no site found, naming the patient and
        ``alleles.discovery``.
    """
    from remnant.io.alleles import sites_in_regions
    from remnant.io.annotation import load_cytobands
    from remnant.io.bam import find_sites as find_in_reads

    regions = allele_regions(lesions, control_region, load_cytobands(cytobands))
    spans = [(r.chromosome, r.start, r.end) for r in regions]
    log.info("%s: finding sites in %s (samples %s) inside %s", patient, list(bams), list(samples), spans)
    found = find_in_reads(
        list(bams),
        spans,
        min_depth=min_depth,
        min_minor_reads=min_minor_reads,
        min_minor_fraction=min_minor_fraction,
        min_mapq=min_mapq,
        min_baseq=min_baseq,
        barcode_tag=barcode_tag,
        umi_tag=list(umi_tags) if umi_tags is not None else [None] * len(bams),
        source=f"patient {patient}",
    )
    log.info("%s: %s", patient, found.attrs["discovery"])
    if found.empty:
        raise InputError(
            f"no heterozygous site found in the pooled reads of samples {list(samples)} inside "
            f"{[r.name for r in regions]} at min_depth {min_depth}, min_minor_reads {min_minor_reads}, "
            f"min_minor_fraction {min_minor_fraction}; lower these, give the patient's "
            "heterozygous SNPs as a VCF (sheet column sites, or alleles.sites), or leave the samples' bam cells empty.",
            where=f"{DISCOVERY_KEY} (patient {patient})",
        )
    for region in regions:
        inside = sites_in_regions(found, [region])
        log.info(
            "%s: %d sites in %s; minor fraction median %.3f",
            patient,
            int(inside.sum()),
            region.name,
            float(found.loc[inside, "minor_fraction"].median()) if inside.any() else float("nan"),
        )
    write_sites_vcf(found, out, source=f"remnant find_sites, patient {patient}")
    log.info("%s: wrote %d sites to %s", patient, len(found), out)
    return found


def write_sites_vcf(sites: pd.DataFrame, path: str, *, source: str = "remnant") -> str:
    """Write sites (``chromosome, position`` 1-based, ``ref, alt``, optional ``ref_count``, ``alt_count``)
    as a plain VCF 4.2 in the given order: header (contigs in order of appearance), then ``CHROM POS ID
    REF ALT QUAL FILTER INFO`` with ID ``.``, INFO ``DP`` (REF + ALT) and ``AD`` (REF,ALT) when counts are
    given. Refuses to overwrite. Returns the path."""
    counts = {"ref_count", "alt_count"} <= set(sites.columns)
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(f"##fileformat=VCFv4.2\n##source={source}\n")
        handle.writelines(f"##contig=<ID={c}>\n" for c in pd.unique(sites["chromosome"].astype(str)))
        if counts:
            handle.write(
                '##INFO=<ID=DP,Number=1,Type=Integer,Description="REF + ALT molecules (fragments) pooled">\n'
                '##INFO=<ID=AD,Number=R,Type=Integer,Description="REF and ALT molecules (fragments) pooled">\n'
            )
        handle.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for row in sites.itertuples(index=False):
            info = f"DP={row.ref_count + row.alt_count};AD={row.ref_count},{row.alt_count}" if counts else "."
            handle.write(f"{row.chromosome}\t{row.position}\t.\t{row.ref}\t{row.alt}\t.\tPASS\t{info}\n")
    return path
