"""Rule gate_cells: each cell's sort gate, index gate and transcriptomic state, and where they disagree."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

from remnant.io.store import TABLE_GZIP  # noqa: E402
from remnant.tl.fractions import read_calls  # noqa: E402
from remnant.tl.gates import run_gates  # noqa: E402

with logged(snakemake.log[0], "gate_cells") as log:
    g = snakemake.params.gates
    obs, _ = read_calls(snakemake.input.h5ad, lesion=None)
    out = run_gates(
        obs,
        thresholds=g["thresholds"],
        hierarchy=g["hierarchy"],
        sort_gates=g["sort_gates"],
        state_gates=g["state_gates"],
        source=snakemake.input.h5ad,
    )
    cohort = out["agreement"].set_index("sample").loc["all"]
    if out["index_sorted"]:
        log.info(
            "%d cells, %d index-sorted (%d ungated); index gates: %s",
            cohort["n_cells"],
            cohort["n_index_sorted"],
            cohort["n_ungated"],
            out["cells"]["index_gate"].value_counts().to_dict(),
        )
    else:
        log.warning(
            "no index-sort intensities in the cohort: index gates not computed; sort gate vs state compared only"
        )
    for cmp in ("sort_index", "index_state", "sort_state"):
        log.info(
            "%s: %d comparable cells, %d disagree (%.1f%%)",
            cmp,
            cohort[f"{cmp}_n"],
            cohort[f"{cmp}_disagree"],
            100 * cohort[f"{cmp}_disagree_fraction"] if cohort[f"{cmp}_n"] else float("nan"),
        )
    out["cells"].to_csv(snakemake.output.cells, sep="\t", index_label="cell", compression=TABLE_GZIP)
    out["agreement"].to_csv(snakemake.output.agreement, sep="\t", index=False, float_format="%.6g")
    out["crosstab"].to_csv(snakemake.output.crosstab, sep="\t", index=False)
