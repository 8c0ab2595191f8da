"""Nothing a user gives remnant is ever modified or deleted (issue 19).

The probe that found the defect: a config copied from the shipped one kept ``demo.simulate: true``,
and the simulator wrote over the user's counts (10x h5, h5ad, plate tables, index-sort CSVs, whole
mtx folders with their extra files; a symlink replaced by a regular file). Now the simulator writes
only under results/demo/, a sheet for it may name no file, and every path a user gives is checked
against every output before anything runs. Each way a user can point an input at an output is run
here through the real ``snakemake`` command line (not a dry run): refused with one line naming the
sheet row and the path, and every user file byte-identical afterwards (a symlink still a symlink).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from bad_inputs import Cohort

from remnant.errors import InputError
from remnant.workflow.config import load_yaml, read_sample_sheet, validate_config
from remnant.workflow.paths import UserPath, check_distinct_samples, check_not_outputs, sheet_paths

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "config/schemas"


# ------------------------------------------------------------------------------------------------
# a working directory of real user files in every format
# ------------------------------------------------------------------------------------------------
def user_cohort(workdir: Path) -> Cohort:
    """The bad-input catalogue's valid cohort (10x h5, 10x mtx, plate table + index-sort CSV, h5ad),
    plus an extra file in the mtx folder, a cells x genes CSV plate sample and a sample whose counts
    path is a symlink to a file outside the working directory."""
    cohort = Cohort(workdir)
    (cohort.path("counts/P1_dx_PROG/README.txt")).write_text("the lab's own note, kept beside the matrix\n")
    elsewhere = workdir.parent / f"{workdir.name}_elsewhere"
    elsewhere.mkdir()
    shutil.copy(cohort.path("counts/N1_HSC.h5ad"), elsewhere / "N1_PROG.h5ad")
    with open(elsewhere / "N1_PROG.h5ad", "ab") as handle:
        handle.write(b"\0")  # not byte-identical to N1_HSC (h5py ignores trailing bytes)
    os.symlink(elsewhere / "N1_PROG.h5ad", cohort.path("counts/N1_PROG.h5ad"))
    rows = [line.split("\t") for line in cohort.sheet_text().splitlines()]
    rows.append(["N1_PROG", "N1", "NA", "PROG", "healthy", "droplet", "h5ad", "counts/N1_PROG.h5ad", ""])
    cohort.write_sheet(rows)
    return cohort


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file and link under the folders: a link as its target, a file as its SHA-256."""
    state = {}
    for folder in folders:
        for path in sorted([folder, *folder.rglob("*")]):
            if path.is_symlink():
                state[str(path)] = "link -> " + os.readlink(path)
            elif path.is_file():
                state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[str(path)] = "dir"
    return state


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
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


def refused_untouched(cohort: Cohort, *expect: str) -> str:
    """Run the workflow for real; assert it refused before any job with one line holding every
    part of ``expect`` and no traceback, and that no user file changed. Returns that line."""
    user_files = [
        cohort.dir / "counts",
        cohort.dir / "samples.tsv",
        cohort.dir / "config.yaml",
        cohort.dir.parent / f"{cohort.dir.name}_elsewhere",
    ]
    before = snapshot(*[p for p in user_files if p.is_dir()]) | {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in user_files if p.is_file()
    }
    result = snakemake(cohort.dir)
    shown = result.stdout + result.stderr
    after = snapshot(*[p for p in user_files if p.is_dir()]) | {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in user_files if p.is_file()
    }
    assert result.returncode != 0, shown
    assert after == before, "a user file changed"
    assert "Traceback" not in shown, shown
    assert not (cohort.dir / "results/samples").exists(), "a job ran"
    lines = [line for line in shown.splitlines() if all(part in line for part in expect)]
    assert lines, f"no line holds all of {expect}:\n{shown}"
    return lines[0]


# ------------------------------------------------------------------------------------------------
# the real command line: every way of pointing an input at an output
# ------------------------------------------------------------------------------------------------


@pytest.mark.workflow
def test_copied_demo_config_never_simulates_over_user_files(tmp_path):
    """The original defect: the old shipped config (demo.simulate: true) with a user's sheet."""
    cohort = user_cohort(tmp_path / "work")
    cohort.set("demo", {"simulate": True})
    line = refused_untouched(
        cohort,
        "samples.tsv",
        "line 2 (sample 'P1_dx_HSC')",
        "column 'counts'",
        "demo.simulate: true",
        "demo.simulate: false",
    )
    assert "counts/P1_dx_HSC.h5" in line


@pytest.mark.workflow
def test_counts_under_results_are_refused(tmp_path):
    cohort = user_cohort(tmp_path / "work")
    (cohort.path("results/mine")).mkdir(parents=True)
    shutil.copy(cohort.path("counts/P1_dx_HSC.h5"), cohort.path("results/mine/P1_dx_HSC.h5"))
    cohort.set_sample("P1_dx_HSC", "counts", "results/mine/P1_dx_HSC.h5")
    snapshot_results = snapshot(cohort.path("results"))
    refused_untouched(
        cohort, "samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'results/mine/P1_dx_HSC.h5'", "output folder results/"
    )
    assert snapshot(cohort.path("results")) == snapshot_results


@pytest.mark.workflow
def test_counts_at_an_intermediate_file_are_refused(tmp_path):
    """A counts path equal to one of the workflow's own files (was: a cyclic dependency, then a
    KeyError traceback in filter_cells)."""
    cohort = user_cohort(tmp_path / "work")
    cohort.set_sample("N1_HSC", "counts", "results/samples/N1_HSC/counts.h5ad")
    cohort.path("results/samples/N1_HSC").mkdir(parents=True)
    shutil.copy(cohort.path("counts/N1_HSC.h5ad"), cohort.path("results/samples/N1_HSC/counts.h5ad"))
    result = snakemake(cohort.dir)
    shown = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in shown, shown
    assert any(
        "line 5 (sample 'N1_HSC')" in line and "output folder results/" in line for line in shown.splitlines()
    ), shown


@pytest.mark.workflow
def test_same_file_for_two_samples_is_refused(tmp_path):
    cohort = user_cohort(tmp_path / "work")
    cohort.set_sample("P1_rem_HSC", "counts", "counts/P1_dx_HSC.h5")
    cohort.set_sample("P1_rem_HSC", "format", "10x_h5")
    cohort.set_sample("P1_rem_HSC", "technology", "droplet")
    cohort.set_sample("P1_rem_HSC", "index_sort", "")
    refused_untouched(
        cohort, "samples.tsv", "line 4 (sample 'P1_rem_HSC')", "same file as sample 'P1_dx_HSC' on line 2"
    )


@pytest.mark.workflow
def test_symlink_into_results_is_refused(tmp_path):
    cohort = user_cohort(tmp_path / "work")
    cohort.path("results/staged").mkdir(parents=True)
    shutil.move(cohort.path("counts/N1_HSC.h5ad"), cohort.path("results/staged/N1_HSC.h5ad"))
    os.symlink(cohort.path("results/staged/N1_HSC.h5ad"), cohort.path("counts/N1_HSC.h5ad"))
    refused_untouched(cohort, "samples.tsv", "line 5 (sample 'N1_HSC')", "through a link to", "output folder results/")


@pytest.mark.workflow
def test_a_real_run_reads_through_links_and_changes_nothing(tmp_path):
    """The valid cohort's per-sample jobs run; every user file (the link still a link) is unchanged."""
    cohort = user_cohort(tmp_path / "work")
    elsewhere = tmp_path / "work_elsewhere"
    before = snapshot(cohort.path("counts"), elsewhere) | snapshot(cohort.path("samples.tsv"))
    result = snakemake(cohort.dir, "results/samples/N1_PROG/counts.h5ad", "results/samples/P1_dx_PROG/counts.h5ad")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert snapshot(cohort.path("counts"), elsewhere) | snapshot(cohort.path("samples.tsv")) == before
    assert cohort.path("counts/N1_PROG.h5ad").is_symlink()


# ------------------------------------------------------------------------------------------------
# the checks themselves (fast)
# ------------------------------------------------------------------------------------------------
def _config(simulate: bool) -> dict:
    config = load_yaml(ROOT / "config/config.yaml")
    config["demo"] = {"simulate": simulate}
    return validate_config(config, SCHEMAS / "config.schema.yaml")


def test_a_sheet_for_the_simulator_may_name_no_file(tmp_path):
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        "sample\tpatient\ttimepoint\tpopulation\tcondition\tformat\tcounts\n"
        "S1\tP1\tdiagnosis\tHSC\tMDS\t10x_h5\tmine/S1.h5\n"
    )
    with pytest.raises(InputError) as err:
        read_sample_sheet(sheet, SCHEMAS / "samples.schema.yaml", _config(True))
    message = str(err.value)
    assert "line 2 (sample 'S1')" in message and "'mine/S1.h5'" in message and "demo.simulate: false" in message
    sheet.write_text("sample\tpatient\ttimepoint\tpopulation\tcondition\tformat\nS1\tP1\tdiagnosis\tHSC\tMDS\t10x_h5\n")
    assert read_sample_sheet(sheet, SCHEMAS / "samples.schema.yaml", _config(True)).loc["S1", "counts"] == ""
    with pytest.raises(InputError, match=r"missing required column\(s\) \['counts'\]"):
        read_sample_sheet(sheet, SCHEMAS / "samples.schema.yaml", _config(False))
    sheet.write_text(
        "sample\tpatient\ttimepoint\tpopulation\tcondition\tformat\tcounts\nS1\tP1\tdiagnosis\tHSC\tMDS\t10x_h5\t\n"
    )
    with pytest.raises(InputError, match="column 'counts' is empty"):
        read_sample_sheet(sheet, SCHEMAS / "samples.schema.yaml", _config(False))


def _paths(*paths: str) -> list[UserPath]:
    return [UserPath(f"line {i + 2}", "column 'counts'", p, "samples.tsv") for i, p in enumerate(paths)]


def test_paths_inside_output_folders_are_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.h5").write_bytes(b"a")
    check_not_outputs(_paths("data/a.h5", str(tmp_path / "data/a.h5")), workdir=tmp_path)
    for bad in ("results/a.h5", "logs/x.log", ".snakemake/a", "data/../results/a.h5", str(tmp_path / "results/a.h5")):
        with pytest.raises(InputError, match="output folder"):
            check_not_outputs(_paths(bad), workdir=tmp_path)
    # a link inside results/ to a file elsewhere: Snakemake would replace the link
    (tmp_path / "results").mkdir()
    os.symlink(tmp_path / "data/a.h5", tmp_path / "results/link.h5")
    with pytest.raises(InputError, match="output folder results/"):
        check_not_outputs(_paths("results/link.h5"), workdir=tmp_path)
    # a link elsewhere into results/
    (tmp_path / "results/b.h5").write_bytes(b"b")
    os.symlink(tmp_path / "results/b.h5", tmp_path / "data/b.h5")
    with pytest.raises(InputError, match="through a link to"):
        check_not_outputs(_paths("data/b.h5"), workdir=tmp_path)
    # an mtx 'folder' that is the working directory itself holds results/
    with pytest.raises(InputError, match="holds the workflow's output folder"):
        check_not_outputs(_paths("."), workdir=tmp_path)


def test_rule_outputs_are_refused(tmp_path):
    def is_output(path):
        return "make_table" if path == "tables/out.tsv" else None

    check_not_outputs(_paths("tables/in.tsv"), workdir=tmp_path, is_output=is_output)
    with pytest.raises(InputError) as err:
        check_not_outputs(_paths("tables/out.tsv"), workdir=tmp_path, is_output=is_output)
    assert "rule make_table" in str(err.value) and "line 2" in str(err.value)


def _sheet(*counts: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample": [f"S{i}" for i in range(len(counts))],
            "counts": list(counts),
            "index_sort": "",
            "line": range(2, len(counts) + 2),
        }
    ).set_index("sample", drop=False)


def test_two_samples_reading_the_same_counts_are_refused(tmp_path):
    (tmp_path / "a.h5").write_bytes(b"one")
    (tmp_path / "b.h5").write_bytes(b"two")
    (tmp_path / "mtx").mkdir()
    (tmp_path / "mtx/matrix.mtx.gz").write_bytes(b"three")
    check_distinct_samples(_sheet("a.h5", "b.h5", "mtx"), "samples.tsv", workdir=tmp_path)
    assert len(sheet_paths(_sheet("a.h5", "b.h5"), "samples.tsv")) == 2
    cases = {
        "the same file as": ("a.h5", "./a.h5"),
        "inside the counts of": ("mtx", "mtx/matrix.mtx.gz"),
        "byte for byte": ("a.h5", "copy.h5"),
    }
    shutil.copy(tmp_path / "a.h5", tmp_path / "copy.h5")
    os.symlink(tmp_path / "b.h5", tmp_path / "link.h5")
    cases["same file as sample 'S0'"] = ("b.h5", "link.h5")
    for expect, counts in cases.items():
        with pytest.raises(InputError) as err:
            check_distinct_samples(_sheet(*counts), "samples.tsv", workdir=tmp_path)
        assert expect in str(err.value) and "line 3 (sample 'S1')" in str(err.value), str(err.value)
    # two mtx folders with the same files are the same counts
    shutil.copytree(tmp_path / "mtx", tmp_path / "mtx2")
    with pytest.raises(InputError, match="byte for byte"):
        check_distinct_samples(_sheet("mtx", "mtx2"), "samples.tsv", workdir=tmp_path)
