"""Format gate: validate raw data and write the train and val splits around the frozen eval split."""
from __future__ import annotations

import json

from agents import runner
from agents.gate import GateContext, GateOutcome
from factory import splits
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path

name = "format"


def inputs(ctx: GateContext) -> dict[str, str | None]:
    frozen = splits.frozen(ctx.project)
    return {
        "raw_data": hash_path(ctx.project.inside(ctx.config.data.raw_dir), ctx.cache),
        "data_config": hash_json(ctx.config.data.model_dump()),
        "eval_split": frozen["hash"] if frozen else None,
        "script": runner.script_hash(name),
    }


def run(ctx: GateContext) -> GateOutcome:
    project, data = ctx.project, ctx.config.data
    frozen = splits.check_frozen(project)
    runner.write_script(ctx, name, {
        "raw_dir": project.rel(project.inside(data.raw_dir)),
        "format": data.format,
        "on_error": data.on_error,
        "split": data.split.model_dump(),
        "frozen_eval_ids": frozen["ids"],
        "out_dir": "data/splits",
        "rejected_file": "data/rejected.jsonl",
        "report_file": "metrics/data-report.json",
    })
    runner.execute(ctx, name)
    check_no_leakage(ctx, set(frozen["ids"]))

    report = json.loads((project.metrics_dir / "data-report.json").read_text())
    return GateOutcome(
        summary={"valid": report["valid"], "bad": report["bad"],
                 "duplicates": report["duplicates"], **report["splits"]})


def outputs(ctx: GateContext) -> dict[str, str | None]:
    return {s: hash_path(ctx.project.split_file(s), ctx.cache) for s in ("train", "val")}


def check_no_leakage(ctx: GateContext, eval_ids: set[str]) -> None:
    """Refuse if any frozen eval record also sits in train or val, by content hash."""
    for split in ("train", "val"):
        path = ctx.project.split_file(split)
        with open(path, encoding="utf-8") as fh:
            leaked = [row["id"] for row in map(json.loads, fh) if row["id"] in eval_ids]
        if leaked:
            raise FactoryError("E_LEAKAGE",
                               f"{len(leaked)} eval record(s) also appear in data/splits/"
                               f"{split}.jsonl",
                               details={"split": split, "ids": leaked[:50]})
