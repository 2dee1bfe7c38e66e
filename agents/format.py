"""Format gate: validate raw data; write each method's train/val splits around the frozen eval."""
from __future__ import annotations

import json

from agents import base_model, runner
from agents.gate import GateContext, GateOutcome
from factory import splits
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path

name = "format"


def inputs(ctx: GateContext) -> dict[str, str | None]:
    frozen = splits.frozen(ctx.project)
    cfg = ctx.config
    return {
        "raw_data": hash_path(ctx.project.inside(cfg.data.raw_dir), ctx.cache),
        "data_config": hash_json({"data": cfg.data.model_dump(),
                                  "methods": cfg.training.methods,
                                  "max_length": cfg.model.max_length}),
        # Token lengths are measured with the model's tokenizer and chat template.
        "model": base_model.identity(ctx),
        "eval_split": frozen["hash"] if frozen else None,
        "script": runner.script_hash(name),
    }


def run(ctx: GateContext) -> GateOutcome:
    project, cfg = ctx.project, ctx.config
    frozen = splits.check_frozen(project)
    data = cfg.data.model_dump(exclude={"split", "min_eval_records", "raw_dir"})
    runner.write_script(ctx, name, {
        **data,
        "raw_dir": project.rel(project.inside(cfg.data.raw_dir)),
        "split": cfg.data.split.model_dump(),
        "methods": cfg.training.methods,
        "model": base_model.script_view(ctx),
        "frozen_eval_ids": frozen["ids"],
        "frozen_eval_keys": frozen.get("keys", []),
        "out_dir": "data/splits",
        "rejected_file": "data/rejected.jsonl",
        "report_file": "metrics/data-report.json",
        "summary_file": "reports/data.md",
    })
    runner.execute(ctx, name)
    check_no_leakage(ctx, set(frozen["ids"]), set(frozen.get("keys", [])))

    report = json.loads((project.metrics_dir / "data-report.json").read_text())
    return GateOutcome(summary={
        "methods": report["methods"], "valid": report["valid"], "bad": report["bad"],
        "duplicates": report["duplicates"], "below_min_reward": report["below_min_reward"],
        "too_long": report["too_long"], **report["splits"],
        "tokens_p95": report["tokens"].get("p95")})


def outputs(ctx: GateContext) -> dict[str, str | None]:
    return {s: hash_path(ctx.project.split_file(s), ctx.cache)
            for s in splits.training_splits(ctx.config.training.methods)}


def check_no_leakage(ctx: GateContext, eval_ids: set[str], eval_keys: set[str]) -> None:
    """Refuse if a frozen eval record, or another answer to an eval prompt, sits in train or val.

    Prompt keys are recomputed from each row's content, so a row whose id or key field was edited
    (or dropped) is still caught.
    """
    from factory.normalise import conversation_key

    for split in splits.training_splits(ctx.config.training.methods):
        path = ctx.project.split_file(split)
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as fh:
            leaked = [row.get("source") or row.get("id") or f"line {n}"
                      for n, row in enumerate(map(json.loads, fh), 1)
                      if row.get("id") in eval_ids or row.get("key") in eval_keys
                      or conversation_key(row.get("prompt") or row["messages"]) in eval_keys]
        if leaked:
            raise FactoryError("E_LEAKAGE",
                               f"{len(leaked)} row(s) of data/splits/{split}.jsonl repeat a frozen "
                               f"eval record or its prompt, e.g. {leaked[0]}",
                               details={"split": split, "sources": leaked[:50]})
