"""Terminal-Bench tasks as a Gymnasium env (``R2V/TerminalBench-v0``)."""

from __future__ import annotations

__all__ = ["TerminalBenchEnv", "load_tasks", "load_task", "Task"]


def __getattr__(name: str):  # lazy: keep `import r2v_envs` light
    if name == "TerminalBenchEnv":
        from r2v_envs.terminalbench.env import TerminalBenchEnv

        return TerminalBenchEnv
    if name in {"load_tasks", "load_task", "Task"}:
        from r2v_envs.terminalbench import tasks

        return getattr(tasks, name)
    raise AttributeError(name)
