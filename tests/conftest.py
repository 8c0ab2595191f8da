"""Shared fixtures: the repository root, its schemas and the shipped annotation, and one local run
of the workflow on the test cohort (used by test_workflow and, to compare with, test_slurm)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COHORT = ROOT / "tests/data/cohort"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def genes():
    from remnant.annotation import load_genes

    return load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz")


@pytest.fixture(scope="session")
def cytobands():
    from remnant.annotation import load_cytobands

    return load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")


def cohort_workdir(tmp_path_factory, name="cohort") -> Path:
    """A fresh working directory holding the test cohort's config and sample sheet."""
    workdir = tmp_path_factory.mktemp(name)
    for file in ("config.yaml", "samples.tsv"):
        shutil.copy(COHORT / file, workdir / file)
    return workdir


@pytest.fixture(scope="session")
def cohort_run(tmp_path_factory) -> Path:
    """The real workflow run end to end on tests/data/cohort with 2 local cores, once per session."""
    workdir = cohort_workdir(tmp_path_factory)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    # Snakemake's own output, as benchmarks/scale.py keeps it (it reads each job's mem_mb from it)
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise AssertionError(f"local workflow run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return workdir
