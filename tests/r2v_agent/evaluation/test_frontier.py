"""Frontiers at matched cost and their areas, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from r2v_agent.evaluation.frontier import Episode, FrontierPoint, frontier_area, matched_cost


def point(method: str, outcomes: list[tuple[bool, int]], steps: int = 4) -> FrontierPoint:
    """One episode per game g0, g1, ... (perturbation seed 1): (success, escalations)."""
    return FrontierPoint(
        method,
        {(1, g): Episode(f"g{g}", ok, calls, steps) for g, (ok, calls) in enumerate(outcomes)},
    )


SLM = point("slm", [(False, 0), (False, 0)])
LLM = point("llm", [(True, 4), (True, 4)])
ENTROPY = point("entropy@0.5", [(True, 1), (False, 1)])  # share 0.25, success 0.5
R2V = point("r2v", [(True, 1), (True, 1)])  # share 0.25, success 1.0


def test_matched_cost_by_hand() -> None:
    m = matched_cost(R2V, [ENTROPY], slm=SLM, llm=LLM, baseline="entropy", n_resamples=200)
    assert (m.episodes, m.games, m.point_share, m.point_success) == (2, 2, 0.25, 1.0)
    # frontier (0, 0) - (0.25, 0.5) - (1, 1): success 1.0 first at share 1.0 (LLM-only)
    assert m.share_at_point_success.value == 1.0 and m.share_note == "measured: llm"
    assert m.share_ratio.value == 0.25
    # at share 0.25 the entropy point itself: success 0.5, R2V 0.5 higher
    assert m.success_at_point_share.value == 0.5 and m.success_note == "measured: entropy@0.5"
    assert m.success_gap.value == 0.5
    for estimate in (m.share_ratio, m.success_gap):
        assert estimate.ci_low <= estimate.value <= estimate.ci_high


def test_interpolation_between_points_by_hand() -> None:
    # entropy at share 0.5 succeeds on one game of two; R2V succeeds on both at share 0.25
    entropy = point("entropy@0.3", [(True, 2), (False, 2)])
    m = matched_cost(R2V, [entropy], slm=SLM, llm=LLM, baseline="entropy", n_resamples=50)
    # success 1.0 is reached at LLM-only: share 1.0; at share 0.25 the line from (0, 0) to
    # (0.5, 0.5) gives 0.25, so R2V is 0.75 higher
    assert m.share_at_point_success.value == 1.0
    assert m.success_at_point_share.value == pytest.approx(0.25)
    assert m.success_gap.value == pytest.approx(0.75)
    assert m.success_note.startswith("interpolated: slm to entropy@0.3, 50.0 share points apart")
    assert "not a matched comparison" in m.success_note


def test_identical_games_give_a_zero_width_ci() -> None:
    # every game alike: any draw of games gives the same values
    same = [(True, 1)] * 4
    r2v = point("r2v", same)
    entropy = point("entropy@0.5", [(False, 2)] * 4)
    m = matched_cost(
        r2v,
        [entropy],
        slm=point("slm", [(False, 0)] * 4),
        llm=point("llm", [(True, 4)] * 4),
        baseline="entropy",
        n_resamples=100,
    )
    for estimate in (m.share_at_point_success, m.share_ratio, m.success_gap):
        assert estimate.ci_low == estimate.value == estimate.ci_high


def test_a_frontier_that_never_reaches_r2v_has_infinite_share() -> None:
    m = matched_cost(R2V, [ENTROPY], slm=SLM, llm=None, baseline="entropy", n_resamples=50)
    assert math.isinf(m.share_at_point_success.value) and m.share_note == "never reached"
    assert m.share_ratio.value == 0.0


def test_only_episodes_every_point_played_count() -> None:
    extra = FrontierPoint("r2v", {**R2V.episodes, (2, 0): Episode("g0", False, 4, 4)})
    m = matched_cost(extra, [ENTROPY], slm=SLM, llm=LLM, baseline="entropy", n_resamples=50)
    assert (m.episodes, m.point_success) == (2, 1.0)  # the seed-2 episode is R2V's alone
    with pytest.raises(ValueError, match="share no episode"):
        matched_cost(
            point("r2v", []), [ENTROPY], slm=SLM, llm=LLM, baseline="entropy", n_resamples=5
        )


def test_frontier_area_by_hand() -> None:
    result = frontier_area({"entropy": [ENTROPY], "r2v": [R2V]}, slm=SLM, llm=LLM, n_resamples=200)
    # (0,0)-(0.25,0.5)-(1,1): 0.25 * 0.25 + 0.75 * 0.75 = 0.625; (0,0)-(0.25,1)-(1,1): 0.875
    assert result.areas["entropy"].value == pytest.approx(0.625)
    assert result.areas["r2v"].value == pytest.approx(0.875)
    diff = result.difference("r2v", "entropy")
    assert diff.value == pytest.approx(0.25)
    assert diff.ci_low <= diff.value <= diff.ci_high
    assert (result.episodes, result.games) == (2, 2)
