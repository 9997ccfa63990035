"""Intervals that respect the design: Newcombe's paired difference (against published values), the crossed
replicates × positions interval (against the two-way ANOVA by hand and the one-sample t), the clustered rate,
and a seeded simulation of their coverage on clustered synthetic data."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from pxp.experiment import stats


def test_newcombe_paired_matches_published_values():
    # Fagerland, Lydersen & Laake (2017), "Statistical Analysis of Contingency Tables", ch. 8, Cavo et al.'s
    # (2012) table: Newcombe square-and-add -0.0621 (95% CI -0.1186 to -0.0046), as their R package prints it
    lo, hi = stats.newcombe_paired(59, 6, 16, 80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)


def test_newcombe_paired_without_correlation_is_square_and_add():
    # phi = 0 when 0 <= both * neither - only_a * only_b <= n / 2 (here 4 - 3 = 1 <= 4)
    l1, u1 = stats.wilson(5, 8)
    l2, u2 = stats.wilson(3, 8)
    d = 5 / 8 - 3 / 8
    expected = (d - math.hypot(5 / 8 - l1, u2 - 3 / 8), d + math.hypot(u1 - 5 / 8, 3 / 8 - l2))
    assert stats.newcombe_paired(2, 3, 1, 2) == pytest.approx(expected)
    lo, hi = stats.newcombe_paired(10, 0, 0, 10)  # every pair concordant: 0, straddled symmetrically
    assert -1 <= lo < 0 < hi <= 1 and hi == pytest.approx(-lo)
    assert math.isnan(stats.newcombe_paired(0, 0, 0, 0)[0])


def test_crossed_mean_is_the_two_way_anova_by_hand():
    y = np.array([[1.0, 2.0], [3.0, 5.0]])  # replicates × positions
    # grand 2.75; MS_rep = 2 * (1.25² * 2) / 1 = 6.25; MS_pos = 2 * (0.75² * 2) / 1 = 2.25
    var = (6.25 + 2.25) / 4
    df = var ** 2 / ((6.25 / 4) ** 2 + (2.25 / 4) ** 2)
    got = stats.crossed_mean(y)
    assert got["estimate"] == 2.75 and got["se"] == pytest.approx(math.sqrt(var)) and got["df"] == pytest.approx(df)
    half = st.t.ppf(0.975, df) * math.sqrt(var)
    assert got["ci"] == pytest.approx([2.75 - half, 2.75 + half])


def test_one_replicate_is_the_one_sample_t_over_positions():
    rng = np.random.default_rng(3)
    means = rng.random(12)
    got = stats.crossed_mean(means[None, :])
    lo, hi = st.t.interval(0.95, len(means) - 1, loc=means.mean(), scale=st.sem(means))
    assert got["ci"] == pytest.approx([lo, hi]) and got["df"] == pytest.approx(11)


def test_pooled_difference_uses_cell_means_and_keeps_positions_every_replicate_has():
    records = [(0, "p1", 1, 0), (0, "p1", 1, 1), (0, "p2", 0, 0), (1, "p1", 1, 0), (1, "p2", 1, 0), (1, "p3", 1, 0)]
    got = stats.pooled_difference(records)  # p3 is missing from replicate 0: left out
    assert got["pairs"] == 5 and got["replicates"] == 2 and got["clusters"] == 2
    assert got["estimate"] == pytest.approx(np.mean([0.5, 0.0, 1.0, 1.0]))


def test_clustered_rate_widens_with_clustering_and_is_not_degenerate():
    clustered = [(0, c, float(c < 5)) for c in range(10) for _ in range(4)]  # each position all-or-nothing
    independent = [(0, i, float(i % 2 == 0)) for i in range(40)]
    wide, plain = stats.clustered_rate(clustered), stats.clustered_rate(independent)
    assert wide["rate"] == plain["rate"] == 0.5
    assert wide["deff"] == pytest.approx(4 * 10 / 9)  # 4 identical episodes per position, 10 positions
    assert wide["ci"][1] - wide["ci"][0] > 1.8 * (plain["ci"][1] - plain["ci"][0])
    assert plain["deff"] == pytest.approx(40 / 39)  # the sample variance of 0/1 against p(1 - p)
    assert plain["ci"] == pytest.approx(list(stats.wilson(19.5, 39, st.t.ppf(0.975, 39))))
    none = stats.clustered_rate([(0, c, 0.0) for c in range(10) for _ in range(2)])
    assert none["ci"][0] == 0.0 and 0 < none["ci"][1] < 0.3


def _simulated_design(rng, replicates=3, positions=20, episodes=2, seed_sd=0.08, position_sd=0.1):
    """PARA and ACT success over replicates × positions × episodes: each training seed shifts a policy's rate,
    each position shifts both (ACT half as much, plus its own part); uniform effects that keep every
    probability inside [0, 1], so the true rates are exactly 0.6 and 0.4 and the difference 0.2."""
    h = math.sqrt(3)
    seed_a, seed_b = (rng.uniform(-h, h, replicates) * seed_sd for _ in range(2))
    shared, own = rng.uniform(-h, h, positions) * position_sd, rng.uniform(-h, h, positions) * position_sd / 2
    pa = 0.6 + seed_a[:, None] + shared[None, :]
    pb = 0.4 + seed_b[:, None] + shared[None, :] / 2 + own[None, :]
    ya = rng.random((replicates, positions, episodes)) < pa[..., None]
    yb = rng.random((replicates, positions, episodes)) < pb[..., None]
    return [(r, c, int(ya[r, c, e]), int(yb[r, c, e]))
            for r in range(replicates) for c in range(positions) for e in range(episodes)]


def test_pooled_intervals_cover_at_least_95_percent_on_clustered_data():
    """K = 3 training seeds × 20 positions × 2 episodes, 2,000 simulated studies (fixed seed: deterministic).
    The crossed interval is conservative by construction (docs/evaluation.md), so coverage must reach 95% up
    to three Monte-Carlo standard errors, and stay below 99% (not uselessly wide); the plain Wilson interval
    over pooled episodes, which ignores the clustering, must fall short, or the check proves nothing."""
    rng = np.random.default_rng(20261204)
    studies = 2000
    tol = 3 * math.sqrt(0.95 * 0.05 / studies)  # ≈ 0.015
    diff_hits = rate_hits = naive_hits = 0
    for _ in range(studies):
        records = _simulated_design(rng)
        lo, hi = stats.pooled_difference(records)["ci"]
        diff_hits += lo <= 0.2 <= hi
        lo, hi = stats.clustered_rate((r, c, a) for r, c, a, _ in records)["ci"]
        rate_hits += lo <= 0.6 <= hi
        lo, hi = stats.wilson(sum(a for *_, a, _ in records), len(records))
        naive_hits += lo <= 0.6 <= hi
    diff_cov, rate_cov, naive_cov = diff_hits / studies, rate_hits / studies, naive_hits / studies
    assert 0.95 - tol <= diff_cov <= 0.99, diff_cov
    assert 0.95 - tol <= rate_cov <= 0.99, rate_cov
    assert naive_cov < 0.95 - tol, naive_cov


def test_pooled_difference_without_spread_is_not_a_point():
    same = [(r, c, 0, 0) for r in range(2) for c in range(3)]  # every cell 0 − 0: nothing to estimate a spread from
    got = stats.pooled_difference(same)
    assert got["estimate"] == 0 and got["ci"] == pytest.approx(list(stats.newcombe_paired(0, 0, 0, 6)))
    assert got["ci"][0] < 0 < got["ci"][1]
