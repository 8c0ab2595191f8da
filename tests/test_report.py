"""The report's front page (remnant.workflow.report): numbers from the tables, words from the numbers."""

import docutils.core
import docutils.nodes
import docutils.utils
import numpy as np
import pandas as pd
import pytest

from remnant.workflow.report import contrast_paragraphs, format_fraction, front_page, headline_table, methods_paragraph

FRACTIONS = pd.DataFrame(
    [
        # patient, population, timepoint, n_cells, n_called, fraction, low, high, corrected, c_low, c_high
        ("P1", "HSC", "diagnosis", 200, 190, 0.95, 0.91, 0.97, 0.97, 0.93, 0.99),
        ("P1", "HSC", "remission", 150, 60, 0.40, 0.32, 0.48, 0.42, 0.33, 0.51),
        ("P1", "PROG", "diagnosis", 210, 205, 0.976, 0.945, 0.99, 0.99, 0.96, 1.0),
        ("P1", "PROG", "remission", 220, 7, 0.0318, 0.0155, 0.064, 0.02, 0.0, 0.05),
    ],
    columns=[
        "patient",
        "population",
        "timepoint",
        "n_cells",
        "n_called",
        "fraction",
        "fraction_low",
        "fraction_high",
        "corrected",
        "corrected_low",
        "corrected_high",
    ],
)


def contrasts(diffs, pvalue, het=np.nan, label="population: HSC vs PROG | timepoint=remission", corrected_half=0.1):
    """Per-patient rows and the pooled row; the corrected difference is the raw mean + 0.02 with a
    95% interval of +-corrected_half, so it is significant when that interval excludes 0."""
    rows = [
        {"contrast": label, "scope": "patient", "patient": f"P{i}", "difference": d} for i, d in enumerate(diffs, 1)
    ]
    corrected = float(np.mean(diffs)) + 0.02
    low, high = corrected - corrected_half, corrected + corrected_half
    rows.append(
        {
            "contrast": label,
            "scope": "across patients",
            "patient": "all",
            "difference": float(np.mean(diffs)),
            "difference_low": float(np.mean(diffs)) - 0.1,
            "difference_high": float(np.mean(diffs)) + 0.1,
            "corrected_difference": corrected,
            "corrected_difference_low": low,
            "corrected_difference_high": high,
            "corrected_pvalue": pvalue,
            "corrected_test": "random-effects (Hartung-Knapp)",
            "significant": low > 0 or high < 0,
            "odds_ratio": 12.0,
            "odds_ratio_low": 5.0,
            "odds_ratio_high": 30.0,
            "pvalue": pvalue,
            "heterogeneity_pvalue": het,
        }
    )
    return pd.DataFrame(rows)


def test_format_fraction():
    assert format_fraction(0.4, 0.32, 0.48, 60, 150) == "40% (32-48%); 60/150"
    assert format_fraction(np.nan, np.nan, np.nan) == "NA"


def test_headline_table_one_row_per_patient_population():
    table = headline_table(FRACTIONS, timepoints=["diagnosis", "remission", "relapse"])
    assert list(table.columns) == ["patient", "population", "diagnosis", "remission", "relapse"]
    assert len(table) == 2
    hsc = table.set_index("population").loc["HSC"]
    # issue 20: the corrected fraction first (bold), the called share after it in small print
    assert hsc["remission"] == "**42% (33-51%)** :called:`called 40% (32-48%); 60/150`"
    assert hsc["relapse"] == ""
    assert (
        headline_table(FRACTIONS, corrected=False).set_index("population").loc["HSC", "remission"]
        == "40% (32-48%); 60/150"
    )


def test_every_row_says_what_it_has():
    """Issue 20: no row is dropped, and a row without a corrected value says so (and why) instead
    of standing as the called share alone."""
    rows = FRACTIONS.assign(youden=0.8, fpr=0.01, note="")
    rows.loc[1, ["corrected", "corrected_low", "corrected_high", "youden"]] = [np.nan, np.nan, np.nan, 0.05]
    rows.loc[1, "note"] = (
        "not corrected: 1 - fpr - fnr = 0.050 < min_youden 0.1 (the calls carry too little information)"
    )
    rows.loc[2, ["corrected", "corrected_low", "corrected_high", "youden", "fpr"]] = np.nan
    extra = pd.DataFrame(
        [
            {
                "patient": "P1",
                "population": "CMP",
                "timepoint": "remission",
                "n_cells": 0,
                "n_called": 0,
                "note": "no analysed cell: the sample sheet lists this sample but none of its cells is in the cohort",
            }
        ]
    )
    table = headline_table(
        pd.concat([rows, extra], ignore_index=True),
        timepoints=["diagnosis", "remission"],
        populations=["HSC", "PROG"],
        min_youden=0.1,
    ).set_index("population")
    assert list(table.index) == ["HSC", "PROG", "CMP"]  # a population the config does not list keeps its row
    assert table.loc["HSC", "remission"] == (
        "**not corrected** (1 - fpr - fnr = 0.05 < 0.1: too little information) :called:`called 40% (32-48%); 60/150`"
    )
    assert table.loc["PROG", "diagnosis"].startswith(
        "**not corrected** (no error rates for these cells) :called:`called 98%"
    )
    assert table.loc["CMP", "remission"] == "no analysed cell" and table.loc["CMP", "diagnosis"] == ""


def test_contrast_words_follow_the_numbers():
    (text,) = contrast_paragraphs(contrasts([0.3, 0.4, 0.5], 1e-6), lesion="del5q")
    assert text.startswith(
        "At remission, del5q cells made up a larger share of HSC than of PROG cells in 3 of 3 patients"
    )
    assert "corrected for the calling error rates, the difference is +42 percentage points, 95% CI +32 to +52" in text
    assert "p = 1.0e-06" in text and "unlikely to be chance" in text
    assert "on the called cells alone (descriptive" in text and "Cochran-Mantel-Haenszel p = 1.0e-06" in text
    (text,) = contrast_paragraphs(contrasts([0.1, -0.05], 0.4), lesion="del5q")
    assert "in 1 of 2 patients" in text and "no evidence of a difference" in text
    (text,) = contrast_paragraphs(contrasts([0.3, 0.05], 1e-4, het=1e-3), lesion="del5q")
    assert "differs between patients" in text
    # issue 20: the called cells differ (CMH p 5e-7) but the corrected interval includes 0: no claim
    table = contrasts([0.1, 0.12], 5e-7, corrected_half=0.2)
    (text,) = contrast_paragraphs(table, lesion="del5q")
    assert "unlikely to be chance" not in text and "The corrected interval includes 0: no evidence" in text
    # ... and each patient's own corrected test is said (two patients: the pooled test has 1 df)
    patients = table["scope"] == "patient"
    table.loc[patients, "corrected_difference"] = [0.3, 0.25]
    table.loc[patients, "significant"] = [True, False]
    (text,) = contrast_paragraphs(table, lesion="del5q")
    assert "In its own corrected test 1 of 2 patients show a difference (1 higher, 0 lower)." in text
    (text,) = contrast_paragraphs(
        contrasts([-0.5, -0.6], 1e-5, label="timepoint: remission vs diagnosis | population=PROG")
    )
    assert text.startswith(
        "In PROG cells, the del(5q) fraction was higher at remission than at diagnosis in 0 of 2 patients"
    )


def test_methods_name_versions_and_parameters():
    config = {
        "seed": 7,
        "qc": {
            "min_counts": 500,
            "min_genes": 200,
            "max_pct_mito": 20,
            "mad": {"counts": 5, "genes": 5, "pct_mito": 4},
        },
        "cluster": {"n_neighbors": 15, "resolution": 1.0},
        "cnv": {"posterior_cutoff": 0.9, "reference": None},
        "lesions": [{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}],
    }
    text = methods_paragraph(config, {"remnant": "0.1.0", "scanpy": "1.11.5"}, n_cells=1234, n_samples=10, n_patients=3)
    for needle in (
        "remnant 0.1.0",
        "scanpy 1.11.5",
        "leaving 1234 cells",
        "del5q (loss, 5q13.1-5q33.3)",
        "posterior >= 0.9",
        "healthy donors",
        "Random seed 7",
        "at least 500 counts",
        # issue 20: the corrected fraction first, and the cycling phase calibrated per technology
        "Lesion fractions were corrected for the false-positive and false-negative rates",
        "calibrated per technology: a two-component Gaussian mixture",
        "fewer than 50 cells",
    ):
        assert needle in text, needle
    assert "allele" not in text  # no allele data: no sentence about it
    # cnv.unmatched_level_sd and cnv.unmatched_gene_spread (defaults)
    assert "divided by 1 + v x their information on the lesion's level, v being 0.1^2" in text
    assert "plus the variance of the interval's genes around that profile in the cell's cluster" in text
    # cnv.refine and cnv.patient_levels (defaults: both)
    assert "re-scored on the part of each lesion its carriers lost" in text
    assert "and against its own level of each gene" in text
    assert "a step along the chromosome, is not" in text
    assert "copy ratio" not in text  # cnv.fit_copy_ratio (default: off)
    # cnv.cluster_null (default: on)
    assert "and against its cluster's own null where the cluster's cells showed two populations" in text
    # cnv.depth.baseline (default: median)
    assert "depth taken as the median over about 50 blocks of the genome" in text
    config["cnv"]["depth"] = {"baseline": "sum"}
    sum_text = methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    assert "depth taken as its counts outside the lesions" in sum_text and "blocks" not in sum_text
    del config["cnv"]["depth"]
    config["cnv"]["fit_copy_ratio"] = True
    text = methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    assert "and at its own copy ratio of each lesion, the copy-number step" in text
    config["cnv"]["fit_copy_ratio"] = False
    config["cnv"]["cluster_null"] = False
    text = methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    assert "cluster's own null" not in text
    config["cnv"] |= {"refine": False, "patient_levels": False}
    assert "re-scored" not in methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    config["cnv"]["patient_levels"] = True
    text = methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    assert "re-scored against its own level of each gene" in text and "carriers lost" not in text
    config["cnv"] |= {"refine": True, "cluster_null": True}
    config["cnv"]["unmatched_gene_spread"] = False
    text = methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    assert "divided by 1 + 0.1^2 x their information on the lesion's level" in text and "variance of" not in text
    config["cnv"]["unmatched_level_sd"] = 0
    assert "pooled profile" not in methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    config["cnv"]["unmatched_gene_spread"] = True
    text = methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3)
    assert "v being the variance of the interval's genes" in text
    config["alleles"] = {"error_rate": 0.02, "max_gene_llr": 3.0, "phased_sites": None}
    text = methods_paragraph(config, {}, n_cells=1234, n_samples=10, n_patients=3, n_allele_samples=4)
    assert "For the 4 samples with allele counts at heterozygous SNPs" in text
    assert "the SNPs each patient is homozygous at were set aside" in text
    assert "error rate of 0.02" in text and "3.0 nats" in text and "user-supplied" not in text


@pytest.fixture()
def page():
    return _page()


def _page(reference=None, **lesion_columns):
    """The front page of a small hand-made run; ``lesion_columns`` are added to lesion_summary.tsv,
    ``reference`` is reference.tsv."""
    samples = pd.DataFrame(
        {
            "sample": ["P1_dx_HSC", "P1_rem_HSC", "N1_HSC"],
            "patient": ["P1", "P1", "N1"],
            "timepoint": ["diagnosis", "remission", ""],
            "population": ["HSC", "HSC", "HSC"],
            "condition": ["MDS", "MDS", "healthy"],
        }
    )
    qc = pd.DataFrame(
        {"sample": samples["sample"], "cells": [250, 250, 250], "kept": [220, 210, 230], "removed": [30, 40, 20]}
    )
    lesions = pd.DataFrame(
        {
            "sample": samples["sample"],
            "lesion": "del5q",
            "n_reference": [0, 0, 230],
            "fpr": [0.004, 0.002, 0.0],
            "fnr": [0.03, 0.2, 0.0],
            "reference_matched": True,
            **lesion_columns,
        }
    )
    config = {
        "seed": 1,
        "timepoints": ["diagnosis", "remission"],
        "populations": {"HSC": "", "PROG": ""},
        "conditions": {"reference": ["healthy"]},
        "cnv": {"posterior_cutoff": 0.9, "reference": None},
        "lesions": [{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}],
        "note": "{{ jinja }}",
    }
    return front_page(
        config=config,
        samples=samples,
        qc_removed=qc,
        lesion_summary=lesions,
        reference=reference,
        fractions=FRACTIONS,
        contrasts=contrasts([0.3, 0.4], 1e-4),
        versions={"remnant": "0.1.0"},
        annotation="GENCODE v44",
    )


def test_front_page_numbers_and_sections(page):
    for needle in (
        "1 patient and 1 reference donor, 3 sorted samples",
        "750 cells read, 660 kept",
        "40% (32-48%); 60/150",
        "What the numbers say",
        "false-positive rate",
        "0.2% to 0.4%",
        "20.0%",
        "Methods",
        "Provenance",
        "GENCODE v44",
        "P1_rem_HSC",
    ):
        assert needle in page, needle
    assert "{{" not in page and "{%" not in page  # Snakemake renders the page through Jinja


def test_front_page_shows_reference_notes():
    """lesion_summary.tsv's reference_note reaches the page once per distinct note; without notes
    (empty, or no column) the page is the one without the column."""
    note = (
        "only one reference donor (H1): cross-fitting used random cell folds, so the false-positive rate "
        "and the calibration are measured on cells of the same donor(s) as the reference profile and may "
        "be optimistic for other people's cells; add reference cells of a second healthy donor."
    )
    other = "batch plate: only 0 reference cells of its own (50 needed): ..."
    page = _page(reference_note=[note, f"{note} | {other}", ""])
    assert page.count(note) == 1 and f"Reference: {note} {other}" in page
    settings = {"report_level": docutils.utils.Reporter.WARNING_LEVEL, "halt_level": 5, "warning_stream": False}
    assert _rst_problems(page, settings) == []
    assert _page(reference_note=[np.nan] * 3) == _page() == _page(reference_note="")
    assert "Reference:" not in _page()


def test_front_page_says_whether_an_automatic_reference_is_confident():
    """reference.tsv of ``cnv.reference: auto``: the trust paragraph names each batch whose choice is not
    confident, with its reason, and says so when every batch's is (the real sets through the workflow are
    confident since session 35, so this path is checked here)."""
    reason = "one population only (separation 0.0, bar 13.8; 7 cells in the carrier component and 693 in the normal one, bar 20 each)"
    reference = pd.DataFrame(
        {
            "mode": "auto",
            "lesion": ["del5q", "del5q", "del7q"],
            "batch": ["droplet", "plate", "droplet"],
            "confident": [True, False, False],
            "reason": ["", reason, "other lesion"],
        }
    )
    page = _page(reference=reference)
    assert f"the choice is NOT confident for plate: {reason}." in page
    assert "other lesion" not in page and "droplet:" not in page  # another lesion's row is not this lesion's
    sure = _page(reference=reference.assign(confident=True, reason=""))
    assert "The reference was chosen automatically; the choice is confident in every batch." in sure
    assert "chosen automatically" not in _page()


def test_front_page_is_valid_restructuredtext(page):
    settings = {"report_level": docutils.utils.Reporter.WARNING_LEVEL, "halt_level": 5, "warning_stream": False}
    assert _rst_problems(
        page + "\n.. list-table::\n   :header-rows: 1\n\n   * - a\n     - b\n   * - 1\n", settings
    )  # the check sees a broken table
    assert _rst_problems(page, settings) == []


def _rst_problems(text, settings):
    doctree = docutils.core.publish_doctree(text, settings_overrides=settings)
    return [node.astext() for node in doctree.findall(docutils.nodes.system_message)]


def test_landing_page_shows_every_row_corrected_first(page):
    from remnant.workflow.report import landing_page

    samples = pd.DataFrame({"sample": ["a", "b"], "patient": ["P1", "N1"], "condition": ["MDS", "healthy"]})
    qc = pd.DataFrame({"cells": [10, 10], "kept": [9, 8]})
    config = {
        "timepoints": ["diagnosis", "remission"],
        "populations": {"HSC": "", "PROG": ""},
        "conditions": {"reference": ["healthy"]},
        "lesions": [{"name": "del5q"}],
    }
    text = landing_page(
        config=config,
        samples=samples,
        qc_removed=qc,
        fractions=FRACTIONS,
        contrasts=contrasts([0.3, 0.4], 1e-4).assign(test="Cochran-Mantel-Haenszel (patient strata)"),
    )
    assert "1 patient, 1 reference donor, 2 sorted samples, 17 cells after quality control" in text
    assert "**42% (33-51%)** :called:`called 40% (32-48%); 60/150`" in text
    assert (
        "+37 percentage points corrected (95% CI +27 to +47), p = 1.0e-04: a difference; "
        "called cells +35 percentage points, CMH p = 1.0e-04"
    ) in text
    assert "0. Summary" in text
    # issue 20: a 10-row table is shown whole (it was left out above 8 rows), as valid RST
    many = pd.concat([FRACTIONS.assign(patient=f"P{i}", corrected=0.94 + i / 100) for i in range(5)])
    text = landing_page(config=config, samples=samples, qc_removed=qc, fractions=many)
    for i in range(5):
        assert f"   * - P{i}\n     - HSC\n     - **{94 + i}% (93-99%)** :called:`called 95% (91-97%); 190/200`" in text
    assert (
        _rst_problems(
            text, {"report_level": docutils.utils.Reporter.WARNING_LEVEL, "halt_level": 5, "warning_stream": False}
        )
        == []
    )
    html = docutils.core.publish_parts(text, writer="html")["html_body"]  # as Snakemake renders the first page
    assert '<strong>98% (93-99%)</strong> <span class="called">called 95% (91-97%); 190/200</span>' in html
    assert (
        "<style>" in html and "{#" not in text and "{{" not in text and "{%" not in text
    )  # Jinja reads the page first


def test_summary_html_is_a_self_contained_page(page):
    from remnant.workflow.report import render_html

    html = render_html(page)
    assert html.startswith("<!DOCTYPE html>") and "<table" in html and "What the numbers say" in html
    assert '<strong>42% (33-51%)</strong> <span class="called">called 40% (32-48%); 60/150</span>' in html
    assert ".called{" in html  # the called share's small print
    assert "http" not in html.split("<body>")[0]  # no stylesheet or script fetched from the network


def test_pages_say_what_could_not_be_compared(tmp_path):
    """Issue 19: a cohort with one population, one timepoint or without the study's design. Its
    contrasts.tsv held only rows with a note (and, written before the fix, no statistic columns):
    the front page read `difference` and the run stopped with KeyError. Both pages now list each
    contrast not made with its note; the made ones keep their line."""
    from remnant.workflow.report import landing_page, render_html

    notes = {
        "stem vs progenitor": "persistence.stem and persistence.progenitor are null (not a stem vs progenitor design); "
        "it has one population (HSC)",
        "remission vs diagnosis in PROG": "no analysed PROG cells; the cohort has one population (HSC)",
    }
    old_style = pd.DataFrame(
        [
            {
                "contrast": label,
                "question": question,
                "scope": "across patients",
                "patient": "all",
                "n_strata": 0,
                "test": "Cochran-Mantel-Haenszel (patient strata)",
                "note": note,
            }
            for label, (question, note) in zip(
                ["population: stem vs progenitor", "timepoint: remission vs diagnosis | population=PROG"], notes.items()
            )
        ]
    )
    path = tmp_path / "contrasts.tsv"
    old_style.to_csv(path, sep="\t", index=False)
    read = pd.read_csv(path, sep="\t")  # as rule write_front_page reads it
    made = contrasts([-0.5, -0.6], 1e-5, label="timepoint: remission vs diagnosis | population=HSC").assign(
        test="Cochran-Mantel-Haenszel (patient strata)", question="remission vs diagnosis in HSC", note=""
    )
    comparisons = pd.DataFrame(
        [
            {
                "score": "sig_Q",
                "question": "del5q vs non-del stem cells",
                "scope": "across patients",
                "test": np.nan,
                "note": "persistence.stem is null (not a stem-cell design)",
            }
        ]
    )
    enrichment = pd.DataFrame(
        {"signature": ["Q"], "note": ["no DE test: persistence.stem is null (not a stem-cell design)"]}
    )
    samples = pd.DataFrame(
        {
            "sample": ["P1_dx_HSC"],
            "patient": ["P1"],
            "timepoint": ["diagnosis"],
            "population": ["HSC"],
            "condition": ["MDS"],
        }
    )
    qc = pd.DataFrame({"sample": ["P1_dx_HSC"], "cells": [200], "kept": [180], "removed": [20]})
    lesions = pd.DataFrame(
        {
            "sample": ["P1_dx_HSC"],
            "lesion": "del5q",
            "n_reference": [0],
            "fpr": [0.01],
            "fnr": [0.1],
            "reference_matched": True,
        }
    )
    config = {
        "timepoints": ["diagnosis"],
        "populations": {"HSC": ""},
        "conditions": {"reference": []},
        "lesions": [{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}],
        "cnv": {"reference": "auto"},
    }
    for table in (read, pd.concat([made, read], ignore_index=True)):
        first = landing_page(
            config=config,
            samples=samples,
            qc_removed=qc,
            fractions=FRACTIONS.iloc[:1],
            contrasts=table,
            comparisons=comparisons,
            enrichment=enrichment,
        )
        full = front_page(
            config=config,
            samples=samples,
            qc_removed=qc,
            lesion_summary=lesions,
            fractions=FRACTIONS.iloc[:1],
            contrasts=table,
            comparisons=comparisons,
            enrichment=enrichment,
            versions={"remnant": "0.1.0"},
        )
        assert "Not compared, and why:" in first and "What could not be compared" in full
        for question, note in notes.items():
            assert f"- {question}: {note}" in first and f"- {question}: {note}" in full
        assert (
            "- signature scores, del5q vs non-del stem cells: persistence.stem is null (not a stem-cell design)"
            in first
        )
        assert "- pseudobulk DE of carrier stem cells after vs before treatment: persistence.stem is null" in first
        assert "1 patient, 0 reference donors, 1 sorted sample, 180 cells" in first
        assert (
            _rst_problems(
                full, {"report_level": docutils.utils.Reporter.WARNING_LEVEL, "halt_level": 5, "warning_stream": False}
            )
            == []
        )
        assert "What could not be compared" in render_html(full)
    # with a contrast made: its line stays, under "Compared", and its paragraph
    assert "Compared:\n\n- remission vs diagnosis in HSC: -53 percentage points corrected" in first
    assert "In HSC cells, the del(5q) fraction was higher at remission" not in full  # lesion named on the page: del5q
    assert "In HSC cells, the del5q fraction was higher at remission than at diagnosis in 0 of 2 patients" in full
