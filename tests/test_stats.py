"""Scoring against values computed by hand (statsmodels is not a dependency)."""
import math

import numpy as np
import pytest

from pxp.experiment import stats
from pxp.plugins.scenes.libero.outcomes import OUTCOMES  # the built-in scene's PLACE / GRASP / MISS


def _wilson_by_hand(k, n, z=1.959963984540054):
    # Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


@pytest.mark.parametrize(
    "k,n,expected",
    [
        # statsmodels proportion_confint(k, n, method="wilson") values
        (54, 100, (0.442649, 0.634392)),  # the DESIGN's example: 54% → about [44, 63]
        (1, 100, (0.001767, 0.054486)),  # ACT left→right: 1% is not 0%, but not much more than 5% either
        (1, 5, (0.036224, 0.624465)),
        (0, 10, (0.0, 0.277533)),
        (10, 10, (0.722467, 1.0)),
    ],
)
def test_wilson_known_values(k, n, expected):
    lo, hi = stats.wilson(k, n)
    assert lo == pytest.approx(expected[0], abs=1e-6)
    assert hi == pytest.approx(expected[1], abs=1e-6)
    hand = _wilson_by_hand(k, n)
    assert lo == pytest.approx(max(0, hand[0]), abs=1e-12) and hi == pytest.approx(min(1, hand[1]), abs=1e-12)


def test_wilson_empty_is_nan():
    assert all(math.isnan(x) for x in stats.wilson(0, 0))


@pytest.mark.parametrize(
    "b,c,p",
    [
        (10, 2, 158 / 4096),  # 2·P(X ≤ 2), X ~ Bin(12, ½) = 2·(1 + 12 + 66)/4096
        (0, 6, 2 / 64),  # 2·(½)^6
        (5, 5, 1.0),
        (0, 0, 1.0),  # no discordant pairs: no evidence either way
        (3, 1, 0.625),  # 2·(1 + 4)/16
    ],
)
def test_mcnemar_exact_known_values(b, c, p):
    assert stats.mcnemar_exact(b, c) == pytest.approx(p, abs=1e-12)
    assert stats.mcnemar_exact(c, b) == pytest.approx(p, abs=1e-12)  # two-sided: symmetric


def test_summary_counts_rates_and_errors():
    # PARA 2D-pt at 1 demo in the seed: 3 PLACE, 18 GRASP → 12% weighted.
    outcomes = ["PLACE"] * 3 + ["GRASP"] * 18 + ["MISS"] * 79 + [None, None]
    s = stats.summarize_outcomes(outcomes, OUTCOMES)
    assert s["n"] == 100 and s["errors"] == 2
    assert s["counts"] == {"PLACE": 3, "GRASP": 18, "MISS": 79}
    assert s["place"]["rate"] == pytest.approx(0.03)
    assert s["grasp"]["rate"] == pytest.approx(0.18)
    assert s["grasped_or_better"]["rate"] == pytest.approx(0.21)
    assert s["weighted"]["score"] == pytest.approx(0.12)
    assert s["place"]["ci"] == pytest.approx(list(stats.wilson(3, 100)))
    lo, hi = s["weighted"]["ci"]
    assert lo < 0.12 < hi


def test_unknown_outcome_is_an_error():
    with pytest.raises(ValueError, match="unknown outcomes"):
        stats.summarize_outcomes(["PLACE", "SUCCESS"], OUTCOMES)


def test_weighted_interval_reduces_to_wilson_without_grasps():
    scores = [1.0] * 54 + [0.0] * 46
    assert stats.weighted_interval(scores) == pytest.approx(stats.wilson(54, 100))


def test_weighted_interval_not_degenerate_when_all_miss():
    lo, hi = stats.weighted_interval([0.0] * 20)
    assert lo == 0.0 and hi > 0.1  # 0/20 still allows a ~16% score
    assert stats.bootstrap_interval([0.0] * 20) == (0.0, 0.0)  # why the bootstrap is not the primary


def test_weighted_interval_covers_at_least_95_percent():
    """Monte Carlo coverage check: the conservative interval must cover the true weighted mean."""
    rng = np.random.default_rng(0)
    probs = np.array([0.2, 0.5, 0.3])  # PLACE, GRASP, MISS
    values = np.array([1.0, 0.5, 0.0])
    truth = float(probs @ values)
    hits = 0
    trials = 2000
    for _ in range(trials):
        s = values[rng.choice(3, size=60, p=probs)]
        lo, hi = stats.weighted_interval(s)
        hits += lo <= truth <= hi
    assert hits / trials >= 0.95


def test_bootstrap_is_reproducible():
    s = [1.0, 0.5, 0.0, 0.0, 1.0, 0.5, 0.5, 0.0]
    assert stats.bootstrap_interval(s) == stats.bootstrap_interval(s)


def test_paired_mcnemar_uses_only_shared_valid_keys():
    a = {("c1", 0): "PLACE", ("c1", 1): "PLACE", ("c2", 0): "MISS", ("c3", 0): "PLACE", ("c4", 0): None}
    b = {("c1", 0): "MISS", ("c1", 1): "GRASP", ("c2", 0): "PLACE", ("c4", 0): "PLACE"}
    t = stats.paired_mcnemar(a, b, OUTCOMES)
    # shared valid keys: c1/0, c1/1, c2/0 (c3 missing from b, c4 crashed in a)
    assert {k: t[k] for k in ("pairs", "only_a", "only_b")} == {"pairs": 3, "only_a": 2, "only_b": 1}
    assert t["p_value"] == pytest.approx(1.0) and t["diff"] == pytest.approx(1 / 3)
    assert t["diff_ci"] == pytest.approx(list(stats.newcombe_paired(0, 2, 1, 0)))
    tests = stats.all_paired_tests({"para": a, "act": b}, OUTCOMES)
    assert tests[0]["a"] == "act" and tests[0]["only_a"] == 1


def test_z95_is_the_normal_quantile():
    from scipy import stats as st

    from pxp.experiment.stats import Z95

    assert Z95 == float(st.norm.isf(0.025))
