"""Where a project stands: a `transitions` state machine persisted in .factory/state.json.

States are `new`, one "done" state per gate (baselined … deployed) and one `<gate>_failed` state
per gate. A gate may run once every gate before it has passed; running it again (for example after
its inputs changed) moves the project back to that gate, so nothing after it is claimed done.

Every transition writes state.json atomically and then appends one line to events.jsonl, so the
file a reader sees always describes something that happened, and the log holds the whole history.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from factory import atomic
from factory.errors import FactoryError
from factory.project import Project

if TYPE_CHECKING:
    from transitions import EventData

SCHEMA_VERSION = 1
GATES = ("baseline", "format", "finetune", "evaluate", "deploy")
DONE = {"baseline": "baselined", "format": "formatted", "finetune": "finetuned",
        "evaluate": "evaluated", "deploy": "deployed"}
FAILED = {gate: f"{gate}_failed" for gate in GATES}
STATES = ["new", *DONE.values(), *FAILED.values()]


def progress(state: str) -> int:
    """How many gates, counted from the first, have passed in this state."""
    if state == "new":
        return 0
    for index, gate in enumerate(GATES):
        if state == DONE[gate]:
            return index + 1
        if state == FAILED[gate]:
            return index
    raise FactoryError("E_STATE_CORRUPT", f"unknown state {state!r}")


def state_after(passed: int) -> str:
    """The state in which exactly the first `passed` gates are done."""
    return "new" if passed == 0 else DONE[GATES[passed - 1]]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _states_from(passed: int) -> list[str]:
    return [s for s in STATES if progress(s) >= passed]


class ProjectState:
    """The persisted record of a project plus the machine that guards its transitions."""

    def __init__(self, project: Project, record: dict[str, Any]):
        # Imported here: status and next read state.json without the machine, in a blink.
        from transitions import Machine

        self.project = project
        self.record = record
        self.machine = Machine(model=self, states=STATES, initial=record["state"],
                               auto_transitions=False, send_event=True,
                               after_state_change="_persist")
        for index, gate in enumerate(GATES):
            sources = _states_from(index)
            self.machine.add_transition(f"pass_{gate}", sources, DONE[gate])
            self.machine.add_transition(f"fail_{gate}", sources, FAILED[gate])
        for passed in range(len(GATES)):
            self.machine.add_transition(f"rewind_to_{passed}", _states_from(passed + 1),
                                        state_after(passed))

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, project: Project) -> "ProjectState":
        path = project.state_file
        if not path.exists():
            return cls(project, {"schema": SCHEMA_VERSION, "state": "new", "updated_at": now(),
                                 "gates": {}, "last_error": None})
        try:
            record = json.loads(path.read_text())
            progress(record["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FactoryError("E_STATE_CORRUPT", f"{path} cannot be read: {exc}") from None
        if record.get("schema") != SCHEMA_VERSION:
            raise FactoryError("E_STATE_CORRUPT",
                               f"{path} has schema {record.get('schema')!r}, this version of "
                               f"model-factory reads {SCHEMA_VERSION}")
        return cls(project, record)

    # --- queries --------------------------------------------------------------------------
    @property
    def passed(self) -> int:
        return progress(self.state)

    def gate(self, name: str) -> dict[str, Any]:
        return self.record["gates"].get(name, {})

    def can_run(self, gate: str) -> bool:
        return self.passed >= GATES.index(gate)

    def require_order(self, gate: str) -> None:
        if self.can_run(gate):
            return
        needed = GATES[self.passed]
        raise FactoryError(
            "E_GATE_ORDER",
            f"cannot run {gate}: the project is '{self.state}', so {needed} must pass first",
            hint=f"Run `factory run {needed}` (or `factory run --all`).",
            details={"gate": gate, "state": self.state, "needed": needed})

    # --- transitions ----------------------------------------------------------------------
    def record_pass(self, gate: str, *, inputs: dict, outputs: dict, summary: dict) -> None:
        self.require_order(gate)
        self.record["gates"][gate] = {"status": "passed", "inputs": inputs, "outputs": outputs,
                                      "summary": summary, "finished_at": now()}
        self.record["last_error"] = None
        self.trigger(f"pass_{gate}", gate=gate, outcome="passed", inputs=inputs)

    def record_failure(self, gate: str, error: FactoryError, *, inputs: dict,
                       outputs: dict | None = None) -> None:
        self.require_order(gate)
        self.record["gates"][gate] = {"status": "failed", "inputs": inputs,
                                      "outputs": outputs or {},
                                      "error": error.to_dict(), "finished_at": now()}
        self.record["last_error"] = {"gate": gate, **error.to_dict()}
        self.trigger(f"fail_{gate}", gate=gate, outcome="failed", inputs=inputs,
                     code=error.code)

    def rewind(self, passed: int, *, gate: str, reason: str, inputs: dict) -> None:
        """Move back so that only the first `passed` gates count as done (inputs changed)."""
        for later in GATES[passed:]:
            if later in self.record["gates"]:
                self.record["gates"][later]["status"] = "stale"
        self.trigger(f"rewind_to_{passed}", gate=gate, outcome="stale", inputs=inputs,
                     reason=reason)

    def _persist(self, event: EventData) -> None:
        self.record["state"] = self.state
        self.record["updated_at"] = now()
        atomic.write_json(self.project.state_file, self.record)
        kwargs = event.kwargs
        entry = {"at": self.record["updated_at"], "gate": kwargs.get("gate"),
                 "from": event.transition.source, "to": event.transition.dest,
                 "outcome": kwargs.get("outcome"), "inputs": kwargs.get("inputs", {}),
                 "pid": os.getpid()}
        for key in ("code", "reason"):
            if kwargs.get(key):
                entry[key] = kwargs[key]
        log_event(self.project, entry)


def log_event(project: Project, entry: dict) -> None:
    """Append one entry to events.jsonl: a transition, or something else worth the history,
    such as one run of `factory watch` (with "kind": "watch")."""
    atomic.append_line(project.events_file, json.dumps(entry, sort_keys=True))


def read_events(project: Project, limit: int | None = None) -> list[dict]:
    """Events in order; a torn last line (crash mid-append) is skipped, not fatal."""
    path = project.events_file
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events[-limit:] if limit else events
