"""Errors raised by :mod:`r2v_agent`. Each names the offending value."""

from __future__ import annotations

__all__ = ["R2VAgentError", "ConfigError", "TeacherError"]


class R2VAgentError(Exception):
    """Base class of every error raised by :mod:`r2v_agent`."""


class ConfigError(R2VAgentError, ValueError):
    """A configuration value is invalid; the message names the field and the value."""


class TeacherError(R2VAgentError, RuntimeError):
    """A teacher could not produce an action (callers fall back; ``act`` never raises it)."""
