"""The copy-number view's workflow steps (rules/cnv.smk): infer_cnv, plot_cnv and plot_lesion_profile.

Each function is one rule's work on plain values and paths; its script unpacks Snakemake's
input, params and output and calls it inside :func:`remnant.workflow.runlog.logged`. The analysis
is :mod:`remnant.tl.profile`, :mod:`remnant.tl.breakpoints` and :mod:`remnant.pl.cnv`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence

import anndata as ad
import h5py
import pandas as pd

from remnant.errors import InputError
from remnant.io import store
from remnant.io.annotation import chromosome_arms, load_cytobands
from remnant.pl.cnv import plot_lesion_profile, plot_message, plot_patient_heatmap
from remnant.tl.breakpoints import estimate_breakpoints, lesion_profile, lesion_sums
from remnant.tl.lesions import parse_lesions
from remnant.tl.profile import write_profile
from remnant.workflow.lesions import depth_options

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


def infer_cnv(
    h5ad: PathLike,
    calls: PathLike,
    cytobands: PathLike,
    *,
    lesions: Sequence[Mapping] | None,
    profile: Mapping,
    breakpoints: Mapping,
    depth: Mapping,
    shrinkage: float,
    seed: int,
    patients: Sequence[str],
    out_h5ad: PathLike,
    out_breakpoints: PathLike,
    out_profiles: Sequence[PathLike],
    n_jobs: int = 1,
) -> None:
    """Rule infer_cnv: the genome-wide profile per cell, each patient's breakpoints and lesion profiles.

    The cohort's counts are read from ``h5ad`` (clustered.h5ad) a block of cells at a time (issue
    8): one pass over the reference cells and one over all cells for the profile, which goes block
    by block into ``out_h5ad`` (profile.h5ad: obs with the calls, the cells x windows profile, the
    UMAP and the window table, no gene matrix), and two passes for the per-patient sums of the
    lesion profiles and breakpoints.

    Parameters
    ----------
    calls
        The lesion call table (lesion_calls.tsv.gz): ``cell``, ``reference`` and each lesion's
        ``<name>_posterior`` and ``<name>_call``.
    lesions, profile, breakpoints, depth, shrinkage, seed
        Config: ``lesions``, ``cnv.profile``, ``cnv.breakpoints``, ``cnv.depth`` (the genes left out of
        each cell's depth, as for the calls), ``cnv.shrinkage``, ``seed``.
    patients
        Every patient of the sample sheet, one table of ``out_profiles`` each (in this order).
    out_breakpoints
        TSV of every lesion's :func:`~remnant.tl.breakpoints.estimate_breakpoints` rows.
    out_profiles
        gzip TSV per patient of :func:`~remnant.tl.breakpoints.lesion_profile` rows (the header
        only for a patient without cells passing QC), so each plot job reads its own patient's rows.
    n_jobs
        Processes computing the profile (the job's threads).
    """
    bands = load_cytobands(cytobands)
    parsed = parse_lesions(lesions, bands, chromosome_arms(bands))
    cohort, layer = _cohort_with_calls(h5ad, calls, parsed)
    umap = store.read_key(h5ad, "obsm/X_umap")
    write_profile(
        cohort,
        "reference",
        out_h5ad,
        obsm={} if umap is None else {"X_umap": umap},
        layer=layer,
        counts=h5ad,
        window_size=profile["window_size"],
        step=profile["step"],
        min_mean=profile["min_mean"],
        min_reference_cells=profile["min_reference_cells"],
        n_jobs=n_jobs,
    )
    t0 = time.perf_counter()
    sums = lesion_sums(
        cohort, parsed, reference="reference", layer=layer, counts=h5ad, depth_genes=depth_options(depth)
    )
    log.info("lesion sums (two passes over the counts): %.1f s", time.perf_counter() - t0)
    tables, profiles = [], []
    for lesion in parsed:
        table = estimate_breakpoints(
            cohort,
            lesion,
            reference="reference",
            sums=sums[lesion.name],
            cytobands=bands,
            min_cells=breakpoints["min_cells"],
            min_expected=breakpoints["min_expected"],
            n_boot=breakpoints["n_boot"],
            ci=breakpoints["ci"],
            shrinkage=shrinkage,
            seed=seed,
        )
        tables.append(table.reset_index())
        _log_breakpoints(lesion.name, table)
        profiles.append(
            lesion_profile(
                cohort,
                lesion,
                reference="reference",
                sums=sums[lesion.name],
                min_expected=breakpoints["min_expected"],
                smooth_genes=breakpoints["smooth_genes"],
                shrinkage=shrinkage,
            )
        )
    pd.concat(tables, ignore_index=True).to_csv(out_breakpoints, sep="\t", index=False, float_format="%.6g")
    _write_patient_profiles(pd.concat(profiles, ignore_index=True), patients, out_profiles)


def _cohort_with_calls(h5ad: PathLike, calls: PathLike, lesions) -> tuple[ad.AnnData, str | None]:
    """The cohort's obs (with ``reference`` and each lesion's posterior and call joined on the cell
    index) and var, without the counts, which stay in ``h5ad`` to be read a block at a time; and
    where the counts are (``"counts"``: ``layers/counts``, ``None``: ``X``)."""
    obs, var = store.read_obs(h5ad), store.read_var(h5ad)
    # raw counts in X (cluster_cells since issue 8); files written before keep them in layers/counts
    with h5py.File(h5ad, "r") as f:
        layer = "counts" if "layers/counts" in f else None
    columns = ["reference"] + [f"{lesion.name}_{k}" for lesion in lesions for k in ("posterior", "call")]
    header = pd.read_csv(calls, sep="\t", nrows=0).columns
    missing = [c for c in ["cell", *columns] if c not in header]
    if missing:
        raise InputError(f"lesion call table lacks column(s) {missing}; rerun call_lesions.", path=calls)
    # only the columns used: the table has a row per cell
    table = pd.read_csv(calls, sep="\t", index_col="cell", usecols=["cell", *columns], low_memory=False)
    absent = ~obs.index.isin(table.index)
    if absent.any():
        raise InputError(
            f"{int(absent.sum())} cells of the cohort have no lesion call (e.g. {obs.index[absent][0]!r}); "
            "rerun call_lesions.",
            path=calls,
        )
    for column in columns:  # joined on the cell index
        obs[column] = table.loc[obs.index, column].to_numpy()
    cohort = ad.AnnData(obs=obs, var=var)
    log.info(
        "%d cells, %d reference cells; counts in %s",
        cohort.n_obs,
        int(obs["reference"].sum()),
        f"layers/{layer}" if layer else "X",
    )
    return cohort, layer


def _log_breakpoints(name: str, table: pd.DataFrame) -> None:
    """One log line per patient: its breakpoints, or why there are none."""
    for patient, row in table.iterrows():
        log.info(
            "%s %s: %s",
            name,
            patient,
            row["reason"]
            or f"{row['start']:.0f}-{row['end']:.0f} ({row['start_band']}-{row['end_band']}), ratio {row['ratio']:.2f}",
        )


def _write_patient_profiles(profiles: pd.DataFrame, patients: Sequence[str], paths: Sequence[PathLike]) -> None:
    """One table per patient (a patient without cells passing QC gets the header only), so each
    plot job reads its patient's rows, not the cohort's."""
    by_patient = dict(tuple(profiles.groupby(profiles["patient"].astype(str), sort=False)))
    for patient, path in zip(patients, paths, strict=True):
        by_patient.get(patient, profiles.iloc[:0]).to_csv(
            path, sep="\t", index=False, float_format="%.6g", compression=store.TABLE_GZIP
        )


def plot_cnv(
    h5ad: PathLike,
    cytobands: PathLike,
    patient: str,
    out: PathLike,
    *,
    lesions: Sequence[Mapping] | None,
    heatmap: Mapping,
    seed: int,
) -> None:
    """Rule plot_cnv: the chromosome-ordered copy-number heatmap of one patient (PNG ``out``).

    Reads obs and the window table of ``h5ad`` (profile.h5ad), then only the profile rows it draws
    (the patient's shown cells and a sample of reference cells), not the cohort's cells x windows
    matrix. ``heatmap``: config ``cnv.heatmap`` (``max_cells``, ``n_reference_cells``). A patient
    without cells passing QC gets a figure saying so (and a warning).
    """
    bands = load_cytobands(cytobands)
    parsed = parse_lesions(lesions, bands, chromosome_arms(bands))
    info = store.read_key(h5ad, "uns/cnv")
    if info is None:
        raise InputError("has no uns['cnv'] (the window table); rerun infer_cnv.", path=h5ad)
    call_keys = [f"{lesion.name}_call" for lesion in parsed]
    # only the columns drawn: the obs of a million cells is read by each of the per-patient jobs
    columns = ["patient", "population", "timepoint", "reference", *call_keys]
    adata = ad.AnnData(obs=store.read_obs(h5ad, columns=columns), uns={"cnv": info})
    if patient not in set(adata.obs["patient"].astype(str)):
        log.warning("no cell of patient %s passed QC", patient)
        plot_message(out, f"Patient {patient}: no cell passed quality control.")
        return
    try:
        plot_patient_heatmap(
            adata,
            patient,
            out,
            call_key=call_keys,
            lesions=parsed,
            max_cells=heatmap["max_cells"],
            n_reference_cells=heatmap["n_reference_cells"],
            seed=seed,
            profile=h5ad,
        )
    except InputError as err:
        if err.path != str(h5ad) or "rerun" in err.detail:
            raise
        # the library names its own function; the step to rerun is the workflow's
        raise InputError(f"{err.detail.rstrip('.')}; rerun infer_cnv.", path=err.path, where=err.where) from err


def plot_lesion(
    profile: PathLike,
    breakpoints: PathLike,
    cytobands: PathLike,
    patient: str,
    lesion: str,
    out: PathLike,
    *,
    lesions: Sequence[Mapping] | None,
) -> None:
    """Rule plot_lesion_profile: lesion ``lesion``'s chromosome in one patient's called vs uncalled
    cells (PNG ``out``), from the patient's table of infer_cnv (``profile``) and ``breakpoints``.
    A patient without cells passing QC gets a figure saying so (and a warning)."""
    bands = load_cytobands(cytobands)
    (parsed,) = [x for x in parse_lesions(lesions, bands, chromosome_arms(bands)) if x.name == lesion]
    # patient names stay strings (a patient "01" is not the number 1)
    table = pd.read_csv(profile, sep="\t", dtype={"patient": str, "gene": str, "gene_name": str})
    bp = pd.read_csv(breakpoints, sep="\t", dtype={"patient": str, "reason": str})
    bp["reason"] = bp["reason"].fillna("")
    bp = bp[bp["lesion"] == lesion].set_index("patient")
    mine = table[table["lesion"] == lesion]  # the table is this patient's (infer_cnv writes one per patient)
    if mine.empty:
        log.warning("no cell of patient %s passed QC", patient)
        plot_message(out, f"Patient {patient}: no cell passed quality control.")
        return
    plot_lesion_profile(mine, parsed, out, patient=patient, breakpoints=bp, cytobands=bands)


def plot_alleles(
    phase: PathLike, cytobands: PathLike, lesion: str, out: PathLike, *, lesions: Sequence[Mapping] | None
) -> None:
    """Rule plot_allele_balance: the B-allele picture of lesion ``lesion`` (PNG ``out``), one panel per
    patient, from the phased sites call_lesions wrote (``phase``: results/cnv/phased_sites.tsv)."""
    from remnant.pl.alleles import plot_allele_balance

    bands = load_cytobands(cytobands)
    (parsed,) = [x for x in parse_lesions(lesions, bands, chromosome_arms(bands)) if x.name == lesion]
    table = pd.read_csv(phase, sep="\t", dtype={"patient": str, "site_id": str, "gene": str, "chromosome": str})
    mine = table[table["lesion"] == lesion]
    log.info("%s: %d phased sites of %d patients", lesion, len(mine), mine["patient"].nunique())
    plot_allele_balance(mine, parsed, str(out))
