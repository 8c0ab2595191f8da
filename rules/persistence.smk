# Persistence analysis (issue 4): do carrier stem cells outlast the progenitors after treatment?
# Population identity three ways (sort gate, index gate, transcriptomic state) and where they
# disagree; the carrier fraction per patient x population x timepoint, corrected for the calling
# error rates, and the study's contrasts across patients; per-cell signature scores fair between
# carriers and non-carriers, cycling phase and their comparisons; paired pseudobulk DE of carrier
# stem cells after vs before. Steps in remnant.workflow (gate_cells, estimate_fractions, score_signatures,
# compare_pseudobulk), their analysis in remnant.tl (gates, fractions, signatures, de) and remnant.stats.
# PERSISTENCE comes from the config checks in common.smk (remnant.workflow.persistence_config.check_config).
PERSISTENCE_LESION = PERSISTENCE["lesion"]
GATES = PERSISTENCE["gates"]
SIGNATURE_SETS = list(config["signatures"]["sets"])
CELL_CYCLE_SETS = [config["signatures"]["cell_cycle"]["s"], config["signatures"]["cell_cycle"]["g2m"]]
GENE_SET_FILES = list(PERSISTENCE["set_files"].values())
# the cohort with its calls, and the per-cell gates when populations come from gates
PERSISTENCE_INPUTS = {"h5ad": "results/cohort/cohort.h5ad"}
if config["persistence"]["population_key"] != "population":
    PERSISTENCE_INPUTS["gates"] = "results/persistence/gates.tsv.gz"
# population levels in display order: the declared sort gates, or the gates of the hierarchy
POPULATION_ORDER = (
    list(config["populations"])
    if config["persistence"]["population_key"] == "population"
    else [*GATES["hierarchy"], "ungated"]
)


rule gate_cells:
    input:
        h5ad="results/cohort/cohort.h5ad",
    output:
        cells="results/persistence/gates.tsv.gz",
        agreement=report(
            "results/persistence/gate_agreement.tsv",
            caption="../report/persistence_gates.rst",
            category="4. Persistence",
            subcategory="Population identity",
            labels={"figure": "sort gate vs index gates vs state"},
        ),
        crosstab="results/persistence/gate_crosstab.tsv",
    log:
        "logs/gate_cells/gate_cells.log",
    benchmark:
        "results/benchmarks/gate_cells/gate_cells.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        # reads the cohort's obs only
        mem_mb=mem_mb_for(1500, 0.1),
        runtime=runtime_for(10, 1),
    params:
        gates=GATES,
    script:
        "../scripts/gate_cells.py"


rule estimate_fractions:
    input:
        **PERSISTENCE_INPUTS,
    output:
        fractions=report(
            "results/persistence/del_fraction.tsv",
            caption="../report/persistence_fractions.rst",
            category="4. Persistence",
            subcategory="Lesion fraction",
            labels={"figure": "per patient, population, timepoint"},
        ),
        pooled="results/persistence/del_fraction_pooled.tsv",
        contrasts=report(
            "results/persistence/contrasts.tsv",
            caption="../report/persistence_contrasts.rst",
            category="4. Persistence",
            subcategory="Lesion fraction",
            labels={"figure": "contrasts across patients"},
        ),
        figure=report(
            "results/persistence/figures/del_fraction.png",
            caption="../report/persistence_fraction_figure.rst",
            category="4. Persistence",
            subcategory="Lesion fraction",
            labels={"figure": "fraction per patient (figure)"},
        ),
    log:
        "logs/estimate_fractions/estimate_fractions.log",
    benchmark:
        "results/benchmarks/estimate_fractions/estimate_fractions.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        # reads the cohort's obs only
        mem_mb=mem_mb_for(1500, 0.1),
        runtime=runtime_for(15, 1),
    params:
        persistence=config["persistence"],
        lesion=PERSISTENCE_LESION,
        reference_conditions=config["conditions"]["reference"],
        planned=PERSISTENCE["planned"],
        timepoints=config["timepoints"],
        populations=POPULATION_ORDER,
    script:
        "../scripts/estimate_fractions.py"


rule score_signatures:
    input:
        **PERSISTENCE_INPUTS,
        sets=GENE_SET_FILES,
        cytobands=CYTOBANDS,
    output:
        scores="results/persistence/signature_scores.tsv.gz",
        sets="results/persistence/signature_sets.tsv",
        comparisons=report(
            "results/persistence/signature_comparisons.tsv",
            caption="../report/persistence_signatures.rst",
            category="4. Persistence",
            subcategory="Stem-cell state",
            labels={"figure": "signature comparisons"},
        ),
        composition="results/persistence/cycling_composition.tsv",
        cycling=report(
            "results/persistence/cycling_contrasts.tsv",
            caption="../report/persistence_cycling.rst",
            category="4. Persistence",
            subcategory="Stem-cell state",
            labels={"figure": "cycling contrasts"},
        ),
        scores_figure=report(
            "results/persistence/figures/signature_scores.png",
            caption="../report/persistence_signatures.rst",
            category="4. Persistence",
            subcategory="Stem-cell state",
            labels={"figure": "signature scores (figure)"},
        ),
        cycling_figure=report(
            "results/persistence/figures/cycling_composition.png",
            caption="../report/persistence_cycling.rst",
            category="4. Persistence",
            subcategory="Stem-cell state",
            labels={"figure": "cycling composition (figure)"},
        ),
        calibration="results/persistence/cycling_calibration.tsv",
        calibration_figure=report(
            "results/persistence/figures/cycling_calibration.png",
            caption="../report/persistence_cycling_calibration.rst",
            category="4. Persistence",
            subcategory="Stem-cell state",
            labels={"figure": "cycling calibration (figure)"},
        ),
    log:
        "logs/score_signatures/score_signatures.log",
    benchmark:
        "results/benchmarks/score_signatures.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    # the cohort is read a block of cells at a time (remnant.pp.scoring): memory is one block plus the
    # cell table and scores (1.4 GB at 50k cells, 1.6 GB at 200k); time grows with the file
    # (~0.5 min per GB; downsample_to adds scanpy's thinning, O(counts) per cell, twice)
    resources:
        mem_mb=mem_mb_for(3000, 0.1),
        runtime=runtime_for(30, 10),
    params:
        signatures=config["signatures"],
        set_names=SIGNATURE_SETS,
        cell_cycle=CELL_CYCLE_SETS,
        persistence=config["persistence"],
        lesion=PERSISTENCE_LESION,
        lesions=config["lesions"],
        reference_conditions=config["conditions"]["reference"],
        timepoints=config["timepoints"],
        seed=config["seed"],
    script:
        "../scripts/score_signatures.py"


rule compare_pseudobulk:
    input:
        **PERSISTENCE_INPUTS,
        sets=GENE_SET_FILES,
    output:
        samples="results/persistence/pseudobulk_samples.tsv",
        de=report(
            "results/persistence/de.tsv",
            caption="../report/persistence_de.rst",
            category="4. Persistence",
            subcategory="Pseudobulk DE",
            labels={"figure": "differential expression"},
        ),
        enrichment=report(
            "results/persistence/enrichment.tsv",
            caption="../report/persistence_de.rst",
            category="4. Persistence",
            subcategory="Pseudobulk DE",
            labels={"figure": "signature enrichment"},
        ),
        volcano=report(
            "results/persistence/figures/volcano.png",
            caption="../report/persistence_de.rst",
            category="4. Persistence",
            subcategory="Pseudobulk DE",
            labels={"figure": "volcano (figure)"},
        ),
    log:
        "logs/compare_pseudobulk/compare_pseudobulk.log",
    benchmark:
        "results/benchmarks/compare_pseudobulk.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 2
    # pseudobulks summed a block of cells at a time (store.group_sums); the DE fit is on patients x
    # genes, whatever the number of cells
    resources:
        mem_mb=mem_mb_for(3000, 0.05),
        runtime=runtime_for(60, 5),
    params:
        pseudobulk=config["pseudobulk"],
        set_names=SIGNATURE_SETS + CELL_CYCLE_SETS,
        persistence=config["persistence"],
        lesion=PERSISTENCE_LESION,
        reference_conditions=config["conditions"]["reference"],
    script:
        "../scripts/compare_pseudobulk.py"
