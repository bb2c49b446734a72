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
