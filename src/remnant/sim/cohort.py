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
  number of UMIs, not cells x genes (see :func:`_sample_nb_sparse`); plate samples with a dense
  gamma-Poisson sampler in chunks of cells. No dense cohort is ever held.
- Doublets (droplet only) are the sum of two simulated cells' counts.

Randomness: everything derives from ``seed`` through :func:`numpy.random.default_rng`. Cohort-wide
draws (gene baseline, dispersion, state programs) use ``default_rng([seed, 0])``; each patient's
draws ``default_rng([seed, 1, crc32(patient)])`` and each sample's ``default_rng([seed, 2,
crc32(sample)])``. So the same inputs and seed give identical output, and a sample's counts do not
change when other samples are added to or removed from the sheet.
"""

from __future__ import annotations

import copy
import difflib
import re
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.errors import InputError

__all__ = ["DEFAULT_PARAMS", "SimulatedCohort", "in_interval", "resolve_params", "simulate_cohort"]

_MB = 1_000_000

#: Every simulator parameter with its default. ``config/schemas/demo.schema.yaml`` documents each
#: key (the ``demo.params`` block of the workflow config); :func:`resolve_params` merges user values
#: over these and validates them. Fold changes are log2; ``sdlog`` values are standard deviations of
#: natural logarithms.
DEFAULT_PARAMS: dict[str, Any] = {
    # -- genes ---------------------------------------------------------------------------------
    # Gene types simulated (GENCODE gene_type); genes on chr1-22, X, Y and M only.
    "gene_types": ["protein_coding", "lncRNA"],
    # -- cells ---------------------------------------------------------------------------------
    # Cells (barcodes, doublets included) per sample by technology; sample_cells overrides per sample.
    "cells_per_sample": {"droplet": 250, "plate": 96},
    "sample_cells": {},
    # Library size per cell: log-normal with this median (UMIs for droplet, reads for plate).
    "library_size": {
        "droplet": {"median": 3000.0, "sdlog": 0.35},
        "plate": {"median": 400000.0, "sdlog": 0.4},
    },
    # Per-sample multiplicative shift of library sizes (sd of its natural log).
    "sample_library_sdlog": 0.15,
    # Negative binomial: var = mu + (phi0 * g * mu + phi1) * mu, g ~ lognormal(0, gene_sdlog) per gene.
    "dispersion": {
        "droplet": {"phi0": 0.2, "phi1": 0.0},
        "plate": {"phi0": 0.5, "phi1": 30.0},
        "gene_sdlog": 0.5,
    },
    # -- baseline expression -------------------------------------------------------------------
    "expression": {
        "sdlog": 1.8,  # spread of the log-normal baseline (natural log)
        "lncrna_log_shift": -1.5,  # lncRNAs lower than protein-coding genes (natural log)
        "ribosomal_fraction": 0.2,  # share of nuclear counts on RPL*/RPS* genes
        "housekeeping_fraction": 0.08,  # share on the housekeeping genes below
        "housekeeping_genes": [
            "ACTB",
            "GAPDH",
            "B2M",
            "TMSB4X",
            "TMSB10",
            "EEF1A1",
            "TPT1",
            "FTL",
            "FTH1",
            "MALAT1",
            "MYL6",
            "PTMA",
            "HSP90AB1",
            "NPM1",
            "HMGB1",
            "PFN1",
            "EIF1",
            "UBC",
            "NACA",
            "SRGN",
        ],
        "xist_fraction": 0.003,  # share on XIST in female donors (0 in male donors)
        # Marker, cell-cycle and quiescence genes are raised to at least this quantile of the
        # baseline, so that their up-regulation is visible at a few thousand UMIs per cell.
        "program_floor_quantile": 0.8,
        "patient_sdlog": 0.15,  # per-patient, per-gene log-normal effect
    },
    # Mitochondrial share of counts in good cells: logit-normal around this median.
    "mito_fraction": {"median": 0.04, "sd_logit": 0.35},
    "male_fraction": 0.5,  # probability that a donor is male (chrY genes expressed, no XIST)
    # -- HSPC states ----------------------------------------------------------------------------
    "states": ["HSC", "LMPP", "GMP", "MEP", "CLP", "MK", "ERY_EARLY"],
    # Sort gate (sample-sheet population) -> state composition (fractions summing to 1).
    "state_composition": {
        "HSC": {"HSC": 0.85, "LMPP": 0.15},
        "PROG": {"GMP": 0.3, "MEP": 0.22, "CLP": 0.08, "MK": 0.1, "ERY_EARLY": 0.18, "LMPP": 0.12},
        "CD34": {"HSC": 0.1, "LMPP": 0.15, "GMP": 0.25, "MEP": 0.15, "CLP": 0.07, "MK": 0.08, "ERY_EARLY": 0.2},
    },
    "state_programs": {
        "marker_log2fc": 3.0,  # the state's HSPC_MARKERS.tsv genes
        "n_genes": 200,  # random state-specific program genes per state
        # Program genes are drawn among protein-coding genes above this baseline quantile (a
        # program of barely expressed genes would be invisible at a few thousand UMIs).
        "candidate_quantile": 0.7,
        "log2fc_mean": 1.5,  # |log2 fold change| of program genes ~ N(mean, sd)
        "log2fc_sd": 0.5,
        "up_fraction": 0.7,  # share of program genes that go up (the rest go down)
    },
    # -- cell cycle -----------------------------------------------------------------------------
    "cell_cycle": {
        # Probability that a cell is cycling; the rest are quiescent (G0: phase G1, quiescent=True).
        "cycling_probability": {
            "HSC": 0.1,
            "LMPP": 0.5,
            "GMP": 0.7,
            "MEP": 0.6,
            "CLP": 0.5,
            "MK": 0.5,
            "ERY_EARLY": 0.7,
        },
        # Phases of cycling cells.
        "phase_fractions": {"G1": 0.4, "S": 0.35, "G2M": 0.25},
        "s_log2fc": 2.0,
        "g2m_log2fc": 2.0,
        "quiescence_log2fc": 1.5,
        # Names of gene sets (keys of the gene_sets argument, i.e. file stems in resources/gene_sets).
        "s_genes": "TIROSH2016_S",
        "g2m_genes": "TIROSH2016_G2M",
        "quiescence_genes": "GRAHAM_NORMAL_QUIESCENT_VS_NORMAL_DIVIDING_UP",
        # Library-size factor by phase (quiescent cells have less RNA).
        "library_factor": {"quiescent": 0.7, "G1": 1.0, "S": 1.2, "G2M": 1.4},
        # Optional changes of the cycling odds of lesion carriers, e.g.
        # {lesion: del5q, timepoint: remission, states: [HSC], odds_ratio: 0.3}. Default: none.
        "modifiers": [],
    },
    # -- lesions ---------------------------------------------------------------------------------
    # Copy-number lesions carried by the clone of every patient whose condition is not normal.
    # Breakpoints (bp, GRCh38) are drawn uniformly per patient in the proximal/distal ranges,
    # restricted so that the interval always contains `contains` (the commonly deleted region).
    "lesions": [
        {
            "name": "del5q",
            "chromosome": "chr5",
            "type": "loss",
            "copy_ratio": 0.5,
            "proximal": [65 * _MB, 80 * _MB],  # 5q13-q14
            "distal": [140 * _MB, 160_500_000],  # 5q31-q33 (5q33.3 ends at 160.5 Mb)
            "contains": [149_400_000, 151_900_000],  # 5q32-q33.1 CDR (CSNK1A1 ... RPS14)
            "fraction_of_clone": 1.0,  # share of clone cells carrying it (<1: subclonal)
        }
    ],
    "normal_conditions": ["healthy"],  # donors of these conditions never carry lesions
    # Clone fraction per timepoint and sort gate (fraction of cells in the malignant clone).
    "clone_fraction": {
        "diagnosis": {"HSC": 0.95, "PROG": 0.97, "CD34": 0.95},
        "remission": {"HSC": 0.40, "PROG": 0.03, "CD34": 0.08},
        "relapse": {"HSC": 0.90, "PROG": 0.90, "CD34": 0.90},
    },
    # Per-patient shift of the clone fraction on the logit scale (0: every patient as the table).
    "clone_fraction_patient_sd": 0.0,
    # bernoulli: each cell independently; exact: round(fraction * singlets) cells, shuffled.
    "clone_sampling": "bernoulli",
    # -- planted artefacts -------------------------------------------------------------------------
    "low_quality": {"fraction": 0.05, "count_factor": [0.05, 0.2], "mito_fraction": [0.2, 0.6]},
    "doublets": {"rate": 0.06, "heterotypic_fraction": 0.8, "technologies": ["droplet"]},
    # -- index sort --------------------------------------------------------------------------------
    # Samples of these technologies (and any sample whose sheet row names an index_sort file) get
    # index-sort intensities: 10 ** (level + sample shift + noise), arbitrary fluorescence units.
    "index_sort": {
        "technologies": ["plate"],
        "markers": ["CD34", "CD38", "CD90", "CD45RA"],
        "sdlog10": 0.2,
        "sample_sdlog10": 0.05,
        "levels": {
            "HSC": {"CD34": 3.8, "CD38": 2.0, "CD90": 3.0, "CD45RA": 1.8},
            "LMPP": {"CD34": 3.7, "CD38": 2.1, "CD90": 2.0, "CD45RA": 3.0},
            "GMP": {"CD34": 3.4, "CD38": 3.3, "CD90": 1.8, "CD45RA": 2.9},
            "MEP": {"CD34": 3.3, "CD38": 3.2, "CD90": 1.8, "CD45RA": 1.8},
            "CLP": {"CD34": 3.3, "CD38": 3.0, "CD90": 1.8, "CD45RA": 3.0},
            "MK": {"CD34": 3.2, "CD38": 3.2, "CD90": 1.9, "CD45RA": 1.8},
            "ERY_EARLY": {"CD34": 3.0, "CD38": 3.4, "CD90": 1.8, "CD45RA": 1.7},
        },
    },
}

#: Parameter paths whose value replaces the default as a whole instead of being merged key by key
#: (compositions must sum to 1: merging a user's {HSC: 1.0} into the default would not).
_REPLACE_WHOLE = {("state_composition", "*"), ("cell_cycle", "phase_fractions")}
#: Parameter paths whose keys are user-defined (samples, populations, timepoints, states).
_FREE_FORM = {
    ("sample_cells",),
    ("state_composition",),
    ("state_composition", "*"),
    ("clone_fraction",),
    ("clone_fraction", "*"),
    ("cell_cycle", "cycling_probability"),
    ("index_sort", "levels"),
    ("index_sort", "levels", "*"),
}

_TECHNOLOGIES = ("droplet", "plate")
_PHASES = ("G1", "S", "G2M")
_SHEET_COLUMNS = ["sample", "patient", "timepoint", "population", "condition", "technology"]
_RIBOSOMAL = re.compile(r"^(RP[LS]\d+A?|RPLP[0-2]|RPSA|RPS4X|RPS4Y1)$")
#: chrY genes expressed in male blood cells at clearly detectable levels.
_Y_EXPRESSED = ["RPS4Y1", "DDX3Y", "EIF1AY", "KDM5D", "UTY", "USP9Y", "ZFY", "TXLNGY", "NLGN4Y"]
_CHROMOSOMES = [f"chr{i}" for i in range(1, 23)] + ["chrX", "chrY", "chrM"]
# Cells x genes entries per dense block (plate sampler): ~10 M float64 = 80 MB per temporary.
_DENSE_BLOCK = 10_000_000


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
        ``mito_fraction`` (expected share of mitochondrial counts).
    patients
        One row per patient and lesion: ``patient, condition, sex, lesion, chromosome, start, end``
        (bp, 0-based half-open), ``type, copy_ratio, n_genes`` (simulated genes inside), ``clone_logit_shift``.
        Patients of a normal condition have one row with empty lesion fields.
    params
        The fully resolved parameters used.
    """

    counts: dict[str, anndata.AnnData]
    index_sort: dict[str, pd.DataFrame]
    cells: pd.DataFrame
    patients: pd.DataFrame
    params: dict = field(default_factory=dict)


# ================================================================================================
# parameters
# ================================================================================================
def resolve_params(
    params: dict | None = None, *, samples: pd.DataFrame | None = None, root: str = "demo.params"
) -> dict:
    """Deep-merge user parameters over :data:`DEFAULT_PARAMS` and validate them.

    Dicts are merged key by key (lists and scalars replace the default), except each population's
    ``state_composition`` and ``cell_cycle.phase_fractions``, which replace the default as a whole
    (they must sum to 1).

    Parameters
    ----------
    params
        User parameters (the ``demo.params`` config block); ``None`` or ``{}`` for the defaults.
    samples
        Optional sample sheet: then every population needs a state composition and every
        (timepoint, population) of a non-normal donor a clone fraction.
    root
        Prefix of key paths in error messages.

    Returns
    -------
    dict
        A new dict with every key of :data:`DEFAULT_PARAMS`.

    Raises
    ------
    InputError
        Naming the key path, the value and what is allowed (e.g.
        ``demo.params.clone_fraction.remission.HSC: 1.4 is not a fraction in [0, 1]``), for unknown
        keys, wrong types, values out of range, or sheet rows the parameters do not cover.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InputError(f"must be a mapping of simulator parameters; got {type(params).__name__}.", where=root)
    resolved = _merge(copy.deepcopy(DEFAULT_PARAMS), params, (), root)
    _validate(resolved, root)
    if samples is not None:
        _check_sheet(samples, resolved, root)
    return resolved


def _merge(default: dict, user: Any, path: tuple, root: str) -> dict:
    """``user`` merged over ``default`` (both mappings); unknown keys raise unless the level is free-form."""
    if not isinstance(user, dict):
        raise InputError(f"{_fmt(user)} is of the wrong type; expected a mapping.", where=_key(root, path))
    free_form = _matches(path, _FREE_FORM)
    out = dict(default)
    for key, value in user.items():
        sub = (*path, key)
        if key not in default and not free_form:
            allowed = sorted(default)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}.", where=_key(root, path))
        if key in default and isinstance(default[key], dict) and not _matches(sub, _REPLACE_WHOLE):
            out[key] = _merge(default[key], value, sub, root)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _matches(path: tuple, patterns: set) -> bool:
    return any(len(q) == len(path) and all(a in ("*", b) for a, b in zip(q, path)) for q in patterns)


def _key(root: str, path: tuple) -> str:
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, Real):
        return f"{value:g}"
    return repr(value)


class _Checker:
    """Small typed accessors that raise InputError naming the key path."""

    def __init__(self, root: str):
        self.root = root

    def fail(self, path: tuple, message: str):
        raise InputError(message, where=_key(self.root, path))

    def mapping(self, value, path, keys: list | None = None):
        if not isinstance(value, dict):
            self.fail(path, f"{_fmt(value)} is of the wrong type; expected a mapping.")
        if keys is not None:
            unknown = [k for k in value if k not in keys]
            if unknown:
                close = difflib.get_close_matches(str(unknown[0]), [str(k) for k in keys], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(path, f"unknown key {unknown[0]!r}{hint}; allowed keys: {', '.join(map(str, keys))}.")
            missing = [k for k in keys if k not in value]
            if missing:
                self.fail(path, f"missing key(s) {missing}.")
        return value

    def number(self, value, path, lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False):
        ok_type = isinstance(value, Integral) if integer else isinstance(value, Real)
        if isinstance(value, bool) or not ok_type or (not integer and not np.isfinite(value)):
            self.fail(
                path, f"{_fmt(value)} is of the wrong type; expected {'an integer' if integer else 'a finite number'}."
            )
        below = lo is not None and (value <= lo if lo_open else value < lo)
        above = hi is not None and (value >= hi if hi_open else value > hi)
        if below or above:
            if lo == 0 and hi == 1 and not lo_open and not hi_open:
                self.fail(path, f"{_fmt(value)} is not a fraction in [0, 1].")
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            rng = f"{left}{_fmt(lo) if lo is not None else '-inf'}, {_fmt(hi) if hi is not None else 'inf'}{right}"
            self.fail(path, f"{_fmt(value)} is out of range; allowed {rng}.")
        return value

    def fraction(self, value, path):
        return self.number(value, path, 0, 1)

    def string(self, value, path, choices=None):
        if not isinstance(value, str) or not value:
            self.fail(path, f"{_fmt(value)} is of the wrong type; expected a non-empty string.")
        if choices is not None and value not in choices:
            self.fail(path, f"{value!r} is not allowed; choose one of {list(choices)}.")
        return value

    def strings(self, value, path, choices=None, *, min_items=0):
        if not isinstance(value, list):
            self.fail(path, f"{_fmt(value)} is of the wrong type; expected a list.")
        for i, item in enumerate(value):
            self.string(item, (*path, i), choices)
        if len(value) < min_items:
            self.fail(path, f"needs at least {min_items} item(s).")
        if len(set(value)) != len(value):
            self.fail(path, f"lists {sorted({v for v in value if value.count(v) > 1})} more than once.")
        return value

    def pair(self, value, path, lo=None, hi=None, *, integer=False):
        if not isinstance(value, list) or len(value) != 2:
            self.fail(path, f"{_fmt(value)} is not a [low, high] pair.")
        for i in range(2):
            self.number(value[i], (*path, i), lo, hi, integer=integer)
        if value[0] > value[1]:
            self.fail(path, f"low {_fmt(value[0])} is above high {_fmt(value[1])}.")
        return value

    def composition(self, value, path, states):
        self.mapping(value, path)
        if not value:
            self.fail(path, "is empty; give at least one state with its fraction.")
        for k, v in value.items():
            if k not in states:
                self.fail(
                    path, f"{k!r} is not allowed; choose among {list(states)} (add new states to `states` first)."
                )
            self.fraction(v, (*path, k))
        if abs(sum(value.values()) - 1) > 1e-3:
            self.fail(path, f"fractions sum to {sum(value.values()):.4g}; they must sum to 1.")


def _validate(p: dict, root: str) -> None:
    c = _Checker(root)
    c.strings(p["gene_types"], ("gene_types",), min_items=1)
    c.mapping(p["cells_per_sample"], ("cells_per_sample",), list(_TECHNOLOGIES))
    for tech in _TECHNOLOGIES:
        c.number(p["cells_per_sample"][tech], ("cells_per_sample", tech), 1, 1_000_000, integer=True)
    c.mapping(p["sample_cells"], ("sample_cells",))
    for sample, n in p["sample_cells"].items():
        c.number(n, ("sample_cells", sample), 1, 1_000_000, integer=True)
    c.mapping(p["library_size"], ("library_size",), list(_TECHNOLOGIES))
    for tech in _TECHNOLOGIES:
        lib = c.mapping(p["library_size"][tech], ("library_size", tech), ["median", "sdlog"])
        c.number(lib["median"], ("library_size", tech, "median"), 1, 1e9)
        c.number(lib["sdlog"], ("library_size", tech, "sdlog"), 0, 3)
    c.number(p["sample_library_sdlog"], ("sample_library_sdlog",), 0, 3)
    c.mapping(p["dispersion"], ("dispersion",), [*_TECHNOLOGIES, "gene_sdlog"])
    for tech in _TECHNOLOGIES:
        d = c.mapping(p["dispersion"][tech], ("dispersion", tech), ["phi0", "phi1"])
        c.number(d["phi0"], ("dispersion", tech, "phi0"), 0, 100)
        c.number(d["phi1"], ("dispersion", tech, "phi1"), 0, 10_000)
    c.number(p["dispersion"]["gene_sdlog"], ("dispersion", "gene_sdlog"), 0, 3)
    e = p["expression"]
    c.number(e["sdlog"], ("expression", "sdlog"), 0, 5)
    c.number(e["lncrna_log_shift"], ("expression", "lncrna_log_shift"), -10, 10)
    c.number(e["ribosomal_fraction"], ("expression", "ribosomal_fraction"), 0, 0.9)
    c.number(e["housekeeping_fraction"], ("expression", "housekeeping_fraction"), 0, 0.9)
    if e["ribosomal_fraction"] + e["housekeeping_fraction"] >= 0.95:
        c.fail(("expression",), "ribosomal_fraction + housekeeping_fraction must stay below 0.95.")
    c.strings(e["housekeeping_genes"], ("expression", "housekeeping_genes"))
    c.number(e["xist_fraction"], ("expression", "xist_fraction"), 0, 0.1)
    c.fraction(e["program_floor_quantile"], ("expression", "program_floor_quantile"))
    c.number(e["patient_sdlog"], ("expression", "patient_sdlog"), 0, 3)
    m = c.mapping(p["mito_fraction"], ("mito_fraction",), ["median", "sd_logit"])
    c.number(m["median"], ("mito_fraction", "median"), 0, 1, lo_open=True, hi_open=True)
    c.number(m["sd_logit"], ("mito_fraction", "sd_logit"), 0, 5)
    c.fraction(p["male_fraction"], ("male_fraction",))

    states = c.strings(p["states"], ("states",), min_items=1)
    c.mapping(p["state_composition"], ("state_composition",))
    for pop, comp in p["state_composition"].items():
        c.composition(comp, ("state_composition", pop), states)
    sp_ = p["state_programs"]
    c.number(sp_["marker_log2fc"], ("state_programs", "marker_log2fc"), 0, 10)
    c.number(sp_["n_genes"], ("state_programs", "n_genes"), 0, 5000, integer=True)
    c.fraction(sp_["candidate_quantile"], ("state_programs", "candidate_quantile"))
    c.number(sp_["log2fc_mean"], ("state_programs", "log2fc_mean"), 0, 10)
    c.number(sp_["log2fc_sd"], ("state_programs", "log2fc_sd"), 0, 5)
    c.fraction(sp_["up_fraction"], ("state_programs", "up_fraction"))

    cc = p["cell_cycle"]
    c.mapping(cc["cycling_probability"], ("cell_cycle", "cycling_probability"))
    for state in states:
        if state not in cc["cycling_probability"]:
            c.fail(
                ("cell_cycle", "cycling_probability"), f"has no entry for state {state!r}; add {state}: <probability>."
            )
    for state, prob in cc["cycling_probability"].items():
        c.fraction(prob, ("cell_cycle", "cycling_probability", state))
    c.composition(cc["phase_fractions"], ("cell_cycle", "phase_fractions"), list(_PHASES))
    for key in ("s_log2fc", "g2m_log2fc", "quiescence_log2fc"):
        c.number(cc[key], ("cell_cycle", key), -10, 10)
    for key in ("s_genes", "g2m_genes", "quiescence_genes"):
        c.string(cc[key], ("cell_cycle", key))
    c.mapping(cc["library_factor"], ("cell_cycle", "library_factor"), ["quiescent", *_PHASES])
    for key, value in cc["library_factor"].items():
        c.number(value, ("cell_cycle", "library_factor", key), 0, 100, lo_open=True)

    if not isinstance(p["lesions"], list):
        c.fail(("lesions",), f"{_fmt(p['lesions'])} is of the wrong type; expected a list of lesions.")
    names = []
    lesion_keys = ["name", "chromosome", "type", "copy_ratio", "proximal", "distal", "contains", "fraction_of_clone"]
    for i, lesion in enumerate(p["lesions"]):
        path = ("lesions", i)
        if isinstance(lesion, dict):  # optional keys get their defaults
            lesion.setdefault("contains", None)
            lesion.setdefault("fraction_of_clone", 1.0)
        c.mapping(lesion, path, lesion_keys)
        name = c.string(lesion["name"], (*path, "name"))
        if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            c.fail(
                (*path, "name"),
                f"{name!r} may only hold letters, digits, '_' and '.' (it names the truth column lesion_{name}).",
            )
        names.append(name)
        c.string(lesion["chromosome"], (*path, "chromosome"), _CHROMOSOMES[:-1])
        kind = c.string(lesion["type"], (*path, "type"), ["loss", "gain"])
        ratio = c.number(lesion["copy_ratio"], (*path, "copy_ratio"), 0, 10)
        if kind == "loss" and not ratio < 1:
            c.fail(
                (*path, "copy_ratio"), f"{_fmt(ratio)} is not below 1, as a loss needs (0.5: one of two copies lost)."
            )
        if kind == "gain" and not ratio > 1:
            c.fail((*path, "copy_ratio"), f"{_fmt(ratio)} is not above 1, as a gain needs (1.5: one extra copy).")
        prox = c.pair(lesion["proximal"], (*path, "proximal"), 0, 300 * _MB, integer=True)
        dist = c.pair(lesion["distal"], (*path, "distal"), 0, 300 * _MB, integer=True)
        lo_end, hi_start = prox[1], dist[0]
        if lesion["contains"] is not None:
            cont = c.pair(lesion["contains"], (*path, "contains"), 0, 300 * _MB, integer=True)
            if prox[0] > cont[0] or dist[1] < cont[1]:
                c.fail(
                    (*path, "contains"),
                    f"{cont} cannot lie inside the lesion: proximal breakpoints start at "
                    f"{prox[0]} and distal ones end at {dist[1]}.",
                )
            lo_end, hi_start = min(prox[1], cont[0]), max(dist[0], cont[1])
        if prox[0] >= dist[1] or lo_end >= max(hi_start, dist[1]):
            c.fail(path, f"proximal range {prox} must lie before distal range {dist}.")
        c.fraction(lesion["fraction_of_clone"], (*path, "fraction_of_clone"))
    if len(set(names)) != len(names):
        c.fail(("lesions",), f"lesion names must be unique; got {names}.")
    c.strings(p["normal_conditions"], ("normal_conditions",))
    c.mapping(p["clone_fraction"], ("clone_fraction",))
    for tp, pops in p["clone_fraction"].items():
        c.mapping(pops, ("clone_fraction", tp))
        for pop, frac in pops.items():
            c.fraction(frac, ("clone_fraction", tp, pop))
    c.number(p["clone_fraction_patient_sd"], ("clone_fraction_patient_sd",), 0, 10)
    c.string(p["clone_sampling"], ("clone_sampling",), ["bernoulli", "exact"])

    mods = cc["modifiers"]
    if not isinstance(mods, list):
        c.fail(("cell_cycle", "modifiers"), f"{_fmt(mods)} is of the wrong type; expected a list.")
    for i, mod in enumerate(mods):
        path = ("cell_cycle", "modifiers", i)
        if isinstance(mod, dict):
            mod.setdefault("timepoint", None)
            mod.setdefault("states", None)
        c.mapping(mod, path, ["lesion", "timepoint", "states", "odds_ratio"])
        c.string(mod["lesion"], (*path, "lesion"), names)
        if mod["timepoint"] is not None:
            c.string(mod["timepoint"], (*path, "timepoint"))
        if mod["states"] is not None:
            c.strings(mod["states"], (*path, "states"), states)
        c.number(mod["odds_ratio"], (*path, "odds_ratio"), 0, 1e6, lo_open=True)

    lq = c.mapping(p["low_quality"], ("low_quality",), ["fraction", "count_factor", "mito_fraction"])
    c.number(lq["fraction"], ("low_quality", "fraction"), 0, 0.5)
    c.pair(lq["count_factor"], ("low_quality", "count_factor"), 0.001, 1)
    c.pair(lq["mito_fraction"], ("low_quality", "mito_fraction"), 0, 0.99)
    d = c.mapping(p["doublets"], ("doublets",), ["rate", "heterotypic_fraction", "technologies"])
    c.number(d["rate"], ("doublets", "rate"), 0, 0.5)
    c.fraction(d["heterotypic_fraction"], ("doublets", "heterotypic_fraction"))
    c.strings(d["technologies"], ("doublets", "technologies"), list(_TECHNOLOGIES))
    ix = c.mapping(p["index_sort"], ("index_sort",), ["technologies", "markers", "sdlog10", "sample_sdlog10", "levels"])
    c.strings(ix["technologies"], ("index_sort", "technologies"), list(_TECHNOLOGIES))
    markers = c.strings(ix["markers"], ("index_sort", "markers"), min_items=1)
    c.number(ix["sdlog10"], ("index_sort", "sdlog10"), 0, 3)
    c.number(ix["sample_sdlog10"], ("index_sort", "sample_sdlog10"), 0, 3)
    c.mapping(ix["levels"], ("index_sort", "levels"))
    for state, levels in ix["levels"].items():
        c.mapping(levels, ("index_sort", "levels", state))
        for marker in markers:
            if marker not in levels:
                c.fail(
                    ("index_sort", "levels", state),
                    f"has no level for marker {marker!r}; add {marker}: <log10 intensity>.",
                )
        for marker, level in levels.items():
            c.number(level, ("index_sort", "levels", state, marker), -3, 9)


def _is_empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or value is pd.NA
        or str(value).strip() in ("", "NA", "nan", "None")
    )


def _check_sheet(samples: pd.DataFrame, p: dict, root: str) -> None:
    """Every row is covered by the parameters; messages name the sample row and what to add."""
    missing = [col for col in _SHEET_COLUMNS if col not in samples.columns]
    if missing:
        raise InputError(f"sample sheet lacks column(s) {missing}; it needs {_SHEET_COLUMNS}.", where="sample sheet")
    if samples["sample"].duplicated().any():
        dup = samples.loc[samples["sample"].duplicated(), "sample"].iloc[0]
        raise InputError(f"sample {dup!r} appears more than once; sample IDs must be unique.", where="sample sheet")
    normal = set(p["normal_conditions"])
    conditions = samples.groupby("patient")["condition"].agg(lambda x: sorted(set(map(str, x))))
    for patient, conds in conditions.items():
        if len(conds) > 1:
            raise InputError(
                f"patient {patient!r} has samples of conditions {conds}; a donor has one condition.",
                where="sample sheet",
            )
    for i, (_, row) in enumerate(samples.iterrows()):
        line = f"line {row['line']}" if "line" in samples.columns else f"row {i + 1}"
        where = f"sample sheet {line} (sample {row['sample']!r})"
        tech = str(row["technology"])
        if tech not in _TECHNOLOGIES:
            raise InputError(f"technology {tech!r} cannot be simulated; use one of {list(_TECHNOLOGIES)}.", where=where)
        pop = str(row["population"])
        if pop not in p["state_composition"]:
            raise InputError(
                f"population {pop!r} has no state composition; add {root}.state_composition.{pop}: "
                f"{{<state>: <fraction>, ...}} (states: {', '.join(p['states'])}).",
                where=where,
            )
        comp = p["state_composition"][pop]
        sorted_ = tech in p["index_sort"]["technologies"] or (
            "index_sort" in samples.columns and not _is_empty(row["index_sort"])
        )
        if sorted_:
            for state in comp:
                if state not in p["index_sort"]["levels"]:
                    raise InputError(
                        f"state {state!r} of population {pop!r} has no index-sort levels; add "
                        f"{root}.index_sort.levels.{state}: {{{', '.join(m + ': <log10>' for m in p['index_sort']['markers'])}}}.",
                        where=where,
                    )
        if str(row["condition"]) in normal or not p["lesions"]:
            continue
        tp = row["timepoint"]
        if _is_empty(tp):
            raise InputError(
                f"condition {row['condition']!r} is not normal (normal: {sorted(normal)}) but the timepoint is empty; "
                f"give a timepoint or add the condition to {root}.normal_conditions.",
                where=where,
            )
        tp = str(tp)
        if tp not in p["clone_fraction"] or pop not in p["clone_fraction"][tp]:
            raise InputError(
                f"no clone fraction for timepoint {tp!r} and population {pop!r}; add {root}.clone_fraction.{tp}.{pop}: <fraction>.",
                where=where,
            )


# ================================================================================================
# the gene model (cohort-wide)
# ================================================================================================
def in_interval(genes: pd.DataFrame, chromosome: str, start: int, end: int) -> np.ndarray:
    """Boolean mask of genes whose midpoint lies in ``[start, end)`` on ``chromosome``.

    This is the rule the simulator uses for "gene inside a lesion" (coordinates in bp, 0-based
    half-open, as in the annotation table).
    """
    mid = (genes["start"].to_numpy(np.int64) + genes["end"].to_numpy(np.int64)) // 2
    return (genes["chromosome"].to_numpy() == chromosome) & (mid >= start) & (mid < end)


class _GeneModel:
    """Cohort-wide gene parameters: baseline composition, dispersion, state and cycle programs."""

    def __init__(
        self, genes: pd.DataFrame, markers: dict, gene_sets: dict, p: dict, rng: np.random.Generator, root: str
    ):
        keep = genes["gene_type"].isin(p["gene_types"]) & genes["chromosome"].isin(_CHROMOSOMES)
        self.genes = genes.loc[keep].reset_index(drop=True)
        if self.genes.empty:
            raise InputError(
                f"no genes of types {p['gene_types']} on chr1-22, X, Y, M in the annotation.",
                where=f"{root}.gene_types",
            )
        g = self.genes
        n = len(g)
        symbols = g["gene_name"].astype(str).to_numpy()
        self.n = n
        self.mito = (g["chromosome"] == "chrM").to_numpy()
        self.chr_y = (g["chromosome"] == "chrY").to_numpy()
        self.ribo = np.array([bool(_RIBOSOMAL.match(s)) for s in symbols]) & ~self.mito
        hk = set(p["expression"]["housekeeping_genes"])
        self.housekeeping = np.isin(symbols, list(hk)) & ~self.ribo & ~self.mito
        self.xist = symbols == "XIST"
        self.housekeeping &= ~self.xist
        other = ~(self.mito | self.ribo | self.housekeeping | self.xist)
        first = pd.Series(np.arange(n), index=symbols)
        first = first[~first.index.duplicated()]  # symbol -> first gene with it

        def index_of(symbols_: list[str]) -> np.ndarray:
            return np.unique(first.reindex([s for s in symbols_ if s in first.index]).to_numpy(np.int64))

        e = p["expression"]
        # Baseline: log-normal (natural log); lncRNAs lower. Ribosomal and housekeeping genes get
        # fixed shares of the nuclear composition so that their (high) levels are realistic.
        logb = rng.normal(0.0, e["sdlog"], n)
        logb[(g["gene_type"] == "lncRNA").to_numpy()] += e["lncrna_log_shift"]
        # Most chrY genes are barely expressed in blood; only the broadly expressed X-Y pair genes
        # are clearly detected in male cells. Keep the rest below the baseline median.
        y_low = self.chr_y & ~np.isin(symbols, _Y_EXPRESSED)
        logb[y_low] = np.minimum(logb[y_low], np.median(logb) - 1.0)
        base = np.zeros(n)
        base[other] = np.exp(logb[other])
        # Marker, cycle and quiescence genes: floor at a baseline quantile, else an up-regulation
        # of a gene with a tiny baseline would stay invisible.
        cc = p["cell_cycle"]
        sets = {}
        for key in ("s_genes", "g2m_genes", "quiescence_genes"):
            name = cc[key]
            if name not in gene_sets:
                raise InputError(
                    f"gene set {name!r} is not among the gene sets given ({', '.join(sorted(gene_sets)) or 'none'}).",
                    where=f"{root}.cell_cycle.{key}",
                )
            idx = index_of(list(gene_sets[name]))
            if idx.size == 0:
                raise InputError(
                    f"none of the genes of set {name!r} is among the simulated genes.", where=f"{root}.cell_cycle.{key}"
                )
            sets[key] = idx
        self.state_markers = {}
        for state in p["states"]:
            if state not in markers:
                raise InputError(
                    f"state {state!r} has no marker genes in the marker table (it lists {', '.join(markers)}).",
                    where=f"{root}.states",
                )
            idx = index_of(list(markers[state]))
            if idx.size == 0:
                raise InputError(
                    f"none of the marker genes of state {state!r} is among the simulated genes.", where=f"{root}.states"
                )
            self.state_markers[state] = idx
        programmed = np.zeros(n, bool)
        for idx in [*sets.values(), *self.state_markers.values()]:
            programmed[idx] = True
        floor = np.quantile(base[other], e["program_floor_quantile"])
        raise_ = programmed & other
        base[raise_] = np.maximum(base[raise_], floor * np.exp(rng.normal(0, 0.3, raise_.sum())))
        base[other] *= (1 - e["ribosomal_fraction"] - e["housekeeping_fraction"]) / base[other].sum()
        if self.ribo.any():
            w = np.exp(rng.normal(0, 0.3, self.ribo.sum()))
            base[self.ribo] = e["ribosomal_fraction"] * w / w.sum()
        if self.housekeeping.any():
            w = np.exp(rng.normal(0, 0.5, self.housekeeping.sum()))
            base[self.housekeeping] = e["housekeeping_fraction"] * w / w.sum()
        self.log_base = np.log(np.where(base > 0, base, 1e-300))
        self.log_base[~(base > 0)] = -np.inf
        self.xist_fraction = e["xist_fraction"]
        # Mitochondrial genes: their own composition (MT-CO1, MT-ATP6 ... differ by a few fold).
        w = np.exp(rng.normal(0, 0.7, self.mito.sum()))
        self.mito_profile = w / w.sum() if w.size else w
        # Dispersion: one log-normal factor per gene, shared by the technologies.
        self.gene_dispersion = np.exp(rng.normal(0, p["dispersion"]["gene_sdlog"], n))

        # State effects (natural-log fold changes, genes x states as dict of sparse vectors).
        ln2 = np.log(2)
        sp_ = p["state_programs"]
        candidates = np.flatnonzero(
            other
            & ~programmed
            & (g["gene_type"] == "protein_coding").to_numpy()
            & (base >= np.quantile(base[other], sp_["candidate_quantile"]))
        )
        self.state_effect = {}
        for state in p["states"]:
            eff = np.zeros(n)
            k = min(sp_["n_genes"], candidates.size)
            chosen = rng.choice(candidates, size=k, replace=False) if k else np.array([], np.int64)
            size = np.abs(rng.normal(sp_["log2fc_mean"], sp_["log2fc_sd"], k))
            sign = np.where(rng.random(k) < sp_["up_fraction"], 1.0, -1.0)
            eff[chosen] = sign * size * ln2
            eff[self.state_markers[state]] = sp_["marker_log2fc"] * ln2
            self.state_effect[state] = eff
        self.s_genes = sets["s_genes"]
        self.g2m_genes = sets["g2m_genes"]
        self.quiescence_genes = sets["quiescence_genes"]
        self.cycle_effect = {}
        for phase, quiescent in (("G1", True), ("G1", False), ("S", False), ("G2M", False)):
            eff = np.zeros(n)
            if quiescent:
                eff[self.quiescence_genes] += cc["quiescence_log2fc"] * ln2
            elif phase == "S":
                eff[self.s_genes] += cc["s_log2fc"] * ln2
            elif phase == "G2M":
                eff[self.g2m_genes] += cc["g2m_log2fc"] * ln2
                # G2/M cells still carry some late-S transcripts.
                eff[self.s_genes] += 0.25 * cc["s_log2fc"] * ln2
            self.cycle_effect[(phase, quiescent)] = eff

    def var(self) -> pd.DataFrame:
        g = self.genes
        var = pd.DataFrame(
            {
                "gene_ids": g["gene_id_version"].astype(str).to_numpy(),
                "gene_symbols": g["gene_name"].astype(str).to_numpy(),
            },
            index=pd.Index(g["gene_name"].astype(str).to_numpy()),
        )
        return var


class _Patient:
    """Per-patient draws: sex, gene effect, lesion intervals; caches profiles."""

    def __init__(self, name: str, condition: str, model: _GeneModel, p: dict, rng: np.random.Generator):
        self.name = name
        self.condition = condition
        self.model = model
        self.male = bool(rng.random() < p["male_fraction"])
        self.effect = rng.normal(0, p["expression"]["patient_sdlog"], model.n)
        self.lesions = []  # (name, chromosome, start, end, type, ratio, mask, fraction_of_clone)
        self.carrier = condition not in p["normal_conditions"]
        self.clone_shift = (
            float(rng.normal(0, p["clone_fraction_patient_sd"])) if p["clone_fraction_patient_sd"] > 0 else 0.0
        )
        if self.carrier:
            for lesion in p["lesions"]:
                prox, dist, cont = lesion["proximal"], lesion["distal"], lesion["contains"]
                lo_hi = min(prox[1], cont[0]) if cont else prox[1]
                hi_lo = max(dist[0], cont[1]) if cont else dist[0]
                start = int(rng.integers(prox[0], lo_hi + 1))
                end = int(rng.integers(max(hi_lo, start + 1), dist[1] + 1))
                mask = in_interval(model.genes, lesion["chromosome"], start, end)
                self.lesions.append(
                    (
                        lesion["name"],
                        lesion["chromosome"],
                        start,
                        end,
                        lesion["type"],
                        float(lesion["copy_ratio"]),
                        mask,
                        float(lesion["fraction_of_clone"]),
                    )
                )
        log_base = model.log_base.copy()
        if self.male:
            log_base[model.xist] = -np.inf
        else:
            log_base[model.chr_y] = -np.inf
            log_base[model.xist] = np.log(model.xist_fraction) if model.xist_fraction > 0 else -np.inf
        self.log_base = log_base + self.effect
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def profile(
        self, state: str, phase: str, quiescent: bool, carried: tuple[bool, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nuclear expression composition (genes,; mito genes 0) and its cumulative sum."""
        key = (state, phase, quiescent, carried)
        if key not in self._cache:
            m = self.model
            logp = self.log_base + m.state_effect[state] + m.cycle_effect[(phase, quiescent)]
            logp[m.mito] = -np.inf
            prof = np.exp(logp - np.max(logp))
            prof /= prof.sum()
            # Lesions after normalisation: a del cell has fewer 5q transcripts, not more of the rest.
            for (_, _, _, _, _, ratio, mask, _), has in zip(self.lesions, carried):
                if has:
                    prof = prof.copy()
                    prof[mask] *= ratio
            self._cache[key] = (prof, np.cumsum(prof))
        return self._cache[key]


# ================================================================================================
# negative binomial samplers
# ================================================================================================
def _sample_nb_dense(rng: np.random.Generator, mu: np.ndarray, dispersion: np.ndarray, phi1: float) -> np.ndarray:
    """Gamma-Poisson counts for a dense block.

    Parameters
    ----------
    mu
        Means, shape (cells, genes).
    dispersion
        Per-gene quadratic dispersion ``phi0 * g``, shape (genes,).
    phi1
        Linear overdispersion term.

    Returns
    -------
    numpy.ndarray
        int64 counts of the shape of ``mu``; ``var = mu + (dispersion * mu + phi1) * mu``.
    """
    x = mu * dispersion[None, :] + phi1
    rate = mu.copy()
    nb = x > 0
    # Gamma(shape = mu / x, scale = x) has mean mu and variance x * mu.
    rate[nb] = rng.standard_gamma(mu[nb] / x[nb]) * x[nb]
    return rng.poisson(rate)


def _sample_nb_sparse(
    rng: np.random.Generator,
    profile: np.ndarray,
    cumsum: np.ndarray,
    lib: np.ndarray,
    dispersion: np.ndarray,
    phi1: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact negative-binomial counts for cells sharing one expression profile, in sparse form.

    Each count is NB with mean ``mu = lib[c] * profile[g]`` and ``x = dispersion[g] * mu + phi1``,
    i.e. a compound Poisson sum of logarithmic(q = x / (1 + x)) cluster sizes with Poisson rate
    ``mu * log1p(x) / x``. The cluster events are drawn by thinning a Poisson process of rate
    ``mu * a_max`` spread over genes in proportion to ``profile``, so the cost grows with the
    number of counts, not with cells x genes (a 3,000-UMI cell costs ~3,000 draws, not 40,000).

    Returns
    -------
    (cell, gene, count)
        Integer arrays; (cell, gene) may repeat (sum them, as ``tocsr`` does).
    """
    total = cumsum[-1]
    a_max = np.log1p(phi1) / phi1 if phi1 > 0 else 1.0
    n_events = rng.poisson(lib * total * a_max)
    n_all = int(n_events.sum())
    if n_all == 0:
        e = np.empty(0, np.int64)
        return e, e, e
    cell = np.repeat(np.arange(lib.size), n_events)
    # Sorted uniforms within each cell (normalised exponential spacings): sorted search keys make
    # searchsorted several times faster than random ones.
    spacing = rng.standard_exponential(n_all + lib.size)
    seg = np.repeat(np.arange(lib.size), n_events + 1)
    csum = np.cumsum(spacing)
    ends = np.cumsum(n_events + 1) - 1
    before = np.concatenate([[0.0], csum[ends[:-1]]])
    seg_total = csum[ends] - before
    last = np.zeros(n_all + lib.size, bool)
    last[ends] = True
    u = (csum[~last] - before[seg[~last]]) / seg_total[seg[~last]]
    gene = np.searchsorted(cumsum, u * total, side="right")
    np.minimum(gene, cumsum.size - 1, out=gene)
    mu = lib[cell] * profile[gene]
    x = mu * dispersion[gene] + phi1
    small = x < 1e-8
    accept = np.where(small, 1.0 - x / 2, np.log1p(x) / np.where(small, 1.0, x)) / a_max
    keep = rng.random(n_all) < accept
    cell, gene, x = cell[keep], gene[keep], x[keep]
    count = rng.logseries(x / (1.0 + x))
    return cell, gene, count.astype(np.int64)


# ================================================================================================
# the cohort
# ================================================================================================
def _child_rng(seed: int, tag: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), tag, zlib.crc32(str(name).encode())])


def _droplet_barcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    codes = np.empty(0, np.int64)
    while codes.size < n:
        more = rng.integers(0, 4**16, size=n + 16, dtype=np.int64)
        codes = pd.unique(np.concatenate([codes, more]))
    codes = codes[:n]
    digits = (codes[:, None] >> (2 * np.arange(15, -1, -1))[None, :]) & 3
    letters = np.array(list("ACGT"))[digits]
    return np.array(["".join(row) + "-1" for row in letters])


def _plate_barcodes(n: int) -> np.ndarray:
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]
    return np.array([f"plate{i // 96 + 1}_{wells[i % 96]}" for i in range(n)])


def _draw_cycle(rng, states, carried, lesion_names, timepoint, p):
    cc = p["cell_cycle"]
    prob = np.array([cc["cycling_probability"][s] for s in states], float)
    for mod in cc["modifiers"]:
        if mod["timepoint"] is not None and mod["timepoint"] != timepoint:
            continue
        j = lesion_names.index(mod["lesion"])
        hit = carried[:, j].copy()
        if mod["states"] is not None:
            hit &= np.isin(states, mod["states"])
        odds = prob[hit] / np.maximum(1 - prob[hit], 1e-12) * mod["odds_ratio"]
        prob[hit] = np.where(np.isfinite(odds), odds / (1 + odds), 1.0)
    cycling = rng.random(states.size) < prob
    fr = cc["phase_fractions"]
    names = [ph for ph in _PHASES if ph in fr]
    w = np.array([fr[ph] for ph in names], float)
    phase = np.array(names)[rng.choice(len(names), size=states.size, p=w / w.sum())]
    phase = np.where(cycling, phase, "G1")
    return phase, ~cycling


def _simulate_sample(row: pd.Series, patient: _Patient, model: _GeneModel, p: dict, seed: int, index_sorted: bool):
    rng = _child_rng(seed, 2, row["sample"])
    tech = row["technology"]
    sample = row["sample"]
    n = int(p["sample_cells"].get(sample, p["cells_per_sample"][tech]))
    dbl = p["doublets"]
    n_dbl = int(round(dbl["rate"] * n)) if tech in dbl["technologies"] and n >= 2 else 0
    n_single = n - n_dbl
    n_comp = n_single + 2 * n_dbl
    comp = p["state_composition"][row["population"]]
    comp_states = np.array(list(comp))
    w = np.array(list(comp.values()), float)
    w /= w.sum()

    # -- states: singlets and doublet components (the second one mostly of another state) --------
    states = comp_states[rng.choice(comp_states.size, size=n_comp, p=w)]
    if n_dbl:
        first, second = np.arange(n_single, n_single + n_dbl), np.arange(n_single + n_dbl, n_comp)
        hetero = rng.random(n_dbl) < dbl["heterotypic_fraction"]
        for k, (i, j) in enumerate(zip(first, second)):
            others = comp_states != states[i]
            if hetero[k] and others.any():
                ww = w * others
                states[j] = comp_states[rng.choice(comp_states.size, p=ww / ww.sum())]
            else:
                states[j] = states[i]

    # -- lesions ----------------------------------------------------------------------------------
    lesion_names = [lesion["name"] for lesion in p["lesions"]]
    carried = np.zeros((n_comp, len(lesion_names)), bool)
    if patient.carrier and patient.lesions:
        f = float(p["clone_fraction"][str(row["timepoint"])][row["population"]])
        if patient.clone_shift and 0 < f < 1:
            f = float(1 / (1 + np.exp(-(np.log(f / (1 - f)) + patient.clone_shift))))
        in_clone = rng.random(n_comp) < f
        if p["clone_sampling"] == "exact":
            in_clone[:n_single] = False
            in_clone[rng.permutation(n_single)[: int(round(f * n_single))]] = True
        for j, (_, _, _, _, _, _, _, frac) in enumerate(patient.lesions):
            carried[:, j] = in_clone & (rng.random(n_comp) < frac)

    # -- cell cycle, quality, library sizes ----------------------------------------------------------
    phase, quiescent = _draw_cycle(rng, states, carried, lesion_names, str(row["timepoint"]), p)
    low_quality = np.zeros(n_comp, bool)
    low_quality[:n_single] = rng.random(n_single) < p["low_quality"]["fraction"]
    lib_p = p["library_size"][tech]
    sample_shift = np.exp(rng.normal(0, p["sample_library_sdlog"]))
    lib = lib_p["median"] * sample_shift * np.exp(rng.normal(0, lib_p["sdlog"], n_comp))
    lf = p["cell_cycle"]["library_factor"]
    lib *= np.where(quiescent, lf["quiescent"], np.array([lf[ph] for ph in phase]))
    lo, hi = p["low_quality"]["count_factor"]
    lib[low_quality] *= rng.uniform(lo, hi, low_quality.sum())
    mf = p["mito_fraction"]
    logit = np.log(mf["median"] / (1 - mf["median"])) + rng.normal(0, mf["sd_logit"], n_comp)
    mito = 1 / (1 + np.exp(-logit))
    lo, hi = p["low_quality"]["mito_fraction"]
    mito[low_quality] = rng.uniform(lo, hi, low_quality.sum())

    # -- counts ---------------------------------------------------------------------------------------
    disp = p["dispersion"][tech]
    dispersion = disp["phi0"] * model.gene_dispersion
    phi1 = float(disp["phi1"])
    nuclear_lib = lib * (1 - mito)
    keys = list(zip(states.tolist(), phase.tolist(), quiescent.tolist(), map(tuple, carried.tolist())))
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    a_max = np.log1p(phi1) / phi1 if phi1 > 0 else 1.0
    sparse_ok = np.median(nuclear_lib) * a_max < 0.5 * model.n
    rows, cols, vals = [], [], []
    if sparse_ok:
        for key, members in groups.items():
            members = np.asarray(members)
            prof, cums = patient.profile(*key)
            c, g, v = _sample_nb_sparse(rng, prof, cums, nuclear_lib[members], dispersion, phi1)
            rows.append(members[c])
            cols.append(g)
            vals.append(v)
    else:
        # Dense gamma-Poisson in blocks of cells (never a dense cohort, nor a dense sample).
        block = max(1, _DENSE_BLOCK // model.n)
        profiles = {key: patient.profile(*key)[0] for key in groups}
        for start in range(0, n_comp, block):
            idx = np.arange(start, min(start + block, n_comp))
            mu = np.stack([profiles[keys[i]] for i in idx]) * nuclear_lib[idx, None]
            dense = _sample_nb_dense(rng, mu, dispersion, phi1)
            r, g = np.nonzero(dense)
            rows.append(idx[r])
            cols.append(g)
            vals.append(dense[r, g])
    mito_idx = np.flatnonzero(model.mito)
    if mito_idx.size:
        mu = (lib * mito)[:, None] * model.mito_profile[None, :]
        dense = _sample_nb_dense(rng, mu, dispersion[mito_idx], phi1)
        r, g = np.nonzero(dense)
        rows.append(r)
        cols.append(mito_idx[g])
        vals.append(dense[r, g])
    counts = sp.coo_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n_comp, model.n)
    ).tocsr()

    # -- index sort intensities (per component; doublets: the two cells' light adds up) ----------------
    facs = None
    if index_sorted:
        ix = p["index_sort"]
        shift = rng.normal(0, ix["sample_sdlog10"], len(ix["markers"]))
        level = np.array([[ix["levels"][s][m] for m in ix["markers"]] for s in states])
        facs = 10 ** (level + shift[None, :] + rng.normal(0, ix["sdlog10"], level.shape))

    # -- doublets: the sum of two cells --------------------------------------------------------------
    single = np.arange(n_single)
    first = np.arange(n_single, n_single + n_dbl)
    second = np.arange(n_single + n_dbl, n_comp)
    if n_dbl:
        combine = sp.csr_matrix(
            (
                np.ones(n_single + 2 * n_dbl, np.float32),
                (
                    np.concatenate([single, n_single + np.arange(n_dbl), n_single + np.arange(n_dbl)]),
                    np.concatenate([single, first, second]),
                ),
            ),
            shape=(n, n_comp),
        )
        counts = (combine @ counts).tocsr()
        if facs is not None:
            facs = np.vstack([facs[single], facs[first] + facs[second]])
    counts.sum_duplicates()
    counts.sort_indices()

    def pair(values: np.ndarray) -> np.ndarray:
        a, b = values[first].astype(str), values[second].astype(str)
        order_ = {s: k for k, s in enumerate(p["states"] + list(_PHASES))}
        joined = [x if x == y else "+".join(sorted((x, y), key=lambda s: order_.get(s, 99))) for x, y in zip(a, b)]
        return np.concatenate([values[single].astype(str), np.array(joined, dtype=str)])

    truth = pd.DataFrame(
        {
            "state": pair(states),
            "cell_cycle_phase": pair(phase),
            "quiescent": np.concatenate([quiescent[single], quiescent[first] & quiescent[second]]),
        }
    )
    for j, name in enumerate(lesion_names):
        truth[f"lesion_{name}"] = np.concatenate([carried[single, j], carried[first, j] | carried[second, j]])
    truth["doublet"] = np.arange(n) >= n_single
    truth["low_quality"] = np.concatenate([low_quality[single], np.zeros(n_dbl, bool)])
    truth["mito_fraction"] = np.concatenate(
        [mito[single], (lib[first] * mito[first] + lib[second] * mito[second]) / (lib[first] + lib[second])]
    ).round(4)

    # -- barcodes; droplet rows in barcode order (like CellRanger), plate cells fill the wells ---------
    if tech == "droplet":
        barcodes = _droplet_barcodes(rng, n)
        order = np.argsort(barcodes, kind="stable")
    else:
        perm = rng.permutation(n)  # doublets/low-quality cells are not all at the end of the plate
        barcodes = np.empty(n, dtype=object)
        barcodes[perm] = _plate_barcodes(n)
        barcodes = barcodes.astype(str)
        order = perm  # row k is the cell in well k
    counts = counts[order]
    barcodes = barcodes[order]
    truth = truth.iloc[order].reset_index(drop=True)
    truth.insert(0, "barcode", barcodes)
    truth["total_counts"] = np.asarray(counts.sum(axis=1)).ravel().astype(np.int64)
    with warnings.catch_warnings():  # gene symbols repeat, as in 10x features files
        warnings.filterwarnings("ignore", message=".*names are not unique", category=UserWarning)
        adata = anndata.AnnData(X=counts, obs=pd.DataFrame(index=pd.Index(barcodes)), var=model.var())
    index_table = None
    if facs is not None:
        index_table = pd.DataFrame(
            facs[order], index=pd.Index(barcodes, name="barcode"), columns=p["index_sort"]["markers"]
        )
    return adata, truth, index_table


def simulate_cohort(
    samples: pd.DataFrame,
    genes: pd.DataFrame,
    markers: dict[str, list[str]],
    gene_sets: dict[str, list[str]],
    params: dict | None = None,
    seed: int = 0,
    write: Callable[[str, anndata.AnnData, pd.DataFrame | None], None] | None = None,
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
    p = resolve_params(params, samples=samples)
    sheet = samples.reset_index(drop=True).copy()
    for col in _SHEET_COLUMNS:
        sheet[col] = [("" if _is_empty(v) else str(v)) if col == "timepoint" else str(v) for v in sheet[col]]
    model = _GeneModel(genes, markers, gene_sets, p, np.random.default_rng([int(seed), 0]), "demo.params")
    patients: dict[str, _Patient] = {}
    for name, condition in sheet.groupby("patient", sort=False)["condition"].first().items():
        patients[name] = _Patient(name, condition, model, p, _child_rng(seed, 1, name))

    counts, index_sort, truths = {}, {}, []
    for _, row in sheet.iterrows():
        index_sorted = row["technology"] in p["index_sort"]["technologies"] or (
            "index_sort" in sheet.columns and not _is_empty(row["index_sort"])
        )
        adata, truth, facs = _simulate_sample(row, patients[row["patient"]], model, p, seed, index_sorted)
        if write is not None:
            write(row["sample"], adata, facs)
            del adata
        else:
            counts[row["sample"]] = adata
            if facs is not None:
                index_sort[row["sample"]] = facs
        meta = pd.DataFrame({col: row[col] for col in _SHEET_COLUMNS}, index=truth.index)
        truths.append(pd.concat([meta, truth], axis=1))
    columns = [
        *_SHEET_COLUMNS[:1],
        "barcode",
        *_SHEET_COLUMNS[1:],
        "state",
        "cell_cycle_phase",
        "quiescent",
        *[f"lesion_{lesion['name']}" for lesion in p["lesions"]],
        "doublet",
        "low_quality",
        "total_counts",
        "mito_fraction",
    ]
    cells = pd.concat(truths, ignore_index=True)[columns]

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
    patients_table = pd.DataFrame(rows)
    patients_table["start"] = patients_table["start"].astype("Int64")
    patients_table["end"] = patients_table["end"].astype("Int64")
    return SimulatedCohort(counts=counts, index_sort=index_sort, cells=cells, patients=patients_table, params=p)
