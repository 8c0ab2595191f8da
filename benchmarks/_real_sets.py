"""Real data sets with known copy-number truth, loaded for benchmarks/real_data.py and
benchmarks/robust_evidence.py (public remnant API only: ``rm.io`` / ``rm.tl``).

- TNBC1 (``../shared/data/real/tnbc1`` beside the project root, README there): 302 cells of one 10x
  breast tumour, CopyKAT's 228 aneuploid (tumour) and 74 diploid (normal immune/stromal) cells; gene
  symbols mapped to the GRCh38 annotation of ``resources/annotation`` with :func:`remnant.io.map_genes`.
  Lesions +1q +8q +16p del19q del5q del10q del14q (whole arms, GRCh38); controls 1p, 18p, 22q (gain and
  loss each).
- Oligodendroglioma (``infercnvpy.datasets.oligodendroglioma()``, file shipped inside infercnvpy): 142
  malignant and 42 normal Smart-seq2 cells; Census counts (X / per-cell t*), nearest reference state,
  tumour = sample = donor; del1p, del19q on hg19 arms; controls 1q, 19p (retained) -- exactly the
  preparation of benchmarks/oligodendroglioma.py, re-implemented here on the public API.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import remnant as rm  # noqa: E402

# the shared data directory sits beside the project root (../shared/data/real/), here and in CI's clean clone;
# REMNANT_TNBC1 overrides it
TNBC1 = Path(os.environ.get("REMNANT_TNBC1", ROOT.parent / "shared/data/real/tnbc1"))
GRCH38_GENES = ROOT / "resources/annotation/GRCh38_genes.tsv.gz"
GRCH38_BANDS = ROOT / "resources/annotation/GRCh38_cytobands.tsv"
HG19_ARMS = ROOT / "resources/annotation/hg19_chromosome_arms.tsv"

TNBC1_LESIONS = [
    ("gain1q", "gain", "1q"),
    ("gain8q", "gain", "8q"),
    ("gain16p", "gain", "16p"),
    ("del19q", "loss", "19q"),
    ("del5q", "loss", "5q"),
    ("del10q", "loss", "10q"),
    ("del14q", "loss", "14q"),
]
TNBC1_CONTROLS = [(f"{k}{arm}", t, arm) for arm in ("1p", "18p", "22q") for k, t in (("gain", "gain"), ("del", "loss"))]
OLIGO_LESIONS = [("del1p", "loss", "1p"), ("del19q", "loss", "19q")]
OLIGO_CONTROLS = [("del1q", "loss", "1q"), ("del19p", "loss", "19p")]
OLIGO_NORMAL_TYPES = ("Microglia/Macrophage", "Oligodendrocytes (non-malignant)")


def auroc(score, truth) -> float:
    """Mann-Whitney AUROC (ties count one half)."""
    from scipy.stats import rankdata

    truth = np.asarray(truth, bool)
    score = np.asarray(score, float)
    npos, nneg = truth.sum(), (~truth).sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[truth].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    """Weighted median of ``x`` (the smallest value holding half the weight; 0 for none)."""
    if x.size == 0:
        return 0.0
    o = np.argsort(x)
    c = np.cumsum(w[o])
    return float(x[o][np.searchsorted(c, 0.5 * c[-1])])


def _lesions(items, cyto, arms):
    return rm.tl.parse_lesions([{"name": n, "type": t, "region": r} for n, t, r in items], cyto, arms)


def leiden_clusters(counts: sp.csr_matrix, seed: int = 0) -> np.ndarray:
    """Leiden clusters of the cells as the workflow's clustering finds them (``rm.pp.cluster_cohort``,
    its defaults, one batch, no integration): the groups whose carrier fractions the workflow learns
    (``cnv.prior_key: leiden``)."""
    b = ad.AnnData(sp.csr_matrix(counts, dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm.pp.cluster_cohort(b, rm.pp.ClusterParams(hvg_batch_key=None, integrate_keys=(), seed=seed))
    return b.obs["leiden"].astype(str).to_numpy()


def call(adata: ad.AnnData, lesions, reference: np.ndarray, **kwargs) -> ad.AnnData:
    """``rm.tl.call_lesions`` on a copy; the reference passed by whichever name the signature has."""
    b = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm.tl.call_lesions(b, lesions, reference=np.asarray(reference, bool), **kwargs)
    return b


# ------------------------------------------------------------------------------------------------
# TNBC1
# ------------------------------------------------------------------------------------------------
def tnbc1_sets():
    cyto = rm.io.load_cytobands(GRCH38_BANDS)
    arms = rm.io.chromosome_arms(cyto)
    return _lesions(TNBC1_LESIONS, cyto, arms), _lesions(TNBC1_CONTROLS, cyto, arms)


def load_tnbc1() -> ad.AnnData:
    """Counts (``layers['counts']``, CSR) on GRCh38 genes; obs ``tumour``/``normal`` (CopyKAT),
    ``patient`` (one donor), ``sample_shared`` (one sample: the tumour's 10x sample as it is) and
    ``sample_split`` (tumour and normal cells in separate samples), ``state`` empty (pooled reference),
    ``leiden`` (:func:`leiden_clusters`)."""
    table = pd.read_csv(TNBC1 / "counts.tsv.gz", sep="\t", index_col=0)
    pred = pd.read_csv(TNBC1 / "copykat_prediction.tsv", sep="\t", index_col=0)["copykat.pred"]
    raw = ad.AnnData(
        sp.csr_matrix(table.to_numpy(np.float32).T),
        obs=pd.DataFrame(index=table.columns.astype(str)),
        var=pd.DataFrame(index=table.index.astype(str)),
    )
    genes = rm.io.load_genes(GRCH38_GENES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata, _ = rm.io.map_genes(raw, genes, source="tnbc1")
    obs = adata.obs
    p = pred.reindex(obs.index)
    obs["tumour"] = (p == "aneuploid").to_numpy()
    obs["normal"] = (p == "diploid").to_numpy()
    assert (obs["tumour"] ^ obs["normal"]).all()
    obs["patient"] = "TNBC1"
    obs["sample_shared"] = "TNBC1"
    obs["sample_split"] = np.where(obs["tumour"], "TNBC1_tumour", "TNBC1_normal")
    obs["state"] = ""
    adata.layers["counts"] = sp.csr_matrix(adata.X)
    obs["leiden"] = leiden_clusters(adata.layers["counts"])
    return adata


# ------------------------------------------------------------------------------------------------
# oligodendroglioma
# ------------------------------------------------------------------------------------------------
def oligo_sets():
    cyto = rm.io.load_cytobands(HG19_ARMS)
    arms = rm.io.chromosome_arms(cyto)
    return _lesions(OLIGO_LESIONS, cyto, arms), _lesions(OLIGO_CONTROLS, cyto, arms)


def census_t(X: sp.csr_matrix, threshold: float = 0.1, seed: int = 0) -> np.ndarray:
    """Per-cell relative expression of one captured molecule (Census t*, upper mixture component)."""
    from sklearn.mixture import GaussianMixture

    X = sp.csr_matrix(X)
    out = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        v = X.data[X.indptr[i] : X.indptr[i + 1]]
        lv = np.log10(v[v > threshold])[:, None]
        out[i] = 10 ** float(GaussianMixture(2, random_state=seed).fit(lv).means_.max())
    return out


def load_oligo() -> ad.AnnData:
    """The set as benchmarks/oligodendroglioma.py prepares it: ``layers['counts']`` = X / t*, obs
    ``tumour`` (malignant), ``normal``, ``patient`` = ``sample`` = the tumour, ``state`` (nearest reference state),
    ``leiden`` (:func:`leiden_clusters`)."""
    import infercnvpy as cnv

    adata = cnv.datasets.oligodendroglioma()
    X = sp.csr_matrix(adata.X, dtype=np.float64)
    obs = adata.obs
    obs["cell_type"] = obs["cell_type"].astype(str)
    prefix = pd.Series([c.split("_")[0] for c in adata.obs_names], index=obs.index)
    obs["patient"] = prefix.replace({"93": "MGH93", "97": "MGH97"}).to_numpy()
    obs["sample"] = obs["patient"]
    obs["tumour"] = obs["cell_type"].str.startswith("malignant").to_numpy()
    obs["normal"] = obs["cell_type"].isin(OLIGO_NORMAL_TYPES).to_numpy()
    t = census_t(X)
    counts = sp.csr_matrix(sp.diags(1.0 / t) @ X)
    adata.layers["counts"] = counts
    normal = obs["normal"].to_numpy()
    keep = ~adata.var["chromosome"].isin(["chr1", "chr19", "chrX", "chrY"]).to_numpy()
    lx = np.log1p(counts[:, keep].toarray())
    lx = lx - lx.mean(1, keepdims=True)
    cents = np.vstack([lx[(obs["cell_type"] == s).to_numpy()].mean(0) for s in OLIGO_NORMAL_TYPES])
    cents = cents - cents.mean(1, keepdims=True)
    cor = (lx @ cents.T) / np.outer(np.linalg.norm(lx, axis=1), np.linalg.norm(cents, axis=1))
    obs["state"] = np.where(normal, obs["cell_type"], np.asarray(OLIGO_NORMAL_TYPES)[cor.argmax(1)])
    adata.var["gene_name"] = adata.var_names.astype(str)
    obs["leiden"] = leiden_clusters(counts)
    return adata


# ------------------------------------------------------------------------------------------------
# infercnvpy's per-cell arm score on the same cells and reference
# ------------------------------------------------------------------------------------------------
def _infercnv_windows(adata, logx, reference: np.ndarray, ref_labels: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """infercnvpy.tl.infercnv (window 100, step 10, ``dynamic_threshold=None``); the smoothed windows
    (cells x windows) and, per window, its chromosome and the midpoint of its centre gene.

    Its ``calculate_gene_values=True`` (per-gene values = mean of the windows covering the gene) costs
    40-130 s per run on TNBC1 here against 0.4 s without; an arm's mean over genes is, up to edge
    weights, its mean over the windows centred in the arm, which is what is used.
    """
    import infercnvpy as cnv

    var = adata.var[["chromosome", "start", "end"]].copy()
    b = ad.AnnData(logx, obs=pd.DataFrame(index=adata.obs_names), var=var)
    b.obs["icnv_ref"] = np.where(reference, ref_labels, "query")
    cats = sorted(set(b.obs["icnv_ref"][reference]))
    window, step = 100, 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cnv.tl.infercnv(
            b,
            reference_key="icnv_ref",
            reference_cat=cats,
            window_size=window,
            step=step,
            n_jobs=1,
            dynamic_threshold=None,
        )
    X = b.obsm["X_cnv"]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    chr_pos = b.uns["cnv"]["chr_pos"]
    rows = []
    for chrom in sorted(chr_pos, key=chr_pos.get):
        on = var[var["chromosome"] == chrom].sort_values("start")
        mid = ((on["start"].to_numpy(np.int64) + on["end"].to_numpy(np.int64)) // 2).astype(np.int64)
        n = len(on)
        centres = [n // 2] if n <= window else [j + window // 2 for j in range(0, n - window + 1, step)]
        rows += [(chrom, int(mid[c])) for c in centres]
    win = pd.DataFrame(rows, columns=["chromosome", "mid"])
    assert len(win) == X.shape[1], (len(win), X.shape)
    return X, win


def infercnv_scores(
    adata, logx, reference: np.ndarray, ref_labels: np.ndarray, lesions, n_folds: int = 5, seed: int = 0
) -> dict:
    """Per-cell arm score: mean of infercnvpy's smoothed CNV profile over the windows centred in the
    arm (``dynamic_threshold=None``: continuous), sign by direction (losses negated).

    ``insample``: one run with every reference cell in the reference (its tutorial). ``crossfit``:
    query cells from that run; reference cells from runs whose reference leaves their fold out
    (``n_folds`` random folds), so no reference cell is scored against itself (as call_lesions does).
    """
    X, win = _infercnv_windows(adata, logx, reference, ref_labels)
    rng = np.random.default_rng(seed)
    ref_idx = np.flatnonzero(reference)
    fold = np.full(adata.n_obs, -1)
    fold[ref_idx] = rng.permutation(np.arange(ref_idx.size) % n_folds)
    X_cf = X.copy()
    for k in range(n_folds):
        held = fold == k
        X_cf[held] = _infercnv_windows(adata, logx, reference & ~held, ref_labels)[0][held]
    out = {"insample": {}, "crossfit": {}}
    for les in lesions:
        m = (win["chromosome"].to_numpy() == les.chromosome) & (win["mid"] >= les.start).to_numpy()
        m &= (win["mid"] < les.end).to_numpy()
        sign = -1.0 if les.type == "loss" else 1.0
        out["insample"][les.name] = sign * X[:, m].mean(1)
        out["crossfit"][les.name] = sign * X_cf[:, m].mean(1)
    return out


def _gene_in(var: pd.DataFrame, les) -> np.ndarray:
    mid = (var["start"].to_numpy(np.int64) + var["end"].to_numpy(np.int64)) // 2
    return (var["chromosome"].astype(str).to_numpy() == les.chromosome) & (mid >= les.start) & (mid < les.end)


def log_normalised(adata, layer="counts", target=1e4) -> sp.csr_matrix:
    """log1p of counts scaled to ``target`` per cell (scanpy's normalize_total + log1p)."""
    X = sp.csr_matrix(adata.layers[layer], dtype=np.float32)
    tot = np.asarray(X.sum(1)).ravel()
    return sp.csr_matrix(sp.diags((target / np.maximum(tot, 1)).astype(np.float32)) @ X).log1p()


# ------------------------------------------------------------------------------------------------
# any real set with known truth, described by a YAML file (benchmarks/real_data.py --set)
# ------------------------------------------------------------------------------------------------
#: The keys of a truth set's ``cells`` mapping and their defaults (benchmarks/sets/README.md).
CELL_KEYS = {
    "file": None,
    "id": None,
    "truth": "truth",
    "tumour": ["tumour"],
    "normal": ["normal"],
    "sample": None,
    "patient": None,
    "state": None,
    "technology": None,
}
SET_KEYS = ("name", "counts", "cells", "lesions", "controls")


class SetError(ValueError):
    """A truth set's YAML or files are not usable: one line naming the file and what to fix."""


def _set_path(base: Path, value, where: str, yaml_path: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise SetError(f"{yaml_path}: `{where}` must be a path (relative to the YAML's folder or absolute)")
    path = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
    if not path.exists():
        raise SetError(f"{yaml_path}: `{where}` {path} does not exist; fix the path (relative to {base})")
    return path


def read_truth_set(yaml_path) -> dict:
    """The truth set described by ``yaml_path`` (benchmarks/sets/README.md), checked: a dict with ``name``,
    ``counts`` (a Path), ``cells`` (the mapping with defaults filled, its ``file`` a Path), ``lesions`` and
    ``controls`` (lists of ``{name, type, region[, copy_ratio]}``). Raises :class:`SetError`."""
    import yaml

    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise SetError(f"{yaml_path}: no such file; give the truth set's YAML (benchmarks/sets/README.md)")
    try:
        spec = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as err:
        raise SetError(f"{yaml_path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise SetError(f"{yaml_path}: must be a mapping with keys {', '.join(SET_KEYS)}")
    missing = [k for k in SET_KEYS if k not in spec and k != "controls"]
    unknown = sorted(set(spec) - set(SET_KEYS))
    if missing or unknown:
        what = (f"missing {missing}" if missing else "") + ("; " if missing and unknown else "")
        raise SetError(f"{yaml_path}: {what}{f'unknown keys {unknown}' if unknown else ''}; keys are {SET_KEYS}")
    base = yaml_path.resolve().parent
    cells = spec["cells"]
    if not isinstance(cells, dict) or "file" not in cells:
        raise SetError(f"{yaml_path}: `cells` must be a mapping with at least `file` (the per-cell truth table)")
    unknown = sorted(set(cells) - set(CELL_KEYS))
    if unknown:
        raise SetError(f"{yaml_path}: unknown keys {unknown} under `cells`; keys are {sorted(CELL_KEYS)}")
    cells = CELL_KEYS | cells
    for key in ("tumour", "normal"):
        cells[key] = [str(v) for v in (cells[key] if isinstance(cells[key], list) else [cells[key]])]
    if set(cells["tumour"]) & set(cells["normal"]):
        raise SetError(
            f"{yaml_path}: `cells.tumour` and `cells.normal` share values {set(cells['tumour']) & set(cells['normal'])}"
        )
    cells["file"] = _set_path(base, cells["file"], "cells.file", yaml_path)
    out = {"name": str(spec["name"]), "counts": _set_path(base, spec["counts"], "counts", yaml_path), "cells": cells}
    for key in ("lesions", "controls"):
        items = spec.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise SetError(f"{yaml_path}: `{key}` must be a list of {{name, type, region}} mappings")
        out[key] = items
    if not out["lesions"]:
        raise SetError(f"{yaml_path}: `lesions` is empty; name at least one lesion the tumour cells carry")
    return out


def _cells_table(cells: dict, yaml_path: Path) -> pd.DataFrame:
    path = cells["file"]
    table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    if cells["id"] is not None and cells["id"] not in table.columns:
        raise SetError(
            f"{yaml_path}: `cells.id` column {cells['id']!r} is not in {path} (columns {list(table.columns)})"
        )
    table = table.set_index(cells["id"] if cells["id"] is not None else table.columns[0])
    for key in ("truth", "sample", "patient", "state", "technology"):
        col = cells[key]
        if col is not None and col not in table.columns:
            raise SetError(
                f"{yaml_path}: `cells.{key}` column {col!r} is not in {path} (columns {list(table.columns)})"
            )
    if table.index.duplicated().any():
        raise SetError(f"{yaml_path}: {path} names cell {table.index[table.index.duplicated()][0]!r} twice")
    return table


def state_labels(obs: pd.DataFrame) -> np.ndarray:
    """infercnvpy's reference categories for a truth set's cells (:func:`load_truth_set`'s obs): each cell's state,
    ``"normal"`` where the set names none."""
    labels = obs["state"].astype(str).to_numpy()
    return np.where(labels == "", "normal", labels)


def load_truth_set(yaml_path):
    """A truth set (:func:`read_truth_set`) ready for benchmarks/real_data.py: ``(adata, lesions, controls, kw)``.

    ``adata``: the counts (``rm.io.read_counts``, any format it reads) of the cells the table names, genes mapped
    to the GRCh38 annotation by symbol or Ensembl ID (``rm.io.map_genes``), ``layers['counts']``; obs ``tumour`` /
    ``normal`` (the truth), ``sample``, ``patient``, ``state`` (``""`` without a state column: one pooled
    reference profile), ``technology`` where given, ``leiden`` (:func:`leiden_clusters`). Cells of neither truth
    value are kept (called, never the reference) and left out of the AUROCs. ``kw``: the harness of
    ``rm.tl.call_lesions`` (states, samples, donors, Leiden priors, technology batches where given)."""
    spec = read_truth_set(yaml_path)
    yaml_path, cells = Path(yaml_path), spec["cells"]
    table = _cells_table(cells, yaml_path)
    cyto = rm.io.load_cytobands(GRCH38_BANDS)
    arms = rm.io.chromosome_arms(cyto)
    try:
        lesions = rm.tl.parse_lesions(spec["lesions"], cyto, arms)
        controls = rm.tl.parse_lesions(spec["controls"], cyto, arms) if spec["controls"] else []
    except rm.errors.InputError as err:
        raise SetError(f"{yaml_path}: lesions/controls: {err}") from None
    genes = rm.io.load_genes(GRCH38_GENES)
    try:
        raw = rm.io.read_counts(spec["counts"], gene_symbols=genes["gene_name"])
    except rm.errors.InputError as err:
        raise SetError(f"{yaml_path}: counts: {err}") from None
    shared = raw.obs_names.intersection(table.index)
    if len(shared) == 0:  # 10x barcodes with and without the "-1" suffix
        strip = pd.Index(raw.obs_names.str.replace(r"-\d+$", "", regex=True))
        strip_table = pd.Index(table.index.str.replace(r"-\d+$", "", regex=True))
        if not (strip.duplicated().any() or strip_table.duplicated().any()):
            table = table.set_axis(strip_table)
            raw.obs_names = strip
            shared = raw.obs_names.intersection(table.index)
    if len(shared) < len(table) or len(shared) < raw.n_obs:
        print(
            f"{spec['name']}: {len(shared)} cells in both the counts and the cells table; left out "
            f"{raw.n_obs - len(shared)} of the counts' and {len(table) - len(shared)} of the table's",
            file=sys.stderr,
        )
    if len(shared) == 0:
        raise SetError(
            f"{yaml_path}: no cell of {cells['file']} is in {spec['counts']} (table {list(table.index[:3])}, "
            f"counts {list(raw.obs_names[:3])}); the cells' names must match the counts' barcodes"
        )
    raw = raw[raw.obs_names.isin(shared)].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata, _ = rm.io.map_genes(raw, genes, source=spec["name"])
    t = table.loc[adata.obs_names]
    truth = t[cells["truth"]].astype(str)
    obs = adata.obs
    obs["tumour"] = truth.isin(cells["tumour"]).to_numpy()
    obs["normal"] = truth.isin(cells["normal"]).to_numpy()
    for key in ("tumour", "normal"):
        if not obs[key].any():
            raise SetError(
                f"{yaml_path}: no cell's `{cells['truth']}` is one of {cells[key]} ({key}); values seen {sorted(set(truth))[:8]}"
            )
    obs["sample"] = t[cells["sample"]].astype(str).to_numpy() if cells["sample"] else spec["name"]
    obs["patient"] = t[cells["patient"]].astype(str).to_numpy() if cells["patient"] else obs["sample"].to_numpy()
    # every cell's state (scored cells are state-matched to the reference's); none: one pooled profile
    obs["state"] = t[cells["state"]].astype(str).to_numpy() if cells["state"] else ""
    kw = {
        "state_key": "state",
        "prior_key": "leiden",
        "donor_key": "patient",
        "sample_key": "sample",
        "layer": "counts",
    }
    kw["batch_key"] = None
    if cells["technology"]:
        obs["technology"] = t[cells["technology"]].astype(str).to_numpy()
        kw["batch_key"] = "technology"
    adata.layers["counts"] = sp.csr_matrix(adata.X)
    obs["leiden"] = leiden_clusters(adata.layers["counts"])
    adata.uns["truth_set"] = spec["name"]
    return adata, lesions, controls, kw
