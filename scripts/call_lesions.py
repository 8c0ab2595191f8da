"""Rule call_lesions: per-cell posterior of each configured lesion, per-sample summary."""
import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from remnant.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.errors import InputError  # noqa: E402
from remnant.lesions import call_lesions, parse_lesions  # noqa: E402

with logged(snakemake.log[0], "call_lesions") as log:
    params = snakemake.params
    cytobands = load_cytobands(snakemake.input.cytobands)
    lesions = parse_lesions(params.lesions, cytobands, chromosome_arms(cytobands))
    adata = ad.read_h5ad(snakemake.input.h5ad)
    reference = adata.obs["condition"].astype(str).isin(params.reference_conditions).to_numpy()
    if not reference.any():
        raise InputError(
            f"no reference cells: no cell passing QC comes from a donor of condition {params.reference_conditions} "
            "(conditions.reference in the config); add healthy-donor samples to the sheet.",
            where="call_lesions",
        )
    log.info("%d cells, %d reference cells; lesions %s", adata.n_obs, int(reference.sum()), [l.name for l in lesions])
    c = params.cnv
    call_lesions(adata, lesions, reference_mask=reference, posterior_cutoff=c["posterior_cutoff"], n_folds=c["n_folds"],
                 min_mean=c["min_mean"], shrinkage=c["shrinkage"], seed=params.seed)
    columns = ["barcode", "sample", "patient", "timepoint", "population", "condition", "hspc_state"]
    for lesion in lesions:
        columns += [f"{lesion.name}_{k}" for k in ("posterior", "llr", "call", "n_genes")]
    table = adata.obs[columns].copy()
    table["reference"] = reference
    table.to_csv(snakemake.output.cells, sep="\t", index_label="cell", float_format="%.6g")
    summaries = []
    for lesion in lesions:
        info = adata.uns["lesions"][lesion.name]
        summary = info["per_sample"].reset_index().assign(lesion=lesion.name, genes_used=len(info["genes"]),
                                                          temperature=info["temperature"])
        summaries.append(summary)
        log.info("%s: %d genes, temperature %.3f, reference FPR %.4f", lesion.name, len(info["genes"]),
                 info["temperature"], info["reference_fpr"])
    pd.concat(summaries, ignore_index=True).to_csv(snakemake.output.samples, sep="\t", index=False, float_format="%.6g")
