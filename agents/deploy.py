"""Deploy gate: ship the checkpoint only if its own verdict passed, and record the promotion.

The verdict names the checkpoint, eval split and baseline it judged, by content hash. Deploy hashes
what is on disk now and refuses on any difference, so a checkpoint swapped or retrained after the
verdict can never ride on someone else's approval.
"""
from __future__ import annotations

import json
import re
import shutil

from agents import base_model, model_card, push, runner
from agents.gate import GateContext, GateOutcome
from factory import registry
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path, short
from factory.state import now

name = "deploy"
PARITY_PROBES = 5
OUTPUT_PATHS = {"ollama": "ollama/Modelfile"}


def file_name(project_name: str) -> str:
    """The project's name as it may appear in a file name or an Ollama model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", project_name).strip("-.") or "model"


def inputs(ctx: GateContext) -> dict[str, str | None]:
    project = ctx.project
    found = {
        "checkpoint": hash_path(project.adapter_dir, ctx.cache),
        "verdict": hash_path(project.metrics_dir / "verdict.json", ctx.cache),
        "deploy_config": hash_json(ctx.config.deploy.model_dump()),
        "script": runner.script_hash(name),
    }
    if "hub" in ctx.config.deploy.outputs:
        found["push_script"] = runner.script_hash(push.name)
    return found


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
    book = registry.read(project)
    promotion_id = f"v{len(book['promotions']) + 1}-{verdict['checkpoint_hash'][:8]}"
    runner.write_script(ctx, name, {
        "model": base_model.script_view(ctx),
        "adapter": project.rel(project.adapter_dir),
        "eval_file": "data/splits/eval.jsonl",
        "outputs": cfg.deploy.outputs,
        "name": file_name(cfg.name),
        "gguf": cfg.deploy.gguf.model_dump(),
        "ollama": {**cfg.deploy.ollama.model_dump(),
                   "model_name": cfg.deploy.ollama.model_name or file_name(cfg.name).lower()},
        "out_dir": f"models/deployed/{promotion_id}",
        "parity_probes": PARITY_PROBES,
        "max_new_tokens": cfg.eval.max_new_tokens,
    })
    runner.execute(ctx, name)
    # Later candidates are held to this model on the same examples without re-scoring it.
    shutil.copyfile(project.metrics_dir / "eval-examples.jsonl",
                    project.deployed_dir / promotion_id / registry.EXAMPLES)

    promotion = {
        "id": promotion_id,
        "checkpoint_hash": verdict["checkpoint_hash"],
        "verdict_hash": hash_path(project.metrics_dir / "verdict.json"),
        "eval_split_hash": verdict["eval_split_hash"],
        "baseline_hash": verdict["baseline_hash"],
        "model_identity": verdict.get("model_identity"),
        "scoring": verdict.get("scoring"),
        "metrics": {m: v["candidate"] for m, v in verdict["metrics"].items() if v.get("n")},
        "outputs": {o: f"models/deployed/{promotion_id}/{OUTPUT_PATHS.get(o, o)}"
                    for o in cfg.deploy.outputs if o != "hub"},
        "promoted_at": now(),
    }
    card = model_card.write(project, project.deployed_dir / promotion_id, promotion,
                            cfg.model.name)
    promotion["outputs"]["card"] = project.rel(card)
    if "hub" in cfg.deploy.outputs:  # a failed push fails the gate before anything is promoted
        promotion["pushes"] = [push.summary(push.run_for_promotion(ctx, promotion_id))]
    book["promotions"].append(promotion)
    book["current"] = promotion_id
    registry.write(project, book)
    return GateOutcome(summary={"promotion": promotion_id, "outputs": promotion["outputs"]})


def outputs(ctx: GateContext) -> dict[str, str | None]:
    current = registry.read(ctx.project)["current"]
    return {"deployed": hash_path(ctx.project.deployed_dir / current, ctx.cache)
            if current else None}
