"""One simulated sample: its cells' draws, counts, index-sort intensities and truth.

A sample of ``n`` barcodes is simulated as ``n_single`` singlets plus two cells per doublet
("components", singlets first, then the first and then the second cell of each doublet); the
doublets' counts are summed at the end. The draws come from the sample's own generator in a fixed
order (states, clone and lesions, cell cycle, quality and library sizes, counts, index sort,
barcodes), so the same seed gives the same counts. Allele counts (:mod:`remnant.sim.alleles`), when
asked for, are drawn from the components' counts by a generator of their own, so they change none of these draws.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.sim.confounders import Confounders, SampleDraws
from remnant.sim.model import GeneModel, Patient
from remnant.sim.params import PHASES

#: The allele hook of :func:`simulate_sample`: (component counts, carried, technology) -> (AD, DP).
AlleleDraw = Callable[[sp.csr_matrix, np.ndarray, str], tuple[sp.csr_matrix, sp.csr_matrix]]

# Cells x genes entries per dense block (plate sampler): ~10 M float64 = 80 MB per temporary.
_DENSE_BLOCK = 10_000_000


@dataclass(frozen=True)
class _Layout:
    """Where each simulated cell sits: singlets first, then the first and the second cell of each doublet."""

    n: int  # barcodes (doublets count once)
    n_dbl: int  # doublets

    @property
    def n_single(self) -> int:
        return self.n - self.n_dbl

    @property
    def n_comp(self) -> int:
        """Simulated cells (components): every doublet is two."""
        return self.n_single + 2 * self.n_dbl

    @property
    def single(self) -> np.ndarray:
        return np.arange(self.n_single)

    @property
    def first(self) -> np.ndarray:
        return np.arange(self.n_single, self.n_single + self.n_dbl)

    @property
    def second(self) -> np.ndarray:
        return np.arange(self.n_single + self.n_dbl, self.n_comp)


@dataclass
class _Cells:
    """Per-component draws (arrays of length ``n_comp``)."""

    states: np.ndarray  # HSPC state
    carried: np.ndarray  # (n_comp, lesions) bool
    phase: np.ndarray  # G1/S/G2M
    quiescent: np.ndarray  # bool
    low_quality: np.ndarray  # bool (never a doublet component)
    lib: np.ndarray  # library size (UMIs or reads)
    mito: np.ndarray  # expected mitochondrial share of counts
    other: np.ndarray  # bool: cell of another type (confounders)
    family: np.ndarray  # dominant-transcript family index, -1 for none (confounders)
    share: np.ndarray  # share of the nuclear counts its family holds (0 for none)


def simulate_sample(
    rng: np.random.Generator,
    row: pd.Series,
    patient: Patient,
    model: GeneModel,
    p: dict,
    index_sorted: bool,
    confounders: tuple[Confounders, np.random.Generator] | None = None,
    alleles: AlleleDraw | None = None,
) -> tuple[anndata.AnnData, pd.DataFrame, pd.DataFrame | None, tuple[sp.csr_matrix, sp.csr_matrix] | None]:
    """Simulate one sample of the sheet.

    Parameters
    ----------
    rng
        The sample's generator (every draw of the sample comes from it, in a fixed order).
    row
        Its sample-sheet row (``sample, timepoint, population, technology``; strings).
    patient, model
        Its patient's draws and the cohort's gene model.
    p
        The resolved parameters.
    index_sorted
        Whether to draw index-sort intensities.
    confounders
        The cohort's confounders and the sample's own generator for their draws
        (:mod:`remnant.sim.confounders`), or None for none.
    alleles
        None for no allele data, or a function of (component counts (n_comp x genes CSR), carried
        (n_comp x lesions bool), technology) giving the components' (AD, DP) allele counts
        (:meth:`remnant.sim.alleles.AlleleModel.draw` with the patient's sites and the sample's own
        generator); it only reads the counts, so no expression draw changes.

    Returns
    -------
    (counts, truth, index_sort, alleles)
        ``counts``: AnnData, cells x genes, CSR float32 counts, obs names the barcodes;
        ``truth``: one row per barcode (``barcode, state, cell_cycle_phase, quiescent,
        lesion_<name>..., doublet, low_quality, other_type, dominant_family, mito_fraction,
        total_counts``), in the rows' order;
        ``index_sort``: barcode x marker intensities, or None;
        ``alleles``: (AD, DP), barcodes x sites CSR int32 in the rows' order (doublets: the sum of
        their two cells'), or None.
    """
    tech = row["technology"]
    layout = _layout(row["sample"], tech, p)
    lesion_names = [lesion["name"] for lesion in p["lesions"]]
    states = _draw_states(rng, p["state_composition"][row["population"]], layout, p["doublets"])
    carried = _draw_carriers(rng, row, patient, p, layout)
    conf, draws = _draw_confounders(confounders, row, patient, layout)
    states = np.where(draws.other, conf.label, states) if conf else states
    carried[draws.other] = False  # cells of another type are never in the clone
    cycling = dict(p["cell_cycle"]["cycling_probability"], **({conf.label: conf.other_cycling} if conf else {}))
    phase, quiescent = _draw_cycle(rng, states, carried, lesion_names, str(row["timepoint"]), p, cycling)
    low_quality, lib, mito = _draw_quality_and_library(rng, tech, phase, quiescent, layout, p)
    cells = _Cells(states, carried, phase, quiescent, low_quality, lib, mito, draws.other, draws.family, draws.share)
    families = conf.families if conf else []
    counts = _draw_counts(rng, cells, patient, model, p["dispersion"][tech], families)
    allele_counts = alleles(counts, carried, tech) if alleles is not None else None
    levels = dict(p["index_sort"]["levels"], **({conf.label: conf.other_levels} if conf else {}))
    facs = _draw_index_sort(rng, states, p["index_sort"], levels) if index_sorted else None
    counts, facs = _sum_doublets(counts, facs, layout)
    order = [*p["states"], *([conf.label] if conf else []), *PHASES]
    truth = _truth(cells, layout, lesion_names, order, [f.name for f in families])
    adata, truth, facs, rows = _in_barcode_order(rng, tech, counts, truth, facs, model, p["index_sort"]["markers"])
    if allele_counts is not None:
        allele_counts = tuple(_combine_doublets(m, layout)[rows].astype(np.int32) for m in allele_counts)
    return adata, truth, facs, allele_counts


def _layout(sample: str, tech: str, p: dict) -> _Layout:
    """Barcodes of the sample (``sample_cells``, else ``cells_per_sample``) and how many are doublets."""
    n = int(p["sample_cells"].get(sample, p["cells_per_sample"][tech]))
    dbl = p["doublets"]
    n_dbl = int(round(dbl["rate"] * n)) if tech in dbl["technologies"] and n >= 2 else 0
    return _Layout(n, n_dbl)


def _draw_states(rng: np.random.Generator, comp: dict, layout: _Layout, dbl: dict) -> np.ndarray:
    """States of singlets and doublet components (the second one mostly of another state)."""
    comp_states = np.array(list(comp))
    w = np.array(list(comp.values()), float)
    w /= w.sum()
    states = comp_states[rng.choice(comp_states.size, size=layout.n_comp, p=w)]
    if layout.n_dbl:
        hetero = rng.random(layout.n_dbl) < dbl["heterotypic_fraction"]
        for k, (i, j) in enumerate(zip(layout.first, layout.second)):
            others = comp_states != states[i]
            if hetero[k] and others.any():
                ww = w * others
                states[j] = comp_states[rng.choice(comp_states.size, p=ww / ww.sum())]
            else:
                states[j] = states[i]
    return states


def _draw_carriers(rng: np.random.Generator, row: pd.Series, patient: Patient, p: dict, layout: _Layout) -> np.ndarray:
    """(n_comp, lesions) bool: clone membership (clone fraction of the timepoint and population,
    shifted per patient), then each lesion in its ``fraction_of_clone`` of the clone cells."""
    n_single, n_comp = layout.n_single, layout.n_comp
    carried = np.zeros((n_comp, len(p["lesions"])), bool)
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
    return carried


def _draw_confounders(
    confounders: tuple[Confounders, np.random.Generator] | None, row: pd.Series, patient: Patient, layout: _Layout
) -> tuple[Confounders | None, SampleDraws]:
    """The sample's confounder draws (none without confounders); sets the effect its cells share
    (the patient's disease programme, the sample's immediate-early factor) on ``patient``."""
    if confounders is None:
        n = layout.n_comp
        patient.set_sample_effect(None)
        return None, SampleDraws(np.zeros(n, bool), np.full(n, -1), np.zeros(n), 0.0)
    conf, crng = confounders
    draws = conf.draw_sample(crng, layout.n_comp, str(row["sample"]), str(row["condition"]))
    patient.set_sample_effect(conf.sample_effect(patient.programme, draws))
    return conf, draws


def _draw_cycle(rng, states, carried, lesion_names, timepoint, p, cycling_probability):
    """Phase (G1/S/G2M per cell) and quiescent flag: cycling by state (``cycling_probability``:
    state -> probability; odds changed for lesion carriers by ``cell_cycle.modifiers``), phases of
    cycling cells by ``phase_fractions``."""
    cc = p["cell_cycle"]
    prob = np.array([cycling_probability[s] for s in states], float)
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
    names = [ph for ph in PHASES if ph in fr]
    w = np.array([fr[ph] for ph in names], float)
    phase = np.array(names)[rng.choice(len(names), size=states.size, p=w / w.sum())]
    phase = np.where(cycling, phase, "G1")
    return phase, ~cycling


def _draw_quality_and_library(
    rng: np.random.Generator, tech: str, phase: np.ndarray, quiescent: np.ndarray, layout: _Layout, p: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Low-quality flags (singlets only), library sizes and mitochondrial shares per component."""
    n_single, n_comp = layout.n_single, layout.n_comp
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
    return low_quality, lib, mito


def _draw_counts(
    rng: np.random.Generator, cells: _Cells, patient: Patient, model: GeneModel, disp: dict, families: list
) -> sp.csr_matrix:
    """Counts (n_comp x genes, CSR float32): nuclear genes from each cell's profile, then the
    dominant-transcript families (a cell's family holds ``share`` of its nuclear counts), then the
    mitochondrial genes. The exact sparse sampler where cells are shallow enough for it (droplet),
    dense gamma-Poisson blocks otherwise (plate)."""
    dispersion = disp["phi0"] * model.gene_dispersion
    phi1 = float(disp["phi1"])
    nuclear_lib = cells.lib * (1 - cells.mito)
    family_lib = nuclear_lib * cells.share
    if families:
        nuclear_lib = nuclear_lib * (1 - cells.share)
    keys = list(
        zip(cells.states.tolist(), cells.phase.tolist(), cells.quiescent.tolist(), map(tuple, cells.carried.tolist()))
    )
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    a_max = np.log1p(phi1) / phi1 if phi1 > 0 else 1.0
    if np.median(nuclear_lib) * a_max < 0.5 * model.n:
        parts = _nuclear_sparse(rng, patient, groups, nuclear_lib, dispersion, phi1)
    else:
        parts = _nuclear_dense(rng, patient, model.n, keys, groups, nuclear_lib, dispersion, phi1)
    for f, fam in enumerate(families):
        rows = np.flatnonzero(cells.family == f)
        if rows.size:
            mu = family_lib[rows, None] * fam.weights[None, :]
            dense = _sample_nb_dense(rng, mu, dispersion[fam.genes], phi1)
            r, g = np.nonzero(dense)
            parts.append((rows[r], fam.genes[g], dense[r, g]))
    mito_idx = np.flatnonzero(model.mito)
    if mito_idx.size:
        mu = (cells.lib * cells.mito)[:, None] * model.mito_profile[None, :]
        dense = _sample_nb_dense(rng, mu, dispersion[mito_idx], phi1)
        r, g = np.nonzero(dense)
        parts.append((r, mito_idx[g], dense[r, g]))
    rows, cols, vals = zip(*parts)
    return sp.coo_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(keys), model.n),
    ).tocsr()


def _nuclear_sparse(rng, patient: Patient, groups: dict, nuclear_lib, dispersion, phi1: float) -> list[tuple]:
    """(rows, genes, counts) per group of cells sharing a profile, by the exact sparse sampler."""
    parts = []
    for key, members in groups.items():
        members = np.asarray(members)
        prof, cums = patient.profile(*key)
        c, g, v = _sample_nb_sparse(rng, prof, cums, nuclear_lib[members], dispersion, phi1)
        parts.append((members[c], g, v))
    return parts


def _nuclear_dense(
    rng, patient: Patient, n_genes: int, keys: list, groups: dict, nuclear_lib, dispersion, phi1: float
) -> list[tuple]:
    """(rows, genes, counts) per block of cells, by dense gamma-Poisson (never a dense cohort, nor a dense sample)."""
    parts = []
    block = max(1, _DENSE_BLOCK // n_genes)
    profiles = {key: patient.profile(*key)[0] for key in groups}
    for start in range(0, len(keys), block):
        idx = np.arange(start, min(start + block, len(keys)))
        mu = np.stack([profiles[keys[i]] for i in idx]) * nuclear_lib[idx, None]
        dense = _sample_nb_dense(rng, mu, dispersion, phi1)
        r, g = np.nonzero(dense)
        parts.append((idx[r], g, dense[r, g]))
    return parts


def _draw_index_sort(rng: np.random.Generator, states: np.ndarray, ix: dict, levels: dict) -> np.ndarray:
    """Index-sort intensities per component (components x markers): 10 ** (level + sample shift +
    noise); ``levels``: state -> marker -> log10 level."""
    shift = rng.normal(0, ix["sample_sdlog10"], len(ix["markers"]))
    level = np.array([[levels[s][m] for m in ix["markers"]] for s in states])
    return 10 ** (level + shift[None, :] + rng.normal(0, ix["sdlog10"], level.shape))


def _sum_doublets(
    counts: sp.csr_matrix, facs: np.ndarray | None, layout: _Layout
) -> tuple[sp.csr_matrix, np.ndarray | None]:
    """Components -> barcodes: a doublet's counts are the sum of its two cells' (and so is its light)."""
    n_single, n_dbl = layout.n_single, layout.n_dbl
    single, first, second = layout.single, layout.first, layout.second
    if n_dbl:
        combine = sp.csr_matrix(
            (
                np.ones(n_single + 2 * n_dbl, np.float32),
                (
                    np.concatenate([single, n_single + np.arange(n_dbl), n_single + np.arange(n_dbl)]),
                    np.concatenate([single, first, second]),
                ),
            ),
            shape=(layout.n, layout.n_comp),
        )
        counts = (combine @ counts).tocsr()
        if facs is not None:
            facs = np.vstack([facs[single], facs[first] + facs[second]])
    counts.sum_duplicates()
    counts.sort_indices()
    return counts, facs


def _combine_doublets(matrix: sp.csr_matrix, layout: _Layout) -> sp.csr_matrix:
    """Components -> barcodes of integer counts (singlets, then each doublet the sum of its two cells)."""
    if not layout.n_dbl:
        return matrix.tocsr()
    combined = sp.vstack([matrix[layout.single], matrix[layout.first] + matrix[layout.second]]).tocsr()
    combined.sort_indices()
    return combined


def _pair(values: np.ndarray, layout: _Layout, order: list[str]) -> np.ndarray:
    """Per barcode: a singlet's value; a doublet's two values joined as ``A+B`` (in ``order``) where they differ."""
    a, b = values[layout.first].astype(str), values[layout.second].astype(str)
    rank = {s: k for k, s in enumerate(order)}
    joined = [x if x == y else "+".join(sorted((x, y), key=lambda s: rank.get(s, 99))) for x, y in zip(a, b)]
    return np.concatenate([values[layout.single].astype(str), np.array(joined, dtype=str)])


def _truth(
    cells: _Cells, layout: _Layout, lesion_names: list[str], order: list[str], family_names: list[str]
) -> pd.DataFrame:
    """Truth per barcode (singlets, then doublets): state, phase, quiescence, lesions, doublet,
    low quality, other type (doublets: either cell), dominant family ('' for none; doublets: the
    first cell's, else the second's) and the expected mitochondrial share (doublets: library-weighted)."""
    single, first, second = layout.single, layout.first, layout.second
    truth = pd.DataFrame(
        {
            "state": _pair(cells.states, layout, order),
            "cell_cycle_phase": _pair(cells.phase, layout, order),
            "quiescent": np.concatenate([cells.quiescent[single], cells.quiescent[first] & cells.quiescent[second]]),
        }
    )
    carried = cells.carried
    for j, name in enumerate(lesion_names):
        truth[f"lesion_{name}"] = np.concatenate([carried[single, j], carried[first, j] | carried[second, j]])
    truth["doublet"] = np.arange(layout.n) >= layout.n_single
    truth["low_quality"] = np.concatenate([cells.low_quality[single], np.zeros(layout.n_dbl, bool)])
    truth["other_type"] = np.concatenate([cells.other[single], cells.other[first] | cells.other[second]])
    names = np.array(["", *family_names], dtype=object)[cells.family + 1]
    truth["dominant_family"] = np.concatenate(
        [names[single], np.where(names[first] != "", names[first], names[second])]
    ).astype(str)
    lib, mito = cells.lib, cells.mito
    truth["mito_fraction"] = np.concatenate(
        [mito[single], (lib[first] * mito[first] + lib[second] * mito[second]) / (lib[first] + lib[second])]
    ).round(4)
    return truth


def _in_barcode_order(
    rng: np.random.Generator,
    tech: str,
    counts: sp.csr_matrix,
    truth: pd.DataFrame,
    facs: np.ndarray | None,
    model: GeneModel,
    markers: list[str],
) -> tuple[anndata.AnnData, pd.DataFrame, pd.DataFrame | None, np.ndarray]:
    """Barcodes drawn; droplet rows in barcode order (like CellRanger), plate cells fill the wells.
    The last item is the order: row k of the result is row ``order[k]`` of ``counts``."""
    n = counts.shape[0]
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
        index_table = pd.DataFrame(facs[order], index=pd.Index(barcodes, name="barcode"), columns=markers)
    return adata, truth, index_table, order


# ------------------------------------------------------------------------------------------------
# barcodes
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# negative binomial samplers
# ------------------------------------------------------------------------------------------------
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
