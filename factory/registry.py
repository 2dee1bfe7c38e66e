"""The promotion registry (.factory/registry.json): every model deploy shipped, newest last.

Each promotion keeps what is needed to hold later candidates to it: the hashes its verdict was
given for, the scoring fingerprint, and (beside its outputs) its per-example eval scores.
"""
from __future__ import annotations

import json

from factory import atomic
from factory.project import Project

EXAMPLES = "eval-examples.jsonl"


def read(project: Project) -> dict:
    path = project.registry_file
    if path.exists():
        return json.loads(path.read_text())
    return {"schema": 1, "current": None, "promotions": []}


def write(project: Project, registry: dict) -> None:
    atomic.write_json(project.registry_file, registry)


def current(project: Project) -> dict | None:
    registry = read(project)
    return next((p for p in registry["promotions"] if p["id"] == registry["current"]), None)


def champion(project: Project, checkpoint_hash: str | None) -> dict | None:
    """The promotion a candidate is held to: the current one, or, when the candidate is itself
    the current one (it was judged, then deployed), the one it replaced."""
    registry = read(project)
    ids = [p["id"] for p in registry["promotions"]]
    if registry["current"] not in ids:
        return None
    for promo in reversed(registry["promotions"][: ids.index(registry["current"]) + 1]):
        if promo["checkpoint_hash"] != checkpoint_hash:
            return promo
    return None
