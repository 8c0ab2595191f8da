# Cohort clustering and HSPC state annotation, and its figures.


rule cluster_cells:
    input:
        samples=all_samples("results/samples/{sample}/filtered.h5ad"),
        markers=MARKERS,
    output:
        h5ad="results/cohort/clustered.h5ad",
        cells="results/cohort/cells.tsv.gz",
    log:
        "logs/cluster_cells/cluster_cells.log",
    benchmark:
        "results/benchmarks/cluster_cells.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 2
    resources:
        # measured exactly (benchmarks/scale.py, the job's own peak; input = the filtered samples):
        # 3.1 GB at 374 MB of input (91k cells), 13.3 GB at 3.75 GB (911k cells), the kNN graph
        # and UMAP being the peak; not the cohort's counts (one hvg batch at a time). This asks
        # 1.4x / 1.2x those peaks (the former 2000 + 3.2x was a fit with no margin: the 91k peak
        # was 0.98x its request). With umap_init: spectral it was 16.3 GB at 911k cells
        # (ARPACK's sqrt(cells) Lanczos vectors): raise mem_mb for it
        mem_mb=mem_mb_for(3000, 3.6),
        # 2 min at 91k cells, 21 min at 911k: this asks 4x that
        runtime=runtime_for(30, 15),
    params:
        cluster=config["cluster"],
        states=config["states"]["use"],
        timepoints=config["timepoints"],
        populations=list(config["populations"]),
        seed=config["seed"],
    script:
        "../scripts/cluster_cells.py"


rule plot_clusters:
    input:
        h5ad="results/cohort/clustered.h5ad",
        markers=MARKERS,
    output:
        umaps=report(
            expand("results/cohort/figures/umap_{key}.png", key=UMAP_KEYS),
            caption="../report/umap.rst",
            category="2. Clustering",
            subcategory="UMAP",
        ),
        dotplot=report(
            "results/cohort/figures/markers_dotplot.png",
            caption="../report/markers_dotplot.rst",
            category="2. Clustering",
            subcategory="Markers",
        ),
    log:
        "logs/plot_clusters/plot_clusters.log",
    benchmark:
        "results/benchmarks/plot_clusters/plot_clusters.tsv"
    conda:
        "../envs/remnant.yaml"
    threads: 1
    resources:
        # reads obs, the UMAP and the marker genes only
        mem_mb=mem_mb_for(2000, 0.1),
        runtime=runtime_for(20, 20),
    params:
        colour_by=UMAP_KEYS,
        states=config["states"]["use"],
    script:
        "../scripts/plot_clusters.py"
