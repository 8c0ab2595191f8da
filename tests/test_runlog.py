"""The job log's closing line: exact CPU time and peak memory, read back by benchmarks/scale.py; or,
when a write fails for want of room, one line naming the file and its filesystem."""

import subprocess
import sys
from pathlib import Path

import pytest

import remnant
from remnant.workflow.runlog import DONE_USAGE

# A job in a fresh process (as Snakemake runs a script): 0.5 s of CPU, then 300 MiB held at once.
JOB = """
import sys, time
import numpy as np
from remnant.workflow.runlog import logged
with logged(sys.argv[1], "step"):
    t0 = time.process_time()
    while time.process_time() - t0 < 0.5:
        pass
    block = np.ones(300 * 2**20, dtype=np.uint8)  # written, so resident
"""

# Snakemake starts a job's script from its own, large process; the job's peak must not be the
# parent's (the kernel carries a vfork+exec parent's peak over into the child's ru_maxrss).
LARGE_PARENT = """
import subprocess, sys
import numpy as np
held = np.ones(1500 * 2**20, dtype=np.uint8)
subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], check=True)
"""


def test_log_ends_with_the_jobs_cpu_time_and_peak_memory(tmp_path):
    log = tmp_path / "logs" / "step.log"
    src = str(Path(remnant.__file__).parents[1])
    subprocess.run(
        [sys.executable, "-c", LARGE_PARENT, JOB, str(log)],
        check=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    last = log.read_text().splitlines()[-1]
    match = DONE_USAGE.search(last)
    assert match is not None, last
    assert last.split(" INFO remnant: ")[1].startswith("step: done")
    # the whole process's CPU: the 0.5 s burnt, plus start-up and imports, but not minutes
    assert 0.5 <= float(match["cpu_s"]) < 30
    # its peak holds the 300 MiB block on top of Python and numpy (~30-60 MB), not the parent's 1.5 GB
    assert 300 <= float(match["peak_mb"]) < 1000


# Jobs whose writes fail for want of room (issue 19), each in a fresh process as Snakemake runs a
# script. A path linked to /dev/full fails every write with ENOSPC, as a full disk does, without
# filling one; a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails a write half way with EFBIG.
FULL_JOBS = {
    # HDF5 (anndata -> h5py): errno 28 and the file named in HDF5's message
    "h5ad": (
        "read_counts S1",
        """
import anndata as ad, numpy as np
ad.AnnData(np.ones((10, 5), dtype=np.float32)).write_h5ad("results/S1.h5ad")
""",
        "no space left on device writing results/S1.h5ad; free space on /dev and rerun (finished outputs are kept)",
    ),
    # a gzipped table: an OSError without a file name; the file is the open one in the traceback
    "table": (
        "filter_cells S1",
        """
import pandas as pd
pd.DataFrame({"a": range(100000)}).to_csv("results/cells.tsv.gz", sep="\\t", compression={"method": "gzip", "mtime": 0})
""",
        "no space left on device writing results/cells.tsv.gz; free space on /dev and rerun (finished outputs are kept)",
    ),
    # an ENOSPC wrapped in another exception, no file known: the job's outputs are named
    "wrapped": (
        "cluster_cells",
        """
import errno, types
snakemake = types.SimpleNamespace(output=["results/cohort/clustered.h5ad", "results/cohort/cells.tsv.gz"])
def write():
    raise OSError(errno.ENOSPC, "No space left on device")
try:
    write()
except OSError as err:
    raise RuntimeError("writing failed") from err
""",
        "no space left on device writing results/cohort/clustered.h5ad, results/cohort/cells.tsv.gz; free space on {mount} "
        "and rerun (finished outputs are kept)",
    ),
    # a write that fails half way through an h5ad: h5py reports it only while freeing objects
    # (ignored exceptions, 8 lines each) and went on until HDF5 crashed (SIGSEGV)
    "half-written": (
        "cluster_cells",
        """
import resource, signal
import anndata as ad, numpy as np, scipy.sparse as sp
a = ad.AnnData(sp.random(20000, 2000, density=0.05, format="csr", dtype=np.float32, random_state=0))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, resource.RLIM_INFINITY))
a.write_h5ad("results/big.h5ad")
""",
        "file too large writing results/big.h5ad (above the file-size limit, ulimit -f, or the largest file the filesystem on "
        "{mount} allows); raise the limit or write to another filesystem and rerun (finished outputs are kept)",
    ),
}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("name", list(FULL_JOBS))
def test_a_full_disk_ends_the_job_with_one_line(name, tmp_path):
    """A write that fails for want of room ends the job with one line on stderr, also the log's
    last line, naming the file and its filesystem: no traceback, no HDF5 error stacks, no crash."""
    import os

    step, body, expected = FULL_JOBS[name]
    (tmp_path / "results").mkdir()
    for link in ("S1.h5ad", "cells.tsv.gz"):
        (tmp_path / "results" / link).symlink_to("/dev/full")
    script = (
        "import sys\nfrom remnant.workflow.runlog import logged\nwith logged(sys.argv[1], sys.argv[2]):\n"
        + "".join(f"    {line}\n" for line in body.strip().splitlines())
    )
    log = tmp_path / "logs" / "job.log"
    src = str(Path(remnant.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-c", script, str(log), step],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )
    mount = tmp_path.resolve()
    while not os.path.ismount(mount):
        mount = mount.parent
    line = f"remnant {step}: ERROR: " + expected.format(mount=mount)
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert done.stderr.splitlines() == [line], done.stderr[-3000:]
    assert log.read_text().splitlines()[-1].endswith(" ERROR remnant: " + line.split(": ERROR: ", 1)[1])
