"""Seeded simulator of a sorted-marrow single-cell cohort, with ground truth.

It produces the bundled demo cohort and the test cohorts: count matrices that look like 10x
(droplet, UMI) or Smart-seq2 (plate, reads) data of FACS-sorted haematopoietic stem and
progenitor cells, index-sort intensities, and a truth table saying for every cell which HSPC state
it is, its cell-cycle phase, whether it carries each simulated lesion (by default del(5q)),
whether it is a doublet or a low-quality cell. Later stages (QC, clustering, copy-number calls,
persistence statistics) are checked against that truth.

Model, per cell (all effects multiplicative on the expected expression):

``mean(cell, gene) = L_cell * (1 - m_cell) * nuclear_profile(patient, state, phase, lesions)[gene]``
``                 + L_cell * m_cell * mito_profile[gene]``

- ``nuclear_profile`` is a composition (sums to 1 before lesions) built from a heavy-tailed
  baseline (log-normal; ribosomal and housekeeping genes high, lncRNAs lower), a per-patient
  log-normal gene effect, the HSPC state's marker genes and random state program, and the
  cell-cycle / quiescence programs. Lesions then multiply the genes inside the patient's deleted
  (or gained) interval by ``copy_ratio`` *without* renormalising: a del(5q) cell simply has fewer
  transcripts from 5q (its library is slightly smaller), as in a real cell.
- ``L_cell``: log-normal library size (UMIs for droplet, reads for plate) times a per-sample shift,
  a cell-cycle factor (quiescent cells are smaller) and, for planted low-quality cells, a factor of
  1/20-1/5. ``m_cell``: mitochondrial fraction (logit-normal around 4%; 20-60% in low-quality cells).
- Counts are negative binomial (gamma-Poisson) with ``var = mu + x * mu`` where
  ``x = phi0 * g_gene * mu + phi1``, i.e. NB dispersion ``phi = phi0 * g_gene + phi1 / mu``:
  ``phi0`` the quadratic (biological) overdispersion, ``g_gene`` a per-gene log-normal factor,
  ``phi1`` a linear term (Smart-seq2 amplification: about reads per captured molecule; 0 for UMIs). Droplet samples are drawn with an exact sparse sampler whose cost grows with the
  number of UMIs, not cells x genes (see :func:`remnant.sim.sample._sample_nb_sparse`); plate samples with a dense
  gamma-Poisson sampler in chunks of cells. No dense cohort is ever held.
- Doublets (droplet only) are the sum of two simulated cells' counts.
- Confounders (``params["confounders"]``, on by default; :mod:`remnant.sim.confounders`): a disease
  programme in every patient cell (a few hundred genes 4-16-fold up or down, some inside 5q), a
  dominant-transcript family (haemoglobin) holding a share of the nuclear counts of some patient
  cells, immediate-early genes (EGR1 in 5q31, FOS, JUN ...) varying by sample, and cells of another
  type (their own programme and state label, never carriers) inside patient samples. They enter the
  nuclear profile as further log effects (the family as a share of the nuclear mean), so counts
  are drawn from them as from everything else.

Randomness: everything derives from ``seed`` through :func:`numpy.random.default_rng`. Cohort-wide
draws (gene baseline, dispersion, state programs) use ``default_rng([seed, 0])``; each patient's
draws ``default_rng([seed, 1, crc32(patient)])`` and each sample's ``default_rng([seed, 2,
crc32(sample)])``; the confounders draw from generators of their own (tags 3 to 6; see
:mod:`remnant.sim.confounders`), so switching them off gives exactly the counts without them, and so
do the allele counts (``params["alleles"]``, off by default; tags 7 and 8, see
:mod:`remnant.sim.alleles`), which are drawn from the simulated counts without changing them. So the same inputs and seed give identical output, and a sample's counts do not
change when other samples are added to or removed from the sheet.

Modules: :mod:`remnant.sim.params` (defaults and checks), :mod:`remnant.sim.model` (the gene model
and each patient's draws), :mod:`remnant.sim.sample` (one sample); this one simulates the cohort.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import anndata
import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.sim.alleles import AlleleModel
from remnant.sim.confounders import Confounders
from remnant.sim.model import GeneModel, Patient, child_rng, in_interval
from remnant.sim.params import DEFAULT_PARAMS, SHEET_COLUMNS, has_alleles, is_empty, is_index_sorted, resolve_params
from remnant.sim.sample import simulate_sample

__all__ = ["DEFAULT_PARAMS", "SimulatedCohort", "in_interval", "resolve_params", "simulate_cohort"]


@dataclass
class SimulatedCohort:
    """A simulated cohort and its ground truth.

    Attributes
    ----------
    counts
        Sample -> AnnData (cells x genes). ``X``: CSR, float32, integer-valued (UMIs for droplet,
        reads for plate). ``obs_names``: barcodes, unique within the sample (10x-like
        ``AAACCTGAGAAACCAT-1`` for droplet, ``plate1_A01`` for plate). ``var_names``: gene symbols
        (not unique, as in 10x features; unnamed lncRNAs carry their Ensembl ID); ``var`` columns
        ``gene_ids`` (versioned Ensembl ID, unique) and ``gene_symbols``.
    index_sort
        Sample -> DataFrame indexed by barcode with one column per index-sort marker (positive
        fluorescence intensities, arbitrary units); only samples with index sort.
    cells
        One row per cell: ``sample, barcode, patient, timepoint, population, condition,
        technology, state`` (``"A+B"`` for doublets), ``cell_cycle_phase`` (G1/S/G2M; ``"A+B"`` for
        doublets of different phases), ``quiescent``, ``lesion_<name>`` per lesion (doublets: True if
        either cell carries it), ``doublet``, ``low_quality``, ``total_counts`` (observed),
        ``other_type`` (a cell of another type: confounders), ``dominant_family`` (name of the
        dominant-transcript family of the cell, '' for none), ``mito_fraction`` (expected share of
        mitochondrial counts).
    patients
        One row per patient and lesion: ``patient, condition, sex, lesion, chromosome, start, end``
        (bp, 0-based half-open), ``type, copy_ratio, n_genes`` (simulated genes inside), ``clone_logit_shift``.
        Patients of a normal condition have one row with empty lesion fields.
    params
        The fully resolved parameters used.
    alleles
        Sample -> allele counts (only with ``params["alleles"]["enabled"]``, and only for the samples of
        the patients in ``params["alleles"]["patients"]``, all when None; :mod:`remnant.sim.alleles`):
        AnnData, cells x heterozygous SNPs of the sample's patient, ``obs_names`` the barcodes in the
        order of ``counts[sample]``, ``X`` None, ``layers["AD"]`` (ALT reads) and ``layers["DP"]``
        (REF + ALT), CSR int32, ``var`` columns ``chromosome, position`` (1-based) ``, ref, alt,
        site_id``: the layout of :func:`remnant.io.alleles.read_cellsnp`. Kept even when ``write``
        is given.
    allele_truth
        One row per patient with allele data, site and region holding it (empty without alleles):
        ``patient, site_id, chromosome, position, ref, alt, gene, gene_id, lesion`` (the lesion's name, ``control`` for
        the control region) ``, in_lesion`` (inside the patient's own interval) ``, lost_allele``
        (``REF``/``ALT``: the allele on haplotype A, the one a loss removes and a gain duplicates).
    confounders
        What the confounders planted (empty without them): ``programme`` (one row per patient and
        disease-programme gene: ``patient, gene, gene_name, chromosome, log2fc, inside_lesion``),
        ``other_type`` (the other type's programme: ``gene, gene_name, chromosome, log2fc``),
        ``samples`` (``sample, ieg_log2fc``: each sample's immediate-early factor); ``gene`` indexes
        the simulated genes (the columns of every count matrix).
    """

    counts: dict[str, anndata.AnnData]
    index_sort: dict[str, pd.DataFrame]
    cells: pd.DataFrame
    patients: pd.DataFrame
    params: dict = field(default_factory=dict)
    confounders: dict[str, pd.DataFrame] = field(default_factory=dict)
    alleles: dict[str, anndata.AnnData] = field(default_factory=dict)
    allele_truth: pd.DataFrame = field(default_factory=pd.DataFrame)


def simulate_cohort(
    samples: pd.DataFrame,
    genes: pd.DataFrame,
    markers: dict[str, list[str]],
    gene_sets: dict[str, list[str]],
    params: dict | None = None,
    seed: int = 0,
    write: Callable[[str, anndata.AnnData, pd.DataFrame | None], None] | None = None,
    root: str = "params",
) -> SimulatedCohort:
    """Simulate the counts, index-sort intensities and truth of every sample in a sample sheet.

    Parameters
    ----------
    samples
        Sample sheet, one row per sorted sample, with columns ``sample, patient, timepoint,
        population, condition, technology`` (``droplet`` or ``plate``). Other columns are ignored,
        except a non-empty ``index_sort`` value, which asks for index-sort intensities for that
        sample (plate samples get them anyway, see ``index_sort.technologies``). Timepoints of
        donors of a normal condition may be empty.
    genes
        Gene annotation as returned by :func:`remnant.io.annotation.load_genes`.
    markers
        HSPC state -> marker symbols (``resources/gene_sets/HSPC_MARKERS.tsv`` read by
        :func:`remnant.pp.cluster.read_markers`); every simulated state needs an entry.
    gene_sets
        Set name -> symbols (:func:`remnant.io.genesets.read_gene_sets`); must hold the cell-cycle and
        quiescence sets named in ``params["cell_cycle"]``.
    params
        Simulator parameters merged over :data:`DEFAULT_PARAMS` (:func:`resolve_params`).
    seed
        Seed of every random draw; the same inputs and seed give identical output.
    write
        Called as ``write(sample, counts, index_sort_or_None)`` for each sample as soon as it is
        simulated; the sample is then not kept (``counts``/``index_sort`` of the result stay
        empty), so a large cohort needs the memory of one sample, not of all. Same draws either way.
    root
        Prefix of the parameters' key paths in error messages (the workflow passes its config key).

    Returns
    -------
    SimulatedCohort

    Notes
    -----
    Clone membership is drawn per cell: Bernoulli(clone fraction of the sample's timepoint and
    population) with ``clone_sampling: bernoulli`` (the default; sampling noise as in real
    sorting), or exactly ``round(fraction * singlets)`` singlets, shuffled, with ``exact``
    (doublet components stay Bernoulli). Each lesion is then carried by a clone cell with
    probability ``fraction_of_clone``. The same is done for low-quality cells (Bernoulli).
    """
    if not isinstance(samples, pd.DataFrame):
        raise InputError("the sample sheet must be a pandas DataFrame.", where="simulate_cohort(samples=...)")
    p = resolve_params(params, samples=samples, root=root)
    sheet = _sheet_strings(samples)
    model = GeneModel(genes, markers, gene_sets, p, np.random.default_rng([int(seed), 0]), root)
    patients: dict[str, Patient] = {}
    for name, condition in sheet.groupby("patient", sort=False)["condition"].first().items():
        patients[name] = Patient(name, condition, model, p, child_rng(seed, 1, name))
    conf, planted = _confounders(model, patients, p, seed, root)
    allele_model = AlleleModel(model, p, seed) if p["alleles"]["enabled"] else None
    sites = _allele_sites(allele_model, patients, sheet, p)

    counts, index_sort, truths, alleles = {}, {}, [], {}
    for _, row in sheet.iterrows():
        rng = child_rng(seed, 2, row["sample"])
        cf = (conf, child_rng(seed, 5, row["sample"])) if conf else None
        draw = _allele_draw(allele_model, sites, row)
        adata, truth, facs, ac = simulate_sample(
            rng, row, patients[row["patient"]], model, p, is_index_sorted(row, p), cf, draw
        )
        if ac is not None:
            alleles[row["sample"]] = allele_model.sample_alleles(sites[row["patient"]], *ac, adata.obs_names)
        if write is not None:
            write(row["sample"], adata, facs)
            del adata
        else:
            counts[row["sample"]] = adata
            if facs is not None:
                index_sort[row["sample"]] = facs
        meta = pd.DataFrame({col: row[col] for col in SHEET_COLUMNS}, index=truth.index)
        truths.append(pd.concat([meta, truth], axis=1))
        if conf:
            planted["samples"].append({"sample": row["sample"], "ieg_log2fc": conf.ieg_log2fc(row["sample"])})
    cells = pd.concat(truths, ignore_index=True)[_cell_columns(p)]
    if conf:
        planted["samples"] = pd.DataFrame(planted["samples"], columns=["sample", "ieg_log2fc"])
    return SimulatedCohort(
        counts=counts,
        index_sort=index_sort,
        cells=cells,
        patients=_patients_table(patients),
        params=p,
        confounders=planted,
        alleles=alleles,
        allele_truth=pd.concat([s.truth for s in sites.values()], ignore_index=True) if sites else pd.DataFrame(),
    )


def _allele_sites(allele_model: AlleleModel | None, patients: dict[str, Patient], sheet: pd.DataFrame, p: dict) -> dict:
    """Patient -> its sites, for the patients with allele data (``alleles.patients``); each patient's
    from its own generator, so choosing fewer patients changes nothing of the others'."""
    if allele_model is None:
        return {}
    chosen = {row["patient"] for _, row in sheet.iterrows() if has_alleles(row, p)}
    return {name: allele_model.patient_sites(pt) for name, pt in patients.items() if name in chosen}


def _allele_draw(allele_model: AlleleModel | None, sites: dict, row: pd.Series) -> Callable | None:
    """The allele hook of one sample (None without alleles): its patient's sites, its own generator."""
    if allele_model is None or row["patient"] not in sites:
        return None
    rng = allele_model.sample_rng(row["sample"])
    return functools.partial(allele_model.draw, sites[row["patient"]], rng)


def _confounders(model: GeneModel, patients: dict[str, Patient], p: dict, seed: int, root: str) -> tuple:
    """The cohort's confounders (None when switched off) and the table of what they plant; sets
    each patient's disease programme and adds the other type's programme to the state effects."""
    if not p["confounders"]["enabled"]:
        return None, {}
    conf = Confounders(model, p, seed, root)
    model.state_effect[conf.label] = conf.other_effect
    tables = []
    for name, pt in patients.items():
        pt.programme, table = conf.disease_programme(name, pt.condition)
        tables.append(table.assign(patient=name))
    programme = pd.concat(tables, ignore_index=True)
    programme = programme[["patient", *[c for c in programme.columns if c != "patient"]]]
    return conf, {"programme": programme, "other_type": conf.other_programme, "samples": []}


def _sheet_strings(samples: pd.DataFrame) -> pd.DataFrame:
    """The sheet's simulator columns as text (an empty timepoint, however written, as "")."""
    sheet = samples.reset_index(drop=True).copy()
    for col in SHEET_COLUMNS:
        sheet[col] = [("" if is_empty(v) else str(v)) if col == "timepoint" else str(v) for v in sheet[col]]
    return sheet


def _cell_columns(p: dict) -> list[str]:
    """Columns of the truth table, in order."""
    return [
        *SHEET_COLUMNS[:1],
        "barcode",
        *SHEET_COLUMNS[1:],
        "state",
        "cell_cycle_phase",
        "quiescent",
        *[f"lesion_{lesion['name']}" for lesion in p["lesions"]],
        "doublet",
        "low_quality",
        "other_type",
        "dominant_family",
        "total_counts",
        "mito_fraction",
    ]


def _patients_table(patients: dict[str, Patient]) -> pd.DataFrame:
    """One row per patient and lesion (one row with empty lesion fields for a patient without)."""
    rows = []
    for name, pt in patients.items():
        base = {"patient": name, "condition": pt.condition, "sex": "male" if pt.male else "female"}
        if not pt.lesions:
            rows.append(
                {
                    **base,
                    "lesion": "",
                    "chromosome": "",
                    "start": pd.NA,
                    "end": pd.NA,
                    "type": "",
                    "copy_ratio": np.nan,
                    "n_genes": 0,
                    "clone_logit_shift": np.nan,
                }
            )
        for lesion_name, chrom, start, end, kind, ratio, mask, _ in pt.lesions:
            rows.append(
                {
                    **base,
                    "lesion": lesion_name,
                    "chromosome": chrom,
                    "start": start,
                    "end": end,
                    "type": kind,
                    "copy_ratio": ratio,
                    "n_genes": int(mask.sum()),
                    "clone_logit_shift": pt.clone_shift,
                }
            )
    table = pd.DataFrame(rows)
    table["start"] = table["start"].astype("Int64")
    table["end"] = table["end"].astype("Int64")
    return table
