"""The last answer `factory status` and `factory next` computed, reused while its witness holds.

The answer (each gate's view, the state it was computed in, the project name) is stored in
.factory/cache/standing.json beside the stat signature of every project file it was computed from
(see witness.py) and of our own source files, since a new version may hash inputs differently.
Any difference, a file that appeared or vanished included, and the answer is computed afresh.
"""
from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

from factory import atomic, witness
from factory.project import Project

VERSION = 1
_PACKAGES = ("factory", "agents")


def path(project: Project) -> Path:
    return project.factory_dir / "cache" / "standing.json"


def lookup(project: Project) -> dict | None:
    """The stored answer if nothing it depends on has changed since, else None."""
    stored = atomic.read_json(path(project))
    if not isinstance(stored, dict):
        return None  # no answer yet, or one torn by a crash: compute afresh
    if stored.get("version") != VERSION or stored.get("root") != str(project.root):
        return None
    if not witness.unchanged(stored["witness"]) or not witness.unchanged(stored["code"]):
        return None
    return stored["answer"]


def store(project: Project, answer: dict, seen: dict) -> None:
    atomic.write_json(path(project), {"version": VERSION, "root": str(project.root),
                                      "witness": seen, "code": code_stamp(), "answer": answer})


def code_stamp() -> dict[str, list | None]:
    """Signatures of our own .py files: an upgrade or an edit invalidates every answer."""
    stamp = {}
    for package in _PACKAGES:
        spec = find_spec(package)  # finds the folder without importing the package
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for root, dirs, files in os.walk(folder):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                for name in files:
                    if name.endswith(".py"):
                        full = os.path.join(root, name)
                        stamp[full] = witness.signature(full)
    return stamp
