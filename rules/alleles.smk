# Allele evidence: each sample whose sheet row names a cellsnp-lite folder (column alleles) read,
# cut to its QC-passed cells and the SNPs of the lesions and the control region. The tables are
# listed by allele_tables() (rules/common.smk).


rule read_alleles:
    input:
        alleles=allele_folder,
        cells="results/samples/{sample}/filtered.h5ad",
        cytobands=CYTOBANDS,
    output:
        "results/alleles/{sample}.h5ad",
    log:
        "logs/read_alleles/{sample}.log",
    benchmark:
        "results/benchmarks/read_alleles/{sample}.tsv"
    # only samples with allele data (an empty sheet cell: no job)
    wildcard_constraints:
        sample=ALLELE_SAMPLES_PATTERN,
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for(1000, 10),
        runtime=runtime_for(10, 10),
    params:
        lesions=config["lesions"],
        control_region=config["alleles"]["control_region"],
        counts=lambda wildcards: SAMPLES.loc[wildcards.sample, "counts"],
    script:
        "../scripts/read_alleles.py"
