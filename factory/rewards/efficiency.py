"""The efficiency reward: short answers and few tool calls score high."""
from __future__ import annotations

from factory import toolcalls
from factory.rewards.base import Reward, RewardError


def efficiency(spec: dict) -> Reward:
    """Score = length factor × calls factor, in (0, 1]; an empty answer scores 0.

    Lengths are counted in whitespace-separated tokens (`len(text.split())`), so the rule does not
    depend on any tokenizer.

    length factor, with a reference answer: min(1, ref_len / answer_len) — as long as the
        reference or shorter scores 1, twice as long 0.5.
    length factor, without one (a prompt-only GRPO row): min(1, budget_tokens / answer_len),
        with `budget_tokens` from the config; a reward without it refuses such a row.
    calls factor, when the answer makes tool calls (read by factory.toolcalls.extract):
        min(1, max(1, ref_calls) / answer_calls), where ref_calls counts the reference's calls
        (0 without a reference). One call is always allowed; each call beyond what the task
        needs divides the score. An answer without calls has calls factor 1.
    """
    name, budget = spec["name"], spec.get("budget_tokens")

    def reward(answer: str, context: dict) -> float:
        answer_len = len(answer.split())
        if not answer_len:
            return 0.0
        reference = (context.get("reference") or "").strip()
        if reference:
            allowed = len(reference.split())
        elif budget is not None:
            allowed = budget
        else:
            raise RewardError(f"reward {name} (efficiency): the example has no reference answer "
                              f"to compare lengths with; set budget_tokens on the reward")
        score = min(1.0, allowed / answer_len)
        calls = len(toolcalls.extract(answer).calls)
        if calls:
            wanted = len(toolcalls.extract(reference).calls) if reference else 0
            score *= min(1.0, max(1, wanted) / calls)
        return score
    return reward
