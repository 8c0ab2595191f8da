# The run's warnings (input remnant could go on with: a build mismatch, index-sorted wells without
# reads, a batch without its own reference, ...) gathered from every job's log into one table for
# the report (remnant.workflow.runlog.collect_warnings). Runs after every other job of the run.


rule collect_warnings:
    input:
        warning_sources,
    output:
        report(WARNINGS, caption="../report/warnings.rst", category="0. Summary", subcategory="Warnings"),
    log:
        "logs/collect_warnings/collect_warnings.log",
    benchmark:
        "results/benchmarks/collect_warnings/collect_warnings.tsv"
    # light (reads the logs): runs where snakemake runs, not as a cluster job
    localrule: True
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        logs=job_logs,
    script:
        "../scripts/collect_warnings.py"
