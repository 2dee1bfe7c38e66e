"""The model card (README.md with YAML front matter) shipped beside every promoted model.

Written from the files the gates left, never from memory: the verdict (every metric against the
base model, with its interval), the data report (sources and counts), the training figures (the
method chain) and the deploy manifest. It holds no secret: nothing here reads the environment.
"""
from __future__ import annotations

import json
from pathlib import Path

from factory.project import Project

CARD = "README.md"


def write(project: Project, out_dir: Path, promotion: dict, model_name: str) -> Path:
    verdict = _read(project.metrics_dir / "verdict.json")
    data = _read(project.metrics_dir / "data-report.json")
    training = _read(project.metrics_dir / "training-stats.json")
    text = "\n".join([*front_matter(model_name, promotion, training),
                      *body(project, promotion, verdict, data, training, model_name)]) + "\n"
    path = out_dir / CARD
    path.write_text(text, encoding="utf-8")
    return path


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def front_matter(model_name: str, promotion: dict, training: dict) -> list[str]:
    methods = (training.get("method") or "sft").split("+")
    tags = ["model-factory", "lora", *methods]
    lines = ["---", f"base_model: {json.dumps(model_name)}", "library_name: peft",
             "pipeline_tag: text-generation", "tags:"]
    lines += [f"  - {t}" for t in tags]
    lines += [f"model_factory_promotion: {json.dumps(promotion['id'])}",
              f"model_factory_checkpoint: {json.dumps(promotion['checkpoint_hash'])}", "---", ""]
    return lines


def body(project: Project, promotion: dict, verdict: dict, data: dict, training: dict,
         model_name: str) -> list[str]:
    lines = [f"# {project.root.name} {promotion['id']}", "",
             f"A LoRA fine-tune of `{model_name}`, promoted by model-factory because it beat the "
             f"base model on a frozen eval set: {verdict.get('reason', 'no reason recorded')}", ""]
    lines += _training(training) + _data(data) + _evaluation(verdict)
    lines += _loading(promotion) + _limitations(verdict, data)
    return lines


def _training(training: dict) -> list[str]:
    stages = training.get("stages") or ([training] if training else [])
    lines = ["## Training", "", "| stage | method | steps | final loss | validation loss |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {s.get('method')} | {s.get('total_steps')} | {_num(s.get('final_loss'))} "
              f"| {_num(s.get('eval_loss'))} |" for n, s in enumerate(stages, 1)]
    lines += ["", f"Backend: {training.get('backend', 'transformers')}"
              + (f", quantization: {training['quantization']}" if training.get("quantization")
                 else "") + ".", ""]
    return lines


def _data(data: dict) -> list[str]:
    lines = ["## Data", "", f"{data.get('valid', 0)} valid records of {data.get('records', 0)}, "
             f"from:", ""]
    lines += [f"- `{f['file']}` ({f['format']}): {f['valid']} valid" for f in data.get("files", [])]
    splits = data.get("splits", {})
    lines += ["", f"Train {splits.get('train', 0)}, validation {splits.get('val', 0)}; the eval "
              f"set ({data.get('frozen_eval', 0)} records) was frozen before training and never "
              f"trained on.", ""]
    return lines


def _evaluation(verdict: dict) -> list[str]:
    confidence = verdict.get("confidence", 0.95)
    lines = ["## Evaluation", "",
             f"Paired comparison on the same frozen eval examples; intervals at {confidence:.0%}.",
             "", "| metric | base | this model | change | interval | n |",
             "|---|---|---|---|---|---|"]
    for metric, c in verdict.get("metrics", {}).items():
        if not c.get("n"):
            continue
        primary = " (primary)" if metric == verdict.get("primary_metric") else ""
        lines.append(f"| {metric}{primary} | {_num(c['baseline'])} | {_num(c['candidate'])} | "
                     f"{c['improvement']:+.4g} | [{c['ci_low']:+.4g}, {c['ci_high']:+.4g}] | "
                     f"{c['n']} |")
    lines += ["", f"Verdict: **{'PASSED' if verdict.get('passed') else 'FAILED'}**. "
                  f"{verdict.get('reason', '')}", ""]
    return lines


def _loading(promotion: dict) -> list[str]:
    outputs = promotion.get("outputs", {})
    lines = ["## How to load", ""]
    if "merged" in outputs:
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  'model = AutoModelForCausalLM.from_pretrained("merged")',
                  'tokenizer = AutoTokenizer.from_pretrained("merged")', "```", ""]
    if "adapter" in outputs:
        lines += ["The LoRA adapter alone, on its base model:", "", "```python",
                  "from peft import AutoPeftModelForCausalLM", "",
                  'model = AutoPeftModelForCausalLM.from_pretrained("adapter")', "```", ""]
    lines += ["The chat template is saved with the tokenizer; apply it with "
              "`tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.", ""]
    return lines


def _limitations(verdict: dict, data: dict) -> list[str]:
    n = max((c.get("n", 0) for c in verdict.get("metrics", {}).values()), default=0)
    return ["## Limitations", "",
            f"- Judged on {n} eval examples drawn from the same sources as the training data; "
            "it says nothing about prompts unlike them.",
            "- Metrics are automatic (exact and normalised match, tool-call checks, verifiable "
            "rewards); no human rated the answers.",
            f"- Trained on {data.get('splits', {}).get('train', 0)} examples; rare cases in them "
            "are learned poorly.", ""]


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"
