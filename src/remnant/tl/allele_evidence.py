"""Allele evidence added to the expression calls: phase each patient's lesion sites, score each cell,
one joint posterior (issue 18).

:func:`add_allele_evidence` runs after :func:`remnant.tl.call_lesions` on the same cells. Per lesion
and patient it takes the SNPs inside the patient's interval (the refined one where the expression
step refined it, else the configured one), learns which allele of each lies on the changed haplotype
from the patient's own cells (:func:`remnant.tl.phase_sites`, started from the expression posteriors:
a diagnosis sample of nearly all carriers phases at once; EM otherwise), scores every cell of the
patient (:func:`remnant.tl.allele_llr`) and adds the allele LLR to the expression posterior's logit.
Given the carrier state, a cell's expression counts and its allele reads are independent, so the
LLRs add (:func:`remnant.tl.combine`).

Before anything else, each person's reads at the sites it is likely homozygous at are set aside
(:func:`remnant.tl.heterozygous_sites`; sites a given phase names for the person are kept): the model
takes every site as heterozygous, and counts at a common-SNP list are mostly not. On heterozygous sites
only nothing changes (their fitted share is ~1 and every site is kept). ``allele_params`` records
``het_fraction`` (the fitted share, NaN where not measured) and ``het_sites_kept`` per person.

Cells without allele reads keep their expression posterior exactly (an LLR of 0). So do patients
whose cells are all reference cells: healthy donors carry no lesion to phase, and phasing them
would only fit noise. Without allele data nothing here runs and the calls are those of
:func:`remnant.tl.call_lesions`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logit

from remnant.errors import InputError
from remnant.tl.alleles import (
    MIN_BURST_PAIRS,
    _lookup,
    _nonzero,
    _read_entries,
    allele_llr,
    bursting_overdispersion,
    lesion_sites,
    null_allele_llr,
    phase_sites,
    phase_table,
    site_genes,
)
from remnant.tl.genotypes import _heterozygous_entries, vote_share
from remnant.tl.lesion_model import temperature
from remnant.tl.lesions import called_and_fnr

__all__ = ["add_allele_evidence", "align_alleles", "concat_alleles", "PHASE_COLUMNS"]

log = logging.getLogger(__name__)

#: Columns of ``uns["lesions"][name]["phase"]`` (one row per patient and phased site).
PHASE_COLUMNS = [
    "patient",
    "site_id",
    "chromosome",
    "position",
    "ref",
    "alt",
    "gene",
    "p_alt",
    "allele",
    "confidence",
    "n_reads",
    "n_cells",
    "error_rate",
    "called_reads",
    "called_changed",
    "uncalled_reads",
    "uncalled_changed",
]


def align_alleles(alleles: anndata.AnnData, obs_names: pd.Index) -> anndata.AnnData:
    """The allele counts in the order of ``obs_names`` (cells x sites, ``layers`` AD and DP as int64
    CSR): a cell absent from ``alleles`` gets a row of zeros (no allele data). Cells of ``alleles``
    not in ``obs_names`` (filtered out upstream) are dropped."""
    pos = alleles.obs_names.get_indexer(obs_names)
    found = pos >= 0
    layers = {}
    for name in ("AD", "DP"):
        m = sp.csr_matrix(alleles.layers[name], dtype=np.int64)
        rows = sp.csr_matrix(
            (np.ones(found.sum(), dtype=np.int64), (np.flatnonzero(found), pos[found])),
            shape=(len(obs_names), m.shape[0]),
        )
        layers[name] = rows @ m  # int64 x int64: the counts are not cast to float and back
    return anndata.AnnData(
        X=sp.csr_matrix((len(obs_names), alleles.n_vars), dtype=np.float32),
        obs=pd.DataFrame(index=pd.Index(obs_names, dtype=str)),
        var=alleles.var.copy(),
        layers=layers,
    )


def add_allele_evidence(
    adata: anndata.AnnData,
    alleles: anndata.AnnData,
    lesions,
    *,
    patient_key: str = "patient",
    reference=None,
    eps: float = 0.02,
    max_gene_llr: float = 3.0,
    phase: pd.DataFrame | None = None,
    genes: pd.DataFrame | None = None,
    seed: int = 0,
) -> None:
    """Phase each patient's sites, score each cell from its allele reads and update the calls.

    Parameters
    ----------
    adata
        Cells called by :func:`remnant.tl.call_lesions` (``obs[f"{name}_posterior"]``,
        ``uns["lesions"][name]``); ``var`` with ``chromosome``, ``start``, ``end`` (bp, 0-based)
        for at least the lesions' genes: a site counts for the gene that covers it.
    alleles
        Cells x heterozygous SNPs (:func:`remnant.io.read_cellsnp`, :func:`remnant.io.match_cells`):
        ``layers["AD"]`` (ALT reads), ``layers["DP"]`` (REF + ALT), ``var`` ``chromosome``,
        ``position`` (1-based), ``ref``, ``alt``. Its cells are matched to ``adata.obs_names`` by
        name; cells of ``adata`` without a row have no allele data.
    lesions
        The lesions called (:func:`remnant.tl.parse_lesions`).
    patient_key
        obs column of the patient: sites are one person's, phase is learned per patient.
    reference
        Boolean (n_obs,) or obs column of the reference cells; patients whose cells are all reference
        cells are not phased (default: ``obs["cnv_reference"]`` when present).
    eps, max_gene_llr
        Per-read error on the lost haplotype (reads/read) and the bound of one gene's LLR (nats), as in
        :func:`remnant.tl.allele_llr`.
    phase
        A user's phasing overriding the learned one: rows ``patient``, ``site_id``, ``lesion``, ``allele``
        (``REF``/``ALT`` on the changed haplotype), taken as certain; the patient's other sites are not used.
    genes
        Gene positions (``chromosome``, ``start``, ``end``) that assign sites to genes, the lesions'
        and the control region's (default ``adata.var``; the workflow passes every gene's).
    seed
        Seed of the random phases of the control-region calibration and of the split of each patient's
        cells into halves that calibrates its phase confidence.

    Calibration
    -----------
    The sites outside every lesion (the control region's) carry no lesion in any cell. There, with
    a random phase, a cell's allele LLR is a draw from its null distribution
    (:func:`remnant.tl.null_allele_llr`): the bursting overdispersion is measured on them (phase-free
    moments, every cell) and the LLRs of the lesions are divided by the spread (sd, >= 1) of the null
    ``z``, as the expression LLR is by its reference cells', per batch of the expression calls (a
    technology: plate reads are nearly monoallelic per gene, droplet reads much less). Without enough control reads (fewer than
    :data:`remnant.tl.alleles.MIN_BURST_PAIRS` (cell, site) pairs with two reads in a batch) the
    batch's bursting comes from all its sites, cells weighted by their probability of carrying no
    lesion, and no temperature is applied; without enough in any batch the bursting is learned by
    each patient's phasing (a WARNING).

    Writes
    ------
    ``obs[f"{name}_expression_posterior"]`` (the posterior from expression alone, 0-1);
    ``obs[f"{name}_allele_llr"]`` (nats; 0 without reads), ``obs[f"{name}_allele_reads"]`` and
    ``obs[f"{name}_allele_genes"]`` (int: REF + ALT reads on phased sites, and genes with them);
    ``obs[f"{name}_posterior"]`` becomes the joint posterior and ``obs[f"{name}_call"]`` its call at the
    lesion's ``posterior_cutoff``; ``per_sample`` ``n_called`` and ``fnr``, and ``per_group``
    ``n_called``, are recounted from the joint calls (``fpr`` stays the cross-fitted rate of the
    expression evidence: reference donors have no phased sites, and for a normal cell the expected
    allele LLR is negative, so it bounds the joint rate from above). ``uns["lesions"][name]["phase"]``:
    :data:`PHASE_COLUMNS` (``error_rate``: :func:`remnant.tl.site_error_rates`, NaN for a gain or a given phase;
    ``called_*``/``uncalled_*``: reads and reads on the changed haplotype of cells called / not: the B-allele picture);
    ``uns["lesions"][name]["allele_params"]``: the settings, per-patient (mean) overdispersion and
    ``phase_temperature`` (the split-half temperature of each learned phasing, :func:`remnant.tl.phase_sites`),
    ``het_fraction``, ``het_sites_kept`` (module docstring);
    ``uns["lesions"][name]["allele_calibration"]``: per batch (the expression calls' ``batch_key``),
    ``n_cells``, ``control_cells``, ``control_pairs``, ``overdispersion``, each lesion's temperature
    and ``source`` (``control sites``, or ``all sites, uncalibrated`` when the batch has too few
    control reads).
    """
    # long because: one loop over lesions and patients, each step a call; the bookkeeping is shared
    patients = _patients(adata, patient_key)
    aligned, genotypes = _heterozygous(
        align_alleles(alleles, adata.obs_names), patients, lesions, adata.obs, eps, phase
    )
    is_ref = _reference(adata, reference)
    n_cells = int((np.asarray(aligned.layers["DP"].sum(axis=1)).ravel() > 0).sum())
    log.info("allele data for %d of %d cells, %d sites", n_cells, adata.n_obs, aligned.n_vars)
    genes = adata.var if genes is None else genes
    batch_key = _batch_key(adata, lesions)
    batches = adata.obs[batch_key].astype(str).to_numpy() if batch_key else np.full(adata.n_obs, "all")
    normal = np.prod([1.0 - adata.obs[f"{x.name}_posterior"].to_numpy(float) for x in lesions], axis=0)
    rho, temperatures, calibration = _calibrate(aligned, batches, normal, lesions, genes, eps, max_gene_llr, seed)
    for lesion in lesions:
        info = adata.uns["lesions"][lesion.name]
        cutoff = float(info["params"]["posterior_cutoff"])
        expression = adata.obs[f"{lesion.name}_posterior"].to_numpy(float).copy()
        llr = np.zeros(adata.n_obs)
        reads = np.zeros(adata.n_obs, np.int64)
        n_genes = np.zeros(adata.n_obs, np.int64)
        tables, rhos, temps = [], {}, {}
        for patient in pd.unique(patients):
            m = patients == patient
            if is_ref[m].all():
                continue
            sites = lesion_sites(aligned, _patient_interval(lesion, info, patient)) & _has_reads(aligned, m)
            if not sites.any():
                continue
            sub = aligned[np.flatnonzero(m), np.flatnonzero(sites)]
            rho_m = None if rho is None else rho[m]
            site_phase = _phase(sub, genes, expression[m], lesion, patient, phase, eps, max_gene_llr, rho_m, seed)
            temps[str(patient)] = float(site_phase.attrs.get("phase_temperature", 1.0))
            scored = allele_llr(sub, site_phase, lesion.type, overdispersion=rho_m, eps=eps, max_gene_llr=max_gene_llr)
            llr[m] = scored["llr"].to_numpy() / temperatures[lesion.name][m]
            reads[m], n_genes[m] = scored["n_reads"], scored["n_genes"]
            rhos[str(patient)] = float(np.mean(scored.attrs["overdispersion"]))
            joint_m = expit(logit(np.clip(expression[m], 1e-12, 1 - 1e-12)) + llr[m])
            tables.append(_phase_rows(sub, site_phase, patient, joint_m >= cutoff))
            log.info(
                "%s, patient %s: %d sites phased (%d with confidence >= 0.9, phase temperature %.2f), %d cells "
                "with allele reads, overdispersion %.3f",
                lesion.name,
                patient,
                int(sites.sum()),
                int((site_phase["confidence"] >= 0.9).sum()),
                temps[str(patient)],
                int((reads[m] > 0).sum()),
                rhos[str(patient)],
            )
        joint = expit(logit(np.clip(expression, 1e-12, 1 - 1e-12)) + llr)
        joint[llr == 0] = expression[llr == 0]  # exactly the expression call without allele evidence
        _write_cells(adata, lesion.name, expression, joint, llr, reads, n_genes, cutoff)
        _recount(info, adata.obs, joint, cutoff)
        info["phase"] = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PHASE_COLUMNS)
        info["allele_params"] = {
            "eps": float(eps),
            "max_gene_llr": float(max_gene_llr),
            "phase": "given" if phase is not None else "learned",
            "overdispersion": rhos,
            "phase_temperature": temps,
            "het_fraction": {str(k): float(v) for k, v in zip(genotypes["person"], genotypes["het_fraction"])},
            "het_sites_kept": {str(k): int(v) for k, v in zip(genotypes["person"], genotypes["kept"])},
        }
        info["allele_calibration"] = calibration.copy()


def _calibrate(
    aligned: anndata.AnnData,
    batches: np.ndarray,
    normal: np.ndarray,
    lesions,
    genes: pd.DataFrame,
    eps: float,
    bound: float,
    seed: int,
) -> tuple[np.ndarray | None, dict[str, np.ndarray], pd.DataFrame]:
    """Bursting and each lesion's temperature from the control sites, per batch (technology), as
    (n_obs,) arrays: (overdispersion per cell or None, {lesion: temperature per cell}, the table of what
    was measured). A batch with too few control reads gets its bursting from all its sites, each cell
    weighted by ``normal`` (its probability of carrying no lesion), and no temperature (see
    :func:`add_allele_evidence`)."""
    inside = np.zeros(aligned.n_vars, bool)
    for lesion in lesions:
        inside |= lesion_sites(aligned, lesion)
    control = aligned[:, np.flatnonzero(~inside)]
    sites_gene = site_genes(control, genes)
    temps = {lesion.name: np.ones(aligned.n_obs) for lesion in lesions}
    dp = sp.csr_matrix(control.layers["DP"])
    if int((dp.data >= 2).sum()) < MIN_BURST_PAIRS:
        log.warning(
            "allele evidence not calibrated: fewer than %d (cell, site) pairs with two reads or more outside the "
            "lesions. Keep SNPs of a region without lesions in the allele data to measure bursting and the "
            "evidence's spread.",
            MIN_BURST_PAIRS,
        )
        return None, temps, pd.DataFrame()
    rho, rows = np.zeros(aligned.n_obs), []
    for batch in pd.unique(batches):
        m = batches == batch
        got = _measure(control, m, sites_gene, lesions, eps, bound, seed)
        source = "control sites"
        if got is None:
            # technologies burst differently: another batch's value would be wrong; the batch's own
            # reads at all sites, weighted towards likely normal cells, are phase-free and its own
            got = {
                "overdispersion": bursting_overdispersion(aligned[np.flatnonzero(m)], normal[m]),
                **dict.fromkeys(temps, 1.0),
            }
            source = "all sites, uncalibrated (too few control reads)"
        rho[m] = got["overdispersion"]
        for name in temps:
            temps[name][m] = got[name]
        rows.append({"batch": str(batch), "n_cells": int(m.sum()), **got, "source": source})
        log.info(
            "allele evidence, batch %s: bursting %.3f, temperatures %s (from %s)",
            batch,
            got["overdispersion"],
            ", ".join(f"{k} {got[k]:.2f}" for k in temps),
            source,
        )
    return rho, temps, pd.DataFrame(rows)


def _measure(control: anndata.AnnData, m: np.ndarray, sites_gene, lesions, eps, bound, seed) -> dict | None:
    """Bursting and temperatures on the control sites of the cells of mask ``m`` (None: too few pairs)."""
    sub = control[np.flatnonzero(m)]
    dp = sp.csr_matrix(sub.layers["DP"])
    pairs = int((dp.data >= 2).sum())
    if pairs < MIN_BURST_PAIRS:
        return None
    rho = bursting_overdispersion(sub)
    out = {"control_cells": int((np.diff(dp.indptr) > 0).sum()), "control_pairs": pairs, "overdispersion": rho}
    for lesion in lesions:
        null = null_allele_llr(sub, sites_gene, lesion.type, overdispersion=rho, eps=eps, max_gene_llr=bound, seed=seed)
        out[lesion.name] = temperature(null["z"].to_numpy(), True)
    return out


def _batch_key(adata: anndata.AnnData, lesions) -> str | None:
    """The batch column the expression calls used (bursting and its calibration are per technology)."""
    key = adata.uns["lesions"][lesions[0].name]["params"].get("batch_key", "") if lesions else ""
    return key if key and key in adata.obs else None


def _heterozygous(aligned, patients, lesions, obs, eps, given) -> tuple[anndata.AnnData, pd.DataFrame]:
    """``aligned`` without the reads of each person at the sites it is likely homozygous at
    (:func:`remnant.tl.genotypes.heterozygous_sites`; sites a given phase names for the person are
    kept), and the per-person table."""
    order = pd.unique(patients)
    regions = []
    for lesion in lesions:
        # each cell at its own carrier probability: a patient's diagnosis and remission cells differ
        share = vote_share(lesion.type, obs[f"{lesion.name}_posterior"].to_numpy(float))
        regions.append((lesion_sites(aligned, lesion), share))
    ad, dp = _read_entries(aligned.layers["AD"], aligned.layers["DP"])  # once, for the genotypes and the cut
    het, table = _heterozygous_entries(ad, dp, patients, regions, eps)
    code = pd.Index(order).get_indexer(patients)
    named = np.zeros(0, np.int64)  # (person, site) pairs a given phase names, as person * n_sites + site
    if given is not None:
        g = given[given["patient"].astype(str).isin(order)]
        sites = aligned.var_names.get_indexer(g["site_id"])
        who = pd.Index(order).get_indexer(g["patient"].astype(str))
        named = (who.astype(np.int64) * aligned.n_vars + sites)[sites >= 0]
    for row in table.itertuples():
        if np.isfinite(row.het_fraction) and row.kept < row.sites:
            log.info(
                "%s: heterozygous at an estimated %.0f%% of the listed sites (%d sites outside the lesions read by "
                "two cells or more); %d of its %d sites with reads kept, the rest taken as homozygous",
                row.person,
                100 * row.het_fraction,
                row.informative_sites,
                row.kept,
                row.sites,
            )
    rows, cols = _nonzero(dp)
    on = _lookup(het, code[rows], cols) >= 0.5
    if named.size:
        on |= np.isin(code[rows].astype(np.int64) * aligned.n_vars + cols, named)
    # the kept entries in their stored order: the CSR is cut, not rebuilt from coordinates (a sort)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[on], minlength=dp.shape[0]))])
    layers = {
        name: sp.csr_matrix((m.data[on].astype(np.int64), cols[on], indptr.copy()), shape=m.shape)
        for name, m in (("AD", ad), ("DP", dp))
    }
    layers["AD"].eliminate_zeros()  # as DP's entries were cut; AD stores no zeros, as read
    return anndata.AnnData(X=aligned.X, obs=aligned.obs, var=aligned.var, layers=layers), table


def _patients(adata: anndata.AnnData, patient_key: str) -> np.ndarray:
    if patient_key not in adata.obs:
        raise InputError(
            f"obs has no column {patient_key!r}: allele sites are phased per patient.", where="add_allele_evidence"
        )
    return adata.obs[patient_key].astype(str).to_numpy()


def _reference(adata: anndata.AnnData, reference) -> np.ndarray:
    if reference is None:
        reference = "cnv_reference" if "cnv_reference" in adata.obs else np.zeros(adata.n_obs, bool)
    if isinstance(reference, str):
        return adata.obs[reference].astype(bool).to_numpy()
    return np.asarray(reference, bool)


def _has_reads(aligned: anndata.AnnData, m: np.ndarray) -> np.ndarray:
    """Sites with reads in the cells of mask ``m`` (another patient's sites have none)."""
    return np.asarray(aligned.layers["DP"][np.flatnonzero(m)].sum(axis=0)).ravel() > 0


def _patient_interval(lesion, info: dict, patient: str):
    """The lesion as it applies to ``patient``: its refined interval where the expression step refined
    one, else the configured interval."""
    rows = info.get("intervals")
    if rows is None or rows.empty or "donor" not in rows:
        return lesion
    row = rows[(rows["donor"].astype(str) == str(patient)) & rows["refined"].astype(bool)]
    if row.empty:
        return lesion
    return replace(lesion, start=int(row["start"].iloc[0]), end=int(row["end"].iloc[0]))


def _phase(sub, var, carrier, lesion, patient, given, eps, max_gene_llr, rho, seed) -> pd.DataFrame:
    """The phase of one patient's sites of one lesion: learned from its cells (its confidences tempered
    by split-half agreement, ``seed`` drawing the halves), or the user's."""
    genes = site_genes(sub, var)
    if given is None:
        return phase_sites(
            sub,
            genes,
            carrier,
            lesion_type=lesion.type,
            eps=eps,
            max_gene_llr=max_gene_llr,
            overdispersion=rho,
            seed=seed,
        )
    rows = given[(given["patient"].astype(str) == str(patient)) & (given["lesion"].astype(str) == lesion.name)]
    allele = rows.set_index(rows["site_id"].astype(str))["allele"].reindex(sub.var_names)
    p_alt = np.where(allele == "ALT", 1.0, np.where(allele == "REF", 0.0, 0.5))
    table = phase_table(sub.var_names, np.where(allele.notna(), genes, ""), p_alt, sub.layers["DP"])
    carrier_post = np.clip(carrier, 1e-6, 1 - 1e-6)
    table.attrs["overdispersion"] = rho if rho is not None else bursting_overdispersion(sub, weights=1.0 - carrier_post)
    return table


def _phase_rows(sub: anndata.AnnData, site_phase: pd.DataFrame, patient: str, called: np.ndarray) -> pd.DataFrame:
    """One patient's phased sites with the reads on the changed haplotype of called and uncalled cells."""
    ad = sp.csr_matrix(sub.layers["AD"], dtype=np.float64)
    dp = sp.csr_matrix(sub.layers["DP"], dtype=np.float64)
    alt_changed = site_phase["p_alt"].to_numpy() >= 0.5
    out = {"patient": np.full(sub.n_vars, str(patient), dtype=object), "site_id": sub.var_names.astype(str)}
    out |= {column: sub.var[column].to_numpy() for column in ("chromosome", "position", "ref", "alt")}
    out |= {
        column: site_phase[column].to_numpy()
        for column in ("gene", "p_alt", "allele", "confidence", "n_reads", "n_cells")
    }
    # a loss's learned phase has each site's own error rate; a gain's or a given phase has none
    out["error_rate"] = (
        site_phase["error_rate"].to_numpy() if "error_rate" in site_phase else np.full(sub.n_vars, np.nan)
    )
    for name, rows in (("called", called), ("uncalled", ~called)):
        w = rows.astype(np.float64)  # a weighted column sum: no copy of the rows' entries
        n = np.asarray(dp.T @ w).ravel()
        alt = np.asarray(ad.T @ w).ravel()
        out[f"{name}_reads"] = n.astype(np.int64)
        out[f"{name}_changed"] = np.where(alt_changed, alt, n - alt).astype(np.int64)
    return pd.DataFrame(out, columns=PHASE_COLUMNS)


def _write_cells(adata, name, expression, joint, llr, reads, genes, cutoff) -> None:
    adata.obs[f"{name}_expression_posterior"] = expression
    adata.obs[f"{name}_allele_llr"] = llr
    adata.obs[f"{name}_allele_reads"] = reads
    adata.obs[f"{name}_allele_genes"] = genes
    adata.obs[f"{name}_posterior"] = joint
    adata.obs[f"{name}_call"] = joint >= cutoff


def _recount(info: dict, obs: pd.DataFrame, joint: np.ndarray, cutoff: float) -> None:
    """``per_sample`` n_called and fnr, ``per_group`` n_called, from the joint posteriors."""
    params = info["params"]
    samples = obs[params["sample_key"]].astype(str).to_numpy()
    per_sample = info["per_sample"]
    for smp in per_sample.index:
        per_sample.loc[smp, ["n_called", "fnr"]] = called_and_fnr(joint[samples == str(smp)], cutoff)
    per_group = info.get("per_group")
    if per_group is not None and not per_group.empty:
        groups = obs[params["prior_key"]].astype(str).to_numpy()
        called = pd.Series(joint >= cutoff).groupby([samples, groups]).sum()
        keys = pd.MultiIndex.from_arrays([per_group["sample"].astype(str), per_group["group"].astype(str)])
        per_group["n_called"] = called.reindex(keys, fill_value=0).to_numpy(np.int64)


def concat_alleles(parts) -> anndata.AnnData:
    """One allele AnnData from several (e.g. one per sample, cells named ``"{sample}:{barcode}"``):
    cells stacked, sites the union (by ``var_names``, first-seen order; a cell has zero reads at a
    site its part lacks), ``layers`` AD and DP int64 CSR. Cell names must be unique across parts."""
    parts = list(parts)
    if not parts:
        raise ValueError("concat_alleles needs at least one AnnData")
    var = pd.concat([p.var for p in parts])
    var = var[~var.index.duplicated(keep="first")]
    layers = {}
    for name in ("AD", "DP"):
        blocks = []
        for p in parts:
            cols = var.index.get_indexer(p.var_names)
            m = sp.csr_matrix(p.layers[name], dtype=np.int64).tocoo()
            blocks.append(sp.csr_matrix((m.data, (m.row, cols[m.col])), shape=(p.n_obs, len(var)), dtype=np.int64))
        layers[name] = sp.vstack(blocks, format="csr")
    obs_names = pd.Index(np.concatenate([p.obs_names.to_numpy(str) for p in parts]))
    if not obs_names.is_unique:
        raise ValueError("concat_alleles: cell names repeat across the parts; name cells '{sample}:{barcode}'")
    return anndata.AnnData(
        X=sp.csr_matrix((len(obs_names), len(var)), dtype=np.float32),
        obs=pd.DataFrame(index=obs_names),
        var=var.copy(),
        layers=layers,
    )
