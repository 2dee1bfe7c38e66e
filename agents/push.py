"""`factory push`, and deploy's "hub" output: upload a promotion to the Hugging Face Hub.

The upload runs as scripts/push.py in a fresh process, like every gate's work, so huggingface_hub
reads HF_ENDPOINT and the token from that process's environment: the token never passes through
this module, the run config or any file. A dry run computes the very same plan in-process, with
no network call and no torch import.
"""
from __future__ import annotations

import json

from agents import base_model, runner
from agents.gate import GateContext
from factory import registry
from factory.config import HubConfig, ProjectConfig
from factory.errors import FactoryError
from factory.project import Project

name = "push"


def hub_settings(config: ProjectConfig) -> HubConfig:
    hub = config.deploy.hub
    if hub.repo_id is None:
        raise FactoryError("E_CONFIG", "deploy.hub.repo_id is not set, so there is no Hub "
                                       "repository to push to",
                           hint="Set deploy.hub.repo_id to \"owner/name\" in "
                                "training-config.json, then `factory push --dry-run`.",
                           details={"field": "deploy.hub.repo_id"})
    return hub


def resolve_promotion(project: Project, promotion_id: str | None) -> str:
    """The promotion to push: the one named, or the current one; its outputs must exist."""
    book = registry.read(project)
    wanted = promotion_id or book["current"]
    if wanted is None:
        raise FactoryError("E_NO_PROMOTION", "nothing has been promoted yet, so there is "
                                             "nothing to push",
                           hint="Run `factory run deploy` (it promotes a model whose verdict "
                                "passed), then `factory push`.")
    registry.require_on_disk(project, book, wanted)
    return wanted


def run_config(ctx: GateContext, promotion_id: str) -> dict:
    """scripts/push.json: data only, read by the script at run time (never a token)."""
    hub = hub_settings(ctx.config)
    return {"promotion": promotion_id, "deployed_dir": f"models/deployed/{promotion_id}",
            "repo_id": hub.repo_id, "revision": hub.revision, "private": hub.private,
            "push": list(hub.push), "verify": hub.verify, "record": record_path(promotion_id),
            "model": base_model.script_view(ctx)}


def dry_run(ctx: GateContext, promotion_id: str) -> dict:
    """The exact upload plan, computed here without importing torch or touching the network."""
    from factory.runtime import hub
    from factory.runtime.report import ScriptError

    cfg = run_config(ctx, promotion_id)
    try:
        plan = hub.plan(ctx.project.root / cfg["deployed_dir"], cfg["push"], cfg["repo_id"],
                        cfg["revision"], cfg["private"], root=ctx.project.root)
    except ScriptError as error:
        raise FactoryError(error.code, error.message, hint=error.hint,
                           details=error.details) from None
    return {"promotion": promotion_id, "dry_run": True, **plan}


def record_path(promotion_id: str) -> str:
    # Outside models/deployed/<id>/: deploy's outputs are hashed, and a push changes no output.
    return f".factory/pushes/{promotion_id}.json"


def run_for_promotion(ctx: GateContext, promotion_id: str) -> dict:
    """Write scripts/push.py and its config, run it, and return the push record it wrote
    (.factory/pushes/<id>.json). The caller holds the project lock."""
    runner.write_script(ctx, name, run_config(ctx, promotion_id))
    runner.execute(ctx, name)
    return json.loads((ctx.project.root / record_path(promotion_id)).read_text())


def summary(record: dict) -> dict:
    """What the registry keeps about a push: where it went and whether it was checked."""
    return {k: record.get(k) for k in ("repo_id", "revision", "commit", "url", "verified",
                                       "pushed_at")}


def remember(project: Project, promotion_id: str, record: dict) -> None:
    """Note the push on its promotion in the registry (a standalone `factory push`)."""
    book = registry.read(project)
    for promotion in book["promotions"]:
        if promotion["id"] == promotion_id:
            promotion.setdefault("pushes", []).append(summary(record))
    registry.write(project, book)
