"""The front page of remnant's HTML report: the answer in numbers and plain words.

Snakemake's report (``snakemake --report``) is the container: every figure and table of the
stages is a report item with its caption. Its front page (the workflow description) is the
reStructuredText that :func:`front_page` writes from the run's tables: the cohort in numbers,
the headline table of the lesion fraction per patient x population x timepoint (corrected for the
calls' error rates, with its interval; the called share beside it in small print),
one paragraph per contrast generated from the numbers, how far to trust them (error rates of the
calls), a Methods paragraph filled with the versions and parameters used, and the provenance of
the run (config, sample sheet, package versions, annotation).

Every number on the page is read from a TSV that the report also carries, so the page and the
tables cannot disagree. The text is plain reStructuredText with no Jinja markup (Snakemake renders
the description through Jinja; braces are escaped).
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

#: Between two reference notes in one cell of lesion_summary.tsv's ``reference_note``.
NOTE_SEPARATOR = " | "

__all__ = [
    "PACKAGES",
    "contrast_paragraphs",
    "format_fraction",
    "fraction_cell",
    "front_page",
    "headline_table",
    "landing_page",
    "render_html",
    "methods_paragraph",
    "not_made",
    "package_versions",
    "rst_table",
    "stem_state_paragraphs",
]

#: Packages whose versions the Methods and provenance name.
PACKAGES = (
    "remnant",
    "snakemake",
    "scanpy",
    "anndata",
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "infercnvpy",
    "pydeseq2",
    "leidenalg",
    "scikit-learn",
)

_LABEL = re.compile(r"^(?P<factor>[^:]+): (?P<level>.+?) vs (?P<reference>.+?)(?: \| (?P<key>[^=]+)=(?P<value>.+))?$")


def _pct(x: float, digits: int = 0) -> str:
    return "NA" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _pts(x: float) -> str:
    """A difference of fractions in percentage points, signed."""
    return "NA" if x is None or not np.isfinite(x) else f"{100 * x:+.0f}"


def _num(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "NA"
    return f"{x:.2g}" if abs(x) < 10 else f"{x:.0f}"


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p not computed"
    return "p < 1e-300" if p == 0 else (f"p = {p:.2g}" if p >= 1e-3 else f"p = {p:.1e}")


def _escape(text: str) -> str:
    """Text safe for Snakemake's Jinja pass and for reStructuredText table cells."""
    return str(text).replace("{", "(").replace("}", ")").replace("|", "/").replace("\n", " ")


def format_fraction(
    fraction: float, low: float, high: float, called: int | None = None, cells: int | None = None
) -> str:
    """``"42% (35-49)"`` with the interval, and ``"; 88/210"`` when counts are given."""
    text = f"{_pct(fraction)} ({_pct(low)[:-1]}-{_pct(high)})" if np.isfinite(fraction) else "NA"
    if cells is not None:
        text += f"; {int(called)}/{int(cells)}"
    return text


def rst_table(frame: pd.DataFrame, *, title: str | None = None, widths: str | None = None) -> str:
    """A DataFrame as an RST ``list-table`` (header row from the columns)."""
    lines = [f".. list-table:: {_escape(title)}" if title else ".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [list(frame.columns), *frame.astype(object).where(frame.notna(), "").values.tolist()]:
        first = True
        for cell in row:
            lines.append(("   * - " if first else "     - ") + (_escape(cell) if str(cell) != "" else ".."))
            first = False
    return "\n".join(lines) + "\n"


def _float(value) -> float:
    """A number, NaN for None, an empty cell or text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def fraction_cell(row: Mapping, *, corrected: bool = True, min_youden: float | None = None) -> str:
    """One patient x population x timepoint of the headline table, as reStructuredText.

    The error-corrected fraction with its interval comes first, in bold (``"**42% (33-51%)**"``):
    the called share runs below the truth where quiescent carriers with few counts are missed, and
    the correction for the calls' measured false-positive and false-negative rates is the answer.
    The called share follows as secondary text in the ``called`` role (``:called:`called 40%
    (32-48%); 60/150```; the page defines the role and its small print). Where there is no corrected
    value the cell says so, and why: ``1 - fpr - fnr`` below ``min_youden`` (the calls carry too
    little information), no error rates, or (another reason) the row's ``note``. A row without
    cells reads ``"no analysed cell"``. ``corrected=False``: the called share only.
    """
    if pd.isna(row.get("n_cells")) or int(row["n_cells"]) == 0 or pd.isna(row.get("fraction")):
        return "no analysed cell"
    called = format_fraction(
        row["fraction"], row["fraction_low"], row["fraction_high"], row["n_called"], row["n_cells"]
    )
    if not corrected:
        return called
    value = _float(row.get("corrected"))
    if np.isfinite(value):
        head = f"**{format_fraction(value, row['corrected_low'], row['corrected_high'])}**"
    else:
        youden = _float(row.get("youden"))
        if np.isfinite(youden):
            limit = f" < {min_youden:g}" if min_youden is not None else ""
            why = f"1 - fpr - fnr = {youden:.2f}{limit}: too little information"
        elif not np.isfinite(_float(row.get("fpr"))):
            why = "no error rates for these cells"
        else:
            why = _text(row.get("note", "")).removeprefix("not corrected: ").split(";")[0] or "see the table's note"
        head = f"**not corrected** ({why})"
    return f"{head} :called:`called {called}`"


def headline_table(
    fractions: pd.DataFrame,
    *,
    timepoints: Sequence[str] | None = None,
    populations: Sequence[str] | None = None,
    corrected: bool = True,
    min_youden: float | None = None,
) -> pd.DataFrame:
    """Patients x populations (rows) by timepoints (columns): the lesion fraction with its interval.

    ``fractions`` has one row per patient, population and timepoint with ``n_cells``, ``n_called``,
    ``fraction``, ``fraction_low``, ``fraction_high`` (0-1, Wilson) and, when ``corrected``,
    ``corrected``, ``corrected_low``, ``corrected_high`` (the fraction corrected for the calling
    error rates), ``youden``, ``fpr`` and ``note``. Every row gets its cell (:func:`fraction_cell`,
    reStructuredText): the corrected fraction first, then the called share in small print
    (``"**42% (33-51%)** :called:`called 40% (32-48%); 60/150`"``), or why there is no corrected
    value; ``""`` where the cohort has no such row.
    """
    tps = list(timepoints) if timepoints else list(pd.unique(fractions["timepoint"].astype(str)))
    pops = list(populations) if populations else list(pd.unique(fractions["population"].astype(str)))
    rows = []
    f = fractions.assign(
        patient=fractions["patient"].astype(str),
        population=fractions["population"].astype(str),
        timepoint=fractions["timepoint"].astype(str),
    )
    tps += [
        t for t in pd.unique(f["timepoint"]) if t not in tps
    ]  # a timepoint the config does not list keeps its column
    pops += [x for x in pd.unique(f["population"]) if x not in pops]
    for patient in pd.unique(f["patient"]):
        for pop in pops:
            sub = f[(f["patient"] == patient) & (f["population"] == pop)]
            if sub.empty:
                continue
            row = {"patient": patient, "population": pop}
            for tp in tps:
                hit = sub[sub["timepoint"] == tp]
                row[tp] = "" if hit.empty else fraction_cell(hit.iloc[0], corrected=corrected, min_youden=min_youden)
            rows.append(row)
    return pd.DataFrame(rows, columns=["patient", "population", *tps])


#: The small print of the called share in the headline table's cells (:func:`fraction_cell`).
CALLED_ROLE = ".. role:: called\n\n"


def contrast_paragraphs(contrasts: pd.DataFrame, *, lesion: str = "del(5q)", alpha: float = 0.05) -> list[str]:
    """One plain-words paragraph per contrast, from its per-patient rows and its pooled row.

    ``contrasts`` is :func:`remnant.tl.fractions.persistence_contrasts` output: rows with
    ``contrast`` labels like ``"population: HSC vs PROG | timepoint=remission"``, ``scope``
    (``"patient"`` or ``"across patients"``), ``difference`` (and ``difference_low``/``_high``),
    ``corrected_difference``, ``odds_ratio`` (with ``_low``/``_high``), ``pvalue``.
    A contrast that was not made (no per-patient row: a population or timepoint the cohort lacks,
    or a design key that is null) has no paragraph here; :func:`not_made` lists it with its note.
    """
    paragraphs = []
    for label in pd.unique(contrasts["contrast"]):
        rows = contrasts[contrasts["contrast"] == label]
        if _not_made(rows):
            continue  # listed by not_made, with the reason
        pooled = rows[rows["scope"] == "across patients"]
        mixed = (
            pooled[pooled["test"].astype(str).str.contains("mixed", case=False)]
            if "test" in pooled
            else pooled.iloc[:0]
        )
        if "test" in pooled and (~pooled.index.isin(mixed.index)).any():
            pooled = pooled[~pooled.index.isin(mixed.index)]
        per_patient = rows[rows["scope"] == "patient"]
        m = _LABEL.match(str(label))
        if m is None or pooled.empty:
            continue
        p = pooled.iloc[0]
        factor, level, reference = m["factor"].strip(), m["level"].strip(), m["reference"].strip()
        where = (
            f"At {m['value']}"
            if m["key"] and m["key"].strip() == "timepoint"
            else (f"In {m['value']} cells" if m["key"] else "Across the cohort")
        )
        n = len(per_patient)
        more = int((per_patient["difference"] > 0).sum())
        if factor == "timepoint":
            subject = (
                f"{where}, the {lesion} fraction was higher at {level} than at {reference} in {more} of {n} "
                f"patient{'s' if n != 1 else ''} and lower or equal in {n - more}"
            )
        else:
            subject = (
                f"{where}, {lesion} cells made up a larger share of {level} than of {reference} cells in {more} of "
                f"{n} patient{'s' if n != 1 else ''}, a smaller or equal share in {n - more}"
            )
        numbers, verdict = _corrected_words(p, alpha)
        verdict += _per_patient_words(per_patient)
        het = _float(p.get("heterogeneity_pvalue", np.nan))
        if np.isfinite(het) and het < alpha:
            verdict += f" Its size differs between patients (Breslow-Day on the called cells {_p(het)})."
        test = (
            f"on the called cells alone (descriptive: the groups may be called with different sensitivity) the mean "
            f"per-patient difference is {_pts(p.get('difference', np.nan))} percentage points and the pooled odds ratio "
            f"{_num(p.get('odds_ratio', np.nan))} (95% CI {_num(p.get('odds_ratio_low', np.nan))}-"
            f"{_num(p.get('odds_ratio_high', np.nan))}, Cochran-Mantel-Haenszel {_p(p.get('pvalue', np.nan))})"
        )
        if not mixed.empty and np.isfinite(mixed.iloc[0].get("odds_ratio", np.nan)):
            mm = mixed.iloc[0]
            test += (
                f"; a binomial mixed model of the called cells gives {_num(mm['odds_ratio'])} "
                f"(95% CI {_num(mm['odds_ratio_low'])}-{_num(mm['odds_ratio_high'])}, {_p(mm['pvalue'])})"
            )
        paragraphs.append(f"{subject}: {numbers}. {verdict} Read beside it: {test}.")
    return paragraphs


def _corrected_words(p: Mapping, alpha: float) -> tuple[str, str]:
    """The answer of one contrast in words: the error-corrected difference with its interval and
    test (contrasts.tsv's ``corrected_*`` and ``significant``), and the verdict. A contrast is
    called a difference only when ``significant`` (the corrected interval excludes 0), never on
    the called cells' test: populations called with different sensitivity differ there by design."""
    diff = _float(p.get("corrected_difference", np.nan))
    if not np.isfinite(diff):
        note = _text(p.get("note", ""))
        return (
            "no error-corrected difference" + (f" ({note})" if note else ""),
            "No test of the corrected fractions was possible, so no difference is claimed.",
        )
    low, high = _float(p.get("corrected_difference_low", np.nan)), _float(p.get("corrected_difference_high", np.nan))
    interval = f", 95% CI {_pts(low)} to {_pts(high)}" if np.isfinite(low) and np.isfinite(high) else ""
    test = _text(p.get("corrected_test", "")) or "random-effects test"
    numbers = (
        f"corrected for the calling error rates, the difference is {_pts(diff)} percentage points{interval} "
        f"({test}, {_p(_float(p.get('corrected_pvalue', np.nan)))})"
    )
    significant = str(p.get("significant", "")).strip().lower() in ("true", "1")
    verdict = (
        "The difference is unlikely to be chance."
        if significant
        else f"The corrected interval includes 0: no evidence of a difference at the {alpha:g} level."
    )
    return numbers, verdict


def _per_patient_words(per_patient: pd.DataFrame) -> str:
    """How many patients' own corrected tests (z, contrasts.tsv per-patient ``significant``) found
    a difference, and in which direction: with two or three patients the pooled test has one or
    two degrees of freedom and rarely reaches significance, so each patient's answer is shown too."""
    if "significant" not in per_patient or per_patient.empty:
        return ""
    flags = per_patient["significant"].astype(str).str.strip().str.lower().isin(["true", "1"])
    diffs = pd.to_numeric(per_patient.get("corrected_difference"), errors="coerce")
    n, k = len(per_patient), int(flags.sum())
    if k == 0:
        return f" In its own corrected test no patient of {n} shows a difference."
    up, down = int((flags & (diffs > 0)).sum()), int((flags & (diffs < 0)).sum())
    return (
        f" In its own corrected test {k} of {n} patient{'s' if n != 1 else ''} show a difference "
        f"({up} higher, {down} lower)."
    )


def _not_made(rows: pd.DataFrame) -> bool:
    """A contrast's rows hold no per-patient comparison (only the row with its note)."""
    return not (rows["scope"] == "patient").any() if "scope" in rows else True


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _question(label: str, row: Mapping) -> str:
    """The contrast's question (its ``question`` column, else words from its label)."""
    question = _text(row.get("question", ""))
    if question:
        return question
    m = _LABEL.match(str(label))
    if m is None:
        return str(label)
    where = "" if not m["key"] else (f" at {m['value']}" if m["key"].strip() == "timepoint" else f" in {m['value']}")
    return f"{m['level'].strip()} vs {m['reference'].strip()}{where}"


def not_made(
    contrasts: pd.DataFrame | None = None,
    comparisons: pd.DataFrame | None = None,
    cycling: pd.DataFrame | None = None,
    enrichment: pd.DataFrame | None = None,
) -> list[str]:
    """What the run could not compare, and why: one line per contrast of ``contrasts.tsv`` without
    any per-patient row, per question of ``signature_comparisons.tsv`` and ``cycling_contrasts.tsv``
    with no test at all, and the pseudobulk DE when ``enrichment.tsv`` says there was no test. Each
    line is ``"<question>: <note>"``, the note written by the stage (e.g. ``"HSC vs PROG at
    remission: no analysed PROG cells at remission; the cohort has one population (HSC) there"``)."""
    lines = []
    if contrasts is not None and not contrasts.empty:
        for label in pd.unique(contrasts["contrast"]):
            rows = contrasts[contrasts["contrast"] == label]
            if _not_made(rows):
                row = rows.iloc[0]
                lines.append(
                    f"{_question(label, row)}: {_text(row.get('note', '')) or 'no patient has cells of both levels'}"
                )
    for table, what in ((comparisons, "signature scores"), (cycling, None)):
        if table is None or table.empty or "question" not in table:
            continue
        tests = table["test"].map(_text) if "test" in table else pd.Series("", index=table.index)
        for question in pd.unique(table["question"]):
            rows = table[table["question"] == question]
            if (tests[rows.index] != "").any():
                continue  # tested, per patient at least (stem_state_paragraphs says what came of it)
            note = _text(rows["note"].iloc[0]) if "note" in rows else ""
            lines.append(f"{what + ', ' if what else ''}{question}: {note or 'no cells'}")
    if enrichment is not None and "note" in enrichment and not enrichment.empty:
        notes = [n for n in pd.unique(enrichment["note"].map(_text)) if n]
        if notes:
            lines.append(
                f"pseudobulk DE of carrier stem cells after vs before treatment: {notes[0].removeprefix('no DE test: ')}"
            )
    return lines


def stem_state_paragraphs(
    comparisons: pd.DataFrame | None, cycling: pd.DataFrame | None, *, signature: str | None = None, alpha: float = 0.05
) -> list[str]:
    """Plain words on how the lesion-carrying stem cells look: quiescence score and cycling.

    ``comparisons``: ``results/persistence/signature_comparisons.tsv`` (rows per ``score``,
    ``variant``, ``question``, ``scope``, ``test``, with ``difference`` and its interval,
    ``pvalue``, ``note``); the quiescence score is ``signature`` (default: the first score whose
    name contains ``QUIESC``, lesion genes excluded) and its paired t-test over per-patient
    medians is reported. ``cycling``: ``results/persistence/cycling_contrasts.tsv`` (CMH rows
    ``across patients`` per ``question``, ``difference`` = mean per-patient difference of the
    cycling (S+G2M) fraction).
    """
    out = []
    if comparisons is not None and not comparisons.empty:
        scores = [str(x) for x in pd.unique(comparisons["score"])]
        name = signature or next(
            (x for x in scores if "QUIESC" in x.upper() and not x.endswith("_with_lesion_genes")), None
        )
        if name is not None:
            rows = comparisons[
                (comparisons["score"] == name)
                & (comparisons["scope"] == "across patients")
                & comparisons["test"].astype(str).str.startswith("paired t-test")
            ]
            label = name.removeprefix("sig_")
            for _, r in rows.iterrows():
                if str(r.get("note", "") or "") not in ("", "nan"):
                    out.append(
                        f"Quiescence score ({label}), {r['question']}: not tested across patients - {r['note']}."
                    )
                    continue
                word = "higher" if r["difference"] > 0 else "lower"
                sig = (
                    "unlikely to be chance"
                    if np.isfinite(r["pvalue"]) and r["pvalue"] < alpha
                    else "no evidence of a difference"
                )
                interval = (
                    f", 95% CI {r['difference_low']:+.3f} to {r['difference_high']:+.3f}"
                    if np.isfinite(r.get("difference_low", np.nan))
                    else ""
                )
                out.append(
                    f"Quiescence score ({label}, lesion genes excluded so that carriers are not scored at half "
                    f"dose), {r['question']}: {word} in the first group by {abs(r['difference']):.3f} (median per "
                    f"patient{interval}; paired t-test over {int(r['n_patients'])} patients, {_p(r['pvalue'])}): {sig}."
                )
    if cycling is not None and not cycling.empty:
        rows = cycling[(cycling["scope"] == "across patients") & cycling["test"].astype(str).str.contains("Mantel")]
        for _, r in rows.iterrows():
            if not np.isfinite(r.get("pvalue", np.nan)):
                out.append(
                    f"Cycling (S or G2/M phase), {r['question']}: not tested ({r.get('note', '') or 'too few cells'})."
                )
                continue
            sig = "unlikely to be chance" if r["pvalue"] < alpha else "no evidence of a difference"
            out.append(
                f"Cycling (S or G2/M phase), {r['question']}: mean per-patient difference {_pts(r['difference'])} "
                f"percentage points (Cochran-Mantel-Haenszel odds ratio {_num(r['odds_ratio'])}, {_p(r['pvalue'])}): "
                f"{sig}."
            )
    return out


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` when absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _depth_text(cnv: Mapping) -> str:
    """The Methods clause on each cell's depth (``cnv.depth.baseline``): what the expectations were scaled by."""
    from remnant.tl.depth import DepthGenes  # the library's default baseline where the config names none

    if (cnv.get("depth") or {}).get("baseline", DepthGenes().baseline) == "median":
        return (
            ", scaled to each cell's depth taken as the median over about 50 blocks of the genome of its counts per "
            "block of the autosomes (so that the arms an aneuploid tumour changed do not move it)"
        )
    return ", scaled to each cell's depth taken as its counts outside the lesions"


def _patient_text(cnv: Mapping) -> str:
    """The Methods clause on what each patient's cells were re-scored on: its own interval
    (``cnv.refine``), its own genes' levels (``cnv.patient_levels``), its clusters' own nulls
    (``cnv.cluster_null``) and its own copy ratio (``cnv.fit_copy_ratio``); "" with none."""
    parts = []
    if cnv.get("refine", True):
        parts.append(
            "on the part of each lesion its carriers lost, read off its cells pooled by their posteriors against "
            "those pooled by the complements, where that beat a block bootstrap of the region"
        )
    if cnv.get("patient_levels", True):
        from remnant.tl.lesions import LEVEL_MAX_SD  # the bar the calls used; imported only when said

        parts.append(
            "against its own level of each gene, read off all its cells of the reference's states against the level "
            "of the gene's neighbours along the chromosome, so that genes a programme moved are taken up and a "
            "copy-number change, a step along the chromosome, is not (where its genes lay within sd "
            f"{LEVEL_MAX_SD:g} of the reference's)"
        )
    if cnv.get("cluster_null", True):
        parts.append(
            "against its cluster's own null where the cluster's cells showed two populations and the lower sat above "
            "the model's null (the lower then read as no change, the upper as the configured ratio)"
        )
    if cnv.get("fit_copy_ratio", False):
        parts.append(
            "at its own copy ratio of each lesion, the copy-number step (one of two, three or four copies lost or "
            "gained) whose mixture of its cells fit best"
        )
    return "; each patient's cells were then re-scored " + " and ".join(parts) if parts else ""


def _model_text(cnv: Mapping) -> str:
    """How the methods paragraph names the lesion model's robustness terms: outlier genes
    (``cnv.outlier_fraction``) and the level uncertainty of unmatched cells (``cnv.unmatched_level_sd``,
    ``cnv.unmatched_gene_spread``);
    each clause only where its setting is not 0."""
    eps, sd = cnv.get("outlier_fraction", 0.05), cnv.get("unmatched_level_sd", 0.1)
    outlier = (
        f" (each gene's count a mixture of that model and, with weight {eps}, a broad component the same under "
        "both hypotheses, so that genes moved by an expression programme carry little evidence)"
    )
    spread = cnv.get("unmatched_gene_spread", True)
    head = (
        "; cells of a state without reference cells, scored against the pooled profile, had their evidence divided by "
        "1 + "
    )
    level = f"{sd}^2 (a level known to about {sd} on the log scale)" if sd else ""
    if spread:
        variance = (
            "the variance of the interval's genes around that profile in the cell's cluster (summed counts, beyond "
            "counting noise) averaged over the cell's genes by their information"
        )
        level = (
            head
            + "v x their information on the lesion's level, v being "
            + " plus ".join(filter(None, [level, variance]))
        )
    elif sd:
        level = (
            head + f"{sd}^2 x their information on the lesion's level (a level known to about {sd} on the log scale)"
        )
    return (outlier if eps else "") + level


def _prior_groups(cnv: dict) -> str:
    """How the methods paragraph names the groups whose carrier fractions were learned (``cnv.prior_key``)."""
    key = cnv.get("prior_key", "leiden")
    if key is None:
        return ""
    groups = {"leiden": "Leiden cluster", "hspc_state": "annotated state"}.get(key, key)
    strength = cnv.get("prior_strength", "NA")
    return (
        f" and then per {groups} within each sample, pulled towards the sample's by at most {strength} pseudo-cells "
        "(fewer, down to 5, where the sample's groups differ more than their sizes explain: empirical Bayes)"
    )


def _clone_text(cnv: dict, lesions: list) -> str:
    """The methods' clause on the clone prior (``cnv.clone_prior`` with two or more lesions)."""
    if not cnv.get("clone_prior", True) or len(lesions) < 2:
        return ""
    return (
        "; the lesions' fractions were learned together as one clone's (per group a fraction of clone cells, "
        "per lesion its fraction among clone cells, pulled towards the patient's), so each cell's posterior of "
        "a lesion also weighs its evidence on the others"
    )


def methods_paragraph(
    config: Mapping,
    versions: Mapping[str, str],
    *,
    n_cells: int,
    n_samples: int,
    n_patients: int,
    n_allele_samples: int = 0,
) -> str:
    """A Methods paragraph for a paper, filled with the parameters and versions of this run
    (``n_allele_samples``: samples with allele counts; their allele evidence is described)."""
    from remnant.tl.lesions import iscn_type
    from remnant.tl.signatures import MIN_CALIBRATION_CELLS

    qc, cl, cnv = config.get("qc", {}), config.get("cluster", {}), config.get("cnv", {})
    persistence = config.get("persistence", {})
    mad = qc.get("mad", {})
    lesions = config.get("lesions") or [{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}]
    lesion_text = ", ".join(
        f"{les['name']} ({les.get('type') or iscn_type(les['region'])}, {les['region']})" for les in lesions
    )
    ref = cnv.get("reference")
    reference = (
        "cells of healthy donors"
        if ref is None
        else "reference cells chosen from the data as those least likely to carry any lesion"
        if ref == "auto"
        else "cells of " + ", ".join(f"{k} {', '.join(map(str, v))}" for k, v in dict(ref).items())
    )
    v = versions
    text = (
        f"Single-cell expression data of {n_samples} FACS-sorted samples from {n_patients} donors were analysed with "
        f"remnant {v.get('remnant', 'NA')} (Snakemake {v.get('snakemake', 'NA')}, scanpy {v.get('scanpy', 'NA')}, "
        f"anndata {v.get('anndata', 'NA')}). Cells were filtered per sample (at least {qc.get('min_counts', 'NA')} counts "
        f"and {qc.get('min_genes', 'NA')} detected genes, at most {qc.get('max_pct_mito', 'NA')}% mitochondrial counts, "
        f"outliers beyond {mad.get('counts', 'NA')}, {mad.get('genes', 'NA')} and {mad.get('pct_mito', 'NA')} median "
        f"absolute deviations in counts, genes and mitochondrial fraction"
        f"{', and predicted doublets' if qc.get('doublets', {}).get('enabled', True) else ''}), leaving {n_cells} cells. Counts were normalised and log-transformed, "
        f"neighbours computed on principal components (n_neighbors {cl.get('n_neighbors', 'NA')}) and cells clustered "
        f"with the Leiden algorithm (resolution {cl.get('resolution', 'NA')}); haematopoietic stem and progenitor states "
        f"were annotated from marker scores. Copy-number lesions {lesion_text} were called per cell from the raw counts "
        f"of the genes inside each lesion with a negative-binomial likelihood ratio against state- and "
        f"technology-matched expectations from {reference}{_depth_text(cnv)}{_model_text(cnv)}{_patient_text(cnv)}, with carrier fractions (priors) learned by "
        f"expectation-maximisation per sample{_prior_groups(cnv)}{_clone_text(cnv, lesions)}, "
        f"reference cells scored by cross-fitting, and a call at posterior >= {cnv.get('posterior_cutoff', 'NA')}. "
        f"{_allele_text(config.get('alleles', {}), n_allele_samples)}"
        f"Genome-wide profiles were computed with infercnvpy {v.get('infercnvpy', 'NA')}. Lesion fractions were "
        f"corrected for the false-positive and false-negative rates measured for each sample's calls (Rogan-Gladen, "
        f"with intervals that include the uncertainty of the rates; not corrected where 1 - false-positive rate - "
        f"false-negative rate was below {persistence.get('min_youden', 'NA')}) and are reported beside the called "
        f"fractions with Wilson intervals; contrasts test the corrected fractions: per patient the corrected "
        f"difference with a delta-method z test, across patients a random-effects meta-analysis of them "
        f"(DerSimonian-Laird with the Hartung-Knapp adjustment), with Cochran-Mantel-Haenszel tests of the called "
        f"cells (patients as strata; statsmodels {v.get('statsmodels', 'NA')}) reported as descriptive; pseudobulk differential expression used PyDESeq2 {v.get('pydeseq2', 'NA')}. "
        f"The cell-cycle phase was called from S and G2/M scores (lesion genes excluded) calibrated per technology: a "
        f"two-component Gaussian mixture on the higher of the two scores estimated the share of cycling cells, and that "
        f"many cells, those with the highest cycling scores, were called cycling (scanpy's sign rule in batches of "
        f"fewer than {MIN_CALIBRATION_CELLS} cells). "
        f"Random seed {config.get('seed', 'NA')}."
    )
    return text


def _allele_text(alleles: Mapping, n_samples: int) -> str:
    """The Methods sentences on allele evidence ("" without allele data)."""
    if not n_samples:
        return ""
    return (
        f"For the {n_samples} samples with allele counts at heterozygous SNPs, the SNPs each patient is homozygous at "
        "were set aside (a two-component mixture of the cells' allele votes per site, its share of heterozygous sites "
        "fitted on SNPs outside the lesions), each patient's remaining SNPs inside each lesion "
        "were phased from the patient's own cells (expectation-maximisation over the cells' carrier states, started "
        "from the expression posteriors"
        f"{'; a user-supplied phasing where given' if alleles.get('phased_sites') else ''}), each cell's allele "
        "log-likelihood ratio per gene (beta-binomial for bursting in normal cells, the retained haplotype up to an "
        f"error rate of {alleles.get('error_rate', 'NA')} in loss carriers; each gene bounded at "
        f"{alleles.get('max_gene_llr', 'NA')} nats; a site's phase for a cell learned without that cell's reads) "
        "was calibrated per technology on SNPs of a region without lesions and added to the expression evidence. "
    )


def _section(title: str, char: str = "-") -> str:
    return f"\n{title}\n{char * len(title)}\n\n"


def front_page(
    *,
    config: Mapping,
    samples: pd.DataFrame,
    qc_removed: pd.DataFrame,
    lesion_summary: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    fractions: pd.DataFrame | None = None,
    contrasts: pd.DataFrame | None = None,
    comparisons: pd.DataFrame | None = None,
    cycling: pd.DataFrame | None = None,
    enrichment: pd.DataFrame | None = None,
    versions: Mapping[str, str] | None = None,
    annotation: str = "",
) -> str:
    """The report's front page as reStructuredText.

    Parameters
    ----------
    config
        The validated workflow config (defaults filled).
    samples
        The sample sheet (one row per sample).
    qc_removed
        ``results/qc/removed_per_sample.tsv``: per sample ``cells``, ``kept``, ``removed`` and one
        column per removal reason.
    lesion_summary
        ``results/cnv/lesion_summary.tsv``: per sample and lesion ``n_cells``, ``n_reference``,
        ``prior``, ``n_called``, ``fpr``, ``fnr``, ``reference_matched``, and ``reference_note``
        (what the reference could not give the sample's batch; shown as a "Reference:" line).
    reference
        ``results/cnv/reference.tsv`` (how the reference was chosen), optional.
    fractions
        Lesion fraction per patient, population and timepoint (see :func:`headline_table`);
        ``None`` when the persistence stage did not run.
    contrasts
        Persistence contrasts (see :func:`contrast_paragraphs`), optional.
    comparisons, cycling
        Signature comparisons and cycling contrasts (see :func:`stem_state_paragraphs`), optional.
    enrichment
        ``results/persistence/enrichment.tsv`` (its ``note`` says when there was no DE test), optional.
    versions
        Package versions (:func:`package_versions`).
    annotation
        Where the gene annotation came from (one line).
    """
    versions = dict(versions or package_versions())
    first = _first_lesion(config)
    alpha = float(config.get("persistence", {}).get("alpha", 0.05))
    n_kept = int(qc_removed["kept"].sum())
    title = "remnant: lesion-carrying stem cells before and after therapy"
    out = [f"{title}\n{'=' * len(title)}\n\n", CALLED_ROLE]
    out.append(_section("Cohort"))
    out.append(_cohort_text(config, samples, qc_removed))
    out.append(_section(f"{first} fraction per patient, population and timepoint"))
    if fractions is not None and not fractions.empty:
        out.append(_fraction_intro(config, first) + "\n\n")
        out.append(rst_table(_headline(fractions, config)))
    else:
        out.append("The persistence stage did not produce a fraction table in this run.\n")
    out += _comparison_sections(contrasts, comparisons, cycling, enrichment, lesion=first, alpha=alpha)
    out.append(_section("How far to trust the calls"))
    out.append(_trust_text(lesion_summary, reference, first))
    out.append(_section("Methods"))
    n_patients = int(samples["patient"].astype(str).nunique())
    n_allele = int(samples["alleles"].fillna("").astype(str).str.len().gt(0).sum()) if "alleles" in samples else 0
    methods = methods_paragraph(
        config, versions, n_cells=n_kept, n_samples=len(samples), n_patients=n_patients, n_allele_samples=n_allele
    )
    out.append(_escape(methods) + "\n")
    out.append(_section("Provenance"))
    out.append(_provenance_text(config, samples, versions, annotation))
    return "".join(out)


def _first_lesion(config: Mapping) -> str:
    """The name of the config's first lesion (the one the pages report), del5q by default."""
    lesions = config.get("lesions") or [{"name": "del5q"}]
    return lesions[0]["name"]


def _donor_counts(config: Mapping, samples: pd.DataFrame) -> tuple[int, int]:
    """(patients, reference donors): donors with a sample of a reference condition are reference donors."""
    ref_conditions = set(map(str, config.get("conditions", {}).get("reference", [])))
    n_donors = int(samples.loc[samples["condition"].astype(str).isin(ref_conditions), "patient"].nunique())
    return int(samples["patient"].astype(str).nunique()) - n_donors, n_donors


def _cohort_text(config: Mapping, samples: pd.DataFrame, qc_removed: pd.DataFrame) -> str:
    """The cohort in one sentence: donors, sorted samples per population, cells read and kept."""
    n_patients, n_donors = _donor_counts(config, samples)
    n_cells_raw = int(qc_removed["cells"].sum())
    n_kept = int(qc_removed["kept"].sum())
    per_population = samples["population"].astype(str).value_counts().sort_index().items()
    return (
        f"{_plural(n_patients, 'patient')} and {_plural(n_donors, 'reference donor')}, {_plural(len(samples), 'sorted sample')} "
        f"({', '.join(f'{k}: {v}' for k, v in per_population)}); "
        f"{n_cells_raw} cells read, {n_kept} kept after quality control ({_pct(n_kept / max(n_cells_raw, 1))}).\n"
    )


def _comparison_sections(
    contrasts: pd.DataFrame | None,
    comparisons: pd.DataFrame | None,
    cycling: pd.DataFrame | None,
    enrichment: pd.DataFrame | None,
    *,
    lesion: str,
    alpha: float,
) -> list[str]:
    """The sections on the comparisons, each only where it has content: what the contrasts say,
    what could not be compared (and why), and how the lesion-carrying stem cells look."""
    out = []
    paragraphs = (
        contrast_paragraphs(contrasts, lesion=lesion, alpha=alpha)
        if contrasts is not None and not contrasts.empty
        else []
    )
    if paragraphs:
        out.append(_section("What the numbers say"))
        for paragraph in paragraphs:
            out.append(_escape(paragraph) + "\n\n")
    missing = not_made(contrasts, comparisons, cycling, enrichment)
    if missing:
        out.append(_section("What could not be compared"))
        out.append(
            "The cohort (or the design named in the config's ``persistence`` block) does not support these "
            "comparisons; their rows in the tables carry the same note.\n\n"
        )
        for line in missing:
            out.append(f"- {_escape(line)}\n")
        out.append("\n")
    state = stem_state_paragraphs(comparisons, cycling, alpha=alpha)
    if state:
        out.append(_section("How the lesion-carrying stem cells look"))
        out.append("Descriptive per-cell tests are in the Persistence section; these are the across-patient tests.\n\n")
        for paragraph in state:
            out.append(_escape(paragraph) + "\n\n")
    return out


def _trust_text(lesion_summary: pd.DataFrame, reference: pd.DataFrame | None, lesion: str) -> str:
    """The calls' error rates (range over the disease samples), unmatched batches and how the
    reference was chosen."""
    out = []
    ls = lesion_summary[lesion_summary["lesion"] == lesion] if "lesion" in lesion_summary else lesion_summary
    disease = ls[ls["n_reference"] == 0] if "n_reference" in ls else ls
    if not disease.empty:
        out.append(
            f"Estimated per-sample error rates of the {lesion} calls: false-positive rate (cross-fitted normal "
            f"reference cells scored with the priors the sample's cells were called with) {_pct(disease['fpr'].min(), 1)} to "
            f"{_pct(disease['fpr'].max(), 1)}, false-negative rate (posterior-expected carriers below the "
            f"cut-off) {_pct(disease['fnr'].min(), 1)} to {_pct(disease['fnr'].max(), 1)}. "
        )
    if "reference_matched" in ls and not ls["reference_matched"].astype(bool).all():
        out.append(
            "Some batches had too few reference cells of their own technology and were scored against "
            "all reference cells (see the per-sample table). "
        )
    notes = _reference_notes(ls)
    if notes:
        out.append("Reference: " + " ".join(_escape(n) for n in notes) + " ")
    if reference is not None and "mode" in reference and (reference["mode"] == "auto").any():
        # an automatic choice has one row per lesion and batch: this paragraph is about `lesion` only
        own = reference[reference["lesion"] == lesion] if "lesion" in reference else reference
        bad = own[~own["confident"].astype(bool)]
        out.append(
            "The reference was chosen automatically; "
            + (
                "the choice is confident in every batch. "
                if bad.empty
                else f"the choice is NOT confident for {', '.join(map(str, bad['batch']))}: "
                f"{_escape('; '.join(map(str, bad['reason'])))}. "
            )
        )
    out.append("\n")
    return "".join(out)


def _reference_notes(summary: pd.DataFrame) -> list[str]:
    """The distinct notes of lesion_summary.tsv's ``reference_note`` column (``NOTE_SEPARATOR``
    between the notes of one row), in order."""
    if "reference_note" not in summary:
        return []
    cells = summary["reference_note"].fillna("").astype(str)
    notes = (n.strip() for cell in cells for n in cell.split(NOTE_SEPARATOR))
    return list(dict.fromkeys(n for n in notes if n))


def _provenance_text(config: Mapping, samples: pd.DataFrame, versions: Mapping[str, str], annotation: str) -> str:
    """Package versions, the annotation's source, the sample sheet and the config (defaults filled)."""
    out = ["Package versions:\n\n"]
    out.append(rst_table(pd.DataFrame(sorted(versions.items()), columns=["package", "version"])))
    if annotation:
        out.append(f"\nGene annotation: {_escape(annotation)}\n")
    out.append("\nSample sheet:\n\n")
    out.append(rst_table(samples.reset_index(drop=True)))
    out.append("\nConfiguration (defaults filled):\n\n::\n\n")
    dumped = yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=None, width=100)
    out.append("\n".join("    " + _escape_code(line) for line in dumped.splitlines()) + "\n")
    return "".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _escape_code(line: str) -> str:
    # inside a literal block only Jinja needs guarding
    return line.replace("{{", "{ {").replace("}}", "} }").replace("{%", "{ %").replace("%}", "% }")


def _plain(value):
    """Config values as plain YAML types (Snakemake's config may hold its own mapping classes)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _compact_contrasts(contrasts: pd.DataFrame) -> list[str]:
    """One short line per contrast: question, the corrected difference with its interval, test and
    verdict (``significant``), then the called cells' difference and CMH p (descriptive)."""
    lines = []
    made = [
        label for label in pd.unique(contrasts["contrast"]) if not _not_made(contrasts[contrasts["contrast"] == label])
    ]
    pooled = contrasts[(contrasts["scope"] == "across patients") & contrasts["contrast"].isin(made)]
    if "test" in pooled:
        pooled = pooled[pooled["test"].astype(str).str.contains("Mantel")]
    for _, p in pooled.iterrows():
        label = _question(p["contrast"], p)
        diff, low, high = (
            _float(p.get(k, np.nan))
            for k in ("corrected_difference", "corrected_difference_low", "corrected_difference_high")
        )
        significant = str(p.get("significant", "")).strip().lower() in ("true", "1")
        if np.isfinite(diff):
            interval = f" (95% CI {_pts(low)} to {_pts(high)})" if np.isfinite(low) and np.isfinite(high) else ""
            answer = (
                f"{_pts(diff)} percentage points corrected{interval}, {_p(_float(p.get('corrected_pvalue', np.nan)))}: "
                + ("a difference" if significant else "no evidence of a difference")
            )
        else:
            answer = "no corrected difference (no test)"
        called = (
            f"called cells {_pts(p.get('difference', np.nan))} percentage points, CMH {_p(p.get('pvalue', np.nan))}"
        )
        note = _text(p.get("note", ""))
        lines.append(f"{label}: {answer}; {called}" + (f" ({note})" if note else ""))
    return lines


#: Layout of the first page inside Snakemake's report (its template's classes, snakemake
#: report/html_reporter/template/components/content.js). The page is shown in a pane
#: ``"grow flex items-center justify-center h-screen overflow-auto"``: a page taller than the window
#: was centred, so its top lay above the pane, where no scroll bar reaches (the heading was cut at
#: 1,000 pixels; of 40 table rows the first 13 were out of reach). Top- and left-aligned here, the
#: text column may be wider than ``max-w-lg`` (32rem, which wrapped the table's cells word by word),
#: and the rule graph beside it goes below when both do not fit. The style lives in the page, so it holds
#: while the page is shown and goes with it (no ``--report-stylesheet`` needed); Snakemake passes
#: the page through Jinja, so the rules hold no ``{#``, ``{{`` or ``{%``.
FRONT_PAGE_STYLE = """.. raw:: html

   <style>
   div.grow.h-screen.overflow-auto.items-center { align-items: flex-start; justify-content: flex-start; }
   div.grow.flex.gap-3.items-start { flex-wrap: wrap; }
   div.prose.max-w-lg { max-width: 60rem; }
   .called { display: block; font-size: 0.8em; color: #6b7280; }
   </style>

"""

#: The small print of the summary page (:func:`render_html`).
CALLED_CSS = ".called{display:block;font-size:0.82em;color:#666}"


def _fraction_intro(config: Mapping, lesion: str) -> str:
    """What the headline table's cells hold (:func:`fraction_cell`)."""
    cut = config.get("cnv", {}).get("posterior_cutoff", 0.9)
    min_youden = config.get("persistence", {}).get("min_youden", 0.1)
    return (
        f"Share of cells carrying {lesion}, corrected for the false-positive and false-negative rates of the calls "
        f"measured for each sample, with its 95% interval (bold). Below it, in small print: the share called "
        f"(posterior >= {cut}) with its 95% Wilson interval and called/cells. The called share runs below the "
        f"truth where carriers are missed, as quiescent stem cells with few counts are. Where the calls carry too "
        f"little information to correct (1 - false-positive rate - false-negative rate below {min_youden}), the "
        f"cell says so and the called share is all there is."
    )


def _headline(fractions: pd.DataFrame, config: Mapping) -> pd.DataFrame:
    """The headline table of a run: every patient x population x timepoint row, columns of the
    timepoints that have any."""
    table = headline_table(
        fractions,
        timepoints=[str(t) for t in config.get("timepoints", [])] or None,
        populations=[str(p) for p in config.get("populations", {})] or None,
        min_youden=config.get("persistence", {}).get("min_youden"),
    )
    return table.loc[:, (table != "").any(axis=0)]


def landing_page(
    *,
    config: Mapping,
    samples: pd.DataFrame,
    qc_removed: pd.DataFrame,
    fractions: pd.DataFrame | None = None,
    contrasts: pd.DataFrame | None = None,
    comparisons: pd.DataFrame | None = None,
    cycling: pd.DataFrame | None = None,
    enrichment: pd.DataFrame | None = None,
) -> str:
    """The report's first page: the cohort, the headline table (every patient x population x
    timepoint, the corrected fraction first: :func:`fraction_cell`), one line per contrast made, one
    line per comparison the cohort could not support with the reason (:func:`not_made`), and a
    pointer to the full summary. It starts with :data:`FRONT_PAGE_STYLE`, so that a page taller
    than the window scrolls from its heading in Snakemake's report."""
    first = _first_lesion(config)
    title = f"remnant: {first} in sorted stem and progenitor cells"
    out = [f"{title}\n{'=' * len(title)}\n\n", FRONT_PAGE_STYLE, CALLED_ROLE]
    n_patients, n_donors = _donor_counts(config, samples)
    out.append(
        f"{_plural(n_patients, 'patient')}, {_plural(n_donors, 'reference donor')}, {_plural(len(samples), 'sorted sample')}, "
        f"{int(qc_removed['kept'].sum())} cells after quality control.\n\n"
    )
    if fractions is not None and not fractions.empty:
        out.append(_fraction_intro(config, first) + "\n\n")
        out.append(rst_table(_headline(fractions, config)) + "\n")
    compared = _compact_contrasts(contrasts) if contrasts is not None and not contrasts.empty else []
    if compared:
        out.append("Compared:\n\n")
        for line in compared:
            out.append(f"- {_escape(line)}\n")
        out.append("\n")
    missing = not_made(contrasts, comparisons, cycling, enrichment)
    if missing:
        out.append("Not compared, and why:\n\n")
        for line in missing:
            out.append(f"- {_escape(line)}\n")
        out.append("\n")
    out.append(
        "**The full summary** - every patient's fractions with corrected intervals, each contrast in words, "
        "how the lesion-carrying stem cells look, the error rates of the calls, Methods and provenance - is "
        "under Results, *0. Summary*. Figures and tables of each stage follow in *1.* to *4.*\n"
    )
    return "".join(out)


def render_html(rst: str, title: str = "remnant summary") -> str:
    """A self-contained HTML page (docutils' HTML5 writer, its stylesheet embedded) from RST."""
    import docutils.core

    css = (
        "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}"
        "table{border-collapse:collapse;font-size:0.92em}td,th{border:1px solid #ccc;padding:0.25em 0.5em;vertical-align:top}"
        "th{background:#f2f2f2}pre{background:#f7f7f7;padding:0.6em;overflow-x:auto;font-size:0.85em}" + CALLED_CSS
    )
    parts = docutils.core.publish_parts(
        rst, writer="html5", settings_overrides={"embed_stylesheet": True, "report_level": 5, "title": title}
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{css}</style></head><body>{parts['html_title']}{parts['body']}</body></html>\n"
    )


def write_pages(
    tables: dict[str, str],
    *,
    samples: str,
    schema: str,
    config: dict,
    annotation: dict,
    summary: str,
    front: str,
) -> None:
    """Rule write_front_page: the full summary (HTML, ``summary``) and the short first page (RST,
    ``front``) from the run's tables (``tables``: key -> TSV path, as the rule names its inputs)."""
    import logging

    from remnant.workflow.config import read_sample_sheet

    read = lambda path: pd.read_csv(path, sep="\t", low_memory=False)  # noqa: E731
    versions = package_versions()
    sheet = read_sample_sheet(samples, schema, config)
    t = {key: read(path) for key, path in tables.items()}
    shared = dict(
        config=config,
        samples=sheet,
        qc_removed=t["qc"],
        fractions=t["fractions"],
        contrasts=t["contrasts"],
        comparisons=t["comparisons"],
        cycling=t["cycling"],
        enrichment=t["enrichment"],
    )
    full = front_page(
        **shared,
        lesion_summary=t["lesions"],
        reference=t["reference"],
        versions=versions,
        annotation=annotation,
    )
    with open(summary, "w", encoding="utf-8") as handle:
        handle.write(render_html(full))
    text = landing_page(**shared)
    with open(front, "w", encoding="utf-8") as handle:
        handle.write(text)
    logging.getLogger(__name__).info("front page: %d lines; versions %s", text.count("\n"), versions)
