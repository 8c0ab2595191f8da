"""Logging for workflow steps: one log file per job, one clear line for the user on bad input.

Scripts call :func:`start` first (before importing scanpy, so that thread limits and writable
cache directories are in place), then run their work inside :func:`logged`. Warnings (input the
run could go on with) are logged with ``logger.warning``; :func:`collect_warnings` gathers those of
every job's log into one table (rule collect_warnings: ``results/warnings.tsv``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from remnant.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

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
    without a traceback, and the process exits with status 1. A write that fails for want of room
    (a full disk, a disk quota, a file-size limit: :func:`disk_full`) also ends the job with one
    line, ``remnant <step>: ERROR: no space left on device writing <path>; free space on
    <filesystem> and rerun (finished outputs are kept)``, at the first failure, even one that h5py
    can only report while freeing an object (see :func:`_stop_if_full`). Any other exception keeps
    its traceback in the log and is re-raised.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = _JobLog(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    for noisy in ("numba", "matplotlib", "fontTools", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    hooks = sys.excepthook, sys.unraisablehook

    def excepthook(kind, value, tb):
        _stop_if_full(step, value, handler)
        hooks[0](kind, value, tb)

    def unraisablehook(unraisable):
        _stop_if_full(step, unraisable.exc_value, handler)
        hooks[1](unraisable)

    # h5py reports a write that fails while it frees an object (closing a dataset, flushing a file)
    # as an ignored exception, printed through these hooks (8 lines each), and carries on: on a
    # full disk that printed 144 of them and then crashed (SIGSEGV) before any exception reached
    # the except clauses below
    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
    log.info("%s: started", step)
    try:
        yield log
    except InputError as err:
        log.error("%s", err)
        print(f"remnant {step}: ERROR: {err}", file=sys.stderr)
        handler.flush()
        sys.exit(1)
    except Exception as err:
        _stop_if_full(step, err, handler)
        log.error("%s failed:\n%s", step, traceback.format_exc())
        handler.flush()
        raise
    finally:
        sys.excepthook, sys.unraisablehook = hooks
    usage = resource_usage()
    log.info("%s: done (CPU %.1f s, peak memory %.0f MB)", step, usage["cpu_s"], usage["peak_mb"])
    handler.flush()


class _JobLog(logging.FileHandler):
    """A job's log file that stays quiet when its own disk is full (logging would print a
    traceback for every record it cannot write); the job then ends with the line on stderr."""

    def handleError(self, record):
        if disk_full(sys.exc_info()[1]) is None:
            super().handleError(record)


#: errno of a write that failed for want of room, and what the message calls it.
_NO_ROOM = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large"}
#: The same, as HDF5 (through h5py) words it when no errno attribute survives: its "errno = 28" in
#: any exception, the system's words ("No space left on device") only in an OSError's message.
_NO_ROOM_TEXT = [
    (re.compile(r"errno = 28\b"), re.compile(r"No space left on device"), errno.ENOSPC),
    (re.compile(r"errno = 122\b"), re.compile(r"Disk quota exceeded"), errno.EDQUOT),
    (re.compile(r"errno = 27\b"), re.compile(r"File too large"), errno.EFBIG),
]
_HDF5_FILENAME = re.compile(r"filename = '([^']+)'")


def disk_full(exc: BaseException | None) -> tuple[int, str | None] | None:
    """``(errno, path)`` when ``exc`` or an exception it was raised from (``__cause__``,
    ``__context__``) is a write that failed for want of room: ENOSPC (no space left on device),
    EDQUOT (disk quota exceeded) or EFBIG (file too large), as an OSError's errno or in an HDF5
    error's message; else None.

    ``path`` is the file being written when it can be told: the OSError's ``filename``, the file
    HDF5 names (``filename = '…'``), or an open file object in the innermost frames of the
    traceback (a gzip table being written); else None.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        text = str(exc)
        if code not in _NO_ROOM:
            code = next(
                (
                    c
                    for hdf5, words, c in _NO_ROOM_TEXT
                    if hdf5.search(text) or (isinstance(exc, OSError) and words.search(text))
                ),
                None,
            )
        if code is not None:
            path = getattr(exc, "filename", None) if isinstance(exc, OSError) else None
            if not isinstance(path, str) or not path:
                found = _HDF5_FILENAME.search(text)
                path = found.group(1) if found else _file_in_traceback(exc.__traceback__)
            return code, path
        exc = exc.__cause__ or exc.__context__
    return None


def _file_in_traceback(tb) -> str | None:
    """The name of a file object open for writing in the traceback's frames, innermost first."""
    import io

    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in list(frame.f_locals.values()):
            name = getattr(value, "name", None) if isinstance(value, io.IOBase) else None
            if isinstance(name, str) and name and not name.startswith("<"):
                return name
            name = getattr(value, "filename", None) if type(value).__module__.startswith("h5py") else None
            if isinstance(name, str) and name:
                return name
    return None


def _mount_point(path: str | None) -> str:
    """The mount point of the filesystem ``path`` is on (the working directory's without a path)."""
    here = Path(path or ".").absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    here = here.resolve()
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return str(here)


def _job_outputs() -> list[str]:
    """The running Snakemake job's outputs (its script's ``snakemake`` object), if any."""
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    try:
        return [str(p) for p in job.output] if job is not None else []
    except Exception:
        return []


def no_room_message(code: int, path: str | None) -> str:
    """The line a job ends with when a write failed for want of room (see :func:`disk_full`)."""
    if path is None:
        outputs = _job_outputs()
        where = ", ".join(outputs) if outputs else "its outputs"
        filesystem = _mount_point(outputs[0] if outputs else None)
    else:
        absolute = Path(path).absolute()
        with contextlib.suppress(ValueError):
            path = str(absolute.relative_to(Path.cwd()))  # named as the workflow names it
        where, filesystem = path, _mount_point(path)
    if code == errno.EFBIG:
        return (
            f"file too large writing {where} (above the file-size limit, ulimit -f, or the largest file the filesystem on "
            f"{filesystem} allows); raise the limit or write to another filesystem and rerun (finished outputs are kept)"
        )
    if code == errno.EDQUOT:
        return f"disk quota exceeded writing {where}; free space within your quota on {filesystem} and rerun (finished outputs are kept)"
    return f"no space left on device writing {where}; free space on {filesystem} and rerun (finished outputs are kept)"


def _stop_if_full(step: str, exc: BaseException | None, handler: logging.Handler) -> None:
    """End the job with one line when ``exc`` is a write that failed for want of room.

    Writes the line to the log (if its disk still takes it) and to stderr, then leaves with
    ``os._exit(1)``: a normal exit frees the half-written HDF5 files, whose flush fails again and
    again (a traceback each) and can crash HDF5 (SIGSEGV). Snakemake removes the failed job's
    outputs; those of finished jobs stay.
    """
    found = disk_full(exc)
    if found is None:
        return
    message = no_room_message(*found)
    with contextlib.suppress(Exception):
        log.error("%s", message)
        handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    print(f"remnant {step}: ERROR: {message}", file=sys.stderr, flush=True)
    os._exit(1)


#: How :func:`logged` ends a job's log: ``"<step>: done (CPU <s> s, peak memory <MB> MB)"``.
DONE_USAGE = re.compile(r": done \(CPU (?P<cpu_s>[0-9.]+) s, peak memory (?P<peak_mb>[0-9.]+) MB\)$")


def resource_usage() -> dict[str, float]:
    """CPU time and peak resident memory of this process so far, exactly.

    Returns ``{"cpu_s": ..., "peak_mb": ...}``: user + system CPU seconds of this process and of
    its children that have ended (a process pool's workers, once shut down, from ``getrusage``),
    and this process's peak resident set (MB) plus the largest ended child's (an upper bound for
    the job when the children ran at the same time as its own peak). Snakemake's ``benchmark:``
    files sample a job's processes every 0.5 s for 15 s, then every 30 s, and keep the last
    sample: a job of a minute loses up to half of its CPU time and may miss its peak; these
    figures lose nothing.

    This process's peak is the kernel's high-water mark of its own address space (``VmHWM`` in
    ``/proc/self/status``), which starts afresh at ``exec``. ``getrusage``'s ``ru_maxrss`` does
    not: Snakemake starts a job's script from a thread of its own process (vfork, then exec), and
    the kernel carries the parent's peak over, so a 40 MB job would report Snakemake's 1 GB.
    Ended children are the job's own forks (their peak starts at the fork), so their
    ``ru_maxrss`` is theirs. Where ``/proc`` is missing, ``ru_maxrss`` is the fallback.
    """
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    own_peak_kib = _own_peak_kib() or own.ru_maxrss  # ru_maxrss is in KiB on Linux
    return {"cpu_s": cpu, "peak_mb": (own_peak_kib + children.ru_maxrss) / 1024}


def _own_peak_kib() -> int | None:
    """``VmHWM`` of ``/proc/self/status`` in KiB: this address space's peak resident set."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])  # "VmHWM:   123456 kB"
    except OSError:
        pass
    return None


@contextlib.contextmanager
def timed(what: str, logger: logging.Logger | None = None):
    """Log ``what`` when the block starts and its wall time (s) when it ends: progress of the
    long steps of a big cohort (which of PCA, Harmony, kNN, Leiden, UMAP a job is in)."""
    logger = logger or log
    logger.info("%s ...", what)
    t0 = time.perf_counter()
    yield
    logger.info("%s: %.1f s", what, time.perf_counter() - t0)


#: Columns of the run's warnings table (``results/warnings.tsv``).
WARNING_COLUMNS = ["rule", "log", "logger", "message"]

# A record as :func:`logged` writes it: "HH:MM:SS LEVEL logger: message".
_RECORD = re.compile(r"^\d\d:\d\d:\d\d (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")


def collect_warnings(logs) -> pd.DataFrame:
    """The warnings remnant logged in a run's job logs, as one table (for the report).

    Parameters
    ----------
    logs
        ``(rule, path)`` pairs: the log file of each job, as written by :func:`logged`. Logs that
        do not exist (jobs not part of this run) are skipped.

    Returns
    -------
    pandas.DataFrame
        One row per WARNING record of a ``remnant`` logger, in the order of ``logs`` and then of the
        log: :data:`WARNING_COLUMNS` (``log`` is the path; continuation lines of a record are joined
        with spaces). No timestamps, so the table is the same for the same run. Warnings of other
        libraries (Python's ``warnings``, scanpy) stay in the logs only: they are rarely about the
        user's input.
    """
    import pandas as pd

    rows = []
    for rule, path in logs:
        path = Path(path)
        if not path.is_file():
            continue
        current = None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _RECORD.match(line)
            if match:
                current = None
                if match["level"] == "WARNING" and match["logger"].split(".")[0] == "remnant":
                    current = {
                        "rule": str(rule),
                        "log": str(path),
                        "logger": match["logger"],
                        "message": match["message"],
                    }
                    rows.append(current)
            elif current is not None and line.strip():
                current["message"] += " " + line.strip()
    return pd.DataFrame(rows, columns=WARNING_COLUMNS)
