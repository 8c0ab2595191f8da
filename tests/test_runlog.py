"""The job log's closing line: exact CPU time and peak memory, read back by benchmarks/scale.py."""

import subprocess
import sys
from pathlib import Path

import remnant
from remnant.runlog import DONE_USAGE

# A job in a fresh process (as Snakemake runs a script): 0.5 s of CPU, then 300 MiB held at once.
JOB = """
import sys, time
import numpy as np
from remnant.runlog import logged
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
    subprocess.run([sys.executable, "-c", LARGE_PARENT, JOB, str(log)], check=True,
                   env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    last = log.read_text().splitlines()[-1]
    match = DONE_USAGE.search(last)
    assert match is not None, last
    assert last.split(" INFO remnant: ")[1].startswith("step: done")
    # the whole process's CPU: the 0.5 s burnt, plus start-up and imports, but not minutes
    assert 0.5 <= float(match["cpu_s"]) < 30
    # its peak holds the 300 MiB block on top of Python and numpy (~30-60 MB), not the parent's 1.5 GB
    assert 300 <= float(match["peak_mb"]) < 1000
