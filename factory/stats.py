"""Paired comparison of two models scored on the same examples.

The improvement of a metric is oriented so that positive always means "the candidate is better"
(for loss, base minus candidate). Three views of the same pairs, each answering its own question:

  * a seeded paired bootstrap interval of the mean improvement (resampling examples, not models,
    because both models answered the very same examples): is the gain larger than noise?
  * an exact sign test and a Wilcoxon signed-rank test: are wins more common than losses?
  * for pass/fail metrics, Beta(1 + passes, 1 + fails) posteriors of each model's pass rate, their
    credible intervals, and the posterior probability that the candidate's rate is higher.

On top of a comparison, `significance` says whether the candidate is better, worse or neither
(the per-environment outcome), and `dominance` whether it is worse nowhere and better somewhere.

Standard library only: the verdict is given by the factory process, which never imports torch.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

from factory.metrics import higher_is_better

POSTERIOR_DRAWS = 20000


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
    wins: int
    losses: int
    ties: int
    p_sign: float
    p_wilcoxon: float
    higher_is_better: bool
    bayes: dict | None = None  # pass/fail metrics only

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["metric"]
        if out["bayes"] is None:
            del out["bayes"]
        return out


def compare(metric: str, base: list[float | None], cand: list[float | None], *,
            confidence: float, resamples: int, seed: int) -> Comparison:
    """Compare per-example scores; an example missing (None/NaN) on either side is left out."""
    pairs = [(b, c) for b, c in zip(base, cand) if _present(b) and _present(c)]
    if not pairs:
        raise ValueError(f"no comparable examples for {metric}")
    better = higher_is_better(metric)
    sign = 1.0 if better else -1.0
    improvements = [sign * (c - b) for b, c in pairs]
    low, high = paired_bootstrap(improvements, confidence, resamples, seed)
    n = len(pairs)
    wins = sum(d > 0 for d in improvements)
    losses = sum(d < 0 for d in improvements)
    bayes = None
    if all(v in (0.0, 1.0) for pair in pairs for v in pair):
        bayes = pass_rates([b for b, _ in pairs], [c for _, c in pairs], confidence, seed)
    return Comparison(metric, sum(b for b, _ in pairs) / n, sum(c for _, c in pairs) / n,
                      sum(improvements) / n, low, high, confidence, n, wins, losses,
                      n - wins - losses, sign_test(wins, losses), wilcoxon(improvements),
                      better, bayes)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------- bootstrap

def paired_bootstrap(improvements: list[float], confidence: float, resamples: int,
                     seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of per-example improvements."""
    n = len(improvements)
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(improvements, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1.0 - tail) * resamples) - 1)]
    return low, high


# ------------------------------------------------------------------------------ paired tests

def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided p-value of wins vs losses under "either is equally likely" (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def wilcoxon(differences: list[float]) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test (zero differences dropped).

    Exact for up to 25 non-zero differences without ties; otherwise the normal approximation with
    the tie correction and a continuity correction.
    """
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    if n == 0:
        return 1.0
    ranks = _average_ranks([abs(d) for d in nonzero])
    w_plus = math.fsum(r for r, d in zip(ranks, nonzero) if d > 0)
    tied = len(set(abs(d) for d in nonzero)) < n
    if n <= 25 and not tied:
        return _wilcoxon_exact(n, round(w_plus))
    mean = n * (n + 1) / 4.0
    counts: dict[float, int] = {}
    for d in nonzero:
        counts[abs(d)] = counts.get(abs(d), 0) + 1
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - math.fsum(
        t ** 3 - t for t in counts.values()) / 48.0
    if variance <= 0:
        return 1.0
    z = max(0.0, abs(w_plus - mean) - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(z / math.sqrt(2.0)))


def _average_ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _wilcoxon_exact(n: int, w_plus: int) -> float:
    # counts[s] = how many of the 2^n sign patterns give a positive-rank sum of s.
    top = n * (n + 1) // 2
    counts = [1] + [0] * top
    for rank in range(1, n + 1):
        for s in range(top, rank - 1, -1):
            counts[s] += counts[s - rank]
    k = min(w_plus, top - w_plus)
    return min(1.0, 2.0 * sum(counts[: k + 1]) / 2.0 ** n)


# ---------------------------------------------------------------------------- Beta posteriors

def pass_rates(base: list[float], cand: list[float], confidence: float, seed: int) -> dict:
    """Beta(1+passes, 1+fails) posterior of each model's pass rate and of the difference."""
    n = len(base)
    kb, kc = int(sum(base)), int(sum(cand))
    rng = random.Random(seed)
    diffs = sorted(rng.betavariate(1 + kc, 1 + n - kc) - rng.betavariate(1 + kb, 1 + n - kb)
                   for _ in range(POSTERIOR_DRAWS))
    tail = (1.0 - confidence) / 2.0
    return {
        "baseline": beta_interval(kb, n, confidence),
        "candidate": beta_interval(kc, n, confidence),
        "difference": [diffs[math.floor(tail * POSTERIOR_DRAWS)],
                       diffs[math.ceil((1.0 - tail) * POSTERIOR_DRAWS) - 1]],
        "p_candidate_better": sum(d > 0 for d in diffs) / POSTERIOR_DRAWS,
    }


def beta_interval(passes: int, n: int, confidence: float) -> list[float]:
    """[posterior mean, low, high] of a pass rate under a uniform prior (equal-tailed)."""
    a, b = 1 + passes, 1 + n - passes
    tail = (1.0 - confidence) / 2.0
    return [a / (a + b), beta_quantile(tail, a, b), beta_quantile(1.0 - tail, a, b)]


def beta_quantile(q: float, a: float, b: float) -> float:
    """Inverse of the regularized incomplete beta function, by bisection (60 halvings)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if regularized_beta(mid, a, b) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz), using the symmetry for x > mean."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - regularized_beta(1.0 - x, b, a)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return math.exp(log_front) * fraction / a


# ------------------------------------------------------------------- significance, dominance

BETTER, WORSE, UNCLEAR = "better", "worse", "unclear"


def difference_interval(c: dict) -> tuple[list[float], str]:
    """The interval of a comparison's improvement (positive = candidate better) that decides
    whether it is significant, and which interval it is.

    Pass/fail metrics use the Beta credible interval of the difference in pass rates: with the
    few examples one environment may have, the bootstrap of a handful of 0/1 differences
    collapses to a point (two losses out of two give [-1, -1]), the posterior does not. Other
    metrics use the paired bootstrap interval, as the overall verdict does. Both are at
    eval.confidence.
    """
    bayes = c.get("bayes")
    if bayes:
        low, high = bayes["difference"]
        if not c["higher_is_better"]:  # the difference is candidate minus base, in raw units
            low, high = -high, -low
        return [low, high], "beta"
    return [c["ci_low"], c["ci_high"]], "bootstrap"


def significance(c: dict) -> str:
    """BETTER or WORSE when the improvement's interval excludes zero; UNCLEAR otherwise, and
    where the metric applies to no example."""
    if not c.get("n"):
        return UNCLEAR
    (low, high), _ = difference_interval(c)
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return UNCLEAR


def dominance(outcomes: dict[str, str]) -> dict:
    """Pareto dominance across environments: the candidate dominates when it is significantly
    worse in none and significantly better in at least one."""
    split = {kind: sorted(env for env, o in outcomes.items() if o == kind)
             for kind in (BETTER, WORSE, UNCLEAR)}
    return {"dominates": not split[WORSE] and bool(split[BETTER]), **split}
