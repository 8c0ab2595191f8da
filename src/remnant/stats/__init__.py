"""Statistics behind the fractions and contrasts: intervals, error correction, stratified and
random-effects tests, and the camera-style gene-set test.
"""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {})
