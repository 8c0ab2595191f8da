# Sample-sheet loading and validation, resource paths and input functions shared by all rules.
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.io import get_wildcard_names, strip_wildcard_constraints

# The workflow runs the library of its own checkout (src/remnant); scripts do the same, so that
# jobs inside conda envs (which carry the dependencies, envs/*.yaml) find it too.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from remnant.workflow.config import (
    SITES_KEY,
    check_bam_config,
    check_config_files,
    check_input_paths,
    check_resources,
    patient_sites,
    read_sample_sheet,
    reference_cells,
    simulated_paths,
    validate_config,
)
from remnant.errors import InputError
from remnant.workflow.paths import UserPath, check_distinct_samples, check_not_outputs, sheet_paths

SCHEMAS = Path(workflow.basedir) / "config" / "schemas"


def resource(path):
    """A config path as given if it exists in the working directory, else the workflow's own copy
    (so that resources/ ships with the workflow when it runs in another --directory)."""
    if path is None:
        return None
    if Path(path).exists() or Path(path).is_absolute():
        return str(path)
    shipped = Path(workflow.basedir) / path
    return str(shipped) if shipped.exists() else str(path)


# The config file(s) the values come from, named in messages: --configfile, else the Snakefile's.
CONFIG_SOURCE = " + ".join(str(f) for f in (workflow.overwrite_configfiles or workflow.configfiles)) or "config"

try:
    check_config_files(workflow.configfiles)  # snakemake's own loader kept the last of two equal keys
    config.update(validate_config(config, SCHEMAS / "config.schema.yaml", source=CONFIG_SOURCE))
    SAMPLES = read_sample_sheet(config["samples"], SCHEMAS / "samples.schema.yaml", config)
    if config["cnv"]["reference"] == "auto":
        if config["cnv"]["auto_reference"]["candidates"] is not None:
            reference_cells(
                SAMPLES,
                config["cnv"]["auto_reference"]["candidates"],
                config["conditions"]["reference"],
                key="cnv.auto_reference.candidates",
                source=CONFIG_SOURCE,
            )
    else:
        reference_cells(SAMPLES, config["cnv"]["reference"], config["conditions"]["reference"], source=CONFIG_SOURCE)
    # the files the config names, and what is defined against them (lesion regions, states, gene sets)
    check_resources(
        config,
        genes=resource(config["annotation"]["genes"]),
        gtf=resource(config["annotation"]["gtf"]),
        cytobands=resource(config["annotation"]["cytobands"]),
        markers=resource(config["states"]["markers"]),
        gene_set_dir=resource(config["signatures"]["directory"]),
        source=CONFIG_SOURCE,
    )
    # the user's own paths (the sheet's files, the sheet, the config files, the resources), checked
    # against the workflow's outputs once every rule is known (check_user_files, end of Snakefile)
    USER_PATHS = [UserPath("", "the sample sheet", str(config["samples"]), CONFIG_SOURCE)]
    USER_PATHS += [
        UserPath("", "config file", str(f), str(f)) for f in (workflow.overwrite_configfiles or workflow.configfiles)
    ]
    USER_PATHS += [
        UserPath(f"key {key}", "path", str(resource(value)), CONFIG_SOURCE)
        for key, value in [
            ("annotation.genes", config["annotation"]["genes"]),
            ("annotation.gtf", config["annotation"]["gtf"]),
            ("annotation.cytobands", config["annotation"]["cytobands"]),
            ("states.markers", config["states"]["markers"]),
            ("signatures.directory", config["signatures"]["directory"]),
            ("cnv.depth.exclude_genes_file", config["cnv"]["depth"]["exclude_genes_file"]),
            (SITES_KEY, config["alleles"]["sites"]),
        ]
        if value
    ]
    if config["demo"]["simulate"]:
        from remnant.sim.cohort import resolve_params

        config["demo"]["params"].setdefault("normal_conditions", list(config["conditions"]["reference"]))
        SIMULATION = resolve_params(config["demo"]["params"], samples=SAMPLES, root="demo.params")
        # the simulator writes under results/demo/inputs/, never at a path the sheet names
        from remnant.sim.params import has_alleles, has_bam
        from remnant.workflow.demo import SIMULATED_SITES, check_no_sites

        SAMPLES = simulated_paths(
            SAMPLES,
            SIMULATION["index_sort"]["technologies"],
            allele_samples=[s for s, row in SAMPLES.iterrows() if has_alleles(row, SIMULATION)],
            bam_samples=[s for s, row in SAMPLES.iterrows() if has_bam(row, SIMULATION)],
        )
        # the simulator's BAMs are counted at the sites it writes (a user's sites are never read here)
        check_no_sites(config["alleles"]["sites"], source=CONFIG_SOURCE)
        config["alleles"]["sites"] = SIMULATED_SITES if SAMPLES["bam"].any() else None
    else:
        USER_PATHS += sheet_paths(SAMPLES, config["samples"])
        check_not_outputs(USER_PATHS)  # before any file is opened (the rules' outputs: check_user_files)
        check_input_paths(SAMPLES, config["samples"])
        check_bam_config(
            SAMPLES, config["alleles"]["sites"], discovery=config["alleles"]["discovery"], source=CONFIG_SOURCE
        )
        check_distinct_samples(SAMPLES, config["samples"])
    # persistence analysis (gates, persistence, signatures, pseudobulk): cross-key checks and the
    # derived gate mappings and lesion name
    from remnant.workflow.persistence_config import check_config as check_persistence_config

    PERSISTENCE = check_persistence_config(
        config,
        SAMPLES,
        gene_set_dir=resource(config["signatures"]["directory"]),
        cytobands=resource(config["annotation"]["cytobands"]),
        check_files=not config["demo"]["simulate"],
        sheet_path=config["samples"],
        source=CONFIG_SOURCE,
    )
except InputError as err:
    raise WorkflowError(f"remnant: {err}") from None

SIMULATE = config["demo"]["simulate"]
# the samples with allele data (sheet column alleles or bam, or the simulator's demo.params.alleles);
# those with a BAM are counted first (rule count_alleles)
ALLELE_SAMPLES = [s for s in SAMPLES.index if SAMPLES.loc[s, "alleles"] or SAMPLES.loc[s, "bam"]]
BAM_SAMPLES = [s for s in SAMPLES.index if SAMPLES.loc[s, "bam"]]
BAM_SAMPLES_PATTERN = "|".join(re.escape(s) for s in BAM_SAMPLES) or "(?!)"
# the sites a patient's BAM samples are counted at: its own VCF (sheet column sites), else alleles.sites,
# else those found in its pooled reads (by rule find_sites, only for patients with BAM samples and neither)
PATIENT_SITES = patient_sites(SAMPLES)
SITE_PATIENTS = (
    []
    if config["alleles"]["sites"]
    else [p for p in dict.fromkeys(SAMPLES.loc[BAM_SAMPLES, "patient"].astype(str)) if p not in PATIENT_SITES]
)
SITE_PATIENTS_PATTERN = "|".join(re.escape(p) for p in SITE_PATIENTS) or "(?!)"
ALLELE_SAMPLES_PATTERN = "|".join(re.escape(s) for s in ALLELE_SAMPLES) or "(?!)"  # (?!) matches nothing
# with allele data, call_lesions also writes each patient's phased SNPs (without: exactly as before)
PHASED_SITES = ["results/cnv/phased_sites.tsv"] if ALLELE_SAMPLES else []
GENES = resource(config["annotation"]["gtf"] or config["annotation"]["genes"])
CYTOBANDS = resource(config["annotation"]["cytobands"])
MARKERS = resource(config["states"]["markers"])
GENE_SETS = str(Path(workflow.basedir) / "resources" / "gene_sets")


wildcard_constraints:
    sample="|".join(re.escape(s) for s in SAMPLES.index),


# ---------------------------------------------------------------------------------------------
# input functions
# ---------------------------------------------------------------------------------------------
def sample_row(wildcards):
    """The sample's sheet row as a dict of strings (only this sample: adding samples reruns nothing here)."""
    row = SAMPLES.loc[wildcards.sample]
    return {
        k: str(row[k])
        for k in (
            "sample",
            "patient",
            "timepoint",
            "population",
            "condition",
            "counts",
            "format",
            "technology",
            "index_sort",
        )
    }


def sample_inputs(wildcards):
    row = SAMPLES.loc[wildcards.sample]
    inputs = {"counts": row["counts"], "genes": GENES}
    if row["index_sort"]:
        inputs["index_sort"] = row["index_sort"]
    return inputs


def simulated_outputs():
    """Every counts path (10x mtx directories flagged as such), index-sort table, cellsnp-lite folder,
    BAM (with its index) or plate manifest (with its folder of BAMs) of the sheet; for the BAM samples
    the allele counts the BAMs hold (results/demo/truth/{sample}.cellsnp), and the sites VCF."""
    outputs = []
    for sample, row in SAMPLES.iterrows():
        outputs.append(directory(row["counts"]) if row["format"] == "10x_mtx" else row["counts"])
        if row["index_sort"]:
            outputs.append(row["index_sort"])
        if row["alleles"]:
            outputs.append(directory(row["alleles"]))
        if row["bam"]:
            extra = row["bam"] + ".bai" if row["bam"].endswith(".bam") else directory(row["bam"].removesuffix(".tsv"))
            outputs += [row["bam"], extra, directory(f"results/demo/truth/{sample}.cellsnp")]
    if config["alleles"]["sites"]:
        outputs.append(config["alleles"]["sites"])
    return outputs


def allele_folder(wildcards):
    """The sample's cellsnp-lite folder: the sheet's (column alleles), or the one rule count_alleles
    writes from its BAM (column bam)."""
    if SAMPLES.loc[wildcards.sample, "bam"]:
        return f"results/alleles/{wildcards.sample}.cellsnp"
    return SAMPLES.loc[wildcards.sample, "alleles"]


def sites_input(wildcards):
    """The sites a sample is counted at by rule count_alleles - its patient's VCF (sheet column sites), else
    alleles.sites, else its patient's sites found by rule find_sites. Only read."""
    patient = str(SAMPLES.loc[wildcards.sample, "patient"])
    if patient in PATIENT_SITES:
        return PATIENT_SITES[patient]
    if config["alleles"]["sites"]:
        return config["alleles"]["sites"]
    return f"results/alleles/sites/{patient}.vcf"


def sites_source(wildcards):
    """Where the sample's sites come from, named in count_alleles' messages (a sheet column, config key or rule)."""
    patient = str(SAMPLES.loc[wildcards.sample, "patient"])
    if patient in PATIENT_SITES:
        return f"sample sheet column 'sites' (patient {patient})"
    if config["alleles"]["sites"]:
        return SITES_KEY
    return f"rule find_sites (patient {patient})"


def patient_bam_samples(wildcards):
    """The patient's samples whose sheet rows name reads (column bam), in sheet order."""
    return [s for s in BAM_SAMPLES if str(SAMPLES.loc[s, "patient"]) == wildcards.patient]


def patient_bams(wildcards):
    """The BAMs or plate manifests of the patient's samples (rule find_sites pools them)."""
    return [SAMPLES.loc[s, "bam"] for s in patient_bam_samples(wildcards)]


def patient_umi_tags(wildcards):
    """The UMI tag of each of the patient's BAMs (none for plates), in patient_bams' order."""
    return [sample_umi_tag(s) for s in patient_bam_samples(wildcards)]


def bam_input(wildcards):
    """The sample's BAM or plate manifest (sheet column bam)."""
    return SAMPLES.loc[wildcards.sample, "bam"]


def umi_tag(wildcards):
    """The UMI tag of the sample's BAM (alleles.umi_tag); plates have none (each fragment votes)."""
    return sample_umi_tag(wildcards.sample)


def sample_umi_tag(sample):
    """The UMI tag of a sample's BAM: alleles.umi_tag, none for plates."""
    return None if SAMPLES.loc[sample, "technology"] == "plate" else config["alleles"]["umi_tag"]


def allele_tables(wildcards=None):
    """results/alleles/{sample}.h5ad (rule read_alleles) of every sample with allele data, in sheet
    order; an empty list when no sample has any."""
    return expand("results/alleles/{sample}.h5ad", sample=ALLELE_SAMPLES)


def check_user_files():
    """Refuse (one line, before any job) a user path that is an output, log or benchmark of any of
    the workflow's rules, or lies inside results/, logs/ or .snakemake/ (Snakemake would overwrite
    or delete it). Called at the end of the Snakefile, when every rule is known."""

    def is_output(path):
        return next((r.name for r in workflow.rules if r.is_producer(path)), None)

    try:
        check_not_outputs(USER_PATHS, is_output=is_output)
    except InputError as err:
        raise WorkflowError(f"remnant: {err}") from None


def all_samples(pattern):
    return expand(pattern, sample=SAMPLES.index)


# Resources (the convention for every rule; profiles/README.md): threads fixed per rule; mem_mb and
# runtime (minutes) from these helpers, so that they grow with the input and with each attempt (with
# --retries, a job killed for memory or time is resubmitted with attempt + 1). Never a partition,
# account or QoS here: those belong to profiles/slurm.
def input_mb(input):
    """Total size of a job's input in MB, directories (10x mtx) counted by their files."""
    total = 0
    for path in input:
        path = Path(path)
        if path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        elif path.exists():
            total += path.stat().st_size
    return total / 2**20  # MiB, as Snakemake's input.size_mb


def mem_mb_for(base, per_input_mb):
    """Memory that grows with the input size and with each retry (a job killed for memory gets more)."""

    def mem_mb(wildcards, input, attempt):
        return int((base + per_input_mb * input_mb(input)) * attempt)

    return mem_mb


def runtime_for(base, per_input_gb=0):
    """Wall time in minutes that grows with the input size and with each retry (a job killed at its
    time limit gets more)."""

    def runtime(wildcards, input, attempt):
        return int((base + per_input_gb * input_mb(input) / 1000) * attempt)

    return runtime


# The report's front page (rule write_front_page) and where the gene annotation came from.
FRONT_PAGE = "results/report/front_page.rst"
ANNOTATION_SOURCE = f"{config['annotation']['build']}: genes {GENES}, cytobands {CYTOBANDS}" + (
    " (shipped with remnant; sources and checksums in resources/annotation/PROVENANCE.md)"
    if str(GENES).startswith(str(Path(workflow.basedir) / "resources"))
    else ""
)


def report_description():
    """The report's first page: the run's front page when it exists, else the workflow description
    (``snakemake --report`` runs in the working directory, so the relative path is the run's)."""
    front = Path(FRONT_PAGE)
    return str(front.resolve()) if front.exists() else "report/workflow.rst"


# The run's warnings, gathered from every job's log (rule collect_warnings, rules/warnings.smk).
WARNINGS = "results/warnings.tsv"


def _flat(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flat(item)
        else:
            yield item


def warning_sources(wildcards):
    """Every other final output: the warnings are collected after every job of the run."""
    return [f for f in _flat(get_final_output()) if f != WARNINGS]


def job_logs(wildcards):
    """(rule, log path) of every job: each rule's log patterns expanded over the sheet's samples and
    patients and the configured lesions; a wildcard of another name matches the logs that exist."""
    values = {
        "sample": list(SAMPLES.index),
        "patient": sorted(SAMPLES["patient"].astype(str).unique()),
        "lesion": [lesion["name"] for lesion in config["lesions"]],
    }
    logs = []
    for step in sorted(workflow.rules, key=lambda r: r.name):
        if step.name in ("all", "collect_warnings"):
            continue
        for pattern in step.log:
            pattern = strip_wildcard_constraints(str(pattern))
            names = set(get_wildcard_names(pattern))
            if names <= set(values):
                paths = expand(pattern, **{n: values[n] for n in names})
            else:
                paths = sorted(str(p) for p in Path().glob(re.sub(r"{[^}]*}", "*", pattern)))
            logs += [(step.name, path) for path in paths]
    return logs


def get_final_output():
    outputs = [
        "results/qc/removed_per_sample.tsv",
        "results/qc/removed_per_sample.png",
        "results/cohort/clustered.h5ad",
        "results/cohort/cells.tsv.gz",
        expand("results/cohort/figures/umap_{key}.png", key=UMAP_KEYS),
        "results/cohort/figures/markers_dotplot.png",
        "results/cohort/cohort.h5ad",
        "results/cnv/lesion_calls.h5ad",
        "results/cnv/lesion_calls.tsv.gz",
        "results/cnv/lesion_summary.tsv",
        "results/cnv/lesion_intervals.tsv",
        "results/cnv/reference.tsv",
        "results/cnv/profile.h5ad",
        "results/cnv/breakpoints.tsv",
        expand("results/cnv/figures/heatmap_{patient}.png", patient=sorted(SAMPLES["patient"].astype(str).unique())),
        expand(
            "results/cnv/figures/{lesion}_profile_{patient}.png",
            lesion=[lesion["name"] for lesion in config["lesions"]],
            patient=sorted(SAMPLES["patient"].astype(str).unique()),
        ),
    ]
    outputs += [
        "results/persistence/gates.tsv.gz",
        "results/persistence/gate_agreement.tsv",
        "results/persistence/gate_crosstab.tsv",
        "results/persistence/del_fraction.tsv",
        "results/persistence/del_fraction_pooled.tsv",
        "results/persistence/contrasts.tsv",
        "results/persistence/figures/del_fraction.png",
        "results/persistence/signature_scores.tsv.gz",
        "results/persistence/signature_sets.tsv",
        "results/persistence/signature_comparisons.tsv",
        "results/persistence/cycling_composition.tsv",
        "results/persistence/cycling_contrasts.tsv",
        "results/persistence/cycling_calibration.tsv",
        "results/persistence/figures/signature_scores.png",
        "results/persistence/figures/cycling_composition.png",
        "results/persistence/pseudobulk_samples.tsv",
        "results/persistence/de.tsv",
        "results/persistence/enrichment.tsv",
        "results/persistence/figures/volcano.png",
        FRONT_PAGE,
    ]
    outputs += all_samples("results/qc/figures/{sample}.png")
    outputs += allele_tables()
    if ALLELE_SAMPLES:
        outputs += PHASED_SITES
        outputs += expand(
            "results/cnv/figures/{lesion}_allele_balance.png", lesion=[x["name"] for x in config["lesions"]]
        )
    outputs.append(WARNINGS)
    if SIMULATE:
        outputs.append("results/demo/truth_agreement.tsv")
    return outputs


UMAP_KEYS = ["patient", "timepoint", "population", "leiden", "hspc_state", "technology"]
