"""Plotting: every figure of the workflow, each from an AnnData or the table a tool wrote."""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "clusters": ["plot_umaps", "plot_marker_dotplot"],
        "qc": ["plot_qc", "plot_qc_summary"],
        "cnv": ["plot_patient_heatmap", "plot_lesion_profile", "plot_message"],
        "alleles": ["plot_allele_balance", "binned_balance"],
        "persistence": [
            "plot_del_fraction",
            "plot_signature_distributions",
            "plot_cycling_composition",
            "plot_cycling_calibration",
            "plot_volcano",
        ],
    },
)
