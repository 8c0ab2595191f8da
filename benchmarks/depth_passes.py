"""Passes over the counts when the reference is chosen after the depth is read (``cnv.reference: auto``).

Run by hand:  .venv/bin/python benchmarks/depth_passes.py H5AD [--repeats 3] [--lesion del5q:loss:5q13.1-5q33.3]

``H5AD`` is a workflow's ``results/cohort/clustered.h5ad`` (e.g. from ``benchmarks/scale.py --keep DIR``).
The workflow reads each cell's depth before :func:`remnant.tl.find_reference` chooses the reference
(:func:`remnant.tl.read_lesion_counts`, two passes) and then scales it to the chosen reference
(:func:`remnant.tl.scale_read_depth`). With the median baseline (the default) that scaling re-takes each
cell's median over blocks of the genome: it used to re-read the block counts in a pass of its own; it now
takes the first read's (``obsm["depth_blocks"]``, ``block_counts=``). Printed, per way: wall and CPU
seconds of ``scale_read_depth`` (median of ``--repeats`` runs, each after one untimed warm-up read of the
file), and the largest difference of its depths from the other way's (they must be equal). The reference
used is the file's healthy-donor samples when the sheet has them (``condition == "healthy"``), else every
tenth cell: the passes' cost does not depend on which cells it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.tl.lesions import DEPTH_BLOCKS_KEY, parse_lesions, read_lesion_counts, scale_read_depth  # noqa: E402


def _timed(fn) -> tuple[float, float, np.ndarray]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("h5ad", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lesion", default="del5q:loss:5q13.1-5q33.3", help="name:type:region")
    args = ap.parse_args()
    name, kind, region = args.lesion.split(":")
    bands = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    lesions = parse_lesions([{"name": name, "type": kind, "region": region}], bands, chromosome_arms(bands))
    t_read, c_read, (adata, depth) = _timed(lambda: read_lesion_counts(args.h5ad, lesions))
    obs = adata.obs
    healthy = obs["condition"].astype(str).eq("healthy").to_numpy() if "condition" in obs else np.zeros(len(obs), bool)
    reference = healthy if healthy.any() else (np.arange(len(obs)) % 10 == 0)
    blocks = adata.obsm[DEPTH_BLOCKS_KEY]
    ways = {
        "re-read the block counts (before)": lambda: scale_read_depth(args.h5ad, lesions, depth, reference, obs=obs),
        "the first read's block counts (now)": lambda: scale_read_depth(
            args.h5ad, lesions, depth, reference, obs=obs, block_counts=blocks
        ),
    }
    rows, results = [], {}
    for way, fn in ways.items():
        runs = [_timed(fn) for _ in range(args.repeats)]
        results[way] = runs[0][2]
        rows.append(
            {
                "way": way,
                "wall_s": float(np.median([r[0] for r in runs])),
                "cpu_s": float(np.median([r[1] for r in runs])),
            }
        )
    first, second = results.values()
    table = pd.DataFrame(rows)
    table["max_rel_diff"] = float(np.max(np.abs(first / second - 1.0)))
    print(f"{args.h5ad}: {adata.n_obs} cells, {int(reference.sum())} reference cells, {blocks.shape[1]} blocks")
    print(f"read_lesion_counts (two passes): wall {t_read:.2f} s, CPU {c_read:.2f} s")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))


if __name__ == "__main__":
    main()
