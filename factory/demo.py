"""The demo project: generated tool-calling data and a tiny model built on this machine.

No weights or data sets can be downloaded here, so the demo builds a real Llama-architecture model
with random weights and a tokenizer trained on the demo data. Everything else (the config, the gates,
the scripts) is exactly what a user runs with a hub model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from factory import atomic, demo_data
from factory.project import CONFIG_FILE

DEMO_RECORDS = 600
# Settings that make a random-init model learn the demo task on a CPU in about a minute. They are
# ordinary config values: the demo passes its gates with the default verdict rules.
DEMO_CONFIG = {
    "model": {"name": "models/base", "max_length": 160, "dtype": "float32"},
    "lora": {"r": 32, "alpha": 64, "dropout": 0.0, "target_modules": "all-linear"},
    "training": {"method": "sft", "epochs": 12, "batch_size": 16,
                 "gradient_accumulation_steps": 1, "learning_rate": 0.003, "warmup_steps": 10,
                 "logging_steps": 5, "save_steps": 40, "seed": 42},
    "eval": {"metrics": ["loss", "exact_match", "normalized_match", "tool_parse", "tool_name",
                         "tool_args_exact", "tool_args_valid", "reward:one_call"],
             "primary_metric": "exact_match", "min_delta": 0.05, "confidence": 0.95,
             "guards": {"loss": 0.0}, "max_new_tokens": 48},
    # Every local output: the F16 GGUF must answer exactly as the merged model does.
    "deploy": {"outputs": ["adapter", "merged", "gguf", "ollama"],
               "gguf": {"quantizations": ["F16", "Q8_0"]},
               "ollama": {"system": "You call tools. Answer with one function call."}},
    # A verifiable reward used as a metric: the answer is exactly one call and nothing else.
    "rewards": [{"name": "one_call", "type": "format_regex", "fullmatch": True,
                 "pattern": r"<start_function_call>call:[a-z_]+\{[^<]*(?:<escape>[^<]*<escape>"
                            r"[^<]*)*\}<end_function_call>"}],
}


def write_config(project_dir: Path) -> None:
    path = project_dir / CONFIG_FILE
    config = json.loads(path.read_text())
    for section, values in DEMO_CONFIG.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) \
            else values
    atomic.write_json(path, config)


def write_data(project_dir: Path, records: list[dict], name: str = "demo.jsonl") -> Path:
    path = project_dir / "data" / "raw" / name
    atomic.write_jsonl(path, records)
    return path


def build_model(project_dir: Path, records: list[dict]) -> dict:
    from factory import tiny_model  # torch is imported only when a model is really built

    return tiny_model.build_tiny_model(project_dir / "models" / "base",
                                       demo_data.corpus(records), seed=0)


def prepare(project_dir: Path, say: Callable[[str], None] = lambda s: None) -> dict:
    records = demo_data.demo_records(DEMO_RECORDS)
    write_data(project_dir, records)
    write_config(project_dir)
    say(f"[demo] wrote {len(records)} tool-calling records to data/raw/demo.jsonl")
    info = build_model(project_dir, records)
    say(f"[demo] built tiny {info['arch']} model: {info['parameters']:,} parameters, "
        f"vocabulary {info['vocab_size']}")
    return {"records": len(records), "model": info}
