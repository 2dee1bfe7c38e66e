"""FunctionGemma function calls inside assistant text: parse, serialize, convert to/from OpenAI.

A call is written
    <start_function_call>call:NAME{key:<escape>text<escape>,n:5,o:{a:[true,null]}}<end_function_call>
and a tool result the same way between <start_function_response>response:NAME{...}
<end_function_response>. Text may hold any number of them with free text around them.

The grammar is strict (no whitespace inside a call, no trailing commas) because the parser keeps
nothing but values: that is what makes `serialize(parse(t)) == t` exact. Numbers keep their literal
text (`Number("2.50")`) for the same reason; `to_openai` turns them into int/float.

Canonical form of a segment list (what `parse` returns, and what `canonical` builds):
  * no empty free-text strings and no two free-text strings next to each other;
  * every number in arguments is a `Number` (plain int/float are accepted by `serialize` and turned
    into `Number(str(i))` / `Number(repr(f))`).
For well-formed segments, `parse(serialize(segs)) == canonical(segs)`.

Standard library only: this module is imported by the core, which must not pull in a DL stack.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

ESCAPE = "<escape>"
START = {"call": "<start_function_call>", "response": "<start_function_response>"}
END = {"call": "<end_function_call>", "response": "<end_function_response>"}
# Deep enough for any real tool schema; shallow enough that recursion can never hit Python's limit.
MAX_DEPTH = 100

# Simple character classes and fixed alternatives only: these cannot backtrack catastrophically.
_MARKER = re.compile(r"<(start|end)_function_(call|response)>")
_IDENT = re.compile(r"[A-Za-z0-9_.\-]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DIGITS = frozenset("0123456789")
_LITERALS = (("true", True), ("false", False), ("null", None))


class FunctionCallError(ValueError):
    """Text (or data) that is not a valid FunctionGemma call; `offset` points at the culprit."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"at offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason

    def __reduce__(self):
        # The default would re-create the error from the formatted message alone.
        return type(self), (self.offset, self.reason)


@dataclass(frozen=True)
class Number:
    """A numeric argument kept as its literal text, so "2.50" serializes back as "2.50".

    A dataclass rather than a str subclass so that Number("5") never equals the string "5".
    """

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not _NUMBER.fullmatch(self.text):
            raise ValueError(f"not a number literal: {self.text!r}")

    def __str__(self) -> str:
        return self.text

    @property
    def value(self) -> int | float:
        is_int = not any(c in self.text for c in ".eE")
        return int(self.text) if is_int else float(self.text)

    @classmethod
    def of(cls, value: float) -> Number:  # int is accepted too (PEP 484)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"not an int or float: {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} has no FunctionGemma literal")
        return cls(str(value) if isinstance(value, int) else repr(value))


@dataclass
class Call:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    kind: str = "call"  # "call" or "response"


Segment = str | Call


# ---------------------------------------------------------------------------------------- parsing

def parse(text: str) -> list[Segment]:
    """Split text into free text and calls, in canonical form. Raises FunctionCallError."""
    return _Parser(text).segments()


def calls(text: str) -> list[Call]:
    return [s for s in parse(text) if isinstance(s, Call) and s.kind == "call"]


def has_calls(text: str) -> bool:
    # A plain substring test so callers can skip the parser on the common no-call message.
    return START["call"] in text


# The common shape (string arguments without '<', free text without '<') in one regex, so that
# checking a dataset of well-formed calls does not pay for building every Call. Every text it
# accepts the parser accepts too; anything else goes to the parser for the precise error.
_SIMPLE_ARG = r"[A-Za-z0-9_.\-]+:<escape>[^<]*<escape>"
_SIMPLE_CALL = re.compile(r"<start_function_call>call:[A-Za-z0-9_.\-]+\{(?:%s(?:,%s)*)?\}"
                          r"<end_function_call>" % (_SIMPLE_ARG, _SIMPLE_ARG))
_SIMPLE_TEXT = re.compile(r"[^<]*(?:(?:%s)[^<]*)*" % _SIMPLE_CALL.pattern)
_SIMPLE_KEY = re.compile(r"(?:\{|<escape>,)([A-Za-z0-9_.\-]+):")


def check(text: str) -> None:
    """Raise FunctionCallError when text holds a malformed call; return quietly otherwise."""
    if _SIMPLE_TEXT.fullmatch(text):
        keys = _SIMPLE_KEY.findall(text)
        # Keys unique across the whole text are unique within each call; only a repeat needs
        # the per-call look.
        if len(set(keys)) == len(keys) or all(
                len(set(own := _SIMPLE_KEY.findall(m.group(0)))) == len(own)
                for m in _SIMPLE_CALL.finditer(text)):
            return
    parse(text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.depth = 0

    def fail(self, offset: int, reason: str) -> NoReturn:
        raise FunctionCallError(offset, reason)

    def found(self, pos: int) -> str:
        return repr(self.text[pos]) if pos < len(self.text) else "end of text"

    def segments(self) -> list[Segment]:
        out: list[Segment] = []
        pos = 0
        while (m := _MARKER.search(self.text, pos)) is not None:
            kind = m.group(2)
            if m.group(1) == "end":
                self.fail(m.start(), f"{m.group()} without a preceding {START[kind]}")
            if m.start() > pos:
                out.append(self.text[pos:m.start()])
            call, pos = self.call(m.end(), kind)
            out.append(call)
        if pos < len(self.text):
            out.append(self.text[pos:])
        return out

    def call(self, pos: int, kind: str) -> tuple[Call, int]:
        prefix = kind + ":"
        if not self.text.startswith(prefix, pos):
            self.fail(pos, f"expected '{prefix}' after {START[kind]}, found {self.found(pos)}")
        name, pos = self.ident(pos + len(prefix), "function name")
        if not self.text.startswith("{", pos):
            self.fail(pos, f"expected '{{' after function name '{name}', found {self.found(pos)}")
        arguments, pos = self.obj(pos)
        if not self.text.startswith(END[kind], pos):
            self.fail(pos, f"missing {END[kind]}, found {self.found(pos)}")
        return Call(name, arguments, kind), pos + len(END[kind])

    def ident(self, pos: int, what: str) -> tuple[str, int]:
        m = _IDENT.match(self.text, pos)
        if m is None:
            self.fail(pos, f"expected {what}, found {self.found(pos)}")
        return m.group(), m.end()

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(pos, f"nesting deeper than {MAX_DEPTH} levels")

    def obj(self, pos: int) -> tuple[dict[str, Any], int]:
        self.enter(pos)
        result: dict[str, Any] = {}
        pos += 1
        if self.text.startswith("}", pos):
            self.depth -= 1
            return result, pos + 1
        while True:
            key_at = pos
            key, pos = self.ident(pos, "key")
            if key in result:
                self.fail(key_at, f"duplicate key '{key}'")
            if not self.text.startswith(":", pos):
                self.fail(pos, f"expected ':' after key '{key}', found {self.found(pos)}")
            result[key], pos = self.value(pos + 1, f"key '{key}'")
            if self.text.startswith(",", pos):
                pos += 1
            elif self.text.startswith("}", pos):
                self.depth -= 1
                return result, pos + 1
            else:
                self.fail(pos, f"expected ',' or '}}' after value of key '{key}', "
                               f"found {self.found(pos)}")

    def array(self, pos: int) -> tuple[list[Any], int]:
        self.enter(pos)
        items: list[Any] = []
        pos += 1
        if self.text.startswith("]", pos):
            self.depth -= 1
            return items, pos + 1
        while True:
            item, pos = self.value(pos, f"array element {len(items)}")
            items.append(item)
            if self.text.startswith(",", pos):
                pos += 1
            elif self.text.startswith("]", pos):
                self.depth -= 1
                return items, pos + 1
            else:
                self.fail(pos, f"expected ',' or ']' after array element {len(items) - 1}, "
                               f"found {self.found(pos)}")

    def value(self, pos: int, where: str) -> tuple[Any, int]:
        text = self.text
        if text.startswith(ESCAPE, pos):
            return self.string(pos)
        c = text[pos:pos + 1]
        if c == "{":
            return self.obj(pos)
        if c == "[":
            return self.array(pos)
        if c == "-" or c in _DIGITS:
            return self.number(pos)
        for literal, value in _LITERALS:
            if text.startswith(literal, pos):
                return value, pos + len(literal)
        if c in ("", ",", "}", "]"):
            self.fail(pos, f"expected a value for {where}, found {self.found(pos)}")
        self.fail(pos, f"unknown value starting with {c!r} "
                       f"(strings must be wrapped in {ESCAPE}...{ESCAPE})")

    def string(self, pos: int) -> tuple[str, int]:
        start = pos + len(ESCAPE)
        # str.find runs in C, so a 100 kB string costs one scan, not a Python loop per char.
        end = self.text.find(ESCAPE, start)
        if end < 0:
            self.fail(pos, f"unterminated {ESCAPE} string")
        return self.text[start:end], end + len(ESCAPE)

    def number(self, pos: int) -> tuple[Number, int]:
        # Hand-scanned rather than matched so the error names the exact missing digit.
        start = pos
        if self.text.startswith("-", pos):
            pos = self.digits(pos + 1, "digit after '-'")
        else:
            pos = self.digits(pos, "digit")
        if self.text.startswith(".", pos):
            pos = self.digits(pos + 1, "digit after '.'")
        if self.text[pos:pos + 1] in ("e", "E"):
            pos += 1
            if self.text[pos:pos + 1] in ("+", "-"):
                pos += 1
            pos = self.digits(pos, "digit in exponent")
        return Number(self.text[start:pos]), pos

    def digits(self, pos: int, what: str) -> int:
        end = pos
        while end < len(self.text) and self.text[end] in _DIGITS:
            end += 1
        if end == pos:
            self.fail(pos, f"expected {what}, found {self.found(pos)}")
        return end


# ----------------------------------------------------------------------------------- serializing

def canonical(segments: list[Segment]) -> list[Segment]:
    """The canonical form described in the module docstring (new objects; input untouched)."""
    out: list[Segment] = []
    for seg in segments:
        if isinstance(seg, Call):
            out.append(Call(seg.name, _canonical_value(seg.arguments), seg.kind))
        elif seg == "":
            continue
        elif out and isinstance(out[-1], str) and isinstance(seg, str):
            out[-1] += seg
        else:
            out.append(seg)
    return out


def _canonical_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical_value(v) for v in value]
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if finite and not isinstance(value, bool):
        return Number.of(value)
    return value  # anything unrepresentable is left for serialize to reject with an offset


def serialize(segments: list[Segment]) -> str:
    """Render segments as text; raises FunctionCallError (offset into the output) if unrepresentable."""
    writer = _Writer()
    for seg in canonical(segments):
        if isinstance(seg, Call):
            writer.call(seg)
        elif isinstance(seg, str):
            writer.free(seg)
        else:
            writer.fail(writer.pos, f"segment must be str or Call, not {type(seg).__name__}")
    return "".join(writer.parts)


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.depth = 0

    def fail(self, offset: int, reason: str) -> NoReturn:
        raise FunctionCallError(offset, reason)

    def emit(self, text: str) -> None:
        self.parts.append(text)
        self.pos += len(text)

    def free(self, text: str) -> None:
        # Checked after merging (canonical) so two halves of a marker cannot slip through.
        m = _MARKER.search(text)
        if m is not None:
            self.fail(self.pos + m.start(), f"free text contains {m.group()}")
        self.emit(text)

    def call(self, call: Call) -> None:
        if call.kind not in START:
            self.fail(self.pos, f"unknown call kind {call.kind!r} (expected 'call' or 'response')")
        self.emit(f"{START[call.kind]}{call.kind}:")
        self.ident(call.name, "function name")
        if not isinstance(call.arguments, dict):
            self.fail(self.pos, f"arguments must be a dict, not {type(call.arguments).__name__}")
        self.obj(call.arguments)
        self.emit(END[call.kind])

    def ident(self, name: Any, what: str) -> None:
        if not isinstance(name, str) or not _IDENT.fullmatch(name):
            self.fail(self.pos, f"invalid {what} {name!r} (allowed: letters, digits, '_', '-', '.')")
        self.emit(name)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(self.pos, f"nesting deeper than {MAX_DEPTH} levels")

    def obj(self, value: dict) -> None:
        self.enter()
        self.emit("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                self.emit(",")
            self.ident(key, "key")
            self.emit(":")
            self.value(item)
        self.emit("}")
        self.depth -= 1

    def array(self, value: list) -> None:
        self.enter()
        self.emit("[")
        for i, item in enumerate(value):
            if i:
                self.emit(",")
            self.value(item)
        self.emit("]")
        self.depth -= 1

    def value(self, value: Any) -> None:
        if isinstance(value, str):
            inner = value.find(ESCAPE)
            if inner >= 0:
                self.fail(self.pos + len(ESCAPE) + inner,
                          f"string value contains {ESCAPE}, which cannot be escaped")
            self.emit(f"{ESCAPE}{value}{ESCAPE}")
        elif value is True or value is False or value is None:
            self.emit(json.dumps(value))
        elif isinstance(value, Number):
            self.emit(value.text)
        elif isinstance(value, dict):
            self.obj(value)
        elif isinstance(value, list):
            self.array(value)
        else:
            # canonical() already turned every finite int/float into a Number.
            self.fail(self.pos, f"unsupported value {value!r} of type {type(value).__name__}")


# ------------------------------------------------------------------------------- OpenAI bridging

def to_openai(call: Call, call_id: str | None = None) -> dict[str, Any]:
    """An OpenAI `tool_calls` entry; numbers become int (no '.', 'e') or float."""
    if call.kind != "call":
        raise FunctionCallError(0, f"only calls become tool_calls, not a {call.kind!r}")
    out: dict[str, Any] = {"type": "function"}
    if call_id is not None:
        out["id"] = call_id
    try:
        arguments = json.dumps(json_value(call.arguments), ensure_ascii=False, allow_nan=False)
    except ValueError as err:  # e.g. 1e400 overflows to inf, which JSON cannot carry
        raise FunctionCallError(0, f"arguments have no JSON form: {err}") from None
    out["function"] = {"name": call.name, "arguments": arguments}
    return out


def json_value(value: Any) -> Any:
    """Arguments as plain JSON values: every Number becomes its int or float."""
    if isinstance(value, Number):
        return value.value
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


def from_openai(tool_call: dict[str, Any]) -> Call:
    """A Call from `{"function": {"name", "arguments"}}` or the flat `{"name", "arguments"}`."""
    if not isinstance(tool_call, dict):
        raise FunctionCallError(0, f"tool call must be an object, not {type(tool_call).__name__}")
    if tool_call.get("type", "function") != "function":
        raise FunctionCallError(0, f"tool call type must be 'function', not {tool_call['type']!r}")
    function = tool_call.get("function", tool_call)
    if not isinstance(function, dict):
        raise FunctionCallError(0, f"'function' must be an object, not {type(function).__name__}")
    if "arguments" not in function:
        raise FunctionCallError(0, "tool call has no 'arguments'")
    arguments = function["arguments"]
    if isinstance(arguments, str):
        arguments = _load_arguments(arguments)
    if not isinstance(arguments, dict):
        raise FunctionCallError(0, f"arguments must be a JSON object, not {type(arguments).__name__}")
    call = Call(function.get("name"), _canonical_value(arguments))
    try:
        serialize([call])  # the writer already knows every rule; reuse it as the validator
    except FunctionCallError as err:
        raise FunctionCallError(0, err.reason) from None
    return call


def _load_arguments(text: str) -> Any:
    def no_constant(name: str) -> NoReturn:
        raise FunctionCallError(0, f"arguments contain {name}, which has no FunctionGemma literal")

    try:
        # Number hooks keep each literal's source text, so "2.50" stays "2.50".
        return json.loads(text, parse_int=Number, parse_float=Number, parse_constant=no_constant)
    except json.JSONDecodeError as err:
        raise FunctionCallError(0, f"arguments are not valid JSON: {err.msg} "
                                   f"(line {err.lineno} column {err.colno})") from None


def text_to_openai(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(free text with calls removed, stripped; tool_calls with ids call_0, call_1, ...).

    Function responses are not tool calls, so they stay in the free text, serialized as written.
    """
    free: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for seg in parse(text):
        if isinstance(seg, str):
            free.append(seg)
        elif seg.kind == "response":
            free.append(serialize([seg]))
        else:
            tool_calls.append(to_openai(seg, f"call_{len(tool_calls)}"))
    return "".join(free).strip(), tool_calls


def openai_to_text(content: str | None, tool_calls: list[dict[str, Any]]) -> str:
    """Content followed directly by each serialized call (no separator between them)."""
    return serialize([content or "", *(from_openai(tc) for tc in tool_calls)])
