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
        "1",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


@pytest.mark.workflow
@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_input_on_the_command_line(case, tmp_path):
    cohort = Cohort(tmp_path)
    case.make(cohort)
    target = {
        "parse": ["--dry-run"],
        "read": [f"results/samples/{case.sample}/counts.h5ad"],
        "qc": [f"results/samples/{case.sample}/filtered.h5ad"],
    }[case.stage]
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


def test_warnings_are_collected_from_job_logs(tmp_path):
    """remnant's warnings of every job log in one table; library warnings and other levels stay in the logs."""
    import logging
    import warnings

    from remnant.workflow.runlog import WARNING_COLUMNS, collect_warnings, logged

    first, second = tmp_path / "logs/read_counts/S1.log", tmp_path / "logs/call_lesions/call_lesions.log"
    with logged(first, "read_counts S1") as log:
        log.info("read 60 cells")
        logging.getLogger("remnant.io.counts").warning(
            "sample 'S1': 1 of 51 index-sort barcodes are not in the count matrix"
        )
        warnings.warn("a library's FutureWarning", FutureWarning, stacklevel=1)
    with logged(second, "call_lesions") as log:
        log.warning("del5q: batch plate is scored against reference cells of other batches")
    table = collect_warnings([("read_counts", first), ("call_lesions", second), ("plot_cnv", tmp_path / "absent.log")])
    assert list(table.columns) == WARNING_COLUMNS
    assert table[["rule", "logger"]].values.tolist() == [
        ["read_counts", "remnant.io.counts"],
        ["call_lesions", "remnant"],
    ]
    assert table["message"].tolist() == [
        "sample 'S1': 1 of 51 index-sort barcodes are not in the count matrix",
        "del5q: batch plate is scored against reference cells of other batches",
    ]
    assert table["log"].tolist() == [str(first), str(second)]


def test_config_file_check_for_what_snakemake_reads_first(tmp_path, capsys):
    """Snakemake reads --configfile before remnant runs (a traceback for a missing or non-UTF-8
    file); ``python -m remnant.workflow.config`` gives remnant's one line for each."""
    from remnant.workflow.config import main

    (tmp_path / "syntax.yaml").write_text("seed: [1\n")
    (tmp_path / "latin1.yaml").write_bytes("populations: {HSC: 'st\xe9m'}\n".encode("latin-1"))
    (tmp_path / "good.yaml").write_text("populations: {HSC: stem}\n")
    files = [str(tmp_path / n) for n in ("syntax.yaml", "latin1.yaml", "missing.yaml", "good.yaml")]
    assert main(files) == 1
    out = capsys.readouterr()
    errors = out.err.splitlines()
    assert len(errors) == 3 and "Traceback" not in out.err
    assert "syntax.yaml: not valid YAML" in errors[0] and "line 2" in errors[0]
    assert "latin1.yaml: not UTF-8" in errors[1] and "missing.yaml: file does not exist" in errors[2]
    assert "good.yaml: reads as a YAML mapping" in out.out
    assert main([files[-1]]) == 0
