"""Deploy gate: ship the checkpoint only if its own verdict passed, and record the promotion.

The verdict names the checkpoint, eval split and baseline it judged, by content hash. Deploy hashes
what is on disk now and refuses on any difference, so a checkpoint swapped or retrained after the
verdict can never ride on someone else's approval.
"""
from __future__ import annotations

import json

from agents import base_model, runner
from agents.gate import GateContext, GateOutcome
from factory import atomic
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path, short
from factory.state import now

name = "deploy"
PARITY_PROBES = 5


def inputs(ctx: GateContext) -> dict[str, str | None]:
    project = ctx.project
    return {
        "checkpoint": hash_path(project.adapter_dir, ctx.cache),
        "verdict": hash_path(project.metrics_dir / "verdict.json", ctx.cache),
        "deploy_config": hash_json(ctx.config.deploy.model_dump()),
        "script": runner.script_hash(name),
    }


def check_verdict(ctx: GateContext) -> dict:
    """The passing verdict for exactly what is on disk, or the reason there is none."""
    project = ctx.project
    path = project.metrics_dir / "verdict.json"
    if not path.exists():
        raise FactoryError("E_NO_VERDICT", "no verdict exists: nothing has been evaluated yet")
    verdict = json.loads(path.read_text())
    current = {"checkpoint_hash": hash_path(project.adapter_dir, ctx.cache),
               "eval_split_hash": hash_path(project.split_file("eval"), ctx.cache),
               "baseline_hash": hash_path(project.metrics_dir / "baseline-examples.jsonl",
                                          ctx.cache)}
    changed = [k.removesuffix("_hash") for k, v in current.items() if verdict.get(k) != v]
    if changed:
        raise FactoryError(
            "E_VERDICT_STALE",
            f"the verdict was given for a different {', '.join(changed)} "
            f"(checkpoint judged {short(verdict.get('checkpoint_hash'))}, on disk "
            f"{short(current['checkpoint_hash'])})",
            details={"changed": changed, "verdict": verdict.get("checkpoint_hash"),
                     "current": current})
    if not verdict.get("passed"):
        raise FactoryError("E_NOT_BETTER", f"the verdict for this checkpoint failed: "
                                           f"{verdict.get('reason')}")
    return verdict


def run(ctx: GateContext) -> GateOutcome:
    project, cfg = ctx.project, ctx.config
    verdict = check_verdict(ctx)
    registry = read_registry(project)
    promotion_id = f"v{len(registry['promotions']) + 1}-{verdict['checkpoint_hash'][:8]}"
    runner.write_script(ctx, name, {
        "model": base_model.script_view(ctx),
        "adapter": project.rel(project.adapter_dir),
        "eval_file": "data/splits/eval.jsonl",
        "outputs": cfg.deploy.outputs,
        "out_dir": f"models/deployed/{promotion_id}",
        "parity_probes": PARITY_PROBES,
        "max_new_tokens": cfg.eval.max_new_tokens,
    })
    runner.execute(ctx, name)

    promotion = {
        "id": promotion_id,
        "checkpoint_hash": verdict["checkpoint_hash"],
        "verdict_hash": hash_path(project.metrics_dir / "verdict.json"),
        "eval_split_hash": verdict["eval_split_hash"],
        "baseline_hash": verdict["baseline_hash"],
        "metrics": {m: v["candidate"] for m, v in verdict["metrics"].items()},
        "outputs": {o: f"models/deployed/{promotion_id}/{o}" for o in cfg.deploy.outputs},
        "promoted_at": now(),
    }
    registry["promotions"].append(promotion)
    registry["current"] = promotion_id
    atomic.write_json(project.registry_file, registry)
    return GateOutcome(summary={"promotion": promotion_id, "outputs": promotion["outputs"]})


def outputs(ctx: GateContext) -> dict[str, str | None]:
    current = read_registry(ctx.project)["current"]
    return {"deployed": hash_path(ctx.project.deployed_dir / current, ctx.cache)
            if current else None}


def read_registry(project) -> dict:
    path = project.registry_file
    if path.exists():
        return json.loads(path.read_text())
    return {"schema": 1, "current": None, "promotions": []}
