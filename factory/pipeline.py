"""Running gates in order, deciding what is stale, and saying what comes next.

A passed gate stays valid while the content hashes of its inputs and outputs equal those recorded
when it passed. The first gate whose hashes differ makes itself and every later gate stale, and the
project moves back to just before it. A gate asked to run whose inputs and outputs are unchanged is
skipped ("up to date"), as DVC does; --force runs it anyway.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from agents import baseline, deploy, evaluate, finetune
from agents import format as format_gate
from agents.gate import GateContext
from factory import tracking
from factory.config import load_config
from factory.errors import FactoryError
from factory.hashing import HashCache
from factory.lock import ProjectLock
from factory.project import Project
from factory.standing import VERDICT_CODES, GateView, next_action  # noqa: F401  (re-exported)
from factory.state import FAILED, GATES, ProjectState

AGENTS = {"baseline": baseline, "format": format_gate, "finetune": finetune,
          "evaluate": evaluate, "deploy": deploy}


def open_context(directory: str | Path, say: Callable[[str], None] = lambda s: None,
                 **options) -> GateContext:
    project = Project.open(directory)
    config = load_config(project.config_file)
    return GateContext(project, config, HashCache(project.hash_cache_file), say,
                       options=options)


def changes(ctx: GateContext, gate: str, record: dict) -> list[str]:
    """Names of the inputs and outputs whose hashes differ from the gate's record."""
    agent = AGENTS[gate]
    current = {**agent.inputs(ctx), **{f"out:{k}": v for k, v in agent.outputs(ctx).items()}}
    recorded = {**record.get("inputs", {}),
                **{f"out:{k}": v for k, v in record.get("outputs", {}).items()}}
    return sorted(k for k in current.keys() | recorded.keys() if current.get(k) != recorded.get(k))


def inspect(ctx: GateContext, st: ProjectState) -> list[GateView]:
    """Each gate's standing, read-only (status calls this without taking the lock)."""
    views, stale_from = [], None
    for index, gate in enumerate(GATES):
        record = st.gate(gate)
        if index < st.passed and stale_from is None:
            changed = changes(ctx, gate, record)
            if changed:
                stale_from = index
            views.append(GateView(gate, "stale" if changed else "passed", changed, record))
        elif stale_from is not None and index < st.passed:
            views.append(GateView(gate, "stale", ["upstream"], record))
        elif st.state == FAILED[gate]:
            views.append(GateView(gate, "failed", [], record))
        elif record.get("status") == "stale":  # moved back by an earlier reconcile
            views.append(GateView(gate, "stale", changes(ctx, gate, record) or ["upstream"],
                                  record))
        else:
            views.append(GateView(gate, "pending", [], record))
    return views


def reconcile(ctx: GateContext, st: ProjectState) -> None:
    """Move the project back to just before the first passed gate that changed."""
    for index, gate in enumerate(GATES[: st.passed]):
        changed = changes(ctx, gate, st.gate(gate))
        if changed:
            ctx.say(f"[{gate}] stale: changed {', '.join(changed)}")
            st.rewind(index, gate=gate, reason="changed: " + ", ".join(changed),
                      inputs=AGENTS[gate].inputs(ctx))
            return


def run_gate(ctx: GateContext, st: ProjectState, gate: str, force: bool = False) -> dict:
    agent = AGENTS[gate]
    if not st.can_run(gate):
        if gate == "deploy":
            deploy.check_verdict(ctx)  # the precise refusal: no, stale or failing verdict
        st.require_order(gate)
    record = st.gate(gate)
    if not force and record.get("status") in ("passed", "stale") and not changes(ctx, gate, record):
        st.record_pass(gate, inputs=record["inputs"], outputs=record["outputs"],
                       summary=record.get("summary", {}))
        ctx.say(f"[{gate}] up to date, skipped (use --force to run it anyway)")
        return {"gate": gate, "outcome": "skipped", "summary": record.get("summary", {})}
    if (not force and st.state == FAILED[gate] and record.get("error", {}).get("code")
            in VERDICT_CODES and not changes(ctx, gate, record)):
        raise FactoryError(**record["error"])  # same inputs, same verdict: don't re-run
    ctx.say(f"[{gate}] starting")
    outcome = _tracked_run(ctx, st, gate)
    inputs = agent.inputs(ctx)
    if outcome.error is not None:
        st.record_failure(gate, outcome.error, inputs=inputs, outputs=agent.outputs(ctx))
        raise outcome.error
    st.record_pass(gate, inputs=inputs, outputs=agent.outputs(ctx), summary=outcome.summary)
    ctx.say(f"[{gate}] passed")
    return {"gate": gate, "outcome": "passed", "summary": outcome.summary}


def _tracked_run(ctx: GateContext, st: ProjectState, gate: str):
    """The agent's run, logged as one tracking run when `tracking` is on; the gate's script
    gets the run's id in its environment, so the trainer reports into the same run."""
    with tracking.gate_run(ctx.project, ctx.config, gate) as tracked:
        ctx.options["script_env"] = tracked.env if tracked else {}
        try:
            outcome = _run_agent(ctx, st, gate)
        except (FactoryError, KeyboardInterrupt) as stop:
            if tracked:
                tracked.finish(ctx.project, gate, "failed", {},
                               stop if isinstance(stop, FactoryError) else None,
                               AGENTS[gate].inputs(ctx))
            raise
        if tracked:
            tracked.finish(ctx.project, gate, "failed" if outcome.error else "passed",
                           outcome.summary, outcome.error, AGENTS[gate].inputs(ctx))
    return outcome


def _run_agent(ctx: GateContext, st: ProjectState, gate: str):
    """The agent's run; a failure or an interrupt is recorded before it goes on up."""
    agent = AGENTS[gate]
    try:
        return agent.run(ctx)
    except FactoryError as error:
        st.record_failure(gate, error, inputs=agent.inputs(ctx))
        raise
    except KeyboardInterrupt:
        # Ctrl-C, or a second signal to `factory watch`: the runner has stopped the script, so
        # the gate is recorded as failed, never as passed; running it again starts it over
        # (training resumes from its last complete checkpoint).
        st.record_failure(gate, FactoryError(
            "E_INTERRUPTED", f"{gate} was interrupted before it finished"),
            inputs=agent.inputs(ctx))
        raise


class Interrupted(KeyboardInterrupt):
    """A run stopped by KeyboardInterrupt, carrying the gates it completed before that.

    It is still a KeyboardInterrupt, so `factory run` reports it as E_INTERRUPTED as before.
    """

    def __init__(self, completed: list[dict]):
        super().__init__()
        self.completed = completed


def todo(st: ProjectState, gates: list[str] | None, until: str | None) -> list[str]:
    """The named gates, or every gate from the first not done up to `until` (all by default)."""
    if gates is not None:
        return list(gates)
    end = GATES.index(until) + 1 if until else len(GATES)
    return list(GATES[st.passed:end])


def run(ctx: GateContext, gates: list[str] | None, force: bool = False, *,
        until: str | None = None,
        should_stop: Callable[[str], bool] | None = None) -> list[dict]:
    """Run the named gates, or with None every gate from the first not done, under the lock.

    The list is drawn after reconciling, so with `until` a gate that has just turned stale is
    run again. `should_stop(gate)` is asked before each gate starts; True ends the run there,
    so a stop request lets the running gate finish and claims nothing that did not run.
    """
    with ProjectLock(ctx.project) as lock:
        ctx.lock_fd = lock.fd
        st = ProjectState.load(ctx.project)
        reconcile(ctx, st)
        results: list[dict] = []
        try:
            for gate in todo(st, gates, until):
                if should_stop is not None and should_stop(gate):
                    break
                results.append(run_gate(ctx, st, gate, force=force))
        except FactoryError as error:
            error.details.setdefault("completed", results)
            raise
        except KeyboardInterrupt:
            raise Interrupted(results) from None
        finally:
            ctx.cache.save()
        return results


def cluster_job(ctx: GateContext) -> dict:
    """`factory cluster`: the finetune gate's run files and a SLURM job for them, written under
    the lock once format has passed and is up to date; the job's run is recorded afterwards by
    `factory run finetune`, which finds its finished stages."""
    with ProjectLock(ctx.project):
        st = ProjectState.load(ctx.project)
        reconcile(ctx, st)
        st.require_order("finetune")
        try:
            return finetune.cluster_job(ctx)
        finally:
            ctx.cache.save()
