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


# --- paired tests and Beta posteriors against values worked out by hand ---------------------

import math

import pytest

from factory import stats


def test_sign_test_exact_values():
    assert stats.sign_test(9, 1) == pytest.approx(22 / 1024)  # 2 * (1 + 10) / 2^10
    assert stats.sign_test(5, 5) == 1.0
    assert stats.sign_test(0, 0) == 1.0
    assert stats.sign_test(0, 12) == pytest.approx(2 / 4096)


def test_wilcoxon_exact_and_approximate():
    assert stats.wilcoxon([float(i) for i in range(1, 11)]) == pytest.approx(2 / 1024)
    # A textbook sample (15 differences, two negative): exact two-sided p = 0.04126.
    sample = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    assert stats.wilcoxon(sample) == pytest.approx(0.041260, abs=1e-5)
    assert stats.wilcoxon([0.0] * 10) == 1.0
    # Pass/fail differences are all ties: the tie-corrected normal approximation applies.
    # 30 wins, 0 losses: z = (232.5 - 0.5) / sqrt(2325 ... ) is huge, p far below 1e-5.
    assert stats.wilcoxon([1.0] * 30 + [0.0] * 30) < 1e-5
    balanced = stats.wilcoxon([1.0] * 10 + [-1.0] * 10)
    assert balanced == pytest.approx(1.0)


def test_regularized_beta_matches_the_binomial_identity():
    # For integers, I_x(a, b) = P(Binomial(a + b - 1, x) >= a).
    for a, b, x in [(2, 3, 0.3), (5, 5, 0.5), (1, 7, 0.1), (12, 3, 0.8), (40, 21, 0.6)]:
        n = a + b - 1
        expected = math.fsum(math.comb(n, j) * x ** j * (1 - x) ** (n - j)
                             for j in range(a, n + 1))
        assert stats.regularized_beta(x, a, b) == pytest.approx(expected, abs=1e-10)


def test_beta_interval_quantiles():
    assert stats.beta_quantile(0.3, 1, 1) == pytest.approx(0.3)
    assert stats.beta_quantile(0.25, 2, 1) == pytest.approx(0.5)  # CDF x^2
    mean, low, high = stats.beta_interval(40, 60, 0.95)
    assert mean == pytest.approx(41 / 62)
    assert stats.regularized_beta(low, 41, 21) == pytest.approx(0.025, abs=1e-9)
    assert stats.regularized_beta(high, 41, 21) == pytest.approx(0.975, abs=1e-9)


def test_pass_rate_metrics_carry_posteriors_and_soft_ones_do_not():
    kw = {"confidence": 0.95, "resamples": 500, "seed": 0}
    em = stats.compare("exact_match", [0.0] * 50, [1.0] * 30 + [0.0] * 20, **kw).to_dict()
    assert em["bayes"]["p_candidate_better"] > 0.999
    assert em["bayes"]["difference"][0] > 0.4
    assert (em["wins"], em["losses"], em["ties"]) == (30, 0, 20)
    loss = stats.compare("loss", [2.0] * 5, [1.5, 1.0, 2.5, 1.0, 1.0], **kw).to_dict()
    assert "bayes" not in loss and loss["wins"] == 4 and loss["losses"] == 1


def test_missing_values_are_left_out_of_both_sides():
    c = stats.compare("tool_name", [None, 0.0, 0.0, float("nan")], [1.0, 1.0, 1.0, 1.0],
                      confidence=0.9, resamples=200, seed=0)
    assert c.n == 2 and c.improvement == 1.0
    with pytest.raises(ValueError):
        stats.compare("tool_name", [None, None], [1.0, 1.0], confidence=0.9, resamples=100,
                      seed=0)


def test_bootstrap_is_seeded():
    values = [random.Random(1).gauss(0, 1) for _ in range(50)]
    assert paired_bootstrap(values, 0.9, 1000, 7) == paired_bootstrap(values, 0.9, 1000, 7)


# --- the rules against the promoted model ---------------------------------------------------

from agents.evaluate import decide_promoted  # noqa: E402


def promoted_view(base, cand):
    return compare("exact_match", base, cand, confidence=0.95, resamples=2000, seed=0).to_dict()


def test_not_worse_than_promoted_allows_a_tie_but_not_a_drop():
    same = promoted_view([1.0] * 40 + [0.0] * 20, [1.0] * 40 + [0.0] * 20)
    ok, why = decide_promoted(same, "exact_match", "not_worse", 0.05, 0.0, "v1-abc")
    assert ok and "not worse than promoted v1-abc" in why
    drop = promoted_view([1.0] * 40 + [0.0] * 20, [1.0] * 36 + [0.0] * 24)
    ok, why = decide_promoted(drop, "exact_match", "not_worse", 0.05, 0.0, "v1-abc")
    assert not ok and "worse than promoted v1-abc" in why
    ok, _ = decide_promoted(drop, "exact_match", "not_worse", 0.05, 0.1, "v1-abc")
    assert ok, "a drop within promoted_tolerance is allowed"


def test_better_than_promoted_needs_a_confident_gain():
    same = promoted_view([1.0] * 40 + [0.0] * 20, [1.0] * 40 + [0.0] * 20)
    ok, why = decide_promoted(same, "exact_match", "better", 0.05, 0.0, "v1-abc")
    assert not ok and "does not beat" in why
    gain = promoted_view([1.0] * 20 + [0.0] * 40, [1.0] * 50 + [0.0] * 10)
    assert decide_promoted(gain, "exact_match", "better", 0.05, 0.0, "v1-abc")[0]


def test_a_primary_metric_that_applies_nowhere_cannot_pass():
    passed, reason = decide({"tool_name": {"applicable": False, "n": 0}}, "tool_name", 0.05, {})
    assert not passed and "applies to none" in reason
