"""Rule-based verifier: cheap per-env checks with a documented prior.

Before a learned verifier is trained (``r2v train verifier``), these rules still give meaningful
scores in [0, 1]:

=============  ==================================================  =======  =======
family         check                                               pass     fail
=============  ==================================================  =======  =======
textworld      the command is in ``info["admissible_actions"]``    0.80     0.15
humaneval      a code block that parses (``ast.parse``)            0.70     0.10
               ``test`` / ``submit`` (with a solution written)     0.60     0.20
terminalbench  ``bash -n`` accepts the command (``submit``: 0.5)   0.60     0.10
=============  ==================================================  =======  =======

An empty action scores 0. With no rule that applies (e.g. TextWorld without admissible actions)
the prior is 0.5.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Sequence
from typing import Any

from r2v_envs import fences

__all__ = ["RuleVerifier"]


class RuleVerifier:
    """Scores (context, action) pairs with the rules in the module docstring."""

    def __init__(self, family: str) -> None:
        self.family = family

    def score(self, observation: str, actions: Sequence[str], info: dict[str, Any]) -> list[float]:
        return [self._one(a, info) for a in actions]

    def _one(self, action: str, info: dict[str, Any]) -> float:
        text = action.strip()
        if not text:
            return 0.0
        if self.family == "textworld":
            admissible = info.get("admissible_actions")
            if not admissible:
                return 0.5
            return 0.80 if text.lower() in {a.lower() for a in admissible} else 0.15
        if self.family == "humaneval":
            if text.lower() in ("test", "submit"):
                return 0.60 if info.get("has_solution") else 0.20
            code = fences.last_block(text, fences.PYTHON)
            if code is None:
                return 0.10
            try:
                ast.parse(code)
            except SyntaxError:
                return 0.10
            return 0.70
        if self.family == "terminalbench":
            if text.lower() == "submit":
                return 0.5
            check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
            return 0.60 if check.returncode == 0 else 0.10
        return 0.5

    def spec(self) -> dict[str, Any]:
        return {"type": "RuleVerifier", "family": self.family}
