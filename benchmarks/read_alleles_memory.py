"""Peak memory and time of reading a genome-wide cellsnp-lite folder: every SNP, or only the lesions' and the
control region's (``read_cellsnp(..., regions=...)``, what rule ``read_alleles`` does) (issue 18).

Run by hand, never in tests:

    .venv/bin/python benchmarks/read_alleles_memory.py [--cells 5000] [--sites 200000] [--density 0.01]
        [--runs 2] [--dir DIR]

A folder of ``--cells`` barcodes x ``--sites`` SNPs spread over chr1-22 (positions uniform along each
chromosome's length, so the share inside del(5q) and the control region is what a genome-wide run has) is
written once with :func:`remnant.io.write_cellsnp` (``--dir``, default a temporary folder). Each read runs in a
fresh process; the table gives its wall time, its peak resident memory above the process's before it (``VmHWM``
reset through ``/proc/self/clear_refs`` once the imports are done, minus ``VmRSS`` then), the SNPs and entries
held, for every SNP and for the SNPs inside the default config's ``lesions`` and ``alleles.control_region``,
and checks that every read holds the same counts at those SNPs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.io._common import new_adata  # noqa: E402
from remnant.io.alleles import write_cellsnp  # noqa: E402
from remnant.io.annotation import AUTOSOMES, load_cytobands  # noqa: E402

CYTOBANDS = ROOT / "resources/annotation/GRCh38_cytobands.tsv"

#: One read in a fresh process: prints seconds, peak MB, SNPs kept, entries, and a checksum of the kept counts.
READ = """
import hashlib, re, sys, time
from pathlib import Path
sys.path.insert(0, {src!r})
import numpy as np, yaml
from remnant.io.alleles import read_cellsnp
from remnant.io.annotation import load_cytobands
from remnant.workflow.alleles import allele_regions, region_sites
config = yaml.safe_load(open({config!r}))
regions = allele_regions(config["lesions"], config["alleles"]["control_region"], load_cytobands({cyto!r}))
def status(key):  # MB of a /proc/self/status line
    return int(re.search(rf"{{key}}:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024
base = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from here: the read's own
t0 = time.perf_counter()
a = read_cellsnp({folder!r}, regions=regions if {filtered} else None)
sec = time.perf_counter() - t0
peak = status("VmHWM") - base
n_vars, nnz = a.n_vars, a.layers["DP"].nnz
keep = np.flatnonzero(region_sites(a, regions)[0])  # the SNPs rule read_alleles keeps
dp, ad = a.layers["DP"][:, keep], a.layers["AD"][:, keep]
digest = hashlib.md5("".join(a.var_names[keep]).encode())
for part in (dp.sum(axis=0), ad.sum(axis=0), dp.sum(axis=1)):
    digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
check = digest.hexdigest()
print(sec, peak, n_vars, nnz, check)
"""


def build(folder: Path, cells: int, sites: int, density: float, seed: int) -> None:
    """Write a genome-wide cellsnp-lite folder (SNPs in chromosome order, as cellsnp-lite writes them)."""
    rng = np.random.default_rng(seed)
    bands = load_cytobands(CYTOBANDS)
    lengths = bands.groupby("chromosome", sort=False)["end"].max()
    lengths = lengths[list(AUTOSOMES)]
    chrom = rng.choice(lengths.index.to_numpy(), sites, p=(lengths / lengths.sum()).to_numpy())
    pos = (rng.random(sites) * lengths[chrom].to_numpy()).astype(np.int64) + 1
    order = np.lexsort((pos, pd.Index(lengths.index).get_indexer(chrom)))
    var = pd.DataFrame(
        {"chromosome": chrom[order], "position": pos[order], "ref": "A", "alt": "G"},
        index=[f"s{i}" for i in range(sites)],
    )
    dp = sp.random(
        cells, sites, density=density, format="csr", random_state=rng, data_rvs=lambda n: rng.integers(1, 6, n)
    )
    dp = sp.csr_matrix(dp, dtype=np.int32)
    ad = dp.copy()
    ad.data = rng.binomial(ad.data, 0.5).astype(np.int32)
    obs = pd.DataFrame(index=[f"BC{i:06d}-1" for i in range(cells)])
    write_cellsnp(new_adata(obs=obs, var=var, layers={"AD": ad, "DP": dp}), folder)


def read(folder: Path, regions: bool) -> dict:
    code = READ.format(
        src=str(ROOT / "src"),
        filtered=regions,
        config=str(ROOT / "config/config.yaml"),
        cyto=str(CYTOBANDS),
        folder=str(folder),
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    sec, peak, kept, nnz, check = out.stdout.split()
    return {
        "sec": float(sec),
        "peak_mb_above_start": float(peak),
        "snps": int(kept),
        "entries": int(nnz),
        "check": check,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=5000)
    ap.add_argument("--sites", type=int, default=200_000)
    ap.add_argument("--density", type=float, default=0.01, help="share of (cell, SNP) pairs with reads")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=None, help="where the folder is written (and reused)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.dir or Path(tmp)) / f"cellsnp_{args.cells}x{args.sites}_{args.density}"
        if not (folder / "cellSNP.tag.DP.mtx").exists():
            print(f"writing {folder} ...", flush=True)
            build(folder, args.cells, args.sites, args.density, args.seed)
        rows = []
        for run in range(args.runs):
            for regions in (False, True):  # alternating, so drift on the machine hits both alike
                rows.append(
                    {"run": run, "snps read": "lesions + control" if regions else "all"} | read(folder, regions)
                )
        table = pd.DataFrame(rows)
        print(table.drop(columns="check").to_string(index=False, float_format="%.2f"))
        print("the same counts at the lesions' and control region's SNPs in every read:", table["check"].nunique() == 1)


if __name__ == "__main__":
    main()
