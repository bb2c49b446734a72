"""Shared fixtures. Generated TextWorld games are cached under .cache/ in the repo between runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("R2V_TEXTWORLD_CACHE", str(REPO / ".cache" / "textworld"))

from r2v_envs.core import StepOutcome, TextEnv  # noqa: E402


class CounterEnv(TextEnv):
    """A tiny deterministic text task for wrapper tests: say ``inc`` ``target`` times.

    Observations are several lines long so line- and character-level perturbations have
    something to act on. ``score`` counts the ``inc`` commands; ``lose`` ends the episode.
    """

    def __init__(self, target: int = 3, max_episode_steps: int = 10, **kwargs: Any):
        super().__init__(max_episode_steps=max_episode_steps, **kwargs)
        self.target = target
        self.count = 0

    def _reset_task(self, task_seed: int, options: dict[str, Any]):
        self.count = 0
        self.task_seed = task_seed
        return (
            self._describe(f"Task {task_seed % 97}: say 'inc' {self.target} times."),
            (f"counter/{task_seed % 97}"),
            float(self.target),
            {},
        )

    def _step_task(self, action: str) -> StepOutcome:
        if action == "lose":
            return StepOutcome(self._describe("You lost."), self.count, terminated=True)
        if action == "inc":
            self.count += 1
        won = self.count >= self.target
        return StepOutcome(self._describe(f"You said {action!r}."), self.count, won, won)

    def _describe(self, head: str) -> str:
        return "\n".join(
            [
                head,
                f"The counter shows {self.count}.",
                "The room is quiet and well lit.",
                "A clock ticks on the wall.",
                "Nothing else happens.",
            ]
        )


@pytest.fixture
def counter_env() -> CounterEnv:
    return CounterEnv()
