"""StaleObservation: the tool answers with its previous (cached) output."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from perturbations.base import Perturbation, check_probability

__all__ = ["StaleObservation"]


class StaleObservation(Perturbation):
    """With probability ``p`` the action runs but the agent sees the *previous* observation.

    This models a stale cache or a delayed tool response: the env state moved on, the text did
    not. The fresh observation is lost, as it would be with a real stale read.
    """

    name = "stale"

    def __init__(self, env: gym.Env[str, str], p: float = 0.1, **kwargs: Any):
        p = check_probability("stale", "p", p)
        super().__init__(env, **kwargs)
        self.p = p
        self._previous = ""

    @property
    def params(self) -> dict[str, Any]:
        return {"p": self.p}

    def perturb_observation(self, observation: str, info: dict[str, Any], *, at_reset: bool) -> str:
        stale = self.rng.random() < self.p
        if at_reset or not stale:
            self._previous = observation
            return observation
        self.record(info)
        return self._previous
