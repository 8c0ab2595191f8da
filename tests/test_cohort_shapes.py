"""Every cohort shape a lab has runs to a report (issue 19): the real workflow end to end on small
cohorts without the founding study's design, asserting on what the report and tables say.

Three runs (one module-scoped fixture each) cover the shapes of the issue:

- run A, ``one_sample``: ONE SAMPLE (one patient, one timepoint, one population: HSC at
  diagnosis), so also ONE TIMEPOINT and ONE POPULATION; NO HEALTHY DONOR (``cnv.reference: auto``);
  a TUMOUR SAMPLE HOLDING NORMAL CELLS (clone fraction 0.5: half its cells are the patient's normal
  cells). The design keys ``persistence.stem/progenitor/before/after`` are absent from its config.
- run B, ``plate_only``: a PLATE-ONLY cohort (Smart-seq2 tables with index-sort intensities), two
  patients at TWO TIMEPOINTS (diagnosis, remission) in ONE POPULATION (HSC); NO HEALTHY DONOR, the
  reference is a NAMED POPULATION (``cnv.reference: {population: [HSC], timepoint: [remission]}``).
  Its design keys are the template's (HSC, PROG, diagnosis, remission): PROG is declared but the
  cohort has no PROG sample.
- run C, ``low_depth``: droplet samples at ~500 UMI/cell (qc.min_counts and min_genes lowered as a
  lab with such data would), two patients with TWO POPULATIONS (HSC, PROG) at ONE TIMEPOINT
  (remission), and a HEALTHY DONOR as the reference; ``persistence.before`` is null (no
  before/after design), so stem vs progenitor at remission is the one contrast to make.

The counts are simulated here with the library (remnant.sim.cohort.simulate_cohort) and written under
the working directory's data/ in the formats a lab has; each config starts from config/config.yaml
with ``demo.simulate: false``. Cells are few (150-200 per droplet sample, 96 per plate) and the
clustering and DE small: each run, workflow and report, took 80-90 s on 2 shared cores (the module
4.5 min); ``wall_seconds.txt`` in each working directory keeps its time.
"""

from __future__ import annotations

import base64
import copy
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHEET_COLUMNS = [
    "sample",
    "patient",
    "timepoint",
    "population",
    "condition",
    "technology",
    "format",
    "counts",
    "index_sort",
]
SUFFIX = {
    "h5ad": ".h5ad",
    "10x_h5": ".h5",
    "10x_mtx": "",
    "table_genes_x_cells": ".tsv.gz",
    "table_cells_x_genes": ".csv",
}

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def write_cohort(
    workdir: Path, rows: list[tuple[str, ...]], *, params: dict, seed: int, overrides: dict, drop: tuple[str, ...] = ()
) -> None:
    """Simulate ``rows`` of (sample, patient, timepoint, population, condition, technology, format)
    with the library, write each sample's counts (and plate index-sort tables) under data/, a sample
    sheet naming them and a config: the repository's config/config.yaml with ``overrides`` merged
    over it (a mapping merges key by key, anything else replaces) and the dotted keys ``drop``
    removed."""
    from remnant.io.annotation import load_genes
    from remnant.io.counts import write_counts
    from remnant.io.genesets import read_gene_sets
    from remnant.pp.cluster import read_markers
    from remnant.sim.cohort import simulate_cohort

    data = workdir / "data"
    data.mkdir(parents=True)
    records = []
    for sample, patient, timepoint, population, condition, technology, fmt in rows:
        records.append(
            {
                "sample": sample,
                "patient": patient,
                "timepoint": timepoint,
                "population": population,
                "condition": condition,
                "technology": technology,
                "format": fmt,
                "counts": f"data/{sample}{SUFFIX[fmt]}",
                "index_sort": f"data/{sample}.index_sort.csv" if technology == "plate" else "",
            }
        )
    sheet = pd.DataFrame(records, columns=SHEET_COLUMNS).set_index("sample", drop=False)
    paths = sheet.to_dict(orient="index")

    def write(sample, counts, index_sort):
        write_counts(counts, workdir / paths[sample]["counts"], paths[sample]["format"])
        if index_sort is not None:
            index_sort.to_csv(workdir / paths[sample]["index_sort"], index_label="barcode", float_format="%.2f")

    sim = simulate_cohort(
        sheet,
        load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz"),
        read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
        read_gene_sets(ROOT / "resources/gene_sets"),
        params=params,
        seed=seed,
        write=write,
    )
    sim.cells.to_csv(workdir / "truth.tsv.gz", sep="\t", index=False)  # per cell: carrier or not (the test reads it)
    sheet.to_csv(workdir / "samples.tsv", sep="\t", index=False)

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    # the counts exist: nothing to simulate (the demo block's other keys are the simulator's)
    config["demo"] = {"simulate": False}
    merge(config, {"samples": "samples.tsv", **overrides})
    for dotted in drop:
        *parents, last = dotted.split(".")
        block = config
        for key in parents:
            block = block[key]
        block.pop(last)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# Small and quick for every run: few genes and components to cluster on, DE on well-covered genes only.
QUICK = {"cluster": {"n_top_genes": 500, "n_pcs": 10}, "pseudobulk": {"min_total_count": 3000}}


def run_workflow(workdir: Path) -> Path:
    """Run the workflow, then render the report; keep Snakemake's output and the wall time."""
    start = time.monotonic()
    result = snakemake(workdir, "--cores", "2")
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise AssertionError(f"workflow run in {workdir} failed:\n{result.stderr[-6000:]}")
    report = snakemake(workdir, "--report", "results/report.html")
    if report.returncode != 0:
        raise AssertionError(f"report of {workdir} failed:\n{report.stderr[-4000:]}")
    seconds = time.monotonic() - start
    (workdir / "wall_seconds.txt").write_text(f"{seconds:.0f}\n")
    print(f"\n{workdir.name}: workflow and report in {seconds:.0f} s")
    return workdir


@pytest.fixture(scope="module")
def one_sample(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("one_sample")
    write_cohort(
        workdir,
        [("P1_diagnosis_HSC", "P1", "diagnosis", "HSC", "MDS", "droplet", "10x_h5")],
        params={"cells_per_sample": {"droplet": 200, "plate": 96}, "clone_fraction": {"diagnosis": {"HSC": 0.5}}},
        seed=11,
        overrides={
            **QUICK,
            "populations": {"HSC": "Lin- CD34+ CD38-/low CD90+"},
            "timepoints": ["diagnosis"],
            "conditions": {"all": ["MDS"], "reference": []},
            "cnv": {"reference": "auto"},
        },
        drop=("persistence.stem", "persistence.progenitor", "persistence.before", "persistence.after"),
    )
    return run_workflow(workdir)


@pytest.fixture(scope="module")
def plate_only(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("plate_only")
    rows = [
        (f"{p}_{tp}_HSC", p, tp, "HSC", "MDS", "plate", fmt)
        for p in ("P1", "P2")
        for tp, fmt in (("diagnosis", "table_genes_x_cells"), ("remission", "table_cells_x_genes"))
    ]
    write_cohort(
        workdir,
        rows,
        params={"clone_fraction": {"diagnosis": {"HSC": 0.9}, "remission": {"HSC": 0.3}}},
        seed=12,
        overrides={
            **QUICK,
            "conditions": {"all": ["MDS"], "reference": []},
            # deep plate cells: the patients' own copy ratios fitted (cnv.fit_copy_ratio, with the median depth
            # baseline it needs, the default)
            "cnv": {"reference": {"population": ["HSC"], "timepoint": ["remission"]}, "fit_copy_ratio": True},
        },
    )
    return run_workflow(workdir)


@pytest.fixture(scope="module")
def low_depth(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("low_depth")
    rows = [
        (f"{p}_remission_{pop}", p, "remission", pop, "MDS", "droplet", fmt)
        for p in ("P1", "P2")
        for pop, fmt in (("HSC", "10x_h5"), ("PROG", "10x_mtx"))
    ]
    rows += [(f"N1_{pop}", "N1", "NA", pop, "healthy", "droplet", "h5ad") for pop in ("HSC", "PROG")]
    write_cohort(
        workdir,
        rows,
        params={
            "cells_per_sample": {"droplet": 150, "plate": 96},
            "library_size": {"droplet": {"median": 500.0, "sdlog": 0.35}},
            "clone_fraction": {"remission": {"HSC": 0.6, "PROG": 0.1}},
        },
        seed=13,
        overrides={**QUICK, "qc": {"min_counts": 150, "min_genes": 100}, "persistence": {"before": None}},
    )
    return run_workflow(workdir)


# ---------------------------------------------------------------------------------------------
# what every run must have: a report whose first page says what was and was not compared, the
# warnings table, and every table of the persistence stage (with rows, notes, or a header)
# ---------------------------------------------------------------------------------------------
def read(workdir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(workdir / "results" / name, sep="\t", keep_default_na=False, na_values=[""])


def summary_page(workdir: Path) -> str:
    """The report's '0. Summary' page (embedded in report.html as a base64 data URL)."""
    html = (workdir / "results/report.html").read_text()
    match = re.search(r"data:text/html;charset=utf8;filename=summary\.html;base64,([A-Za-z0-9+/=]+)", html)
    assert match, "the summary page is not in the report"
    return base64.b64decode(match.group(1)).decode()


def first_page(workdir: Path) -> tuple[str, list[str], list[str]]:
    """The report's first page (front_page.rst, which report.html carries) and its bullet lines
    under 'Compared:' and 'Not compared, and why:'."""
    text = (workdir / "results/report/front_page.rst").read_text()
    html = (workdir / "results/report.html").read_text()
    qc = read(workdir, "qc/removed_per_sample.tsv")
    assert (
        f"{int(qc['kept'].sum())} cells after quality control" in text
        and f"{int(qc['kept'].sum())} cells after quality control" in html
    )

    def bullets(heading):
        if heading not in text:
            return []
        block = text.split(heading, 1)[1].split("\n\n", 2)[1]
        return [line[2:] for line in block.splitlines() if line.startswith("- ")]

    return text, bullets("Compared:"), bullets("Not compared, and why:")


def check_every_output(workdir: Path) -> None:
    for name in (
        "warnings.tsv",
        "persistence/del_fraction.tsv",
        "persistence/del_fraction_pooled.tsv",
        "persistence/contrasts.tsv",
        "persistence/signature_comparisons.tsv",
        "persistence/cycling_composition.tsv",
        "persistence/cycling_contrasts.tsv",
        "persistence/pseudobulk_samples.tsv",
        "persistence/de.tsv",
        "persistence/enrichment.tsv",
        "cnv/reference.tsv",
    ):
        assert (workdir / "results" / name).is_file(), name
    assert list(read(workdir, "warnings.tsv").columns) == ["rule", "log", "logger", "message"]
    for figure in ("del_fraction", "signature_scores", "cycling_composition", "volcano"):
        assert (workdir / f"results/persistence/figures/{figure}.png").stat().st_size > 5000, figure
    html = (workdir / "results/report.html").read_text()
    for category in ("0. Summary", "1. Quality control", "2. Clustering", "3. Copy number", "4. Persistence"):
        assert category in html, category
    summary = summary_page(workdir)
    for section in (
        "Cohort",
        "fraction per patient, population and timepoint",
        "How far to trust the calls",
        "Methods",
    ):
        assert section in summary, section
    # every contrast in the table is on the first page, compared or not (with its note)
    _, compared, not_compared = first_page(workdir)
    contrasts = read(workdir, "persistence/contrasts.tsv").fillna({"note": ""})
    for question, rows in contrasts.groupby("question", sort=False):
        if (rows["scope"] == "patient").any():
            assert any(line.startswith(f"{question}: ") and "percentage points" in line for line in compared), question
        else:
            assert f"{question}: {rows['note'].iloc[0]}" in not_compared, question
            assert rows[["difference", "odds_ratio", "pvalue"]].isna().all().all()  # no number made up


# ---------------------------------------------------------------------------------------------
# run A: one sample (one timepoint, one population), no healthy donor, auto reference, a tumour
# sample holding normal cells, design keys absent
# ---------------------------------------------------------------------------------------------
def test_one_sample_runs_to_a_report(one_sample):
    check_every_output(one_sample)
    text, compared, not_compared = first_page(one_sample)
    assert "1 patient, 0 reference donors, 1 sorted sample, " in text
    assert compared == []
    assert not_compared == [
        "stem vs progenitor: persistence.stem and persistence.progenitor are null (not a stem vs progenitor design); it has one "
        "population (HSC)",
        "after vs before treatment: persistence.before and persistence.after are null (not a before/after design); it has one "
        "timepoint (diagnosis)",
        "signature scores, del5q vs non-del stem cells: persistence.stem is null (not a stem-cell design); it has one population (HSC)",
        "cycling of del5q vs non-del stem cells: persistence.stem is null (not a stem-cell design); it has one population (HSC)",
        "pseudobulk DE of carrier stem cells after vs before treatment: persistence.stem, persistence.before and persistence.after "
        "are null (not a stem-cell before/after design)",
    ]
    assert "What could not be compared" in summary_page(one_sample)
    contrasts = read(one_sample, "persistence/contrasts.tsv")
    assert contrasts["question"].tolist() == ["stem vs progenitor", "after vs before treatment"]
    assert (
        read(one_sample, "persistence/signature_comparisons.tsv")["note"].str.startswith("persistence.stem is null")
    ).all()
    assert len(read(one_sample, "persistence/cycling_contrasts.tsv")) == 1
    assert read(one_sample, "persistence/pseudobulk_samples.tsv").empty and read(one_sample, "persistence/de.tsv").empty
    assert list(read(one_sample, "persistence/de.tsv").columns)[:2] == ["gene", "gene_name"]
    assert read(one_sample, "persistence/enrichment.tsv")["note"].str.startswith("no DE test: persistence.stem").all()


def test_one_tumour_sample_with_normal_cells_finds_both_against_an_automatic_reference(one_sample):
    """No healthy donor: cnv.reference auto picks the sample's own normal cells, and the corrected
    carrier fraction of the sample (half its cells simulated normal) covers the truth."""
    reference = read(one_sample, "cnv/reference.tsv")
    assert reference[["mode", "lesion", "batch"]].values.tolist() == [["auto", "del5q", "droplet"]]
    assert reference["n_chosen"].iloc[0] >= 50 and bool(reference["confident"].iloc[0])
    (row,) = read(one_sample, "persistence/del_fraction.tsv").itertuples()
    assert (row.patient, row.population, row.timepoint, row.n_samples) == ("P1", "HSC", "diagnosis", 1)
    assert 0.25 < row.fraction < 0.75 and row.n_cells > 150
    calls = pd.read_csv(one_sample / "results/cnv/lesion_calls.tsv.gz", sep="\t")
    truth = pd.read_csv(one_sample / "truth.tsv.gz", sep="\t").set_index(["sample", "barcode"])
    carrier = truth.loc[list(zip(calls["sample"], calls["barcode"])), "lesion_del5q"].astype(bool).to_numpy()
    assert row.corrected_low <= carrier.mean() <= row.corrected_high, (
        carrier.mean(),
        row.corrected_low,
        row.corrected_high,
    )
    called = calls["del5q_call"].astype(bool).to_numpy()
    assert (called & carrier).sum() > 0.6 * carrier.sum() and (called & ~carrier).sum() < 0.1 * (~carrier).sum()


# ---------------------------------------------------------------------------------------------
# run B: plate only (index-sorted), two timepoints, one population, the reference a named
# population (remission HSC); the template's design names PROG, which the cohort lacks
# ---------------------------------------------------------------------------------------------
def test_plate_only_cohort_with_one_population_runs_to_a_report(plate_only):
    check_every_output(plate_only)
    text, compared, not_compared = first_page(plate_only)
    assert "2 patients, 0 reference donors, 4 sorted samples, " in text
    assert len(compared) == 1 and compared[0].startswith("remission vs diagnosis in HSC: -")
    # the reference is the remission cells themselves (30% carriers), so few remission HSC are
    # called: whether a patient has 10 carrier HSC there for a pseudobulk turns on a handful of
    # cells (12 and 11 with a plain depth, 6 and 15 with the robust one); the design rows are fixed
    pseudobulk = read(plate_only, "persistence/pseudobulk_samples.tsv")
    pairs = pseudobulk[pseudobulk["used"]].groupby("patient").size().eq(2).sum()
    expected_de = (
        []
        if pairs >= 2
        else [
            f"pseudobulk DE of carrier stem cells after vs before treatment: {pairs} patient(s) with both pseudobulks (2 needed)"
        ]
    )
    assert not_compared == [
        "HSC vs PROG at remission (persistence): no analysed PROG cells at remission; the cohort has one population (HSC) there",
        "HSC vs PROG at diagnosis: no analysed PROG cells at diagnosis; the cohort has one population (HSC) there",
        "remission vs diagnosis in PROG: no analysed PROG cells; the cohort has one population (HSC)",
        *expected_de,
    ]
    fractions = read(plate_only, "persistence/del_fraction.tsv").set_index(["patient", "timepoint"])
    assert len(fractions) == 4 and (fractions["population"] == "HSC").all()
    for patient in ("P1", "P2"):  # simulated clone 0.9 at diagnosis, 0.3 at remission
        assert (
            fractions.loc[(patient, "remission"), "corrected_high"]
            < fractions.loc[(patient, "diagnosis"), "corrected_low"]
        )
    contrasts = read(plate_only, "persistence/contrasts.tsv")
    cmh = contrasts[
        (contrasts["question"] == "remission vs diagnosis in HSC")
        & (contrasts["scope"] == "across patients")
        & contrasts["test"].str.startswith("Cochran")
    ].iloc[0]
    assert cmh["n_strata"] == 2 and cmh["odds_ratio_high"] < 1 and cmh["pvalue"] < 1e-6
    # the stem-cell stages ran: a pseudobulk per patient x timepoint, each one left out saying why,
    # and the paired test when two patients have both
    unused = pseudobulk.loc[~pseudobulk["used"], "reason"]  # all-empty column reads as float when every one is used
    assert len(pseudobulk) == 4 and unused.fillna("").astype(str).str.len().gt(0).all()
    assert pseudobulk.loc[pseudobulk["used"], "n_cells"].ge(10).all()
    assert (len(read(plate_only, "persistence/de.tsv")) > 100) == (pairs >= 2)


def test_plate_only_reference_is_the_named_population(plate_only):
    reference = read(plate_only, "cnv/reference.tsv")
    assert reference[["mode", "batch"]].values.tolist() == [["configured", "plate"]]
    calls = pd.read_csv(plate_only / "results/cnv/lesion_calls.tsv.gz", sep="\t")
    assert set(calls.loc[calls["reference"].astype(bool), "timepoint"]) == {"remission"}
    assert reference["n_chosen"].iloc[0] == int((calls["timepoint"] == "remission").sum())
    agreement = read(plate_only, "persistence/gate_agreement.tsv").set_index("sample")
    assert agreement.loc["all", "n_index_sorted"] == agreement.loc["all", "n_cells"]  # every plate cell index-sorted
    # cnv.fit_copy_ratio is on in this run: the simulator's losses are one copy of two, so both patients keep 1/2,
    # and the report's Methods say the ratios were fitted
    intervals = read(plate_only, "cnv/lesion_intervals.tsv")
    assert sorted(intervals["donor"]) == ["P1", "P2"] and intervals["copy_ratio"].eq(0.5).all()
    assert "at its own copy ratio of each lesion" in (plate_only / "results/report/summary.html").read_text()


# ---------------------------------------------------------------------------------------------
# run C: droplet at ~500 UMI/cell, two populations at one timepoint, a healthy donor
# ---------------------------------------------------------------------------------------------
def test_low_depth_two_populations_at_one_timepoint_runs_to_a_report(low_depth):
    check_every_output(low_depth)
    text, compared, not_compared = first_page(low_depth)
    assert "2 patients, 1 reference donor, 6 sorted samples, " in text
    assert len(compared) == 1 and compared[0].startswith("HSC vs PROG at remission (persistence): ")
    # at ~500 UMI the calls may carry too little information to correct (1 - fpr - fnr < min_youden):
    # then the page claims nothing and says why; the called cells' difference (HSC higher) is descriptive
    contrast = read(low_depth, "persistence/contrasts.tsv")
    pooled = contrast[(contrast["scope"] == "across patients") & contrast["test"].str.contains("Mantel")].iloc[0]
    if pd.isna(pooled["corrected_difference"]):
        assert "no corrected difference (no test)" in compared[0] and "min_youden" in compared[0]
        assert "a difference" not in compared[0].split(";")[0]
    else:
        # the answer clause says "a difference" or "no evidence of a difference" (which holds the former)
        answer = compared[0].split(";")[0]
        assert answer.endswith(": a difference" if pooled["significant"] else ": no evidence of a difference"), answer
    assert "called cells +" in compared[0]
    assert not_compared == [
        "after vs before treatment: persistence.before is null (not a before/after design); it has one timepoint (remission)",
        "signature scores, del5q HSC cells: after vs before treatment: persistence.before is null (not a before/after design); it "
        "has one timepoint (remission)",
        "cycling of del5q HSC cells: after vs before treatment: persistence.before is null (not a before/after design); it has one "
        "timepoint (remission)",
        "pseudobulk DE of carrier stem cells after vs before treatment: persistence.before is null (not a before/after design)",
    ]
    cells = pd.read_csv(low_depth / "results/cohort/cells.tsv.gz", sep="\t")
    assert cells["total_counts"].median() < 600  # the depth it was simulated at
    contrasts = read(low_depth, "persistence/contrasts.tsv")
    cmh = contrasts[
        (contrasts["question"] == "HSC vs PROG at remission (persistence)")
        & (contrasts["scope"] == "across patients")
        & contrasts["test"].str.startswith("Cochran")
    ].iloc[0]
    assert cmh["n_strata"] == 2 and cmh["odds_ratio_low"] > 1  # simulated clone 0.6 in HSC, 0.1 in PROG
    comparisons = read(low_depth, "persistence/signature_comparisons.tsv")
    tested = comparisons[comparisons["question"] == "del5q vs non-del HSC cells at remission"]
    assert tested["test"].notna().all() and len(tested) > len(pd.unique(tested["score"]))
    reference = read(low_depth, "cnv/reference.tsv")
    assert reference["n_chosen"].iloc[0] == int((cells["condition"] == "healthy").sum())  # the healthy donor's cells
    assert read(low_depth, "persistence/de.tsv").empty
