"""Evaluate gate: score the saved candidate in a fresh process and judge it.

The candidate is compared example by example with the baseline and with the model promoted last.
Against the baseline it passes only if the primary metric improves by at least eval.min_delta, the
lower bound of its paired-bootstrap interval is above zero, and no guard metric regresses beyond
its tolerance. Against the promoted model it must be not worse (or better, as configured). Every
comparison is also given per environment of the eval data (agents.eval_envs), and with
eval.require_dominance the candidate must be worse in none of them and better in one. The
verdict records the hashes of the checkpoint, the eval split and the baseline it was given for,
so deploy can refuse anything that changed since.
"""
from __future__ import annotations

import importlib.util
import json
from functools import partial

from agents import base_model, eval_envs, eval_report, eval_scoring, runner
from agents.format import check_no_leakage
from agents.gate import GateContext, GateOutcome
from factory import atomic, registry, splits, stats
from factory.errors import FactoryError
from factory.hashing import hash_json, hash_path
from factory.state import now

name = "evaluate"
CANDIDATE = {"label": "candidate", "metrics_file": "metrics/eval.json",
             "examples_file": "metrics/eval-examples.jsonl"}
PROMOTED = {"label": "promoted", "metrics_file": "metrics/promoted.json",
            "examples_file": "metrics/promoted-examples.jsonl"}


def inputs(ctx: GateContext) -> dict[str, str | None]:
    project = ctx.project
    checkpoint = hash_path(project.adapter_dir, ctx.cache)
    promoted = registry.champion(project, checkpoint) if ctx.config.eval.vs_promoted != "off" \
        else None
    return {
        "checkpoint": checkpoint,
        "eval_split": hash_path(project.split_file("eval"), ctx.cache),
        "baseline": hash_path(project.metrics_dir / "baseline-examples.jsonl", ctx.cache),
        "train_split": hash_path(project.split_file("train"), ctx.cache),
        "promoted": hash_json({k: promoted[k] for k in ("id", "checkpoint_hash")})
        if promoted else None,
        "eval_config": hash_json(ctx.config.eval.model_dump()),
        "scoring": eval_scoring.fingerprint(ctx),
    }


def run(ctx: GateContext) -> GateOutcome:
    project = ctx.project
    if importlib.util.find_spec("matplotlib") is None:
        raise FactoryError("E_DEPENDENCY", "the evaluate report needs matplotlib, which is not "
                                           "installed", hint="pip install 'model-factory[train]'")
    frozen = splits.check_frozen(project)
    check_no_leakage(ctx, set(frozen["ids"]), set(frozen.get("keys", [])) | eval_keys(ctx))
    check_baseline_current(ctx)
    champion = promoted_model(ctx)
    runs = [{**CANDIDATE, "checkpoint": project.rel(project.adapter_dir)}]
    if champion and champion.get("checkpoint"):
        runs.append({**PROMOTED, "checkpoint": champion["checkpoint"]})
    eval_scoring.write(ctx, name, runs)
    runner.execute(ctx, name)

    verdict = judge(ctx, champion)
    atomic.write_json(project.metrics_dir / "verdict.json", verdict)
    eval_report.write(project, verdict, _rows(project.metrics_dir / "baseline-examples.jsonl"),
                      _rows(project.metrics_dir / "eval-examples.jsonl"))
    summary = {"passed": verdict["passed"], "reason": verdict["reason"],
               "report": verdict["report"],
               **{m: v["candidate"] for m, v in verdict["metrics"].items() if "candidate" in v}}
    if eval_envs.named(verdict["environments"]):  # unlabelled data: the summary as before
        summary["dominates"] = verdict["dominance"]["dominates"]
        summary["worse_environments"] = verdict["dominance"]["worse"]
    if verdict["passed"]:
        return GateOutcome(summary=summary)
    return GateOutcome(summary=summary, error=FactoryError(
        "E_NOT_BETTER", verdict["reason"], details={"verdict": "metrics/verdict.json",
                                                    "report": verdict["report"]}))


def outputs(ctx: GateContext) -> dict[str, str | None]:
    return {"verdict": hash_path(ctx.project.metrics_dir / "verdict.json", ctx.cache)}


def eval_keys(ctx: GateContext) -> set[str]:
    from factory.normalise import conversation_key

    with open(ctx.project.split_file("eval"), encoding="utf-8") as fh:
        return {conversation_key(json.loads(line)["messages"]) for line in fh if line.strip()}


def check_baseline_current(ctx: GateContext) -> None:
    path = ctx.project.metrics_dir / "baseline.json"
    scored = json.loads(path.read_text()).get("scoring") if path.exists() else None
    if scored != eval_scoring.fingerprint(ctx):
        raise FactoryError("E_VERDICT_STALE", "the baseline was scored with other settings "
                                              "(model, metrics, rewards or generation budget) "
                                              "than this evaluation would use",
                           hint="Run `factory run baseline` again; the eval split stays frozen.")


def promoted_model(ctx: GateContext) -> dict | None:
    """The model promoted last, and how to get its scores on this eval split (None: none)."""
    project, cfg = ctx.project, ctx.config
    if cfg.eval.vs_promoted == "off":
        return None
    promo = registry.champion(project, hash_path(project.adapter_dir, ctx.cache))
    if promo is None:
        return None
    folder = project.deployed_dir / promo["id"]
    view = {"id": promo["id"], "checkpoint_hash": promo["checkpoint_hash"]}
    stored = folder / registry.EXAMPLES
    if (stored.exists() and promo.get("scoring") == eval_scoring.fingerprint(ctx)
            and promo.get("eval_split_hash") == hash_path(project.split_file("eval"), ctx.cache)):
        return {**view, "examples": project.rel(stored)}
    same_base = promo.get("model_identity") == base_model.identity(ctx)
    # An adapter only means the same thing on the base it was trained on; merged weights stand
    # alone.
    for output in (("adapter", "merged") if same_base else ("merged",)):
        if (folder / output).is_dir():
            ctx.say(f"[{name}] promoted {promo['id']} has no scores for this eval split; "
                    f"scoring its {output} too")
            return {**view, "checkpoint": project.rel(folder / output),
                    "examples": PROMOTED["examples_file"]}
    return {**view, "skipped": f"models/deployed/{promo['id']} holds no loadable output for "
                               f"this base model"}


def judge(ctx: GateContext, champion: dict | None = None) -> dict:
    project, ev = ctx.project, ctx.config.eval
    base = _rows(project.metrics_dir / "baseline-examples.jsonl")
    cand = _rows(project.metrics_dir / "eval-examples.jsonl")
    if set(base) != set(cand):
        raise FactoryError("E_VERDICT_STALE", "baseline and candidate were scored on different "
                                              "examples", hint="Run `factory run baseline` again.")
    metrics = compare_all(base, cand, ev)
    passed, reason = decide(metrics, ev.primary_metric, ev.min_delta, ev.guards)
    env_of = eval_envs.of_split(project.split_file("eval"))
    environments = eval_envs.per_env(base, cand, env_of, partial(compare_all, ev=ev),
                                     ev.primary_metric, metrics)
    dominance = eval_envs.dominance(environments, ev.primary_metric, ev.require_dominance)
    passed, reason = eval_envs.decide(dominance, environments, passed, reason)
    promoted = None
    if champion is not None:
        promoted, passed, reason = judge_promoted(project, champion, cand, ev, passed, reason,
                                                  env_of)
    return {
        "passed": passed,
        "reason": reason,
        "primary_metric": ev.primary_metric,
        "min_delta": ev.min_delta,
        "confidence": ev.confidence,
        "guards": dict(ev.guards),
        "metrics": metrics,
        "environments": environments,
        "dominance": dominance,
        "promoted": promoted,
        "checkpoint_hash": hash_path(project.adapter_dir),
        "eval_split_hash": hash_path(project.split_file("eval")),
        "baseline_hash": hash_path(project.metrics_dir / "baseline-examples.jsonl"),
        "eval_examples_hash": hash_path(project.metrics_dir / "eval-examples.jsonl"),
        "model_identity": base_model.identity(ctx),
        "scoring": eval_scoring.fingerprint(ctx),
        "report": eval_report.REPORT,
        "plot": eval_report.PLOT,
        "judged_at": now(),
    }


def compare_all(base: dict[str, dict], cand: dict[str, dict], ev) -> dict[str, dict]:
    ids = sorted(base)
    out = {}
    for metric in ev.metrics:
        try:
            out[metric] = stats.compare(
                metric, [base[i].get(metric) for i in ids], [cand[i].get(metric) for i in ids],
                confidence=ev.confidence, resamples=ev.bootstrap_resamples, seed=ev.seed).to_dict()
        except ValueError:
            out[metric] = {"applicable": False, "n": 0}
    return out


def judge_promoted(project, champion: dict, cand: dict, ev, passed: bool, reason: str,
                   env_of: dict[str, str]) -> tuple[dict, bool, str]:
    if "skipped" in champion:
        return {**champion, "policy": ev.vs_promoted}, passed, reason
    promoted_rows = _rows(project.root / champion["examples"])
    if set(promoted_rows) != set(cand):
        raise FactoryError("E_VERDICT_STALE", f"the scores of promoted {champion['id']} are for "
                                              "other examples than the frozen eval split")
    metrics = compare_all(promoted_rows, cand, ev)
    ok, why = decide_promoted(metrics[ev.primary_metric], ev.primary_metric, ev.vs_promoted,
                              ev.min_delta, ev.promoted_tolerance, champion["id"])
    view = {**champion, "policy": ev.vs_promoted, "metrics": metrics, "passed": ok,
            "reason": why,
            "environments": eval_envs.per_env(promoted_rows, cand, env_of,
                                              partial(compare_all, ev=ev), ev.primary_metric,
                                              metrics)}
    if not passed:
        return view, False, reason
    return view, ok, reason.removesuffix(" passes") + (f", and {why}" if ok else f", but {why}")


def decide(metrics: dict, primary: str, min_delta: float,
           guards: dict[str, float]) -> tuple[bool, str]:
    p = metrics[primary]
    if not p.get("n"):
        return False, f"{primary} applies to none of the eval examples, so nothing can be judged"
    shown = describe(primary, p)
    if p["improvement"] < min_delta:
        return False, f"{shown} is below min_delta {min_delta}"
    if p["ci_low"] <= 0:
        return False, f"{shown}: the interval does not exclude no improvement"
    for metric, tolerance in guards.items():
        g = metrics[metric]
        if not g.get("n"):
            return False, f"{shown}, but guard {metric} applies to no eval example"
        if g["improvement"] < -tolerance:
            return False, (f"{shown}, but guard {metric} regressed by {-g['improvement']:.4g} "
                           f"(tolerance {tolerance})")
    return True, f"{shown} passes"


def decide_promoted(p: dict, primary: str, policy: str, min_delta: float, tolerance: float,
                    promo_id: str) -> tuple[bool, str]:
    if not p.get("n"):
        return False, f"{primary} cannot be compared with promoted {promo_id}"
    against = (f"promoted {promo_id} ({primary} {p['baseline']:.4g} → {p['candidate']:.4g}, "
               f"{p['improvement']:+.4g})")
    if policy == "better":
        if p["improvement"] < min_delta or p["ci_low"] <= 0:
            return False, f"it does not beat {against} by min_delta with confidence"
        return True, f"it beats {against}"
    if p["improvement"] < -tolerance:
        return False, f"it is worse than {against} beyond tolerance {tolerance}"
    return True, f"it is not worse than {against}"


def describe(metric: str, c: dict) -> str:
    return (f"{metric} {c['baseline']:.4g} → {c['candidate']:.4g} (improvement "
            f"{c['improvement']:+.4g}, {c['confidence']:.0%} CI [{c['ci_low']:+.4g}, "
            f"{c['ci_high']:+.4g}], n={c['n']})")


def _rows(path) -> dict[str, dict]:
    with open(path, encoding="utf-8") as fh:
        return {row["id"]: row for row in map(json.loads, fh)}
