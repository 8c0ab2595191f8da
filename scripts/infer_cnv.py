"""Rule infer_cnv: genome-wide copy-number profile per cell, lesion profiles and breakpoints per patient."""
import sys  # noqa: I001

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from remnant.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.cnv_profile import estimate_breakpoints, infer_profile, lesion_profile  # noqa: E402
from remnant.errors import InputError  # noqa: E402
from remnant.lesions import parse_lesions  # noqa: E402

with logged(snakemake.log[0], "infer_cnv") as log:
    params = snakemake.params
    cytobands = load_cytobands(snakemake.input.cytobands)
    lesions = parse_lesions(params.lesions, cytobands, chromosome_arms(cytobands))
    adata = ad.read_h5ad(snakemake.input.h5ad)
    calls = pd.read_csv(snakemake.input.calls, sep="\t", index_col="cell", low_memory=False)
    columns = ["reference"] + [f"{lesion.name}_{k}" for lesion in lesions for k in ("posterior", "call")]
    missing = [c for c in columns if c not in calls.columns]
    if missing:
        raise InputError(f"lesion call table lacks column(s) {missing}; rerun call_lesions.", path=snakemake.input.calls)
    absent = ~adata.obs_names.isin(calls.index)
    if absent.any():
        raise InputError(f"{int(absent.sum())} cells of the cohort have no lesion call (e.g. {adata.obs_names[absent][0]!r}); "
                         "rerun call_lesions.", path=snakemake.input.calls)
    for column in columns:  # joined on the cell index
        adata.obs[column] = calls.loc[adata.obs_names, column].to_numpy()
    log.info("%d cells, %d reference cells", adata.n_obs, int(adata.obs["reference"].sum()))

    profile, bp = params.profile, params.breakpoints
    infer_profile(adata, "reference", window_size=profile["window_size"], step=profile["step"], min_mean=profile["min_mean"],
                  min_reference_cells=profile["min_reference_cells"], n_jobs=snakemake.threads)
    breakpoints, profiles = [], []
    for lesion in lesions:
        table = estimate_breakpoints(adata, lesion, reference_mask="reference", cytobands=cytobands, min_cells=bp["min_cells"],
                                     min_expected=bp["min_expected"], n_boot=bp["n_boot"], ci=bp["ci"],
                                     shrinkage=params.shrinkage, seed=params.seed)
        breakpoints.append(table.reset_index())
        for patient, row in table.iterrows():
            log.info("%s %s: %s", lesion.name, patient, row["reason"] or
                     f"{row['start']:.0f}-{row['end']:.0f} ({row['start_band']}-{row['end_band']}), ratio {row['ratio']:.2f}")
        profiles.append(lesion_profile(adata, lesion, reference_mask="reference", min_expected=bp["min_expected"],
                                       smooth_genes=bp["smooth_genes"], shrinkage=params.shrinkage))
    pd.concat(breakpoints, ignore_index=True).to_csv(snakemake.output.breakpoints, sep="\t", index=False, float_format="%.6g")
    pd.concat(profiles, ignore_index=True).to_csv(snakemake.output.profiles, sep="\t", index=False, float_format="%.6g", compression={"method": "gzip", "mtime": 0})
    # the profile without the gene matrix (that stays in clustered.h5ad): obs with the calls, the
    # cells x windows profile, the UMAP, and the window table
    obsm = {k: adata.obsm[k] for k in ("X_cnv", "X_umap") if k in adata.obsm}
    ad.AnnData(obs=adata.obs, obsm=obsm, uns={"cnv": adata.uns["cnv"]}).write_h5ad(snakemake.output.h5ad, compression="gzip")
