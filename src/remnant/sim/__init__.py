"""The seeded simulator of a sorted-marrow cohort with ground truth, and agreement with that truth."""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "cohort": ["simulate_cohort", "SimulatedCohort"],
        "params": ["resolve_params"],
        "evaluate": ["truth_agreement", "lesion_agreement", "precision_recall"],
    },
)
