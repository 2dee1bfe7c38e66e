"""Finetune gate: train a LoRA adapter with SFT, DPO, KTO or GRPO (TRL), or a chain of them."""
from __future__ import annotations

import json

from agents import base_model, eval_scoring, runner, training_progress, training_report
from agents.gate import GateContext, GateOutcome
from factory import atomic, distributed, splits, tracking
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
                                      "distributed": cfg.distributed.training_view(),
                                      "rewards": [r.model_dump() for r in cfg.rewards]
                                      if uses_rewards else None}),
        # GRPO trains on the very rewards evaluation scores with: the same files, hashed alike.
        "reward_files": hash_json(eval_scoring.reward_files(ctx)) if uses_rewards else None,
        "script": runner.script_hash(name),
    }


def run(ctx: GateContext) -> GateOutcome:
    project = ctx.project
    precheck(ctx)
    write_run_files(ctx)
    with training_progress.shown(ctx, project.training_status_file):
        runner.execute(ctx, name, argv=distributed.launch_args(ctx.config.distributed))

    stats = json.loads((project.metrics_dir / "training-stats.json").read_text())
    plot = training_report.write(project, stats)
    return GateOutcome(
        summary={**{k: stats.get(k) for k in ("method", "backend", "total_steps", "first_loss",
                                              "final_loss", "eval_loss", "seconds",
                                              "resumed_from")},
                 "processes": (stats.get("distributed") or {}).get("world_size", 1),
                 "plot": project.rel(plot) if plot else None})


def write_run_files(ctx: GateContext) -> None:
    """scripts/finetune.py and its run config, and scripts/accelerate.json when the run is
    distributed: everything a person, `factory run finetune` or a cluster job runs."""
    project, cfg = ctx.project, ctx.config
    # Checkpoints live under a folder named for these exact inputs: a resumed run can only pick up
    # a checkpoint of the same data, config and code, never one of an earlier, different run.
    run_key = hash_json(inputs(ctx))[:12]
    d = cfg.distributed
    runner.write_script(ctx, name, {
        "model": base_model.script_view(ctx),
        "lora": cfg.lora.model_dump(),
        "training": cfg.training.model_dump(),
        "distributed": {"strategy": d.strategy, "world_size": d.world_size},
        # where the trainer sends its per-step metrics (tracking.backend)
        "report_to": tracking.report_to(cfg),
        "logging_dir": f"{tracking.TENSORBOARD}/{run_key}",
        "stages": stages(ctx, f"models/runs/{run_key}"),
        "rewards": [r.model_dump() for r in cfg.rewards],
        "adapter_dir": project.rel(project.adapter_dir),
        "stats_file": "metrics/training-stats.json",
    })
    accelerate_file = project.inside(distributed.ACCELERATE_CONFIG)
    if d.enabled:
        atomic.write_json(accelerate_file, distributed.accelerate_config(cfg))
    else:
        accelerate_file.unlink(missing_ok=True)  # a stale one must not look like it applies


def cluster_job(ctx: GateContext) -> dict:
    """`factory cluster`: the run files plus scripts/finetune.sbatch, for a SLURM cluster that
    shares this project folder; nothing is trained here."""
    project = ctx.project
    write_run_files(ctx)
    sbatch = project.inside(distributed.SBATCH_FILE)
    atomic.write_text(sbatch, distributed.sbatch(ctx.config))
    sbatch.chmod(0o755)
    project.logs_dir.mkdir(parents=True, exist_ok=True)  # SLURM writes its log there
    d = ctx.config.distributed
    return {"script": distributed.SBATCH_FILE, "strategy": d.strategy,
            "nodes": d.num_machines, "processes": d.world_size,
            "accelerate_config": distributed.ACCELERATE_CONFIG if d.enabled else None,
            "launch": ["python", *distributed.cluster_launch_args(d)],
            "local_launch": ["python", *distributed.launch_args(d)],
            "submit": f"sbatch {distributed.SBATCH_FILE}"}


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
