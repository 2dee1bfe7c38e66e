"""The context a reward sees besides the answer, built the same way from every kind of row.

Evaluation reads frozen eval rows (`messages` ending with the reference answer); GRPO reads
training rows (`prompt` and the reference as `answer`). Both go through `context_of`, so a reward
sees the same keys whether it judges or trains:

    reference  the reference answer as text ("" when the row has none)
    tools      the declared tools, or None
    tests      Python test code for code_executes, or None
    messages   the prompt: every message before the answer
    meta       the raw record's other fields, as the format gate kept them
    id         the row's id (None when it has none), for rewards that report per example
"""
from __future__ import annotations

from factory.rewards.base import RewardError


def context_of(row: dict) -> dict:
    messages = row.get("messages") or []
    ends_with_answer = bool(messages) and messages[-1].get("role") == "assistant"
    if "prompt" in row:
        prompt = _as_messages(row["prompt"])
    else:
        prompt = messages[:-1] if ends_with_answer else list(messages)
    reference = row.get("answer")
    if reference is None and ends_with_answer:
        from factory.methods import answer_text  # the very rule the eval metrics use

        reference = answer_text(messages[-1]).strip()
    return {"reference": reference or "", "tools": row.get("tools"), "tests": tests_of(row),
            "messages": prompt, "meta": row.get("meta") or {}, "id": row.get("id")}


def tests_of(row: dict) -> str | None:
    """A row's test code: a top-level `tests` field, or `tests` kept in its metadata (where the
    format gate puts every field of a raw record it does not read). A list of strings (one
    assert each, as MBPP writes them) is joined into lines."""
    meta = row.get("meta")
    tests = row.get("tests")
    if tests is None and isinstance(meta, dict):
        tests = meta.get("tests")
    if tests is None or isinstance(tests, str):
        return tests or None
    if isinstance(tests, list) and all(isinstance(t, str) for t in tests):
        return "\n".join(tests) or None
    raise RewardError(f"row {row.get('id', '?')}: tests must be Python code (a string, or a list "
                     f"of strings), found {type(tests).__name__}")


def _as_messages(prompt) -> list[dict]:
    # A plain-text prompt (TRL's standard format) is one user turn.
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt or [])
