"""Errors raised by the R2V environments. Each names the offending value."""

from __future__ import annotations

__all__ = [
    "R2VEnvError",
    "InvalidActionError",
    "TaskNotFoundError",
    "GameGenerationError",
    "GameFileError",
    "MissingDependencyError",
]


class R2VEnvError(Exception):
    """Base class of every error raised by :mod:`r2v_envs`."""


class InvalidActionError(R2VEnvError, TypeError):
    """The action is not a string; malformed strings get an error observation instead."""


class TaskNotFoundError(R2VEnvError, KeyError):
    """A ``task_id`` or ``game_file`` given to ``reset`` does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else "task not found"


class GameGenerationError(R2VEnvError, RuntimeError):
    """TextWorld could not generate or compile a game for the requested settings."""


class GameFileError(R2VEnvError, ValueError):
    """A ``game_file`` given to ``reset`` cannot be played as it is; the message says why."""


class MissingDependencyError(R2VEnvError, ImportError):
    """An optional dependency is needed for this env; the message says what to install."""
