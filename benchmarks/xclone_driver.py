"""XClone's RDR + BAF + combine run on one data folder; run by ``benchmarks/xclone_compare.py`` with the
Python of XClone's own virtual environment (``benchmarks/.venv-xclone``), never with remnant's.

Reads the folder ``xclone_compare.py`` writes, in the layouts XClone's loader reads
(:func:`xclone.pp.load_Xdata`, genome mode ``hg38_genes``: one row per gene of XClone's own annotation,
33,472 rows, in its order):

- ``rdr/matrix.mtx`` (genes x cells, UMI counts), ``rdr/barcodes.tsv``;
- ``baf/xcltk.AD.mtx`` and ``baf/xcltk.DP.mtx`` (genes x cells: reads of haplotype A and all allele
  reads over the gene's phased heterozygous SNPs, what xcltk writes after reference phasing),
  ``baf/xcltk.samples.tsv``;
- ``cells.csv``: ``barcodes,cell_type`` (``cell_type`` of the reference cells: ``reference``).

Runs ``xclone.model.run_RDR``, ``run_BAF`` and ``run_combine`` with their default settings except:
no plots, chrX and chrY left out (``exclude_XY``), ``update_info_from_rdr`` off in the BAF module (see :func:`config`), ``bin_nproc`` and ``HMM_nproc`` set to ``--nproc`` (defaults 20 and 40, on a 2-core machine),
and writes to ``--out``:

- ``result.npz``: ``barcodes`` (cells), ``gene_id``, ``chrom``, ``start``, ``stop`` (genes of chr5 kept
  by XClone) and ``loss`` (float32 cells x genes: the combined P(copy loss), XClone's
  ``plot_prob_merge1`` state 0), ``loss_rdr`` (RDR module's P(copy loss), state 0 of its
  ``posterior_mtx``, on the same genes, NaN where the RDR module dropped the gene) and ``log_ratio``
  (the RDR module's log expression ratio to its adaptive reference baseline, ``log_ratio_ab``, before
  its smoothing, denoising and HMM: a diagnostic of what its input carries);
- ``timing.json``: seconds of each module and their sum (data loading apart).

Run: ``benchmarks/.venv-xclone/bin/python benchmarks/xclone_driver.py DATA_DIR --out OUT_DIR``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def load(data: Path):
    """XClone's RDR and BAF AnnData from the folder (its own loader, hg38_genes annotation)."""
    import xclone

    rdr_cfg = xclone.PreprocessingConfig(module="RDR", rdr_data_dir=str(data / "rdr") + "/")
    rdr_cfg.cell_anno_file = str(data / "cells.csv")
    baf_cfg = xclone.PreprocessingConfig(module="BAF", baf_data_dir=str(data / "baf") + "/")
    baf_cfg.cell_anno_file = str(data / "cells.csv")
    rdr = xclone.pp.load_Xdata(module="RDR", config_file=rdr_cfg)
    baf = xclone.pp.load_Xdata(module="BAF", config_file=baf_cfg)
    return rdr, baf


def config(module: str, out: Path, nproc: int, filter_ref_ave: float | None = None):
    """XClone's default configuration of a module, without plots, on ``nproc`` processes."""
    import xclone

    cfg = xclone.XCloneConfig(dataset_name="remnant_sim", module=module)
    cfg.outdir = str(out) + "/"
    cfg.cell_anno_key = "cell_type"
    cfg.ref_celltype = "reference"
    cfg.xclone_plot = False
    # the RDR module's gene filter can drop chrY (few expressed genes, female donors) while the BAF module
    # keeps every chromosome of the annotation, and the combine module then stops ("chr nums of the two
    # Xdata are not matched"): XClone's own switch leaves X and Y out of all three modules (5q unaffected)
    cfg.exclude_XY = True
    if module == "RDR" and filter_ref_ave is not None:
        cfg.filter_ref_ave = filter_ref_ave
    if module == "BAF":
        # XClone 0.4.0's default RDR module (the Gaussian one) stores no expression KNN graph, which the
        # BAF module's default (update_info_from_rdr) reads ("KeyError: 'connectivities'"): the BAF
        # module builds its own KNN graph instead, XClone's documented alternative
        cfg.update_info_from_rdr = False
        cfg.bin_nproc = nproc
        cfg.HMM_nproc = nproc
    return cfg


def run(rdr, baf, out: Path, nproc: int, filter_ref_ave: float | None = None) -> tuple:
    """The three modules, timed; returns (combined AnnData, RDR AnnData, seconds per module)."""
    import xclone

    sec = {}
    t0 = time.perf_counter()
    rdr_x = xclone.model.run_RDR(rdr, config_file=config("RDR", out, nproc, filter_ref_ave))
    sec["rdr"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    baf_x = xclone.model.run_BAF(baf, config_file=config("BAF", out, nproc))
    sec["baf"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    combined = xclone.model.run_combine(rdr_x, baf_x, config_file=config("Combine", out, nproc))
    sec["combine"] = time.perf_counter() - t0
    sec["total"] = sec["rdr"] + sec["baf"] + sec["combine"]
    return combined, rdr_x, sec


def save(combined, rdr_x, out: Path) -> None:
    """chr5's per-cell, per-gene P(copy loss) of the combined and the RDR-only calls (module docstring)."""
    var = combined.var
    on5 = (var["chr"].astype(str) == "5").to_numpy()
    loss = np.asarray(combined.layers["plot_prob_merge1"][:, on5, 0], dtype=np.float32)
    rdr_loss = np.full(loss.shape, np.nan, np.float32)
    rdr_pos = rdr_x.var_names.get_indexer(var.index[on5])
    cell_pos = rdr_x.obs_names.get_indexer(combined.obs_names)
    ok = rdr_pos >= 0
    post = np.asarray(rdr_x.layers["posterior_mtx"])
    rdr_loss[:, ok] = post[np.ix_(cell_pos, rdr_pos[ok], [0])][:, :, 0]
    np.savez(
        out / "result.npz",
        barcodes=np.asarray(combined.obs_names, dtype=str),
        gene_id=np.asarray(var["GeneID"], dtype=str)[on5],
        chrom=np.asarray(var["chr"], dtype=str)[on5],
        start=var["start"].to_numpy(np.int64)[on5],
        stop=var["stop"].to_numpy(np.int64)[on5],
        loss=loss,
        loss_rdr=rdr_loss,
        log_ratio=np.asarray(combined.layers["log_ratio_ab"][:, on5], dtype=np.float32),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--filter-ref-ave", type=float, help="the RDR module's filter_ref_ave (XClone's default 0.5)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rdr, baf = load(args.data)
    combined, rdr_x, sec = run(rdr, baf, args.out, args.nproc, args.filter_ref_ave)
    save(combined, rdr_x, args.out)
    (args.out / "timing.json").write_text(json.dumps(sec))


if __name__ == "__main__":
    main()
