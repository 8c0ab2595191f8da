"""The seeded simulator of a sorted-marrow cohort with ground truth, agreement with that truth, and
small BAM files of a simulated sample's allele reads."""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "cohort": ["simulate_cohort", "SimulatedCohort"],
        "params": ["resolve_params"],
        "evaluate": ["truth_agreement", "lesion_agreement", "precision_recall"],
        "bam": ["write_bam", "write_plate_bams"],
    },
)
