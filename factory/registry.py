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


def require_on_disk(project: Project, book: dict, promotion_id: str) -> None:
    """E_NO_PROMOTION unless `promotion_id` is in the registry and its outputs are on disk."""
    from factory.errors import FactoryError

    ids = [p["id"] for p in book["promotions"]]
    if promotion_id not in ids:
        raise FactoryError("E_NO_PROMOTION", f"no promotion named {promotion_id!r}",
                           details={"promotions": ids, "current": book["current"]})
    if not (project.deployed_dir / promotion_id).is_dir():
        raise FactoryError("E_NO_PROMOTION", f"the outputs of {promotion_id} are gone from "
                                             f"models/deployed/{promotion_id}",
                           details={"promotions": ids, "current": book["current"]})


def rollback(project: Project, target: str | None = None) -> dict:
    """Make an earlier promotion current again (default: the one before the current one).

    The next evaluate holds candidates to it. Its outputs must still be on disk; the registry keeps
    every promotion and records the rollback, so nothing is forgotten.
    """
    from factory.errors import FactoryError
    from factory.state import now

    book = read(project)
    ids = [p["id"] for p in book["promotions"]]
    if target is None:
        if book["current"] not in ids or ids.index(book["current"]) == 0:
            raise FactoryError("E_NO_PROMOTION", "there is no earlier promotion to roll back to",
                               details={"promotions": ids, "current": book["current"]})
        target = ids[ids.index(book["current"]) - 1]
    require_on_disk(project, book, target)
    book.setdefault("history", []).append({"action": "rollback", "from": book["current"],
                                           "to": target, "at": now()})
    book["current"] = target
    write(project, book)
    return next(p for p in book["promotions"] if p["id"] == target)
