"""Errors raised by :mod:`r2v_agent`. Each names the offending value."""

from __future__ import annotations

__all__ = [
    "R2VAgentError",
    "ConfigError",
    "TeacherError",
    "TrajectoryError",
    "StageError",
    "WorkerError",
]


class R2VAgentError(Exception):
    """Base class of every error raised by :mod:`r2v_agent`."""


class ConfigError(R2VAgentError, ValueError):
    """A configuration value is invalid; the message names the field and the value."""


class TeacherError(R2VAgentError, RuntimeError):
    """A teacher could not produce an action (callers fall back; ``act`` never raises it)."""


class TrajectoryError(R2VAgentError, ValueError):
    """A trajectory record breaks the schema; the message names the file line and the field."""


class StageError(R2VAgentError, RuntimeError):
    """A pipeline stage cannot run (missing inputs, no usable data); the message says which."""


class WorkerError(R2VAgentError, RuntimeError):
    """A worker process of a parallel run died; the message says what to do."""
