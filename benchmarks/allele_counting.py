"""Speed of allele counting from a BAM (issue 18): remnant.io.count_alleles vs ``samtools mpileup``.

The yardstick the issue names: ``samtools mpileup`` (Debian's samtools, one thread) over the same BAM
and sites (``-l`` the sites, ``-q``/``-Q`` the same mapping/base-quality minimums, the same flag
filter: unmapped, secondary, QC-fail, supplementary, with duplicate-flagged reads kept as
count_alleles keeps them with UMIs; no BAQ since no reference is given). mpileup is not
barcode-aware: it piles up every read at each site; remnant also reads the cell barcode and UMI of
every read and collapses molecules, so it does more work per read. Target: remnant within 3x of mpileup's wall time.

The BAM is simulated (:func:`remnant.sim.bam.write_bam`, cached in ``--workdir``): ``--cells`` cells
x ``--sites`` heterozygous SNPs on chr5 (5q, 70-150 Mb), clustered as on expressed genes (5 sites
per 20 kb gene), each (cell, site) with Poisson(``--depth``) molecules, 1-3 reads of 90 bp per UMI
(all but one flagged duplicate, as Cell Ranger flags them), plus tied and other-base molecules and
noise reads. Every read covers a site: the worst case for remnant, whose per-read cost is in
Python, and the case where mpileup reads nothing it can skip.

Rows: ``samtools mpileup``; ``remnant count_alleles`` (fetch per site cluster, CIGAR walked only to
the sites a read covers: the library's method); ``pysam pileup`` (the alternative the library did
not take: htslib's pileup per site, barcode and UMI read per pileup entry, same collapsing). Each
tool runs as its own process under ``/usr/bin/time`` (wall, user + system CPU, peak RSS); the
Python rows include the interpreter's start and imports (``call s``: the counting call alone).
``ratio``: wall time over samtools'; ``CPU ratio``: the same for CPU time (steadier when other jobs
share the cores).

Measured (2 cores shared with other jobs, load 4-5, so wall is about twice CPU for every row;
samtools 1.16.1, pysam 0.24.1; 2,000 cells x 3,000 sites, 3,313,846 reads, 184 MB BAM, 1,978,239
REF + ALT molecules by design)::

    tool                     wall s  CPU s  peak MB  call s  molecules  ratio  CPU ratio
    samtools 1.16.1 mpileup   48.23  25.33     4.81       -          -   1.00       1.00
    remnant count_alleles     30.68  15.71   350.05   29.12    1978241   0.64       0.62
    pysam pileup per site     58.84  32.59   781.93   57.24    1978241   1.22       1.29

(An earlier run on a quieter machine: mpileup 28.2 s, remnant 15.3 s, pileup 35.7 s wall.) remnant
counts the designed molecules (+2: the noise reads of a barcode that is no cell, counted as no
``cells`` list is given) in about 0.6x mpileup's time; a pileup per site takes twice remnant's time.
remnant's peak is the interpreter and its imports (~107 MB) plus the observations of one batch and
the (2,000 x 3,000, 23% non-zero) count layers.

Run: ``python benchmarks/allele_counting.py`` (2,000 cells x 3,000 sites, about 3 million reads;
writing the BAM takes 2-3 minutes the first time) or ``--quick`` (300 cells x 1,000 sites).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.io._common import new_adata
from remnant.io.bam import SKIP_FLAGS
from remnant.sim.bam import write_bam

MIN_MAPQ, MIN_BASEQ = 20, 20
#: In the cached BAM's name: bumped when remnant.sim.bam writes other reads (duplicate flags since v2).
BAM_VERSION = "v2"

REMNANT = """
import json, sys, time
sys.path.insert(0, {src!r})
import pandas as pd
from remnant.io.bam import count_alleles
sites = pd.read_csv({sites!r}, sep="\\t")
t = time.perf_counter()
out = count_alleles({bam!r}, sites, min_mapq={q}, min_baseq={bq})
print(json.dumps({{"call": time.perf_counter() - t, "molecules": int(out.layers["DP"].sum())}}))
"""

# The pileup alternative: one pileup column per site, each entry's barcode, UMI and base read in
# Python; molecules collapsed as count_alleles does (majority class per barcode + UMI, ties dropped).
# The quality minimums are checked here too (pysam's "all" stepper applies the flag filter).
PILEUP = """
import json, sys, time
sys.path.insert(0, {src!r})
import numpy as np, pandas as pd, pysam
from remnant.io.bam import _molecule_counts
sites = pd.read_csv({sites!r}, sep="\\t")
t = time.perf_counter()
cell_of, obs = {{}}, ([], [], [], [])
with pysam.AlignmentFile({bam!r}) as bam:
    for k, (chrom, pos, ref, alt) in enumerate(sites[["chromosome", "position", "ref", "alt"]].itertuples(index=False)):
        for col in bam.pileup(chrom, pos - 1, pos, truncate=True, stepper="all", flag_filter={flags},
                              min_mapping_quality={q}, min_base_quality={bq}, ignore_overlaps=False):
            for pr in col.pileups:
                if pr.is_del or pr.is_refskip:
                    continue
                a, q = pr.alignment, pr.query_position
                if a.mapping_quality < {q} or a.query_qualities[q] < {bq} or not a.has_tag("CB") or not a.has_tag("UB"):
                    continue
                b = a.query_sequence[q]
                base = 0 if b == ref else 1 if b == alt else 2 if b != "N" else -1
                if base < 0:
                    continue
                obs[0].append(k); obs[1].append(cell_of.setdefault(a.get_tag("CB"), len(cell_of)))
                obs[2].append(a.get_tag("UB")); obs[3].append(base)
part, tied = _molecule_counts(np.asarray(obs[0]), np.asarray(obs[1]), obs[2], np.asarray(obs[3], np.int8))
print(json.dumps({{"call": time.perf_counter() - t, "molecules": int(part[3].sum())}}))
"""


def simulated_alleles(n_cells: int, n_sites: int, depth: float, seed: int = 0):
    """Cells x sites allele counts on chr5: DP ~ Poisson(depth), AD ~ Binomial(DP, 1/2)."""
    rng = np.random.default_rng(seed)
    genes = np.sort(rng.choice(np.arange(70_000, 150_000), n_sites // 5 + 1, replace=False)) * 1000
    position = (np.repeat(genes, 5)[:n_sites] + rng.integers(0, 20_000, n_sites)).astype(np.int64)
    position = np.unique(position)
    bases = np.array(list("ACGT"))
    ref = rng.integers(0, 4, position.size)
    alt = (ref + rng.integers(1, 4, position.size)) % 4
    var = pd.DataFrame({"chromosome": "chr5", "position": position, "ref": bases[ref], "alt": bases[alt]})
    var["site_id"] = var["chromosome"] + ":" + var["position"].astype(str) + ":" + var["ref"] + ">" + var["alt"]
    var.index = pd.Index(var["site_id"])
    dp = sp.csr_matrix(rng.poisson(depth, (n_cells, position.size)).astype(np.int32))
    ad = dp.copy()
    ad.data = rng.binomial(dp.data, 0.5).astype(np.int32)
    ad.eliminate_zeros()
    barcodes = [f"{''.join(bases[rng.integers(0, 4, 16)])}-1" for _ in range(n_cells)]
    return new_adata(obs=pd.DataFrame(index=pd.Index(barcodes)), var=var, layers={"AD": ad, "DP": dp})


def prepare(workdir: Path, n_cells: int, n_sites: int, depth: float) -> tuple[Path, Path, Path, dict]:
    """The BAM, the sites table and mpileup's positions file (written once per size)."""
    tag = f"c{n_cells}_s{n_sites}_d{depth:g}_{BAM_VERSION}"
    bam, sites, positions = workdir / f"{tag}.bam", workdir / f"{tag}.sites.tsv", workdir / f"{tag}.positions"
    info_file = workdir / f"{tag}.json"
    if not info_file.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in (bam, Path(f"{bam}.bai"), sites, positions):
            stale.unlink(missing_ok=True)
        alleles = simulated_alleles(n_cells, n_sites, depth)
        t = time.perf_counter()
        written = write_bam(alleles, bam, seed=1)
        table = alleles.var[["chromosome", "position", "ref", "alt"]]
        table.to_csv(sites, sep="\t", index=False)
        table[["chromosome", "position"]].to_csv(positions, sep="\t", index=False, header=False)
        info = {
            "cells": n_cells,
            "sites": int(alleles.n_vars),
            "reads": written.n_reads,
            "molecules": int(alleles.layers["DP"].sum()),
            "write_s": round(time.perf_counter() - t, 1),
            "bam_mb": round(bam.stat().st_size / 1e6, 1),
        }
        info_file.write_text(json.dumps(info))
    return bam, sites, positions, json.loads(info_file.read_text())


def timed(command: list[str]) -> dict:
    """Wall, CPU (user + system) and peak RSS of one process (``/usr/bin/time``), and its stdout."""
    t = time.perf_counter()
    out = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %U %S %M", *command], capture_output=True, text=True, errors="replace"
    )
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {out.stderr[-2000:]}")
    user, system, rss = out.stderr.strip().splitlines()[-1].split()[1:]
    return {"wall s": wall, "CPU s": float(user) + float(system), "peak MB": int(rss) / 1024, "stdout": out.stdout}


def python_row(name: str, template: str, bam: Path, sites: Path) -> dict:
    code = template.format(
        src=str(ROOT / "src"), sites=str(sites), bam=str(bam), q=MIN_MAPQ, bq=MIN_BASEQ, flags=SKIP_FLAGS
    )
    r = timed([sys.executable, "-c", code])
    extra = json.loads(r.pop("stdout").strip().splitlines()[-1])
    return {"tool": name, **r, "call s": extra["call"], "molecules": extra["molecules"]}


def samtools_row(bam: Path, positions: Path, out: Path) -> dict | None:
    if shutil.which("samtools") is None:
        print("samtools is not installed (Debian: apt-get install -y samtools): no mpileup row, no ratio")
        return None
    flags = "UNMAP,SECONDARY,QCFAIL,SUPPLEMENTARY"  # as count_alleles with UMIs: duplicate flags kept
    command = ["samtools", "mpileup", "-B", "-l", str(positions), "-q", str(MIN_MAPQ), "-Q", str(MIN_BASEQ)]
    r = timed([*command, "--ff", flags, "-o", str(out), str(bam)])
    r.pop("stdout")
    depth = pd.read_csv(out, sep="\t", header=None, usecols=[3], quoting=3)[3].sum()
    version = subprocess.run(
        ["samtools", "--version"], capture_output=True, text=True, errors="replace"
    ).stdout.splitlines()[0]
    return {"tool": f"{version} mpileup", **r, "call s": np.nan, "molecules": np.nan, "reads piled": int(depth)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--sites", type=int, default=3000)
    parser.add_argument("--depth", type=float, default=0.33, help="mean molecules per (cell, site)")
    parser.add_argument("--quick", action="store_true", help="300 cells x 1,000 sites")
    parser.add_argument("--no-pileup", action="store_true", help="skip the pysam pileup row")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/remnant_allele_counting"))
    args = parser.parse_args()
    if args.quick:
        args.cells, args.sites = 300, 1000
    bam, sites, positions, info = prepare(args.workdir, args.cells, args.sites, args.depth)
    print(
        f"BAM: {info['cells']} cells x {info['sites']} sites, {info['reads']:,} reads ({info['bam_mb']} MB), "
        f"{info['molecules']:,} molecules counted by design (written in {info['write_s']} s)"
    )
    rows = [samtools_row(bam, positions, args.workdir / "mpileup.txt")]
    rows.append(python_row("remnant count_alleles", REMNANT, bam, sites))
    if not args.no_pileup:
        rows.append(python_row("pysam pileup per site", PILEUP, bam, sites))
    table = pd.DataFrame([r for r in rows if r is not None]).set_index("tool")
    if rows[0] is not None:
        table["ratio"] = table["wall s"] / table["wall s"].iloc[0]
        table["CPU ratio"] = table["CPU s"] / table["CPU s"].iloc[0]  # steadier on a shared machine
    pd.set_option("display.width", 200)
    print(table.round(2).to_string())
    if rows[0] is not None:
        ratio = table.loc["remnant count_alleles", "ratio"]
        verdict = "within" if ratio <= 3 else "NOT within"
        print(f"remnant count_alleles: {ratio:.2f}x samtools mpileup's wall time ({verdict} the 3x target)")
    found = shutil.which("cellsnp-lite")
    print(f"cellsnp-lite: not run (not required; {'found at ' + found if found else 'not installed'})")


if __name__ == "__main__":
    main()
