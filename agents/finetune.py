"""Finetune gate: train a LoRA adapter on the train split (SFT in this version)."""
from __future__ import annotations

import json

from agents import base_model, runner
from agents.gate import GateContext, GateOutcome
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path

name = "finetune"


def inputs(ctx: GateContext) -> dict[str, str | None]:
    project, cfg = ctx.project, ctx.config
    return {
        "model": base_model.identity(ctx),
        "train_split": hash_path(project.split_file("train"), ctx.cache),
        "val_split": hash_path(project.split_file("val"), ctx.cache),
        "training_config": hash_json({"model": cfg.model.model_dump(),
                                      "lora": cfg.lora.model_dump(),
                                      "training": cfg.training.model_dump()}),
        "script": runner.script_hash(name),
    }


def run(ctx: GateContext) -> GateOutcome:
    project, cfg = ctx.project, ctx.config
    if cfg.training.method != "sft":
        raise FactoryError(
            "E_CONFIG", f"training.method {cfg.training.method!r}: the format gate prepares its "
                        "rows, but this version of the finetune gate trains sft only",
            hint="Set training.method to \"sft\" in training-config.json.",
            details={"field": "training.method"})
    # Checkpoints live under a folder named for these exact inputs: a resumed run can only pick up
    # a checkpoint of the same data, config and code, never one of an earlier, different run.
    run_key = hash_json(inputs(ctx))[:12]
    runner.write_script(ctx, name, {
        "model": base_model.script_view(ctx),
        "lora": cfg.lora.model_dump(),
        "training": cfg.training.model_dump(),
        "train_file": "data/splits/train.jsonl",
        "val_file": "data/splits/val.jsonl",
        "run_dir": f"models/runs/{run_key}",
        "adapter_dir": project.rel(project.adapter_dir),
        "stats_file": "metrics/training-stats.json",
    })
    runner.execute(ctx, name)

    stats = json.loads((project.metrics_dir / "training-stats.json").read_text())
    return GateOutcome(
        summary={k: stats.get(k) for k in ("total_steps", "first_loss", "final_loss",
                                           "eval_loss", "seconds", "resumed_from")})


def outputs(ctx: GateContext) -> dict[str, str | None]:
    return {"adapter": hash_path(ctx.project.adapter_dir, ctx.cache)}
