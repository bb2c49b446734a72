"""Prompt formats per environment family, and action extraction that tolerates chatter.

A :class:`PromptFormat` turns the episode so far into chat messages -- a system instruction
for the family, then the observation / action history, trimmed from the oldest step so the
prompt fits a character budget -- and pulls the action out of a model's reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r2v_envs import fences

__all__ = ["PromptFormat", "FORMATS", "format_for", "Turn"]


@dataclass(frozen=True)
class Turn:
    """One step of history: what the agent saw, and what it did (``None`` for the current step)."""

    observation: str
    action: str | None = None


_LABELLED = re.compile(r"(?:^|\b)(?:action|command)\s*:\s*(.+)$", re.I)
_PROMPT = re.compile(r"^\s*>\s*")


@dataclass(frozen=True)
class PromptFormat:
    """How one env family is prompted and how its actions are read back.

    Attributes:
        family: ``textworld``, ``humaneval`` or ``terminalbench``.
        system: the instruction given as the system message.
        multiline_actions: whether an action may span lines (code); else the first
            non-empty line of the reply is the action.
        max_chars: character budget of the rendered history (oldest turns drop first; the
            first observation, which states the task, is always kept).
        max_new_tokens: generation limit of one action.
        action_log: name, in one line before the first kept step, the actions of the steps
            the window drops, so an agent whose budget holds one or two observations still
            knows what it has done (the line is not counted in ``max_chars``).
    """

    family: str
    system: str
    multiline_actions: bool = False
    max_chars: int = 2400
    max_new_tokens: int = 16
    action_log: bool = False

    def messages(self, turns: list[Turn]) -> list[dict[str, str]]:
        """Chat messages for the current step (the last turn has no action yet)."""
        kept = self._window(turns)
        if self.action_log and len(kept) > 1:
            dropped = turns[1 : len(turns) - len(kept) + 1]
            log = [_one_line(t.action) for t in dropped if t.action is not None]
            if log:
                note = f"(Your actions since the first step: {'; '.join(log)})"
                kept[1] = Turn(f"{note}\n\n{kept[1].observation}", kept[1].action)
        messages = [{"role": "system", "content": self.system}]
        for turn in kept:
            messages.append({"role": "user", "content": turn.observation})
            if turn.action is not None:
                messages.append({"role": "assistant", "content": turn.action})
        return messages

    def extract_action(self, reply: str) -> str:
        """The action in a model's reply, tolerating explanations around it."""
        text = reply.strip()
        if self.multiline_actions:
            if self.family == "humaneval":
                code = fences.last_block(text, fences.PYTHON)
                if code is not None:
                    return f"```python\n{code.strip()}\n```"
                word = text.split()[0].lower() if text.split() else ""
                return word if word in ("test", "submit") else text
            command = fences.last_block(text)
            if command is not None:
                return command.strip()
        lines = [ln.strip().strip("`").strip() for ln in text.splitlines()]
        lines = [_PROMPT.sub("", ln) for ln in lines if ln]
        for line in lines:  # "Action: take knife" wins wherever it is
            match = _LABELLED.search(line)
            if match:
                return match.group(1).strip().strip("`'\"").strip()
        # Otherwise the first short line that does not introduce something ("...is:").
        for line in lines:
            if not line.endswith(":") and len(line.split()) <= 8:
                return line.rstrip(".!")
        return lines[0] if lines else ""

    def _window(self, turns: list[Turn]) -> list[Turn]:
        if not turns:
            return []
        first, rest = turns[0], list(turns[1:])
        budget = self.max_chars - len(first.observation)
        kept: list[Turn] = []
        for turn in reversed(rest):
            size = len(turn.observation) + len(turn.action or "")
            if size > budget and kept:
                break
            kept.append(turn)
            budget -= size
        return [first, *reversed(kept)]


def _one_line(action: str, limit: int = 80) -> str:
    """An action as the log shows it: its first line, at most ``limit`` characters."""
    line = action.strip().splitlines()[0] if action.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


FORMATS: dict[str, PromptFormat] = {
    "textworld": PromptFormat(
        "textworld",
        "You play a text adventure. Reply with exactly one command, such as 'go north', "
        "'take key' or 'open door', and nothing else.",
    ),
    "humaneval": PromptFormat(
        "humaneval",
        "You write Python. Reply with the complete function in a ```python``` block, or "
        "'test' to run it on examples, or 'submit' when it is correct.",
        multiline_actions=True,
        max_chars=6000,
        max_new_tokens=320,
    ),
    "terminalbench": PromptFormat(
        "terminalbench",
        "You operate a Linux shell to complete a task in /app. Reply with one shell command, "
        "or 'submit' when the task is done.",
        multiline_actions=True,
        max_chars=4000,
        max_new_tokens=64,
    ),
}


def format_for(env_id_or_task: str) -> PromptFormat:
    """The prompt format for an env id (``R2V/TextWorld-v0``) or a family name."""
    key = env_id_or_task.lower()
    for family, fmt in FORMATS.items():
        if family in key or (family == "humaneval" and "humaneval" in key.replace("+", "")):
            return fmt
    raise KeyError(f"no prompt format for {env_id_or_task!r}; known: {sorted(FORMATS)}")
