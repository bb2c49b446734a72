"""What every teacher shares: the reply, its cost, and a price table."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from r2v_agent.policy.prompts import Turn

__all__ = ["Teacher", "TeacherReply", "CallCost", "PriceTable"]


@dataclass
class CallCost:
    """Cost of teacher calls: how many, tokens in and out, and money (USD)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0

    def __iadd__(self, other: CallCost) -> CallCost:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.usd += other.usd
        return self

    def as_dict(self) -> dict[str, float]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "usd": self.usd,
        }


@dataclass(frozen=True)
class PriceTable:
    """USD per million tokens, by model name; ``default`` applies to unlisted models."""

    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (in, out)
    default: tuple[float, float] = (0.0, 0.0)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price_in, price_out = self.prices.get(model, self.default)
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6


@dataclass
class TeacherReply:
    """A teacher's action for one step.

    ``fallback`` is ``True`` when the teacher failed and ``action`` is the caller's fallback
    (the SLM's best candidate); ``error`` then says why.
    """

    action: str
    cost: CallCost
    fallback: bool = False
    error: str | None = None
    retries: int = 0


class Teacher(ABC):
    """Produces the action for a step when the router escalates. ``act`` never raises for a
    failing backend: it returns the fallback action with ``fallback=True``."""

    name: str = "teacher"

    def __init__(self) -> None:
        self.total = CallCost()

    @abstractmethod
    def act(
        self, turns: list[Turn], info: dict[str, Any], *, fallback_action: str
    ) -> TeacherReply: ...

    def spec(self) -> dict[str, Any]:
        """A JSON-able description, saved with the agent."""
        return {"type": type(self).__name__}
