"""Make a large cohort's per-sample results by tiling a finished smaller run (issue 8), to measure
the cohort steps at a size whose per-sample steps would take hours on this machine.

Run by hand:  .venv/bin/python benchmarks/tile_cohort.py SOURCE_WORKDIR TARGET_WORKDIR --copies 10

SOURCE_WORKDIR is a finished ``benchmarks/scale.py --keep`` run of one 20-sample unit (e.g.
``cells_100000``). TARGET gets the sheet and config of ``copies`` units (new patients C1P1, ...,
new cell names), and each target sample's per-sample outputs (counts, QC tables and figures,
filtered.h5ad with its obs renamed, job logs) plus the tiled truth, so that Snakemake, after
``--touch`` of the per-sample jobs, runs the cohort steps only. The per-sample steps themselves
are measured by scale.py on real samples (their cost is per sample: it does not grow with the cohort).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
#: The centre prefix scale.write_cohort puts before each unit's patients and samples ("C3" of "C3P1_...").
CENTRE = re.compile(r"C\d+")
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import write_cohort  # noqa: E402

from remnant.io import store  # noqa: E402


def link(src: Path, dst: Path) -> None:
    # a copy, not a hard link: the copies of one source must have their own modification times,
    # which Snakemake orders (--touch)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("target", type=Path)
    ap.add_argument("--copies", type=int, default=10)
    args = ap.parse_args()
    src, dst = args.source, args.target
    source_sheet = pd.read_csv(src / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    per_sample = int(pd.read_csv(src / "results/demo/truth/cells.tsv.gz", sep="\t").groupby("sample").size().max())
    n = write_cohort(dst, per_sample * len(source_sheet) * args.copies, seed=1, max_cells_per_sample=per_sample)
    sheet = pd.read_csv(dst / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert n == len(source_sheet) * args.copies, (n, len(source_sheet))
    truth = pd.read_csv(
        src / "results/demo/truth/cells.tsv.gz", sep="\t", dtype={"timepoint": str}, keep_default_na=False
    )
    patients = pd.read_csv(src / "results/demo/truth/patients.tsv", sep="\t", dtype=str, keep_default_na=False)
    truths, _tables = [], []
    for _, row in sheet.iterrows():
        target = row["sample"]
        source = target[len(CENTRE.match(target).group(0)) :]
        rename = {"sample": target, "patient": row["patient"]}
        link(src / f"results/demo/inputs/{source}.h5ad", dst / f"results/demo/inputs/{target}.h5ad")
        link(src / f"results/samples/{source}/counts.h5ad", dst / f"results/samples/{target}/counts.h5ad")
        link(src / f"results/qc/figures/{source}.png", dst / f"results/qc/figures/{target}.png")
        for rule in ("read_counts", "filter_cells"):
            link(src / f"logs/{rule}/{source}.log", dst / f"logs/{rule}/{target}.log")
        obs = store.read_obs(src / f"results/samples/{source}/filtered.h5ad")
        for key, value in rename.items():
            obs[key] = pd.Categorical([value] * len(obs))
        name = obs.index.name
        obs.index = pd.Index((target + ":" + obs["barcode"].astype(str)).to_numpy(), name=name)
        (dst / f"results/samples/{target}").mkdir(parents=True, exist_ok=True)
        store.copy_with_obs(
            src / f"results/samples/{source}/filtered.h5ad", dst / f"results/samples/{target}/filtered.h5ad", obs=obs
        )
        qc = pd.read_csv(
            src / f"results/qc/cells/{source}.tsv.gz", sep="\t", keep_default_na=False, dtype={"qc_reason": str}
        )
        qc["sample"] = target
        qc["cell"] = target + ":" + qc["barcode"].astype(str)
        (dst / "results/qc/cells").mkdir(parents=True, exist_ok=True)
        qc.to_csv(
            dst / f"results/qc/cells/{target}.tsv.gz", sep="\t", index=False, compression={"method": "gzip", "mtime": 0}
        )
        t = truth[truth["sample"] == source].assign(**rename)
        truths.append(t)
    (dst / "results/demo/truth").mkdir(parents=True, exist_ok=True)
    pd.concat(truths).to_csv(
        dst / "results/demo/truth/cells.tsv.gz", sep="\t", index=False, compression={"method": "gzip", "mtime": 0}
    )
    tiled = []
    for centre in sorted({CENTRE.match(p).group(0) for p in sheet["patient"]}):
        tiled.append(patients.assign(patient=centre + patients["patient"]))
    pd.concat(tiled).to_csv(dst / "results/demo/truth/patients.tsv", sep="\t", index=False)
    link(src / "logs/simulate_cohort/simulate_cohort.log", dst / "logs/simulate_cohort/simulate_cohort.log")
    print(f"{dst}: {len(sheet)} samples tiled from {src}")


if __name__ == "__main__":
    main()
