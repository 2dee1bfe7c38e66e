"""What the baseline and evaluate gates share: the scoring script's run config and its fingerprint.

Scores are comparable only when they come from the same eval split, model settings, generation
budget, seed, metric list, reward definitions and script; the fingerprint hashes exactly those, so a
change to any of them makes the baseline (and any stored promotion scores) stale.
"""
from __future__ import annotations

from importlib.resources import files

from agents import base_model, runner
from agents.gate import GateContext
from factory.hashing import hash_bytes, hash_json, hash_path

TEMPLATE = "score"
EVAL_FILE = "data/splits/eval.jsonl"
# The code behind a score besides the script itself: a fix in any of it re-scores the baseline.
SCORING_CODE = ("runtime/scoring.py", "envs.py", "metrics.py", "toolcalls.py", "funcgemma.py",
                "methods.py", "rewards/__init__.py", "rewards/sandbox.py", "rewards/_guard.py",
                "rewards/base.py", "rewards/context.py", "rewards/testrun.py",
                "rewards/efficiency.py", "rewards/learned.py", "rewards/user.py",
                "rewards/signals.py", "rewards/command.py")


def settings(ctx: GateContext) -> dict:
    cfg = ctx.config
    return {"model": base_model.script_view(ctx), "eval_file": EVAL_FILE,
            "max_new_tokens": cfg.eval.max_new_tokens, "seed": cfg.eval.seed,
            "metrics": list(cfg.eval.metrics),
            "rewards": [r.model_dump() for r in cfg.rewards]}


def fingerprint(ctx: GateContext) -> str:
    view = settings(ctx)
    view["model"] = {k: v for k, v in view["model"].items() if k != "source"}
    code = {name: hash_bytes(files("factory").joinpath(name).read_bytes())
            for name in SCORING_CODE}
    return hash_json({**view, "model_identity": base_model.identity(ctx),
                      "script": runner.script_hash(TEMPLATE), "code": code,
                      "reward_files": reward_files(ctx)})


def reward_files(ctx: GateContext) -> dict[str, str | None]:
    """Content hash of every project file a reward reads (a python reward's code, a learned
    reward's labels, a command reward's program and the files its argv names or it
    `depends_on`): editing one changes the scores as surely as editing the config does.
    A missing file hashes to None; building the reward then says what is missing."""
    from factory.rewards import files_of  # stdlib only, but only scoring gates need it

    specs = [r.model_dump() for r in ctx.config.rewards]
    return {name: hash_path(ctx.project.inside(name), ctx.cache)
            for name in files_of(specs, ctx.project.root)}


def write(ctx: GateContext, gate: str, runs: list[dict]) -> None:
    runner.write_script(ctx, gate, {"gate": gate, **settings(ctx), "runs": runs},
                        template=TEMPLATE)
