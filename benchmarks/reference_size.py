"""TNBC1 with fewer normal cells as the reference: how the calls depend on the reference's size and make-up.

Run by hand:  .venv/bin/python benchmarks/reference_size.py [--sizes 10 20 40 74] [--draws 5]
                  [--tumour 228]

benchmarks/real_data.py scores TNBC1's 228 tumour cells against all 74 normal cells of the sample.
A lab's tumour sample may hold far fewer normal cells. Here the reference is ``--sizes`` normal cells
drawn at random (``--draws`` draws per size, seeded), the other normal cells are left out, and
``--tumour`` tumour cells are drawn (all by default). Each draw is called twice with the harness of
real_data.py (one pooled state, carrier fractions per Leiden cluster of the full set):

- ``apart``: the lesions in one call and the control arms (1p, 18p, 22q, gain and loss) in another,
  as real_data.py calls them;
- ``together``: lesions and controls in one call, as a user who configures many arms would, so the
  clone prior learns the controls' shares among the clone's cells too.

Printed per draw: the reference's cells from the largest normal Leiden cluster (its make-up: TNBC1's
normal cells are mostly one myeloid cluster), the worst control arm's share of tumour cells called,
the mean share called on the four losses, and the worst share of reference cells called on any arm
(cross-fitted). Then the median and maximum per size.
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
from real_depth import HARNESS  # noqa: E402


def _called(b, lesions, cells) -> dict[str, float]:
    return {l.name: float(b.obs[f"{l.name}_call"].to_numpy()[cells].mean()) for l in lesions}


def drawn(full, size: int, draw: int, n_tumour: int = 228):
    """TNBC1 (``R.load_tnbc1()``) with ``size`` of its normal cells and ``n_tumour`` of its tumour cells
    (all by default), drawn with seed ``1000 * size + draw``; also the positions of the normal cells kept."""
    tumour_all, normal_all = np.flatnonzero(full.obs["tumour"]), np.flatnonzero(full.obs["normal"])
    rng = np.random.default_rng(1000 * size + draw)
    ref = rng.choice(normal_all, size, replace=False)
    tum = tumour_all if n_tumour >= tumour_all.size else rng.choice(tumour_all, n_tumour, replace=False)
    return full[np.sort(np.concatenate([tum, ref]))].copy(), ref


def run(sizes, draws: int, n_tumour: int) -> pd.DataFrame:
    full = R.load_tnbc1()
    lesions, controls = R.tnbc1_sets()
    normal_all = np.flatnonzero(full.obs["normal"])
    main = pd.Series(full.obs["leiden"].to_numpy()[normal_all]).value_counts().index[0]
    losses = [l.name for l in lesions if l.type == "loss"]
    rows = []
    for size in sizes:
        for draw in range(draws if size < normal_all.size else 1):
            a, ref = drawn(full, size, draw, n_tumour)
            t, n = a.obs["tumour"].to_numpy(), a.obs["normal"].to_numpy()
            row = {
                "reference": size,
                "draw": draw,
                "main_cluster": int((full.obs["leiden"].to_numpy()[ref] == main).sum()),
            }
            apart = _called(R.call(a, lesions, n, **HARNESS), lesions, t)
            b_ctl = R.call(a, controls, n, **HARNESS)
            apart.update(_called(b_ctl, controls, t))
            b_all = R.call(a, lesions + controls, n, **HARNESS)
            together = _called(b_all, lesions + controls, t)
            for name, calls in (("apart", apart), ("together", together)):
                row[f"control_{name}"] = max(calls[c.name] for c in controls)
                row[f"losses_{name}"] = float(np.mean([calls[x] for x in losses]))
            row["reference_called"] = max(
                max(_called(b, ls, n).values()) for b, ls in ((b_ctl, controls), (b_all, lesions + controls))
            )
            rows.append(row)
            print(f"reference {size} draw {draw} done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 74])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--tumour", type=int, default=228)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    table = run(args.sizes, args.draws, args.tumour)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    cols = ["control_apart", "control_together", "losses_apart", "losses_together", "reference_called"]
    print("\nper reference size: median / max over draws")
    summary = table.groupby("reference")[cols].agg(lambda x: f"{x.median():.3f} / {x.max():.3f}")
    print(summary.to_string())
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
