"""Verifiable rewards: functions of an answer that a program can check, no judge model needed.

One reward engine serves evaluation (a reward `r` is the metric `reward:r`) and, later, GRPO and
KTO labelling, so a model is trained and judged by the very same code. Each reward is built from
its entry under `rewards` in training-config.json and called as `reward(answer, context)`, where
context holds the example's `reference` answer text and declared `tools`. It returns a score in
[0, 1]: binary rewards give 0 or 1, soft ones anything between.

Standard library only (code runs in `sandbox`, never in this process).
"""
from __future__ import annotations

import ast
import json
import math
import re
from typing import Callable

from factory import toolcalls
from factory.rewards import sandbox

Reward = Callable[[str, dict], float]

_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
PYTHON_TAGS = {"", "py", "python", "python3"}


def code_blocks(answer: str) -> list[str]:
    """Python code in an answer: its fenced blocks, or the whole answer when it has none."""
    blocks = [body for tag, body in _CODE_BLOCK.findall(answer) if tag.lower() in PYTHON_TAGS]
    return blocks if blocks else ([answer] if answer.strip() else [])


def reference_match(spec: dict) -> Reward:
    """Task completion: 1 when the answer equals the reference (calls as calls, text normalised)."""
    from factory.metrics import normalized

    def reward(answer: str, context: dict) -> float:
        reference = context.get("reference") or ""
        expected = toolcalls.extract(reference)
        if expected.calls and expected.error is None:
            got = toolcalls.extract(answer)
            return float(got.error is None and toolcalls.same_calls(got.calls, expected.calls))
        return float(bool(reference) and normalized(answer) == normalized(reference))
    return reward


def format_regex(spec: dict) -> Reward:
    pattern = re.compile(spec["pattern"], re.DOTALL)
    match = pattern.fullmatch if spec.get("fullmatch") else pattern.search

    def reward(answer: str, context: dict) -> float:
        return float(match(answer) is not None)
    return reward


def json_valid(spec: dict) -> Reward:
    def reward(answer: str, context: dict) -> float:
        text = answer.strip()
        fenced = _CODE_BLOCK.fullmatch(text)
        try:
            json.loads(fenced.group(2) if fenced else text)
        except ValueError:
            return 0.0
        return 1.0
    return reward


def syntax_valid(spec: dict) -> Reward:
    def reward(answer: str, context: dict) -> float:
        blocks = code_blocks(answer)
        if not blocks:
            return 0.0
        try:
            for block in blocks:
                ast.parse(block)
        except (SyntaxError, ValueError):
            return 0.0
        return 1.0
    return reward


def code_executes(spec: dict) -> Reward:
    """1 when the answer's code runs to a zero exit status in the sandbox."""
    timeout, memory = spec.get("timeout_s", 5.0), spec.get("memory_mb", 256)

    def reward(answer: str, context: dict) -> float:
        blocks = code_blocks(answer)
        if not blocks:
            return 0.0
        return float(sandbox.run_python("\n\n".join(blocks), timeout_s=timeout,
                                        memory_mb=memory).ok)
    return reward


def tool_call_valid(spec: dict) -> Reward:
    """The share of the answer's calls whose arguments fit the declared tools (0 without calls)."""
    def reward(answer: str, context: dict) -> float:
        got = toolcalls.extract(answer)
        if got.error or not got.calls:
            return 0.0
        schemas = toolcalls.declared(context.get("tools"))
        good = sum(not toolcalls.argument_errors(c, schemas) for c in got.calls)
        return good / len(got.calls)
    return reward


BUILDERS: dict[str, Callable[[dict], Reward]] = {
    "reference_match": reference_match, "format_regex": format_regex, "json_valid": json_valid,
    "syntax_valid": syntax_valid,
    "code_executes": code_executes, "tool_call_valid": tool_call_valid,
}


def build(specs: list[dict]) -> dict[str, Reward]:
    """Reward functions by name, from the config's `rewards` entries (already validated)."""
    return {spec["name"]: BUILDERS[spec["type"]](spec) for spec in specs}


# ------------------------------------------------------------------------------ TRL's interface

def for_trl(specs: list[dict], names: list[str] | None = None) -> tuple[list, list[float]]:
    """GRPOTrainer reward functions (each named for its reward, so TRL logs rewards/<name>/mean)
    and their weights, for the entries of `specs` named in `names` (all when None)."""
    chosen = [s for s in specs if names is None or s["name"] in names]
    built = build(chosen)
    return [_trl_reward(s["name"], built[s["name"]]) for s in chosen], \
        [float(s.get("weight", 1.0)) for s in chosen]


def _trl_reward(name: str, reward: Reward):
    def score(prompts, completions, **columns) -> list[float]:
        # TRL passes every dataset column (answer, tools, ...) as a list aligned with completions.
        answers = columns.get("answer") or [None] * len(completions)
        tools = columns.get("tools") or [None] * len(completions)
        return [float(reward(_text(c), {"reference": a or "", "tools": t}))
                for c, a, t in zip(completions, answers, tools)]
    score.__name__ = name
    return score


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: a list of messages
        return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")
    return str(completion)


def preflight(funcs: list, row: dict) -> None:
    """Call every reward on a two-completion batch shaped exactly as the trainer will pass it;
    raise ValueError unless each returns one finite float per completion."""
    answer = row.get("answer")
    completions = [[{"role": "assistant", "content": answer or "x"}],
                   [{"role": "assistant", "content": ""}]]
    columns = {k: [row.get(k)] * 2 for k in ("answer", "tools")}
    for func in funcs:
        try:
            scores = func([row["prompt"]] * 2, completions, completion_ids=[[0], [0]], **columns)
        except Exception as exc:  # a reward may raise anything; the message names it
            raise ValueError(f"reward {func.__name__} raised {type(exc).__name__}: {exc}") \
                from exc
        if (not isinstance(scores, list) or len(scores) != 2
                or not all(isinstance(v, float) and math.isfinite(v) for v in scores)):
            raise ValueError(f"reward {func.__name__} must return one finite float per "
                             f"completion, returned {scores!r}")
