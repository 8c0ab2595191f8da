"""Peak memory of rule annotate_cohort at a million cells, before and after the scverse cohort.h5ad (issue 20).

Run by hand, never in tests (the first time ~10 minutes on one core and ~36 GB of disk at the peak:
inputs 16 GB, one output at a time; then ~3 minutes; figures in docs/dev/scale.md):

    taskset -c 1 .venv/bin/python benchmarks/annotate_memory.py DIR [--cells 1000000] [--base-cells 50000]
        [--runs 2] [--before 48e765c] [--after HEAD] [--keep-outputs]

1. Inputs, built once into ``DIR`` and reused when present: the real workflow runs on a simulated
   cohort of ``--base-cells`` cells (``benchmarks/scale.py``'s ``write_cohort``/``run``, one core,
   ``--until call_lesions``) into ``DIR/base``; its ``results/cohort/clustered.h5ad`` and
   ``results/cnv/lesion_calls.h5ad`` are then tiled into ``DIR/tiled`` to at least ``--cells``
   cells (:func:`tile_file`: whole copies of the cells, block by block inside HDF5, never a
   matrix or a 1M-cell array in memory beyond ``obs``; the copy ``k`` of a cell is named
   ``C<k><name>``, as ``scale.py`` names a cohort's units). Every element keeps its encoding,
   dtypes and HDF5 layout (chunks, compression); ``X``'s ``indptr`` is int32 below 2^31 stored
   values and int64 from there, as anndata's ``concat_on_disk`` (cluster_cells' merge) chooses;
   ``obsp`` (the kNN graph) is block-diagonal. :func:`check_tiled` checks that each tiled file
   has the original's keys (obs columns and dtypes, obsm, obsp, var, uns, layers).
2. The annotate step, each run in a fresh process, as the rule runs it: the version's own
   ``scripts/annotate_cohort.py`` is executed with a stand-in ``snakemake`` object (input, output,
   log, params.target_sum of the base run's config, threads 1), its ``scriptdir`` in a tree
   extracted with ``git archive <rev> src/remnant scripts/annotate_cohort.py``, so the script puts
   that version's ``src`` first on ``sys.path`` (checked). ``--before`` is the code before commit
   e92ac2f (a plain file copy, then ``obs``/``uns["lesions"]`` replaced), ``--after`` the
   scverse-shaped writer. Runs alternate (before, after, before, ...).
3. Per run: peak memory and CPU time exactly as a job reports them (the line
   ``annotate_cohort: done (CPU ... s, peak memory ... MB)`` that ``remnant.workflow.runlog.logged`` ends the
   job's log with: ``resource_usage``, the process's ``VmHWM`` plus ended children), the process's
   wall time (start-up included, as Snakemake's ``benchmark:`` file times a job), the call's own
   time (the script's log line) and the output's size. The output is deleted after each run
   unless ``--keep-outputs``. Prints one table and the after/before ratios of the means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from scale import run, write_cohort  # noqa: E402

from remnant.workflow.runlog import DONE_USAGE  # noqa: E402

INT32_MAX = np.iinfo(np.int32).max
#: Values copied at a time when tiling (64 MB of float32).
TILE_BLOCK = 1 << 24
#: The files the rule reads, relative to a working directory.
INPUTS = {"clustered": "results/cohort/clustered.h5ad", "calls": "results/cnv/lesion_calls.h5ad"}
#: The script's own timing line (before and after e92ac2f): "...: 12.3 s".
CALL_SECONDS = re.compile(r"wrote .*: ([0-9.]+) s$")


# ---------------------------------------------------------------------------------------------
# 1. the inputs


def build_base(base: Path, cells: int, seed: int) -> float:
    """The real workflow up to call_lesions on a simulated ``cells``-cell cohort (one core);
    returns its elapsed time (NaN when its outputs were already there)."""
    if all((base / rel).is_file() for rel in INPUTS.values()):
        return float("nan")
    if not (base / "config.yaml").exists():
        write_cohort(base, cells, seed)
    return run(base, 1, until="call_lesions")


def _like(src: h5py.Dataset, parent: h5py.Group, name: str, shape: tuple, dtype=None) -> h5py.Dataset:
    """A dataset laid out as ``src`` (chunked and resizable along axis 0 with its chunks and
    filters, or contiguous like it) with a new shape (and dtype)."""
    dtype = src.dtype if dtype is None else np.dtype(dtype)
    if src.chunks is None:
        return parent.create_dataset(name, shape=shape, dtype=dtype)
    return parent.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        chunks=src.chunks,
        maxshape=(None, *shape[1:]),
        compression=src.compression,
        compression_opts=src.compression_opts,
        shuffle=src.shuffle,
        fletcher32=src.fletcher32,
        scaleoffset=src.scaleoffset,
    )


def _tile_rows(src: h5py.Dataset, parent: h5py.Group, name: str, copies: int) -> None:
    """A dense obs-aligned array (``obsm``), its rows repeated ``copies`` times, block by block."""
    n = src.shape[0]
    out = _like(src, parent, name, (n * copies, *src.shape[1:]))
    out.attrs.update(dict(src.attrs))
    rows = max(1, TILE_BLOCK // max(1, int(np.prod(src.shape[1:]))))
    for lo in range(0, n, rows):
        block = src[lo : lo + rows]
        for k in range(copies):
            out[k * n + lo : k * n + lo + block.shape[0]] = block


def _tile_csr(src: h5py.Group, parent: h5py.Group, name: str, copies: int, square: bool) -> None:
    """A CSR matrix whose rows are cells, the cells repeated ``copies`` times (``square``: an
    ``obsp`` graph, block-diagonal), block by block. The counts' ``indptr`` is int32 below 2^31
    stored values, int64 from there (anndata's ``concat_on_disk`` rule, cluster_cells' merge), their
    ``indices`` keep their dtype; a graph keeps its dtypes unless the tiled graph needs wider ones."""
    data, indices, indptr = src["data"], src["indices"], src["indptr"]
    n_rows, n_cols = (int(x) for x in src.attrs["shape"])
    nnz = int(data.shape[0])
    total = nnz * copies
    if square:  # written from scipy's matrix (write_elem): its dtypes, wider only where the tiled graph needs it
        ptr_dtype = np.int64 if total > np.iinfo(indptr.dtype).max else indptr.dtype
        idx_dtype = np.int64 if n_cols * copies > np.iinfo(indices.dtype).max else indices.dtype
    else:  # the counts, as concat_on_disk writes them
        ptr_dtype = np.int64 if total >= INT32_MAX else np.int32
        idx_dtype = indices.dtype
    g = parent.create_group(name)
    g.attrs.update(dict(src.attrs))
    g.attrs["shape"] = (n_rows * copies, n_cols * copies if square else n_cols)
    out_data = _like(data, g, "data", (total,))
    out_indices = _like(indices, g, "indices", (total,), idx_dtype)
    out_indptr = _like(indptr, g, "indptr", (n_rows * copies + 1,), ptr_dtype)
    for lo in range(0, nnz, TILE_BLOCK):
        values, index = data[lo : lo + TILE_BLOCK], indices[lo : lo + TILE_BLOCK]
        for k in range(copies):
            at = slice(k * nnz + lo, k * nnz + lo + values.shape[0])
            out_data[at] = values
            out_indices[at] = index.astype(idx_dtype) + k * n_cols if square else index
    ptr = indptr[:].astype(np.int64)
    for k in range(copies):  # the boundary entry of consecutive copies is written twice, equal
        out_indptr[k * n_rows : (k + 1) * n_rows + 1] = (ptr + k * nnz).astype(ptr_dtype)


def tile_obs(obs: pd.DataFrame, copies: int) -> pd.DataFrame:
    """``obs`` repeated ``copies`` times; copy ``k`` (1-based) of cell ``name`` is ``C<k><name>``.
    Column dtypes (categoricals and their categories included) are kept."""
    out = pd.concat([obs] * copies, axis=0)
    names = obs.index.astype(str).to_numpy()
    out.index = pd.Index(
        np.concatenate([np.char.add(f"C{k + 1}", names.astype(str)) for k in range(copies)]).astype(object),
        name=obs.index.name,
    )
    for column in obs.columns:
        if out[column].dtype != obs[column].dtype:
            out[column] = out[column].astype(obs[column].dtype)
    return out


def tile_file(src_path: Path, dst_path: Path, copies: int) -> None:
    """``dst_path``: the h5ad ``src_path`` with its cells repeated ``copies`` times: ``obs`` tiled in
    memory (:func:`tile_obs`) and written with anndata's writer as the workflow writes it, ``X``,
    ``layers`` and ``obsm`` tiled block by block, ``obsp`` block-diagonal; ``var``, ``varm``,
    ``varp`` and ``uns`` copied inside HDF5."""
    from anndata.io import read_elem, write_elem

    tmp = dst_path.with_name(f".{dst_path.name}.partial")
    with h5py.File(src_path, "r") as src, h5py.File(tmp, "w") as out:
        out.attrs.update(dict(src.attrs))
        for key in src:
            item = src[key]
            if key == "obs":
                write_elem(out, "obs", tile_obs(read_elem(item), copies))
            elif key == "X":
                _tile_matrix(item, out, "X", copies, square=False)
            elif key in ("layers", "obsm", "obsp"):
                g = out.create_group(key)
                g.attrs.update(dict(item.attrs))
                for name in item:
                    _tile_matrix(item[name], g, name, copies, square=key == "obsp")
            else:  # var, varm, varp, uns: not per cell
                src.copy(item, out, key)
    os.replace(tmp, dst_path)


def _tile_matrix(item, parent: h5py.Group, name: str, copies: int, square: bool) -> None:
    encoding = item.attrs.get("encoding-type", "array")
    if encoding == "csr_matrix":
        _tile_csr(item, parent, name, copies, square)
    elif isinstance(item, h5py.Dataset) and not square:
        _tile_rows(item, parent, name, copies)
    else:
        raise SystemExit(f"cannot tile {item.name} ({encoding}) of {item.file.filename}")


def _tree(f: h5py.File, group: str) -> list[str]:
    """The paths of every element under ``group`` (recursive), without the top group."""
    if group not in f:
        return []
    names: list[str] = []
    f[group].visit(names.append)
    return sorted(names)


def _layout(ds: h5py.Dataset) -> tuple:
    return (str(ds.dtype), ds.chunks, ds.compression)


def check_tiled(original: Path, tiled: Path, copies: int) -> list[str]:
    """Differences between a tiled file and its original other than the number of cells: the top
    keys, ``obs`` columns and dtypes, the keys (and per-cell shapes, dtypes, layouts) under
    ``obsm``, ``obsp``, ``layers``, ``var``, ``varm``, ``uns``; ``X``'s encoding, dtypes and layout. Empty: none."""
    from anndata.io import read_elem

    problems = []
    with h5py.File(original, "r") as a, h5py.File(tiled, "r") as b:
        if sorted(a) != sorted(b):
            problems.append(f"top keys {sorted(a)} != {sorted(b)}")
        obs_a, obs_b = read_elem(a["obs"]), read_elem(b["obs"])
        if list(obs_a.columns) != list(obs_b.columns) or not (obs_a.dtypes == obs_b.dtypes).all():
            problems.append("obs columns or dtypes differ")
        if len(obs_b) != len(obs_a) * copies or not obs_b.index.is_unique:
            problems.append(f"obs has {len(obs_b)} cells (want {len(obs_a) * copies}, unique names)")
        for group in ("obsm", "obsp", "layers", "var", "varm", "varp", "uns"):
            if _tree(a, group) != _tree(b, group):
                problems.append(f"{group} keys differ: {_tree(a, group)} != {_tree(b, group)}")
        if not read_elem(a["var"]).equals(read_elem(b["var"])):
            problems.append("var differs")
        if repr(read_elem(a["uns"])) != repr(read_elem(b["uns"])):
            problems.append("uns differs")
        for group in ("obsm",):
            for name in _tree(a, group):
                x, y = a[f"{group}/{name}"], b[f"{group}/{name}"]
                if isinstance(x, h5py.Dataset) and (x.shape[1:] != y.shape[1:] or _layout(x) != _layout(y)):
                    problems.append(f"{group}/{name}: {x.shape} {_layout(x)} -> {y.shape} {_layout(y)}")
        for path in ["X"] + [f"layers/{n}" for n in (a.get("layers", []))]:
            if path not in a:
                continue
            x, y = a[path], b[path]
            if dict(x.attrs)["encoding-type"] != dict(y.attrs)["encoding-type"]:
                problems.append(f"{path}: encoding differs")
            for key in ("data", "indices"):
                if _layout(x[key]) != _layout(y[key]):
                    problems.append(f"{path}/{key}: layout {_layout(x[key])} -> {_layout(y[key])}")
    return problems


def build_inputs(workdir: Path, cells: int, base_cells: int, seed: int) -> dict:
    """The tiled inputs in ``workdir/tiled`` (built once, reused); returns what was built and how long it took."""
    base, tiled = workdir / "base", workdir / "tiled"
    info_path = tiled / "inputs.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info["target_cells"] == cells and all((tiled / Path(rel).name).is_file() for rel in INPUTS.values()):
            info["reused"] = True
            return info
    t0 = time.perf_counter()
    workflow_s = build_base(base, base_cells, seed)
    with h5py.File(base / INPUTS["clustered"], "r") as f:
        n_base = int(f["X"].attrs["shape"][0])
    copies = math.ceil(cells / n_base)
    tiled.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    for rel in INPUTS.values():
        tile_file(base / rel, tiled / Path(rel).name, copies)
    tile_s = time.perf_counter() - t1
    problems = {rel: check_tiled(base / rel, tiled / Path(rel).name, copies) for rel in INPUTS.values()}
    if any(problems.values()):
        raise SystemExit(f"tiled files differ from their originals: {problems}")
    with h5py.File(tiled / "clustered.h5ad", "r") as f:
        nnz, ptr_dtype = int(f["X/data"].shape[0]), str(f["X/indptr"].dtype)
    config = yaml.safe_load((base / "config.yaml").read_text())
    info = {
        "target_cells": cells,
        "base_cells": n_base,
        "copies": copies,
        "cells": n_base * copies,
        "nnz": nnz,
        "X_indptr": ptr_dtype,
        "target_sum": config.get("cluster", {}).get("target_sum", 1e4),
        "workflow_s": workflow_s,
        "tile_s": tile_s,
        "build_s": time.perf_counter() - t0,
        "sizes_gb": {Path(rel).name: (tiled / Path(rel).name).stat().st_size / 1e9 for rel in INPUTS.values()},
        "base_sizes_gb": {Path(rel).name: (base / rel).stat().st_size / 1e9 for rel in INPUTS.values()},
    }
    info_path.write_text(json.dumps(info, indent=1))
    info["reused"] = False
    return info


# ---------------------------------------------------------------------------------------------
# 2. the runs

CHILD = r"""
import json, sys, time, types
code, clustered, calls, out, log, target_sum = sys.argv[1:7]
script = f"{code}/scripts/annotate_cohort.py"
snakemake = types.SimpleNamespace(
    scriptdir=f"{code}/scripts", threads=1, log=[log],
    input=types.SimpleNamespace(h5ad=clustered, calls=calls), output=types.SimpleNamespace(h5ad=out),
    params=types.SimpleNamespace(target_sum=json.loads(target_sum)))
with open(script) as handle:
    exec(compile(handle.read(), script, "exec"), {"snakemake": snakemake, "__name__": "__main__"})
import remnant.io.store
print(json.dumps({"store": remnant.io.store.__file__}))
"""


def extract(rev: str, into: Path) -> tuple[Path, str]:
    """``src/remnant`` and ``scripts/annotate_cohort.py`` of ``rev`` under ``into/<commit>``; returns the tree and the commit."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = into / commit
    if not (tree / "scripts/annotate_cohort.py").is_file():
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src/remnant", "scripts/annotate_cohort.py"],
            capture_output=True,
            check=True,
        ).stdout
        tree.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    return tree, commit


def measure(tree: Path, inputs: Path, out_dir: Path, label: str, target_sum, keep: bool) -> dict:
    """One run of the version in ``tree`` in a fresh process (one thread; the caller's CPU affinity)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out, log = out_dir / f"cohort_{label}.h5ad", out_dir / f"annotate_cohort_{label}.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        str(tree),
        str(inputs / "clustered.h5ad"),
        str(inputs / "lesion_calls.h5ad"),
        str(out),
        str(log),
        json.dumps(target_sum),
    ]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out_dir)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(
            f"{label} failed ({result.returncode}):\n{result.stderr[-3000:]}\n{log.read_text()[-3000:] if log.exists() else ''}"
        )
    store = json.loads(result.stdout.strip().splitlines()[-1])["store"]
    if not Path(store).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{label} imported {store}, not the code of {tree}")
    lines = log.read_text().splitlines()
    usage = DONE_USAGE.search(lines[-1])
    call = [float(m[1]) for line in lines if (m := CALL_SECONDS.search(line))]
    row = {
        "peak_mb": float(usage["peak_mb"]),
        "wall_s": wall,
        "cpu_s": float(usage["cpu_s"]),
        "call_s": call[-1] if call else float("nan"),
        "output_gb": out.stat().st_size / 1e9,
    }
    if not keep:
        out.unlink()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "dir", type=Path, help="inputs are built here once (base/, tiled/) and reused; runs write into runs/"
    )
    ap.add_argument("--cells", type=int, default=1_000_000, help="tile to at least this many cells")
    ap.add_argument("--base-cells", type=int, default=50_000, help="cells of the simulated cohort the workflow runs on")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2, help="runs of each version")
    ap.add_argument(
        "--before", default="48e765c", help="code before the change (default: the commit before e92ac2f's series)"
    )
    ap.add_argument("--after", default="HEAD")
    ap.add_argument(
        "--keep-outputs", action="store_true", help="keep each run's cohort.h5ad (default: delete after measuring)"
    )
    args = ap.parse_args()
    workdir = args.dir.resolve()
    started = time.perf_counter()
    info = build_inputs(workdir, args.cells, args.base_cells, args.seed)
    workflow = "run before" if math.isnan(info["workflow_s"]) else f"{info['workflow_s']:.0f} s"
    print(
        f"inputs ({'reused' if info['reused'] else 'built'}): {info['base_cells']:,} cells from the workflow "
        f"(up to call_lesions: {workflow}) x {info['copies']} copies = {info['cells']:,} cells, "
        f"{info['nnz']:,} stored counts ({info['nnz'] / info['cells']:.0f} per cell), X indptr {info['X_indptr']}; "
        f"tiling {info['tile_s']:.0f} s; "
        + ", ".join(f"{k} {v:.2f} GB" for k, v in info["sizes_gb"].items())
        + "; tiled files have the original's keys (obs columns, obsm, obsp, var, uns, layers)",
        flush=True,
    )
    versions = [("before", *extract(args.before, workdir / "code")), ("after", *extract(args.after, workdir / "code"))]
    rows = []
    for i in range(args.runs):
        for version, tree, commit in versions:
            row = measure(
                tree, workdir / "tiled", workdir / "runs", f"{version}_{i + 1}", info["target_sum"], args.keep_outputs
            )
            rows.append({"version": f"{version} ({commit})", "run": i + 1, "cells": info["cells"], **row})
            print(
                "  "
                + ", ".join(f"{k} {v}" if isinstance(v, (str, int)) else f"{k} {v:.2f}" for k, v in rows[-1].items()),
                flush=True,
            )
    table = pd.DataFrame(rows)
    shown = table.rename(
        columns={
            "peak_mb": "peak MB",
            "wall_s": "wall s",
            "cpu_s": "CPU s",
            "call_s": "call s",
            "output_gb": "output GB",
        }
    )
    print(
        "\nannotate_cohort, one process per run (peak and CPU: the job log's 'done' line, VmHWM; wall: the process, "
        "start-up included; call: annotate_with_calls alone)"
    )
    print(
        shown.to_string(
            index=False,
            formatters={
                "cells": "{:,}".format,
                "peak MB": "{:.0f}".format,
                "wall s": "{:.1f}".format,
                "CPU s": "{:.1f}".format,
                "call s": "{:.1f}".format,
                "output GB": "{:.2f}".format,
            },
        )
    )
    means = table.groupby(table["version"].str.split().str[0])[
        ["peak_mb", "wall_s", "cpu_s", "call_s", "output_gb"]
    ].mean()
    ratio = means.loc["after"] / means.loc["before"]
    print("after/before (means): " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
    print(
        f"peak after within 10% of before: {'yes' if ratio['peak_mb'] <= 1.10 else 'NO'} "
        f"({means.loc['after', 'peak_mb']:.0f} vs {means.loc['before', 'peak_mb']:.0f} MB, limit "
        f"{1.10 * means.loc['before', 'peak_mb']:.0f} MB)"
    )
    print(f"this invocation: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
