"""Reading raw data into validated, normalised examples, one file and one record at a time.

Each file's format is detected from its first record (or set in config: data.format for all files,
data.formats per glob), every record is validated against that format's model (the JSON Schemas in
schemas/ are generated from the same models), normalised to one example shape (factory.normalise)
and given a content id and a prompt key. Nothing is held in memory but the record at hand, so a
file of any size streams. A bad record becomes a Problem naming the file, the line (or index),
the field path, what was expected and what was found; every bad record is counted and the first
MAX_REPORTED problems are kept, so a user fixes their data in one pass.
"""
from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import ValidationError

from factory import dataset_info, formats, sources
from factory.normalise import Invalid, identify, normalise

MAX_REPORTED = 50


@dataclass
class Problem:
    file: str
    pos: int
    unit: str                  # "line" (jsonl, csv) or "index" (json array, parquet)
    field: str
    expected: str
    found: str

    def to_dict(self) -> dict:
        return {"file": self.file, self.unit: self.pos, "field": self.field,
                "expected": self.expected, "found": self.found}

    def __str__(self) -> str:
        where = f"{self.file}:{self.pos}" if self.unit == "line" else f"{self.file}[{self.pos}]"
        return f"{where}: {self.field}: expected {self.expected}, found {self.found}"


@dataclass
class ReadOptions:
    format: str = "auto"
    formats: dict[str, str] = field(default_factory=dict)   # glob under raw_dir -> format
    datasets: list[str] | None = None                       # dataset_info.json entries to use
    tool_style: str = "keep"
    min_reward: float | None = None

    @classmethod
    def from_data_config(cls, data: Any) -> "ReadOptions":
        """From the `data` config section, or its dict in a script's run config."""
        get = data.get if isinstance(data, dict) else lambda k: getattr(data, k)
        return cls(get("format"), dict(get("formats")), get("datasets"), get("tool_calls"),
                   get("min_reward"))


@dataclass
class FileSpec:
    path: Path
    format: str | None                       # None: detect from the first record
    mapper: Callable[[dict], dict] | None = None
    dataset: str | None = None


@dataclass
class FileTally:
    format: str | None
    dataset: str | None = None
    records: int = 0
    valid: int = 0
    bad: int = 0
    duplicates: int = 0
    below_min_reward: int = 0


@dataclass
class Tally:
    files: dict[str, FileTally] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    bad: int = 0

    def add_bad(self, file: str, problems: list[Problem]) -> None:
        self.bad += 1
        self.files[file].bad += 1
        room = MAX_REPORTED - len(self.problems)
        self.problems.extend(problems[:max(room, 0)])
        for problem in problems:
            self.reasons[f"{_generic(problem.field)}: expected {problem.expected}"] += 1

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.files.values())


OnBad = Callable[[str, int, object, list[Problem]], None]


def plan(raw_dir: Path, root: Path, options: ReadOptions,
         inside: Callable[[Path], Path], tally: Tally) -> list[FileSpec]:
    """Which files to read and how: dataset_info.json folders first, then every other file."""
    specs: list[FileSpec] = []
    governed: list[Path] = []
    for manifest in sorted(raw_dir.rglob(dataset_info.MANIFEST)):
        if any(part.startswith(".") for part in manifest.relative_to(raw_dir).parts):
            continue
        folder = manifest.parent
        governed.append(folder)
        entries, problems = dataset_info.read_manifest(folder, root, options.datasets, inside)
        tally.notes += problems
        for entry in entries:
            specs += [FileSpec(p, entry.format, entry.mapper, entry.name) for p in entry.paths]
            tally.notes += [f"{entry.name}: {key} is not supported and was ignored"
                            for key in entry.ignored]
    for path in sources.raw_files(raw_dir):
        if any(folder in path.parents for folder in governed):
            continue
        specs.append(FileSpec(path, _configured_format(path.relative_to(raw_dir), options)))
    return specs


def _configured_format(rel: Path, options: ReadOptions) -> str | None:
    for pattern, fmt in options.formats.items():
        if fnmatch.fnmatch(rel.as_posix(), pattern):
            return fmt
    return None if options.format == "auto" else options.format


def read(specs: list[FileSpec], root: Path, options: ReadOptions, tally: Tally,
         on_bad: OnBad | None = None) -> Iterator[dict]:
    """Every valid example of every file, with id, key and source set."""
    for spec in specs:
        rel = spec.path.relative_to(root).as_posix()
        file_tally = tally.files.setdefault(rel, FileTally(spec.format, spec.dataset))
        yield from _read_file(spec, rel, file_tally, options, tally, on_bad)


def _read_file(spec: FileSpec, rel: str, file_tally: FileTally, options: ReadOptions,
               tally: Tally, on_bad: OnBad | None) -> Iterator[dict]:
    unit = sources.unit(spec.path)
    fmt, style = spec.format, options.tool_style
    for row in sources.iter_rows(spec.path):
        file_tally.records += 1
        try:
            if fmt is None and row.error is None:
                fmt = file_tally.format = _detect(row)
            example = normalise(_validated(row, fmt, spec.mapper), fmt, style)
        except (_Bad, Invalid, ValidationError) as exc:
            problems = _problems(exc, rel, row.pos, unit, fmt)
            _name_other_format(problems, row, fmt, spec)
            tally.add_bad(rel, problems)
            if on_bad is not None:
                on_bad(rel, row.pos, _as_data(row), problems)
            continue
        file_tally.valid += 1
        example["id"], example["key"] = identify(example)
        example["source"] = f"{rel}:{row.pos}"
        yield example


def _name_other_format(problems: list[Problem], row: sources.Row, fmt: str | None,
                       spec: FileSpec) -> None:
    """A required field is missing because the record is in another format than its file:
    say so, since 'messages is required' alone sends the user looking in the wrong place."""
    missing = [p for p in problems if p.found == "nothing" and "." not in p.field]
    if not missing or spec.mapper is not None:
        return
    other = formats.detect(_as_data(row))
    if other is not None and other != fmt:
        how = "set in config" if spec.format else "detected from its first record"
        for problem in missing:
            problem.found = (f"nothing: this record looks like {other}, but the file is read as "
                             f"{fmt} ({how}); one format per file, or set data.formats")


def _problems(exc: Exception, file: str, pos: int, unit: str, fmt: str | None) -> list[Problem]:
    if isinstance(exc, ValidationError):
        return _from_pydantic(exc, file, pos, unit, fmt or "?")
    if isinstance(exc, Invalid):
        return [Problem(file, pos, unit, exc.field, exc.expected, exc.found)]
    return [Problem(file, pos, unit, *exc.args)]


class _Bad(Exception):
    """A problem found before validation: (field, expected, found)."""


def _detect(row: sources.Row) -> str:
    obj = row.obj if row.raw is None else _loads(row.raw)
    fmt = formats.detect(obj)
    if fmt is None:
        raise _Bad("(record)", formats.DETECT_HINT, _found(obj))
    return fmt


def _validated(row: sources.Row, fmt: str, mapper) -> dict:
    if row.error is not None:
        raise _Bad("(record)", "a readable record", row.error)
    if mapper is None and row.raw is not None:
        # The fast path: bytes straight into pydantic-core, no Python objects in between.
        return formats.adapter(fmt).validate_json(row.raw)
    obj = row.obj if row.raw is None else _loads(row.raw)
    if mapper is not None:
        if not isinstance(obj, dict):
            raise _Bad("(record)", "an object", _found(obj))
        obj = mapper(obj)
    return formats.adapter(fmt).validate_python(obj)


def _loads(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Bad("(record)", "a JSON record", f"invalid JSON ({exc})") from None


def _as_data(row: sources.Row) -> object:
    if row.raw is None:
        return row.obj
    try:
        return json.loads(row.raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return row.raw.decode("utf-8", errors="replace")


# --- turning pydantic's errors into problems a user can act on ----------------------------------

_UNION_LABEL = re.compile(r"^[a-z_]+\[.*\]$|^(str|int|float|bool|none|dict|list)$")


def _from_pydantic(exc: ValidationError, file: str, pos: int, unit: str,
                   fmt: str) -> list[Problem]:
    by_field: dict[str, list[dict]] = {}
    for err in exc.errors(include_url=False):
        path = [str(p) for p in err["loc"] if not _UNION_LABEL.match(str(p))]
        by_field.setdefault(".".join(path) or "(record)", []).append(err)
    # A union reports every branch; a branch that got deeper explains the error better.
    fields = [f for f in by_field
              if not any(other.startswith(f + ".") for other in by_field if other != f)]
    problems = []
    for name in fields:
        errs = by_field[name]
        expected = " or ".join(dict.fromkeys(_expected(e, fmt) for e in errs))
        problems.append(Problem(file, pos, unit, name, expected, _found_for(errs[0])))
    return problems


def _expected(err: dict, fmt: str) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return f"this required field of a {fmt} record"
    if kind == "extra_forbidden":
        return "no such field (a typo?)"
    if kind.startswith("json_"):
        return "a JSON record"
    for prefix in ("Input should be ", "Value should have ", "List should have "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _found_for(err: dict) -> str:
    if err["type"] == "missing":
        return "nothing"
    if err["type"].startswith("json_"):
        return f"invalid JSON ({err['msg'].removeprefix('Invalid JSON: ')})"
    return _found(err.get("input"))


def _found(value: object) -> str:
    # A kind and a short preview, never a long value: data can hold secrets.
    kind = type(value).__name__
    if isinstance(value, (dict, list)):
        return f"{kind} of {len(value)}"
    preview = repr(value)
    return f"{kind} {preview[:40]}{'…' if len(preview) > 40 else ''}"


def _generic(field_path: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", field_path)


def curate(examples: Iterator[dict], tally: Tally, min_reward: float | None) -> Iterator[dict]:
    """Drop exact duplicates (by content id; the first occurrence wins) and, with min_reward
    set, examples whose reward is below it. Unscored examples pass the reward filter."""
    seen: set[str] = set()
    for example in examples:
        file_tally = tally.files[example["source"].rsplit(":", 1)[0]]
        if example["id"] in seen:
            file_tally.duplicates += 1
            continue
        seen.add(example["id"])
        reward = example.get("reward")
        if min_reward is not None and reward is not None and reward < min_reward:
            file_tally.below_min_reward += 1
            continue
        yield example


def pool(raw_dir: Path, project: Any, data: Any, tally: Tally,
         on_bad: OnBad | None = None) -> Iterator[dict]:
    """Every example the data config admits: read, validated, deduplicated, reward-filtered.

    `data` is the `data` config section (the model, or its dict in a script's run config);
    `project` resolves paths named by a dataset_info.json inside the project.
    """
    options = ReadOptions.from_data_config(data)
    specs = plan(raw_dir, project.root, options, project.inside, tally)
    return curate(read(specs, project.root, options, tally, on_bad), tally, options.min_reward)
