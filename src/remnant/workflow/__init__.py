"""The Snakemake workflow's layer: config and sample-sheet checks, user-path safety, job logs,
and the report. Analysis code lives in the other subpackages and names no rule, key or path.
"""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "config": [],
        "paths": [],
        "runlog": [],
        "report": [],
        "persistence_config": [],
        "analysed_cells": [],
        "design": [],
        "gate_cells": [],
        "estimate_fractions": [],
        "score_signatures": [],
        "compare_pseudobulk": [],
        "lesions": [],
        "read_counts": [],
        "qc": [],
        "cluster_cells": [],
        "cnv": [],
        "demo": [],
        "alleles": [],
    },
)
