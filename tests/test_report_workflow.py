"""The HTML report of the test cohort: rendered by `snakemake --report`, numbers matching the TSV
tables, and opened in a real browser (headless Chromium) with no console errors."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def report(cohort_run) -> Path:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(cohort_run),
           "--configfile", str(cohort_run / "config.yaml"), "--report", "report.html"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cohort_run)
    assert result.returncode == 0, result.stderr[-4000:]
    return cohort_run / "report.html"


def summary_page(report: Path) -> str:
    """The report's '0. Summary' item (an HTML page embedded as a base64 data URL)."""
    match = re.search(r"data:text/html;charset=utf8;filename=summary\.html;base64,([A-Za-z0-9+/=]+)", report.read_text())
    assert match, "the summary page is not in the report"
    return base64.b64decode(match.group(1)).decode()


def test_report_has_every_section(report):
    html = report.read_text()
    for category in ("0. Summary", "1. Quality control", "2. Clustering", "3. Copy number", "4. Persistence"):
        assert category in html, category
    summary = summary_page(report)
    for section in ("Cohort", "fraction per patient, population and timepoint", "What the numbers say",
                    "How the lesion-carrying stem cells look", "How far to trust the calls", "Methods", "Provenance"):
        assert section in summary, section


def test_numbers_match_the_tables(report, cohort_run):
    html, summary = report.read_text(), summary_page(report)
    qc = pd.read_csv(cohort_run / "results/qc/removed_per_sample.tsv", sep="\t")
    assert f"{int(qc['kept'].sum())} cells after quality control" in html  # the first page
    assert f"{int(qc['cells'].sum())} cells read, {int(qc['kept'].sum())} kept" in summary
    fractions = pd.read_csv(cohort_run / "results/persistence/del_fraction.tsv", sep="\t")
    fractions = fractions[fractions["n_cells"] > 0]
    assert len(fractions) >= 8
    for _, row in fractions.iterrows():
        cell = f"{100 * row['fraction']:.0f}% ({100 * row['fraction_low']:.0f}-{100 * row['fraction_high']:.0f}%); " \
               f"{int(row['n_called'])}/{int(row['n_cells'])}"
        assert cell in summary and cell in html, cell
    contrasts = pd.read_csv(cohort_run / "results/persistence/contrasts.tsv", sep="\t")
    cmh = contrasts[(contrasts["scope"] == "across patients") & contrasts["test"].str.contains("Mantel")]
    for _, row in cmh.iterrows():
        assert f"{100 * row['difference']:+.0f} percentage points" in summary, row["contrast"]
    versions = {"snakemake", "scanpy", "anndata", "infercnvpy", "statsmodels"}
    for name in versions:
        assert re.search(rf"{name} \d+\.\d+", summary, flags=re.IGNORECASE), name
    assert "posterior &gt;= 0.9" in summary or "posterior >= 0.9" in summary


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and os.environ.get("CI") != "true",
                    reason="Debian chromium and chromium-driver are not installed (bin/test installs them in CI)")
def test_report_opens_in_chromium_without_console_errors(report, cohort_run):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "CI must have Debian chromium and chromium-driver (bin/test installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={cohort_run / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(report.as_uri())
        deadline = time.time() + 30
        text = ""
        while time.time() < deadline and "cells after quality control" not in text:
            time.sleep(0.5)
            text = driver.execute_script("return document.body.innerText")
        assert "cells after quality control" in text, text[:2000]
        shot = cohort_run / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
