"""TransformersTeacher: a bigger local model (any transformers causal LM) as the teacher."""

from __future__ import annotations

from typing import Any

from r2v_agent.policy.prompts import Turn, format_for
from r2v_agent.teacher.base import CallCost, PriceTable, Teacher, TeacherReply

__all__ = ["TransformersTeacher"]


class TransformersTeacher(Teacher):
    """Greedy decoding with a local model; calls cost tokens (and money if ``prices`` says so).

    Args:
        model_name_or_path: a preset (``smollm2-135m``, ``tiny-random``), a local directory or a
            hub id, loaded with :func:`r2v_agent.policy.models.load_model_and_tokenizer`.
    """

    name = "local"

    def __init__(
        self,
        model_name_or_path: str,
        *,
        max_new_tokens: int = 128,
        prices: PriceTable | None = None,
    ) -> None:
        super().__init__()
        from r2v_agent.policy.models import load_model_and_tokenizer
        from r2v_agent.policy.sampler import TransformersPolicy

        model, tokenizer = load_model_and_tokenizer(model_name_or_path)
        self.source = model_name_or_path
        self.policy = TransformersPolicy(model, tokenizer, k=1, max_new_tokens=max_new_tokens)
        self.prices = prices or PriceTable()

    def act(self, turns: list[Turn], info: dict[str, Any], *, fallback_action: str) -> TeacherReply:
        fmt = format_for(str(info.get("family") or "textworld"))
        try:
            result = self.policy.sample(
                fmt.messages(turns), greedy=True, single_line=not fmt.multiline_actions
            )
        except Exception as exc:  # noqa: BLE001 - a teacher failure falls back, recorded
            return TeacherReply(fallback_action, CallCost(), fallback=True, error=repr(exc))
        action = fmt.extract_action(result.candidates[0].text)
        if not action:
            return TeacherReply(
                fallback_action,
                CallCost(),
                fallback=True,
                error="the local teacher produced no action",
            )
        tokens = (result.prompt_tokens, result.new_tokens)
        cost = CallCost(1, *tokens, self.prices.cost(self.source, *tokens))
        self.total += cost
        return TeacherReply(action, cost)

    def spec(self) -> dict[str, Any]:
        return {"type": "TransformersTeacher", "model": self.source}
