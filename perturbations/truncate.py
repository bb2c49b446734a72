"""TruncateObservation: cut long observations to a character budget, visibly."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from perturbations.base import Perturbation, check_int

__all__ = ["TruncateObservation", "truncate_text"]

MODES = ("head", "tail", "middle")


def truncate_text(text: str, max_chars: int, mode: str) -> tuple[str, int]:
    """Cut ``text`` to at most ``max_chars`` characters; return it and how many were removed.

    ``head`` keeps the beginning, ``tail`` the end, ``middle`` both ends. A marker
    ``[... N chars cut ...]`` shows where text went missing (and counts towards the budget
    whenever the budget is large enough to hold it).
    """
    if len(text) <= max_chars:
        return text, 0
    removed = len(text) - max_chars
    # The marker takes room too, so more must be removed; iterate to a fixed point (<= 2 rounds).
    for _ in range(3):
        marker = f"[... {removed} chars cut ...]"
        keep = max_chars - len(marker)
        if keep < 0:  # budget smaller than the marker: drop the marker, cut hard
            marker, keep = "", max_chars
        new_removed = len(text) - keep
        if new_removed == removed:
            break
        removed = new_removed
    if mode == "head":
        out = text[:keep] + marker
    elif mode == "tail":
        out = marker + text[len(text) - keep :]
    else:
        left = keep // 2
        out = text[:left] + marker + text[len(text) - (keep - left) :]
    return out, len(text) - keep


class TruncateObservation(Perturbation):
    """Keep at most ``max_chars`` characters of each observation (``mode``: head/tail/middle)."""

    name = "truncate"

    def __init__(
        self, env: gym.Env[str, str], max_chars: int = 400, mode: str = "tail", **kwargs: Any
    ):
        max_chars = check_int("truncate", "max_chars", max_chars, minimum=1)
        if mode not in MODES:
            raise ValueError(f"truncate: mode must be one of {MODES}, got {mode!r}")
        super().__init__(env, **kwargs)
        self.max_chars = max_chars
        self.mode = mode

    @property
    def params(self) -> dict[str, Any]:
        return {"max_chars": self.max_chars, "mode": self.mode}

    def perturb_observation(self, observation: str, info: dict[str, Any], *, at_reset: bool) -> str:
        out, removed = truncate_text(observation, self.max_chars, self.mode)
        if removed:
            self.record(info, removed=removed, mode=self.mode)
        return out
