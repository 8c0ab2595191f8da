"""Strict YAML reading and JSON-schema validation with messages in a YAML user's words.

Shared by the workflow's config checks (:mod:`remnant.workflow.config`) and the simulator's
parameters (:mod:`remnant.sim.params`): one validator, one wording. Every problem becomes an
:class:`~remnant.errors.InputError` naming the file, the key path, the value and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from remnant.errors import InputError

__all__ = ["load_yaml", "validate_against"]


def load_yaml(path: str | Path) -> Any:
    """Read a YAML (or JSON) file strictly: a key given twice in one mapping is an error.

    YAML loaders (PyYAML's, and snakemake's for ``--configfile``) keep the last of two equal keys
    silently, so a second ``qc:`` block would replace the first. Raises :class:`InputError` naming
    the file and, for a repeated key, the key (dotted path) and both line numbers.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            # libyaml's loader where PyYAML has it: the schemas parse ~10x faster (every snakemake start)
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(handle)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                _check_duplicate_keys(node, path)
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except FileNotFoundError:
        raise InputError("file does not exist.", path=path) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start}); save it as UTF-8.", path=path) from None
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML ({' '.join(str(err).split())}); fix the syntax there.", path=path) from None


def _check_duplicate_keys(root: yaml.Node, path: Path) -> None:
    """Raise InputError for a key given twice in one mapping (outer mappings are checked first)."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, where = stack.pop()
        if id(node) in seen_nodes:  # an alias of a node already checked
            continue
        seen_nodes.add(id(node))
        children = []
        if isinstance(node, yaml.MappingNode):
            lines: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges; not a key of its own
                    continue
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
                dotted = f"{where}.{name}" if where else str(name)
                line = key.start_mark.line + 1
                if (key.tag, name) in lines:
                    raise InputError(
                        f"key {dotted!r} is given twice (line {lines[(key.tag, name)]} and line {line}); YAML keeps only "
                        "the second, which would silently replace the first: merge the two into one.",
                        path=path,
                    )
                lines[(key.tag, name)] = line
                children.append((value, dotted))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        stack.extend(reversed(children))


def _key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


#: JSON-schema types and bounds in the words of a YAML user.
_TYPES = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "number": "a number",
    "integer": "an integer",
    "string": "text",
    "boolean": "true or false",
    "null": "null",
}
_BOUNDS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "above", "exclusiveMaximum": "below"}


def _describe(error: jsonschema.ValidationError, root: str) -> str:
    key = _key_path(error.absolute_path)
    where = f"{root}.{key}" if root and key != "(top level)" else (root or key)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []
        hints = []
        for extra in extras:
            close = difflib.get_close_matches(str(extra), allowed, n=1)
            hints.append(f"{extra!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{where}: unknown key(s) {', '.join(hints)}; allowed keys: {', '.join(allowed)}."
    if error.validator == "required":
        return f"{where}: {error.message}; add it (see config/README.md)."
    if error.validator == "enum":
        choices = ", ".join("null" if v is None else repr(v) for v in error.validator_value)
        return f"{where}: {error.instance!r} is not allowed; choose one of {choices}."
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"{where}: {error.instance!r} is of the wrong type; expected {' or '.join(_TYPES.get(t, t) for t in expected)}."
    if error.validator in ("oneOf", "anyOf") and schema.get("description"):
        # say what the key accepts instead of "not valid under any of the given schemas"
        described = " ".join(str(schema["description"]).split())
        return f"{where}: {error.instance!r} is not allowed. {described.rstrip('.')}."
    if error.validator in _BOUNDS:
        return f"{where}: {error.instance!r} is out of range; it must be {_BOUNDS[error.validator]} {error.validator_value}."
    return f"{where}: {error.message}."


def _fill_defaults(instance: Any, schema: Mapping) -> None:
    """Fill ``default`` values of absent object properties, recursively (in place)."""
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance and isinstance(sub, Mapping) and (sub.get("type") == "object" or "properties" in sub):
            _fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping) and ("properties" in extra):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def validate_against(instance: Any, schema: Mapping, *, source: str | None, root: str = "") -> Any:
    """Validate ``instance`` against a JSON schema; return a copy with defaults filled.

    Raises :class:`InputError` listing every violation, one ``key: problem and what is allowed``
    each (``source``: the file it came from, None for values that did not come from a file;
    ``root``: prefix of the key paths, e.g. ``demo.params``).
    """
    instance = copy.deepcopy(instance)
    _fill_defaults(instance, schema)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_describe(e, root) for e in errors]
        raise InputError(" | ".join(dict.fromkeys(lines)), path=source)
    return instance
