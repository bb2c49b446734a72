"""Seeded, composable perturbation wrappers that model unreliable tools.

>>> env = perturbations.make_stack(env, "flaky_tool(p=0.2)+truncate(max_chars=400)", seed=3)

Every wrapper records what it did in ``info["perturbations"]`` and draws its randomness from the
perturbation seed and the env's reset seed, so episodes replay exactly.
"""

from __future__ import annotations

from perturbations.base import Perturbation
from perturbations.distractor import Distractor
from perturbations.errors import PerturbationError, PerturbationSeedError, PerturbationSpecError
from perturbations.flaky_tool import FlakyTool
from perturbations.noisy import NoisyObservation
from perturbations.registry import PERTURBATIONS, register_perturbation
from perturbations.spec import PerturbationPart, make_stack, parse_spec, stack_spec
from perturbations.stale import StaleObservation
from perturbations.truncate import TruncateObservation

__all__ = [
    "Perturbation",
    "FlakyTool",
    "TruncateObservation",
    "NoisyObservation",
    "Distractor",
    "StaleObservation",
    "PERTURBATIONS",
    "register_perturbation",
    "PerturbationPart",
    "parse_spec",
    "make_stack",
    "stack_spec",
    "PerturbationError",
    "PerturbationSpecError",
    "PerturbationSeedError",
]
