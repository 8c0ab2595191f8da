"""benchmarks/scale.py's reading of a run (issue 8): per rule the jobs, their exact CPU time and
peak memory from the job logs, and the memory each job asked for against its peak."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import scale  # noqa: E402

# Jobs' blocks as Snakemake 9 prints them: cluster_cells ran twice (attempt 2 asked for more);
# collect_warnings has no benchmark line.
OUTPUT = """\
[Wed Dec  2 18:40:01 2026]
rule filter_cells:
    input: results/samples/S1/counts.h5ad
    output: results/qc/cells/S1.tsv.gz
    log: logs/filter_cells/S1.log
    jobid: 7
    benchmark: results/benchmarks/filter_cells/S1.tsv
    reason: Missing output files: results/qc/cells/S1.tsv.gz
    wildcards: sample=S1
    resources: tmpdir=/tmp, mem_mb=3120, mem_mib=2976, runtime=21
[Wed Dec  2 18:40:02 2026]
rule cluster_cells:
    input: results/qc/filtered/S1.h5ad
    log: logs/cluster_cells/cluster_cells.log
    jobid: 3
    benchmark: results/benchmarks/cluster_cells.tsv
    threads: 2
    resources: tmpdir=/tmp, mem_mb=2100, mem_mib=2003, runtime=31
[Wed Dec  2 18:41:02 2026]
localrule collect_warnings:
    output: results/warnings.tsv
    jobid: 2
    resources: tmpdir=/tmp, mem_mb=1000
[Wed Dec  2 18:42:02 2026]
rule cluster_cells:
    benchmark: results/benchmarks/cluster_cells.tsv
    resources: tmpdir=/tmp, mem_mb=4200, mem_mib=4006, runtime=62
"""


def test_asked_memory_is_each_jobs_last_request():
    asked = scale.asked_memory(OUTPUT)
    # collect_warnings printed no benchmark line after its rule line: not matched to the job before it
    assert asked == {"results/benchmarks/filter_cells/S1.tsv": 3120.0, "results/benchmarks/cluster_cells.tsv": 4200.0}


@pytest.mark.workflow
def test_costs_of_the_test_cohort_run(cohort_run):
    table = scale.costs(cohort_run)
    print("\n" + table.round(2).to_string())
    for rule, jobs in [
        ("read_counts", 10),
        ("filter_cells", 10),
        ("cluster_cells", 1),
        ("call_lesions", 1),
        ("infer_cnv", 1),
        ("plot_cnv", 3),
        ("score_signatures", 1),
        ("compare_pseudobulk", 1),
    ]:
        assert table.loc[rule, "jobs"] == jobs, rule
    # every job's log ends with its exact CPU time and peak memory (remnant.workflow.runlog.logged)
    assert (table["exact"] == table["jobs"]).all(), table[table["exact"] != table["jobs"]]
    assert (table["cpu_s"] > 0).all() and (table["max_rss_mb"] > 50).all()
    # every job asked for memory, and none of the test cohort's went over what it asked for
    assert table["asked_mb"].notna().all(), table[table["asked_mb"].isna()]
    assert (table["peak/asked"] < 1).all(), table[table["peak/asked"] >= 1]


@pytest.mark.workflow
def test_lesion_step_against_its_read_and_its_floor(cohort_run):
    """The issue's lesion-calling yardstick read off a run: the step's wall time, its read pass and
    calling from its log, reading its input matrix whole, and the floor (imports, one read, the
    step's outputs written) timed in a fresh process; ratios, not timings, are what is printed."""
    ratio = scale.lesion_read_ratio(cohort_run)
    print(ratio)
    parts = ("floor_imports_s", "floor_read_s", "floor_write_s")
    for key in ("step_s", "read_matrix_s", "step_read_pass_s", "step_calling_s", *parts):
        assert ratio[key] > 0, key
    assert ratio["floor_s"] == pytest.approx(sum(ratio[k] for k in parts))
    assert ratio["floor/read_matrix"] == pytest.approx(ratio["floor_s"] / ratio["read_matrix_s"])
    assert ratio["step/read_matrix"] == pytest.approx(ratio["step_s"] / ratio["read_matrix_s"])


@pytest.mark.workflow
def test_the_step_as_a_whole_process_is_the_rule(cohort_run, tmp_path):
    """The whole-process yardstick runs the rule's own step: outside Snakemake, on the run's config
    completed from the schema, it writes the calls the workflow wrote; each round gives the step, both
    reads and the step's wall over each read's."""
    table = scale.whole_processes(cohort_run, 1, out=tmp_path)
    ours = pd.read_csv(tmp_path / "cells.tsv.gz", sep="\t", index_col=0)
    rule = pd.read_csv(cohort_run / "results/cnv/lesion_calls.tsv.gz", sep="\t", index_col=0)
    pd.testing.assert_frame_equal(ours, rule)
    assert (tmp_path / "samples.tsv").read_text() == (cohort_run / "results/cnv/lesion_summary.tsv").read_text()
    wall = table.set_index("command")["wall_s"]
    assert set(wall.index) == {"step", "read_file", "read_matrix", "step/read_file", "step/read_matrix"}
    assert (table.loc[table["command"].isin(["step", "read_file", "read_matrix"]), "peak_mb"] > 50).all()
    assert wall["step/read_matrix"] == pytest.approx(wall["step"] / wall["read_matrix"])
