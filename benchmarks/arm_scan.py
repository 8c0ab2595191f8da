"""Every arm at once on the real sets: what a user who configures a lesion on each arm gets.

Run by hand:  .venv/bin/python benchmarks/arm_scan.py [--sets tnbc1 oligodendroglioma]

benchmarks/real_data.py calls each set's known lesions in one call and its control arms in another.
A lab that does not know its patients' karyotypes may configure a lesion on every arm instead. Here
each set's every arm is configured twice, a gain and a loss (GRCh38 arms of chr1-22, the acrocentric
short arms 13p, 14p, 15p, 21p and 22p left out: 78 lesions), and called in one call with the harness
of real_data.py (its reference, samples, states and Leiden clusters), once with the clone prior (the
default: the lesions' priors learned together) and once without (each lesion on its own).

Printed per set and run: each arm-direction called in at least 2% of the tumour cells or in any
normal cell, with what the set's README says of it (``lesion``: a change it names; ``control``: an
arm it names unchanged, which must not be called; ``unknown``: nothing said), the share of tumour
and of normal cells called, and the LLR and posterior AUROC tumour vs normal. Then: how many
arm-directions are called in at least half of the tumour cells, the known lesions' tumour cells
called against real_data.py's run of them alone, the worst control and the normal cells called.

Session 37 (the first run: before that session's depth change such a call refused, or read every
cell's depth off the acrocentric arms' few genes): docs/robust_evidence.md, section "Session 37".
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_sets as R  # noqa: E402
from real_data import OLIGO_HARNESS  # noqa: E402
from real_depth import HARNESS  # noqa: E402

import remnant as rm  # noqa: E402

ACROCENTRIC_SHORT = ("13p", "14p", "15p", "21p", "22p")


def every_arm():
    """Lesions: a gain and a loss of each GRCh38 arm of chr1-22 but the acrocentric short arms."""
    cyto = rm.io.load_cytobands(R.GRCH38_BANDS)
    arms = rm.io.chromosome_arms(cyto)
    arms = arms[rm.io.autosomal(arms["chromosome"])]  # the bundled table has X and Y too
    items = []
    for arm in arms["chromosome"].str.removeprefix("chr") + arms["arm"]:
        if arm not in ACROCENTRIC_SHORT:
            items += [(f"gain{arm}", "gain", arm), (f"del{arm}", "loss", arm)]
    return R._lesions(items, cyto, arms)


def scan(adata, known, controls, harness: dict, clone_prior: bool) -> pd.DataFrame:
    """One call of every arm; one row per arm-direction."""
    tumour, normal = adata.obs["tumour"].to_numpy(), adata.obs["normal"].to_numpy()
    lesions = every_arm()
    b = R.call(adata, lesions, normal, **harness, clone_prior=clone_prior)
    rows, calls = [], []
    for les in lesions:
        call = b.obs[f"{les.name}_call"].to_numpy()
        calls.append(call)
        rows.append(
            {
                "lesion": les.name,
                "readme": "lesion" if les.name in known else "control" if les.name in controls else "unknown",
                "tumour_called": float(call[tumour].mean()),
                "normal_called": float(call[normal].mean()),
                "normal_cells": int(call[normal].sum()),
                "auroc": R.auroc(b.obs[f"{les.name}_llr"].to_numpy(), tumour),
                "auroc_post": R.auroc(b.obs[f"{les.name}_posterior"].to_numpy(), tumour),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["normal_cells_called"] = int(np.array(calls)[:, normal].any(axis=0).sum())
    return table


def alone(adata, known_lesions, harness: dict) -> dict[str, float]:
    """The known lesions called on their own (real_data.py's run): tumour cells called per lesion."""
    tumour, normal = adata.obs["tumour"].to_numpy(), adata.obs["normal"].to_numpy()
    b = R.call(adata, known_lesions, normal, **harness)
    return {les.name: float(b.obs[f"{les.name}_call"].to_numpy()[tumour].mean()) for les in known_lesions}


def report(name: str, run: str, table: pd.DataFrame, by_itself: dict[str, float]) -> None:
    shown = table[(table["tumour_called"] >= 0.02) | (table["normal_cells"] > 0)]
    print(f"\n{name}, {run}: arm-directions called in >= 2% of tumour cells or in any normal cell")
    print(shown.round(3).to_string(index=False))
    known = table[table["readme"] == "lesion"].set_index("lesion")["tumour_called"]
    ctl = table[table["readme"] == "control"]
    print(
        f"called in >= half the tumour cells: {int((table['tumour_called'] >= 0.5).sum())} of {len(table)} "
        f"({int((known >= 0.5).sum())} of the {len(known)} known lesions); "
        "known lesions' tumour cells called, scan (alone): "
        + ", ".join(f"{k} {v:.2f} ({by_itself[k]:.2f})" for k, v in known.items())
    )
    print(
        f"controls: worst {ctl['tumour_called'].max():.3f} of tumour cells called; normal cells: worst arm "
        f"{table['normal_called'].max():.3f}, {table.attrs['normal_cells_called']} cells called on any arm"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["tnbc1", "oligodendroglioma"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    pd.set_option("display.width", 200)
    for name in args.sets:
        t0 = time.perf_counter()
        if name == "tnbc1":
            adata, (known, controls), harness = R.load_tnbc1(), R.tnbc1_sets(), HARNESS
        else:
            adata, (known, controls), harness = R.load_oligo(), R.oligo_sets(), OLIGO_HARNESS
        by_itself = alone(adata, known, harness)
        names, ctl_arms = {k.name for k in known}, {c.name for c in controls}
        for run, clone_prior in (("clone prior", True), ("each lesion on its own", False)):
            report(name, run, scan(adata, names, ctl_arms, harness, clone_prior), by_itself)
        print(f"{name}: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
