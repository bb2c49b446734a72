"""``r2v collect``: the teacher plays the training tasks; each clean trajectory is replayed
under N perturbation seeds.

The replay re-issues the teacher's clean actions in the perturbed env (same env seed). A
perturbation that makes a tool call fail leaves the state unchanged, so the teacher issues the
same action again (up to ``max_retries`` times) -- the recorded perturbed steps therefore carry
the teacher's action at the same underlying state, marked by ``state_index``, which is what the
consistency term of the DPO stage pairs up. Tasks are played in parallel worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r2v_agent.config import PipelineConfig
from r2v_agent.policy.prompts import Turn
from r2v_agent.rollout import (
    TeacherActor,
    code_version,
    make_env,
    play_episode,
    step_env,
    teacher_step,
)
from r2v_agent.teacher.base import CallCost
from r2v_agent.teacher.oracle import OracleTeacher
from r2v_agent.trajectories import SCHEMA_VERSION, TrajectoryWriter
from r2v_agent.workers import map_unordered

__all__ = ["run", "collect_task"]

logger = logging.getLogger(__name__)


def collect_task(
    env_id: str,
    env_kwargs: dict[str, Any],
    task_seed: int,
    *,
    max_steps: int,
    perturbation: str,
    perturbation_seeds: list[int],
    max_retries: int = 3,
) -> list[dict[str, Any]]:
    """The clean teacher episode of one training task and its perturbed replays."""
    env = make_env(env_id, kwargs=env_kwargs, split="train", max_steps=max_steps)
    try:
        clean = play_episode(
            env,
            TeacherActor(OracleTeacher()),
            env_id=env_id,
            env_seed=task_seed,
            agent_name="teacher",
            episode_key=f"clean/{task_seed}",
        )
    finally:
        env.close()
    for index, step in enumerate(clean["steps"]):
        step["state_index"] = index
    records = [clean]
    actions = [s["action"] for s in clean["steps"]]
    for z in perturbation_seeds:
        env = make_env(
            env_id,
            kwargs=env_kwargs,
            split="train",
            max_steps=max_steps,
            perturbation=perturbation,
            perturbation_seed=z,
        )
        try:
            records.append(_replay(env, env_id, task_seed, actions, perturbation, z, max_retries))
        finally:
            env.close()
    return records


def _replay(
    env: Any,
    env_id: str,
    task_seed: int,
    actions: list[str],
    perturbation: str,
    z: int,
    max_retries: int,
) -> dict[str, Any]:
    teacher = OracleTeacher()
    observation, info = env.reset(seed=task_seed)
    steps: list[dict[str, Any]] = []
    total, cost, done = 0.0, CallCost(), False
    history: list[Turn] = []
    for index, action in enumerate(actions):
        for _attempt in range(max_retries + 1):
            history.append(Turn(observation, action))
            cost += teacher.act(history, {"expert_action": action}, fallback_action=action).cost
            step = teacher_step(observation, action, info, index)
            observation, reward, done, info = step_env(env, step, info)
            total += reward
            steps.append(step)
            if done or not info.get("tool_error"):
                break
        if done:
            break
    return {
        "schema_version": SCHEMA_VERSION,
        "episode_key": f"perturbed/{task_seed}/{z}",
        "env_id": env_id,
        "task_id": str(info.get("task_id", "")),
        "env_seed": task_seed,
        "perturbation": perturbation,
        "perturbation_seed": z,
        "agent": "teacher",
        "code_version": code_version(),
        "steps": steps,
        "success": bool(info.get("success", False)),
        "return": total,
        "escalations": len(steps),
        "cost": cost.as_dict(),
        "extra": {"replay_of": f"clean/{task_seed}"},
    }


def _job(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    env_id, kwargs, seed, max_steps, perturbation, seeds = args
    return collect_task(
        env_id,
        kwargs,
        seed,
        max_steps=max_steps,
        perturbation=perturbation,
        perturbation_seeds=seeds,
    )


def run(config: PipelineConfig, out_dir: Path) -> dict[str, Any]:
    """Write ``trajectories.jsonl`` under ``out_dir``; return summary statistics."""
    env = config.env
    seeds = list(range(1, env.perturbation_seeds + 1))
    jobs = [
        (env.id, env.kwargs, task, env.max_steps, env.perturbation, seeds)
        for task in range(env.train_tasks)
    ]
    path = out_dir / "trajectories.jsonl"
    clean_success = perturbed_success = perturbed = steps = 0
    workers = max(1, min(config.collect.workers, len(jobs)))
    with TrajectoryWriter(path) as writer:
        results: Iterable[list[dict[str, Any]]] = (
            map(_job, jobs) if workers == 1 else map_unordered(_job, jobs, workers)
        )
        for records in tqdm(results, total=len(jobs), desc="collect", unit="task"):
            for record in records:
                writer.write(record)
                steps += len(record["steps"])
                if record["perturbation"] is None:
                    clean_success += record["success"]
                else:
                    perturbed += 1
                    perturbed_success += record["success"]
    return {
        "tasks": len(jobs),
        "episodes": len(jobs) + perturbed,
        "steps": steps,
        "teacher_clean_success": clean_success / len(jobs),
        "teacher_perturbed_success": perturbed_success / max(1, perturbed),
    }
