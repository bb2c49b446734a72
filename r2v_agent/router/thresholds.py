"""Thresholds for a share of steps, placed between scores, never among near-equal ones.

A router escalates a step when ``p_fail > tau``. A learned router can give many different steps
almost the same p_fail (a flat region of the MLP, sharpened by calibration): on the TerminalBench
families 28 % of R2V's router decisions (every one a submit) scored within 1.4e-6 of each other
near 0.01785, its budget tau fell among them, and float rounding decided which of them
escalated -- sweep thresholds 1e-6 apart gave 26 % and 46 % LLM share. Here scores whose gap is
below ``resolution`` (relative) form one *level*: a threshold lies in a gap between levels, so
it escalates a whole level or none of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_RESOLUTION", "ScoreLevel", "score_levels", "threshold_for_share"]

#: Scores closer than this fraction of their size are one level (see the module docstring).
DEFAULT_RESOLUTION = 1e-4


@dataclass(frozen=True)
class ScoreLevel:
    """Scores that a threshold cannot tell apart: the lowest, the highest and how many."""

    low: float
    high: float
    count: int


def _sorted_scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("no scores to place a threshold among")
    if not np.isfinite(x).all():
        raise ValueError("scores must be finite numbers")
    return x


def _apart(low: np.ndarray, high: np.ndarray, resolution: float) -> np.ndarray:
    """Which neighbouring scores lie far enough apart for a threshold between them."""
    return (high - low) > resolution * np.maximum(np.abs(low), np.abs(high))


def score_levels(
    scores: Sequence[float] | np.ndarray, resolution: float = DEFAULT_RESOLUTION
) -> list[ScoreLevel]:
    """The scores grouped into levels, lowest first: neighbours (in sorted order) closer than
    ``resolution`` times their size join one level."""
    x = _sorted_scores(scores)
    cuts = np.flatnonzero(_apart(x[:-1], x[1:], resolution)) + 1
    return [
        ScoreLevel(float(part[0]), float(part[-1]), int(part.size)) for part in np.split(x, cuts)
    ]


def _inside(low: float, high: float, decimals: int | None) -> float | None:
    """A threshold strictly between ``low`` and ``high``: the midpoint, or with ``decimals`` the
    shortest number of at most that many decimals in the gap's middle half (None if none fits)."""
    mid = (low + high) / 2
    if decimals is None:
        return mid
    quarter = (high - low) / 4
    for digits in range(decimals + 1):
        tau = round(mid, digits)
        if low + quarter <= tau <= high - quarter:
            return tau
    return None


def threshold_for_share(
    scores: Sequence[float] | np.ndarray,
    share: float,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    decimals: int | None = None,
    top: float = 1.0,
    at_most: bool = False,
) -> float:
    """The tau at which ``scores > tau`` escalates the share of ``scores`` closest to ``share``
    (with ``at_most``: the largest share not above it, as a budget wants).

    tau lies in a gap between :func:`score_levels`, so tied and near-tied scores are escalated
    together; of two shares equally close, the smaller wins. ``decimals`` makes tau a number of
    at most that many decimals (a sweep names its points by tau); a gap too narrow for one is
    skipped. ``top`` (a score no step exceeds: 1 for probabilities) is tau for "escalate none".
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    x = _sorted_scores(scores)
    levels = score_levels(x, resolution)
    candidates = [max(top, levels[-1].high)]  # escalate none
    for below, above in itertools.pairwise(levels):
        tau = _inside(below.high, above.low, decimals)
        if tau is not None:
            candidates.append(tau)
    if levels[0].low > 0:  # escalate all: anything in [0, lowest score)
        candidates.append(levels[0].low / 2 if decimals is None else 0.0)
    taus = np.asarray(candidates)
    shares = 1.0 - np.searchsorted(x, taus, side="right") / x.size  # share of scores > tau
    gap = np.abs(shares - share)
    if at_most:  # a share over the budget is never closest ("escalate none" always fits)
        gap[shares > share + 1e-12] = np.inf
    closest = np.flatnonzero(gap <= gap.min() + 1e-12)
    return float(taus[closest].max())  # of equally close shares, fewer escalations
