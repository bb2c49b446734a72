"""Terminal-Bench 1.x tasks: loading, validation and the built-in offline set.

A task is a folder::

    task.yaml        instruction, difficulty, category, tags, max_agent_timeout_sec,
                     max_test_timeout_sec, ...
    Dockerfile       the environment (FROM, WORKDIR, COPY, RUN, ENV)
    solution.sh      a reference solution
    run-tests.sh     how the tests are run (may install pytest from the internet)
    tests/           the tests, copied to /tests only after the agent has finished

The built-in set lives in ``r2v_envs/terminalbench/tasks/``; :func:`load_tasks` reads it or any
other folder of tasks. Split: :func:`split_of` (about a quarter ``test``, by a hash of the id).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from r2v_envs.errors import R2VEnvError, TaskNotFoundError

__all__ = [
    "Task",
    "TaskFormatError",
    "DockerStep",
    "load_task",
    "load_tasks",
    "builtin_tasks_dir",
    "split_of",
    "split_commands",
]

DIFFICULTIES = ("easy", "medium", "hard")
# run-tests.sh lines that need the internet (Terminal-Bench installs pytest with uv/curl).
_NETWORK = re.compile(
    r"\b(curl|wget|uv\s+(pip|venv|run|add)|pip3?\s+install|apt(-get)?\s+install)\b"
)


class TaskFormatError(R2VEnvError, ValueError):
    """A task folder does not follow the Terminal-Bench format; the message names the problem."""


@dataclass(frozen=True)
class DockerStep:
    """One Dockerfile instruction the local backend can replay (WORKDIR, COPY/ADD, RUN, ENV)."""

    op: str
    args: str


@dataclass
class Task:
    """A loaded, validated task."""

    task_id: str
    path: Path
    instruction: str
    difficulty: str
    category: str
    tags: list[str]
    max_agent_timeout_sec: float
    max_test_timeout_sec: float
    solution: str
    run_tests: str
    config: dict[str, Any] = field(default_factory=dict)
    _commands: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def tests_dir(self) -> Path:
        return self.path / "tests"

    @property
    def dockerfile(self) -> Path:
        return self.path / "Dockerfile"

    @property
    def run_tests_needs_network(self) -> bool:
        code = "\n".join(
            ln for ln in self.run_tests.splitlines() if not ln.lstrip().startswith("#")
        )
        return bool(_NETWORK.search(code))

    def docker_steps(self) -> list[DockerStep]:
        """The Dockerfile's instructions after FROM, continuation lines joined."""
        text = self.dockerfile.read_text()
        joined = re.sub(r"\\\n", " ", text)
        steps = []
        for line in joined.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            op, _, args = line.partition(" ")
            if op.upper() != "FROM":
                steps.append(DockerStep(op.upper(), args.strip()))
        return steps

    def solution_commands(self) -> list[str]:
        # Splitting runs `bash -n` per line: do it once (at load), not at every reset.
        if self._commands is None:
            self._commands = split_commands(self.solution)
        return list(self._commands)


def split_commands(script: str) -> list[str]:
    """Split a shell script into complete commands (one per line, multi-line constructs kept
    whole), dropping the shebang, comments and blank lines. Uses ``bash -n`` for completeness."""
    import subprocess

    commands: list[str] = []
    pending: list[str] = []
    for line in script.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        chunk = "\n".join(pending)
        check = subprocess.run(["bash", "-n"], input=chunk, capture_output=True, text=True)
        # bash -n accepts an unterminated here-document with only a warning.
        complete = check.returncode == 0 and "here-document" not in check.stderr
        if complete and not chunk.rstrip().endswith("\\"):
            commands.append(chunk)
            pending = []
    if pending:
        raise TaskFormatError(f"solution.sh ends inside an unfinished command: {pending[0]!r}")
    return commands


def split_of(task_id: str) -> str:
    """``test`` for about a quarter of task ids (by SHA-256 of the id), ``train`` otherwise."""
    return "test" if hashlib.sha256(task_id.encode()).digest()[0] < 64 else "train"


def builtin_tasks_dir() -> Path:
    return Path(__file__).with_name("tasks")


def load_task(path: str | Path) -> Task:
    """Load and validate one task folder."""
    path = Path(path)
    if not path.is_dir():
        raise TaskNotFoundError(f"task folder {str(path)!r} does not exist")
    where = f"task {path.name!r} ({path})"
    for required in ("task.yaml", "Dockerfile", "solution.sh", "run-tests.sh"):
        if not (path / required).is_file():
            raise TaskFormatError(f"{where}: missing {required}")
    if not (path / "tests").is_dir() or not any((path / "tests").glob("*.py")):
        raise TaskFormatError(f"{where}: tests/ must hold the task's pytest files")
    try:
        config = yaml.safe_load((path / "task.yaml").read_text())
    except yaml.YAMLError as exc:
        raise TaskFormatError(f"{where}: task.yaml is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise TaskFormatError(f"{where}: task.yaml must be a mapping, got {type(config).__name__}")
    instruction = config.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise TaskFormatError(f"{where}: task.yaml needs a non-empty 'instruction'")
    difficulty = config.get("difficulty", "medium")
    if difficulty not in DIFFICULTIES:
        raise TaskFormatError(
            f"{where}: difficulty {difficulty!r} is not one of {', '.join(DIFFICULTIES)}"
        )
    tags = config.get("tags", []) or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TaskFormatError(f"{where}: 'tags' must be a list of strings, got {tags!r}")
    timeouts = {}
    for key, default in (("max_agent_timeout_sec", 360.0), ("max_test_timeout_sec", 60.0)):
        value = config.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise TaskFormatError(f"{where}: {key} must be a positive number, got {value!r}")
        timeouts[key] = float(value)
    first = next(
        (
            ln.split()
            for ln in (path / "Dockerfile").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        ),
        [],
    )
    if not first or first[0].upper() != "FROM":
        raise TaskFormatError(f"{where}: the Dockerfile must start with FROM")
    task = Task(
        task_id=path.name,
        path=path,
        instruction=instruction.strip(),
        difficulty=difficulty,
        category=str(config.get("category", "uncategorized")),
        tags=list(tags),
        solution=(path / "solution.sh").read_text(),
        run_tests=(path / "run-tests.sh").read_text(),
        config=config,
        max_agent_timeout_sec=timeouts["max_agent_timeout_sec"],
        max_test_timeout_sec=timeouts["max_test_timeout_sec"],
    )
    try:
        task.solution_commands()
    except TaskFormatError as exc:
        raise TaskFormatError(f"{where}: {exc}") from None
    return task


def load_tasks(root: str | Path | None = None) -> dict[str, Task]:
    """All tasks under ``root`` (default: the built-in set), keyed by task id."""
    root = Path(root) if root is not None else builtin_tasks_dir()
    if not root.is_dir():
        raise TaskNotFoundError(f"dataset folder {str(root)!r} does not exist")
    if (root / "task.yaml").is_file():  # a single task folder
        task = load_task(root)
        return {task.task_id: task}
    tasks = {p.name: load_task(p) for p in sorted(root.iterdir()) if (p / "task.yaml").is_file()}
    if not tasks:
        raise TaskNotFoundError(f"no task folders (with task.yaml) under {str(root)!r}")
    return tasks
