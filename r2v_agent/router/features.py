"""The router's feature vector f_t: 15 named values, none of which reveals a perturbation.

=====  ===========================  ==========================================================
index  name                         meaning
=====  ===========================  ==========================================================
0      chosen_entropy_mean          mean per-token entropy (nats) of the chosen candidate
1      chosen_entropy_max           max per-token entropy of the chosen candidate
2      chosen_logprob_mean          mean per-token log-prob of the chosen candidate
3      chosen_logprob_min           min per-token log-prob of the chosen candidate
4      candidates_seq_logprob_mean  mean over the K candidates of their sequence log-prob
5      agreement                    share of candidates whose text equals the chosen one
6      distinct_ratio               distinct candidate texts / K
7      verifier_best                highest verifier score
8      verifier_mean                mean verifier score
9      verifier_std                 standard deviation of the verifier scores
10     verifier_margin              best minus second-best verifier score (0 if K = 1)
11     step_frac                    step index / max steps
12     tool_error                   1 if the last observation reported a tool error, else 0
13     obs_log_len                  log(1 + characters of the observation)
14     escalation_share             share of this episode's earlier steps that escalated
=====  ===========================  ==========================================================

The tool-error flag is what any agent sees in its observation (the env's ``tool_error``), not
which perturbation caused it; ``info["perturbations"]`` is never read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from r2v_agent.policy.base import Candidate

__all__ = [
    "FEATURE_NAMES",
    "N_FEATURES",
    "FEATURE_GROUPS",
    "resolve_features",
    "Candidate",
    "compute_features",
    "features_dict",
]

FEATURE_NAMES: tuple[str, ...] = (
    "chosen_entropy_mean",
    "chosen_entropy_max",
    "chosen_logprob_mean",
    "chosen_logprob_min",
    "candidates_seq_logprob_mean",
    "agreement",
    "distinct_ratio",
    "verifier_best",
    "verifier_mean",
    "verifier_std",
    "verifier_margin",
    "step_frac",
    "tool_error",
    "obs_log_len",
    "escalation_share",
)
N_FEATURES = len(FEATURE_NAMES)


#: Named groups of features, for ablations (``router.features`` in a pipeline config).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "entropy": ("chosen_entropy_mean", "chosen_entropy_max"),
    "likelihood": ("chosen_logprob_mean", "chosen_logprob_min", "candidates_seq_logprob_mean"),
    "agreement": ("agreement", "distinct_ratio"),
    "verifier": ("verifier_best", "verifier_mean", "verifier_std", "verifier_margin"),
    "step_position": ("step_frac",),
    "context": ("tool_error", "obs_log_len", "escalation_share"),
}


def resolve_features(spec: Sequence[str] | None) -> tuple[str, ...]:
    """The features a spec names, in :data:`FEATURE_NAMES` order. ``None`` or ``["all"]``: all
    15; items are feature or group names (:data:`FEATURE_GROUPS`); ``"-name"`` removes one
    (``["all", "-verifier"]``: all but the verifier group)."""
    if spec is None:
        return FEATURE_NAMES
    if isinstance(spec, str) or not all(isinstance(item, str) for item in spec):
        raise ValueError(f"a feature set is a list of names, got {spec!r}")
    chosen: set[str] = set()
    for item in spec:
        drop = item.startswith("-")
        name = item[1:] if drop else item
        if name == "all":
            names: tuple[str, ...] = FEATURE_NAMES
        elif name in FEATURE_GROUPS:
            names = FEATURE_GROUPS[name]
        elif name in FEATURE_NAMES:
            names = (name,)
        else:
            raise ValueError(
                f"unknown feature or group {name!r}; groups: {sorted(FEATURE_GROUPS)}, "
                f"features: {list(FEATURE_NAMES)}"
            )
        chosen = chosen - set(names) if drop else chosen | set(names)
    if not chosen:
        raise ValueError(f"the feature set {list(spec)} leaves no feature")
    return tuple(n for n in FEATURE_NAMES if n in chosen)


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    if not values:
        return 0.0, 0.0, 0.0
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.max()), float(arr.min())


def compute_features(
    candidates: Sequence[Candidate],
    chosen: int,
    verifier_scores: Sequence[float],
    *,
    step: int,
    max_steps: int,
    tool_error: bool,
    observation: str,
    escalations_so_far: int,
) -> np.ndarray:
    """The 15-value feature vector (``float32``) for one step."""
    if not candidates:
        raise ValueError("compute_features needs at least one candidate")
    if not 0 <= chosen < len(candidates):
        raise ValueError(f"chosen={chosen} is not a candidate index (K={len(candidates)})")
    if len(verifier_scores) != len(candidates):
        raise ValueError(f"{len(verifier_scores)} verifier scores for {len(candidates)} candidates")
    pick = candidates[chosen]
    ent_mean, ent_max, _ = _stats(pick.token_entropies)
    lp_mean, _, lp_min = _stats(pick.token_logprobs)
    texts = [c.text.strip() for c in candidates]
    scores = np.sort(np.asarray(verifier_scores, dtype=np.float64))[::-1]
    values = [
        ent_mean,
        ent_max,
        lp_mean,
        lp_min,
        float(np.mean([c.seq_logprob for c in candidates])),
        texts.count(texts[chosen]) / len(texts),
        len(set(texts)) / len(texts),
        float(scores[0]),
        float(scores.mean()),
        float(scores.std()),
        float(scores[0] - scores[1]) if len(scores) > 1 else 0.0,
        step / max(1, max_steps),
        1.0 if tool_error else 0.0,
        math.log1p(len(observation)),
        escalations_so_far / step if step > 0 else 0.0,
    ]
    return np.asarray(values, dtype=np.float32)


def features_dict(vector: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Name -> value view of a feature vector."""
    if len(vector) != N_FEATURES:
        raise ValueError(f"expected {N_FEATURES} features, got {len(vector)}")
    return {name: float(v) for name, v in zip(FEATURE_NAMES, vector, strict=True)}
