"""Confounders of real marrow that are not copy number, built into the simulator's expected expression.

A copy-number call must not read an expression programme as a lesion. Real MDS samples differ from
healthy donors' in much more than the lesion; the ``confounders`` block of the simulator parameters
(``config/schemas/demo.schema.yaml``) plants four such differences, all at the level of each cell's
expected expression, before counts are drawn:

1. **Disease programme** (``disease_programme``): per patient (or per condition) ``n_genes`` genes
   drawn at random genome-wide among expressed protein-coding genes (never the states' markers nor
   the cell-cycle and quiescence genes, so the planted state and phase stay readable), each changed by a log-uniform
   fold (``log2fc`` = [2, 4]: 4- to 16-fold), up or down, in every cell of the patient, carrier or
   not. Drawn genome-wide, some fall inside the lesion by chance (5q holds ~5% of genes);
   ``in_lesions: N`` instead places exactly N of them inside the configured lesions' widest ranges
   (an adversarial benchmark; ``in_lesions_direction: lesion`` makes them move as the lesion does).
2. **Dominant transcripts** (``dominant_transcripts.families``): in a share of cells, a gene family
   (by default haemoglobins: erythroid contamination) holds a share ``h`` of the cell's nuclear
   counts: the cell's nuclear expectation is ``(1 - h) x profile + h x family composition``.
3. **Immediate-early genes** (``immediate_early``): EGR1 (5q31), FOS, JUN, IER2, DUSP1 ... are
   raised to a floor of the baseline, then changed in every cell of a sample by one log-normal
   factor per sample (handling time), in healthy and patient samples alike.
4. **Cells of another type** (``other_type``): a share of the cells of patient samples is of another
   type: no HSPC state programme but a cell-type programme of its own (``n_genes`` genes up or down
   ``2 ** log2fc``-fold), state label ``label`` (which healthy samples never have), never lesion
   carriers, truth column ``other_type``.

Randomness: the confounders draw from their own generators, so ``enabled: false`` gives exactly the
counts of a simulator without them, and switching them on changes no other draw's stream:
cohort-wide draws (the other type's programme) ``default_rng([seed, 3])``; each programme
``default_rng([seed, 4, crc32(patient or "condition:<condition>")])``; each sample's draws (its
other-type cells, dominant-transcript cells and shares) ``default_rng([seed, 5, crc32(sample)])``,
and its immediate-early factor ``default_rng([seed, 6, crc32(sample)])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from remnant.errors import InputError
from remnant.sim.model import GeneModel, child_rng, in_interval
from remnant.sim.params import _key

_LN2 = np.log(2)


@dataclass(frozen=True)
class Family:
    """A dominant-transcript family: simulated gene indices and their composition (sums to 1)."""

    name: str
    genes: np.ndarray  # (k,) gene indices
    weights: np.ndarray  # (k,) composition of the family's counts
    cell_fraction: float  # share of patient cells
    normal_cell_fraction: float  # share of healthy donors' cells
    share: tuple[float, float]  # [low, high] share of the cell's nuclear counts (uniform)


@dataclass
class SampleDraws:
    """One sample's confounder draws, per simulated cell (component) where arrays."""

    other: np.ndarray  # (n_comp,) bool: cell of another type
    family: np.ndarray  # (n_comp,) int: dominant-transcript family index, -1 for none
    share: np.ndarray  # (n_comp,) share of the cell's nuclear counts held by its family (0 for none)
    ieg_log2fc: float  # the sample's immediate-early factor (log2)


class Confounders:
    """Cohort-wide confounder parameters and draws (see the module docstring).

    Attributes (genes: the simulated genes of ``model``)
    ------------------------------------------------------
    label
        State label of cells of another type.
    other_effect
        Natural-log fold change per gene of the other type's programme (genes,).
    other_programme
        Table of the other type's programme genes: ``gene, gene_name, chromosome, log2fc``.
    ieg, ieg_lift
        Indices of the simulated immediate-early genes and their natural-log lift to the floor.
    families
        The dominant-transcript families (:class:`Family`).
    """

    def __init__(self, model: GeneModel, p: dict, seed: int, root: str):
        c = p["confounders"]
        self.model, self.p, self.seed, self.root = model, p, int(seed), root
        self.normal = set(p["normal_conditions"])
        other = ~(model.mito | model.ribo | model.housekeeping | model.xist | model.chr_y)
        coding = (model.genes["gene_type"] == "protein_coding").to_numpy()
        finite = np.isfinite(model.log_base)
        self._other_genes = other & coding & finite
        symbols = model.genes["gene_name"].astype(str).to_numpy()
        self._first = pd.Series(np.arange(symbols.size), index=symbols)
        self._first = self._first[~self._first.index.duplicated()]
        ie = c["immediate_early"]
        self.ieg = self._indices(ie["genes"], ("immediate_early", "genes"))
        floor = np.quantile(model.log_base[self._other_genes], ie["floor_quantile"])
        self.ieg_lift = np.maximum(0.0, floor - model.log_base[self.ieg])
        self.families = [self._family(f, i) for i, f in enumerate(c["dominant_transcripts"]["families"])]
        ot = c["other_type"]
        self.label = ot["label"]
        self.other_cycling = float(ot["cycling_probability"])
        self.other_levels = dict(ot["index_sort_levels"])
        reserved = np.zeros(model.n, bool)
        reserved[self.ieg] = True
        # the planted truth stays readable: a programme does not move the states' markers nor the
        # cell-cycle and quiescence genes (the truth's state and phase are read from them)
        for idx in [model.s_genes, model.g2m_genes, model.quiescence_genes, *model.state_markers.values()]:
            reserved[idx] = True
        for fam in self.families:
            reserved[fam.genes] = True
        self._reserved = reserved
        rng = np.random.default_rng([self.seed, 3])
        genes = self._candidates(ot["candidate_quantile"])
        idx, log2fc = self._programme(rng, genes, ot["n_genes"], (ot["log2fc"], ot["log2fc"]), ot["up_fraction"])
        self.other_effect = np.zeros(model.n)
        self.other_effect[idx] = log2fc * _LN2
        self.other_programme = self._table(idx, log2fc)

    # -- genes -----------------------------------------------------------------------------------
    def _indices(self, symbols: list[str], path: tuple) -> np.ndarray:
        """Indices of the simulated genes among ``symbols`` (missing ones are left out; none at all fails)."""
        idx = self._first.reindex([s for s in symbols if s in self._first.index]).to_numpy(np.int64)
        if symbols and idx.size == 0:
            raise InputError(
                f"none of the genes {list(symbols)[:5]} is among the simulated genes; "
                f"add their gene type to {self.root}.gene_types (e.g. IG_C_gene for immunoglobulins) or name others.",
                where=_key(self.root, ("confounders", *path)),
            )
        return idx

    def _family(self, f: dict, i: int) -> Family:
        names = [g for g in f["genes"] if g in self._first.index]
        idx = self._indices(list(f["genes"]), ("dominant_transcripts", "families", i, "genes"))
        w = np.array([float(f["genes"][g]) for g in names])
        return Family(
            f["name"], idx, w / w.sum(), float(f["cell_fraction"]), float(f["normal_cell_fraction"]), tuple(f["share"])
        )

    def _candidates(self, quantile: float) -> np.ndarray:
        """Protein-coding genes (no ribosomal, housekeeping, mito, chrY, immediate-early, family,
        marker, cell-cycle or quiescence gene) whose baseline is above ``quantile`` of theirs: a programme of unexpressed genes would
        be invisible."""
        ok = self._other_genes & ~self._reserved
        cut = np.quantile(self.model.log_base[ok], quantile)
        return np.flatnonzero(ok & (self.model.log_base >= cut))

    @staticmethod
    def _programme(rng, candidates: np.ndarray, n: int, log2fc: tuple, up_fraction: float):
        """``n`` genes of ``candidates`` and their log2 fold changes: |log2fc| uniform in the range
        (log-uniform folds), up with probability ``up_fraction``."""
        k = min(int(n), candidates.size)
        idx = rng.choice(candidates, size=k, replace=False) if k else np.array([], np.int64)
        size = rng.uniform(log2fc[0], log2fc[1], k)
        sign = np.where(rng.random(k) < up_fraction, 1.0, -1.0)
        return idx, sign * size

    def _table(self, idx: np.ndarray, log2fc: np.ndarray) -> pd.DataFrame:
        g = self.model.genes.iloc[idx]
        return pd.DataFrame(
            {
                "gene": idx,
                "gene_name": g["gene_name"].astype(str).to_numpy(),
                "chromosome": g["chromosome"].astype(str).to_numpy(),
                "log2fc": log2fc,
            }
        )

    # -- the disease programme ---------------------------------------------------------------------
    def disease_programme(self, patient: str, condition: str) -> tuple[np.ndarray, pd.DataFrame]:
        """Natural-log effect per gene (genes,) of a patient's disease programme, and its table
        (``gene, gene_name, chromosome, log2fc, inside_lesion``); zeros for healthy donors."""
        dp = self.p["confounders"]["disease_programme"]
        effect = np.zeros(self.model.n)
        if condition in self.normal or dp["n_genes"] == 0:
            return effect, self._table(np.array([], np.int64), np.array([])).assign(inside_lesion=False)
        key = patient if dp["per"] == "patient" else f"condition:{condition}"
        rng = child_rng(self.seed, 4, key)
        cand = self._candidates(dp["candidate_quantile"])
        inside, direction = self._lesion_ranges()
        fc = tuple(dp["log2fc"])
        if dp["in_lesions"] is None:
            idx, log2fc = self._programme(rng, cand, dp["n_genes"], fc, dp["up_fraction"])
        else:
            n_in = min(int(dp["in_lesions"]), int(dp["n_genes"]))
            c_in, c_out = cand[inside[cand]], cand[~inside[cand]]
            i1, f1 = self._programme(rng, c_in, n_in, fc, dp["up_fraction"])
            if dp["in_lesions_direction"] == "lesion":
                f1 = direction[i1] * np.abs(f1)  # they move as the lesion does: a loss's genes go down
            i2, f2 = self._programme(rng, c_out, int(dp["n_genes"]) - n_in, fc, dp["up_fraction"])
            idx, log2fc = np.concatenate([i1, i2]).astype(np.int64), np.concatenate([f1, f2])
        effect[idx] = log2fc * _LN2
        return effect, self._table(idx, log2fc).assign(inside_lesion=inside[idx])

    def _lesion_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Genes inside any configured lesion's widest range (proximal low to distal high), and the
        direction of that lesion per gene (-1 loss, +1 gain, 0 outside)."""
        inside = np.zeros(self.model.n, bool)
        direction = np.zeros(self.model.n)
        for lesion in self.p["lesions"]:
            m = in_interval(self.model.genes, lesion["chromosome"], lesion["proximal"][0], lesion["distal"][1])
            inside |= m
            direction[m] = -1.0 if lesion["type"] == "loss" else 1.0
        return inside, direction

    # -- per sample ----------------------------------------------------------------------------------
    def ieg_log2fc(self, sample: str) -> float:
        """The sample's immediate-early factor (log2), from ``default_rng([seed, 6, crc32(sample)])``."""
        rng = child_rng(self.seed, 6, sample)
        return float(rng.normal(0.0, self.p["confounders"]["immediate_early"]["sample_log2fc_sd"]))

    def draw_sample(self, rng: np.random.Generator, n_comp: int, sample: str, condition: str) -> SampleDraws:
        """A sample's draws, in this order: other-type cells (patient samples only), dominant-transcript
        family and share per cell; and its immediate-early factor (:meth:`ieg_log2fc`)."""
        c = self.p["confounders"]
        ieg = self.ieg_log2fc(sample)
        patient = condition not in self.normal
        other = rng.random(n_comp) < (c["other_type"]["fraction"] if patient else 0.0)
        family = np.full(n_comp, -1)
        share = np.zeros(n_comp)
        u = rng.random(n_comp)
        lo = 0.0
        for f, fam in enumerate(self.families):
            frac = fam.cell_fraction if patient else fam.normal_cell_fraction
            hit = (u >= lo) & (u < lo + frac)  # at most one family per cell
            lo += frac
            family[hit] = f
            share[hit] = rng.uniform(fam.share[0], fam.share[1], int(hit.sum()))
        return SampleDraws(other, family, share, ieg)

    def sample_effect(self, programme: np.ndarray, draws: SampleDraws) -> np.ndarray:
        """Natural-log effect per gene shared by every cell of the sample: the patient's programme,
        and the immediate-early genes at their floor times the sample's factor."""
        effect = programme.copy()
        effect[self.ieg] += self.ieg_lift + draws.ieg_log2fc * _LN2
        return effect
