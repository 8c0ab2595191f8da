"""Shared fixtures: the repository root, its schemas and the shipped annotation."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def genes():
    from remnant.annotation import load_genes

    return load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz")


@pytest.fixture(scope="session")
def cytobands():
    from remnant.annotation import load_cytobands

    return load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
