"""FlakyTool: the action's tool call fails transiently and never reaches the env."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

from perturbations.base import Perturbation, check_probability

__all__ = ["FlakyTool"]

_ERRORS = (
    "Error: the tool call failed (connection reset by peer). Nothing was executed; try again.",
    "Error: the tool call timed out after 30s. Nothing was executed; try again.",
    "Error: service temporarily unavailable (503). Nothing was executed; try again.",
)


class FlakyTool(Perturbation):
    """With probability ``p`` an action fails before reaching the env.

    The agent sees an error observation, ``info["tool_error"]`` is ``True``, reward is 0 and the
    env state is unchanged (the info is that of the last real step). The failed call still spends
    one step of the episode budget (:meth:`r2v_envs.TextEnv.consume_step`), the same budget as
    the limit given to ``gym.make``, so a flaky tool cannot stretch an episode past it.
    """

    name = "flaky_tool"

    def __init__(self, env: gym.Env[str, str], p: float = 0.1, **kwargs: Any):
        p = check_probability("flaky_tool", "p", p)
        super().__init__(env, **kwargs)
        self.p = p
        self._last_info: dict[str, Any] = {}

    @property
    def params(self) -> dict[str, Any]:
        return {"p": self.p}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        self._last_info = info
        return obs, info

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        # Draw both numbers every step so the stream does not depend on which branch ran.
        fails = self.rng.random() < self.p
        message = _ERRORS[int(self.rng.integers(len(_ERRORS)))]
        if not fails:
            obs, reward, terminated, truncated, info = super().step(action)
            self._last_info = info
            return obs, reward, terminated, truncated, info
        self._step_index += 1
        consume = getattr(self.env.unwrapped, "consume_step", None)
        reward, truncated, spent = consume() if callable(consume) else (0.0, False, {})
        # The state is unchanged: report the last real step's info, with the budget spent
        # (and, when this was the last step, the env's final verdict).
        info = self._own_events({**self._last_info, **spent})
        info["perturbations"] = []
        info["tool_error"] = True
        info["invalid_action"] = False
        self.record(info, action=action[:200])
        return message, reward, False, truncated, info
