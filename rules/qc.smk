# Per-sample reading, gene mapping and quality control, then a cohort QC summary.


rule read_counts:
    input:
        unpack(sample_inputs),
    output:
        "results/samples/{sample}/counts.h5ad",
    log:
        "logs/read_counts/{sample}.log",
    benchmark:
        "results/benchmarks/read_counts/{sample}.tsv"
    # one cluster job per sample reads and filters it (per-sample fan-out, half the jobs)
    group:
        "sample"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for(1500, 12),
        runtime=runtime_for(20, 10),
    params:
        row=sample_row,
        min_mapped_fraction=config["annotation"]["min_mapped_fraction"],
        build=config["annotation"]["build"],
        markers=config["index_sort"]["markers"],
        sheet=config["samples"],
        gtf=bool(config["annotation"]["gtf"]),
        cytobands=CYTOBANDS,
    script:
        "../scripts/read_counts.py"


rule filter_cells:
    input:
        "results/samples/{sample}/counts.h5ad",
    output:
        h5ad="results/samples/{sample}/filtered.h5ad",
        cells="results/qc/cells/{sample}.tsv.gz",
        figure=report(
            "results/qc/figures/{sample}.png",
            caption="../report/qc_sample.rst",
            category="1. Quality control",
            subcategory="Per sample",
            labels={"sample": "{sample}"},
        ),
    log:
        "logs/filter_cells/{sample}.log",
    benchmark:
        "results/benchmarks/filter_cells/{sample}.tsv"
    group:
        "sample"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        # measured exactly: at most 2.7-2.9 GB for 5,000-cell droplet samples (about 21 MB of
        # input; Scrublet's exact neighbours included), whatever the cohort size; this asks ~3.7 GB
        mem_mb=mem_mb_for(3500, 8),
        runtime=runtime_for(20, 20),
    params:
        qc=config["qc"],
        technology=lambda wildcards: SAMPLES.loc[wildcards.sample, "technology"],
        seed=config["seed"],
    script:
        "../scripts/filter_cells.py"


rule summarise_qc:
    input:
        all_samples("results/qc/cells/{sample}.tsv.gz"),
    output:
        table=report(
            "results/qc/removed_per_sample.tsv",
            caption="../report/qc_summary.rst",
            category="1. Quality control",
            subcategory="Summary",
        ),
        figure=report(
            "results/qc/removed_per_sample.png",
            caption="../report/qc_summary.rst",
            category="1. Quality control",
            subcategory="Summary",
        ),
    log:
        "logs/summarise_qc/summarise_qc.log",
    benchmark:
        "results/benchmarks/summarise_qc/summarise_qc.tsv"
    # light (one small table per sample): runs where snakemake runs, not as a cluster job
    localrule: True
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for(1000, 4),
        runtime=runtime_for(10, 10),
    params:
        samples=list(SAMPLES.index),
    script:
        "../scripts/summarise_qc.py"
