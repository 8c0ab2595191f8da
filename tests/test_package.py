"""The package's shape (issue 21): subpackages as scverse users know them, no import cycle, no
function over 100 lines without a reason, analysis code that names no rule, config key or results
path, and dependencies exactly those the code imports. Each check reads the source (nothing runs)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "remnant"
#: Subpackages that hold analysis code: they take data and parameters, never the workflow's names.
ANALYSIS = ("io", "pp", "tl", "pl", "stats", "sim")
MAX_LINES = 100


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, at any depth of the file (lazy imports count too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            # the deepest known module the target names (a.b.c may be module a.b's name c)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("remnant"):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {name: imported_modules(name, path, set(mods)) for name, path in mods.items()}
    # a package's __init__ is imported with any of its modules; that edge is Python's, not a design choice
    for name in graph:
        graph[name] -= {p for p in graph if name.startswith(p + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph = import_graph()
    assert "remnant.tl.lesions" in graph and graph["remnant.tl.lesions"], "the import graph was not read"
    found = cycles(graph)
    assert not found, "modules that import each other in a loop: " + "; ".join(" <-> ".join(c) for c in found)


def test_cycle_detection_sees_a_cycle():
    # the check above must be able to fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_analysis_code_does_not_import_the_workflow_layer():
    graph = import_graph()
    bad = [
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.split(".")[1:2] and m.split(".")[1] in ANALYSIS
        for t in targets
        if t.startswith("remnant.workflow")
    ]
    assert not bad, "analysis code imports the workflow layer: " + ", ".join(bad)


def long_functions() -> list[str]:
    out = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length <= MAX_LINES:
                    continue
                # the reason stands as a comment among the function's first lines (after the docstring)
                body = lines[node.lineno - 1 : node.end_lineno]
                if not any(re.match(r"\s*# long because: \S", line) for line in body[:80]):
                    out.append(f"{name}.{node.name} ({length} lines)")
    return out


def test_no_long_function_without_a_reason():
    long = long_functions()
    assert not long, f"functions over {MAX_LINES} lines without a '# long because: ...' comment: " + ", ".join(long)


def rule_names() -> set[str]:
    names = set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        names |= set(re.findall(r"^\s*rule (\w+):", path.read_text(), flags=re.M))
    return names


def config_keys() -> set[str]:
    """Dotted paths of the config's nested keys (``persistence.stem``), from the config schema."""
    schema = yaml.safe_load((ROOT / "config" / "schemas" / "config.schema.yaml").read_text())
    keys = set()

    def walk(node, prefix):
        for key, sub in (node.get("properties") or {}).items():
            path = f"{prefix}.{key}" if prefix else key
            if prefix:
                keys.add(path)
            if isinstance(sub, dict):
                walk(sub, path)

    walk(schema, "")
    return keys


def message_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings (messages, keys, paths)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def workflow_names_in_analysis_code() -> list[str]:
    rules = rule_names()
    keys = config_keys()
    rule_pattern = re.compile(r"\b(?:rerun|rule|run)\s+`?(" + "|".join(sorted(rules)) + r")\b")
    key_pattern = re.compile(
        r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)) + r")\b"
    )
    found = []
    for name, path in modules().items():
        if name.split(".")[1:2] and name.split(".")[1] not in ANALYSIS:
            continue
        for line, text in message_strings(path):
            for pattern, what in ((rule_pattern, "rule"), (key_pattern, "config key")):
                hit = pattern.search(text)
                if hit:
                    found.append(f"{path.relative_to(ROOT)}:{line} names {what} {hit.group(1)!r}")
            if re.search(r"(?<![\w/])results/", text):
                found.append(f"{path.relative_to(ROOT)}:{line} names a results/ path")
    return found


def test_analysis_code_names_no_rule_config_key_or_results_path():
    assert rule_names() >= {"call_lesions", "cluster_cells"} and "persistence.stem" in config_keys()
    found = workflow_names_in_analysis_code()
    assert not found, "analysis code names the workflow (the workflow layer adds these):\n" + "\n".join(found)


#: Declared dependencies the code does not import, each needed at run time by a library we call.
NEEDED_NOT_IMPORTED = {
    "pynndescent": "scanpy's kNN for Scrublet and large cohorts (pinned below 0.6)",
    "scikit-image": "scanpy.pp.scrublet's automatic threshold",
    "igraph": "scanpy's Leiden (flavor='igraph')",
    "leidenalg": "scanpy's Leiden",
    "harmonypy": "scanpy.external.pp.harmony_integrate",
}
#: Distribution name -> the name it is imported by.
IMPORT_NAME = {"scikit-learn": "sklearn", "scikit-image": "skimage", "pyyaml": "yaml", "infercnvpy": "infercnvpy"}


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}


def imported_third_party() -> set[str]:
    names = set()
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "remnant"}


def test_dependencies_are_those_imported():
    deps = declared()
    imports = imported_third_party()
    as_imported = {IMPORT_NAME.get(d, d): d for d in deps}
    undeclared = sorted(imports - set(as_imported))
    unused = sorted(d for name, d in as_imported.items() if name not in imports and d not in NEEDED_NOT_IMPORTED)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert not unused, f"declared in pyproject.toml but never imported (and not a run-time need): {unused}"


@pytest.mark.parametrize("sub", ["io", "pp", "tl", "pl", "stats", "sim", "workflow"])
def test_public_names_resolve(sub):
    import importlib

    package = importlib.import_module(f"remnant.{sub}")
    for name in package.__all__:
        assert callable(getattr(package, name)) or isinstance(getattr(package, name), type), f"remnant.{sub}.{name}"


def test_the_notebook_entry_points():
    import remnant as rm

    assert rm.tl.call_lesions.__module__.startswith("remnant.tl.")
    assert {"io", "pp", "tl", "pl", "stats", "sim"} <= set(dir(rm))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        rm.tl.nothing  # noqa: B018


def test_api_page_lists_every_public_name():
    import importlib

    page = (ROOT / "docs" / "api.md").read_text()
    missing = [
        f"remnant.{sub}.{name}"
        for sub in ANALYSIS
        for name in importlib.import_module(f"remnant.{sub}").__all__
        if f"`{name}`" not in page
    ]
    assert not missing, f"docs/api.md does not list: {missing}"


def test_readme_layout_names_what_exists():
    """Each row of the README's layout table: the rule, its script, its workflow step and library modules exist."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout") :].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| stage")]
    assert len(rows) >= 10, "the layout table was not found"
    rules, mods, seen_rules = rule_names(), set(modules()), set()
    for row in rows:
        stage, rule_cell, script_cell, step_cell, lib_cell = (c.strip() for c in row.strip("|").split("|"))
        for rule in re.findall(r"`(\w+)`", rule_cell):
            assert rule in rules, f"README layout, {stage}: no rule {rule}"
            seen_rules.add(rule)
        for script in re.findall(r"`([\w.]+\.py)`", script_cell):
            assert (ROOT / "scripts" / script).is_file(), f"README layout, {stage}: no scripts/{script}"
        for module in re.findall(r"`([\w.]+)`", step_cell + lib_cell):
            assert f"remnant.{module}" in mods, f"README layout, {stage}: no module remnant.{module}"
    assert seen_rules >= rules - {"all"}, (
        f"rules missing from the README layout: {sorted(rules - seen_rules - {'all'})}"
    )
