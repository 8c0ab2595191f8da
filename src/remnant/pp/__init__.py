"""Preprocessing: per-sample quality control, normalisation, embedding and integration, HSPC state
annotation, and gene-set scoring.
"""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "qc": ["qc_metrics", "score_doublets", "flag_cells"],
        "cluster": [
            "ClusterParams",
            "cluster_cohort",
            "cluster_file",
            "normalise",
            "highly_variable_genes",
            "embed",
            "harmony",
            "annotate_states",
            "merge_samples",
        ],
        "scoring": ["score_gene_sets", "score_many", "cell_cycle_scores"],
    },
)
