"""The user's files are never the workflow's outputs.

Snakemake deletes and rewrites a rule's outputs (before a job runs, after a job fails, on
``--delete-all-output``), and writes freely inside the folders it owns. A sample-sheet or config
path that is one of those outputs, or lies inside one of those folders, would be overwritten or
deleted: this module refuses such a run before anything runs, with one line naming the sheet row
(or config key) and the path. It also refuses one file given for two samples (the same path,
the same file through a symlink, or a byte-identical copy): the second sample would silently
repeat the first's cells.

Paths are compared after resolving symlinks (``os.path.realpath``), and also as given, so a link
inside ``results/`` to a file elsewhere is refused too (Snakemake would replace the link).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from remnant.errors import InputError

__all__ = ["OUTPUT_FOLDERS", "UserPath", "check_distinct_samples", "check_not_outputs", "sheet_paths"]

#: Folders of the working directory the workflow owns: everything in them may be rewritten or deleted.
OUTPUT_FOLDERS = ("results", "logs", ".snakemake")


@dataclass(frozen=True)
class UserPath:
    """A path the user gave: where it was given (``line 3 (sample 'P1_dx')`` or a config key), the
    column or key, the path as written and the file that names it (sheet or config)."""

    where: str
    field: str
    path: str
    source: str


def sheet_paths(sheet: pd.DataFrame, sheet_path: str | Path) -> list[UserPath]:
    """The counts, index-sort and allele (cellsnp-lite folder, BAM or BAM manifest, sites VCF) paths of every row of a sheet read by
    :func:`remnant.workflow.config.read_sample_sheet` (empty cells skipped)."""
    paths = []
    for sample, row in sheet.iterrows():
        where = f"line {row['line']} (sample {sample!r})"
        for column in ("counts", "index_sort", "alleles", "bam", "sites"):
            if row.get(column, ""):
                paths.append(UserPath(where, f"column {column!r}", str(row[column]), str(sheet_path)))
    return paths


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_outputs(
    paths: Iterable[UserPath],
    *,
    workdir: str | Path = ".",
    is_output: Callable[[str], str | None] | None = None,
) -> None:
    """Refuse any user path that the workflow may overwrite or delete.

    Parameters
    ----------
    paths
        The user's paths (:func:`sheet_paths`, plus the sheet, config files and resources).
    workdir
        The working directory; relative paths are relative to it.
    is_output
        Optional: given a path relative to ``workdir``, the name of the rule that declares it as
        output, log or benchmark, else ``None`` (rules/common.smk asks Snakemake's rules).

    Raises
    ------
    InputError
        Naming the file that gives the path, the row or key and the path: the path lies inside
        ``results/``, ``logs/`` or ``.snakemake/`` (resolved or as given), is a rule's output, or is
        a folder that holds those folders.
    """
    workdir = Path(workdir).resolve()
    folders = [workdir / f for f in OUTPUT_FOLDERS]
    for item in paths:
        given = Path(item.path)
        absolute = Path(os.path.abspath(workdir / given))  # as written (a link itself), '..' removed
        resolved = Path(os.path.realpath(workdir / given))  # the file a link points to
        for candidate in dict.fromkeys((absolute, resolved)):
            folder = next((f for f in folders if _inside(candidate, f)), None)
            if folder is not None:
                via = "" if candidate == absolute else f" (through a link to {str(candidate)!r})"
                raise InputError(
                    f"{item.field}: {item.path!r}{via} lies inside the workflow's output folder {folder.name}/, whose files "
                    f"remnant may overwrite or delete; move it out of {', '.join(f + '/' for f in OUTPUT_FOLDERS)} "
                    "and point the sheet or config at the new place.",
                    path=item.source,
                    where=item.where,
                )
            holder = next((f for f in folders if _inside(f, candidate)), None)
            if holder is not None and candidate.is_dir():
                raise InputError(
                    f"{item.field}: {item.path!r} is a folder that holds the workflow's output folder {holder.name}/; "
                    "keep input folders outside the working directory's results/, logs/ and .snakemake/.",
                    path=item.source,
                    where=item.where,
                )
            if is_output is not None and _inside(candidate, workdir):
                rule = is_output(os.path.relpath(candidate, workdir))
                if rule is not None:
                    raise InputError(
                        f"{item.field}: {item.path!r} is an output of remnant's rule {rule}, which would overwrite it; "
                        "give the path of your own file, outside results/ and logs/.",
                        path=item.source,
                        where=item.where,
                    )


def _digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents) in name order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path) if path.is_dir() else "").encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def check_distinct_samples(sheet: pd.DataFrame, sheet_path: str | Path, *, workdir: str | Path = ".") -> None:
    """Refuse two samples that read the same counts: the same path, the same file through a link,
    a file inside another sample's folder, or byte-identical content at two paths.

    Content is hashed only for files (or folders) of equal size, so a cohort of distinct files
    costs a ``stat`` per sample. Paths that do not exist are left to
    :func:`remnant.workflow.config.check_input_paths`.
    """
    workdir = Path(workdir)
    rows = [(sample, int(row["line"]), row["counts"]) for sample, row in sheet.iterrows() if row["counts"]]
    resolved = {}
    for sample, line, counts in rows:
        path = Path(os.path.realpath(workdir / counts))
        if not path.exists():
            continue
        for (other, other_line, other_counts), other_path in resolved.items():
            if _inside(path, other_path) or _inside(other_path, path):
                same = (
                    "the same file as"
                    if path == other_path
                    else "inside the counts of"
                    if _inside(path, other_path)
                    else "a folder holding the counts of"
                )
                raise InputError(
                    f"column 'counts': {counts!r} is {same} sample {other!r} on line {other_line} ({other_counts!r}); "
                    "each sample needs its own counts file.",
                    path=sheet_path,
                    where=f"line {line} (sample {sample!r})",
                )
        resolved[(sample, line, counts)] = path
    by_size: dict[int, list] = {}
    for key, path in resolved.items():
        by_size.setdefault(_size(path), []).append((key, path))
    for group in by_size.values():
        if len(group) < 2:
            continue
        seen: dict[str, tuple] = {}
        for (sample, line, counts), path in group:
            digest = _digest(path)
            if digest in seen:
                other, other_line, other_counts = seen[digest]
                raise InputError(
                    f"column 'counts': {counts!r} has the same content, byte for byte, as {other_counts!r} of sample "
                    f"{other!r} on line {other_line}; each sample needs its own counts (a copied file?).",
                    path=sheet_path,
                    where=f"line {line} (sample {sample!r})",
                )
            seen[digest] = (sample, line, counts)
