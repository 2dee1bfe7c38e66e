"""Finetune gate: train a LoRA adapter with SFT, DPO, KTO or GRPO (TRL), or a chain of them."""
from __future__ import annotations

import json

from agents import base_model, eval_scoring, runner, training_progress, training_report
from agents.gate import GateContext, GateOutcome
from factory import splits
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path

name = "finetune"


def inputs(ctx: GateContext) -> dict[str, str | None]:
    project, cfg = ctx.project, ctx.config
    uses_rewards = "grpo" in cfg.training.methods
    return {
        "model": base_model.identity(ctx),
        **{f"{split}_split": hash_path(project.split_file(split), ctx.cache)
           for split in splits.training_splits(cfg.training.methods)},
        "training_config": hash_json({"model": cfg.model.model_dump(),
                                      "lora": cfg.lora.model_dump(),
                                      "training": cfg.training.model_dump(),
                                      "rewards": [r.model_dump() for r in cfg.rewards]
                                      if uses_rewards else None}),
        # GRPO trains on the very rewards evaluation scores with: the same files, hashed alike.
        "reward_files": hash_json(eval_scoring.reward_files(ctx)) if uses_rewards else None,
        "script": runner.script_hash(name),
    }


def run(ctx: GateContext) -> GateOutcome:
    project, cfg = ctx.project, ctx.config
    precheck(ctx)
    # Checkpoints live under a folder named for these exact inputs: a resumed run can only pick up
    # a checkpoint of the same data, config and code, never one of an earlier, different run.
    run_key = hash_json(inputs(ctx))[:12]
    runner.write_script(ctx, name, {
        "model": base_model.script_view(ctx),
        "lora": cfg.lora.model_dump(),
        "training": cfg.training.model_dump(),
        "stages": stages(ctx, f"models/runs/{run_key}"),
        "rewards": [r.model_dump() for r in cfg.rewards],
        "adapter_dir": project.rel(project.adapter_dir),
        "stats_file": "metrics/training-stats.json",
    })
    with training_progress.shown(ctx, project.training_status_file):
        runner.execute(ctx, name)

    stats = json.loads((project.metrics_dir / "training-stats.json").read_text())
    plot = training_report.write(project, stats)
    return GateOutcome(
        summary={**{k: stats.get(k) for k in ("method", "backend", "total_steps", "first_loss",
                                              "final_loss", "eval_loss", "seconds",
                                              "resumed_from")},
                 "plot": project.rel(plot) if plot else None})


def stages(ctx: GateContext, run_root: str) -> list[dict]:
    """Each stage of the plan with its settings, split files and checkpoint folder."""
    names = splits.split_names(ctx.config.training.methods)
    return [{**stage,
             "method_args": method_args(ctx, stage["method"]),
             "train_file": f"data/splits/{names[stage['method']]['train']}.jsonl",
             "val_file": f"data/splits/{names[stage['method']]['val']}.jsonl",
             "run_dir": f"{run_root}/stage-{number}-{stage['method']}"}
            for number, stage in enumerate(ctx.config.training.plan(), 1)]


def outputs(ctx: GateContext) -> dict[str, str | None]:
    return {"adapter": hash_path(ctx.project.adapter_dir, ctx.cache)}


def precheck(ctx: GateContext) -> None:
    """The pre-training checklist, before any weights load: warnings are said, a failure stops."""
    from factory import checklist

    items = checklist.run(ctx.project, ctx.config)
    for item in items:
        if item.status != "pass":
            ctx.say(f"[{name}] check {item.status}: {item.name}: {item.detail}")
    failed = checklist.failed(items)
    if failed:
        raise FactoryError("E_PRECHECK", "; ".join(f"{i.name}: {i.detail}" for i in failed),
                           hint=failed[0].hint, details={"items": [i.to_dict() for i in items]})


def method_args(ctx: GateContext, method: str) -> dict:
    """The method's own settings, named as its TRL config class names them."""
    t, max_length = ctx.config.training, ctx.config.model.max_length
    if method == "sft":
        return {"max_length": max_length, "assistant_only_loss": t.assistant_only_loss,
                "packing": t.packing}
    if method == "dpo":
        return {"max_length": max_length, "beta": t.dpo.beta}
    if method == "kto":
        return {"max_length": max_length, "beta": t.kto.beta,
                "desirable_weight": t.kto.desirable_weight,
                "undesirable_weight": t.kto.undesirable_weight}
    g = t.grpo
    return {"num_generations": g.num_generations, "max_completion_length": g.max_completion_length,
            "beta": g.beta, "temperature": g.temperature}
