"""remnant: find the malignant stem cells that survive therapy.

The library behind the remnant Snakemake workflow, laid out as scanpy and infercnvpy are::

    import remnant as rm
    rm.tl.call_lesions(adata, lesions=rm.tl.parse_lesions(...), reference=...)

- :mod:`remnant.io` – readers and writers: count matrices, index-sort tables, annotation, gene sets, the cohort store
- :mod:`remnant.pp` – quality control, normalisation, embedding, HSPC states, gene-set scores
- :mod:`remnant.tl` – lesion calls, reference, copy-number profile, gates, fractions, signatures, pseudobulk
- :mod:`remnant.pl` – figures
- :mod:`remnant.stats` – intervals, error correction and the tests behind the contrasts
- :mod:`remnant.sim` – the seeded cohort simulator with ground truth
- :mod:`remnant.workflow` – the Snakemake layer: config checks, path safety, logs, the report
- :mod:`remnant.errors` – the one exception users see (names file, row/field, value, fix)

Subpackages are imported on first use, so a workflow step pays only for what it uses.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("remnant")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

SUBPACKAGES = ("io", "pp", "tl", "pl", "stats", "sim", "workflow", "errors")
__all__ = [*SUBPACKAGES, "__version__"]


def __getattr__(name: str):
    if name in SUBPACKAGES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
