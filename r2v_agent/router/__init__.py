"""The router: features, the learned model, calibration and the baseline routers."""

from __future__ import annotations

from r2v_agent.router.baselines import (
    AlwaysEscalate,
    EntropyRouter,
    NeverEscalate,
    RandomRouter,
    Router,
    StepContext,
    VerifierRouter,
)
from r2v_agent.router.features import (
    FEATURE_NAMES,
    N_FEATURES,
    Candidate,
    compute_features,
    features_dict,
)
from r2v_agent.router.thresholds import score_levels, threshold_for_share

__all__ = [
    "FEATURE_NAMES",
    "N_FEATURES",
    "Candidate",
    "compute_features",
    "features_dict",
    "Router",
    "StepContext",
    "NeverEscalate",
    "AlwaysEscalate",
    "RandomRouter",
    "EntropyRouter",
    "VerifierRouter",
    "score_levels",
    "threshold_for_share",
]
