"""Evaluate gate: score the saved candidate in a fresh process and judge it against the baseline.

The verdict passes only if the primary metric improves by at least eval.min_delta, the lower bound
of its paired-bootstrap interval is above zero, and no guard metric regresses beyond its tolerance.
It records the hashes of the checkpoint, the eval split and the baseline it was given for, so
deploy can refuse anything that changed since.
"""
from __future__ import annotations

import json

from agents import base_model, runner
from agents.gate import GateContext, GateOutcome
from factory import atomic, splits, stats
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path
from factory.state import now

name = "evaluate"
TEMPLATE = "score"


def inputs(ctx: GateContext) -> dict[str, str | None]:
    project = ctx.project
    return {
        "checkpoint": hash_path(project.adapter_dir, ctx.cache),
        "eval_split": hash_path(project.split_file("eval"), ctx.cache),
        "baseline": hash_path(project.metrics_dir / "baseline-examples.jsonl", ctx.cache),
        "eval_config": hash_json(ctx.config.eval.model_dump()),
        "script": runner.script_hash(TEMPLATE),
    }


def run(ctx: GateContext) -> GateOutcome:
    project, cfg = ctx.project, ctx.config
    splits.check_frozen(project)
    runner.write_script(ctx, name, {
        "gate": name,
        "model": base_model.script_view(ctx),
        "adapter": project.rel(project.adapter_dir),
        "eval_file": "data/splits/eval.jsonl",
        "max_new_tokens": cfg.eval.max_new_tokens,
        "seed": cfg.eval.seed,
        "metrics_file": "metrics/eval.json",
        "examples_file": "metrics/eval-examples.jsonl",
    }, template=TEMPLATE)
    runner.execute(ctx, name)

    verdict = judge(ctx)
    atomic.write_json(project.metrics_dir / "verdict.json", verdict)
    summary = {"passed": verdict["passed"], "reason": verdict["reason"],
               **{m: v["candidate"] for m, v in verdict["metrics"].items()}}
    if verdict["passed"]:
        return GateOutcome(summary=summary)
    return GateOutcome(summary=summary, error=FactoryError(
        "E_NOT_BETTER", verdict["reason"], details={"verdict": "metrics/verdict.json"}))


def outputs(ctx: GateContext) -> dict[str, str | None]:
    return {"verdict": hash_path(ctx.project.metrics_dir / "verdict.json", ctx.cache)}


def judge(ctx: GateContext) -> dict:
    project, ev = ctx.project, ctx.config.eval
    base = _rows(project.metrics_dir / "baseline-examples.jsonl")
    cand = _rows(project.metrics_dir / "eval-examples.jsonl")
    if set(base) != set(cand):
        raise FactoryError("E_VERDICT_STALE", "baseline and candidate were scored on different "
                                              "examples", hint="Run `factory run baseline` again.")
    ids = sorted(base)
    metrics = {}
    for metric in sorted({ev.primary_metric, *ev.guards}):
        metrics[metric] = stats.compare(
            metric, [base[i][metric] for i in ids], [cand[i][metric] for i in ids],
            confidence=ev.confidence, resamples=ev.bootstrap_resamples, seed=ev.seed).to_dict()
    passed, reason = decide(metrics, ev.primary_metric, ev.min_delta, ev.guards)
    return {
        "passed": passed,
        "reason": reason,
        "primary_metric": ev.primary_metric,
        "min_delta": ev.min_delta,
        "metrics": metrics,
        "checkpoint_hash": hash_path(project.adapter_dir),
        "eval_split_hash": hash_path(project.split_file("eval")),
        "baseline_hash": hash_path(project.metrics_dir / "baseline-examples.jsonl"),
        "judged_at": now(),
    }


def decide(metrics: dict, primary: str, min_delta: float,
           guards: dict[str, float]) -> tuple[bool, str]:
    p = metrics[primary]
    shown = (f"{primary} {p['baseline']:.4g} → {p['candidate']:.4g} (improvement "
             f"{p['improvement']:+.4g}, {p['confidence']:.0%} CI [{p['ci_low']:+.4g}, "
             f"{p['ci_high']:+.4g}])")
    if p["improvement"] < min_delta:
        return False, f"{shown} is below min_delta {min_delta}"
    if p["ci_low"] <= 0:
        return False, f"{shown}: the interval does not exclude no improvement"
    for metric, tolerance in guards.items():
        g = metrics[metric]
        if g["improvement"] < -tolerance:
            return False, (f"{shown}, but guard {metric} regressed by {-g['improvement']:.4g} "
                           f"(tolerance {tolerance})")
    return True, f"{shown} passes"


def _rows(path) -> dict[str, dict]:
    with open(path, encoding="utf-8") as fh:
        return {row["id"]: row for row in map(json.loads, fh)}
