"""Terminal-Bench 1.x tasks: loading, validation and the built-in offline set.

A task is a folder::

    task.yaml             instruction, difficulty, category, tags, max_agent_timeout_sec,
                          max_test_timeout_sec, ...
    Dockerfile            the environment (or the one docker-compose.yaml's services build)
    docker-compose.yaml   optional: a ``client`` service (the agent's container) and, for
                          multi-container tasks, the services it talks to
    solution.sh           a reference solution (or solution.yaml: a list of commands)
    run-tests.sh          how the tests are run (Terminal-Bench's template installs pytest from
                          the internet, often through a sourced setup-uv-pytest.sh)
    tests/                the tests, copied to /tests only after the agent has finished

The built-in set lives in ``r2v_envs/terminalbench/tasks/``; :func:`load_tasks` reads it or any
other folder of tasks, skipping (with a warning, or raising with ``strict=True``) a task it
cannot run; :func:`scan_tasks` returns the same as a :class:`LoadReport`. Split:
:func:`split_of` (about a quarter ``test``, by a hash of the id).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from r2v_envs.errors import R2VEnvError, TaskNotFoundError
from r2v_envs.terminalbench.compose import CLIENT, ComposeError, Service, load_compose
from r2v_envs.terminalbench.dockerfile import DockerfileError, Instruction, parse_dockerfile
from r2v_envs.terminalbench.solution import (
    SolutionError,
    load_solution_yaml,
    split_commands,
)

__all__ = [
    "Task",
    "TaskFormatError",
    "TestsPlan",
    "LoadReport",
    "load_task",
    "load_tasks",
    "scan_tasks",
    "builtin_tasks_dir",
    "split_of",
    "split_commands",
]

DIFFICULTIES = ("easy", "medium", "hard")
# Lines that need the internet (Terminal-Bench installs pytest with uv/curl/apt/pip).
_NETWORK = re.compile(
    r"\b(curl|wget|uv\s+(pip|venv|run|add|init|sync)|pip3?\s+install|apt(-get)?\s+(update|install))\b"
)
# A script run-tests.sh runs or sources: `source X.sh`, `. X.sh`, `bash X.sh`, `sh X.sh`.
_CALLED = re.compile(r"(?:^|[;&|(]|\s)(?:source|\.|bash|sh)\s+\"?([^\s\"';|&]+\.sh)\"?")
#: Scripts Terminal-Bench's harness puts next to the tests (they install pytest with uv).
TB_HARNESS_SCRIPTS = ("setup-uv-pytest.sh", "run-uv-pytest.sh")


class TaskFormatError(R2VEnvError, ValueError):
    """A task folder does not follow the Terminal-Bench format; the message names the problem."""


@dataclass(frozen=True)
class TestsPlan:
    """How a task's tests are run: its ``run-tests.sh``, or (when that needs the internet or
    a script the task does not ship) the sandbox's own ``python3 -m pytest /tests``."""

    __test__ = False  # not a pytest test class, despite the name

    runner: str  #: "run-tests.sh" or "sandbox-pytest"
    reason: str | None = None  #: why the sandbox's pytest stands in


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
    solution: str  #: the text of solution.sh or solution.yaml
    run_tests: str  #: the text of run-tests.sh ("" when the task has none)
    config: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)  #: compose services, client first
    solution_format: str = "sh"  #: "sh" or "yaml"
    _commands: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def tests_dir(self) -> Path:
        return self.path / "tests"

    @property
    def client(self) -> Service:
        """The container the agent works in (compose's ``client``, or the task's Dockerfile)."""
        return self.services.get(CLIENT) or Service(CLIENT, self.path)

    @property
    def dockerfile(self) -> Path | None:
        """The client's Dockerfile (None when the client is a prebuilt ``image``)."""
        return self.client.dockerfile_path

    @property
    def multi_container(self) -> bool:
        return len(self.services) > 1

    def tests_plan(self) -> TestsPlan:
        """Run run-tests.sh as it is, unless it (or a script it runs or sources) needs the
        internet or a script the task does not ship; then the sandbox's pytest runs /tests."""
        if not self.run_tests.strip():
            return TestsPlan("sandbox-pytest", "the task has no run-tests.sh")
        seen: set[str] = set()
        todo = [("run-tests.sh", self.run_tests)]
        while todo:
            name, text = todo.pop()
            code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
            if _NETWORK.search(code):
                return TestsPlan("sandbox-pytest", f"{name} installs from the internet")
            for called in _CALLED.findall(code):
                base = called.rsplit("/", 1)[-1]
                if base in seen:
                    continue
                seen.add(base)
                shipped = next(
                    (p for p in (self.tests_dir / base, self.path / base) if p.is_file()), None
                )
                if shipped is not None:
                    todo.append((base, shipped.read_text()))
                elif base in TB_HARNESS_SCRIPTS:
                    return TestsPlan(
                        "sandbox-pytest",
                        f"{name} uses Terminal-Bench's {base} (installs pytest with uv)",
                    )
                else:
                    return TestsPlan("sandbox-pytest", f"{name} runs {called}, not in the task")
        return TestsPlan("run-tests.sh")

    @property
    def run_tests_needs_network(self) -> bool:
        return self.tests_plan().runner != "run-tests.sh"

    def docker_steps(self) -> list[Instruction]:
        """The client Dockerfile's instructions after its (last) FROM."""
        if self.dockerfile is None:
            return []
        instructions = parse_dockerfile(self.dockerfile.read_text())
        froms = [i for i, ins in enumerate(instructions) if ins.op == "FROM"]
        return instructions[froms[-1] + 1 :] if froms else instructions

    def solution_commands(self) -> list[str]:
        """The expert's actions: solution.sh split into commands, or solution.yaml's steps."""
        # Splitting may run `bash -n`: do it once (at load), not at every reset.
        if self._commands is None:
            if self.solution_format == "yaml":
                self._commands = [step.as_action() for step in load_solution_yaml(self.solution)]
            else:
                self._commands = split_commands(self.solution)
        return list(self._commands)


def split_of(task_id: str) -> str:
    """``test`` for about a quarter of task ids (by SHA-256 of the id), ``train`` otherwise."""
    return "test" if hashlib.sha256(task_id.encode()).digest()[0] < 64 else "train"


def builtin_tasks_dir() -> Path:
    return Path(__file__).with_name("tasks")


def load_task(path: str | Path) -> Task:
    """Load and validate one task folder; :class:`TaskFormatError` names the task and problem."""
    path = Path(path)
    if not path.is_dir():
        raise TaskNotFoundError(f"task folder {str(path)!r} does not exist")
    where = f"task {path.name!r} ({path})"
    if not (path / "task.yaml").is_file():
        raise TaskFormatError(f"{where}: missing task.yaml")
    solutions = [n for n in ("solution.sh", "solution.yaml") if (path / n).is_file()]
    if not solutions:
        raise TaskFormatError(f"{where}: missing solution.sh (or solution.yaml)")
    if not (path / "tests").is_dir() or not any((path / "tests").rglob("*.py")):
        raise TaskFormatError(f"{where}: tests/ must hold the task's pytest files")
    try:
        config = yaml.safe_load((path / "task.yaml").read_text())
    except yaml.YAMLError as exc:
        raise TaskFormatError(f"{where}: task.yaml is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise TaskFormatError(f"{where}: task.yaml must be a mapping, got {type(config).__name__}")
    instruction = config.get("instruction")
    if instruction is None and isinstance(config.get("descriptions"), list):
        # Older Terminal-Bench tasks: descriptions: [{key: base, description: ...}, ...]
        instruction = next(
            (d.get("description") for d in config["descriptions"] if isinstance(d, dict)), None
        )
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
    try:
        services = load_compose(path) or {}
    except ComposeError as exc:
        raise TaskFormatError(f"{where}: {exc}") from None
    client = services.get(CLIENT) or Service(CLIENT, path)
    dockerfile = client.dockerfile_path
    if dockerfile is not None:
        if not dockerfile.is_file():
            raise TaskFormatError(f"{where}: missing Dockerfile")
        try:
            instructions = parse_dockerfile(dockerfile.read_text())
        except DockerfileError as exc:
            raise TaskFormatError(f"{where}: {exc}") from None
        if not instructions or instructions[0].op not in ("FROM", "ARG"):
            raise TaskFormatError(f"{where}: the Dockerfile must start with FROM")
    solution_file = solutions[0]
    run_tests = path / "run-tests.sh"
    task = Task(
        task_id=path.name,
        path=path,
        instruction=instruction.strip(),
        difficulty=difficulty,
        category=str(config.get("category", "uncategorized")),
        tags=list(tags),
        solution=(path / solution_file).read_text(),
        solution_format="yaml" if solution_file == "solution.yaml" else "sh",
        run_tests=run_tests.read_text() if run_tests.is_file() else "",
        config=config,
        services=services,
        max_agent_timeout_sec=timeouts["max_agent_timeout_sec"],
        max_test_timeout_sec=timeouts["max_test_timeout_sec"],
    )
    try:
        task.solution_commands()
    except SolutionError as exc:
        raise TaskFormatError(f"{where}: {solution_file}: {exc}") from None
    return task


@dataclass
class LoadReport:
    """What :func:`scan_tasks` found: the tasks that loaded, and why the others did not."""

    root: Path
    tasks: dict[str, Task] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  #: task folder name -> problem

    def summary(self) -> str:
        lines = [f"{len(self.tasks)} task(s) loaded, {len(self.skipped)} skipped from {self.root}"]
        lines += [f"  skipped {name}: {why}" for name, why in sorted(self.skipped.items())]
        return "\n".join(lines)

    def require(self, *, strict: bool = False) -> dict[str, Task]:
        """The loaded tasks; warn about the skipped ones (``strict``: raise on the first)."""
        if self.skipped:
            if strict:
                raise TaskFormatError(sorted(self.skipped.items())[0][1])
            warnings.warn(self.summary(), stacklevel=3)
        if not self.tasks:
            raise TaskNotFoundError(
                f"no loadable task folders (with task.yaml) under {str(self.root)!r}"
                + (f"\n{self.summary()}" if self.skipped else "")
            )
        return self.tasks


def scan_tasks(root: str | Path | None = None) -> LoadReport:
    """Load every task folder under ``root`` (default: the built-in set), recording each one
    that fails instead of raising."""
    root = Path(root) if root is not None else builtin_tasks_dir()
    if not root.is_dir():
        raise TaskNotFoundError(f"dataset folder {str(root)!r} does not exist")
    report = LoadReport(root)
    folders = [root] if (root / "task.yaml").is_file() else sorted(root.iterdir())
    for folder in folders:
        if not (folder / "task.yaml").is_file():
            continue
        try:
            task = load_task(folder)
        except R2VEnvError as exc:
            report.skipped[folder.name] = str(exc)
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # unreadable files and the like
            report.skipped[folder.name] = f"task {folder.name!r}: {type(exc).__name__}: {exc}"
        else:
            report.tasks[task.task_id] = task
    return report


def load_tasks(root: str | Path | None = None, *, strict: bool = False) -> dict[str, Task]:
    """All tasks under ``root`` (default: the built-in set), keyed by task id.

    A task that does not load is skipped with a warning naming it and the problem; with
    ``strict=True`` the first such problem raises :class:`TaskFormatError` instead.
    """
    return scan_tasks(root).require(strict=strict)
