"""Thresholds for a share of steps: between levels of near-equal scores, never inside one."""

from __future__ import annotations

import numpy as np
import pytest

from r2v_agent.router.thresholds import ScoreLevel, score_levels, threshold_for_share


def _plateau() -> np.ndarray:
    """The TerminalBench families' shape: 40 spread scores and 12 steps within 2e-6 of 0.01785
    (the values R2V's test steps had there)."""
    spread = np.linspace(0.0001, 0.9, 40)
    spread = spread[np.abs(spread - 0.01785) > 0.001]
    plateau = (
        0.01785 + np.array([-7.3, -1.6, -0.8, 0.0, 0.2, 0.5, 0.9, 1.4, 2.0, 3.1, 4.3, 5.0]) * 1e-7
    )
    return np.concatenate([spread, plateau])


def test_levels_group_near_equal_scores() -> None:
    levels = score_levels([0.5, 0.1, 0.10000001, 0.3, 0.1])
    assert levels == [
        ScoreLevel(0.1, 0.10000001, 3),
        ScoreLevel(0.3, 0.3, 1),
        ScoreLevel(0.5, 0.5, 1),
    ]
    # A gap of 1 % of the score is a gap; 1e-6 of it is not.
    assert len(score_levels([1.0, 1.01])) == 2
    assert len(score_levels([1.0, 1.000001])) == 1
    assert len(score_levels([1.0, 1.000001], resolution=1e-9)) == 2


def test_a_threshold_escalates_a_whole_level_or_none_of_it() -> None:
    scores = _plateau()
    level = next(lv for lv in score_levels(scores) if lv.count == 12)
    share_above = float((scores > level.high).mean())
    share_with = float((scores >= level.low).mean())
    # Every target share, with and without the 6-decimal names of sweep points.
    for share in np.linspace(0.0, 1.0, 41):
        for decimals in (None, 6):
            tau = threshold_for_share(scores, share, decimals=decimals)
            inside = (scores >= level.low) & (scores <= level.high)
            escalated = scores[inside] > tau
            assert escalated.all() or not escalated.any(), (share, decimals, tau)
    # A target between the two reachable shares takes the closer one.
    middle = (share_above + share_with) / 2
    tau = threshold_for_share(scores, middle - 0.01)
    assert float((scores > tau).mean()) == pytest.approx(share_above)
    tau = threshold_for_share(scores, middle + 0.01)
    assert float((scores > tau).mean()) == pytest.approx(share_with)
    # The old rule (a quantile rounded to 6 decimals) split the level: the bug this fixes.
    quantile = round(float(np.quantile(scores, 1.0 - middle)), 6)
    split = scores[(scores >= level.low) & (scores <= level.high)] > quantile
    assert split.any() and not split.all()


def test_distinct_scores_give_the_share_asked_for() -> None:
    scores = np.linspace(0.05, 0.95, 20)
    for share in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0):
        tau = threshold_for_share(scores, share)
        assert float((scores > tau).mean()) == pytest.approx(share)
        named = threshold_for_share(scores, share, decimals=6)
        assert named == round(named, 6)
        assert float((scores > named).mean()) == pytest.approx(share)
    # Saturated ties (7 of 10 at 1.0): the closest share that the ties allow.
    tied = np.array([0.1, 0.2, 0.3] + [1.0] * 7)
    assert float((tied > threshold_for_share(tied, 0.4)).mean()) == pytest.approx(0.7)
    # Of two shares equally close (0 and 0.7 for 0.35), the smaller.
    assert float((tied > threshold_for_share(tied, 0.35)).mean()) == 0.0
    # Scores too close for 6 decimals cannot be split by a named threshold.
    close = np.array([0.1000001, 0.1000004, 0.1000007, 0.5])
    named = threshold_for_share(close, 0.5, decimals=6)
    assert float((close > named).mean()) in (0.25, 1.0)


def test_a_budget_takes_the_largest_share_within_it() -> None:
    # The router54 shape: one level of 30 % of the steps just above a budget's reach.
    scores = np.concatenate(
        [np.linspace(0.01, 0.1, 24), np.full(30, 0.13284), np.linspace(0.2, 0.9, 46)]
    )
    # Closest to 0.62 is 0.76 (the level escalated); within 0.62, 0.46 (the level kept).
    assert float((scores > threshold_for_share(scores, 0.62)).mean()) == pytest.approx(0.76)
    capped = threshold_for_share(scores, 0.62, at_most=True)
    assert float((scores > capped).mean()) == pytest.approx(0.46)
    # Within the budget exactly, and none when even the top level is over it.
    assert float((scores > threshold_for_share(scores, 0.46, at_most=True)).mean()) == 0.46
    top_heavy = np.array([0.1, 0.2] + [0.9] * 8)
    assert float((top_heavy > threshold_for_share(top_heavy, 0.5, at_most=True)).mean()) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = np.round(rng.random(rng.integers(1, 40)), int(rng.integers(1, 3)))
        budget = float(rng.random())
        assert float((x > threshold_for_share(x, budget, at_most=True)).mean()) <= budget + 1e-12


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no scores"):
        threshold_for_share([], 0.5)
    with pytest.raises(ValueError, match="finite"):
        threshold_for_share([0.1, float("nan")], 0.5)
    with pytest.raises(ValueError, match="share"):
        threshold_for_share([0.1, 0.2], 1.5)
