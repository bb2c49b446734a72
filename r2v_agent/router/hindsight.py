"""The hindsight oracle router: escalates exactly on the steps where the SLM's chosen action
would not make progress -- judged by the env's ground truth, which no deployable router has.

It is shown in the leaderboard as a reference (the best any router could do with the same SLM
and teacher). At each step it replays the episode's effective actions (those whose tool call did
not fail) in an unperturbed copy of the env, plays the SLM's chosen action there and asks
:func:`~r2v_agent.training.episodes.step_progress`. ``reset(seed)`` must receive the episode's
env seed (``play_episode`` does this).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from r2v_agent.router.baselines import Router

__all__ = ["HindsightOracleRouter"]


def _same(a: str, b: str | None) -> bool:
    return b is not None and " ".join(a.lower().split()) == " ".join(b.lower().split())


class HindsightOracleRouter(Router):
    uses_hindsight = True

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

    def p_fail(self, features: np.ndarray) -> np.ndarray:  # only reached without hindsight
        raise RuntimeError(
            "the hindsight oracle needs the chosen action: use it inside RoutedAgent"
        )

    def hindsight(self, chosen: str, info: dict[str, Any]) -> float:
        if self._pending is not None and not info.get("tool_error"):
            self._history.append(self._pending)  # the previous action took effect
        expert = info.get("expert_action")
        needed = False
        if not _same(chosen, expert):
            if self._probe is None:
                from r2v_agent.training.verifier import ProgressProbe

                self._probe = ProgressProbe(
                    self.env_id, self.env_kwargs, self.max_steps, split=self.split
                )
            needed = not self._probe(self._seed, self._history, chosen)
        self._pending = expert if needed and expert else chosen
        return 1.0 if needed else 0.0

    def spec(self) -> dict[str, Any]:
        return {"type": "HindsightOracleRouter", "env_id": self.env_id}
