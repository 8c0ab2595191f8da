"""The simulator's gene model: cohort-wide gene parameters and each patient's draws.

:class:`GeneModel` holds what every cell of the cohort shares (baseline expression composition,
per-gene dispersion, the HSPC states' and the cell cycle's programs); :class:`Patient` what a
donor's cells share (sex, a per-gene effect, the lesion intervals) and builds the expression
profile of a cell of a given state, phase and lesions. All draws come from the generator they are
given, in a fixed order (see :mod:`remnant.sim.cohort` for how the generators are seeded).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.io.annotation import AUTOSOMES

__all__ = ["breakpoint_ranges", "in_interval"]

_RIBOSOMAL = re.compile(r"^(RP[LS]\d+A?|RPLP[0-2]|RPSA|RPS4X|RPS4Y1)$")
#: chrY genes expressed in male blood cells at clearly detectable levels.
_Y_EXPRESSED = ["RPS4Y1", "DDX3Y", "EIF1AY", "KDM5D", "UTY", "USP9Y", "ZFY", "TXLNGY", "NLGN4Y"]
_CHROMOSOMES = [*AUTOSOMES, "chrX", "chrY", "chrM"]


def child_rng(seed: int, tag: int, name: str) -> np.random.Generator:
    """The generator of one named part of a cohort's draws, ``default_rng([seed, tag, crc32(name)])``:
    a patient's or a sample's own, so adding another leaves its draws as they were (the tags are
    listed in the docstrings of :mod:`remnant.sim.cohort`, ``confounders`` and ``alleles``)."""
    return np.random.default_rng([int(seed), tag, zlib.crc32(str(name).encode())])


def in_interval(genes: pd.DataFrame, chromosome: str, start: int, end: int) -> np.ndarray:
    """Boolean mask of genes whose midpoint lies in ``[start, end)`` on ``chromosome``.

    This is the rule the simulator uses for "gene inside a lesion" (coordinates in bp, 0-based
    half-open, as in the annotation table).
    """
    mid = (genes["start"].to_numpy(np.int64) + genes["end"].to_numpy(np.int64)) // 2
    return (genes["chromosome"].to_numpy() == chromosome) & (mid >= start) & (mid < end)


def breakpoint_ranges(lesion: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """The ranges (bp, both ends included) a patient's start and end of a simulated ``lesion`` (its
    ``proximal``, ``distal`` and ``contains`` parameters) are drawn from, uniformly: the proximal and
    distal ranges, restricted so that the interval holds ``contains`` (the commonly deleted region)."""
    prox, dist, cont = lesion["proximal"], lesion["distal"], lesion["contains"]
    start_hi = min(prox[1], cont[0]) if cont else prox[1]
    end_lo = max(dist[0], cont[1]) if cont else dist[0]
    return (prox[0], start_hi), (end_lo, dist[1])


class GeneModel:
    """Cohort-wide gene parameters: baseline composition, dispersion, state and cycle programs.

    Attributes (genes: the simulated genes, ``n`` of them, in annotation order)
    -------------------------------------------------------------------------
    genes
        The annotation rows simulated (gene types of ``gene_types`` on chr1-22, X, Y, M).
    mito, chr_y, ribo, housekeeping, xist
        Boolean masks over the genes.
    log_base
        Natural log of the baseline nuclear composition (-inf for genes with no nuclear share).
    mito_profile
        Composition of the mitochondrial genes' counts (sums to 1).
    gene_dispersion
        Per-gene log-normal dispersion factor ``g``.
    state_effect, cycle_effect
        State -> and (phase, quiescent) -> natural-log fold change per gene.
    """

    def __init__(
        self, genes: pd.DataFrame, markers: dict, gene_sets: dict, p: dict, rng: np.random.Generator, root: str
    ):
        # the draws, in this order: baseline, program-gene floor, ribosomal and housekeeping shares,
        # mitochondrial composition, gene dispersion, state programs
        self.genes = _simulated_genes(genes, p["gene_types"], root)
        self.n = len(self.genes)
        symbols = self.genes["gene_name"].astype(str).to_numpy()
        other = self._classify(symbols, p["expression"]["housekeeping_genes"])
        index_of = _indexer(symbols)
        e = p["expression"]
        logb = self._log_baseline(rng, symbols, e)
        cc = p["cell_cycle"]
        sets = _gene_set_genes(gene_sets, cc, index_of, root)
        self.state_markers = _marker_genes(markers, p["states"], index_of, root)
        programmed = np.zeros(self.n, bool)
        for idx in [*sets.values(), *self.state_markers.values()]:
            programmed[idx] = True
        base = self._composition(rng, logb, other, programmed, e)
        self.log_base = np.log(np.where(base > 0, base, 1e-300))
        self.log_base[~(base > 0)] = -np.inf
        self.xist_fraction = e["xist_fraction"]
        # Mitochondrial genes: their own composition (MT-CO1, MT-ATP6 ... differ by a few fold).
        w = np.exp(rng.normal(0, 0.7, self.mito.sum()))
        self.mito_profile = w / w.sum() if w.size else w
        # Dispersion: one log-normal factor per gene, shared by the technologies.
        self.gene_dispersion = np.exp(rng.normal(0, p["dispersion"]["gene_sdlog"], self.n))
        self.state_effect = self._state_programs(rng, base, other, programmed, p)
        self.s_genes = sets["s_genes"]
        self.g2m_genes = sets["g2m_genes"]
        self.quiescence_genes = sets["quiescence_genes"]
        self.cycle_effect = self._cycle_programs(cc)

    def _classify(self, symbols: np.ndarray, housekeeping_genes: list[str]) -> np.ndarray:
        """Set the gene-class masks; returns the mask of the remaining ("other") genes."""
        g = self.genes
        self.mito = (g["chromosome"] == "chrM").to_numpy()
        self.chr_y = (g["chromosome"] == "chrY").to_numpy()
        self.ribo = np.array([bool(_RIBOSOMAL.match(s)) for s in symbols]) & ~self.mito
        hk = set(housekeeping_genes)
        self.housekeeping = np.isin(symbols, list(hk)) & ~self.ribo & ~self.mito
        self.xist = symbols == "XIST"
        self.housekeeping &= ~self.xist
        return ~(self.mito | self.ribo | self.housekeeping | self.xist)

    def _log_baseline(self, rng: np.random.Generator, symbols: np.ndarray, e: dict) -> np.ndarray:
        """Log-normal baseline (natural log) per gene; lncRNAs lower, most chrY genes low."""
        logb = rng.normal(0.0, e["sdlog"], self.n)
        logb[(self.genes["gene_type"] == "lncRNA").to_numpy()] += e["lncrna_log_shift"]
        # Most chrY genes are barely expressed in blood; only the broadly expressed X-Y pair genes
        # are clearly detected in male cells. Keep the rest below the baseline median.
        y_low = self.chr_y & ~np.isin(symbols, _Y_EXPRESSED)
        logb[y_low] = np.minimum(logb[y_low], np.median(logb) - 1.0)
        return logb

    def _composition(
        self, rng: np.random.Generator, logb: np.ndarray, other: np.ndarray, programmed: np.ndarray, e: dict
    ) -> np.ndarray:
        """Baseline nuclear composition (genes,): ribosomal and housekeeping genes get fixed shares
        so that their (high) levels are realistic; mitochondrial genes and XIST get none here."""
        base = np.zeros(self.n)
        base[other] = np.exp(logb[other])
        # Marker, cycle and quiescence genes: floor at a baseline quantile, else an up-regulation
        # of a gene with a tiny baseline would stay invisible.
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
        return base

    def _state_programs(
        self, rng: np.random.Generator, base: np.ndarray, other: np.ndarray, programmed: np.ndarray, p: dict
    ) -> dict[str, np.ndarray]:
        """State -> natural-log fold change per gene: the state's markers and a random program."""
        ln2 = np.log(2)
        sp_ = p["state_programs"]
        candidates = np.flatnonzero(
            other
            & ~programmed
            & (self.genes["gene_type"] == "protein_coding").to_numpy()
            & (base >= np.quantile(base[other], sp_["candidate_quantile"]))
        )
        effects = {}
        for state in p["states"]:
            eff = np.zeros(self.n)
            k = min(int(sp_["n_genes"]), candidates.size)
            chosen = rng.choice(candidates, size=k, replace=False) if k else np.array([], np.int64)
            size = np.abs(rng.normal(sp_["log2fc_mean"], sp_["log2fc_sd"], k))
            sign = np.where(rng.random(k) < sp_["up_fraction"], 1.0, -1.0)
            eff[chosen] = sign * size * ln2
            eff[self.state_markers[state]] = sp_["marker_log2fc"] * ln2
            effects[state] = eff
        return effects

    def _cycle_programs(self, cc: dict) -> dict[tuple[str, bool], np.ndarray]:
        """(phase, quiescent) -> natural-log fold change per gene of the cycle and quiescence genes."""
        ln2 = np.log(2)
        effects = {}
        for phase, quiescent in (("G1", True), ("G1", False), ("S", False), ("G2M", False)):
            eff = np.zeros(self.n)
            if quiescent:
                eff[self.quiescence_genes] += cc["quiescence_log2fc"] * ln2
            elif phase == "S":
                eff[self.s_genes] += cc["s_log2fc"] * ln2
            elif phase == "G2M":
                eff[self.g2m_genes] += cc["g2m_log2fc"] * ln2
                # G2/M cells still carry some late-S transcripts.
                eff[self.s_genes] += 0.25 * cc["s_log2fc"] * ln2
            effects[(phase, quiescent)] = eff
        return effects

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


class Patient:
    """Per-patient draws: sex, gene effect, lesion intervals; caches profiles."""

    def __init__(self, name: str, condition: str, model: GeneModel, p: dict, rng: np.random.Generator):
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
                (start_lo, start_hi), (end_lo, end_hi) = breakpoint_ranges(lesion)
                start = int(rng.integers(start_lo, start_hi + 1))
                end = int(rng.integers(max(end_lo, start + 1), end_hi + 1))
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
        # Confounders (remnant.sim.confounders): the patient's disease programme (natural log per
        # gene; zeros for healthy donors), set by simulate_cohort, and the effect every cell of the
        # sample being simulated shares (programme + immediate-early genes), set per sample.
        self.programme = np.zeros(model.n)
        self.sample_effect: np.ndarray | None = None
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def set_sample_effect(self, effect: np.ndarray | None) -> None:
        """Natural-log effect per gene shared by the next sample's cells (None: none); profiles are recomputed."""
        if effect is None and self.sample_effect is None:
            return  # without confounders the patient's profiles serve all its samples
        self.sample_effect = effect
        self._cache.clear()

    def profile(
        self, state: str, phase: str, quiescent: bool, carried: tuple[bool, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nuclear expression composition (genes,; mito genes 0) and its cumulative sum."""
        key = (state, phase, quiescent, carried)
        if key not in self._cache:
            m = self.model
            logp = self.log_base + m.state_effect[state] + m.cycle_effect[(phase, quiescent)]
            if self.sample_effect is not None:
                logp = logp + self.sample_effect
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


def _simulated_genes(genes: pd.DataFrame, gene_types: list[str], root: str) -> pd.DataFrame:
    """The annotation rows of the simulated gene types on chr1-22, X, Y and M."""
    keep = genes["gene_type"].isin(gene_types) & genes["chromosome"].isin(_CHROMOSOMES)
    kept = genes.loc[keep].reset_index(drop=True)
    if kept.empty:
        raise InputError(
            f"no genes of types {gene_types} on chr1-22, X, Y, M in the annotation.",
            where=f"{root}.gene_types",
        )
    return kept


def _indexer(symbols: np.ndarray) -> Callable[[list[str]], np.ndarray]:
    """A function from gene symbols to the sorted indices of the first gene of each known symbol."""
    first = pd.Series(np.arange(len(symbols)), index=symbols)
    first = first[~first.index.duplicated()]  # symbol -> first gene with it

    def index_of(symbols_: list[str]) -> np.ndarray:
        return np.unique(first.reindex([s for s in symbols_ if s in first.index]).to_numpy(np.int64))

    return index_of


def _gene_set_genes(gene_sets: dict, cc: dict, index_of: Callable, root: str) -> dict[str, np.ndarray]:
    """``s_genes``, ``g2m_genes``, ``quiescence_genes`` -> indices of the set's simulated genes."""
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
    return sets


def _marker_genes(markers: dict, states: list[str], index_of: Callable, root: str) -> dict[str, np.ndarray]:
    """State -> indices of its simulated marker genes."""
    found = {}
    for state in states:
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
        found[state] = idx
    return found
