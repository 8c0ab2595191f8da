# Copy-number lesions: per-cell posterior of each configured lesion (del(5q) by default) against
# state-matched reference cells (donors of the reference conditions), with cross-fitted
# false-positive rates.


rule call_lesions:
    input:
        h5ad="results/cohort/clustered.h5ad",
        cytobands=CYTOBANDS,
        # genes left out of each cell's depth (cnv.depth.exclude_genes_file): a changed list re-runs the step
        depth_genes=(
            [config["cnv"]["depth"]["exclude_genes_file"]] if config["cnv"]["depth"]["exclude_genes_file"] else []
        ),
        # allele counts of the samples with allele data (rule read_alleles; none: expression alone)
        alleles=allele_tables(),
        phased_sites=([config["alleles"]["phased_sites"]] if config["alleles"]["phased_sites"] else []),
    output:
        calls="results/cnv/lesion_calls.h5ad",
        cells="results/cnv/lesion_calls.tsv.gz",
        intervals="results/cnv/lesion_intervals.tsv",
        reference="results/cnv/reference.tsv",
        samples=report(
            "results/cnv/lesion_summary.tsv",
            caption="../report/lesion_summary.rst",
            category="3. Copy number",
            subcategory="Per sample",
        ),
        # each patient's phased SNPs per lesion, with the reads of called and uncalled cells
        phase=PHASED_SITES,
    log:
        "logs/call_lesions/call_lesions.log",
    benchmark:
        "results/benchmarks/call_lesions.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    # Streams its input (issue 8): a block of cells plus the lesion genes and obs. Measured peak on
    # simulated cohorts (input clustered.h5ad): 1.2 GB at 91k cells (1.2 GB of input), 2.2 GB at
    # 911k (11.6 GB of input); 3.7 GB at 1M with cnv.reference auto. Wall time 38 s at 911k cells.
    resources:
        mem_mb=mem_mb_for(2000, 0.2),
        runtime=runtime_for(20, 3),
    params:
        lesions=config["lesions"],
        cnv=config["cnv"],  # cnv.depth included: the genes each cell's depth leaves out
        alleles=config["alleles"],
        reference_conditions=config["conditions"]["reference"],
        seed=config["seed"],
    script:
        "../scripts/call_lesions.py"


# The cohort file users open: clustered.h5ad with the calls in obs and uns["lesions"], scverse-
# shaped (log-normalised X, raw counts in layers["counts"], gene symbols as var_names;
# remnant.io.store.annotate_with_calls). Its own step because it copies the whole counts matrix and
# writes its log-normalised values (12 GB of counts at 1M cells), which is packaging, not calling;
# steps that need only the calls start without waiting for it.
rule annotate_cohort:
    input:
        h5ad="results/cohort/clustered.h5ad",
        calls="results/cnv/lesion_calls.h5ad",
    output:
        h5ad="results/cohort/cohort.h5ad",
    log:
        "logs/annotate_cohort/annotate_cohort.log",
    benchmark:
        "results/benchmarks/annotate_cohort.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        # holds the obs of both files (no matrix: the counts are copied inside HDF5 and X is
        # written a block of 2^19 stored values at a time)
        mem_mb=mem_mb_for(1500, 0.05),
        runtime=runtime_for(10, 2),
    params:
        target_sum=config["cluster"]["target_sum"],
    script:
        "../scripts/annotate_cohort.py"


# Genome-wide copy-number view: smoothed profiles per cell (infercnvpy, state-matched healthy
# reference), each patient's lesion breakpoints from its called cells, per-patient figures.
CNV_PATIENTS = sorted(SAMPLES["patient"].astype(str).unique())
LESION_NAMES = [lesion["name"] for lesion in config["lesions"]]


rule infer_cnv:
    input:
        h5ad="results/cohort/clustered.h5ad",
        calls="results/cnv/lesion_calls.tsv.gz",
        cytobands=CYTOBANDS,
    output:
        h5ad="results/cnv/profile.h5ad",
        breakpoints=report(
            "results/cnv/breakpoints.tsv",
            caption="../report/cnv_breakpoints.rst",
            category="3. Copy number",
            subcategory="Breakpoints",
        ),
        # one table per patient, so each plot_lesion_profile job reads only its own patient's rows
        profiles=expand("results/cnv/lesion_profiles/{patient}.tsv.gz", patient=CNV_PATIENTS),
    log:
        "logs/infer_cnv/infer_cnv.log",
    benchmark:
        "results/benchmarks/infer_cnv.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    # the counts are read a block of 10,000 cells at a time (remnant.tl.profile): peak 1.5 GB at
    # 50,000 cells, 1.7 GB at 200,000 (clustered.h5ad 0.36 and 1.5 GB); per cell only obs, the
    # calls and the called cells' counts on a lesion's chromosome are kept. Time: ~1 ms per cell
    # (infercnvpy) plus ~3 s per patient with called cells (breakpoint bootstrap).
    resources:
        mem_mb=mem_mb_for(2500, 0.25),
        runtime=runtime_for(60, 20),
    params:
        lesions=config["lesions"],
        shrinkage=config["cnv"]["shrinkage"],
        profile=config["cnv"]["profile"],
        breakpoints=config["cnv"]["breakpoints"],
        depth=config["cnv"]["depth"],
        seed=config["seed"],
        patients=CNV_PATIENTS,
    script:
        "../scripts/infer_cnv.py"


rule plot_cnv:
    input:
        h5ad="results/cnv/profile.h5ad",
        cytobands=CYTOBANDS,
    output:
        heatmap=report(
            "results/cnv/figures/heatmap_{patient}.png",
            caption="../report/cnv_heatmap.rst",
            category="3. Copy number",
            subcategory="Heatmaps",
            labels={"patient": "{patient}", "figure": "genome-wide heatmap"},
        ),
    log:
        "logs/plot_cnv/{patient}.log",
    benchmark:
        "results/benchmarks/plot_cnv/{patient}.tsv"
    wildcard_constraints:
        patient="|".join(re.escape(p) for p in CNV_PATIENTS),
    conda:
        "../envs/remnant.yaml"
    threads: 1
    # obs, the window table and the rows drawn (not the cohort's profile): 0.35 GB at 200,000 cells
    resources:
        mem_mb=mem_mb_for(1000, 1),
        runtime=runtime_for(15, 15),
    params:
        lesions=config["lesions"],
        call_lesion=LESION_NAMES[0],
        heatmap=config["cnv"]["heatmap"],
        seed=config["seed"],
    script:
        "../scripts/plot_cnv.py"


rule plot_lesion_profile:
    input:
        profile="results/cnv/lesion_profiles/{patient}.tsv.gz",
        breakpoints="results/cnv/breakpoints.tsv",
        cytobands=CYTOBANDS,
    output:
        png=report(
            "results/cnv/figures/{lesion}_profile_{patient}.png",
            caption="../report/cnv_lesion_profile.rst",
            category="3. Copy number",
            subcategory="Lesion profiles",
            labels={"patient": "{patient}", "figure": "{lesion} profile"},
        ),
    log:
        "logs/plot_lesion_profile/{lesion}_{patient}.log",
    benchmark:
        "results/benchmarks/plot_lesion_profile/{lesion}_{patient}.tsv"
    wildcard_constraints:
        patient="|".join(re.escape(p) for p in CNV_PATIENTS),
        lesion="|".join(re.escape(name) for name in LESION_NAMES),
    # light (one small table, one figure): runs where snakemake runs, not as a cluster job
    localrule: True
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for(1000, 4),
        runtime=runtime_for(10, 10),
    params:
        lesions=config["lesions"],
    script:
        "../scripts/plot_lesion_profile.py"


rule plot_allele_balance:
    input:
        phase="results/cnv/phased_sites.tsv",
        cytobands=CYTOBANDS,
    output:
        png=report(
            "results/cnv/figures/{lesion}_allele_balance.png",
            caption="../report/cnv_allele_balance.rst",
            category="3. Copy number",
            subcategory="Allele evidence",
            labels={"lesion": "{lesion}", "figure": "allele balance"},
        ),
    log:
        "logs/plot_allele_balance/{lesion}.log",
    benchmark:
        "results/benchmarks/plot_allele_balance/{lesion}.tsv"
    wildcard_constraints:
        lesion="|".join(re.escape(name) for name in LESION_NAMES),
    # light (one small table, one figure): runs where snakemake runs, not as a cluster job
    localrule: True
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for(1000, 4),
        runtime=runtime_for(10, 10),
    params:
        lesions=config["lesions"],
    script:
        "../scripts/plot_allele_balance.py"
