"""Reading a config file, JSON or YAML, into plain data and the line each field is on.

training-config.json and factory.yaml are the same configuration in two spellings: both become the
same dict here and are validated by the same models (factory/config.py), whose JSON Schema is
schemas/training-config.schema.json. YAML is read with YAML 1.2's booleans: only true and false
are booleans, so `mixed_precision: no` stays the string "no" instead of turning into False, as
YAML 1.1 readers do. A key written twice is an error rather than a silent last-one-wins.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from factory.errors import FactoryError

YAML_SUFFIXES = (".yaml", ".yml")


def read(path: Path) -> tuple[dict, dict[tuple, int]]:
    """(the file's data, {field path: 1-based line}); lines are known for YAML only."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FactoryError("E_NOT_A_PROJECT", f"{path} does not exist") from None
    raw, lines = (_yaml(path, text) if path.suffix in YAML_SUFFIXES else (_json(path, text), {}))
    if not isinstance(raw, dict):
        raise _invalid(path, f"the top level must be a mapping of sections, not "
                             f"{type(raw).__name__}")
    raw.pop("$schema", None)
    return raw, lines


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid(path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg})") from None


def _yaml(path: Path, text: str) -> tuple[Any, dict[tuple, int]]:
    import yaml

    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise _invalid(path, f"not valid YAML ({where}{exc.problem})") from None
    if node is None:
        return {}, {}
    lines: dict[tuple, int] = {}
    _walk(path, node, (), lines)
    return _Loader(text).construct_document(node), lines


def _walk(path: Path, node: Any, at: tuple, lines: dict[tuple, int]) -> None:
    """Record where every key and item starts, refusing a key given twice."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            here = (*at, key_node.value)
            if here in lines:
                raise _invalid(path, f"{'.'.join(map(str, here))} is given twice (lines "
                                     f"{lines[here]} and {key_node.start_mark.line + 1})")
            lines[here] = key_node.start_mark.line + 1
            _walk(path, value_node, here, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*at, index)] = item.start_mark.line + 1
            _walk(path, item, (*at, index), lines)


def _invalid(path: Path, message: str) -> FactoryError:
    return FactoryError("E_CONFIG", f"{path}: {message}", details={"file": str(path),
                                                                   "errors": []})


def _loader_class():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader with YAML 1.2 booleans: yes, no, on and off are plain strings."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                 re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return Loader


class _LazyLoader:
    """The loader class, built on first use: yaml is imported only when a YAML file is read."""

    _cls = None

    def __call__(self, stream):
        if _LazyLoader._cls is None:
            _LazyLoader._cls = _loader_class()
        return _LazyLoader._cls(stream)


_Loader = _LazyLoader()
