"""The simulator's parameters: their defaults, and their checks against the parameter schema.

:data:`DEFAULT_PARAMS` holds every parameter with its default; ``config/schemas/demo.schema.yaml``
(the ``demo.params`` block of the workflow config) says what each means and which types, ranges and
choices are allowed. :func:`resolve_params` merges user values over the defaults, validates the
result against that schema (with the workflow config's validator, :mod:`remnant._schema`: one line
per problem naming the key, the value and what is allowed) and adds the few checks a schema cannot express, between keys
(fractions that must sum to 1, states that need an entry elsewhere, breakpoint ranges).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from remnant._schema import load_yaml, validate_against
from remnant.errors import InputError

__all__ = ["DEFAULT_PARAMS", "SCHEMA", "resolve_params"]

_MB = 1_000_000

#: Every simulator parameter with its default. :data:`SCHEMA` documents each key (the
#: ``demo.params`` block of the workflow config) with the same defaults; :func:`resolve_params` merges
#: user values over these and validates them. Fold changes are log2; ``sdlog`` values are standard deviations of
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
    # -- confounders (remnant.sim.confounders) -----------------------------------------------------
    # What real marrow has besides copy number, built into each cell's expected expression; on by
    # default with realistic magnitudes ({enabled: false} switches all four off).
    "confounders": {
        "enabled": True,
        # Per patient (or condition) n_genes genes x 4-16 (log2fc range, log-uniform), up or down,
        # in every cell of the patient, carrier or not; drawn genome-wide (some inside the lesion by
        # chance) unless in_lesions places exactly that many inside the lesions' widest ranges.
        "disease_programme": {
            "n_genes": 300,
            "per": "patient",
            "log2fc": [2.0, 4.0],
            "up_fraction": 0.5,
            "candidate_quantile": 0.7,
            "in_lesions": None,
            "in_lesions_direction": "both",
        },
        # A gene family holding a share of a cell's nuclear counts (erythroid contamination).
        "dominant_transcripts": {
            "families": [
                {
                    "name": "haemoglobin",
                    "genes": {"HBB": 0.6, "HBA2": 0.25, "HBA1": 0.15},
                    "cell_fraction": 0.15,
                    "normal_cell_fraction": 0.0,
                    "share": [0.2, 0.6],
                }
            ]
        },
        # Immediate-early genes raised to a baseline floor, then x 2 ** N(0, sd) per sample (handling).
        "immediate_early": {
            "genes": ["EGR1", "FOS", "FOSB", "JUN", "JUNB", "IER2", "IER3", "DUSP1", "NR4A1", "ZFP36", "KLF6", "ATF3"],
            "floor_quantile": 0.95,
            "sample_log2fc_sd": 1.0,
        },
        # Cells of another type in patient samples: their own programme and state label, never carriers.
        "other_type": {
            "fraction": 0.05,
            "label": "OTHER",
            "n_genes": 600,
            "log2fc": 3.0,
            "up_fraction": 0.5,
            "candidate_quantile": 0.5,
            "cycling_probability": 0.2,
            "index_sort_levels": {"CD34": 2.2, "CD38": 3.0, "CD90": 1.8, "CD45RA": 2.6},
        },
    },
    # -- allele counts (remnant.sim.alleles) ---------------------------------------------------------
    # Reads at heterozygous germline SNPs per cell (cellsnp-lite layout), drawn from the simulated
    # counts: in the lesions' widest ranges and a control region; off by default.
    "alleles": {
        "enabled": False,
        "sites_per_gene": 1.0,  # mean (Poisson) heterozygous SNPs per eligible gene
        "min_expression_quantile": 0.2,  # genes below this baseline quantile get no sites
        # allele reads per expression UMI (read for plate) in a region (10x 3': ~0.06; full-length more)
        "reads_per_umi": {"droplet": 0.06, "plate": 0.25},
        # Beta(a, a) haplotype share per (cell, gene) of a normal cell: bursting (small a: monoallelic)
        "burst_concentration": {"droplet": 2.0, "plate": 0.3},
        "error_rate": 0.01,  # a read shows the other allele
        # share of a person's genes with sites expressing one haplotype more in every cell (allele-specific
        # expression: normal share uniform in [0.1, 0.3] or [0.7, 0.9]); 0: every gene balanced
        "imbalanced_genes": 0.0,
        "control": {"chromosome": "chr2", "start": 100 * _MB, "end": 180 * _MB},
        # the patients whose samples get allele data (None: every patient); the rest have none
        "patients": None,
        # the samples the workflow's demo writes as BAMs (reads, for rule count_alleles) instead of
        # cellsnp-lite folders; each must have allele data
        "bam_samples": [],
    },
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

#: The parameters' JSON schema: types, ranges, choices, defaults and what each key means. The
#: library runs from the workflow's checkout (the scripts put its src/ on sys.path), so this is the
#: checkout's copy, the one config/README.md points users to.
SCHEMA = Path(__file__).resolve().parents[3] / "config" / "schemas" / "demo.schema.yaml"

#: Parameter paths whose value replaces the default as a whole instead of being merged key by key
#: (compositions must sum to 1: merging a user's {HSC: 1.0} into the default would not).
_REPLACE_WHOLE = {("state_composition", "*"), ("cell_cycle", "phase_fractions")}

TECHNOLOGIES = ("droplet", "plate")
PHASES = ("G1", "S", "G2M")
#: Sample-sheet columns the simulator reads (and copies into the truth table, in this order).
SHEET_COLUMNS = ["sample", "patient", "timepoint", "population", "condition", "technology"]


def resolve_params(
    params: dict | None = None,
    *,
    samples: pd.DataFrame | None = None,
    root: str = "params",
    schema: str | Path = SCHEMA,
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
        Prefix of key paths in error messages: where the parameters come from (the workflow passes
        its config key).
    schema
        The parameter schema (:data:`SCHEMA`).

    Returns
    -------
    dict
        A new dict with every key of :data:`DEFAULT_PARAMS` (and each lesion's and cycling
        modifier's optional keys filled with the schema's defaults).

    Raises
    ------
    InputError
        Naming the key path, the value and what is allowed (e.g.
        ``params.clone_fraction.remission.HSC: 1.4 is out of range; it must be at most 1.``), for
        unknown keys, wrong types, values out of range, or sheet rows the parameters do not cover.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InputError(f"must be a mapping of simulator parameters; got {type(params).__name__}.", where=root)
    resolved = _merge(copy.deepcopy(DEFAULT_PARAMS), params, ())
    rules = _load_schema(str(schema))
    _fill_item_defaults(resolved["lesions"], rules["properties"]["lesions"])
    _fill_item_defaults(
        resolved["cell_cycle"]["modifiers"], rules["properties"]["cell_cycle"]["properties"]["modifiers"]
    )
    _fill_item_defaults(
        (resolved.get("confounders") or {}).get("dominant_transcripts", {}).get("families"),
        rules["properties"]["confounders"]["properties"]["dominant_transcripts"]["properties"]["families"],
    )
    # numpy scalars are numbers to the simulator (and were accepted before the schema): validate
    # them as the Python numbers they equal; the merged dict is complete, so nothing is filled in
    validate_against(_plain(resolved), rules, source=None, root=root)
    _check_finite(resolved, root)
    _check_across_keys(resolved, root)
    if samples is not None:
        _check_sheet(samples, resolved, root)
        _check_allele_patients(samples, resolved, root)
    return resolved


@functools.lru_cache(maxsize=4)
def _load_schema(path: str) -> dict:
    return load_yaml(path)


def _merge(default: dict, user: dict, path: tuple) -> dict:
    """``user`` merged over ``default`` (both mappings), key by key where both values are mappings.

    Keys the defaults lack are copied as they are: the schema says which keys are allowed.
    """
    out = dict(default)
    for key, value in user.items():
        sub = (*path, key)
        mergeable = isinstance(default.get(key), dict) and isinstance(value, dict)
        if mergeable and not _matches(sub, _REPLACE_WHOLE):
            out[key] = _merge(default[key], value, sub)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _matches(path: tuple, patterns: set) -> bool:
    return any(len(q) == len(path) and all(a in ("*", b) for a, b in zip(q, path)) for q in patterns)


def _fill_item_defaults(items: Any, array_schema: Mapping) -> None:
    """Optional keys of each item of a list (lesions, cycling modifiers) get the schema's default, in place."""
    if not isinstance(items, list):
        return  # the schema names the wrong type
    for item in items:
        if isinstance(item, dict):
            for key, sub in array_schema["items"]["properties"].items():
                if "default" in sub:
                    item.setdefault(key, copy.deepcopy(sub["default"]))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


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


def _fail(root: str, path: tuple, message: str):
    raise InputError(message, where=_key(root, path))


# ------------------------------------------------------------------------------------------------
# what the schema cannot say
# ------------------------------------------------------------------------------------------------
def _check_finite(value: Any, root: str, path: tuple = ()) -> None:
    """No NaN: a schema's bounds let NaN through (every comparison with it is false)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, root, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, root, (*path, i))
    elif isinstance(value, Real) and not isinstance(value, bool) and not math.isfinite(value):
        _fail(root, path, f"{_fmt(value)} is of the wrong type; expected a finite number.")


def _check_across_keys(p: dict, root: str) -> None:
    """The checks between keys, in the order of the parameters; the first problem raises."""
    e = p["expression"]
    if e["ribosomal_fraction"] + e["housekeeping_fraction"] >= 0.95:
        _fail(root, ("expression",), "ribosomal_fraction + housekeeping_fraction must stay below 0.95.")
    states = p["states"]
    for pop, comp in p["state_composition"].items():
        _check_composition(comp, ("state_composition", pop), states, root)
    cc = p["cell_cycle"]
    for state in states:
        if state not in cc["cycling_probability"]:
            _fail(
                root,
                ("cell_cycle", "cycling_probability"),
                f"has no entry for state {state!r}; add {state}: <probability>.",
            )
    _check_composition(cc["phase_fractions"], ("cell_cycle", "phase_fractions"), list(PHASES), root)
    names = [lesion["name"] for lesion in p["lesions"]]
    for i, lesion in enumerate(p["lesions"]):
        _check_lesion(lesion, ("lesions", i), root)
    if len(set(names)) != len(names):
        _fail(root, ("lesions",), f"lesion names must be unique; got {names}.")
    for i, mod in enumerate(cc["modifiers"]):
        _check_modifier(mod, ("cell_cycle", "modifiers", i), names, states, root)
    for key in ("count_factor", "mito_fraction"):
        _check_pair(p["low_quality"][key], ("low_quality", key), root)
    _check_index_levels(p["index_sort"], root)
    _check_confounders(p, root)
    _check_alleles(p, root)


def _check_composition(comp: dict, path: tuple, states: list, root: str) -> None:
    """Fractions of known states that sum to 1."""
    for state in comp:
        if state not in states:
            _fail(
                root, path, f"{state!r} is not allowed; choose among {list(states)} (add new states to `states` first)."
            )
    if abs(sum(comp.values()) - 1) > 1e-3:
        _fail(root, path, f"fractions sum to {sum(comp.values()):.4g}; they must sum to 1.")


def _check_pair(pair: list, path: tuple, root: str) -> None:
    if pair[0] > pair[1]:
        _fail(root, path, f"low {_fmt(pair[0])} is above high {_fmt(pair[1])}.")


def _check_lesion(lesion: dict, path: tuple, root: str) -> None:
    """The copy ratio fits the type; the breakpoint ranges are ordered and hold ``contains``."""
    kind, ratio = lesion["type"], lesion["copy_ratio"]
    if kind == "loss" and not ratio < 1:
        _fail(
            root, (*path, "copy_ratio"), f"{_fmt(ratio)} is not below 1, as a loss needs (0.5: one of two copies lost)."
        )
    if kind == "gain" and not ratio > 1:
        _fail(root, (*path, "copy_ratio"), f"{_fmt(ratio)} is not above 1, as a gain needs (1.5: one extra copy).")
    prox, dist, cont = lesion["proximal"], lesion["distal"], lesion["contains"]
    _check_pair(prox, (*path, "proximal"), root)
    _check_pair(dist, (*path, "distal"), root)
    lo_end, hi_start = prox[1], dist[0]
    if cont is not None:
        _check_pair(cont, (*path, "contains"), root)
        if prox[0] > cont[0] or dist[1] < cont[1]:
            _fail(
                root,
                (*path, "contains"),
                f"{cont} cannot lie inside the lesion: proximal breakpoints start at "
                f"{prox[0]} and distal ones end at {dist[1]}.",
            )
        lo_end, hi_start = min(prox[1], cont[0]), max(dist[0], cont[1])
    if prox[0] >= dist[1] or lo_end >= max(hi_start, dist[1]):
        _fail(root, path, f"proximal range {prox} must lie before distal range {dist}.")


def _check_modifier(mod: dict, path: tuple, lesions: list, states: list, root: str) -> None:
    """A cycling modifier names a simulated lesion and simulated states."""
    if mod["lesion"] not in lesions:
        _fail(root, (*path, "lesion"), f"{mod['lesion']!r} is not allowed; choose one of {lesions}.")
    for i, state in enumerate(mod["states"] or []):
        if state not in states:
            _fail(root, (*path, "states", i), f"{state!r} is not allowed; choose one of {list(states)}.")


def _check_confounders(c_p: dict, root: str) -> None:
    """Ranges in order, the other type's label new and its index-sort levels complete, family shares below 1."""
    c, path = c_p["confounders"], ("confounders",)
    _check_pair(c["disease_programme"]["log2fc"], (*path, "disease_programme", "log2fc"), root)
    for i, fam in enumerate(c["dominant_transcripts"]["families"]):
        _check_pair(fam["share"], (*path, "dominant_transcripts", "families", i, "share"), root)
    for key in ("cell_fraction", "normal_cell_fraction"):
        total = sum(f[key] for f in c["dominant_transcripts"]["families"])
        if total > 1:
            _fail(root, (*path, "dominant_transcripts", "families"), f"{key}s sum to {total:.4g}; at most 1.")
    ot = c["other_type"]
    if ot["label"] in c_p["states"]:
        _fail(
            root,
            (*path, "other_type", "label"),
            f"{ot['label']!r} is an HSPC state; give the other type its own label.",
        )
    for marker in c_p["index_sort"]["markers"]:
        if marker not in ot["index_sort_levels"]:
            _fail(
                root,
                (*path, "other_type", "index_sort_levels"),
                f"has no level for marker {marker!r}; add {marker}: <log10 intensity>.",
            )


def _check_alleles(p: dict, root: str) -> None:
    """The control region is ordered and overlaps no lesion's widest range; no lesion is named ``control``."""
    a, path = p["alleles"], ("alleles",)
    for i, lesion in enumerate(p["lesions"]):
        if lesion["name"] == "control":
            _fail(
                root, ("lesions", i, "name"), "'control' names the alleles' control region; name the lesion otherwise."
            )
    control = a["control"]
    if control is None:
        return
    if control["start"] >= control["end"]:
        _fail(root, (*path, "control"), f"start {control['start']} is not below end {control['end']}.")
    for lesion in p["lesions"]:
        lo, hi = lesion["proximal"][0], lesion["distal"][1]
        if lesion["chromosome"] == control["chromosome"] and control["start"] < hi and lo < control["end"]:
            _fail(
                root,
                (*path, "control"),
                f"overlaps lesion {lesion['name']!r} ({lesion['chromosome']}:{lo}-{hi}); "
                "a control region must lie outside every lesion.",
            )


def _check_allele_patients(samples: pd.DataFrame, p: dict, root: str) -> None:
    """Every patient ``alleles.patients`` names is a patient of the sheet (a typo would silently give
    that patient no allele data), and every sample of ``alleles.bam_samples`` one with allele data."""
    chosen = p["alleles"]["patients"]
    known = list(pd.unique(samples["patient"].astype(str)))
    unknown = [str(x) for x in chosen or [] if str(x) not in known]
    if unknown:
        _fail(root, ("alleles", "patients"), f"{unknown} are no patients of the sample sheet (it has {known}).")
    with_alleles = [str(s) for _, row in samples.iterrows() if has_alleles(row, p) for s in [row["sample"]]]
    without = [str(x) for x in p["alleles"]["bam_samples"] if str(x) not in with_alleles]
    if without:
        _fail(
            root,
            ("alleles", "bam_samples"),
            f"{without} are no samples with allele data (alleles.enabled, alleles.patients: those are {with_alleles}).",
        )


def has_alleles(row: pd.Series, p: dict) -> bool:
    """The sample gets allele data: alleles are enabled and its patient is among ``alleles.patients``
    (``None``: every patient)."""
    a = p["alleles"]
    return bool(a["enabled"]) and (a["patients"] is None or str(row["patient"]) in {str(x) for x in a["patients"]})


def has_bam(row: pd.Series, p: dict) -> bool:
    """The sample's allele data are written as reads (BAM): it has allele data (:func:`has_alleles`) and
    is among ``alleles.bam_samples``."""
    return has_alleles(row, p) and str(row["sample"]) in {str(x) for x in p["alleles"]["bam_samples"]}


def _check_index_levels(ix: dict, root: str) -> None:
    """Every state with index-sort levels has a level for every marker."""
    for state, levels in ix["levels"].items():
        for marker in ix["markers"]:
            if marker not in levels:
                _fail(
                    root,
                    ("index_sort", "levels", state),
                    f"has no level for marker {marker!r}; add {marker}: <log10 intensity>.",
                )


# ------------------------------------------------------------------------------------------------
# the sample sheet against the parameters
# ------------------------------------------------------------------------------------------------
def is_empty(value: Any) -> bool:
    """A sheet cell that holds no value (None, NaN, NA, or blank text)."""
    return (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or value is pd.NA
        or str(value).strip() in ("", "NA", "nan", "None")
    )


def is_index_sorted(row: pd.Series, p: dict) -> bool:
    """The sample gets index-sort intensities: its technology's samples do, or its row names a file."""
    return str(row["technology"]) in p["index_sort"]["technologies"] or (
        "index_sort" in row.index and not is_empty(row["index_sort"])
    )


def _check_sheet(samples: pd.DataFrame, p: dict, root: str) -> None:
    """Every row is covered by the parameters; messages name the sample row and what to add."""
    missing = [col for col in SHEET_COLUMNS if col not in samples.columns]
    if missing:
        raise InputError(f"sample sheet lacks column(s) {missing}; it needs {SHEET_COLUMNS}.", where="sample sheet")
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
        if tech not in TECHNOLOGIES:
            raise InputError(f"technology {tech!r} cannot be simulated; use one of {list(TECHNOLOGIES)}.", where=where)
        pop = str(row["population"])
        if pop not in p["state_composition"]:
            raise InputError(
                f"population {pop!r} has no state composition; add {root}.state_composition.{pop}: "
                f"{{<state>: <fraction>, ...}} (states: {', '.join(p['states'])}).",
                where=where,
            )
        comp = p["state_composition"][pop]
        if is_index_sorted(row, p):
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
        if is_empty(tp):
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
