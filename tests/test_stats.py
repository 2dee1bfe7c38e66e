import random

from agents.evaluate import decide
from factory.stats import compare, paired_bootstrap


def metrics_for(base_em, cand_em, base_loss, cand_loss, seed=0):
    kw = {"confidence": 0.95, "resamples": 2000, "seed": seed}
    return {"exact_match": compare("exact_match", base_em, cand_em, **kw).to_dict(),
            "loss": compare("loss", base_loss, cand_loss, **kw).to_dict()}


def test_bootstrap_interval_covers_a_known_mean():
    rng = random.Random(3)
    values = [rng.gauss(0.5, 1.0) for _ in range(400)]
    low, high = paired_bootstrap(values, 0.95, 4000, seed=1)
    mean = sum(values) / len(values)
    assert low < mean < high
    assert 0.15 < high - low < 0.25  # about 2 * 1.96 / sqrt(400)


def test_clearly_better_candidate_passes():
    n = 60
    m = metrics_for([0.0] * n, [1.0] * 40 + [0.0] * 20, [6.0] * n, [0.5] * n)
    passed, reason = decide(m, "exact_match", 0.05, {"loss": 0.0})
    assert passed, reason
    assert m["exact_match"]["ci_low"] > 0.5


def test_tied_candidate_fails():
    rng = random.Random(5)
    base = [float(rng.random() < 0.5) for _ in range(60)]
    m = metrics_for(base, list(base), [1.0] * 60, [1.0] * 60)
    passed, reason = decide(m, "exact_match", 0.05, {"loss": 0.0})
    assert not passed and "below min_delta" in reason


def test_noisy_small_gain_is_not_enough():
    # Two more right than the baseline out of 60, with churn: improvement 0.033 < CI width.
    base = [1.0] * 20 + [0.0] * 40
    cand = [0.0] * 4 + [1.0] * 22 + [0.0] * 34
    m = metrics_for(base, cand, [1.0] * 60, [1.0] * 60)
    passed, reason = decide(m, "exact_match", 0.0, {})
    assert not passed and "interval does not exclude" in reason


def test_guard_regression_blocks_an_improvement():
    n = 60
    m = metrics_for([0.0] * n, [1.0] * 40 + [0.0] * 20, [1.0] * n, [1.5] * n)
    passed, reason = decide(m, "exact_match", 0.05, {"loss": 0.1})
    assert not passed and "guard loss regressed" in reason
    passed, _ = decide(m, "exact_match", 0.05, {"loss": 1.0})
    assert passed


def test_loss_orientation_lower_is_better():
    c = compare("loss", [2.0, 2.0, 2.0], [1.0, 1.0, 1.0], confidence=0.9, resamples=200, seed=0)
    assert c.improvement == 1.0 and c.ci_low == 1.0
