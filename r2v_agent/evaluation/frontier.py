"""Success-vs-LLM-share frontiers compared at matched cost, with CIs that resample games.

A router's frontier is its measured operating points (one per threshold) with SLM-only (share 0)
and LLM-only (share 1) as its ends, joined by straight lines. Three comparisons of an operating
point (R2V's tau) with a baseline's frontier, or of frontiers:

- the LLM share the frontier needs to reach the point's success, and the point's share over it
  (with the roles swapped: R2V's frontier at an entropy point's success);
- the frontier's success at the point's LLM share, and the point's success minus it;
- the area under each frontier over [0, 1], and the difference of the areas.

Each estimate comes with a percentile bootstrap CI that resamples **games** (a game's
perturbation seeds share its difficulty): one draw of games serves every point of both frontiers,
so the comparison stays paired. Only the episodes (perturbation seed, game) that every point of
a comparison played are used, so points measured on more seeds do not weigh in unevenly.

An interpolated value is only a matched comparison when a measured point lies close to it: the
notes say which measured points each value comes from and how far apart they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from r2v_agent import metrics

__all__ = [
    "Episode",
    "FrontierPoint",
    "Estimate",
    "MatchedCost",
    "CurvePoint",
    "MATCH_WINDOW",
    "share_at_success",
    "success_at_share",
    "matched_cost",
    "frontier_area",
    "FrontierAreas",
]

#: A comparison at matched cost needs a measured point of the baseline this close (in LLM share)
#: to the share it is made at.
MATCH_WINDOW = 0.05

#: A point of a router's success-vs-LLM-share curve: (LLM share, success, method).
CurvePoint = tuple[float, float, str]


@dataclass(frozen=True)
class Episode:
    """What the frontier needs of one evaluation episode."""

    game: str
    success: bool
    escalations: int
    steps: int


@dataclass(frozen=True)
class FrontierPoint:
    """One measured operating point: a method's episodes keyed by (perturbation seed, game)."""

    method: str
    episodes: dict[Any, Episode]


@dataclass(frozen=True)
class Estimate:
    """A value on all games and its 95% bootstrap CI over games. ``undefined`` is the share of
    resamples in which the value did not exist (e.g. the frontier never reached the target);
    those resamples count as +inf in the CI of a share, so a wide gap shows as an open end."""

    value: float
    ci_low: float
    ci_high: float
    undefined: float = 0.0


@dataclass(frozen=True)
class MatchedCost:
    """An operating point against a baseline's frontier, on the episodes they all share."""

    baseline: str  #: whose frontier the point is compared with
    episodes: int
    games: int
    point_share: float  #: the operating point's LLM share (on the shared episodes)
    point_success: float
    #: the baseline's LLM share at the point's success (+inf: its frontier never gets there)
    share_at_point_success: Estimate
    share_note: str
    #: the point's share over that share (0: the baseline never gets there; inf: it needs none)
    share_ratio: Estimate
    #: the baseline's success at the point's LLM share
    success_at_point_share: Estimate
    success_note: str
    #: the point's success minus the baseline's at the point's share
    success_gap: Estimate


def _between(a: str, b: str, s0: float, s1: float, at: float) -> str:
    """Where a value interpolated at share ``at`` between measured points ``a`` (share ``s0``)
    and ``b`` (``s1``) comes from; a matched comparison needs a measured point within
    ``MATCH_WINDOW`` of ``at``."""
    near, name = min((at - s0, a), (s1 - at, b))
    note = (
        f"interpolated: {a} to {b}, {100 * (s1 - s0):.1f} share points apart, "
        f"{100 * near:.1f} from {name}"
    )
    if near > MATCH_WINDOW:
        note += (
            f" -- not a matched comparison: no measured point within "
            f"{100 * MATCH_WINDOW:.0f} share points; add sweep points there"
        )
    return note


def share_at_success(curve: list[CurvePoint], target: float) -> tuple[float, str] | None:
    """The smallest LLM share at which the (linearly interpolated) curve reaches ``target``,
    and the measured points it comes from -- an interpolation towards LLM-only is a guess, and
    the reader should see when the sweep has no point near R2V."""
    points = sorted(curve)
    for (s0, y0, a), (s1, y1, b) in zip(points, points[1:], strict=False):
        if y0 >= target:
            return s0, f"measured: {a}"
        if y1 == target:
            return s1, f"measured: {b}"
        if y1 > target:
            share = s0 + (s1 - s0) * (target - y0) / (y1 - y0)
            return share, _between(a, b, s0, s1, share)
    if points and points[-1][1] >= target:
        return points[-1][0], f"measured: {points[-1][2]}"
    return None


def success_at_share(curve: list[CurvePoint], share: float) -> tuple[float, str] | None:
    """The curve's (linearly interpolated) success at ``share``, and the points it comes from."""
    points = sorted(curve)
    for s, y, a in points:
        if s == share:
            return y, f"measured: {a}"
    for (s0, y0, a), (s1, y1, b) in zip(points, points[1:], strict=False):
        if s0 < share < s1:
            return y0 + (y1 - y0) * (share - s0) / (s1 - s0), _between(a, b, s0, s1, share)
    return None


class _Resampled:
    """Every point's success and LLM share on all games (row 0) and on ``n_resamples`` draws of
    games with replacement (rows 1..), the same draws for every point."""

    def __init__(self, points: Sequence[FrontierPoint], *, n_resamples: int, seed: int) -> None:
        keys = set.intersection(*(set(p.episodes) for p in points)) if points else set()
        if not keys:
            raise ValueError("the points share no episode")
        keys_sorted = sorted(keys, key=str)
        games = sorted({points[0].episodes[k].game for k in keys_sorted})
        index = {g: i for i, g in enumerate(games)}
        n_games = len(games)
        success = np.zeros((len(points), n_games))
        escalations = np.zeros((len(points), n_games))
        steps = np.zeros((len(points), n_games))
        count = np.zeros(n_games)
        for k in keys_sorted:
            count[index[points[0].episodes[k].game]] += 1
        for p, point in enumerate(points):
            for k in keys_sorted:
                episode = point.episodes[k]
                g = index[episode.game]
                success[p, g] += float(episode.success)
                escalations[p, g] += episode.escalations
                steps[p, g] += episode.steps
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, n_games, size=(n_resamples, n_games))
        weights = np.zeros((n_resamples + 1, n_games))
        weights[0] = 1.0
        np.add.at(weights, (np.repeat(np.arange(1, n_resamples + 1), n_games), picks.ravel()), 1.0)
        self.methods = [p.method for p in points]
        self.episodes = len(keys_sorted)
        self.games = n_games
        self.success = (weights @ success.T) / (weights @ count)[:, None]
        self.share = (weights @ escalations.T) / np.maximum(weights @ steps.T, 1.0)

    def curve(self, row: int, columns: Sequence[int]) -> list[CurvePoint]:
        return [
            (float(self.share[row, c]), float(self.success[row, c]), self.methods[c])
            for c in columns
        ]


def _estimate(values: np.ndarray) -> Estimate:
    """Row 0 is the value on all games; the rest are resamples (NaN: undefined there)."""
    rest = values[1:]
    undefined = float(np.mean(np.isnan(rest))) if rest.size else 0.0
    defined = rest[~np.isnan(rest)]
    if defined.size == 0:
        return Estimate(float(values[0]), float("nan"), float("nan"), undefined)
    # inverted_cdf: a quantile that falls on +inf is +inf, never inf - inf
    low, high = np.quantile(defined, [0.025, 0.975], method="inverted_cdf")
    return Estimate(float(values[0]), float(low), float(high), undefined)


def matched_cost(
    point: FrontierPoint,
    sweep: Sequence[FrontierPoint],
    *,
    slm: FrontierPoint | None,
    llm: FrontierPoint | None,
    baseline: str,
    n_resamples: int = 2000,
    seed: int = 0,
) -> MatchedCost:
    """One operating point (R2V's tau; or, the other way round, an entropy point) against
    ``sweep``, the measured points of the ``baseline`` frontier (SLM-only and LLM-only, when
    given, are its ends), paired over the episodes all of them played."""
    ends = [p for p in (slm, llm) if p is not None]
    data = _Resampled([point, *sweep, *ends], n_resamples=n_resamples, seed=seed)
    columns = list(range(1, data.success.shape[1]))
    rows = data.success.shape[0]
    share = np.full(rows, np.nan)
    ratio = np.full(rows, np.nan)
    success = np.full(rows, np.nan)
    gap = np.full(rows, np.nan)
    share_note = success_note = "no sweep point"
    for row in range(rows):
        curve = data.curve(row, columns)
        point_share, point_success = float(data.share[row, 0]), float(data.success[row, 0])
        matched = share_at_success(curve, point_success)
        # never reached: the baseline needs more than every measured point (+inf share)
        share[row] = np.inf if matched is None else matched[0]
        if share[row] == 0:
            ratio[row] = np.inf if point_share > 0 else 1.0
        else:
            ratio[row] = point_share / share[row]
        at_share = success_at_share(curve, point_share)
        if at_share is not None:
            success[row], gap[row] = at_share[0], point_success - at_share[0]
        if row == 0:
            share_note = "never reached" if matched is None else matched[1]
            success_note = "outside the sweep" if at_share is None else at_share[1]
    return MatchedCost(
        baseline=baseline,
        episodes=data.episodes,
        games=data.games,
        point_share=float(data.share[0, 0]),
        point_success=float(data.success[0, 0]),
        share_at_point_success=_estimate(share),
        share_note=share_note,
        share_ratio=_estimate(ratio),
        success_at_point_share=_estimate(success),
        success_note=success_note,
        success_gap=_estimate(gap),
    )


@dataclass(frozen=True)
class FrontierAreas:
    """Areas under frontiers on the same resamples of games (see :func:`frontier_area`)."""

    areas: dict[str, Estimate]
    episodes: int  #: the episodes every point of every frontier played
    games: int
    _values: dict[str, np.ndarray]

    def difference(self, a: str, b: str) -> Estimate:
        """area(a) - area(b), its CI paired over the same draws of games."""
        return _estimate(self._values[a] - self._values[b])


def frontier_area(
    frontiers: Mapping[str, Sequence[FrontierPoint]],
    *,
    slm: FrontierPoint,
    llm: FrontierPoint,
    n_resamples: int = 2000,
    seed: int = 0,
) -> FrontierAreas:
    """The area under each frontier over LLM share [0, 1] (SLM-only and LLM-only as its ends;
    a frontier is the straight lines between its measured points), paired over the episodes
    every point of every frontier played."""
    names = list(frontiers)
    points = [slm, llm] + [p for name in names for p in frontiers[name]]
    data = _Resampled(points, n_resamples=n_resamples, seed=seed)
    values: dict[str, np.ndarray] = {}
    start = 2
    for name in names:
        columns = [0, 1, *range(start, start + len(frontiers[name]))]
        start += len(frontiers[name])
        values[name] = np.array(
            [
                metrics.area_under_curve(
                    data.share[row, columns].tolist(), data.success[row, columns].tolist()
                )
                for row in range(data.success.shape[0])
            ]
        )
    return FrontierAreas(
        areas={name: _estimate(v) for name, v in values.items()},
        episodes=data.episodes,
        games=data.games,
        _values=values,
    )
