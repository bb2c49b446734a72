"""TextWorld games as Gymnasium envs (``R2V/TextWorld-*``)."""

from __future__ import annotations

__all__ = ["TextWorldEnv", "GameSpec", "SUITES", "ensure_game"]


def __getattr__(name: str):  # lazy: importing textworld is slow
    if name == "TextWorldEnv":
        from r2v_envs.textworld.env import TextWorldEnv

        return TextWorldEnv
    if name in {"GameSpec", "SUITES", "ensure_game"}:
        from r2v_envs.textworld import games

        return getattr(games, name)
    raise AttributeError(name)
