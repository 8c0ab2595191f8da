"""Statistics behind the fractions and contrasts: intervals, error correction, stratified and
random-effects tests, and the camera-style gene-set test.
"""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "proportions": ["wilson_interval", "rogan_gladen", "corrected_fraction"],
        "contrasts": [
            "random_effects_test",
            "stratified_contrast",
            "binomial_mixed_contrast",
            "paired_difference_tests",
            "linear_mixed_difference",
            "select_rows",
        ],
        "genesets": ["rank_sum_with_correlation"],
        "multitest": ["bh_across_patients"],
    },
)
