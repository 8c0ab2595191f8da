"""Logging for workflow steps: one log file per job, one clear line for the user on bad input.

Scripts call :func:`start` first (before importing scanpy, so that thread limits and writable
cache directories are in place), then run their work inside :func:`logged`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

from .errors import InputError

log = logging.getLogger("remnant")


def start(threads: int = 1) -> None:
    """Limit BLAS/OpenMP threads to the job's threads and give numba/matplotlib writable caches."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(max(1, int(threads)))
    cache = Path(tempfile.gettempdir()) / f"remnant-cache-{os.getuid()}"
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ.setdefault("MPLBACKEND", "Agg")


@contextlib.contextmanager
def logged(log_path: str | os.PathLike, step: str):
    """Send logging and warnings of the block to ``log_path``; turn errors into one clear line.

    An :class:`~remnant.errors.InputError` is written to the log and to stderr as one line,
    without a traceback, and the process exits with status 1. Any other exception keeps its
    traceback in the log and is re-raised.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    for noisy in ("numba", "matplotlib", "fontTools", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.info("%s: started", step)
    try:
        yield log
    except InputError as err:
        log.error("%s", err)
        print(f"remnant {step}: ERROR: {err}", file=sys.stderr)
        handler.flush()
        sys.exit(1)
    except Exception:
        log.error("%s failed:\n%s", step, traceback.format_exc())
        handler.flush()
        raise
    log.info("%s: done", step)
    handler.flush()
