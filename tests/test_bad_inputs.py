"""Bad input (issue 7): every case of the catalogue (tests/bad_inputs.py, docs/bad_inputs.md) gives
one line naming the file, the row or key and the value and saying what to do, or runs on with a
warning, or is accepted; a handful are run through the real ``snakemake`` command line, where the
user must see the same line and no Python traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import CASES, ROOT, Cohort, run_case

CLI_CASES = [c for c in CASES if c.cli]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path):
    result = run_case(case, tmp_path)
    assert result.outcome == case.outcome, f"{case.id}: expected {case.outcome}, got {result.outcome}: {result.message}"
    if case.outcome == "error":
        assert "\n" not in result.message, result.message
    assert "np.str_" not in result.message and "np.float" not in result.message, result.message  # reprs leaking
    for part in case.expect:
        assert part in result.message, f"{part!r} not in: {result.message}"


def test_catalogue_is_documented():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30
    doc = (ROOT / "docs/bad_inputs.md").read_text()
    missing = [i for i in ids if f"`{i}`" not in doc]
    assert not missing, f"cases not in docs/bad_inputs.md (run python tests/bad_inputs.py): {missing}"


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


@pytest.mark.workflow
@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_input_on_the_command_line(case, tmp_path):
    cohort = Cohort(tmp_path)
    case.make(cohort)
    target = {"parse": ["--dry-run"], "read": [f"results/samples/{case.sample}/counts.h5ad"],
              "qc": [f"results/samples/{case.sample}/filtered.h5ad"]}[case.stage]
    result = _snakemake(tmp_path, *target)
    shown = result.stdout + result.stderr
    assert result.returncode != 0, shown
    assert "Traceback" not in shown, shown
    # the whole message on one line of the output
    lines = [line for line in shown.splitlines() if all(part in line for part in case.expect)]
    assert lines, f"no line holds all of {case.expect}:\n{shown}"


@pytest.mark.workflow
def test_valid_cohort_plans_every_sample(tmp_path):
    """The catalogue's base cohort is valid for the real workflow (so each case breaks one thing)."""
    Cohort(tmp_path)
    result = _snakemake(tmp_path, "--dry-run", "--quiet", "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(line.split()[:2] == ["read_counts", "4"] for line in result.stdout.splitlines()), result.stdout
