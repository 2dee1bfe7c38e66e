"""Environments: which task an example belongs to, so a verdict can be read task by task.

A raw record names its environment in `env`, or in `task` when it has no `env` (only a string
counts: many datasets use `task` for something else, a number or an object, and that stays plain
metadata). A record without either belongs to the implicit environment, None in data files and
DEFAULT in the verdict. The environment is a label only: it never enters the content id or the
prompt key (factory.normalise.identify), so labelling existing data moves no record between
splits and a frozen eval split stays frozen.

Standard library only: the normaliser, the scoring runtime and the verdict all read it.
"""
from __future__ import annotations

DEFAULT = "default"


def of_record(record: dict) -> str | None:
    """The environment a raw record (or the metadata kept from it) names, or None."""
    value = record.get("env")
    if value is None:
        value = record.get("task")
    return (value.strip() or None) if isinstance(value, str) else None


def of_row(row: dict) -> str | None:
    """The environment of a frozen eval row or a score row, or None.

    Rows frozen before environments were carried hold the raw field only in `meta`; reading it
    there gives such projects per-environment results without re-freezing their eval split.
    """
    if row.get("env") is not None:
        return row["env"]
    meta = row.get("meta")
    return of_record(meta) if isinstance(meta, dict) else None


def name(env: str | None) -> str:
    """The key an environment has in the verdict: the implicit one is DEFAULT."""
    return DEFAULT if env is None else env


def group(env_by_id: dict[str, str], ids) -> dict[str, list[str]]:
    """The ids of each environment, environments sorted by name and ids in the order given."""
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(env_by_id.get(i, DEFAULT), []).append(i)
    return dict(sorted(groups.items()))
