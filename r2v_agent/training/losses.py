"""The two training terms R2V adds to standard losses (torch).

* :func:`js_divergence`: Jensen-Shannon divergence between two categorical distributions given
  as log-probabilities -- the DPO stage's consistency term between the policy's action-token
  distributions on the clean and on the perturbed observation of one state.
* :func:`cvar_of_groups`: the router's CVaR term -- the mean of the worst ``alpha`` share of
  per-group (per perturbation seed) mean losses.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["js_divergence", "cvar_of_groups", "brier_per_item"]


def js_divergence(logp: Any, logq: Any, mask: Any | None = None) -> Any:
    """JS(P, Q) = (KL(P||M) + KL(Q||M)) / 2 with M = (P + Q) / 2, in nats, per position.

    ``logp``/``logq`` have shape ``(..., vocab)``; the result has shape ``(...)`` and lies in
    [0, log 2]. With ``mask`` (shape ``(...)``, 1 = keep), returns the masked mean instead.
    """
    import torch

    logm = torch.logsumexp(torch.stack([logp, logq]), dim=0) - math.log(2.0)
    kl_pm = (logp.exp() * (logp - logm)).sum(-1)
    kl_qm = (logq.exp() * (logq - logm)).sum(-1)
    js = (0.5 * (kl_pm + kl_qm)).clamp(0.0, math.log(2.0))
    if mask is None:
        return js
    mask = mask.to(js.dtype)
    return (js * mask).sum() / mask.sum().clamp_min(1.0)


def brier_per_item(p: Any, y: Any) -> Any:
    return (p - y) ** 2


def cvar_of_groups(losses: Any, groups: Any, alpha: float) -> tuple[Any, bool]:
    """CVaR_alpha over groups: the mean of the worst ``ceil(alpha * G)`` group-mean losses.

    Returns ``(value, active)``; ``active`` is False when the worst share is every group (then
    CVaR equals the mean of group means and adds nothing a plain mean would not).
    """
    import torch

    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    unique, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros(len(unique), dtype=losses.dtype).index_add(0, inverse, losses)
    counts = torch.zeros(len(unique), dtype=losses.dtype).index_add(
        0, inverse, torch.ones_like(losses)
    )
    means = sums / counts
    k = max(1, math.ceil(alpha * len(unique) - 1e-9))
    worst = torch.topk(means, k).values
    return worst.mean(), k < len(unique)
