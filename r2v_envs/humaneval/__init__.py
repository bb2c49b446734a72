"""HumanEval+ as an interactive Gymnasium env (``R2V/HumanEvalPlus-v0``, ``R2V/HumanEval-v0``)."""

from __future__ import annotations

__all__ = ["HumanEvalEnv", "Sandbox", "SandboxLimits", "load_humaneval"]


def __getattr__(name: str):  # lazy: evalplus is slow to import
    if name == "HumanEvalEnv":
        from r2v_envs.humaneval.env import HumanEvalEnv

        return HumanEvalEnv
    if name in {"Sandbox", "SandboxLimits"}:
        from r2v_envs.humaneval import sandbox

        return getattr(sandbox, name)
    if name == "load_humaneval":
        from r2v_envs.humaneval.data import load_humaneval

        return load_humaneval
    raise AttributeError(name)
