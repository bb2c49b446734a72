"""The methods a benchmark compares, named by short specs, all built on one trained agent.

=================  ================================================================
spec               meaning
=================  ================================================================
``slm``            SLM-only: the trained policy, never escalates
``llm``            LLM-only: the teacher acts at every step
``r2v``            R2V: the trained, calibrated router at its saved tau
``r2v@T``          R2V at tau = T (a point of its sweep)
``entropy@T``      escalate when 1 - exp(-mean token entropy) > T
``verifier@T``     escalate when 1 - best verifier score > T
``random@R``       escalate at random with probability R
``random@match``   random at R2V's measured escalation share (same results file)
``ppo``            a PPO router (stable-baselines3) trained on the routing MDP
``oracle``         the hindsight oracle router (reference, not deployable)
=================  ================================================================

Every method but ``llm`` uses the same SLM policy, verifier and teacher, so differences come
from the routing decision alone. The teacher is the env's expert (:class:`OracleTeacher`), costed
as a frontier model would be for the same prompt and reply (:data:`TEACHER_PRICES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2v_agent.errors import ConfigError

__all__ = ["MethodSpec", "parse_method", "build_actor", "METHOD_NAMES", "TEACHER_PRICES"]

#: USD per million (prompt, completion) tokens charged for each teacher call in benchmarks: a
#: frontier-model list price (2.50 / 10.00), so cost columns are comparable across methods.
TEACHER_PRICES = {"frontier-llm": (2.50, 10.00)}

METHOD_NAMES = ("slm", "llm", "r2v", "entropy", "verifier", "random", "ppo", "oracle")
_SPEC = re.compile(r"^(?P<name>[a-z0-9]+)(?:@(?P<point>[0-9.]+|match))?$")
_NEEDS_POINT = {"entropy", "verifier", "random"}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    point: float | None = None  #: tau, or the random rate
    match: bool = False  #: random@match

    def __str__(self) -> str:
        if self.match:
            return f"{self.name}@match"
        if self.point is None:
            return self.name
        # Fixed-point, trailing zeros cut: "0.3", "0.000012" (never "1.2e-05", which no spec reads).
        return f"{self.name}@{self.point:.6f}".rstrip("0").rstrip(".")


def parse_method(text: str) -> MethodSpec:
    match = _SPEC.match(text.strip())
    if match is None or match["name"] not in METHOD_NAMES:
        raise ConfigError(
            f"method {text!r}: expected one of {', '.join(METHOD_NAMES)}, optionally @value (e.g. entropy@0.3)"
        )
    name, point = match["name"], match["point"]
    if point == "match":
        if name != "random":
            raise ConfigError(f"method {text!r}: only random takes @match")
        return MethodSpec(name, None, True)
    if point is None and name in _NEEDS_POINT:
        raise ConfigError(f"method {text!r}: {name} needs a threshold or rate, e.g. {name}@0.3")
    value = float(point) if point is not None else None
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"method {text!r}: the value must be in [0, 1]")
    if value is not None and name in ("slm", "llm", "oracle"):
        raise ConfigError(f"method {text!r}: {name} takes no value")
    return MethodSpec(name, value)


def build_actor(
    spec: MethodSpec,
    agent: Any,
    *,
    env_id: str,
    env_kwargs: dict[str, Any],
    split: str | None,
    max_steps: int,
    seed: int,
    ppo_path: Path | None = None,
    random_rate: float | None = None,
) -> Any:
    """The actor of ``spec``: the loaded ``agent`` (a RoutedAgent, shared) with the method's
    router and tau (:meth:`RoutedAgent.with_router`), or the teacher alone for ``llm``."""
    from r2v_agent.evaluation.oracle import HindsightOracleRouter
    from r2v_agent.rollout import TeacherActor
    from r2v_agent.router.baselines import (
        EntropyRouter,
        NeverEscalate,
        RandomRouter,
        Router,
        VerifierRouter,
    )
    from r2v_agent.teacher.base import PriceTable
    from r2v_agent.teacher.oracle import OracleTeacher

    teacher = OracleTeacher(model="frontier-llm", prices=PriceTable(TEACHER_PRICES))
    if spec.name == "llm":
        return TeacherActor(teacher)
    router: Router
    tau: float | None
    if spec.name == "slm":
        router, tau = NeverEscalate(), 1.0
    elif spec.name == "r2v":  # the agent's own trained router, at its tau unless a point is set
        router, tau = agent.router, spec.point
    elif spec.name == "entropy":
        router, tau = EntropyRouter(), float(spec.point or 0.0)
    elif spec.name == "verifier":
        router, tau = VerifierRouter(), float(spec.point or 0.0)
    elif spec.name == "random":
        rate = random_rate if spec.match else spec.point
        if rate is None:
            raise ConfigError("random@match needs R2V's escalation share: run r2v first")
        router, tau = RandomRouter(rate, seed=seed), 0.5
    elif spec.name == "ppo":
        from r2v_agent.evaluation.ppo import PPORouter

        if ppo_path is None or not Path(ppo_path).exists():
            raise ConfigError("the ppo method needs a trained PPO router (ppo_router.zip)")
        router, tau = PPORouter.load(ppo_path), 0.5 if spec.point is None else spec.point
    elif spec.name == "oracle":
        router = HindsightOracleRouter(env_id, env_kwargs, split=split, max_steps=max_steps)
        tau = 0.5
    else:  # parse_method admits only the names above
        raise ConfigError(f"unknown method {spec.name!r}")
    return agent.with_router(router, tau, teacher=teacher, max_steps=max_steps)
