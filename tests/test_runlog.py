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


def test_log_ends_with_the_jobs_cpu_time_and_peak_memory(tmp_path):
    log = tmp_path / "logs" / "step.log"
    src = str(Path(remnant.__file__).parents[1])
    subprocess.run([sys.executable, "-c", JOB, str(log)], check=True, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    last = log.read_text().splitlines()[-1]
    match = DONE_USAGE.search(last)
    assert match is not None, last
    assert last.split(" INFO remnant: ")[1].startswith("step: done")
    # the whole process's CPU: the 0.5 s burnt, plus start-up and imports, but not minutes
    assert 0.5 <= float(match["cpu_s"]) < 30
    # its peak holds the 300 MiB block on top of Python and numpy (~30-60 MB)
    assert 300 <= float(match["peak_mb"]) < 1000
