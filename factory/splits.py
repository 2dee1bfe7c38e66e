"""Deterministic splits by content hash, and the frozen eval split.

A record's split depends only on the hash of its prompt (and the configured salt), never on file
order or on how many other records exist: adding data never moves an old record between train and
eval, and every answer to one prompt lands in the same split, so no eval question is trained on.
The eval split is frozen the first time the baseline gate runs; afterwards its content hash must not
change unless the user asks to re-freeze, which invalidates the baseline and every verdict.
"""
from __future__ import annotations

import hashlib
import json

from factory import atomic
from factory.errors import FactoryError
from factory.hashing import hash_path
from factory.project import Project
from factory.state import now


def bucket(key: str, salt: str, val_share: float, eval_share: float) -> str:
    point = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    if point < eval_share:
        return "eval"
    if point < eval_share + val_share:
        return "val"
    return "train"


def frozen(project: Project) -> dict | None:
    path = project.frozen_eval_file
    return json.loads(path.read_text()) if path.exists() else None


def check_frozen(project: Project) -> dict:
    """The freeze record, after checking the eval split on disk still matches it."""
    record = frozen(project)
    if record is None:
        raise FactoryError("E_GATE_ORDER", "the eval split is not frozen yet",
                           hint="Run `factory run baseline` first.")
    current = hash_path(project.split_file("eval"))
    if current != record["hash"]:
        raise FactoryError(
            "E_EVAL_CHANGED",
            f"data/splits/eval.jsonl no longer matches the split frozen at {record['frozen_at']}",
            details={"frozen": record["hash"], "found": current})
    return record


def freeze(project: Project, records: list[dict]) -> dict:
    path = project.split_file("eval")
    atomic.write_jsonl(path, records)
    record = {"hash": hash_path(path), "count": len(records), "frozen_at": now(),
              "ids": sorted({r["id"] for r in records}), "keys": sorted({r["key"] for r in records})}
    atomic.write_json(project.frozen_eval_file, record)
    return record


def split_names(methods: list[str]) -> dict[str, dict[str, str]]:
    """Per method of the training plan, the names of its train and val splits.

    The first method's are plain `train`/`val`, so a one-method project never sees another name;
    a chain's later methods read rows of their own shape from their own files (`train-dpo`, ...).
    """
    names = {}
    for position, method in enumerate(dict.fromkeys(methods)):
        suffix = f"-{method}" if position else ""
        names[method] = {"train": f"train{suffix}", "val": f"val{suffix}"}
    return names


def training_splits(methods: list[str]) -> list[str]:
    """Every train and val split a training plan reads, first method first."""
    return [name for names in split_names(methods).values() for name in names.values()]
