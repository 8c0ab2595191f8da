"""The catalogue of bad inputs (docs/bad_inputs.md): a small valid cohort of real input files, the
cases that each break it in one way, and what the user is told.

Each case is run at the level where the workflow meets it, through the same package functions:
``parse`` (what rules/common.smk checks before any job runs), ``read`` (rule read_counts for one
sample) or ``qc`` (rule filter_cells for one sample). tests/test_bad_inputs.py runs every case (and
a handful through the real ``snakemake`` command line); ``python tests/bad_inputs.py`` rewrites
docs/bad_inputs.md from the messages the cases produce.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.errors import InputError  # noqa: E402
from remnant.io import counts as rio  # noqa: E402
from remnant.io.annotation import autosomal, load_genes  # noqa: E402
from remnant.workflow.config import load_yaml  # noqa: E402

SCHEMAS = ROOT / "config/schemas"
GENES_TABLE = ROOT / "resources/annotation/GRCh38_genes.tsv.gz"
N_CELLS, N_GENES = 60, 400

#: The valid cohort: one MDS patient (a droplet HSC and PROG sample at diagnosis, a plate HSC sample
#: with index sort at remission) and one healthy donor (the copy-number reference), in four formats.
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
SAMPLES = [
    ["P1_dx_HSC", "P1", "diagnosis", "HSC", "MDS", "droplet", "10x_h5", "counts/P1_dx_HSC.h5", ""],
    ["P1_dx_PROG", "P1", "diagnosis", "PROG", "MDS", "droplet", "10x_mtx", "counts/P1_dx_PROG", ""],
    [
        "P1_rem_HSC",
        "P1",
        "remission",
        "HSC",
        "MDS",
        "plate",
        "table_genes_x_cells",
        "counts/P1_rem_HSC.tsv.gz",
        "counts/P1_rem_HSC.index_sort.csv",
    ],
    ["N1_HSC", "N1", "NA", "HSC", "healthy", "plate", "h5ad", "counts/N1_HSC.h5ad", ""],
]


# ------------------------------------------------------------------------------------------------
# the valid cohort
# ------------------------------------------------------------------------------------------------
_BASE: dict = {}


def annotation() -> pd.DataFrame:
    if "genes" not in _BASE:
        _BASE["genes"] = load_genes(GENES_TABLE)
    return _BASE["genes"]


def base_counts() -> anndata.AnnData:
    """60 cells x 400 real GRCh38 protein-coding genes (unique symbols), integer counts that pass QC.

    var_names are symbols, ``var["gene_ids"]`` versioned Ensembl IDs (as CellRanger writes them);
    barcodes are plate wells.
    """
    if "counts" not in _BASE:
        genes = annotation()
        unique = genes[
            ~genes["gene_name"].duplicated(keep=False)
            & (genes["gene_type"] == "protein_coding")
            & autosomal(genes["chromosome"])
        ]
        chosen = unique.sample(N_GENES, random_state=11).sort_index()
        rng = np.random.default_rng(5)
        X = sp.random(N_CELLS, N_GENES, density=0.8, random_state=4, format="csr", dtype=np.float32)
        X.data = rng.integers(1, 40, X.nnz).astype(np.float32)
        wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)][:N_CELLS]
        var = pd.DataFrame(
            {"gene_ids": chosen["gene_id_version"].to_numpy(), "gene_symbols": chosen["gene_name"].to_numpy()},
            index=pd.Index(chosen["gene_name"].to_numpy()),
        )
        _BASE["counts"] = anndata.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(wells)), var=var)
    return _BASE["counts"].copy()


def index_sort_rows(barcodes, markers=("CD34", "CD38", "CD90", "CD45RA")) -> list[list[str]]:
    rows = [["Well", *markers]]
    for i, b in enumerate(barcodes):
        rows.append([b, *(f"{100 + 7 * i + 50 * j}.5" for j in range(len(markers)))])
    return rows


class Cohort:
    """A valid working directory: config.yaml, samples.tsv and counts/ (real input files)."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        (self.dir / "counts").mkdir(parents=True, exist_ok=True)
        counts = base_counts()
        for _sample, *_, fmt, path, index_sort in SAMPLES:
            rio.write_counts(counts, self.dir / path, fmt)
            if index_sort:
                self.write_rows(index_sort, index_sort_rows(counts.obs_names[:50]))
        config = load_yaml(ROOT / "config/config.yaml")
        config["samples"] = "samples.tsv"
        config["demo"] = {"simulate": False}
        self.config = config
        self.save_config()
        self.write_sheet([SHEET_COLUMNS, *SAMPLES])

    # files
    def path(self, relative: str) -> Path:
        return self.dir / relative

    def write_rows(self, relative: str, rows, sep=",") -> Path:
        path = self.path(relative)
        path.write_text("".join(sep.join(map(str, r)) + "\n" for r in rows))
        return path

    def write_sheet(self, rows) -> None:
        self.write_rows("samples.tsv", rows, sep="\t")

    def sheet_text(self) -> str:
        return self.path("samples.tsv").read_text()

    def edit_sheet(self, old: str, new: str) -> None:
        text = self.sheet_text()
        assert old in text, old
        self.path("samples.tsv").write_text(text.replace(old, new, 1))

    def set_sample(self, sample: str, column: str, value: str) -> None:
        rows = [line.split("\t") for line in self.sheet_text().splitlines()]
        j = rows[0].index(column)
        for row in rows[1:]:
            if row[0] == sample:
                row[j] = value
        self.write_sheet(rows)

    def drop_sample(self, sample: str) -> None:
        self.write_sheet([r for r in (line.split("\t") for line in self.sheet_text().splitlines()) if r[0] != sample])

    # config
    def save_config(self) -> None:
        self.path("config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def set(self, key: str, value) -> None:
        """Set a dotted config key (``qc.min_counts``) and save."""
        *parents, last = key.split(".")
        node = self.config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        self.save_config()

    def unset(self, key: str) -> None:
        *parents, last = key.split(".")
        node = self.config
        for part in parents:
            node = node[part]
        del node[last]
        self.save_config()

    # counts
    def write_counts(self, sample: str, adata: anndata.AnnData | None = None, fmt: str | None = None) -> Path:
        row = next(r for r in SAMPLES if r[0] == sample)
        path = self.path(row[7])
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        rio.write_counts(base_counts() if adata is None else adata, path, fmt or row[6])
        return path

    def truncate(self, relative: str) -> None:
        path = self.path(relative)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------------------------------------
# the stages: the same calls as rules/common.smk (parse), read_counts.py (read), filter_cells.py (qc)
# ------------------------------------------------------------------------------------------------
def resource(path):
    """rules/common.smk's resource(): a config path in the working directory, else the workflow's copy."""
    if path is None:
        return None
    if Path(path).exists() or Path(path).is_absolute():
        return str(path)
    shipped = ROOT / path
    return str(shipped) if shipped.exists() else str(path)


def parse(cohort: Cohort, configfile: str = "config.yaml"):
    """What rules/common.smk checks at parse time (run in the cohort's directory)."""
    from remnant.workflow.config import (
        check_bam_config,
        check_config_files,
        check_input_paths,
        check_resources,
        load_yaml,
        read_sample_sheet,
        reference_cells,
        validate_config,
    )
    from remnant.workflow.demo import check_no_sites
    from remnant.workflow.paths import UserPath, check_distinct_samples, check_not_outputs, sheet_paths
    from remnant.workflow.persistence_config import check_config as check_persistence_config

    with _chdir(cohort.dir):
        check_config_files([configfile])  # snakemake's --configfile loader keeps the last of two equal keys
        config = validate_config(load_yaml(configfile), SCHEMAS / "config.schema.yaml", source=configfile)
        sheet = read_sample_sheet(config["samples"], SCHEMAS / "samples.schema.yaml", config)
        if config["cnv"]["reference"] != "auto":
            reference_cells(sheet, config["cnv"]["reference"], config["conditions"]["reference"], source=configfile)
        if not config["demo"]["simulate"]:  # rules/common.smk: the user's files are never the workflow's outputs
            paths = [UserPath("", "the sample sheet", str(config["samples"]), configfile)] + sheet_paths(
                sheet, config["samples"]
            )
            check_not_outputs(paths)
        check_input_paths(sheet, config["samples"])
        check_distinct_samples(sheet, config["samples"])
        if config["demo"]["simulate"]:  # the demo counts its BAMs at its own sites
            check_no_sites(config["alleles"]["sites"], source=configfile)
        else:
            check_bam_config(
                sheet, config["alleles"]["sites"], discovery=config["alleles"]["discovery"], source=configfile
            )
        check_resources(
            config,
            genes=resource(config["annotation"]["genes"]),
            gtf=resource(config["annotation"]["gtf"]),
            cytobands=resource(config["annotation"]["cytobands"]),
            markers=resource(config["states"]["markers"]),
            gene_set_dir=resource(config["signatures"]["directory"]),
            source=configfile,
        )
        check_persistence_config(
            config,
            sheet,
            gene_set_dir=resource(config["signatures"]["directory"]),
            cytobands=resource(config["annotation"]["cytobands"]),
            check_files=True,
            sheet_path=config["samples"],
            source=configfile,
        )
    return config, sheet


def read(cohort: Cohort, sample: str):
    """Rule read_counts for one sample."""
    from remnant.workflow.read_counts import read_sample

    config, sheet = parse(cohort)
    row = {k: str(v) for k, v in sheet.loc[sample].items()}
    with _chdir(cohort.dir):
        adata, stats = read_sample(
            row,
            annotation(),
            min_mapped_fraction=config["annotation"]["min_mapped_fraction"],
            sheet=config["samples"],
            markers=config["index_sort"]["markers"],
            build=config["annotation"]["build"],
        )
    return config, sheet, adata


def qc(cohort: Cohort, sample: str):
    """Rule filter_cells for one sample."""
    from remnant.workflow.qc import flag_cells, require_passing_cells

    config, sheet, adata = read(cohort, sample)
    flag_cells(
        adata, config["qc"], score_doublets_for=sheet.loc[sample, "technology"] == "droplet", seed=config["seed"]
    )
    require_passing_cells(adata, config["qc"]["min_cells"], sample=sample, log_path=f"logs/filter_cells/{sample}.log")
    return adata


STAGES = {"parse": lambda c, s: parse(c), "read": read, "qc": qc}


@contextlib.contextmanager
def _chdir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


# ------------------------------------------------------------------------------------------------
# the cases
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    id: str
    group: str
    what: str  # the input, in words
    make: Callable[[Cohort], None]
    expect: list[str]  # fragments of the message (error) or of a warning
    stage: str = "parse"
    sample: str = "P1_dx_HSC"
    outcome: str = "error"  # error | warning | accepted
    cli: bool = False  # also run through the snakemake command line (tests/test_bad_inputs.py)


@dataclasses.dataclass
class Result:
    outcome: str  # error | warning | accepted
    message: str  # the error, or the warnings joined with " || "
    error: BaseException | None = None


def run_case(case: Case, workdir: Path) -> Result:
    """Build a valid cohort in ``workdir``, break it as ``case`` says and run its stage."""
    cohort = Cohort(workdir)
    case.make(cohort)
    collect = _Collect()
    logger = logging.getLogger("remnant")
    logger.addHandler(collect)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        STAGES[case.stage](cohort, case.sample)
    except InputError as err:
        return Result("error", str(err), err)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    if collect.messages:
        return Result("warning", " || ".join(collect.messages))
    return Result("accepted", "")


def _counts_under_results(c: Cohort) -> None:
    c.path("results/mine").mkdir(parents=True)
    shutil.move(c.path("counts/P1_dx_HSC.h5"), c.path("results/mine/P1_dx_HSC.h5"))
    c.set_sample("P1_dx_HSC", "counts", "results/mine/P1_dx_HSC.h5")


def _link_into_results(c: Cohort) -> None:
    c.path("results/staged").mkdir(parents=True)
    shutil.move(c.path("counts/N1_HSC.h5ad"), c.path("results/staged/N1_HSC.h5ad"))
    os.symlink(c.path("results/staged/N1_HSC.h5ad"), c.path("counts/N1_HSC.h5ad"))


def _same_counts_twice(c: Cohort) -> None:
    for column, value in (
        ("counts", "counts/P1_dx_HSC.h5"),
        ("format", "10x_h5"),
        ("technology", "droplet"),
        ("index_sort", ""),
    ):
        c.set_sample("P1_rem_HSC", column, value)


def _identical_copy(c: Cohort) -> None:
    shutil.copy(c.path("counts/P1_dx_HSC.h5"), c.path("counts/P1_rem_HSC.h5"))
    for column, value in (
        ("counts", "counts/P1_rem_HSC.h5"),
        ("format", "10x_h5"),
        ("technology", "droplet"),
        ("index_sort", ""),
    ):
        c.set_sample("P1_rem_HSC", column, value)


def _mtx_barcodes(c: Cohort, n: int) -> None:
    path = c.path("counts/P1_dx_PROG/barcodes.tsv.gz")
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()[:n]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def _h5_genome(c: Cohort, genome: str) -> None:
    import h5py

    with h5py.File(c.path("counts/P1_dx_HSC.h5"), "r+") as f:
        n = f["matrix/features/genome"].shape[0]
        del f["matrix/features/genome"]
        f["matrix/features"].create_dataset("genome", data=np.array([genome] * n, dtype="S"))


def _with_value(c: Cohort, sample: str, value: float, fmt: str | None = None) -> None:
    adata = base_counts()
    adata.X = adata.X.copy()
    adata.X.data[3] = value
    c.write_counts(sample, adata, fmt)


def _mouse(c: Cohort) -> None:
    adata = base_counts()
    adata.var["gene_symbols"] = [s.capitalize() for s in adata.var["gene_symbols"]]
    adata.var["gene_ids"] = [f"ENSMUSG{i:011d}" for i in range(adata.n_vars)]
    adata.var_names = adata.var["gene_symbols"].to_numpy()
    c.write_counts("P1_dx_HSC", adata)


def _partly_unmapped(c: Cohort) -> None:
    adata = base_counts()
    ids = adata.var["gene_ids"].to_numpy().copy()
    symbols = adata.var["gene_symbols"].to_numpy().copy()
    for i in range(0, 100):  # a quarter of the features: IDs and names the annotation does not know
        ids[i], symbols[i] = f"ENSG9{i:010d}", f"RETIRED{i}"
    adata.var["gene_ids"], adata.var["gene_symbols"] = ids, symbols
    adata.var_names = symbols
    c.write_counts("P1_dx_HSC", adata)


def _duplicate_barcodes(c: Cohort) -> None:
    import warnings

    adata = base_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.obs_names = ["A01", "A01", *adata.obs_names[2:]]
    c.write_counts("P1_dx_HSC", adata)


def _duplicate_genes(c: Cohort) -> None:
    path = c.path("counts/P1_rem_HSC.tsv.gz")
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    lines.append(lines[1])
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def _table_value(c: Cohort, value: str) -> None:
    path = c.path("counts/P1_rem_HSC.tsv.gz")
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    fields = lines[2].split("\t")
    fields[5] = value
    lines[2] = "\t".join(fields)
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def _few_cells(c: Cohort) -> None:
    c.write_counts("P1_dx_HSC", base_counts()[:20].copy())


def _gene_set(c: Cohort, genes: list[str]) -> None:
    sets = c.path("gene_sets")
    shutil.copytree(ROOT / "resources/gene_sets", sets)
    (sets / "MY_SET.txt").write_text("\n".join(genes) + "\n")
    c.set("signatures.directory", "gene_sets")
    c.set("signatures.sets", ["MY_SET"])


def _bands_without_5(c: Cohort) -> None:
    bands = pd.read_csv(ROOT / "resources/annotation/GRCh38_cytobands.tsv", sep="\t", header=None, dtype=str)
    bands[bands[0] != "chr5"].to_csv(c.path("bands.tsv"), sep="\t", header=False, index=False)
    c.set("annotation.cytobands", "bands.tsv")


def _second_qc_block(c: Cohort) -> None:
    """A second ``qc:`` block appended to the config (as a user adding thresholds at the end would)."""
    with open(c.path("config.yaml"), "a") as handle:
        handle.write("qc:\n  min_genes: 300\n")


def _mtx_plain_copies(c: Cohort, names: dict[str, str], n_cells: int = 30) -> None:
    """Uncompressed files beside the 10x directory's .gz ones (``{gz name: plain name}``), of another
    run (its first ``n_cells`` cells), so that reading the wrong set goes unnoticed."""
    adata = base_counts()[:n_cells].copy()
    other = c.path("other_mtx")
    rio.write_counts(adata, other, "10x_mtx")
    for gz, plain in names.items():
        (c.path("counts/P1_dx_PROG") / plain).write_bytes(gzip.decompress((other / gz).read_bytes()))
    shutil.rmtree(other)


def _bam_column(c: Cohort, bam: str, *, index: bool = True, alleles: str = "") -> None:
    """Sheet column ``bam`` naming ``bam`` for P1_dx_HSC (and ``alleles`` naming ``alleles``); ``bam`` is
    written (a real, empty, coordinate-sorted BAM; with its index if ``index``) unless it is under ``missing/``."""
    import pysam

    rows = [line.split("\t") for line in c.sheet_text().splitlines()]
    extra = [bam, alleles] if alleles else [bam]
    header = [*rows[0], "bam", "alleles"][: len(rows[0]) + len(extra)]
    c.write_sheet([header] + [[*r, *(extra if r[0] == "P1_dx_HSC" else [""] * len(extra))] for r in rows[1:]])
    if not bam.startswith("missing/"):
        c.path(bam).parent.mkdir(parents=True, exist_ok=True)
        with pysam.AlignmentFile(
            str(c.path(bam)), "wb", header={"HD": {"SO": "coordinate"}, "SQ": [{"SN": "chr5", "LN": 181_538_259}]}
        ):
            pass
        if index:
            pysam.index(str(c.path(bam)))


def _alleles_column(c: Cohort, folder: str, parts: tuple[str, ...] = ()) -> None:
    """Sheet column ``alleles`` naming ``folder`` for P1_dx_HSC (empty for the others); the folder is
    made holding the cellsnp-lite files ``parts`` (none: not made)."""
    rows = [line.split("\t") for line in c.sheet_text().splitlines()]
    c.write_sheet([[*rows[0], "alleles"]] + [[*r, folder if r[0] == "P1_dx_HSC" else ""] for r in rows[1:]])
    if parts:
        c.path(folder).mkdir(parents=True)
        for name in parts:
            (c.path(folder) / name).write_text("")


def _one_chromosome(c: Cohort, chromosome: str = "chr1") -> None:
    adata = base_counts()
    on = annotation().set_index("gene_id_version").loc[adata.var["gene_ids"], "chromosome"].to_numpy() == chromosome
    c.write_counts("P1_dx_HSC", adata[:, on].copy())


HEADER = "\t".join(SHEET_COLUMNS)
P1 = "P1_dx_HSC\tP1\tdiagnosis\tHSC\tMDS"

CASES: list[Case] = [
    # ---- sample sheet ------------------------------------------------------------------------
    Case(
        "sheet-missing-column",
        "sheet",
        "a required column is missing (`condition`)",
        lambda c: c.write_sheet(
            [
                [h for h in SHEET_COLUMNS if h != "condition"],
                *[[v for h, v in zip(SHEET_COLUMNS, r) if h != "condition"] for r in SAMPLES],
            ]
        ),
        ["samples.tsv", "header", "missing required column(s) ['condition']"],
    ),
    Case(
        "sheet-misspelled-column",
        "sheet",
        "a misspelled column (`timpoint`)",
        lambda c: c.edit_sheet("\ttimepoint\t", "\ttimpoint\t"),
        ["samples.tsv", "unknown column 'timpoint'", "did you mean 'timepoint'"],
        cli=True,
    ),
    Case(
        "sheet-extra-column",
        "sheet",
        "an extra column that remnant does not know (`donor_age`)",
        lambda c: c.write_sheet([[*SHEET_COLUMNS, "donor_age"], *[[*r, "70"] for r in SAMPLES]]),
        ["samples.tsv", "unknown column 'donor_age'", "note*"],
    ),
    Case(
        "sheet-duplicate-column",
        "sheet",
        "a column named twice in the header",
        lambda c: c.write_sheet([[*SHEET_COLUMNS, "patient"], *[[*r, r[1]] for r in SAMPLES]]),
        ["samples.tsv", "['patient']", "more than once"],
    ),
    Case(
        "sheet-duplicate-sample",
        "sheet",
        "two rows with the same sample ID",
        lambda c: c.set_sample("P1_dx_PROG", "sample", "P1_dx_HSC"),
        ["samples.tsv", "line 3 (sample 'P1_dx_HSC')", "also on line 2", "unique"],
    ),
    Case(
        "sheet-unknown-timepoint",
        "sheet",
        "a timepoint that the config does not declare (`day30`)",
        lambda c: c.set_sample("P1_dx_HSC", "timepoint", "day30"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'day30'", "config timepoints lists"],
    ),
    Case(
        "sheet-missing-timepoint",
        "sheet",
        "no timepoint for a patient's (non-reference) sample",
        lambda c: c.set_sample("P1_dx_HSC", "timepoint", ""),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'timepoint': ''", "config timepoints lists"],
    ),
    Case(
        "sheet-unknown-population",
        "sheet",
        "a population (sort gate) the config does not declare (`LSC`)",
        lambda c: c.set_sample("P1_dx_HSC", "population", "LSC"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'LSC'", "config populations lists"],
    ),
    Case(
        "sheet-unknown-condition",
        "sheet",
        "a condition the config does not declare (`AML`)",
        lambda c: c.set_sample("P1_dx_HSC", "condition", "AML"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'AML'", "conditions.all"],
    ),
    Case(
        "sheet-bad-sample-id",
        "sheet",
        "a sample ID with a space",
        lambda c: c.set_sample("P1_dx_HSC", "sample", "P1 dx HSC"),
        ["samples.tsv", "line 2", "'P1 dx HSC'", "no spaces"],
    ),
    Case(
        "sheet-empty-field",
        "sheet",
        "an empty required field (`patient`)",
        lambda c: c.set_sample("P1_dx_HSC", "patient", ""),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "column 'patient' is empty"],
    ),
    Case(
        "sheet-unknown-technology",
        "sheet",
        "an unknown technology (`smartseq2`)",
        lambda c: c.set_sample("P1_rem_HSC", "technology", "smartseq2"),
        ["samples.tsv", "line 4 (sample 'P1_rem_HSC')", "'smartseq2'", "droplet", "plate"],
    ),
    Case(
        "sheet-unknown-format",
        "sheet",
        "an unknown format (`loom`)",
        lambda c: c.set_sample("P1_dx_HSC", "format", "loom"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'loom'", "10x_mtx"],
    ),
    Case(
        "sheet-format-not-inferable",
        "sheet",
        "no format given and a counts name that does not show it (`.loom`)",
        lambda c: (c.set_sample("P1_dx_HSC", "format", ""), c.set_sample("P1_dx_HSC", "counts", "counts/x.loom")),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'counts/x.loom'", "set column 'format'"],
    ),
    Case(
        "sheet-spaces-not-tabs",
        "sheet",
        "a row whose fields are separated by spaces, not tabs",
        lambda c: c.path("samples.tsv").write_text(c.sheet_text().replace(P1, P1.replace("\t", "  "), 1)),
        ["samples.tsv", "line 2", "tab-separated fields but the header has 9"],
    ),
    Case(
        "sheet-trailing-tabs",
        "sheet",
        "rows ending in extra tabs (spreadsheet export)",
        lambda c: c.path("samples.tsv").write_text(c.sheet_text().replace("\n", "\t\t\n")),
        [],
        outcome="accepted",
    ),
    Case(
        "sheet-comma-separated",
        "sheet",
        "a comma-separated sheet",
        lambda c: c.write_rows("samples.tsv", [SHEET_COLUMNS, *SAMPLES], sep=","),
        ["samples.tsv", "line 1", "must be tab-separated"],
    ),
    Case(
        "sheet-empty",
        "sheet",
        "an empty sheet",
        lambda c: c.path("samples.tsv").write_text(""),
        ["samples.tsv", "sample sheet is empty"],
    ),
    Case(
        "sheet-no-rows",
        "sheet",
        "a header and no samples",
        lambda c: c.write_sheet([SHEET_COLUMNS]),
        ["samples.tsv", "header but no samples"],
    ),
    Case(
        "sheet-not-utf8",
        "sheet",
        "a sheet saved as Latin-1 (not UTF-8)",
        lambda c: c.path("samples.tsv").write_bytes(
            c.sheet_text().replace("P1_dx_HSC\tP1", "P1_dx_HSC\tPä1", 1).encode("latin-1")
        ),
        ["samples.tsv", "not UTF-8 text (line 2", "save the sheet as UTF-8"],
    ),
    Case(
        "sheet-windows-line-endings",
        "sheet",
        "Windows (CRLF) line endings",
        lambda c: c.path("samples.tsv").write_text(c.sheet_text().replace("\n", "\r\n")),
        [],
        outcome="accepted",
    ),
    Case(
        "sheet-utf8-bom",
        "sheet",
        "a UTF-8 byte-order mark (Excel's 'UTF-8 CSV')",
        lambda c: c.path("samples.tsv").write_bytes(b"\xef\xbb\xbf" + c.sheet_text().encode()),
        [],
        outcome="accepted",
    ),
    Case(
        "sheet-missing",
        "sheet",
        "`samples:` names a file that does not exist",
        lambda c: c.set("samples", "samples2.tsv"),
        ["samples2.tsv", "does not exist", "set `samples:`"],
    ),
    Case(
        "sheet-is-directory",
        "sheet",
        "`samples:` names a directory",
        lambda c: c.set("samples", "counts"),
        ["counts", "is a directory", "sample sheet file"],
    ),
    Case(
        "sheet-reference-and-disease",
        "sheet",
        "one patient ID with both healthy and MDS samples",
        lambda c: c.set_sample("N1_HSC", "patient", "P1"),
        ["samples.tsv", "patient 'P1'", "both reference and disease samples", "separate patient ID"],
    ),
    Case(
        "sheet-no-reference",
        "sheet",
        "no reference donor in the sheet (patients with no reference available)",
        lambda c: c.drop_sample("N1_HSC"),
        ["config.yaml", "cnv.reference", "no sample matches", "healthy donors"],
    ),
    Case(
        "sheet-counts-missing",
        "sheet",
        "a counts path that does not exist",
        lambda c: c.set_sample("P1_dx_HSC", "counts", "counts/P1_dx_HSC_v2.h5"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "'counts/P1_dx_HSC_v2.h5' does not exist", "fix the path"],
    ),
    Case(
        "sheet-counts-is-directory",
        "sheet",
        "a counts path that is a directory, format h5ad",
        lambda c: (c.path("counts/N1.h5ad").mkdir(), c.set_sample("N1_HSC", "counts", "counts/N1.h5ad")),
        ["samples.tsv", "line 5 (sample 'N1_HSC')", "'counts/N1.h5ad' is a directory", "10x_mtx"],
        cli=True,
    ),
    Case(
        "sheet-mtx-is-file",
        "sheet",
        "format 10x_mtx for a file",
        lambda c: c.set_sample("P1_dx_PROG", "counts", "counts/P1_dx_HSC.h5"),
        ["samples.tsv", "line 3 (sample 'P1_dx_PROG')", "is a file but format 10x_mtx needs the directory"],
    ),
    Case(
        "sheet-counts-under-results",
        "sheet",
        "a counts file inside the working directory's results/ (Snakemake may overwrite or delete it)",
        _counts_under_results,
        [
            "samples.tsv",
            "line 2 (sample 'P1_dx_HSC')",
            "'results/mine/P1_dx_HSC.h5'",
            "inside the workflow's output folder results/",
            "move it out",
        ],
        cli=True,
    ),
    Case(
        "sheet-counts-is-an-intermediate",
        "sheet",
        "a counts path that is one of the workflow's own files (was: a cyclic dependency, then a KeyError)",
        lambda c: c.set_sample("N1_HSC", "counts", "results/samples/N1_HSC/counts.h5ad"),
        ["samples.tsv", "line 5 (sample 'N1_HSC')", "'results/samples/N1_HSC/counts.h5ad'", "output folder results/"],
    ),
    Case(
        "sheet-counts-link-into-results",
        "sheet",
        "a counts path that is a symlink to a file inside results/",
        _link_into_results,
        ["samples.tsv", "line 5 (sample 'N1_HSC')", "through a link to", "output folder results/"],
    ),
    Case(
        "sheet-same-counts-twice",
        "sheet",
        "the same counts file listed for two samples (was accepted: 91% del(5q) where 21% was right)",
        _same_counts_twice,
        [
            "samples.tsv",
            "line 4 (sample 'P1_rem_HSC')",
            "same file as sample 'P1_dx_HSC' on line 2",
            "each sample needs its own counts",
        ],
        cli=True,
    ),
    Case(
        "sheet-counts-identical-copy",
        "sheet",
        "two samples whose counts files are byte-identical copies",
        _identical_copy,
        ["samples.tsv", "line 4 (sample 'P1_rem_HSC')", "same content, byte for byte", "'counts/P1_dx_HSC.h5'"],
    ),
    Case(
        "config-simulate-with-user-files",
        "config",
        "a config copied from the demo (`demo.simulate: true`) with a sheet naming the user's files (was: the simulator wrote over them)",
        lambda c: c.set("demo", {"simulate": True}),
        [
            "samples.tsv",
            "line 2 (sample 'P1_dx_HSC')",
            "demo.simulate: true",
            "never reads your files",
            "demo.simulate: false",
        ],
        cli=True,
    ),
    Case(
        "sheet-index-sort-missing",
        "sheet",
        "an index-sort path that does not exist",
        lambda c: c.set_sample("P1_rem_HSC", "index_sort", "counts/facs.csv"),
        ["samples.tsv", "line 4 (sample 'P1_rem_HSC')", "'counts/facs.csv'", "not an existing file"],
    ),
    Case(
        "sheet-alleles-missing",
        "sheet",
        "an `alleles` folder (cellsnp-lite output) that does not exist",
        lambda c: _alleles_column(c, "snps/P1_dx_HSC"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "column 'alleles'", "does not exist", "leave the cell empty"],
    ),
    Case(
        "sheet-alleles-incomplete",
        "sheet",
        "an `alleles` folder without its depth matrix (cellSNP.tag.DP.mtx)",
        lambda c: _alleles_column(
            c, "snps/P1_dx_HSC", ("cellSNP.base.vcf", "cellSNP.tag.AD.mtx", "cellSNP.samples.tsv")
        ),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "column 'alleles'", "lacks cellSNP.tag.DP.mtx", "whole folder"],
    ),
    Case(
        "sheet-bam-missing",
        "sheet",
        "a `bam` (reads for allele counting) that does not exist",
        lambda c: _bam_column(c, "missing/P1_dx_HSC.bam"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "column 'bam'", "does not exist", "leave the cell empty"],
    ),
    Case(
        "sheet-bam-no-index",
        "sheet",
        "a `bam` without its index (.bai/.csi)",
        lambda c: _bam_column(c, "bams/P1_dx_HSC.bam", index=False),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "column 'bam'", "has no index", "samtools index"],
    ),
    Case(
        "sheet-alleles-and-bam",
        "sheet",
        "a row naming both a cellsnp-lite folder (`alleles`) and a `bam`",
        lambda c: _bam_column(c, "bams/P1_dx_HSC.bam", alleles="snps/P1_dx_HSC"),
        ["samples.tsv", "line 2 (sample 'P1_dx_HSC')", "columns 'alleles'", "'bam'", "both filled"],
    ),
    # ---- config ------------------------------------------------------------------------------
    Case(
        "config-alleles-discovery-minimums",
        "config",
        "a sheet naming a BAM, no `alleles.sites` (sites found in the reads) and a minor-allele minimum above "
        "the depth minimum (`alleles.discovery`)",
        lambda c: (
            _bam_column(c, "bams/P1_dx_HSC.bam"),
            c.set("alleles.discovery", {"min_depth": 4, "min_minor_reads": 5}),
        ),
        ["config.yaml", "alleles.discovery", "min_minor_reads 5 is above min_depth 4", "sample 'P1_dx_HSC'"],
    ),
    Case(
        "config-alleles-control-overlaps",
        "config",
        "an allele control region inside a lesion (`alleles.control_region: 5q31`)",
        lambda c: c.set("alleles", {"control_region": "5q31"}),
        ["config.yaml", "alleles.control_region", "overlaps lesion 'del5q'", "outside every lesion"],
    ),
    Case(
        "config-wrong-type",
        "config",
        "a value of the wrong type (`qc.min_counts: many`)",
        lambda c: c.set("qc.min_counts", "many"),
        ["config.yaml", "qc.min_counts", "'many'", "expected a number or null"],
        cli=True,
    ),
    Case(
        "config-misspelled-key",
        "config",
        "a misspelled key (`qc.min_count`)",
        lambda c: c.set("qc.min_count", 3),
        ["config.yaml", "'min_count'", "did you mean 'min_counts'"],
    ),
    Case(
        "config-unknown-section",
        "config",
        "an unknown top-level key (`clustering`)",
        lambda c: c.set("clustering", {"n_pcs": 10}),
        ["config.yaml", "'clustering'", "did you mean 'cluster'"],
    ),
    Case(
        "config-out-of-range",
        "config",
        "a value out of range (`cnv.posterior_cutoff: 1.5`)",
        lambda c: c.set("cnv.posterior_cutoff", 1.5),
        ["config.yaml", "cnv.posterior_cutoff", "1.5", "must be below 1"],
    ),
    Case(
        "config-not-allowed",
        "config",
        "a value not among the allowed ones (`cluster.hvg_batch_key: donor`)",
        lambda c: c.set("cluster.hvg_batch_key", "donor"),
        ["config.yaml", "cluster.hvg_batch_key", "'donor'", "choose one of 'patient', 'sample', 'technology', null"],
    ),
    Case(
        "config-float-seed",
        "config",
        "a seed that is not an integer (`seed: 1.5`)",
        lambda c: c.set("seed", 1.5),
        ["config.yaml", "seed", "1.5", "expected an integer"],
    ),
    Case(
        "config-list-not-mapping",
        "config",
        "a list where a mapping is expected (`qc: [500, 200]`)",
        lambda c: c.set("qc", [500, 200]),
        ["config.yaml", "qc", "[500, 200]", "expected a mapping (key: value)"],
    ),
    Case(
        "config-missing-populations",
        "config",
        "no `populations` declared",
        lambda c: c.unset("populations"),
        ["config.yaml", "'populations' is a required property", "config/README.md"],
    ),
    Case(
        "config-duplicate-timepoint",
        "config",
        "a timepoint listed twice",
        lambda c: c.set("timepoints", ["diagnosis", "diagnosis"]),
        ["config.yaml", "timepoints", "more than once"],
    ),
    Case(
        "config-reference-undeclared",
        "config",
        "a reference condition missing from `conditions.all`",
        lambda c: c.set("conditions.reference", ["normal"]),
        ["config.yaml", "conditions.reference", "'normal'", "add them there"],
    ),
    Case(
        "config-duplicate-key",
        "config",
        "a key given twice (a second `qc:` block at the end)",
        _second_qc_block,
        ["config.yaml", "key 'qc' is given twice (line", "silently replace the first", "merge the two"],
    ),
    Case(
        "config-min-above-max",
        "config",
        "a lower limit above its upper one (`qc.min_counts: 5000`, `qc.max_counts: 1000`)",
        lambda c: (c.set("qc.min_counts", 5000), c.set("qc.max_counts", 1000)),
        ["config.yaml", "qc.min_counts (5000) is above qc.max_counts (1000)", "no cell could pass QC"],
    ),
    Case(
        "config-yaml-syntax",
        "config",
        "config YAML syntax error (read here by remnant.workflow.config.load_yaml)",
        lambda c: c.path("config.yaml").write_text("seed: [1\n"),
        ["config.yaml", "not valid YAML", "line 2"],
    ),
    Case(
        "config-not-utf8",
        "config",
        "config saved as Latin-1 (read here by remnant.workflow.config.load_yaml)",
        lambda c: c.path("config.yaml").write_bytes("populations: {HSC: 'st\xe9m'}\n".encode("latin-1")),
        ["config.yaml", "not UTF-8", "save it as UTF-8"],
    ),
    Case(
        "config-reference-value",
        "config",
        "`cnv.reference` selects a value the sheet does not have",
        lambda c: c.set("cnv.reference", {"population": ["PRO"]}),
        ["config.yaml", "cnv.reference.population", "['PRO']", "fix the value or the sheet"],
    ),
    Case(
        "config-reference-column",
        "config",
        "`cnv.reference` selects by a column that cannot select",
        lambda c: c.set("cnv.reference", {"barcode": ["A01"]}),
        ["config.yaml", "cnv.reference", "{'barcode': ['A01']}", "sample, patient"],
    ),
    Case(
        "lesion-outside-chromosome",
        "config",
        "a lesion that ends beyond the chromosome (`chr5:67400000-999000000`)",
        lambda c: c.set("lesions", [{"name": "del5q", "type": "loss", "region": "chr5:67400000-999000000"}]),
        ["config.yaml", "lesions[0]", "999000000", "beyond the end of chr5"],
        cli=True,
    ),
    Case(
        "lesion-unknown-band",
        "config",
        "a cytoband that does not exist (`5q13.1-5q39`)",
        lambda c: c.set("lesions", [{"name": "del5q", "type": "loss", "region": "5q13.1-5q39"}]),
        ["config.yaml", "lesions[0]", "unknown cytoband 5q39", "bands run 5p15.33 to 5q35.3"],
    ),
    Case(
        "lesion-unreadable",
        "config",
        "a region that is neither coordinates, bands nor an arm (`5q-`)",
        lambda c: c.set("lesions", [{"name": "del5q", "type": "loss", "region": "chr5 q arm"}]),
        ["config.yaml", "lesions[0]", "'chr5qarm'", "use coordinates"],
    ),
    Case(
        "lesion-iscn-type-mismatch",
        "config",
        "an ISCN region whose del/dup disagrees with the lesion's type (`del(5)(q13q33)`, type gain)",
        lambda c: c.set("lesions", [{"name": "dup5q", "type": "gain", "region": "del(5)(q13q33)"}]),
        ["config.yaml", "lesions[0]", "is a loss in ISCN", "type is 'gain'"],
    ),
    Case(
        "lesion-without-type",
        "config",
        "a lesion without `type` whose region does not say it (`5q13.1-5q33.3`)",
        lambda c: c.set("lesions", [{"name": "del5q", "region": "5q13.1-5q33.3"}]),
        ["config.yaml", "lesions[0]", "lacks key(s) ['type']", "del(5q)"],
    ),
    Case(
        "lesion-unknown-chromosome",
        "config",
        "a lesion on a chromosome the cytoband table lacks",
        lambda c: _bands_without_5(c),
        ["config.yaml", "lesions[0]", "5q13.1", "no bands on chr5", "bands.tsv"],
    ),
    Case(
        "lesion-bad-type",
        "config",
        "a lesion type other than loss/gain (`deletion`)",
        lambda c: c.set("lesions", [{"name": "del5q", "type": "deletion", "region": "5q"}]),
        ["config.yaml", "lesions[0].type", "'deletion'", "'loss', 'gain'"],
    ),
    Case(
        "lesion-ratio-mismatch",
        "config",
        "a copy ratio that does not fit the lesion type (loss at 1.5)",
        lambda c: c.set("lesions", [{"name": "del5q", "type": "loss", "region": "5q", "copy_ratio": 1.5}]),
        ["config.yaml", "lesions[0]", "copy_ratio 1.5", "loss: 0<r<1"],
    ),
    Case(
        "gate-marker-not-index-sorted",
        "config",
        "a gate naming a marker that is not an index-sort column (`CD123`)",
        lambda c: c.set("gates.hierarchy", {"HSC": {"CD34": "+", "CD123": "-"}, "PROG": {"CD34": "+", "CD38": "+"}}),
        ["config.yaml", "gates.hierarchy.HSC", "'CD123'", "index_sort.markers"],
    ),
    Case(
        "gate-marker-missing-in-table",
        "config",
        "a gate marker that the index-sort table lacks",
        lambda c: c.write_rows(
            "counts/P1_rem_HSC.index_sort.csv",
            index_sort_rows(base_counts().obs_names[:50], ("CD34", "CD38", "CD45RA")),
        ),
        ["P1_rem_HSC.index_sort.csv", "'CD90'", "columns present", "P1_rem_HSC"],
        cli=True,
    ),
    Case(
        "gene-set-missing",
        "config",
        "a signature gene set that does not exist",
        lambda c: c.set("signatures.sets", ["EPPERT_HSC"]),
        ["config.yaml", "signatures.sets", "EPPERT_HSC"],
    ),
    Case(
        "gene-set-no-known-gene",
        "config",
        "a gene set with no gene of the annotation (mouse symbols)",
        lambda c: _gene_set(c, ["Cd34", "Procr", "Hlf", "Mecom"]),
        ["MY_SET.txt", "none of its 4 genes", "'Cd34'", "GRCh38", "HGNC symbols"],
    ),
    Case(
        "states-unknown",
        "config",
        "`states.use` names a state the marker table lacks",
        lambda c: c.set("states.use", ["HSC", "LMP"]),
        ["config.yaml", "states.use", "'LMP'", "HSPC_MARKERS.tsv"],
    ),
    Case(
        "annotation-missing",
        "config",
        "`annotation.genes` names a file that does not exist",
        lambda c: c.set("annotation.genes", "genes.tsv.gz"),
        ["config.yaml", "annotation.genes", "genes.tsv.gz", "does not exist"],
    ),
    Case(
        "cytobands-missing",
        "config",
        "`annotation.cytobands` names a file that does not exist",
        lambda c: c.set("annotation.cytobands", "bands.tsv"),
        ["config.yaml", "annotation.cytobands", "bands.tsv", "does not exist"],
    ),
    Case(
        "cytobands-not-a-table",
        "config",
        "a cytoband file that is not a cytoband table",
        lambda c: (c.path("bands.tsv").write_text("chr5\tq31\n"), c.set("annotation.cytobands", "bands.tsv")),
        ["bands.tsv", "5 tab-separated columns"],
    ),
    Case(
        "gtf-not-a-gtf",
        "config",
        "`annotation.gtf` names a file that is not a GTF",
        lambda c: (c.path("genes.gtf").write_text("gene_id\tname\nENSG1\tA\n"), c.set("annotation.gtf", "genes.gtf")),
        ["genes.gtf", "annotation.gtf", "not a GTF"],
    ),
    Case(
        "persistence-timepoint",
        "config",
        "`persistence.after` is not a declared timepoint",
        lambda c: c.set("persistence.after", "CR"),
        ["config.yaml", "persistence.after", "'CR'", "timepoints"],
    ),
    # ---- count matrices (rule read_counts) -----------------------------------------------------
    Case(
        "h5ad-truncated",
        "matrix",
        "a truncated .h5ad (copy interrupted)",
        lambda c: c.truncate("counts/N1_HSC.h5ad"),
        ["N1_HSC.h5ad", "N1_HSC", "truncated", "re-copy"],
        stage="read",
        sample="N1_HSC",
    ),
    Case(
        "h5-truncated",
        "matrix",
        "a truncated CellRanger .h5",
        lambda c: c.truncate("counts/P1_dx_HSC.h5"),
        ["P1_dx_HSC.h5", "P1_dx_HSC", "truncated", "re-copy"],
        stage="read",
        cli=True,
    ),
    Case(
        "h5-not-hdf5",
        "matrix",
        "a text file named .h5",
        lambda c: c.path("counts/P1_dx_HSC.h5").write_text("barcode,CD34\n"),
        ["P1_dx_HSC.h5", "not an HDF5 file", "format"],
        stage="read",
    ),
    Case(
        "h5-not-cellranger",
        "matrix",
        "an HDF5 file without CellRanger's /matrix group",
        lambda c: __import__("h5py").File(c.path("counts/P1_dx_HSC.h5"), "w").close(),
        ["P1_dx_HSC.h5", "CellRanger", "/matrix"],
        stage="read",
    ),
    Case(
        "mtx-truncated",
        "matrix",
        "a truncated matrix.mtx.gz",
        lambda c: c.truncate("counts/P1_dx_PROG/matrix.mtx.gz"),
        ["P1_dx_PROG", "matrix.mtx.gz", "truncated", "re-copy"],
        stage="read",
        sample="P1_dx_PROG",
    ),
    Case(
        "mtx-missing-barcodes",
        "matrix",
        "a 10x directory without barcodes.tsv.gz",
        lambda c: c.path("counts/P1_dx_PROG/barcodes.tsv.gz").unlink(),
        ["P1_dx_PROG", "barcodes.tsv", "copy the complete"],
        stage="read",
        sample="P1_dx_PROG",
    ),
    Case(
        "mtx-barcodes-mismatch",
        "matrix",
        "barcodes.tsv.gz with fewer lines than the matrix has columns",
        lambda c: _mtx_barcodes(c, 10),
        ["P1_dx_PROG", "barcodes.tsv.gz", "one line per matrix"],
        stage="read",
        sample="P1_dx_PROG",
    ),
    Case(
        "mtx-gz-and-legacy-files",
        "matrix",
        "a 10x directory holding CellRanger 2's plain files beside the .gz ones",
        lambda c: _mtx_plain_copies(
            c, {"matrix.mtx.gz": "matrix.mtx", "barcodes.tsv.gz": "barcodes.tsv", "features.tsv.gz": "genes.tsv"}
        ),
        ["counts/P1_dx_PROG", "matrix.mtx.gz and matrix.mtx", "features.tsv.gz and genes.tsv", "keep one set"],
        stage="read",
        sample="P1_dx_PROG",
    ),
    Case(
        "mtx-gz-and-plain-matrix",
        "matrix",
        "a 10x directory holding matrix.mtx beside matrix.mtx.gz",
        lambda c: _mtx_plain_copies(c, {"matrix.mtx.gz": "matrix.mtx"}),
        ["counts/P1_dx_PROG", "(matrix.mtx.gz and matrix.mtx)", "move the others out"],
        stage="read",
        sample="P1_dx_PROG",
    ),
    Case(
        "table-truncated-gzip",
        "matrix",
        "a truncated .tsv.gz table",
        lambda c: c.truncate("counts/P1_rem_HSC.tsv.gz"),
        ["P1_rem_HSC.tsv.gz", "complete"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    Case(
        "matrix-no-cells",
        "matrix",
        "an empty matrix (0 cells)",
        lambda c: c.write_counts("N1_HSC", base_counts()[:0].copy()),
        ["N1_HSC.h5ad", "0 cells", "non-empty"],
        stage="read",
        sample="N1_HSC",
    ),
    Case(
        "table-header-only",
        "matrix",
        "a table with a header and no rows",
        lambda c: (
            c.write_rows("counts/N1.tsv", [["gene_id", "A01", "A02"]], sep="\t")
            and None
            or (c.set_sample("N1_HSC", "counts", "counts/N1.tsv"), c.set_sample("N1_HSC", "format", "table"))
        ),
        ["N1.tsv", "no data rows", "empty"],
        stage="read",
        sample="N1_HSC",
    ),
    Case(
        "counts-negative",
        "matrix",
        "a negative count",
        lambda c: _with_value(c, "P1_dx_HSC", -3),
        ["P1_dx_HSC.h5", "negative", "value -3", "raw counts"],
        stage="read",
    ),
    Case(
        "counts-nan",
        "matrix",
        "a NaN count",
        lambda c: _with_value(c, "P1_dx_HSC", np.nan),
        ["P1_dx_HSC.h5", "non-finite", "value nan", "fill missing entries with 0"],
        stage="read",
    ),
    Case(
        "counts-inf",
        "matrix",
        "an infinite count",
        lambda c: _with_value(c, "P1_dx_PROG", np.inf),
        ["P1_dx_PROG", "non-finite", "value inf"],
        stage="read",
        sample="P1_dx_PROG",
    ),
    Case(
        "counts-not-integer",
        "matrix",
        "non-integer counts (TPM) where raw counts are required",
        lambda c: _table_value(c, "12.75"),
        ["P1_rem_HSC.tsv.gz", "non-integer", "value 12.75", "not normalised/TPM"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    Case(
        "counts-not-a-number",
        "matrix",
        "a table entry that is not a number (decimal comma `1,5`)",
        lambda c: _table_value(c, "1,5"),
        ["P1_rem_HSC.tsv.gz", "'1,5'", "line 3", "(row 'ENSG"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    Case(
        "counts-missing-entry",
        "matrix",
        "a table entry written as `n/a`",
        lambda c: _table_value(c, "n/a"),
        ["P1_rem_HSC.tsv.gz", "non-finite", "'ENSG", "fill missing entries with 0"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    Case(
        "h5ad-nan",
        "matrix",
        "a NaN in an .h5ad's only matrix",
        lambda c: _with_value(c, "N1_HSC", np.nan),
        ["N1_HSC.h5ad", ".X has non-finite value nan", "store them in .X"],
        stage="read",
        sample="N1_HSC",
    ),
    Case(
        "h5ad-normalised-only",
        "matrix",
        "an .h5ad holding only normalised values (no raw counts anywhere)",
        lambda c: _with_value(c, "N1_HSC", 0.37),
        ["N1_HSC.h5ad", "no integer-valued count matrix", "0.37", "layers['counts']"],
        stage="read",
        sample="N1_HSC",
    ),
    Case(
        "duplicate-barcodes",
        "matrix",
        "a barcode that occurs twice",
        _duplicate_barcodes,
        ["P1_dx_HSC.h5", "'A01'", "more than once", "separate samples"],
        stage="read",
    ),
    Case(
        "duplicate-genes",
        "matrix",
        "a gene row that occurs twice in a table",
        _duplicate_genes,
        ["P1_rem_HSC.tsv.gz", "more than once", "sum or remove the duplicates"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    Case(
        "genes-mouse",
        "matrix",
        "genes of another organism (mouse IDs and symbols)",
        _mouse,
        [
            "P1_dx_HSC.h5",
            "only 6 of 400 gene identifiers",
            "mouse/rat-style symbols",
            "another organism",
            "annotation.genes",
        ],
        stage="read",
    ),
    Case(
        "genes-other-build",
        "matrix",
        "counts quantified against another genome build (10x `genome` hg19)",
        lambda c: _h5_genome(c, "hg19"),
        ["P1_dx_HSC", "hg19", "annotation.build is GRCh38"],
        stage="read",
        outcome="warning",
    ),
    Case(
        "genes-partly-unmapped",
        "matrix",
        "a quarter of the genes unknown to the annotation (older annotation?)",
        _partly_unmapped,
        ["P1_dx_HSC", "75.0% of the 400 features", "ENSG90000000000", "another genome build or annotation"],
        stage="read",
        outcome="warning",
    ),
    Case(
        "genes-one-chromosome",
        "matrix",
        "a matrix subset to the genes of chromosome 1",
        _one_chromosome,
        ["counts/P1_dx_HSC.h5", "P1_dx_HSC", "genes from chromosome(s) 1 only: was the matrix subset or filtered?"],
        stage="read",
    ),
    Case(
        "format-mismatch",
        "matrix",
        "the `format` column does not match the file (h5ad for a table)",
        lambda c: c.set_sample("P1_rem_HSC", "format", "h5ad"),
        ["P1_rem_HSC.tsv.gz", "not an HDF5 file", "`format` column"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    # ---- index sort (rule read_counts) ----------------------------------------------------------
    Case(
        "index-sort-marker-missing",
        "index sort",
        "`index_sort.markers` names a marker that the table lacks",
        lambda c: c.set("index_sort.markers", ["CD34", "CD38", "CD90", "CD45RA", "CD123"]),
        ["P1_rem_HSC.index_sort.csv", "'CD123'", "columns present", "fix the marker list"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    Case(
        "index-sort-duplicate",
        "index sort",
        "a well listed twice in the index-sort table",
        lambda c: c.write_rows(
            "counts/P1_rem_HSC.index_sort.csv", index_sort_rows(["A01", *base_counts().obs_names[:50]])
        ),
        ["P1_rem_HSC.index_sort.csv", "'A01'", "one row"],
        stage="parse",
        sample="P1_rem_HSC",
    ),
    Case(
        "index-sort-not-numeric",
        "index sort",
        "an intensity that is not a number",
        lambda c: c.write_rows(
            "counts/P1_rem_HSC.index_sort.csv",
            [*index_sort_rows(base_counts().obs_names[:50]), ["H01", "high", "1", "2", "3"]],
        ),
        ["P1_rem_HSC.index_sort.csv", "'high'", "'H01'", "line 52"],
        stage="parse",
        sample="P1_rem_HSC",
    ),
    Case(
        "index-sort-no-match",
        "index sort",
        "index-sort wells that match no barcode of the counts",
        lambda c: c.write_rows("counts/P1_rem_HSC.index_sort.csv", index_sort_rows([f"X{i}" for i in range(10)])),
        ["P1_rem_HSC.index_sort.csv", "P1_rem_HSC.tsv.gz", "none of the 10 barcodes", "the same way"],
        stage="read",
        sample="P1_rem_HSC",
    ),
    Case(
        "index-sort-some-unmatched",
        "index sort",
        "some sorted wells have no reads (not in the counts)",
        lambda c: c.write_rows(
            "counts/P1_rem_HSC.index_sort.csv", index_sort_rows([*base_counts().obs_names[:50], "P24"])
        ),
        ["P1_rem_HSC", "1 of 51 index-sort barcodes are not in the count matrix", "'P24'"],
        stage="read",
        sample="P1_rem_HSC",
        outcome="warning",
    ),
    # ---- QC (rule filter_cells) -----------------------------------------------------------------
    Case(
        "qc-all-cells-fail",
        "qc",
        "a sample whose cells all fail QC (`qc.min_genes: 5000`)",
        lambda c: c.set("qc.min_genes", 5000),
        ["sample P1_dx_HSC", "only 0 of 60 cells pass QC", "qc.min_cells", "low_genes", "relax the thresholds"],
        stage="qc",
    ),
    Case(
        "qc-few-cells",
        "qc",
        "a droplet sample with too few cells for doublet scoring (20)",
        _few_cells,
        ["20 cells", "too few to score doublets"],
        stage="qc",
        outcome="warning",
    ),
]


# ------------------------------------------------------------------------------------------------
# docs/bad_inputs.md
# ------------------------------------------------------------------------------------------------
def _markdown(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_docs(path: Path = ROOT / "docs/bad_inputs.md") -> None:
    import tempfile

    rows = []
    for i, case in enumerate(CASES, 1):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_case(case, Path(tmp))
        shown = result.message.replace(tmp + "/", "").replace(tmp, ".").replace(str(ROOT), "<remnant>")
        if result.outcome == "error":
            shown = f"`` {_markdown(shown)} ``"
        elif result.outcome == "warning":
            shown = f"warning: `` {_markdown(shown)} ``"
        else:
            shown = "accepted (no message)"
        tested = f"`{case.id}`" + (" (+ command line)" if case.cli else "")
        rows.append(f"| {i} | {case.group} | {_markdown(case.what)} | {case.stage} | {shown} | {tested} |")
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- catalogue: begin -->", "<!-- catalogue: end -->"
    table = "\n".join(
        [begin, "| # | input | case | met in | what the user sees | test id |", "|---|---|---|---|---|---|", *rows, end]
    )
    if begin in text and end in text:
        text = text[: text.index(begin)] + table + text[text.index(end) + len(end) :]
    else:
        text += "\n" + table + "\n"
    path.write_text(text)


if __name__ == "__main__":
    write_docs()
