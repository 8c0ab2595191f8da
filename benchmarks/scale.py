"""Cost of each workflow stage against the number of cells (issue 8): wall time, CPU time, peak memory.

Run by hand:  .venv/bin/python benchmarks/scale.py [--cells 10000 100000 1000000] [--cores 2] [--keep DIR]
              [--resume] [--until RULE] [--forcerun RULE ...] [--report]

For each size it writes a simulated cohort (units of 4 MDS patients x diagnosis/remission x
HSC/PROG and 2 healthy donors x HSC/PROG: 20 droplet samples of at most 5,000 cells, repeated with
new patients as the cohort grows: 100k cells = 20 samples, 1M = 200; median 3,000 UMI/cell, the
demo simulator's defaults otherwise) into its own working directory, runs the real workflow there
(``snakemake --cores N``, the test cohort's config), and reads Snakemake's ``benchmark:`` files
(``results/benchmarks/``) and the jobs' logs: per rule the summed wall time (s, the benchmark
files), summed CPU time (s) and the largest peak resident memory of one job (MB), both exact from
``getrusage`` at the end of each job's log where it is there (the benchmark files' sampled figures
otherwise; column ``exact`` counts the jobs with exact figures, see :func:`costs`), and against
that peak the memory the rule's jobs asked for (``mem_mb``, which grows with the input: a job
whose peak is above its request would be killed on a cluster). Between
consecutive sizes it prints each rule's growth exponent ``log(cost2/cost1) / log(n2/n1)`` of wall
time, CPU time and peak memory (1 = linear in cells), and the whole workflow's (its elapsed
time, and its jobs' wall times added up, which does not depend on how many jobs ran at once).
The simulation itself is the rule ``simulate_cohort`` and is listed like any other. A run
interrupted (or stopped with ``--until``) continues with ``--resume``; its parts' elapsed times
add up (``workflow_wall.tsv`` in its directory).
``--resume --forcerun read_counts`` re-measures a kept run after a change, all but its simulation.

The issue's targets: every stage's exponent <= 1.1 between 100k and 1M cells, 1M cells end to end
on one 24 GB machine, and the lesion-calling step within 3x the time of reading its input. That last
is printed two ways. ``lesion calling vs just reading its input matrix``: the rule's job (Snakemake's
benchmark file: a whole process) against the matrix read inside a process already started, with the
floor of what no step can skip. ``each a whole process`` (``--runs`` rounds, after one uncounted):
the step's script outside Snakemake and a process that reads the input (the h5ad whole, or its counts
matrix alone), each timed from start to exit, so start-up and exit count on both sides; medians and
the per-round ratios are the figures to quote (a fresh process's read of 1.2 GB swings 1.4-4.9 s on
a shared machine, most of it the system's time to map the memory).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from remnant.workflow.runlog import DONE_USAGE  # noqa: E402

PATIENTS = ["P1", "P2", "P3", "P4"]
DONORS = ["H1", "H2"]


def write_cohort(workdir: Path, n_cells: int, seed: int, max_cells_per_sample: int = 5000) -> int:
    """Write the sheet and config of an ``n_cells`` cohort; returns the number of samples.

    A cohort grows by samples, not by sample size (the issue's multi-centre cohort is 50-200
    sorted samples): the 20-sample unit (4 MDS patients x diagnosis/remission x HSC/PROG, 2 healthy
    donors x HSC/PROG) is repeated with new patients until the cohort has ``n_cells``, each sample
    holding at most ``max_cells_per_sample`` cells (a typical sorted 10x sample), so that the
    per-sample steps cost the same per sample at every size.
    """
    per_sample = min(max_cells_per_sample, math.ceil(n_cells / 20))
    units = math.ceil(n_cells / (20 * per_sample))
    rows = []
    for u in range(1, units + 1):
        centre = f"C{u}" if units > 1 else ""
        for p in PATIENTS:
            for tp in ("diagnosis", "remission"):
                for pop in ("HSC", "PROG"):
                    rows.append((f"{centre}{p}_{tp}_{pop}", f"{centre}{p}", tp, pop, "MDS"))
        for d in DONORS:
            for pop in ("HSC", "PROG"):
                rows.append((f"{centre}{d}_{pop}", f"{centre}{d}", "", pop, "healthy"))
    sheet = pd.DataFrame(rows, columns=["sample", "patient", "timepoint", "population", "condition"])
    sheet["technology"] = "droplet"
    sheet["format"] = "h5ad"  # simulated into results/demo/inputs/{sample}.h5ad (demo.simulate)
    workdir.mkdir(parents=True, exist_ok=True)
    sheet.to_csv(workdir / "samples.tsv", sep="\t", index=False)
    config = yaml.safe_load((ROOT / "tests/data/cohort/config.yaml").read_text())
    config["seed"] = seed
    config["demo"]["params"]["cells_per_sample"] = {"droplet": int(per_sample)}
    # the test cohort simulates allele counts for its own patients (T1, N1); this cohort has others
    # and measures the expression path, as before allele evidence existed
    config["demo"]["params"].pop("alleles", None)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return len(sheet)


def run(workdir: Path, cores: int, until: str | None = None, forcerun: list[str] | None = None) -> float:
    """Run the workflow in ``workdir``; returns its elapsed time (s), also added to
    ``workflow_wall.tsv``. With ``forcerun`` (rules rerun with everything downstream of them)
    that record starts again: this run, plus the wall time of the jobs it kept (their benchmark
    files are older than the run; e.g. the simulation), as if they had run one after another."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        str(cores),
        "--rerun-incomplete",
    ]
    if until:
        cmd += ["--until", until]
    if forcerun:
        cmd += ["--forcerun", *forcerun]
        (workdir / "workflow_wall.tsv").write_text("")
    started = time.time()
    t0 = time.perf_counter()
    with open(workdir / "snakemake.out", "a") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    seconds = time.perf_counter() - t0
    with open(workdir / "workflow_wall.tsv", "a") as out:  # one line per run; --resume adds up
        out.write(f"{until or 'all'}\t{seconds:.1f}\t{result.returncode}\n")
        if forcerun:
            kept = sum(
                float(pd.read_csv(path, sep="\t")["s"].iloc[0])
                for path in (workdir / "results/benchmarks").rglob("*.tsv")
                if path.stat().st_mtime < started
            )
            out.write(f"kept jobs\t{kept:.1f}\t0\n")
    if result.returncode != 0:
        tail = (workdir / "snakemake.out").read_text()[-3000:]
        raise SystemExit(f"workflow failed at {workdir} (see snakemake.out):\n{tail}")
    return seconds


def elapsed(workdir: Path) -> float:
    """Wall time of the workflow (s): the runs of :func:`run` in ``workdir`` added up (an
    interrupted and resumed run counts each part), NaN when none was recorded."""
    path = workdir / "workflow_wall.tsv"
    if not path.exists():
        return float("nan")
    return float(pd.read_csv(path, sep="\t", header=None)[1].sum())


def job_usage(workdir: Path, benchmark: Path) -> dict[str, float] | None:
    """Exact CPU time (s) and peak memory (MB) of the job of ``benchmark``, as its log ends
    (:func:`remnant.workflow.runlog.logged`: ``getrusage`` at the end of the job's script); None for a log
    without them (a job run before they were logged, or one that failed)."""
    name = benchmark.relative_to(workdir / "results/benchmarks").with_suffix("")
    # results/benchmarks/<rule>/<job>.tsv <-> logs/<rule>/<job>.log; results/benchmarks/<rule>.tsv <-> logs/<rule>/<rule>.log
    log = workdir / "logs" / (name if len(name.parts) > 1 else name / name.name).with_suffix(".log")
    if not log.is_file():
        return None
    lines = log.read_text(errors="replace").splitlines()
    match = DONE_USAGE.search(lines[-1]) if lines else None
    return None if match is None else {k: float(v) for k, v in match.groupdict().items()}


#: A job's block in Snakemake's output names its benchmark file, then the resources it asked for.
_JOB_BENCHMARK = re.compile(r"^\s+benchmark: (?P<path>\S+)$")
_JOB_MEM_MB = re.compile(r"^\s+resources: .*\bmem_mb=(?P<mem_mb>[0-9]+)\b")


def asked_memory(snakemake_output: str) -> dict[str, float]:
    """The memory (``mem_mb``) each job asked for, by its benchmark file (relative to the working
    directory), from Snakemake's own output of the run: the request of a job's last attempt (a job
    retried with more memory prints its block again). Jobs that printed no ``mem_mb`` are absent."""
    asked, benchmark = {}, None
    for line in snakemake_output.splitlines():
        if line.startswith(("rule ", "localrule ", "checkpoint ")):
            benchmark = None  # a new job's block
        elif match := _JOB_BENCHMARK.match(line):
            benchmark = match["path"]
        elif (match := _JOB_MEM_MB.match(line)) and benchmark is not None:
            asked[benchmark] = float(match["mem_mb"])
    return asked


def costs(workdir: Path) -> pd.DataFrame:
    """Per rule: ``jobs``, summed ``wall_s``, summed ``cpu_s``, the largest ``max_rss_mb`` of a job,
    ``exact`` (how many of its jobs' CPU and memory come from their logs), the largest memory a
    job asked for (``asked_mb``, its ``mem_mb`` as Snakemake printed it in ``snakemake.out``; NaN
    without that output) and the largest ratio of a job's peak to what it asked for
    (``peak/asked``: above 1, a cluster would have killed that job for memory).

    Wall time is Snakemake's (``benchmark:`` files, exact). CPU time and peak memory are the job's
    own ``getrusage`` figures from its log where it has them (:func:`job_usage`): the benchmark
    files sample every 30 s after a job's first 15 s and keep the last sample, which undercounts
    the CPU of a job of a minute by up to half (a job of 10 minutes by a few percent) and so bends
    the CPU exponent upwards. Peak memory is the larger of the two figures.
    """
    out = workdir / "snakemake.out"
    asked = asked_memory(out.read_text(errors="replace")) if out.is_file() else {}
    rows = []
    for path in sorted((workdir / "results/benchmarks").rglob("*.tsv")):
        rule = path.relative_to(workdir / "results/benchmarks").parts[0].removesuffix(".tsv")
        b = pd.read_csv(path, sep="\t")
        row = {
            "rule": rule,
            "wall_s": float(b["s"].iloc[0]),
            "cpu_s": float(b["cpu_time"].iloc[0]),
            "max_rss_mb": float(b["max_rss"].iloc[0]),
            "exact": 0,
        }
        usage = job_usage(workdir, path)
        if usage is not None:
            row.update(cpu_s=usage["cpu_s"], max_rss_mb=max(row["max_rss_mb"], usage["peak_mb"]), exact=1)
        row["asked_mb"] = asked.get(str(path.relative_to(workdir)), float("nan"))
        row["peak/asked"] = row["max_rss_mb"] / row["asked_mb"]
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.groupby("rule").agg(
        jobs=("wall_s", "size"),
        wall_s=("wall_s", "sum"),
        cpu_s=("cpu_s", "sum"),
        max_rss_mb=("max_rss_mb", "max"),
        exact=("exact", "sum"),
        asked_mb=("asked_mb", "max"),
        **{"peak/asked": ("peak/asked", "max")},
    )


READ_X = """
import sys, time
import h5py
from anndata.io import read_elem
from remnant.workflow.runlog import resource_usage
t0 = time.perf_counter()
with h5py.File(sys.argv[1], "r") as f:
    X = read_elem(f["X"])
print(time.perf_counter() - t0, resource_usage()["peak_mb"], X.nnz)
"""


def read_input_matrix(path: Path) -> tuple[float, float]:
    """Wall time (s) and peak memory (MB) of just reading the counts matrix of ``path`` whole
    (anndata's reader, in a fresh process; its peak as a job's log measures it): the yardstick of
    the lesion-calling target."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", READ_X, str(path)], capture_output=True, text=True, check=True, env=env)
    seconds, peak_mb, _ = out.stdout.split()
    return float(seconds), float(peak_mb)


# What the step cannot do without, timed in a fresh process with nothing scored: the imports its
# script makes, the input's obs and var, its matrix read once whole (the least a pass over it costs),
# each cell's total, and the step's per-cell outputs written as the step writes them (their content
# read from the step's own outputs beforehand, untimed). Snakemake's own start of a script job is
# left out, so this is a lower bound on any call_lesions in this stack.
FLOOR = """
import time
t0 = time.perf_counter()
import sys
import remnant.workflow.lesions  # noqa: F401 (the step's imports)
t1 = time.perf_counter()
import anndata as ad
import h5py
import pandas as pd
from anndata.io import read_elem
from remnant.io import store
from remnant.tl.lesions import write_calls
h5ad, calls, cells, out = sys.argv[1:5]
done = ad.read_h5ad(calls)  # untimed: the content to write
table = pd.read_csv(cells, sep="\\t", index_col="cell")
t2 = time.perf_counter()
obs, var = store.read_obs(h5ad), store.read_var(h5ad)
with h5py.File(h5ad, "r") as f:
    X = read_elem(f[store.counts_key(h5ad, where="floor")])
total = X.sum(axis=1)
t3 = time.perf_counter()
write_calls(done, f"{out}/calls.h5ad")
store.write_cell_table(table, f"{out}/cells.tsv.gz")
t4 = time.perf_counter()
print(t1 - t0, t3 - t2, t4 - t3)
"""


def step_floor(workdir: Path) -> dict:
    """Seconds of the parts of the step no calling can skip (:data:`FLOOR`, a fresh process): its
    imports, reading its input once whole with obs and var, writing its per-cell outputs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as out:
        args = [
            str(workdir / "results/cohort/clustered.h5ad"),
            str(workdir / "results/cnv/lesion_calls.h5ad"),
            str(workdir / "results/cnv/lesion_calls.tsv.gz"),
            out,
        ]
        run = subprocess.run([sys.executable, "-c", FLOOR, *args], capture_output=True, text=True, check=True, env=env)
    imports, read, write = (float(x) for x in run.stdout.split())
    return {"floor_imports_s": imports, "floor_read_s": read, "floor_write_s": write, "floor_s": imports + read + write}


# The rule call_lesions's script as a whole process outside Snakemake (no Snakemake job around it):
# the kept cohort's config completed from the workflow's schema as Snakemake completes it, the
# rule's inputs (the allele tables of the samples that have them) and params, its outputs written
# to a scratch directory.
STEP = """
import sys
from pathlib import Path
import pandas as pd
import yaml
from remnant.workflow.runlog import start
start(1)
from remnant.workflow.config import validate_config
from remnant.workflow.lesions import call_cohort_lesions
root, workdir, out = (Path(x) for x in sys.argv[1:4])
config = validate_config(yaml.safe_load((workdir / "config.yaml").read_text()), root / "config/schemas/config.schema.yaml")
bands = Path(config["annotation"]["cytobands"])
# the rule's allele inputs: the tables rule read_alleles wrote, in the sheet's order
sheet = pd.read_csv(workdir / config["samples"], sep="\\t", dtype=str, comment="#")
alleles = [workdir / f"results/alleles/{s}.h5ad" for s in sheet["sample"]]
alleles = [str(path) for path in alleles if path.exists()]
call_cohort_lesions(
    workdir / "results/cohort/clustered.h5ad",
    bands if bands.is_absolute() or (workdir / bands).exists() else root / bands,
    lesions=config["lesions"],
    cnv=config["cnv"],
    reference_conditions=config["conditions"]["reference"],
    seed=config["seed"],
    out_calls=out / "calls.h5ad",
    out_cells=out / "cells.tsv.gz",
    out_samples=out / "samples.tsv",
    out_intervals=out / "intervals.tsv",
    out_reference=out / "reference.tsv",
    alleles=alleles,
    allele_options=config["alleles"],
    out_phase=out / "phased_sites.tsv" if alleles else None,
)
"""

# Reading the step's input as a whole process: the h5ad whole with anndata's reader, or its counts
# matrix alone.
READ_FILE = "import sys, anndata; anndata.read_h5ad(sys.argv[1])"
READ_MATRIX = """
import sys, h5py
from anndata.io import read_elem
from remnant.io import store
with h5py.File(sys.argv[1], "r") as f:
    read_elem(f[store.counts_key(sys.argv[1], where="yardstick")])
"""


def _process(args: list[str], env: dict) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak resident MB of one process, from start to exit."""
    # stderr to a file, not a pipe: a pipe nobody reads until the exit blocks a child that logs more than it holds
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(args[:3])} failed: {err.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def whole_processes(workdir: Path, runs: int, out: Path | None = None) -> pd.DataFrame:
    """The step and the reading of its input each timed as a whole process (start-up and exit on both
    sides): :data:`STEP`, :data:`READ_FILE` and :data:`READ_MATRIX` in turn, ``runs`` times after one
    uncounted round (the page cache and numba's cache warm). One row per command and run: ``wall_s``,
    ``cpu_s``, ``peak_mb``, and per round the step's wall over each read's (``step/<read>``). The
    step's outputs go to ``out`` (default: a scratch directory, removed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    h5ad = str(workdir / "results/cohort/clustered.h5ad")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        out = out or scratch
        commands = {
            "step": [sys.executable, "-c", STEP, str(ROOT), str(workdir), out],
            "read_file": [sys.executable, "-c", READ_FILE, h5ad],
            "read_matrix": [sys.executable, "-c", READ_MATRIX, h5ad],
        }
        for round_ in range(runs + 1):
            timed = {name: _process(args, env) for name, args in commands.items()}
            if round_ == 0:
                continue
            for name, (wall, cpu, peak) in timed.items():
                rows.append({"command": name, "run": round_, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak})
            for read in ("read_file", "read_matrix"):
                rows.append({"command": f"step/{read}", "run": round_, "wall_s": timed["step"][0] / timed[read][0]})
    return pd.DataFrame(rows)


def print_whole_processes(table: pd.DataFrame) -> None:
    """Min, median and max of each figure per command (the ratios: wall only)."""
    summary = table.groupby("command", sort=False)[["wall_s", "cpu_s", "peak_mb"]].agg(["min", "median", "max"])
    print("\nthe step and reading its input, each a whole process (target: step/read_* wall <= 3):")
    print(summary.round(2).to_string())


def lesion_read_ratio(workdir: Path) -> dict:
    """The issue's target 'the lesion-calling step within 3x of the time it takes just to read its
    input matrix'. The step is the rule call_lesions, whole (start-up, its one pass over the counts,
    the calling, its tables: the rule's benchmark file); the yardstick is reading its input's
    matrix whole with anndata in a fresh process (:func:`read_input_matrix`, run right after the
    workflow, so the file is as warm in the page cache as it was for the step). The step's log
    also gives its own read pass and the calling alone."""
    log = (workdir / "logs/call_lesions/call_lesions.log").read_text()
    read, call = (float(x) for x in re.findall(r"read X: ([0-9.]+) s; lesion calling: ([0-9.]+) s", log)[-1])
    job = float(pd.read_csv(workdir / "results/benchmarks/call_lesions.tsv", sep="\t")["s"].iloc[0])
    plain, plain_mb = read_input_matrix(workdir / "results/cohort/clustered.h5ad")
    floor = step_floor(workdir)
    return {
        "step_s": job,
        "read_matrix_s": plain,
        "read_matrix_peak_mb": plain_mb,
        "step/read_matrix": job / plain,
        "step_read_pass_s": read,
        "step_calling_s": call,
        "(read pass+calling)/read pass": (read + call) / read,
        **floor,
        "floor/read_matrix": floor["floor_s"] / plain,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep the working directories here (default: a temp dir, removed)"
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help="with --keep: continue an interrupted run in its directory (finished jobs and their benchmark files stay)",
    )
    ap.add_argument("--until", default=None, help="stop after this rule's jobs (snakemake --until), e.g. filter_cells")
    ap.add_argument(
        "--forcerun",
        nargs="+",
        default=None,
        metavar="RULE",
        help="with --keep --resume: rerun these rules and everything downstream (snakemake --forcerun), "
        "e.g. read_counts to re-measure all but the simulation; the elapsed time starts again",
    )
    ap.add_argument(
        "--report",
        action="store_true",
        help="with --keep: print the tables of finished runs in their directories, running nothing",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=5,
        help="rounds of the step and of reading its input, each a whole process (0: none)",
    )
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="remnant-scale-"))
    tables, totals = {}, {}
    for n in args.cells:
        workdir = base / f"cells_{n}"
        if not args.report:
            if workdir.exists() and not args.resume:
                shutil.rmtree(workdir)
            if not (workdir / "config.yaml").exists():
                write_cohort(workdir, n, args.seed)
            seconds = run(workdir, args.cores, args.until, args.forcerun)
            if args.until:
                print(f"{n} cells: stopped after {args.until} ({seconds:.0f} s)", flush=True)
                continue
        tables[n] = costs(workdir)
        totals[n] = (elapsed(workdir), float(tables[n]["wall_s"].sum()))
        print(
            f"\n{n} cells: workflow elapsed {totals[n][0]:.0f} s; jobs' wall time summed {totals[n][1]:.0f} s",
            flush=True,
        )
        print(tables[n].round(1).assign(**{"peak/asked": tables[n]["peak/asked"].round(2)}).to_string(), flush=True)
        over = tables[n].index[tables[n]["peak/asked"] > 1].tolist()
        print(
            "rules with a job whose peak memory went over its mem_mb request: " + (", ".join(over) or "none"),
            flush=True,
        )
        ratio = lesion_read_ratio(workdir)
        print(
            "lesion calling vs just reading its input matrix (target: step/read_matrix <= 3): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()),
            flush=True,
        )
        if args.runs > 0:
            print_whole_processes(whole_processes(workdir, args.runs))
    if not tables:
        return
    sizes = sorted(tables)
    wide = pd.concat({n: tables[n][["wall_s", "cpu_s", "max_rss_mb"]] for n in sizes}, axis=1)
    print("\nper rule: wall s, CPU s, peak MB by cells")
    print(wide.round(1).to_string())
    for a, b in zip(sizes, sizes[1:]):
        ratio = math.log(b / a)
        exp = pd.DataFrame(
            {
                f"{what}_exponent": (tables[b][column] / tables[a][column]).apply(math.log) / ratio
                for what, column in (("wall", "wall_s"), ("cpu", "cpu_s"), ("memory", "max_rss_mb"))
            }
        )
        print(f"\ngrowth exponents {a} -> {b} cells (1 = linear; target <= 1.1)")
        print(exp.round(2).to_string())
        print(
            f"whole workflow: elapsed {math.log(totals[b][0] / totals[a][0]) / ratio:.2f}, "
            f"jobs' wall time summed {math.log(totals[b][1] / totals[a][1]) / ratio:.2f}"
        )
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
