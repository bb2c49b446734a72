"""Name -> class registry of perturbations (the names used in spec strings)."""

from __future__ import annotations

from collections.abc import Callable

from perturbations.base import Perturbation
from perturbations.distractor import Distractor
from perturbations.flaky_tool import FlakyTool
from perturbations.noisy import NoisyObservation
from perturbations.stale import StaleObservation
from perturbations.truncate import TruncateObservation

__all__ = ["PERTURBATIONS", "register_perturbation"]

PERTURBATIONS: dict[str, type[Perturbation]] = {
    cls.name: cls
    for cls in (FlakyTool, TruncateObservation, NoisyObservation, Distractor, StaleObservation)
}


def register_perturbation(
    name: str | None = None,
) -> Callable[[type[Perturbation]], type[Perturbation]]:
    """Class decorator adding a user-defined :class:`Perturbation` to the spec language."""

    def decorate(cls: type[Perturbation]) -> type[Perturbation]:
        key = name or cls.name
        if key in PERTURBATIONS and PERTURBATIONS[key] is not cls:
            raise ValueError(f"a perturbation named {key!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, Perturbation)):
            raise TypeError(f"{cls!r} is not a Perturbation subclass")
        PERTURBATIONS[key] = cls
        return cls

    return decorate
