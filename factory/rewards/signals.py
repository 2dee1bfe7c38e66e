"""From reward scores to training signals: one combined score, GRPO advantages, KTO labels.

Pure functions on plain numbers, so what a trainer does with rewards can be checked (and
reproduced by hand) without a trainer.
"""
from __future__ import annotations

import math


def combine(scores: dict[str, float], weights: dict[str, float]) -> float:
    """The weighted mean sum(w[n] * s[n]) / sum(w[n]) over the rewards named in `scores`.

    Every scored reward needs a weight (a missing one is a bug in the caller, not a default);
    weights of rewards not scored are ignored.
    """
    if not scores:
        raise ValueError("combine: no scores to combine")
    missing = sorted(set(scores) - set(weights))
    if missing:
        raise ValueError(f"combine: no weight for reward {', '.join(missing)}")
    total = sum(weights[name] for name in scores)
    if total <= 0:
        raise ValueError(f"combine: the weights of {', '.join(scores)} sum to {total}; "
                         f"at least one must be positive")
    return sum(weights[name] * value for name, value in scores.items()) / total


def group_advantages(values: list[float], group_size: int) -> list[float]:
    """GRPO advantages: each value against the other completions of its prompt.

    `values` holds consecutive groups of `group_size` (the completions of one prompt); each
    becomes (value - group mean) / (group std + 1e-4), with the sample standard deviation
    (n - 1 in the denominator), as TRL's GRPOTrainer scales by group. A group whose values are all
    equal teaches nothing and gets zeros (so does a group of one).
    """
    if group_size < 1:
        raise ValueError(f"group_advantages: group_size must be at least 1, found {group_size}")
    if len(values) % group_size:
        raise ValueError(f"group_advantages: {len(values)} values do not form whole groups of "
                         f"{group_size}")
    out: list[float] = []
    for start in range(0, len(values), group_size):
        out.extend(_standardised(values[start:start + group_size]))
    return out


def _standardised(group: list[float]) -> list[float]:
    if all(v == group[0] for v in group):
        return [0.0] * len(group)
    mean = sum(group) / len(group)
    std = math.sqrt(sum((v - mean) ** 2 for v in group) / (len(group) - 1))
    return [(v - mean) / (std + 1e-4) for v in group]


def kto_labels(values: list[float], threshold: float) -> list[bool]:
    """KTO's desirable/undesirable labels: a score at or above `threshold` is desirable (the same
    rule the format gate applies to rewarded records with data.label_threshold)."""
    return [v >= threshold for v in values]
