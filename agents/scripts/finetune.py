"""Fine-tune the base model with LoRA/QLoRA: SFT, DPO, KTO, GRPO or a chain of them.

Re-run by hand from the project directory (the factory runs exactly this):

    python scripts/finetune.py --config scripts/finetune.json

or, when training-config.json sets distributed.strategy (ddp, deepspeed, fsdp), under accelerate
with the config the factory wrote beside it (`factory cluster` writes the SLURM job for it):

    accelerate launch --config_file scripts/accelerate.json scripts/finetune.py \
        --config scripts/finetune.json

Every value comes from scripts/finetune.json, which the factory derives from training-config.json;
edit training-config.json and run `factory run finetune` rather than editing either file here.

What it does, in order:
  1. picks device, precision and backend, and prints which it picked: Unsloth
     (FastLanguageModel) when a CUDA GPU is present and the package imports (training.backend
     "auto"), otherwise transformers + PEFT; with lora.load_in_4bit on CUDA the base model is
     loaded in 4-bit NF4 (QLoRA, bitsandbytes);
  2. runs each stage of the plan in order: one stage of training.method, or a chain declared
     in training.stages such as sft -> dpo -> grpo. Per stage:
       a. loads the base model, and the adapter the previous stage left, trainable: the stage
          trains on from it, and DPO/KTO take a frozen copy of it as their reference model;
       b. reads the stage's split files and refuses any record longer than model.max_length
          instead of silently truncating it;
       c. trains with the method's TRL trainer, checkpointing every `save_steps` and resuming
          from the newest complete checkpoint of this exact stage:
            sft   SFTTrainer on conversations, loss on assistant tokens only;
            dpo   DPOTrainer on prompt/chosen/rejected;
            kto   KTOTrainer on prompt/completion/label, desirable/undesirable weights;
            grpo  GRPOTrainer: samples num_generations completions per prompt and scores them
                  with the project's rewards (factory.rewards, each called once on a dummy
                  batch first);
       d. saves the stage's adapter in one atomic step; a finished stage is kept, not trained
          again, when an interrupted run is resumed;
  Under a launcher every process trains its share of each batch; only the first (rank 0)
  prints, writes the status file and saves, and the others wait for it before reading a saved
  adapter.
  3. copies the last stage's adapter to models/checkpoints/lora/ in one atomic step, and writes
     the run's figures to metrics/training-stats.json.

Raises (as .factory/logs/finetune.error.json): E_MODEL_LOAD, E_BACKEND, E_TOO_LONG, E_REWARD
(a reward fails its dry run, or during training), E_NAN_LOSS (loss NaN or diverging), E_OOM
(out of memory).
"""
import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from factory.runtime.report import ScriptError, fail, load_config, project_root

COMPLETE_CHECKPOINT = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
# Per method: its TRL config and trainer, and the columns of a split row it reads.
METHODS = {
    "sft": ("SFTConfig", "SFTTrainer", ("messages",)),
    "dpo": ("DPOConfig", "DPOTrainer", ("prompt", "chosen", "rejected")),
    "kto": ("KTOConfig", "KTOTrainer", ("prompt", "completion", "label")),
    # GRPO passes extra columns to the rewards; the id finds the row's tools and tests.
    "grpo": ("GRPOConfig", "GRPOTrainer", ("prompt", "answer", "id")),
}
# Set by torch.distributed.run (under `accelerate launch`) in each process; one process alone is 0.
RANK = int(os.environ.get("RANK", "0"))
# What "all-linear" means for Unsloth, which wants module names.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def say(line: str) -> None:
    if RANK == 0:
        print(line, flush=True)


def main(config_path: str) -> int:
    cfg = load_config(config_path)
    root = project_root(config_path)
    try:
        train(cfg, root)
    except ScriptError as error:
        return fail(root, "finetune", error)
    return 0


def train(cfg: dict, root: Path) -> None:
    import torch

    from factory.runtime import models

    # 1. Hardware, precision and backend.
    on_gpu = torch.cuda.is_available()
    processes = cfg["distributed"]["world_size"]
    backend = pick_backend(cfg["training"]["backend"], on_gpu, processes)
    quantized = cfg["lora"]["load_in_4bit"] and on_gpu
    say(f"device: {'cuda' if on_gpu else 'cpu'}, processes: {processes}, "
        f"dtype: {models.pick_dtype(cfg['model']['dtype'])}, backend: {backend}, "
        f"quantization: {'4-bit NF4 (QLoRA)' if quantized else 'none'}")
    if cfg["lora"]["load_in_4bit"] and not on_gpu:
        say("lora.load_in_4bit is set, but 4-bit loading needs a CUDA GPU: training "
            "unquantized")

    # 2. The stages, each from the adapter the one before it left.
    started = time.monotonic()
    previous, results = None, []
    for number, stage in enumerate(cfg["stages"], 1):
        stage_dir = root / stage["run_dir"]
        say(f"stage {number}/{len(cfg['stages'])}: {stage['method']}")
        if (stage_dir / "stats.json").exists() and (stage_dir / "adapter").is_dir():
            say("  finished by an earlier run; its adapter is kept")
            results.append(json.loads((stage_dir / "stats.json").read_text()))
        else:
            results.append(train_stage(cfg, stage, number, root, backend, quantized, previous))
        previous = stage_dir / "adapter"

    # 3. The last stage's adapter is the result.
    if RANK == 0:
        publish(previous, root / cfg["adapter_dir"])
        write_stats(cfg, root, results, backend, quantized, started)


def pick_backend(requested: str, on_gpu: bool, processes: int) -> str:
    if requested == "transformers":
        return "transformers"
    reason = None if on_gpu else "there is no CUDA GPU"
    if on_gpu and processes > 1:
        reason = f"Unsloth trains in one process and this run has {processes}"
    if reason is None:
        try:
            import unsloth  # noqa: F401  (imported before trl and transformers, to patch them)
        except Exception as exc:  # ImportError, or its own errors on an unsupported setup
            reason = f"unsloth does not import ({type(exc).__name__}: {exc})"
    if reason is None:
        return "unsloth"
    if requested == "unsloth":
        raise ScriptError("E_BACKEND", f"training.backend is unsloth, but {reason}")
    return "transformers"


def train_stage(cfg: dict, stage: dict, number: int, root: Path, backend: str,
                quantized: bool, previous: Path | None) -> dict:
    import torch
    import trl
    from datasets import Dataset

    from factory import atomic
    from factory.runtime import models
    from factory.runtime.status import TrainingStatus

    # a. The model to train: fresh LoRA on the base, or the previous stage's adapter.
    model, tokenizer, peft_config = load_model(cfg, root, backend, quantized, previous)

    # b. Data: the splits the format gate wrote for this method, checked against max_length.
    method, t = stage["method"], cfg["training"]
    config_class, trainer_class, columns = METHODS[method]
    train_rows = read_split(root / stage["train_file"])
    val_rows = read_split(root / stage["val_file"])
    check_lengths(tokenizer, train_rows + val_rows, cfg["model"]["max_length"], method)
    train_set = Dataset.from_list([{c: r.get(c) for c in columns} for r in train_rows])
    # GRPO would have to sample completions to evaluate; its progress is the reward, not val loss.
    val_set = (Dataset.from_list([{c: r.get(c) for c in columns} for r in val_rows])
               if val_rows and method != "grpo" else None)
    say(f"method: {method}, train records: {len(train_rows)}, val records: {len(val_rows)}")

    extra, reward_weights = {}, {}
    if method == "grpo":
        extra["reward_funcs"], weights = grpo_rewards(cfg, root, train_rows)
        reward_weights = {"reward_weights": weights}

    # c. Trainer. Sequence length and warm-up are always explicit, never library defaults.
    run_dir = root / stage["run_dir"]
    args = getattr(trl, config_class)(
        output_dir=str(run_dir),
        num_train_epochs=stage["epochs"],
        max_steps=stage["max_steps"] or -1,
        per_device_train_batch_size=t["batch_size"],
        per_device_eval_batch_size=t["batch_size"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        gradient_checkpointing=t["gradient_checkpointing"],
        learning_rate=stage["learning_rate"],
        warmup_steps=t["warmup_steps"],
        lr_scheduler_type=t["lr_scheduler_type"],
        weight_decay=t["weight_decay"],
        logging_steps=t["logging_steps"],
        save_steps=t["save_steps"],
        save_total_limit=t["save_total_limit"],
        eval_strategy="epoch" if val_set is not None else "no",
        seed=t["seed"],
        bf16=models.pick_dtype(cfg["model"]["dtype"]) == torch.bfloat16,
        use_cpu=not torch.cuda.is_available(),
        # LoRA trains every adapter weight in every step: no search for unused ones (DDP).
        ddp_find_unused_parameters=False,
        report_to=cfg["report_to"],
        disable_tqdm=True,
        **stage["method_args"],
        **reward_weights,
    )
    if cfg["report_to"] == "tensorboard":  # the curves go to the project, per run and stage
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(root / cfg["logging_dir"] / f"stage-{number}")
    status = TrainingStatus(root / ".factory" / "training-status.json",
                            total_epochs=stage["epochs"],
                            stage=f"{number}/{len(cfg['stages'])} {method}",
                            # GRPO's displayed loss is near zero by design; only NaN counts.
                            watch_divergence=method != "grpo")
    trainer = getattr(trl, trainer_class)(
        model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
        processing_class=tokenizer, peft_config=peft_config, callbacks=[status], **extra)

    resume = last_complete_checkpoint(run_dir)
    say(f"resuming from {resume.name}" if resume else "starting fresh")
    started = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except torch.OutOfMemoryError as exc:
        status.write(running=False, error="out of memory")
        raise ScriptError("E_OOM", f"stage {number} ({method}) ran out of memory at batch_size="
                                   f"{t['batch_size']}: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:
        status.write(running=False, error=f"{type(exc).__name__}: {exc}")
        from factory.rewards import RewardError

        if isinstance(exc, RewardError):  # a reward broke mid-run (a command timed out, ...)
            raise ScriptError("E_REWARD", f"stage {number} ({method}): {exc}") from exc
        raise
    if status.diverged:
        raise ScriptError("E_NAN_LOSS", f"stage {number} ({method}): {status.diverged}")

    # d. The stage's adapter, then its figures (their presence marks the stage finished).
    staging = run_dir / "adapter.partial"
    save_adapter(trainer, tokenizer, staging, cfg["distributed"]["strategy"])
    stats = stage_stats(method, trainer, result, resume, train_rows, val_rows, started)
    if RANK == 0:
        atomic.replace_dir(staging, run_dir / "adapter")
        atomic.write_json(run_dir / "stats.json", stats)
    trainer.accelerator.wait_for_everyone()  # the next stage loads this adapter in every process
    say(f"stage {number} done: {result.global_step} steps, train loss "
          f"{result.training_loss:.4f}")
    return stats


def load_model(cfg: dict, root: Path, backend: str, quantized: bool, previous: Path | None):
    """(model, tokenizer, LoRA config for the trainer to apply, or None when the model already
    carries the adapter it will train)."""
    from peft import LoraConfig, PeftModel

    from factory.runtime import models

    lora, t = cfg["lora"], cfg["training"]
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        # Given an adapter folder, Unsloth loads its base and puts the adapter on, trainable.
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(previous) if previous else models.source(cfg["model"], root),
            max_seq_length=cfg["model"]["max_length"], dtype=None, load_in_4bit=quantized)
        if previous is None:
            targets = lora["target_modules"]
            model = FastLanguageModel.get_peft_model(
                model, r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                target_modules=ALL_LINEAR if targets == "all-linear" else targets,
                use_gradient_checkpointing="unsloth" if t["gradient_checkpointing"] else False,
                random_state=t["seed"])
        return model, tokenizer, None

    model, tokenizer = models.load(cfg["model"], root, load_in_4bit=quantized)
    model.train()
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=t["gradient_checkpointing"])
    if previous is not None:
        return PeftModel.from_pretrained(model, str(previous), is_trainable=True), tokenizer, None
    return model, tokenizer, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"],
                                        lora_dropout=lora["dropout"],
                                        target_modules=lora["target_modules"],
                                        task_type="CAUSAL_LM")


def grpo_rewards(cfg: dict, root: Path, train_rows: list[dict]) -> tuple[list, list[float]]:
    from factory.rewards import for_trl, preflight

    try:
        funcs, weights = for_trl(cfg["rewards"], cfg["training"]["grpo"]["rewards"], root=root,
                                 rows=train_rows)
        preflight(funcs, train_rows[0])
    except ValueError as exc:  # RewardError included: a missing file, bad labelled examples
        raise ScriptError("E_REWARD", str(exc)) from exc
    say("rewards: " + ", ".join(f"{f.__name__} x{w}" for f, w in zip(funcs, weights)))
    return funcs, weights


def save_adapter(trainer, tokenizer, path: Path, strategy: str) -> None:
    if strategy in ("deepspeed", "fsdp"):
        # Sharded weights: every process takes part in gathering them; the trainer writes them
        # from rank 0, adapters only. TRL's frozen reference copy ("ref") is not the result.
        trainer.save_model(str(path))
        if RANK == 0:
            shutil.rmtree(path / "ref", ignore_errors=True)
            tokenizer.save_pretrained(str(path))
        return
    if RANK != 0:
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    # A stage that trains on from an adapter also holds TRL's frozen copy of it ("ref", the
    # DPO/KTO reference); only the trained adapter is the result.
    model.save_pretrained(str(path), selected_adapters=["default"])
    tokenizer.save_pretrained(str(path))


def publish(adapter: Path, target: Path) -> None:
    from factory import atomic

    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(adapter, staging)
    atomic.replace_dir(staging, target)


def stage_stats(method, trainer, result, resume, train_rows, val_rows, started) -> dict:
    log = trainer.state.log_history
    history = [e for e in log if "loss" in e]
    rewards = [[e["step"], e["reward"]] for e in log if "reward" in e]
    evals = [[e["step"], e["eval_loss"]] for e in log if "eval_loss" in e]
    return {
        "method": method,
        "train_records": len(train_rows),
        "val_records": len(val_rows),
        "total_steps": result.global_step,
        "epochs": result.metrics.get("epoch"),
        # Trainer's training_loss averages only the steps this process ran; after a resume at
        # the final checkpoint that is no steps at all, so report it only when it means something.
        "train_loss": result.training_loss if result.global_step > resumed_step(resume) else None,
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "eval_loss": evals[-1][1] if evals else None,
        "resumed_from": resume.name if resume else None,
        "seconds": round(time.monotonic() - started, 1),
        "loss_curve": [[e["step"], e["loss"]] for e in history],
        "eval_curve": evals,
        "reward_curve": rewards,
        "first_reward": rewards[0][1] if rewards else None,
        "final_reward": rewards[-1][1] if rewards else None,
        "reward_means": {k.split("/")[1]: v for k, v in history[-1].items()
                         if k.startswith("rewards/") and k.endswith("/mean")} if history else {},
    }


def write_stats(cfg: dict, root: Path, stages: list[dict], backend: str, quantized: bool,
                started: float) -> None:
    """The run's figures: the first stage's start, the last stage's end, every stage's own."""
    from factory import atomic

    first, last = stages[0], stages[-1]
    atomic.write_json(root / cfg["stats_file"], {
        "base_model": cfg["model"]["source"],
        "method": "+".join(s["method"] for s in stages),
        "backend": backend,
        "quantization": "4bit" if quantized else None,
        "distributed": cfg["distributed"],
        "total_steps": sum(s["total_steps"] for s in stages),
        "first_loss": first["first_loss"],
        "final_loss": last["final_loss"],
        "eval_loss": last["eval_loss"],
        "resumed_from": next((s["resumed_from"] for s in stages if s["resumed_from"]), None),
        "seconds": round(time.monotonic() - started, 1),
        **{k: last[k] for k in ("train_records", "val_records", "epochs", "train_loss",
                                "loss_curve", "first_reward", "final_reward", "reward_means")},
        "stages": stages,
    })
    say(f"done: {' -> '.join(s['method'] for s in stages)}, "
          f"{sum(s['total_steps'] for s in stages)} steps")


def read_split(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def check_lengths(tokenizer, rows: list[dict], max_length: int, method: str) -> None:
    """The format gate measured these rows already; measured again, the same way, because a
    split edited by hand must not be silently truncated either."""
    from factory.runtime import tokens

    too_long = [{"id": row["id"], "source": row.get("source"), "tokens": length}
                for row, length in zip(rows, tokens.lengths(tokenizer, rows, method))
                if isinstance(length, int) and length > max_length]
    if too_long:
        first = too_long[0]
        raise ScriptError(
            "E_TOO_LONG",
            f"{len(too_long)} record(s) exceed model.max_length={max_length} tokens, e.g. "
            f"{first['source']} ({first['tokens']} tokens)",
            records=too_long[:50])


def resumed_step(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint whose optimizer, scheduler and trainer state were all written."""
    candidates = sorted((p for p in run_dir.glob("checkpoint-*")
                         if p.name.split("-")[-1].isdigit()), key=resumed_step)
    for checkpoint in reversed(candidates):
        if all((checkpoint / name).exists() for name in COMPLETE_CHECKPOINT):
            return checkpoint
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="scripts/finetune.json")
    sys.exit(main(parser.parse_args().config))
