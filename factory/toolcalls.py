"""Tool calls in a model's answer, in either style models are trained on, and how they are judged.

A model fine-tuned on FunctionGemma data answers `<start_function_call>call:f{...}
<end_function_call>`; one trained through an OpenAI-style chat template answers JSON: Hermes/Qwen
`<tool_call>{"name": .., "arguments": ..}</tool_call>` blocks, a bare `{"name", "arguments"}`
object or a list of them, or `{"tool_calls": [...]}`, possibly inside a ```json fence. Both are
read into the same `ToolCall`, so one scorer serves both and a reference in one style can be
compared with an answer in the other.

Argument values are compared as JSON values: the FunctionGemma literal 2.50 equals the JSON 2.5.

Standard library only: the core uses it to read references, the scoring script to read answers.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from factory import funcgemma


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Any  # a dict when well-formed; anything else is an argument error

    def key(self) -> tuple[str, str]:
        return self.name, json.dumps(_numbers_as_float(self.arguments), sort_keys=True)


@dataclass(frozen=True)
class Extracted:
    calls: list[ToolCall]
    style: str | None      # "functiongemma", "openai", or None when no call was found
    error: str | None = None


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def extract(text: str) -> Extracted:
    """Every call in an answer; `error` says why text that tries to call is malformed."""
    if funcgemma.has_calls(text):
        try:
            found = funcgemma.calls(text)
        except funcgemma.FunctionCallError as err:
            return Extracted([], "functiongemma", str(err))
        return Extracted([ToolCall(c.name, funcgemma.json_value(c.arguments)) for c in found],
                         "functiongemma")
    blocks = _HERMES.findall(text)
    if blocks:
        return _from_json_texts(blocks)
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    if stripped[:1] in "{[" and stripped:
        return _from_json_texts([stripped], quiet=True)
    return Extracted([], None)


def reference_calls(message: dict) -> list[ToolCall]:
    """The calls a reference assistant message makes (OpenAI tool_calls or FunctionGemma text)."""
    if message.get("tool_calls"):
        return [_openai_call(tc) for tc in message["tool_calls"]]
    content = message.get("content") or ""
    return extract(content).calls if funcgemma.has_calls(content) else []


def _from_json_texts(texts: list[str], quiet: bool = False) -> Extracted:
    calls: list[ToolCall] = []
    for text in texts:
        try:
            value = json.loads(text)
        except ValueError as err:
            return Extracted([], None if quiet else "openai", None if quiet else
                             f"a tool call is not valid JSON: {err}")
        items = value.get("tool_calls") if isinstance(value, dict) and "tool_calls" in value \
            else value
        for item in items if isinstance(items, list) else [items]:
            call = _openai_call(item)
            if call is None:
                return Extracted([], None if quiet else "openai",
                                 None if quiet else "a tool call has no function name")
            calls.append(call)
    return Extracted(calls, "openai" if calls else None)


def _openai_call(item: Any) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    function = item.get("function", item)
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    arguments = function.get("arguments", function.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass  # kept as the string: a call with invalid arguments, judged as such
    return ToolCall(function["name"], arguments)


def _numbers_as_float(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_float(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ judging

def judge(answer: str, reference: list[ToolCall], tools: list[dict] | None) -> dict[str, float]:
    """The four tool metrics of one answer against a reference that makes at least one call."""
    got = extract(answer)
    calls = got.calls if got.error is None else []
    schemas = declared(tools)
    return {
        "tool_parse": float(bool(calls)),
        "tool_name": float(bool(calls) and
                           Counter(c.name for c in calls) == Counter(c.name for c in reference)),
        "tool_args_exact": float(bool(calls) and same_calls(calls, reference)),
        "tool_args_valid": float(bool(calls) and all(
            not argument_errors(c, schemas) for c in calls)),
    }


def same_calls(got: list[ToolCall], expected: list[ToolCall]) -> bool:
    """The same calls with the same argument values, in any order."""
    return Counter(c.key() for c in got) == Counter(c.key() for c in expected)


def declared(tools: list[dict] | None) -> dict[str, dict] | None:
    """Parameter schema by function name, from OpenAI-style tool declarations (None: none given)."""
    if not tools:
        return None
    out = {}
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            out[function["name"]] = function.get("parameters") or {}
    return out


def argument_errors(call: ToolCall, schemas: dict[str, dict] | None) -> list[str]:
    """Why a call's arguments are not acceptable; empty when they are."""
    if not isinstance(call.arguments, dict):
        return [f"arguments of {call.name} are not a JSON object"]
    if schemas is None:
        return []
    if call.name not in schemas:
        return [f"{call.name} is not a declared tool"]
    return _schema_errors(call.arguments, schemas[call.name], call.name)


_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
          "array": (list,), "object": (dict,), "null": (type(None),)}


def _schema_errors(value: Any, schema: dict, path: str) -> list[str]:
    """The subset of JSON Schema tool declarations use: type, enum, properties, required,
    additionalProperties, items."""
    if not isinstance(schema, dict):
        return []
    types = schema.get("type")
    if types is not None:
        wanted = types if isinstance(types, list) else [types]
        if not any(_is_type(value, t) for t in wanted):
            return [f"{path}: expected {' or '.join(map(str, wanted))}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: not one of {schema['enum']}"]
    errors: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}.{k}: not a declared parameter" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                errors += _schema_errors(v, props[k], f"{path}.{k}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += _schema_errors(v, schema["items"], f"{path}[{i}]")
    return errors


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))
