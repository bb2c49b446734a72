"""OracleTeacher: the env's expert hint, the offline stand-in for a frontier LLM."""

from __future__ import annotations

from typing import Any

from r2v_agent.policy.prompts import Turn
from r2v_agent.teacher.base import CallCost, PriceTable, Teacher, TeacherReply

__all__ = ["OracleTeacher"]


class OracleTeacher(Teacher):
    """Returns ``info["expert_action"]`` (envs made with ``expert_hints=True``).

    Each call is costed as if a frontier model had read the prompt and written the action
    (characters / 4 tokens, priced by ``prices`` for ``model``), so cost figures stay comparable
    with a real teacher. With no hint available it falls back, recorded, like any teacher.
    """

    name = "oracle"

    def __init__(self, *, model: str = "oracle", prices: PriceTable | None = None) -> None:
        super().__init__()
        self.model = model
        self.prices = prices or PriceTable()

    def act(self, turns: list[Turn], info: dict[str, Any], *, fallback_action: str) -> TeacherReply:
        action = info.get("expert_action")
        prompt_tokens = sum(len(t.observation) + len(t.action or "") for t in turns) // 4
        if not action:
            return TeacherReply(
                fallback_action,
                CallCost(),
                fallback=True,
                error="no expert_action in info (make the env with expert_hints=True)",
            )
        completion_tokens = max(1, len(action) // 4)
        cost = CallCost(
            1,
            prompt_tokens,
            completion_tokens,
            self.prices.cost(self.model, prompt_tokens, completion_tokens),
        )
        self.total += cost
        return TeacherReply(str(action), cost)

    def spec(self) -> dict[str, Any]:
        return {"type": "OracleTeacher", "model": self.model}
