"""Fine-tune the base model with LoRA (SFT, DPO, KTO or GRPO), written by `factory run finetune`.

Re-run by hand from the project directory (the factory runs exactly this):

    python scripts/finetune.py --config scripts/finetune.json

Every value comes from scripts/finetune.json, which the factory derives from training-config.json;
edit training-config.json and run `factory run finetune` rather than editing either file here.

What it does, in order:
  1. picks precision for the hardware (bf16 on GPUs that support it, fp32 on CPU);
  2. loads the base model and its tokenizer (a project folder or a hub id, the same call);
  3. reads data/splits/train.jsonl and val.jsonl (rows in the shape training.method reads), and
     refuses any record longer than model.max_length instead of silently truncating it;
  4. trains LoRA with the method's TRL trainer, checkpointing every `save_steps` and resuming from
     the newest complete checkpoint of this exact run:
       sft   SFTTrainer on conversations, loss on assistant tokens only;
       dpo   DPOTrainer on prompt/chosen/rejected; the reference is the base model (adapter off);
       kto   KTOTrainer on prompt/completion/label, desirable/undesirable weights;
       grpo  GRPOTrainer: samples num_generations completions per prompt and scores them with the
             project's rewards (factory.rewards, each called once on a dummy batch first);
  5. saves the adapter to models/checkpoints/lora/ in one atomic step, and the run's figures to
     metrics/training-stats.json.

Raises (as .factory/logs/finetune.error.json): E_MODEL_LOAD, E_TOO_LONG, E_REWARD (a reward
fails its dry run), E_NAN_LOSS (loss NaN or diverging).
"""
import argparse
import json
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
    "grpo": ("GRPOConfig", "GRPOTrainer", ("prompt", "answer")),
}


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
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    from factory import atomic
    from factory.runtime import models
    from factory.runtime.status import TrainingStatus

    # 1. Hardware and precision.
    on_gpu = torch.cuda.is_available()
    dtype = models.pick_dtype(cfg["model"]["dtype"])
    print(f"device: {'cuda' if on_gpu else 'cpu'}, dtype: {dtype}, backend: transformers+peft")

    # 2. Base model and tokenizer.
    model, tokenizer = models.load(cfg["model"], root)
    model.train()

    # 3. Data: the splits written by the format gate, checked against max_length.
    t = cfg["training"]
    method = t["method"]
    config_class, trainer_class, columns = METHODS[method]
    train_rows = read_split(root / cfg["train_file"])
    val_rows = read_split(root / cfg["val_file"])
    max_length = cfg["model"]["max_length"]
    check_lengths(tokenizer, train_rows + val_rows, max_length, method)
    train_set = Dataset.from_list([{c: r.get(c) for c in columns} for r in train_rows])
    # GRPO would have to sample completions to evaluate; its progress is the reward, not val loss.
    val_set = (Dataset.from_list([{c: r.get(c) for c in columns} for r in val_rows])
               if val_rows and method != "grpo" else None)
    print(f"method: {method}, train records: {len(train_rows)}, val records: {len(val_rows)}")

    extra = {}
    reward_weights = {}
    if method == "grpo":
        from factory.rewards import for_trl, preflight

        extra["reward_funcs"], weights = for_trl(cfg["rewards"], t["grpo"]["rewards"])
        reward_weights = {"reward_weights": weights}
        try:
            preflight(extra["reward_funcs"], train_rows[0])
        except ValueError as exc:
            raise ScriptError("E_REWARD", str(exc)) from exc
        print("rewards: " + ", ".join(f"{f.__name__} x{w}" for f, w in
                                      zip(extra["reward_funcs"], weights)))

    # 4. Trainer. Sequence length and warm-up are always explicit, never library defaults.
    lora = cfg["lora"]
    run_dir = root / cfg["run_dir"]
    args = getattr(trl, config_class)(
        output_dir=str(run_dir),
        num_train_epochs=t["epochs"],
        max_steps=t["max_steps"] or -1,
        per_device_train_batch_size=t["batch_size"],
        per_device_eval_batch_size=t["batch_size"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        learning_rate=t["learning_rate"],
        warmup_steps=t["warmup_steps"],
        lr_scheduler_type=t["lr_scheduler_type"],
        weight_decay=t["weight_decay"],
        logging_steps=t["logging_steps"],
        save_steps=t["save_steps"],
        save_total_limit=t["save_total_limit"],
        eval_strategy="epoch" if val_set is not None else "no",
        seed=t["seed"],
        bf16=dtype == torch.bfloat16,
        use_cpu=not on_gpu,
        report_to="none",
        disable_tqdm=True,
        **cfg["method_args"],
        **reward_weights,
    )
    status = TrainingStatus(root / ".factory" / "training-status.json", total_epochs=t["epochs"],
                            # GRPO's displayed loss is near zero by design; only NaN counts.
                            watch_divergence=method != "grpo")
    trainer = getattr(trl, trainer_class)(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=lora["r"], lora_alpha=lora["alpha"],
                               lora_dropout=lora["dropout"], target_modules=lora["target_modules"],
                               task_type="CAUSAL_LM"),
        callbacks=[status],
        **extra,
    )

    # 5. Train, resuming from the newest complete checkpoint of this run if there is one.
    resume = last_complete_checkpoint(run_dir)
    print(f"resuming from {resume.name}" if resume else "starting fresh")
    started = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except Exception as exc:
        status.write(running=False, error=f"{type(exc).__name__}: {exc}")
        raise
    if status.diverged:
        raise ScriptError("E_NAN_LOSS", status.diverged,
                          hint="Lower training.learning_rate (e.g. to 1e-4 or 5e-5).")

    # 6. Save the adapter atomically, then the figures of the run.
    staging = run_dir / "adapter.partial"
    trainer.save_model(str(staging))
    atomic.replace_dir(staging, root / cfg["adapter_dir"])
    history = [e for e in trainer.state.log_history if "loss" in e]
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    atomic.write_json(root / cfg["stats_file"], {
        "base_model": cfg["model"]["source"],
        "method": t["method"],
        "train_records": len(train_rows),
        "val_records": len(val_rows),
        "total_steps": result.global_step,
        "epochs": result.metrics.get("epoch"),
        # Trainer's training_loss averages only the steps this process ran; after a resume at
        # the final checkpoint that is no steps at all, so report it only when it means something.
        "train_loss": result.training_loss if result.global_step > resumed_step(resume) else None,
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "eval_loss": evals[-1] if evals else None,
        "resumed_from": resume.name if resume else None,
        "seconds": round(time.monotonic() - started, 1),
        "loss_curve": [[e["step"], e["loss"]] for e in history],
        "first_reward": rewards[0] if rewards else None,
        "final_reward": rewards[-1] if rewards else None,
        "reward_means": {k.split("/")[1]: v for k, v in history[-1].items()
                         if k.startswith("rewards/") and k.endswith("/mean")} if history else {},
    })
    print(f"done: {result.global_step} steps, train loss {result.training_loss:.4f}")


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
