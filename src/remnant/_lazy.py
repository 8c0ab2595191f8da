"""Public names of a subpackage, imported from their module on first use (PEP 562).

Every workflow step imports one module of the library; importing a subpackage must not pull in
all of its siblings (scanpy, PyDESeq2, matplotlib each cost seconds per job). So a subpackage's
``__init__`` lists its public names and the module that defines each, and this hands them on lazily.
"""

from __future__ import annotations

from importlib import import_module


def exports(package: str, table: dict[str, list[str]]):
    """``(__getattr__, __dir__, __all__)`` for ``package`` from ``{module: [name, ...]}``."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        if name in table:  # a module of the subpackage itself
            return import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(where) | set(table))

    return __getattr__, __dir__, sorted(where)
