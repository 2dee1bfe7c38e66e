"""The small interface every gate's agent module follows.

This is a Protocol, not a base class to inherit behaviour from: each agent module reads top to
bottom on its own (inputs → validate → write script → execute → metrics → verdict), and the only
shared machinery is the script runner in agents/runner.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from factory.config import ProjectConfig
from factory.errors import FactoryError
from factory.hashing import HashCache
from factory.project import Project


@dataclass
class GateContext:
    project: Project
    config: ProjectConfig
    cache: HashCache
    say: Callable[[str], None] = lambda line: None
    lock_fd: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GateOutcome:
    """What a gate produced. `error` is set exactly when the gate did not pass."""

    summary: dict[str, Any]
    error: FactoryError | None = None

    @property
    def passed(self) -> bool:
        return self.error is None


class Gate(Protocol):
    name: str

    def inputs(self, ctx: GateContext) -> dict[str, str | None]:
        """Content hashes of everything the gate reads. Cheap: `factory status` calls it."""

    def outputs(self, ctx: GateContext) -> dict[str, str | None]:
        """Content hashes of what the gate wrote, re-checked to catch tampering."""

    def run(self, ctx: GateContext) -> GateOutcome:
        """Validate inputs, write and execute the script, read metrics, give the verdict."""
