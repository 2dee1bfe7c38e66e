"""Unsloth against TRL + PEFT on one CUDA GPU: training tokens/s and peak memory, same model,
same data, same steps. Only on a machine with a CUDA GPU and unsloth installed; never in CI.

Nothing can be downloaded, so the model is a Llama of real width with random weights (the
demo's tokenizer, a larger vocabulary is not needed for speed). Each backend trains in its own
process: Unsloth patches transformers when it is imported, so the two cannot share one.

    python bench/gpu_backends.py [--steps 60] [--hidden 2048] [--layers 16] [--seq 1024]
    python bench/gpu_backends.py --write docs/benchmarks.md   # also append the dated row
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BACKENDS = ("transformers", "unsloth")
TEXT = ("The quick brown fox calls get_weather for Paris, then books a table for two at eight. "
        * 64)


def build(root: Path, hidden: int, layers: int, seq: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from factory import demo_data, tiny_model

    small = root / "tokenizer"
    tiny_model.build_tiny_model(small, demo_data.corpus(demo_data.demo_records()))
    model_dir = root / "model"
    shutil.copytree(small, model_dir, ignore=shutil.ignore_patterns("*.safetensors",
                                                                    "config.json"))
    base = LlamaConfig.from_pretrained(small)
    config = LlamaConfig(vocab_size=base.vocab_size, hidden_size=hidden,
                         intermediate_size=int(hidden * 8 / 3) // 64 * 64,
                         num_hidden_layers=layers, num_attention_heads=hidden // 128,
                         num_key_value_heads=max(1, hidden // 512),
                         max_position_embeddings=seq, bos_token_id=base.bos_token_id,
                         eos_token_id=base.eos_token_id, pad_token_id=base.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(model_dir)
    return model_dir


def worker(backend: str, model_dir: str, steps: int, seq: int, batch: int) -> dict:
    if backend == "unsloth":
        import unsloth  # noqa: F401  (before trl and transformers, to patch them)
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    lora = dict(r=16, lora_alpha=32, lora_dropout=0.0,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                "up_proj", "down_proj"])
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(model_dir, max_seq_length=seq,
                                                             dtype=torch.bfloat16)
        model = FastLanguageModel.get_peft_model(model, use_gradient_checkpointing="unsloth",
                                                 random_state=0, **lora)
        peft_config = None
    else:
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16,
                                                     device_map={"": 0})
        peft_config = LoraConfig(task_type="CAUSAL_LM", **lora)
    data = Dataset.from_list([{"text": TEXT} for _ in range(steps * batch)])
    args = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=steps,
                     per_device_train_batch_size=batch, learning_rate=1e-4, warmup_steps=0,
                     logging_steps=steps, save_strategy="no", bf16=True, max_length=seq,
                     gradient_checkpointing=True, report_to="none", disable_tqdm=True,
                     dataset_text_field="text", packing=False, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=peft_config)
    torch.cuda.reset_peak_memory_stats()
    result = trainer.train()
    seconds = result.metrics["train_runtime"]
    return {"backend": backend, "seconds": seconds, "tokens_per_s": steps * batch * seq / seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "gpu": torch.cuda.get_device_name(0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--write", type=Path, help="append the result row to this markdown file")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.steps, args.seq, args.batch)))
        return 0
    if shutil.which("nvidia-smi") is None:
        print("skipped: no CUDA GPU on this machine (this benchmark runs only on one)")
        return 0
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        model_dir = build(Path(tmp), args.hidden, args.layers, args.seq)
        found = {}
        for backend in BACKENDS:
            proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--model",
                                   str(model_dir), "--steps", str(args.steps), "--seq",
                                   str(args.seq), "--batch", str(args.batch)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{backend} failed:\n{proc.stderr[-3000:]}")
                return 1
            found[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
    t, u = found["transformers"], found["unsloth"]
    print(f"{t['gpu']}: Llama hidden {args.hidden}, {args.layers} layers, seq {args.seq}, "
          f"batch {args.batch}, {args.steps} steps, LoRA r=16, bf16, gradient checkpointing")
    for row in (t, u):
        print(f"{row['backend']:<14}{row['tokens_per_s']:>12.0f} tokens/s"
              f"{row['peak_gib']:>10.2f} GiB peak")
    speed, memory = u["tokens_per_s"] / t["tokens_per_s"], u["peak_gib"] / t["peak_gib"]
    print(f"unsloth/transformers: {speed:.2f}x tokens/s, {memory:.2f}x peak memory")
    if args.write:
        row = (f"| {datetime.date.today()} | {t['gpu']} | hidden {args.hidden}, {args.layers} "
               f"layers, seq {args.seq}, batch {args.batch}, {args.steps} steps | "
               f"{t['tokens_per_s']:.0f} | {u['tokens_per_s']:.0f} | {speed:.2f}x | "
               f"{t['peak_gib']:.2f} | {u['peak_gib']:.2f} | {memory:.2f}x |\n")
        with open(args.write, "a", encoding="utf-8") as fh:
            fh.write(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
