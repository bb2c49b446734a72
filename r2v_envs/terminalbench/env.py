"""TerminalBench as a Gymnasium env: drive a real shell in a sandbox, then the task's tests grade.

* ``reset(seed=s)`` picks a task of the dataset (the built-in set by default) and starts a fresh
  sandbox with its files at ``/app``; ``options={"task_id": ..., "dataset_path": ...}`` choose
  explicitly. The first observation is the task's instruction.
* An action is a shell command; the observation is its output (capped, with a marker), and
  ``info`` carries ``exit_code``, ``elapsed`` and ``timed_out``. A command running past
  ``command_timeout`` is interrupted and the episode goes on.
* ``submit`` (or the step limit, or the task's ``max_agent_timeout_sec``) ends the episode: every
  process is killed, the tests are copied to ``/tests`` and run. All pass = success.
  Terminal-Bench's ``run-tests.sh`` usually installs pytest from the internet (itself or through
  a sourced ``setup-uv-pytest.sh``); when it does, the sandbox's own pytest runs ``/tests``
  instead and ``info["tests_runner"]`` / ``info["tests_runner_reason"]`` say so.
* The task's ``max_agent_timeout_sec`` bounds the agent's time (a command is cut at what is
  left of it) and ``max_test_timeout_sec`` the tests'.
* A dataset folder with tasks that do not load: they are skipped with a warning (``strict=True``
  raises instead); ``env.load_report`` says which and why.
* ``expert_hints=True``: ``info["expert_action"]`` walks through ``solution.sh``, then ``submit``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from r2v_envs.core import StepOutcome, TextEnv
from r2v_envs.errors import TaskNotFoundError
from r2v_envs.terminalbench.backends.base import Backend
from r2v_envs.terminalbench.tasks import Task, scan_tasks, split_of

__all__ = ["TerminalBenchEnv", "make_backend"]

_PYTEST_SUMMARY = re.compile(r"(\d+) passed|(\d+) failed|(\d+) error")


def make_backend(name: str, **kwargs: Any) -> Backend:
    if name == "local":
        from r2v_envs.terminalbench.backends.local import LocalBackend

        return LocalBackend(**kwargs)
    if name == "docker":
        from r2v_envs.terminalbench.backends.docker import DockerBackend

        return DockerBackend(**kwargs)
    raise ValueError(f"unknown TerminalBench backend {name!r}; choose 'local' or 'docker'")


class TerminalBenchEnv(TextEnv):
    """One Terminal-Bench task per episode.

    Args:
        dataset_path: a folder of tasks (default: the built-in offline set).
        backend: ``"local"`` (bubblewrap) or ``"docker"``, or a :class:`Backend` instance.
        split: ``None``, ``"train"`` or ``"test"``.
        command_timeout: seconds before a command is interrupted.
        max_episode_steps: step limit.
        expert_hints: ``info["expert_action"]`` from ``solution.sh`` / ``solution.yaml``.
        strict: raise on a task of the dataset that does not load (default: skip it, warn).
    """

    metadata = {**TextEnv.metadata, "family": "terminalbench"}

    max_observation_chars = 16_384
    # A command may carry a whole file in a here-document (the expert replays solution.sh).
    max_action_chars = 1 << 20

    def __init__(
        self,
        dataset_path: str | Path | None = None,
        *,
        backend: str | Backend = "local",
        split: str | None = None,
        command_timeout: float = 30.0,
        max_episode_steps: int = 30,
        expert_hints: bool = False,
        render_mode: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(
            max_episode_steps=max_episode_steps, expert_hints=expert_hints, render_mode=render_mode
        )
        self.dataset_path = dataset_path
        self.strict = strict
        self.load_report = scan_tasks(dataset_path)
        self.tasks: dict[str, Task] = self.load_report.require(strict=strict)
        if split not in (None, "train", "test"):
            raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
        self.task_ids = sorted(t for t in self.tasks if split is None or split_of(t) == split)
        if isinstance(backend, str):
            kwargs = dict(backend_kwargs or {})
            # Leave room in the observation for the backend's own "bytes dropped" marker.
            kwargs.setdefault("max_output_bytes", self.max_observation_chars - 1024)
            self.backend = make_backend(backend, **kwargs)
        else:
            self.backend = backend
        self.command_timeout = float(command_timeout)
        self._task: Task | None = None
        self._expert_queue: list[str] = []
        self._started = 0.0

    # ----------------------------------------------------------------------------- hooks
    def _reset_task(
        self, task_seed: int, options: dict[str, Any]
    ) -> tuple[str, str, float, dict[str, Any]]:
        if "dataset_path" in options and options["dataset_path"] != self.dataset_path:
            self.dataset_path = options["dataset_path"]
            self.load_report = scan_tasks(self.dataset_path)
            self.tasks = self.load_report.require(strict=self.strict)
            self.task_ids = sorted(self.tasks)
        if "task_id" in options:
            task_id = str(options["task_id"])
            if task_id not in self.tasks:
                raise TaskNotFoundError(
                    f"no task {task_id!r} in {self.dataset_path or 'the built-in set'}"
                )
        else:
            task_id = self.task_ids[task_seed % len(self.task_ids)]
        task = self.tasks[task_id]
        self._task = task
        self.backend.start(task)
        self._expert_queue = task.solution_commands() + ["submit"]
        self._started = time.monotonic()
        obs = f"{task.instruction}\n\n(Your shell is in /app. Send shell commands; send 'submit' when done.)"
        return obs, task_id, 1.0, self._infos()

    def _current_info(self) -> dict[str, Any]:
        return self._infos()

    def _step_task(self, action: str) -> StepOutcome:
        assert self._task is not None
        if action.strip().lower() == "submit":
            return self._grade("submitted")
        if self._expert_queue and action.strip() == self._expert_queue[0].strip():
            self._expert_queue.pop(0)
        left = self._task.max_agent_timeout_sec - (time.monotonic() - self._started)
        timeout = max(0.1, min(self.command_timeout, left))
        result = self.backend.exec(action, timeout=timeout)
        obs = result.output
        if result.timed_out:
            obs += f"\n[command interrupted after {timeout:.0f}s]"
        if result.shell_exited and not result.timed_out:
            obs += "\n[the shell exited; a new shell was started in /app]"
        info = self._infos(
            exit_code=result.exit_code,
            elapsed=result.elapsed,
            timed_out=result.timed_out,
            output_truncated=result.truncated_bytes > 0,
        )
        if time.monotonic() - self._started >= self._task.max_agent_timeout_sec:
            graded = self._grade("agent time limit reached")
            graded.observation = obs + "\n" + graded.observation
            graded.terminated, graded.truncated = False, True
            return graded
        if self.elapsed_steps >= self.max_episode_steps:
            graded = self._grade("step limit reached")
            graded.observation = obs + "\n" + graded.observation
            graded.terminated = False  # truncated by the base class at the step limit
            return graded
        return StepOutcome(obs, 0.0, info=info)

    def _on_step_limit(self) -> StepOutcome:
        # A spent step (a flaky tool call) used up the budget: grade what the agent left.
        return self._grade("step limit reached")

    # ----------------------------------------------------------------------------- grading
    def _grade(self, why: str) -> StepOutcome:
        assert self._task is not None
        task = self._task
        self.backend.restart()  # nothing the agent started survives into grading
        self.backend.upload(task.tests_dir, "/tests")
        plan = task.tests_plan()
        if plan.runner == "run-tests.sh":
            self.backend.upload(task.path / "run-tests.sh", "/tests/run-tests.sh")
            command = "bash /tests/run-tests.sh"
        else:  # the fresh shell is in the task's WORKDIR, where run-tests.sh would run
            command = "python3 -m pytest /tests -rA -p no:cacheprovider"
        result = self.backend.exec(command, timeout=task.max_test_timeout_sec)
        self.backend.stop()  # the episode is over: nothing keeps running
        success = result.exit_code == 0
        counts = {"passed": 0, "failed": 0, "errors": 0}
        for passed, failed, errors in _PYTEST_SUMMARY.findall(result.output[-2000:]):
            counts["passed"] += int(passed or 0)
            counts["failed"] += int(failed or 0)
            counts["errors"] += int(errors or 0)
        verdict = "all tests passed" if success else "tests failed"
        obs = f"Episode over ({why}): {verdict} ({counts['passed']} passed, {counts['failed']} failed)."
        info = self._infos(
            tests_runner=plan.runner,
            tests_runner_reason=plan.reason,
            tests_output=result.output[-4000:],
            **counts,
            tests_timed_out=result.timed_out,
        )
        return StepOutcome(obs, 1.0 if success else 0.0, True, success, info=info)

    def _infos(self, **extra: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"exit_code": None, "elapsed": 0.0, "timed_out": False}
        info.update(extra)
        if self.expert_hints:
            info["expert_action"] = self._expert_queue[0] if self._expert_queue else "submit"
        return info

    def close(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
        super().close()
