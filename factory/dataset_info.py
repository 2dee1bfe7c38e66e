"""LLaMA-Factory's dataset_info.json, read as it is.

A folder under data/raw/ that holds a dataset_info.json is described by it: each entry names a file
(or a folder of files) with its `formatting` (alpaca or sharegpt), `ranking` (preference pairs),
`columns` (which column holds what) and `tags` (which role names a sharegpt file uses). Users
migrating from LLaMA-Factory drop their data folder in unchanged. Each entry becomes a file spec
with a row mapper that turns a row of that file into one of our formats, which is then validated
like any other record. Entries that point at a hub or a script are named as problems: nothing is
downloaded behind the user's back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from factory.errors import FactoryError

MANIFEST = "dataset_info.json"
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
UNSUPPORTED_COLUMNS = ("images", "videos", "audios")
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output",
                  "history": None, "system": None, "tools": None, "chosen": None,
                  "rejected": None, "kto_tag": None}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": None, "tools": None,
                    "chosen": None, "rejected": None, "kto_tag": None}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                 "assistant_tag": "gpt", "observation_tag": "observation",
                 "function_tag": "function_call", "system_tag": "system"}
# Our canonical sharegpt role for each LLaMA-Factory tag.
_ROLE_OF_TAG = {"user_tag": "human", "assistant_tag": "gpt", "observation_tag": "observation",
                "function_tag": "function_call", "system_tag": "system"}
_OPENAI_ROLE = {"human": "user", "gpt": "assistant", "observation": "tool",
                "function_call": "assistant", "system": "system"}

Mapper = Callable[[dict], dict]


@dataclass
class Entry:
    name: str
    paths: list[Path]
    format: str                 # one of factory.formats.FORMATS
    mapper: Mapper
    ignored: list[str] = field(default_factory=list)


def read_manifest(folder: Path, root: Path, wanted: list[str] | None,
                  inside: Callable[[Path], Path]) -> tuple[list[Entry], list[str]]:
    """Entries of folder/dataset_info.json, and one problem line per entry that cannot be read."""
    path = folder / MANIFEST
    rel = path.relative_to(root).as_posix()
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FactoryError("E_SCHEMA", f"{rel}: not valid JSON (line {exc.lineno}: {exc.msg})",
                           details={"file": rel}) from None
    if not isinstance(manifest, dict):
        raise FactoryError("E_SCHEMA", f"{rel}: expected an object of named datasets",
                           details={"file": rel})
    entries, problems = [], []
    for name, spec in manifest.items():
        if wanted is not None and name not in wanted:
            continue
        try:
            entries.append(_entry(name, spec, folder, inside))
        except ValueError as exc:
            if wanted is not None:  # asked for by name: not reading it is an error
                raise FactoryError("E_SCHEMA", f"{rel}: {name}: {exc}",
                                   details={"file": rel, "dataset": name}) from None
            problems.append(f"{rel}: {name}: {exc}; skipped")
    missing = sorted(set(wanted or ()) - set(manifest))
    if missing:
        raise FactoryError("E_CONFIG", f"data.datasets names {', '.join(map(repr, missing))}, "
                                       f"which {rel} does not define",
                           details={"file": rel, "field": "data.datasets"})
    return entries, problems


def _entry(name: str, spec: dict, folder: Path, inside: Callable[[Path], Path]) -> Entry:
    if not isinstance(spec, dict):
        raise ValueError("expected an object with file_name")
    if "file_name" not in spec:
        remote = [k for k in REMOTE_KEYS if k in spec]
        raise ValueError(f"{remote[0] if remote else 'no file_name'}: only local files are read;"
                         " download the data into this folder and set file_name")
    target = inside(folder / spec["file_name"])
    if not target.exists():
        raise ValueError(f"file_name {spec['file_name']!r} does not exist")
    paths = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    formatting = spec.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise ValueError(f"formatting {formatting!r}: expected 'alpaca' or 'sharegpt'")
    build = _alpaca if formatting == "alpaca" else _sharegpt
    fmt, mapper = build(spec)
    ignored = [k for k in spec.get("columns", {}) if k in UNSUPPORTED_COLUMNS]
    ignored += [k for k in ("subset", "split", "folder", "num_samples") if k in spec]
    return Entry(name, paths, fmt, mapper, ignored)


def _alpaca(spec: dict) -> tuple[str, Mapper]:
    cols = {**ALPACA_COLUMNS, **spec.get("columns", {})}
    if spec.get("ranking"):
        return "dpo", lambda row: {**_alpaca_prompt(row, cols),
                                   "chosen": row.get(cols["chosen"] or "chosen"),
                                   "rejected": row.get(cols["rejected"] or "rejected")}
    if cols["kto_tag"]:
        return "kto", lambda row: {**_alpaca_prompt(row, cols),
                                   "completion": row.get(cols["response"]),
                                   "label": row.get(cols["kto_tag"])}

    def to_alpaca(row: dict) -> dict:
        out = {"instruction": row.get(cols["prompt"], ""), "output": row.get(cols["response"])}
        for ours, key in (("input", "query"), ("system", "system"), ("history", "history")):
            if cols[key] and row.get(cols[key]) not in (None, ""):
                out[ours] = row[cols[key]]
        return out
    return "alpaca", to_alpaca


def _alpaca_prompt(row: dict, cols: dict) -> dict:
    messages = [{"role": "system", "content": row[cols["system"]]}] if (
        cols["system"] and row.get(cols["system"])) else []
    for question, answer in (row.get(cols["history"]) or []) if cols["history"] else []:
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": answer}]
    text = row.get(cols["prompt"], "")
    if cols["query"] and row.get(cols["query"]):
        text = f"{text}\n{row[cols['query']]}" if text else row[cols["query"]]
    return {"prompt": messages + [{"role": "user", "content": text}]}


def _sharegpt(spec: dict) -> tuple[str, Mapper]:
    cols = {**SHAREGPT_COLUMNS, **spec.get("columns", {})}
    tags = {**SHAREGPT_TAGS, **spec.get("tags", {})}
    roles = {tags[tag]: ours for tag, ours in _ROLE_OF_TAG.items()}

    def turns(row: dict) -> list:
        raw = row.get(cols["messages"])
        if not isinstance(raw, list):
            return raw  # let validation name the field and the type it found
        return [{"from": roles.get(t.get(tags["role_tag"]), t.get(tags["role_tag"])),
                 "value": t.get(tags["content_tag"])} if isinstance(t, dict) else t
                for t in raw]

    def extras(row: dict) -> dict:
        out = {}
        for key in ("system", "tools"):
            if cols[key] and row.get(cols[key]) not in (None, ""):
                out[key] = row[cols[key]]
        return out

    if spec.get("ranking"):
        return "dpo", lambda row: {"prompt": _openai(turns(row), extras(row)),
                                   "chosen": _value(row.get(cols["chosen"] or "chosen"), tags),
                                   "rejected": _value(row.get(cols["rejected"] or "rejected"),
                                                      tags)}
    if cols["kto_tag"]:
        def to_kto(row: dict) -> dict:
            conversation = _openai(turns(row), extras(row))
            if isinstance(conversation, list) and conversation:
                return {"prompt": conversation[:-1], "completion": conversation[-1:],
                        "label": row.get(cols["kto_tag"])}
            return {"prompt": conversation, "completion": None, "label": None}
        return "kto", to_kto
    return "sharegpt", lambda row: {"conversations": turns(row), **extras(row)}


def _openai(turns, extras: dict):
    if not isinstance(turns, list):
        return turns
    system = [{"role": "system", "content": extras["system"]}] if extras.get("system") else []
    return system + [{"role": _OPENAI_ROLE.get(t.get("from"), t.get("from")),
                      "content": t.get("value")} if isinstance(t, dict) else t for t in turns]


def _value(turn, tags: dict):
    """A ranking column holds one turn ({from, value}) or a plain string."""
    if isinstance(turn, dict):
        return turn.get(tags["content_tag"])
    return turn
