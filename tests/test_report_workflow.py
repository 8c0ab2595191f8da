"""The HTML report of the test cohort: rendered by `snakemake --report`, numbers matching the TSV
tables, and opened in a real browser (headless Chromium) with no console errors. The first page of
a 10-row and a 40-row cohort in that browser at 1280 x 1000: heading and every row visible."""

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
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(cohort_run),
        "--configfile",
        str(cohort_run / "config.yaml"),
        "--report",
        "report.html",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cohort_run)
    assert result.returncode == 0, result.stderr[-4000:]
    return cohort_run / "report.html"


def summary_page(report: Path) -> str:
    """The report's '0. Summary' item (an HTML page embedded as a base64 data URL)."""
    match = re.search(
        r"data:text/html;charset=utf8;filename=summary\.html;base64,([A-Za-z0-9+/=]+)", report.read_text()
    )
    assert match, "the summary page is not in the report"
    return base64.b64decode(match.group(1)).decode()


def test_report_has_every_section(report):
    html = report.read_text()
    for category in ("0. Summary", "1. Quality control", "2. Clustering", "3. Copy number", "4. Persistence"):
        assert category in html, category
    summary = summary_page(report)
    for section in (
        "Cohort",
        "fraction per patient, population and timepoint",
        "What the numbers say",
        "How the lesion-carrying stem cells look",
        "How far to trust the calls",
        "Methods",
        "Provenance",
    ):
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
        cell = (
            f"{100 * row['fraction']:.0f}% ({100 * row['fraction_low']:.0f}-{100 * row['fraction_high']:.0f}%); "
            f"{int(row['n_called'])}/{int(row['n_cells'])}"
        )
        assert cell in summary and cell in html, cell
        # issue 20: the corrected fraction, with its interval, in bold before the called share
        corrected = (
            f"<strong>{100 * row['corrected']:.0f}% ({100 * row['corrected_low']:.0f}-"
            f"{100 * row['corrected_high']:.0f}%)</strong>"
            if pd.notna(row["corrected"])
            else "<strong>not corrected</strong>"
        )
        called = f'<span class="called">called {cell}</span>'
        assert f"{corrected} {called}" in summary and f"{corrected} {called}".replace('"', '\\"') in html, corrected
    contrasts = pd.read_csv(cohort_run / "results/persistence/contrasts.tsv", sep="\t")
    cmh = contrasts[(contrasts["scope"] == "across patients") & contrasts["test"].str.contains("Mantel")]
    for _, row in cmh.iterrows():
        assert f"{100 * row['difference']:+.0f} percentage points" in summary, row["contrast"]
    versions = {"snakemake", "scanpy", "anndata", "infercnvpy", "statsmodels"}
    for name in versions:
        assert re.search(rf"{name} \d+\.\d+", summary, flags=re.IGNORECASE), name
    assert "posterior &gt;= 0.9" in summary or "posterior >= 0.9" in summary


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and os.environ.get("CI") != "true",
    reason="Debian chromium and chromium-driver are not installed (bin/test installs them in CI)",
)
def test_report_opens_in_chromium_without_console_errors(report, cohort_run):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "CI must have Debian chromium and chromium-driver (bin/test installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={cohort_run / 'chromium-profile'}",
    ):
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


# The first page in Snakemake's report at 1280 x 1000 (issue 20). Snakemake's template showed the
# page in a vertically centred pane, so a page taller than the window lost its top (heading and
# first table rows above the pane, out of the scroll bar's reach); the 10-row table had been left
# out to keep the page short. The page is written by remnant.workflow.report.landing_page, as rule
# write_front_page does, from a del_fraction.tsv of patients x populations x timepoints, and
# rendered by the real `snakemake --report` of this workflow (its rule graph beside the page).

TIMEPOINTS, POPULATIONS = ("diagnosis", "remission", "relapse"), ("HSC", "PROG")


def cohort_tables(n_patients: int, seed: int = 0):
    """A del_fraction.tsv-shaped table (every patient x population x timepoint; one row not
    correctable, with its note), the sample sheet and the QC table of such a cohort."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        for pop in POPULATIONS:
            for tp in TIMEPOINTS:
                n = int(rng.integers(80, 400))
                called = int(rng.integers(0, n))
                q = called / n
                c = min(1.0, q + rng.uniform(0.02, 0.3))
                rows.append(
                    {
                        "lesion": "del5q",
                        "patient": f"P{i + 1:02d}",
                        "population": pop,
                        "timepoint": tp,
                        "n_samples": 1,
                        "n_cells": n,
                        "n_called": called,
                        "fraction": q,
                        "fraction_low": max(0.0, q - 0.06),
                        "fraction_high": min(1.0, q + 0.06),
                        "fpr": 0.02,
                        "fnr": 0.2,
                        "youden": 0.78,
                        "corrected": c,
                        "corrected_low": max(0.0, c - 0.09),
                        "corrected_high": min(1.0, c + 0.09),
                        "note": "",
                    }
                )
    fractions = pd.DataFrame(rows)
    fractions.loc[1, ["corrected", "corrected_low", "corrected_high", "youden"]] = [float("nan")] * 3 + [0.05]
    fractions.loc[1, "note"] = (
        "not corrected: 1 - fpr - fnr = 0.050 < min_youden 0.1 (the calls carry too little information); "
        "the called fraction stands uncorrected"
    )
    samples = pd.DataFrame(
        [
            {"sample": f"{p}_{tp}_{pop}", "patient": p, "timepoint": tp, "population": pop, "condition": "MDS"}
            for p in fractions["patient"].unique()
            for pop in POPULATIONS
            for tp in TIMEPOINTS
        ]
        + [{"sample": "N1_HSC", "patient": "N1", "timepoint": "", "population": "HSC", "condition": "healthy"}]
    )
    qc = pd.DataFrame({"sample": samples["sample"], "cells": 300, "kept": 250, "removed": 50})
    return fractions, samples, qc


@pytest.fixture(scope="module")
def stub_run(tmp_path_factory) -> Path:
    """A working directory of the test cohort where `snakemake --report` runs without the workflow:
    the report needs every report-marked output of the DAG to exist, and the page under test is the
    first page, so the outputs are empty files (listed by `snakemake --summary`)."""
    import io

    workdir = tmp_path_factory.mktemp("report_layout")
    for file in ("config.yaml", "samples.tsv"):
        shutil.copy(ROOT / "tests/data/cohort" / file, workdir / file)
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
        "--summary",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in pd.read_csv(io.StringIO(result.stdout), sep="\t")["output_file"]:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).touch()
    return workdir


def first_page_report(workdir: Path, n_patients: int) -> tuple[Path, pd.DataFrame]:
    """The report of ``workdir`` with the first page of an ``n_patients`` cohort (2 rows each)."""
    import yaml

    from remnant.workflow.report import landing_page

    fractions, samples, qc = cohort_tables(n_patients)
    fractions.to_csv(workdir / "del_fraction.tsv", sep="\t", index=False)
    fractions = pd.read_csv(
        workdir / "del_fraction.tsv", sep="\t", low_memory=False
    )  # as rule write_front_page reads it
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "results/report/front_page.rst").write_text(
        landing_page(config=config, samples=samples, qc_removed=qc, fractions=fractions)
    )
    report = workdir / f"report_{n_patients}.html"
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
        "--report",
        report.name,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return report, fractions


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a 1280 x 1000 viewport."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "CI must have Debian chromium and chromium-driver (bin/test installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-layout')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
    )
    yield driver
    driver.quit()


def _box(driver, element) -> dict:
    return driver.execute_script(
        "const b = arguments[0].getBoundingClientRect(); return {top: b.top, bottom: b.bottom, "
        "left: b.left, right: b.right, height: b.height, width: b.width, "
        "vh: window.innerHeight, vw: window.innerWidth};",
        element,
    )


def _inside(box: dict) -> bool:
    return (
        box["height"] > 0
        and box["width"] > 0
        and box["top"] >= 0
        and box["bottom"] <= box["vh"]
        and box["left"] >= 0
        and box["right"] <= box["vw"]
    )


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and os.environ.get("CI") != "true",
    reason="Debian chromium and chromium-driver are not installed (bin/test installs them in CI)",
)
@pytest.mark.parametrize("n_patients", [5, 20], ids=["10 rows", "40 rows"])
def test_first_page_shows_its_heading_and_every_row(stub_run, browser, n_patients):
    from selenium.webdriver.common.by import By

    report, fractions = first_page_report(stub_run, n_patients)
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [1280, 1000]
    browser.get(report.as_uri())
    deadline = time.time() + 30
    while time.time() < deadline and "cells after quality control" not in browser.execute_script(
        "return document.body.innerText"
    ):
        time.sleep(0.5)
    page = browser.find_element(By.CSS_SELECTOR, "#app .prose")  # the first page (Snakemake's workflow description)
    heading = page.find_element(By.TAG_NAME, "h1")
    assert heading.get_attribute("textContent") == "remnant: del5q in sorted stem and progenitor cells"
    box = _box(browser, heading)
    assert heading.is_displayed() and box["top"] >= 0 and _inside(box), box  # whole, as the page opens
    rows = page.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert len(rows) == 2 * n_patients, "the fraction table lost rows"
    for tr in rows:
        patient, population, *cells = tr.find_elements(By.TAG_NAME, "td")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", tr)
        for tp, cell in zip(TIMEPOINTS, cells):
            r = fractions[
                (fractions["patient"] == patient.text)
                & (fractions["population"] == population.text)
                & (fractions["timepoint"] == tp)
            ].iloc[0]
            estimate, called = cell.find_element(By.TAG_NAME, "strong"), cell.find_element(By.CSS_SELECTOR, ".called")
            if pd.notna(r["corrected"]):
                expected = (
                    f"{100 * r['corrected']:.0f}% ({100 * r['corrected_low']:.0f}-{100 * r['corrected_high']:.0f}%)"
                )
            else:
                expected = "not corrected"
                assert "1 - fpr - fnr = 0.05" in cell.text, cell.text
            assert estimate.text == expected
            assert called.text == (
                f"called {100 * r['fraction']:.0f}% ({100 * r['fraction_low']:.0f}-"
                f"{100 * r['fraction_high']:.0f}%); {r['n_called']}/{r['n_cells']}"
            )
            for element in (estimate, called):
                box = _box(browser, element)
                assert element.is_displayed() and _inside(box), (patient.text, population.text, tp, element.text, box)
            # the corrected fraction is the larger print
            size = "return parseFloat(getComputedStyle(arguments[0]).fontSize)"
            assert browser.execute_script(size, estimate) > browser.execute_script(size, called)
    # back at the top, the heading is whole again: nothing lies above the pane's reach
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
    box = _box(browser, heading)
    assert box["top"] >= 0 and _inside(box), box
    browser.save_screenshot(str(stub_run / f"first_page_{n_patients}.png"))
