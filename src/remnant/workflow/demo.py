"""Rule simulate_cohort: the demo cohort simulated into the files the workflow reads, truth beside them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

#: The demo parameters' place in the config (named in the simulator's messages).
PARAMS_KEY = "demo.params"


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
    write_alleles(cohort.alleles, sheet_rows)
    cohort.cells.to_csv(cells, sep="\t", index=False, compression={"method": "gzip", "mtime": 0})
    cohort.patients.to_csv(patients, sep="\t", index=False)


def write_alleles(alleles: Mapping[str, Any], sheet_rows: Mapping[str, Mapping]) -> None:
    """Each simulated sample's allele counts (``alleles``: sample -> AnnData) as a cellsnp-lite folder
    at its row's ``alleles`` path (:func:`remnant.io.alleles.write_cellsnp`); a row that names a folder
    must have allele counts and a sample with allele counts a folder (the sheet's paths and the
    simulator's ``alleles.patients`` come from the same parameters)."""
    from remnant.io.alleles import write_cellsnp

    log = logging.getLogger(__name__)
    wanted = {s for s, row in sheet_rows.items() if row.get("alleles", "")}
    if wanted != set(alleles):
        raise RuntimeError(
            f"the sheet names cellsnp-lite folders for {sorted(wanted)} but the simulator drew allele counts for "
            f"{sorted(alleles)}"
        )
    for sample, adata in alleles.items():
        folder = write_cellsnp(adata, sheet_rows[sample]["alleles"])
        log.info("%s: allele counts of %d cells x %d SNPs written to %s", sample, adata.n_obs, adata.n_vars, folder)
