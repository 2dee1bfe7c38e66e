"""Where a project stands and the one command to run next: what `status`, `next` and the dashboard
answer.

This module is on the path of commands that coding assistants call in loops, so it imports
nothing heavy: the gates' content hashes are computed by `factory.pipeline`, imported only when
they must be (see status_cache for when they need not be).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factory import atomic, envs, status_cache, witness
from factory.project import Project
from factory.state import DONE

# Codes that mean "the gate ran and said no": re-running with the same inputs gives the same no.
VERDICT_CODES = {"E_NOT_BETTER", "E_LEAKAGE"}


@dataclass
class GateView:
    name: str
    status: str               # passed | failed | stale | pending
    changed: list[str]
    record: dict

    def to_dict(self) -> dict:
        view = {"name": self.name, "status": self.status, "changed": self.changed,
                "finished_at": self.record.get("finished_at"),
                "summary": self.record.get("summary", {})}
        if self.record.get("error"):
            view["error"] = self.record["error"]
        return view


def next_action(views: list, state: str, lock: dict | None = None) -> dict:
    """The one command a driver should run now, or why there is none.

    `views` are GateViews or their dicts; `lock` is the holder of the project lock, if any.
    """
    if lock:
        return {"command": None, "gate": None,
                "reason": f"pid {lock.get('pid')} is running `factory {lock.get('command')}` "
                          f"(since {lock.get('since')}); poll `factory status` until it ends"}
    for view in (v.to_dict() if isinstance(v, GateView) else v for v in views):
        name, status = view["name"], view["status"]
        if status == "stale":
            return {"command": f"factory run {name}", "gate": name,
                    "reason": f"{name} is stale ({', '.join(view['changed'])} changed)"}
        if status == "failed":
            error = view.get("error", {})
            if error.get("code") in VERDICT_CODES:
                return {"command": None, "gate": name,
                        "reason": f"{name} said no ({error['code']}): {error.get('hint')}"}
            return {"command": f"factory run {name}", "gate": name,
                    "reason": f"{name} failed ({error.get('code')}); fix the cause "
                              f"({error.get('hint')}) and run it again"}
        if status == "pending":
            return {"command": f"factory run {name}", "gate": name,
                    "reason": f"{name} is the next gate"}
    return {"command": None, "gate": None,
            "reason": f"every gate has passed ({DONE['deploy']}); add data or change the config "
                      "to go round again"}


def gate_views(directory: str | Path) -> tuple[Project, dict, str, list[dict]]:
    """(project, state record, config name, each gate's view as a dict)."""
    project = Project.open(directory)
    answer = status_cache.lookup(project) or _computed(project)
    return project, answer["record"], answer["name"], answer["views"]


def _computed(project: Project) -> dict:
    """Views from content hashes, through the agents (this is where pydantic is imported)."""
    from factory import pipeline
    from factory.state import ProjectState

    with witness.recording(project.root) as seen:
        for always in (project.config_file, project.state_file, project.registry_file,
                       project.frozen_eval_file):
            witness.saw(always)
        ctx = pipeline.open_context(project.root)
        st = ProjectState.load(ctx.project)
        views = [v.to_dict() for v in pipeline.inspect(ctx, st)]
    seen.pop(str(project.hash_cache_file), None)  # a cache of hashes, not a source of them
    ctx.cache.save()
    answer = {"name": ctx.config.name, "views": views,
              "record": {"state": st.state, "last_error": st.record.get("last_error")}}
    status_cache.store(project, answer, seen)
    return answer


def project_status(directory: str | Path) -> tuple[dict, dict]:
    """`factory status`: (result, next step)."""
    from factory.lock import ProjectLock

    project, record, name, views = gate_views(directory)
    lock = ProjectLock(project).holder()
    result = {"project": str(project.root), "name": name, "state": record["state"],
              "gates": views, "training": training_status(project), "lock": lock,
              "last_error": record.get("last_error"), "data": data_summary(project),
              "eval": eval_summary(project)}
    return result, next_action(views, record["state"], lock)


def next_step(directory: str | Path) -> dict:
    """`factory next`: the state and the one command to run now."""
    from factory.lock import ProjectLock

    project, record, _, views = gate_views(directory)
    step = next_action(views, record["state"], ProjectLock(project).holder())
    return {"state": record["state"], **step}


def data_summary(project: Project) -> dict | None:
    """The format gate's report in one line, with where the full report lives."""
    from factory import datareport

    path = project.metrics_dir / "data-report.json"
    report = atomic.read_json(path)
    if report is None:
        return None
    return {"summary": datareport.summary_line(report), "report": project.rel(path),
            "human": "reports/data.md", "bad": report.get("bad"),
            "splits": report.get("splits")}


def eval_summary(project: Project) -> dict | None:
    """The latest verdict in one line, with links to its report and plot."""
    path = project.metrics_dir / "verdict.json"
    verdict = atomic.read_json(path)
    if verdict is None:
        return None
    summary = {"passed": verdict.get("passed"), "reason": verdict.get("reason"),
               "verdict": project.rel(path), "report": verdict.get("report"),
               "plot": verdict.get("plot"), "checkpoint_hash": verdict.get("checkpoint_hash")}
    dominance = verdict.get("dominance")
    # Only when the data names environments: otherwise there is one, and the line says it all.
    if dominance and set(verdict.get("environments") or {}) - {envs.DEFAULT}:
        summary["dominates"] = dominance.get("dominates")
        summary["worse_environments"] = dominance.get("worse", [])
    return summary


def training_status(project: Project) -> dict | None:
    """.factory/training-status.json, with `interrupted` when it says running but nobody is."""
    status = atomic.read_json(project.training_status_file)
    if status is None:
        return None
    if status.get("running"):
        from factory.lock import ProjectLock

        if not ProjectLock(project).is_held():
            status["running"] = False
            status["interrupted"] = True  # its process is gone without finishing
    plot = project.root / "reports" / "training.png"
    status["plot"] = "reports/training.png" if plot.exists() else None
    return status


