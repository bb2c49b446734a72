"""The base class of every perturbation: seeding and event logging."""

from __future__ import annotations

import secrets
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np

__all__ = ["Perturbation", "fresh_seed", "check_probability", "check_int", "check_seed"]


def fresh_seed() -> int:
    """A random 63-bit seed, for when the caller gives none (it is kept, so runs can be logged)."""
    return secrets.randbits(63)


def check_probability(owner: str, name: str, value: Any) -> float:
    """``value`` as a probability; a non-number (a bool or a string too) or one outside [0, 1]
    is a ``ValueError`` naming ``owner`` and the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{owner}: {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_int(owner: str, name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an integer >= ``minimum``; floats (1.9), bools and strings are refused,
    not rounded, with an error naming ``owner`` and the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(value: Any) -> int:
    """A perturbation seed: an integer >= 0 (NumPy's seed sequences take no negatives)."""
    from perturbations.errors import PerturbationSeedError

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise PerturbationSeedError(f"a perturbation seed must be an integer >= 0, got {value!r}")
    return int(value)


class Perturbation(gym.Wrapper[str, str, str, str], gym.utils.RecordConstructorArgs):
    """A seeded wrapper that perturbs a text env and logs what it did.

    Randomness comes from ``self.rng``, re-derived at every ``reset(seed=s)`` from the
    perturbation seed, the wrapper's position in its stack and ``s``. So the same
    ``(env seed, perturbation seed)`` replays the same episode exactly, and two wrappers of the
    same kind in one stack draw independent streams. ``reset()`` without a seed continues the
    stream, as Gymnasium's own ``np_random`` does.

    Subclasses set :attr:`name` (the spec-string name) and override :meth:`perturb_observation`
    (for observation edits) or :meth:`step` (for edits of the action's effect), calling
    :meth:`record` for every event so it appears in ``info["perturbations"]``.
    """

    name: ClassVar[str] = "perturbation"

    def __init__(self, env: gym.Env[str, str], *, seed: int | None = None, stack_index: int = 0):
        super().__init__(env)
        # No seed: draw one now and keep it, so the run can still be logged and replayed.
        self.perturbation_seed = check_seed(seed) if seed is not None else fresh_seed()
        self.stack_index = int(stack_index)
        self.rng = self._make_rng(None)
        self._step_index = 0

    # ------------------------------------------------------------------ subclass hooks
    def perturb_observation(self, observation: str, info: dict[str, Any], *, at_reset: bool) -> str:
        """Return the observation the agent sees; the default leaves it unchanged."""
        return observation

    @property
    def params(self) -> dict[str, Any]:
        """Constructor arguments, for :attr:`spec` (override in subclasses)."""
        return {}

    # Gymnasium stores this as an attribute; deriving it keeps it in step with the parameters.
    @property
    def _saved_kwargs(self) -> dict[str, Any]:  # type: ignore[override]
        # Read by Gymnasium to rebuild the wrapper from ``env.spec`` (gym.make(env.spec)).
        return {**self.params, "seed": self.perturbation_seed, "stack_index": self.stack_index}

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.rng = self._make_rng(seed)
        self._step_index = 0
        info = self._own_events(info)
        return self.perturb_observation(obs, info, at_reset=True), info

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step_index += 1
        info = self._own_events(info)
        return (
            self.perturb_observation(obs, info, at_reset=False),
            reward,
            terminated,
            truncated,
            info,
        )

    # ------------------------------------------------------------------ helpers
    @property
    def spec_string(self) -> str:
        """This wrapper as a spec part, e.g. ``"truncate(max_chars=400,mode='tail')"``."""
        args = ",".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def record(self, info: dict[str, Any], **details: Any) -> None:
        """Log one event of this perturbation in ``info["perturbations"]``."""
        info["perturbations"].append({"type": self.name, "step": self._step_index, **details})

    def _own_events(self, info: dict[str, Any]) -> dict[str, Any]:
        # Copy so an inner env's dict (or a cached one) is never mutated behind its back.
        info = dict(info)
        info["perturbations"] = list(info.get("perturbations", []))
        return info

    def _make_rng(self, env_seed: int | None) -> np.random.Generator:
        tail = [] if env_seed is None else [int(env_seed) + 1]
        return np.random.default_rng([self.perturbation_seed, self.stack_index, *tail])
