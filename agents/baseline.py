"""Baseline gate: freeze the eval split and score the untouched base model on it.

The eval split is chosen by content hash from the raw data the first time this gate runs, written to
data/splits/eval.jsonl and frozen (its hash kept in .factory/frozen-eval.json). Every later score,
baseline or candidate, is taken on exactly these records.
"""
from __future__ import annotations

import json

from agents import base_model, eval_scoring, runner
from agents.gate import GateContext, GateOutcome
from factory import atomic, splits
from factory.errors import FactoryError
from factory.hashing import hash_path

name = "baseline"


def inputs(ctx: GateContext) -> dict[str, str | None]:
    frozen = splits.frozen(ctx.project)
    return {
        "model": base_model.identity(ctx),
        "eval_split": frozen["hash"] if frozen else None,
        "scoring": eval_scoring.fingerprint(ctx),
    }


def run(ctx: GateContext) -> GateOutcome:
    project = ctx.project
    if ctx.options.get("refreeze") or splits.frozen(project) is None:
        freeze_eval_split(ctx)
    frozen = splits.check_frozen(project)

    eval_scoring.write(ctx, name, [{"label": "baseline", "checkpoint": None,
                                    "metrics_file": "metrics/baseline.json",
                                    "examples_file": "metrics/baseline-examples.jsonl"}])
    runner.execute(ctx, name)

    metrics = json.loads((project.metrics_dir / "baseline.json").read_text())
    metrics["model_identity"] = base_model.identity(ctx)
    metrics["eval_split_hash"] = frozen["hash"]
    metrics["scoring"] = eval_scoring.fingerprint(ctx)
    atomic.write_json(project.metrics_dir / "baseline.json", metrics)
    shown = ["examples", *(m for m in ctx.config.eval.metrics if metrics.get(m) is not None)]
    return GateOutcome(summary={k: metrics[k] for k in shown})


def outputs(ctx: GateContext) -> dict[str, str | None]:
    return {"baseline_examples": hash_path(ctx.project.metrics_dir / "baseline-examples.jsonl",
                                           ctx.cache)}


def freeze_eval_split(ctx: GateContext) -> None:
    """Choose the eval records from the raw data by prompt hash and freeze them."""
    from factory import methods, records  # the data readers: only a gate that reads data pays

    project, data = ctx.project, ctx.config.data
    tally = records.Tally()
    pool = records.pool(project.inside(data.raw_dir), project, data, tally)
    split = data.split
    chosen, seen = [], 0
    for example in pool:
        seen += 1
        if splits.bucket(example["key"], split.salt, split.val, split.eval) != "eval":
            continue
        conversation = methods.eval_conversation(example)
        if conversation is not None:
            chosen.append(_eval_row(example, conversation))
    if tally.bad and data.on_error == "fail":
        shown = "; ".join(str(p) for p in tally.problems[:3])
        raise FactoryError("E_SCHEMA", f"{tally.bad} bad record(s) in {data.raw_dir}: {shown}",
                           details={"problems": [p.to_dict() for p in tally.problems],
                                    "bad_count": tally.bad})
    if not seen:
        raise FactoryError("E_NO_DATA", f"no usable records found under {data.raw_dir}",
                           details={"notes": tally.notes})
    if len(chosen) < data.min_eval_records:
        raise FactoryError(
            "E_NO_DATA",
            f"only {len(chosen)} of {seen} records fall into the eval split with a reference "
            f"answer; a verdict needs at least data.min_eval_records={data.min_eval_records}",
            hint="Add data to data/raw/, or raise data.split.eval in training-config.json.")
    frozen = splits.freeze(project, chosen)
    ctx.say(f"[baseline] froze {frozen['count']} eval records (hash {frozen['hash'][:12]})")


def _eval_row(example: dict, conversation: list[dict]) -> dict:
    row = {"id": example["id"], "key": example["key"], "source": example["source"],
           "format": example["format"], "messages": conversation, "meta": example["meta"]}
    if example.get("tools"):
        row["tools"] = example["tools"]
    if example.get("env") is not None:  # only when named: unlabelled rows stay byte-identical
        row["env"] = example["env"]
    return row
