"""Rewards: functions of an answer that a program can check or learn, no judge model needed.

One reward engine serves evaluation (a reward `r` is the metric `reward:r`) and, later, GRPO and
KTO labelling, so a model is trained and judged by the very same code. Each reward is built from
its entry under `rewards` in training-config.json and called as `reward(answer, context)`, where
context (`context_of`) holds the example's `reference` answer text, declared `tools`, `tests`,
the prompt `messages` and the record's `meta`. Built-in rewards return a score in [0, 1]: binary
ones 0 or 1, soft ones anything between; a user's `python` reward (or `command`, a program
the user names, fed the answer as data) returns any finite number.

Standard library only. Model-written code runs in `sandbox`, never in this process; a user's own
reward file (type python) is imported here, like any other code of the project.

    base        Reward, RewardError, project files     context     context_of, tests_of
    testrun     answer + tests in the sandbox          efficiency  short answers, few calls
    learned     logistic regression on labels          user        the user's python rewards
    command     the user's program, cached by input
    signals     combine, group_advantages, kto_labels
"""
from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Callable

from factory import toolcalls
# Modules, not their builder functions, so factory.rewards.learned stays the module.
from factory.rewards import command, efficiency, learned, sandbox, testrun, user
from factory.rewards.base import Reward, RewardError
from factory.rewards.context import context_of, tests_of
from factory.rewards.signals import combine, group_advantages, kto_labels

__all__ = ["Reward", "RewardError", "build", "combine", "context_of", "files_of", "for_trl",
           "group_advantages", "kto_labels", "preflight", "tests_of"]

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
    """1 when the answer's code runs to a zero exit status in the sandbox; when the context has
    `tests`, the code followed by those tests must run to the end and exit 0 (see testrun)."""
    timeout, memory = spec.get("timeout_s", 5.0), spec.get("memory_mb", 256)

    def reward(answer: str, context: dict) -> float:
        blocks = code_blocks(answer)
        if not blocks:
            return 0.0
        code, tests = "\n\n".join(blocks), context.get("tests")
        if tests:
            return float(testrun.passes(code, tests, timeout_s=timeout, memory_mb=memory))
        return float(sandbox.run_python(code, timeout_s=timeout, memory_mb=memory).ok)
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
    "syntax_valid": syntax_valid, "code_executes": code_executes,
    "tool_call_valid": tool_call_valid, "efficiency": efficiency.efficiency,
}
# Rewards that read a file of the project (by these fields of their entry) also get its root.
FILE_BUILDERS: dict[str, Callable[[dict, Path | None], Reward]] = {
    "learned": learned.learned, "python": user.python, "command": command.command,
}
FILE_FIELDS = ("file", "examples")


def build(specs: list[dict], *, root: Path | None = None) -> dict[str, Reward]:
    """Reward functions by name, from the config's `rewards` entries (already validated).

    `root` is the project directory: `file` and `examples` resolve inside it, and an entry that
    names a file cannot be built without it. Raises RewardError naming the reward.
    """
    built = {}
    for spec in specs:
        kind = spec["type"]
        if kind in FILE_BUILDERS:
            built[spec["name"]] = FILE_BUILDERS[kind](spec, root)
        elif kind in BUILDERS:
            built[spec["name"]] = BUILDERS[kind](spec)
        else:
            known = ", ".join(sorted([*BUILDERS, *FILE_BUILDERS]))
            raise RewardError(f"reward {spec['name']}: unknown type {kind!r} (known: {known})")
    return built


def files_of(specs: list[dict], root: Path | None = None) -> list[str]:
    """The project files the rewards read (project-relative, in order), so whatever fingerprints
    the rewards can hash their content too: editing a user reward changes scores.

    A `command` reward's program and the files its argv names can only be told from other
    arguments by looking at the project, so they are listed only when `root` is given (its
    `depends_on` always are)."""
    named = []
    for spec in specs:
        named += [spec[field] for field in FILE_FIELDS if spec.get(field)]
        if spec.get("type") == "command":
            named += command.files(spec, root) if root is not None else \
                list(spec.get("depends_on") or [])
    return named


# ------------------------------------------------------------------------------ TRL's interface

def for_trl(specs: list[dict], names: list[str] | None = None, *, root: Path | None = None,
            rows: list[dict] | None = None) -> tuple[list, list[float]]:
    """GRPOTrainer reward functions (each named for its reward, so TRL logs rewards/<name>/mean)
    and their weights, for the entries of `specs` named in `names` (all when None).

    `root` is the project directory (see `build`). `rows` are the training split's rows: a
    dataset handed to TRL keeps only flat columns, so given the rows, each completion's context
    is `context_of` the row whose `id` TRL passes back (its tests and metadata included);
    without them, or when the batch has no `id` column, the context comes from the columns.
    """
    chosen = [s for s in specs if names is None or s["name"] in names]
    built = build(chosen, root=root)
    by_id = {row["id"]: row for row in rows if "id" in row} if rows is not None else None
    return [_trl_reward(s["name"], built[s["name"]], by_id) for s in chosen], \
        [float(s.get("weight", 1.0)) for s in chosen]


def _trl_reward(name: str, reward: Reward, by_id: dict | None):
    def score(prompts, completions, **columns) -> list[float]:
        # TRL passes every dataset column (id, answer, tools, ...) as a list aligned with
        # completions, plus keywords of its own (trainer_state, ...), which are not rows' fields.
        return [float(reward(_text(c), context_of(_row(name, i, prompts, columns, by_id))))
                for i, c in enumerate(completions)]
    score.__name__ = name
    return score


def _row(name: str, i: int, prompts: list, columns: dict, by_id: dict | None) -> dict:
    ids = columns.get("id")
    if by_id is not None and ids is not None:
        if ids[i] not in by_id:
            raise RewardError(f"reward {name}: TRL passed row id {ids[i]!r}, which is not among "
                              f"the {len(by_id)} training rows given to for_trl")
        return by_id[ids[i]]
    row = {k: v[i] for k, v in columns.items()
           if isinstance(v, list) and len(v) == len(prompts)}
    return {**row, "prompt": prompts[i]}


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
    if "id" in row:  # so a reward built with the training rows finds its row
        columns["id"] = [row["id"]] * 2
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
