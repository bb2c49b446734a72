"""The router: features, the learned model, calibration and the baseline routers."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from r2v_agent.router.baselines import (
    AlwaysEscalate,
    EntropyRouter,
    NeverEscalate,
    RandomRouter,
    Router,
    VerifierRouter,
)
from r2v_agent.router.features import (
    FEATURE_NAMES,
    N_FEATURES,
    Candidate,
    compute_features,
    features_dict,
)

__all__ = [
    "FEATURE_NAMES",
    "N_FEATURES",
    "Candidate",
    "compute_features",
    "features_dict",
    "Router",
    "NeverEscalate",
    "AlwaysEscalate",
    "RandomRouter",
    "EntropyRouter",
    "VerifierRouter",
]

# The routing MDP of the PPO baseline (see routing_env.py); the entry point is a string, so
# registering it imports nothing heavy.
if "R2V/Routing-v0" not in registry:
    register(id="R2V/Routing-v0", entry_point="r2v_agent.router.routing_env:RoutingEnv")
