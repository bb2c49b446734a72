"""From trajectory records to the (context, action) views each training stage needs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from r2v_agent.policy.prompts import PromptFormat, Turn, format_for

__all__ = ["StepView", "step_views", "prompt_format", "chat_prompt"]


@dataclass
class StepView:
    """One recorded step with the chat messages the agent would have seen there."""

    episode: dict[str, Any]
    index: int
    messages: list[dict[str, str]]

    @property
    def step(self) -> dict[str, Any]:
        return self.episode["steps"][self.index]

    @property
    def key(self) -> tuple[int | None, int | None]:
        """(env seed, state index): the same underlying state across clean and perturbed runs."""
        return self.episode["env_seed"], self.step.get("state_index")


def prompt_format(env_id: str, history_chars: int, action_log: bool = False) -> PromptFormat:
    return dataclasses.replace(format_for(env_id), max_chars=history_chars, action_log=action_log)


def step_views(episodes: list[dict[str, Any]], fmt: PromptFormat) -> Iterator[StepView]:
    """Every step of every episode, with the prompt built from the episode's own history."""
    for episode in episodes:
        turns: list[Turn] = []
        for index, step in enumerate(episode["steps"]):
            turns.append(Turn(step["observation"]))
            yield StepView(episode, index, fmt.messages(turns))
            turns[-1] = Turn(step["observation"], step["action"])


def chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The rendered chat prompt, ending where the assistant's reply starts."""
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
