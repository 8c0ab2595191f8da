"""remnant on a real SLURM cluster, and the conventions that make it run well there.

The SLURM tests start a private one-node cluster on localhost (.ci/slurm-cluster: Debian packages
slurmctld, slurmd, slurm-client and munge, installed if missing; own munge key and socket, own
ports, state in a temporary directory), run the test cohort through ``--executor slurm`` with
profiles/slurm, check from SLURM's own job records that every cluster job went through sbatch with
the rule's resources, compare the outputs with the local run of tests/conftest.py, and stop the
daemons by PID. They need root (and apt-get if SLURM is not installed): elsewhere they are skipped
with the reason, except in CI (CI=true) or with REMNANT_REQUIRE_SLURM=1, where they fail instead.
REMNANT_SLURM_TEST=0 skips them on a developer machine.

The convention tests (every rule declares threads and resources; the profiles' contents) need
no cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import cohort_workdir

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / ".ci/slurm-cluster"
PROFILE = ROOT / "profiles/slurm"
RUN_TIMEOUT = 1500  # seconds; the test cohort takes about 4 minutes through sbatch on 2 cores

# The per-sample group: one cluster job per sample runs both.
SAMPLE_GROUP = {"read_counts", "filter_cells"}


# ---------------------------------------------------------------------------------------------
# conventions (no cluster needed)
# ---------------------------------------------------------------------------------------------
def rule_blocks():
    """(file, rule name, body) for every rule in rules/*.smk."""
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = list(re.finditer(r"^(\s*)rule (\w+):", text, flags=re.M))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            yield smk.name, match.group(2), text[match.end() : end]


def local_rules() -> set[str]:
    """Rules that run where snakemake runs (localrule: True), and the target rule all."""
    return {"all"} | {name for _, name, body in rule_blocks() if re.search(r"^\s*localrule:\s*True", body, flags=re.M)}


def test_every_rule_declares_threads_memory_and_runtime():
    """Jobs are sized by their rule (profiles/README.md): every rule declares threads, mem_mb and
    runtime; a cluster rule's mem_mb and runtime grow with the attempt (mem_mb_for/runtime_for,
    which also grow with the input, or a callable of attempt), so a job SLURM killed for memory or
    time comes back with more. Local rules never meet SLURM's limits: constants will do there."""
    blocks = list(rule_blocks())
    assert len(blocks) >= 11
    local = local_rules()
    assert {"summarise_qc", "evaluate_demo", "plot_lesion_profile"} <= local
    for smk, name, body in blocks:
        assert re.search(r"^\s*threads:", body, flags=re.M), f"{smk}: rule {name} declares no threads"
        for resource in ("mem_mb", "runtime"):
            match = re.search(rf"^\s*{resource}=(.+)$", body, flags=re.M)
            assert match, f"{smk}: rule {name} declares no {resource}"
            value = match.group(1)
            assert name in local or "attempt" in value or f"{resource}_for(" in value, (
                f"{smk}: rule {name}: {resource} must grow with the attempt ({resource}_for or a lambda of attempt): {value}"
            )
        assert not re.search(r"slurm_partition|slurm_account|qos", body), f"{smk}: rule {name} names site settings"


def profile(name):
    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def test_slurm_profile_has_every_key_commented_and_no_site_values():
    config = profile("slurm")
    assert config["executor"] == "slurm"
    for key in (
        "jobs",
        "latency-wait",
        "retries",
        "rerun-incomplete",
        "keep-going",
        "slurm-logdir",
        "default-resources",
        "set-resources",
    ):
        assert key in config, key
    assert config["retries"] >= 1 and config["rerun-incomplete"] and config["keep-going"]
    assert {"cluster_cells", "infer_cnv", "call_lesions"} <= set(config["set-resources"])
    lines = (PROFILE / "config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z][\w-]*:", line):  # an active top-level key: a comment right above it
            assert lines[i - 1].lstrip().startswith("#"), f"profiles/slurm: key without a comment: {line}"
    # site settings only as commented placeholders
    active = "\n".join(line.split("#")[0] for line in lines)
    for site in ("slurm_partition", "slurm_account", "slurm-qos", "FILL_IN"):
        assert site not in active, f"profiles/slurm sets {site}: site settings stay commented placeholders"
    assert "FILL_IN_PARTITION" in "\n".join(lines) and "FILL_IN_ACCOUNT" in "\n".join(lines)


def test_default_profile_stays_scheduler_neutral():
    config = profile("default")
    assert "executor" not in config and not any(key.startswith("slurm") for key in config)
    # default-resources here would replace those of a site's own --profile (the workflow profile wins)
    assert "default-resources" not in config


# ---------------------------------------------------------------------------------------------
# a real cluster
# ---------------------------------------------------------------------------------------------
def required() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes") or os.environ.get("REMNANT_REQUIRE_SLURM") == "1"


def unavailable(reason: str):
    if required():
        pytest.fail(f"SLURM test required here (CI=true or REMNANT_REQUIRE_SLURM=1), but {reason}")
    pytest.skip(reason)


def installed() -> bool:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return all(shutil.which(tool, path=path) for tool in ("slurmctld", "slurmd", "sbatch", "squeue", "munged"))


def client_env(directory: Path) -> dict:
    """This process's environment for SLURM clients of the test cluster (and none of any other)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SNAKEMAKE_PROFILE"))}
    env["SLURM_CONF"] = str(directory / "slurm.conf")
    env["PATH"] = f"{directory / 'bin'}:{env.get('PATH', '')}:/usr/sbin:/sbin"
    return env


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node SLURM cluster on localhost for this module; its daemons are stopped by PID at the end."""
    if os.environ.get("REMNANT_SLURM_TEST") == "0" and not required():
        pytest.skip("SLURM test disabled by REMNANT_SLURM_TEST=0")
    if os.geteuid() != 0:
        unavailable(
            "the SLURM test needs root (it installs SLURM and starts slurmctld/slurmd/munged); "
            "run bin/test as root, e.g. in CI"
        )
    if not installed():
        if shutil.which("apt-get") is None:
            unavailable(
                "SLURM is not installed and there is no apt-get to install it "
                "(Debian packages slurmctld slurmd slurm-client munge)"
            )
        result = subprocess.run([str(CLUSTER), "install"], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            unavailable(f"installing SLURM failed: {result.stderr.strip()[-1500:]}")
    directory = tmp_path_factory.mktemp("slurm")
    try:
        # with this process as owner: a watchdog stops the daemons if pytest is killed before finally
        started = subprocess.run(
            [str(CLUSTER), "start", str(directory), str(os.getpid())], capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, f"the test cluster did not start:\n{started.stderr[-3000:]}"
        yield SimpleNamespace(directory=directory, env=client_env(directory), started=started.stderr.strip())
    finally:
        stopped = subprocess.run([str(CLUSTER), "stop", str(directory)], capture_output=True, text=True, timeout=300)
        print(stopped.stderr)
        status = subprocess.run([str(CLUSTER), "status", str(directory)], capture_output=True, text=True)
        assert status.stdout.count("not running") == 3, f"daemons still running after stop:\n{status.stdout}"


def squeue_records(env) -> pd.DataFrame:
    """Every job slurmctld knows (finished ones too: MinJobAge=3600 in the test cluster)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k|%C|%m|%l"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=["jobid", "name", "state", "comment", "cpus", "memory", "time_limit"])


def executed_rules(workdir: Path) -> Counter:
    """Rule name of every job a snakemake run executed, from its log (group members included)."""
    runs = [
        Counter(re.findall(r"^\s*(?:local)?rule (\w+):$", log.read_text(), flags=re.M))
        for log in (workdir / ".snakemake/log").glob("*.snakemake.log")
    ]
    return max(runs, key=lambda rules: sum(rules.values()))  # the real run, not a later dry run


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    """The test cohort run through sbatch with profiles/slurm (the cluster has no slurmdbd: job status
    comes from squeue, first checked 6 s after submission instead of a real cluster's 40)."""
    workdir = cohort_workdir(tmp_path_factory, "slurm_cohort")
    cmd = [
        "timeout",
        "-k",
        "20",
        str(RUN_TIMEOUT),
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--workflow-profile",
        str(PROFILE),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "6",
    ]
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=slurm.env)
    seconds = time.monotonic() - start
    jobs = squeue_records(slurm.env)
    if result.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((workdir / "logs/slurm").rglob("*.log")))
        raise AssertionError(
            f"SLURM run failed (exit {result.returncode}, {seconds:.0f} s):\n{result.stderr[-6000:]}\n"
            f"jobs:\n{jobs.to_string()}\n{logs[-6000:]}"
        )
    print(f"\nSLURM run: {len(jobs)} jobs through sbatch, {seconds:.0f} s wall ({slurm.started})")
    return SimpleNamespace(workdir=workdir, jobs=jobs, seconds=seconds, output=result.stderr)


@pytest.mark.workflow
def test_every_cluster_job_went_through_sbatch(slurm_run, cohort_run):
    jobs = slurm_run.jobs
    assert (jobs["state"] == "COMPLETED").all(), jobs.to_string()
    assert jobs["name"].str.startswith("remnant_").all(), "slurm-jobname-prefix from the profile"
    # the jobs snakemake says it submitted are exactly the jobs SLURM ran
    submitted = dict(
        re.findall(
            r"has been submitted with SLURM jobid (\d+) \(log: \S*/logs/slurm/(?:rule|group)_(\w+?)(?:/|\.)",
            slurm_run.output,
        )
    )
    assert set(submitted) == set(jobs["jobid"]), (submitted, jobs.to_string())
    # the job records (sbatch --comment) name the rules: one job per sample for the sample group,
    # one per patient for plot_cnv, one for each cohort-wide rule, none for the local rules
    comments = Counter(re.sub(r"_wildcards_.*", "", c).removeprefix("rule_") for c in jobs["comment"])
    n_samples = len(pd.read_csv(slurm_run.workdir / "samples.tsv", sep="\t", comment="#"))
    assert comments["sample_filter_cells_read_counts"] == n_samples, comments
    assert comments["plot_cnv"] == 3 and comments["simulate_cohort"] == 1, comments
    for rule in ("cluster_cells", "call_lesions", "infer_cnv", "plot_clusters"):
        assert comments[rule] == 1, (rule, comments)
    local = local_rules()
    assert not set(comments) & local, comments
    # every job of the local run ran here too, as a cluster job, a group member or a local rule
    slurm_rules, local_run_rules = executed_rules(slurm_run.workdir), executed_rules(cohort_run)
    assert slurm_rules == local_run_rules, (slurm_rules, local_run_rules)
    remote = {rule for rule in slurm_rules if rule not in local | SAMPLE_GROUP}
    assert remote <= set(comments), f"rules that never went through sbatch: {remote - set(comments)}"
    # resources reached sbatch: threads as --cpus-per-task, the profile's set-resources as --mem
    cluster = jobs[jobs["comment"] == "rule_cluster_cells"].iloc[0]
    assert cluster["cpus"] == "2", cluster.to_dict()
    assert int(cluster["memory"].rstrip("M")) >= 8000, cluster.to_dict()
    assert (jobs["time_limit"] != "UNLIMITED").all(), "every job carries its rule's runtime as a time limit"


TABLE = re.compile(r"\.(tsv|csv)(\.gz)?$")


def outputs(workdir: Path) -> set[str]:
    """Result files and rule logs of a run, relative to its directory (not benchmarks or sbatch logs)."""
    files = set()
    for top in ("results", "logs"):
        for path in (workdir / top).rglob("*"):
            relative = path.relative_to(workdir).as_posix()
            if path.is_file() and not relative.startswith(("results/benchmarks/", "logs/slurm/")):
                files.add(relative)
    return files


# Equal up to floating-point noise: most outputs are bit-identical, but iterative fits (the mixed
# models of the persistence contrasts) can differ in the last bits between processes, and tables
# printed to 6 significant digits then differ by one in the last digit.
TABLE_RTOL, ARRAY_RTOL = 1e-5, 1e-6


def assert_same_table(a: Path, b: Path):
    left, right = (pd.read_csv(p, sep="\t" if ".tsv" in p.name else ",") for p in (a, b))
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=TABLE_RTOL, atol=1e-12, obj=str(a.name))


def assert_same_h5ad(a: Path, b: Path):
    left, right = ad.read_h5ad(a), ad.read_h5ad(b)
    assert (
        left.shape == right.shape
        and (left.obs_names == right.obs_names).all()
        and (left.var_names == right.var_names).all()
    )
    pd.testing.assert_frame_equal(left.obs, right.obs, check_exact=False, rtol=ARRAY_RTOL, obj=f"{a.name} obs")
    pd.testing.assert_frame_equal(left.var, right.var, check_exact=False, rtol=ARRAY_RTOL, obj=f"{a.name} var")
    for name, x, y in [
        ("X", left.X, right.X),
        *((f"layers[{k}]", left.layers[k], right.layers[k]) for k in left.layers),
        *((f"obsm[{k}]", left.obsm[k], right.obsm[k]) for k in left.obsm),
    ]:
        if x is None or y is None:  # e.g. a profile h5ad with its data in obsm only
            assert x is None and y is None, f"{a.name}: {name} missing in one run"
            continue
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=ARRAY_RTOL, obj=f"{a.name} {name}")
            continue
        assert x.shape == y.shape, f"{a.name}: {name} shape differs"
        if sp.issparse(x) or sp.issparse(y):  # without densifying: the largest difference
            largest = abs(sp.csr_matrix(x) - sp.csr_matrix(y)).max() if x.shape[0] else 0
            assert largest <= ARRAY_RTOL * max(abs(sp.csr_matrix(y)).max(), 1), f"{a.name}: {name} differs by {largest}"
        else:
            assert np.allclose(np.asarray(x), np.asarray(y), rtol=ARRAY_RTOL, atol=1e-12, equal_nan=True), (
                f"{a.name}: {name} differs"
            )
    assert (
        set(left.layers) == set(right.layers) and set(left.obsm) == set(right.obsm) and set(left.uns) == set(right.uns)
    )


@pytest.mark.workflow
def test_outputs_match_the_local_run(slurm_run, cohort_run):
    """Same files; tables and h5ad contents equal (gzip headers and timestamps aside)."""
    local, cluster = outputs(cohort_run), outputs(slurm_run.workdir)
    assert local == cluster, f"only local: {sorted(local - cluster)}; only SLURM: {sorted(cluster - local)}"
    compared = Counter()
    for relative in sorted(local):
        a, b = cohort_run / relative, slurm_run.workdir / relative
        if TABLE.search(relative):
            assert_same_table(a, b)
            compared["tables"] += 1
        elif relative.endswith(".h5ad"):
            assert_same_h5ad(a, b)
            compared["h5ad"] += 1
    print(f"\nSLURM vs local: {len(local)} files, {compared['tables']} tables and {compared['h5ad']} h5ad equal")
    assert compared["tables"] >= 20 and compared["h5ad"] >= 20


@pytest.mark.workflow
def test_rerun_through_the_profile_is_a_no_op(slurm_run, slurm):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(slurm_run.workdir),
        "--configfile",
        str(slurm_run.workdir / "config.yaml"),
        "--workflow-profile",
        str(PROFILE),
        "--slurm-status-command",
        "squeue",
        "--dry-run",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=slurm_run.workdir, env=slurm.env, timeout=300)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, result.stderr[-3000:]
