"""Rule infer_cnv: genome-wide copy-number profile per cell, lesion profiles and breakpoints per patient.

The cohort's counts are read from clustered.h5ad a block of cells at a time (issue 8): one pass
over the reference cells and one over all cells for the profile, which goes block by block into
profile.h5ad, and one pass for the per-patient sums of the lesion profiles and breakpoints.
"""

import sys  # noqa: I001
import time

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's library, also in conda envs
from remnant.workflow.runlog import logged, start

start(snakemake.threads)

import anndata as ad  # noqa: E402
import h5py  # noqa: E402
import pandas as pd  # noqa: E402

from remnant.errors import InputError  # noqa: E402
from remnant.io import store  # noqa: E402
from remnant.io.annotation import chromosome_arms, load_cytobands  # noqa: E402
from remnant.tl.lesions import parse_lesions  # noqa: E402
from remnant.tl.profile import estimate_breakpoints, lesion_profile, lesion_sums, write_profile  # noqa: E402

with logged(snakemake.log[0], "infer_cnv") as log:
    params = snakemake.params
    cytobands = load_cytobands(snakemake.input.cytobands)
    lesions = parse_lesions(params.lesions, cytobands, chromosome_arms(cytobands))
    path = snakemake.input.h5ad
    obs, var = store.read_obs(path), store.read_var(path)
    # raw counts in X (cluster_cells since issue 8); files written before keep them in layers/counts
    with h5py.File(path, "r") as f:
        layer = "counts" if "layers/counts" in f else None
    columns = ["reference"] + [f"{lesion.name}_{k}" for lesion in lesions for k in ("posterior", "call")]
    header = pd.read_csv(snakemake.input.calls, sep="\t", nrows=0).columns
    missing = [c for c in ["cell", *columns] if c not in header]
    if missing:
        raise InputError(
            f"lesion call table lacks column(s) {missing}; rerun call_lesions.", path=snakemake.input.calls
        )
    # only the columns used: the table has a row per cell
    calls = pd.read_csv(snakemake.input.calls, sep="\t", index_col="cell", usecols=["cell", *columns], low_memory=False)
    absent = ~obs.index.isin(calls.index)
    if absent.any():
        raise InputError(
            f"{int(absent.sum())} cells of the cohort have no lesion call (e.g. {obs.index[absent][0]!r}); "
            "rerun call_lesions.",
            path=snakemake.input.calls,
        )
    for column in columns:  # joined on the cell index
        obs[column] = calls.loc[obs.index, column].to_numpy()
    # obs and var only: the counts stay in the file and are read a block at a time
    cohort = ad.AnnData(obs=obs, var=var)
    log.info(
        "%d cells, %d reference cells; counts in %s",
        cohort.n_obs,
        int(obs["reference"].sum()),
        f"layers/{layer}" if layer else "X",
    )

    # the profile without the gene matrix (that stays in clustered.h5ad): obs with the calls, the
    # cells x windows profile (written block by block), the UMAP, and the window table
    umap = store.read_key(path, "obsm/X_umap")
    profile, bp = params.profile, params.breakpoints
    write_profile(
        cohort,
        "reference",
        snakemake.output.h5ad,
        obsm={} if umap is None else {"X_umap": umap},
        layer=layer,
        counts=path,
        window_size=profile["window_size"],
        step=profile["step"],
        min_mean=profile["min_mean"],
        min_reference_cells=profile["min_reference_cells"],
        n_jobs=snakemake.threads,
    )
    t0 = time.perf_counter()
    sums = lesion_sums(cohort, lesions, reference_mask="reference", layer=layer, counts=path)
    log.info("lesion sums (one pass over the counts): %.1f s", time.perf_counter() - t0)
    breakpoints, profiles = [], []
    for lesion in lesions:
        table = estimate_breakpoints(
            cohort,
            lesion,
            reference_mask="reference",
            sums=sums[lesion.name],
            cytobands=cytobands,
            min_cells=bp["min_cells"],
            min_expected=bp["min_expected"],
            n_boot=bp["n_boot"],
            ci=bp["ci"],
            shrinkage=params.shrinkage,
            seed=params.seed,
        )
        breakpoints.append(table.reset_index())
        for patient, row in table.iterrows():
            log.info(
                "%s %s: %s",
                lesion.name,
                patient,
                row["reason"]
                or f"{row['start']:.0f}-{row['end']:.0f} ({row['start_band']}-{row['end_band']}), ratio {row['ratio']:.2f}",
            )
        profiles.append(
            lesion_profile(
                cohort,
                lesion,
                reference_mask="reference",
                sums=sums[lesion.name],
                min_expected=bp["min_expected"],
                smooth_genes=bp["smooth_genes"],
                shrinkage=params.shrinkage,
            )
        )
    pd.concat(breakpoints, ignore_index=True).to_csv(
        snakemake.output.breakpoints, sep="\t", index=False, float_format="%.6g"
    )
    # one table per patient (a patient without cells passing QC gets the header only), so each
    # plot job reads its patient's rows, not the cohort's
    profiles = pd.concat(profiles, ignore_index=True)
    by_patient = dict(tuple(profiles.groupby(profiles["patient"].astype(str), sort=False)))
    for patient, path in zip(snakemake.params.patients, snakemake.output.profiles, strict=True):
        by_patient.get(patient, profiles.iloc[:0]).to_csv(
            path, sep="\t", index=False, float_format="%.6g", compression=store.TABLE_GZIP
        )
