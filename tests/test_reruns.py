"""Interrupted runs, reruns, determinism and read-only inputs (issue 7), on the test cohort.

One extra run of the workflow (the interrupted one, killed mid-run and resumed) serves every test
here. The uninterrupted run is the session's ``cohort_run`` (tests/conftest.py), shared with
tests/test_workflow.py.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import psutil
import pytest
import scipy.sparse as sp
import yaml
from conftest import ROOT, cohort_workdir, real_inputs

pytestmark = pytest.mark.workflow

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
KILLED_RULE = "cluster_cells"
KILLED_OUTPUT = "results/cohort/clustered.h5ad"


def snakemake(
    workdir: Path, *args: str, configfile: str = "config.yaml", check: bool = True
) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / configfile), "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def planned_jobs(workdir: Path, *args: str, configfile: str = "config.yaml") -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans (``all`` left out), sorted."""
    result = snakemake(workdir, "--dry-run", *args, configfile=configfile)
    jobs, rule = [], None
    for line in result.stdout.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if match:
            rule = match.group(1)
            jobs.append([rule, ""])
        elif rule and line.strip().startswith("wildcards:"):
            jobs[-1][1] = line.strip().removeprefix("wildcards:").strip()
        elif not line.strip():
            rule = None
    return sorted((r, w) for r, w in jobs if r != "all")


def write_config(workdir: Path, name: str, change: dict) -> str:
    """A copy of the cohort's config with dotted keys changed, saved next to it."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for key, value in change.items():
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (workdir / name).write_text(yaml.safe_dump(config, sort_keys=False))
    return name


# ------------------------------------------------------------------------------------------------
# the interrupted run
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    """The test cohort run from scratch, killed (SIGKILL to snakemake and its jobs) while rule
    cluster_cells runs, then resumed. Returns the workdir and what each step printed."""
    workdir = cohort_workdir(tmp_path_factory, "interrupted")
    out = tmp_path_factory.mktemp("interrupted_output")
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2"]
    with open(out / "stdout", "w") as stdout, open(out / "stderr", "w") as stderr:
        process = subprocess.Popen(cmd, cwd=workdir, stdout=stdout, stderr=stderr, start_new_session=True)
        job = _wait_for_job(process, KILLED_RULE, timeout=1200)
        time.sleep(3)  # into the job's work (reading and merging the samples)
        assert job.is_running() and process.poll() is None, "the job or snakemake ended before the kill"
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and every job: nothing can clean up
        process.wait(timeout=60)
    job.wait(timeout=60)
    incomplete_markers = sorted(p.name for p in (workdir / ".snakemake/incomplete").iterdir())
    # A kill while the job writes leaves a partial file under the output's final name. Whether
    # the kill above fell into the write is timing; make it so.
    partial = workdir / KILLED_OUTPUT
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)
    # (a dry run takes no lock; a finished target does, and does nothing else)
    locked = snakemake(workdir, "results/samples/N1_HSC/counts.h5ad", check=False)
    snakemake(workdir, "--unlock")
    # without the default profile's rerun-incomplete, snakemake refuses and names the files ...
    strict = snakemake(workdir, "--dry-run", "--workflow-profile", "none", check=False)
    # ... with it, it plans their jobs again
    plan = snakemake(workdir, "--dry-run")
    resumed = snakemake(workdir)
    return {
        "workdir": workdir,
        "markers": incomplete_markers,
        "locked": locked,
        "strict": strict,
        "plan": plan,
        "resumed": resumed,
    }


def _wait_for_job(process: subprocess.Popen, rule: str, timeout: float) -> psutil.Process:
    """The process of the running job of ``rule`` (snakemake runs a rule's script as a child)."""
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended (status {process.returncode}) before rule {rule} ran")
        for child in parent.children(recursive=True):
            try:
                if any(part.endswith(f".{rule}.py") for part in child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError(f"rule {rule} did not start within {timeout} s")


def test_interrupted_run_resumes_without_taking_partial_files(interrupted):
    workdir = interrupted["workdir"]
    # snakemake marked the killed job's output incomplete when the job started ...
    assert interrupted["markers"], "no incomplete marker left by the killed job"
    # ... a killed snakemake leaves its lock: the next run says how to release it
    assert (
        interrupted["locked"].returncode != 0
        and "--unlock" in interrupted["locked"].stdout + interrupted["locked"].stderr
    )
    # ... and the partial file is not taken as complete: snakemake names it as incomplete, and the
    # next run (rerun-incomplete: true in profiles/default) plans its job again
    strict = interrupted["strict"].stdout + interrupted["strict"].stderr
    assert interrupted["strict"].returncode != 0 and "IncompleteFilesException" in strict, strict
    assert KILLED_OUTPUT in strict.split("Incomplete files:")[1], strict
    plan = interrupted["plan"].stdout
    block = plan[plan.index(f"rule {KILLED_RULE}:") :]
    block = block[: block.index("reason:")] + block[block.index("reason:") :].split("\n")[0]
    assert KILLED_OUTPUT in block and "Forced execution" in block, block
    # resumed to completion: the output is a whole h5ad, no marker is left
    adata = ad.read_h5ad(workdir / KILLED_OUTPUT)
    assert adata.n_obs > 1000
    assert not any((workdir / ".snakemake/incomplete").iterdir())
    assert "Nothing to be done" in snakemake(workdir, "--dry-run").stdout


# ------------------------------------------------------------------------------------------------
# determinism: two runs from scratch (the session's uninterrupted run and the interrupted one)
# ------------------------------------------------------------------------------------------------
def _tables(workdir: Path) -> list[str]:
    return sorted(
        str(p.relative_to(workdir))
        for p in (workdir / "results").rglob("*")
        if p.name.endswith((".tsv", ".tsv.gz")) and "benchmarks" not in p.parts
    )


def test_two_runs_are_identical(cohort_run, interrupted):
    other = interrupted["workdir"]
    tables = _tables(cohort_run)
    assert tables == _tables(other) and len(tables) > 20
    differ = [t for t in tables if (cohort_run / t).read_bytes() != (other / t).read_bytes()]
    assert not differ, f"tables differ between two runs from scratch: {differ}"
    h5ads = sorted(str(p.relative_to(cohort_run)) for p in (cohort_run / "results").rglob("*.h5ad"))
    assert len(h5ads) > 10
    for name in h5ads:
        assert_same_anndata(ad.read_h5ad(cohort_run / name), ad.read_h5ad(other / name), name)


def assert_same_anndata(a: ad.AnnData, b: ad.AnnData, name: str) -> None:
    pd.testing.assert_frame_equal(a.obs, b.obs, check_exact=True, obj=f"{name} obs")
    pd.testing.assert_frame_equal(a.var, b.var, check_exact=True, obj=f"{name} var")
    _same(a.X, b.X, f"{name} X")
    assert sorted(a.layers) == sorted(b.layers), name
    for key in a.layers:
        _same(a.layers[key], b.layers[key], f"{name} layers[{key}]")
    assert sorted(a.obsm) == sorted(b.obsm), name
    for key in a.obsm:
        _same(a.obsm[key], b.obsm[key], f"{name} obsm[{key}]")
    assert sorted(a.obsp) == sorted(b.obsp), name
    for key in a.obsp:
        _same(a.obsp[key], b.obsp[key], f"{name} obsp[{key}]")
    _same_tree(a.uns, b.uns, f"{name} uns")


def _same(x, y, where: str) -> None:
    if sp.issparse(x) or sp.issparse(y):
        assert sp.issparse(x) and sp.issparse(y) and x.shape == y.shape, where
        assert (x != y).nnz == 0, where
    elif isinstance(x, pd.DataFrame):
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=where)
    else:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=where)


def _same_tree(x, y, where: str) -> None:
    if isinstance(x, dict):
        assert isinstance(y, dict) and sorted(x) == sorted(y), f"{where}: keys {sorted(x)} vs {sorted(y)}"
        for key in x:
            _same_tree(x[key], y[key], f"{where}[{key}]")
    else:
        _same(x, y, where)


# ------------------------------------------------------------------------------------------------
# reruns: a dry run after a change plans exactly the jobs that depend on it
# ------------------------------------------------------------------------------------------------
PER_SAMPLE = {"read_counts", "filter_cells"}
#: Jobs whose params hold the whole config (the report's provenance lists every value): any change reruns them.
PROVENANCE = [("write_front_page", "")]


@pytest.mark.parametrize(
    "key, value, rule",
    [
        ("cnv.posterior_cutoff", 0.8, "call_lesions"),
        ("qc.min_genes", 150, "filter_cells"),
        ("pseudobulk.padj", 0.05, "compare_pseudobulk"),
    ],
)
def test_config_change_reruns_exactly_its_jobs(interrupted, key, value, rule):
    workdir = interrupted["workdir"]
    changed = planned_jobs(workdir, configfile=write_config(workdir, f"config_{rule}.yaml", {key: value}))
    # what depends on the rule that reads the key: the rule's jobs and everything downstream
    forced = sorted(set(planned_jobs(workdir, "--forcerun", rule)) | set(PROVENANCE))
    assert changed == forced, f"changing {key} plans {changed}\nbut the jobs downstream of {rule} are {forced}"
    rules = {r for r, _ in changed}
    assert rule in rules
    upstream = {
        "call_lesions": {"read_counts", "filter_cells", "cluster_cells", "summarise_qc", "plot_clusters"},
        "filter_cells": {"read_counts", "simulate_cohort"},
        "compare_pseudobulk": {"call_lesions", "cluster_cells", "score_signatures", "estimate_fractions"},
    }[rule]
    assert not rules & upstream, f"changing {key} reruns upstream jobs {rules & upstream}"


def test_adding_a_sample_reruns_its_jobs_and_the_aggregations(interrupted):
    workdir = interrupted["workdir"]
    # the simulated counts as a real cohort's input files (the simulator no longer runs): copied
    # out of results/ with their times, so by modification times nothing is out of date (the
    # paths, in params and in the input set, did change: only times are the point here)
    sheet_path = real_inputs(workdir, workdir / "counts", relative_to=workdir)
    real = write_config(workdir, "config_real.yaml", {"demo.simulate": False, "samples": "counts/samples.tsv"})
    mtime = ("--rerun-triggers", "mtime")
    before = planned_jobs(workdir, *mtime, configfile=real)
    # (the warnings collector no longer lists the simulator's logs; the provenance shows demo.simulate)
    assert set(before) <= {("collect_warnings", ""), *PROVENANCE}, f"treating the counts as inputs reruns {before}"
    sheet = sheet_path.read_text()
    (workdir / "more").mkdir()
    # a row added to the same sheet, as a user would (another sample's file, copied, would be
    # refused as a duplicate: change one count)
    counts = ad.read_h5ad(workdir / "counts/T1_remission_HSC.h5ad")
    counts.X.data[0] += 1  # (CSR as written by remnant.io.counts.write_counts)
    counts.write_h5ad(workdir / "more/T1_relapse_HSC.h5ad")
    try:
        sheet_path.write_text(
            sheet + "T1_relapse_HSC\tT1\trelapse\tHSC\tMDS\tdroplet\th5ad\tmore/T1_relapse_HSC.h5ad\t\n"
        )
        added = planned_jobs(workdir, *mtime, configfile=real)
    finally:
        sheet_path.write_text(sheet)
    per_sample = [(r, w) for r, w in added if r in PER_SAMPLE]
    assert per_sample == [("filter_cells", "sample=T1_relapse_HSC"), ("read_counts", "sample=T1_relapse_HSC")], (
        per_sample
    )
    # every other job is an aggregation over samples (no per-sample wildcard) ...
    assert not [(r, w) for r, w in added if r not in PER_SAMPLE and "sample=" in w]
    # ... and they are the jobs downstream of the samples' filtered cells
    aggregations = {r for r, _ in added} - PER_SAMPLE
    downstream = {
        r for r, _ in planned_jobs(workdir, *mtime, "--forcerun", "summarise_qc", "cluster_cells", configfile=real)
    }
    assert aggregations == downstream, (aggregations, downstream)


# ------------------------------------------------------------------------------------------------
# inputs are only read; outputs stay in the working directory
# ------------------------------------------------------------------------------------------------
def _snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(directory)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
            p.stat().st_mtime_ns,
        )
        for p in sorted(directory.rglob("*"))
    }


def test_read_only_inputs(cohort_run, tmp_path):
    """Every per-sample job of a cohort whose inputs (counts, index-sort tables, a cellsnp-lite
    folder, sheet, config, annotation, cytobands) live read-only outside the working directory. Later jobs read only
    results/. (Running as root, the permission bits bind nothing; the checksums, times and
    listing checks hold either way.)"""
    inputs, workdir = tmp_path / "inputs", tmp_path / "work"
    workdir.mkdir()
    keep = (
        "T1_diagnosis_HSC",
        "T1_remission_PROG",
        "T2_diagnosis_HSC",
        "N1_HSC",
    )  # h5, 10x mtx, table + index sort, plate reference
    sheet_path = real_inputs(cohort_run, inputs, keep=keep)
    # T1_diagnosis_HSC's allele counts (the simulator's cellsnp-lite folder) in the sheet's alleles column
    sheet = pd.read_csv(sheet_path, sep="\t", dtype=str, keep_default_na=False)
    sheet["alleles"] = [str(inputs / f"{s}.cellsnp") if s == "T1_diagnosis_HSC" else "" for s in sheet["sample"]]
    sheet.to_csv(sheet_path, sep="\t", index=False)
    for name in ("GRCh38_genes.tsv.gz", "GRCh38_cytobands.tsv"):
        shutil.copy(ROOT / "resources/annotation" / name, inputs / name)
    config = yaml.safe_load((cohort_run / "config.yaml").read_text())
    config.update(samples=str(inputs / "samples.tsv"), demo={"simulate": False})
    config["annotation"] = {
        "genes": str(inputs / "GRCh38_genes.tsv.gz"),
        "cytobands": str(inputs / "GRCh38_cytobands.tsv"),
    }
    (inputs / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in [inputs, *inputs.rglob("*")]:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR if path.is_dir() else stat.S_IRUSR)
    before, siblings = _snapshot(inputs), sorted(p.name for p in tmp_path.iterdir())
    try:
        cmd = [
            *SNAKEMAKE,
            "--directory",
            str(workdir),
            "--configfile",
            str(inputs / "config.yaml"),
            "--cores",
            "2",
            "results/qc/removed_per_sample.tsv",
            "results/alleles/T1_diagnosis_HSC.h5ad",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert _snapshot(inputs) == before, "an input file or directory changed"
        assert sorted(p.name for p in tmp_path.iterdir()) == siblings, (
            "a file was written next to the working directory"
        )
        table = pd.read_csv(workdir / "results/qc/removed_per_sample.tsv", sep="\t")
        assert sorted(table["sample"]) == sorted(keep)
        assert ad.read_h5ad(workdir / "results/alleles/T1_diagnosis_HSC.h5ad").uns["alleles"]["n_matched"] > 0
    finally:
        for path in [inputs, *inputs.rglob("*")]:
            path.chmod(stat.S_IRWXU)


def test_gzip_tables_carry_no_timestamp(cohort_run):
    """A .tsv.gz's header time is 0, so that the same table gives the same bytes (gzip stamps the
    current time otherwise)."""
    for name in _tables(cohort_run):
        if name.endswith(".gz"):
            header = (cohort_run / name).read_bytes()[:10]
            assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\0\0\0\0", name
            with gzip.open(cohort_run / name, "rt") as handle:
                assert handle.readline()


def test_warnings_table(cohort_run):
    """results/warnings.tsv: every remnant warning of the run's job logs, with its rule and log."""
    from remnant.workflow.runlog import WARNING_COLUMNS

    table = pd.read_csv(cohort_run / "results/warnings.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == WARNING_COLUMNS
    logged = sum(
        line.split(" ", 2)[1] == "WARNING" and line.split(" ", 3)[2].startswith("remnant")
        for path in (cohort_run / "logs").rglob("*.log")
        if "collect_warnings" not in path.parts
        for line in path.read_text().splitlines()
        if line[:2].isdigit() and len(line.split(" ", 3)) > 3
    )
    assert len(table) == logged
    for _, row in table.iterrows():
        assert (cohort_run / row["log"]).is_file() and row["log"].startswith(f"logs/{row['rule']}/") and row["message"]
