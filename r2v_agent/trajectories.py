"""The trajectory schema (DESIGN §6) and its JSONL reader / writer.

One episode per line. The same schema serves collection, training and evaluation::

    {"schema_version": 1, "episode_key": "...", "env_id": "R2V/TextWorld-v0",
     "task_id": "custom/d2/s4", "env_seed": 2, "perturbation": "flaky_tool(p=0.2)" | null,
     "perturbation_seed": 3 | null, "agent": "oracle", "code_version": "0.1.0+abc1234",
     "steps": [STEP, ...], "success": true, "return": 1.0, "escalations": 4,
     "cost": {"calls": 4, ...}, "extra": {...}}

    STEP = {"observation": str, "action": str, "actor": "slm" | "teacher",
            "candidates": [{"action": str, "seq_logprob": float, "entropy_mean": float}],
            "verifier_scores": [float], "features": {name: float} | null, "p_fail": float | null,
            "reward": float, "tool_error": bool, "progress": bool | null,
            "state_index": int | null, "admissible_actions": [str] | null,
            "expert_action": str | null}

``progress`` is the env's ground truth that the step moved the task forward (score went up, or
the expert plan got shorter); ``state_index`` ties a perturbed replay's step to the clean
trajectory's step at the same underlying state. Reading validates every line and names the line
and field of any error.

Appends are atomic for readers: a record is one ``write`` of a whole line (newline last) on an
``O_APPEND`` descriptor, then ``fsync``. A writer killed in the middle of a large write can leave
a torn tail -- the kernel stops copying on a fatal signal -- but that tail never has its newline:
readers skip it (with a warning) and the next writer cuts it off before appending, so no half
record is ever read and no later record is glued to one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from r2v_agent.errors import TrajectoryError

__all__ = [
    "SCHEMA_VERSION",
    "validate_episode",
    "read_episodes",
    "TrajectoryWriter",
    "episode_keys",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_NUM = (int, float)
_EPISODE_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # name: (types, may be null)
    "schema_version": (int, False),
    "episode_key": (str, False),
    "env_id": (str, False),
    "task_id": (str, False),
    "env_seed": (int, True),
    "perturbation": (str, True),
    "perturbation_seed": (int, True),
    "agent": (str, False),
    "steps": (list, False),
    "success": (bool, False),
    "return": (_NUM, False),
    "escalations": (int, False),
    "cost": (dict, False),
}
_STEP_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "observation": (str, False),
    "action": (str, False),
    "actor": (str, False),
    "candidates": (list, False),
    "verifier_scores": (list, False),
    "features": (dict, True),
    "p_fail": (_NUM, True),
    "reward": (_NUM, False),
    "tool_error": (bool, False),
    "progress": (bool, True),
    "state_index": (int, True),
    "admissible_actions": (list, True),
    "expert_action": (str, True),
}
_ACTORS = ("slm", "teacher")


def _type_name(types: type | tuple[type, ...]) -> str:
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


def _check(record: dict[str, Any], fields: dict[str, Any], where: str) -> None:
    for name, (types, nullable) in fields.items():
        if name not in record:
            raise TrajectoryError(f"{where}: missing field {name!r}")
        value = record[name]
        if value is None and nullable:
            continue
        # bool is an int in Python; a number field must not accept True.
        bad_bool = (
            isinstance(value, bool)
            and types is not bool
            and bool not in (types if isinstance(types, tuple) else (types,))
        )
        if bad_bool or not isinstance(value, types):
            raise TrajectoryError(
                f"{where}: field {name!r} must be {_type_name(types)}"
                f"{' or null' if nullable else ''}, got {value!r:.60}"
            )


def validate_episode(record: Any, where: str = "episode") -> dict[str, Any]:
    """Check one episode record against the schema; raise :class:`TrajectoryError` naming
    ``where`` and the field. Returns the record."""
    if not isinstance(record, dict):
        raise TrajectoryError(
            f"{where}: an episode must be a JSON object, got {type(record).__name__}"
        )
    _check(record, _EPISODE_FIELDS, where)
    if record["schema_version"] != SCHEMA_VERSION:
        raise TrajectoryError(
            f"{where}: field 'schema_version' is {record['schema_version']!r}; this reader "
            f"knows version {SCHEMA_VERSION}"
        )
    for i, step in enumerate(record["steps"]):
        at = f"{where}: steps[{i}]"
        if not isinstance(step, dict):
            raise TrajectoryError(f"{at} must be a JSON object")
        _check(step, _STEP_FIELDS, at)
        if step["actor"] not in _ACTORS:
            raise TrajectoryError(
                f"{at}: field 'actor' must be one of {_ACTORS}, got {step['actor']!r}"
            )
        for j, cand in enumerate(step["candidates"]):
            if not isinstance(cand, dict) or not isinstance(cand.get("action"), str):
                raise TrajectoryError(f"{at}: candidates[{j}] needs a string 'action'")
        if len(step["verifier_scores"]) not in (0, len(step["candidates"])):
            raise TrajectoryError(
                f"{at}: field 'verifier_scores' has {len(step['verifier_scores'])} values for "
                f"{len(step['candidates'])} candidates"
            )
    return record


def read_episodes(path: str | Path, *, validate: bool = True) -> Iterator[dict[str, Any]]:
    """Yield the episodes of a JSONL file; errors name ``path:line`` and the field."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            if not line.endswith("\n"):
                logger.warning("%s: ignoring a torn last line (the writer was interrupted)", where)
                return
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrajectoryError(
                    f"{where}: not a whole JSON record (torn or edited?): {exc}"
                ) from None
            yield validate_episode(record, where) if validate else record


def episode_keys(path: str | Path) -> set[str]:
    """The ``episode_key`` of every whole record in ``path`` (empty if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return set()
    return {r["episode_key"] for r in read_episodes(path, validate=False)}


class TrajectoryWriter:
    """Appends validated episodes to a JSONL file, one atomic line each.

    Usable as a context manager. Opening repairs a torn last line left by a crash."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _repair(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            logger.warning("%s: dropping a torn last line of %d bytes", self.path, len(data) - keep)
            handle.truncate(keep)

    def write(self, episode: dict[str, Any]) -> None:
        validate_episode(episode, f"episode {episode.get('episode_key', '?')!r}")
        line = (json.dumps(episode, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(line)
        while view:  # one write for a regular file; loop only if the kernel writes less
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
