"""A task's reference solution as the list of commands the expert (and the oracle) replays.

Two formats, as in Terminal-Bench 1.x:

* ``solution.sh``: a shell script, split into complete commands by :func:`split_commands`
  (one per line; multi-line constructs and here-documents kept whole).
* ``solution.yaml``: a list of ``{command, block, min_timeout_sec, max_timeout_sec,
  append_enter}`` mappings, read by :func:`load_solution_yaml`. A ``block: false`` command is
  one Terminal-Bench types into the terminal without waiting for it (a server, a watcher): here
  it is started in the background; the expert waits until it ends or ``min_timeout_sec`` (at
  least 1 s) passes, then goes on while it keeps running. ``append_enter: false`` (raw
  keystrokes for an interactive program) cannot be replayed by a command shell: rejected.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from typing import Any

import yaml

from r2v_envs.errors import R2VEnvError

__all__ = [
    "SolutionError",
    "SolutionStep",
    "split_commands",
    "load_solution_yaml",
    "heredoc_openers",
    "HEREDOC_OPENER",
]

# A here-document opener in a shell line (not the <<< here-string).
HEREDOC_OPENER = re.compile(r"(?<!<)<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
# Anything that can leave a line unfinished: quotes, brackets, backslashes, compound keywords.
_MAYBE_OPEN = re.compile(
    r"['\"`\\(){}]|<<|\b(if|then|else|elif|fi|for|while|until|do|done|case|esac|select|function)\b"
)


class SolutionError(R2VEnvError, ValueError):
    """A solution that cannot be split into commands; the message names the problem."""


@dataclass(frozen=True)
class SolutionStep:
    """One command of ``solution.yaml``, with Terminal-Bench's options."""

    command: str
    block: bool = False  # Terminal-Bench's default
    min_timeout_sec: float = 0.0
    max_timeout_sec: float = 180.0

    def as_action(self) -> str:
        command = self.command.rstrip("\n")
        if self.block:
            return command
        # Wait until it ends or min_timeout_sec (>= 1 s) passes; then it runs on in the background.
        ticks = max(10, math.ceil(self.min_timeout_sec * 10))
        return (
            f"( {command}\n) >/tmp/.r2v-background.log 2>&1 &\n"
            f"for _ in $(seq {ticks}); do kill -0 $! 2>/dev/null || break; sleep 0.1; done; "
            "cat /tmp/.r2v-background.log"
        )


def _complete(chunk: str) -> bool:
    check = subprocess.run(["bash", "-n"], input=chunk, capture_output=True, text=True)
    # bash -n accepts an unterminated here-document with only a warning.
    return check.returncode == 0 and "here-document" not in check.stderr


def _unquoted(line: str) -> list[bool]:
    """For each character of ``line``: is it outside quotes (so ``<<`` there opens a heredoc)?"""
    out, quote, escaped = [], "", False
    for ch in line:
        out.append(not quote and not escaped)
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
    return out


def heredoc_openers(line: str) -> list[tuple[bool, str]]:
    """The here-documents ``line`` opens, as (strip leading tabs, delimiter), in order."""
    free = _unquoted(line)
    return [
        (m.group(1) == "-", m.group(3)) for m in HEREDOC_OPENER.finditer(line) if free[m.start()]
    ]


def split_commands(script: str) -> list[str]:
    """Split a shell script into complete commands (one per line, multi-line constructs and
    here-documents kept whole), dropping the shebang, comments and blank lines.

    Time is linear in the script: a plain one-line command is taken as is, here-document bodies
    are skipped to their delimiter, and only the rest is checked with ``bash -n``.
    """
    commands: list[str] = []
    pending: list[str] = []
    waiting: list[tuple[bool, str]] = []  # here-documents still open: (strip tabs, delimiter)
    for line in script.splitlines():
        if waiting:
            pending.append(line)
            strip_tabs, delimiter = waiting[0]
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                waiting.pop(0)
            if waiting:
                continue
        else:
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending.append(line)
            opened = heredoc_openers(line)
            if opened:
                waiting = opened
                continue
        chunk = "\n".join(pending)
        simple = len(pending) == 1 and not _MAYBE_OPEN.search(chunk)
        if simple or (_complete(chunk) and not chunk.rstrip().endswith("\\")):
            commands.append(chunk)
            pending = []
    if pending:
        if waiting:
            raise SolutionError(
                f"here-document {waiting[0][1]!r} opened by {pending[0][:80]!r} is never closed"
            )
        raise SolutionError(f"the script ends inside an unfinished command: {pending[0][:80]!r}")
    return commands


def load_solution_yaml(text: str) -> list[SolutionStep]:
    """The steps of a ``solution.yaml``; raises :class:`SolutionError` naming a bad entry."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SolutionError(f"solution.yaml is not valid YAML: {exc}") from None
    if not isinstance(data, list) or not data:
        raise SolutionError("solution.yaml must be a non-empty list of commands")
    steps = []
    for n, entry in enumerate(data):
        if isinstance(entry, str):
            entry = {"command": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("command"), str):
            raise SolutionError(f"solution.yaml entry {n} needs a 'command' string: {entry!r}")
        unknown = set(entry) - {
            "command",
            "block",
            "min_timeout_sec",
            "max_timeout_sec",
            "append_enter",
        }
        if unknown:
            raise SolutionError(f"solution.yaml entry {n}: unknown keys {sorted(unknown)}")
        if entry.get("append_enter", True) is False:
            raise SolutionError(
                f"solution.yaml entry {n}: append_enter: false (raw keystrokes) cannot be "
                "replayed as a shell command"
            )
        steps.append(
            SolutionStep(
                command=entry["command"],
                block=bool(entry.get("block", False)),
                min_timeout_sec=_seconds(entry, "min_timeout_sec", 0.0, n),
                max_timeout_sec=_seconds(entry, "max_timeout_sec", 180.0, n),
            )
        )
    return steps


def _seconds(entry: dict[str, Any], key: str, default: float, n: int) -> float:
    value = entry.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise SolutionError(f"solution.yaml entry {n}: {key} must be seconds >= 0, got {value!r}")
    return float(value)
