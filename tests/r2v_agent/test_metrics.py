"""Each metric against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from r2v_agent import metrics


def test_brier_by_hand() -> None:
    # (0.9-1)^2 + (0.2-0)^2 + (0.6-1)^2 + (0.5-0)^2 = 0.01 + 0.04 + 0.16 + 0.25 = 0.46 -> /4
    assert metrics.brier([0.9, 0.2, 0.6, 0.5], [1, 0, 1, 0]) == pytest.approx(0.115)


def test_ece_and_bins_by_hand() -> None:
    p = [0.05, 0.15, 0.15, 0.85, 0.95]
    y = [0, 0, 1, 1, 1]
    bins = metrics.reliability_bins(p, y, n_bins=10)
    assert [(b.count, round(b.mean_predicted, 3), b.observed_rate) for b in bins] == [
        (1, 0.05, 0.0),
        (2, 0.15, 0.5),
        (1, 0.85, 1.0),
        (1, 0.95, 1.0),
    ]
    # |0.05-0|*1 + |0.15-0.5|*2 + |0.85-1|*1 + |0.95-1|*1 = 0.05+0.7+0.15+0.05 = 0.95 -> /5
    assert metrics.ece(p, y) == pytest.approx(0.19)
    # p = 1.0 falls in the last bin, not past it
    assert metrics.reliability_bins([1.0], [1])[0].upper == 1.0


def test_auroc_by_hand() -> None:
    # positives 0.8, 0.4; negatives 0.5, 0.1: pairs won 1 (0.8>0.5), 1 (0.8>0.1), 0, 1 -> 3/4
    assert metrics.auroc([0.8, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)
    # a tie counts one half
    assert metrics.auroc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert math.isnan(metrics.auroc([0.1, 0.2], [1, 1]))


def test_cvar_by_hand() -> None:
    losses = [0.1, 0.9, 0.3, 0.5, 0.7]
    assert metrics.cvar(losses, 0.4) == pytest.approx((0.9 + 0.7) / 2)  # worst 2 of 5
    assert metrics.cvar(losses, 1.0) == pytest.approx(0.5)  # the mean
    assert metrics.cvar(losses, 0.01) == pytest.approx(0.9)  # the max
    with pytest.raises(ValueError, match="alpha"):
        metrics.cvar(losses, 0.0)


def test_bootstrap_ci_contains_mean_and_narrows() -> None:
    values = [1.0] * 30 + [0.0] * 70
    mean, low, high = metrics.bootstrap_ci(values, seed=1)
    assert mean == pytest.approx(0.3)
    assert low < 0.3 < high
    # binomial standard error sqrt(.3*.7/100) = 0.046: the 95% interval is about +-0.09
    assert 0.06 < (high - low) / 2 < 0.12
    _, low4, high4 = metrics.bootstrap_ci(values * 4, seed=1)
    assert high4 - low4 < (high - low) * 0.7


def test_mcnemar_exact_and_chi2_by_hand() -> None:
    # discordant: A-only 6, B-only 1 -> exact two-sided p = 2 * P(X <= 1 | n=7) = 2 * 8/128
    a = [True] * 6 + [False] * 1 + [True] * 5
    b = [False] * 6 + [True] * 1 + [True] * 5
    result = metrics.mcnemar(a, b)
    assert (result.only_a, result.only_b, result.exact) == (6, 1, True)
    assert result.p_value == pytest.approx(16 / 128)
    # 30 vs 10 discordant: chi2 = (|30-10|-1)^2/40 = 9.025, p = 0.00266
    a2 = [True] * 30 + [False] * 10
    b2 = [False] * 30 + [True] * 10
    big = metrics.mcnemar(a2, b2)
    assert big.statistic == pytest.approx(9.025)
    assert big.p_value == pytest.approx(0.002663, abs=2e-5)
    assert metrics.mcnemar([True], [True]).p_value == 1.0


def test_area_under_curve_by_hand() -> None:
    # unsorted input; trapezoids: (0.5-0)*(0.2+0.6)/2 + (1-0.5)*(0.6+1)/2 = 0.2 + 0.4
    assert metrics.area_under_curve([1.0, 0.0, 0.5], [1.0, 0.2, 0.6]) == pytest.approx(0.6)
    assert metrics.area_under_curve(np.array([0.3]), np.array([0.5])) == 0.0


def test_cluster_bootstrap_with_one_episode_per_cluster_is_the_plain_bootstrap() -> None:
    values = [1, 0, 1, 1, 0, 1, 1, 1]
    plain = metrics.bootstrap_ci(values, n_resamples=500, seed=3)
    clustered = metrics.cluster_bootstrap_ci(
        values, list(range(len(values))), n_resamples=500, seed=3
    )
    assert clustered == pytest.approx(plain)


def test_cluster_bootstrap_widens_with_correlated_episodes() -> None:
    # 10 games, 5 won: each game's 5 perturbation seeds share its outcome
    values = [float(g < 5) for g in range(10) for _ in range(5)]
    games = [g for g in range(10) for _ in range(5)]
    mean, low, high = metrics.cluster_bootstrap_ci(values, games, seed=0)
    _, plain_low, plain_high = metrics.bootstrap_ci(values, seed=0)
    assert mean == 0.5
    # 10 independent units, not 50: the interval is about sqrt(5) = 2.2x as wide
    assert (high - low) > 1.8 * (plain_high - plain_low)
    # a cluster's mean counts by its episodes: (2 + 0 + 1) / 4
    assert metrics.cluster_bootstrap_ci([1, 1, 0, 1], ["a", "a", "b", "c"])[0] == 0.75


def test_paired_cluster_test_by_hand() -> None:
    # three games, A wins every pair: d = (1, 1, 1); of 8 sign patterns 2 reach |3|
    result = metrics.paired_cluster_test([1, 1, 1], [0, 0, 0], ["x", "y", "z"])
    assert result.exact and result.clusters == 3 and result.pairs == 3
    assert result.difference == 1.0 and result.p_value == pytest.approx(2 / 8)
    # two of A's wins in one game: d = (2, 0, 1); |+-2 +-0 +-1| = 3 in 4 of 8 patterns
    a, b, games = [1, 1, 0, 1], [0, 0, 0, 0], ["g1", "g1", "g2", "g3"]
    clustered = metrics.paired_cluster_test(a, b, games)
    assert clustered.p_value == pytest.approx(4 / 8) and clustered.difference == 0.75
    # per episode, McNemar sees 3 discordant pairs all one way: p = 2 / 8
    assert metrics.mcnemar([bool(x) for x in a], [bool(x) for x in b]).p_value == 0.25
    # ties within a game cancel: d = (1 - 1) = 0 gives no evidence
    tied = metrics.paired_cluster_test([1, 0], [0, 1], ["g", "g"])
    assert tied.difference == 0.0 and tied.p_value == 1.0


def test_paired_cluster_test_monte_carlo_and_errors() -> None:
    games = list(range(20))
    result = metrics.paired_cluster_test([1] * 20, [0] * 20, games, n_resamples=2000)
    assert not result.exact
    # all 2^20 patterns but two have |sum| < 20: p is the observed pattern's own 1 / 2001
    assert result.p_value == pytest.approx(1 / 2001, abs=2 / 2001)
    assert result.ci_low == result.ci_high == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        metrics.paired_cluster_test([1, 0], [1], [0, 1])
    with pytest.raises(ValueError, match="cluster labels"):
        metrics.cluster_bootstrap_ci([1, 0], [0])
