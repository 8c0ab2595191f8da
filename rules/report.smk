# The report's front page: the answer in numbers and words, Methods and provenance, written from
# the run's tables. `snakemake --report` (bin/demo runs it) makes it the report's first page.


rule write_front_page:
    input:
        samples=config["samples"],
        qc="results/qc/removed_per_sample.tsv",
        lesions="results/cnv/lesion_summary.tsv",
        reference="results/cnv/reference.tsv",
        fractions="results/persistence/del_fraction.tsv",
        contrasts="results/persistence/contrasts.tsv",
        comparisons="results/persistence/signature_comparisons.tsv",
        cycling="results/persistence/cycling_contrasts.tsv",
        enrichment="results/persistence/enrichment.tsv",
    output:
        front=FRONT_PAGE,
        summary=report(
            "results/report/summary.html",
            caption="../report/summary.rst",
            category="0. Summary",
            labels={"page": "summary, Methods, provenance"},
        ),
    log:
        "logs/write_front_page/write_front_page.log",
    benchmark:
        "results/benchmarks/write_front_page/write_front_page.tsv"
    localrule: True
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=lambda wildcards, attempt: 5 * attempt,
    params:
        config=config,
        annotation=ANNOTATION_SOURCE,
    script:
        "../scripts/write_front_page.py"
