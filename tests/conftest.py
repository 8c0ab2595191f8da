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
    from remnant.io.annotation import load_genes

    return load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz")


@pytest.fixture(scope="session")
def markers(root):
    """The HSPC marker genes the simulator and the annotation use."""
    from remnant.pp.cluster import read_markers

    return read_markers(root / "resources/gene_sets/HSPC_MARKERS.tsv")


@pytest.fixture(scope="session")
def gene_sets(root):
    """The bundled gene sets (resources/gene_sets)."""
    from remnant.io.genesets import read_gene_sets

    return read_gene_sets(root / "resources/gene_sets")


@pytest.fixture(scope="session")
def cytobands():
    from remnant.io.annotation import load_cytobands

    return load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")


def cohort_workdir(tmp_path_factory, name="cohort") -> Path:
    """A fresh working directory holding the test cohort's config and sample sheet."""
    workdir = tmp_path_factory.mktemp(name)
    for file in ("config.yaml", "samples.tsv"):
        shutil.copy(COHORT / file, workdir / file)
    return workdir


def real_inputs(run: Path, inputs: Path, *, keep=None, relative_to: Path | None = None) -> Path:
    """The test cohort as a real cohort's inputs: the files the simulator wrote in ``run``
    (results/demo/inputs/) copied with their times to ``inputs``, and ``inputs/samples.tsv`` naming
    them (absolute paths, or relative to ``relative_to``). ``keep``: only these samples."""
    import pandas as pd

    from remnant.workflow.config import SIMULATED_SUFFIX

    sheet = pd.read_csv(run / "samples.tsv", sep="\t", dtype=str, keep_default_na=False, comment="#")
    if keep is not None:
        sheet = sheet[sheet["sample"].isin(keep)]
    shutil.copytree(run / "results/demo/inputs", inputs, copy_function=shutil.copy2, dirs_exist_ok=True)

    def name(path: Path) -> str:
        return str(path.relative_to(relative_to) if relative_to is not None else path)

    sheet["counts"] = [name(inputs / f"{s}{SIMULATED_SUFFIX[f]}") for s, f in zip(sheet["sample"], sheet["format"])]
    sheet["index_sort"] = [
        name(inputs / f"{s}.index_sort.csv") if (inputs / f"{s}.index_sort.csv").exists() else ""
        for s in sheet["sample"]
    ]
    sheet.to_csv(inputs / "samples.tsv", sep="\t", index=False)
    return inputs / "samples.tsv"


@pytest.fixture(scope="session")
def cohort_run(tmp_path_factory) -> Path:
    """The real workflow run end to end on tests/data/cohort with 2 local cores, once per session."""
    workdir = cohort_workdir(tmp_path_factory)
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
        "2",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    # Snakemake's own output, as benchmarks/scale.py keeps it (it reads each job's mem_mb from it)
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise AssertionError(f"local workflow run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return workdir
