"""Speed of site discovery from a BAM (issue 18 item 2): remnant.io.find_sites vs ``samtools mpileup``.

The BAM is the allele-counting benchmark's (:mod:`allele_counting`: ``--cells`` cells x ``--sites``
heterozygous SNPs on chr5 70-150 Mb, 1-3 reads per UMI, Cell Ranger's duplicate flags, noise reads),
written with the simulator's fixed reference background (``remnant.sim.bam.reference_bases``), so the
only polymorphic positions are the sites. Every row piles up the whole region chr5:70,000,000-150,000,000
(discovery has no site list):

- ``samtools mpileup -r``: Debian's samtools, one thread, the same minimums and flag filter (the yardstick
  of a read pile-up over a region; it finds nothing, it only piles up);
- ``remnant find_sites``: the library's two passes (read screen with htslib's count_coverage over the spans
  the reads cover, then the candidates' every base counted per molecule) and its sites against the
  simulated ones;
- ``remnant count_alleles``: counting the 3,000 known sites, for scale (what a given VCF costs).

Each runs as its own process under ``/usr/bin/time`` (wall, user + system CPU, peak RSS; Python rows
include the interpreter start). ``CPU ratio``: CPU time over mpileup's (steadier than wall on a shared
machine).

Measured (2 cores shared with other jobs, load ~4.5; samtools 1.16.1, pysam 0.24.1; 2,000 cells x 3,000
sites, 3,313,846 reads, 90 MB BAM; one run)::

    tool                                 wall s  CPU s  peak MB  call s  found  true found  candidates
    samtools mpileup -r (region)          24.16  14.95     4.70       -      -           -           -
    remnant find_sites                    82.58  52.86   756.41   80.81   3000        3000        3000
    remnant count_alleles (known sites)   22.25  14.70   366.52   20.64      -           -           -

find_sites finds every simulated site and nothing else (no candidate off the sites) in 3.5x mpileup's
CPU time over the same region; two thirds of it is the read screen (timed apart in one process:
screen 33.7 s, exact count 18.0 s CPU; a Python per-read filter and htslib's aligned-pairs walk per
read), the rest the exact count of the candidates' four bases (three sites per candidate, per cell,
then summed: hence the peak, twice count_alleles'). A pooled-only count
(no per-cell matrices) would cut both; not done.

Run: ``python benchmarks/site_discovery.py`` (writing the BAM takes 3-7 minutes the first time) or
``--quick`` (300 cells x 1,000 sites).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import allele_counting as counting  # noqa: E402

#: In the cached BAM's name: the reads on a fixed reference (remnant.sim.bam since site discovery).
counting.BAM_VERSION = "v3ref"
REGION = ("chr5", 70_000_000, 150_000_000)
MINIMUMS = {"min_depth": 10, "min_minor_reads": 3, "min_minor_fraction": 0.05}

FIND = """
import json, sys, time
sys.path.insert(0, {src!r})
import pandas as pd
from remnant.io.bam import find_sites
truth = pd.read_csv({sites!r}, sep="\\t")
t = time.perf_counter()
found = find_sites({bam!r}, [{region!r}], min_mapq={q}, min_baseq={bq}, **{minimums!r})
call = time.perf_counter() - t
hit = found.merge(truth, on=["chromosome", "position"])
same = int(((hit["ref_x"] + hit["alt_x"]).map(sorted) == (hit["ref_y"] + hit["alt_y"]).map(sorted)).sum())
print(json.dumps({{"call": call, "found": len(found), "true found": same,
                  "candidates": found.attrs["discovery"]["candidates"]}}))
"""


def find_row(bam: Path, sites: Path) -> dict:
    code = FIND.format(
        src=str(ROOT / "src"),
        sites=str(sites),
        bam=str(bam),
        region=REGION,
        q=counting.MIN_MAPQ,
        bq=counting.MIN_BASEQ,
        minimums=MINIMUMS,
    )
    r = counting.timed([sys.executable, "-c", code])
    extra = json.loads(r.pop("stdout").strip().splitlines()[-1])
    return {"tool": "remnant find_sites", **r, "call s": extra.pop("call"), **extra}


def mpileup_row(bam: Path, out: Path) -> dict | None:
    if shutil.which("samtools") is None:
        print("samtools is not installed (Debian: apt-get install -y samtools): no mpileup row")
        return None
    chrom, start, end = REGION
    flags = "UNMAP,SECONDARY,QCFAIL,SUPPLEMENTARY"
    command = ["samtools", "mpileup", "-B", "-r", f"{chrom}:{start + 1}-{end}", "-q", str(counting.MIN_MAPQ)]
    r = counting.timed([*command, "-Q", str(counting.MIN_BASEQ), "--ff", flags, "-o", str(out), str(bam)])
    r.pop("stdout")
    return {"tool": "samtools mpileup -r (region)", **r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--sites", type=int, default=3000)
    parser.add_argument("--depth", type=float, default=0.33, help="mean molecules per (cell, site)")
    parser.add_argument("--quick", action="store_true", help="300 cells x 1,000 sites")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/remnant_site_discovery"))
    args = parser.parse_args()
    if args.quick:
        args.cells, args.sites = 300, 1000
    bam, sites, _, info = counting.prepare(args.workdir, args.cells, args.sites, args.depth)
    print(f"BAM: {info['cells']} cells x {info['sites']} sites, {info['reads']:,} reads ({info['bam_mb']} MB)")
    rows = [mpileup_row(bam, args.workdir / "mpileup_region.txt"), find_row(bam, sites)]
    rows.append(counting.python_row("remnant count_alleles (known sites)", counting.REMNANT, bam, sites))
    table = pd.DataFrame([r for r in rows if r is not None]).set_index("tool")
    if rows[0] is not None:
        table["CPU ratio"] = table["CPU s"] / table["CPU s"].iloc[0]
    pd.set_option("display.width", 200)
    print(table.round(2).to_string())
    print(f"simulated sites: {info['sites']}; minimums {MINIMUMS}")


if __name__ == "__main__":
    main()
