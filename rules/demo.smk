# The demo cohort (demo.simulate: true): simulate every sample of the sheet into results/demo/inputs/
# (never at a path a sheet names: the sheet's counts and index_sort columns are empty), and measure
# how well the workflow recovers the simulated truth (results/demo/truth/).

if SIMULATE:

    rule simulate_cohort:
        input:
            sheet=config["samples"],
            genes=GENES,
            markers=MARKERS,
        output:
            simulated_outputs(),
            cells="results/demo/truth/cells.tsv.gz",
            patients="results/demo/truth/patients.tsv",
        log:
            "logs/simulate_cohort/simulate_cohort.log",
        benchmark:
            "results/benchmarks/simulate_cohort.tsv"
        conda:
            "../envs/remnant.yaml"
        threads: 1
        # the simulated cohort's size comes from the config (demo.params), not from the input
        resources:
            mem_mb=lambda wildcards, attempt: 4000 * attempt,
            runtime=lambda wildcards, attempt: 30 * attempt,
        params:
            sheet=SAMPLES.drop(columns="line").to_dict(orient="records"),
            demo=config["demo"]["params"],
            seed=config["seed"],
            gene_sets=GENE_SETS,
        script:
            "../scripts/simulate_cohort.py"

    rule evaluate_demo:
        input:
            truth=rules.simulate_cohort.output.cells,
            qc=all_samples("results/qc/cells/{sample}.tsv.gz"),
            cohort="results/cohort/cells.tsv.gz",
            lesions="results/cnv/lesion_calls.tsv.gz",
        output:
            "results/demo/truth_agreement.tsv",
        log:
            "logs/evaluate_demo/evaluate_demo.log",
        benchmark:
            "results/benchmarks/evaluate_demo/evaluate_demo.tsv"
        # light (tables only): runs where snakemake runs, not as a cluster job
        localrule: True
        conda:
            "../envs/remnant.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb_for(1500, 4),
            runtime=runtime_for(10, 10),
        script:
            "../scripts/evaluate_demo.py"
