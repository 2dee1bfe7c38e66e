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
    "format_regex": format_regex, "json_valid": json_valid, "syntax_valid": syntax_valid,
    "code_executes": code_executes, "tool_call_valid": tool_call_valid,
}


def build(specs: list[dict]) -> dict[str, Reward]:
    """Reward functions by name, from the config's `rewards` entries (already validated)."""
    return {spec["name"]: BUILDERS[spec["type"]](spec) for spec in specs}
