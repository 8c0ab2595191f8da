# Copy-number lesions: per-cell posterior of each configured lesion (del(5q) by default) against
# state-matched reference cells (donors of the reference conditions), with cross-fitted
# false-positive rates.


rule call_lesions:
    input:
        h5ad="results/cohort/clustered.h5ad",
        cytobands=CYTOBANDS,
    output:
        h5ad="results/cohort/cohort.h5ad",
        cells="results/cnv/lesion_calls.tsv.gz",
        intervals="results/cnv/lesion_intervals.tsv",
        samples=report(
            "results/cnv/lesion_summary.tsv",
            caption="../report/lesion_summary.rst",
            category="3. Copy number",
            subcategory="Per sample",
        ),
    log:
        "logs/call_lesions/call_lesions.log",
    benchmark:
        "results/benchmarks/call_lesions.tsv"
    params:
        lesions=config["lesions"],
        cnv=config["cnv"],
        reference_conditions=config["conditions"]["reference"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=mem_mb_for(2000, 4),
        runtime=lambda wildcards, attempt: 30 * attempt,
    conda:
        "../envs/remnant.yaml"
    script:
        "../scripts/call_lesions.py"
