"""Errors raised by :mod:`perturbations`."""

from __future__ import annotations

__all__ = ["PerturbationError", "PerturbationSpecError", "PerturbationSeedError"]


class PerturbationError(Exception):
    """Base class of every error raised by :mod:`perturbations`."""


class PerturbationSpecError(PerturbationError, ValueError):
    """A perturbation spec string (or one of its parts) is malformed; the message names the part."""


class PerturbationSeedError(PerturbationError, ValueError):
    """A perturbation seed is not an integer >= 0; the message names the value."""
