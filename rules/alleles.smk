# Allele evidence: each sample whose sheet row names reads (column bam: a BAM or a plate's manifest)
# counted at its patient's sites (sheet column sites; else alleles.sites; else found by rule find_sites
# in the pooled reads of the patient's BAM samples) into a cellsnp-lite folder; each sample's folder (its own,
# column alleles, or that one) read, cut to its QC-passed cells and the SNPs of the lesions and the
# control region. The tables are listed by allele_tables() (rules/common.smk).


rule find_sites:
    input:
        bams=patient_bams,
        cytobands=CYTOBANDS,
    output:
        "results/alleles/sites/{patient}.vcf",
    log:
        "logs/find_sites/{patient}.log",
    benchmark:
        "results/benchmarks/find_sites/{patient}.tsv"
    # only patients with BAM samples, without their own sites (sheet column sites) or alleles.sites (else no job)
    wildcard_constraints:
        patient=SITE_PATIENTS_PATTERN,
    conda:
        "../envs/remnant.yaml"
    threads: 1
    # pooled base counts of one 1 Mb window at a time, then the candidates' molecules
    resources:
        mem_mb=mem_mb_for(1500, 0),
        runtime=runtime_for(20, 10),
    params:
        samples=patient_bam_samples,
        lesions=config["lesions"],
        control_region=config["alleles"]["control_region"],
        barcode_tag=config["alleles"]["barcode_tag"],
        umi_tags=patient_umi_tags,
        min_mapq=config["alleles"]["min_mapq"],
        min_baseq=config["alleles"]["min_baseq"],
        discovery=config["alleles"]["discovery"],
    script:
        "../scripts/find_sites.py"


rule count_alleles:
    input:
        bam=bam_input,
        cells="results/samples/{sample}/filtered.h5ad",
        sites=sites_input,
        cytobands=CYTOBANDS,
    output:
        directory("results/alleles/{sample}.cellsnp"),
    log:
        "logs/count_alleles/{sample}.log",
    benchmark:
        "results/benchmarks/count_alleles/{sample}.tsv"
    # only samples with reads (an empty sheet cell: no job)
    wildcard_constraints:
        sample=BAM_SAMPLES_PATTERN,
    conda:
        "../envs/remnant.yaml"
    threads: 1
    # reads are streamed site cluster by site cluster: memory is the sites' counts, not the BAM
    resources:
        mem_mb=mem_mb_for(1500, 0),
        runtime=runtime_for(10, 10),
    params:
        lesions=config["lesions"],
        control_region=config["alleles"]["control_region"],
        barcode_tag=config["alleles"]["barcode_tag"],
        umi_tag=umi_tag,
        min_mapq=config["alleles"]["min_mapq"],
        min_baseq=config["alleles"]["min_baseq"],
        sites_source=sites_source,
    script:
        "../scripts/count_alleles.py"


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
