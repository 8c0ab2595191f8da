"""envs/*.yaml stay in step with pyproject.toml (cluster users get the same stack as pip users)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI names
CONDA_NAME = {"igraph": "python-igraph", "matplotlib": "matplotlib-base"}


def names(requirements):
    return {re.split(r"[ <>=!~\[;]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def test_conda_env_lists_every_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {CONDA_NAME.get(n, n) for n in names(project["dependencies"])}
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env.read_text())["dependencies"]
        listed = names(d for d in deps if isinstance(d, str)) - {"python"}
        assert listed == wanted, f"{env.name}: missing {sorted(wanted - listed)}, extra {sorted(listed - wanted)}"


def test_lock_pins_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {line.split("==")[0].lower() for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    extras = [r for group in ("workflow", "test") for r in project["optional-dependencies"][group]]
    missing = names(project["dependencies"] + extras) - locked
    assert not missing, f"requirements.lock lacks {sorted(missing)}: rerun uv pip compile (see bin/setup)"
