"""End to end: the real Snakemake workflow on a small simulated cohort (tests/data/cohort).

The cohort is simulated by the workflow itself (demo.simulate: true) into a temporary working
directory, so these tests also cover running remnant outside its own checkout (--directory).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
COHORT = ROOT / "tests/data/cohort"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def new_workdir(tmp_path_factory, name="cohort") -> Path:
    workdir = tmp_path_factory.mktemp(name)
    for name in ("config.yaml", "samples.tsv"):
        shutil.copy(COHORT / name, workdir / name)
    return workdir


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    workdir = new_workdir(tmp_path_factory)
    snakemake(workdir)
    return workdir


def test_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=ROOT)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout + result.stderr


def test_dry_run_plans_every_stage(tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "dry")
    result = snakemake(workdir, "--dry-run", "--quiet", "rules")
    text = result.stdout + result.stderr
    for rule, count in [("simulate_cohort", 1), ("read_counts", 10), ("filter_cells", 10), ("summarise_qc", 1),
                        ("cluster_cells", 1), ("plot_clusters", 1), ("call_lesions", 1), ("evaluate_demo", 1),
                        ("infer_cnv", 1), ("plot_cnv", 3), ("plot_lesion_profile", 3)]:
        assert any(line.split()[:2] == [rule, str(count)] for line in text.splitlines()), text
    assert not any((workdir / d).exists() for d in ("results", "counts")), "a dry run wrote outputs"


def test_qc_removes_planted_bad_cells(run):
    agreement = pd.read_csv(run / "results/demo/truth_agreement.tsv", sep="\t").set_index(["what", "metric"])["value"]
    precision = agreement[("qc_removed_vs_planted_bad", "precision")]
    recall = agreement[("qc_removed_vs_planted_bad", "recall")]
    low_q, low_q_p = agreement[("low_quality", "recall")], agreement[("low_quality", "precision")]
    doublet_p, doublet_r = agreement[("doublet_droplet", "precision")], agreement[("doublet_droplet", "recall")]
    print(f"\nQC vs planted: precision {precision:.3f} recall {recall:.3f}; low-quality recall {low_q:.3f}; "
          f"doublets precision {doublet_p:.3f} recall {doublet_r:.3f}")
    assert low_q >= 0.95 and low_q_p >= 0.8
    # Scrublet on ~200 sorted droplet cells per sample is weak (AUROC ~0.7 on the simulator's
    # doublets, most of which pair similar states): ask for clearly better than chance (6% planted).
    assert doublet_p >= 0.12 and doublet_r >= 0.12
    assert precision >= 0.4 and recall >= 0.45


def test_states_agree_with_truth(run):
    agreement = pd.read_csv(run / "results/demo/truth_agreement.tsv", sep="\t").set_index(["what", "metric"])["value"]
    ari = agreement[("hspc_state", "adjusted_rand_index")]
    accuracy = agreement[("hspc_state", "accuracy")]
    print(f"\nHSPC states vs truth: ARI {ari:.3f}, accuracy {accuracy:.3f}")
    assert ari >= 0.7
    assert accuracy >= 0.8


def test_del5q_calls_against_truth(run):
    agreement = pd.read_csv(run / "results/demo/truth_agreement.tsv", sep="\t").set_index(["what", "metric"])["value"]
    auroc, fpr = agreement[("del5q", "auroc")], agreement[("del5q", "fpr_reference_cells")]
    precision, sensitivity = agreement[("del5q", "precision")], agreement[("del5q", "sensitivity")]
    print(f"\ndel5q: AUROC {auroc:.3f}, FPR on cross-fitted reference cells {fpr:.4f}, precision {precision:.3f}, sensitivity {sensitivity:.3f}")
    assert auroc >= 0.9 and fpr <= 0.01 and precision >= 0.95
    summary = pd.read_csv(run / "results/cnv/lesion_summary.tsv", sep="\t").set_index("sample")
    # the per-sample prior separates the diagnosis progenitors (clone ~97%) from remission progenitors (~3%)
    assert summary.loc["T1_diagnosis_PROG", "prior"] > 0.8 > 0.2 > summary.loc["T1_remission_PROG", "prior"]
    calls = pd.read_csv(run / "results/cnv/lesion_calls.tsv.gz", sep="\t")
    assert calls["del5q_posterior"].between(0, 1).all() and (calls["del5q_n_genes"] > 100).all()
    # plate HSC samples are scored against plate reference cells (N1_HSC), with their own count scale
    assert summary.loc["T2_diagnosis_HSC", "reference_matched"] and summary.loc["T2_diagnosis_HSC", "count_scale"] > 5
    intervals = pd.read_csv(run / "results/cnv/lesion_intervals.tsv", sep="\t").set_index("donor")
    assert intervals.loc["T1", "refined"] and 67_400_000 <= intervals.loc["T1", "start"] < intervals.loc["T1", "end"] <= 160_500_000
    cohort = ad.read_h5ad(run / "results/cohort/cohort.h5ad")
    for key in ("del5q_posterior", "del5q_llr", "del5q_call", "del5q_n_genes", "cnv_reference", "hspc_state"):
        assert key in cohort.obs, key
    assert set(cohort.uns["lesions"]["del5q"]) >= {"per_sample", "batches", "intervals", "genes"}
    breakpoints = pd.read_csv(run / "results/cnv/breakpoints.tsv", sep="\t")
    assert {"T1", "T2"} <= set(breakpoints["patient"].astype(str))


def test_qc_table_accounts_for_every_cell(run):
    table = pd.read_csv(run / "results/qc/removed_per_sample.tsv", sep="\t").set_index("sample")
    truth = pd.read_csv(run / "truth/cells.tsv.gz", sep="\t")
    assert (table["cells"] == truth.groupby("sample").size().reindex(table.index)).all()
    assert (table["kept"] + table["removed"] == table["cells"]).all()
    plate = table.index.str.contains("T2_.*HSC", regex=True)
    assert (table.loc[plate, "doublet"] == 0).all(), "plate samples must not be doublet-scored"
    assert table.loc[~plate, "doublet"].sum() > 0


def test_cohort_h5ad_is_sparse_and_documented(run):
    adata = ad.read_h5ad(run / "results/cohort/clustered.h5ad")
    table = pd.read_csv(run / "results/qc/removed_per_sample.tsv", sep="\t")
    assert adata.n_obs == table["kept"].sum()
    assert sp.issparse(adata.X) and sp.issparse(adata.layers["counts"])
    counts = adata.layers["counts"]
    assert np.all(counts.data == np.round(counts.data)), "layers['counts'] must hold raw counts"
    assert adata.obs_names.is_unique and adata.obs_names.str.contains(":").all()
    for key in ("sample", "patient", "timepoint", "population", "condition", "technology", "leiden",
                "hspc_state", "total_counts", "pct_counts_mt", "score_HSC"):
        assert key in adata.obs, key
    for key in ("X_pca", "X_pca_harmony", "X_umap"):
        assert key in adata.obsm, key
    assert list(adata.obs["timepoint"].cat.categories) == ["diagnosis", "remission", "NA"]
    assert {"chromosome", "start", "end", "gene_name"} <= set(adata.var.columns)
    plate = adata.obs["technology"] == "plate"
    assert adata.obs.loc[plate, "facs_CD38"].notna().all() and adata.obs.loc[~plate, "facs_CD38"].isna().all()
    # HSC-gated index-sorted cells have lower CD38 than progenitor-annotated cells would; within the
    # HSC gate, cells annotated HSC should have lower CD38 than those annotated otherwise.
    hsc = adata.obs[plate]
    assert hsc.loc[hsc["hspc_state"] == "HSC", "facs_CD90"].median() > hsc.loc[hsc["hspc_state"] != "HSC", "facs_CD90"].median()


def test_figures_are_real_pngs(run):
    figures = sorted((run / "results").rglob("*.png"))
    # per-sample QC, QC summary, UMAPs, dot plot, CNV heatmap and del5q profile per patient (T1, T2, N1)
    assert len(figures) == 10 + 1 + 6 + 1 + 3 + 3
    for figure in figures:
        data = figure.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, figure


def test_logs_per_job(run):
    logs = sorted((run / "logs").rglob("*.log"))
    assert len(logs) == 1 + 10 + 10 + 1 + 1 + 1 + 1 + 1 + 1 + 3 + 3
    text = (run / "logs/read_counts/T2_diagnosis_HSC.log").read_text()
    assert "done" in text and "mapped" in text


def test_bad_sheet_stops_with_one_clear_line(tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "bad")
    sheet = (workdir / "samples.tsv").read_text().replace("\tremission\tPROG", "\tremision\tPROG", 1)
    (workdir / "samples.tsv").write_text(sheet)
    result = snakemake(workdir, "--dry-run", check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "samples.tsv" in message and "line 5 (sample 'T1_remission_PROG')" in message and "'remision'" in message, message
    assert "Traceback" not in message


def test_rerun_is_a_no_op(run):
    result = snakemake(run, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr
