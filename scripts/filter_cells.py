"""Rule filter_cells: QC metrics, thresholds and doublets for one sample."""

import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402

from remnant.pl.qc import plot_qc  # noqa: E402
from remnant.workflow.qc import flag_cells, require_passing_cells  # noqa: E402

sample = snakemake.wildcards.sample
with logged(snakemake.log[0], f"filter_cells {sample}") as log:
    adata = ad.read_h5ad(snakemake.input[0])
    qc = snakemake.params.qc
    flag_cells(adata, qc, score_doublets_for=snakemake.params.technology == "droplet", seed=snakemake.params.seed)
    plot_qc(
        adata,
        snakemake.output.figure,
        title=sample,
        unscored="doublets not scored\n(plate sample, or qc.doublets disabled)",
    )
    columns = [
        "barcode",
        "sample",
        "technology",
        "total_counts",
        "n_genes_by_counts",
        "pct_counts_mt",
        "doublet_score",
        "predicted_doublet",
        "qc_pass",
        "qc_reason",
    ] + [c for c in adata.obs if c.startswith("qc_fail_")]
    adata.obs[columns].to_csv(
        snakemake.output.cells,
        sep="\t",
        index_label="cell",
        float_format="%.6g",
        compression={"method": "gzip", "mtime": 0},
    )
    require_passing_cells(adata, qc["min_cells"], sample=sample, log_path=snakemake.log[0])
    filtered = adata[adata.obs["qc_pass"].to_numpy()].copy()
    filtered.write_h5ad(snakemake.output.h5ad, compression="gzip")
    log.info("kept %d of %d cells", filtered.n_obs, adata.n_obs)
