"""The hindsight oracle router: escalates exactly on the steps where the SLM's chosen action
would not make progress -- judged by the env's ground truth, which no deployable router has.

It is shown in the leaderboard as a reference (the best any router could do with the same SLM
and teacher). At each step it replays the episode's effective actions (those whose tool call did
not fail) in an unperturbed copy of the env, plays the SLM's chosen action there and asks
:func:`~r2v_agent.rollout.step_progress`. ``reset(seed)`` must receive the episode's
env seed (``play_episode`` does this).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from r2v_agent.groundtruth import ProgressProbe, same_action
from r2v_agent.router.baselines import Router, StepContext

__all__ = ["HindsightOracleRouter"]


class HindsightOracleRouter(Router):
    """Reads the step's context (the chosen action, the env's info), not its features."""

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any] | None = None,
        *,
        split: str | None = "test",
        max_steps: int = 50,
    ) -> None:
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.split = split
        self.max_steps = max_steps
        self._probe: Any = None
        self._seed = 0
        self._history: list[str] = []
        self._pending: str | None = None

    def reset(self, seed: int | None) -> None:
        self._seed = int(seed or 0)
        self._history = []
        self._pending = None

    def p_fail(self, features: np.ndarray) -> np.ndarray:  # features alone cannot tell
        raise RuntimeError(
            "the hindsight oracle judges the chosen action: it answers step_p_fail, inside "
            "RoutedAgent, not features alone"
        )

    def step_p_fail(self, features: np.ndarray, context: StepContext) -> float:
        chosen, info = context.action, context.info
        if self._pending is not None and not info.get("tool_error"):
            self._history.append(self._pending)  # the previous action took effect
        expert = info.get("expert_action")
        needed = False
        if not same_action(chosen, expert):
            if self._probe is None:
                self._probe = ProgressProbe(
                    self.env_id, self.env_kwargs, self.max_steps, split=self.split
                )
            needed = not self._probe(self._seed, self._history, chosen)
        self._pending = expert if needed and expert else chosen
        return 1.0 if needed else 0.0

    def spec(self) -> dict[str, Any]:
        return {"type": "HindsightOracleRouter", "env_id": self.env_id}
