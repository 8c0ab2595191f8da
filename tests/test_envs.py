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
    locked = {
        line.split("==")[0].lower() for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line
    }
    extras = [r for group in ("workflow", "test") for r in project["optional-dependencies"][group]]
    missing = names(project["dependencies"] + extras) - locked
    assert not missing, f"requirements.lock lacks {sorted(missing)}: rerun uv pip compile (see bin/setup)"


def specifiers(requirements):
    """name -> version range, normalised (spaces dropped, clauses sorted): 'numpy >=1.26,<3' == 'numpy>=1.26,<3'."""
    out = {}
    for r in requirements:
        name, spec = re.match(r"\s*([\w.-]+)\s*(.*)", r).group(1, 2)
        out[name.lower()] = ",".join(sorted(c.strip() for c in spec.replace(" ", "").split(",") if c.strip()))
    return out


def test_conda_env_pins_the_same_versions_as_pyproject():
    """Same version ranges, so that conda users (--sdm conda) run what the tests ran."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {CONDA_NAME.get(n, n): spec for n, spec in specifiers(project["dependencies"]).items()}
    wanted["python"] = ",".join(sorted(project["requires-python"].split(",")))
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        listed = specifiers(d for d in yaml.safe_load(env.read_text())["dependencies"] if isinstance(d, str))
        differ = {n: (listed[n], wanted[n]) for n in wanted if n in listed and listed[n] != wanted[n]}
        assert not differ, f"{env.name}: version ranges differ from pyproject.toml (env, pyproject): {differ}"


def test_every_rule_names_an_existing_conda_env():
    """Every rule has a conda: directive (for --sdm conda), naming a file in envs/."""
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        envs = re.findall(r'^\s*conda:\s*\n\s*"([^"]+)"', text, flags=re.M)
        assert len(envs) == len(re.findall(r"^\s*rule \w+:", text, flags=re.M)) - ("rule all:" in text), (
            f"{smk.name}: a rule without a conda: environment"
        )
        for env in envs:
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: conda env {env} does not exist"
            assert (smk.parent / env).resolve().parent == ROOT / "envs", f"{smk.name}: conda env {env} outside envs/"
