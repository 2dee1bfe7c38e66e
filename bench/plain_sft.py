"""The alternative bench/training_overhead.py compares with: SFT written by hand with TRL + PEFT.

It is what a person would write without model-factory for the same run: load the model, read
the split files, train LoRA with the same settings, save the adapter. No status file, no stats,
no plot, no checks.

    python bench/plain_sft.py PROJECT OUTPUT_DIR
"""
import json
import sys
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer


def rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [{"messages": json.loads(line)["messages"]} for line in fh if line.strip()]


def main(project: Path, output: Path) -> None:
    cfg = json.loads((project / "training-config.json").read_text())
    t, lora = cfg["training"], cfg["lora"]
    model_dir = project / cfg["model"]["name"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    train = Dataset.from_list(rows(project / "data" / "splits" / "train.jsonl"))
    val = Dataset.from_list(rows(project / "data" / "splits" / "val.jsonl"))
    args = SFTConfig(
        output_dir=str(output), max_steps=t["max_steps"], num_train_epochs=t["epochs"],
        per_device_train_batch_size=t["batch_size"], per_device_eval_batch_size=t["batch_size"],
        learning_rate=t["learning_rate"], warmup_steps=t["warmup_steps"],
        logging_steps=t["logging_steps"], save_steps=t["save_steps"], eval_strategy="epoch",
        seed=t["seed"], max_length=cfg["model"]["max_length"], assistant_only_loss=True,
        # TRL 1.x defaults both to True; the factory run passes the config's values (off), and
        # the comparison must train the same way.
        gradient_checkpointing=False, bf16=False, save_total_limit=t.get("save_total_limit", 2),
        use_cpu=not torch.cuda.is_available(), report_to="none", disable_tqdm=True)
    peft = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=0.0,
                      target_modules=lora["target_modules"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                         processing_class=tokenizer, peft_config=peft)
    trainer.train()
    trainer.model.save_pretrained(str(output / "adapter"))
    tokenizer.save_pretrained(str(output / "adapter"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
