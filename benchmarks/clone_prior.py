"""The clone prior (``call_lesions(clone_prior=...)``) on simulated cohorts with several lesions, with and
without it, on the same cells in the same run.

Cohort: :func:`lesion_calling.cohort_inputs` (three healthy donors, a reference and a held-out sample each;
two MDS patients; the simulator's real-cell confounders on unless ``--no-confounders``) with three lesions
in every patient's clone: del(5q) in every clone cell (the trunk), del(20q) in ``--sub20q`` of them and
trisomy-8-like gain of 8q in ``--sub8q`` (subclones, drawn independently per clone cell by the simulator).

Per lesion and setting: AUROC of the posterior over the patients' cells (carriers vs the rest), the share of
carriers called (sensitivity), of the patients' non-clone cells of their own type, of their cells of another
type, of clone cells that do not carry the lesion (a subclone's lesion must not be lent to the clone), and of
the held-out healthy cells called; the largest error of a sample's fraction (mean posterior vs truth).

Run: ``python benchmarks/clone_prior.py`` (2,000 UMI, clone 50%, seeds 0-1; about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lesion_calling import auroc, cohort_inputs, sample_adata  # noqa: E402

from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.sim.cohort import simulate_cohort  # noqa: E402
from remnant.tl.lesions import call_lesions, parse_lesions  # noqa: E402

_MB = 1_000_000


def _lesion(name: str, kind: str, chrom: str, ranges_mb: tuple, fraction: float) -> dict:
    """One simulator lesion: ``ranges_mb`` the proximal, distal and always-contained ranges (Mb)."""
    proximal, distal, contains = ([int(x * _MB) for x in r] for r in ranges_mb)
    return {
        "name": name,
        "chromosome": chrom,
        "type": kind,
        "copy_ratio": 0.5 if kind == "loss" else 1.5,
        "proximal": proximal,
        "distal": distal,
        "contains": contains,
        "fraction_of_clone": float(fraction),
    }


def sim_lesions(sub20q: float, sub8q: float) -> list[dict]:
    """The simulator's lesions: del5q (trunk, its default breakpoint ranges), del20q and gain 8q (subclones)."""
    return [
        _lesion("del5q", "loss", "chr5", ((65, 80), (140, 160.5), (149.4, 151.9)), 1.0),
        _lesion("del20q", "loss", "chr20", ((30, 33), (60, 64), (40, 50)), sub20q),
        _lesion("gain8q", "gain", "chr8", ((46, 50), (140, 145), (60, 130)), sub8q),
    ]


CALLED = [
    {"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"},
    {"name": "del20q", "type": "loss", "region": "20q"},
    {"name": "gain8q", "type": "gain", "region": "8q"},
]


def build(depth, clone, cells, seed, sub20q, sub8q, confounders):
    """The cohort (one AnnData with truth columns per lesion and ``clone``)."""
    import anndata as ad

    inputs = cohort_inputs(depth, clone, cells, confounders=confounders)
    inputs["params"]["lesions"] = sim_lesions(sub20q, sub8q)
    sim = simulate_cohort(**inputs, seed=seed)
    truth = sim.cells.set_index("barcode")
    parts = []
    for _, row in inputs["samples"].iterrows():
        t = truth[sim.cells["sample"].to_numpy() == row["sample"]]
        a = sample_adata(sim.counts[row["sample"]], row, inputs["genes"], t)
        tt = t.loc[[n.split(":", 1)[1] for n in a.obs_names]]
        for les in CALLED:
            a.obs[f"truth_{les['name']}"] = tt[f"lesion_{les['name']}"].to_numpy(bool)
        a.obs["clone"] = a.obs["truth_del5q"].to_numpy()  # the trunk: every clone cell carries del5q
        parts.append(a)
    return ad.concat(parts, merge="same")


def outcomes(adata, lesions, clone_prior: bool) -> list[dict]:
    b = adata.copy()
    ref = b.obs["sample"].str.endswith("_ref").to_numpy()
    call_lesions(b, lesions, reference=ref, clone_prior=clone_prior)
    obs = b.obs
    mds = (obs["condition"] == "MDS").to_numpy()
    held = obs["sample"].str.endswith("_held").to_numpy()
    other = obs["other_type"].to_numpy(bool)
    clone = obs["clone"].to_numpy(bool)
    rows = []

    def share(mask):
        return float(call[mask].mean()) if mask.any() else np.nan

    for les in lesions:
        truth = obs[f"truth_{les.name}"].to_numpy(bool)
        post, call = obs[f"{les.name}_posterior"].to_numpy(), obs[f"{les.name}_call"].to_numpy()
        frac = pd.DataFrame({"s": obs["sample"].to_numpy(), "p": post, "t": truth})[mds].groupby("s")
        rows.append(
            {
                "lesion": les.name,
                "clone_prior": clone_prior,
                "auroc": auroc(post[mds], truth[mds]),
                "sensitivity": float(call[mds & truth].mean()),
                "normal": float(call[mds & ~clone & ~other].mean()),
                "other_type": float(call[mds & other].mean()),
                "clone_not_carrier": float(call[mds & clone & ~truth].mean())
                if (mds & clone & ~truth).any()
                else np.nan,
                "held_out": float(call[held].mean()),
                "fraction_error": float((frac["p"].mean() - frac["t"].mean()).abs().max()),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=float, default=2000)
    ap.add_argument("--clone", type=float, default=0.5)
    ap.add_argument("--cells", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--sub20q", type=float, default=0.6)
    ap.add_argument("--sub8q", type=float, default=0.3)
    ap.add_argument("--no-confounders", action="store_true")
    args = ap.parse_args()
    cyto = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    lesions = parse_lesions(CALLED, cyto, chromosome_arms(cyto))
    rows = []
    for seed in args.seeds:
        adata = build(args.depth, args.clone, args.cells, seed, args.sub20q, args.sub8q, not args.no_confounders)
        for clone_prior in (False, True):
            rows += [r | {"seed": seed} for r in outcomes(adata, lesions, clone_prior)]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format="%.4f"))
    mean = table.groupby(["lesion", "clone_prior"]).mean(numeric_only=True).drop(columns="seed")
    print("\nmean over seeds:")
    print(mean.to_string(float_format="%.4f"))


if __name__ == "__main__":
    main()
