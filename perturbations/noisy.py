"""NoisyObservation: character typos and dropped lines, as from a lossy tool or OCR."""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
import numpy as np

from perturbations.base import Perturbation, check_probability

__all__ = ["NoisyObservation"]

_LETTERS = string.ascii_lowercase


class NoisyObservation(Perturbation):
    """Each letter gets a typo with probability ``typo_rate`` (swap with its neighbour, delete,
    substitute or double it); each non-empty line is dropped with probability ``drop_line_rate``
    (at least one line always survives)."""

    name = "noisy"

    def __init__(
        self,
        env: gym.Env[str, str],
        typo_rate: float = 0.02,
        drop_line_rate: float = 0.0,
        **kwargs: Any,
    ):
        typo_rate = check_probability("noisy", "typo_rate", typo_rate)
        drop_line_rate = check_probability("noisy", "drop_line_rate", drop_line_rate)
        super().__init__(env, **kwargs)
        self.typo_rate = typo_rate
        self.drop_line_rate = drop_line_rate

    @property
    def params(self) -> dict[str, Any]:
        return {"typo_rate": self.typo_rate, "drop_line_rate": self.drop_line_rate}

    def perturb_observation(self, observation: str, info: dict[str, Any], *, at_reset: bool) -> str:
        lines = observation.split("\n")
        dropped = 0
        if self.drop_line_rate > 0:
            draws = self.rng.random(len(lines))
            candidates = [i for i, ln in enumerate(lines) if ln.strip()]
            drop = {i for i in candidates if draws[i] < self.drop_line_rate}
            if drop and len(drop) == len(candidates):
                drop.discard(candidates[int(self.rng.integers(len(candidates)))])
            lines = [ln for i, ln in enumerate(lines) if i not in drop]
            dropped = len(drop)
        text = "\n".join(lines)
        typos = 0
        if self.typo_rate > 0 and text:
            text, typos = self._add_typos(text)
        if typos or dropped:
            self.record(info, typos=typos, dropped_lines=dropped)
        return text

    def _add_typos(self, text: str) -> tuple[str, int]:
        # Draw per character (so the stream is fixed by the text length), edit only the hits.
        n = len(text)
        hits = np.flatnonzero(self.rng.random(n) < self.typo_rate)
        kinds = self.rng.integers(0, 4, size=n)
        subs = self.rng.integers(0, len(_LETTERS), size=n)
        pieces: list[str] = []
        cursor = typos = 0
        for i in map(int, hits):
            if i < cursor or not text[i].isalpha():
                continue  # already consumed by a swap, or not a letter
            pieces.append(text[cursor:i])
            typos += 1
            kind, c = kinds[i], text[i]
            if kind == 0 and i + 1 < n:  # swap with the next char
                pieces.append(text[i + 1] + c)
                cursor = i + 2
                continue
            if kind == 2:  # substitute
                pieces.append(_LETTERS[subs[i]])
            elif kind != 1:  # double (kind 1 deletes: append nothing)
                pieces.append(c + c)
            cursor = i + 1
        pieces.append(text[cursor:])
        return "".join(pieces), typos
