"""Fenced code blocks in model replies: the one extractor the env, the policy and the verifier share.

A block opens with three or more backticks, an optional info string whose first word is the
language (matched case-insensitively; the rest of the line is ignored, so ```` ```python3 ````,
```` ``` Python ```` and ```` ```py title="x" ```` all open Python blocks), and closes at the next
run of the same number of backticks. An unclosed block is not a block: a reply cut off mid-code
is not a solution.

Three places read code out of a reply -- :class:`r2v_envs.humaneval.HumanEvalEnv` (what is
written), the agent's prompt format (what it sends) and the rule verifier (what it scores) --
and all three call :func:`last_block`, so a block is code to each of them or to none.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["Block", "PYTHON", "SHELL", "blocks", "last_block"]

#: Info-string languages that mean Python ("" is a bare fence).
PYTHON: frozenset[str] = frozenset({"", "python", "python3", "py", "py3"})
#: Info-string languages that mean a shell command.
SHELL: frozenset[str] = frozenset({"", "bash", "sh", "shell", "console", "zsh"})

_BLOCK = re.compile(
    r"(?P<fence>`{3,})[ \t]*(?P<lang>[\w.+#-]*)[^\n]*\n(?P<body>.*?)(?P=fence)(?!`)",
    re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language (lower-cased, ``""`` for a bare fence) and its body."""

    language: str
    body: str


def blocks(text: str) -> list[Block]:
    """Every closed fenced block of ``text``, in order."""
    return [Block(m["lang"].lower(), m["body"]) for m in _BLOCK.finditer(text)]


def last_block(text: str, languages: Collection[str] | None = None) -> str | None:
    """The body of the last block whose language is in ``languages`` (any, if ``None``)."""
    found = [b for b in blocks(text) if languages is None or b.language in languages]
    return found[-1].body if found else None
