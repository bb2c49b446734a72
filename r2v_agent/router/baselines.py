"""The router protocol, and the routers without learning.

Every router maps feature vectors (shape ``(n, 15)`` or ``(15,)``) to a failure probability in
[0, 1]; the agent escalates when it exceeds the threshold tau. At run time the agent asks
:meth:`Router.step_p_fail` with the step's features *and* its :class:`StepContext` (the chosen
action, the env's info): a router that reads more than the features (the evaluation's hindsight
oracle) overrides it; :meth:`Router.reset` starts an episode for routers with per-episode state.
For the heuristic routers the threshold sweep is the heuristic's own threshold sweep.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from r2v_agent.router.features import FEATURE_NAMES

__all__ = [
    "Router",
    "StepContext",
    "NeverEscalate",
    "AlwaysEscalate",
    "RandomRouter",
    "EntropyRouter",
    "VerifierRouter",
]

_ENTROPY = FEATURE_NAMES.index("chosen_entropy_mean")
_VERIFIER = FEATURE_NAMES.index("verifier_best")


@dataclass(frozen=True)
class StepContext:
    """What the agent knows of a step besides its features."""

    action: str  #: the SLM's chosen action
    step: int  #: the step's index in the episode
    info: dict[str, Any] = field(default_factory=dict)  #: the env's info for this step


class Router(ABC):
    """Maps features to P(the SLM fails at this step)."""

    @abstractmethod
    def p_fail(self, features: np.ndarray) -> np.ndarray: ...

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        return self.p_fail(x[None, :] if x.ndim == 1 else x)

    def step_p_fail(self, features: np.ndarray, context: StepContext) -> float:
        """p_fail of one step at run time (what :class:`RoutedAgent` asks)."""
        return float(self(features)[0])

    def reset(self, seed: int | None) -> None:
        """A new episode starts (``seed``: its env seed); stateless routers ignore it."""
        return None  # noqa: B027 - optional hook, not abstract: most routers keep no state

    def spec(self) -> dict[str, Any]:
        return {"type": type(self).__name__}


class NeverEscalate(Router):
    """SLM-only."""

    def p_fail(self, features: np.ndarray) -> np.ndarray:
        return np.zeros(len(features), dtype=np.float32)


class AlwaysEscalate(Router):
    """LLM-only (the teacher every step)."""

    def p_fail(self, features: np.ndarray) -> np.ndarray:
        return np.ones(len(features), dtype=np.float32)


class RandomRouter(Router):
    """Escalates at random with probability ``rate`` (matched to another router's share)."""

    def __init__(self, rate: float, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate!r}")
        self.rate = float(rate)
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)

    def p_fail(self, features: np.ndarray) -> np.ndarray:
        return (self.rng.random(len(features)) < self.rate).astype(np.float32)

    def spec(self) -> dict[str, Any]:
        return {"type": "RandomRouter", "rate": self.rate}


class EntropyRouter(Router):
    """p_fail = 1 - exp(-mean token entropy of the chosen action): monotone in the entropy, so
    sweeping tau sweeps an entropy threshold (H* = -log(1 - tau))."""

    def p_fail(self, features: np.ndarray) -> np.ndarray:
        return (1.0 - np.exp(-np.maximum(features[:, _ENTROPY], 0.0))).astype(np.float32)


class VerifierRouter(Router):
    """p_fail = 1 - best verifier score."""

    def p_fail(self, features: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - features[:, _VERIFIER], 0.0, 1.0).astype(np.float32)
