"""The rollout loop: making an env, playing one episode with any actor (:func:`play_episode`)
or many (:func:`play_tasks`), and recording each step in the trajectory schema.

Collection, router labelling, the pipeline's evaluation and ``benchmarks/run.py`` all go through
:func:`play_episode`, so every record has the same shape. An *actor* is anything with
``reset(seed)`` and ``act(observation, info) -> str``; a :class:`~r2v_agent.RoutedAgent` also
exposes ``last_decision``, whose candidates, scores, features and p_fail are recorded.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
from tqdm.auto import tqdm

from r2v_agent.policy.prompts import Turn
from r2v_agent.teacher.base import CallCost, Teacher
from r2v_agent.trajectories import SCHEMA_VERSION

__all__ = [
    "Actor",
    "TeacherActor",
    "make_env",
    "play_episode",
    "play_tasks",
    "step_progress",
    "teacher_step",
    "step_env",
    "code_version",
]


class Actor(Protocol):
    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: str, info: dict[str, Any]) -> str: ...


class TeacherActor:
    """A teacher playing every step (collection, and the LLM-only baseline's core)."""

    def __init__(self, teacher: Teacher, fallback_action: str = "look") -> None:
        self.teacher = teacher
        self.fallback_action = fallback_action
        self.turns: list[Turn] = []
        self.last_cost = CallCost()

    def reset(self, seed: int | None = None) -> None:
        self.turns = []

    def act(self, observation: str, info: dict[str, Any]) -> str:
        self.turns.append(Turn(observation))
        reply = self.teacher.act(self.turns, info, fallback_action=self.fallback_action)
        self.turns[-1] = Turn(observation, reply.action)
        self.last_cost = reply.cost
        return reply.action


def make_env(
    env_id: str,
    *,
    kwargs: dict[str, Any] | None = None,
    split: str | None = None,
    max_steps: int = 50,
    perturbation: str | None = None,
    perturbation_seed: int | None = None,
    expert_hints: bool = True,
) -> gym.Env[str, str]:
    """``gym.make`` with the train/test split, step limit, expert hints and a perturbation stack."""
    import perturbations
    import r2v_envs  # noqa: F401  (registers the ids)

    extra = dict(kwargs or {})
    if split is not None and any(n in env_id for n in ("TextWorld", "HumanEval", "TerminalBench")):
        extra.setdefault("split", split)  # these envs keep train and test tasks apart
    env = gym.make(env_id, max_episode_steps=max_steps, expert_hints=expert_hints, **extra)
    if perturbation:
        env = perturbations.make_stack(env, perturbation, seed=perturbation_seed or 0)
    return env


def step_progress(
    before: dict[str, Any], after: dict[str, Any], reward: float, terminated: bool
) -> bool:
    """The env's ground truth that a step moved the task forward.

    Success, a positive reward, or a shorter expert plan (TextWorld with expert hints) count as
    progress; a failed tool call, a loss or a wasted move do not."""
    if after.get("success"):
        return True
    if terminated:
        return False
    if reward > 0:
        return True
    if after.get("tool_error"):
        return False
    plan_before, plan_after = before.get("expert_plan_length"), after.get("expert_plan_length")
    if plan_before is not None and plan_after is not None:
        return plan_after < plan_before
    return False


def teacher_step(
    observation: str, action: str, info: dict[str, Any], state_index: int | None = None
) -> dict[str, Any]:
    """A step record before the env answers (reward, tool_error and progress come after)."""
    return {
        "observation": observation,
        "action": action,
        "actor": "teacher",
        "candidates": [],
        "verifier_scores": [],
        "features": None,
        "p_fail": None,
        "admissible_actions": info.get("admissible_actions"),
        "expert_action": info.get("expert_action"),
        "state_index": state_index,
    }


def step_env(
    env: gym.Env[str, str], step: dict[str, Any], before: dict[str, Any]
) -> tuple[str, float, bool, dict[str, Any]]:
    """Play ``step["action"]``, fill the step's reward, tool_error and progress from the env's
    answer; return (observation, reward, done, info)."""
    observation, reward, terminated, truncated, info = env.step(step["action"])
    step.update(
        reward=float(reward),
        tool_error=bool(info.get("tool_error", False)),
        progress=step_progress(before, info, float(reward), bool(terminated)),
    )
    return observation, float(reward), bool(terminated or truncated), info


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    from r2v_agent._version import __version__

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return f"{__version__}+{head}" if head else __version__


def play_episode(
    env: gym.Env[str, str],
    actor: Actor,
    *,
    env_id: str,
    env_seed: int,
    agent_name: str,
    episode_key: str,
    perturbation: str | None = None,
    perturbation_seed: int | None = None,
    actor_seed: int | None = None,
    task_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Play one episode and return its record (schema of :mod:`.trajectories`)."""
    options = {"task_id": task_id} if task_id else None
    observation, info = env.reset(seed=env_seed, options=options)
    actor.reset(seed=actor_seed if actor_seed is not None else env_seed)
    steps: list[dict[str, Any]] = []
    total_return, escalations, cost = 0.0, 0, CallCost()
    done = False
    while not done:
        action = actor.act(observation, info)
        decision = getattr(actor, "last_decision", None)
        step = teacher_step(observation, action, info)
        if decision is not None:
            step.update(
                actor=decision.actor,
                candidates=[
                    {
                        "action": c["action"],
                        "seq_logprob": float(sum(c["token_logprobs"])),
                        "entropy_mean": float(
                            sum(c["token_entropies"]) / max(1, len(c["token_entropies"]))
                        ),
                    }
                    for c in decision.candidates
                ],
                verifier_scores=list(decision.verifier_scores),
                features=dict(decision.features),
                p_fail=float(decision.p_fail),
            )
            cost += CallCost(**decision.cost) if decision.cost else CallCost()
            escalations += decision.actor == "teacher" or decision.teacher_fallback
        elif isinstance(actor, TeacherActor):
            cost += actor.last_cost
            escalations += 1
        observation, reward, done, info = step_env(env, step, info)
        total_return += reward
        steps.append(step)
    return {
        "schema_version": SCHEMA_VERSION,
        "episode_key": episode_key,
        "env_id": env_id,
        "task_id": str(info.get("task_id", task_id or "")),
        "env_seed": env_seed,
        "perturbation": perturbation,
        "perturbation_seed": perturbation_seed,
        "agent": agent_name,
        "code_version": code_version(),
        "steps": steps,
        "success": bool(info.get("success", False)),
        "return": total_return,
        "escalations": int(escalations),
        "cost": cost.as_dict(),
        "extra": dict(extra or {}),
    }


def play_tasks(
    agent: Any,
    *,
    env_id: str,
    env_kwargs: dict[str, Any],
    split: str,
    tasks: list[int],
    perturbation: str | None,
    perturbation_seeds: list[int | None],
    max_steps: int,
    agent_name: str,
    desc: str,
) -> list[dict[str, Any]]:
    """Episodes of ``agent`` on ``tasks`` x ``perturbation_seeds`` (expert hints kept for labels;
    only a teacher would read them)."""
    episodes = []
    jobs = [(t, z) for z in perturbation_seeds for t in tasks]
    envs: dict[int | None, Any] = {}
    try:
        for task, z in tqdm(jobs, desc=desc, unit="episode"):
            if z not in envs:
                envs[z] = make_env(
                    env_id,
                    kwargs=env_kwargs,
                    split=split,
                    max_steps=max_steps,
                    perturbation=perturbation if z is not None else None,
                    perturbation_seed=z,
                )
            episodes.append(
                play_episode(
                    envs[z],
                    agent,
                    env_id=env_id,
                    env_seed=task,
                    agent_name=agent_name,
                    episode_key=f"{agent_name}/{split}/{task}/{z}",
                    perturbation=perturbation if z is not None else None,
                    perturbation_seed=z,
                )
            )
    finally:
        for env in envs.values():
            env.close()
    return episodes
