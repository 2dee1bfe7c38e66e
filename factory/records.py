"""Reading raw data files into validated, normalised conversation records.

Each record is checked against the JSON Schema of its format (schemas/*.schema.json) and then
normalised to one internal shape: {"id", "messages", "source", "meta"}. A problem is reported as a
record naming the file, the line, the field path, what was expected and what was found, and every
problem is collected (up to a cap) so a user fixes their data in one pass, not one error per run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Iterator

from factory.hashing import hash_json

SUFFIXES = (".jsonl", ".json")
MAX_REPORTED = 50
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant",
                  "function_call": "assistant", "observation": "tool"}


@dataclass
class Problem:
    file: str
    line: int
    field: str
    expected: str
    found: str

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "field": self.field,
                "expected": self.expected, "found": self.found}

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: expected {self.expected}, found {self.found}"


@dataclass
class ReadResult:
    records: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    bad_count: int = 0
    duplicates: int = 0
    files: list[str] = field(default_factory=list)


@lru_cache(maxsize=None)
def _validator(fmt: str):
    import jsonschema  # imported here: only gates that read data pay for it

    schema = json.loads(files("schemas").joinpath(f"{fmt}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def detect_format(obj: object) -> str | None:
    if isinstance(obj, dict):
        if "messages" in obj:
            return "messages"
        if "conversations" in obj:
            return "sharegpt"
    return None


def raw_files(raw_dir: Path) -> list[Path]:
    return sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.suffix in SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(raw_dir).parts))


def iter_objects(path: Path) -> Iterator[tuple[int, object | None, str | None]]:
    """Yield (line or index, object, parse error) without loading a .jsonl file whole."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line), None
                except json.JSONDecodeError as exc:
                    yield number, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        yield exc.lineno, None, f"invalid JSON ({exc.msg})"
        return
    if not isinstance(data, list):
        yield 1, None, "a JSON array of records"
        return
    for index, obj in enumerate(data):
        yield index, obj, None


def validate(obj: object, fmt: str, where: tuple[str, int]) -> list[Problem]:
    problems = []
    for err in sorted(_validator(fmt).iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in err.absolute_path) or "(record)"
        problems.append(Problem(where[0], where[1], path, _expected(err), _found(err.instance)))
    if not problems:
        problems = _semantic_problems(normalise(obj, fmt), where)
    return problems


def _expected(err) -> str:
    if err.validator == "required":
        return f"required field {err.message.split(' ')[0]}"
    if err.validator == "enum":
        return "one of " + ", ".join(repr(v) for v in err.validator_value)
    if err.validator == "type":
        return f"type {err.validator_value}"
    if err.validator == "minItems":
        return f"at least {err.validator_value} item(s)"
    return err.message


def _found(value: object) -> str:
    # Show the kind and a short preview, never a long value: data can hold secrets.
    kind = type(value).__name__
    if isinstance(value, (dict, list)):
        return f"{kind} of {len(value)}"
    preview = repr(value)
    return f"{kind} {preview[:40]}{'…' if len(preview) > 40 else ''}"


def _semantic_problems(record: dict, where: tuple[str, int]) -> list[Problem]:
    roles = [m["role"] for m in record["messages"]]
    if "assistant" not in roles:
        return [Problem(where[0], where[1], "messages", "at least one assistant turn",
                        "roles " + ", ".join(roles))]
    if roles[-1] != "assistant":
        return [Problem(where[0], where[1], f"messages.{len(roles) - 1}.role",
                        "the conversation to end with an assistant turn", repr(roles[-1]))]
    return []


def normalise(obj: dict, fmt: str) -> dict:
    if fmt == "sharegpt":
        messages = [{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]}
                    for t in obj["conversations"]]
        if obj.get("system") and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": obj["system"]})
        meta = {k: v for k, v in obj.items() if k not in ("conversations", "system")}
    else:
        messages = [{k: v for k, v in m.items() if v is not None} for m in obj["messages"]]
        meta = {k: v for k, v in obj.items() if k != "messages"}
    for message in messages:
        message.setdefault("content", "")
    return {"id": record_id(messages), "messages": messages, "meta": meta}


def record_id(messages: list[dict]) -> str:
    """Content hash of the conversation; metadata and formatting never change it."""
    return hash_json(messages)[:16]


def read_raw(raw_dir: Path, root: Path, fmt: str = "auto", skip_bad: bool = False) -> ReadResult:
    """Read every raw file; bad records become problems (and rejects when skipping)."""
    result = ReadResult()
    seen: set[str] = set()
    for path in raw_files(raw_dir):
        rel = path.relative_to(root).as_posix()
        result.files.append(rel)
        for line, obj, parse_error in iter_objects(path):
            problems = _check(obj, fmt, parse_error, (rel, line))
            if problems:
                _note_bad(result, problems, obj, skip_bad)
                continue
            record = normalise(obj, fmt if fmt != "auto" else detect_format(obj))
            if record["id"] in seen:
                result.duplicates += 1
                continue
            seen.add(record["id"])
            record["source"] = f"{rel}:{line}"
            result.records.append(record)
    return result


def _check(obj, fmt: str, parse_error: str | None, where: tuple[str, int]) -> list[Problem]:
    if parse_error:
        return [Problem(where[0], where[1], "(line)", "a JSON record", parse_error)]
    actual = fmt if fmt != "auto" else detect_format(obj)
    if actual is None:
        return [Problem(where[0], where[1], "(record)",
                        "an object with `messages` or `conversations`", _found(obj))]
    return validate(obj, actual, where)


def _note_bad(result: ReadResult, problems: list[Problem], obj, skip_bad: bool) -> None:
    result.bad_count += 1
    if len(result.problems) < MAX_REPORTED:
        result.problems.extend(problems[: MAX_REPORTED - len(result.problems)])
    if skip_bad:
        result.rejected.append({"record": obj, "problems": [p.to_dict() for p in problems]})
