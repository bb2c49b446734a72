"""Post-hoc calibration of the router on held-out steps: temperature scaling or isotonic.

* :func:`fit_temperature`: the T > 0 minimising the held-out log loss of ``sigmoid(logit / T)``
  (a one-parameter search over log T; keeps the ranking of the scores).
* :func:`fit_isotonic`: pool-adjacent-violators on (p, label) pairs, returned as knots of a
  non-decreasing piecewise-linear map from raw p to calibrated p (``np.interp``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_temperature", "fit_isotonic", "apply_isotonic"]


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()

    def nll(t: float) -> float:
        p = 1.0 / (1.0 + np.exp(-z / t))
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    best = min(grid, key=nll)
    # Refine around the best grid point.
    fine = np.exp(np.linspace(np.log(best) - 0.06, np.log(best) + 0.06, 41))
    return float(min(fine, key=nll))


def fit_isotonic(p: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, y)``: x the block means of the raw scores, y the blocks' label rates."""
    x = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("isotonic calibration needs at least one point")
    order = np.argsort(x, kind="mergesort")
    x, y = x[order], y[order]
    # Each block: [sum of labels, count, sum of x]; merge while a block's mean is not below
    # the previous one's.
    blocks: list[list[float]] = []
    for xi, yi in zip(x, y, strict=True):
        blocks.append([yi, 1.0, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, n, sx = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][2] += sx
    knots_x = np.array([b[2] / b[1] for b in blocks])
    knots_y = np.array([b[0] / b[1] for b in blocks])
    return knots_x, knots_y


def apply_isotonic(p: np.ndarray, knots_x: np.ndarray, knots_y: np.ndarray) -> np.ndarray:
    return np.interp(np.asarray(p, dtype=np.float64), knots_x, knots_y)
