"""The job log's closing line: exact CPU time and peak memory, read back by benchmarks/scale.py."""

import time

import numpy as np

from remnant.runlog import DONE_USAGE, logged, resource_usage


def test_log_ends_with_the_jobs_cpu_time_and_peak_memory(tmp_path):
    log = tmp_path / "logs" / "step.log"
    before = resource_usage()
    with logged(log, "step"):
        t0 = time.process_time()
        while time.process_time() - t0 < 0.3:  # burn 0.3 s of CPU
            pass
        block = np.ones((64, 1024, 1024), dtype=np.uint8)  # 64 MiB, touched
        block[:, 0, 0] = 2
    last = log.read_text().splitlines()[-1]
    match = DONE_USAGE.search(last)
    assert match is not None, last
    assert last.split(" INFO remnant: ")[1].startswith("step: done")
    # the process's CPU time since it started: at least what the block burnt on top of what came before
    assert float(match["cpu_s"]) >= before["cpu_s"] + 0.3 - 0.05
    # peak resident memory covers the 64 MiB held in the block
    assert float(match["peak_mb"]) >= 64
    assert float(match["peak_mb"]) >= before["peak_mb"] - 1
