"""remnant: find the malignant stem cells that survive therapy.

Library behind the remnant Snakemake workflow. Modules are named for what they do:

- :mod:`remnant.errors` – the exception users see (names file, row/field, value, fix)
- :mod:`remnant.annotation` – genome annotation: gene positions, cytobands, arms
- :mod:`remnant.io` – readers for sorting-lab count matrices and index-sort tables
- :mod:`remnant.simulate` – the seeded demo-cohort simulator (with ground truth)
- :mod:`remnant.qc` – per-sample quality control and doublet scoring
- :mod:`remnant.cluster` – normalisation, integration, clustering, HSPC state annotation
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("remnant")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
