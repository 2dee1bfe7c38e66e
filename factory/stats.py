"""Paired comparison of two models scored on the same examples.

The improvement of a metric is oriented so that positive always means "the candidate is better"
(for loss, base minus candidate). Its uncertainty comes from a seeded paired bootstrap: resampling
examples, not models, because both models answered the very same examples.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

HIGHER_IS_BETTER = {"exact_match": True, "loss": False}


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: float
    candidate: float
    improvement: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "candidate": self.candidate,
                "improvement": self.improvement, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "confidence": self.confidence, "n": self.n,
                "higher_is_better": HIGHER_IS_BETTER[self.metric]}


def paired_bootstrap(improvements: list[float], confidence: float, resamples: int,
                     seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of per-example improvements."""
    n = len(improvements)
    rng = random.Random(seed)
    means = sorted(sum(improvements[rng.randrange(n)] for _ in range(n)) / n
                   for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1.0 - tail) * resamples) - 1)]
    return low, high


def compare(metric: str, base: list[float], cand: list[float], *, confidence: float,
            resamples: int, seed: int) -> Comparison:
    pairs = [(b, c) for b, c in zip(base, cand) if not (math.isnan(b) or math.isnan(c))]
    if not pairs:
        raise ValueError(f"no comparable examples for {metric}")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    improvements = [sign * (c - b) for b, c in pairs]
    low, high = paired_bootstrap(improvements, confidence, resamples, seed)
    n = len(pairs)
    return Comparison(metric, sum(b for b, _ in pairs) / n, sum(c for _, c in pairs) / n,
                      sum(improvements) / n, low, high, confidence, n)
