"""Evaluation metrics shared by the training pipeline and the leaderboard (plain numpy).

Probabilistic predictions: :func:`brier`, :func:`ece`, :func:`reliability_bins`, :func:`auroc`.
Risk: :func:`cvar` (mean of the worst ``alpha`` share). Comparisons: :func:`bootstrap_ci`,
:func:`cluster_bootstrap_ci`, :func:`mcnemar`, :func:`paired_cluster_test`,
:func:`area_under_curve`.

Episodes of one game (its perturbation seeds) share the game's difficulty, so they are not
independent: the cluster functions resample -- or sign-flip -- whole games.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "brier",
    "ece",
    "reliability_bins",
    "ReliabilityBin",
    "auroc",
    "cvar",
    "bootstrap_ci",
    "cluster_bootstrap_ci",
    "mcnemar",
    "paired_cluster_test",
    "PairedClusterResult",
    "McNemarResult",
    "area_under_curve",
]


def _pair(
    p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    p_arr = np.asarray(p, dtype=np.float64).ravel()
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    if p_arr.shape != y_arr.shape:
        raise ValueError(f"predictions ({p_arr.size}) and labels ({y_arr.size}) differ in length")
    if p_arr.size == 0:
        raise ValueError("no predictions to score")
    return p_arr, y_arr


def brier(p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Mean squared error of probabilities ``p`` against 0/1 labels ``y``."""
    p_arr, y_arr = _pair(p, y)
    return float(np.mean((p_arr - y_arr) ** 2))


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed_rate: float


def reliability_bins(
    p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, n_bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; empty bins are left out. The last bin includes 1.0."""
    p_arr, y_arr = _pair(p, y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, p_arr, side="right") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = index == b
        if mask.any():
            bins.append(
                ReliabilityBin(
                    float(edges[b]),
                    float(edges[b + 1]),
                    int(mask.sum()),
                    float(p_arr[mask].mean()),
                    float(y_arr[mask].mean()),
                )
            )
    return bins


def ece(
    p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, n_bins: int = 10
) -> float:
    """Expected calibration error: the count-weighted mean |predicted - observed| over bins."""
    bins = reliability_bins(p, y, n_bins)
    total = sum(b.count for b in bins)
    return float(sum(b.count * abs(b.mean_predicted - b.observed_rate) for b in bins) / total)


def auroc(scores: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; ties count one half).

    Returns ``nan`` when only one class is present."""
    s, labels = _pair(scores, y)
    pos, neg = s[labels > 0.5], s[labels <= 0.5]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(order.size, dtype=np.float64)
    values = np.concatenate([pos, neg])[order]
    # Average ranks over ties.
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = ranks[: pos.size].sum()
    return float((rank_sum - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def cvar(losses: Sequence[float] | np.ndarray, alpha: float) -> float:
    """Conditional value at risk: the mean of the worst ``ceil(alpha * n)`` losses.

    ``alpha = 1`` is the mean; small ``alpha`` approaches the maximum."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    arr = np.sort(np.asarray(losses, dtype=np.float64).ravel())[::-1]
    if arr.size == 0:
        raise ValueError("cvar of no losses")
    k = max(1, math.ceil(alpha * arr.size - 1e-9))
    return float(arr[:k].mean())


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile bootstrap confidence interval."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("bootstrap of no values")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(n_resamples, arr.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(arr.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


@dataclass(frozen=True)
class McNemarResult:
    only_a: int  #: pairs where A succeeded and B failed
    only_b: int  #: pairs where B succeeded and A failed
    statistic: float
    p_value: float
    exact: bool


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """McNemar's test on paired successes. Exact (two-sided binomial) when the discordant
    pairs are fewer than 25, else the chi-square statistic with continuity correction."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes differ in length: {len(a)} vs {len(b)}")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return McNemarResult(0, 0, 0.0, 1.0, True)
    if n < 25:
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
        return McNemarResult(only_a, only_b, float(k), float(min(1.0, 2.0 * tail)), True)
    stat = (abs(only_a - only_b) - 1.0) ** 2 / n
    # Chi-square with one degree of freedom: P(X > stat) = erfc(sqrt(stat / 2)).
    return McNemarResult(
        only_a, only_b, float(stat), float(math.erfc(math.sqrt(stat / 2.0))), False
    )


def area_under_curve(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoidal area under y(x) after sorting by x, over the x range covered."""
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    if len(x) < 2:
        return 0.0
    order = np.argsort(np.asarray(x, dtype=np.float64), kind="mergesort")
    xs = np.asarray(x, dtype=np.float64)[order]
    ys = np.asarray(y, dtype=np.float64)[order]
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


def _cluster_sums(
    values: Sequence[float] | np.ndarray, clusters: Sequence[object]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of ``values`` and per-cluster counts (clusters in first-seen order)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size != len(clusters):
        raise ValueError(f"{arr.size} values for {len(clusters)} cluster labels")
    if arr.size == 0:
        raise ValueError("no values")
    index: dict[object, int] = {}
    ids = np.array([index.setdefault(c, len(index)) for c in clusters])
    return np.bincount(ids, weights=arr), np.bincount(ids).astype(np.float64)


def cluster_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[object],
    *,
    level: float = 0.95,
    n_resamples: int = 4000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the mean over all values and its percentile bootstrap CI, resampling
    whole clusters (e.g. games) with replacement; each resample's mean is its values' total
    over its episode count."""
    sums, counts = _cluster_sums(values, clusters)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, sums.size, size=(n_resamples, sums.size))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1.0 - level) / 2.0
    return (
        float(sums.sum() / counts.sum()),
        float(np.quantile(means, tail)),
        float(np.quantile(means, 1 - tail)),
    )


@dataclass(frozen=True)
class PairedClusterResult:
    difference: float  #: mean success of A minus B over the paired episodes
    ci_low: float  #: cluster-bootstrap CI of the difference
    ci_high: float
    p_value: float  #: two-sided, sign-flip randomisation test on per-cluster differences
    clusters: int
    pairs: int
    exact: bool  #: every sign pattern enumerated (else a Monte Carlo sample of them)


def paired_cluster_test(
    a: Sequence[bool] | Sequence[float],
    b: Sequence[bool] | Sequence[float],
    clusters: Sequence[object],
    *,
    level: float = 0.95,
    n_resamples: int = 4000,
    max_exact_clusters: int = 16,
    seed: int = 0,
) -> PairedClusterResult:
    """Paired comparison of two methods on the same episodes, clustered by game.

    Per cluster g, ``d_g`` sums ``a - b`` over its paired episodes. Under the null hypothesis
    (the two methods exchangeable on every episode pair) each ``d_g`` is as likely negated, so
    the p-value is the share of sign patterns whose ``|sum|`` reaches the observed one: all
    ``2^G`` patterns for ``G <= max_exact_clusters`` clusters, else ``n_resamples`` random
    ones (counting the observed pattern, so p > 0). The CI resamples clusters.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes differ in length: {len(a)} vs {len(b)}")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    sums, counts = _cluster_sums(diff, clusters)
    observed = abs(sums.sum())
    g = sums.size
    if g <= max_exact_clusters:
        patterns = ((np.arange(2**g)[:, None] >> np.arange(g)) & 1) * 2.0 - 1.0
        totals = np.abs(patterns @ sums)
        p_value = float(np.mean(totals >= observed - 1e-9))
        exact = True
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((-1.0, 1.0), size=(n_resamples, g))
        hits = int(np.sum(np.abs(signs @ sums) >= observed - 1e-9))
        p_value = (hits + 1) / (n_resamples + 1)
        exact = False
    mean, low, high = cluster_bootstrap_ci(
        diff, clusters, level=level, n_resamples=n_resamples, seed=seed
    )
    return PairedClusterResult(mean, low, high, p_value, g, int(diff.size), exact)
